"""Losses shared by the base recommenders."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["bpr_loss", "bce_loss", "mse_loss", "sampled_softmax_loss", "top1_loss", "bpr_max_loss"]


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Bayesian personalised ranking (Rendle et al. 2009): ``-mean log sigmoid(s+ - s-)``.

    ``neg`` may have an extra trailing dimension of several negatives per positive.
    """
    if neg.ndim == pos.ndim + 1:
        pos = pos.unsqueeze(-1)
    return -F.logsigmoid(pos - neg).mean()


def bce_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """The log loss with sampled negatives (SML eq. 13, NCF's pointwise loss).

    ``-mean[log sigmoid(s+)] - mean[log(1 - sigmoid(s-))]``, each positive
    paired with the negatives sampled for it.
    """
    return -(F.logsigmoid(pos).mean() + F.logsigmoid(-neg).mean())


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error on explicit ratings."""
    return F.mse_loss(pred, target.to(pred.dtype))


def sampled_softmax_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the positive within its offer set {positive} U negatives.

    ``pos`` ``[B]``, ``neg`` ``[B, p]``; ``-mean log softmax([s+, s-_1..p])_0``
    (2TS eq. 10, CCF's loss).
    """
    logits = torch.cat([pos.unsqueeze(-1), neg], dim=-1)
    return -torch.log_softmax(logits, dim=-1)[..., 0].mean()


def top1_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """GRU4Rec's TOP1: ``mean sigmoid(s- - s+) + sigmoid(s-^2)`` (Hidasi et al. 2016)."""
    pos = pos.unsqueeze(-1)
    return (torch.sigmoid(neg - pos) + torch.sigmoid(neg**2)).mean()


def bpr_max_loss(pos: torch.Tensor, neg: torch.Tensor, reg: float = 1.0) -> torch.Tensor:
    """GRU4Rec's BPR-max (Hidasi & Karatzoglou 2018): softmax-weighted BPR over negatives."""
    w = torch.softmax(neg, dim=-1)
    diff = torch.sigmoid(pos.unsqueeze(-1) - neg)
    return (-torch.log((w * diff).sum(-1) + 1e-24) + reg * (w * neg**2).sum(-1)).mean()
