"""Speed at the paper's scale: per-round rotation times, cost fits and the crossing point (Figures 1-2).

:func:`rotation_rounds` times callables in rotation (A, B, C, A, B, C, ...)
and returns *every round*, so a speed-up gets an interval over rounds
(``rec_lib.evidence.ratio``); ``rec_lib.utils.benchmark_rotation`` only
returns medians. :func:`speed_rounds` runs it for Reinforce, the uniform
proposal and the mixture on synthetic catalogues of each size and embedding
size, with a sublinear top-K: FAISS HNSW up to ``hnsw_max`` items, FAISS IVF
(on the same augmented vectors) above, where a single-threaded HNSW build
would take minutes. :func:`cost_fits` fits Reinforce's time as ``a + b P``
and the mixture's as ``c + d log P`` and solves for the size where the
speed-up passes a bar.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
import torch

from rec_lib.policy_learning.bench import _step_fn, bench_problem
from rec_lib.policy_learning.estimators import SNIS, Reinforce
from rec_lib.policy_learning.index import HNSWIndex, IVFIndex, topk_recall
from rec_lib.policy_learning.policy import exact_topk

__all__ = ["rotation_rounds", "speed_rounds", "speedups", "cost_fits", "SPEED_METHODS"]

SPEED_METHODS = ("reinforce", "uniform", "mixture")


def rotation_rounds(fns: Mapping[str, Callable[[], object]], repeats: int = 5, warmup: int = 1,
                    calls: int = 1) -> pd.DataFrame:
    """Time ``fns`` in rotation; one row per (round, name): ``round``, ``method``, ``seconds`` (per call).

    Each timed entry runs ``calls`` calls of the function (to lift very short
    steps above the timer's noise) and reports the time per call. ``warmup``
    untimed rounds run first.
    """
    if not fns:
        raise ValueError("rotation_rounds needs at least one callable")
    if repeats < 1 or warmup < 0 or calls < 1:
        raise ValueError(f"need repeats >= 1, warmup >= 0, calls >= 1; got {repeats}, {warmup}, {calls}")
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    rows = []
    for r in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            rows.append({"round": r, "method": name, "seconds": (time.perf_counter() - t0) / calls})
    return pd.DataFrame(rows)


def _index(beta, kind: str, M: int, ef_construction: int, ef_search: int, nprobe: int, seed: int):
    if kind == "hnsw":
        return HNSWIndex(beta, M=M, ef_construction=ef_construction, ef_search=ef_search)
    return IVFIndex(beta, nprobe=nprobe, seed=seed)


def speed_rounds(points, batch_size: int = 32, S: int = 1000, K: int = 256, epsilon: float = 0.8,
                 repeats: int = 5, warmup: int = 1, hnsw_max: int = 100_000, M: int = 16,
                 ef_construction: int = 64, ef_search: int = 256, nprobe: int = 16, n_users: int = 256,
                 seed: int = 0, methods=SPEED_METHODS, log=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-round step times of ``methods`` at each ``(P, L)`` of ``points``; returns ``(rounds, indexes)``.

    ``rounds``: ``P``, ``L``, ``index``, ``round``, ``method``, ``seconds``
    (one full training step: estimator, backward, Adam). ``indexes``: per
    point the index kind, its build time and its top-K recall against
    exact search on the benchmark's contexts. HNSW (``M``,
    ``ef_construction``, ``ef_search``; built on one thread and cached) when
    ``P <= hnsw_max``, else IVF (``nprobe``).
    """
    allrounds, idx_rows = [], []
    for P, L in points:
        P, L = int(P), int(L)
        if P <= K:
            raise ValueError(f"every catalogue size must exceed K={K}, got {P}")
        beta, x, reward = bench_problem(P, L, n_users, seed)
        kind = "hnsw" if P <= hnsw_max else "ivf"
        index = _index(beta, kind, M, ef_construction, ef_search, nprobe, seed)
        exact = exact_topk(x, beta, K)[1]
        recall = topk_recall(index.search(x, K)[1], exact)
        idx_rows.append({"P": P, "L": L, "index": kind, "build_s": index.build_seconds,
                         "from_cache": index.from_cache, f"recall@{K}": recall})
        ests = {"reinforce": Reinforce(S), "uniform": SNIS(S, 1.0), "mixture": SNIS(S, epsilon, K, index)}
        fns = {m: _step_fn(ests[m], beta, x, reward, batch_size, "cpu", seed) for m in methods}
        r = rotation_rounds(fns, repeats=repeats, warmup=warmup)
        allrounds.append(r.assign(P=P, L=L, index=kind))
        if log:
            med = r.groupby("method").seconds.median() * 1e3
            log(f"P={P:>9,} L={L:>4} {kind}: " + ", ".join(f"{m} {med[m]:.1f} ms" for m in methods))
        del beta, x, reward, index, fns
    rounds = pd.concat(allrounds, ignore_index=True)[["P", "L", "index", "round", "method", "seconds"]]
    return rounds, pd.DataFrame(idx_rows)


def speedups(rounds: pd.DataFrame, base: str = "reinforce") -> pd.DataFrame:
    """Median ms per step per method and the geometric-mean per-round speed-up over ``base``, per (P, L)."""
    rows = []
    for (P, L), g in rounds.groupby(["P", "L"]):
        w = g.pivot(index="round", columns="method", values="seconds")
        row = {"P": P, "L": L, "index": g["index"].iloc[0]}
        for m in w.columns:
            row[f"{m} ms"] = 1e3 * float(w[m].median())
        for m in w.columns:
            if m != base:
                row[f"{m} speed-up"] = float(np.exp(np.mean(np.log(w[base] / w[m]))))
        rows.append(row)
    return pd.DataFrame(rows)


def cost_fits(rounds: pd.DataFrame, L: int, bar: float = 5.0, fast: str = "mixture",
              slow: str = "reinforce") -> dict:
    """Reinforce's time ``a + b P`` and the mixture's ``c + d log P`` (least squares over all rounds at ``L``).

    Returns the coefficients and ``crossing_P``: the smallest ``P`` where the
    fitted ratio reaches ``bar`` (``nan`` if it never does below ``10^9``).
    """
    g = rounds[rounds.L == L]
    s, f = g[g.method == slow], g[g.method == fast]
    b, a = np.polyfit(s.P.to_numpy(float), s.seconds.to_numpy(float), 1)
    d, c = np.polyfit(np.log(f.P.to_numpy(float)), f.seconds.to_numpy(float), 1)

    def ratio(P):
        return (a + b * P) / (c + d * np.log(P))

    grid = np.logspace(3, 9, 6001)
    ok = np.flatnonzero(ratio(grid) >= bar)
    crossing = float(grid[ok[0]]) if len(ok) else math.nan
    return {"L": L, "a_s": float(a), "b_s_per_item": float(b), "c_s": float(c), "d_s_per_logP": float(d),
            "bar": bar, "crossing_P": crossing, "ratio": ratio}


