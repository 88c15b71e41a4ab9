"""A simulation of Setting (A) (paper Section 2.1, Appendix A), vectorised over users.

Each simulated user ``u`` clicks item vectors ``x`` (uniform over a catalogue on
the sphere ``||x|| = B_x``) with probability ``sigmoid(x . w_u)``; ``w_u`` is
drawn around a common vector with a small spread. Then, as in the paper:

* ``phi*_u = argmin_{||phi|| <= B_phi} E_x E_y l(phi, x, y)`` with the
  regularised logistic loss of eq. 1 (:func:`logistic_loss`), computed by
  projected gradient descent on the exact expectation over the catalogue;
* ``m = E phi*``, ``Var_m = E ||phi* - m||^2`` (eq. 2), estimated on the population;
* ``T ~ p(T) ∝ (T + 1)^-alpha`` offline interactions; ``phi(z_[T])`` by
  projected SGD from 0 with steps ``1 / (c t)`` (Proposition A.1);
* online OGD (eq. 3) over ``N`` fresh interactions from the initialisation of
  eq. 4 (``phi(z_[T])`` if ``T >= t*``, else ``m``), with one shared step size
  (Theorem 2.1) or one per group (Implication 2), and its excess risk.

Every loop runs over steps (SGD iterations, online positions, thresholds),
never over users. The online stream is drawn once (:func:`online_stream`) and
reused by every run, so runs at different thresholds and step sizes differ
only by what they change (common random numbers). The excess risk of a step
is averaged over ``y`` given ``x`` exactly (``phi^t`` does not depend on
``y_t``), which removes label noise from the estimate without changing its mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit as _expit

from rec_lib.two_time_scale import theory

__all__ = [
    "logistic_loss",
    "logistic_grad",
    "project_ball",
    "L2LPopulation",
    "simulate_population",
    "sample_power_law",
    "offline_sgd",
    "online_stream",
    "ogd_excess_risk",
    "threshold_sweep",
    "binned_offline_error",
    "calibrated_threshold",
    "risk_table",
    "tuned_sweep",
]


def _softplus(z: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, z)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return _expit(z)


def logistic_loss(phi: np.ndarray, x: np.ndarray, y: np.ndarray, c: float) -> np.ndarray:
    """Eq. 1 row-wise: ``-y x.phi + log(1 + exp(x.phi)) + c/2 ||phi||^2`` for ``phi, x`` of shape ``[U, d]``.

    ``y`` may be a probability (then this is the loss averaged over ``y ~ Bernoulli(y)``).
    """
    z = np.einsum("ud,ud->u", phi, x)
    return -y * z + _softplus(z) + 0.5 * c * np.einsum("ud,ud->u", phi, phi)


def logistic_grad(phi: np.ndarray, x: np.ndarray, y: np.ndarray, c: float) -> np.ndarray:
    """``d l / d phi = (sigmoid(x.phi) - y) x + c phi`` row-wise (``[U, d]``)."""
    z = np.einsum("ud,ud->u", phi, x)
    return (_sigmoid(z) - y)[:, None] * x + c * phi


def project_ball(phi: np.ndarray, radius: float) -> np.ndarray:
    """``Proj_Phi``: rows of ``phi`` scaled back onto the ball ``||phi|| <= radius``."""
    norm = np.linalg.norm(phi, axis=-1, keepdims=True)
    return phi * np.minimum(1.0, radius / np.maximum(norm, 1e-300))


def sample_power_law(n: int, alpha: float, t_max: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws of ``T`` with ``P(T) ∝ (T + 1)^-alpha`` on ``0..t_max`` (inverse CDF on the exact table).

    The mass beyond ``t_max``, ``zeta(alpha, t_max + 2) / zeta(alpha, 1)``, is
    left out; :class:`L2LPopulation` records it.
    """
    if t_max < 1:
        raise ValueError(f"t_max must be >= 1, got {t_max}")
    pmf = theory.power_law_pmf(np.arange(t_max + 1), alpha)
    cdf = np.cumsum(pmf / pmf.sum())
    return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), t_max).astype(np.int64)


