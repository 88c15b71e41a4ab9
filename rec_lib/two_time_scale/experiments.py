"""Running 2TS and its baselines on one dataset and seed: what Tables 1 and 3 and Figures 2-4 need.

:func:`run_seed` trains every method of :data:`METHODS` on a :class:`TTSData`,
ranks each test interaction against the same 499 sampled negatives for all
methods, and returns their ranks, metrics, training seconds and (optionally)
checkpoint curves of test MRR against training time (Figure 2). The 2TS
threshold ``t*`` is chosen on the validation interactions
(:func:`choose_threshold`) unless given. Stage 1 is trained once per seed:
it *is* the CCF baseline, and 2TS, 2TS-Plus start from it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from rec_lib.models import MF
from rec_lib.two_time_scale.baselines import GRU4RecStates, SumPooling, ccf_scores
from rec_lib.two_time_scale.model import (
    TwoTimeScale,
    active_mask,
    fit_stage1,
    fit_windows,
    seeded_init,
    training_windows,
)
from rec_lib.two_time_scale.protocol import (
    TEST,
    VAL,
    EvalSet,
    TTSData,
    candidate_scores,
    eval_set,
    prepare,
    ranks_from_scores,
    sequential_scores,
    summarise,
    windows,
)
from rec_lib.data import Interactions
from rec_lib.utils import Seeds, resolve_device, seed_everything, set_threads

__all__ = [
    "METHODS",
    "TrainConfig",
    "MethodResult",
    "tts_state_fn",
    "tts_window_start",
    "evaluate_model",
    "EpochMonitor",
    "build_model",
    "train_sequential",
    "choose_threshold",
    "run_seed",
    "embedding_drift",
    "SeedJob",
    "run_job",
    "run_jobs",
]

METHODS = ("CCF", "SumPooling", "GRU4Rec", "2-GRU", "2TS-SingleStage", "2TS", "2TS-Plus")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters shared by the methods (Appendix C: d = 64, K in {10, 20}, Adam)."""

    dim: int = 32
    n_neg: int = 10  # p, the sampled items of each offer set (eq. 10)
    k_last: int = 10  # K
    max_len: int = 50  # history window of GRU4Rec, SumPooling, 2-GRU's active users
    stage1_epochs: int = 20
    stage2_epochs: int = 20
    baseline_epochs: int = 20
    lr_stage1: float = 5e-3
    lr: float = 5e-3
    batch_size: int = 1024  # interactions (stage 1)
    seq_batch: int = 128  # users (sequence models)
    patience: int = 3  # early stopping on validation MRR
    min_epochs: int = 10


@dataclass
class MethodResult:
    """One method's test ranks and metrics, training seconds, and checkpoint curve (seconds, test MRR)."""

    method: str
    ranks: torch.Tensor
    metrics: dict[str, float]
    train_seconds: float
    curve: list[tuple[float, float]] = field(default_factory=list)
    t_star: int | None = None


def tts_window_start(d: TTSData, t_star: int, active_len: int) -> np.ndarray:
    """Per user, where its evaluation window starts: ``T - active_len`` for active users, 0 otherwise."""
    act = active_mask(d.n_train, t_star)
    return np.where(act, np.maximum(d.n_train - active_len, 0), 0)


def tts_state_fn(model: TwoTimeScale, n_train: np.ndarray, t_star: int) -> Callable:
    """A ``state_fn`` for :func:`sequential_scores` that sends each user to its group's GRU."""

    def fn(users, items, lengths, prev):
        act = torch.as_tensor(active_mask(n_train[users.cpu().numpy()], t_star))
        out = torch.zeros(*items.shape, model.dim, device=items.device)
        for group, mask in (("in", ~act), ("act", act)):
            idx = torch.nonzero(mask).squeeze(1)
            if len(idx):
                L = int(lengths[idx].max())
                out[idx.to(items.device), :L] = model.states(group, users[idx.to(users.device)], items[idx.to(items.device), :L],
                                                            lengths[idx], prev[idx.to(prev.device)])
        return out

    return fn


