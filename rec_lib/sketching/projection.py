"""The Top-K projection layer (DiPS eq. 5) and the straight-through selections (eq. 4, 6).

Top-K projection (Amos, Koltun and Kolter's *limited multi-label projection*,
LML) maps scores ``x`` to the point of the capped simplex

    mu(x) = argmin_{0 < u < 1}  -x^T u - H_b(u)   s.t.  1^T u = k,          (DiPS eq. 5)

``H_b`` the binary entropy ``-sum u log u + (1 - u) log(1 - u)``. The KKT
conditions give ``u_i = sigmoid(x_i + nu)`` with the scalar ``nu`` the root of
``sum_i sigmoid(x_i + nu) = k``; the forward pass finds it by bisection, the
backward pass differentiates the KKT system implicitly:

    d mu / d x = D - (D 1 1^T D) / (1^T D 1),     D = diag(mu (1 - mu)).

Entries equal to ``-inf`` are masked out (they get ``u = 0`` and no gradient),
which is how DiPS restricts the layer to the items of the intermediate sketch
(adding ``log z_hat`` to the scores). A row with no more than ``k`` finite
entries has nothing to choose: it returns its mask, with zero gradient.

The sketch itself is a hard choice; :func:`straight_through` makes the forward
pass the hard choice and the backward pass the soft one (``w ~ sigma(f)`` in
the online setting, ``w ~ mu(f)`` in the batch setting).
"""

from __future__ import annotations

import torch

__all__ = ["TopKProjection", "top_k_projection", "straight_through", "hard_top_k", "masked_softmax"]

_BISECTION_STEPS = 60


def _solve_nu(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Root ``nu`` of ``sum_i sigmoid(x_i + nu) = k`` per row, by bisection (64-bit)."""
    x64 = x.double()
    finite = torch.isfinite(x64)
    big = torch.finfo(torch.float64).max
    hi_x = torch.where(finite, x64, torch.full_like(x64, -big)).amax(-1, keepdim=True)
    lo_x = torch.where(finite, x64, torch.full_like(x64, big)).amin(-1, keepdim=True)
    # sum < k at nu = -hi_x - 40 (every entry below sigmoid(-40)); sum > k at nu = -lo_x + 40
    lo, hi = -hi_x - 40.0, -lo_x + 40.0
    k64 = k.double().unsqueeze(-1)
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        too_small = torch.sigmoid(x64 + mid).sum(-1, keepdim=True) < k64
        lo = torch.where(too_small, mid, lo)
        hi = torch.where(too_small, hi, mid)
    return 0.5 * (lo + hi)


class TopKProjection(torch.autograd.Function):
    """``mu(x)`` of DiPS eq. 5 over the last dimension; see the module docstring."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        finite = torch.isfinite(x)
        n_finite = finite.sum(-1)
        choose = n_finite > k  # rows with a real choice
        nu = _solve_nu(x, torch.minimum(k, n_finite - 1).clamp(min=0))
        u = torch.sigmoid(x.double() + nu).to(x.dtype)
        u = torch.where(finite, u, torch.zeros_like(u))
        u = torch.where(choose.unsqueeze(-1), u, finite.to(x.dtype))
        ctx.save_for_backward(u, choose)
        return u

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        u, choose = ctx.saved_tensors
        d = u * (1 - u) * choose.unsqueeze(-1).to(u.dtype)
        denom = d.sum(-1, keepdim=True).clamp(min=torch.finfo(u.dtype).tiny)
        gx = d * (grad - (d * grad).sum(-1, keepdim=True) / denom)
        return gx, None


def top_k_projection(x: torch.Tensor, k: int | torch.Tensor) -> torch.Tensor:
    """DiPS eq. 5: the Top-K (LML) projection of scores ``x`` (``[..., n]``; ``-inf`` = masked).

    Each row of the result lies in ``(0, 1)^n`` and sums to ``min(k, #finite)``.
    """
    if x.ndim < 1 or x.shape[-1] == 0:
        raise ValueError(f"top_k_projection needs scores of shape [..., n] with n >= 1, got {tuple(x.shape)}")
    if torch.isnan(x).any():
        raise ValueError("top_k_projection: scores contain NaN")
    k_t = torch.as_tensor(k, device=x.device)
    if (k_t < 1).any():
        raise ValueError(f"top_k_projection: k must be >= 1, got {k}")
    k_t = k_t.expand(x.shape[:-1]).to(x.device)
    return TopKProjection.apply(x, k_t)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``softmax(scores + log mask)`` over the last dimension (DiPS's removal distribution, eq. 4).

    Rows without any allowed entry return zeros.
    """
    s = scores.masked_fill(~mask, float("-inf"))
    p = torch.softmax(s, dim=-1)
    return torch.nan_to_num(p, nan=0.0)


def hard_top_k(scores: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """0/1 indicator of the ``k`` highest allowed scores per row (all allowed ones if fewer)."""
    s = scores.detach().masked_fill(~mask, float("-inf"))
    k_eff = min(k, s.shape[-1])
    idx = s.topk(k_eff, dim=-1).indices
    out = torch.zeros_like(s).scatter_(-1, idx, 1.0)
    return out * mask.to(out.dtype)


def straight_through(hard: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """Forward: ``hard``; backward: the gradient of ``soft`` (Bengio et al.'s straight-through)."""
    if hard.shape != soft.shape:
        raise ValueError(f"straight_through: hard {tuple(hard.shape)} and soft {tuple(soft.shape)} differ")
    return hard.detach() + soft - soft.detach()
