"""SML's transfer network and its two-step sequential training (Zhang et al. 2020, §3).

The pieces, in the paper's notation (reusable outside the period protocol,
e.g. by the online-update chapter on a stream of mini-batches):

* :class:`TransferCNN` -- ``f_Theta(w_{t-1}, w_hat_t) -> w_t`` for one group
  of parameters (eq. 3-7): the stack layer, vertical convolutions with GELU,
  a fully connected layer with GELU, and a linear output.
* :class:`SMLTransfer` -- one :class:`TransferCNN` per parameter group
  (for MF: ``"user"`` and ``"item"`` embeddings), each shared over all rows
  of its group (§3.4).
* :class:`SMLTask` -- the state of one retraining task ``tau_t`` (eq. 2): the
  previous parameters ``W_{t-1}`` (constants) and the transfer input
  ``W_hat_t`` (learned), with the optimizer of ``W_hat_t``.
* :func:`step1_learn_hat` (eq. 8-9) and :func:`step2_learn_transfer`
  (eq. 10-11): the two steps, each over any iterable of mini-batches
  ``(users, positives, negatives)``; :func:`apply_transfer` (eq. 3) gives the
  new parameters ``W_t`` of every row.
* :class:`SMLUpdater` -- Algorithms 1 and 2 for MF on a stream of data blocks
  (periods, or the mini-batches of an online stream): ``update(users, items)``
  when a block arrives, ``P``/``Q`` to serve.

Scores are MF's ``p_u . q_i`` (eq. 12) computed from the *transferred* rows;
only the rows a mini-batch touches go through the transfer.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rec_lib.data.sampling import SeenItems
from rec_lib.models.losses import bce_loss, bpr_loss
from rec_lib.models.training import minibatches, pair_batches
from rec_lib.utils import Seeds

__all__ = [
    "TransferCNN",
    "SMLTransfer",
    "SMLTask",
    "Batch",
    "transferred_rows",
    "transfer_scores",
    "step1_learn_hat",
    "step2_learn_transfer",
    "apply_transfer",
    "meta_gradients",
    "unrolled_meta_gradients",
    "identity_warm_start",
    "block_batches",
    "SMLUpdater",
    "SML_VARIANTS",
]

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # users [B], positives [B], negatives [B] or [B, n]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_LOSSES: dict[str, LossFn] = {"bce": bce_loss, "bpr": bpr_loss}


class TransferCNN(nn.Module):
    """The transfer ``w_t = f_Theta(w_{t-1}, w_hat_t)`` of one parameter group (eq. 3-7).

    Each row (one user's or one item's embedding, ``d`` numbers) is treated
    on its own; the network is shared across rows.

    * stack layer (eq. 4): ``H0 = [w_{t-1}; w_hat; w_dot]`` (``3 x d``) with
      ``w_dot = w_{t-1} * w_hat / (||w_{t-1}|| + eps)``;
    * convolutions (eq. 5): the first has ``filters[0]`` vertical ``3 x 1``
      filters ``F_j`` (``H1_{j,m} = GELU(<F_j, H0_{:,m}>)``, no bias); each
      further layer has ``filters[l]`` filters of size ``filters[l-1] x 1``
      (a 1x1 convolution across the previous layer's filters), also GELU;
    * fully connected layer (eq. 6): ``z = GELU(W_f^T flatten(H) + b_1)`` of
      size ``fc``;
    * output layer (eq. 7): ``w_t = W_o^T z + b_2``.

    ``filters=()`` drops the convolutions (the ablation SML-CNN: the FC layer
    reads the flattened stack ``H0``); ``fc=None`` drops the FC layer (SML-FC:
    the output layer reads ``flatten(H)`` directly).
    """

    def __init__(self, dim: int, filters: Sequence[int] = (10, 5), fc: int | None = 512, eps: float = 1e-15):
        super().__init__()
        filters = tuple(int(n) for n in filters)
        if dim < 1 or any(n < 1 for n in filters) or (fc is not None and fc < 1):
            raise ValueError(f"dim, every filter count and fc must be >= 1, got dim={dim}, filters={filters}, fc={fc}")
        self.dim, self.filters, self.fc_size, self.eps = dim, filters, fc, eps
        convs, channels = [], 1
        for layer, n in enumerate(filters):
            kernel = (3, 1) if layer == 0 else (1, 1)
            convs.append(nn.Conv2d(channels, n, kernel, bias=False))
            channels = n
        self.convs = nn.ModuleList(convs)
        width = (filters[-1] if filters else 3) * dim
        self.fc = nn.Linear(width, fc) if fc is not None else None
        self.out = nn.Linear(fc if fc is not None else width, dim)

    def stack(self, w_prev: torch.Tensor, w_hat: torch.Tensor) -> torch.Tensor:
        """``H0`` of eq. 4, ``[N, 3, d]``: rows ``w_{t-1}``, ``w_hat``, ``w_dot``."""
        if w_prev.shape != w_hat.shape or w_prev.ndim != 2 or w_prev.shape[1] != self.dim:
            raise ValueError(f"w_prev and w_hat must both be [N, {self.dim}], got {tuple(w_prev.shape)}, {tuple(w_hat.shape)}")
        w_dot = w_prev * w_hat / (w_prev.norm(dim=1, keepdim=True) + self.eps)
        return torch.stack([w_prev, w_hat, w_dot], dim=1)

    def forward(self, w_prev: torch.Tensor, w_hat: torch.Tensor) -> torch.Tensor:
        """``w_t`` of eq. 7, ``[N, d]``, from ``w_{t-1}`` and ``w_hat_t`` (both ``[N, d]``)."""
        h = self.stack(w_prev, w_hat).unsqueeze(1)  # [N, 1, 3, d]: an image of one channel
        for conv in self.convs:
            h = F.gelu(conv(h))  # eq. 5; after the first layer h is [N, n_l, 1, d]
        z = h.flatten(1)
        if self.fc is not None:
            z = F.gelu(self.fc(z))  # eq. 6
        return self.out(z)  # eq. 7

    @property
    def first_filters(self) -> torch.Tensor:
        """``F^(1)`` as ``[n_1, 3]`` (columns: weight on ``w_{t-1}``, ``w_hat``, ``w_dot``; Figure 7)."""
        if not self.convs:
            raise ValueError("this transfer has no convolution layer (filters=())")
        return self.convs[0].weight.detach()[:, 0, :, 0]


class SMLTransfer(nn.Module):
    """One :class:`TransferCNN` per parameter group, e.g. ``{"user": d, "item": d}`` for MF (§3.4)."""

    def __init__(self, dims: Mapping[str, int], filters: Sequence[int] = (10, 5), fc: int | None = 512, eps: float = 1e-15):
        super().__init__()
        if not dims:
            raise ValueError("SMLTransfer needs at least one parameter group")
        self.nets = nn.ModuleDict({g: TransferCNN(d, filters, fc, eps) for g, d in dims.items()})

    @property
    def groups(self) -> list[str]:
        return list(self.nets)

    def forward(self, group: str, w_prev: torch.Tensor, w_hat: torch.Tensor) -> torch.Tensor:
        return self.nets[group](w_prev, w_hat)


class SMLTask:
    """One retraining task ``tau_t`` (eq. 2): ``W_{t-1}`` held constant, ``W_hat_t`` learned.

    ``W_hat_t`` starts as a copy of ``W_{t-1}`` (Algorithm 1, line 3) unless
    ``hat`` is given. The optimizer of ``W_hat_t`` (Adam) lives with the task,
    so repeated step-1 calls within a task continue it.
    """

    def __init__(self, prev: Mapping[str, torch.Tensor], hat: Mapping[str, torch.Tensor] | None = None):
        if not prev:
            raise ValueError("SMLTask needs at least one parameter group")
        self.prev = {g: w.detach().clone() for g, w in prev.items()}
        start = hat if hat is not None else prev
        if set(start) != set(self.prev):
            raise ValueError(f"hat groups {sorted(start)} differ from prev groups {sorted(self.prev)}")
        self.hat = nn.ParameterDict({g: nn.Parameter(start[g].detach().clone()) for g in self.prev})
        self._opt: torch.optim.Optimizer | None = None
        self._lr: float | None = None

    def hat_optimizer(self, lr: float) -> torch.optim.Optimizer:
        """Adam over ``W_hat_t`` (created on the first call, reused after)."""
        if lr <= 0:
            raise ValueError(f"learning rate must be > 0, got {lr}")
        if self._opt is None or self._lr != lr:
            self._opt, self._lr = torch.optim.Adam(self.hat.parameters(), lr=lr), lr
        return self._opt


def transferred_rows(transfer: SMLTransfer, task: SMLTask, group: str, idx: torch.Tensor,
                     detach_hat: bool = False, through_transfer: bool = True) -> torch.Tensor:
    """``f_Theta(w_{t-1}, w_hat_t)`` for the rows ``idx`` (any shape) of ``group``: ``[*idx.shape, d]``.

    Each distinct row goes through the network once. ``detach_hat`` treats
    ``W_hat_t`` as a constant (step 2); ``through_transfer=False`` returns
    ``W_hat_t`` itself (the ablation SML-FP).
    """
    flat = idx.reshape(-1)
    uniq, inv = torch.unique(flat, return_inverse=True)
    w_hat = task.hat[group][uniq]
    if detach_hat:
        w_hat = w_hat.detach()
    w = transfer(group, task.prev[group][uniq], w_hat) if through_transfer else w_hat
    return w[inv].reshape(*idx.shape, -1)


def transfer_scores(transfer: SMLTransfer, task: SMLTask, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor,
                    detach_hat: bool = False, through_transfer: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """MF scores (eq. 12) of positives ``[B]`` and negatives (``[B]`` or ``[B, n]``) from transferred rows."""
    p = transferred_rows(transfer, task, "user", users, detach_hat, through_transfer)
    q = transferred_rows(transfer, task, "item", torch.cat([pos.reshape(-1), neg.reshape(-1)]), detach_hat, through_transfer)
    q_pos, q_neg = q[: len(pos)], q[len(pos):].reshape(*neg.shape, -1)
    pos_s = (p * q_pos).sum(-1)
    neg_s = (p.unsqueeze(1) * q_neg).sum(-1) if neg.ndim == 2 else (p * q_neg).sum(-1)
    return pos_s, neg_s


@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(module.parameters(), flags):
            p.requires_grad_(f)


def _loss_fn(loss: str | LossFn) -> LossFn:
    if callable(loss):
        return loss
    if loss not in _LOSSES:
        raise ValueError(f"loss must be one of {sorted(_LOSSES)} or a callable, got {loss!r}")
    return _LOSSES[loss]


def step1_learn_hat(transfer: SMLTransfer, task: SMLTask, batches: Iterable[Batch], lr: float = 1e-2,
                    l2: float = 0.0, loss: str | LossFn = "bce", through_transfer: bool = True) -> float:
    """Step 1 (eq. 8-9): update ``W_hat_t`` on ``D_t`` through the transfer, ``Theta`` constant.

    ``L_r = L_0(f_Theta(W_{t-1}, W_hat_t) | D_t) + l2 ||W_hat_t||^2`` with the
    L2 term on the rows of each mini-batch (its stochastic form). Gradients
    flow through the transfer into ``W_hat_t`` only; ``Theta`` is frozen, so
    it is left exactly as it was. ``through_transfer=False`` optimises the
    plain loss ``L_0(W_hat_t | D_t)`` instead (SML-FP). Returns the mean loss.
    """
    fn, opt = _loss_fn(loss), task.hat_optimizer(lr)
    total, n = 0.0, 0
    with _frozen(transfer):
        for users, pos, neg in batches:
            pos_s, neg_s = transfer_scores(transfer, task, users, pos, neg, through_transfer=through_transfer)
            batch_loss = fn(pos_s, neg_s)
            if l2:
                rows = [task.hat["user"][users], task.hat["item"][pos], task.hat["item"][neg]]
                batch_loss = batch_loss + l2 * sum((r**2).sum(-1).mean() for r in rows)
            opt.zero_grad(set_to_none=True)
            batch_loss.backward()
            opt.step()
            total, n = total + batch_loss.item() * len(users), n + len(users)
    if n == 0:
        raise ValueError("step 1 got no mini-batch")
    return total / n


def step2_learn_transfer(transfer: SMLTransfer, task: SMLTask, batches: Iterable[Batch],
                         optimizer: torch.optim.Optimizer, loss: str | LossFn = "bce") -> float:
    """Step 2 (eq. 10-11): update ``Theta`` on ``D_{t+1}`` with ``W_hat_t`` held constant.

    ``L_s = L_0(f_Theta(W_{t-1}, W_hat_t) | D_{t+1}) + lambda_2 ||Theta||^2``;
    ``W_hat_t`` enters as a constant (the first-order approximation of §3.3),
    so it is left exactly as it was. ``optimizer`` runs over
    ``transfer.parameters()`` and carries ``lambda_2`` as its weight decay
    (build it once: ``Theta`` is shared by all tasks). Returns the mean loss.
    """
    fn = _loss_fn(loss)
    total, n = 0.0, 0
    for users, pos, neg in batches:
        pos_s, neg_s = transfer_scores(transfer, task, users, pos, neg, detach_hat=True)
        batch_loss = fn(pos_s, neg_s)
        optimizer.zero_grad(set_to_none=True)
        batch_loss.backward()
        optimizer.step()
        total, n = total + batch_loss.item() * len(users), n + len(users)
    if n == 0:
        raise ValueError("step 2 got no mini-batch")
    return total / n


@torch.no_grad()
def apply_transfer(transfer: SMLTransfer, task: SMLTask, chunk: int = 1 << 16) -> dict[str, torch.Tensor]:
    """``W_t = f_Theta(W_{t-1}, W_hat_t)`` (eq. 3) for every row of every group, in chunks of rows."""
    out = {}
    for g in task.prev:
        prev, hat = task.prev[g], task.hat[g].detach()
        out[g] = torch.cat([transfer(g, prev[s : s + chunk], hat[s : s + chunk]) for s in range(0, len(prev), chunk)])
    return out


def meta_gradients(transfer: SMLTransfer, task: SMLTask, batch_t: Batch, batch_next: Batch, step: float = 1e-2,
                   loss: str | LossFn = "bce") -> tuple[torch.Tensor, torch.Tensor]:
    """The gradient of ``L_s`` w.r.t. ``Theta`` after one gradient step of step 1: exact and first-order.

    One step ``W_hat' = W_hat - lr * dL_r(W_hat | D_t)/dW_hat`` makes
    ``W_hat'`` a function of ``Theta``; ``lr`` is set (as a constant) so
    that the largest entry moves by ``step``, the size of one Adam step of
    learning rate ``step``. The *exact* gradient of
    ``L_0(f_Theta(W_{t-1}, W_hat') | D_{t+1})`` follows that dependence
    (second-order terms); the *first-order* one (eq. 11, first-order MAML)
    treats ``W_hat'`` as a constant. Returns both, flattened, to check the
    paper's claim that the dropped terms matter little.
    """
    fn = _loss_fn(loss)
    params = [p for p in transfer.parameters()]
    groups = list(task.hat.keys())
    pos, neg = transfer_scores(transfer, task, *batch_t)
    grads = torch.autograd.grad(fn(pos, neg), [task.hat[g] for g in groups], create_graph=True)
    largest = max(float(g.detach().abs().max()) for g in grads)
    lr = step / largest if largest > 0 else 0.0
    stepped = types.SimpleNamespace(prev=task.prev, hat={g: task.hat[g] - lr * gr for g, gr in zip(groups, grads)})
    exact = torch.autograd.grad(fn(*transfer_scores(transfer, stepped, *batch_next)), params)
    frozen = types.SimpleNamespace(prev=task.prev, hat={g: w.detach() for g, w in stepped.hat.items()})
    first = torch.autograd.grad(fn(*transfer_scores(transfer, frozen, *batch_next)), params)
    return torch.cat([g.flatten() for g in exact]), torch.cat([g.flatten() for g in first])


def _adam_unrolled(transfer: SMLTransfer, task, batches: Sequence[Batch], lr: float, fn: LossFn,
                   betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> dict[str, torch.Tensor]:
    """``W_hat`` after ``len(batches)`` Adam steps of step 1, kept differentiable in ``Theta``."""
    groups = list(task.hat.keys())
    hat = {g: task.hat[g] for g in groups}
    m = {g: torch.zeros_like(hat[g]) for g in groups}
    v = {g: torch.zeros_like(hat[g]) for g in groups}
    b1, b2 = betas
    for k, batch in enumerate(batches, 1):
        state = types.SimpleNamespace(prev=task.prev, hat=hat)
        grads = torch.autograd.grad(fn(*transfer_scores(transfer, state, *batch)), [hat[g] for g in groups],
                                    create_graph=True)
        new = {}
        for g, gr in zip(groups, grads):
            m[g] = b1 * m[g] + (1 - b1) * gr
            v[g] = b2 * v[g] + (1 - b2) * gr**2
            m_hat, v_hat = m[g] / (1 - b1**k), v[g] / (1 - b2**k)
            new[g] = hat[g] - lr * m_hat / ((v_hat + 1e-20).sqrt() + eps)
        hat = new
    return hat


def unrolled_meta_gradients(transfer: SMLTransfer, task: SMLTask, batches_t: Sequence[Batch], batch_next: Batch,
                            lr: float = 1e-2, loss: str | LossFn = "bce") -> tuple[torch.Tensor, torch.Tensor]:
    """Exact and first-order gradients of ``L_s`` w.r.t. ``Theta`` on the actual step-1 trajectory.

    Step 1 is unrolled as it runs in training: one Adam step of learning rate
    ``lr`` per mini-batch of ``batches_t`` (``D_t``), from ``W_hat = task.hat``,
    every step differentiable in ``Theta`` (through the gradients and Adam's
    moments). The *exact* gradient of ``L_0(f_Theta(W_{t-1}, W_hat_k) | D_{t+1})``
    (on ``batch_next``) follows ``W_hat_k``'s dependence on ``Theta``; the
    *first-order* one (eq. 11) treats ``W_hat_k`` as a constant. Returns both, flattened.
    """
    if not batches_t:
        raise ValueError("unrolled_meta_gradients needs at least one step-1 mini-batch")
    fn = _loss_fn(loss)
    params = list(transfer.parameters())
    hat = _adam_unrolled(transfer, task, list(batches_t), lr, fn)
    stepped = types.SimpleNamespace(prev=task.prev, hat=hat)
    exact = torch.autograd.grad(fn(*transfer_scores(transfer, stepped, *batch_next)), params)
    frozen = types.SimpleNamespace(prev=task.prev, hat={g: w.detach() for g, w in hat.items()})
    first = torch.autograd.grad(fn(*transfer_scores(transfer, frozen, *batch_next)), params)
    return torch.cat([g.flatten() for g in exact]), torch.cat([g.flatten() for g in first])


def identity_warm_start(transfer: SMLTransfer, rows: Mapping[str, torch.Tensor], seeds: Seeds, steps: int = 200,
                        lr: float = 3e-3, noise: float = 0.5, batch_size: int = 1024) -> list[float]:
    """Fit the transfer to ``f_Theta(w, w_hat) = w_hat`` before any task (our deviation, not the paper's).

    ``w`` are rows of ``rows[group]`` (the initial model), ``w_hat = w + noise
    * std(w) * N(0, 1)``; ``steps`` Adam steps on the mean squared error. A
    transfer so started serves what step 1 fitted on the new data, so SML
    starts as Fine-tune and training decides how much of ``w_{t-1}`` to keep.
    Returns the loss of every step.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    opt = torch.optim.Adam(transfer.parameters(), lr=lr)
    gen, losses = seeds.torch_gen, []
    for _ in range(steps):
        total = 0.0
        for g, w_all in rows.items():
            w_all = w_all.detach()
            idx = torch.randint(len(w_all), (min(batch_size, len(w_all)),), generator=gen).to(w_all.device)
            w = w_all[idx]
            eps = torch.randn(w.shape, generator=gen).to(w.device)
            w_hat = w + noise * w_all.std() * eps
            total = total + F.mse_loss(transfer(g, w, w_hat), w_hat)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        losses.append(float(total.detach()))
    return losses


def block_batches(users: np.ndarray, items: np.ndarray, seen: SeenItems | None, seeds: Seeds, epochs: int = 1,
                  batch_size: int = 1024, n_neg: int = 1, device: torch.device | str = "cpu",
                  negatives: np.ndarray | torch.Tensor | None = None) -> Iterator[Batch]:
    """``epochs`` passes over a block of positives as ``(users, positives, negatives)`` mini-batches.

    Negatives (``[B, n_neg]``) are drawn anew each pass among the items the
    user never interacted with (``seen``), by :func:`rec_lib.models.pair_batches`;
    or, when ``negatives`` (``[N]`` or ``[N, n]``, one row per positive) is
    given, those are used in every pass (an online stream that drew them
    already) and ``seen`` is not needed. Mini-batches are shuffled with
    ``seeds.torch_gen`` either way.
    """
    if len(users) != len(items):
        raise ValueError(f"users and items must have equal length, got {len(users)}, {len(items)}")
    u_all = torch.tensor(np.asarray(users), dtype=torch.long)
    i_all = torch.tensor(np.asarray(items), dtype=torch.long)
    if negatives is not None:
        neg_all = torch.as_tensor(np.asarray(negatives), dtype=torch.long)
        neg_all = neg_all.reshape(len(u_all), -1)
        for _ in range(epochs):
            for b in minibatches(len(u_all), batch_size, seeds.torch_gen):
                yield u_all[b].to(device), i_all[b].to(device), neg_all[b].to(device)
        return
    if seen is None:
        raise ValueError("block_batches needs `seen` to sample negatives, or the block's `negatives`")
    for _ in range(epochs):
        for b, neg in pair_batches(u_all.numpy(), seen, seeds, batch_size, n_neg):
            yield u_all[b].to(device), i_all[b].to(device), neg.to(device)


SML_VARIANTS = ("SML", "SML-CNN", "SML-FC", "SML-N", "SML-S", "SML-FP")


class SMLUpdater:
    """SML for matrix factorisation on a stream of data blocks (Algorithms 1 and 2).

    A *block* is the data of one period ``D_t`` (the retraining protocol) or
    one mini-batch of an online stream (the online-update chapter). Start from
    initial embeddings ``P0``, ``Q0`` (``W_{-1}``, or a pretrained model), then
    call :meth:`update` each time a block arrives, *after* the current
    :attr:`P`, :attr:`Q` have served (been tested on) it:

    1. if a task ``tau_t`` is open (a previous block ``D_t`` exists) and the
       transfer is updated: ``outer_iters - 1`` rounds of (step 2 on the new
       block ``D_{t+1}``, step 1 on ``D_t``), one last step 2, and
       ``W_t <- f_Theta(W_{t-1}, W_hat_t)`` (Algorithm 2, lines 3-7, which is
       Algorithm 1's loop of ``outer_iters`` rounds continued);
    2. open ``tau_{t+1}``: ``W_hat_{t+1} <- W_t``, step 1 on ``D_{t+1}``,
       ``W_{t+1} = f_Theta(W_t, W_hat_{t+1})`` (lines 8-9): the model to serve.

    Variants (Figure 4): ``"SML-N"`` runs step 2 on ``D_t`` instead of
    ``D_{t+1}``; ``"SML-S"`` skips part 1 once :meth:`freeze_transfer` was
    called (the transfer is fixed while serving); ``"SML-FP"`` learns
    ``W_hat`` on the plain loss (step 1 without the transfer); ``"SML-CNN"``
    and ``"SML-FC"`` are set by ``filters=()`` and ``fc=None``.

    ``loss`` is ``"bce"`` (SML's log loss, eq. 13) or ``"bpr"`` (BPR-MF).
    ``seen`` samples the negatives of each block; it may be ``None`` when
    every block comes with its own (``update(users, items, negatives)``, as
    the mini-batches of an online stream do).
    ``hat_epochs`` / ``theta_epochs`` are the passes over the block in each
    step-1 / step-2 call. ``warm_start > 0`` first fits the transfer to
    return ``w_hat`` (:func:`identity_warm_start`, that many steps; not in the
    paper); :attr:`initial_filters` keeps ``F^(1)`` of each transfer as it
    was before the first task (Figure 7's baseline). Timings and losses of each call are kept in
    :attr:`log`.
    """

    def __init__(self, P0: torch.Tensor, Q0: torch.Tensor, seen: SeenItems | None, seeds: Seeds, *,
                 filters: Sequence[int] = (10, 5), fc: int | None = 512, variant: str = "SML", loss: str = "bce",
                 lr_hat: float = 1e-2, lr_theta: float = 1e-3, l2_hat: float = 0.0, l2_theta: float = 0.0,
                 outer_iters: int = 2, hat_epochs: int = 1, theta_epochs: int = 1, batch_size: int = 1024,
                 n_neg: int = 1, device: torch.device | str = "cpu", warm_start: int = 0):
        if variant not in SML_VARIANTS:
            raise ValueError(f"variant must be one of {SML_VARIANTS}, got {variant!r}")
        if P0.ndim != 2 or Q0.ndim != 2 or P0.shape[1] != Q0.shape[1]:
            raise ValueError(f"P0 [n_users, d] and Q0 [n_items, d] expected, got {tuple(P0.shape)}, {tuple(Q0.shape)}")
        if seen is not None and (P0.shape[0], Q0.shape[0]) != (seen.n_users, seen.n_items):
            raise ValueError(f"P0/Q0 have {P0.shape[0]} users / {Q0.shape[0]} items but seen has {seen.n_users} / {seen.n_items}")
        for name, v in {"outer_iters": outer_iters, "hat_epochs": hat_epochs, "theta_epochs": theta_epochs,
                        "batch_size": batch_size, "n_neg": n_neg}.items():
            if v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        _loss_fn(loss)
        self.device = torch.device(device)
        self.variant, self.loss, self.seen, self.seeds = variant, loss, seen, seeds
        self.lr_hat, self.l2_hat = lr_hat, l2_hat
        self.outer_iters, self.hat_epochs, self.theta_epochs = outer_iters, hat_epochs, theta_epochs
        self.batch_size, self.n_neg = batch_size, n_neg
        d = P0.shape[1]
        self.transfer = SMLTransfer({"user": d, "item": d}, filters, fc).to(self.device)
        self.W = {"user": P0.detach().to(self.device).clone(), "item": Q0.detach().to(self.device).clone()}
        self.warm_losses = identity_warm_start(self.transfer, self.W, seeds, warm_start) if warm_start else []
        self.initial_filters = {g: net.first_filters.clone() for g, net in self.transfer.nets.items() if net.convs}
        self.theta_optimizer = torch.optim.Adam(self.transfer.parameters(), lr=lr_theta, weight_decay=l2_theta)
        self.task: SMLTask | None = None
        self.block: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None
        self.update_transfer = True
        self.log: list[dict] = []

    # ---------------------------------------------------------------- serving
    @property
    def P(self) -> torch.Tensor:
        """User embeddings of the model being served (``W_t``)."""
        return self.W["user"]

    @property
    def Q(self) -> torch.Tensor:
        """Item embeddings of the model being served (``W_t``)."""
        return self.W["item"]

    @torch.no_grad()
    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """MF scores (eq. 12) of the served model; ``items`` ``[B]`` or ``[B, K]``."""
        from rec_lib.models.mf import mf_score

        return mf_score(self.P, self.Q, users.to(self.device), items.to(self.device))

    def freeze_transfer(self) -> None:
        """From now on the transfer is no longer updated (SML-S while serving)."""
        self.update_transfer = False

    # --------------------------------------------------------------- training
    def _batches(self, block: tuple[np.ndarray, np.ndarray, np.ndarray | None], epochs: int) -> Iterator[Batch]:
        users, items, negatives = block
        return block_batches(users, items, self.seen, self.seeds, epochs, self.batch_size, self.n_neg, self.device,
                             negatives=negatives)

    def _step1(self, block) -> float:
        return step1_learn_hat(self.transfer, self.task, self._batches(block, self.hat_epochs), self.lr_hat,
                               self.l2_hat, self.loss, through_transfer=self.variant != "SML-FP")

    def _step2(self, block) -> float:
        return step2_learn_transfer(self.transfer, self.task, self._batches(block, self.theta_epochs),
                                    self.theta_optimizer, self.loss)

    def update(self, users: np.ndarray, items: np.ndarray, negatives: np.ndarray | None = None) -> None:
        """A new block ``D_{t+1}`` arrived (and was served by the current model): retrain (class docstring).

        ``negatives`` (``[N]`` or ``[N, n]``): the block's own negatives, used
        in every pass over it; by default they are sampled with ``seen``.
        """
        neg = None if negatives is None else np.asarray(negatives, dtype=np.int64)
        new = (np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64), neg)
        if len(new[0]) == 0 or len(new[0]) != len(new[1]):
            raise ValueError(f"a block needs equal, non-zero numbers of users and items, got {len(new[0])}, {len(new[1])}")
        if neg is None and self.seen is None:
            raise ValueError("this SMLUpdater has no `seen` to sample negatives: pass the block's negatives")
        if neg is not None and len(neg) != len(new[0]):
            raise ValueError(f"negatives need one row per positive, got {len(neg)} for {len(new[0])}")
        entry: dict = {"block": len(self.log), "size": len(new[0])}
        if self.task is not None and self.update_transfer:
            step2_block = self.block if self.variant == "SML-N" else new
            s1, s2 = [], []
            for _ in range(self.outer_iters - 1):
                s2.append(self._step2(step2_block))
                s1.append(self._step1(self.block))
            s2.append(self._step2(step2_block))
            self.W = apply_transfer(self.transfer, self.task)  # W_t with the refreshed Theta
            entry.update(step1_prev=s1, step2=s2)
        self.task = SMLTask(self.W)  # W_hat_{t+1} <- W_t
        entry["step1"] = self._step1(new)
        self.W = apply_transfer(self.transfer, self.task)  # W_{t+1} = f(W_t, W_hat_{t+1})
        self.block = new
        self.log.append(entry)
