"""Evaluation protocols: rank a positive among sampled candidates, or among all items.

The two protocols the chapters use:

- **sampled**: each test interaction's item is ranked against ``n_neg``
  items the user never interacted with (MeLON: 99, 2TS: 499, SML: 999);
- **full**: the item is ranked against the whole catalogue, optionally
  leaving out items the user has already seen (DiPS: Recall@20, MRR@20).

Every metric table can be split by **segment** (issue 12, section 6): a test
row's user is a ``returning user`` (has training interactions) or a
``new user``; its item is an ``old item`` (seen in training) or a ``new item``.
:func:`per_row_metrics` turns ranks into per-row metric arrays,
:func:`segment_labels` labels the rows, :func:`segment_table` averages per
segment, and :func:`segment_breakdown` does all three in one call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
import torch

from rec_lib.data.sampling import SeenItems, candidate_sets
from rec_lib.metrics import rank_against_candidates, rank_in_catalogue, ranking_metrics

__all__ = [
    "sampled_ranks", "full_ranks", "evaluate_sampled",
    "per_row_metrics", "segment_labels", "segment_table", "segment_breakdown",
    "USER_SEGMENTS", "ITEM_SEGMENTS", "SEGMENTS",
]

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def sampled_ranks(
    score_fn: ScoreFn,
    users: np.ndarray,
    positives: np.ndarray,
    n_neg: int,
    seen: SeenItems,
    rng: np.random.Generator,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Rank (pessimistic ties) of each positive among itself and ``n_neg`` sampled negatives.

    ``score_fn(users [B], candidates [B, 1 + n_neg]) -> scores [B, 1 + n_neg]``;
    e.g. ``model.forward`` of :class:`rec_lib.models.MF`.
    """
    cands = candidate_sets(users, positives, n_neg, seen, rng)
    u_all = torch.tensor(np.asarray(users), dtype=torch.long)
    c_all = torch.as_tensor(cands, dtype=torch.long)
    ranks = [
        rank_against_candidates(score_fn(u_all[s : s + batch_size].to(device), c_all[s : s + batch_size].to(device)).cpu())
        for s in range(0, len(u_all), batch_size)
    ]
    return torch.cat(ranks) if ranks else torch.empty(0, dtype=torch.long)


