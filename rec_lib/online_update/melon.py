"""MeLON (Kim et al. 2022): a learning rate for every interaction-parameter pair.

Three steps turn a batch into the learning-rate matrix ``W^{2D}`` (eq. 5):

I.   **Interaction representation** (Def. 1-3, eq. 8-10). The user's previous
     items and the item's previous users (the bipartite interaction history,
     capped at ``K`` sampled neighbours, :class:`~.stream.InteractionHistory`)
     are aggregated by graph attention::

         alpha_ui' = softmax_i'(LeakyReLU([e_u, e_i']^T a_U))                 (9)
         e~_u = ReLU(W_user [e_u, sum_i' alpha_ui' e_i'] + b_user)           (8)
         h_x  = ReLU(W_x [e~_u, e~_i] + b_x)                                  (10)

     with ``e`` the recommender's own embeddings (detached: inputs of the meta-model).
II.  **Parameter role** (Def. 4, eq. 11): ``h_theta = MLP([theta_m, L(x), g_x,m])``,
     each input preprocessed into (log-magnitude, sign) (:func:`~.strategies.preprocess`).
III. **Learning rate** (eq. 12-13): ``w_x,m = sigmoid(W_lr [h_x, h_theta] + b_lr)``,
     scaled by ``w_max = max_ratio * eta`` so that the sigmoid's starting value
     ``1 / max_ratio`` reproduces Default's rate; ``theta_m <- theta_m - w * g``.

Only the parameters an interaction involves are updated (the paper's
*selective* update): its user's rows, its item's and its negative's rows, and
the dense weights. MeLON is meta-trained online like the other meta-models
(:class:`~.strategies.MetaStrategy`): the updated recommender must do well on
the next batch.

Ablations (Table 3): ``MeLON_I`` keeps step I and feeds only the loss to the
role MLP (no parameter inputs: each row of ``W`` is constant, importance
reweighting, eq. 3); ``MeLON_P`` drops step I and feeds the role MLP the
batch's loss and gradient (no interaction inputs: each column is constant,
meta-optimisation, eq. 4). Both have ``rank(W) = 1`` (Lemma 2).

``MeLON-code`` (variant ``"F"``) is the update of the authors' published code
rather than of the paper: the role MLP sees ``[L(x), g_x,m]`` only (no
``theta``) and a second sigmoid head, a *forget gate* ``f`` (bias started at
``forget_bias``, near 1), shrinks the parameter, an LSTM-like cell::

    theta_m <- theta_m - (1 / n_m) sum_x [(1 - f_x,m) theta_m + w_x,m g_x,m]

(with ``f = 1`` it is MeLON's eq. 13). The paper does not describe the gate.
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from rec_lib.online_update.recommender import Params, PerSample
from rec_lib.online_update.strategies import MetaStrategy, Touched, preprocess

__all__ = ["MeLONNet", "MeLON", "VARIANTS"]

VARIANTS = {"2D": "MeLON", "I": "MeLON_I", "P": "MeLON_P", "F": "MeLON-code"}


class MeLONNet(nn.Module):
    """The meta-model of eq. 8-12 (``variant`` "2D", or the ablations "I" and "P")."""

    def __init__(self, emb_dim: int, hidden: int = 16, role_layers: int = 2, variant: str = "2D",
                 max_ratio: float = 4.0, forget_bias: float = 5.0):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        if emb_dim < 1 or hidden < 1 or role_layers < 1:
            raise ValueError(f"emb_dim, hidden and role_layers must be >= 1, got {emb_dim}, {hidden}, {role_layers}")
        if max_ratio <= 1:
            raise ValueError(f"max_ratio must be > 1, got {max_ratio}")
        self.variant, self.uses_interaction = variant, variant in ("2D", "I", "F")
        if self.uses_interaction:
            self.att_user = nn.Linear(2 * emb_dim, 1, bias=False)  # a_U, eq. 9
            self.att_item = nn.Linear(2 * emb_dim, 1, bias=False)  # a_I
            self.ext_user = nn.Linear(2 * emb_dim, hidden)  # W_user, b_user, eq. 8
            self.ext_item = nn.Linear(2 * emb_dim, hidden)  # W_item, b_item
            self.inter = nn.Linear(2 * hidden, hidden)  # W_x, b_x, eq. 10
            self.lr_x = nn.Linear(hidden, 1, bias=False)  # the h_x half of W_lr, eq. 12
        layers: list[nn.Module] = []
        width = {"I": 2, "F": 4}.get(variant, 6)
        for _ in range(role_layers):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.role = nn.Sequential(*layers)  # eq. 11
        self.lr_theta = nn.Linear(hidden, 1)  # the h_theta half of W_lr and b_lr, eq. 12
        with torch.no_grad():  # start at sigmoid = 1 / max_ratio, i.e. Default's rate
            self.lr_theta.weight.mul_(0.1)
            self.lr_theta.bias.fill_(-math.log(max_ratio - 1.0))
            if self.uses_interaction:
                self.lr_x.weight.mul_(0.1)
        if variant == "F":  # the forget gate of the official code, started near 1 (no shrinkage)
            self.forget_theta, self.forget_x = nn.Linear(hidden, 1), nn.Linear(hidden, 1, bias=False)
            with torch.no_grad():
                self.forget_theta.weight.mul_(0.1)
                self.forget_theta.bias.fill_(forget_bias)
                self.forget_x.weight.mul_(0.1)

    @staticmethod
    def extend(e_self: torch.Tensor, e_nbrs: torch.Tensor, mask: torch.Tensor, att: nn.Linear, ext: nn.Linear) -> torch.Tensor:
        """Eq. 8-9: attention over the neighbours (``mask`` marks real ones), then the extended embedding."""
        pair = torch.cat([e_self.unsqueeze(-2).expand_as(e_nbrs), e_nbrs], -1)
        logits = F.leaky_relu(att(pair).squeeze(-1), 0.2).masked_fill(~mask, -1e9)
        alpha = torch.softmax(logits, -1) * mask  # rows without neighbours aggregate nothing
        agg = (alpha.unsqueeze(-1) * e_nbrs).sum(-2)
        return F.relu(ext(torch.cat([e_self, agg], -1)))

    def interaction(self, e_u, e_i, e_user_nbrs, user_mask, e_item_nbrs, item_mask) -> torch.Tensor:
        """``h_x`` of eq. 10 ``[n, hidden]`` from the user's previous items and the item's previous users."""
        eu = self.extend(e_u, e_user_nbrs, user_mask, self.att_user, self.ext_user)
        ei = self.extend(e_i, e_item_nbrs, item_mask, self.att_item, self.ext_item)
        return F.relu(self.inter(torch.cat([eu, ei], -1)))

    def rates(self, h_x: torch.Tensor | None, role_inputs: torch.Tensor, live: torch.Tensor | None = None
              ) -> torch.Tensor:
        """Eq. 11-12: ``sigmoid(W_lr [h_x, MLP(role_inputs)] + b_lr)``.

        ``role_inputs`` ``[n or 1, M, 6]`` (2D, P) or ``[n, 1, 2]`` (I); ``h_x``
        ``[n, hidden]`` or ``None`` (P). Returns ``[n or 1, M]`` in (0, 1).

        ``live`` (``[n, M]`` bool, optional): the pairs whose rate can matter.
        The role MLP records its graph on those only and runs the others
        without graph: same values, a backward pass over the live pairs only.
        """
        s = self._role_scores(role_inputs, live)
        if self.uses_interaction:
            if h_x is None:
                raise ValueError(f"variant {self.variant} needs the interaction representation h_x")
            s = s + self.lr_x(h_x)
        return torch.sigmoid(s)

    def _role_scores(self, role_inputs: torch.Tensor, live: torch.Tensor | None) -> torch.Tensor:
        """``W_lr h_theta + b_lr`` of every pair; with ``live``, differentiable at the live pairs only."""
        if live is None or not torch.is_grad_enabled():
            return self.lr_theta(self.role(role_inputs)).squeeze(-1)
        s = role_inputs.new_empty(role_inputs.shape[:-1])
        with torch.no_grad():
            s[~live] = self.lr_theta(self.role(role_inputs[~live])).squeeze(-1)
        return s.index_put(live.nonzero(as_tuple=True), self.lr_theta(self.role(role_inputs[live])).squeeze(-1))

    def rates_and_forget(self, h_x: torch.Tensor, role_inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Variant ``"F"``: the rate of :meth:`rates` and the forget gate ``f`` ``[n, M]``, from one role pass."""
        h = self.role(role_inputs)
        s = self.lr_theta(h).squeeze(-1) + self.lr_x(h_x)
        f = self.forget_theta(h).squeeze(-1) + self.forget_x(h_x)
        return torch.sigmoid(s), torch.sigmoid(f)


