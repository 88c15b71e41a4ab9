"""Speed benchmark of the gradient estimators (the paper's Figures 1-2), timed in rotation.

Run it as::

    python -m rec_lib.policy_learning.bench [flags]

Flags (defaults in brackets):

--sizes P [P ...]        catalogue sizes [10000 100000 1000000]
--dims L [L ...]         embedding sizes [32 128]
--batch B                contexts per step [32]
--samples S              Monte Carlo samples per context [1000]
--top-k K                size of the MIPS top-K [256]
--epsilon EPS            uniform share of the mixture [0.8]
--refresh R              the cached mixture searches a context's top-K every R-th visit [4]
--hnsw-m M               HNSW graph degree [16]
--ef-construction E      HNSW candidate list when building [64]
--ef-search E            HNSW candidate list when searching [256]
--build-threads N        threads for building the index, 0 = all cores (not bit-reproducible) [1]
--repeats N              timed rounds of the rotation [5]
--warmup N               untimed rounds first [1]
--threads N              torch and FAISS threads, 0 = all cores [0]
--device D               cpu, cuda or auto; cuda adds a GPU column to the CPU one [cpu]
--methods M [M ...]      subset of reinforce reinforce-opt uniform mixture mixture-cached mixture-exact
--seed N                 seed of the catalogue, the sessions and the samplers [0]
--out PATH               also write the two tables as JSON

Each (P, L, device) builds a structured synthetic catalogue
(:func:`rec_lib.data.item_catalogue`), user sessions on it (contexts = mean
embedding of half of each session, reward = the other half), and the HNSW
index (cached under ``data/cache/faiss``). Every method then performs full
training steps (estimator, backward, Adam) in rotation, A, B, C, A, B, C,
..., so machine noise hits all alike; the tables give medians and the
speedups against the paper's Reinforce and the optimised Reinforce.
"mixture-cached" runs ``R`` steps per timed call (one searching, ``R - 1``
reusing the cached top-K) and reports the time per step. The chapter
``fast_offline_policy`` calls :func:`speed_benchmark` with its settings.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from rec_lib.data import catalogue_sessions, item_catalogue, split_user_items
from rec_lib.policy_learning.estimators import SNIS, FastReinforce, Reinforce
from rec_lib.policy_learning.index import ExactIndex, HNSWIndex, topk_recall
from rec_lib.policy_learning.policy import SoftmaxPolicy, exact_topk
from rec_lib.policy_learning.protocol import mean_contexts
from rec_lib.policy_learning.rewards import SessionReward
from rec_lib.utils import benchmark_rotation, resolve_device

__all__ = ["METHODS", "BenchResult", "bench_problem", "speed_benchmark", "main"]

METHODS = ("reinforce", "reinforce-opt", "uniform", "mixture", "mixture-cached", "mixture-exact")


@dataclass
class BenchResult:
    """``times``: one row per (P, L, device, method); ``indexes``: one row per (P, L)."""

    times: pd.DataFrame
    indexes: pd.DataFrame

    def bars(self, P: int | None = None, L: int | None = None, device: str = "cpu") -> dict:
        """The issue's speed bar at the largest P (or ``P``) and smallest L (or ``L``)."""
        t = self.times[self.times.device == device]
        P = P or int(t.P.max())
        L = L or int(t.L.min())
        at = t[(t.P == P) & (t.L == L)].set_index("method")
        out = {"P": P, "L": L}
        for m in ("mixture", "mixture-cached", "uniform"):
            if m in at.index:
                for base in ("reinforce", "reinforce-opt"):
                    if base in at.index:
                        out[f"{m} vs {base}"] = float(at.loc[base, "median_s"] / at.loc[m, "median_s"])
                small = t[(t.P == t.P.min()) & (t.L == L) & (t.method == m)]
                if len(small) and P != int(t.P.min()):
                    out[f"{m} growth"] = float(at.loc[m, "median_s"] / small.median_s.iloc[0])
        return out


def bench_problem(n_items: int, dim: int, n_users: int = 512, seed: int = 0):
    """``(beta, contexts, reward)`` of sessions on a structured synthetic catalogue of ``n_items`` items."""
    cat = item_catalogue(n_items, dim, seed=seed)
    sessions = catalogue_sessions(cat, n_users, length_range=(20, 100), seed=seed)
    X, Y = split_user_items(sessions, 0.5, seed=seed)
    users = np.arange(n_users)
    beta = torch.from_numpy(cat.beta)
    return beta, mean_contexts(X, users, beta), SessionReward.from_interactions(Y, users)


def _step_fn(estimator, beta, x, reward, batch: int, device, seed: int, lr: float = 1e-4, repeat: int = 1):
    policy = SoftmaxPolicy(beta).to(device)
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    gen = torch.Generator(device=device).manual_seed(seed)
    n_batches = len(x) // batch
    state = {"k": 0}

    def step() -> None:
        k = state["k"] % n_batches
        state["k"] += 1
        ctx = torch.arange(k * batch, (k + 1) * batch, device=device)
        for _ in range(repeat):  # the cached mixture: one search, repeat - 1 reuses
            opt.zero_grad(set_to_none=True)
            estimator.loss(policy, x[ctx], ctx, reward, gen).backward()
            opt.step()

    return step


