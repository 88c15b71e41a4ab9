"""The chapter's experiments as functions: problems, training grids, gradient checks, index recall, OPE.

The notebook ``fast_offline_policy`` calls these with its settings; each
returns tidy DataFrames that the chapter plots and records in its ledger.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from rec_lib.data import drop_repeats, load
from rec_lib.utils import resolve_device
from rec_lib.policy_learning.chapter import SYNTHETIC, PolicySettings
from rec_lib.policy_learning.estimators import SNIS, ExactGradient, FastReinforce, Reinforce, estimator_gradient
from rec_lib.policy_learning.index import ExactIndex, HNSWIndex, topk_recall
from rec_lib.policy_learning.policy import SoftmaxPolicy, exact_topk
from rec_lib.policy_learning.protocol import SessionProblem, argmax_reward, session_completion, synthetic_session_data, train_policy
from rec_lib.policy_learning.rewards import DRReward, IPSReward, LinearRewardModel, logged_bandit, policy_value

__all__ = ["configure_threads", "load_problem", "build_index", "make_estimator", "Runner", "equal_time", "gradient_check",
           "recall_vs_ef", "off_policy_check", "KINDS"]

KINDS = ("reinforce", "reinforce-opt", "uniform", "mixture", "mixture-exact", "mixture-cached")


def configure_threads(n: int) -> int:
    """Use ``n`` threads in torch and FAISS (0 = all cores); returns the number used."""
    import faiss

    from rec_lib.utils import set_threads

    used = set_threads(n or None)
    faiss.omp_set_num_threads(used)
    return used


def load_problem(name: str, settings: PolicySettings, dim: int | None = None) -> SessionProblem:
    """The session-completion task on a registry dataset (``rec_lib.data.load``) or on ``"synthetic"`` sessions."""
    dim = dim or settings.dim
    if name == SYNTHETIC:
        sessions, beta = synthetic_session_data(settings.synthetic_items, settings.synthetic_users, dim, settings.seed)
        return session_completion(sessions, dim, settings.seed, settings.min_interactions, beta=beta,
                                  fractions=tuple(settings.synthetic_fractions),
                                  name=f"synthetic ({settings.synthetic_items:,} items)")
    data = drop_repeats(load(name))
    return session_completion(data, dim, settings.seed, settings.min_interactions, name=name,
                              device=resolve_device(settings.device))


def build_index(problem: SessionProblem, settings: PolicySettings, **over) -> HNSWIndex:
    """The HNSW index of the problem's :math:`\\beta` with the settings' ``M``, ``efConstruction``, ``efSearch``."""
    kw = dict(M=settings.hnsw_m, ef_construction=settings.ef_construction, ef_search=settings.ef_search,
              build_threads=settings.threads)
    kw.update(over)
    return HNSWIndex(problem.beta, **kw)


def make_estimator(kind: str, S: int, epsilon: float, K: int, index=None, exact_index=None, refresh: int = 1):
    """One of :data:`KINDS` with its parameters."""
    if kind == "reinforce":
        return Reinforce(S)
    if kind == "reinforce-opt":
        return FastReinforce(S)
    if kind == "uniform":
        return SNIS(S, 1.0)
    if kind == "mixture":
        return SNIS(S, epsilon, K, index)
    if kind == "mixture-exact":
        return SNIS(S, epsilon, K, exact_index)
    if kind == "mixture-cached":
        return SNIS(S, epsilon, K, index, refresh_every=refresh)
    raise ValueError(f"unknown estimator kind {kind!r}; choose from {KINDS}")


@dataclass
class Runner:
    """Trains policies on one problem and remembers every run, so figures share runs instead of repeating them."""

    problem: SessionProblem
    settings: PolicySettings
    lr: float
    top_k: int
    index: HNSWIndex
    device: torch.device | str = "cpu"
    runs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.exact_index = ExactIndex(self.problem.beta)

    def run(self, kind: str, seed: int = 0, S: int | None = None, epsilon: float | None = None, K: int | None = None,
            refresh: int = 1, ef_search: int | None = None) -> dict:
        """Train one policy (cached by its parameters); returns ``{"history", "final"}``."""
        st = self.settings
        S = S or st.n_samples
        epsilon = st.epsilon if epsilon is None else epsilon
        K = K or self.top_k
        ef = ef_search or st.ef_search
        key = (kind, seed, S, epsilon if kind.startswith("mixture") else None,
               K if kind.startswith("mixture") else None, refresh if kind == "mixture-cached" else 1,
               ef if kind in ("mixture", "mixture-cached") else None)
        if key in self.runs:
            return self.runs[key]
        self.index.set_ef_search(ef)
        est = make_estimator(kind, S, epsilon, K, self.index, self.exact_index, refresh)
        res = train_policy(self.problem, est, st.epochs, self.lr, st.batch_size, seed=st.seed * 1000 + seed,
                           device=self.device, init=st.init, desc=f"{self.problem.name}: {kind}")
        self.index.set_ef_search(st.ef_search)
        from rec_lib.policy_learning.regime import argmax_hits, effective_support

        x_test, r_test = self.problem.contexts["test"].to(self.device), self.problem.rewards["test"].to(self.device)
        hit_true = argmax_hits(res.policy, x_test, r_test)
        hit_index = argmax_hits(res.policy, x_test, r_test, index=self.index)
        final = {"kind": kind, "seed": seed, "S": S, "epsilon": epsilon, "K": K, "refresh": refresh, "ef_search": ef,
                 "test_true": float(hit_true.mean()),
                 "test_index": float(hit_index.mean()),
                 "support": float(np.median(effective_support(res.policy, x_test))),
                 "train_final": float(res.history.train_reward.iloc[-1]),
                 "val_final": float(res.history.val_reward.iloc[-1]),
                 "step_ms": 1e3 * float(np.median(res.step_seconds)) if res.step_seconds else float("nan"),
                 "train_seconds": float(res.history.train_seconds.iloc[-1]),
                 "searched_share": res.searched / max(st.epochs * len(self.problem.contexts["train"]), 1)}
        self.runs[key] = {"history": res.history.assign(**{k: final[k] for k in ("kind", "seed", "S", "epsilon", "K")}),
                          "final": final, "policy": res.policy, "hits": (hit_true, hit_index)}
        return self.runs[key]

    def hits(self, runs: dict[str, dict]) -> pd.DataFrame:
        """Per test user hits of the runs in ``runs`` (label -> :meth:`run` kwargs, already trained or not):
        columns ``method``, ``seed``, ``user``, ``hit_exact``, ``hit_index``."""
        out = []
        for label, kw in runs.items():
            he, hi = self.run(**kw)["hits"]
            out.append(pd.DataFrame({"method": label.split("#")[0], "seed": kw.get("seed", 0),
                                     "user": np.arange(len(he)), "hit_exact": he, "hit_index": hi}))
        return pd.concat(out, ignore_index=True)

    def grid(self, runs: dict[str, dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``runs`` maps a label to :meth:`run` keyword arguments; returns (histories, finals) with a ``method`` column."""
        hist, fin = [], []
        for label, kw in runs.items():
            r = self.run(**kw)
            hist.append(r["history"].assign(method=label.split("#")[0]))
            fin.append({"method": label.split("#")[0], **r["final"]})
        return pd.concat(hist, ignore_index=True), pd.DataFrame(fin)


