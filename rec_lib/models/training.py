"""Training loops for the shared recommenders, batched over interactions.

Each loop takes a :class:`rec_lib.utils.Seeds` (every random draw comes from
it), shows a progress bar per epoch, and returns the mean loss of each epoch.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from rec_lib.data.sampling import SeenItems, training_negatives
from rec_lib.data.splits import Sequences
from rec_lib.models.losses import bce_loss, bpr_loss, mse_loss, sampled_softmax_loss
from rec_lib.utils import Seeds, progress

__all__ = ["minibatches", "pair_batches", "fit_pairs", "fit_ratings", "fit_next_item"]


def minibatches(n: int, batch_size: int, generator: torch.Generator | None = None, shuffle: bool = True) -> Iterator[torch.Tensor]:
    """Index batches over ``range(n)``, shuffled with ``generator``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    yield from order.split(batch_size)


def pair_batches(
    users: np.ndarray,
    seen: SeenItems,
    seeds: Seeds,
    batch_size: int = 1024,
    n_neg: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled mini-batches over implicit positives, with sampled negatives.

    Draws ``n_neg`` negatives per row (items user ``users[r]`` never
    interacted with, by ``seen``) from ``seeds.rng``, then yields ``(b, neg)``
    per mini-batch: ``b`` the row indices (shuffled with ``seeds.torch_gen``)
    and ``neg`` ``[len(b), n_neg]``. The loop of :func:`fit_pairs`, exposed so
    that other training schemes (SML's two steps, Caser's windows) draw their
    batches the same way.
    """
    if len(users) == 0:
        raise ValueError("pair_batches needs at least one positive")
    neg = torch.as_tensor(training_negatives(np.asarray(users), seen, seeds.rng, k=n_neg)).reshape(len(users), n_neg)
    for b in minibatches(len(users), batch_size, seeds.torch_gen):
        yield b, neg[b]


def _optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if lr <= 0:
        raise ValueError(f"learning rate must be > 0, got {lr}")
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)


def fit_pairs(
    model: nn.Module,
    users: np.ndarray,
    items: np.ndarray,
    seen: SeenItems,
    seeds: Seeds,
    loss: str = "bpr",
    epochs: int = 10,
    batch_size: int = 1024,
    lr: float = 1e-2,
    weight_decay: float = 0.0,
    n_neg: int = 1,
    device: torch.device | str = "cpu",
    optimizer: torch.optim.Optimizer | None = None,
    desc: str = "fit",
) -> list[float]:
    """Train ``model(users, items) -> scores`` on implicit positives with sampled negatives.

    ``loss="bpr"`` (pairwise, MeLON's BPR-MF), ``"bce"`` (the log loss with
    ``n_neg`` negatives per positive: SML eq. 13, NCF) or ``"softmax"`` (the
    cross-entropy of the positive within its offer set of ``n_neg`` sampled
    negatives: 2TS eq. 10, CCF). Negatives are drawn
    uniformly among the items the user has not interacted with (``seen``),
    anew each epoch.
    """
    loss_fn = {"bpr": bpr_loss, "bce": bce_loss, "softmax": sampled_softmax_loss}.get(loss)
    if loss_fn is None:
        raise ValueError(f"loss must be 'bpr', 'bce' or 'softmax', got {loss!r}")
    if len(users) != len(items) or len(users) == 0:
        raise ValueError(f"users and items must be non-empty and of equal length, got {len(users)}, {len(items)}")
    opt = optimizer or _optimizer(model, lr, weight_decay)
    u_all = torch.tensor(np.asarray(users), dtype=torch.long)
    i_all = torch.tensor(np.asarray(items), dtype=torch.long)
    history = []
    model.train()
    for _ in progress(range(epochs), desc=desc):
        total = 0.0
        for b, neg in pair_batches(u_all.numpy(), seen, seeds, batch_size, n_neg):
            u, i, j = u_all[b].to(device), i_all[b].to(device), neg.to(device)
            pos_s, neg_s = model(u, i), model(u, j)
            batch_loss = loss_fn(pos_s, neg_s)
            opt.zero_grad(set_to_none=True)
            batch_loss.backward()
            opt.step()
            total += batch_loss.item() * len(b)
        history.append(total / len(u_all))
    return history


def fit_ratings(
    model: nn.Module,
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    seeds: Seeds,
    epochs: int = 10,
    batch_size: int = 1024,
    lr: float = 1e-2,
    weight_decay: float = 0.0,
    device: torch.device | str = "cpu",
    desc: str = "fit",
) -> list[float]:
    """Train ``model(users, items) -> rating`` with the mean squared error (explicit feedback)."""
    if not len(users) == len(items) == len(ratings) or len(users) == 0:
        raise ValueError("users, items and ratings must be non-empty and of equal length")
    opt = _optimizer(model, lr, weight_decay)
    u_all = torch.tensor(np.asarray(users), dtype=torch.long)
    i_all = torch.tensor(np.asarray(items), dtype=torch.long)
    r_all = torch.tensor(np.asarray(ratings), dtype=torch.float32)
    history = []
    model.train()
    for _ in progress(range(epochs), desc=desc):
        total = 0.0
        for b in minibatches(len(u_all), batch_size, seeds.torch_gen):
            pred = model(u_all[b].to(device), i_all[b].to(device))
            batch_loss = mse_loss(pred, r_all[b].to(device))
            opt.zero_grad(set_to_none=True)
            batch_loss.backward()
            opt.step()
            total += batch_loss.item() * len(b)
        history.append(total / len(u_all))
    return history


def fit_next_item(
    model: nn.Module,
    sequences: Sequences,
    seeds: Seeds,
    max_len: int = 50,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    loss: str = "ce",
    n_neg: int = 128,
    device: torch.device | str = "cpu",
    desc: str = "fit",
) -> list[float]:
    """Train a sequence model (e.g. :class:`GRU4Rec`) on next-item prediction.

    Each user's last ``max_len`` items form one right-padded row; users with
    fewer than 2 items are skipped.
    """
    keep = np.flatnonzero(sequences.lengths >= 2)
    if len(keep) == 0:
        raise ValueError("no sequence has 2 or more items; nothing to train on")
    seqs, lengths = sequences.padded(max_len=max_len, pad=model.pad)
    seqs, lengths = seqs[keep], lengths[keep]
    opt = _optimizer(model, lr, weight_decay)
    history = []
    model.train()
    for _ in progress(range(epochs), desc=desc):
        total, count = 0.0, 0
        for b in minibatches(len(seqs), batch_size, seeds.torch_gen):
            batch_loss = model.next_item_loss(seqs[b].to(device), lengths[b], loss=loss, n_neg=n_neg,
                                              generator=seeds.torch_gen)
            opt.zero_grad(set_to_none=True)
            batch_loss.backward()
            opt.step()
            total += batch_loss.item() * len(b)
            count += len(b)
        history.append(total / count)
    return history
