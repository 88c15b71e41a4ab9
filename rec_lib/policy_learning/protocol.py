"""The session-completion protocol of the paper's experiments (section 5), training and evaluation.

Each user's items are split 50/50 into an observed context :math:`X` and a
reward set :math:`Y`; users are split 80/10/10 into train, validation and
test; the item embeddings :math:`\\beta` are a rank-:math:`L` truncated SVD of
the training contexts; a user's context is the mean embedding of :math:`X`,
:math:`x = \\frac{1}{|X|}\\sum_{a \\in X} \\beta_a`; the reward of an action is
:math:`\\mathbb{1}[a \\in Y]`; a policy is scored by the reward of its greedy
action (eq. 5), found by exact search ("TRUE") or by the index ("INDEX").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from rec_lib.data import Interactions, catalogue_sessions, item_catalogue, min_user_interactions, split_user_items, split_users
from rec_lib.policy_learning.policy import SoftmaxPolicy
from rec_lib.policy_learning.rewards import SessionReward
from rec_lib.utils import progress

__all__ = ["SessionProblem", "svd_item_embeddings", "mean_contexts", "session_completion", "synthetic_session_data",
           "argmax_reward", "TrainResult", "train_policy"]

SPLITS = ("train", "val", "test")


@dataclass
class SessionProblem:
    """Contexts, rewards and fixed item embeddings of one session-completion task."""

    name: str
    beta: torch.Tensor
    contexts: dict[str, torch.Tensor]
    rewards: dict[str, SessionReward]
    users: dict[str, np.ndarray]
    info: dict = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return self.beta.shape[0]

    @property
    def dim(self) -> int:
        return self.beta.shape[1]

    def to(self, device) -> "SessionProblem":
        return SessionProblem(self.name, self.beta.to(device), {k: v.to(device) for k, v in self.contexts.items()},
                              {k: v.to(device) for k, v in self.rewards.items()}, self.users, dict(self.info))

    def summary(self) -> dict:
        return {"items": self.n_items, "dim": self.dim, **{f"{s} users": len(self.users[s]) for s in SPLITS},
                "mean |Y|": float(np.mean(self.rewards["train"].sizes()))}


def svd_item_embeddings(X: Interactions, dim: int, seed: int = 0, method: str = "auto", device="cpu") -> np.ndarray:
    """:math:`\\beta = V_L \\Sigma_L^{1/2}` from the rank-``dim`` truncated SVD of the binary user x item matrix of ``X``.

    Then :math:`\\beta\\beta^\\top = V_L\\Sigma_L V_L^\\top`, a low-rank item-item
    similarity. ``method``: ``"arpack"`` (scipy's ``svds``), ``"randomized"``
    (Halko et al.'s range finder with power iterations, in torch on
    ``device``: what the paper scale, :math:`L = 1000` on :math:`10^6` items,
    needs), or ``"auto"`` (ARPACK up to ``dim = 128``). Signs are fixed
    (largest entry of each component positive) so the result is deterministic.
    """
    m = X.matrix().astype(np.float64)
    if not 1 <= dim < min(m.shape):
        raise ValueError(f"the SVD dimension must be in [1, {min(m.shape) - 1}] for a {m.shape} matrix, got {dim}")
    if method not in ("auto", "arpack", "randomized"):
        raise ValueError(f"method must be 'auto', 'arpack' or 'randomized', got {method!r}")
    if method == "arpack" or (method == "auto" and dim <= 128):
        from scipy.sparse.linalg import svds

        v0 = np.random.default_rng(seed).standard_normal(min(m.shape))
        _, s, vt = svds(m, k=dim, v0=v0)
    else:
        s, vt = _randomized_svd(m, dim, seed, torch.device(device))
    order = np.argsort(-s)
    s, vt = s[order], vt[order]
    sign = np.sign(vt[np.arange(dim), np.abs(vt).argmax(1)])
    return (vt.T * sign * np.sqrt(np.maximum(s, 0.0))).astype(np.float32)


def _randomized_svd(m, k: int, seed: int, device: torch.device, oversample: int = 10, n_iter: int = 4):
    """Top-``k`` singular values and right singular vectors of a sparse matrix (randomized range finder)."""
    import warnings

    def sparse(mat):
        with warnings.catch_warnings():  # torch calls sparse CSR "beta"; the products used here are stable
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(torch.as_tensor(mat.indptr, dtype=torch.int64),
                                           torch.as_tensor(mat.indices, dtype=torch.int64), torch.as_tensor(mat.data),
                                           size=mat.shape, check_invariants=True).to(device)

    csr = m.tocsr().astype(np.float32)
    A, At = sparse(csr), sparse(csr.T.tocsr())
    g = torch.Generator().manual_seed(seed)
    omega = torch.randn(csr.shape[0], min(k + oversample, min(csr.shape)), generator=g).to(device)
    Q = torch.linalg.qr(At @ omega).Q  # [items, k + p]: the range of A^T
    for _ in range(n_iter):  # power iterations sharpen the spectrum
        Q = torch.linalg.qr(At @ torch.linalg.qr(A @ Q).Q).Q
    B = A @ Q  # [users, k + p]
    _, s, wt = torch.linalg.svd(B, full_matrices=False)
    vt = (Q @ wt.T).T[:k]
    return s[:k].cpu().double().numpy(), vt.cpu().double().numpy()


def mean_contexts(X: Interactions, users: np.ndarray, beta: torch.Tensor) -> torch.Tensor:
    """:math:`x_i = \\frac{1}{|X_i|}\\sum_{a \\in X_i}\\beta_a` for each user of ``users`` (zeros for an empty context)."""
    users = np.asarray(users, np.int64)
    pos = np.full(X.n_users, -1, np.int64)
    pos[users] = np.arange(len(users))
    row = pos[X.users]
    keep = row >= 0
    row_t = torch.as_tensor(row[keep])
    beta = torch.as_tensor(beta)
    sums = torch.zeros(len(users), beta.shape[1]).index_add_(0, row_t, beta[torch.as_tensor(X.items[keep])])
    n = torch.bincount(row_t, minlength=len(users)).clamp_(min=1).float()
    return sums / n[:, None]


def session_completion(data: Interactions, dim: int, seed: int = 0, min_interactions: int = 20,
                       fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), beta=None, name: str | None = None,
                       device="cpu") -> SessionProblem:
    """Build the session-completion task of section 5 from interactions.

    Keeps users with at least ``min_interactions`` interactions (reindexing
    items when ``beta`` is computed here), splits each user's items 50/50
    into context X and reward set Y, splits users by ``fractions``, computes
    :math:`\\beta` by :func:`svd_item_embeddings` of the training contexts
    (or uses the given ``beta`` ``[n_items, L]``, e.g. planted embeddings) and
    the mean-embedding contexts. ``device`` runs a randomized SVD there.
    """
    if beta is None:
        data = min_user_interactions(data, min_interactions)
    else:
        beta = np.asarray(beta, np.float32)
        if beta.shape[0] != data.n_items:
            raise ValueError(f"beta has {beta.shape[0]} rows but the data has {data.n_items} items")
        counts = np.bincount(data.users, minlength=data.n_users)
        data = data.subset(counts[data.users] >= min_interactions)
    if len(data) == 0:
        raise ValueError(f"no user has {min_interactions} or more interactions")
    X, Y = split_user_items(data, 0.5, seed=seed)
    parts = split_users(data, fractions, seed=seed)
    users = {s: np.unique(p.users) for s, p in zip(SPLITS, parts)}
    if beta is None:
        X_train = X.subset(np.isin(X.users, users["train"]))
        beta = svd_item_embeddings(X_train, dim, seed, device=device)
    beta_t = torch.from_numpy(np.ascontiguousarray(beta))
    contexts = {s: mean_contexts(X, users[s], beta_t) for s in SPLITS}
    rewards = {s: SessionReward.from_interactions(Y, users[s]) for s in SPLITS}
    return SessionProblem(name or data.name, beta_t, contexts, rewards, users,
                          {"interactions": len(data), "min_interactions": min_interactions})


def synthetic_session_data(n_items: int, n_users: int, dim: int, seed: int = 0,
                           length_range: tuple[int, int] = (20, 100)) -> tuple[Interactions, np.ndarray]:
    """Sessions drawn from a structured synthetic catalogue (:func:`rec_lib.data.item_catalogue`) and its embeddings."""
    cat = item_catalogue(n_items, dim, seed=seed)
    sessions = catalogue_sessions(cat, n_users, length_range=length_range, seed=seed)
    return sessions, cat.beta


@torch.no_grad()
def argmax_reward(policy: SoftmaxPolicy, x: torch.Tensor, reward: SessionReward, index=None, batch_size: int = 1024) -> float:
    """:math:`R_{test} = \\frac1N\\sum_j \\mathbb{1}[\\arg\\max_a f_\\theta(a, x_j) \\in Y_j]` (section 5).

    The argmax by exact search (``index=None``, "TRUE") or by ``index.search`` ("INDEX").
    """
    hits = []
    for s in range(0, len(x), batch_size):  # batches of contexts
        a = policy.argmax(x[s : s + batch_size], index=index)
        ctx = torch.arange(s, s + len(a), device=a.device)
        hits.append(reward(ctx, a.unsqueeze(1))[:, 0])
    return float(torch.cat(hits).mean()) if hits else float("nan")


@dataclass
class TrainResult:
    """Per-epoch history (epoch 0 = before training), the trained policy and step timings."""

    history: pd.DataFrame
    policy: SoftmaxPolicy
    step_seconds: list[float]
    searched: int = 0


def train_policy(problem: SessionProblem, estimator, epochs: int, lr: float, batch_size: int = 32, seed: int = 0,
                 device: torch.device | str = "cpu", eval_train: int = 2000, init: str = "identity",
                 desc: str = "", eval_every: int = 1) -> TrainResult:
    """Adam on the estimator's surrogate loss, mini-batches of contexts, reward curves after each epoch.

    ``history`` columns: ``epoch``, ``train_reward`` (greedy reward on a fixed
    sample of at most ``eval_train`` training contexts), ``val_reward``,
    ``train_seconds`` (cumulative wall time of the training steps only) and
    ``steps``; one row at epoch 0, then every ``eval_every`` epochs and after
    the last (the evaluation reads no random numbers: the trained policy does
    not depend on ``eval_every``). Deterministic for a given ``seed``.
    """
    if epochs < 0 or lr <= 0 or batch_size < 1 or eval_every < 1:
        raise ValueError(f"need epochs >= 0, lr > 0, batch_size >= 1 and eval_every >= 1, got {epochs}, {lr}, "
                         f"{batch_size}, {eval_every}")
    device = torch.device(device)
    cpu_gen = torch.Generator().manual_seed(seed)
    gen = torch.Generator(device=device).manual_seed(seed + 1)
    policy = SoftmaxPolicy(problem.beta, init=init, generator=cpu_gen).to(device)
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    x_train = problem.contexts["train"].to(device)
    r_train = problem.rewards["train"].to(device) if hasattr(problem.rewards["train"], "to") else problem.rewards["train"]
    x_val, r_val = problem.contexts["val"].to(device), problem.rewards["val"].to(device)
    n = len(x_train)
    sub = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 2))[: min(eval_train, n)].sort().values
    if hasattr(estimator, "reset"):
        estimator.reset()

    def evaluate(epoch: int, seconds: float, steps: int) -> dict:
        tr = _subset_reward(policy, x_train, r_train, sub.to(device))
        return {"epoch": epoch, "train_reward": tr, "val_reward": argmax_reward(policy, x_val, r_val),
                "train_seconds": seconds, "steps": steps}

    rows, step_times, total, steps = [evaluate(0, 0.0, 0)], [], 0.0, 0
    for epoch in progress(range(1, epochs + 1), desc=desc or getattr(estimator, "name", "train")):
        perm = torch.randperm(n, generator=cpu_gen).to(device)
        for s in range(0, n, batch_size):  # mini-batches
            ctx = perm[s : s + batch_size]
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            estimator.loss(policy, x_train[ctx], ctx, r_train, gen).backward()
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            step_times.append(dt)
            total += dt
            steps += 1
        if epoch % eval_every == 0 or epoch == epochs:
            rows.append(evaluate(epoch, total, steps))
    return TrainResult(pd.DataFrame(rows), policy, step_times, getattr(estimator, "searched", 0))


@torch.no_grad()
def _subset_reward(policy, x, reward, sub) -> float:
    a = policy.argmax(x[sub])
    return float(reward(sub, a.unsqueeze(1))[:, 0].mean())
