"""The 2TS evaluation protocol (paper Section 5) and the sequence plumbing every method shares.

Interactions sorted by time are cut 70 / 10 / 20 into train, validation and
test (:func:`prepare`). Every validation or test interaction is ranked against
499 items the user never interacted with, drawn once per seed and shared by all
methods (paired comparisons); MRR and Recall@10 summarise the ranks.

Sequential methods predict the interaction at position ``p`` of a user's
chronological sequence (train, then validation, then test interactions) from
a state computed on the positions before ``p``: during evaluation the states
keep updating along the validation and test interactions, as in the paper's
online setting (eq. 3). :func:`windows` cuts per-user position ranges into one
right-padded batch, so every model runs batched over users.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from rec_lib import metrics
from rec_lib.data import Interactions, SeenItems, Sequences, candidate_sets, split_by_time, user_sequences
from rec_lib.data.sampling import training_negatives

__all__ = [
    "TTSData",
    "prepare",
    "windows",
    "EvalSet",
    "eval_set",
    "ranks_from_scores",
    "summarise",
    "activity_buckets",
    "position_negatives",
    "sequential_scores",
    "candidate_scores",
    "StateFn",
]

TRAIN, VAL, TEST = 0, 1, 2


@dataclass
class TTSData:
    """One dataset cut by time, with each user's full chronological sequence.

    ``seqs`` holds every interaction (train, validation, test) per user in
    time order; ``part[k]`` says which split position ``k`` of ``seqs.items``
    belongs to; ``n_train[u]`` is user ``u``'s number of training interactions
    (the ``T`` that decides active vs inactive).
    """

    name: str
    data: Interactions
    train: Interactions
    val: Interactions
    test: Interactions
    seqs: Sequences
    part: np.ndarray
    n_train: np.ndarray
    seen_train: SeenItems
    seen_all: SeenItems
    user_row: np.ndarray = field(repr=False)  # row of seqs for each user id (-1: no interaction)

    @property
    def n_users(self) -> int:
        return self.data.n_users

    @property
    def n_items(self) -> int:
        return self.data.n_items

    def positions(self, which: int) -> np.ndarray:
        """Indices into ``seqs.items`` of the validation (1) or test (2) interactions."""
        return np.flatnonzero(self.part == which)

    def position_users(self, pos: np.ndarray) -> np.ndarray:
        """User id of each position."""
        rows = np.searchsorted(self.seqs.offsets, pos, side="right") - 1
        return self.seqs.users[rows]

    def train_sequences(self) -> Sequences:
        """Each user's training interactions (users without any dropped)."""
        return user_sequences(self.train)


def prepare(data: Interactions, fractions=(0.7, 0.1, 0.2), name: str | None = None) -> TTSData:
    """Cut ``data`` by time (70 / 10 / 20) and index the per-user sequences and splits."""
    if len(data) < 10:
        raise ValueError(f"{data.name}: {len(data)} interactions are too few to split 70/10/20")
    train, val, test = split_by_time(data, fractions)
    rows = len(train), len(val), len(test)
    split_of_row = np.repeat([TRAIN, VAL, TEST], rows)  # data.df rows are time-sorted, as the split
    order = np.lexsort((np.arange(len(data)), data.users))  # by user, then time
    seqs = user_sequences(data)
    part = split_of_row[order]
    user_row = np.full(data.n_users, -1, dtype=np.int64)
    user_row[seqs.users] = np.arange(len(seqs))
    n_train = np.bincount(train.users, minlength=data.n_users)
    return TTSData(name or data.name, data, train, val, test, seqs, part, n_train,
                   SeenItems.from_interactions(train), SeenItems.from_interactions(data), user_row)


