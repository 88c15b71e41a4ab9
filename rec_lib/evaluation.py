"""Evaluation protocols: rank a positive among sampled candidates, or among all items.

The two protocols the chapters use:

- **sampled**: each test interaction's item is ranked against ``n_neg``
  items the user never interacted with (MeLON: 99, 2TS: 499, SML: 999);
- **full**: the item is ranked against the whole catalogue, optionally
  leaving out items the user has already seen (DiPS: Recall@20, MRR@20).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch

from rec_lib.data.sampling import SeenItems, candidate_sets
from rec_lib.metrics import rank_against_candidates, rank_in_catalogue, ranking_metrics

__all__ = ["sampled_ranks", "full_ranks", "evaluate_sampled"]

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