def equal_time(histories: pd.DataFrame, budget_method: str, methods: list[str] | None = None) -> pd.DataFrame:
    """Table 2: each method's validation reward at the last epoch that fits in the budget.

    The budget is the (mean over seeds) training time of ``budget_method``
    over all its epochs; per method: epochs that fit, their time and the
    mean ± std validation reward over seeds at that epoch.
    """
    mean = histories.groupby(["method", "epoch"], sort=False)[["train_seconds", "val_reward"]].mean().reset_index()
    if budget_method not in set(mean.method):
        raise ValueError(f"budget method {budget_method!r} is not among {sorted(set(mean.method))}")
    budget = float(mean[mean.method == budget_method].train_seconds.max())
    rows = []
    for m in methods or list(pd.unique(mean.method)):
        mm = mean[(mean.method == m) & (mean.train_seconds <= budget * (1 + 1e-9))]
        e = int(mm.epoch.max())
        at = histories[(histories.method == m) & (histories.epoch == e)].val_reward
        rows.append({"method": m, "epochs": e, "seconds": float(mm.train_seconds.max()),
                     "val_reward": float(at.mean()), "val_std": float(at.std(ddof=1)) if len(at) > 1 else 0.0,
                     "runs": len(at)})
    return pd.DataFrame(rows).set_index("method").assign(budget_s=budget)


