"""The online protocol of MeLON (Kim et al. 2022): one chronological stream in mini-batches.

The time-sorted interactions are cut into three consecutive shares::

    [ pre-training | warm-up | online test ]
      0 ........ pre_end .. train_end ..... N

The recommender is trained offline on the pre-training share; the warm-up
batches are fed to the update strategies (meta-models learn there; the base
learning rate is selected there); the online-test batches are evaluated
*prequentially* (eq. 2): each batch is scored by the current recommender
before any update uses it, then handed to the update strategy.

Each batch carries what every strategy needs, drawn once per seed so that all
strategies see the same random numbers:

- one training negative per positive, drawn uniformly among the items the user
  had not interacted with *before the end of the batch* (no future knowledge);
- the evaluation candidates: the positive and 99 items the user never
  interacted with (the paper's sampled protocol, :func:`rec_lib.data.candidate_sets`);
- the interaction history of Definition 1, capped at ``K`` neighbours: the
  user's items and the item's users strictly before the interaction's time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
import torch

from rec_lib.data.sampling import SeenItems, candidate_sets
from rec_lib.data.schema import Interactions
from rec_lib.metrics import ranking_metrics

__all__ = ["Batch", "InteractionHistory", "PastPairs", "OnlineStream", "run_prequential", "PrequentialResult"]


@dataclass
class Batch:
    """One mini-batch of the stream (all tensors on the CPU until :meth:`to`).

    ``candidates[:, 0]`` is the positive; ``user_nbrs`` / ``item_nbrs`` hold
    item ids / user ids of the capped history, valid where the masks are True.
    """

    index: int
    phase: str
    rows: np.ndarray
    users: torch.Tensor
    items: torch.Tensor
    negatives: torch.Tensor
    timestamps: torch.Tensor
    candidates: torch.Tensor
    user_nbrs: torch.Tensor
    user_nbrs_mask: torch.Tensor
    item_nbrs: torch.Tensor
    item_nbrs_mask: torch.Tensor

    def __len__(self) -> int:
        return len(self.users)

    def to(self, device: torch.device | str) -> "Batch":
        """A copy with every tensor on ``device``."""
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        return Batch(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in kw.items()})


def _segments(keys: np.ndarray, n_groups: int) -> np.ndarray:
    """CSR offsets of the groups ``0..n_groups-1`` in the sorted array ``keys``."""
    return np.searchsorted(keys, np.arange(n_groups + 1))


class InteractionHistory:
    """Definition 1: who interacted with what before time ``t``, with neighbour sampling.

    ``neighbours(owners, times, side)`` returns, for each row, up to ``K`` ids
    from the owner's history strictly before ``times`` (items of a user for
    ``side="user"``, users of an item for ``side="item"``): all of them when
    there are at most ``K``, otherwise ``K`` drawn uniformly with replacement
    (GraphSAGE-style sampling). Vectorised over rows.
    """

    def __init__(self, data: Interactions):
        self._t0 = int(data.timestamps.min()) if len(data) else 0
        self._span = int(data.timestamps.max()) - self._t0 + 2 if len(data) else 1
        self._csr = {}
        for side, own, other, n in (("user", data.users, data.items, data.n_users),
                                    ("item", data.items, data.users, data.n_items)):
            order = np.lexsort((data.timestamps, own))
            key = own[order].astype(np.int64) * self._span + (data.timestamps[order] - self._t0)
            self._csr[side] = (_segments(own[order], n), other[order], key)

    def counts(self, owners: np.ndarray, times: np.ndarray, side: str) -> np.ndarray:
        """Size of each owner's history strictly before ``times`` (a search in the (owner, time) order)."""
        offsets, _, key = self._csr[side]
        owners = np.asarray(owners, np.int64)
        t = np.clip(np.asarray(times, np.int64) - self._t0, 0, self._span - 1)
        return np.searchsorted(key, owners * self._span + t, side="left") - offsets[owners]

    def neighbours(self, owners: np.ndarray, times: np.ndarray, side: str, k: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(ids [n, k], mask [n, k])`` of sampled previous neighbours (see class doc)."""
        if k < 1:
            raise ValueError(f"the neighbour cap K must be >= 1, got {k}")
        owners, times = np.asarray(owners, np.int64), np.asarray(times, np.int64)
        offsets, other, _ = self._csr[side]
        c = self.counts(owners, times, side)
        col = np.arange(k)[None, :]
        take_all = c[:, None] <= k
        pos_all = col
        pos_sampled = np.floor(rng.random((len(owners), k)) * np.maximum(c, 1)[:, None]).astype(np.int64)
        pos = np.where(take_all, pos_all, pos_sampled)
        mask = np.where(take_all, col < c[:, None], True)
        idx = offsets[owners][:, None] + pos
        ids = np.where(mask, other[np.minimum(idx, len(other) - 1)], 0)
        return ids, mask


class PastPairs:
    """(user, item) pairs with the stream position where each first occurs.

    ``seen_before(users, items, pos)`` tells, vectorised, whether the user had
    interacted with the item at a stream position ``< pos``.
    """

    def __init__(self, data: Interactions):
        key = data.users.astype(np.int64) * data.n_items + data.items
        order = np.argsort(key, kind="stable")  # stable: the first occurrence comes first
        k_sorted = key[order]
        first = np.concatenate([[True], k_sorted[1:] != k_sorted[:-1]])
        self.keys, self.first_pos, self.n_items = k_sorted[first], order[first], data.n_items

    def seen_before(self, users: np.ndarray, items: np.ndarray, pos: np.ndarray | int) -> np.ndarray:
        q = np.asarray(users, np.int64) * self.n_items + np.asarray(items, np.int64)
        i = np.searchsorted(self.keys, q).clip(max=len(self.keys) - 1)
        return (self.keys[i] == q) & (self.first_pos[i] < np.asarray(pos))

    def sample_negatives(self, users: np.ndarray, pos: np.ndarray | int, rng: np.random.Generator,
                         max_rounds: int = 200) -> np.ndarray:
        """One item per user not interacted with before ``pos`` (uniform, by rejection)."""
        users = np.asarray(users, np.int64)
        out = rng.integers(0, self.n_items, size=len(users))
        pos = np.broadcast_to(np.asarray(pos), users.shape)
        for _ in range(max_rounds):
            bad = self.seen_before(users, out, pos)
            if not bad.any():
                return out
            out[bad] = rng.integers(0, self.n_items, size=int(bad.sum()))
        raise ValueError("negative sampling did not finish: a user has interacted with (almost) every item")


class OnlineStream:
    """A time-sorted :class:`Interactions` cut into pre-training, warm-up and test mini-batches.

    Parameters
    ----------
    data: the whole stream (rows sorted by time, as every ``Interactions`` is).
    batch_size: interactions per online mini-batch (the paper: 256).
    train_share: share of the stream before the online test (the paper: the
        recommender is trained offline on it).
    warmup_share: the last part of ``train_share`` fed online to the update
        strategies before the test (meta-models learn, the base learning rate
        is selected); 0 pre-trains on all of ``train_share``.
    n_eval_neg: sampled negatives per positive at evaluation (the paper: 99).
    n_neighbours: the cap ``K`` of the interaction history (Definition 1).
    seed: every random draw of the stream (negatives, candidates, neighbours).
    """

    PHASES = ("warmup", "test")

    def __init__(self, data: Interactions, batch_size: int = 256, train_share: float = 0.8,
                 warmup_share: float = 0.1, n_eval_neg: int = 99, n_neighbours: int = 20, seed: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 < train_share < 1:
            raise ValueError(f"train_share must be in (0, 1), got {train_share}")
        if not 0 <= warmup_share < train_share:
            raise ValueError(f"warmup_share must be in [0, train_share={train_share}), got {warmup_share}")
        if n_eval_neg < 1 or n_neighbours < 1:
            raise ValueError(f"n_eval_neg and n_neighbours must be >= 1, got {n_eval_neg}, {n_neighbours}")
        n = len(data)
        self.pre_end = int(round((train_share - warmup_share) * n))
        self.train_end = int(round(train_share * n))
        if self.pre_end < 1 or self.train_end >= n:
            raise ValueError(f"the shares leave an empty part of a stream of {n} interactions")
        self.data, self.batch_size, self.n_eval_neg, self.n_neighbours = data, batch_size, n_eval_neg, n_neighbours
        self.seed = seed
        self.n_users, self.n_items = data.n_users, data.n_items
        self.pretrain = data.subset(np.arange(self.pre_end), name=f"{data.name}-pretrain")
        self.seen_pretrain = SeenItems.from_interactions(self.pretrain)
        self.seen_all = SeenItems.from_interactions(data)
        self.history = InteractionHistory(data)
        self.past = PastPairs(data)
        self._batches: dict[str, list[Batch]] = {}

    def phase_rows(self, phase: str) -> np.ndarray:
        """Stream positions of a phase: ``"pretrain"``, ``"warmup"`` or ``"test"``."""
        bounds = {"pretrain": (0, self.pre_end), "warmup": (self.pre_end, self.train_end),
                  "test": (self.train_end, len(self.data))}
        if phase not in bounds:
            raise ValueError(f"phase must be one of {sorted(bounds)}, got {phase!r}")
        return np.arange(*bounds[phase])

    def batches(self, phase: str) -> list[Batch]:
        """The mini-batches of ``"warmup"`` or ``"test"`` (built once, then cached)."""
        if phase not in self.PHASES:
            raise ValueError(f"online phases are {self.PHASES}, got {phase!r}")
        if phase not in self._batches:
            rows = self.phase_rows(phase)
            chunks = [rows[s : s + self.batch_size] for s in range(0, len(rows), self.batch_size)]
            first = 0 if phase == "warmup" else len(self.batches("warmup"))
            self._batches[phase] = [self._make(first + b, phase, r) for b, r in enumerate(chunks)]
        return self._batches[phase]

    REPLAY_OFFSET = 1_000_000  # batch indices of the replayed pre-training share (their own random draws)

    def replay_batches(self, last: int | None = None) -> list[Batch]:
        """The pre-training share cut into batches, for meta-training before the online phase.

        ``last`` keeps only the last ``last`` batches (those nearest the
        online phase). Phase ``"pretrain"``; negatives and neighbours are
        drawn as for the online batches, with their own random numbers.
        """
        if last is not None and last < 1:
            raise ValueError(f"last must be None or >= 1, got {last}")
        key = f"pretrain-{last}"
        if key not in self._batches:
            rows = self.phase_rows("pretrain")
            chunks = [rows[s : s + self.batch_size] for s in range(0, len(rows), self.batch_size)]
            chunks = chunks if last is None else chunks[-last:]
            self._batches[key] = [self._make(self.REPLAY_OFFSET + b, "pretrain", r) for b, r in enumerate(chunks)]
        return self._batches[key]

    def _make(self, index: int, phase: str, rows: np.ndarray) -> Batch:
        rng = np.random.default_rng([self.seed, index])  # same draws for every strategy
        u, i, t = self.data.users[rows], self.data.items[rows], self.data.timestamps[rows]
        neg = self.past.sample_negatives(u, rows[-1] + 1, rng)
        cand = candidate_sets(u, i, self.n_eval_neg, self.seen_all, rng)
        un, um = self.history.neighbours(u, t, "user", self.n_neighbours, rng)
        inb, im = self.history.neighbours(i, t, "item", self.n_neighbours, rng)
        T = lambda a, dt=torch.long: torch.as_tensor(np.ascontiguousarray(a), dtype=dt)  # noqa: E731
        return Batch(index, phase, rows, T(u), T(i), T(neg), T(t), T(cand), T(un), T(um, torch.bool),
                     T(inb), T(im, torch.bool))

    def item_counts(self, end: int) -> np.ndarray:
        """Interactions per item at stream positions ``< end`` (item popularity so far)."""
        return np.bincount(self.data.items[:end], minlength=self.n_items)

    def summary(self) -> dict[str, int]:
        pre_users = np.unique(self.data.users[: self.train_end])
        test = self.phase_rows("test")
        return {"interactions": len(self.data), "pretrain": self.pre_end, "warmup": self.train_end - self.pre_end,
                "test": len(test), "warmup_batches": len(self.batches("warmup")),
                "test_batches": len(self.batches("test")),
                "test_from_new_users": int((~np.isin(self.data.users[test], pre_users)).sum())}


@dataclass
class PrequentialResult:
    """What a prequential run measured: ranks of every test positive, metrics per batch."""

    ranks: torch.Tensor
    per_batch: pd.DataFrame

    def metrics(self, ks: Sequence[int] = (5, 10, 20)) -> dict[str, float]:
        """HR@k (= recall@k) and NDCG@k over all test interactions."""
        m = ranking_metrics(self.ranks, ks, ("recall", "ndcg"))
        return {k.replace("recall", "hr"): v for k, v in m.items()}


def run_prequential(
    score: Callable[[Batch], torch.Tensor],
    update: Callable[[Batch], None],
    stream: OnlineStream,
    phases: Iterable[str] = ("warmup", "test"),
    evaluate: Iterable[str] = ("test",),
    ks: Sequence[int] = (5, 10, 20),
) -> PrequentialResult:
    """Prequential evaluation (eq. 2): for each batch, *first* rank, *then* update.

    ``score(batch)`` returns the rank of each positive among its candidates
    (computed before ``update(batch)`` is called for that batch); batches of
    the phases in ``evaluate`` are scored, the others only fed to ``update``.
    """
    evaluate = tuple(evaluate)
    ranks, rows = [], []
    for phase in phases:
        for batch in stream.batches(phase):
            if phase in evaluate:
                r = score(batch).cpu()
                ranks.append(r)
                rows.append({"batch": batch.index, "phase": phase, "n": len(r),
                             **{k.replace("recall", "hr"): v for k, v in ranking_metrics(r, ks, ("recall", "ndcg")).items()}})
            update(batch)
    if not ranks:
        raise ValueError(f"no batch was evaluated: evaluate={evaluate} names no phase of {tuple(phases)}")
    return PrequentialResult(torch.cat(ranks), pd.DataFrame(rows))