def windows(seqs: Sequences, rows: np.ndarray, start: np.ndarray, end: np.ndarray, pad: int,
            values: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``[B, L]`` items of positions ``[start, end)`` of sequence rows ``rows``, and the lengths.

    ``start`` and ``end`` are offsets within each row's sequence (``0 <= start
    <= end <= length``). ``values`` replaces ``seqs.items`` (e.g. the split of
    each position). Vectorised: one gather, no loop over users.
    """
    rows, start, end = (np.asarray(a, dtype=np.int64) for a in (rows, start, end))
    lengths = seqs.lengths[rows]
    if (start < 0).any() or (end < start).any() or (end > lengths).any():
        raise ValueError("windows need 0 <= start <= end <= sequence length for every row")
    values = seqs.items if values is None else values
    n = end - start
    L = max(int(n.max(initial=0)), 1)
    col = np.arange(L)
    valid = col[None, :] < n[:, None]
    src = np.where(valid, seqs.offsets[rows][:, None] + start[:, None] + col[None, :], 0)
    out = np.where(valid, values[src], pad)
    return torch.as_tensor(out), torch.as_tensor(n)


@dataclass
class EvalSet:
    """Positions to score and their candidate sets (column 0 the true item, then 499 negatives)."""

    positions: np.ndarray  # into data.seqs.items, sorted
    users: np.ndarray
    candidates: np.ndarray  # [n, 1 + n_neg]
    n_train: np.ndarray  # training interactions of each row's user
    full: bool = False  # every item a candidate (the user's training items masked when scored)


def eval_set(d: TTSData, which: int, n_neg: int, rng: np.random.Generator, max_rows: int | None = None) -> EvalSet:
    """Validation (``which=1``) or test (``which=2``) positions with ``n_neg`` sampled negatives each.

    Negatives are items the user never interacted with (in any split).
    ``max_rows`` keeps a uniformly drawn subset (sorted), e.g. for cheap checkpoints.
    """
    if which not in (VAL, TEST):
        raise ValueError(f"which must be 1 (validation) or 2 (test), got {which}")
    pos = d.positions(which)
    if max_rows is not None and max_rows < len(pos):
        pos = np.sort(rng.choice(pos, size=max_rows, replace=False))
    users = d.position_users(pos)
    cands = candidate_sets(users, d.seqs.items[pos], n_neg, d.seen_all, rng)
    return EvalSet(pos, users, cands, d.n_train[users])


def ranks_from_scores(scores: torch.Tensor) -> torch.Tensor:
    """Rank of column 0 among the candidates (pessimistic ties)."""
    return metrics.rank_against_candidates(scores, 0)


def summarise(ranks: torch.Tensor) -> dict[str, float]:
    """``{"mrr": ..., "recall@10": ...}``: the paper's two metrics."""
    return {"mrr": metrics.mrr(ranks), "recall@10": metrics.recall_at_k(ranks, 10)}


def activity_buckets(n_train: np.ndarray, ranks: torch.Tensor, edges) -> pd.DataFrame:
    """MRR and Recall@10 per bucket of the user's training interactions ``T`` (Figure 3).

    ``edges`` are increasing bucket edges; bucket ``k`` holds ``edges[k] <= T < edges[k+1]``
    (the last one is open-ended).
    """
    edges = np.asarray(edges)
    if edges.ndim != 1 or len(edges) < 1 or (np.diff(edges) <= 0).any():
        raise ValueError(f"edges must be strictly increasing, got {edges}")
    b = np.searchsorted(edges, n_train, side="right") - 1
    r = ranks.float().numpy()
    frame = pd.DataFrame({"bucket": b, "rr": 1.0 / r, "hit": r <= 10})
    frame = frame[frame["bucket"] >= 0]
    g = frame.groupby("bucket")
    out = pd.DataFrame({"mrr": g["rr"].mean(), "recall@10": g["hit"].mean(), "n": g.size()})
    lo = edges[out.index]
    hi = np.append(edges[1:], np.inf)[out.index]
    out.insert(0, "T_low", lo)
    out.insert(1, "T_high", hi)
    return out.reset_index(drop=True)


def position_negatives(users: torch.Tensor, n_neg: int, seen: SeenItems, rng: np.random.Generator) -> torch.Tensor:
    """``[*users.shape, n_neg]`` items the user has not interacted with in training, for the offer set of eq. 10-12."""
    u = users.reshape(-1).cpu().numpy()
    neg = training_negatives(u, seen, rng, k=n_neg).reshape(len(u), n_neg)
    return torch.as_tensor(neg).reshape(*users.shape, n_neg)


StateFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def candidate_scores(h: torch.Tensor, table: torch.Tensor, candidates: torch.Tensor, bias: torch.Tensor | None = None,
                     chunk: int = 4096, full_max_items: int = 50_000) -> torch.Tensor:
    """``h_r . table[c] (+ bias[c])`` for each row ``r`` and candidate ``c`` of ``candidates [n, K]``.

    For catalogues up to ``full_max_items`` items it scores the whole
    catalogue with one matrix product per chunk of rows and gathers the
    candidates (far cheaper than gathering ``[n, K, d]`` embeddings); beyond,
    it gathers. Rows are processed ``chunk`` at a time to bound memory.
    """
    if h.ndim != 2 or candidates.ndim != 2 or len(h) != len(candidates):
        raise ValueError(f"h [n, d] and candidates [n, K] expected, got {tuple(h.shape)}, {tuple(candidates.shape)}")
    out = torch.empty(candidates.shape, dtype=torch.float32, device=h.device)
    full = table.shape[0] <= full_max_items
    for s in range(0, len(h), chunk):
        hs, cs = h[s : s + chunk], candidates[s : s + chunk]
        if full:
            sc = (hs @ table.T).gather(1, cs)
        else:
            sc = torch.einsum("nd,nkd->nk", hs, table[cs])
        out[s : s + chunk] = sc + (bias[cs] if bias is not None else 0)
    return out


@torch.no_grad()
def sequential_scores(
    d: TTSData,
    es: EvalSet,
    start: np.ndarray,
    state_fn: StateFn,
    score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batch_users: int = 256,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Scores ``[n, 1 + n_neg]`` of the candidates of ``es`` by a sequential model.

    For each user, the model runs over the window of positions from
    ``start[user]`` (an offset in the user's sequence, at most the user's first
    evaluated position) to the user's last evaluated position; position ``p``
    is scored with the state built from the window's positions before ``p``
    (so the state keeps updating along the validation and test interactions).
    ``state_fn(users [B], items [B, L], lengths [B], prev [B]) -> [B, L, d]``
    gives that state for every window position (``prev``: the item just
    before each window, ``pad`` if none); ``score_fn(states [n, d],
    candidates [n, K]) -> [n, K]`` (e.g. :func:`candidate_scores`). Batched over
    users; no loop over users.
    """
    pos, users = es.positions, es.users
    if len(pos) == 0:
        return torch.empty(0, es.candidates.shape[1])
    rows = d.user_row[users]
    offs = pos - d.seqs.offsets[rows]
    first = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])  # positions are sorted: grouped by user
    u_uni = users[first]
    if len(np.unique(u_uni)) != len(u_uni):
        raise ValueError("evaluation positions must be sorted (grouped by user)")
    end = np.maximum.reduceat(offs, first) + 1
    begin = np.asarray(start)[u_uni]
    if (begin > offs[first]).any() or (begin < 0).any():
        raise ValueError("a window starts after the user's first evaluated position (or before 0)")
    owner = np.repeat(np.arange(len(u_uni)), np.diff(np.r_[first, len(users)]))
    cands = torch.as_tensor(es.candidates)
    out = torch.empty(cands.shape, dtype=torch.float32)
    r_uni = d.user_row[u_uni]
    for s in range(0, len(u_uni), batch_users):  # chunks of users, batched within
        e = min(s + batch_users, len(u_uni))
        items, lengths = windows(d.seqs, r_uni[s:e], begin[s:e], end[s:e], d.n_items)
        b0 = begin[s:e]
        prev = np.where(b0 > 0, d.seqs.items[d.seqs.offsets[r_uni[s:e]] + np.maximum(b0 - 1, 0)], d.n_items)
        states = state_fn(torch.as_tensor(u_uni[s:e]).to(device), items.to(device), lengths, torch.as_tensor(prev).to(device))
        sel = np.arange(first[s], first[e] if e < len(first) else len(users))  # rows of users s..e-1
        b = owner[sel] - s
        t = offs[sel] - begin[owner[sel]]
        h = states[torch.as_tensor(b), torch.as_tensor(t)]
        out[torch.as_tensor(sel)] = score_fn(h, cands[sel].to(device)).float().cpu()
    return out
