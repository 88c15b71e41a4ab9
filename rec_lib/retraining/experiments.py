"""The chapter's experiments: strategies over seeds, ablations, sweeps, timings, readings.

Each function returns plain DataFrames (and the raw :class:`RunResult` where
a figure needs ranks), so the notebook only tabulates and plots.
"""

from __future__ import annotations

import copy
import time
import types
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch

from rec_lib.data import Interactions
from rec_lib.data.synthetic import drifting_stream
from rec_lib.metrics import ranking_metrics
from rec_lib.retraining.chapter import SMLSettings
from rec_lib.retraining.protocol import (
    INTERACTION_TYPES,
    History,
    PeriodStream,
    RunResult,
    interaction_types,
    make_stream,
    previous_items,
    run_strategy,
)
from rec_lib.retraining.strategies import (
    BiasedMFRetrain,
    CaserFineTune,
    PopularityRetrain,
    FineTune,
    FullRetrain,
    GRU4RecRetrain,
    SMLRetrain,
    SPMF,
    pretrain_mf,
)
from rec_lib.retraining.transfer import SML_VARIANTS, block_batches
from rec_lib.utils import benchmark_rotation, seed_everything, set_threads

__all__ = [
    "Comparison",
    "synthetic_stream",
    "make_strategy",
    "run_comparison",
    "timing_table",
    "benchmark_retraining",
    "by_interaction_type",
    "filter_reading",
    "sweep_transfer",
    "segment_runs",
    "cold_start_table",
    "tune_learning_rates",
    "speed_benchmark",
    "returning_stream",
    "run_mechanism",
    "filter_shift",
    "first_order_table",
]

_SEED_OFFSET = {"Full-retrain": 1, "Fine-tune": 2, "SPMF": 3, "GRU4Rec": 4, "Caser": 5, "Popularity": 6, "BiasedMF": 7}


def synthetic_stream(settings: SMLSettings, long_term_weight: float, seed: int = 0) -> PeriodStream:
    """:func:`rec_lib.data.drifting_stream` with the given long-term weight, cut by
    :meth:`SMLSettings.stream_protocol` (new users keep arriving; see :func:`returning_stream` for a stream
    without them)."""
    data = drifting_stream(n_users=settings.stream_users, n_items=settings.stream_items,
                           max_interactions=min(400, settings.stream_items // 2),
                           long_term_weight=long_term_weight, seed=seed)
    return make_stream(data, settings.stream_protocol())


def make_strategy(name: str, stream: PeriodStream, settings: SMLSettings, seeds, device="cpu", init=None,
                  lr: float | None = None, **sml_over):
    """A strategy of Table 1 or Figure 4 by name; ``sml_over`` changes SML's config (the sweeps);
    ``lr`` replaces the MF learning rate of an MF baseline (its tuned value)."""
    mf, seq = settings.mf_config(), settings.seq_config()
    if lr is not None:
        mf = replace(mf, lr=lr)
    n_users, n_items = stream.data.n_users, stream.data.n_items
    if name == "Popularity":
        return PopularityRetrain(n_users, n_items, device)
    if name == "BiasedMF":
        return BiasedMFRetrain(mf, seeds, device)
    if name == "Full-retrain":
        return FullRetrain(mf, seeds, device, init)
    if name == "Fine-tune":
        return FineTune(mf, seeds, device, init)
    if name == "SPMF":
        return SPMF(mf, seeds, device, init)
    if name in SML_VARIANTS:
        return SMLRetrain(name, mf, settings.sml_config(**sml_over), seeds, device, init)
    if name == "GRU4Rec":
        return GRU4RecRetrain(previous_items(stream.data, seq.gru_max_len, n_items), n_items, mf.dim, seq, seeds, device)
    if name == "Caser":
        return CaserFineTune(previous_items(stream.data, seq.caser_L, n_items), n_users, n_items, mf.dim, seq, seeds, device)
    raise ValueError(f"unknown strategy {name!r}; choose from Popularity, BiasedMF, Full-retrain, Fine-tune, SPMF, "
                     "GRU4Rec, Caser, "
                     f"{', '.join(SML_VARIANTS)}")


@dataclass
class Comparison:
    """Results of several strategies over several seeds on one stream."""

    stream: PeriodStream
    results: dict[tuple[str, int], RunResult]
    strategies: dict[tuple[str, int], object] = field(default_factory=dict, repr=False)

    def per_period(self) -> pd.DataFrame:
        """One row per (method, seed, period): the metrics of that evaluated period."""
        frames = [r.metrics.reset_index().assign(method=m, seed=s) for (m, s), r in self.results.items()]
        df = pd.concat(frames, ignore_index=True)
        test = set(self.stream.test_periods)
        return df.assign(role=np.where(df["period"].isin(test), "test", "val"))

    def runs(self, role: str = "test") -> pd.DataFrame:
        """One row per (method, seed): metrics averaged over the test (or val) periods, weighted by size."""
        periods = self.stream.test_periods if role == "test" else \
            [t for t in self.stream.eval_periods if t not in self.stream.test_periods]
        rows = [{"method": m, "seed": s, **r.average(periods)} for (m, s), r in self.results.items()]
        return pd.DataFrame(rows)

    def seconds(self) -> pd.DataFrame:
        """Retraining wall time per (method, seed, period)."""
        rows = [{"method": m, "seed": s, "period": t, "seconds": v}
                for (m, s), r in self.results.items() for t, v in r.seconds.items()]
        return pd.DataFrame(rows)

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(m for m, _ in self.results))


