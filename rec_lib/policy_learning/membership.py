"""Vectorised per-row set membership: is ``q[b, s]`` in the small set of row ``b``?

The estimators ask it twice per step for ``B x S`` samples: is a uniform draw
in its context's top-K (to evaluate :math:`q_{K,\\epsilon}`), and is an action
in the context's reward set. A binary search per sample costs a cache miss
per level; instead each row's set is hashed into a byte table ``[B, 2^bits]``
(allocated once, cleared after each use), one gather per sample finds the
few candidates, and only those are checked exactly by binary search.
"""

from __future__ import annotations

import torch

__all__ = ["RowMembership"]


class RowMembership:
    """``positions = RowMembership()(set_rows, set_vals, q)``.

    ``set_rows`` and ``set_vals`` ``[n]`` list the members (row ``b`` owns
    value ``v``), sorted by ``(row, value)``; values must be non-negative.
    ``q`` ``[B, S]`` are the queries of rows ``0..B-1``. Returns ``[B, S]``
    positions into the member arrays, ``-1`` where ``q[b, s]`` is not a member.
    """

    def __init__(self, bits: int = 16) -> None:
        if not 4 <= bits <= 24:
            raise ValueError(f"bits must lie in [4, 24], got {bits}")
        self.bits, self._table = bits, None

    def _buffer(self, B: int, device) -> torch.Tensor:
        T = 1 << self.bits
        if self._table is None or self._table.numel() < B * T or self._table.device != torch.device(device):
            self._table = torch.zeros(B * T, dtype=torch.uint8, device=device)
        return self._table

    def __call__(self, set_rows: torch.Tensor, set_vals: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        if q.ndim != 2:
            raise ValueError(f"queries must be [B, S], got shape {tuple(q.shape)}")
        if set_rows.shape != set_vals.shape or set_rows.ndim != 1:
            raise ValueError("set_rows and set_vals must be 1-D arrays of one length")
        B, device = q.shape[0], q.device
        out = torch.full(q.shape, -1, dtype=torch.long, device=device)
        if set_vals.numel() == 0 or q.numel() == 0:
            return out
        mask, T = (1 << self.bits) - 1, 1 << self.bits
        table = self._buffer(B, device)
        slot = set_rows * T + (set_vals & mask)
        table[slot] = 1
        q_slot = (torch.arange(B, device=device)[:, None] * T + (q & mask)).reshape(-1)
        cand = torch.nonzero(table[q_slot]).flatten()
        table[slot] = 0  # leave the table clean for the next call
        if cand.numel() == 0:
            return out
        span = int(torch.maximum(set_vals.max(), q.max())) + 1
        keys = set_rows * span + set_vals  # sorted, as the members are sorted by (row, value)
        qb = torch.div(cand, q.shape[1], rounding_mode="floor")
        qk = qb * span + q.reshape(-1)[cand]
        pos = torch.searchsorted(keys, qk).clamp_(max=keys.numel() - 1)
        hit = keys[pos] == qk
        out.view(-1)[cand[hit]] = pos[hit]
        return out
