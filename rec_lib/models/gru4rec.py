"""GRU4Rec (Hidasi et al. 2016): a GRU over a user's item sequence predicts the next item.

``h_t = GRU(e_{i_1}, ..., e_{i_t})``; ``s(i | h_t) = h_t . w_i + b_i``. Used
by the retraining (SML), two-time-scale and sketching (DiPS) chapters.
Sequences are right-padded with the index ``model.pad`` (= ``n_items``);
the GRU runs on packed sequences, so padding costs nothing.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rec_lib.models.losses import bpr_max_loss, bpr_loss, top1_loss

__all__ = ["GRU4Rec"]

_LOSSES = ("ce", "bpr", "top1", "bpr-max")


class GRU4Rec(nn.Module):
    """Next-item GRU recommender.

    Parameters
    ----------
    n_items: catalogue size; index ``n_items`` is the padding item.
    dim: item-embedding size at the input; hidden: GRU state size.
    """

    def __init__(self, n_items: int, dim: int = 64, hidden: int = 100, n_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        if min(n_items, dim, hidden, n_layers) < 1:
            raise ValueError("n_items, dim, hidden and n_layers must be >= 1")
        self.n_items, self.pad, self.hidden = n_items, n_items, hidden
        self.embed = nn.Embedding(n_items + 1, dim, padding_idx=n_items)
        self.gru = nn.GRU(dim, hidden, n_layers, batch_first=True, dropout=dropout if n_layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Embedding(n_items, hidden)
        self.out_bias = nn.Parameter(torch.zeros(n_items))
        nn.init.normal_(self.embed.weight, std=0.05)
        nn.init.normal_(self.out.weight, std=0.05)
        with torch.no_grad():
            self.embed.weight[n_items].zero_()

    def hidden_states(self, seqs: torch.Tensor, lengths: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, T, hidden]``: the state after each position (zeros past a sequence's end)."""
        if seqs.ndim != 2 or lengths.shape != (seqs.shape[0],):
            raise ValueError(f"seqs [B, T] and lengths [B] expected, got {tuple(seqs.shape)}, {tuple(lengths.shape)}")
        if (lengths < 1).any():
            raise ValueError("every sequence needs at least one item")
        x = self.drop(self.embed(seqs))
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed, h0)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=seqs.shape[1])
        return self.drop(out)

    def final_state(self, seqs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[B, hidden]``: the state after each sequence's last item."""
        h = self.hidden_states(seqs, lengths)
        return h[torch.arange(len(seqs), device=h.device), lengths.to(h.device) - 1]

    def scores(self, h: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of ``items`` (``[..., K]`` or ``[...]``) or of all items (``None``)."""
        if items is None:
            return h @ self.out.weight.T + self.out_bias
        w, b = self.out(items), self.out_bias[items]
        if items.ndim == h.ndim:  # [..., K] candidates per state
            return torch.einsum("...h,...kh->...k", h, w) + b
        return (h * w).sum(-1) + b

    def next_item_loss(
        self,
        seqs: torch.Tensor,
        lengths: torch.Tensor,
        loss: str = "ce",
        n_neg: int = 128,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Loss of predicting item ``t+1`` from the state after item ``t``.

        ``ce``: full softmax cross-entropy over the catalogue; ``bpr``, ``top1``,
        ``bpr-max``: GRU4Rec's ranking losses against ``n_neg`` negatives
        sampled uniformly and shared by the mini-batch (as GRU4Rec shares them).
        """
        if loss not in _LOSSES:
            raise ValueError(f"loss must be one of {_LOSSES}, got {loss!r}")
        if (lengths < 2).all():
            raise ValueError("next-item training needs sequences of at least 2 items")
        h = self.hidden_states(seqs, lengths)[:, :-1]
        target = seqs[:, 1:]
        valid = torch.arange(target.shape[1], device=seqs.device)[None, :] < (lengths.to(seqs.device) - 1)[:, None]
        h, target = h[valid], target[valid]
        if loss == "ce":
            return nn.functional.cross_entropy(self.scores(h), target)
        neg = torch.randint(0, self.n_items, (n_neg,), generator=generator).to(seqs.device)
        pos_s = self.scores(h, target)
        neg_s = h @ self.out.weight[neg].T + self.out_bias[neg]
        return {"bpr": bpr_loss, "top1": top1_loss, "bpr-max": bpr_max_loss}[loss](pos_s, neg_s)
