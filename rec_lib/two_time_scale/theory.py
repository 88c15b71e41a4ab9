"""The learning-to-learn analysis of 2TS (paper Section 2 and Appendix A), in closed form.

Setting (A): the number of offline interactions of a user follows the power law
``p(T) ∝ (T + 1)^-alpha`` on ``T = 0, 1, 2, ...``; users are *active* when
``T >= t*`` and start online gradient descent (OGD) from their offline
estimate ``phi(z_[T])``, *inactive* otherwise and start from the common mean
``m`` (eq. 4). Theorem 2.1 (Theorem A.1) bounds the expected excess risk by

    (beta(t*) + gamma^2 B^2 N) / (2 gamma N)                          (eq. 5 / 13)
    beta(t*) = zeta(alpha+1, t*+1)/zeta(alpha, 1) Q + (1 - zeta(alpha, t*+1)/zeta(alpha, 1)) Var_m

with ``B = B_x + c B_phi`` and ``Q = E max{B^2/c^2, ||phi*||^2}``.

Two errata of the paper are handled here and checked by the tests:

* the paper writes the Hurwitz zeta function as ``sum_{i>=1} (i + b)^-a``; the
  proof's equalities (``sum_{T>=t*} (T+1)^-(alpha+1) = zeta(alpha+1, t*+1)``,
  normaliser ``zeta(alpha, 1)``) need the standard ``sum_{n>=0} (n + q)^-s``,
  which is ``scipy.special.zeta(s, q)`` and what :func:`hurwitz_zeta` returns;
* eq. 7 / 15, ``t** = floor(Q / Var_m) - 1``, is the argmin of ``beta`` only when
  ``Q / Var_m`` is an integer. ``beta(t*+1) - beta(t*)`` has the sign of
  ``Var_m - Q / (t*+1)``, so the argmin is ``ceil(Q / Var_m) - 1``
  (:func:`optimal_threshold`); :func:`paper_threshold` is eq. 7 as printed.
  Likewise Implication 1's gap lacks the normaliser ``1 / zeta(alpha, 1)``.

All functions accept NumPy arrays of thresholds (vectorised over ``t*``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import zeta as _scipy_zeta

__all__ = [
    "hurwitz_zeta",
    "power_law_pmf",
    "prob_active",
    "beta",
    "beta_direct",
    "q_bar",
    "optimal_threshold",
    "paper_threshold",
    "brute_force_threshold",
    "excess_risk_bound",
    "optimal_step_size",
    "bound_at_optimal_step",
    "group_step_sizes",
    "two_step_bound",
    "implication1_gap",
]


def _check_alpha(alpha: float) -> None:
    if not (isinstance(alpha, (int, float, np.floating)) and alpha > 1):
        raise ValueError(f"the power-law exponent alpha must be > 1 (p(T) ∝ (T+1)^-alpha is then normalisable), got {alpha!r}")


def _check_thresholds(t_star) -> np.ndarray:
    t = np.asarray(t_star)
    if t.size and (np.any(t < 0) or not np.all(np.equal(np.floor(t), t))):
        raise ValueError(f"thresholds t* must be non-negative integers, got {t_star!r}")
    return t.astype(np.int64)


def hurwitz_zeta(s, q):
    """Hurwitz zeta ``zeta(s, q) = sum_{n>=0} (n + q)^-s`` (``scipy.special.zeta``), for ``s > 1, q > 0``.

    This is the function Theorem 2.1 needs; the paper's printed definition
    ``sum_{i>=1} (i + b)^-a`` is off by one term (module docstring).
    """
    s_arr, q_arr = np.asarray(s, dtype=float), np.asarray(q, dtype=float)
    if np.any(s_arr <= 1) or np.any(q_arr <= 0):
        raise ValueError(f"hurwitz_zeta needs s > 1 and q > 0, got s={s!r}, q={q!r}")
    return _scipy_zeta(s_arr, q_arr)


def power_law_pmf(T, alpha: float):
    """``P(T) = (T + 1)^-alpha / zeta(alpha, 1)`` for ``T = 0, 1, ...`` (Setting (A))."""
    _check_alpha(alpha)
    T = _check_thresholds(T)
    return (T + 1.0) ** (-alpha) / hurwitz_zeta(alpha, 1.0)


def prob_active(t_star, alpha: float):
    """``P(T >= t*) = zeta(alpha, t*+1) / zeta(alpha, 1)``: the share of active users."""
    _check_alpha(alpha)
    t = _check_thresholds(t_star)
    return hurwitz_zeta(alpha, t + 1.0) / hurwitz_zeta(alpha, 1.0)


def beta(t_star, alpha: float, Q: float, var_m: float):
    """``beta(t*)`` of Theorem 2.1 (eq. 5, 13): a bound on ``E ||phi^1 - phi*||^2`` under the init of eq. 4.

    The first term bounds the offline error of active users (Proposition A.1,
    ``E ||phi(z_[T]) - phi*||^2 <= Q / (T + 1)``), the second is the variance
    of the true embeddings around the shared initialisation ``m`` of inactive users.
    """
    _check_alpha(alpha)
    if Q <= 0 or var_m <= 0:
        raise ValueError(f"Q and Var_m must be > 0, got Q={Q}, Var_m={var_m}")
    t = _check_thresholds(t_star)
    z = hurwitz_zeta(alpha, 1.0)
    return hurwitz_zeta(alpha + 1.0, t + 1.0) / z * Q + (1.0 - hurwitz_zeta(alpha, t + 1.0) / z) * var_m


def beta_direct(t_star: int, alpha: float, Q: float, var_m: float, n_terms: int = 2_000_000) -> float:
    """``beta(t*)`` by summing ``E[Q/(T+1) 1[T >= t*] + Var_m 1[T < t*]]`` term by term.

    A check of :func:`beta` that uses no zeta function: the sums run to
    ``n_terms`` and the tails beyond are added by the integral (Euler-Maclaurin
    to first order), so the result is accurate to about ``n_terms^-(alpha+1)``.
    """
    _check_alpha(alpha)
    t = int(_check_thresholds(t_star))
    k = np.arange(1, n_terms + 1, dtype=float)  # k = T + 1
    w = k ** (-alpha)
    tail = lambda s: n_terms ** (1 - s) / (s - 1) - 0.5 * n_terms ** (-s)  # sum_{k > n} k^-s  # noqa: E731
    norm = w.sum() + tail(alpha)
    active = (k[t:] ** (-alpha - 1)).sum() + tail(alpha + 1)
    inactive = w[:t].sum()
    return float((Q * active + var_m * inactive) / norm)


def q_bar(B_x: float, c: float, B_phi: float, phi_star_sq_norms=None) -> float:
    """``Q = E max{(B_x + c B_phi)^2 / c^2, ||phi*||^2}`` (Proposition A.1).

    Since ``||phi*|| <= B_phi <= (B_x + c B_phi) / c``, the max is always the
    first term; ``phi_star_sq_norms`` (optional) is checked against ``B_phi``.
    """
    if min(B_x, c, B_phi) <= 0:
        raise ValueError(f"B_x, c and B_phi must be > 0, got {B_x}, {c}, {B_phi}")
    first = (B_x + c * B_phi) ** 2 / c**2
    if phi_star_sq_norms is None:
        return float(first)
    sq = np.asarray(phi_star_sq_norms, dtype=float)
    if np.any(sq > B_phi**2 * (1 + 1e-9)):
        raise ValueError("some ||phi*|| exceed B_phi: the parameter set Phi must contain every phi*")
    return float(np.maximum(first, sq).mean())


def optimal_threshold(Q: float, var_m: float) -> int:
    """The exact ``argmin_{t* >= 0} beta(t*)``: ``max(ceil(Q / Var_m) - 1, 0)``.

    ``beta(t*+1) - beta(t*) = (t*+1)^-alpha / zeta(alpha, 1) (Var_m - Q / (t*+1))``
    is negative while ``t* + 1 < Q / Var_m``. (When ``Q / Var_m`` is an integer,
    ``t*`` and ``t* + 1`` tie; we return the smaller, which is eq. 7.)
    """
    if Q <= 0 or var_m <= 0:
        raise ValueError(f"Q and Var_m must be > 0, got Q={Q}, Var_m={var_m}")
    return max(int(math.ceil(Q / var_m - 1e-12)) - 1, 0)


def paper_threshold(Q: float, var_m: float) -> int:
    """Eq. 7 / 15 as printed: ``t** = floor(Q / Var_m) - 1`` (clipped at 0)."""
    if Q <= 0 or var_m <= 0:
        raise ValueError(f"Q and Var_m must be > 0, got Q={Q}, Var_m={var_m}")
    return max(int(math.floor(Q / var_m)) - 1, 0)


def brute_force_threshold(alpha: float, Q: float, var_m: float, t_max: int | None = None) -> int:
    """``argmin beta(t*)`` over ``t* = 0..t_max`` by evaluating ``beta`` everywhere (smallest on ties)."""
    t_max = int(t_max if t_max is not None else 4 * Q / var_m + 10)
    grid = np.arange(t_max + 1)
    b = beta(grid, alpha, Q, var_m)
    return int(grid[np.flatnonzero(b <= b.min() * (1 + 1e-12))[0]])


def excess_risk_bound(t_star, gamma, N: int, alpha: float, Q: float, var_m: float, B: float):
    """Eq. 5: ``(beta(t*) + gamma^2 B^2 N) / (2 gamma N)``."""
    if N < 1 or np.any(np.asarray(gamma) <= 0):
        raise ValueError(f"N must be >= 1 and gamma > 0, got N={N}, gamma={gamma}")
    b = beta(t_star, alpha, Q, var_m)
    return (b + np.asarray(gamma) ** 2 * B**2 * N) / (2 * np.asarray(gamma) * N)


def optimal_step_size(t_star, N: int, alpha: float, Q: float, var_m: float, B: float):
    """``gamma = B^-1 sqrt(beta(t*) / N)``, the minimiser of eq. 5."""
    return np.sqrt(beta(t_star, alpha, Q, var_m) / N) / B


def bound_at_optimal_step(t_star, N: int, alpha: float, Q: float, var_m: float, B: float):
    """Eq. 6: ``B sqrt(beta(t*) / N)`` (eq. 14 prints ``1/B``; eq. 5 at the optimal step gives ``B``)."""
    return B * np.sqrt(beta(t_star, alpha, Q, var_m) / N)


def group_step_sizes(t_star, N: int, alpha: float, Q: float, var_m: float, B: float):
    """Implication 2 (Appendix A.2): ``(gamma_act, gamma_in)``, one step size per group.

    ``gamma_act = B^-1 sqrt(zeta(alpha+1, t*+1) Q / (zeta(alpha, t*+1) N))``,
    ``gamma_in = B^-1 sqrt(Var_m / N)``. (Section 2 prints ``gamma_act`` without
    ``B^-1``; Appendix A.2 has it.)
    """
    _check_alpha(alpha)
    t = _check_thresholds(t_star)
    cond = hurwitz_zeta(alpha + 1.0, t + 1.0) / hurwitz_zeta(alpha, t + 1.0)  # E[1/(T+1) | T >= t*]
    g_act = np.sqrt(cond * Q / N) / B
    g_in = np.sqrt(var_m / N) / B * np.ones_like(g_act)
    return g_act, g_in


def two_step_bound(t_star, N: int, alpha: float, Q: float, var_m: float, B: float, gammas=None):
    """The bound of Appendix A.2 with one step size per group (the sum of the two groups' bounds).

    ``P(T < t*) (Var_m / (2 g_in N) + g_in B^2 / 2)
    + P(T >= t*) (E[Q/(T+1) | T >= t*] / (2 g_act N) + g_act B^2 / 2)``;
    ``gammas=(g_act, g_in)`` defaults to :func:`group_step_sizes`.
    """
    t = _check_thresholds(t_star)
    g_act, g_in = gammas if gammas is not None else group_step_sizes(t, N, alpha, Q, var_m, B)
    p_act = prob_active(t, alpha)
    cond = hurwitz_zeta(alpha + 1.0, t + 1.0) / hurwitz_zeta(alpha, t + 1.0)
    inactive = (var_m / (2 * g_in * N) + g_in * B**2 / 2) * (1 - p_act)
    active = (Q * cond / (2 * g_act * N) + g_act * B**2 / 2) * p_act
    return inactive + active


def implication1_gap(alpha: float, Q: float, var_m: float, t_star: int | None = None) -> float:
    """``beta(0) - beta(t*) = zeta(alpha, 1)^-1 sum_{t=1}^{t*} (Q/t - Var_m) t^-alpha`` (Implication 1).

    ``t*`` defaults to the optimal threshold. The paper prints the sum without
    the normaliser ``1 / zeta(alpha, 1)``.
    """
    _check_alpha(alpha)
    t_star = optimal_threshold(Q, var_m) if t_star is None else int(_check_thresholds(t_star))
    t = np.arange(1, t_star + 1, dtype=float)
    return float(((Q / t - var_m) * t ** (-alpha)).sum() / hurwitz_zeta(alpha, 1.0))
