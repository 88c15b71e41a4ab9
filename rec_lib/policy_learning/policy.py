"""The softmax policy over a fixed item catalogue (Sakhi et al., section 2).

.. math::

    \\pi_\\theta(a \\mid x) = \\frac{\\exp f_\\theta(a, x)}{\\sum_b \\exp f_\\theta(b, x)},
    \\qquad f_\\theta(a, x) = h_\\theta(x)^\\top \\beta_a ,

with the item embeddings :math:`\\beta \\in \\mathbb{R}^{P \\times L}` fixed
(Assumption 1) and a learned user transform :math:`h_\\theta`; the paper's
experiments use a linear one, :math:`h_\\theta(x) = \\theta^\\top x` with
:math:`\\theta \\in \\mathbb{R}^{L \\times L}`. The greedy recommendation
:math:`a^* = \\arg\\max_a h_\\theta(x)^\\top \\beta_a` (eq. 5) is a
maximum-inner-product search. Derived in the chapter ``fast_offline_policy``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["SoftmaxPolicy", "exact_topk"]


def _as_tensor(x, device=None, dtype=torch.float32) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(device=device, dtype=dtype)


@torch.no_grad()
def exact_topk(queries: torch.Tensor, beta: torch.Tensor, k: int, chunk: int = 1 << 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-``k`` items by inner product, ``(scores [B, k], ids [B, k])``, best first.

    Scores the catalogue in chunks of ``chunk`` items and keeps a running
    top-``k``, so no ``B x P`` matrix is held (cost ``O(B P L)``).
    """
    P = beta.shape[0]
    if not 1 <= k <= P:
        raise ValueError(f"k must be in [1, {P}] (the catalogue size), got {k}")
    queries = queries.to(beta.device, beta.dtype)
    best_s = best_i = None
    for s in range(0, P, chunk):  # loop over chunks of the catalogue, vectorised within
        sc = queries @ beta[s : s + chunk].T
        kk = min(k, sc.shape[1])
        v, i = torch.topk(sc, kk, dim=1)
        i = i + s
        if best_s is None:
            best_s, best_i = v, i
        else:
            v, pos = torch.topk(torch.cat([best_s, v], 1), min(k, best_s.shape[1] + kk), dim=1)
            best_i = torch.gather(torch.cat([best_i, i], 1), 1, pos)
            best_s = v
    return best_s, best_i


class SoftmaxPolicy(nn.Module):
    """:math:`\\pi_\\theta(a|x) = \\mathrm{softmax}_a(h_\\theta(x)^\\top \\beta_a)` with fixed ``beta``.

    Parameters
    ----------
    beta:
        item embeddings ``[P, L]`` (kept as a buffer: Assumption 1, never trained).
    transform:
        the user transform :math:`h_\\theta` (any module mapping ``[B, L_x]`` to
        ``[B, L]``). Default: the paper's linear map :math:`\\theta^\\top x`
        with :math:`\\theta` ``[L, L]``, initialised by ``init``.
    init:
        ``"identity"`` (:math:`\\theta = I`: the untrained policy recommends the
        items closest to the mean context embedding) or ``"default"`` (torch's
        ``nn.Linear`` initialisation, drawn from ``generator``).
    """

    def __init__(self, beta, transform: nn.Module | None = None, init: str = "identity",
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        beta = _as_tensor(beta)
        if beta.ndim != 2 or beta.shape[0] < 2:
            raise ValueError(f"beta must be a [P, L] matrix with P >= 2 items, got shape {tuple(beta.shape)}")
        self.register_buffer("beta", beta.contiguous())
        L = beta.shape[1]
        if transform is None:
            if init not in ("identity", "default"):
                raise ValueError(f"init must be 'identity' or 'default', got {init!r}")
            transform = nn.Linear(L, L, bias=False)
            with torch.no_grad():
                if init == "identity":
                    transform.weight.copy_(torch.eye(L))
                else:
                    bound = 1.0 / np.sqrt(L)
                    w = torch.rand(L, L, generator=generator) * 2 * bound - bound
                    transform.weight.copy_(w)
        self.h = transform

    @property
    def n_items(self) -> int:
        return self.beta.shape[0]

    @property
    def dim(self) -> int:
        return self.beta.shape[1]

    @property
    def theta(self) -> torch.Tensor:
        """:math:`\\theta` ``[L, L]`` of the linear transform (``h(x) = theta^T x``)."""
        if not isinstance(self.h, nn.Linear):
            raise TypeError("theta exists only for the default linear transform")
        return self.h.weight.T

    def user_embedding(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`h_\\theta(x)` ``[B, L]`` (the MIPS query)."""
        out = self.h(x)
        if out.ndim != 2 or out.shape[1] != self.dim:
            raise ValueError(f"the transform must return [B, {self.dim}], got {tuple(out.shape)}")
        return out

    def scores(self, h: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """:math:`f(a, x) = h^\\top \\beta_a`: all items ``[B, P]``, or ``items`` ``[B, S]`` -> ``[B, S]``."""
        if items is None:
            return h @ self.beta.T
        rows = torch.index_select(self.beta, 0, items.reshape(-1)).view(*items.shape, self.dim)
        return torch.einsum("bl,bsl->bs", h, rows)

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`\\log \\pi_\\theta(\\cdot|x)` ``[B, P]`` (dense, ``O(BP)``: small catalogues only)."""
        return torch.log_softmax(self.scores(self.user_embedding(x)), dim=1)

    @torch.no_grad()
    def argmax(self, x: torch.Tensor, index=None, chunk: int = 1 << 16) -> torch.Tensor:
        """Greedy actions (eq. 5) ``[B]``: exact search, or ``index.search`` (e.g. HNSW) when given."""
        h = self.user_embedding(x)
        if index is None:
            return exact_topk(h, self.beta, 1, chunk)[1][:, 0]
        return index.search(h, 1)[1][:, 0].to(h.device)
