"""Gradient estimators of the offline objective (eq. 3-4), one interface.

Each estimator's ``loss(policy, x, ctx, reward, gen)`` returns a scalar
*surrogate* whose autograd gradient is minus the estimate of
:math:`\\nabla_\\theta \\hat R` averaged over the batch, so any torch optimiser
minimises it. ``x`` ``[B, L]`` are contexts, ``ctx`` ``[B]`` their ids for the
reward estimator, ``gen`` a ``torch.Generator`` on the device of ``x``.

:class:`ExactGradient`
    the sum over the whole catalogue (eq. 4 differentiated), ground truth for small P.
:class:`Reinforce`
    the paper's baseline: dense softmax over P, ``S`` samples from
    :math:`\\pi_\\theta`, autograd through :math:`\\log\\pi_\\theta` (eq. 6), with the
    leave-one-out baseline, i.e. eq. 7 estimated with samples from the policy.
:class:`FastReinforce`
    the same estimator, engineered: since the baseline terms sum to zero,
    :math:`\\sum_s c_s \\nabla\\log\\pi(a_s) = \\sum_s c_s \\nabla f(a_s)`, so the
    backward touches only the ``S`` sampled rows; the catalogue is scored in
    chunks without autograd, only to sample (no ``B x P`` matrix is kept).
:class:`SNIS`
    Algorithm 1: self-normalised importance sampling of the covariance
    gradient (eq. 9) under the mixture proposal :math:`q_{K,\\epsilon}`
    (stratified: ``round(S eps)`` uniform draws, the rest from :math:`\\kappa`);
    ``epsilon=1`` is the uniform proposal; the top-K comes from any index
    (:class:`~rec_lib.policy_learning.index.HNSWIndex` or the exact one).
"""

from __future__ import annotations

import math

import torch

from rec_lib.policy_learning.membership import RowMembership

__all__ = [
    "snis_weights",
    "covariance_loss",
    "stratified_counts",
    "mixture_log_q",
    "sample_mixture",
    "sample_softmax",
    "ExactGradient",
    "Reinforce",
    "FastReinforce",
    "SNIS",
    "estimator_gradient",
]