def evaluate_model(method: str, model, d: TTSData, es: EvalSet, cfg: TrainConfig, t_star: int | None = None,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """Ranks of ``es``'s true items under ``method``'s trained ``model``."""
    if method == "CCF":
        return ranks_from_scores(ccf_scores(model, d, es))
    if method in ("2TS", "2TS-Plus", "2TS-SingleStage", "2-GRU"):
        active_len = cfg.max_len if method == "2-GRU" else cfg.k_last
        start = tts_window_start(d, t_star, active_len)
        fn = tts_state_fn(model, d.n_train, t_star)
    elif method in ("GRU4Rec", "SumPooling"):
        start = np.maximum(d.n_train - cfg.max_len, 0)
        fn = lambda u, i, n, p: model.states("seq", u, i, n, p)  # noqa: E731
    else:
        raise ValueError(f"unknown method {method!r}; methods: {METHODS}")
    table, bias = model.item_table()
    return ranks_from_scores(sequential_scores(d, es, start, fn, lambda h, c: candidate_scores(h, table, c, bias),
                                               device=device))


class EpochMonitor:
    """An ``on_epoch`` callback: early stopping on validation MRR, and an optional checkpoint curve.

    After each epoch it evaluates ``method``'s model on ``es_val``; the best
    weights so far are kept (:meth:`restore` puts them back) and training
    stops after ``patience`` epochs without improvement (``patience=None``:
    never), but not before ``min_epochs`` (recurrent models plateau early). With ``es_curve`` it also records ``(offset + training seconds,
    MRR on es_curve)`` in :attr:`curve` (Figure 2). Evaluation time is not
    training time.
    """

    def __init__(self, method: str, d: TTSData, cfg: TrainConfig, es_val: EvalSet, t_star: int | None = None,
                 patience: int | None = 3, es_curve: EvalSet | None = None, offset: float = 0.0,
                 device: torch.device | str = "cpu", min_epochs: int = 1):
        self.method, self.d, self.cfg, self.es_val, self.t_star = method, d, cfg, es_val, t_star
        self.min_epochs = min_epochs
        self.patience, self.es_curve, self.offset, self.device = patience, es_curve, offset, device
        self.best, self.best_epoch, self.best_state, self.bad = -np.inf, -1, None, 0
        self.curve: list[tuple[float, float]] = []
        self.history: list[float] = []

    def _mrr(self, model, es: EvalSet) -> float:
        return summarise(evaluate_model(self.method, model, self.d, es, self.cfg, self.t_star, self.device))["mrr"]

    def __call__(self, model, epoch: int, seconds: float) -> bool:
        if self.es_curve is not None:
            self.curve.append((self.offset + seconds, self._mrr(model, self.es_curve)))
        m = self._mrr(model, self.es_val)
        self.history.append(m)
        if m > self.best:
            self.best, self.best_epoch, self.bad = m, epoch, 0
            self.best_state = copy.deepcopy(model.state_dict())
        else:
            self.bad += 1
        return self.patience is not None and self.bad >= self.patience and epoch + 1 >= self.min_epochs

    def restore(self, model) -> None:
        """Load the best weights seen (no-op before the first epoch)."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)


def build_model(method: str, d: TTSData, cfg: TrainConfig, mf: MF | None = None) -> torch.nn.Module:
    """An untrained model of ``method`` (2TS and 2TS-Plus start from stage-1 ``mf``)."""
    if method in ("2TS", "2TS-Plus"):
        if mf is None:
            raise ValueError(f"{method} needs the stage-1 model mf")
        return TwoTimeScale.from_stage1(mf, plus=method == "2TS-Plus")
    if method == "2TS-SingleStage":
        return TwoTimeScale(d.n_users, d.n_items, cfg.dim)
    if method == "2-GRU":
        return TwoTimeScale(d.n_users, d.n_items, cfg.dim, active_init="learned")
    if method == "GRU4Rec":
        return GRU4RecStates(d.n_items, cfg.dim)
    if method == "SumPooling":
        return SumPooling(d.n_items, cfg.dim)
    raise ValueError(f"unknown sequential method {method!r}; methods: {METHODS[1:]}")


def train_sequential(method: str, d: TTSData, cfg: TrainConfig, seeds: Seeds, t_star: int | None = None,
                     mf: MF | None = None, monitor: EpochMonitor | None = None,
                     device: torch.device | str = "cpu") -> tuple[torch.nn.Module, float]:
    """Build and train ``method`` (any of :data:`METHODS` but CCF); returns the model and training seconds.

    2TS / 2TS-Plus: stage 2 on ``training_windows(d, t*, K)`` with frozen
    stage-1 embeddings; 2TS-SingleStage: the same windows plus eq. 10, every
    parameter trained; 2-GRU: windows of ``max_len`` for active users;
    GRU4Rec, SumPooling: the last ``max_len`` training interactions of every user.
    """
    if method in ("2TS", "2TS-Plus", "2TS-SingleStage") and t_star is not None and cfg.k_last > max(t_star, 1):
        raise ValueError(f"K = {cfg.k_last} must not exceed t* = {t_star} (Section 3.2: K <= t*)")
    model = seeded_init(lambda: build_model(method, d, cfg, mf), seeds).to(device)
    if method in ("GRU4Rec", "SumPooling"):
        sets = training_windows(d, 0, cfg.max_len)
    else:
        if t_star is None:
            raise ValueError(f"{method} needs a threshold t*")
        sets = training_windows(d, t_star, cfg.max_len if method == "2-GRU" else cfg.k_last)
    epochs = cfg.stage2_epochs if method in ("2TS", "2TS-Plus") else cfg.baseline_epochs
    cf = (d.train.users, d.train.items) if method == "2TS-SingleStage" else None
    _, seconds = fit_windows(model, sets, d.seen_train, seeds, epochs, cfg.lr, cfg.n_neg, cfg.seq_batch, device,
                             cf=cf, cf_batch_size=cfg.batch_size, on_epoch=monitor, desc=method)
    if monitor is not None:
        monitor.restore(model)
    return model, seconds


def choose_threshold(mf: MF, d: TTSData, grid: Sequence[int], cfg: TrainConfig, seeds: Seeds, es_val: EvalSet,
                     method: str = "2TS", device: torch.device | str = "cpu"):
    """Pick ``t*`` from ``grid`` by validation MRR (stage 2 trained, with early stopping, once per value).

    Returns ``(best t*, table of validation MRR, share of active users and epochs per t*)``.
    """
    if not grid:
        raise ValueError("the threshold grid is empty")
    rows = []
    for k, t in enumerate(grid):
        mon = EpochMonitor(method, d, cfg, es_val, int(t), cfg.patience, device=device, min_epochs=cfg.min_epochs)
        train_sequential(method, d, cfg, seeds.child(k), int(t), mf, mon, device)
        rows.append({"t_star": int(t), "share_active": float(active_mask(d.n_train[d.n_train > 0], int(t)).mean()),
                     "val_mrr": mon.best, "epochs": mon.best_epoch + 1})
    table = pd.DataFrame(rows).set_index("t_star")
    return int(table["val_mrr"].idxmax()), table


def run_seed(
    d: TTSData,
    cfg: TrainConfig,
    seeds: Seeds,
    t_star: int | None = None,
    t_star_plus: int | None = None,
    grid: Sequence[int] = (),
    plus_grid: bool = False,
    methods: Sequence[str] = METHODS,
    n_neg_eval: int = 499,
    val_rows: int | None = None,
    checkpoint_rows: int | None = None,
    device: torch.device | str = "cpu",
    test_rows: int | None = None,
) -> tuple[dict[str, MethodResult], dict]:
    """Train and test every method in ``methods`` on ``d`` with one seed.

    Every sequential method trains with early stopping on the validation MRR
    (``cfg.patience``, ``cfg.min_epochs``; ``val_rows`` validation interactions drawn once);
    stage 1 runs ``cfg.stage1_epochs`` epochs, CCF being its best epoch on
    validation. Each method then ranks each test interaction against the same ``n_neg_eval`` sampled
    items. ``t_star`` / ``t_star_plus`` fix the thresholds; ``t_star=None``
    chooses 2TS's on validation from ``grid``; 2TS-Plus gets its own choice
    when ``plus_grid`` (else it reuses 2TS's threshold). ``checkpoint_rows``:
    evaluate every epoch on that many test interactions for Figure 2;
    ``test_rows``: rank only a random subset of that many test interactions.
    Returns the results and extras (models, validation tables, thresholds).
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {METHODS}")
    if t_star is None and not grid:
        raise ValueError("give t_star or a grid of thresholds to choose it on validation")
    es_test = eval_set(d, TEST, n_neg_eval, seeds.child(1).rng, max_rows=test_rows)
    es_val = eval_set(d, VAL, n_neg_eval, seeds.child(3).rng, max_rows=val_rows)
    ck = eval_set(d, TEST, n_neg_eval, seeds.child(2).rng, max_rows=checkpoint_rows) if checkpoint_rows else None
    results: dict[str, MethodResult] = {}
    extras: dict = {"models": {}, "epochs": {}, "val_mrr": {}}

    def finish(name, model, seconds, mon, t=None):
        r = evaluate_model(name, model, d, es_test, cfg, t, device)
        results[name] = MethodResult(name, r, summarise(r), seconds, list(mon.curve), t)
        extras["models"][name], extras["epochs"][name], extras["val_mrr"][name] = model, mon.best_epoch + 1, mon.best

    # Stage 1 runs its fixed number of epochs (2TS starts from the last one); the CCF baseline is the
    # stage-1 checkpoint with the best validation MRR.
    mon = EpochMonitor("CCF", d, cfg, es_val, None, None, ck, device=device)
    mf, s1 = fit_stage1(d, cfg.dim, seeds.child(10), cfg.stage1_epochs, cfg.lr_stage1, cfg.n_neg, cfg.batch_size,
                        device, on_epoch=mon)
    ccf = copy.deepcopy(mf)
    mon.restore(ccf)
    finish("CCF", ccf, s1, mon)
    extras["stage1_seconds"] = s1

    if any(m in methods for m in METHODS[3:]) and t_star is None:
        t_star, extras["validation"] = choose_threshold(mf, d, grid, cfg, seeds.child(20), es_val, "2TS", device)
        if "2TS-Plus" in methods and t_star_plus is None and plus_grid:
            t_star_plus, extras["validation_plus"] = choose_threshold(mf, d, grid, cfg, seeds.child(21), es_val,
                                                                      "2TS-Plus", device)
    t_star_plus = t_star if t_star_plus is None else t_star_plus
    extras["t_star"], extras["t_star_plus"] = t_star, t_star_plus

    for k, name in enumerate(METHODS[1:]):
        if name not in methods:
            continue
        t = t_star_plus if name == "2TS-Plus" else (t_star if name in METHODS[3:] else None)
        offset = s1 if name in ("2TS", "2TS-Plus") else 0.0
        mon = EpochMonitor(name, d, cfg, es_val, t, cfg.patience, ck, offset, device, cfg.min_epochs)
        model, sec = train_sequential(name, d, cfg, seeds.child(30 + k), t, mf, mon, device)
        finish(name, model, sec + offset, mon, t)
    extras["test_users_T"] = d.n_train[es_test.users]
    return results, extras


@torch.no_grad()
def embedding_drift(model: TwoTimeScale, d: TTSData, t_star: int, k_last: int, steps: int = 15,
                    which: int = TEST) -> pd.DataFrame:
    """Figure 1/4: mean ``||phi^{t+1} - phi^t||`` of the learned GRUs, per step, active vs inactive users.

    Each user with interactions in split ``which`` is run through its group's
    GRU over its evaluation window (inactive: from ``psi`` over its whole
    sequence; active: from ``phi_u`` over its last ``K`` training
    interactions and what follows), for up to ``steps`` steps. Returns one row
    per (group, step) with the mean and standard error of the step's norm,
    absolute and relative to ``||phi^t||``, and the number of users.
    """
    users = np.unique(d.position_users(d.positions(which)))
    start = tts_window_start(d, t_star, k_last)[users]
    rows = d.user_row[users]
    end = np.minimum(d.seqs.lengths[rows], start + steps)
    act = active_mask(d.n_train[users], t_star)
    out = []
    for group, mask in (("inactive", ~act), ("active", act)):
        if not mask.any():
            continue
        items, lengths = windows(d.seqs, rows[mask], start[mask], end[mask], d.n_items)
        traj = model.trajectory("act" if group == "active" else "in", torch.as_tensor(users[mask]), items, lengths)
        step = (traj[:, 1:] - traj[:, :-1]).norm(dim=-1)
        rel = step / traj[:, :-1].norm(dim=-1).clamp(min=1e-12)
        valid = torch.arange(items.shape[1])[None, :] < lengths[:, None]
        for t in range(items.shape[1]):
            v = valid[:, t]
            if v.sum() < 2:
                continue
            a, r = step[v, t].numpy(), rel[v, t].numpy()
            out.append({"group": group, "step": t + 1, "drift": a.mean(), "drift_se": a.std(ddof=1) / np.sqrt(len(a)),
                        "relative": r.mean(), "users": int(v.sum())})
    return pd.DataFrame(out)



@dataclass(frozen=True)
class SeedJob:
    """One (dataset, seed) run of :func:`run_seed`, picklable so it can run in another process."""

    label: str
    data: Interactions
    cfg: TrainConfig
    seed: int
    t_star: int | None = None
    t_star_plus: int | None = None
    grid: tuple[int, ...] = ()
    plus_grid: bool = False
    methods: tuple[str, ...] = METHODS
    n_neg_eval: int = 499
    val_rows: int | None = None
    test_rows: int | None = None
    checkpoint_rows: int | None = None
    keep_models: bool = False
    device: str = "cpu"
    threads: int = 1


def run_job(job: SeedJob) -> tuple[dict[str, MethodResult], dict]:
    """Run one :class:`SeedJob` (seeded from ``job.seed`` alone, so the same numbers in any process)."""
    set_threads(job.threads or None)
    cpu0 = time.process_time()
    seeds = seed_everything(job.seed)
    d = prepare(job.data, name=job.label)
    results, extras = run_seed(d, job.cfg, seeds, job.t_star, job.t_star_plus, job.grid, job.plus_grid, job.methods,
                               job.n_neg_eval, job.val_rows, job.checkpoint_rows, resolve_device(job.device),
                               test_rows=job.test_rows)
    if not job.keep_models:
        extras.pop("models")
    else:
        extras["models"] = {k: m.cpu() for k, m in extras["models"].items()}
    for r in results.values():
        r.ranks = r.ranks.cpu()
    extras["cpu_s"] = time.process_time() - cpu0
    return results, extras


def run_jobs(jobs: Sequence[SeedJob], workers: int = 1,
             then: Callable[[SeedJob, tuple], Sequence[SeedJob]] | None = None) -> list[tuple[SeedJob, tuple]]:
    """:func:`run_job` over ``jobs``, in ``workers`` processes (``spawn``) when ``workers > 1``.

    ``then(job, result)`` may return follow-up jobs (e.g. the other seeds of a
    dataset, once its first seed has chosen the threshold); they are started as
    soon as their parent finishes, so the workers stay busy. Returns
    ``(job, result)`` pairs in completion order. Jobs are seeded by their own
    ``seed`` only, so the results do not depend on ``workers``.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    done: list[tuple[SeedJob, tuple]] = []
    if workers == 1:
        queue = list(jobs)
        while queue:
            job = queue.pop(0)
            done.append((job, run_job(job)))
            queue += list(then(job, done[-1][1])) if then else []
        return done
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        pending = {pool.submit(run_job, j): j for j in jobs}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                job = pending.pop(f)
                done.append((job, f.result()))
                for nxt in (then(job, done[-1][1]) if then else []):
                    pending[pool.submit(run_job, nxt)] = nxt
    return done