@dataclass(frozen=True)
class _Job:
    """One unit of work: some strategies of one seed (``SML`` and ``SML-S`` share one job)."""

    stream: PeriodStream
    settings: SMLSettings
    names: tuple[str, ...]
    seed: int
    init: object
    device: str
    keep: tuple[str, ...]
    sml_over: dict
    threads: int
    lrs: dict = field(default_factory=dict)
    stop: int | None = None


def _run_job(job: _Job) -> list[tuple[tuple[str, int], RunResult, object]]:
    """Run one job; every random source is seeded from ``(seed, strategy)``, so where (in which
    process) and in which order jobs run does not change any number."""
    if job.threads:
        set_threads(job.threads)
    stream, settings, p, out = job.stream, job.settings, job.stream.protocol, []
    first = job.names[0]
    seeds = seed_everything(job.seed).child(_SEED_OFFSET.get(first, 10))  # every SML variant draws the same numbers
    torch.manual_seed(seeds.seed)  # module initialisations use the global generator
    strat = make_strategy(first, stream, settings, seeds, job.device, job.init, lr=job.lrs.get(first),
                          **job.sml_over)
    if job.names == ("SML", "SML-S"):
        head = run_strategy(strat, stream, job.seed, settings.n_neg, stop=p.val_start, desc="SML")
        fork = copy.deepcopy(strat)
        fork.name = "SML-S"
        pairs = (("SML", strat), ("SML-S", fork))
        for label, s in pairs:
            tail = run_strategy(s, stream, job.seed, settings.n_neg, start=p.val_start, desc=label)
            tail.seconds, tail.name = {**head.seconds, **tail.seconds}, label
            out.append(((label, job.seed), tail, s if label in job.keep else None))
        return out
    res = run_strategy(strat, stream, job.seed, settings.n_neg, stop=job.stop, desc=first)
    return [((first, job.seed), res, strat if first in job.keep else None)]


_POOL: dict = {}