@dataclass
class L2LPopulation:
    """Simulated users of Setting (A) with their ground truth and offline estimates."""

    items: np.ndarray  # [M, d] catalogue, ||x|| = B_x
    w: np.ndarray  # [U, d] click weights: P(y = 1 | x) = sigmoid(x . w_u)
    phi_star: np.ndarray  # [U, d] eq. 1 minimisers
    T: np.ndarray  # [U] offline interactions
    phi_hat: np.ndarray  # [U, d] phi(z_[T]) by SGD (Proposition A.1)
    m: np.ndarray  # [d] mean of phi*
    var_m: float  # eq. 2
    alpha: float
    c: float
    B_x: float
    B_phi: float
    truncated_mass: float  # P(T > t_max) left out by the sampler

    @property
    def B(self) -> float:
        """``B = B_x + c B_phi``, the bound on the gradient norm."""
        return self.B_x + self.c * self.B_phi

    @property
    def Q(self) -> float:
        """``Q = E max{B^2/c^2, ||phi*||^2}`` (Proposition A.1)."""
        return theory.q_bar(self.B_x, self.c, self.B_phi, (self.phi_star**2).sum(1))

    @property
    def offline_sq_error(self) -> np.ndarray:
        """``||phi(z_[T]) - phi*||^2`` per user."""
        return ((self.phi_hat - self.phi_star) ** 2).sum(1)

    def init(self, t_star: int) -> np.ndarray:
        """Eq. 4: ``phi(z_[T])`` for ``T >= t*`` (active), ``m`` otherwise."""
        return np.where((self.T >= t_star)[:, None], self.phi_hat, self.m[None, :])


def _solve_phi_star(items: np.ndarray, w: np.ndarray, c: float, B_phi: float,
                    tol: float = 1e-10, max_iter: int = 50, chunk: int = 4096) -> np.ndarray:
    """``argmin_{||phi|| <= B_phi} mean_x [-p x.phi + softplus(x.phi)] + c/2 ||phi||^2``, ``p = sigmoid(x.w)``.

    Newton's method on the exact expectation over the catalogue (the objective
    is ``c``-strongly convex and smooth), vectorised over users; steps are
    capped at ``B_phi`` in norm. The minimiser always satisfies
    ``||phi*|| <= B_x / c`` (``c phi* = E[(p - sigmoid(x.phi*)) x]``); if it
    leaves the ball ``Phi`` an error asks for a larger ``B_phi``.
    """
    M, d = items.shape
    xx = (items[:, :, None] * items[:, None, :]).reshape(M, d * d) / M
    out = np.empty_like(w)
    for s in range(0, len(w), chunk):  # chunks of users bound the [chunk, M] logits
        p = _sigmoid(w[s : s + chunk] @ items.T)
        phi = np.zeros_like(w[s : s + chunk])
        for _ in range(max_iter):
            sg = _sigmoid(phi @ items.T)
            g = (sg - p) @ items / M + c * phi
            H = ((sg * (1 - sg)) @ xx).reshape(-1, d, d) + c * np.eye(d)
            step = project_ball(np.linalg.solve(H, g[:, :, None])[:, :, 0], B_phi)
            phi = phi - step
            if np.abs(step).max() < tol:
                break
        else:
            raise RuntimeError(f"phi* did not converge in {max_iter} Newton steps (last step {np.abs(step).max():.2e})")
        out[s : s + chunk] = phi
    if (np.linalg.norm(out, axis=1) > B_phi * (1 + 1e-9)).any():
        raise ValueError(f"some phi* lie outside ||phi|| <= B_phi = {B_phi}; take B_phi >= B_x / c")
    return out


