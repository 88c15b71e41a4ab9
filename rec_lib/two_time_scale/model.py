"""The neural two-time-scale model (paper Section 3) and its two-stage training.

* **Stage 1** (eq. 10, CCF-like): transductive user embeddings ``phi_u`` and
  item embeddings ``x_i`` from the sampled-softmax loss over the offer set
  {clicked item} + ``p`` sampled items (:func:`fit_stage1`, an
  :class:`rec_lib.models.MF` trained by ``fit_pairs(loss="softmax")``).
* **Stage 2** (eq. 8, 9, 11, 12): two GRU cells. Inactive users (``T <= t*``
  training interactions) start from a learned common ``psi`` and run over all
  their training interactions; active users (``T > t*``) start from their
  frozen stage-1 ``phi_u`` and run over their last ``K`` interactions only
  (:func:`training_windows`); ``x_i`` and ``phi_u`` stay fixed (:func:`fit_windows`).
* **2TS-Plus** (Section 3.3): ``phi_hat = W^T [phi; x_{i_{t-1}}]`` scores the
  next item (``plus=True``).
* **2TS-SingleStage** (Table 3): the same architecture with every parameter,
  ``phi_u`` and ``x_i`` included, trained from scratch in one stage on
  eq. 10 + 11 + 12 jointly (``cf=`` in :func:`fit_windows`).
* **2-GRU** (Table 3): two GRUs split by activity, no transductive user
  embeddings: active users also start from a learned common state and run
  over their last ``max_len`` interactions (``active_init="learned"``).

All training runs batched over users on padded, packed sequences.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rec_lib.data.sampling import SeenItems, training_negatives
from rec_lib.models import MF, fit_pairs, minibatches, sampled_softmax_loss
from rec_lib.two_time_scale.protocol import TTSData, position_negatives, windows
from rec_lib.utils import Seeds, progress

__all__ = [
    "GROUPS",
    "seeded_init",
    "fit_stage1",
    "TwoTimeScale",
    "WindowSet",
    "training_windows",
    "window_loss",
    "length_batches",
    "fit_windows",
    "active_mask",
]

GROUPS = ("in", "act")


def seeded_init(build: Callable[[], nn.Module], seeds: Seeds) -> nn.Module:
    """``build()`` with torch's global generator seeded from ``seeds.torch_gen`` and restored afterwards.

    Layers draw their initial weights from the global generator; this makes a
    model's initialisation depend on its own seed only, not on what ran before.
    """
    seed = int(torch.randint(0, 2**62, (1,), generator=seeds.torch_gen))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def active_mask(n_train: np.ndarray, t_star: int) -> np.ndarray:
    """``T > t*``: users with more than ``t*`` training interactions are active (Section 3.1, Appendix C)."""
    if t_star < 0:
        raise ValueError(f"t* must be >= 0, got {t_star}")
    return np.asarray(n_train) > t_star


def fit_stage1(
    d: TTSData,
    dim: int,
    seeds: Seeds,
    epochs: int,
    lr: float,
    n_neg: int,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
    on_epoch: Callable[[MF, int, float], bool | None] | None = None,
) -> tuple[MF, float]:
    """Stage 1 / CCF: ``MF`` trained on the training interactions with eq. 10; returns it and its training seconds.

    ``on_epoch(model, epoch, seconds_so_far)`` is called after each epoch
    (its own time is not counted), e.g. to evaluate a checkpoint (Figure 2);
    training stops early when it returns ``True``.
    """
    if epochs < 1:
        raise ValueError(f"stage-1 epochs must be >= 1, got {epochs}")
    mf = seeded_init(lambda: MF(d.n_users, d.n_items, dim=dim), seeds).to(device)
    opt = torch.optim.Adam(mf.parameters(), lr=lr)
    spent = 0.0
    for epoch in range(epochs):
        t0 = time.perf_counter()
        fit_pairs(mf, d.train.users, d.train.items, d.seen_train, seeds, loss="softmax", epochs=1,
                  batch_size=batch_size, n_neg=n_neg, device=device, optimizer=opt, desc=f"stage 1, epoch {epoch + 1}")
        spent += time.perf_counter() - t0
        if on_epoch is not None:
            mf.eval()
            if on_epoch(mf, epoch, spent):
                break
    mf.eval()
    return mf, spent


class TwoTimeScale(nn.Module):
    """Two GRU cells over a user's clicks, one per activity group (eq. 8-9).

    ``phi^{t+1} = GRUcell_Theta_g(phi^t, x_{i_t})`` with ``phi^0 = psi`` for
    inactive users (``g = "in"``) and ``phi^0 = phi_u`` for active users
    (``g = "act"``); the score of item ``j`` at step ``t`` is ``phi^t . x_j``
    (or ``phi_hat^t . x_j`` with 2TS-Plus). Index ``n_items`` is padding.
    """

    def __init__(self, n_users: int, n_items: int, dim: int, plus: bool = False, active_init: str = "transductive"):
        super().__init__()
        if min(n_users, n_items, dim) < 1:
            raise ValueError(f"n_users, n_items and dim must be >= 1, got {n_users}, {n_items}, {dim}")
        if active_init not in ("transductive", "learned"):
            raise ValueError(f"active_init must be 'transductive' (2TS) or 'learned' (2-GRU), got {active_init!r}")
        self.n_users, self.n_items, self.pad, self.dim = n_users, n_items, n_items, dim
        self.item = nn.Embedding(n_items + 1, dim, padding_idx=n_items)  # x_i
        self.user = nn.Embedding(n_users, dim)  # phi_u (used for active users only)
        nn.init.normal_(self.item.weight, std=0.1)
        nn.init.normal_(self.user.weight, std=0.1)
        with torch.no_grad():
            self.item.weight[n_items].zero_()
        self.psi = nn.Parameter(torch.zeros(dim))  # common initialisation of inactive users
        self.psi_act = nn.Parameter(torch.zeros(dim)) if active_init == "learned" else None
        self.rnn = nn.ModuleDict({g: nn.GRU(dim, dim, batch_first=True) for g in GROUPS})
        self.W = None
        if plus:  # 2TS-Plus; W = [I; 0] starts it at 2TS
            self.W = nn.Linear(2 * dim, dim, bias=False)
            with torch.no_grad():
                self.W.weight.copy_(torch.cat([torch.eye(dim), torch.zeros(dim, dim)], dim=1))

    @classmethod
    def from_stage1(cls, mf: MF, plus: bool = False) -> "TwoTimeScale":
        """Stage 2's model: ``phi_u`` and ``x_i`` copied from stage 1 and frozen; ``psi`` starts at zeros and is learned."""
        m = cls(mf.n_users, mf.n_items, mf.dim, plus=plus).to(mf.user.weight.device)
        with torch.no_grad():
            m.item.weight[: mf.n_items].copy_(mf.item.weight)
            m.user.weight.copy_(mf.user.weight)
        m.freeze_embeddings()
        return m

    def freeze_embeddings(self) -> None:
        """Fix ``phi_u`` and ``x_i`` (stage 2 learns only ``psi``, the GRUs and ``W``)."""
        self.item.weight.requires_grad_(False)
        self.user.weight.requires_grad_(False)

    def initial_state(self, group: str, users: torch.Tensor) -> torch.Tensor:
        """``phi^0``: ``psi`` (inactive), ``phi_u`` (active, 2TS) or a learned common state (active, 2-GRU)."""
        if group not in GROUPS:
            raise ValueError(f"group must be one of {GROUPS}, got {group!r}")
        if group == "in":
            return self.psi.expand(len(users), -1)
        if self.psi_act is not None:
            return self.psi_act.expand(len(users), -1)
        return self.user(users)

    def trajectory(self, group: str, users: torch.Tensor, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[B, L + 1, d]``: ``phi^0, phi^1, ..., phi^L`` (zeros after a row's end, except ``phi^0``)."""
        if items.ndim != 2 or lengths.shape != (items.shape[0],) or users.shape != lengths.shape:
            raise ValueError("users [B], items [B, L] and lengths [B] expected")
        if (lengths < 1).any():
            raise ValueError("every window needs at least one item")
        h0 = self.initial_state(group, users)
        packed = pack_padded_sequence(self.item(items), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn[group](packed, h0.unsqueeze(0).contiguous())
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=items.shape[1])
        return torch.cat([h0.unsqueeze(1), out], dim=1)

    def states(self, group: str, users: torch.Tensor, items: torch.Tensor, lengths: torch.Tensor,
               prev: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, L, d]``: the user embedding that scores position ``t`` (built from positions ``< t``).

        With 2TS-Plus, ``W^T [phi^t; x_{i_{t-1}}]``; ``prev [B]`` is the item
        just before each window (``pad`` when there is none).
        """
        phi = self.trajectory(group, users, items, lengths)[:, :-1]
        if self.W is None:
            return phi
        prev = torch.full_like(lengths, self.pad) if prev is None else prev
        last = torch.cat([self.item(prev.to(items.device)).unsqueeze(1), self.item(items)[:, :-1]], dim=1)
        return self.W(torch.cat([phi, last], dim=-1))

    def item_table(self) -> tuple[torch.Tensor, None]:
        """``(x, None)``: the item embeddings (with the padding row) that score candidates; no item bias."""
        return self.item.weight, None

    def score(self, phi: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``phi . x_j``: ``phi [..., d]`` against ``items [..., K]`` gives ``[..., K]``; ``items [...]`` gives ``[...]``."""
        x = self.item(items)
        if items.ndim == phi.ndim:
            return (phi.unsqueeze(-2) * x).sum(-1)
        return (phi * x).sum(-1)


@dataclass
class WindowSet:
    """Training windows of one group: users, right-padded items ``[n, L]``, lengths, item before each window."""

    group: str
    users: torch.Tensor
    items: torch.Tensor
    lengths: torch.Tensor
    prev: torch.Tensor

    def __len__(self) -> int:
        return len(self.users)


def training_windows(d: TTSData, t_star: int, active_len: int, inactive: bool = True,
                     inactive_len: int | None = None) -> list[WindowSet]:
    """The stage-2 training sequences, as windows of each user's training interactions.

    Inactive users (``1 <= T <= t*``): all ``T`` interactions (``D_in``, eq. 11).
    Active users (``T > t*``): the last ``active_len`` of them (``K`` for 2TS:
    ``D_act^K`` of eq. 12; ``max_len`` for 2-GRU). ``inactive=False`` leaves the inactive set out;
    ``inactive_len`` keeps only the last ``inactive_len`` interactions of an
    inactive user (2TS-inf: the training window of 2TS's inactive GRU).
    """
    if active_len < 1:
        raise ValueError(f"active_len must be >= 1, got {active_len}")
    act = active_mask(d.n_train, t_star)
    out = []
    for group, users in (("in", np.flatnonzero(~act & (d.n_train > 0))), ("act", np.flatnonzero(act))):
        if len(users) == 0 or (group == "in" and not inactive):
            continue
        T = d.n_train[users]
        if group == "act":
            start = np.maximum(T - active_len, 0)
        else:
            start = np.maximum(T - inactive_len, 0) if inactive_len else np.zeros_like(T)
        rows = d.user_row[users]
        items, lengths = windows(d.seqs, rows, start, T, d.n_items)
        prev = np.where(start > 0, d.seqs.items[d.seqs.offsets[rows] + np.maximum(start - 1, 0)], d.n_items)
        out.append(WindowSet(group, torch.as_tensor(users), items, lengths, torch.as_tensor(prev)))
    if not out:
        raise ValueError("no user has a training interaction; nothing to train stage 2 on")
    return out


def window_loss(model: nn.Module, group: str, users: torch.Tensor, items: torch.Tensor, lengths: torch.Tensor,
                prev: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Eq. 11 (``group="in"``) or eq. 12 (``"act"``): the offer-set cross-entropy at every valid position.

    ``negatives`` are the ``p`` sampled items of each offer set: ``[B, L, p]``
    (one row per window position, padding included), or ``[N, p]`` with one
    row per *valid* position in row-major order (``N = lengths.sum()``; what
    :func:`fit_windows` draws, so no negative is sampled or scored for padding).
    ``model`` provides ``states(group, users, items, lengths, prev)`` and ``score(phi, items)``.
    """
    phi = model.states(group, users, items, lengths, prev)
    mask = torch.arange(items.shape[1], device=items.device)[None, :] < lengths.to(items.device)[:, None]
    phi_v = phi[mask]
    pos = model.score(phi_v, items[mask])
    neg = model.score(phi_v, negatives if negatives.ndim == 2 else negatives[mask])
    return sampled_softmax_loss(pos, neg)


def length_batches(lengths: torch.Tensor, batch_size: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """Mini-batches of window indices of similar length (buckets), in a random order.

    Windows are sorted by length with ties broken at random, cut into
    consecutive batches of ``batch_size``, and the batches shuffled: a batch
    is padded only to its own longest window, not to the longest window of
    the set (a few long histories no longer set the length of every batch).
    Vectorised; every index appears exactly once.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(lengths)
    perm = torch.randperm(n, generator=generator)
    order = perm[torch.sort(lengths[perm], stable=True).indices]
    batches = list(order.split(batch_size))
    return [batches[k] for k in torch.randperm(len(batches), generator=generator).tolist()]


def _cf_loss(model: TwoTimeScale, u: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """Eq. 10 on the model's own ``phi_u`` and ``x_i`` (2TS-SingleStage's transductive term)."""
    phi = model.user(u)
    return sampled_softmax_loss(model.score(phi, i), model.score(phi, j))


def fit_windows(
    model: nn.Module,
    sets: list[WindowSet],
    seen: SeenItems,
    seeds: Seeds,
    epochs: int,
    lr: float,
    n_neg: int,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    cf: tuple[np.ndarray, np.ndarray] | None = None,
    cf_batch_size: int = 1024,
    on_epoch: Callable[[nn.Module, int, float], bool | None] | None = None,
    desc: str = "stage 2",
) -> tuple[list[float], float]:
    """Train ``model`` on next-item prediction over the windows of each group (eq. 11-12).

    Each epoch visits every window once, in mini-batches of users of similar
    window length drawn per group (:func:`length_batches`) and taken in a
    random order; each valid position gets ``n_neg`` fresh negatives. Only parameters that require gradients are optimised (Adam),
    so stage-1 embeddings frozen by :meth:`TwoTimeScale.freeze_embeddings` stay
    fixed. ``cf=(users, items)`` adds eq. 10 on those interactions: an epoch
    then also visits every interaction once, in mini-batches of
    ``cf_batch_size``, and the window mini-batches are spread at random among
    those steps, each step minimising the sum of the losses it holds
    (2TS-SingleStage: one stage, one objective over all parameters).
    Returns the mean step loss per epoch and the training seconds
    (``on_epoch(model, epoch, seconds_so_far)`` callbacks excluded; training
    stops early when one returns ``True``).
    """
    if epochs < 1 or lr <= 0 or n_neg < 1:
        raise ValueError(f"need epochs >= 1, lr > 0 and n_neg >= 1, got {epochs}, {lr}, {n_neg}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameter")
    opt = torch.optim.Adam(params, lr=lr)
    if cf is not None:
        cf_u = torch.as_tensor(np.array(cf[0]), dtype=torch.long)
        cf_i = torch.as_tensor(np.array(cf[1]), dtype=torch.long)
    history, spent = [], 0.0
    model.train()
    for epoch in progress(range(epochs), desc=desc):
        t0 = time.perf_counter()
        plan = [(k, b) for k, s in enumerate(sets) for b in length_batches(s.lengths, batch_size, seeds.torch_gen)]
        order = torch.randperm(len(plan), generator=seeds.torch_gen).tolist()
        if cf is not None:  # every eq.-10 mini-batch once per epoch, the window batches spread among them
            n_cf = -(-len(cf_u) // cf_batch_size)
            slots = torch.randperm(max(n_cf, len(order)), generator=seeds.torch_gen)[: len(order)].tolist()
            step_of = dict(zip(slots, order))
            order = [step_of.get(k) for k in range(max(n_cf, len(order)))]
        cf_batches = iter(())
        total = 0.0
        for step in order:
            loss = torch.zeros((), device=device)
            if step is not None:
                k, b = plan[step]
                s = sets[k]
                users, items, lengths, prev = s.users[b], s.items[b], s.lengths[b], s.prev[b]
                L = int(lengths.max())
                items = items[:, :L]
                valid = torch.arange(L)[None, :] < lengths[:, None]
                negs = position_negatives(users[:, None].expand(-1, L)[valid], n_neg, seen, seeds.rng)
                loss = window_loss(model, s.group, users.to(device), items.to(device), lengths, prev.to(device),
                                   negs.to(device))
            if cf is not None:
                cb = next(cf_batches, None)
                if cb is None:
                    cf_batches = iter(minibatches(len(cf_u), cf_batch_size, seeds.torch_gen))
                    cb = next(cf_batches)
                j = torch.as_tensor(training_negatives(cf_u[cb].numpy(), seen, seeds.rng, k=n_neg)).reshape(len(cb), n_neg)
                loss = loss + _cf_loss(model, cf_u[cb].to(device), cf_i[cb].to(device), j.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()
        spent += time.perf_counter() - t0
        history.append(total / len(order))
        if on_epoch is not None:
            model.eval()
            with torch.no_grad():
                stop = on_epoch(model, epoch, spent)
            model.train()
            if stop:
                break
    model.eval()
    return history, spent
