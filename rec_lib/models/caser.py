"""Caser (Tang & Wang 2018): convolutional sequence embedding for next-item recommendation.

The ``L`` items a user interacted with just before time ``t`` form an
``L x d`` "image" ``E`` of their embeddings. Horizontal filters of heights
``h = 1..L`` (``n_h`` each, width ``d``) slide over the rows of ``E`` and are
max-pooled over time (union-level and point-level sequential patterns);
vertical filters (``n_v`` of size ``L x 1``) take weighted sums of the ``L``
embeddings. Both outputs feed a fully connected layer ``z`` of size ``d``,
concatenated with the user's embedding ``P_u``; the score of item ``i`` is
``W'_i . [z; P_u] + b'_i``.

Used by the retraining chapter (SML) as a sequential baseline. Windows are
left-padded with the index ``model.pad`` (= ``n_items``), whose embedding is
zero.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rec_lib.data.sampling import SeenItems
from rec_lib.models.losses import bce_loss, bpr_loss
from rec_lib.models.training import _optimizer, pair_batches
from rec_lib.utils import Seeds, progress

__all__ = ["Caser", "fit_caser"]


class Caser(nn.Module):
    """Caser with ``n_h`` horizontal filters per height ``1..L`` and ``n_v`` vertical filters.

    ``forward(users [B], windows [B, L], items [B] or [B, K])`` gives scores.
    Activations follow the paper: ReLU on the horizontal convolutions and the
    fully connected layer, none on the vertical convolution; dropout on the
    concatenated convolution outputs.
    """

    def __init__(self, n_users: int, n_items: int, dim: int = 50, L: int = 5, n_h: int = 16, n_v: int = 4,
                 dropout: float = 0.5):
        super().__init__()
        if min(n_users, n_items, dim, L) < 1 or n_h < 0 or n_v < 0 or n_h + n_v == 0:
            raise ValueError(f"need n_users, n_items, dim, L >= 1 and n_h + n_v >= 1, got "
                             f"{n_users}, {n_items}, {dim}, {L}, n_h={n_h}, n_v={n_v}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.n_users, self.n_items, self.dim, self.L, self.pad = n_users, n_items, dim, L, n_items
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items + 1, dim, padding_idx=n_items)
        self.conv_v = nn.Conv2d(1, n_v, (L, 1)) if n_v else None
        self.conv_h = nn.ModuleList([nn.Conv2d(1, n_h, (h, dim)) for h in range(1, L + 1)]) if n_h else nn.ModuleList()
        self.fc = nn.Linear(n_v * dim + n_h * L, dim)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Embedding(n_items, 2 * dim)
        self.out_bias = nn.Embedding(n_items, 1)
        nn.init.normal_(self.user.weight, std=1.0 / dim)
        nn.init.normal_(self.item.weight, std=1.0 / dim)
        nn.init.normal_(self.out.weight, std=1.0 / (2 * dim))
        nn.init.zeros_(self.out_bias.weight)
        with torch.no_grad():
            self.item.weight[n_items].zero_()

    def sequence_vector(self, users: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
        """``[B, 2d]``: ``[z; P_u]`` from the user and the ``L`` previous items."""
        if windows.ndim != 2 or windows.shape[1] != self.L or users.shape != (windows.shape[0],):
            raise ValueError(f"users [B] and windows [B, {self.L}] expected, got {tuple(users.shape)}, {tuple(windows.shape)}")
        E = self.item(windows).unsqueeze(1)  # [B, 1, L, d]
        parts = []
        if self.conv_v is not None:
            parts.append(self.conv_v(E).flatten(1))  # [B, n_v * d]
        rows = E[:, 0]  # [B, L, d]
        for h, conv in enumerate(self.conv_h, start=1):
            # the (h x d) convolution as one matmul over the L - h + 1 windows of h rows (same numbers, faster on CPU)
            win = rows.unfold(1, h, 1).transpose(2, 3).reshape(len(rows), self.L - h + 1, h * self.dim)
            c = F.relu(win @ conv.weight.reshape(conv.out_channels, -1).T + conv.bias)  # [B, L - h + 1, n_h]
            parts.append(c.max(dim=1).values)  # max pooling over time
        z = F.relu(self.fc(self.drop(torch.cat(parts, dim=1))))
        return torch.cat([z, self.user(users)], dim=1)

    def forward(self, users: torch.Tensor, windows: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        x = self.sequence_vector(users, windows)
        w, b = self.out(items), self.out_bias(items).squeeze(-1)
        if items.ndim == 2:
            return torch.einsum("bd,bkd->bk", x, w) + b
        return (x * w).sum(-1) + b


def fit_caser(
    model: Caser,
    users: np.ndarray,
    windows: np.ndarray,
    items: np.ndarray,
    seen: SeenItems,
    seeds: Seeds,
    loss: str = "bce",
    epochs: int = 5,
    batch_size: int = 512,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    n_neg: int = 1,
    device: torch.device | str = "cpu",
    desc: str = "caser",
) -> list[float]:
    """Train Caser on ``(user, window of L previous items) -> item`` with sampled negatives.

    ``loss="bce"``: the log loss (Caser's and SML's), ``n_neg`` negatives per
    positive drawn among the items the user never interacted with; ``"bpr"``
    also accepted. Returns the mean loss of each epoch.
    """
    loss_fn = {"bpr": bpr_loss, "bce": bce_loss}.get(loss)
    if loss_fn is None:
        raise ValueError(f"loss must be 'bpr' or 'bce', got {loss!r}")
    windows = np.asarray(windows)
    if not len(users) == len(items) == len(windows) or len(users) == 0:
        raise ValueError(f"users, windows and items must be non-empty and of equal length, "
                         f"got {len(users)}, {len(windows)}, {len(items)}")
    opt = _optimizer(model, lr, weight_decay)
    u_all = torch.tensor(np.asarray(users), dtype=torch.long)
    w_all = torch.tensor(windows, dtype=torch.long)
    i_all = torch.tensor(np.asarray(items), dtype=torch.long)
    history = []
    model.train()
    for _ in progress(range(epochs), desc=desc):
        total = 0.0
        for b, neg in pair_batches(u_all.numpy(), seen, seeds, batch_size, n_neg):
            u, w, i, j = u_all[b].to(device), w_all[b].to(device), i_all[b].to(device), neg.to(device)
            x = model.sequence_vector(u, w)  # one pass for the positive and its negatives
            pos_s = (x * model.out(i)).sum(-1) + model.out_bias(i).squeeze(-1)
            neg_s = torch.einsum("bd,bkd->bk", x, model.out(j)) + model.out_bias(j).squeeze(-1)
            batch_loss = loss_fn(pos_s, neg_s)
            opt.zero_grad(set_to_none=True)
            batch_loss.backward()
            opt.step()
            total += batch_loss.item() * len(b)
        history.append(total / len(u_all))
    model.eval()
    return history