def offline_sgd(population_w: np.ndarray, items: np.ndarray, T: np.ndarray, c: float, B_phi: float,
                rng: np.random.Generator) -> np.ndarray:
    """``phi(z_[T])``: projected SGD from ``0`` with steps ``1 / (c t)`` over ``T`` fresh samples per user.

    The step rule is Nemirovski et al.'s ``theta / t`` with ``theta = 1/c``,
    under which Proposition A.1's bound ``Q / (T + 1)`` holds. Vectorised over
    users: at step ``t`` the users with ``T >= t`` move.
    """
    U, d = population_w.shape
    if T.shape != (U,) or (T < 0).any():
        raise ValueError("T must hold one non-negative count per user")
    order = np.argsort(-T, kind="stable")
    Ts, W = T[order], population_w[order]
    phi = np.zeros((U, d))
    for t in range(1, int(T.max(initial=0)) + 1):
        n = int(np.searchsorted(-Ts, -t, side="right"))  # users with T >= t (sorted descending)
        x = items[rng.integers(0, len(items), n)]
        y = (rng.random(n) < _sigmoid(np.einsum("ud,ud->u", x, W[:n]))).astype(float)
        phi[:n] = project_ball(phi[:n] - logistic_grad(phi[:n], x, y, c) / (c * t), B_phi)
    out = np.empty_like(phi)
    out[order] = phi
    return out


def simulate_population(
    n_users: int = 20_000,
    dim: int = 4,
    alpha: float = 2.0,
    c: float = 0.1,
    B_x: float = 1.0,
    B_phi: float = 10.0,
    mean_norm: float = 4.0,
    spread: float = 4.0,
    n_catalogue: int = 1000,
    t_max: int = 5000,
    seed: int = 0,
) -> L2LPopulation:
    """Draw a population of Setting (A) and its offline estimates.

    ``w_u = w_0 + spread * N(0, I/d)`` with ``||w_0|| = mean_norm``; the catalogue
    is ``n_catalogue`` uniform directions scaled to ``B_x``. ``B_phi = B_x / c``
    (the default with ``c = 0.1``) is the a-priori bound on ``||phi*||``.
    """
    theory._check_alpha(alpha)
    if min(n_users, dim, n_catalogue) < 1 or min(c, B_x, B_phi) <= 0 or spread < 0:
        raise ValueError("n_users, dim, n_catalogue must be >= 1; c, B_x, B_phi > 0; spread >= 0")
    rng = np.random.default_rng(seed)
    items = rng.standard_normal((n_catalogue, dim))
    items *= B_x / np.linalg.norm(items, axis=1, keepdims=True)
    w0 = rng.standard_normal(dim)
    w0 *= mean_norm / np.linalg.norm(w0)
    w = w0 + spread * rng.standard_normal((n_users, dim)) / np.sqrt(dim)
    phi_star = _solve_phi_star(items, w, c, B_phi)
    m = phi_star.mean(0)
    var_m = float(((phi_star - m) ** 2).sum(1).mean())
    T = sample_power_law(n_users, alpha, t_max, rng)
    phi_hat = offline_sgd(w, items, T, c, B_phi, rng)
    truncated = float(theory.hurwitz_zeta(alpha, t_max + 2.0) / theory.hurwitz_zeta(alpha, 1.0))
    return L2LPopulation(items, w, phi_star, T, phi_hat, m, var_m, alpha, c, B_x, B_phi, truncated)


