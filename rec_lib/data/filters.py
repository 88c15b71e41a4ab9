"""Filters: implicit feedback from ratings, k-core, de-duplication."""

from __future__ import annotations

import numpy as np

from rec_lib.data.schema import Interactions

__all__ = ["to_implicit", "k_core", "drop_repeats", "min_user_interactions"]


def to_implicit(data: Interactions, threshold: float | None = None, reindex: bool = True) -> Interactions:
    """Keep interactions with ``rating >= threshold`` and set their rating to 1.

    ``threshold=None`` keeps every interaction (any rating counts as a positive).
    E.g. DiPS uses ``rating >= 4`` on MovieLens and ``rating > 3.5`` on Amazon Book.
    """
    keep = np.ones(len(data), bool) if threshold is None else data.ratings >= threshold
    out = data.subset(keep, name=f"{data.name}-implicit")
    out.df["rating"] = np.float32(1.0)
    return out.reindexed() if reindex else out


def k_core(data: Interactions, user_k: int = 5, item_k: int | None = None, max_rounds: int = 100) -> Interactions:
    """Iteratively drop users with < ``user_k`` and items with < ``item_k`` interactions.

    Repeats until both conditions hold (removing items can push users below
    the threshold and vice versa); the result is reindexed contiguously.
    """
    item_k = user_k if item_k is None else item_k
    if user_k < 1 or item_k < 1:
        raise ValueError(f"k-core thresholds must be >= 1, got user_k={user_k}, item_k={item_k}")
    keep = np.ones(len(data), dtype=bool)
    users, items = data.users, data.items
    for _ in range(max_rounds):
        u_cnt = np.bincount(users[keep], minlength=data.n_users)
        i_cnt = np.bincount(items[keep], minlength=data.n_items)
        new = keep & (u_cnt[users] >= user_k) & (i_cnt[items] >= item_k)
        if new.sum() == keep.sum():
            break
        keep = new
    else:
        raise RuntimeError(f"k-core did not converge in {max_rounds} rounds")
    if not keep.any():
        raise ValueError(f"{data.name}: nothing is left after the ({user_k}, {item_k})-core filter")
    return data.subset(keep, name=f"{data.name}-{user_k}core").reindexed()


def drop_repeats(data: Interactions, keep: str = "first") -> Interactions:
    """Keep one interaction per (user, item) pair (the first or last in time)."""
    if keep not in ("first", "last"):
        raise ValueError(f"keep must be 'first' or 'last', got {keep!r}")
    dup = data.df.duplicated(["user", "item"], keep=keep).to_numpy()
    return data.subset(~dup)


def min_user_interactions(data: Interactions, k: int) -> Interactions:
    """Drop users with fewer than ``k`` interactions (items untouched), reindexed."""
    cnt = np.bincount(data.users, minlength=data.n_users)
    return data.subset(cnt[data.users] >= k).reindexed()
