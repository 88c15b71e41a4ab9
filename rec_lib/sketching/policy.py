"""The sketching policy network ``f(z_hat * y; Phi)`` and its selection rule (DiPS eq. 4-6).

A sketch is stored as *slots*: positions in the user's (time-ordered) sequence,
``-1`` for an empty slot. The intermediate sketch of the online (``tau = 1``)
or batch (``tau > 1``) update is the ``K`` slots of the sketch followed by the
``tau`` newest positions, ``K + tau`` slots in all.

The paper's policy is a network on the M-vector ``z_hat * y`` (the ratings of
the items in the intermediate sketch, zero elsewhere) that scores every item,
masked to the intermediate sketch by adding ``log z_hat``. We use a two-layer
MLP

    h = tanh(W1 (z_hat * y) + b1),     f = W2 h + b2,

and evaluate it *sparsely*: ``W1 (z_hat * y)`` is the sum of the columns of
``W1`` of the items in the sketch weighted by their ratings, and only the
rows of ``W2`` of those items are needed. The result equals the dense MLP
restricted to the sketch (a unit test checks it) at a cost of ``O(K + tau)``
instead of ``O(M)`` per user.
"""

from __future__ import annotations

import torch
from torch import nn

from rec_lib.sketching.projection import hard_top_k, masked_softmax, straight_through, top_k_projection

__all__ = ["SketchPolicy", "intermediate_slots", "select", "soft_selection", "compact_slots", "gumbel_noise"]


class SketchPolicy(nn.Module):
    """``f(z_hat * y; Phi)``: a two-layer MLP on the masked rating vector, evaluated on the sketch's items.

    ``forward(items, values, mask)`` takes the items ``[..., S]`` of the
    intermediate sketch's slots, their inputs ``y`` (ratings / 5 in the
    explicit setting, 1 in the implicit one) and the mask of occupied slots,
    and returns the scores ``[..., S]`` with ``-inf`` on empty slots (the
    ``log z_hat`` term).
    """

    def __init__(self, n_items: int, hidden: int = 64, init_std: float = 0.01):
        super().__init__()
        if n_items < 1 or hidden < 1:
            raise ValueError(f"n_items and hidden must be >= 1, got {n_items}, {hidden}")
        self.n_items, self.hidden = n_items, hidden
        self.w1 = nn.Embedding(n_items, hidden)  # column j of W1
        self.b1 = nn.Parameter(torch.zeros(hidden))
        self.w2 = nn.Embedding(n_items, hidden)  # row j of W2
        self.b2 = nn.Parameter(torch.zeros(n_items))
        for emb in (self.w1, self.w2):
            nn.init.normal_(emb.weight, std=init_std)

    def forward(self, items: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if not items.shape == values.shape == mask.shape:
            raise ValueError(f"items, values and mask must share a shape, got {tuple(items.shape)}, "
                             f"{tuple(values.shape)}, {tuple(mask.shape)}")
        items = items.clamp(min=0)
        x = (values * mask).unsqueeze(-1) * self.w1(items)  # [..., S, H]
        h = torch.tanh(x.sum(-2) + self.b1)  # [..., H]
        s = (self.w2(items) * h.unsqueeze(-2)).sum(-1) + self.b2[items]
        return s.masked_fill(~mask, float("-inf"))

    def dense(self, zy: torch.Tensor) -> torch.Tensor:
        """The same MLP on dense M-vectors ``z_hat * y`` ``[B, M]`` (scores of every item; for tests)."""
        h = torch.tanh(zy @ self.w1.weight + self.b1)
        return h @ self.w2.weight.T + self.b2


def intermediate_slots(slots: torch.Tensor, t: int, tau: int, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The intermediate sketch at step ``t``: ``slots`` ``[B, K]`` plus positions ``t - tau + 1 .. t``.

    Returns the slots ``[B, K + tau]`` and their mask (occupied, and inside the
    user's sequence of length ``lengths``).
    """
    if tau < 1 or t < tau - 1:
        raise ValueError(f"need tau >= 1 and t >= tau - 1, got t={t}, tau={tau}")
    new = torch.arange(t - tau + 1, t + 1, device=slots.device).expand(slots.shape[0], tau)
    new = torch.where(new < lengths.to(slots.device).unsqueeze(1), new, torch.full_like(new, -1))
    cand = torch.cat([slots, new], dim=1)
    return cand, cand >= 0


def gumbel_noise(shape: torch.Size | tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard Gumbel noise; ``argmax(scores + noise)`` samples from ``softmax(scores)``."""
    u = torch.rand(shape, generator=generator).clamp(1e-12, 1 - 1e-12)
    return -torch.log(-torch.log(u))


def soft_selection(scores: torch.Tensor, mask: torch.Tensor, k: int, tau: int) -> torch.Tensor:
    """The differentiable surrogate of the *kept* slots.

    Online (``tau = 1``, eq. 4): ``mask - sigma(f)``, the softmax being the
    probability of *removing* each slot. Batch (eq. 5-6): ``mu(f)``, the Top-K
    projection. Rows with nothing to decide (``<= k`` occupied slots) return
    the mask and pass no gradient.
    """
    decide = mask.sum(-1) > k
    if tau == 1:
        keep = mask.to(scores.dtype) - masked_softmax(scores, mask)
    else:
        keep = top_k_projection(scores, k)
    return torch.where(decide.unsqueeze(-1), keep, mask.to(keep.dtype))


def select(scores: torch.Tensor, mask: torch.Tensor, k: int, tau: int,
           noise: torch.Tensor | None = None) -> torch.Tensor:
    """Kept slots of the intermediate sketch, hard forward and straight-through backward (eq. 4, 6).

    Online: remove ``argmax(f + noise)`` (``noise`` Gumbel: a sample from the
    softmax; ``None``: the most likely item). Batch: keep the top ``k`` of
    ``f + noise`` (Gumbel-top-k samples ``k`` items without replacement).
    The backward pass is the gradient of :func:`soft_selection`.
    """
    perturbed = scores.detach() if noise is None else scores.detach() + noise
    decide = mask.sum(-1) > k
    if tau == 1:
        removed = hard_top_k(perturbed, mask, 1)
        hard = mask.to(scores.dtype) - removed * decide.unsqueeze(-1).to(scores.dtype)
    else:
        hard = torch.where(decide.unsqueeze(-1), hard_top_k(perturbed, mask, k), mask.to(scores.dtype))
    return straight_through(hard, soft_selection(scores, mask, k, tau))


def compact_slots(cand: torch.Tensor, keep: torch.Tensor, k: int) -> torch.Tensor:
    """The new sketch ``[B, k]``: the kept positions of ``cand`` in slot order, ``-1`` padded."""
    kept = (keep.detach() > 0.5) & (cand >= 0)
    order = torch.argsort((~kept).to(torch.int8), dim=1, stable=True)[:, :k]
    out = cand.gather(1, order)
    return torch.where(kept.gather(1, order), out, torch.full_like(out, -1))