def online_stream(pop: L2LPopulation, N: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The online interactions of eq. 3: item indices ``[U, N]`` and click labels ``[U, N]``."""
    if N < 1:
        raise ValueError(f"N must be >= 1, got {N}")
    idx = rng.integers(0, len(pop.items), size=(len(pop.w), N))
    p = _sigmoid(np.einsum("und,ud->un", pop.items[idx], pop.w))
    return idx, (rng.random(p.shape) < p).astype(float)


def ogd_excess_risk(pop: L2LPopulation, phi1: np.ndarray, gamma, stream: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Per-user excess risk ``(1/N) sum_t l(phi^t, x_t, y_t) - l(phi*, x_t, y_t)`` of projected OGD.

    ``phi^{t+1} = Proj_Phi[phi^t - gamma dl(phi^t, x_t, y_t)]`` from ``phi1``;
    ``gamma`` is a scalar or one step size per user. The loss difference at
    step ``t`` is averaged over ``y_t ~ Bernoulli(sigmoid(x_t . w_u))`` exactly.
    """
    idx, y = stream
    U, N = idx.shape
    gamma = np.broadcast_to(np.asarray(gamma, dtype=float), (U,))
    if phi1.shape != pop.phi_star.shape or (gamma <= 0).any():
        raise ValueError(f"phi1 must be [U, d] = {pop.phi_star.shape} and gamma > 0")
    phi = phi1.copy()
    total = np.zeros(U)
    for t in range(N):  # online positions, vectorised over users
        x = pop.items[idx[:, t]]
        p = _sigmoid(np.einsum("ud,ud->u", x, pop.w))
        total += logistic_loss(phi, x, p, pop.c) - logistic_loss(pop.phi_star, x, p, pop.c)
        phi = project_ball(phi - gamma[:, None] * logistic_grad(phi, x, y[:, t], pop.c), pop.B_phi)
    return total / N


def threshold_sweep(pop: L2LPopulation, thresholds, stream: tuple[np.ndarray, np.ndarray]):
    """For each ``t*``: the measured and bounded excess risks, one shared vs two step sizes.

    Returns a DataFrame indexed by ``t*`` with ``init_sq_error`` (measured
    ``E ||phi^1 - phi*||^2``) next to ``beta`` (its bound), ``risk_shared``
    (OGD at Theorem 2.1's step ``gamma(t*)``) next to ``bound_shared`` (eq. 6),
    ``risk_two`` (Implication 2's ``gamma_act`` for active, ``gamma_in`` for
    inactive users) next to ``bound_two``, and the step sizes.
    """
    import pandas as pd

    thresholds = np.unique(theory._check_thresholds(thresholds))
    N = stream[0].shape[1]
    Q, var_m, B, a = pop.Q, pop.var_m, pop.B, pop.alpha
    rows = []
    for t in thresholds:  # thresholds, vectorised over users
        phi1 = pop.init(int(t))
        active = pop.T >= t
        g = float(theory.optimal_step_size(t, N, a, Q, var_m, B))
        g_act, g_in = (float(v) for v in theory.group_step_sizes(t, N, a, Q, var_m, B))
        rows.append({
            "t_star": int(t),
            "share_active": float(active.mean()),
            "init_sq_error": float(((phi1 - pop.phi_star) ** 2).sum(1).mean()),
            "beta": float(theory.beta(t, a, Q, var_m)),
            "gamma": g, "gamma_act": g_act, "gamma_in": g_in,
            "risk_shared": float(ogd_excess_risk(pop, phi1, g, stream).mean()),
            "risk_two": float(ogd_excess_risk(pop, phi1, np.where(active, g_act, g_in), stream).mean()),
            "bound_shared": float(theory.bound_at_optimal_step(t, N, a, Q, var_m, B)),
            "bound_two": float(theory.two_step_bound(t, N, a, Q, var_m, B)),
        })
    return pd.DataFrame(rows).set_index("t_star")


# --------------------------------------------------------------------------- calibrated reading of Theorem 2.1
def binned_offline_error(pop: L2LPopulation, n_bins: int = 25, min_users: int = 100):
    """Mean ``(T + 1) ||phi(z_[T]) - phi*||^2`` per geometric bin of ``T >= 1`` with ``min_users`` users or more.

    Proposition A.1 bounds this product by ``Q``; the bins show what SGD
    actually reaches. Returns a DataFrame with ``T_low``, ``T`` (mean),
    ``err`` (mean squared error), ``scaled`` (mean of ``(T + 1) err``), ``n``.
    """
    import pandas as pd

    T, e = pop.T, pop.offline_sq_error
    keep = T > 0
    edges = np.unique(np.geomspace(1, T.max(initial=1) + 1, n_bins).astype(int))
    df = pd.DataFrame({"T": T[keep], "err": e[keep], "scaled": (T[keep] + 1) * e[keep]})
    df["T_low"] = edges[np.searchsorted(edges, df["T"], side="right") - 1]
    out = df.groupby("T_low").agg(T=("T", "mean"), err=("err", "mean"), scaled=("scaled", "mean"),
                                  n=("err", "size")).reset_index()
    return out[out["n"] >= min_users].reset_index(drop=True)


def calibrated_threshold(pop: L2LPopulation, n_bins: int = 25, min_users: int = 100) -> tuple[int, float]:
    """Eq. 7 with ``Q`` calibrated on the measured offline errors: ``(t_hat, Q_hat)``.

    The proof of Theorem 2.1 uses Proposition A.1 only for active users
    (``T >= t*``), so the constant it needs at a threshold ``t`` is
    ``Q_hat(t) = max_{T >= t} (T + 1) E ||phi(z_[T]) - phi*||^2`` (binned, see
    :func:`binned_offline_error`). ``t_hat`` is the smallest ``t`` with
    ``t >= ceil(Q_hat(t) / Var_m) - 1`` (the fixed point of eq. 7 with the
    calibrated constant); ``Q_hat = Q_hat(t_hat)``.
    """
    b = binned_offline_error(pop, n_bins, min_users)
    if b.empty:
        raise ValueError("no bin of T holds min_users users; simulate more users")
    for t in range(0, int(b["T_low"].max()) + 1):
        q = float(b.loc[b["T_low"] >= t, "scaled"].max()) if (b["T_low"] >= t).any() else float(b["scaled"].iloc[-1])
        if t >= theory.optimal_threshold(q, pop.var_m):
            return t, q
    q = float(b["scaled"].iloc[-1])
    return int(theory.optimal_threshold(q, pop.var_m)), q


def risk_table(pop: L2LPopulation, gammas, stream) -> tuple[np.ndarray, np.ndarray]:
    """Per-user OGD excess risk for each step size, from ``m`` (``[G, U]``) and from ``phi(z_[T])`` (``[G, U]``).

    Each user's OGD depends only on its own start and step, so the risk of
    any threshold and any per-group steps is read off these two tables
    (:func:`tuned_sweep`) without running OGD again.
    """
    gammas = np.asarray(gammas, dtype=float)
    if gammas.ndim != 1 or (gammas <= 0).any():
        raise ValueError("gammas must be a 1-d array of positive step sizes")
    start_m = np.broadcast_to(pop.m, pop.phi_star.shape).copy()
    r_m = np.stack([ogd_excess_risk(pop, start_m, g, stream) for g in gammas])
    r_hat = np.stack([ogd_excess_risk(pop, pop.phi_hat, g, stream) for g in gammas])
    return r_m, r_hat


def tuned_sweep(pop: L2LPopulation, thresholds, gammas, tune_stream, test_stream):
    """For each ``t*``: step sizes tuned on ``tune_stream``, risks measured on the independent ``test_stream``.

    ``one``: one step for every user (the argmin over ``gammas`` of the mean
    tuning risk); ``two``: one step per group (active ``T >= t*``, inactive),
    each tuned on its own group. Returns a DataFrame indexed by ``t*`` with
    ``share_active``, ``gamma_one``, ``gamma_act``, ``gamma_in``,
    ``risk_one``, ``risk_two`` (test stream) and ``init_sq_error``.
    """
    import pandas as pd

    gammas = np.asarray(gammas, dtype=float)
    tm, th = risk_table(pop, gammas, tune_stream)
    sm, sh = risk_table(pop, gammas, test_stream)
    rows = []
    for t in np.unique(theory._check_thresholds(thresholds)):
        act = pop.T >= t
        tune = np.where(act[None, :], th, tm)
        test = np.where(act[None, :], sh, sm)
        g1 = int(np.argmin(tune.mean(1)))
        ga = int(np.argmin(tune[:, act].mean(1))) if act.any() else g1
        gi = int(np.argmin(tune[:, ~act].mean(1))) if (~act).any() else g1
        two = np.where(act, test[ga], test[gi])
        phi1 = pop.init(int(t))
        rows.append({"t_star": int(t), "share_active": float(act.mean()),
                     "init_sq_error": float(((phi1 - pop.phi_star) ** 2).sum(1).mean()),
                     "gamma_one": gammas[g1], "gamma_act": gammas[ga], "gamma_in": gammas[gi],
                     "risk_one": float(test[g1].mean()), "risk_two": float(two.mean())})
    return pd.DataFrame(rows).set_index("t_star")
