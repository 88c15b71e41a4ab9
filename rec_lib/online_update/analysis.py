"""The learning-rate matrix of a batch and the rank argument (Lemma 1-2, Theorem 3; Figure 4).

:class:`BatchView` lays one batch out as MeLON's section on update flexibility
does: ``n`` interactions (rows) x the ``M`` parameters the batch involves
(columns: the involved rows of each embedding table, every dense weight),
with the per-interaction gradients ``G`` (zero where an interaction does not
involve a parameter). Every strategy returns its ``W`` on that grid
(``strategy.learning_rate_matrix(view)``), and the functions below check:

- Lemma 1 (Eckart-Young): the best rank-``k`` approximation of ``W*`` in
  spectral norm is the truncated SVD, with error ``sigma_{k+1}``;
- Lemma 2: ``rank(W^I) = rank(W^P) = 1``;
- Theorem 3: no one-directional matrix (all columns equal, or all rows equal)
  comes closer to ``W*`` than ``sigma_2``, while a two-directional one can.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from rec_lib.online_update.recommender import OnlineRecommender, Params
from rec_lib.online_update.strategies import Touched

__all__ = [
    "BatchView", "singular_values", "numerical_rank", "best_rank_k", "spectral_norm",
    "one_directional_gap", "rank_table", "pair_table", "submatrix",
]


class BatchView:
    """One batch as an ``n x M`` grid of interaction-parameter pairs (module doc).

    Attributes: ``n``, ``M``, ``theta [M]``, ``grads [n, M]``, ``involved [n, M]``
    (bool), ``losses [n]``, ``mean_grad [M]`` (each column's gradient summed over
    the interactions involving it and divided by their number ``n_m``),
    ``touched`` (:class:`~.strategies.Touched`), ``columns`` (param, row, dim).
    """

    def __init__(self, rec: OnlineRecommender, batch, params: Params | None = None):
        self.rec, self.batch = rec, batch
        self.params = rec.snapshot() if params is None else params
        ps = rec.per_sample(batch, self.params)
        losses, g, rows = rec.mean_gradient(batch, self.params)
        self.touched = Touched(rec, rows)
        self.losses, self.theta, self.mean_grad = ps.losses, self.touched.gather(self.params), self.touched.gather(g)
        n, M = ps.n, self.touched.M
        self.grads = torch.zeros(n, M, device=rec.device)
        self.involved = torch.zeros(n, M, dtype=torch.bool, device=rec.device)
        for j, k in enumerate(self.touched.names):
            start = int(self.touched.offsets[j])
            if k in rec.tables:
                d = self.params[k].shape[1]
                pos = torch.searchsorted(rows[k], ps.rows[k])  # [n, r] position of each slot's row
                cols = start + pos.unsqueeze(-1) * d + torch.arange(d, device=rec.device)  # [n, r, d]
                x = torch.arange(n, device=rec.device).view(-1, 1, 1).expand_as(cols)
                self.grads.index_put_((x.reshape(-1), cols.reshape(-1)), ps.grads[k].reshape(-1), accumulate=True)
                self.involved[x.reshape(-1), cols.reshape(-1)] = True
            else:
                size = self.params[k].numel()
                self.grads[:, start : start + size] = ps.grads[k].reshape(n, -1)
                self.involved[:, start : start + size] = True
        self.n, self.M, self.device = n, M, rec.device

    @property
    def columns(self) -> pd.DataFrame:
        """One row per column of ``W``: parameter name, table row (-1 for dense), dimension / entry."""
        parts = []
        for k in self.touched.names:
            if k in self.rec.tables:
                r = self.touched.rows[k].cpu().numpy()
                d = self.params[k].shape[1]
                parts.append(pd.DataFrame({"param": k, "row": np.repeat(r, d), "entry": np.tile(np.arange(d), len(r))}))
            else:
                size = self.params[k].numel()
                parts.append(pd.DataFrame({"param": k, "row": -1, "entry": np.arange(size)}))
        return pd.concat(parts, ignore_index=True)

    def update(self, W: torch.Tensor) -> torch.Tensor:
        """The change of the involved parameters under eq. 5: ``-(1/n_m) sum_x W[x, m] g_x,m`` ``[M]``."""
        counts = self.involved.sum(0).clamp(min=1)
        return -(W * self.grads).sum(0) / counts


def singular_values(W: torch.Tensor | np.ndarray) -> np.ndarray:
    """Singular values of ``W`` in decreasing order (float64)."""
    A = torch.as_tensor(W).detach().to("cpu", torch.float64)
    return torch.linalg.svdvals(A).numpy()


def numerical_rank(W: torch.Tensor | np.ndarray, rtol: float = 1e-5) -> int:
    """Number of singular values above ``rtol * sigma_1`` (0 for a zero matrix).

    ``rtol = 1e-5`` sits far above float32 round-off (about ``1e-7``) and far
    below the spread of any matrix whose rank is really above one.
    """
    s = singular_values(W)
    return int((s > rtol * s[0]).sum()) if len(s) and s[0] > 0 else 0


def best_rank_k(W: torch.Tensor, k: int) -> torch.Tensor:
    """Lemma 1: the truncated SVD ``W_k = sum_{r<=k} sigma_r U_r V_r^T`` (float64)."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    A = torch.as_tensor(W).detach().to("cpu", torch.float64)
    U, S, Vh = torch.linalg.svd(A, full_matrices=False)
    return (U[:, :k] * S[:k]) @ Vh[:k]


