"""Splits used by the chapters: by user, by global time, into periods, per-user halves.

Every split returns :class:`Interactions` that keep the parent's id space.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from rec_lib.data.schema import Interactions

__all__ = [
    "split_users",
    "split_by_time",
    "assign_periods",
    "calendar_periods",
    "split_periods",
    "split_user_items",
    "Sequences",
    "user_sequences",
]


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    f = np.asarray(fractions, dtype=float)
    if f.ndim != 1 or len(f) < 2 or (f < 0).any() or not np.isclose(f.sum(), 1.0):
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {tuple(fractions)}")
    return f


def split_users(data: Interactions, fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0) -> list[Interactions]:
    """Randomly partition the *users* (with all their interactions) by ``fractions``.

    DiPS uses 60/20/20, the offline-policy chapter 80/10/10.
    """
    f = _check_fractions(fractions)
    users = np.unique(data.users)
    perm = np.random.default_rng(seed).permutation(users)
    cuts = np.round(np.cumsum(f)[:-1] * len(users)).astype(int)
    group = np.empty(data.n_users, dtype=np.int64)
    for g, part in enumerate(np.split(perm, cuts)):
        group[part] = g
    g_rows = group[data.users]
    names = ["train", "val", "test"] if len(f) == 3 else [f"part{i}" for i in range(len(f))]
    return [data.subset(g_rows == g, name=f"{data.name}-{names[g]}") for g in range(len(f))]


def split_by_time(data: Interactions, fractions: Sequence[float] = (0.7, 0.1, 0.2)) -> list[Interactions]:
    """Cut the time-sorted interactions into consecutive shares (2TS: 70/10/20).

    Cuts fall at interaction counts, so the shares are exact; interactions
    sharing a timestamp at a cut are split by the deterministic (time, user,
    item) order of the schema.
    """
    f = _check_fractions(fractions)
    cuts = np.round(np.cumsum(f)[:-1] * len(data)).astype(int)
    idx = np.split(np.arange(len(data)), cuts)
    names = ["train", "val", "test"] if len(f) == 3 else [f"part{i}" for i in range(len(f))]
    return [data.subset(i, name=f"{data.name}-{n}") for i, n in zip(idx, names)]


def assign_periods(data: Interactions, n_periods: int) -> np.ndarray:
    """Period id of each interaction: ``n_periods`` periods of (nearly) equal count.

    This is SML's protocol for Yelp (40 equal-count periods).
    """
    if not 1 <= n_periods <= len(data):
        raise ValueError(f"n_periods must be in [1, {len(data)}], got {n_periods}")
    return (np.arange(len(data)) * n_periods) // len(data)


def calendar_periods(
    data: Interactions,
    freq: str | None = None,
    day_parts: Sequence[int] | None = None,
    tz: str = "UTC",
) -> np.ndarray:
    """Period id of each interaction from calendar windows, numbered from 0 in time order.

    ``freq``: fixed-width windows (``"1D"``, ``"6h"``, ``"7D"``) or calendar
    periods (``"M"``, ``"Q"``, ``"Y"``), in the wall time of ``tz``.
    ``day_parts``: hours at which a day is cut, e.g. ``(0, 10, 17)`` for SML's
    Adressa morning (0-10), afternoon (10-17) and evening (17-24) periods.
    Exactly one of the two must be given. Empty windows get no id.
    """
    if (freq is None) == (day_parts is None):
        raise ValueError("give exactly one of freq (e.g. '1D') or day_parts (e.g. (0, 10, 17))")
    wall = pd.to_datetime(data.timestamps, unit="s", utc=True).tz_convert(tz).tz_localize(None).as_unit("ns")
    if freq is not None:
        try:  # fixed-width windows: "1D", "6h", "7D"
            width = pd.Timedelta(freq)
            key = wall.asi8 // width.value
        except ValueError:  # calendar windows of varying width: "M", "Q", "Y"
            key = wall.to_period(freq).asi8
    else:
        parts = np.asarray(sorted(day_parts), dtype=int)
        if parts[0] != 0 or (parts >= 24).any() or len(np.unique(parts)) != len(parts):
            raise ValueError(f"day_parts must start at 0 and be distinct hours < 24, got {tuple(day_parts)}")
        day = wall.asi8 // 86_400_000_000_000
        part = np.searchsorted(parts, np.asarray(wall.hour), side="right") - 1
        key = day * len(parts) + part
    _, ids = np.unique(key, return_inverse=True)
    return ids.astype(np.int64)


def split_periods(data: Interactions, periods: np.ndarray) -> list[Interactions]:
    """One :class:`Interactions` per period id (``periods`` from the two functions above)."""
    periods = np.asarray(periods)
    if periods.shape != (len(data),):
        raise ValueError(f"periods must have one id per interaction ({len(data)}), got {periods.shape}")
    order = np.argsort(periods, kind="stable")
    bounds = np.flatnonzero(np.diff(periods[order])) + 1
    return [data.subset(np.sort(rows), name=f"{data.name}-p{int(periods[rows[0]])}")
            for rows in np.split(order, bounds)]


def split_user_items(data: Interactions, fraction: float = 0.5, seed: int = 0, by: str = "random") -> tuple[Interactions, Interactions]:
    """Split each user's interactions into two parts (context X, target Y).

    The session-completion protocol of the offline-policy chapter: each user's
    items split 50/50 into the observed part X and the reward set Y.
    ``by="random"`` shuffles within the user (seeded), ``by="time"`` puts the
    first ``fraction`` of the user's history in X. A user with n interactions
    gets ``floor(n * fraction)`` of them in X (at least 1 when n >= 2).
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    if by not in ("random", "time"):
        raise ValueError(f"by must be 'random' or 'time', got {by!r}")
    users = data.users
    if by == "random":
        key = np.random.default_rng(seed).random(len(data))
        order = np.lexsort((key, users))
    else:
        order = np.lexsort((np.arange(len(data)), users))
    counts = np.bincount(users, minlength=data.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(len(data)) - starts[users[order]]
    n_x = np.floor(counts * fraction).astype(int)
    n_x = np.where((counts >= 2) & (n_x == 0), 1, n_x)
    in_x = np.empty(len(data), dtype=bool)
    in_x[order] = pos < n_x[users[order]]
    return data.subset(in_x, name=f"{data.name}-X"), data.subset(~in_x, name=f"{data.name}-Y")


@dataclass
class Sequences:
    """Per-user chronological sequences in CSR form.

    ``items[offsets[k]:offsets[k+1]]`` is the sequence of user ``users[k]``
    (likewise ``ratings`` and ``timestamps``).
    """

    users: np.ndarray
    offsets: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, k: int) -> np.ndarray:
        return self.items[self.offsets[k] : self.offsets[k + 1]]

    def padded(self, max_len: int | None = None, pad: int = 0, keep: str = "last",
               field: str = "items") -> tuple[torch.Tensor, torch.Tensor]:
        """A right-padded ``[n_users, T]`` tensor and the lengths.

        Sequences longer than ``max_len`` keep their ``last`` (or ``first``)
        ``max_len`` entries. ``field`` picks items, ratings or timestamps.
        """
        values = getattr(self, field)
        lengths = self.lengths
        T = int(lengths.max()) if max_len is None else int(max_len)
        take = np.minimum(lengths, T)
        start = self.offsets[:-1] + (lengths - take if keep == "last" else 0)
        col = np.arange(T)
        valid = col[None, :] < take[:, None]
        src = np.where(valid, start[:, None] + col[None, :], 0)
        out = np.where(valid, values[src], pad)
        return torch.as_tensor(out), torch.as_tensor(take)


def user_sequences(data: Interactions, min_length: int = 1) -> Sequences:
    """Each user's interactions in time order (users with < ``min_length`` dropped)."""
    order = np.lexsort((np.arange(len(data)), data.users))  # by user, then time (rows are time-sorted)
    users_sorted = data.users[order]
    counts = np.bincount(users_sorted, minlength=data.n_users)
    keep_users = np.flatnonzero(counts >= max(min_length, 1))
    keep_rows = np.isin(users_sorted, keep_users)
    order = order[keep_rows]
    lengths = counts[keep_users]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return Sequences(
        users=keep_users.astype(np.int64),
        offsets=offsets,
        items=data.items[order],
        ratings=data.ratings[order],
        timestamps=data.timestamps[order],
    )
