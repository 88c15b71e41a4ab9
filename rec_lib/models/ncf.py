"""Neural collaborative filtering: NeuMF = GMF + MLP (He et al. 2017).

``score = h^T [p_u^G * q_i^G ; MLP([p_u^M ; q_i^M])]`` with separate
embeddings for the two branches. For DiPS, whose inner loop adapts only the
user embedding, :meth:`NCF.score_with_user` takes a user vector (the two
branches' user embeddings concatenated) instead of a user id.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["NCF"]


class NCF(nn.Module):
    """NeuMF. ``forward(users, items)`` with ``items`` ``[B]`` or ``[B, K]``.

    ``explicit=True`` adds a global offset so the output can regress ratings
    (DiPS's explicit setting, MSE); otherwise the output is a logit.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim_gmf: int = 32,
        dim_mlp: int = 32,
        layers: Sequence[int] = (64, 32, 16),
        dropout: float = 0.0,
        explicit: bool = False,
        init_std: float = 0.01,
    ):
        super().__init__()
        if min(n_users, n_items, dim_gmf, dim_mlp) < 1:
            raise ValueError("n_users, n_items, dim_gmf and dim_mlp must be >= 1")
        self.n_users, self.n_items = n_users, n_items
        self.dim_gmf, self.dim_mlp = dim_gmf, dim_mlp
        self.user_gmf, self.item_gmf = nn.Embedding(n_users, dim_gmf), nn.Embedding(n_items, dim_gmf)
        self.user_mlp, self.item_mlp = nn.Embedding(n_users, dim_mlp), nn.Embedding(n_items, dim_mlp)
        for emb in (self.user_gmf, self.item_gmf, self.user_mlp, self.item_mlp):
            nn.init.normal_(emb.weight, std=init_std)
        blocks: list[nn.Module] = []
        width = 2 * dim_mlp
        for h in layers:
            blocks += [nn.Linear(width, h), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
            width = h
        self.mlp = nn.Sequential(*blocks)
        self.out = nn.Linear(dim_gmf + width, 1)
        self.offset = nn.Parameter(torch.zeros(())) if explicit else None

    @property
    def user_dim(self) -> int:
        """Size of the user vector taken by :meth:`score_with_user`."""
        return self.dim_gmf + self.dim_mlp

    def user_vector(self, users: torch.Tensor) -> torch.Tensor:
        """``[B, dim_gmf + dim_mlp]``: the user's GMF and MLP embeddings, concatenated."""
        return torch.cat([self.user_gmf(users), self.user_mlp(users)], dim=-1)

    def score_with_user(self, user_vec: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Scores for a user *vector* ``[B, user_dim]``.

        ``items``: ``[B]`` (one per row), ``[B, K]`` (K per row), or ``None``
        (the whole catalogue, ``[B, n_items]``).

        The ``[B, K, .]`` concatenations are never built: the first MLP layer
        is split into its user and item halves (``W [u; i] = W_u u + W_i i``)
        and the GMF branch's share of the output layer is
        ``(h_G * p^G) . q^G``, a matrix product against the whole catalogue.
        Same function as the concatenated form, several times less work.
        """
        ug, um = user_vec[..., : self.dim_gmf], user_vec[..., self.dim_gmf :]
        w_gmf, w_mlp = self.out.weight[0, : self.dim_gmf], self.out.weight[0, self.dim_gmf :]
        if items is None:
            ig, im = self.item_gmf.weight, self.item_mlp.weight  # [P, d]
            gmf = (ug * w_gmf) @ ig.T  # [B, P]
            um = um.unsqueeze(-2)  # [B, 1, d], broadcast against the catalogue
        else:
            ig, im = self.item_gmf(items), self.item_mlp(items)
            if ig.ndim == ug.ndim + 1:  # several items per user row
                ug, um = ug.unsqueeze(-2), um.unsqueeze(-2)
            gmf = (ug * w_gmf * ig).sum(-1)
        s = gmf + self._mlp_branch(um, im) @ w_mlp + self.out.bias[0]
        return s + self.offset if self.offset is not None else s

    def _mlp_branch(self, um: torch.Tensor, im: torch.Tensor) -> torch.Tensor:
        """``MLP([p^M ; q^M])`` with ``um`` and ``im`` broadcast against each other."""
        if len(self.mlp) == 0:
            shape = torch.broadcast_shapes(um.shape, im.shape)
            return torch.cat([um.expand(shape), im.expand(shape)], dim=-1)
        first = self.mlp[0]
        pre = um @ first.weight[:, : self.dim_mlp].T + im @ first.weight[:, self.dim_mlp :].T + first.bias
        return self.mlp[1:](pre)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.score_with_user(self.user_vector(users), items)

    def score_all(self, users: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """``[B, n_items]``, computed in chunks of users to bound memory."""
        vec = self.user_vector(users)
        return torch.cat([self.score_with_user(vec[s : s + chunk]) for s in range(0, len(vec), chunk)])
