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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from rec_lib.models import MF
from rec_lib.two_time_scale.baselines import GRU4RecStates, SumPooling, ccf_scores
from rec_lib.two_time_scale.model import TwoTimeScale, active_mask, fit_stage1, fit_windows, training_windows
from rec_lib.two_time_scale.protocol import (
    TEST,
    VAL,
    EvalSet,
    TTSData,
    eval_set,
    ranks_from_scores,
    sequential_scores,
    summarise,
    windows,
)
from rec_lib.utils import Seeds

__all__ = [
    "METHODS",
    "TrainConfig",
    "MethodResult",
    "tts_state_fn",
    "tts_window_start",
    "evaluate_model",
    "fit_two_time_scale",
    "choose_threshold",
    "run_seed",
    "embedding_drift",
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
    return ranks_from_scores(sequential_scores(d, es, start, fn, model.score, device=device))


def _checkpointer(method, d, es, cfg, t_star, device, curve, offset=0.0):
    """An ``on_epoch(model, epoch, seconds)`` that appends ``(offset + seconds, test MRR)`` to ``curve``."""
    if es is None:
        return None

    def on_epoch(model, epoch, seconds):
        r = evaluate_model(method, model, d, es, cfg, t_star, device)
        curve.append((offset + seconds, summarise(r)["mrr"]))

    return on_epoch


def fit_two_time_scale(mf: MF, d: TTSData, t_star: int, cfg: TrainConfig, seeds: Seeds, plus: bool = False,
                       device: torch.device | str = "cpu", checkpoints: EvalSet | None = None,
                       offset: float = 0.0) -> tuple[TwoTimeScale, float, list]:
    """Stage 2 of 2TS (or 2TS-Plus) from stage-1 ``mf``: returns the model, training seconds and curve."""
    if cfg.k_last > max(t_star, 1):
        raise ValueError(f"K = {cfg.k_last} must not exceed t* = {t_star} (Section 3.2: K <= t*)")
    model = TwoTimeScale.from_stage1(mf, plus=plus)
    curve: list = []
    cb = _checkpointer("2TS", d, checkpoints, cfg, t_star, device, curve, offset)
    sets = training_windows(d, t_star, cfg.k_last)
    _, seconds = fit_windows(model, sets, d.seen_train, seeds, cfg.stage2_epochs, cfg.lr, cfg.n_neg, cfg.seq_batch,
                             device, on_epoch=cb, desc="2TS-Plus stage 2" if plus else "2TS stage 2")
    return model, seconds, curve


def choose_threshold(mf: MF, d: TTSData, grid: Sequence[int], cfg: TrainConfig, seeds: Seeds, es_val: EvalSet,
                     plus: bool = False, device: torch.device | str = "cpu"):
    """Pick ``t*`` from ``grid`` by validation MRR (stage 2 trained once per value).

    Returns ``(best t*, its model, its training seconds, table of validation metrics per t*)``.
    """
    if not grid:
        raise ValueError("the threshold grid is empty")
    rows, best = [], None
    for k, t in enumerate(grid):
        model, sec, _ = fit_two_time_scale(mf, d, int(t), cfg, seeds.child(100 + k), plus=plus, device=device)
        m = summarise(evaluate_model("2TS", model, d, es_val, cfg, int(t), device))
        rows.append({"t_star": int(t), "share_active": float(active_mask(d.n_train[d.n_train > 0], int(t)).mean()),
                     **{f"val_{k2}": v for k2, v in m.items()}})
        if best is None or m["mrr"] > best[0]:
            best = (m["mrr"], int(t), model, sec)
    return best[1], best[2], best[3], pd.DataFrame(rows).set_index("t_star")


def run_seed(
    d: TTSData,
    cfg: TrainConfig,
    seeds: Seeds,
    t_star: int | None = None,
    t_star_plus: int | None = None,
    grid: Sequence[int] = (),
    methods: Sequence[str] = METHODS,
    n_neg_eval: int = 499,
    checkpoint_rows: int | None = None,
    device: torch.device | str = "cpu",
) -> tuple[dict[str, MethodResult], dict]:
    """Train and test every method in ``methods`` on ``d`` with one seed.

    ``t_star`` / ``t_star_plus`` fix the thresholds; ``None`` chooses them on
    validation from ``grid`` (2TS-Plus reuses 2TS's choice when its own is
    ``None`` and ``grid`` is empty of it). ``checkpoint_rows``: evaluate every
    epoch on that many test interactions for Figure 2. Returns the results
    and extras (the models, the validation table, the chosen thresholds).
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {METHODS}")
    if t_star is None and not grid:
        raise ValueError("give t_star or a grid of thresholds to choose it on validation")
    es_test = eval_set(d, TEST, n_neg_eval, seeds.child(1).rng)
    ck = eval_set(d, TEST, n_neg_eval, seeds.child(2).rng, max_rows=checkpoint_rows) if checkpoint_rows else None
    results: dict[str, MethodResult] = {}
    extras: dict = {"models": {}}

    def finish(name, model, seconds, curve, t=None):
        r = evaluate_model(name, model, d, es_test, cfg, t, device)
        results[name] = MethodResult(name, r, summarise(r), seconds, curve, t)
        extras["models"][name] = model

    # Stage 1 = CCF.
    ccf_curve: list = []
    mf, s1 = fit_stage1(d, cfg.dim, seeds.child(10), cfg.stage1_epochs, cfg.lr_stage1, cfg.n_neg, cfg.batch_size,
                        device, on_epoch=_checkpointer("CCF", d, ck, cfg, None, device, ccf_curve))
    finish("CCF", mf, s1, ccf_curve)
    extras["stage1_seconds"] = s1

    needs_tts = any(m in methods for m in ("2TS", "2TS-Plus", "2TS-SingleStage", "2-GRU"))
    if needs_tts and t_star is None:
        es_val = eval_set(d, VAL, n_neg_eval, seeds.child(3).rng)
        t_star, _, _, table = choose_threshold(mf, d, grid, cfg, seeds.child(20), es_val, device=device)
        extras["validation"] = table
        if "2TS-Plus" in methods and t_star_plus is None:
            t_star_plus, _, _, table_plus = choose_threshold(mf, d, grid, cfg, seeds.child(21), es_val, plus=True,
                                                             device=device)
            extras["validation_plus"] = table_plus
    t_star_plus = t_star if t_star_plus is None else t_star_plus
    extras["t_star"], extras["t_star_plus"] = t_star, t_star_plus

    if "2TS" in methods:
        model, s2, curve = fit_two_time_scale(mf, d, t_star, cfg, seeds.child(30), device=device, checkpoints=ck,
                                              offset=s1)
        finish("2TS", model, s1 + s2, curve, t_star)
    if "2TS-Plus" in methods:
        model, s2, _ = fit_two_time_scale(mf, d, t_star_plus, cfg, seeds.child(31), plus=True, device=device)
        finish("2TS-Plus", model, s1 + s2, [], t_star_plus)
    if "2TS-SingleStage" in methods:
        model = TwoTimeScale(d.n_users, d.n_items, cfg.dim).to(device)
        curve: list = []
        cb = _checkpointer("2TS-SingleStage", d, ck, cfg, t_star, device, curve)
        _, sec = fit_windows(model, training_windows(d, t_star, cfg.k_last), d.seen_train, seeds.child(40),
                             cfg.baseline_epochs, cfg.lr, cfg.n_neg, cfg.seq_batch, device,
                             cf=(d.train.users, d.train.items), cf_batch_size=cfg.batch_size, on_epoch=cb,
                             desc="2TS-SingleStage")
        finish("2TS-SingleStage", model, sec, curve, t_star)
    if "2-GRU" in methods:
        model = TwoTimeScale(d.n_users, d.n_items, cfg.dim, active_init="learned").to(device)
        curve = []
        cb = _checkpointer("2-GRU", d, ck, cfg, t_star, device, curve)
        _, sec = fit_windows(model, training_windows(d, t_star, cfg.max_len), d.seen_train, seeds.child(50),
                             cfg.baseline_epochs, cfg.lr, cfg.n_neg, cfg.seq_batch, device, on_epoch=cb, desc="2-GRU")
        finish("2-GRU", model, sec, curve, t_star)
    for name, k, cls in (("GRU4Rec", 60, GRU4RecStates), ("SumPooling", 70, SumPooling)):
        if name not in methods:
            continue
        model = cls(d.n_items, cfg.dim).to(device)
        curve = []
        cb = _checkpointer(name, d, ck, cfg, None, device, curve)
        _, sec = fit_windows(model, training_windows(d, 0, cfg.max_len), d.seen_train, seeds.child(k),
                             cfg.baseline_epochs, cfg.lr, cfg.n_neg, cfg.seq_batch, device, on_epoch=cb, desc=name)
        finish(name, model, sec, curve)
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

