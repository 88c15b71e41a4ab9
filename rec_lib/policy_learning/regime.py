"""Where the uniform proposal breaks, and training in that regime with a control.

- :func:`gradient_map`: for policies :math:`h = c\\,x` of inverse temperature
  ``c`` on catalogues of several sizes, the exact per-context gradient of the
  reward with respect to the user embedding :math:`h`,
  :math:`g = \\mathrm{Cov}_{\\pi}[\\hat r, \\beta_a]`, against the SNIS estimates
  of the uniform proposal and of the mixture (exact top-K): cosine of one
  estimate and of the mean of the estimates with :math:`g`, the SNIS
  effective sample size :math:`1/\\sum_s\\bar\\omega_s^2`, and the policy's
  effective support :math:`1/\\sum_a \\pi_a^2`. The uniform proposal should
  fail once the support falls below :math:`P/S` (a uniform draw of ``S``
  items then rarely hits the policy's mass).
- :func:`regime_problem`: the session-completion task on a planted catalogue
  with chosen cluster count and spread and enough users for >= 1,000 test users.
- :func:`select_lr`: each configuration's learning rate, chosen on the
  validation users (never the test users) from a grid.
- :func:`compare_training`: trains each configuration with several seeds and
  returns per-user test hits (exact and index argmax), so claims are paired
  per test user.
- :func:`bias_statistics`: per-repeat U-statistics of the squared bias of a
  gradient estimator, separating bias from Monte Carlo variance.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from rec_lib.data import catalogue_sessions, item_catalogue
from rec_lib.policy_learning.estimators import estimator_gradient, ExactGradient
from rec_lib.policy_learning.index import HNSWIndex, topk_recall
from rec_lib.policy_learning.policy import exact_topk
from rec_lib.policy_learning.protocol import SessionProblem, session_completion, train_policy

__all__ = ["gradient_map", "regime_problem", "argmax_hits", "effective_support", "select_lr", "compare_training",
           "bias_statistics", "per_user_difference"]


def _map_problem(P: int, L: int, n_contexts: int, seed: int):
    cat = item_catalogue(P, L, seed=seed)
    sessions = catalogue_sessions(cat, n_contexts, length_range=(20, 60), seed=seed)
    beta = torch.from_numpy(cat.beta)
    users, items = sessions.users, sessions.items
    rng = np.random.default_rng(seed)
    half = rng.random(len(users)) < 0.5  # X: context half, Y: reward half
    x = torch.zeros(n_contexts, L)
    r = torch.zeros(n_contexts, P)
    for u in range(n_contexts):
        mine = users == u
        xi, yi = items[mine & half], items[mine & ~half]
        if len(xi) == 0:
            xi = items[mine][:1]
        x[u] = beta[torch.as_tensor(xi)].mean(0)
        r[u, torch.as_tensor(yi, dtype=torch.long)] = 1.0
    return beta, x, r


def _snis_h_grad(f_s, log_q, r_s, beta_s):
    """Per-context SNIS covariance gradient w.r.t. h: sum_s w_s (r_s - rbar) beta_s, and the ESS."""
    w = torch.softmax(f_s - log_q, dim=-1)
    rbar = (w * r_s).sum(-1, keepdim=True)
    g = torch.einsum("...s,...sl->...l", w * (r_s - rbar), beta_s)
    return g, 1.0 / (w**2).sum(-1)


def gradient_map(sizes=(3_000, 30_000, 300_000), temperatures=(1.0, 4.0, 16.0, 64.0), L: int = 16,
                 n_contexts: int = 32, S: int = 200, K: int = 128, epsilon: float = 0.8, repeats: int = 20,
                 seed: int = 0) -> pd.DataFrame:
    """One row per (P, c, context, proposal): cosines to the exact gradient, ESS, the policy's support.

    Columns: ``P``, ``c`` (inverse temperature: :math:`h = c\\,x`),
    ``context``, ``proposal`` (``uniform`` or ``mixture``), ``support``
    (:math:`1/\\sum_a\\pi_a^2`), ``rho`` = support ``* S / P`` (below 1: the
    policy's mass is smaller than what ``S`` uniform draws cover),
    ``cos_single`` (mean over repeats of cos(one estimate, g)), ``cos_mean``
    (cos of the mean of the ``repeats`` estimates with g: the bias),
    ``ess`` (mean SNIS effective sample size) and ``ess_share`` = ess / S.
    """
    rows = []
    gen = torch.Generator().manual_seed(seed)
    n_u = int(round(S * epsilon))
    for P in sizes:
        beta, x, r = _map_problem(int(P), L, n_contexts, seed)
        for c in temperatures:
            h = c * x
            f = h @ beta.T  # [B, P]
            pi = torch.softmax(f, 1)
            rbar = (pi * r).sum(1, keepdim=True)
            g = (pi * (r - rbar)) @ beta  # exact Cov_pi[r, beta_a]
            support = 1.0 / (pi**2).sum(1)
            f_top, top = torch.topk(f, K, dim=1)
            kappa = torch.softmax(f_top, 1)
            est = {"uniform": [], "mixture": []}
            ess = {"uniform": [], "mixture": []}
            rows_b = torch.arange(n_contexts)[:, None]
            for _ in range(repeats):
                a = torch.randint(0, P, (n_contexts, S), generator=gen)
                gu, eu = _snis_h_grad(f[rows_b, a], torch.full((n_contexts, S), -np.log(P)), r[rows_b, a], beta[a])
                est["uniform"].append(gu), ess["uniform"].append(eu)
                a_u = torch.randint(0, P, (n_contexts, n_u), generator=gen)
                a_k = top.gather(1, torch.multinomial(kappa, S - n_u, replacement=True, generator=gen))
                a = torch.cat([a_u, a_k], 1)
                # q = eps / P + (1 - eps) kappa(a) (kappa is 0 off the top-K)
                in_top = (a[:, :, None] == top[:, None, :])
                kap_a = (in_top.float() * kappa[:, None, :]).sum(-1)
                log_q = torch.log(epsilon / P + (1 - epsilon) * kap_a)
                gm, em = _snis_h_grad(f[rows_b, a], log_q, r[rows_b, a], beta[a])
                est["mixture"].append(gm), ess["mixture"].append(em)
            for prop in ("uniform", "mixture"):
                E = torch.stack(est[prop])  # [R, B, L]
                cos = torch.nn.functional.cosine_similarity
                cs = cos(E, g[None].expand_as(E), dim=-1).nan_to_num(0.0).mean(0)
                cm = cos(E.mean(0), g, dim=-1).nan_to_num(0.0)
                es = torch.stack(ess[prop]).mean(0)
                for b in range(n_contexts):
                    rows.append({"P": int(P), "c": float(c), "context": b, "proposal": prop,
                                 "support": float(support[b]), "rho": float(support[b]) * S / P,
                                 "cos_single": float(cs[b]), "cos_mean": float(cm[b]), "ess": float(es[b]),
                                 "ess_share": float(es[b]) / S, "g_norm": float(g[b].norm())})
        del beta, x, r
    out = pd.DataFrame(rows)
    return out[out.g_norm > 0].reset_index(drop=True)  # a context with no reward in Y has no gradient


def regime_problem(P: int, L: int, n_users: int, n_clusters: int | None = None, cluster_spread: float = 0.35,
                   fractions=(0.6, 0.1, 0.3), seed: int = 0, name: str | None = None,
                   length_range=(20, 60)) -> SessionProblem:
    """Session completion on a planted catalogue of ``P`` items with ``n_clusters`` clusters of spread ``cluster_spread``."""
    cat = item_catalogue(P, L, n_clusters=n_clusters, cluster_spread=cluster_spread, seed=seed)
    sessions = catalogue_sessions(cat, n_users, length_range=length_range, seed=seed)
    return session_completion(sessions, L, seed, length_range[0], fractions=fractions, beta=cat.beta,
                              name=name or f"P={P:,}, {n_clusters or 'sqrt(P)'} clusters, spread {cluster_spread:g}")


@torch.no_grad()
def argmax_hits(policy, x: torch.Tensor, reward, index=None, batch_size: int = 1024) -> np.ndarray:
    """Per-context hit ``1[argmax_a f(a, x) in Y]`` (exact search, or ``index.search``), as a float array."""
    hits = []
    for s in range(0, len(x), batch_size):
        a = policy.argmax(x[s : s + batch_size], index=index)
        ctx = torch.arange(s, s + len(a), device=a.device)
        hits.append(reward(ctx, a.unsqueeze(1))[:, 0].cpu())
    return torch.cat(hits).numpy().astype(float)


@torch.no_grad()
def effective_support(policy, x: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Per context, the policy's effective support :math:`1/\\sum_a \\pi_\\theta(a|x)^2` (1: one item; P: uniform).

    Dense over the catalogue in batches of ``batch_size`` contexts (``O(B P)`` memory per batch).
    """
    out = []
    for s in range(0, len(x), batch_size):
        pi = torch.softmax(policy.scores(policy.user_embedding(x[s : s + batch_size])), dim=1)
        out.append((1.0 / pi.pow(2).sum(1)).cpu())
    return torch.cat(out).numpy().astype(float)


def select_lr(problem: SessionProblem, configs: dict[str, object], lrs, epochs: int, batch_size: int,
              init: str = "default", base_seed: int = 0) -> tuple[dict[str, float], pd.DataFrame]:
    """Each configuration's learning rate: the one of ``lrs`` with the best final validation reward.

    One run per (label, lr) with the first seed of :func:`compare_training`
    (``base_seed * 1000``); ties go to the smaller rate. Only the validation
    users are read, after the last epoch only (no per-epoch curves).
    Returns ``(best, table)``: ``best[label]`` the chosen rate, ``table`` one
    row per run (``method``, ``lr``, ``val_final``, ``train_final``).
    """
    lrs = sorted(float(v) for v in lrs)
    if not lrs or lrs[0] <= 0:
        raise ValueError(f"need at least one learning rate, all > 0, got {lrs}")
    rows = []
    for label, make in configs.items():
        for lr in lrs:
            res = train_policy(problem, make(), epochs, lr, batch_size, seed=base_seed * 1000, init=init,
                               desc=f"{problem.name}: {label}, lr {lr:g}", eval_every=max(epochs, 1))
            h = res.history.iloc[-1]
            rows.append({"method": label, "lr": lr, "val_final": float(h.val_reward),
                         "train_final": float(h.train_reward)})
    table = pd.DataFrame(rows)
    best = {m: float(g.lr.iloc[int(np.argmax(g.val_final.to_numpy()))]) for m, g in table.groupby("method", sort=False)}
    return best, table


def compare_training(problem: SessionProblem, configs: dict[str, object], seeds: int, epochs: int,
                     lr: float | dict[str, float], batch_size: int, index=None, init: str = "default",
                     base_seed: int = 0, eval_every: int = 1):
    """Train each ``configs[label]`` (a zero-argument estimator factory) with ``seeds`` seeds.

    ``lr`` is one learning rate for all, or one per label (e.g. from
    :func:`select_lr`). Returns ``(finals, hits, history)``: ``finals`` one
    row per run (label, seed, learning rate, the trained policy's median
    effective support on the test contexts (:func:`effective_support`),
    final training and validation reward, test reward by exact and by index
    argmax, median step ms);
    ``hits`` one row per (label, seed, test user) with ``hit_exact`` and
    ``hit_index``; ``history`` the curves (every ``eval_every`` epochs, see
    :func:`~.protocol.train_policy`).
    """
    rates = lr if isinstance(lr, dict) else {label: lr for label in configs}
    missing = [label for label in configs if label not in rates]
    if missing:
        raise ValueError(f"no learning rate for {missing}: give one per configuration or a single float")
    x_test, r_test = problem.contexts["test"], problem.rewards["test"]
    finals, hits, hist = [], [], []
    for label, make in configs.items():
        for s in range(seeds):
            res = train_policy(problem, make(), epochs, rates[label], batch_size, seed=base_seed * 1000 + s,
                               init=init, desc=f"{problem.name}: {label}", eval_every=eval_every)
            he = argmax_hits(res.policy, x_test, r_test)
            hi = argmax_hits(res.policy, x_test, r_test, index=index) if index is not None else he
            finals.append({"method": label, "seed": s, "lr": float(rates[label]),
                           "support": float(np.median(effective_support(res.policy, x_test))),
                           "train_final": float(res.history.train_reward.iloc[-1]),
                           "val_final": float(res.history.val_reward.iloc[-1]), "test_exact": float(he.mean()),
                           "test_index": float(hi.mean()),
                           "step_ms": 1e3 * float(np.median(res.step_seconds)) if res.step_seconds else np.nan})
            hits.append(pd.DataFrame({"method": label, "seed": s, "user": np.arange(len(he)),
                                      "hit_exact": he, "hit_index": hi}))
            hist.append(res.history.assign(method=label, seed=s))
    return pd.DataFrame(finals), pd.concat(hits, ignore_index=True), pd.concat(hist, ignore_index=True)


def per_user_difference(hits: pd.DataFrame, a: str, b: str, col: str = "hit_exact") -> np.ndarray:
    """Per test user: (mean over seeds of ``a``'s hit) - (mean over seeds of ``b``'s hit), aligned on users."""
    m = hits.groupby(["method", "user"])[col].mean().unstack("method")
    return (m[a] - m[b]).to_numpy()


def bias_statistics(problem: SessionProblem, policy, estimators: dict[str, object], repeats: int, batch: int = 32,
                    seed: int = 0) -> pd.DataFrame:
    """Separate an estimator's bias from its variance with a U-statistic over independent estimates.

    For one fixed batch, the exact gradient :math:`g` and ``repeats``
    estimates :math:`\\hat g_r` per estimator; with :math:`d_r = \\hat g_r - g`,
    :math:`u_r = d_r^\\top \\frac{1}{R-1}\\sum_{r'\\ne r} d_{r'} / \\|g\\|^2`
    has mean :math:`\\|\\mathbb{E}\\hat g - g\\|^2/\\|g\\|^2` (the squared
    relative bias) *without* the variance term that
    :math:`\\|\\bar d\\|^2` carries. One row per (estimator, repeat): ``u``,
    and the squared relative error of the single estimate ``err2``.
    """
    from rec_lib.policy_learning.experiments import _BatchReward

    gen_cpu = torch.Generator().manual_seed(seed)
    n = len(problem.contexts["train"])
    ctx = torch.randperm(n, generator=gen_cpu)[:batch].sort().values
    x = problem.contexts["train"][ctx]
    rew = _BatchReward(problem.rewards["train"], ctx)
    local = torch.arange(len(ctx))
    g = estimator_gradient(ExactGradient(), policy, x, local, rew)
    g2 = float(g.pow(2).sum())
    rows = []
    for name, est in estimators.items():
        gen = torch.Generator().manual_seed(seed + 1)
        D = torch.stack([estimator_gradient(est, policy, x, local, rew, gen) for _ in range(repeats)]) - g
        tot = D.sum(0)
        u = (D @ tot - D.pow(2).sum(1)) / (repeats - 1) / g2
        for r in range(repeats):
            rows.append({"estimator": name, "repeat": r, "u": float(u[r]), "err2": float(D[r].pow(2).sum()) / g2})
    return pd.DataFrame(rows)
