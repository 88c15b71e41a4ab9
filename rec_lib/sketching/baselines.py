"""The static sketching policies of DiPS's Tables 2-4: Random, Hardest, Influence.

- **Random**: reservoir sampling (Vitter's algorithm R). After ``n`` items each
  one sits in the reservoir of ``K`` with probability ``K / n``: the first
  ``K`` items fill it; item ``n > K`` draws ``r`` uniformly from
  ``{0, ..., n - 1}`` and replaces slot ``r`` when ``r < K``. In the batch
  setting the ``tau`` new items are fed one after the other.
- **Hardest** (Aljundi et al.): keep the ``K`` items of the intermediate
  sketch with the largest loss under the user's current model (the user
  vector adapted on the previous sketch); online, this removes the easiest.
- **Influence** (coreset by influence functions, Koh & Liang; Borsos et al.):
  keep the ``K`` items that best *represent* the intermediate sketch: the
  items whose up-weighting lowers the loss of all ``K + tau`` items the most,
  to first order

      I(j) = grad L(z_hat)^T H^{-1} grad l_j,

  with ``L(z_hat)`` the loss of the intermediate sketch, ``H`` its
  Gauss-Newton matrix w.r.t. the user vector plus ``damping * I`` and ``l_j``
  the loss of item ``j``, all at the current user vector (eq. 11 with the
  whole intermediate sketch as the target).
"""

from __future__ import annotations

import torch

from rec_lib.models import NCF
from rec_lib.sketching.inner import item_losses, score_jacobian

__all__ = ["reservoir_update", "reservoir_keep", "hardest_scores", "influence_scores"]


def reservoir_update(slots: torch.Tensor, new: torch.Tensor, n_seen: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Algorithm R: feed the positions ``new`` ``[B, tau]`` (``-1`` = none) into reservoirs ``slots`` ``[B, K]``.

    ``n_seen`` ``[B]``: items each reservoir has seen before ``new``. Returns
    the new slots. Loops over the ``tau`` new items only; users are vectorised.
    """
    if slots.shape[0] != new.shape[0] or n_seen.shape != (slots.shape[0],):
        raise ValueError(f"slots [B, K], new [B, tau] and n_seen [B] must agree, got {tuple(slots.shape)}, "
                         f"{tuple(new.shape)}, {tuple(n_seen.shape)}")
    k = slots.shape[1]
    slots = slots.clone()
    n = n_seen.clone().long()
    rows = torch.arange(len(slots), device=slots.device)
    for i in range(new.shape[1]):
        x = new[:, i]
        valid = x >= 0
        n = n + valid.long()  # this item is the n-th one
        u = torch.rand(len(slots), generator=generator, dtype=torch.float64).to(slots.device)
        r = torch.floor(u * n.double()).long()  # uniform in {0, ..., n - 1}
        target = torch.where(n <= k, n - 1, r)
        replace = valid & (target < k)
        col = target.clamp(0, k - 1)
        slots[rows[replace], col[replace]] = x[replace]
    return slots


def reservoir_keep(cand: torch.Tensor, mask: torch.Tensor, k: int, tau: int, n_seen: torch.Tensor,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Algorithm R as a keep-indicator over the intermediate sketch ``cand`` = ``[slots, new]``."""
    slots, new = cand[:, :k], cand[:, k:]
    out = reservoir_update(slots, new, n_seen, generator)
    keep = (cand.unsqueeze(-1) == out.unsqueeze(1)).any(-1) & mask
    return keep.to(torch.float32)


def hardest_scores(model: NCF, theta: torch.Tensor, items: torch.Tensor, targets: torch.Tensor,
                   mask: torch.Tensor, explicit: bool) -> torch.Tensor:
    """Loss of each slot's item under ``theta`` (``-inf`` on empty slots): keep the largest."""
    with torch.no_grad():
        loss = item_losses(model, theta, items.clamp(min=0), targets, explicit)
    return loss.masked_fill(~mask, float("-inf"))


def influence_scores(model: NCF, theta: torch.Tensor, items: torch.Tensor, targets: torch.Tensor,
                     mask: torch.Tensor, explicit: bool, damping: float = 1e-3) -> torch.Tensor:
    """``I(j) = grad L(z_hat)^T (H + damping I)^{-1} grad l_j`` per slot (``-inf`` on empty slots): keep the largest.

    ``H`` is the Gauss-Newton matrix of ``L(z_hat)`` w.r.t. the user vector
    (positive semi-definite): ``2 sum_j J_j J_j^T`` for the squared error,
    ``|z_hat| (sum_i p_i J_i J_i^T - Jbar Jbar^T)`` for the cross-entropy
    (``p = softmax(g)``, ``Jbar = sum_i p_i J_i``).
    """
    if damping <= 0:
        raise ValueError(f"damping must be > 0, got {damping}")
    items = items.clamp(min=0)
    w = mask.to(theta.dtype)
    if explicit:
        s, jac = score_jacobian(model, theta, items)  # [B, S], [B, S, D]
        grads = (2.0 * (s - targets) * w).unsqueeze(-1) * jac
        wj = jac * w.unsqueeze(-1)
        hess = 2.0 * wj.transpose(1, 2) @ jac
    else:
        s_all, jac_all = score_jacobian(model, theta, None)  # [B, M], [B, M, D]
        p = torch.softmax(s_all, dim=-1)
        jbar = (p.unsqueeze(-1) * jac_all).sum(1)  # [B, D]
        jac = jac_all.gather(1, items.unsqueeze(-1).expand(-1, -1, jac_all.shape[-1]))
        grads = (jbar.unsqueeze(1) - jac) * w.unsqueeze(-1)
        cov = (jac_all * p.unsqueeze(-1)).transpose(1, 2) @ jac_all - jbar.unsqueeze(-1) * jbar.unsqueeze(1)
        hess = w.sum(1)[:, None, None] * cov
    eye = torch.eye(theta.shape[1], dtype=theta.dtype, device=theta.device)
    direction = torch.linalg.solve(hess + damping * eye, grads.sum(1).unsqueeze(-1)).squeeze(-1)
    scores = (grads * direction.unsqueeze(1)).sum(-1)
    return scores.masked_fill(~mask, float("-inf"))
