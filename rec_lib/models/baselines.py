"""Strong simple baselines: popularity, biased MF with a mean-user prior, ItemKNN and EASE^R.

Issue 12, section 6: every chapter that ranks items reads its method beside
baselines that referees ask for. Simple, tuned neighbourhood and linear
models often beat published neural recommenders (Ferrari Dacrema, Cremonesi
and Jannach, RecSys 2019), and on a global time split most test users are new,
so a popularity baseline and an MF whose new users start from the mean user
separate the cold-start effect from the method's.

Every model here has the call shapes of :class:`rec_lib.models.MF`:

- ``model(users [B], items [B]) -> [B]`` and ``model(users [B], items [B, C]) -> [B, C]``
  (sampled candidates, e.g. :func:`rec_lib.evaluation.sampled_ranks`);
- ``model.score_all(users [B]) -> [B, n_items]`` (full ranking,
  :func:`rec_lib.evaluation.full_ranks`);
- ``model.fit(train_users, train_items, ...)`` fits on the training
  interactions and returns the model (:class:`BiasedMF` returns its loss history).

They are ``torch.nn.Module`` objects (``.eval()``, ``.to(device)``,
``state_dict``). :class:`Popularity`, :class:`ItemKNN` and :class:`EASE` are
deterministic closed forms; :class:`BiasedMF` draws from the generators it is
given. :func:`tune_on_validation` picks a grid point by a validation metric.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn

from rec_lib.data.sampling import SeenItems
from rec_lib.models.mf import MF
from rec_lib.models.training import fit_pairs
from rec_lib.utils import Seeds

__all__ = ["Popularity", "BiasedMF", "ItemKNN", "EASE", "tune_on_validation", "TuneResult", "interaction_matrix"]


def _ids(x) -> np.ndarray:
    return np.asarray(x.cpu() if isinstance(x, torch.Tensor) else x, dtype=np.int64).ravel()


def _check_ids(users, items, n_users: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    users, items = _ids(users), _ids(items)
    if len(users) != len(items):
        raise ValueError(f"users and items must have equal length, got {len(users)}, {len(items)}")
    if len(users) and (users.min() < 0 or users.max() >= n_users):
        raise ValueError(f"user ids must lie in [0, {n_users})")
    if len(items) and (items.min() < 0 or items.max() >= n_items):
        raise ValueError(f"item ids must lie in [0, {n_items})")
    return users, items


def _check_sizes(n_users: int, n_items: int) -> None:
    if min(n_users, n_items) < 1:
        raise ValueError(f"n_users and n_items must be >= 1, got {n_users}, {n_items}")


def _gather(full: torch.Tensor, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Pick ``items`` ([B] or [B, C]) out of ``full`` scores [B, n_items]."""
    if items.ndim == users.ndim + 1:
        return full.gather(1, items.to(full.device))
    return full[torch.arange(len(users), device=full.device), items.to(full.device)]


def interaction_matrix(users, items, n_users: int, n_items: int) -> sp.csr_matrix:
    """Binary ``[n_users, n_items]`` CSR matrix with a 1 wherever a (user, item) pair occurs."""
    users, items = _check_ids(users, items, n_users, n_items)
    keys = np.unique(users * n_items + items)
    u, i = keys // n_items, keys % n_items
    return sp.csr_matrix((np.ones(len(keys), np.float32), (u, i)), shape=(n_users, n_items))


# ----------------------------------------------------------------------------- popularity
class Popularity(nn.Module):
    """Scores item ``i`` by its number of training interactions (every user gets the same list).

    The non-personalised baseline every top-N evaluation is read against
    (e.g. Cremonesi, Koren and Turrin, RecSys 2010, "TopPop"). Ties between
    items of equal count rank pessimistically under :mod:`rec_lib.metrics`.
    """

    def __init__(self, n_users: int, n_items: int):
        super().__init__()
        _check_sizes(n_users, n_items)
        self.n_users, self.n_items = n_users, n_items
        self.register_buffer("counts", torch.zeros(n_items))

    def fit(self, users, items) -> "Popularity":
        """Count each item's training interactions (repeated pairs count each time)."""
        _, items = _check_ids(users, items, self.n_users, self.n_items)
        counts = np.bincount(items, minlength=self.n_items).astype(np.float32)
        self.counts = torch.as_tensor(counts, device=self.counts.device)
        return self

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.counts[items.to(self.counts.device)]

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        return self.counts.unsqueeze(0).repeat(len(users), 1)


