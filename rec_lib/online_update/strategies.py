"""Online update strategies of MeLON's Table 2, each a learning-rate matrix ``W`` (eq. 1-5).

Every strategy has one interface: ``bind(recommender, stream)`` once, then
``step(batch)`` for each mini-batch (after the batch was scored), and
``learning_rate_matrix(view)``, the ``n x M`` matrix ``W`` it applies to the
batch of a :class:`rec_lib.online_update.analysis.BatchView` (interactions x
involved parameters) so the rank argument can be checked.

Update, with ``g_x`` the gradient of interaction ``x``'s loss and ``n_m`` the
number of interactions of the batch that involve parameter ``m``::

    theta_m <- theta_m - (1 / n_m) * sum_x W[x, m] * g_x,m

=========  ==========================================================  =========
strategy   ``W[x, m]``                                                  rank
=========  ==========================================================  =========
Default    ``eta`` (plain fine-tuning, eq. 1)                           1
eALS       ``eta * w_new``, negatives drawn by popularity (He 2016)     1
MWNet      ``eta * n * w~_x``, ``w = MLP(L_x)`` (Shu et al. 2019)       1 (eq. 3)
MetaSGD    ``alpha_m`` learnable per parameter (Li et al. 2017)         1 (eq. 4)
S2Meta     input gate ``i_m`` of a MetaLSTM + forget gate (Du 2019)     1 (eq. 4)
MeLON      ``phi(x, L_x, theta_m, g_x,m)`` (:mod:`.melon`)               > 1 (eq. 5)
SML        none: a transfer network maps old and new embeddings         --
=========  ==========================================================  =========

:class:`SML` (Zhang et al. 2020) does not scale gradients: each batch is a
retraining task of :class:`rec_lib.retraining.SMLUpdater`, whose transfer
network turns the previous embeddings and embeddings fitted on the batch
into the new ones. It applies to BPR-MF only (its transfer acts on
embedding tables; MeLON's paper reports it as N/A on NCF).

The meta-learned strategies (:class:`MetaStrategy`) learn online, *learning to
learn*: at step ``t`` they first update their meta-parameters ``phi`` so that
the recommender updated from ``Theta_{t-1}`` with ``B_{t-1}`` by ``W_phi``
does well on ``B_t`` (a one-step look-ahead, the meta-gradient of Shu et al.,
Li et al. and Kim et al.), then update the recommender with ``B_t``.
``B_t`` has already been scored when this happens (prequential protocol).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from rec_lib.online_update.recommender import OnlineRecommender, Params, PerSample
from rec_lib.retraining.transfer import SMLUpdater
from rec_lib.utils import seed_everything

__all__ = [
    "UpdateStrategy", "NoUpdate", "Default", "EALS", "MetaStrategy", "MWNet", "MetaSGD", "GlobalRate", "S2Meta",
    "SML", "Touched", "preprocess",
]


def preprocess(x: torch.Tensor, p: float = 10.0) -> torch.Tensor:
    """Andrychowicz et al. (2016, App. A): ``x -> (log|x|/p, sign x)`` if ``|x| >= e^-p``, else ``(-1, e^p x)``.

    Separates magnitude and sign and brings losses and gradients of any scale
    to ``[-1, 1]``-ish features; returns ``[..., 2]``.
    """
    if p <= 0:
        raise ValueError(f"p must be > 0, got {p}")
    ax = x.abs()
    big = ax >= math.exp(-p)
    first = torch.where(big, torch.log(ax.clamp(min=math.exp(-p))) / p, torch.full_like(x, -1.0))
    second = torch.where(big, torch.sign(x), math.exp(p) * x)
    return torch.stack([first, second], -1)


class Touched:
    """The parameters one batch involves, flattened to ``M`` coordinates.

    Tables contribute their involved rows (all dimensions), dense weights all
    their entries, in the order of ``rec.params``. ``gather`` reads a
    full-shaped dict at these coordinates; ``replace`` writes new values back
    (out of place, differentiable).
    """

    def __init__(self, rec: OnlineRecommender, rows: dict[str, torch.Tensor]):
        self.rec, self.rows = rec, rows
        self.names = list(rec.params)
        self.sizes = [len(rows[k]) * rec.params[k].shape[1] if k in rec.tables else rec.params[k].numel()
                      for k in self.names]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)])

    @property
    def M(self) -> int:
        return int(self.offsets[-1])

    def gather(self, full: Params) -> torch.Tensor:
        return torch.cat([(full[k][self.rows[k]] if k in self.rec.tables else full[k]).reshape(-1)
                          for k in self.names])

    def split(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[..., M]`` -> per-parameter pieces ``[..., size]``."""
        return {k: flat[..., self.offsets[j] : self.offsets[j + 1]] for j, k in enumerate(self.names)}

    def replace(self, params: Params, flat: torch.Tensor) -> Params:
        out = dict(params)
        for k, v in self.split(flat).items():
            if k in self.rec.tables:
                out[k] = params[k].index_copy(0, self.rows[k], v.reshape(len(self.rows[k]), -1))
            else:
                out[k] = v.reshape(params[k].shape)
        return out


