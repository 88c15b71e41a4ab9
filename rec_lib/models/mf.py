"""Matrix factorisation: ``s(u, i) = p_u . q_i (+ b_u + b_i)``.

Trained with BPR (MeLON's BPR-MF) or the log loss with one sampled negative
per positive (SML eq. 12-13); see :mod:`rec_lib.models.training`.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MF", "mf_score"]


def mf_score(P: torch.Tensor, Q: torch.Tensor, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Scores from explicit embedding tables (used when embeddings come from elsewhere,
    e.g. SML's transfer network). ``items`` ``[B]`` gives ``[B]``; ``[B, K]`` gives ``[B, K]``."""
    pu = P[users]
    if items.ndim == users.ndim + 1:
        return torch.einsum("bd,bkd->bk", pu, Q[items])
    return (pu * Q[items]).sum(-1)


class MF(nn.Module):
    """Matrix factorisation with optional user and item biases.

    ``forward(users, items)``: ``items`` of shape ``[B]`` scores one item per
    user, ``[B, K]`` scores K candidates per user. ``score_all(users)`` gives
    ``[B, n_items]``.
    """

    def __init__(self, n_users: int, n_items: int, dim: int = 64, bias: bool = False, init_std: float = 0.1):
        super().__init__()
        if min(n_users, n_items, dim) < 1:
            raise ValueError(f"n_users, n_items and dim must be >= 1, got {n_users}, {n_items}, {dim}")
        self.n_users, self.n_items, self.dim = n_users, n_items, dim
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        nn.init.normal_(self.user.weight, std=init_std)
        nn.init.normal_(self.item.weight, std=init_std)
        self.user_bias = nn.Embedding(n_users, 1) if bias else None
        self.item_bias = nn.Embedding(n_items, 1) if bias else None
        if bias:
            nn.init.zeros_(self.user_bias.weight)
            nn.init.zeros_(self.item_bias.weight)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        s = mf_score(self.user.weight, self.item.weight, users, items)
        if self.user_bias is not None:
            ub = self.user_bias(users).squeeze(-1)
            s = s + (ub.unsqueeze(-1) if items.ndim == users.ndim + 1 else ub) + self.item_bias(items).squeeze(-1)
        return s

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        s = self.user(users) @ self.item.weight.T
        if self.user_bias is not None:
            s = s + self.user_bias(users) + self.item_bias.weight.T
        return s
