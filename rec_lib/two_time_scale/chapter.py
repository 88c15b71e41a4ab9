"""Settings and the experiment plan of the two-time-scale chapter (``book/two_time_scale.ipynb``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from rec_lib.config import BaseSettings, ChapterSpec, SettingsError
from rec_lib.data import Interactions, load
from rec_lib.two_time_scale.experiments import INF, METHODS, SeedJob, TrainConfig, run_jobs
from rec_lib.two_time_scale.stream import bucket_ceilings, padded_share, two_scale_stream
from rec_lib.two_time_scale.protocol import (
    TEST,
    TTSData,
    activity_buckets,
    eval_set,
    prepare,
    ranks_from_scores,
    summarise,
)
from rec_lib.utils import seed_everything

__all__ = ["TTSSettings", "PRESETS", "CHAPTER", "TABLE4", "SYNTHETIC", "CONTROL", "SYN_METHODS", "CONTROL_METHODS",
           "train_config", "load_datasets", "synthetic_stream", "threshold_plan", "run_experiments", "run_attribution",
           "runs_frame",
           "paired_gap", "curves_frame", "buckets_frame", "segments_frame", "synthetic_ceilings", "prepare"]

SYNTHETIC = "synthetic"
CONTROL = "synthetic-control"  # the same stream without personal taste (user_spread = 0)
SYN_METHODS = ("Popularity", "CCF", "GRU4Rec", "2TS", "2TS-inf")
CONTROL_METHODS = ("CCF", "2TS", "2TS-inf")
# Appendix C, Table 4: thresholds t* of 2TS and 2TS-Plus per dataset.
TABLE4 = {"taobao": (100, 100), "ml-25m": (200, 200), "lastfm-1k": (100, 200)}


@dataclass(frozen=True)
class TTSSettings(BaseSettings):
    """Knobs of the 2TS chapter. ``t_star = -1`` chooses the threshold on validation from the grid
    (at the paper scale with an empty grid: the paper's Table 4)."""

    dataset: str = "ml-100k"
    max_interactions: int = 0  # > 0: only the first interactions (in time) of the real dataset
    synthetic: bool = True  # also run the synthetic stream with planted two-time-scale users
    syn_users: int = 800
    syn_items: int = 1000
    syn_max_interactions: int = 300
    syn_dim: int = 8
    syn_exponent: float = 1.8
    syn_spread: float = 1.0
    syn_long_term: float = 0.6
    syn_drift_days: float = 5.0
    syn_temperature: float = 0.1
    syn_t_star: int = 40
    syn_lr: float = 5e-3
    # replicates of each synthetic stream (seed k draws its own stream); cheap, so more than n_seeds
    syn_seeds: int = 5
    control: bool = True  # also the control stream without personal taste
    dim: int = 32
    n_neg: int = 10
    n_neg_eval: int = 499
    k_last: int = 10
    max_len: int = 50
    stage1_epochs: int = 30  # at most; early stopping on validation MRR
    stage2_epochs: int = 8
    baseline_epochs: int = 8
    lr_stage1: float = 5e-3
    lr: float = 2e-2
    batch_size: int = 1024
    seq_batch: int = 128
    patience: int = 3
    min_epochs: int = 3
    t_star: int = -1
    t_star_plus: int = -1
    t_star_grid: tuple[int, ...] = (160, 320, 640)  # 640 on ML-100K: one training history is longer
    plus_grid: bool = False
    # > 0: also run 2TS and 2TS-inf at this fixed t* on the real dataset (every seed), so the split's mechanism
    # claims have active users to read when validation picks a t* where no test user is active; 0: off
    attribution_t_star: int = 160
    attribution_seeds: int = 5  # seeds of that run (2TS and 2TS-inf only, so cheaper than a main-run seed)
    n_seeds: int = 3
    test_rows: int = 0  # > 0: rank a random subset of the test interactions (paper scale)
    val_rows: int = 1500
    checkpoint_rows: int = 1000
    full_rows: int = 1000  # test interactions also ranked against the whole catalogue
    speed_rounds: int = 3
    sim_seeds: int = 3
    workers: int = 2
    threads: int = 1
    sim_users: int = 10_000
    sim_dim: int = 4
    sim_alpha: float = 2.0
    sim_c: float = 0.1
    sim_spread: float = 4.0
    sim_mean_norm: float = 4.0
    sim_online: int = 20
    sim_t_max: int = 5000

    def validate(self) -> None:
        super().validate()
        positive = ("syn_users", "syn_items", "syn_max_interactions", "syn_dim", "syn_t_star", "syn_seeds",
                    "attribution_seeds", "speed_rounds",
                    "sim_seeds", "dim", "n_neg", "n_neg_eval", "k_last",
                    "max_len", "stage1_epochs", "stage2_epochs", "baseline_epochs", "batch_size", "seq_batch",
                    "patience", "min_epochs", "n_seeds", "val_rows", "checkpoint_rows", "workers", "sim_users",
                    "sim_dim", "sim_online", "sim_t_max")
        for name in positive:
            if getattr(self, name) < 1:
                raise SettingsError(f"{name.upper()} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "lr_stage1", "sim_c", "syn_temperature", "syn_lr", "syn_drift_days"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name.upper()} must be > 0, got {getattr(self, name)}")
        if self.max_interactions < 0 or self.threads < 0 or self.test_rows < 0 or self.full_rows < 0:
            raise SettingsError("MAX_INTERACTIONS, TEST_ROWS and THREADS must be >= 0 (0: all)")
        if self.attribution_t_star < 0:
            raise SettingsError(f"ATTRIBUTION_T_STAR must be >= 0 (0: no attribution run), got "
                                f"{self.attribution_t_star}")
        if 0 < self.attribution_t_star < self.k_last:
            raise SettingsError(f"ATTRIBUTION_T_STAR = {self.attribution_t_star} is below K_LAST = {self.k_last}; "
                                "the paper trains active users on their last K <= t* interactions")
        if self.syn_exponent <= 1 or self.sim_alpha <= 1:
            raise SettingsError("SYN_EXPONENT and SIM_ALPHA are power-law exponents and must be > 1")
        if not 0 <= self.syn_long_term <= 1:
            raise SettingsError(f"SYN_LONG_TERM must be in [0, 1], got {self.syn_long_term}")
        if self.synthetic and self.syn_items < self.syn_max_interactions + self.n_neg_eval + 1:
            raise SettingsError("SYN_ITEMS must be at least SYN_MAX_INTERACTIONS + N_NEG_EVAL + 1, or heavy users "
                                "of the stream would get padded candidate sets")
        for name in ("t_star", "t_star_plus"):
            if getattr(self, name) < -1:
                raise SettingsError(f"{name.upper()} must be >= 0, or -1 to choose it on validation")
        if any(t < 0 for t in self.t_star_grid):
            raise SettingsError("T_STAR_GRID holds thresholds, which must be >= 0")
        for label in self.labels():
            t, t_plus, grid = threshold_plan(self, label)
            smallest = min([x for x in (t, t_plus) if x is not None] + list(grid))
            if self.k_last > max(smallest, 1):
                raise SettingsError(f"K_LAST = {self.k_last} exceeds the threshold {smallest} for {label}; the paper "
                                    "trains active users on their last K <= t* interactions")
        if self.device.split(":")[0] == "cuda" and self.workers > 1:
            raise SettingsError("with DEVICE='cuda' use WORKERS=1 (one process drives the GPU)")

    def labels(self) -> list[str]:
        """The datasets of a run: the real one, then the synthetic stream when ``synthetic``."""
        return [self.dataset] + ([SYNTHETIC] if self.synthetic else [])


def threshold_plan(s: TTSSettings, label: str) -> tuple[int | None, int | None, tuple[int, ...]]:
    """``(t_star, t_star_plus, grid)`` for a dataset: fixed values, or ``None`` and the validation grid.

    Order: ``T_STAR >= 0`` fixes it; else a non-empty grid chooses it on
    validation; else, for the paper's datasets, Table 4.
    """
    if label in (SYNTHETIC, CONTROL):
        return s.syn_t_star, s.syn_t_star, ()
    grid = s.t_star_grid
    t = s.t_star if s.t_star >= 0 else None
    t_plus = s.t_star_plus if s.t_star_plus >= 0 else None
    if t is None and not grid:
        if label not in TABLE4:
            raise SettingsError(f"no threshold for {label}: set T_STAR, or a T_STAR_GRID to choose it on validation "
                                f"(Table 4 of the paper covers {sorted(TABLE4)})")
        t, t4_plus = TABLE4[label]
        t_plus = t4_plus if t_plus is None else t_plus
    return t, t_plus, tuple(grid) if t is None else ()


PRESETS = {
    "smoke": dict(max_interactions=15_000, syn_users=250, syn_items=300, syn_max_interactions=150, dim=16,
                  stage1_epochs=2, stage2_epochs=3, baseline_epochs=3, min_epochs=1, t_star_grid=(20, 40),
                  attribution_t_star=20,
                  syn_t_star=20, syn_seeds=2, attribution_seeds=2, n_seeds=2, val_rows=500, checkpoint_rows=500,
                  workers=1, full_rows=200,
                  speed_rounds=2, sim_seeds=2, sim_users=2000, sim_t_max=500, n_neg_eval=99),
    "tutorial": {},
    "paper": dict(dataset="ml-25m", synthetic=False, control=False, dim=64, k_last=20, max_len=200, stage1_epochs=20,
                  stage2_epochs=20, baseline_epochs=20, lr_stage1=1e-3, lr=1e-3, batch_size=4096, seq_batch=256,
                  t_star_grid=(), attribution_t_star=0, test_rows=200_000, val_rows=50_000, checkpoint_rows=20_000,
                  workers=1, threads=0,
                  sim_users=200_000, sim_t_max=20_000),
}


def _datasets(settings: TTSSettings) -> list[str]:
    return [settings.dataset]


CHAPTER = ChapterSpec(name="two_time_scale", settings=TTSSettings, presets=PRESETS, datasets=_datasets)


def train_config(s: TTSSettings) -> TrainConfig:
    """The :class:`TrainConfig` of a settings object."""
    return TrainConfig(dim=s.dim, n_neg=s.n_neg, k_last=s.k_last, max_len=s.max_len, stage1_epochs=s.stage1_epochs,
                       stage2_epochs=s.stage2_epochs, baseline_epochs=s.baseline_epochs, lr_stage1=s.lr_stage1,
                       lr=s.lr, batch_size=s.batch_size, seq_batch=s.seq_batch, patience=s.patience,
                       min_epochs=s.min_epochs)


def synthetic_stream(s: TTSSettings, seed: int, control: bool = False) -> Interactions:
    """The chapter's synthetic stream of ``seed`` (:func:`~rec_lib.two_time_scale.stream.two_scale_stream`);
    ``control``: the same without personal taste (``user_spread = 0``)."""
    return two_scale_stream(n_users=s.syn_users, n_items=s.syn_items, dim=s.syn_dim,
                            max_interactions=s.syn_max_interactions, activity_exponent=s.syn_exponent,
                            long_term_weight=s.syn_long_term, drift_days=s.syn_drift_days,
                            user_spread=0.0 if control else s.syn_spread, temperature=s.syn_temperature,
                            n_neg_eval=s.n_neg_eval, seed=seed)


def load_datasets(s: TTSSettings) -> dict[str, Interactions]:
    """The real dataset (the first ``max_interactions`` in time when set) and the first seed's synthetic streams."""
    real = load(s.dataset)
    if s.max_interactions and s.max_interactions < len(real):
        real = real.subset(np.arange(s.max_interactions), name=real.name).reindexed()
    out = {s.dataset: real}
    if s.synthetic:
        out[SYNTHETIC] = synthetic_stream(s, s.seed)
        if s.control:
            out[CONTROL] = synthetic_stream(s, s.seed, control=True)
    return out


def run_experiments(s: TTSSettings, datasets: dict[str, Interactions]) -> dict[str, list[tuple[dict, dict]]]:
    """Every method on every dataset: ``{label: [(results, extras) per seed]}``, ``n_seeds`` seeds on the
    real dataset and ``syn_seeds`` on each synthetic stream.

    Real dataset: the first seed chooses t* on validation and records Figure
    2's checkpoints; as soon as it ends, the other seeds start with its
    threshold (same data, other initialisations and samples). Synthetic
    streams: seed ``k`` draws its own stream (seed ``s.seed + k``), so the
    replicates vary the data too; t* is fixed (``syn_t_star``). Jobs run in
    ``s.workers`` processes.
    """
    cfg = train_config(s)
    syn_cfg = dataclasses.replace(cfg, lr=s.syn_lr)
    common = dict(n_neg_eval=s.n_neg_eval, val_rows=s.val_rows, test_rows=s.test_rows or None, device=s.device,
                  threads=s.threads, full_rows=s.full_rows or None)
    real = s.dataset
    t, t_plus, grid = threshold_plan(s, real)
    first = [SeedJob(real, datasets[real], cfg, seed=s.seed, t_star=t, t_star_plus=t_plus, grid=grid,
                     plus_grid=s.plus_grid, checkpoint_rows=s.checkpoint_rows, methods=METHODS, **common)]
    for label, methods in ((SYNTHETIC, SYN_METHODS), (CONTROL, CONTROL_METHODS)):
        if label not in datasets:
            continue
        for k in range(s.syn_seeds):
            data = datasets[label] if k == 0 else synthetic_stream(s, s.seed + k, control=label == CONTROL)
            first.append(SeedJob(label, data, syn_cfg, seed=s.seed + k, t_star=s.syn_t_star,
                                 t_star_plus=s.syn_t_star, methods=methods,
                                 checkpoint_rows=s.checkpoint_rows if k == 0 else None, **common))

    def rest(job: SeedJob, result: tuple) -> list[SeedJob]:
        if job.label != real or job.seed != s.seed:
            return []
        ex = result[1]
        return [SeedJob(real, job.data, cfg, seed=s.seed + k, t_star=ex["t_star"], t_star_plus=ex["t_star_plus"],
                        methods=METHODS, **common) for k in range(1, s.n_seeds)]

    out: dict[str, list] = {label: [None] * (s.n_seeds if label == real else s.syn_seeds) for label in datasets}
    for job, result in run_jobs(first, s.workers, then=rest):
        out[job.label][job.seed - s.seed] = result
    return out


def run_attribution(s: TTSSettings, data: Interactions) -> list[tuple[dict, dict]]:
    """2TS and 2TS-inf at the fixed ``s.attribution_t_star`` on the real dataset, ``s.attribution_seeds`` seeds.

    Validation may choose a t* at which no test user is active (on
    MovieLens-100K it picks the grid's top); this run fixes a smaller t*,
    set before any result is read and never chosen on test, so that "the
    split helps active users" and the drift figure have active users to read.
    Each seed's job matches the main run's of that seed (same data, seed and
    test candidates; seeds past ``n_seeds`` have no main-run twin, and the
    claims pair 2TS with 2TS-inf within this run only), with 2TS-inf's window
    capped at the same t*. Returns
    ``[(results, extras)]`` by seed, like one dataset of :func:`run_experiments`.
    """
    if s.attribution_t_star < 1:
        raise ValueError("the attribution run needs ATTRIBUTION_T_STAR >= 1")
    common = dict(n_neg_eval=s.n_neg_eval, val_rows=s.val_rows, test_rows=s.test_rows or None, device=s.device,
                  threads=s.threads, full_rows=s.full_rows or None)
    t = s.attribution_t_star
    jobs = [SeedJob(s.dataset, data, train_config(s), seed=s.seed + k, t_star=t, t_star_plus=t,
                    methods=("2TS", "2TS-inf"), **common) for k in range(s.attribution_seeds)]
    runs: list = [None] * s.attribution_seeds
    for job, result in run_jobs(jobs, s.workers):
        runs[job.seed - s.seed] = result
    return runs


def runs_frame(out: dict[str, list[tuple[dict, dict]]]) -> pd.DataFrame:
    """One row per (dataset, method, seed): test MRR, Recall@10, training seconds, epochs, t*."""
    rows = []
    for label, runs in out.items():
        for k, (results, extras) in enumerate(runs):
            for name, r in results.items():
                rows.append({"dataset": label, "method": name, "seed": k, **r.metrics,
                             "train_s": r.train_seconds, "epochs": extras["epochs"].get(name), "t_star": r.t_star})
    return pd.DataFrame(rows)


def paired_gap(runs: pd.DataFrame, dataset: str, a: str, b: str, metric: str = "mrr") -> tuple[float, float]:
    """Mean over seeds of ``metric(a) - metric(b)`` on ``dataset`` (same seed, same test candidates) and its
    standard error (0 with one seed)."""
    sel = runs[runs["dataset"] == dataset].pivot(index="seed", columns="method", values=metric)
    if a not in sel or b not in sel:
        raise KeyError(f"methods {a!r} and {b!r} must both be in the runs of {dataset!r}")
    diff = (sel[a] - sel[b]).to_numpy()
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
    return float(diff.mean()), se


def curves_frame(out: dict[str, list[tuple[dict, dict]]]) -> pd.DataFrame:
    """Figure 2's checkpoints of the first seed: (dataset, method, training seconds, test MRR)."""
    rows = [{"dataset": label, "method": name, "seconds": t, "mrr": m}
            for label, runs in out.items() for name, r in runs[0][0].items() for t, m in r.curve]
    return pd.DataFrame(rows)


def buckets_frame(out: dict[str, list[tuple[dict, dict]]], edges: dict[str, list[int]]) -> pd.DataFrame:
    """Figure 3: MRR per activity bucket and method, pooled over seeds (ranks of every test interaction)."""
    frames = []
    for label, runs in out.items():
        for name in runs[0][0]:
            ranks = torch.cat([res[name].ranks for res, _ in runs])
            T = np.concatenate([ex["test_users_T"] for _, ex in runs])
            f = activity_buckets(T, ranks, edges[label])
            frames.append(f.assign(dataset=label, method=name))
    return pd.concat(frames, ignore_index=True)


def segments_frame(out: dict[str, list[tuple[dict, dict]]], thresholds: dict[str, int]) -> pd.DataFrame:
    """MRR per (dataset, method, seed, segment), sampled and full-catalogue ranking.

    Segments of the test rows by the user's training interactions ``T``:
    ``T = 0`` (new users), ``1 <= T <= t*`` (inactive), ``T > t*`` (active)
    and ``all``. Full-catalogue MRR (``mrr_full``) covers the ``full_rows``
    subset. Rows pair across methods on the seed.
    """
    rows = []
    for label, runs in out.items():
        t = thresholds[label]
        for k, (res, ex) in enumerate(runs):
            T = ex["test_users_T"]
            segs = {"all": np.ones(len(T), bool), "T = 0": T == 0, "1 <= T <= t*": (T > 0) & (T <= t),
                    "T > t*": T > t}
            fT = ex.get("full_T")
            for name, r in res.items():
                rr = 1.0 / r.ranks.double().numpy()
                full = ex.get("full_ranks", {}).get(name)
                for seg, m in segs.items():
                    row = {"dataset": label, "method": name, "seed": k, "segment": seg, "rows": int(m.sum()),
                           "mrr": float(rr[m].mean()) if m.any() else np.nan}
                    if full is not None and fT is not None:
                        fm = {"all": np.ones(len(fT), bool), "T = 0": fT == 0,
                              "1 <= T <= t*": (fT > 0) & (fT <= t), "T > t*": fT > t}[seg]
                        row["mrr_full"] = float((1.0 / full.double().numpy())[fm].mean()) if fm.any() else np.nan
                    rows.append(row)
    return pd.DataFrame(rows)


def synthetic_ceilings(d: TTSData, stream: Interactions, n_neg_eval: int, seed: int):
    """What a model could reach on a synthetic stream's test set (the candidates of the run with ``seed``).

    Candidates are ranked by the generator's own logits ``v_i . q / tau + b_i``
    with ``q`` the true preference state of the interaction (``oracle``), the
    user's long-term part ``w p_u`` (``long-term taste``), the common mean ``w m``
    (``common mean``), or the item bias alone (``popularity``). Returns
    ``(summary per ceiling, ranks per ceiling, T of each test row)``.
    """
    gt = stream.ground_truth
    if gt is None or "state" not in gt:
        raise ValueError("synthetic_ceilings needs the ground truth of data.drifting_stream")
    es = eval_set(d, TEST, n_neg_eval, seed_everything(seed, set_global=False).child(1).rng)
    rows = np.lexsort((np.arange(len(stream)), stream.users))[es.positions]  # positions -> rows of stream.df
    V, b, tau = gt["item_vectors"], gt["item_bias"], gt["params"]["temperature"]
    w = gt["params"]["long_term_weight"]
    cand = V[es.candidates]
    prefs = {"oracle": gt["state"][rows], "long-term taste": w * gt["user_long"][stream.users[rows]],
             "common mean": np.broadcast_to(w * gt["common_mean"], (len(rows), V.shape[1])),
             "popularity": np.zeros((len(rows), V.shape[1]))}
    summary, ranks = {}, {}
    for name, q in prefs.items():
        scores = torch.as_tensor(np.einsum("nd,nkd->nk", q, cand) / tau + b[es.candidates])
        ranks[name] = ranks_from_scores(scores).numpy()
        summary[name] = summarise(torch.as_tensor(ranks[name]))
    return summary, ranks, es.n_train
