"""The base recommender seen as parameters ``Theta`` updated online (MeLON eq. 1).

:class:`OnlineRecommender` wraps the shared :class:`rec_lib.models.MF`
(BPR-MF, pairwise loss) or :class:`rec_lib.models.NCF` (log loss) and exposes
what the update strategies need, functionally (a parameter dict in, a new one
out, so meta-models can differentiate through an update):

- per-interaction losses ``L_Theta(x)`` of ``x = (u, i, j)`` (the positive
  ``i`` and the sampled negative ``j``);
- per-interaction gradients ``g_x = grad L_Theta(x)``, vectorised with
  ``torch.func`` (``functional_call`` + ``vmap`` + ``grad``) over the
  parameters *involved* in ``x``: the rows ``u`` of the user tables, ``i`` and
  ``j`` of the item tables, and every dense weight (NCF's MLP);
- the update of eq. 5, ``Theta' = Theta - sum_x W[x] * g_x`` with the sum over
  the interactions that involve each parameter divided by their number ``n_m``
  (``n`` for dense weights, which is eq. 1 exactly; for an embedding row, the
  mean over the interactions of that user or item in the batch). One learning
  rate then suits embedding rows and dense weights alike.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from rec_lib.metrics import rank_against_candidates
from rec_lib.models import MF, NCF, bce_loss, bpr_loss

__all__ = ["OnlineRecommender", "PerSample", "Params"]

Params = dict[str, torch.Tensor]
_LOSSES = {"bpr": bpr_loss, "bce": bce_loss}


@dataclass
class PerSample:
    """Per-interaction losses and gradients of one batch, over the involved parameters.

    ``grads[name]`` is ``[n, r, d]`` for a table (``r`` = 1 user row or 2 item
    rows: positive, negative) and ``[n, *shape]`` for a dense weight;
    ``values`` has the same layout for tables and the shared ``[*shape]`` for
    dense weights; ``rows[name]`` the table rows ``[n, r]``; ``counts[name]``
    ``n_m`` of each table slot ``[n, r]``.
    """

    losses: torch.Tensor
    grads: Params
    values: Params
    rows: dict[str, torch.Tensor]
    counts: dict[str, torch.Tensor]

    @property
    def n(self) -> int:
        return len(self.losses)


class OnlineRecommender:
    """A recommender whose parameters are updated batch by batch (see the module doc).

    ``model`` is an :class:`MF` or :class:`NCF` (any module whose embedding
    tables are named ``user*`` / ``item*`` and whose ``forward(users, items)``
    accepts ``items`` of shape ``[B, K]`` works); ``loss`` is ``"bpr"``
    (BPR-MF) or ``"bce"`` (NCF's log loss).
    """

    def __init__(self, model: nn.Module, loss: str = "bpr", name: str | None = None):
        if loss not in _LOSSES:
            raise ValueError(f"loss must be one of {sorted(_LOSSES)}, got {loss!r}")
        self.model, self.loss = model, loss
        self.name = name or type(model).__name__
        self.tables: dict[str, str] = {}
        for mod_name, mod in model.named_modules():
            if isinstance(mod, nn.Embedding):
                side = "user" if mod_name.startswith("user") else "item" if mod_name.startswith("item") else None
                if side is None:
                    raise ValueError(f"embedding {mod_name!r} is neither user* nor item*; cannot tell its rows")
                self.tables[f"{mod_name}.weight"] = side
        if not any(s == "user" for s in self.tables.values()) or not any(s == "item" for s in self.tables.values()):
            raise ValueError("the model needs at least one user and one item embedding table")
        self.dense = [k for k, _ in model.named_parameters() if k not in self.tables]
        self.n_users = next(p.shape[0] for k, p in self.params.items() if self.tables.get(k) == "user")
        self.n_items = next(p.shape[0] for k, p in self.params.items() if self.tables.get(k) == "item")

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, kind: str, n_users: int, n_items: int, dim: int = 32, layers: tuple[int, ...] = (32, 16),
              device: torch.device | str = "cpu") -> "OnlineRecommender":
        """``kind="BPR"``: :class:`MF` with the BPR loss; ``kind="NCF"``: :class:`NCF` (GMF and MLP
        embeddings of size ``dim`` each, MLP ``layers``) with the log loss."""
        if kind == "BPR":
            return cls(MF(n_users, n_items, dim=dim).to(device), "bpr", "BPR")
        if kind == "BiasedBPR":  # user and item biases; new users start at the mean known user (see mean_new_users)
            return cls(MF(n_users, n_items, dim=dim, bias=True).to(device), "bpr", "BiasedBPR")
        if kind == "NCF":
            return cls(NCF(n_users, n_items, dim_gmf=dim, dim_mlp=dim, layers=layers).to(device), "bce", "NCF")
        raise ValueError(f"kind must be 'BPR', 'BiasedBPR' or 'NCF', got {kind!r}")

    @torch.no_grad()
    def mean_new_users(self, known_users) -> None:
        """Set every user outside ``known_users`` to the mean known user (vector; bias tables to 0).

        As :class:`rec_lib.models.BiasedMF` scores a new user, but written into
        the table so that the online update starts from that row and moves it.
        """
        known = torch.zeros(self.n_users, dtype=torch.bool, device=self.device)
        known[torch.as_tensor(known_users, dtype=torch.long, device=self.device)] = True
        if not known.any():
            raise ValueError("at least one user must be known")
        for k, side in self.tables.items():
            if side == "user":
                p = self.params[k]
                fill = torch.zeros_like(p[0]) if "bias" in k else p[known].mean(0)
                p[~known] = fill

    def clone(self) -> "OnlineRecommender":
        """An independent copy (same parameter values)."""
        return OnlineRecommender(copy.deepcopy(self.model), self.loss, self.name)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def params(self) -> dict[str, nn.Parameter]:
        """The live parameters ``Theta`` (updated in place by :meth:`load`)."""
        return dict(self.model.named_parameters())

    def snapshot(self) -> Params:
        """A detached copy of ``Theta``."""
        return {k: v.detach().clone() for k, v in self.params.items()}

    @torch.no_grad()
    def load(self, params: Params) -> None:
        """Set ``Theta`` to ``params`` (in place)."""
        for k, p in self.params.items():
            p.copy_(params[k])

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.params.values())

    # ------------------------------------------------------------------ scoring
    def pair_scores(self, params: Params, batch) -> torch.Tensor:
        """``[n, 2]`` scores of the positive and the negative of each interaction."""
        items = torch.stack([batch.items, batch.negatives], 1).to(self.device)
        return functional_call(self.model, params, (batch.users.to(self.device), items))

    def losses(self, params: Params, batch) -> torch.Tensor:
        """``L_Theta(x)`` of every interaction ``[n]`` (BPR or log loss on its positive and negative)."""
        s = self.pair_scores(params, batch)
        one = _LOSSES[self.loss]
        return vmap(lambda p, q: one(p, q))(s[:, :1], s[:, 1:])

    def batch_loss(self, params: Params, batch, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Mean (optionally weighted) loss of a batch: the objective of eq. 2."""
        losses = self.losses(params, batch)
        return losses.mean() if weights is None else (weights * losses).mean()

    @torch.no_grad()
    def rank(self, batch) -> torch.Tensor:
        """Rank of each positive among its candidates (1 + 99 in the paper), pessimistic ties."""
        scores = self.model(batch.users.to(self.device), batch.candidates.to(self.device))
        return rank_against_candidates(scores)

    # ----------------------------------------------------------- involved parameters
    def rows(self, batch) -> dict[str, torch.Tensor]:
        """Table rows involved in each interaction: ``[n, 1]`` (user) or ``[n, 2]`` (positive, negative)."""
        u = batch.users.to(self.device)[:, None]
        ij = torch.stack([batch.items, batch.negatives], 1).to(self.device)
        return {k: (u if side == "user" else ij) for k, side in self.tables.items()}

    def slot_counts(self, rows: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``n_m`` of each table slot: how many slots of the batch touch the same row."""
        out = {}
        for k, r in rows.items():
            c = torch.bincount(r.reshape(-1), minlength=self.params[k].shape[0])
            out[k] = c[r].to(torch.float32)
        return out

    def per_sample(self, batch, params: Params | None = None) -> PerSample:
        """Losses and per-interaction gradients ``g_x`` over the involved parameters.

        Vectorised with ``torch.func``: the single-interaction loss is written
        with ``functional_call`` on a model whose tables are the interaction's
        own rows (``[1, d]`` user, ``[2, d]`` item: positive, negative), then
        ``vmap(grad(...))`` maps it over the batch. No loop over interactions.
        """
        params = self.snapshot() if params is None else {k: v.detach() for k, v in params.items()}
        rows = self.rows(batch)
        local = {k: params[k][rows[k]] for k in self.tables}
        dense = {k: params[k] for k in self.dense}
        u0 = torch.zeros(1, dtype=torch.long, device=self.device)
        ij = torch.tensor([[0, 1]], device=self.device)
        one = _LOSSES[self.loss]

        def single(loc: Params, den: Params) -> tuple[torch.Tensor, torch.Tensor]:
            s = functional_call(self.model, {**loc, **den}, (u0, ij))
            loss = one(s[:, 0], s[:, 1])
            return loss, loss

        grads, losses = vmap(grad(single, argnums=(0, 1), has_aux=True), in_dims=(0, None))(local, dense)
        return PerSample(losses.detach(), {**grads[0], **grads[1]}, {**local, **dense}, rows,
                         self.slot_counts(rows))

    def mean_gradient(self, batch, params: Params | None = None, weights: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, Params, dict[str, torch.Tensor]]:
        """``(losses, g_bar, touched)``: the batch gradient normalised per parameter by ``n_m``.

        ``g_bar[name]`` has the parameter's full shape (zero on rows the batch
        does not involve); ``touched[name]`` lists the involved rows of each
        table. ``weights`` scale each interaction's loss (importance reweighting).
        Computed with one backward pass, no per-interaction gradients.
        """
        params = self.snapshot() if params is None else params
        leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        losses = self.losses(leaves, batch)
        total = losses.sum() if weights is None else (weights * losses).sum()
        g = dict(zip(leaves, torch.autograd.grad(total, list(leaves.values()))))
        rows = self.rows(batch)
        touched = {}
        for k in self.tables:
            c = torch.bincount(rows[k].reshape(-1), minlength=g[k].shape[0]).to(g[k].dtype)
            g[k] = g[k] / c.clamp(min=1).unsqueeze(-1)
            touched[k] = torch.nonzero(c, as_tuple=True)[0]
        for k in self.dense:
            g[k] = g[k] / len(losses)
        return losses.detach(), g, touched

    # ------------------------------------------------------------------ updates
    def apply_per_sample(self, params: Params, ps: PerSample, W: Params) -> Params:
        """Eq. 5: ``Theta' = Theta - sum_x W[x] * g_x``, each parameter's sum divided by ``n_m``.

        ``W[name]`` broadcasts against ``ps.grads[name]`` (``[n, r, d]`` or
        ``[n, *shape]``): a scalar (Default), ``[n, 1, 1]`` (one rate per
        interaction), or a full per-pair tensor (MeLON). Differentiable in ``W``.
        """
        out = dict(params)
        for k in self.tables:
            upd = (W[k] * ps.grads[k]) / ps.counts[k].unsqueeze(-1)
            d = upd.shape[-1]
            out[k] = params[k].index_add(0, ps.rows[k].reshape(-1), -upd.reshape(-1, d))
        for k in self.dense:
            out[k] = params[k] - (W[k] * ps.grads[k]).sum(0) / ps.n
        return out

    def apply_full(self, params: Params, delta: Params) -> Params:
        """``Theta + delta`` for full-shaped ``delta`` (missing names unchanged)."""
        return {k: (v + delta[k]) if k in delta else v for k, v in params.items()}

    # ---------------------------------------------------------- MeLON's inputs
    def user_embedding(self, params: Params, users: torch.Tensor) -> torch.Tensor:
        """``e_u``: the user's rows of every user table, concatenated (MF: ``p_u``; NCF: GMF and MLP)."""
        return torch.cat([params[k][users] for k, s in self.tables.items() if s == "user"], -1)

    def item_embedding(self, params: Params, items: torch.Tensor) -> torch.Tensor:
        """``e_i``: the item's rows of every item table, concatenated."""
        return torch.cat([params[k][items] for k, s in self.tables.items() if s == "item"], -1)

    @property
    def embedding_dim(self) -> int:
        return sum(self.params[k].shape[1] for k, s in self.tables.items() if s == "user")