def gradient_check(problem: SessionProblem, policy: SoftmaxPolicy, configs: list[dict], index, repeats: int,
                   batch: int = 32, seed: int = 0, device: torch.device | str = "cpu") -> pd.DataFrame:
    """Bias and variance of gradient estimators against the exact gradient (what the paper only asserts).

    For one fixed batch of training contexts, the exact gradient :math:`g`
    (dense sum over the catalogue) and ``repeats`` independent estimates
    :math:`\\hat g_r` per config (``dict(kind, S, epsilon, K)``). Columns:
    ``cos_mean`` = cos(mean of the estimates, g) and ``rel_bias`` =
    ``|mean - g| / |g|`` (the bias, up to Monte Carlo noise of the mean),
    ``cos_single`` = mean cos(g_r, g) and ``rel_err`` = mean ``|g_r - g| / |g|``
    (one estimate's error: bias and variance together).
    """
    gen_cpu = torch.Generator().manual_seed(seed)
    n = len(problem.contexts["train"])
    ctx = torch.randperm(n, generator=gen_cpu)[:batch].sort().values.to(device)
    x, reward = problem.contexts["train"].to(device)[ctx], problem.rewards["train"]
    batch_reward = _BatchReward(reward, ctx)
    local = torch.arange(len(ctx), device=device)
    g = estimator_gradient(ExactGradient(), policy, x, local, batch_reward)
    exact_index = ExactIndex(policy.beta)
    rows = []
    for c in configs:  # a loop over configurations and repeats, each estimate vectorised
        kind = c["kind"]
        S, eps, K = (c.get(k) for k in ("S", "epsilon", "K"))
        S = int(S) if S == S and S is not None else 1000  # NaN-safe: configs may come from a DataFrame
        eps = float(eps) if eps == eps and eps is not None else 0.8
        K = int(K) if K == K and K is not None else 256
        est = make_estimator(kind, S, eps, K, index, exact_index)
        gen = torch.Generator(device=device).manual_seed(seed + 1)
        est_g = torch.stack([estimator_gradient(est, policy, x, local, batch_reward, gen) for _ in range(repeats)])
        m = est_g.mean(0)
        cos = torch.nn.functional.cosine_similarity
        rows.append({**c, "cos_mean": float(cos(m, g, dim=0)), "rel_bias": float((m - g).norm() / g.norm()),
                     "cos_single": float(cos(est_g, g[None], dim=1).mean()),
                     "rel_err": float(((est_g - g).norm(dim=1) / g.norm()).mean())})
    return pd.DataFrame(rows)


class _BatchReward:
    """A reward restricted to a batch: local context ``b`` is ``ctx[b]`` of the parent."""

    def __init__(self, parent, ctx: torch.Tensor) -> None:
        self.parent, self.ctx = parent, ctx

    def __call__(self, local, actions):
        return self.parent(self.ctx[torch.as_tensor(local, device=self.ctx.device)], actions)

    def dense(self, local):
        return self.parent.dense(self.ctx[torch.as_tensor(local, device=self.ctx.device)].cpu())