# ----------------------------------------------------------------------------- biased MF
class BiasedMF(MF):
    """MF with global, user and item biases; users unseen in training get the mean user.

    ``s(u, i) = b + b_u + b_i + p_u . q_i``. A user without training history
    (a *new user*) is scored with ``p_u = mean of the known users' vectors`` and
    ``b_u = 0``, so its ranking is a popularity-like prior (item biases plus the
    average taste) rather than the noise of an untrained random vector, which is
    what plain :class:`MF` gives. :meth:`fit` records the known users (those in
    the training interactions); :meth:`set_known_users` changes them. Before
    either, every user counts as known.

    Trained with BPR through :func:`rec_lib.models.fit_pairs` by default (BPR
    is pairwise within a user, so ``b`` and ``b_u`` receive no gradient and stay
    0; they matter for ``loss="bce"``). Rendle et al., UAI 2009 (BPR); Koren,
    Bell and Volinsky, IEEE Computer 2009 (biases).
    """

    def __init__(self, n_users: int, n_items: int, dim: int = 64, init_std: float = 0.1,
                 generator: torch.Generator | None = None):
        super().__init__(n_users, n_items, dim=dim, bias=True, init_std=init_std)
        if generator is not None:  # re-draw from the given generator (MF's init draws from torch's global one)
            nn.init.normal_(self.user.weight, std=init_std, generator=generator)
            nn.init.normal_(self.item.weight, std=init_std, generator=generator)
        self.global_bias = nn.Parameter(torch.zeros(()))
        self.register_buffer("known", torch.ones(n_users, dtype=torch.bool))

    def set_known_users(self, users_or_mask) -> "BiasedMF":
        """Mark the users seen in training: a boolean mask ``[n_users]`` or an array of user ids."""
        x = torch.as_tensor(np.asarray(users_or_mask.cpu() if isinstance(users_or_mask, torch.Tensor) else users_or_mask))
        if x.dtype == torch.bool:
            if x.shape != (self.n_users,):
                raise ValueError(f"a known-user mask must have shape ({self.n_users},), got {tuple(x.shape)}")
            mask = x.clone()
        else:
            ids = _ids(x)
            if len(ids) and (ids.min() < 0 or ids.max() >= self.n_users):
                raise ValueError(f"user ids must lie in [0, {self.n_users})")
            mask = torch.zeros(self.n_users, dtype=torch.bool)
            mask[torch.as_tensor(ids)] = True
        if not mask.any():
            raise ValueError("at least one user must be known (the new-user vector is their mean)")
        self.known = mask.to(self.known.device)
        return self

    def mean_user(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The vector and bias a new user gets: mean of the known users' vectors, and 0."""
        return self.user.weight[self.known].mean(0), torch.zeros((), device=self.known.device)

    def user_params(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(p_u [B, dim], b_u [B])`` with new users replaced by :meth:`mean_user`."""
        p, b = self.user(users), self.user_bias(users).squeeze(-1)
        known = self.known[users]
        if not bool(known.all()):
            mean_p, _ = self.mean_user()
            p = torch.where(known.unsqueeze(-1), p, mean_p)
            b = torch.where(known, b, torch.zeros_like(b))
        return p, b

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        p, b = self.user_params(users)
        q, bi = self.item(items), self.item_bias(items).squeeze(-1)
        if items.ndim == users.ndim + 1:
            return torch.einsum("bd,bkd->bk", p, q) + b.unsqueeze(-1) + bi + self.global_bias
        return (p * q).sum(-1) + b + bi + self.global_bias

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        p, b = self.user_params(users)
        return p @ self.item.weight.T + b.unsqueeze(-1) + self.item_bias.weight.T + self.global_bias

    def fit(self, users, items, seeds: Seeds, seen: SeenItems | None = None, loss: str = "bpr", epochs: int = 20,
            batch_size: int = 1024, lr: float = 1e-2, weight_decay: float = 0.0, n_neg: int = 1,
            device: torch.device | str = "cpu", desc: str = "BiasedMF") -> list[float]:
        """Train on the training interactions with :func:`rec_lib.models.fit_pairs`; returns the loss per epoch.

        Marks the users in ``users`` as known. ``seen`` (the items never drawn
        as negatives) defaults to the training pairs.
        """
        users, items = _check_ids(users, items, self.n_users, self.n_items)
        self.set_known_users(np.unique(users))
        if seen is None:
            seen = SeenItems.from_pairs(users, items, self.n_users, self.n_items)
        history = fit_pairs(self, users, items, seen, seeds, loss=loss, epochs=epochs, batch_size=batch_size, lr=lr,
                            weight_decay=weight_decay, n_neg=n_neg, device=device, desc=desc)
        self.eval()
        return history


# ----------------------------------------------------------------------------- item-item models
class _ItemItem(nn.Module):
    """Shared part of ItemKNN and EASE: a user's profile (binary row of X) times an item-item matrix."""

    def __init__(self, n_users: int, n_items: int):
        super().__init__()
        _check_sizes(n_users, n_items)
        self.n_users, self.n_items = n_users, n_items
        self.history = sp.csr_matrix((n_users, n_items), dtype=np.float32)

    def set_history(self, users, items) -> "_ItemItem":
        """Replace the profiles used for scoring (e.g. with interactions up to test time), keeping the fit.

        :meth:`fit` sets them to the training interactions. A user without
        history scores 0 on every item (so ranks last under pessimistic ties):
        these models cannot score a new user.
        """
        self.history = interaction_matrix(users, items, self.n_users, self.n_items)
        return self

    def _profiles(self, users: torch.Tensor) -> sp.csr_matrix:
        return self.history[_ids(users)]

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return _gather(self.score_all(users), users, items)


class ItemKNN(_ItemItem):
    """Item-based nearest neighbours with cosine similarity (Sarwar, Karypis, Konstan and Riedl, WWW 2001).

    On the binary training matrix ``X`` (users x items), the similarity of
    items ``i`` and ``j`` is ``s_ij = x_i . x_j / (||x_i|| ||x_j|| + shrink)``
    (cosine; ``shrink`` > 0 damps similarities resting on few common users),
    ``s_ii = 0``; for each item ``j`` only its ``k`` most similar items keep
    their similarity (top-k pruning, as in the ItemKNN of Ferrari Dacrema et
    al., RecSys 2019). The score of item ``j`` for user ``u`` is
    ``sum_{i in I_u} s_ij``, i.e. ``X_u W``.

    ``W`` is stored sparse (``k`` entries per column) and computed in blocks of
    columns, so memory stays ``O(n_items * (k + block))``. ``W`` and the
    profiles are SciPy matrices on the CPU (not in ``state_dict``); scores are
    moved to the device of ``users``.
    """

    def __init__(self, n_users: int, n_items: int, k: int = 100, shrink: float = 0.0):
        super().__init__(n_users, n_items)
        if int(k) != k or k < 1:
            raise ValueError(f"k must be a positive integer, got {k}")
        if not shrink >= 0:
            raise ValueError(f"shrink must be >= 0, got {shrink}")
        self.k, self.shrink = int(k), float(shrink)
        self.W = sp.csr_matrix((n_items, n_items), dtype=np.float32)

    def similarity(self, X: sp.spmatrix) -> sp.csr_matrix:
        """The pruned similarity ``W`` [n_items, n_items] (column ``j``: the neighbours of ``j``)."""
        X = sp.csr_matrix(X, dtype=np.float64)
        n = X.shape[1]
        norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=0)).ravel())
        XT = X.T.tocsr()
        Xc = X.tocsc()
        k = min(self.k, n - 1) if n > 1 else 0
        rows, cols, vals = [], [], []
        block = max(1, (1 << 22) // n)  # about 32 MB of float64 per block
        for s in range(0, n, block):
            j = np.arange(s, min(n, s + block))
            G = np.asarray((XT @ Xc[:, j]).todense())  # [n, b] co-occurrence counts
            S = G / (norms[:, None] * norms[None, j] + self.shrink + 1e-12)
            S[j, np.arange(len(j))] = 0.0
            if k == 0:
                continue
            top = np.argpartition(-S, k - 1, axis=0)[:k]
            v = np.take_along_axis(S, top, axis=0)
            keep = v > 0
            rows.append(top[keep])
            cols.append(np.broadcast_to(j[None, :], top.shape)[keep])
            vals.append(v[keep])
        if not rows:
            return sp.csr_matrix((n, n), dtype=np.float32)
        return sp.csr_matrix((np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(n, n))

    def fit(self, users, items) -> "ItemKNN":
        """Similarities from the training interactions; the profiles become those interactions."""
        self.set_history(users, items)
        self.W = self.similarity(self.history)
        return self

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        scores = np.asarray((self._profiles(users) @ self.W).todense(), dtype=np.float32)
        return torch.as_tensor(scores).to(users.device)


class EASE(_ItemItem):
    """EASE^R: Embarrassingly Shallow Autoencoder (Steck, WWW 2019), in closed form.

    With ``X`` the binary training matrix and ``P = (X^T X + lambda I)^{-1}``,
    the item-item weights are ``B = I - P diag(1 / diag(P))`` (Steck's eq. 8),
    which solves ``min_B ||X - X B||_F^2 + lambda ||B||_F^2`` subject to
    ``diag(B) = 0``. The score of user ``u`` is ``X_u B``. ``B`` is dense
    (``n_items^2`` floats: 11 MB for ML-100K); the inverse is taken in float64.
    Steck tuned ``lambda`` per dataset (200 to 1000 on his three); tune it on
    validation (:func:`tune_on_validation`).
    """

    def __init__(self, n_users: int, n_items: int, lam: float = 500.0):
        super().__init__(n_users, n_items)
        if not lam > 0:
            raise ValueError(f"lam must be > 0, got {lam}")
        self.lam = float(lam)
        self.register_buffer("B", torch.zeros(n_items, n_items))

    @staticmethod
    def weights(X: sp.spmatrix, lam: float) -> torch.Tensor:
        """``B = I - P diag(1 / diag(P))``, ``P = (X^T X + lam I)^-1``, as float64 [n_items, n_items]."""
        X = sp.csr_matrix(X, dtype=np.float64)
        G = torch.as_tensor(np.asarray((X.T @ X).todense()))
        G.diagonal().add_(lam)
        P = torch.cholesky_inverse(torch.linalg.cholesky(G))
        B = -P / P.diagonal().unsqueeze(0)
        B.diagonal().zero_()
        return B

    def fit(self, users, items) -> "EASE":
        """Weights from the training interactions; the profiles become those interactions."""
        self.set_history(users, items)
        self.B = self.weights(self.history, self.lam).to(torch.float32).to(self.B.device)
        return self

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        X_u = torch.as_tensor(np.asarray(self._profiles(users).todense(), dtype=np.float32), device=self.B.device)
        return (X_u @ self.B).to(users.device)


# ----------------------------------------------------------------------------- tuning
@dataclass
class TuneResult:
    """What :func:`tune_on_validation` found: the best point, its fitted model and the whole table."""

    params: dict[str, Any]
    model: Any
    score: float
    table: pd.DataFrame  # one row per grid point tried: its parameters and ``score``, in the order tried


def _grid_points(grid: Mapping[str, Sequence] | Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(grid, Mapping):
        names = list(grid)
        return [dict(zip(names, values)) for values in itertools.product(*(list(grid[n]) for n in names))]
    return [dict(p) for p in grid]


def tune_on_validation(
    make_model: Callable[..., Any],
    grid: Mapping[str, Sequence] | Iterable[Mapping[str, Any]],
    fit_fn: Callable[[Any], Any],
    score_fn: Callable[[Any], float],
    budget: int | None = None,
    seed: int = 0,
    maximize: bool = True,
) -> TuneResult:
    """Fit ``make_model(**point)`` for each grid point and keep the one with the best validation score.

    ``grid`` is ``{"name": [values, ...]}`` (all combinations, in order) or a
    list of parameter dicts; ``fit_fn(model)`` trains the model on the training
    data; ``score_fn(model) -> float`` computes the validation metric (higher
    is better unless ``maximize=False``). ``budget`` caps the number of points
    tried (a seeded random subset, kept in grid order), so a baseline can be
    given the same tuning budget as the paper's method. The first point wins a
    tie. Keep the test data out of ``score_fn``.

    Example::

        res = tune_on_validation(lambda lam: EASE(n_users, n_items, lam), {"lam": [50, 200, 500]},
                                 lambda m: m.fit(train.users, train.items),
                                 lambda m: recall_at_k(full_ranks(m.score_all, val.users, val.items), 10))
        res.params, res.score, res.table
    """
    points = _grid_points(grid)
    if not points:
        raise ValueError("the grid has no points")
    if budget is not None:
        if int(budget) != budget or budget < 1:
            raise ValueError(f"budget must be a positive integer, got {budget}")
        if budget < len(points):
            pick = np.sort(np.random.default_rng(seed).choice(len(points), size=int(budget), replace=False))
            points = [points[i] for i in pick]
    best = None
    rows = []
    for p in points:
        model = make_model(**p)
        fit_fn(model)
        score = float(score_fn(model))
        if not np.isfinite(score):
            raise ValueError(f"score_fn returned {score} at {p}")
        rows.append({**p, "score": score})
        if best is None or (score > best[2] if maximize else score < best[2]):
            best = (p, model, score)
    return TuneResult(params=best[0], model=best[1], score=best[2], table=pd.DataFrame(rows))