def spectral_norm(A: torch.Tensor) -> float:
    """``||A||_2``, the largest singular value."""
    return float(torch.linalg.matrix_norm(torch.as_tensor(A).to(torch.float64), ord=2))


def one_directional_gap(W_star: torch.Tensor, steps: int = 200, lr: float = 0.05, seed: int = 0) -> dict[str, float]:
    """Theorem 3, numerically: how close can one-directional matrices come to ``W*``?

    Returns ``sigma_2``; the spectral error of the truncated SVD (Lemma 1:
    equals ``sigma_2``); and the smallest errors found for ``W^I = v 1^T``
    (every column equal, importance reweighting) and ``W^P = 1 u^T`` (every row
    equal, meta-optimisation), each from the least-squares start (row / column
    means) refined by ``steps`` of Adam on the spectral norm itself (Theorem 3:
    both stay ``>= sigma_2``).
    """
    A = torch.as_tensor(W_star).detach().to("cpu", torch.float64)
    s = torch.linalg.svdvals(A)
    out = {"sigma_1": float(s[0]), "sigma_2": float(s[1]) if len(s) > 1 else 0.0,
           "svd_rank1_error": spectral_norm(A - best_rank_k(A, 1))}
    gen = torch.Generator().manual_seed(seed)
    for name, start, build in (("interaction_wise", A.mean(1), lambda v: v[:, None].expand_as(A)),
                               ("parameter_wise", A.mean(0), lambda v: v[None, :].expand_as(A))):
        v = (start + 1e-3 * start.abs().mean() * torch.randn(start.shape, generator=gen, dtype=torch.float64)).requires_grad_(True)
        opt = torch.optim.Adam([v], lr=lr * float(A.abs().mean()) + 1e-12)
        best = spectral_norm(A - build(start))
        for _ in range(steps):
            err = torch.linalg.matrix_norm(A - build(v), ord=2)
            best = min(best, err.item())
            opt.zero_grad()
            err.backward()
            opt.step()
        out[f"{name}_error"] = best
    return out


def rank_table(strategies: dict, view: BatchView) -> pd.DataFrame:
    """Rank of each strategy's ``W`` on ``view``, with ``sigma_2 / sigma_1`` (Lemma 2).

    Strategies whose update is no learning-rate matrix (``has_rate_matrix``
    False: SML's transfer) are left out.
    """
    rows = []
    for name, s in strategies.items():
        if not s.has_rate_matrix:
            continue
        W = s.learning_rate_matrix(view)
        sv = singular_values(W)
        rows.append({"strategy": name, "direction": s.direction, "shape": f"{W.shape[0]} x {W.shape[1]}",
                     "rank": numerical_rank(W), "sigma2/sigma1": float(sv[1] / sv[0]) if sv[0] > 0 else 0.0})
    return pd.DataFrame(rows).set_index("strategy")


def pair_table(W: torch.Tensor, view: BatchView) -> pd.DataFrame:
    """The involved interaction-parameter pairs: learning rate, loss of ``x``, ``|g_x,m|``, parameter group."""
    x, m = torch.nonzero(view.involved, as_tuple=True)
    cols = view.columns
    return pd.DataFrame({"w": W[x, m].cpu().numpy(), "loss": view.losses[x].cpu().numpy(),
                         "abs_grad": view.grads[x, m].abs().cpu().numpy(),
                         "param": cols["param"].to_numpy()[m.cpu().numpy()]})


def submatrix(W: torch.Tensor, view: BatchView, n_rows: int = 40, n_cols: int = 60, seed: int = 0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A block of ``W`` for Figure 4: ``n_rows`` interactions x ``n_cols`` parameters they involve.

    Columns are drawn among the parameters involved by the chosen
    interactions; entries whose interaction does not involve the parameter
    (``g = 0``: the rate acts on nothing) are NaN, so only rates on real
    gradients are drawn and averaged. Rows and columns sorted by their means
    over involved entries. Returns ``(block, row_means, col_means)``.
    """
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(view.n, size=min(n_rows, view.n), replace=False))
    inv = view.involved[rows].any(0).cpu().numpy()
    cand = np.flatnonzero(inv)
    cols = np.sort(rng.choice(cand, size=min(n_cols, len(cand)), replace=False))
    B = W[rows][:, cols].cpu().numpy().astype(float)
    B[~view.involved[rows][:, cols].cpu().numpy()] = np.nan
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            B = B[np.argsort(-np.nan_to_num(np.nanmean(B, 1), nan=-np.inf))]
            B = B[:, np.argsort(-np.nan_to_num(np.nanmean(B, 0), nan=-np.inf))]
            return B, np.nanmean(B, 1), np.nanmean(B, 0)