def recall_vs_ef(index: HNSWIndex, beta: torch.Tensor, queries: torch.Tensor, K: int, ef_values,
                 batch: int = 32) -> pd.DataFrame:
    """Top-K recall of the HNSW index against exact search, and search time per batch, for each ``efSearch``."""
    exact = exact_topk(queries, beta, K)[1]
    rows, before = [], index.ef_search
    try:
        for ef in ef_values:
            index.set_ef_search(int(ef))
            t0 = time.perf_counter()
            approx = torch.cat([index.search(queries[s : s + batch], K)[1] for s in range(0, len(queries), batch)])
            dt = (time.perf_counter() - t0) / max(1, -(-len(queries) // batch))
            rows.append({"ef_search": int(ef), f"recall@{K}": topk_recall(approx, exact), "ms_per_batch": 1e3 * dt})
    finally:
        index.set_ef_search(before)
    return pd.DataFrame(rows).set_index("ef_search")


def off_policy_check(n_items: int = 2000, dim: int = 16, n_contexts: int = 4000, taus=(0.0, 0.01, 0.05),
                     target_temperature: float = 0.5, seed: int = 0, repeats: int = 20) -> pd.DataFrame:
    """Clipped IPS and DR estimates of a target policy's value (eq. 3-4) against its true value.

    Logged data from :func:`logged_bandit`; the target policy is
    :math:`\\mathrm{softmax}(x^\\top\\beta / T)`; the DR reward model is the
    true click model with noise in its user vectors. Over ``repeats`` logged
    datasets: mean and std of each estimate, and the true value.
    """
    from rec_lib.data import item_catalogue

    beta = torch.from_numpy(item_catalogue(n_items, dim, seed=seed).beta)
    rows = []
    for r in range(repeats):  # independent logged datasets
        g = torch.Generator().manual_seed(seed * 1000 + r)
        log = logged_bandit(beta, n_contexts, generator=g)
        probs = torch.softmax(log.x @ beta.T / target_temperature, 1)
        truth = policy_value(probs, log.ctr)
        noisy = LinearRewardModel(log.ctr.z + 0.5 * torch.randn(log.ctr.z.shape, generator=g) * log.ctr.z.std(),
                                  beta, log.ctr.bias)
        for tau in taus:
            ips = policy_value(probs, IPSReward(log.actions, log.propensities, log.rewards, n_items, tau))
            dr = policy_value(probs, DRReward(log.actions, log.propensities, log.rewards, n_items, noisy, tau))
            rows += [{"repeat": r, "estimator": "IPS", "tau": tau, "estimate": ips, "truth": truth},
                     {"repeat": r, "estimator": "DR", "tau": tau, "estimate": dr, "truth": truth}]
        rows.append({"repeat": r, "estimator": "model only", "tau": float("nan"),
                     "estimate": policy_value(probs, noisy), "truth": truth})
    return pd.DataFrame(rows)


def step_time_rounds(problem: SessionProblem, estimators: dict, batch_size: int, repeats: int = 5, calls: int = 5,
                     seed: int = 0) -> pd.DataFrame:
    """Per-round step times of each estimator on ``problem``'s training contexts, timed in rotation.

    Each timed entry is ``calls`` full training steps (estimator, backward,
    Adam); one row per (round, method) with ``seconds`` per step
    (:func:`rec_lib.policy_learning.scale.rotation_rounds`).
    """
    from rec_lib.policy_learning.bench import _step_fn
    from rec_lib.policy_learning.scale import rotation_rounds

    x, r = problem.contexts["train"], problem.rewards["train"]
    fns = {m: _step_fn(est, problem.beta, x, r, batch_size, "cpu", seed) for m, est in estimators.items()}
    return rotation_rounds(fns, repeats=repeats, warmup=1, calls=calls)


def equal_time_epochs(rounds: pd.DataFrame, fast: str, slow: str, epochs: int) -> tuple[int, float]:
    """Epochs ``slow`` gets in the time ``fast`` takes for ``epochs`` epochs, from rotation step times.

    Returns ``(epochs_slow, ratio)`` with ``ratio`` the geometric mean over
    rounds of time(slow) / time(fast); ``epochs_slow = floor(epochs / ratio)``
    (at least 1, at most ``epochs``).
    """
    w = rounds.pivot(index="round", columns="method", values="seconds")
    ratio = float(np.exp(np.mean(np.log(w[slow] / w[fast]))))
    return int(min(epochs, max(1, np.floor(epochs / ratio)))), ratio