def role_features(theta: torch.Tensor, losses: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """``[..., M, 6]`` preprocessed ``(theta_m, L(x), g_x,m)``; shapes broadcast to ``grads``."""
    theta = theta.expand_as(grads)
    L = losses.reshape(*losses.shape, *([1] * (grads.ndim - losses.ndim))).expand_as(grads)
    return torch.cat([preprocess(theta), preprocess(L), preprocess(grads)], -1)


class MeLON(MetaStrategy):
    """MeLON as an update strategy (module doc); ``variant`` "2D" (MeLON), "I" or "P" (ablations)."""

    direction = "2D"
    # The role MLP's graph only at pairs with g_x,m != 0 (variant "2D"): a pair with g = 0 adds nothing to the
    # update (w g = 0) nor to the meta-gradient (d theta' / d w = -g = 0). False: graph at every pair (slower,
    # same numbers up to the backward pass's float summation order).
    live_only = True

    def __init__(self, lr: float = 0.1, meta_lr: float = 1e-3, variant: str = "2D", hidden: int = 16,
                 role_layers: int = 2, max_ratio: float = 4.0):
        super().__init__(lr, meta_lr)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        self.variant, self.hidden, self.role_layers, self.max_ratio = variant, hidden, role_layers, float(max_ratio)
        self.name = VARIANTS[variant]
        self.direction = "2D" if variant == "F" else variant

    @property
    def w_max(self) -> float:
        return self.max_ratio * self.lr

    def build(self, rec) -> list[torch.Tensor]:
        self.net = MeLONNet(rec.embedding_dim, self.hidden, self.role_layers, self.variant, self.max_ratio).to(rec.device)
        return list(self.net.parameters())

    # -------------------------------------------------------------- inputs
    def interaction_inputs(self, params: Params, batch) -> tuple[torch.Tensor, ...]:
        """Detached ``e_u, e_i`` and the embeddings of the capped history (Def. 1-2)."""
        rec, dev = self.rec, self.rec.device
        with torch.no_grad():
            return (rec.user_embedding(params, batch.users.to(dev)), rec.item_embedding(params, batch.items.to(dev)),
                    rec.item_embedding(params, batch.user_nbrs.to(dev)), batch.user_nbrs_mask.to(dev),
                    rec.user_embedding(params, batch.item_nbrs.to(dev)), batch.item_nbrs_mask.to(dev))

    def prepare(self, params, batch) -> dict:
        if self.variant == "P":
            losses, g, rows = self.rec.mean_gradient(batch, params)
            t = Touched(self.rec, rows)
            feats = role_features(t.gather(params), losses.mean(), t.gather(g)[None, :])  # [1, M, 6]
            return {"touched": t, "theta": t.gather(params), "g": t.gather(g), "feats": feats}
        ps = self.rec.per_sample(batch, params)
        cache = {"ps": ps, "x": self.interaction_inputs(params, batch)}
        if self.variant in ("2D", "F"):
            theta, grads = _flat(ps, ps.values), _flat(ps, ps.grads)
            cache["feats"] = role_features(theta, ps.losses, grads)  # [n, M_local, 6]
            cache["live"] = grads != 0 if self.variant == "2D" and self.live_only else None
            if self.variant == "F":
                cache["feats"], cache["theta"], cache["g"] = cache["feats"][..., 2:], theta, grads
        else:
            cache["feats"] = preprocess(ps.losses)[:, None, :]  # [n, 1, 2]
        return cache

    # -------------------------------------------------------------- update
    def look_ahead(self, params, batch, cache) -> Params:
        if self.variant == "P":
            w = self.w_max * self.net.rates(None, cache["feats"])[0]  # [M]
            self._log(w)
            return cache["touched"].replace(params, cache["theta"] - w * cache["g"])
        ps: PerSample = cache["ps"]
        h_x = self.net.interaction(*cache["x"])
        if self.variant == "F":
            rate, f = self.net.rates_and_forget(h_x, cache["feats"])
            w = self.w_max * rate
            self._log(w)
            step = w * cache["g"] + (1.0 - f) * cache["theta"]
            pseudo = PerSample(ps.losses, _unflat(ps, step), ps.values, ps.rows, ps.counts)
            return self.rec.apply_per_sample(params, pseudo, {k: 1.0 for k in ps.grads})
        w = self.w_max * self.net.rates(h_x, cache["feats"], cache.get("live"))  # [n, M_local] or [n, 1]
        self._log(w)
        if self.variant == "2D":
            W = _unflat(ps, w)
        else:
            W = {k: w.view(-1, *([1] * (g.ndim - 1))) for k, g in ps.grads.items()}
        return self.rec.apply_per_sample(params, ps, W)

    def _log(self, w: torch.Tensor) -> None:
        """Record the mean rate / eta of an applied update (not of a look-ahead replay)."""
        self.log_rate(w.detach().mean())

    def pair_rates(self, batch, params: Params | None = None) -> tuple[torch.Tensor, PerSample]:
        """The rate of every involved pair ``[n, M_local]`` (per-sample layout) and the per-sample gradients.

        Variants "2D" and "F" only; column ``m`` of interaction ``x`` is the
        ``m``-th entry of its own rows and the dense weights (``_flat`` order).
        """
        if self.variant not in ("2D", "F"):
            raise ValueError(f"pair_rates needs a per-pair variant, not {self.variant!r}")
        params = self.rec.snapshot() if params is None else params
        with torch.no_grad():
            cache = self.prepare(params, batch)
            h_x = self.net.interaction(*cache["x"])
            if self.variant == "F":
                return self.w_max * self.net.rates_and_forget(h_x, cache["feats"])[0], cache["ps"]
            return self.w_max * self.net.rates(h_x, cache["feats"]), cache["ps"]

    def learning_rate_matrix(self, view) -> torch.Tensor:
        """``W`` over all interaction-parameter pairs of ``view`` (``g = 0`` where ``x`` does not involve ``m``)."""
        with torch.no_grad():
            if self.variant == "P":
                feats = role_features(view.theta, view.losses.mean(), view.mean_grad[None, :])
                return (self.w_max * self.net.rates(None, feats)).expand(view.n, view.M).clone()
            h_x = self.net.interaction(*self.interaction_inputs(view.params, view.batch))
            if self.variant == "I":
                feats = preprocess(view.losses)[:, None, :]
                return (self.w_max * self.net.rates(h_x, feats)).expand(view.n, view.M).clone()
            feats = role_features(view.theta[None, :], view.losses, view.grads)
            if self.variant == "F":
                return self.w_max * self.net.rates_and_forget(h_x, feats[..., 2:])[0]
            return self.w_max * self.net.rates(h_x, feats)


def _flat(ps: PerSample, values: Params) -> torch.Tensor:
    """Per-interaction ``[n, M_local]`` from the per-sample layout (shared dense values broadcast over ``n``)."""
    parts = []
    for k, g in ps.grads.items():
        v = values[k]
        parts.append(v.reshape(ps.n, -1) if v.shape == g.shape else v.reshape(1, -1).expand(ps.n, -1))
    return torch.cat(parts, -1)


def _unflat(ps: PerSample, w: torch.Tensor) -> Params:
    """Inverse of :func:`_flat` for a ``[n, M_local]`` matrix: per-parameter ``[n, ...]`` pieces."""
    out, start = {}, 0
    for k, g in ps.grads.items():
        size = g[0].numel()
        out[k] = w[:, start : start + size].reshape(g.shape)
        start += size
    return out