@torch.no_grad()
def full_ranks(
    score_all_fn: Callable[[torch.Tensor], torch.Tensor],
    users: np.ndarray,
    targets: np.ndarray,
    exclude: SeenItems | None = None,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Rank of each target among all items; ``exclude`` items are left out (never the target).

    ``score_all_fn(users [B]) -> scores [B, n_items]``.
    """
    users, targets = np.array(users, np.int64), np.array(targets, np.int64)  # writable copies
    out = []
    for s in range(0, len(users), batch_size):
        u = users[s : s + batch_size]
        scores = score_all_fn(torch.as_tensor(u, device=device)).cpu()
        mask = torch.as_tensor(exclude.mask(u)) if exclude is not None else None
        out.append(rank_in_catalogue(scores, torch.as_tensor(targets[s : s + batch_size]), mask))
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def evaluate_sampled(
    score_fn: ScoreFn,
    users: np.ndarray,
    positives: np.ndarray,
    n_neg: int,
    seen: SeenItems,
    rng: np.random.Generator,
    ks: Iterable[int] = (5, 10, 20),
    which: Iterable[str] = ("recall", "ndcg"),
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """:func:`sampled_ranks` followed by :func:`rec_lib.metrics.ranking_metrics`."""
    ranks = sampled_ranks(score_fn, users, positives, n_neg, seen, rng, device=device)
    return ranking_metrics(ranks, ks, which)


# ----------------------------------------------------------------------------- segments
USER_SEGMENTS = ("returning user", "new user")
ITEM_SEGMENTS = ("old item", "new item")
SEGMENTS = tuple(f"{u} / {i}" for u in USER_SEGMENTS for i in ITEM_SEGMENTS)  # the 2 x 2 cross


def per_row_metrics(ranks, ks: Iterable[int] = (10,), which: Iterable[str] = ("hit", "ndcg", "rr")) -> dict[str, np.ndarray]:
    """Per-row metric arrays from ranks (1 = top), for :func:`segment_table` or paired tests.

    ``which`` picks among ``hit`` (``1[rank <= k]``, the per-row Recall/HR@k),
    ``ndcg`` (``1[rank <= k] / log2(rank + 1)``), ``rr_k`` (``1[rank <= k] / rank``,
    per-row MRR@k) and ``rr`` (``1 / rank``, no cut-off). Keys are ``hit@10``,
    ``ndcg@10``, ``rr@10``, ``rr``; each row's mean equals the matching number
    of :func:`rec_lib.metrics.ranking_metrics` (``recall@k``, ``ndcg@k``,
    ``mrr@k``, ``mrr``).
    """
    r = np.asarray(ranks.cpu() if isinstance(ranks, torch.Tensor) else ranks, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(f"ranks must be one-dimensional, got shape {r.shape}")
    if len(r) and r.min() < 1:
        raise ValueError("ranks start at 1")
    ks = list(ks)
    if any(int(k) != k or k < 1 for k in ks):
        raise ValueError(f"every k must be a positive integer, got {ks}")
    out: dict[str, np.ndarray] = {}
    for name in which:
        if name == "rr":
            out["rr"] = 1.0 / r
            continue
        if name not in ("hit", "ndcg", "rr_k"):
            raise ValueError(f"unknown metric {name!r}; choose from ['hit', 'ndcg', 'rr', 'rr_k']")
        for k in ks:
            top = r <= k
            if name == "hit":
                out[f"hit@{k}"] = top.astype(np.float64)
            elif name == "ndcg":
                out[f"ndcg@{k}"] = np.where(top, 1.0 / np.log2(r + 1.0), 0.0)
            else:
                out[f"rr@{k}"] = np.where(top, 1.0 / r, 0.0)
    return out


def segment_labels(users, items, train_users, train_items) -> pd.DataFrame:
    """Label each test row by whether its user and its item occur in the training interactions.

    Returns a DataFrame with one row per test row (same order): ``user``,
    ``item``, ``user_segment`` (``"returning user"`` / ``"new user"``),
    ``item_segment`` (``"old item"`` / ``"new item"``) and ``segment`` (the
    2 x 2 cross, e.g. ``"new user / old item"``), the three as ordered
    categoricals (orders :data:`USER_SEGMENTS`, :data:`ITEM_SEGMENTS`,
    :data:`SEGMENTS`) so every table lists the segments alike. Add per-row
    metric columns to it and pass it to :func:`segment_table`.

    A user is *returning* when it has at least one training interaction (any
    item), an item is *old* when at least one training interaction has it.
    """
    users, items = np.asarray(users).ravel(), np.asarray(items).ravel()
    if len(users) != len(items):
        raise ValueError(f"users and items must have equal length, got {len(users)}, {len(items)}")
    if len(np.asarray(train_users).ravel()) != len(np.asarray(train_items).ravel()):
        raise ValueError("train_users and train_items must have equal length")
    known_u = np.isin(users, np.unique(np.asarray(train_users)))
    known_i = np.isin(items, np.unique(np.asarray(train_items)))
    u_code, i_code = (~known_u).astype(np.int8), (~known_i).astype(np.int8)
    return pd.DataFrame({
        "user": users,
        "item": items,
        "user_segment": pd.Categorical.from_codes(u_code, categories=list(USER_SEGMENTS), ordered=True),
        "item_segment": pd.Categorical.from_codes(i_code, categories=list(ITEM_SEGMENTS), ordered=True),
        "segment": pd.Categorical.from_codes(2 * u_code + i_code, categories=list(SEGMENTS), ordered=True),
    })


def segment_table(rows: pd.DataFrame, metrics, by=("user_segment",), total: bool = True) -> pd.DataFrame:
    """Metric means per segment, with row counts and shares: one tidy row per segment.

    ``rows`` is a frame from :func:`segment_labels` with per-row metric columns
    added (see :func:`per_row_metrics`); ``metrics`` names those columns (a
    string or a sequence); ``by`` the segment columns, e.g.
    ``("user_segment",)``, ``("item_segment",)``, ``("user_segment",
    "item_segment")`` or ``("segment",)`` (the last two give the 2 x 2 cross).

    Returns the ``by`` columns, ``n`` (rows in the segment), ``share`` (``n``
    over all rows) and the mean of each metric. Every category of a
    categorical segment column appears, an empty one with ``n = 0`` and NaN
    means, so tables from different chapters line up. ``total=True`` appends
    an ``"all"`` row (every ``by`` column set to ``"all"``; its means are the
    overall means, its share 1).
    """
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in by + metrics if c not in rows.columns]
    if missing:
        raise ValueError(f"rows lack the columns {missing}; have {list(rows.columns)}")
    if not by:
        raise ValueError("by must name at least one segment column")
    if len(rows) == 0:
        raise ValueError("no rows to break down")
    g = rows.groupby(by, observed=False, sort=True)
    out = g[metrics].mean()
    out.insert(0, "n", g.size().astype(np.int64))
    out.insert(1, "share", out["n"] / len(rows))
    out = out.reset_index()
    for c in by:  # plain strings, so that an "all" row can follow
        out[c] = out[c].astype(str)
    if total:
        all_row = {c: "all" for c in by} | {"n": len(rows), "share": 1.0} | {m: float(rows[m].mean()) for m in metrics}
        out = pd.concat([out, pd.DataFrame([all_row])], ignore_index=True)
    return out


def segment_breakdown(users, items, train_users, train_items, metrics: dict[str, np.ndarray] | pd.DataFrame,
                      by=("user_segment",), total: bool = True) -> pd.DataFrame:
    """:func:`segment_labels` then :func:`segment_table` in one call.

    ``metrics`` maps a metric name to its per-row array (aligned with
    ``users``/``items``), e.g. ``per_row_metrics(ranks, ks=(10,))``.

    Example::

        ranks = full_ranks(model.score_all, test.users, test.items)
        segment_breakdown(test.users, test.items, train.users, train.items,
                          per_row_metrics(ranks, ks=(10,)), by=("user_segment", "item_segment"))
    """
    rows = segment_labels(users, items, train_users, train_items)
    cols = {}
    for name, values in dict(metrics).items():
        v = np.asarray(values.cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64).ravel()
        if len(v) != len(rows):
            raise ValueError(f"metric {name!r} has {len(v)} rows, expected {len(rows)}")
        cols[name] = v
    rows = rows.assign(**cols)
    return segment_table(rows, list(cols), by=by, total=total)
