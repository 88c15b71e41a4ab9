"""Planted heterogeneous drift: a stream whose truth says which rows need large learning rates.

:func:`planted_drift_stream` draws a stream in which a share of the users
(``"fast"``) follow tastes that drift (an Ornstein-Uhlenbeck process, long-term
weight ``w = 0``) while the others (``"stable"``) keep fixed tastes (``w = 1``);
the items are static (fixed vectors, no global trend). The truth is then known:
a good online update moves the rows of the fast users far, the rows of the
stable users little, and the item rows little. With ``alike=True`` every user
drifts alike (``w = 0.5`` for all) and the two halves are labelled the same
way at random: a control where per-row rates have nothing to find.

The functions below read a trained MeLON against that truth:
:func:`rates_by_group` (its mean rate per user type x parameter group, over the
pairs each interaction involves), :func:`two_way_decomposition` (how much of
the variance of ``W`` over involved pairs is a row effect, a column effect, or
an interaction: the two-directional part), :func:`gradient_correlations`
(Spearman of rate and ``|g|`` within each parameter group).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from rec_lib.data.schema import Interactions
from rec_lib.data.synthetic import _EPOCH, _DAY, _clustered_items, _ou_step, activity_times, power_law_counts

__all__ = ["planted_drift_stream", "pair_groups", "rates_by_group", "two_way_decomposition",
           "gradient_correlations", "USER_TYPES"]

USER_TYPES = ("fast", "stable")


def planted_drift_stream(n_users: int = 500, n_items: int = 500, dim: int = 16, fast_share: float = 0.5,
                         alike: bool = False, max_interactions: int = 200, min_interactions: int = 5,
                         activity_exponent: float = 1.8, drift_days: float = 20.0, n_clusters: int = 20,
                         popularity: float = 0.7, temperature: float = 0.15, horizon_days: float = 365.0,
                         seed: int = 0) -> Interactions:
    """A stream where a share of the users drift fast and the others keep their tastes (module doc).

    A user's taste at its ``k``-th interaction is ``q_u = w_u p_u + (1 - w_u) s_u(t)``
    with ``p_u`` fixed and ``s_u`` an OU process of time-scale ``drift_days``;
    ``w_u = 0`` for fast users, ``1`` for stable ones (``alike``: ``0.5`` for
    everyone). The item chosen is the Gumbel-max of ``q_u . v_i / temperature +
    b_i`` among items the user has not chosen yet. ``ground_truth`` holds
    ``user_type`` (``"fast"``/``"stable"`` per user; with ``alike`` a random
    label of the same shares), ``weight`` (``w_u``), ``item_vectors`` and
    ``params``.
    """
    if min(n_users, n_items, dim) < 2:
        raise ValueError(f"n_users, n_items and dim must be >= 2, got {n_users}, {n_items}, {dim}")
    if not 0 < fast_share < 1:
        raise ValueError(f"fast_share must be in (0, 1), got {fast_share}")
    if max_interactions > n_items or min_interactions < 1 or min_interactions > max_interactions:
        raise ValueError(f"need 1 <= min_interactions <= max_interactions <= n_items, got "
                         f"{min_interactions}, {max_interactions}, {n_items}")
    params = {k: v for k, v in locals().items()}
    rng = np.random.default_rng(seed)
    V, _, _ = _clustered_items(n_items, dim, n_clusters, 0.5, rng)
    bias = -popularity * np.log1p(rng.permutation(n_items))
    p = rng.standard_normal((n_users, dim)) / np.sqrt(dim)
    fast = np.zeros(n_users, dtype=bool)
    fast[rng.permutation(n_users)[: int(round(fast_share * n_users))]] = True
    w = np.full(n_users, 0.5) if alike else np.where(fast, 0.0, 1.0)
    n_u = power_law_counts(n_users, activity_exponent, min_interactions, max_interactions, rng)
    t_days = activity_times(n_u, horizon_days, rng)
    T = t_days.shape[1]
    chosen = np.zeros((n_users, n_items), dtype=bool)
    s = rng.standard_normal((n_users, dim)) / np.sqrt(dim)
    rows_u, rows_i, rows_t = [], [], []
    for k in range(T):  # positions in a user's history, vectorised over users
        act = np.flatnonzero(n_u > k)
        if k > 0:
            s[act] = _ou_step(s[act], t_days[act, k] - t_days[act, k - 1], drift_days, 1.0, rng)
        q = w[act, None] * p[act] + (1 - w[act, None]) * s[act]
        logits = q @ V.T / temperature + bias
        logits[chosen[act]] = -np.inf
        item = np.argmax(logits - np.log(-np.log(rng.random(logits.shape))), axis=1)
        chosen[act, item] = True
        rows_u.append(act), rows_i.append(item), rows_t.append(t_days[act, k])
    users, items = np.concatenate(rows_u), np.concatenate(rows_i)
    t_sec = _EPOCH + np.round(np.concatenate(rows_t) * _DAY).astype(np.int64)
    order = np.lexsort((items, users, t_sec))
    df = pd.DataFrame({"user": users[order], "item": items[order], "rating": 1.0, "timestamp": t_sec[order]})
    truth = {"user_type": np.where(fast, "fast", "stable"), "weight": w, "item_vectors": V, "params": params}
    name = "planted-drift-alike" if alike else "planted-drift"
    return Interactions(df, n_users, n_items, np.arange(n_users), np.arange(n_items), name=name,
                        ground_truth=truth).normalised()


def pair_groups(ps) -> list[tuple[str, int, int]]:
    """``(group, start, stop)`` column ranges of the per-sample layout ``[n, M_local]`` (``_flat`` order).

    Groups: ``"user row"`` (user tables), ``"positive item row"`` and
    ``"negative item row"`` (item tables, slot 0 and 1), ``"dense"``.
    """
    out, start = [], 0
    for k, g in ps.grads.items():
        size = g[0].numel()
        if g.ndim == 3 and g.shape[1] == 2:  # item table: [n, 2, d], positive then negative
            d = g.shape[2]
            out += [("positive item row", start, start + d), ("negative item row", start + d, start + 2 * d)]
        elif g.ndim == 3 and g.shape[1] == 1:
            out.append(("user row", start, start + size))
        else:
            out.append(("dense", start, start + size))
        start += size
    return out


def _per_group(strategy, batches: Sequence, fn) -> pd.DataFrame:
    frames = []
    for batch in batches:
        w, ps = strategy.pair_rates(batch)
        G = torch.cat([g.reshape(ps.n, -1) for g in ps.grads.values()], -1)
        for group, a, b in pair_groups(ps):
            frames.append(fn(batch, group, w[:, a:b], G[:, a:b]))
    df = pd.concat(frames, ignore_index=True)
    return df


def rates_by_group(strategy, batches: Sequence, user_type: np.ndarray | None = None) -> pd.DataFrame:
    """Mean rate / eta of each interaction per parameter group, with the type of its user.

    One row per (interaction, group): ``user``, ``user_type`` (from
    ``user_type[user]``, or ``"all"``), ``group``, ``rate`` (mean of ``w / eta``
    over the group's entries of that interaction: only pairs it involves).
    """
    def one(batch, group, w, g):
        users = batch.users.numpy()
        kind = user_type[users] if user_type is not None else np.full(len(users), "all")
        return pd.DataFrame({"user": users, "user_type": kind, "group": group,
                             "rate": (w.mean(1) / strategy.lr).cpu().numpy()})
    return _per_group(strategy, batches, one)


def gradient_correlations(strategy, batches: Sequence) -> pd.Series:
    """Spearman correlation of the rate and ``|g|`` over the involved pairs *within* each parameter group."""
    def one(batch, group, w, g):
        return pd.DataFrame({"group": group, "w": w.reshape(-1).cpu().numpy(),
                             "abs_grad": g.abs().reshape(-1).cpu().numpy()})
    df = _per_group(strategy, batches, one)
    return df.groupby("group").apply(lambda d: d["w"].corr(d["abs_grad"], method="spearman"),
                                     include_groups=False)


def two_way_decomposition(W: torch.Tensor | np.ndarray, involved: torch.Tensor | np.ndarray,
                          iters: int = 50, min_per_line: int = 2) -> dict[str, float]:
    """Shares of the variance of ``W`` over involved pairs: row effect, column effect, interaction.

    Only involved entries count, and only columns involved by at least
    ``min_per_line`` interactions and rows with at least ``min_per_line``
    such columns (an entry alone in its column is fitted exactly by the
    column effect and says nothing about interaction). The additive model
    ``mu + a_x + b_m`` is fitted by alternating least squares on the observed
    entries. ``row`` = share explained by row means alone, ``column`` = what
    adding the column effects explains on top, ``interaction`` = the rest
    (1 - R^2 of the additive model): the part no one-directional matrix can
    express. The three sum to 1. Also returns ``n_pairs``, ``rows``, ``cols``.
    """
    A = torch.as_tensor(W).detach().cpu().double().numpy()
    mask = torch.as_tensor(involved).cpu().numpy().astype(bool)
    for _ in range(3):  # prune lines with too few observations (a few rounds settle it)
        cols = mask.sum(0) >= min_per_line
        mask &= cols[None, :]
        rows = mask.sum(1) >= min_per_line
        mask &= rows[:, None]
    n_obs = int(mask.sum())
    if n_obs < 3:
        raise ValueError("fewer than 3 involved pairs remain after pruning: no decomposition")
    y = np.where(mask, A, 0.0)
    mu = y.sum() / n_obs
    total = float(((A - mu) ** 2)[mask].sum())
    if total == 0:
        return {"row": 0.0, "column": 0.0, "interaction": 0.0, "n_pairs": n_obs,
                "rows": int(mask.any(1).sum()), "cols": int(mask.any(0).sum())}
    nr, nc = mask.sum(1).clip(min=1), mask.sum(0).clip(min=1)
    row_only = np.where(mask.any(1), (y.sum(1) / nr), mu)
    ss_row = float(((row_only[:, None] - mu) ** 2 * mask).sum())
    a, b = row_only - mu, np.zeros(A.shape[1])
    for _ in range(iters):
        b = np.where(mask, A - mu - a[:, None], 0.0).sum(0) / nc
        a = np.where(mask, A - mu - b[None, :], 0.0).sum(1) / nr
    resid = float(((A - mu - a[:, None] - b[None, :]) ** 2)[mask].sum())
    r2_add = 1.0 - resid / total
    r2_row = ss_row / total
    return {"row": r2_row, "column": max(r2_add - r2_row, 0.0), "interaction": resid / total, "n_pairs": n_obs,
            "rows": int(mask.any(1).sum()), "cols": int(mask.any(0).sum())}
