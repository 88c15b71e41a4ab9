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
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from rec_lib.models import MF, Popularity
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
    "TWO_GROUP",
    "INF",
    "full_catalogue_set",
    "speed_rotation",
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

METHODS = ("Popularity", "CCF", "SumPooling", "GRU4Rec", "2-GRU", "2TS-SingleStage", "2TS", "2TS-Plus", "2TS-inf")
#: methods with two GRUs split at a threshold (2TS-inf: t* = infinity, every user inactive)
TWO_GROUP = ("2-GRU", "2TS-SingleStage", "2TS", "2TS-Plus", "2TS-inf")
#: t* = infinity: no user is active
INF = 10**9


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
    if method == "Popularity":
        return ranks_from_scores(_masked(model.counts[torch.as_tensor(es.candidates)].float(), d, es))
    if method == "CCF":
        return ranks_from_scores(_masked(ccf_scores(model, d, es), d, es))
    if method in TWO_GROUP:
        active_len = cfg.max_len if method == "2-GRU" else cfg.k_last
        start = tts_window_start(d, t_star, active_len)
        fn = tts_state_fn(model, d.n_train, t_star)
    elif method in ("GRU4Rec", "SumPooling"):
        start = np.maximum(d.n_train - cfg.max_len, 0)
        fn = lambda u, i, n, p: model.states("seq", u, i, n, p)  # noqa: E731
    else:
        raise ValueError(f"unknown method {method!r}; methods: {METHODS}")
    table, bias = model.item_table()
    return ranks_from_scores(_masked(sequential_scores(d, es, start, fn,
                                                       lambda h, c: candidate_scores(h, table, c, bias),
                                                       device=device), d, es))


def _masked(scores: torch.Tensor, d: TTSData, es: EvalSet) -> torch.Tensor:
    """Full-catalogue sets (:func:`full_catalogue_set`): the user's training items are not competitors."""
    if not es.full:
        return scores
    n, k = es.candidates.shape
    seen = d.seen_train.contains(np.repeat(es.users, k - 1), es.candidates[:, 1:].ravel()).reshape(n, k - 1)
    scores = scores.clone()
    scores[:, 1:][torch.as_tensor(seen)] = -torch.inf
    return scores