# --------------------------------------------------------------------------- base
class UpdateStrategy:
    """One online update strategy (see the module doc). Subclasses set ``name`` and ``direction``."""

    name = "strategy"
    direction = "-"  # "I": interaction-wise, "P": parameter-wise, "2D": both, "-": none
    has_rate_matrix = True  # False: the update is not a learning-rate matrix on gradients (SML)

    def __init__(self, lr: float = 0.1):
        if not lr > 0:
            raise ValueError(f"{type(self).__name__}: the learning rate must be > 0, got {lr}")
        self.lr = float(lr)
        self.rec: OnlineRecommender | None = None
        self.stream = None

    def bind(self, rec: OnlineRecommender, stream=None) -> "UpdateStrategy":
        """Attach the recommender to update (and the stream, for history such as popularity)."""
        self.rec, self.stream = rec, stream
        return self

    def _check_bound(self) -> OnlineRecommender:
        if self.rec is None:
            raise RuntimeError(f"{self.name}: call bind(recommender, stream) before step()")
        return self.rec

    def step(self, batch) -> None:
        raise NotImplementedError

    def learning_rate_matrix(self, view) -> torch.Tensor:
        """``W`` of eq. 1-5 for the batch of ``view``: ``[n interactions, M parameters]``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lr={self.lr:g})"


class NoUpdate(UpdateStrategy):
    """The pre-trained recommender, never updated: the floor every strategy should beat."""

    name = "No update"

    def __init__(self, lr: float = 1.0):
        super().__init__(lr)

    def step(self, batch) -> None:
        self._check_bound()

    def learning_rate_matrix(self, view) -> torch.Tensor:
        return torch.zeros(view.n, view.M, device=view.device)


class Default(UpdateStrategy):
    """Plain fine-tuning (eq. 1): every interaction-parameter pair gets the same rate ``eta``."""

    name = "Default"

    def step(self, batch) -> None:
        rec = self._check_bound()
        _, g, _ = rec.mean_gradient(batch)
        rec.load(rec.apply_full(rec.snapshot(), {k: -self.lr * v for k, v in g.items()}))

    def learning_rate_matrix(self, view) -> torch.Tensor:
        return torch.full((view.n, view.M), self.lr, device=view.device)


class EALS(UpdateStrategy):
    """eALS's heuristics (He et al. 2016) carried over to fine-tuning BPR-MF and NCF.

    eALS weights each *new* interaction by ``w_new`` and the missing data of
    item ``j`` by its popularity, ``c_j ∝ f_j^alpha``. With a sampled loss,
    weighting uniformly sampled negatives by ``c_j`` equals, in expectation,
    sampling negatives in proportion to ``c_j``; so each new interaction's
    loss gets the weight ``w_new`` and its negative is drawn with probability
    ``∝ f_j^alpha`` (``f_j``: interactions of ``j`` so far), among the items the
    user has not interacted with. ``W[x, m] = eta * w_new`` (eq. 3, rank 1).
    """

    name = "eALS"
    direction = "I"

    def __init__(self, lr: float = 0.1, w_new: float = 4.0, alpha: float = 0.4, seed: int = 0):
        super().__init__(lr)
        if w_new <= 0 or alpha < 0:
            raise ValueError(f"eALS needs w_new > 0 and alpha >= 0, got {w_new}, {alpha}")
        self.w_new, self.alpha, self.seed = float(w_new), float(alpha), seed

    def bind(self, rec, stream=None) -> "EALS":
        if stream is None:
            raise ValueError("eALS needs the stream (item popularity so far): bind(rec, stream)")
        super().bind(rec, stream)
        self.counts = stream.item_counts(stream.pre_end).astype(np.float64)
        self.rng = np.random.default_rng([self.seed, 7])
        return self

    def popularity_negatives(self, batch) -> torch.Tensor:
        """One negative per interaction drawn with probability ``∝ f_j^alpha`` among unseen items."""
        p = (self.counts + 1.0) ** self.alpha  # +1: items never seen keep a small chance
        p /= p.sum()
        users = batch.users.numpy()
        neg = self.rng.choice(len(p), size=len(users), p=p)
        end = int(batch.rows[-1]) + 1
        for _ in range(200):
            bad = self.stream.past.seen_before(users, neg, end)
            if not bad.any():
                return torch.as_tensor(neg, dtype=torch.long)
            neg[bad] = self.rng.choice(len(p), size=int(bad.sum()), p=p)
        raise ValueError("eALS negative sampling did not finish: a user has seen (almost) every item")

    def step(self, batch) -> None:
        rec = self._check_bound()
        b = replace(batch, negatives=self.popularity_negatives(batch))
        _, g, _ = rec.mean_gradient(b, weights=torch.full((len(b),), self.w_new, device=rec.device))
        rec.load(rec.apply_full(rec.snapshot(), {k: -self.lr * v for k, v in g.items()}))
        np.add.at(self.counts, batch.items.numpy(), 1.0)

    def learning_rate_matrix(self, view) -> torch.Tensor:
        return torch.full((view.n, view.M), self.lr * self.w_new, device=view.device)


# ------------------------------------------------------------------ meta-learned
class MetaStrategy(UpdateStrategy):
    """Learning to learn online with a one-step look-ahead meta-gradient (module doc).

    Subclasses build their meta-parameters in :meth:`build`, compute what an
    update needs (without graph) in :meth:`prepare`, and return the updated
    parameters, differentiable in the meta-parameters, in :meth:`look_ahead`.
    """

    keep_graph = True  # False: apply the update without graph and recompute it at the next meta-step (slower, same numbers)

    def __init__(self, lr: float = 0.1, meta_lr: float = 1e-3):
        super().__init__(lr)
        if not meta_lr > 0:
            raise ValueError(f"{type(self).__name__}: meta_lr must be > 0, got {meta_lr}")
        self.meta_lr = float(meta_lr)
        self.meta_losses: list[float] = []
        self.rate_log: list[float] = []  # mean rate / eta of each update (where the strategy records it)
        self._prev = None  # (params, batch, cache, look-ahead with its graph) of the last update
        self._applying = False  # True while step() computes the update it applies (not a replay)

    def build(self, rec: OnlineRecommender) -> list[torch.Tensor]:
        raise NotImplementedError

    def prepare(self, params: Params, batch) -> dict:
        raise NotImplementedError

    def look_ahead(self, params: Params, batch, cache: dict) -> Params:
        raise NotImplementedError

    def after_update(self, cache: dict) -> None:
        """Hook after the recommender's update (state of recurrent meta-models)."""

    def bind(self, rec, stream=None) -> "MetaStrategy":
        super().bind(rec, stream)
        self.meta_params = self.build(rec)
        self.opt = torch.optim.Adam(self.meta_params, lr=self.meta_lr)
        self._prev = None
        return self

    def rebind(self, rec, stream=None) -> "MetaStrategy":
        """Attach another recommender but keep the meta-parameters learned so far (and their optimiser).

        Used after meta-training on the replayed pre-training share: the
        meta-model carries over, the recommender starts again from the
        pre-trained one, and the look-ahead memory is cleared.
        """
        if not hasattr(self, "meta_params"):
            return self.bind(rec, stream)
        self.rec, self.stream, self._prev = rec, stream, None
        self.rate_log = []
        return self

    def meta_step(self, batch) -> float | None:
        """Update ``phi`` so the look-ahead update with the previous batch does well on ``batch``.

        The look-ahead is the update :meth:`step` applied, kept with its
        graph: ``phi`` has not changed since (the optimiser steps only here),
        so differentiating it gives the meta-gradient of recomputing it, in
        one forward pass fewer. A copy of the strategy carries no graph
        (:meth:`__getstate__`) and recomputes the look-ahead once.
        """
        if self._prev is None:
            return None
        params, prev_batch, cache, ahead = self._prev
        if ahead is None:
            ahead = self.look_ahead(params, prev_batch, cache)
        loss = self.rec.batch_loss(ahead, batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.meta_losses.append(float(loss.detach()))
        return self.meta_losses[-1]

    def step(self, batch) -> None:
        rec = self._check_bound()
        self.meta_step(batch)
        params = rec.snapshot()
        cache = self.prepare(params, batch)
        self._applying = True
        try:
            with torch.set_grad_enabled(self.keep_graph):
                ahead = self.look_ahead(params, batch, cache)
        finally:
            self._applying = False
        rec.load(ahead)
        self.after_update(cache)
        self._prev = (params, batch, cache, ahead if self.keep_graph else None)

    def log_rate(self, mean_rate: torch.Tensor | float) -> None:
        """Record the mean rate / eta of the update :meth:`step` applies (not of a replayed look-ahead)."""
        if self._applying:
            self.rate_log.append(float(mean_rate) / self.lr)

    def drop_graph(self) -> None:
        """Free the kept look-ahead graph (after the stream's last batch); the next meta-step recomputes it."""
        if self._prev is not None:
            self._prev = (*self._prev[:3], None)

    def __getstate__(self) -> dict:
        """Copies drop the kept look-ahead graph (tensors inside a graph cannot be copied)."""
        state = self.__dict__.copy()
        if state.get("_prev") is not None:
            params, batch, cache, _ = state["_prev"]
            state["_prev"] = (params, batch, cache, None)
        return state


class MWNet(MetaStrategy):
    """Meta-Weight-Net (Shu et al. 2019): an MLP maps each interaction's loss to its weight.

    ``w_x = sigmoid(MLP(L_x))`` (one hidden layer of 100 ReLU units), normalised
    to sum to one over the batch, so ``W[x, m] = eta * n * w~_x`` (eq. 3).
    """

    name = "MWNet"
    direction = "I"

    def __init__(self, lr: float = 0.1, meta_lr: float = 1e-3, hidden: int = 100):
        super().__init__(lr, meta_lr)
        self.hidden = hidden

    def build(self, rec) -> list[torch.Tensor]:
        self.net = nn.Sequential(nn.Linear(1, self.hidden), nn.ReLU(), nn.Linear(self.hidden, 1), nn.Sigmoid()).to(rec.device)
        return list(self.net.parameters())

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        """``eta * n * w~_x`` for each interaction ``[n]``."""
        w = self.net(losses.detach()[:, None]).squeeze(-1)
        return self.lr * len(w) * w / w.sum().clamp(min=1e-12)

    def prepare(self, params, batch) -> dict:
        return {"ps": self.rec.per_sample(batch, params)}

    def look_ahead(self, params, batch, cache) -> Params:
        ps: PerSample = cache["ps"]
        w = self.weights(ps.losses)
        W = {k: w.view(-1, *([1] * (g.ndim - 1))) for k, g in ps.grads.items()}
        return self.rec.apply_per_sample(params, ps, W)

    def learning_rate_matrix(self, view) -> torch.Tensor:
        with torch.no_grad():
            return self.weights(view.losses)[:, None].expand(view.n, view.M).clone()


class MetaSGD(MetaStrategy):
    """Meta-SGD (Li et al. 2017): a learnable learning rate ``alpha_m`` for every parameter.

    ``Theta' = Theta - alpha * g_bar`` (eq. 4: ``W[x, m] = alpha_m``, every row
    equal); ``alpha`` starts at ``eta`` and is meta-learned.
    """

    name = "MetaSGD"
    direction = "P"

    def build(self, rec) -> list[torch.Tensor]:
        self.alpha = {k: torch.full_like(p, self.lr, requires_grad=True) for k, p in rec.params.items()}
        return list(self.alpha.values())

    def prepare(self, params, batch) -> dict:
        _, g, _ = self.rec.mean_gradient(batch, params)
        return {"g": g}

    def look_ahead(self, params, batch, cache) -> Params:
        return self.rec.apply_full(params, {k: -self.alpha[k] * g for k, g in cache["g"].items()})

    def learning_rate_matrix(self, view) -> torch.Tensor:
        with torch.no_grad():
            return view.touched.gather(self.alpha)[None, :].expand(view.n, view.M).clone()


class GlobalRate(MetaStrategy):
    """One learned rate for every interaction-parameter pair: ``W = alpha 1 1^T`` (a control).

    ``alpha`` starts at ``eta`` and is meta-learned with the same look-ahead
    as MeLON. If MeLON's gain over Default came from the *size* of its step
    alone, this strategy would match it.
    """

    name = "Global rate"
    direction = "-"

    def build(self, rec) -> list[torch.Tensor]:
        self.log_alpha = torch.tensor(math.log(self.lr), device=rec.device, requires_grad=True)
        return [self.log_alpha]

    @property
    def alpha(self) -> float:
        return float(self.log_alpha.detach().exp())

    def prepare(self, params, batch) -> dict:
        _, g, _ = self.rec.mean_gradient(batch, params)
        return {"g": g}

    def look_ahead(self, params, batch, cache) -> Params:
        a = self.log_alpha.exp()
        self.log_rate(a.detach())
        return self.rec.apply_full(params, {k: -a * g for k, g in cache["g"].items()})

    def learning_rate_matrix(self, view) -> torch.Tensor:
        return torch.full((view.n, view.M), self.alpha, device=view.device)


class S2Meta(MetaStrategy):
    """S^2Meta's update controller (Du et al. 2019): a MetaLSTM cell (Ravi & Larochelle 2017).

    For each involved parameter, with the batch gradient ``g_m``, the batch
    loss ``L`` and the previous gates (all preprocessed as in
    :func:`preprocess`)::

        i_m = i_max * sigmoid(W_I [g_m, L, theta_m, i_m^prev] + b_I)    (input gate = learning rate)
        f_m = sigmoid(W_F [g_m, L, theta_m, f_m^prev] + b_F)            (forget gate)
        theta_m <- f_m * theta_m - i_m * g_m

    ``W[x, m] = i_m`` (eq. 4, rank 1). ``i`` starts at ``eta`` (``i_max = ratio * eta``),
    ``f`` near 1. One update per batch (the paper's stop controller decides how many).
    """

    name = "S2Meta"
    direction = "P"

    def __init__(self, lr: float = 0.1, meta_lr: float = 1e-3, max_ratio: float = 4.0, forget_bias: float = 6.0):
        super().__init__(lr, meta_lr)
        if max_ratio <= 1:
            raise ValueError(f"max_ratio must be > 1, got {max_ratio}")
        self.max_ratio, self.forget_bias = float(max_ratio), float(forget_bias)

    def build(self, rec) -> list[torch.Tensor]:
        self.gate_i, self.gate_f = nn.Linear(7, 1).to(rec.device), nn.Linear(7, 1).to(rec.device)
        with torch.no_grad():
            for gate, bias in ((self.gate_i, -math.log(self.max_ratio - 1.0)), (self.gate_f, self.forget_bias)):
                gate.weight.mul_(0.1)
                gate.bias.fill_(bias)
        i0, f0 = 1.0 / self.max_ratio, torch.sigmoid(torch.tensor(self.forget_bias)).item()
        self.state_i = {k: torch.full_like(p, i0).detach() for k, p in rec.params.items()}
        self.state_f = {k: torch.full_like(p, f0).detach() for k, p in rec.params.items()}
        return list(self.gate_i.parameters()) + list(self.gate_f.parameters())

    def gates(self, theta, g, loss, i_prev, f_prev) -> tuple[torch.Tensor, torch.Tensor]:
        """Sigmoid values of the input and forget gates for flat parameters ``[M]``."""
        L = preprocess(loss.reshape(1)).expand(len(theta), 2)
        x = torch.cat([preprocess(g), L, preprocess(theta)], -1)
        i = torch.sigmoid(self.gate_i(torch.cat([x, i_prev[:, None]], -1))).squeeze(-1)
        f = torch.sigmoid(self.gate_f(torch.cat([x, f_prev[:, None]], -1))).squeeze(-1)
        return i, f

    def prepare(self, params, batch) -> dict:
        losses, g, rows = self.rec.mean_gradient(batch, params)
        t = Touched(self.rec, rows)
        return {"touched": t, "theta": t.gather(params), "g": t.gather(g), "loss": losses.mean(),
                "i_prev": t.gather(self.state_i), "f_prev": t.gather(self.state_f)}

    def look_ahead(self, params, batch, cache) -> Params:
        i, f = self.gates(cache["theta"], cache["g"], cache["loss"], cache["i_prev"], cache["f_prev"])
        cache["i"], cache["f"] = i.detach(), f.detach()
        new = f * cache["theta"] - self.max_ratio * self.lr * i * cache["g"]
        return cache["touched"].replace(params, new)

    def after_update(self, cache) -> None:
        t: Touched = cache["touched"]
        self.state_i = t.replace(self.state_i, cache["i"])
        self.state_f = t.replace(self.state_f, cache["f"])

    def learning_rate_matrix(self, view) -> torch.Tensor:
        t = view.touched
        with torch.no_grad():
            i, _ = self.gates(view.theta, view.mean_grad, view.losses.mean(), t.gather(self.state_i), t.gather(self.state_f))
        return (self.max_ratio * self.lr * i)[None, :].expand(view.n, view.M).clone()


# ------------------------------------------------------------------- transfer
class SML(UpdateStrategy):
    """SML (Zhang et al. 2020, Algorithms 1-2) as an online update of BPR-MF, one task per mini-batch.

    Reuses :class:`rec_lib.retraining.SMLUpdater` with the BPR loss: when
    batch ``B_{t+1}`` arrives (after it was scored), the transfer ``Theta``
    is trained on it (step 2, with ``W_hat_t`` fixed), ``W_hat_t`` again on
    ``B_t`` (step 1), for ``outer_iters`` rounds; then a new task opens,
    ``W_hat_{t+1} <- W_t`` is fitted on ``B_{t+1}`` through the transfer and
    ``W_{t+1} = f_Theta(W_t, W_hat_{t+1})`` is loaded into the recommender.
    Each batch is used with its own negatives (the stream's, as for every
    strategy). ``W_hat`` and ``Theta`` are trained with Adam at ``lr`` and
    ``meta_lr``; the transfer has the paper's sizes (``filters``, ``fc``).

    The update is not a learning-rate matrix on gradients, so
    :meth:`learning_rate_matrix` is undefined (``has_rate_matrix = False``).
    """

    name = "SML"
    direction = "-"
    has_rate_matrix = False

    def __init__(self, lr: float = 1e-2, meta_lr: float = 1e-3, outer_iters: int = 2,
                 filters: tuple[int, ...] = (10, 5), fc: int | None = 512, seed: int = 0):
        super().__init__(lr)
        if not meta_lr > 0:
            raise ValueError(f"SML: meta_lr must be > 0, got {meta_lr}")
        if outer_iters < 1:
            raise ValueError(f"SML: outer_iters must be >= 1, got {outer_iters}")
        self.meta_lr, self.outer_iters = float(meta_lr), int(outer_iters)
        self.filters, self.fc, self.seed = tuple(filters), fc, seed
        self.updater: SMLUpdater | None = None

    def bind(self, rec: OnlineRecommender, stream=None) -> "SML":
        tables = sorted(rec.tables.items())
        if rec.loss != "bpr" or rec.dense or tables != [("item.weight", "item"), ("user.weight", "user")]:
            raise ValueError(f"SML transfers the user and item embeddings of BPR-MF and nothing else; "
                             f"{rec.name} has tables {sorted(rec.tables)} and dense weights {rec.dense} "
                             f"(MeLON's paper reports SML on BPR only)")
        super().bind(rec, stream)
        p = rec.params
        self.updater = SMLUpdater(p["user.weight"], p["item.weight"], None,
                                  seed_everything(self.seed, set_global=False).child(11),
                                  filters=self.filters, fc=self.fc, loss="bpr", lr_hat=self.lr,
                                  lr_theta=self.meta_lr, outer_iters=self.outer_iters, device=rec.device)
        return self

    def step(self, batch) -> None:
        rec = self._check_bound()
        self.updater.update(batch.users.cpu().numpy(), batch.items.cpu().numpy(), batch.negatives.cpu().numpy())
        rec.load({"user.weight": self.updater.P, "item.weight": self.updater.Q})

    def learning_rate_matrix(self, view) -> torch.Tensor:
        raise NotImplementedError("SML replaces the gradient step by a transfer network: it has no "
                                  "learning-rate matrix (check has_rate_matrix)")