# ----------------------------------------------------------------- building blocks
def snis_weights(f: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """:math:`\\bar\\omega_s = \\omega_s / \\sum_{s'} \\omega_{s'}`, :math:`\\omega_s = e^{f(a_s)} / q(a_s)`, detached.

    ``f`` and ``log_q`` are ``[B, S]``; the weights of each row sum to 1. The
    normaliser :math:`Z_\\theta(x)` cancels, so it is never computed.
    """
    if f.shape != log_q.shape:
        raise ValueError(f"f and log_q must have one shape, got {tuple(f.shape)} and {tuple(log_q.shape)}")
    return torch.softmax(f.detach() - log_q, dim=-1)


def covariance_loss(f: torch.Tensor, weights: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Surrogate of the covariance gradient (eq. 9, Algorithm 1).

    With :math:`\\bar r = \\sum_s \\bar\\omega_s \\hat r_s`, the gradient of
    ``-mean_b sum_s w_s (r_s - r_bar) f_s`` is minus
    :math:`\\sum_s \\bar\\omega_s (\\hat r_s - \\bar r)(\\nabla f_s - \\overline{\\nabla f})`,
    because :math:`\\sum_s \\bar\\omega_s (\\hat r_s - \\bar r) = 0` removes the
    :math:`\\overline{\\nabla f}` term. ``f`` ``[B, S]`` carries the graph.
    """
    if not (f.shape == weights.shape == r.shape):
        raise ValueError(f"f, weights and r must share one shape, got {tuple(f.shape)}, {tuple(weights.shape)}, {tuple(r.shape)}")
    w = weights.detach()
    r = r.detach().to(f.dtype)
    r_bar = (w * r).sum(-1, keepdim=True)
    coef = w * (r - r_bar)
    return -(coef * f).sum(-1).mean()


def stratified_counts(S: int, epsilon: float) -> tuple[int, int]:
    """``(round(S * eps), S - round(S * eps))``: uniform draws and draws from :math:`\\kappa`."""
    if not isinstance(S, int) or S < 2:
        raise ValueError(f"S must be an integer >= 2 (a covariance needs two samples), got {S!r}")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must lie in [0, 1], got {epsilon}")
    n_u = int(round(S * epsilon))
    return n_u, S - n_u


def mixture_log_q(actions: torch.Tensor, topk_ids: torch.Tensor, kappa: torch.Tensor, epsilon: float,
                  n_items: int, lookup: RowMembership | None = None) -> torch.Tensor:
    """:math:`\\log q_{K,\\epsilon}(a|x)`: :math:`\\epsilon/P + (1-\\epsilon)\\kappa(a|x)` on the top-K, :math:`\\epsilon/P` off it.

    ``actions`` ``[B, S]``, ``topk_ids`` ``[B, K]`` (``-1`` marks an empty slot),
    ``kappa`` ``[B, K]`` the softmax of the scores over the top-K.
    """
    B, K = topk_ids.shape
    srt, order = torch.sort(topk_ids, dim=1)
    kap = torch.gather(kappa, 1, order).reshape(-1)
    rows = torch.arange(B, device=topk_ids.device).repeat_interleave(K)
    valid = srt.reshape(-1) >= 0
    pos = (lookup or RowMembership())(rows[valid], srt.reshape(-1)[valid], actions)
    k_val = torch.where(pos >= 0, kap[valid][pos.clamp(min=0)], torch.zeros((), dtype=kap.dtype, device=kap.device))
    return torch.log(epsilon / n_items + (1.0 - epsilon) * k_val)


def _kappa(f_top: torch.Tensor, topk_ids: torch.Tensor) -> torch.Tensor:
    return torch.softmax(f_top.masked_fill(topk_ids < 0, float("-inf")), dim=1)


def sample_mixture(topk_ids: torch.Tensor | None, f_top: torch.Tensor | None, S: int, epsilon: float, n_items: int,
                   gen: torch.Generator, lookup: RowMembership | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified draws from :math:`q_{K,\\epsilon}`; returns ``(actions [B, S], log q [B, S])``.

    ``round(S eps)`` actions uniform over the catalogue, the rest from
    :math:`\\kappa = \\mathrm{softmax}` of the scores ``f_top`` ``[B, K]`` of the
    top-K ``topk_ids``; the weights use the mixture density (every draw is
    weighted by :math:`q_{K,\\epsilon}`, the balance heuristic, valid because the
    counts match the mixture weights). ``epsilon = 1`` needs no top-K.
    """
    n_u, n_k = stratified_counts(S, epsilon)
    device = gen.device
    if topk_ids is None or f_top is None or topk_ids.shape != f_top.shape or topk_ids.ndim != 2:
        raise ValueError("sample_mixture needs topk_ids and f_top of one shape [B, K] (SNIS draws epsilon = 1 itself)")
    B = topk_ids.shape[0]
    kappa = _kappa(f_top, topk_ids)
    parts = []
    if n_u:
        parts.append(torch.randint(0, n_items, (B, n_u), generator=gen, device=device))
    if n_k:
        pos = torch.multinomial(kappa, n_k, replacement=True, generator=gen)
        parts.append(torch.gather(topk_ids, 1, pos))
    actions = torch.cat(parts, 1) if len(parts) > 1 else parts[0]
    return actions, mixture_log_q(actions, topk_ids, kappa, epsilon, n_items, lookup)


def _scores_into(h: torch.Tensor, beta_chunk: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
    if beta_chunk.shape[0] == buf.shape[1]:
        return torch.mm(h, beta_chunk.T, out=buf)
    return h @ beta_chunk.T  # the last, shorter chunk


@torch.no_grad()
def sample_softmax(h: torch.Tensor, beta: torch.Tensor, S: int, gen: torch.Generator, chunk: int = 1 << 14) -> torch.Tensor:
    """``S`` draws with replacement from :math:`\\mathrm{softmax}(h^\\top\\beta)` per row, scoring in chunks.

    Pass 1 scores the catalogue chunk by chunk and keeps only each chunk's
    log-mass; the chunk of every draw is sampled from those masses; pass 2
    rescores each chunk that received draws and inverts its CDF for them (one
    batched ``searchsorted``, rows padded to the largest count). Memory
    ``O(B * chunk)``, never ``O(B P)``.
    """
    B, P = h.shape[0], beta.shape[0]
    h = h.detach()
    starts = list(range(0, P, chunk))
    lz = torch.empty(B, len(starts), device=h.device, dtype=h.dtype)
    buf = torch.empty(B, min(chunk, P), device=h.device, dtype=h.dtype)  # one reusable chunk of scores
    for c, s in enumerate(starts):  # pass 1: log-mass of each chunk (in place: no allocation per chunk)
        sc = _scores_into(h, beta[s : s + chunk], buf)
        m = sc.amax(1, keepdim=True)
        lz[:, c] = sc.sub_(m).exp_().sum(1).log_().add_(m[:, 0])
    chunk_of = torch.multinomial(torch.softmax(lz, 1), S, replacement=True, generator=gen)
    chunk_of, order = torch.sort(chunk_of, dim=1)  # draws of a row grouped by chunk
    u = torch.rand(B, S, generator=gen, device=h.device, dtype=h.dtype)
    counts = torch.zeros(B, len(starts), dtype=torch.long, device=h.device)
    counts.scatter_add_(1, chunk_of, torch.ones_like(chunk_of))
    first = torch.cumsum(counts, 1) - counts  # position of each chunk's first draw in the sorted row
    out = torch.empty(B, S, dtype=torch.long, device=h.device)
    col = torch.arange(S, device=h.device)
    for c in torch.nonzero(counts.sum(0)).flatten().tolist():  # pass 2: chunks that received draws
        s, m = starts[c], int(counts[:, c].max())
        sc = _scores_into(h, beta[s : s + chunk], buf)
        cdf = torch.cumsum(sc.sub_(lz[:, c : c + 1]).exp_(), dim=1)
        cdf = cdf / cdf[:, -1:]
        slot = (first[:, c : c + 1] + col[:m]).clamp_(max=S - 1)  # [B, m] positions in the sorted row
        valid = col[:m] < counts[:, c : c + 1]
        pos = torch.searchsorted(cdf, torch.gather(u, 1, slot).contiguous()).clamp_(max=sc.shape[1] - 1)
        rows = torch.arange(B, device=h.device)[:, None].expand_as(slot)
        out[rows[valid], slot[valid]] = s + pos[valid]
    return torch.empty_like(out).scatter_(1, order, out)  # back to the order of the draws


def _loo_coefficients(r: torch.Tensor) -> torch.Tensor:
    """:math:`(r_s - \\bar r_{-s}) / S`: Reinforce with the leave-one-out baseline (unbiased)."""
    S = r.shape[-1]
    loo = (r.sum(-1, keepdim=True) - r) / (S - 1)
    return (r - loo) / S


def _rewards(reward, ctx, actions, device) -> torch.Tensor:
    return reward(ctx, actions).to(device=device, dtype=torch.float32)


# ---------------------------------------------------------------------- estimators
class ExactGradient:
    """:math:`\\nabla_\\theta \\frac1B\\sum_b \\sum_a \\pi_\\theta(a|x_b) \\hat r(a, x_b)` (eq. 4), by a dense sum."""

    name = "exact"

    def loss(self, policy, x, ctx, reward, gen=None) -> torch.Tensor:
        probs = torch.softmax(policy.scores(policy.user_embedding(x)), dim=1)
        r = reward.dense(ctx).to(device=probs.device, dtype=probs.dtype)
        return -(probs * r).sum(1).mean()


class Reinforce:
    """The paper's Reinforce: dense softmax over the catalogue, ``S`` samples, autograd through :math:`\\log\\pi`.

    :math:`\\hat g = \\frac1S\\sum_s (\\hat r_s - \\bar r_{-s}) \\nabla_\\theta \\log \\pi_\\theta(a_s|x)`,
    :math:`a_s \\sim \\pi_\\theta`: eq. 6 with a leave-one-out baseline, which is
    the covariance gradient (eq. 7) estimated with samples from the policy.
    Forward and backward are ``O(B P L)`` and hold ``B x P`` matrices.
    """

    name = "reinforce"

    def __init__(self, S: int = 1000) -> None:
        stratified_counts(S, 0.0)
        self.S = S

    def loss(self, policy, x, ctx, reward, gen) -> torch.Tensor:
        logp = torch.log_softmax(policy.scores(policy.user_embedding(x)), dim=1)
        a = torch.multinomial(logp.detach().exp(), self.S, replacement=True, generator=gen)
        coef = _loo_coefficients(_rewards(reward, ctx, a, logp.device))
        return -(coef * torch.gather(logp, 1, a)).sum(1).mean()


class FastReinforce:
    """The same estimator as :class:`Reinforce`, engineered (module docstring).

    ``sample_softmax`` draws :math:`a_s \\sim \\pi_\\theta` in two chunked passes
    without autograd; the surrogate ``-mean sum_s c_s f(a_s)`` has the
    Reinforce gradient because :math:`\\sum_s c_s = 0` cancels the
    :math:`\\mathbb{E}_\\pi[\\nabla f]` term of :math:`\\nabla \\log\\pi`.
    """

    name = "reinforce-opt"

    def __init__(self, S: int = 1000, chunk: int = 1 << 14) -> None:
        stratified_counts(S, 0.0)
        self.S, self.chunk = S, int(chunk)

    def loss(self, policy, x, ctx, reward, gen) -> torch.Tensor:
        h = policy.user_embedding(x)
        a = sample_softmax(h, policy.beta, self.S, gen, self.chunk)
        coef = _loo_coefficients(_rewards(reward, ctx, a, h.device))
        return -(coef * policy.scores(h, a)).sum(1).mean()


class SNIS:
    """Algorithm 1: the covariance gradient by self-normalised importance sampling under :math:`q_{K,\\epsilon}`.

    Parameters
    ----------
    S:
        number of Monte Carlo samples (>= 2).
    epsilon:
        uniform share of the mixture; ``1`` is the uniform proposal (no index needed).
    K:
        size of the top-K set :math:`\\alpha_K(x)` the index returns.
    index:
        anything with ``search(h, K) -> (scores, ids)``: one batched search per step.
    refresh_every:
        ``1`` (Algorithm 1 as written): search the top-K of every context at
        every step. ``R > 1``: keep each context's top-K set and search it
        again only on every ``R``-th visit of that context (every ``R`` epochs
        in training). The estimator stays valid: :math:`\\kappa` and
        :math:`q_{K,\\epsilon}` are computed with the *current* scores on the
        set actually used, so only the closeness of the proposal to
        :math:`\\pi_\\theta` suffers; the index cost per step drops by ``R``.
    """

    def __init__(self, S: int = 1000, epsilon: float = 0.8, K: int = 256, index=None, refresh_every: int = 1) -> None:
        n_u, n_k = stratified_counts(S, epsilon)
        if n_k and index is None:
            raise ValueError(f"epsilon={epsilon} < 1 needs an index for the top-K (HNSWIndex or ExactIndex)")
        if n_k and (not isinstance(K, int) or K < 1):
            raise ValueError(f"K must be a positive integer, got {K!r}")
        if not isinstance(refresh_every, int) or refresh_every < 1:
            raise ValueError(f"refresh_every must be a positive integer, got {refresh_every!r}")
        self.S, self.epsilon, self.K, self.index, self.refresh_every = S, float(epsilon), int(K), index, refresh_every
        self.name = "uniform" if n_k == 0 else f"mixture(eps={epsilon:g})"
        self.searched = 0  # contexts searched so far (for the cost accounting)
        self._lookup = RowMembership()
        self.reset()

    def reset(self) -> None:
        """Forget the cached top-K sets."""
        self._ids = torch.empty(0, self.K, dtype=torch.long)
        self._age = torch.empty(0, dtype=torch.long)

    def _grow(self, n: int) -> None:
        if n > len(self._age):
            size = max(n, 2 * len(self._age))
            ids = torch.full((size, self.K), -1, dtype=torch.long)
            ids[: len(self._age)] = self._ids
            age = torch.full((size,), -1, dtype=torch.long)
            age[: len(self._age)] = self._age
            self._ids, self._age = ids, age

    def topk(self, h: torch.Tensor, ctx: torch.Tensor | None = None) -> torch.Tensor:
        """The top-K ids ``[B, K]`` of the queries ``h``: searched now, or cached per context (``refresh_every``)."""
        if self.refresh_every == 1 or ctx is None:
            self.searched += h.shape[0]
            return self.index.search(h.detach(), self.K)[1].to(h.device)
        ctx = torch.as_tensor(ctx).long().cpu()
        self._grow(int(ctx.max()) + 1)
        stale = (self._age[ctx] < 0) | (self._age[ctx] >= self.refresh_every)
        if bool(stale.any()):
            rows = torch.nonzero(stale).flatten()
            self._ids[ctx[rows]] = self.index.search(h.detach()[rows.to(h.device)], self.K)[1].cpu().long()
            self._age[ctx[rows]] = 0
            self.searched += len(rows)
        self._age[ctx] += 1
        return self._ids[ctx].to(h.device)

    def sample(self, policy, h: torch.Tensor, gen: torch.Generator, ctx=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions ``[B, S]`` from :math:`q_{K,\\epsilon}(\\cdot|x)` and their ``log q``."""
        P = policy.n_items
        n_u, n_k = stratified_counts(self.S, self.epsilon)
        if n_k == 0:
            a = torch.randint(0, P, (h.shape[0], self.S), generator=gen, device=h.device)
            return a, torch.full(a.shape, -math.log(P), device=h.device)
        with torch.no_grad():
            ids = self.topk(h, ctx)
            f_top = policy.scores(h.detach(), ids.clamp(min=0))
        return sample_mixture(ids, f_top, self.S, self.epsilon, P, gen, self._lookup)

    def loss(self, policy, x, ctx, reward, gen) -> torch.Tensor:
        h = policy.user_embedding(x)
        a, log_q = self.sample(policy, h, gen, ctx)
        f = policy.scores(h, a)
        w = snis_weights(f, log_q)
        return covariance_loss(f, w, _rewards(reward, ctx, a, h.device))


def estimator_gradient(estimator, policy, x, ctx, reward, gen=None) -> torch.Tensor:
    """The estimate of :math:`\\nabla_\\theta \\hat R` (flattened over the policy's parameters) for one batch."""
    policy.zero_grad(set_to_none=True)
    estimator.loss(policy, x, ctx, reward, gen).backward()
    grads = [-(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in policy.parameters()]
    policy.zero_grad(set_to_none=True)
    return torch.cat(grads)
