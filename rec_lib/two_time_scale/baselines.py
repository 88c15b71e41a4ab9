"""The baselines of 2TS's Table 1 that run at our scale, behind one interface.

Every sequential model here exposes ``states(group, users, items, lengths,
prev) -> [B, L, d]`` (the user representation that scores each window
position, built from the positions before it) and ``score(phi, items)``, so
the same training loop (:func:`rec_lib.two_time_scale.model.fit_windows`, the
offer-set loss of eq. 10-12) and the same evaluation
(:func:`rec_lib.two_time_scale.protocol.sequential_scores`) serve them all.

* **CCF** (Yang et al. 2011): stage 1 alone, static ``phi_u . x_i``
  (:func:`ccf_scores`).
* **SumPooling**: the user is the pooled embedding of the items clicked so
  far, then a linear layer (:class:`SumPooling`).
* **GRU4Rec** (Hidasi et al. 2016): :class:`rec_lib.models.GRU4Rec` behind
  :class:`GRU4RecStates`.
* **2-GRU** and **2TS-SingleStage** are :class:`~rec_lib.two_time_scale.model.TwoTimeScale`
  configurations (see that module).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rec_lib.models import MF, GRU4Rec
from rec_lib.two_time_scale.protocol import EvalSet, TTSData, candidate_scores

__all__ = ["ccf_scores", "cold_user_embedding", "SumPooling", "GRU4RecStates"]


def cold_user_embedding(mf: MF, n_train: np.ndarray) -> torch.Tensor:
    """The mean stage-1 embedding of the users seen in training: CCF's vector for a user it never saw."""
    seen = torch.as_tensor(np.flatnonzero(n_train > 0), device=mf.user.weight.device)
    if len(seen) == 0:
        raise ValueError("no user has a training interaction")
    return mf.user.weight[seen].mean(0)


@torch.no_grad()
def ccf_scores(mf: MF, d: TTSData, es: EvalSet, batch_size: int = 4096) -> torch.Tensor:
    """CCF's scores ``phi_u . x_j`` of the candidates (eq. 10's model, static in time).

    Users without training interactions have no transductive embedding; they
    get :func:`cold_user_embedding` (a popularity-like fallback).
    """
    device = mf.user.weight.device
    cold = cold_user_embedding(mf, d.n_train)
    u = torch.as_tensor(es.users, device=device)
    phi = torch.where(torch.as_tensor(d.n_train[es.users] > 0, device=device)[:, None], mf.user(u), cold)
    return candidate_scores(phi, mf.item.weight, torch.as_tensor(es.candidates, device=device), chunk=batch_size).cpu()


class SumPooling(nn.Module):
    """``phi^t = A (1/n_t) sum_{s<t} e_{i_s} + b``; the score of item ``j`` is ``phi^t . x_j``.

    The history's item embeddings are pooled (averaged, so long and short
    histories share a scale) and mapped by one linear layer; with no history
    the user is ``b``. Input embeddings ``e`` and output embeddings ``x`` are
    separate tables; index ``n_items`` is padding.
    """

    def __init__(self, n_items: int, dim: int):
        super().__init__()
        if min(n_items, dim) < 1:
            raise ValueError(f"n_items and dim must be >= 1, got {n_items}, {dim}")
        self.n_items, self.pad = n_items, n_items
        self.embed = nn.Embedding(n_items + 1, dim, padding_idx=n_items)
        self.out = nn.Embedding(n_items + 1, dim, padding_idx=n_items)
        self.A = nn.Linear(dim, dim)
        for e in (self.embed, self.out):
            nn.init.normal_(e.weight, std=0.1)
            with torch.no_grad():
                e.weight[n_items].zero_()

    def states(self, group: str, users: torch.Tensor, items: torch.Tensor, lengths: torch.Tensor,
               prev: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, L, d]``: the pooled history before each position (cumulative sums, no loop)."""
        e = self.embed(items)  # padding rows are zero
        before = torch.cumsum(e, dim=1) - e
        n = torch.arange(items.shape[1], device=items.device, dtype=e.dtype).clamp(min=1)
        return self.A(before / n[None, :, None])

    def item_table(self) -> tuple[torch.Tensor, None]:
        """``(x, None)``: the output item embeddings."""
        return self.out.weight, None

    def score(self, phi: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        x = self.out(items)
        return (phi.unsqueeze(-2) * x).sum(-1) if items.ndim == phi.ndim else (phi * x).sum(-1)


class GRU4RecStates(nn.Module):
    """:class:`rec_lib.models.GRU4Rec` behind the ``states`` / ``score`` interface of this chapter.

    The state that scores position ``t`` is the GRU's hidden state after the
    window's items before ``t`` (zeros before the first one).
    """

    def __init__(self, n_items: int, dim: int, hidden: int | None = None):
        super().__init__()
        self.gru4rec = GRU4Rec(n_items, dim=dim, hidden=hidden or dim)
        self.n_items, self.pad = n_items, self.gru4rec.pad

    def states(self, group: str, users: torch.Tensor, items: torch.Tensor, lengths: torch.Tensor,
               prev: torch.Tensor | None = None) -> torch.Tensor:
        h = self.gru4rec.hidden_states(items, lengths)
        return torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], dim=1)

    def item_table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(w, b)``: GRU4Rec's output embeddings and item biases."""
        return self.gru4rec.out.weight, self.gru4rec.out_bias

    def score(self, phi: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.gru4rec.scores(phi, items.clamp(max=self.n_items - 1))
