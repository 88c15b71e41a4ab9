"""Reward estimators :math:`\\hat r(a, x_i)` plugged into the offline objective (eq. 3-4).

Every estimator answers two questions, vectorised over contexts and actions:

- ``reward(ctx [B], actions [B, S]) -> [B, S]``: :math:`\\hat r(a_s, x_{ctx})`;
- ``reward.dense(ctx [B]) -> [B, P]``: the reward of every action (small
  catalogues: the exact gradient and brute-force checks).

Estimators here:

:class:`SessionReward`
    session completion, :math:`\\hat r(a, X) = \\mathbb{1}[a \\in Y]` (section 5).
:class:`IPSReward`
    the clipped IPS / Horvitz-Thompson estimator (section 1):
    :math:`\\hat r(a, x_i) = r_i / \\max(\\tau, p_i)` if :math:`a = a_i`, else 0.
:class:`DRReward`
    clipped doubly robust (section 1): :math:`r_M(a, x_i)` plus, at the logged
    action, :math:`(r_i - r_M(a_i, x_i)) / \\max(\\tau, p_i)`.

:func:`logged_bandit` draws logged bandit feedback with known propensities
from a synthetic environment, and :func:`policy_value` evaluates eq. 4 by a
brute-force sum over the catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rec_lib.data.schema import Interactions
from rec_lib.policy_learning.membership import RowMembership

__all__ = ["SessionReward", "IPSReward", "DRReward", "LinearRewardModel", "LoggedBandit", "logged_bandit",
           "policy_value"]


def _long(x, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.long, device=device)


class SessionReward:
    """:math:`\\hat r(a, X_i) = \\mathbb{1}[a \\in Y_i]` for contexts ``0..N-1``.

    Stores the pairs ``(i, a)``, ``a`` in ``Y_i``, as sorted keys ``i * P + a``;
    a batch of lookups is one ``searchsorted`` (no loop over contexts or samples).
    """

    def __init__(self, indptr: np.ndarray, items: np.ndarray, n_items: int, device: torch.device | str = "cpu") -> None:
        indptr, items = np.asarray(indptr, np.int64), np.asarray(items, np.int64)
        if indptr.ndim != 1 or len(indptr) < 2 or indptr[0] != 0 or (np.diff(indptr) < 0).any() or indptr[-1] != len(items):
            raise ValueError("indptr must start at 0, be non-decreasing and end at len(items) (CSR layout)")
        if len(items) and (items.min() < 0 or items.max() >= n_items):
            raise ValueError(f"reward items must lie in [0, {n_items})")
        self.n_items, self.n_contexts = int(n_items), len(indptr) - 1
        rows = np.repeat(np.arange(self.n_contexts), np.diff(indptr))
        keys = np.unique(rows * self.n_items + items)
        self.indptr = indptr
        self.keys = torch.as_tensor(keys, device=device)
        self.device = torch.device(device)
        self._indptr_t = torch.as_tensor(indptr, device=device)
        self._lookup = RowMembership()

    @classmethod
    def from_interactions(cls, Y: Interactions, users: np.ndarray, device: torch.device | str = "cpu") -> "SessionReward":
        """Context ``i`` is user ``users[i]``; its reward set is that user's items in ``Y``."""
        users = np.asarray(users, np.int64)
        pos = np.full(Y.n_users, -1, np.int64)
        pos[users] = np.arange(len(users))
        ctx = pos[Y.users]
        keep = ctx >= 0
        ctx, items = ctx[keep], Y.items[keep]
        order = np.lexsort((items, ctx))
        indptr = np.concatenate([[0], np.cumsum(np.bincount(ctx, minlength=len(users)))])
        return cls(indptr, items[order], Y.n_items, device)

    def to(self, device) -> "SessionReward":
        out = object.__new__(SessionReward)
        out.__dict__.update(self.__dict__, keys=self.keys.to(device), device=torch.device(device),
                            _indptr_t=self._indptr_t.to(device), _lookup=RowMembership())
        return out

    def _members(self, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(rows, items)`` of the reward sets of ``ctx`` (row ``b`` = position in ``ctx``), sorted."""
        lo, hi = self._indptr_t[ctx], self._indptr_t[ctx + 1]
        n = hi - lo
        start = torch.repeat_interleave(lo - (torch.cumsum(n, 0) - n), n)
        keys = self.keys[torch.arange(int(n.sum()), device=self.device) + start]
        rows = torch.repeat_interleave(torch.arange(len(ctx), device=self.device), n)
        return rows, keys - torch.repeat_interleave(ctx, n) * self.n_items

    def __call__(self, ctx: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``[B, S]`` rewards :math:`\\mathbb{1}[a \\in Y_{ctx}]` of ``actions`` ``[B, S]``."""
        ctx, actions = _long(ctx, self.device), _long(actions, self.device)
        if actions.ndim != 2 or actions.shape[0] != len(ctx):
            raise ValueError(f"actions must be [len(ctx), S], got {tuple(actions.shape)} for {len(ctx)} contexts")
        if len(ctx) and (int(ctx.min()) < 0 or int(ctx.max()) >= self.n_contexts):
            raise IndexError(f"context ids must lie in [0, {self.n_contexts})")
        rows, items = self._members(ctx)
        return (self._lookup(rows, items, actions) >= 0).float()

    def dense(self, ctx: torch.Tensor) -> torch.Tensor:
        """``[B, P]`` 0/1 matrix of the reward sets of ``ctx``."""
        ctx = _long(ctx, "cpu").numpy()
        lo, hi = self.indptr[ctx], self.indptr[ctx + 1]
        n = hi - lo
        rows = np.repeat(np.arange(len(ctx)), n)
        idx = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + np.repeat(lo, n)
        keys = self.keys.cpu().numpy()
        out = torch.zeros(len(ctx), self.n_items, device=self.device)
        out[torch.as_tensor(rows, device=self.device), torch.as_tensor(keys[idx] % self.n_items, device=self.device)] = 1.0
        return out

    def sizes(self) -> np.ndarray:
        """``|Y_i|`` for every context."""
        return np.diff(self.indptr)


class LinearRewardModel:
    """A reward model :math:`r_M(a, x_i) = \\sigma(z_i^\\top \\beta_a + b)` for the doubly robust estimator."""

    def __init__(self, z: torch.Tensor, beta: torch.Tensor, bias: float = 0.0) -> None:
        self.z, self.beta, self.bias = torch.as_tensor(z).float(), torch.as_tensor(beta).float(), float(bias)
        if self.z.shape[1] != self.beta.shape[1]:
            raise ValueError(f"z has dimension {self.z.shape[1]} but beta {self.beta.shape[1]}")

    def __call__(self, ctx: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        ctx, actions = _long(ctx, self.z.device), _long(actions, self.z.device)
        return torch.sigmoid(torch.einsum("bl,bsl->bs", self.z[ctx], self.beta[actions]) + self.bias)

    def dense(self, ctx: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.z[_long(ctx, self.z.device)] @ self.beta.T + self.bias)


def _check_logged(actions, propensities, rewards, n_items: int, tau: float):
    actions = _long(actions, "cpu")
    propensities = torch.as_tensor(np.asarray(propensities), dtype=torch.float32)
    rewards = torch.as_tensor(np.asarray(rewards), dtype=torch.float32)
    if not (actions.shape == propensities.shape == rewards.shape) or actions.ndim != 1:
        raise ValueError("actions, propensities and rewards must be 1-D arrays of one length (one per context)")
    if len(actions) and (actions.min() < 0 or actions.max() >= n_items):
        raise ValueError(f"logged actions must lie in [0, {n_items})")
    if ((propensities <= 0) | (propensities > 1)).any():
        raise ValueError("propensities must lie in (0, 1]; a zero propensity makes IPS undefined")
    if not 0 <= tau <= 1:
        raise ValueError(f"the clipping factor tau must lie in [0, 1], got {tau}")
    return actions, propensities, rewards


class IPSReward:
    """Clipped IPS: :math:`\\hat r^\\tau_{IPS}(a, x_i) = \\mathbb{1}[a = a_i]\\, r_i / \\max(\\tau, p_i)` (section 1).

    ``tau = 0`` is plain IPS (unbiased when the logging propensities are exact).
    """

    def __init__(self, actions, propensities, rewards, n_items: int, tau: float = 0.0) -> None:
        self.actions, self.propensities, self.rewards = _check_logged(actions, propensities, rewards, n_items, tau)
        self.n_items, self.n_contexts, self.tau = int(n_items), len(self.actions), float(tau)
        self.weight = self.rewards / torch.clamp(self.propensities, min=self.tau)

    def __call__(self, ctx: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        ctx, actions = _long(ctx, "cpu"), _long(actions, "cpu")
        hit = actions == self.actions[ctx].unsqueeze(1)
        return hit.float() * self.weight[ctx].unsqueeze(1)

    def dense(self, ctx: torch.Tensor) -> torch.Tensor:
        ctx = _long(ctx, "cpu")
        out = torch.zeros(len(ctx), self.n_items)
        out[torch.arange(len(ctx)), self.actions[ctx]] = self.weight[ctx]
        return out


class DRReward:
    """Clipped doubly robust: :math:`r_M(a, x_i) + \\mathbb{1}[a = a_i] (r_i - r_M(a_i, x_i)) / \\max(\\tau, p_i)`.

    ``model`` is a reward model with ``model(ctx, actions)`` and
    ``model.dense(ctx)`` (e.g. :class:`LinearRewardModel`).
    """

    def __init__(self, actions, propensities, rewards, n_items: int, model, tau: float = 0.0) -> None:
        self.actions, self.propensities, self.rewards = _check_logged(actions, propensities, rewards, n_items, tau)
        self.n_items, self.n_contexts, self.tau, self.model = int(n_items), len(self.actions), float(tau), model
        ctx = torch.arange(self.n_contexts)
        at_logged = model(ctx, self.actions.unsqueeze(1))[:, 0].float()
        self.correction = (self.rewards - at_logged) / torch.clamp(self.propensities, min=self.tau)

    def __call__(self, ctx: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        ctx, actions = _long(ctx, "cpu"), _long(actions, "cpu")
        hit = (actions == self.actions[ctx].unsqueeze(1)).float()
        return self.model(ctx, actions).float() + hit * self.correction[ctx].unsqueeze(1)

    def dense(self, ctx: torch.Tensor) -> torch.Tensor:
        ctx = _long(ctx, "cpu")
        out = self.model.dense(ctx).float().clone()
        out[torch.arange(len(ctx)), self.actions[ctx]] += self.correction[ctx]
        return out


@dataclass
class LoggedBandit:
    """Logged bandit feedback :math:`\\{x_i, a_i, p_i, r_i\\}` from a known environment.

    ``ctr`` is the true expected reward :math:`\\rho(a, x_i)` as a
    :class:`LinearRewardModel`, so any policy's true value is computable.
    """

    x: torch.Tensor
    actions: torch.Tensor
    propensities: torch.Tensor
    rewards: torch.Tensor
    ctr: LinearRewardModel
    logging_logits: torch.Tensor

    def __len__(self) -> int:
        return len(self.actions)


def logged_bandit(beta, n_contexts: int, logging_temperature: float = 1.0, ctr_scale: float = 4.0,
                  ctr_bias: float = -4.0, context_noise: float = 0.5, generator: torch.Generator | None = None) -> LoggedBandit:
    """Draw logged feedback: a logging policy :math:`\\pi_0 = \\mathrm{softmax}(z^\\top\\beta/T)` acts, a Bernoulli reward follows.

    Each context has a hidden taste :math:`z_i` (a random mix of item
    embeddings); the true click probability is
    :math:`\\rho(a, x_i) = \\sigma(\\texttt{ctr\\_scale}\\, z_i^\\top \\beta_a + \\texttt{ctr\\_bias})`;
    the logging policy sees :math:`z_i` through a noisy copy, the learner sees
    :math:`x_i` = :math:`z_i` plus ``context_noise`` noise. Dense over the
    catalogue: for catalogues up to about :math:`10^4` items.
    """
    beta = torch.as_tensor(np.asarray(beta) if not isinstance(beta, torch.Tensor) else beta).float()
    P, L = beta.shape
    if n_contexts < 1 or logging_temperature <= 0:
        raise ValueError(f"need n_contexts >= 1 and logging_temperature > 0, got {n_contexts}, {logging_temperature}")
    g = generator or torch.Generator().manual_seed(0)
    mix = torch.randint(0, P, (n_contexts, 4), generator=g)
    z = beta[mix].mean(1)
    z = z / z.norm(dim=1, keepdim=True).clamp_min(1e-12) * beta.norm(dim=1).mean()
    ctr = LinearRewardModel(ctr_scale * z, beta, ctr_bias)
    z_log = z + 0.5 * context_noise * torch.randn(z.shape, generator=g) * z.norm(dim=1, keepdim=True) / np.sqrt(L)
    logits = (z_log @ beta.T) / logging_temperature
    probs = torch.softmax(logits, 1)
    actions = torch.multinomial(probs, 1, generator=g)[:, 0]
    prop = probs[torch.arange(n_contexts), actions]
    rho = ctr(torch.arange(n_contexts), actions.unsqueeze(1))[:, 0]
    rewards = (torch.rand(n_contexts, generator=g) < rho).float()
    x = z + context_noise * torch.randn(z.shape, generator=g) * z.norm(dim=1, keepdim=True) / np.sqrt(L)
    return LoggedBandit(x, actions, prop, rewards, ctr, logits)


def policy_value(probs: torch.Tensor, reward, ctx: torch.Tensor | None = None) -> float:
    """Eq. 4: :math:`\\frac{1}{N}\\sum_i \\sum_a \\pi(a|x_i)\\, \\hat r(a, x_i)` by a brute-force sum over the catalogue.

    ``probs`` ``[N, P]`` are the policy's probabilities of contexts ``ctx``
    (default ``0..N-1``); ``reward`` has a ``dense`` method.
    """
    probs = torch.as_tensor(probs).float()
    if probs.ndim != 2:
        raise ValueError(f"probs must be [N, P], got shape {tuple(probs.shape)}")
    ctx = torch.arange(probs.shape[0]) if ctx is None else _long(ctx, "cpu")
    r = reward.dense(ctx).to(probs.device).float()
    if r.shape != probs.shape:
        raise ValueError(f"reward.dense gives {tuple(r.shape)} but probs are {tuple(probs.shape)}")
    return float((probs * r).sum(1).mean())
