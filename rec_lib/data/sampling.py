"""Negative sampling that excludes a user's positives, and sampled candidate sets.

A :class:`SeenItems` index answers "has user u interacted with item i?" for
whole arrays at once (sorted ``u * n_items + i`` keys and ``searchsorted``),
so sampling is vectorised over users: no Python loop over users or items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rec_lib.data.schema import Interactions

__all__ = ["SeenItems", "sample_negatives", "candidate_sets", "training_negatives", "padded_rows",
           "padding_report", "PaddingWarning"]

_EXACT_MAX_ITEMS = 200_000  # up to this catalogue size, exact sampling without replacement


@dataclass
class SeenItems:
    """The set of (user, item) pairs a user must never get as a negative."""

    n_users: int
    n_items: int
    keys: np.ndarray  # sorted unique user * n_items + item

    @classmethod
    def from_interactions(cls, *parts: Interactions) -> "SeenItems":
        """Union of the pairs in one or more :class:`Interactions` of one id space."""
        if not parts:
            raise ValueError("SeenItems needs at least one Interactions")
        n_users, n_items = parts[0].n_users, parts[0].n_items
        if any((p.n_users, p.n_items) != (n_users, n_items) for p in parts):
            raise ValueError("all parts must share one id space (n_users, n_items)")
        keys = np.concatenate([p.users.astype(np.int64) * n_items + p.items for p in parts])
        return cls(n_users, n_items, np.unique(keys))

    @classmethod
    def from_pairs(cls, users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> "SeenItems":
        return cls(n_users, n_items, np.unique(np.asarray(users, np.int64) * n_items + np.asarray(items)))

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Boolean array, broadcasting ``users`` against ``items``."""
        q = np.asarray(users, np.int64) * self.n_items + np.asarray(items, np.int64)
        if len(self.keys) == 0:
            return np.zeros(q.shape, bool)
        pos = np.searchsorted(self.keys, q).clip(max=len(self.keys) - 1)
        return self.keys[pos] == q

    def mask(self, users: np.ndarray) -> np.ndarray:
        """Boolean ``[len(users), n_items]``: True where the user has interacted with the item."""
        users = np.asarray(users, np.int64)
        lo = np.searchsorted(self.keys, users * self.n_items)
        hi = np.searchsorted(self.keys, (users + 1) * self.n_items)
        n = hi - lo
        rows = np.repeat(np.arange(len(users)), n)
        pos = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + np.repeat(lo, n)
        out = np.zeros((len(users), self.n_items), dtype=bool)
        out[rows, self.keys[pos] - users[rows] * self.n_items] = True
        return out

    def counts(self, users: np.ndarray) -> np.ndarray:
        """Number of seen items of each user in ``users``."""
        lo = np.searchsorted(self.keys, np.asarray(users, np.int64) * self.n_items)
        hi = np.searchsorted(self.keys, (np.asarray(users, np.int64) + 1) * self.n_items)
        return hi - lo