def _pool(workers: int):
    """One pool of ``workers`` spawned processes, kept for the next calls: starting a worker imports torch
    and rec_lib (seconds each), which the chapter would otherwise pay at every stage."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    if _POOL.get("workers") != workers:
        if "pool" in _POOL:
            _POOL["pool"].shutdown()
        _POOL.update(workers=workers, pool=ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")))
    return _POOL["pool"]


def _map(fn, jobs: list, workers: int) -> list:
    """``[fn(j) for j in jobs]``, in ``workers`` spawned processes (one pool, reused) when ``workers > 1``."""
    if workers > 1 and len(jobs) > 1:
        try:
            return list(_pool(workers).map(fn, jobs))
        except Exception:
            _POOL.clear()  # a broken pool is not reused
            raise
    return [fn(j) for j in jobs]


def _comparison_jobs(stream: PeriodStream, settings: SMLSettings, methods: Sequence[str], seeds: Sequence[int],
                     device="cpu", keep: Sequence[str] = (), workers: int = 1, lrs: dict | None = None,
                     stop: int | None = None, **sml_over) -> list[_Job]:
    p = stream.protocol
    groups = [("SML", "SML-S") if m == "SML" and "SML-S" in methods else (m,) for m in methods
              if not (m == "SML-S" and "SML" in methods)]
    jobs = []
    for seed in seeds:
        init_seeds = seed_everything(seed).child(0)
        torch.manual_seed(init_seeds.seed)
        init = pretrain_mf(History(stream, p.init_end - 1), settings.mf_config(), init_seeds, device)
        jobs += [_Job(stream, settings, g, seed, init, str(device), tuple(keep), dict(sml_over), 1 if workers > 1 else 0,
                      dict(lrs or {}), stop)
                 for g in groups]
    return jobs


def _collect(stream: PeriodStream, methods: Sequence[str], done: list) -> Comparison:
    results, kept = {}, {}
    for out in done:
        for key, res, strat in out:
            results[key] = res
            if strat is not None:
                kept[key] = strat
    order = {m: k for k, m in enumerate(methods)}
    results = dict(sorted(results.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][1])))
    return Comparison(stream, results, kept)


def run_comparison(stream: PeriodStream, settings: SMLSettings, methods: Sequence[str], seeds: Sequence[int],
                   device="cpu", keep: Sequence[str] = (), workers: int = 1, lrs: dict | None = None,
                   stop: int | None = None, **sml_over) -> Comparison:
    """Run ``methods`` on ``stream`` for each seed; all MF methods of a seed start from one initial model.

    ``SML-S`` is forked from ``SML`` at the first validation period (they
    are the same until serving starts), so asking for both costs one run.
    ``keep`` names the strategies whose final state is kept (Figure 7, the
    timing benchmark). ``workers > 1`` runs the (strategy, seed) jobs in that
    many processes with one torch thread each: the numbers are those of
    ``workers=1`` in a process running one torch thread (with more threads,
    float sums are split differently and the last digits can differ).
    ``lrs`` maps an MF baseline to its (tuned) learning rate; ``stop`` ends
    every run before that period (tuning on the validation periods).
    """
    jobs = _comparison_jobs(stream, settings, methods, seeds, device, keep, workers, lrs, stop, **sml_over)
    return _collect(stream, methods, _map(_run_job, jobs, workers))


def timing_table(comparison: Comparison, methods: Sequence[str] = ("Full-retrain", "SML", "Fine-tune", "SML-S"),
                 seed: int | None = None) -> pd.DataFrame:
    """Table 2: retraining seconds per test period (columns), one row per method, and Full-retrain / SML.

    The time of period ``t`` is the retraining after ``D_t`` arrived, which
    serves ``D_{t+1}``; the columns count the test periods from 0 as the paper does.
    """
    sec = comparison.seconds()
    seed = sec["seed"].min() if seed is None else seed
    test = comparison.stream.test_periods
    sec = sec[(sec["seed"] == seed) & sec["period"].isin(test) & sec["method"].isin(methods)]
    table = sec.pivot(index="method", columns="period", values="seconds").reindex(list(methods))
    table.loc["Full-retrain / SML"] = table.loc["Full-retrain"] / table.loc["SML"]
    table.columns = [t - test[0] for t in table.columns]
    table.columns.name = "test period"
    return table


def benchmark_retraining(comparison: Comparison, seed: int, periods: Sequence[int], repeats: int = 3,
                         methods: Sequence[str] = ("Full-retrain", "SML", "Fine-tune", "SML-S")) -> pd.DataFrame:
    """One retraining at each of ``periods``, timed in rotation (:func:`benchmark_rotation`) from copies
    of the kept final states; returns medians and the speed-up of each method over Full-retrain."""
    rows = []
    stream = comparison.stream
    for t in periods:
        def job(name):
            return lambda: copy.deepcopy(comparison.strategies[(name, seed)]).update(History(stream, t))

        table = benchmark_rotation({m: job(m) for m in methods}, repeats=repeats, warmup=0, baseline="Full-retrain")
        rows.append(table.assign(period=t).reset_index(names="method"))
    return pd.concat(rows, ignore_index=True)


def by_interaction_type(comparison: Comparison, methods: Sequence[str] = ("SML", "Full-retrain"), k: int = 20,
                        metric: str = "recall") -> pd.DataFrame:
    """Figure 6: ``metric@k`` per (method, seed, test period, interaction type), with the counts."""
    rows = []
    for (m, s), r in comparison.results.items():
        if m not in methods:
            continue
        for t in comparison.stream.test_periods:
            kinds = interaction_types(comparison.stream, t)
            for kind in INTERACTION_TYPES:
                mask = kinds == kind
                if mask.any():
                    val = ranking_metrics(torch.as_tensor(r.ranks[t][mask]), (k,), (metric,))[f"{metric}@{k}"]
                    rows.append({"method": m, "seed": s, "period": t, "type": kind, "n": int(mask.sum()),
                                 f"{metric}@{k}": val})
    return pd.DataFrame(rows)


def filter_reading(transfer_net) -> dict[str, float]:
    """The paper's reading of Figure 7 on ``F^(1)`` ``[n_1, 3]``: which row weighs more, opposite signs.

    ``hat_vs_prev``: mean |weight| on the ``w_hat`` row over that on the
    ``w_{t-1}`` row; ``opposite_sign``: share of filters whose ``w_{t-1}``
    and ``w_hat`` weights have opposite signs (filters that read the change
    ``w_hat - w_{t-1}``).
    """
    F1 = transfer_net.first_filters.cpu().numpy()
    prev, hat = np.abs(F1[:, 0]).mean(), np.abs(F1[:, 1]).mean()
    return {"hat_vs_prev": float(hat / prev), "opposite_sign": float(np.mean(np.sign(F1[:, 0]) != np.sign(F1[:, 1]))),
            "mean_prev": float(F1[:, 0].mean()), "mean_hat": float(F1[:, 1].mean()), "mean_dot": float(F1[:, 2].mean())}


def sweep_transfer(stream: PeriodStream, settings: SMLSettings, seeds: Sequence[int], device="cpu", workers: int = 1,
                   reuse: Comparison | None = None) -> pd.DataFrame:
    """Figure 5: SML with one conv layer of ``n`` filters (``sweep_filters``) and with ``L`` conv layers
    (10 filters, then 5 per extra layer; ``sweep_layers``). One row per run, test metrics.

    A configuration equal to ``settings.filters`` is read from ``reuse`` (a
    comparison that already ran SML with the same seeds) instead of rerun.
    """
    configs = [("filters", n, (n,)) for n in settings.sweep_filters]
    configs += [("layers", L, (10,) + (5,) * (L - 1)) for L in settings.sweep_layers]
    done: dict[tuple[int, ...], pd.DataFrame] = {}
    if reuse is not None:
        runs = reuse.runs()
        runs = runs[(runs["method"] == "SML") & runs["seed"].isin(list(seeds))]
        if len(runs) == len(seeds):
            done[tuple(settings.filters)] = runs
    todo = [f for f in dict.fromkeys(f for _, _, f in configs) if f not in done]
    jobs = [(f, _Job(stream, settings, ("SML",), seed, None, str(device), (), {"filters": f}, 1 if workers > 1 else 0))
            for f in todo for seed in seeds]
    inits = {}
    for seed in seeds:
        init_seeds = seed_everything(seed).child(0)
        torch.manual_seed(init_seeds.seed)
        inits[seed] = pretrain_mf(History(stream, stream.protocol.init_end - 1), settings.mf_config(), init_seeds, device)
    jobs = [(f, replace(j, init=inits[j.seed])) for f, j in jobs]
    outs = _map(_run_job, [j for _, j in jobs], workers)
    for (f, _), out in zip(jobs, outs):
        (key, res, _), = out
        row = pd.DataFrame([{"method": "SML", "seed": key[1], **res.average(stream.test_periods)}])
        done[f] = pd.concat([done.get(f), row], ignore_index=True) if f in done else row
    rows = [done[f].assign(sweep=kind, value=value) for kind, value, f in configs]
    return pd.concat(rows, ignore_index=True)


# ------------------------------------------------------------------ cold start, segments, tuning
def segment_runs(comparison: Comparison, k: int = 20) -> pd.DataFrame:
    """Recall@k per (method, seed, segment) over the test periods (:mod:`rec_lib.evaluation`).

    A test row of period ``t`` is from a *returning* user when the user has an
    interaction in ``D_0 .. D_{t-1}`` (an *old* item likewise). Segments:
    ``returning user``, ``new user``, the four crosses (``returning user /
    old item``, ...) and ``all``; ``n`` rows, ``share`` of all rows.
    """
    from rec_lib.evaluation import per_row_metrics, segment_labels, segment_table

    stream, metric = comparison.stream, f"recall@{k}"
    labels = {}
    for t in stream.test_periods:
        users, items = stream.arrays(t)
        labels[t] = segment_labels(users, items, *stream.arrays_upto(t - 1))
    frames = []
    for (m, s), r in comparison.results.items():
        rows = pd.concat([labels[t].assign(**{metric: per_row_metrics(r.ranks[t], ks=(k,), which=("hit",))[f"hit@{k}"]})
                          for t in stream.test_periods], ignore_index=True)
        for by in (("user_segment",), ("segment",)):
            tab = segment_table(rows, metric, by=by, total=by == ("segment",))
            frames.append(tab.rename(columns={by[0]: "segment"}).assign(method=m, seed=s))
    out = pd.concat(frames, ignore_index=True)
    return out[["method", "seed", "segment", "n", "share", metric]]


def cold_start_table(comparison: Comparison) -> pd.DataFrame:
    """The cold-start readings of every run (:func:`rec_lib.retraining.cold_start_stats`), averaged over the
    test periods: one row per (method, seed) with the number of new users, their rows' mean pairwise
    cosine and the mean Spearman correlation of their scores with item popularity."""
    rows = []
    test = set(comparison.stream.test_periods)
    for (m, s), r in comparison.results.items():
        per = [v for t, v in r.probe.items() if t in test]
        if per:
            rows.append({"method": m, "seed": s, "new users": float(np.mean([v["n"] for v in per])),
                         "cosine": float(np.nanmean([v["cosine"] for v in per])),
                         "spearman_pop": float(np.nanmean([v["spearman_pop"] for v in per]))})
    return pd.DataFrame(rows)


def tune_learning_rates(stream: PeriodStream, settings: SMLSettings, methods: Sequence[str], grid: Sequence[float],
                        seed: int, device="cpu", workers: int = 1, metric: str = "recall@20") -> pd.DataFrame:
    """Each MF baseline's learning rate picked on the validation periods (one seed), as SML's transfer rate was.

    Runs every (method, lr) up to the first test period; returns one row per
    pair with the validation ``metric`` and ``chosen`` (the best lr of the method).
    """
    rows = []
    for lr in grid:
        comp = run_comparison(stream, settings, methods, [seed], device, workers=workers,
                              lrs={m: lr for m in methods}, stop=stream.protocol.test_start)
        val = comp.runs("val")
        rows += [{"method": r["method"], "lr": lr, metric: r[metric]} for _, r in val.iterrows()]
    out = pd.DataFrame(rows)
    best = out.loc[out.groupby("method", sort=False)[metric].idxmax()].set_index("method")["lr"]
    return out.assign(chosen=out["lr"] == out["method"].map(best))


def speed_benchmark(comparison: Comparison, seed: int, periods: Sequence[int], repeats: int = 2,
                    full_epochs: int = 20, sml: str = "SML", warmup: int = 1) -> pd.DataFrame:
    """One retraining at each of ``periods`` by Full-retrain at ``full_epochs`` epochs (the paper's timed
    Table 2 setting) and by SML, timed in rotation from copies of the kept final states.

    Each period starts with ``warmup`` untimed rounds (the first SML retraining at a period ran 1.3-1.7x
    slower than the next two in the tutorial run, which made the slope of SML's time over t read noise).
    Returns one row per timed (period, round) with both times and their ratio.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    stream, rows = comparison.stream, []
    full = comparison.strategies[("Full-retrain", seed)]

    def retrain_s(name: str, t: int) -> float:
        strat = copy.deepcopy(full if name == "Full-retrain" else comparison.strategies[(name, seed)])
        if name == "Full-retrain":
            strat.cfg = replace(strat.cfg, epochs=full_epochs)
        t0 = time.perf_counter()
        strat.update(History(stream, t))
        return time.perf_counter() - t0

    for t in periods:
        for k in range(-warmup, repeats):
            times = {name: retrain_s(name, t) for name in ("Full-retrain", sml)}
            if k >= 0:
                rows.append({"period": t, "round": k, "full_s": times["Full-retrain"], "sml_s": times[sml],
                             "ratio": times["Full-retrain"] / times[sml]})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ the transfer's mechanism
def returning_stream(settings: SMLSettings, long_term_weight: float, seed: int) -> PeriodStream:
    """A drifting stream of returning users only: every user has data in the initial periods.

    :func:`rec_lib.data.drifting_stream` (``stream_*`` sizes), cut by
    :meth:`SMLSettings.mech_protocol`; the users whose first interaction
    falls after the initial periods are dropped and the rest cut again,
    until none is left (so no test user is new, and drift is the only change).
    """
    original = drifting_stream(n_users=settings.stream_users, n_items=settings.stream_items,
                               max_interactions=settings.stream_max, long_term_weight=long_term_weight, seed=seed)
    proto, data = settings.mech_protocol(), original
    for _ in range(10):
        stream = make_stream(data, proto)
        first_u, _ = stream.first_periods()
        late = first_u[stream.data.users] >= proto.init_end
        if not late.any():
            stream.data.ground_truth["row_state"] = row_states(original, stream.data)
            return stream
        data = stream.data.subset(np.flatnonzero(~late))
    raise RuntimeError("could not make a stream of returning users only")


def row_states(original: Interactions, data: Interactions) -> np.ndarray:
    """The generator's state :math:`q_u(t)` of each row of ``data``, a filtered copy of the generated ``original``.

    Rows are matched on the original user and item ids (a generated user
    never repeats an item); ``original.ground_truth["state"]`` is aligned
    with ``original``'s rows.
    """
    n = int(max(original.item_ids.max(), data.item_ids.max())) + 1
    key = original.user_ids[original.users].astype(np.int64) * n + original.item_ids[original.items]
    order = np.argsort(key, kind="stable")
    want = data.user_ids[data.users].astype(np.int64) * n + data.item_ids[data.items]
    pos = order[np.searchsorted(key, want, sorter=order)]
    if not np.array_equal(key[pos], want):
        raise ValueError("some rows of data are not rows of the original stream")
    return original.ground_truth["state"][pos]


def run_mechanism(settings: SMLSettings, weights: Sequence[float], seeds: Sequence[int], device="cpu",
                  workers: int = 1) -> dict[tuple[float, int], Comparison]:
    """Full-retrain, Fine-tune, SML and SML-N on :func:`returning_stream` for each (long-term weight, seed).

    The stream's seed is the run's seed (replicates vary the data too). SML
    gets the ``mech_*`` transfer budget and an identity warm start
    (``SMLConfig.warm_start``); its final state is kept for the filters.
    """
    mech = replace(settings, n_neg=settings.mech_n_neg)
    over = dict(batch_size=settings.mech_batch, fc=settings.mech_fc, outer_iters=settings.mech_outer_iters,
                theta_epochs=settings.mech_theta_epochs, warm_start=settings.mech_warm_start)
    methods = ["Full-retrain", "Fine-tune", "SML", "SML-N"]
    streams = {(w, seed): returning_stream(settings, w, seed) for w in weights for seed in seeds}
    jobs = {key: _comparison_jobs(stream, mech, methods, [key[1]], device, keep=["SML", "SML-N"], workers=workers,
                                  **over)
            for key, stream in streams.items()}
    flat = [j for js in jobs.values() for j in js]
    flat.sort(key=lambda j: j.names[0] not in ("SML", "SML-N"))  # the longest jobs first: the workers end together
    done = dict(zip(map(id, flat), _map(_run_job, flat, workers)))
    return {key: _collect(streams[key], methods, [done[id(j)] for j in js]) for key, js in jobs.items()}


def true_state_runs(mech: dict[tuple[float, int], Comparison]) -> pd.DataFrame:
    """One row per (w, seed, method): the mean over test periods of the ``true_spearman`` probe
    (:meth:`rec_lib.retraining.strategies._ColdStartProbe.record_true_state`), for the strategies that record it."""
    rows = []
    for (w, _), comp in mech.items():
        test = set(comp.stream.test_periods)
        for (m, seed), res in comp.results.items():
            vals = [v["true_spearman"] for t, v in res.probe.items() if t in test and "true_spearman" in v]
            if vals:
                rows.append({"w": w, "seed": seed, "method": m, "true_spearman": float(np.mean(vals)),
                             "periods": len(vals)})
    return pd.DataFrame(rows)


def filter_shift(updater) -> pd.DataFrame:
    """Figure 7 as a contrast: ``hat_vs_prev`` (:func:`filter_reading`) of each transfer's ``F^(1)`` at
    initialisation (after the warm start, if any) and learned, and the log of learned over initial."""
    rows = []
    for g, net in updater.transfer.nets.items():
        init = types.SimpleNamespace(first_filters=updater.initial_filters[g])
        a, b = filter_reading(init)["hat_vs_prev"], filter_reading(net)["hat_vs_prev"]
        rows.append({"group": g, "initial": a, "learned": b, "log shift": float(np.log(b / a))})
    return pd.DataFrame(rows)


def first_order_table(updater, stream: PeriodStream, seed: int, lrs: Sequence[float], repeats: int = 3,
                      batch_size: int = 1024, device="cpu") -> pd.DataFrame:
    """Exact vs first-order meta-gradient on step 1's actual trajectory (:func:`unrolled_meta_gradients`).

    ``D_t`` is the second-to-last period (all its mini-batches: the steps
    step 1 takes in one pass), ``D_{t+1}`` one mini-batch of the last
    period; the served parameters start the task. One row per (lr, repeat):
    steps, cosine of the two gradients, relative gap ``|exact - first| / |exact|``.
    """
    from rec_lib.retraining.transfer import SMLTask, unrolled_meta_gradients

    gen, rows = seed_everything(seed), []
    t = stream.n_periods - 2
    for lr in lrs:
        for k in range(repeats):
            task = SMLTask(updater.W)
            b_t = list(block_batches(*stream.arrays(t), stream.seen, gen, batch_size=batch_size, device=device))
            b_n = next(block_batches(*stream.arrays(t + 1), stream.seen, gen, batch_size=batch_size, device=device))
            exact, first = unrolled_meta_gradients(updater.transfer, task, b_t, b_n, lr=lr, loss=updater.loss)
            cos = float(torch.nn.functional.cosine_similarity(exact, first, dim=0))
            gap = float((exact - first).norm() / exact.norm())
            rows.append({"lr": lr, "repeat": k, "steps": len(b_t), "cosine": cos, "relative gap": gap})
    return pd.DataFrame(rows)
