"""Descriptive statistics of interaction data: activity distributions and power-law fits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PowerLawFit", "fit_power_law", "ccdf"]


@dataclass
class PowerLawFit:
    """``P(T = t) ~ t^-alpha`` for ``t >= t_min``, fitted on ``n_tail`` observations."""

    alpha: float
    t_min: int
    n_tail: int
    stderr: float
    ks_distance: float

    def ccdf(self, t: np.ndarray) -> np.ndarray:
        """Model ``P(T >= t)`` for ``t >= t_min`` (continuous approximation)."""
        return (np.asarray(t, float) / (self.t_min - 0.5)) ** (1.0 - self.alpha)


def ccdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Empirical complementary CDF: sorted distinct values ``t`` and ``P(T >= t)``."""
    v = np.sort(np.asarray(values))
    if v.size == 0:
        raise ValueError("ccdf of an empty array")
    t, first = np.unique(v, return_index=True)
    return t, 1.0 - first / v.size


def fit_power_law(values: np.ndarray, t_min: int | None = None) -> PowerLawFit:
    """Maximum-likelihood exponent of a discrete power law (Clauset, Shalizi & Newman 2009).

    ``alpha = 1 + n / sum(log(t_i / (t_min - 1/2)))`` over the ``n`` values
    ``>= t_min`` (their eq. 3.7, the discrete approximation), with standard
    error ``(alpha - 1) / sqrt(n)``. When ``t_min`` is ``None`` it is chosen
    among the observed values to minimise the Kolmogorov-Smirnov distance
    between the tail and the fit (their section 3.3).
    """
    x = np.asarray(values, dtype=float)
    x = x[x > 0]
    if x.size < 10:
        raise ValueError(f"need at least 10 positive values to fit a power law, got {x.size}")
    candidates = [int(t_min)] if t_min is not None else [int(t) for t in np.unique(x)[:-5]]
    best: PowerLawFit | None = None
    for tm in candidates:
        if tm < 1:
            raise ValueError(f"t_min must be >= 1, got {tm}")
        tail = np.sort(x[x >= tm])
        if tail.size < 10:
            continue
        alpha = 1.0 + tail.size / np.log(tail / (tm - 0.5)).sum()
        emp = np.arange(tail.size) / tail.size  # P(T < t) just before each sorted value
        model = 1.0 - (tail / (tm - 0.5)) ** (1.0 - alpha)
        ks = float(np.abs(emp - model).max())
        fit = PowerLawFit(float(alpha), tm, int(tail.size), float((alpha - 1) / np.sqrt(tail.size)), ks)
        if best is None or fit.ks_distance < best.ks_distance:
            best = fit
    if best is None:
        raise ValueError("no t_min leaves at least 10 values in the tail")
    return best
