"""Seeded synthetic data with known ground truth, shared by the chapters.

Two generators:

:func:`drifting_stream`
    Users whose preference at time ``t`` mixes a long-term vector ``p_u`` and a
    short-term interest ``s_u(t)`` that drifts as an Ornstein-Uhlenbeck process
    with time-scale ``drift_days`` (plus an optional global trend shared by
    all users). Activity (interactions per user) follows a power law, item
    popularity a Zipf law, items live in clusters. Each interaction's item is
    drawn from ``softmax((v_i . q_u(t)) / temperature + b_i)`` over the items the
    user has not chosen before. ``long_term_weight`` moves the stream between a
    Yelp-like regime (stable tastes) and an Adressa-like one (news: drifting
    interests), which the retraining and online-update chapters contrast.

:func:`item_catalogue` and :func:`catalogue_sessions`
    A catalogue of up to 10^6 item embeddings with the structure SVD
    embeddings of real interactions have (clusters of Zipf-distributed sizes,
    a decaying spectrum, popularity in the norms), and user sessions drawn
    from it, for the offline-policy chapter. Isotropic Gaussian vectors would
    be a worst case for graph indexes and make a top-K meaningless.

Everything is vectorised over users; the only Python loop in
:func:`drifting_stream` runs over positions in a user's history.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rec_lib.data.schema import Interactions

__all__ = ["drifting_stream", "power_law_counts", "Catalogue", "item_catalogue", "catalogue_sessions"]

_EPOCH = 1_577_836_800  # 2020-01-01 00:00 UTC: synthetic timestamps start here
_DAY = 86_400


def power_law_counts(n: int, exponent: float, low: int, high: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` integers with ``P(T = t) ~ t^-exponent`` on ``[low, high]`` (discrete power law).

    Drawn by inverse-CDF from the continuous Pareto law and floored, then
    clipped at ``high``. ``exponent`` must exceed 1 (2TS's users have 1.5-2.5).
    """
    if exponent <= 1:
        raise ValueError(f"power-law exponent must be > 1, got {exponent}")
    if not 1 <= low <= high:
        raise ValueError(f"need 1 <= low <= high, got low={low}, high={high}")
    u = rng.random(n)
    t = np.floor(low * (1.0 - u) ** (-1.0 / (exponent - 1.0)))
    return np.minimum(t, high).astype(np.int64)


def _clustered_items(n_items: int, dim: int, n_clusters: int, spread: float, rng: np.random.Generator):
    sizes = 1.0 / np.arange(1, n_clusters + 1)
    cluster = rng.choice(n_clusters, size=n_items, p=sizes / sizes.sum())
    centres = rng.standard_normal((n_clusters, dim)) / np.sqrt(dim)
    v = centres[cluster] + spread * rng.standard_normal((n_items, dim)) / np.sqrt(dim)
    return v, cluster, centres


def activity_times(n_u: np.ndarray, horizon_days: float, rng: np.random.Generator) -> np.ndarray:
    """Each user's interaction times in days ``[n_users, max(n_u)]``, sorted; ``inf`` past its count ``n_u``.

    Each user is active over a random window of the horizon (5% to all of it).
    """
    n_users = len(n_u)
    span = horizon_days * rng.uniform(0.05, 1.0, n_users)
    start = rng.uniform(0, 1, n_users) * (horizon_days - span)
    T = int(n_u.max())
    raw = rng.random((n_users, T))
    raw[np.arange(T)[None, :] >= n_u[:, None]] = np.inf
    return start[:, None] + span[:, None] * np.sort(raw, axis=1)


