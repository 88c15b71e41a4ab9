"""Training DiPS (Algorithm 1) and running any sketching policy over users' sequences.

One *pass* walks a mini-batch of users through their sequences in lockstep,
``t = 0, 1, ...`` (0-based positions). Every ``tau`` steps the policy turns the
intermediate sketch (the ``K`` kept positions and the ``tau`` newest) into the
new sketch; at every step the user vector is adapted on the current sketch
(eq. 7) and scored on the next interaction ``x_{t+1}`` (eq. 1). In training,
the loss of each step updates ``Theta`` and ``Phi`` with one optimiser step
(Algorithm 1, lines 8 and 12).

The policy gradient (eq. 9-10) is carried by the sketch weights themselves:
the weights ``z_t`` over positions are the hard sketch plus, for each of the
last ``Q`` intermediate sketches ``z_hat_j`` in the queue, the zero-valued term
``+-(s_j(Phi) - s_j(Phi).detach())`` where ``s_j`` is the soft selection
(softmax or Top-K projection) recomputed on ``z_hat_j`` with the *current*
``Phi``. The forward value is exactly the hard sketch; back-propagating
``l_{t+1}`` through the inner adaptation gives ``v = d l_{t+1} / d z_t`` and
then ``v^T sum_j d z_j / d Phi`` with the Jacobians ``d z_{l+1} / d z_l``
taken as the identity: eq. 10. ``Q = 1`` keeps the current term only: DiPS@1.
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch

from rec_lib.data.splits import Sequences
from rec_lib.metrics import rank_in_catalogue
from rec_lib.models import NCF
from rec_lib.sketching.baselines import hardest_scores, influence_scores, reservoir_keep
from rec_lib.sketching.inner import adapt_one_step, adapt_user, catalogue_scores, global_user, inner_gradients, next_item_loss
from rec_lib.sketching.policy import SketchPolicy, compact_slots, gumbel_noise, intermediate_slots, select, soft_selection
from rec_lib.sketching.projection import hard_top_k
from rec_lib.utils import Seeds, progress

__all__ = ["METHODS", "LEARNED", "SketchConfig", "SequenceBatch", "PassResult", "make_base_model",
           "sketch_pass", "policy_surrogate", "train_sketching", "evaluate_sketching", "TrainedSketcher",
           "step_policy_gradient", "true_policy_gradient", "gradient_agreement"]

METHODS = ("Random", "Recent", "Hardest", "Influence", "DiPS@1", "DiPS")
LEARNED = ("DiPS@1", "DiPS")
# references a sketch sits between: no sketch (K = 0: the global user, no
# adaptation) and the whole history (every past item kept)
REFERENCES = ("K=0", "Full")
INNER_LOSSES = ("mean", "sum")


@dataclass(frozen=True)
class SketchConfig:
    """One sketching problem: sketch size ``k``, update period ``tau``, the method and the inner loop.

    ``queue`` is ``Q``, the number of intermediate sketches whose gradient is
    kept (DiPS); DiPS@1 uses 1 whatever ``queue`` says. ``inner_loss``:
    ``"sum"`` is eq. 2 (the inner step grows with the sketch's size),
    ``"mean"`` divides the sketch weights by their number, so that one step
    of size ``alpha`` has the same scale for every ``K``. ``Recent`` keeps
    the ``K`` newest items (a last-K window); the references ``K=0`` (no
    adaptation) and ``Full`` (every past item; ``k`` must cover the
    sequence) are run like methods.
    """

    k: int
    tau: int
    method: str
    explicit: bool
    alpha: float = 0.5
    inner_steps: int = 1
    queue: int = 50
    damping: float = 1e-3
    inner_loss: str = "mean"

    def __post_init__(self) -> None:
        if self.method not in METHODS + REFERENCES:
            raise ValueError(f"method must be one of {METHODS + REFERENCES}, got {self.method!r}")
        if self.inner_loss not in INNER_LOSSES:
            raise ValueError(f"inner_loss must be one of {INNER_LOSSES}, got {self.inner_loss!r}")
        if self.k < 1 or self.tau < 1 or self.queue < 1 or self.inner_steps < 1:
            raise ValueError(f"k, tau, queue and inner_steps must be >= 1, got {self.k}, {self.tau}, "
                             f"{self.queue}, {self.inner_steps}")

    @property
    def learned(self) -> bool:
        return self.method in LEARNED

    @property
    def queue_size(self) -> int:
        return 1 if self.method == "DiPS@1" else self.queue


@dataclass
class SequenceBatch:
    """Users' first ``T`` interactions, right-padded: items, targets, policy inputs, lengths.

    ``targets`` are the ratings (explicit) or 1 (implicit); ``values`` are the
    policy's input ``y`` (ratings / 5, or 1).
    """

    items: torch.Tensor  # [B, T] long, 0 on padding
    targets: torch.Tensor  # [B, T] float
    values: torch.Tensor  # [B, T] float
    lengths: torch.Tensor  # [B] long
    users: np.ndarray  # [B] user ids

    @classmethod
    def from_sequences(cls, seqs: Sequences, max_len: int, explicit: bool, rows: np.ndarray | None = None) -> "SequenceBatch":
        if max_len < 2:
            raise ValueError(f"max_len must be >= 2 (a sketch and a next item), got {max_len}")
        items, lengths = seqs.padded(max_len=max_len, pad=0, keep="first")
        ratings, _ = seqs.padded(max_len=max_len, pad=0, keep="first", field="ratings")
        ratings = ratings.float()
        if rows is not None:
            items, lengths, ratings = items[rows], lengths[rows], ratings[rows]
        users = seqs.users if rows is None else seqs.users[rows]
        values = ratings / 5.0 if explicit else (ratings > 0).float()
        return cls(items.long(), ratings if explicit else torch.ones_like(ratings), values, lengths.long(), np.asarray(users))

    def __len__(self) -> int:
        return self.items.shape[0]

    def take(self, rows) -> "SequenceBatch":
        rows_t = torch.as_tensor(rows, dtype=torch.long)
        return SequenceBatch(self.items[rows_t], self.targets[rows_t], self.values[rows_t], self.lengths[rows_t],
                             self.users[np.asarray(rows)])

    def to(self, device) -> "SequenceBatch":
        return replace(self, items=self.items.to(device), targets=self.targets.to(device),
                       values=self.values.to(device), lengths=self.lengths.to(device))


def make_base_model(n_items: int, explicit: bool, dim: int = 16, layers: tuple[int, ...] = (32, 16),
                    mean_rating: float = 0.0) -> NCF:
    """The base recommender: NCF with one global user embedding (``Theta(u)``) and the item network ``Theta(p)``.

    Explicit: the output offset starts at the training mean rating.
    """
    model = NCF(1, n_items, dim_gmf=dim, dim_mlp=dim, layers=layers, explicit=explicit)
    if explicit:
        with torch.no_grad():
            model.offset.fill_(mean_rating)
    return model


def _gather(x: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
    """``x[b, cand[b, ...]]`` with ``-1`` mapped to position 0 (callers mask it)."""
    flat = cand.clamp(min=0).reshape(cand.shape[0], -1)
    return x.gather(1, flat).reshape(cand.shape)


def _scatter(cand: torch.Tensor, mask: torch.Tensor, values: torch.Tensor, T: int) -> torch.Tensor:
    """Sum ``values`` at the positions ``cand`` (``[B, ...]``) into ``[B, T]``; masked slots are dropped."""
    B = cand.shape[0]
    idx = torch.where(mask, cand, torch.full_like(cand, T)).reshape(B, -1)
    out = torch.zeros(B, T + 1, dtype=values.dtype, device=values.device)
    return out.scatter_add(1, idx, values.reshape(B, -1))[:, :T]


def policy_surrogate(policy: SketchPolicy, batch: SequenceBatch, cands: torch.Tensor, masks: torch.Tensor,
                     k: int, tau: int) -> torch.Tensor:
    """``sum_j (s_j(Phi) - s_j(Phi).detach())`` scattered to positions ``[B, T]`` (eq. 10's sum).

    ``cands``/``masks`` ``[B, q, K + tau]``: the intermediate sketches of the
    queue. Zero in value; its gradient w.r.t. ``Phi`` is ``sum_j d z_j / d Phi``
    (straight-through: the soft selection stands in for the hard one).
    """
    B, q, S = cands.shape
    items, values = _gather(batch.items, cands), _gather(batch.values, cands)
    scores = policy(items, values, masks)
    soft = soft_selection(scores.reshape(B * q, S), masks.reshape(B * q, S), k, tau).reshape(B, q, S)
    return _scatter(cands, masks, soft - soft.detach(), batch.items.shape[1])


@dataclass
class PassResult:
    """What one pass over a batch produced (evaluation, or the record of a training pass)."""

    mean_loss: float
    predictions: torch.Tensor | None = None  # explicit: predicted ratings of the scored steps
    targets: torch.Tensor | None = None  # explicit: their true ratings
    ranks: torch.Tensor | None = None  # implicit: rank of x_{t+1} among all items
    trajectory: torch.Tensor | None = None  # [B, T, K] slots of the sketch used at each step (record=True)
    step_ranks: torch.Tensor | None = None  # [B, T] rank at each step (implicit, record=True; 0 = not scored)
    policy_grads: list[torch.Tensor] = field(default_factory=list)  # flattened d l / d Phi per step (keep_grads)
    policy_states: list[dict] = field(default_factory=list)  # Phi before each step's update (keep_grads)
    noises: list[torch.Tensor | None] = field(default_factory=list)
    slots: torch.Tensor | None = None  # the sketch after the last step run
    queue: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)  # (cand, mask) of the queue


def _flat_grad(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten().detach().clone()
                      for p in module.parameters()])


def _decide(cfg: SketchConfig, model: NCF, policy: SketchPolicy | None, batch: SequenceBatch, cand: torch.Tensor,
            mask: torch.Tensor, n_seen: torch.Tensor, theta_prev: torch.Tensor, noise: torch.Tensor | None,
            generator: torch.Generator | None) -> torch.Tensor:
    """Hard keep-indicator ``[B, K + tau]`` of the method (no gradient)."""
    k, tau = cfg.k, cfg.tau
    if cfg.method == "Random":
        return reservoir_keep(cand, mask, k, tau, n_seen, generator)
    if cfg.method in ("Recent", "Full", "K=0"):  # the K newest positions
        return hard_top_k(cand.to(torch.float32), mask, k)
    items, targets = _gather(batch.items, cand), _gather(batch.targets, cand)
    if cfg.learned:
        with torch.no_grad():
            scores = policy(items, _gather(batch.values, cand), mask)
        return select(scores, mask, k, tau, noise).detach()
    if cfg.method == "Hardest":
        scores = hardest_scores(model, theta_prev, items, targets, mask, cfg.explicit)
    else:
        scores = influence_scores(model, theta_prev, items, targets, mask, cfg.explicit, cfg.damping)
    return hard_top_k(scores, mask, k)


def _adapt(model: NCF, cfg: SketchConfig, items: torch.Tensor, targets: torch.Tensor, z: torch.Tensor,
           train: bool, shared=None) -> torch.Tensor:
    """``theta_t*`` on the sketch weights ``z`` (eq. 7): the shared-gradient form for one step, else the loop.

    ``inner_loss="mean"`` divides ``z`` by the number of sketch items (its
    detached sum), so the step does not grow with ``K``; ``K=0`` adapts on
    nothing (``theta_t* = Theta(u)``).
    """
    if cfg.method == "K=0":
        z = torch.zeros_like(z)
    elif cfg.inner_loss == "mean":
        z = z / z.detach().sum(1, keepdim=True).clamp(min=1.0)
    if cfg.inner_steps == 1:
        grads = shared if shared is not None else inner_gradients(model, cfg.explicit, create_graph=train)
        return adapt_one_step(grads, items, targets, z, cfg.explicit, cfg.alpha)
    return adapt_user(model, global_user(model), items, targets, z, cfg.explicit, cfg.alpha, cfg.inner_steps,
                      create_graph=train)


def sketch_pass(model: NCF, policy: SketchPolicy | None, batch: SequenceBatch, cfg: SketchConfig, *,
                train: bool = False, optimizer: torch.optim.Optimizer | None = None,
                generator: torch.Generator | None = None, stochastic: bool | None = None,
                noises: list[torch.Tensor | None] | None = None, record: bool = False,
                keep_grads: bool = False, until: int | None = None) -> PassResult:
    """Walk ``batch`` through its sequences with the sketching method of ``cfg`` (Algorithm 1, lines 4-16).

    ``train``: one optimiser step per time step on the mean next-item loss
    (``optimizer`` holds ``Theta`` and, for DiPS, ``Phi``). ``stochastic``
    (default: ``train``): learned policies sample their choice (Gumbel noise
    from ``generator``), else take the most likely one; ``noises`` replays
    the noise of an earlier pass (the gradient check). ``record`` keeps the
    sketch of every step; ``keep_grads`` the policy gradient (and ``Phi``) of
    every step. ``until=t`` stops after the sketch update of step ``t`` and
    returns the sketch and the queue (to replay a process).
    """
    if cfg.learned and policy is None:
        raise ValueError(f"{cfg.method} needs a SketchPolicy")
    if train and optimizer is None:
        raise ValueError("train=True needs an optimizer")
    stochastic = train if stochastic is None else stochastic
    device = batch.items.device
    B, T = batch.items.shape
    k, tau = cfg.k, cfg.tau
    slots = torch.full((B, k), -1, dtype=torch.long, device=device)
    queue: deque[tuple[torch.Tensor, torch.Tensor]] = deque(maxlen=cfg.queue_size)
    theta_prev = global_user(model).detach().expand(B, -1)
    shared = None if (train or cfg.inner_steps > 1) else inner_gradients(model, cfg.explicit, create_graph=False)
    n_seen = torch.zeros(B, dtype=torch.long, device=device)
    out = PassResult(mean_loss=float("nan"))
    preds, tgts, ranks, losses = [], [], [], []
    if record:
        out.trajectory = torch.full((B, T, k), -1, dtype=torch.long)
        out.step_ranks = torch.zeros(B, T, dtype=torch.long)
    step_noises = list(noises) if noises is not None else None
    decisions = 0
    for t in range(T - 1):
        if (t + 1) % tau == 0:  # a sketch update: keep K of the K + tau slots
            cand, mask = intermediate_slots(slots, t, tau, batch.lengths)
            noise = None
            if cfg.learned and stochastic:
                if step_noises is not None:
                    noise = step_noises[decisions] if decisions < len(step_noises) else None
                else:
                    noise = gumbel_noise(cand.shape, generator).to(device)
            out.noises.append(noise)
            decisions += 1
            keep = _decide(cfg, model, policy, batch, cand, mask, n_seen, theta_prev, noise, generator)
            if cfg.learned and bool((mask.sum(-1) > k).any()):
                queue.append((cand, mask))
            slots = compact_slots(cand, keep, k)
            n_seen = n_seen + mask[:, k:].sum(-1)
        if record:
            out.trajectory[:, t] = slots.cpu()
        if until is not None and t == until:
            break
        valid = (t + 1) < batch.lengths
        if not bool(valid.any()):
            break
        if train and cfg.learned and queue:  # weights over all positions, carrying eq. 10's gradient
            cands = torch.stack([c for c, _ in queue], 1)
            masks = torch.stack([m for _, m in queue], 1)
            z = _scatter(slots, slots >= 0, torch.ones(slots.shape, device=device), T)
            z = z + policy_surrogate(policy, batch, cands, masks, k, tau)
            col_items, col_targets = batch.items, batch.targets
        else:  # only the sketch's positions carry weight
            z = (slots >= 0).float()
            col_items, col_targets = _gather(batch.items, slots), _gather(batch.targets, slots)
        theta = _adapt(model, cfg, col_items, col_targets, z, train, shared)
        nxt, r_nxt = batch.items[:, t + 1], batch.targets[:, t + 1]
        if train:
            loss_t = next_item_loss(model, theta, nxt, r_nxt, cfg.explicit)
            loss = (loss_t * valid).sum() / valid.sum()
            optimizer.zero_grad(set_to_none=True)
            if loss.requires_grad:
                loss.backward()
            if keep_grads and policy is not None:
                out.policy_grads.append(_flat_grad(policy))
                out.policy_states.append(copy.deepcopy(policy.state_dict()))
            optimizer.step()
            losses.append(float(loss.detach()))
        else:
            with torch.no_grad():
                if cfg.explicit:
                    pred = model.score_with_user(theta, nxt.unsqueeze(1)).squeeze(1)
                    preds.append(pred[valid].cpu())
                    tgts.append(r_nxt[valid].cpu())
                    losses.append(float(((pred - r_nxt)[valid] ** 2).mean()))
                else:
                    r = rank_in_catalogue(catalogue_scores(model, theta), nxt)
                    ranks.append(r[valid].cpu())
                    if record:
                        out.step_ranks[:, t] = torch.where(valid, r, torch.zeros_like(r)).cpu()
                    losses.append(float(valid.sum()))
        theta_prev = theta.detach()
    out.slots, out.queue = slots, list(queue)
    if losses:
        out.mean_loss = float(np.mean(losses)) if (train or cfg.explicit) else float("nan")
    if preds:
        out.predictions, out.targets = torch.cat(preds), torch.cat(tgts)
    if ranks:
        out.ranks = torch.cat(ranks)
    return out


@dataclass
class TrainedSketcher:
    """A trained base model (and policy, for DiPS) with its configuration and training history."""

    cfg: SketchConfig
    model: NCF
    policy: SketchPolicy | None
    history: list[float]
    val_history: list[float]
    best_epoch: int


def evaluate_sketching(model: NCF, policy: SketchPolicy | None, batch: SequenceBatch, cfg: SketchConfig,
                       generator: torch.Generator | None = None, chunk: int = 512,
                       record: bool = False) -> dict[str, object]:
    """Metrics of the deterministic policy on ``batch``: RMSE (explicit) or Recall@20 and MRR@20 (implicit).

    Every step ``t`` with a next interaction is scored; the ranking is over all items.
    """
    model.eval()
    results = [sketch_pass(model, policy, batch.take(np.arange(s, min(s + chunk, len(batch)))), cfg,
                           generator=generator, record=record)
               for s in range(0, len(batch), chunk)]
    out: dict[str, object] = {}
    if cfg.explicit:
        pred = torch.cat([r.predictions for r in results])
        tgt = torch.cat([r.targets for r in results])
        out["rmse"] = float(torch.sqrt(((pred.double() - tgt.double()) ** 2).mean()))
        out["n"] = len(pred)
    else:
        ranks = torch.cat([r.ranks for r in results]).float()
        out["recall@20"] = float((ranks <= 20).float().mean())
        out["mrr@20"] = float(torch.where(ranks <= 20, 1.0 / ranks, torch.zeros_like(ranks)).mean())
        out["n"] = len(ranks)
    if record:
        out["trajectory"] = torch.cat([r.trajectory for r in results])
        if not cfg.explicit:
            out["step_ranks"] = torch.cat([r.step_ranks for r in results])
    return out


def _val_score(metrics: dict[str, object], explicit: bool) -> float:
    """Lower is better: RMSE, or minus Recall@20."""
    return float(metrics["rmse"]) if explicit else -float(metrics["recall@20"])


def train_sketching(cfg: SketchConfig, train: SequenceBatch, val: SequenceBatch | None, n_items: int,
                    seeds: Seeds, *, epochs: int = 3, batch_size: int = 64, lr: float = 1e-2,
                    policy_lr: float = 1e-2, dim: int = 16, layers: tuple[int, ...] = (32, 16),
                    policy_hidden: int = 64, device: torch.device | str = "cpu",
                    init: tuple[NCF, SketchPolicy | None] | None = None, include_init: bool = False,
                    record_init: bool = False, policy_epochs: int = 0, desc: str = "") -> TrainedSketcher:
    """Algorithm 1: train ``Theta`` (and ``Phi`` for DiPS / DiPS@1) over mini-batches of users.

    Static policies train ``Theta`` the same way with their sketches. After
    each epoch the validation users (when given) are evaluated and the best
    epoch's parameters are kept; ``include_init`` lets the starting point
    compete too (``best_epoch = 0``; epoch ``e`` is after ``e`` epochs);
    ``record_init`` only records its validation score (``val_history[0]``)
    without letting it compete, so a learned policy is never reported
    untrained. ``policy_epochs`` (learned methods only) adds epochs that
    train ``Phi`` alone, ``Theta`` frozen (its learning rate set to 0), so
    that the base model gets the same training as the static methods'.
    ``init`` warm-starts from a model (and policy).
    """
    if epochs < 1 or batch_size < 1 or policy_epochs < 0:
        raise ValueError(f"epochs and batch_size must be >= 1 and policy_epochs >= 0, got {epochs}, "
                         f"{batch_size}, {policy_epochs}")
    if include_init and record_init:
        raise ValueError("include_init and record_init exclude each other")
    mean_rating = float(train.targets[torch.arange(train.items.shape[1])[None, :] < train.lengths[:, None]].mean())
    if init is not None:
        model = copy.deepcopy(init[0]).to(device)
        policy = copy.deepcopy(init[1]).to(device) if (cfg.learned and init[1] is not None) else None
    else:
        model = make_base_model(n_items, cfg.explicit, dim, layers, mean_rating).to(device)
        policy = None
    if cfg.learned and policy is None:
        policy = SketchPolicy(n_items, policy_hidden).to(device)
    groups = [{"params": model.parameters(), "lr": lr}]
    if policy is not None:
        groups.append({"params": policy.parameters(), "lr": policy_lr})
    opt = torch.optim.Adam(groups, foreach=True)
    train = train.to(device)
    history, val_history = [], []
    best, best_epoch, best_state = float("inf"), 0, None

    def consider(epoch: int, selectable: bool = True) -> None:
        nonlocal best, best_epoch, best_state
        score = _val_score(evaluate_sketching(model, policy, val.to(device), cfg, generator=seeds.torch_gen),
                           cfg.explicit)
        val_history.append(score)
        if selectable and score < best:
            best, best_epoch = score, epoch
            best_state = (copy.deepcopy(model.state_dict()),
                          copy.deepcopy(policy.state_dict()) if policy is not None else None)

    if val is not None and (include_init or record_init):
        consider(0, selectable=include_init)
    extra = policy_epochs if policy is not None else 0
    for epoch in progress(range(epochs + extra), desc=desc or f"{cfg.method} K={cfg.k} tau={cfg.tau}"):
        if epoch == epochs:  # policy-only epochs: Theta frozen
            opt.param_groups[0]["lr"] = 0.0
        model.train()
        order = torch.randperm(len(train), generator=seeds.torch_gen)
        losses = []
        for b in order.split(batch_size):
            res = sketch_pass(model, policy, train.take(b.numpy()), cfg, train=True, optimizer=opt,
                              generator=seeds.torch_gen)
            losses.append(res.mean_loss)
        history.append(float(np.mean(losses)))
        if val is not None:
            consider(epoch + 1)
    if best_state is not None:
        model.load_state_dict(best_state[0])
        if policy is not None:
            policy.load_state_dict(best_state[1])
    model.eval()
    return TrainedSketcher(cfg, model, policy, history, val_history,
                           best_epoch if val is not None else epochs + extra)


def step_policy_gradient(model: NCF, policy: SketchPolicy, batch: SequenceBatch, cfg: SketchConfig, slots: torch.Tensor,
                         queue: list[tuple[torch.Tensor, torch.Tensor]], t: int) -> torch.Tensor:
    """``d l_{t+1} / d Phi`` (flattened) for the sketch ``slots`` and the intermediate sketches ``queue`` (eq. 10)."""
    device = batch.items.device
    T = batch.items.shape[1]
    z = _scatter(slots, slots >= 0, torch.ones(slots.shape, device=device), T)
    if queue:
        cands = torch.stack([c for c, _ in queue], 1)
        masks = torch.stack([m for _, m in queue], 1)
        z = z + policy_surrogate(policy, batch, cands, masks, cfg.k, cfg.tau)
    theta = _adapt(model, cfg, batch.items, batch.targets, z, True)
    valid = (t + 1) < batch.lengths
    loss_t = next_item_loss(model, theta, batch.items[:, t + 1], batch.targets[:, t + 1], cfg.explicit)
    loss = (loss_t * valid).sum() / valid.sum().clamp(min=1)
    grads = torch.autograd.grad(loss, list(policy.parameters()), allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, policy.parameters())])


def true_policy_gradient(model: NCF, policy: SketchPolicy, batch: SequenceBatch, cfg: SketchConfig,
                         noises: list[torch.Tensor | None], t: int) -> torch.Tensor:
    """The gradient eq. 10 approximates: replay the whole sketching process up to step ``t`` with the *current* ``Phi``.

    The decisions are re-made with the current policy (and the same random
    draws ``noises``), and every intermediate sketch since the start enters
    the sum of eq. 9 (Jacobians ``d z_{l+1} / d z_l`` taken as the identity,
    as in eq. 10), so the only difference from the queue estimate is that the
    queue's sketches were made by older parameters.
    """
    full = replace(cfg, queue=10**9)
    res = sketch_pass(model, policy, batch, full, stochastic=True, noises=noises, until=t)
    return step_policy_gradient(model, policy, batch, full, res.slots, res.queue, t)


def gradient_agreement(model: NCF, policy: SketchPolicy, batch: SequenceBatch, cfg: SketchConfig,
                       lrs: tuple[float, ...], seed: int = 0, every: int = 1) -> pd.DataFrame:
    """Cosine similarity between the queue gradient of eq. 10 and the replayed true gradient, per learning rate.

    For each policy learning rate, ``Phi`` is trained (Adam, ``Theta``
    frozen) along one pass of Algorithm 1 over ``batch`` with a queue that
    holds every past intermediate sketch; at every ``every``-th step with a
    policy gradient, the gradient used for the update is compared with
    :func:`true_policy_gradient` at the same ``Phi``. Returns one row per
    (lr, step): ``lr, step, cosine, rel_error``.
    """
    if not cfg.learned:
        raise ValueError(f"gradient_agreement needs DiPS or DiPS@1, got {cfg.method}")
    full = replace(cfg, method="DiPS", queue=10**9)
    rows = []
    for lr in lrs:
        m = copy.deepcopy(model).requires_grad_(False)
        pol = copy.deepcopy(policy)
        opt = torch.optim.Adam(pol.parameters(), lr=lr)
        gen = torch.Generator().manual_seed(seed)
        res = sketch_pass(m, pol, batch, full, train=True, optimizer=opt, generator=gen, keep_grads=True)
        snapshot = copy.deepcopy(pol)
        for t, (g_queue, state) in enumerate(zip(res.policy_grads, res.policy_states)):
            if t % every or float(g_queue.norm()) == 0.0:
                continue
            snapshot.load_state_dict(state)
            g_true = true_policy_gradient(m, snapshot, batch, full, res.noises, t)
            cos = float(torch.nn.functional.cosine_similarity(g_queue, g_true, dim=0))
            rel = float((g_queue - g_true).norm() / g_true.norm().clamp(min=1e-30))
            rows.append({"lr": lr, "step": t, "cosine": cos, "rel_error": rel})
    if not rows:
        raise ValueError("no step had a policy gradient; the sequences are too short for this K and tau")
    return pd.DataFrame(rows)