def full_catalogue_set(d: TTSData, which: int, rng: np.random.Generator, max_rows: int | None = None) -> EvalSet:
    """Evaluation positions ranked against the whole catalogue (column 0 the true item, then every other item).

    The user's *training* items are removed from the competitors when scored
    (:func:`evaluate_model`); later positives of the same user stay (they are
    unknown at prediction time). ``max_rows`` keeps a uniform subset.
    """
    pos = d.positions(which)
    if max_rows is not None and max_rows < len(pos):
        pos = np.sort(rng.choice(pos, size=max_rows, replace=False))
    users = d.position_users(pos)
    true = d.seqs.items[pos]
    base = np.arange(d.n_items - 1)[None, :]
    others = base + (base >= true[:, None])
    return EvalSet(pos, users, np.concatenate([true[:, None], others], axis=1), d.n_train[users], full=True)


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
    if method in ("2TS", "2TS-Plus", "2TS-inf"):
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
                     device: torch.device | str = "cpu", inactive_len: int | None = None) -> tuple[torch.nn.Module, float]:
    """Build and train ``method`` (any of :data:`METHODS` but CCF); returns the model and training seconds.

    2TS / 2TS-Plus: stage 2 on ``training_windows(d, t*, K)`` with frozen
    stage-1 embeddings; 2TS-SingleStage: the same windows plus eq. 10, every
    parameter trained; 2-GRU: windows of ``max_len`` for active users;
    GRU4Rec, SumPooling: the last ``max_len`` training interactions of every user.
    """
    if method in ("2TS", "2TS-Plus", "2TS-SingleStage", "2TS-inf") and t_star is not None and cfg.k_last > max(t_star, 1):
        raise ValueError(f"K = {cfg.k_last} must not exceed t* = {t_star} (Section 3.2: K <= t*)")
    model = seeded_init(lambda: build_model(method, d, cfg, mf), seeds).to(device)
    if method in ("GRU4Rec", "SumPooling"):
        sets = training_windows(d, 0, cfg.max_len)
    else:
        if t_star is None:
            raise ValueError(f"{method} needs a threshold t*")
        sets = training_windows(d, t_star, cfg.max_len if method == "2-GRU" else cfg.k_last,
                                inactive_len=inactive_len)
    epochs = cfg.stage2_epochs if method in ("2TS", "2TS-Plus", "2TS-inf") else cfg.baseline_epochs
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
    full_rows: int | None = None,
    long_gru4rec: bool = True,
) -> tuple[dict[str, MethodResult], dict]:
    """Train and test every method in ``methods`` on ``d`` with one seed.

    Stage 1 (= CCF) trains up to ``cfg.stage1_epochs`` epochs with early
    stopping on validation MRR (``cfg.patience``); its best checkpoint is CCF
    *and* the start of 2TS, 2TS-Plus and 2TS-inf. Every sequential method trains
    with early stopping too (``cfg.min_epochs``; ``val_rows`` validation
    interactions drawn once). Each method ranks each test interaction against
    the same ``n_neg_eval`` sampled items; with ``full_rows``, also that many
    test interactions against the whole catalogue (``metrics["mrr_full"]``).
    ``t_star`` / ``t_star_plus`` fix the thresholds; ``t_star=None`` chooses
    2TS's on validation from ``grid``; 2TS-Plus gets its own choice when
    ``plus_grid``. 2TS-inf is 2TS with ``t* = infinity`` (every user
    inactive; its GRU trains on each user's last ``t*`` training interactions
    at most, the window of 2TS's inactive GRU, and predicts from the whole
    history). ``long_gru4rec``: GRU4Rec trains and predicts on windows of
    ``max(max_len, t*)`` interactions, as long as 2TS's inactive GRU.
    ``checkpoint_rows``: test MRR after every epoch for Figure 2.
    Returns the results and extras (models, validation tables, thresholds,
    drift per group, each test row's ``T``).
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {METHODS}")
    if t_star is None and not grid:
        raise ValueError("give t_star or a grid of thresholds to choose it on validation")
    es_test = eval_set(d, TEST, n_neg_eval, seeds.child(1).rng, max_rows=test_rows)
    es_val = eval_set(d, VAL, n_neg_eval, seeds.child(3).rng, max_rows=val_rows)
    ck = eval_set(d, TEST, n_neg_eval, seeds.child(2).rng, max_rows=checkpoint_rows) if checkpoint_rows else None
    es_full = full_catalogue_set(d, TEST, seeds.child(4).rng, full_rows) if full_rows else None
    results: dict[str, MethodResult] = {}
    extras: dict = {"models": {}, "epochs": {}, "val_mrr": {}, "full_T": None if es_full is None else es_full.n_train}

    def finish(name, model, seconds, mon, t=None, c=cfg):
        r = evaluate_model(name, model, d, es_test, c, t, device)
        m = summarise(r)
        if es_full is not None:
            rf = evaluate_model(name, model, d, es_full, c, t, device)
            m.update({"mrr_full": summarise(rf)["mrr"], "recall@10_full": summarise(rf)["recall@10"]})
            extras.setdefault("full_ranks", {})[name] = rf
        results[name] = MethodResult(name, r, m, seconds, list(mon.curve) if mon else [], t)
        extras["models"][name] = model
        extras["epochs"][name] = mon.best_epoch + 1 if mon else 0
        extras["val_mrr"][name] = mon.best if mon else float("nan")

    if "Popularity" in methods:
        t0 = time.perf_counter()
        pop = Popularity(d.n_users, d.n_items).fit(d.train.users, d.train.items)
        finish("Popularity", pop, time.perf_counter() - t0, None)

    # Stage 1 with early stopping; its best checkpoint is CCF and the start of 2TS.
    mon = EpochMonitor("CCF", d, cfg, es_val, None, cfg.patience, ck, device=device)
    mf, s1 = fit_stage1(d, cfg.dim, seeds.child(10), cfg.stage1_epochs, cfg.lr_stage1, cfg.n_neg, cfg.batch_size,
                        device, on_epoch=mon)
    mon.restore(mf)
    extras["stage1_epochs_run"] = len(mon.history)
    extras["stage1_history"] = list(mon.history)
    if "CCF" in methods:
        finish("CCF", mf, s1, mon)
    extras["stage1_seconds"] = s1

    if any(m in methods for m in TWO_GROUP) and t_star is None:
        t_star, extras["validation"] = choose_threshold(mf, d, grid, cfg, seeds.child(20), es_val, "2TS", device)
        if "2TS-Plus" in methods and t_star_plus is None and plus_grid:
            t_star_plus, extras["validation_plus"] = choose_threshold(mf, d, grid, cfg, seeds.child(21), es_val,
                                                                      "2TS-Plus", device)
    t_star_plus = t_star if t_star_plus is None else t_star_plus
    extras["t_star"], extras["t_star_plus"] = t_star, t_star_plus

    for k, name in enumerate(METHODS[2:]):
        if name not in methods:
            continue
        t = {"2TS-Plus": t_star_plus, "2TS-inf": INF}.get(name, t_star if name in TWO_GROUP else None)
        c = cfg
        if name == "GRU4Rec" and long_gru4rec and t_star is not None:
            c = dataclasses.replace(cfg, max_len=max(cfg.max_len, int(t_star)))
        offset = s1 if name in ("2TS", "2TS-Plus", "2TS-inf") else 0.0
        mon = EpochMonitor(name, d, c, es_val, t, cfg.patience, ck, offset, device, cfg.min_epochs)
        cap = int(t_star) if name == "2TS-inf" and t_star is not None else None
        model, sec = train_sequential(name, d, c, seeds.child(30 + k), t, mf, mon, device, inactive_len=cap)
        finish(name, model, sec + offset, mon, t, c)
    extras["test_users_T"] = d.n_train[es_test.users]
    from rec_lib.two_time_scale.stream import padded_share

    extras["padded_share"] = padded_share(d, n_neg_eval)
    if "2TS" in methods:
        extras["drift"] = embedding_drift(extras["models"]["2TS"], d, t_star, cfg.k_last)
    return results, extras


def speed_rotation(d: TTSData, cfg: TrainConfig, seeds: Seeds, t_star: int, rounds: int = 4,
                   device: torch.device | str = "cpu") -> pd.DataFrame:
    """Seconds of one training epoch of stage 1, of 2TS's stage 2 and of 2TS-SingleStage, in rotation.

    Round ``r`` runs one epoch of each (stage 1, stage 2, single stage), one
    after the other in this process, so machine load hits the three alike;
    a warm-up round is not recorded. Returns one row per round.
    """
    mf, _ = fit_stage1(d, cfg.dim, seeds.child(1), 1, cfg.lr_stage1, cfg.n_neg, cfg.batch_size, device)
    two = build_model("2TS", d, cfg, mf).to(device)
    single = build_model("2TS-SingleStage", d, cfg).to(device)
    sets = training_windows(d, t_star, cfg.k_last)
    cf = (d.train.users, d.train.items)
    rows = []
    for r in range(rounds + 1):
        _, t1 = fit_stage1(d, cfg.dim, seeds.child(2 + r), 1, cfg.lr_stage1, cfg.n_neg, cfg.batch_size, device)
        _, t2 = fit_windows(two, sets, d.seen_train, seeds.child(20 + r), 1, cfg.lr, cfg.n_neg, cfg.seq_batch,
                            device, desc="2TS")
        _, ts = fit_windows(single, sets, d.seen_train, seeds.child(40 + r), 1, cfg.lr, cfg.n_neg, cfg.seq_batch,
                            device, cf=cf, cf_batch_size=cfg.batch_size, desc="2TS-SingleStage")
        if r:
            rows.append({"round": r, "stage1_s": t1, "stage2_s": t2, "single_stage_s": ts})
    return pd.DataFrame(rows)


@torch.no_grad()
def embedding_drift(model: TwoTimeScale, d: TTSData, t_star: int, k_last: int, steps: int = 15,
                    which: int = TEST) -> pd.DataFrame:
    """Figure 1/4 on new interactions: mean ``||phi^{t+1} - phi^t||`` per post-training step, active vs inactive.

    Each user with interactions in split ``which`` is run through its group's
    GRU from its initial state (inactive: ``psi``, then its ``T <= t*``
    training interactions; active: ``phi_u``, then its last ``K`` training
    interactions), silently: only the steps on interactions *after* training
    (positions ``T, T+1, ...``, up to ``steps`` of them) are recorded, so no
    step re-reads what ``phi_u`` was trained on. Returns one row per (group,
    step) with the mean and standard error of the step's norm, absolute and
    relative to ``||phi^t||``, and the number of users.
    """
    users = np.unique(d.position_users(d.positions(which)))
    start = tts_window_start(d, t_star, k_last)[users]
    rows = d.user_row[users]
    T = d.n_train[users]
    end = np.minimum(d.seqs.lengths[rows], T + steps)
    act = active_mask(T, t_star)
    out = []
    for group, mask in (("inactive", ~act), ("active", act)):
        if not mask.any():
            continue
        items, lengths = windows(d.seqs, rows[mask], start[mask], end[mask], d.n_items)
        traj = model.trajectory("act" if group == "active" else "in", torch.as_tensor(users[mask]), items, lengths)
        step = (traj[:, 1:] - traj[:, :-1]).norm(dim=-1)
        rel = step / traj[:, :-1].norm(dim=-1).clamp(min=1e-12)
        col = torch.arange(items.shape[1])[None, :]
        valid = col < lengths[:, None]
        new = torch.as_tensor(start[mask] - T[mask])[:, None] + col  # 0 = first post-training interaction
        for t in range(steps):
            v = valid & (new == t)
            if v.sum() < 2:
                continue
            a, r = step[v].numpy(), rel[v].numpy()
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
    full_rows: int | None = None
    long_gru4rec: bool = True


def run_job(job: SeedJob) -> tuple[dict[str, MethodResult], dict]:
    """Run one :class:`SeedJob` (seeded from ``job.seed`` alone, so the same numbers in any process)."""
    set_threads(job.threads or None)
    cpu0 = time.process_time()
    seeds = seed_everything(job.seed)
    d = prepare(job.data, name=job.label)
    results, extras = run_seed(d, job.cfg, seeds, job.t_star, job.t_star_plus, job.grid, job.plus_grid, job.methods,
                               job.n_neg_eval, job.val_rows, job.checkpoint_rows, resolve_device(job.device),
                               test_rows=job.test_rows, full_rows=job.full_rows, long_gru4rec=job.long_gru4rec)
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