def _ou_step(state: np.ndarray, dt: np.ndarray, tau: float, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Exact Ornstein-Uhlenbeck transition over ``dt`` (stationary std ``scale``)."""
    rho = np.exp(-dt / tau)[:, None]
    return rho * state + np.sqrt(1.0 - rho**2) * scale * rng.standard_normal(state.shape) / np.sqrt(state.shape[1])


def drifting_stream(
    n_users: int = 1000,
    n_items: int = 1000,
    dim: int = 16,
    n_clusters: int = 20,
    activity_exponent: float = 1.8,
    min_interactions: int = 5,
    max_interactions: int = 400,
    long_term_weight: float = 0.5,
    drift_days: float = 30.0,
    trend_weight: float = 0.0,
    user_spread: float = 1.0,
    cluster_spread: float = 0.5,
    popularity: float = 0.7,
    temperature: float = 0.15,
    horizon_days: float = 365.0,
    explicit: bool = False,
    seed: int = 0,
) -> Interactions:
    """A time-stamped stream of interactions with drifting user interests (module docstring).

    Parameters
    ----------
    activity_exponent, min_interactions, max_interactions:
        the power law of interactions per user.
    long_term_weight:
        ``w`` in ``q_u(t) = w p_u + (1 - w) s_u(t) + trend_weight g(t)``; 1 means
        static tastes, 0 pure drift.
    drift_days:
        OU time-scale of ``s_u`` (and of the global trend ``g``), in days.
    user_spread:
        spread of the long-term vectors ``p_u`` around a common mean ``m``
        (2TS's small ``Var_m`` when below 1).
    popularity:
        Zipf exponent of the item bias ``b_i = -popularity * log(rank_i)``.
    explicit:
        ratings 1-5 from the standardised affinity (else all 1).

    The ground truth (``data.ground_truth``) holds ``item_vectors``,
    ``item_bias``, ``item_cluster``, ``user_long`` (``p_u``), ``common_mean``,
    ``activity`` (planned counts), ``state`` (``q_u(t)`` of each row, aligned
    with ``data.df``) and ``params``.
    """
    for name, val in {"n_users": n_users, "n_items": n_items, "dim": dim, "n_clusters": n_clusters}.items():
        if val < 1:
            raise ValueError(f"{name} must be >= 1, got {val}")
    if not 0 <= long_term_weight <= 1:
        raise ValueError(f"long_term_weight must be in [0, 1], got {long_term_weight}")
    if max_interactions > n_items:
        raise ValueError(f"max_interactions ({max_interactions}) cannot exceed n_items ({n_items}): items are not repeated")
    params = {k: v for k, v in locals().items() if k not in ("name", "val")}
    rng = np.random.default_rng(seed)

    V, cluster, _ = _clustered_items(n_items, dim, n_clusters, cluster_spread, rng)
    bias = -popularity * np.log1p(rng.permutation(n_items))
    m = rng.standard_normal(dim) / np.sqrt(dim)
    p = m + user_spread * rng.standard_normal((n_users, dim)) / np.sqrt(dim)
    n_u = power_law_counts(n_users, activity_exponent, min_interactions, max_interactions, rng)

    t_days = activity_times(n_u, horizon_days, rng)
    T = t_days.shape[1]

    # Global trend g(t) on a daily grid (shared by all users).
    grid = np.arange(int(np.ceil(horizon_days)) + 2)
    g = np.zeros((len(grid), dim))
    g[0] = rng.standard_normal(dim) / np.sqrt(dim)
    for d in range(1, len(grid)):  # loop over days of the horizon, not users
        g[d] = _ou_step(g[d - 1 : d], np.ones(1), drift_days, 1.0, rng)[0]

    chosen = np.zeros((n_users, n_items), dtype=bool)
    s = rng.standard_normal((n_users, dim)) / np.sqrt(dim)
    rows_u, rows_i, rows_t, rows_q = [], [], [], []
    for k in range(T):  # positions in a user's history; vectorised over users
        act = np.flatnonzero(n_u > k)
        if k > 0:
            dt = t_days[act, k] - t_days[act, k - 1]
            s[act] = _ou_step(s[act], dt, drift_days, 1.0, rng)
        tk = t_days[act, k]
        q = long_term_weight * p[act] + (1 - long_term_weight) * s[act]
        if trend_weight:
            q = q + trend_weight * g[np.clip(tk.astype(int), 0, len(grid) - 1)]
        logits = q @ V.T / temperature + bias
        logits[chosen[act]] = -np.inf
        item = np.argmax(logits - np.log(-np.log(rng.random(logits.shape))), axis=1)  # Gumbel-max
        chosen[act, item] = True
        rows_u.append(act), rows_i.append(item), rows_t.append(tk), rows_q.append(q)

    users, items = np.concatenate(rows_u), np.concatenate(rows_i)
    t_sec = _EPOCH + np.round(np.concatenate(rows_t) * _DAY).astype(np.int64)
    state = np.concatenate(rows_q)
    affinity = np.einsum("nd,nd->n", state, V[items])
    if explicit:
        z = (affinity - affinity.mean()) / (affinity.std() + 1e-12)
        rating = np.clip(np.round(3.5 + z + 0.5 * rng.standard_normal(len(z))), 1, 5)
    else:
        rating = np.ones(len(users))
    order = np.lexsort((items, users, t_sec))
    df = pd.DataFrame({"user": users[order], "item": items[order], "rating": rating[order], "timestamp": t_sec[order]})
    truth = {
        "item_vectors": V, "item_bias": bias, "item_cluster": cluster, "user_long": p, "common_mean": m,
        "activity": n_u, "state": state[order], "affinity": affinity[order], "params": params,
    }
    data = Interactions(df, n_users, n_items, np.arange(n_users), np.arange(n_items),
                        name="drifting-stream", ground_truth=truth)
    return data.normalised()


# --------------------------------------------------------------- large catalogues
@dataclass
class Catalogue:
    """Item embeddings ``beta`` ``[P, L]`` (float32) with their cluster structure."""

    beta: np.ndarray
    cluster: np.ndarray
    centres: np.ndarray
    spectrum: np.ndarray
    params: dict = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return self.beta.shape[0]

    @property
    def dim(self) -> int:
        return self.beta.shape[1]


def item_catalogue(
    n_items: int,
    dim: int = 32,
    n_clusters: int | None = None,
    spectrum_decay: float = 1.0,
    cluster_spread: float = 0.35,
    norm_spread: float = 0.2,
    seed: int = 0,
    chunk: int = 1 << 18,
) -> Catalogue:
    """``n_items`` embeddings of dimension ``dim`` shaped like real SVD item factors.

    Variance along coordinate ``k`` decays as ``k^-spectrum_decay`` (SVD factors
    have a decaying spectrum); items sit around ``n_clusters`` centres
    (default ``ceil(sqrt(n_items))``) whose sizes follow a Zipf law, with
    within-cluster spread ``cluster_spread``; each norm is scaled by a
    log-normal popularity factor (``norm_spread``). Generated in chunks, so
    10^6 x 128 takes a few seconds and 512 MB.
    """
    if n_items < 2 or dim < 1:
        raise ValueError(f"need n_items >= 2 and dim >= 1, got {n_items}, {dim}")
    C = int(n_clusters or np.ceil(np.sqrt(n_items)))
    rng = np.random.default_rng(seed)
    spectrum = np.arange(1, dim + 1, dtype=np.float64) ** (-spectrum_decay / 2)
    spectrum /= np.sqrt((spectrum**2).sum())  # unit expected squared norm
    centres = (rng.standard_normal((C, dim)) * spectrum).astype(np.float32)
    w = 1.0 / np.arange(1, C + 1)
    cluster = rng.choice(C, size=n_items, p=w / w.sum()).astype(np.int32)
    beta = np.empty((n_items, dim), dtype=np.float32)
    for s in range(0, n_items, chunk):
        e = min(s + chunk, n_items)
        noise = rng.standard_normal((e - s, dim), dtype=np.float32) * spectrum.astype(np.float32)
        scale = np.exp(norm_spread * rng.standard_normal((e - s, 1))).astype(np.float32)
        beta[s:e] = (centres[cluster[s:e]] + cluster_spread * noise) * scale
    params = dict(n_items=n_items, dim=dim, n_clusters=C, spectrum_decay=spectrum_decay,
                  cluster_spread=cluster_spread, norm_spread=norm_spread, seed=seed)
    return Catalogue(beta, cluster, centres, spectrum, params)


def catalogue_sessions(
    catalogue: Catalogue,
    n_users: int,
    length_range: tuple[int, int] = (10, 60),
    length_exponent: float = 2.0,
    n_interests: tuple[int, int] = (1, 3),
    temperature: float = 0.05,
    pool: int = 512,
    seed: int = 0,
    chunk: int = 256,
) -> Interactions:
    """User sessions (sets of distinct items) drawn from a :class:`Catalogue`.

    Each user has 1-3 interests (clusters, chosen in proportion to their
    size) and a taste vector ``z_u`` = mean of their centres plus noise. A
    session draws ``pool`` candidates uniformly from the user's clusters and
    keeps the ``n`` best by Gumbel-perturbed ``beta_a . z_u / temperature``
    (sampling without replacement from the softmax over the pool); ``n``
    follows a power law on ``length_range``. Rows are ordered by user, then
    position (the timestamp). Ground truth: ``user_vectors``, ``interests``.
    """
    lo, hi = length_range
    if not 2 <= lo <= hi <= pool:
        raise ValueError(f"need 2 <= length_range[0] <= length_range[1] <= pool, got {length_range}, pool={pool}")
    rng = np.random.default_rng(seed)
    beta, C = catalogue.beta, catalogue.centres.shape[0]
    order = np.argsort(catalogue.cluster, kind="stable")
    size = np.bincount(catalogue.cluster, minlength=C)
    offset = np.concatenate([[0], np.cumsum(size)[:-1]])
    nonempty = np.flatnonzero(size > 0)
    prob = size[nonempty] / size[nonempty].sum()
    m_max = n_interests[1]
    interests = nonempty[rng.choice(len(nonempty), size=(n_users, m_max), p=prob)]
    n_int = rng.integers(n_interests[0], n_interests[1] + 1, size=n_users)
    active = np.arange(m_max)[None, :] < n_int[:, None]
    z = (catalogue.centres[interests] * active[..., None]).sum(1) / n_int[:, None]
    z = z + 0.5 * rng.standard_normal(z.shape).astype(np.float32) * catalogue.spectrum.astype(np.float32)
    lengths = power_law_counts(n_users, length_exponent, lo, hi, rng)

    users_out, items_out, pos_out = [], [], []
    for s in range(0, n_users, chunk):  # chunks of users, vectorised within
        e = min(s + chunk, n_users)
        pick = rng.integers(0, n_int[s:e, None], size=(e - s, pool))
        c = np.take_along_axis(interests[s:e], pick, axis=1)
        cand = order[offset[c] + (rng.random((e - s, pool)) * size[c]).astype(np.int64)]
        score = np.einsum("upl,ul->up", beta[cand], z[s:e]) / temperature
        score -= np.log(-np.log(rng.random(score.shape)))
        srt = np.sort(cand, axis=1)  # drop repeated candidates
        dup = np.zeros_like(cand, dtype=bool)
        dup_sorted = np.concatenate([np.zeros((e - s, 1), bool), srt[:, 1:] == srt[:, :-1]], axis=1)
        idx = np.argsort(cand, axis=1, kind="stable")
        np.put_along_axis(dup, idx, dup_sorted, axis=1)
        score[dup] = -np.inf
        top = np.argsort(-score, axis=1)[:, :hi]
        keep = (np.arange(hi)[None, :] < lengths[s:e, None]) & np.isfinite(np.take_along_axis(score, top, axis=1))
        rows, cols = np.nonzero(keep)
        users_out.append(s + rows)
        items_out.append(np.take_along_axis(cand, top, axis=1)[rows, cols])
        pos_out.append(cols)
    users, items, pos = map(np.concatenate, (users_out, items_out, pos_out))
    df = pd.DataFrame({"user": users, "item": items, "rating": 1.0, "timestamp": pos})
    truth = {"user_vectors": z, "interests": np.where(active, interests, -1), "catalogue": catalogue.params}
    data = Interactions(df, n_users, catalogue.n_items, np.arange(n_users), np.arange(catalogue.n_items),
                        name=f"catalogue-{catalogue.n_items}", ground_truth=truth)
    return data.normalised()
