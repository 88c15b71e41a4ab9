"""Evaluation metrics, vectorised in torch.

Ranking metrics start from the **rank** of each target item (1 = top). Ranks
are computed the *pessimistic* way: an item whose score ties the target's is
counted as ranked above it, so a model that outputs a constant score gets the
worst rank, never the best. (Optimistic ranking would reward degenerate
models; the mean of the two is sometimes used; we choose the conservative one.)

With one relevant item per ranking, Recall@k equals HR@k (hit rate), and
``NDCG@k = 1 / log2(rank + 1)`` when ``rank <= k`` (the ideal DCG is 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch

__all__ = [
    "rmse",
    "rank_against_candidates",
    "rank_in_catalogue",
    "hit_at_k",
    "recall_at_k",
    "mrr_at_k",
    "mrr",
    "ndcg_at_k",
    "ranking_metrics",
    "weighted_mean",
    "rowwise_spearman",
]


def _as_tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.tensor(np.asarray(x))


def rmse(pred, target) -> float:
    """Root mean squared error, ``sqrt(mean((pred - target)^2))``."""
    pred, target = _as_tensor(pred).double(), _as_tensor(target).double()
    if pred.shape != target.shape:
        raise ValueError(f"rmse: shapes differ, {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.numel() == 0:
        raise ValueError("rmse of an empty set is undefined")
    return float(torch.sqrt(torch.mean((pred - target) ** 2)))


def rank_against_candidates(scores: torch.Tensor, target_col: int = 0) -> torch.Tensor:
    """Rank of the target among sampled candidates (1 positive + N negatives).

    ``scores`` is ``[B, 1 + N]``; column ``target_col`` holds the positive. The
    rank is ``1 + #{negatives with score >= positive}`` (ties pessimistic).
    NaN scores raise: they would silently rank anywhere.
    """
    scores = _as_tensor(scores)
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError(f"scores must be [batch, 1 + n_negatives], got {tuple(scores.shape)}")
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN; check the model (diverged training?)")
    pos = scores[:, target_col : target_col + 1]
    ge = scores >= pos
    ge[:, target_col] = False
    return 1 + ge.sum(dim=1)


def rank_in_catalogue(
    scores: torch.Tensor,
    targets: torch.Tensor,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rank of each target item among the whole catalogue.

    Parameters
    ----------
    scores:  ``[B, P]`` scores of every item for each row.
    targets: ``[B]`` the target item of each row.
    exclude: optional boolean ``[B, P]`` mask of items to leave out of the
             ranking (e.g. items seen in training). The target is never excluded.

    Returns ``1 + #{items i != target, not excluded, score_i >= score_target}``.
    """
    scores, targets = _as_tensor(scores), _as_tensor(targets).long()
    if scores.ndim != 2 or targets.shape != (scores.shape[0],):
        raise ValueError(f"scores [B, P] and targets [B] expected, got {tuple(scores.shape)}, {tuple(targets.shape)}")
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN; check the model (diverged training?)")
    rows = torch.arange(scores.shape[0], device=scores.device)
    target_score = scores[rows, targets].unsqueeze(1)
    ge = scores >= target_score
    if exclude is not None:
        ge &= ~exclude.to(torch.bool)
    ge[rows, targets] = False
    return 1 + ge.sum(dim=1)


def hit_at_k(ranks, k: int) -> torch.Tensor:
    """Per-row indicator ``rank <= k`` as floats."""
    _check_k(k)
    return (_as_tensor(ranks) <= k).float()


def recall_at_k(ranks, k: int) -> float:
    """Recall@k (= HR@k with one relevant item per row): mean of ``1[rank <= k]``."""
    return float(hit_at_k(ranks, k).mean())


def mrr_at_k(ranks, k: int) -> float:
    """MRR@k: mean of ``1[rank <= k] / rank`` (DiPS eq. for MRR@K)."""
    r = _as_tensor(ranks).float()
    _check_k(k)
    return float(torch.where(r <= k, 1.0 / r, torch.zeros_like(r)).mean())


def mrr(ranks) -> float:
    """Mean reciprocal rank without cut-off (2TS's MRR)."""
    return float((1.0 / _as_tensor(ranks).float()).mean())


def ndcg_at_k(ranks, k: int) -> float:
    """NDCG@k with one relevant item: mean of ``1[rank <= k] / log2(rank + 1)``."""
    r = _as_tensor(ranks).float()
    _check_k(k)
    return float(torch.where(r <= k, 1.0 / torch.log2(r + 1.0), torch.zeros_like(r)).mean())


def ranking_metrics(ranks, ks: Iterable[int] = (5, 10, 20), which: Iterable[str] = ("recall", "ndcg")) -> dict[str, float]:
    """A dict such as ``{"recall@5": ..., "ndcg@5": ..., "mrr": ...}`` from ranks.

    ``which`` picks among ``recall``, ``hr`` (same number, other name),
    ``ndcg``, ``mrr@k`` as ``mrr_k``, and ``mrr`` (no cut-off).
    """
    ranks = _as_tensor(ranks)
    if ranks.numel() == 0:
        raise ValueError("no ranks to average")
    funcs = {"recall": recall_at_k, "hr": recall_at_k, "ndcg": ndcg_at_k, "mrr_k": mrr_at_k}
    out: dict[str, float] = {}
    for name in which:
        if name == "mrr":
            out["mrr"] = mrr(ranks)
            continue
        if name not in funcs:
            raise ValueError(f"unknown metric {name!r}; choose from {sorted(funcs) + ['mrr']}")
        label = "mrr" if name == "mrr_k" else name
        for k in ks:
            out[f"{label}@{k}"] = funcs[name](ranks, k)
    return out


def weighted_mean(per_group: Mapping[object, Mapping[str, float]], weights: Mapping[object, float]) -> dict[str, float]:
    """Average metric dicts over groups (e.g. test periods) weighted by their sizes."""
    keys = list(per_group)
    if not keys:
        raise ValueError("no groups to average")
    w = np.array([weights[k] for k in keys], dtype=float)
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be non-negative with a positive sum")
    names = per_group[keys[0]].keys()
    return {m: float(np.dot(w, [per_group[k][m] for k in keys]) / w.sum()) for m in names}


def _row_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks (0 .. n-1) within each row, ties broken by position."""
    return x.argsort(dim=-1).argsort(dim=-1).double()


def rowwise_spearman(a, b) -> torch.Tensor:
    """Spearman's rank correlation of each row of ``a`` ``[n, m]`` with the same row of ``b`` ``[n, m]`` (or with
    ``b`` ``[m]`` for every row): the Pearson correlation of the within-row ranks, ties broken by position.

    Returns ``[n]`` (float64). A constant row has no defined correlation; its ranks are its positions.
    """
    a, b = _as_tensor(a), _as_tensor(b)
    if a.ndim != 2 or b.shape[-1] != a.shape[1] or b.ndim > 2 or (b.ndim == 2 and b.shape[0] != a.shape[0]):
        raise ValueError(f"need a [n, m] and b [n, m] or [m], got {tuple(a.shape)} and {tuple(b.shape)}")
    ra, rb = _row_ranks(a.cpu()), _row_ranks(b.cpu()).expand(a.shape[0], -1)
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1) + 1e-12)


def _check_k(k: int) -> None:
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