def speed_benchmark(sizes=(10_000, 100_000, 1_000_000), dims=(32, 128), batch_size: int = 32, S: int = 1000,
                    K: int = 256, epsilon: float = 0.8, refresh_every: int = 4, M: int = 16, ef_construction: int = 64,
                    ef_search: int = 256, repeats: int = 5, warmup: int = 1, device: str = "cpu",
                    methods=METHODS, seed: int = 0, n_users: int = 512, build_threads: int = 1,
                    log=None) -> BenchResult:
    """Time one training step of each method in rotation for every (P, L) (module docstring).

    ``device="cuda"`` times every method on the CPU and again on the GPU (the
    HNSW search stays on the CPU, as FAISS's HNSW is a CPU index).
    Returns :class:`BenchResult`; ``log`` (e.g. ``print``) reports progress.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {METHODS}")
    if any(p <= K for p in sizes):
        raise ValueError(f"every catalogue size must exceed K={K}, got {tuple(sizes)}")
    if n_users < batch_size:
        raise ValueError(f"n_users ({n_users}) must be at least the batch size ({batch_size})")
    devices = ["cpu"] + (["cuda"] if resolve_device(device).type == "cuda" else [])
    times, indexes = [], []
    for L in dims:
        for P in sizes:
            beta, x, reward = bench_problem(P, L, n_users, seed)
            index = HNSWIndex(beta, M=M, ef_construction=ef_construction, ef_search=ef_search,
                              build_threads=build_threads)
            exact = exact_topk(x, beta, K)[1]
            approx = index.search(x, K)[1]
            indexes.append({"P": P, "L": L, "build_s": index.build_seconds, "memory_mb": index.memory_bytes / 2**20,
                            "beta_mb": beta.numel() * 4 / 2**20, "from_cache": index.from_cache,
                            "ef_search": ef_search, f"recall@{K}": topk_recall(approx, exact)})
            for dev in devices:
                d = torch.device(dev)
                bd, xd, rd = beta.to(d), x.to(d), reward.to(d)
                ests = {"reinforce": Reinforce(S), "reinforce-opt": FastReinforce(S), "uniform": SNIS(S, 1.0),
                        "mixture": SNIS(S, epsilon, K, index),
                        "mixture-cached": SNIS(S, epsilon, K, index, refresh_every=refresh_every),
                        "mixture-exact": SNIS(S, epsilon, K, ExactIndex(bd))}
                fns = {m: _step_fn(ests[m], bd, xd, rd, batch_size, d, seed,
                                   repeat=refresh_every if m == "mixture-cached" else 1) for m in methods}
                df = benchmark_rotation(fns, repeats=repeats, warmup=warmup)
                if "mixture-cached" in df.index:
                    df.loc["mixture-cached", ["median_s", "min_s", "max_s"]] /= refresh_every
                for m in methods:
                    row = {"P": P, "L": L, "device": dev, "method": m, **df.loc[m].to_dict()}
                    for base in ("reinforce", "reinforce-opt"):
                        if base in df.index:
                            row[f"speedup vs {base}"] = df.loc[base, "median_s"] / df.loc[m, "median_s"]
                    times.append(row)
                if log:
                    log(f"P={P:>9,} L={L:>4} {dev}: " + ", ".join(f"{m} {df.loc[m, 'median_s'] * 1e3:.1f} ms" for m in methods))
    return BenchResult(pd.DataFrame(times), pd.DataFrame(indexes))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rec_lib.policy_learning.bench",
                                description="Per-step time of Reinforce, optimised Reinforce, uniform and mixture "
                                            "SNIS (Sakhi et al., Figures 1-2), timed in rotation in one process.")
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--dims", type=int, nargs="+", default=[32, 128])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--top-k", type=int, default=256)
    p.add_argument("--epsilon", type=float, default=0.8)
    p.add_argument("--refresh", type=int, default=4)
    p.add_argument("--hnsw-m", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=64)
    p.add_argument("--ef-search", type=int, default=256)
    p.add_argument("--build-threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import faiss

    from rec_lib.utils import set_threads

    threads = set_threads(args.threads or None)
    faiss.omp_set_num_threads(threads)
    resolve_device(args.device)  # a missing GPU fails here, before any work
    print(f"threads={threads} batch={args.batch} S={args.samples} K={args.top_k} eps={args.epsilon} "
          f"HNSW M={args.hnsw_m} efConstruction={args.ef_construction} efSearch={args.ef_search}", flush=True)
    res = speed_benchmark(args.sizes, args.dims, args.batch, args.samples, args.top_k, args.epsilon, args.refresh,
                          args.hnsw_m, args.ef_construction, args.ef_search, args.repeats, args.warmup, args.device,
                          args.methods, args.seed, build_threads=args.build_threads,
                          log=lambda s: print(s, flush=True))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print("\nper-step time (median over the rotation) and speedups")
        print(res.times.round(4).to_string(index=False))
        print("\nHNSW index")
        print(res.indexes.round(3).to_string(index=False))
        print("\nthe bar (largest P, smallest L, CPU)")
        for k, v in res.bars().items():
            print(f"  {k}: {v:.2f}" if isinstance(v, float) else f"  {k}: {v}")
    if args.out:
        from rec_lib.utils import atomic_write

        with atomic_write(args.out) as fh:
            json.dump({"args": vars(args), "times": res.times.to_dict(orient="records"),
                       "indexes": res.indexes.to_dict(orient="records")}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