def sample_negatives(
    users: np.ndarray,
    n: int,
    seen: SeenItems,
    rng: np.random.Generator,
    replace: bool = False,
    chunk: int | None = None,
) -> np.ndarray:
    """``[len(users), n]`` items each user has not interacted with, uniformly at random.

    ``replace=False`` (default) draws distinct items per row, exactly uniform
    without replacement: each row ranks random keys over the catalogue with
    seen items pushed last (cost ``O(B * P)``, chunked; used up to 200,000
    items, beyond which rejection sampling with replacement is used, where a
    repeat has probability about ``n / P``). A user with fewer than ``n``
    unseen items gets all of them and the rest drawn again from them (with
    replacement): ML-100K's most active user leaves 945 unseen movies, fewer
    than the 999 negatives of SML's protocol.
    """
    users = np.asarray(users, dtype=np.int64)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    P = seen.n_items
    if replace or P > _EXACT_MAX_ITEMS:
        return _rejection(users, n, seen, rng)
    out = np.empty((len(users), n), dtype=np.int64)
    k = min(n, P)
    chunk = chunk or max(1, (1 << 23) // P)  # about 32 MB of keys at a time
    for s in range(0, len(users), chunk):
        u = users[s : s + chunk]
        keys = rng.random((len(u), P), dtype=np.float32)
        keys[seen.mask(u)] = 2.0  # seen items sort last
        part = np.argpartition(keys, k - 1, axis=1)[:, :k]
        out[s : s + len(u), :k] = part
        bad = np.take_along_axis(keys, part, axis=1) >= 2.0  # ran out of unseen items
        short = np.flatnonzero(bad.any(axis=1) | (k < n))
        for r in short:  # rare: only users with fewer than n unseen items (loop over those rows)
            pool = part[r][~bad[r]] if bad[r].any() else part[r]
            if len(pool) == 0:
                raise ValueError(f"user {u[r]} has interacted with every item; no negative exists")
            fill = n - len(pool)
            out[s + r] = np.concatenate([pool, rng.choice(pool, size=fill, replace=True)])
    return out


def _rejection(users: np.ndarray, n: int, seen: SeenItems, rng: np.random.Generator, max_rounds: int = 100) -> np.ndarray:
    out = rng.integers(0, seen.n_items, size=(len(users), n))
    for _ in range(max_rounds):
        bad = seen.contains(users[:, None], out)
        if not bad.any():
            return out
        out[bad] = rng.integers(0, seen.n_items, size=int(bad.sum()))
    full = seen.counts(np.unique(users[bad.any(axis=1)])) >= seen.n_items
    raise ValueError("a user has interacted with every item; no negative exists" if full.any()
                     else f"rejection sampling did not finish in {max_rounds} rounds")


def candidate_sets(
    users: np.ndarray,
    positives: np.ndarray,
    n_neg: int,
    seen: SeenItems,
    rng: np.random.Generator,
    replace: bool = False,
) -> np.ndarray:
    """``[B, 1 + n_neg]`` candidates: column 0 the positive, then sampled negatives.

    The protocol of the sampled metrics: MeLON ranks 1 + 99, 2TS 1 + 499, SML
    1 + 999 items. ``seen`` must contain every (user, positive) pair so a
    positive is never drawn as its own negative.
    """
    users, positives = np.asarray(users, np.int64), np.asarray(positives, np.int64)
    if users.shape != positives.shape or users.ndim != 1:
        raise ValueError(f"users and positives must be 1-D of equal length, got {users.shape}, {positives.shape}")
    if not seen.contains(users, positives).all():
        raise ValueError("every (user, positive) pair must be in `seen`, or a positive could be drawn as a negative")
    negs = sample_negatives(users, n_neg, seen, rng, replace=replace)
    return np.concatenate([positives[:, None], negs], axis=1)


def training_negatives(users: np.ndarray, seen: SeenItems, rng: np.random.Generator, k: int = 1) -> np.ndarray:
    """``k`` negatives per row for training (with replacement, by rejection): ``[B]`` or ``[B, k]``."""
    neg = _rejection(np.asarray(users, np.int64), k, seen, rng)
    return neg[:, 0] if k == 1 else neg


class PaddingWarning(UserWarning):
    """More candidate rows than a small share were padded with repeated negatives."""


def padded_rows(users: np.ndarray, n: int, seen: SeenItems) -> np.ndarray:
    """Boolean ``[len(users)]``: rows whose user has fewer than ``n`` unseen items.

    :func:`sample_negatives` (exact path, catalogues up to 200,000 items)
    gives such a row every unseen item and fills the rest with repeats drawn
    from them, so its ``n`` negatives are not distinct. Deterministic: it
    depends only on ``seen``, not on the draw.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    unseen = seen.n_items - seen.counts(np.asarray(users, np.int64))
    return unseen < n


def padding_report(users: np.ndarray, n: int, seen: SeenItems, warn_above: float | None = 0.01) -> dict:
    """How many candidate rows :func:`candidate_sets` pads with repeated negatives.

    Returns ``rows`` (all rows), ``padded`` (rows whose user has fewer than
    ``n`` unseen items), ``share`` (``padded / rows``), ``repeats`` (the
    number of repeated negatives over all rows: ``sum(n - unseen)`` over the
    padded rows) and ``users_padded`` (distinct users concerned). Warns with
    :class:`PaddingWarning` when ``share`` exceeds ``warn_above`` (``None``:
    never). Covers the exact sampler; beyond 200,000 items (rejection
    sampling with replacement) a row repeats an item with probability about
    ``n**2 / (2 * n_items)`` instead.
    """
    users = np.asarray(users, np.int64)
    unseen = seen.n_items - seen.counts(users)
    pad = unseen < n
    rows = int(len(users))
    out = {
        "n": int(n),
        "rows": rows,
        "padded": int(pad.sum()),
        "share": float(pad.mean()) if rows else 0.0,
        "repeats": int((n - unseen[pad]).sum()),
        "users_padded": int(len(np.unique(users[pad]))),
    }
    if warn_above is not None and out["share"] > warn_above:
        import warnings

        warnings.warn(
            f"{out['padded']} of {rows} candidate rows ({out['share']:.1%}) have fewer than {n} unseen items "
            f"and are padded with repeated negatives; use fewer negatives or a larger catalogue",
            PaddingWarning,
            stacklevel=2,
        )
    return out
