"""DiPS's protocol: settings and presets, data preparation, and the grid of Tables 2-4.

Protocol (DiPS, Experimental Results): users split 60/20/20 at random (a new
split per repetition); each user's interactions in time order. Explicit:
ratings, RMSE. Implicit: ratings >= 4 as interactions, 20-core, Recall@20 and
MRR@20 ranked among all items. ``K in {2, 4, 8}``, ``tau in {1, 4}``.

The grid runs, for each setting and repetition, one *pretraining* of the base
model with reservoir sketches, then for each ``(K, tau)`` and each method a
fine-tuning of the base model with the method's own sketches (DiPS and
DiPS@1 learn their policy from scratch in it), model selection on the
validation users, and the test evaluation. Tasks run in ``workers`` processes.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import time
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from rec_lib import data as rdata
from rec_lib.config import BaseSettings, ChapterSpec, SettingsError
from rec_lib.sketching.policy import SketchPolicy
from rec_lib.sketching.training import (METHODS, SequenceBatch, SketchConfig, evaluate_sketching, make_base_model,
                                        train_sketching)
from rec_lib.utils import progress, seed_everything, set_threads

__all__ = ["DiPSSettings", "PRESETS", "CHAPTER", "check_datasets", "SketchData", "prepare_data", "truncate_sequences", "run_grid",
           "GridResult", "sketch_config", "rebuild"]

SETTINGS_KINDS = ("explicit", "implicit")


@dataclass(frozen=True)
class DiPSSettings(BaseSettings):
    """Knobs of the DiPS chapter. ``dataset`` is the explicit-feedback dataset, ``implicit_dataset`` the other."""

    dataset: str = "ml-100k"
    implicit_dataset: str = "ml-100k"
    implicit_threshold: float = 4.0  # rating >= threshold is an interaction (when the data has ratings)
    core: int = 20
    ks: tuple[int, ...] = (2, 4, 8)
    taus: tuple[int, ...] = (1, 4)
    repeats: int = 3  # seeds (each a new user split)
    max_len: int = 30  # each user's first MAX_LEN interactions (0: all)
    train_users: int = 0  # cap on the training users (0: all)
    eval_users: int = 0  # cap on the validation and test users (0: all)
    batch_size: int = 128
    pretrain_epochs: int = 3
    epochs: int = 1  # fine-tuning epochs per method
    lr: float = 3e-3  # Adam, Theta, explicit
    implicit_lr: float = 1e-2  # Adam, Theta, implicit
    policy_lr: float = 1e-2  # Adam, Phi
    alpha: float = 0.5  # inner step size (eq. 7)
    inner_steps: int = 1
    queue: int = 50  # Q
    dim: int = 16
    layers: tuple[int, ...] = (32, 16)
    implicit_layers: tuple[int, ...] = (16, 8)
    policy_hidden: int = 64
    damping: float = 1e-3  # Influence: (H + damping I)
    workers: int = 2  # processes for the grid
    fig1_lrs: tuple[float, ...] = (0.0, 1e-4, 1e-3, 1e-2, 1e-1)
    fig1_users: int = 64
    fig1_every: int = 2
    gru_dim: int = 32
    gru_hidden: int = 64
    gru_epochs: int = 8
    session_len: int = 4
    fig3_steps: int = 15

    def validate(self) -> None:
        super().validate()
        for name in ("core", "repeats", "batch_size", "pretrain_epochs", "epochs", "inner_steps", "queue", "dim",
                     "policy_hidden", "workers", "fig1_users", "fig1_every", "gru_dim", "gru_hidden", "gru_epochs",
                     "session_len", "fig3_steps"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name.upper()} must be >= 1, got {getattr(self, name)}")
        if not self.ks or min(self.ks) < 1 or not self.taus or min(self.taus) < 1:
            raise SettingsError(f"KS and TAUS must be non-empty with values >= 1, got {self.ks}, {self.taus}")
        if 1 not in self.taus:
            raise SettingsError(f"TAUS must contain 1 (the online setting of Figures 1-3), got {self.taus}")
        if self.max_len != 0 and self.max_len < max(self.ks) + max(self.taus) + 2:
            raise SettingsError(f"MAX_LEN={self.max_len} leaves no step with a full sketch; use at least "
                                f"{max(self.ks) + max(self.taus) + 2}, or 0 for whole sequences")
        for name in ("train_users", "eval_users"):
            if getattr(self, name) == 1 or getattr(self, name) < 0:
                raise SettingsError(f"{name.upper()} must be 0 (all) or >= 2, got {getattr(self, name)}")
        for name in ("lr", "implicit_lr", "policy_lr", "alpha", "damping"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name.upper()} must be > 0, got {getattr(self, name)}")
        if any(lr < 0 for lr in self.fig1_lrs) or not self.fig1_lrs:
            raise SettingsError(f"FIG1_LRS must be learning rates >= 0, got {self.fig1_lrs}")


PRESETS = {
    "smoke": dict(ks=(2, 4), taus=(1, 4), repeats=1, max_len=12, train_users=48, eval_users=40, batch_size=24, pretrain_epochs=1,
                  epochs=1, workers=1, fig1_lrs=(0.0, 1e-2), fig1_users=16, fig1_every=3, gru_epochs=1,
                  gru_dim=16, gru_hidden=16, fig3_steps=6, layers=(16, 8), implicit_layers=(8,), policy_hidden=16),
    "tutorial": {},
    "paper": dict(dataset="ml-1m", implicit_dataset="amazon-book", max_len=0, repeats=5, pretrain_epochs=10,
                  epochs=10, dim=32, layers=(64, 32, 16), implicit_layers=(64, 32, 16), policy_hidden=256,
                  queue=100, batch_size=256, workers=1, gru_epochs=30, gru_dim=64, gru_hidden=100),
}


def _datasets(settings: DiPSSettings) -> list[str]:
    return list(dict.fromkeys([settings.dataset, settings.implicit_dataset]))


CHAPTER = ChapterSpec(name="dips", settings=DiPSSettings, presets=PRESETS, datasets=_datasets)


def check_datasets(settings: DiPSSettings) -> list[str]:
    """Fail early, naming the file and where to get it, when a dataset the run needs is missing."""
    names = CHAPTER.datasets(settings)
    for name in names:
        spec = rdata.get_spec(name)  # KeyError listing the registered names
        if not rdata.dataset_available(name):
            raise spec.missing_error()
    return names


# ---------------------------------------------------------------------------------------- data
def truncate_sequences(seqs: rdata.Sequences, max_len: int | None) -> rdata.Sequences:
    """Each user's first ``max_len`` interactions (``None``: unchanged)."""
    if max_len is None:
        return seqs
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    lengths = np.minimum(seqs.lengths, max_len)
    rows = np.concatenate([np.arange(s, s + n) for s, n in zip(seqs.offsets[:-1], lengths)]) if len(seqs) else np.array([], int)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return rdata.Sequences(seqs.users, offsets, seqs.items[rows], seqs.ratings[rows], seqs.timestamps[rows])


@dataclass
class SketchData:
    """One dataset prepared for one repetition: the interactions and the three user groups' sequences."""

    name: str
    explicit: bool
    interactions: rdata.Interactions
    sequences: dict[str, rdata.Sequences]  # train / val / test, truncated to max_len
    batches: dict[str, SequenceBatch]

    @property
    def n_items(self) -> int:
        return self.interactions.n_items


def prepare_data(settings: DiPSSettings, kind: str, repeat: int) -> SketchData:
    """Load, filter, split the users (seed ``settings.seed + repeat``) and cut the sequences (DiPS's protocol)."""
    if kind not in SETTINGS_KINDS:
        raise ValueError(f"kind must be one of {SETTINGS_KINDS}, got {kind!r}")
    explicit = kind == "explicit"
    name = settings.dataset if explicit else settings.implicit_dataset
    d = rdata.load(name)
    if explicit:
        d = rdata.min_user_interactions(d, settings.core)
    else:
        has_ratings = len(np.unique(d.ratings)) > 1
        d = rdata.k_core(rdata.to_implicit(d, settings.implicit_threshold if has_ratings else None), settings.core)
    parts = rdata.split_users(d, (0.6, 0.2, 0.2), seed=settings.seed + repeat)
    seqs, batches = {}, {}
    for part_name, part in zip(("train", "val", "test"), parts):
        s = truncate_sequences(rdata.user_sequences(part, min_length=2), settings.max_len or None)
        cap = settings.train_users if part_name == "train" else settings.eval_users
        if cap:
            s = _first_users(s, cap)
        seqs[part_name] = s
        max_len = int(s.lengths.max())
        batches[part_name] = SequenceBatch.from_sequences(s, max_len, explicit)
    return SketchData(name, explicit, d, seqs, batches)


def _first_users(seqs: rdata.Sequences, n: int) -> rdata.Sequences:
    n = min(n, len(seqs))
    end = seqs.offsets[n]
    return rdata.Sequences(seqs.users[:n], seqs.offsets[: n + 1], seqs.items[:end], seqs.ratings[:end],
                           seqs.timestamps[:end])


# ---------------------------------------------------------------------------------------- grid
def sketch_config(settings: DiPSSettings, kind: str, k: int, tau: int, method: str) -> SketchConfig:
    """The :class:`SketchConfig` of one cell of Tables 2-4."""
    return SketchConfig(k=k, tau=tau, method=method, explicit=kind == "explicit", alpha=settings.alpha,
                        inner_steps=settings.inner_steps, queue=settings.queue, damping=settings.damping)


def _train_kwargs(settings: DiPSSettings, kind: str) -> dict:
    implicit = kind == "implicit"
    return dict(batch_size=settings.batch_size, lr=settings.implicit_lr if implicit else settings.lr,
                policy_lr=settings.policy_lr, dim=settings.dim,
                layers=settings.implicit_layers if implicit else settings.layers,
                policy_hidden=settings.policy_hidden, device=settings.device)


_DATA_CACHE: dict[tuple, SketchData] = {}


def _data(settings: DiPSSettings, kind: str, repeat: int) -> SketchData:
    key = (settings, kind, repeat)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear() if len(_DATA_CACHE) > 8 else None
        _DATA_CACHE[key] = prepare_data(settings, kind, repeat)
    return _DATA_CACHE[key]


def _task_seed(settings: DiPSSettings, *parts: int) -> int:
    seed = settings.seed
    for p in parts:
        seed = seed * 1_000_003 + p
    return seed % (2**31)


def _pretrain_task(settings: DiPSSettings, kind: str, repeat: int, threads: int | None = 1) -> dict:
    """Base model trained with reservoir sketches (K = middle of KS, tau = 1): the shared starting point."""
    if threads:
        set_threads(threads)
    d = _data(settings, kind, repeat)
    seeds = seed_everything(_task_seed(settings, SETTINGS_KINDS.index(kind), repeat))
    k = sorted(settings.ks)[len(settings.ks) // 2]
    cfg = sketch_config(settings, kind, k, 1, "Random")
    c0 = time.process_time()
    res = train_sketching(cfg, d.batches["train"], None, d.n_items, seeds, epochs=settings.pretrain_epochs,
                          desc=f"pretrain {kind} #{repeat}", **_train_kwargs(settings, kind))
    return {"kind": kind, "repeat": repeat, "state": {k_: v.cpu() for k_, v in res.model.state_dict().items()},
            "history": res.history, "cpu_s": time.process_time() - c0}


def _base_from_state(settings: DiPSSettings, kind: str, n_items: int, state: dict):
    implicit = kind == "implicit"
    model = make_base_model(n_items, not implicit, settings.dim, settings.implicit_layers if implicit else settings.layers)
    model.load_state_dict(state)
    return model


def _metrics_row(metrics: dict, kind: str) -> dict:
    keys = ("rmse",) if kind == "explicit" else ("recall@20", "mrr@20")
    return {k: float(metrics[k]) for k in keys}


def _method_task(settings: DiPSSettings, kind: str, repeat: int, k: int, tau: int, pre_state: dict,
                 keep: bool, threads: int | None = 1) -> dict:
    """Fine-tune and evaluate the five methods of one cell (kind, repeat, K, tau)."""
    if threads:
        set_threads(threads)
    d = _data(settings, kind, repeat)
    device = torch.device(settings.device)
    base = _base_from_state(settings, kind, d.n_items, pre_state)
    rows, artefacts = [], {}
    for mi, method in enumerate(METHODS):
        cfg = sketch_config(settings, kind, k, tau, method)
        seeds = seed_everything(_task_seed(settings, SETTINGS_KINDS.index(kind), repeat, k, tau, mi))
        init_policy = SketchPolicy(d.n_items, settings.policy_hidden) if cfg.learned else None
        c0 = time.process_time()
        res = train_sketching(cfg, d.batches["train"], d.batches["val"], d.n_items, seeds, epochs=settings.epochs,
                              init=(base, init_policy), include_init=True,
                              desc=f"{kind} #{repeat} K={k} tau={tau} {method}", **_train_kwargs(settings, kind))
        train_s = time.process_time() - c0
        test = evaluate_sketching(res.model, res.policy, d.batches["test"].to(device), cfg, generator=seeds.torch_gen)
        rows.append({"setting": kind, "dataset": d.name, "tau": tau, "K": k, "method": method, "repeat": repeat,
                     **_metrics_row(test, kind), "best_epoch": res.best_epoch, "train_cpu_s": train_s,
                     "eval_cpu_s": time.process_time() - c0 - train_s})
        if keep and cfg.learned:
            artefacts[(kind, repeat, k, tau, method)] = {
                "model": {k_: v.cpu() for k_, v in res.model.state_dict().items()},
                "policy": {k_: v.cpu() for k_, v in res.policy.state_dict().items()}}
    return {"rows": rows, "artefacts": artefacts}


@dataclass
class GridResult:
    """Tables 2-4's runs (one row per kind, tau, K, method, repeat) and the learned policies kept for the figures."""

    runs: pd.DataFrame
    artefacts: dict
    pretrain: pd.DataFrame
    wall_s: float


def _run(tasks: list[tuple], fn, workers: int, desc: str) -> list:
    """``fn(*task)`` for every task, in ``workers`` spawned processes (or in this one), one torch thread each.

    The tensors of a step are small, so the parallelism is across processes
    (cells of the grid), not inside the operations.
    """
    if workers <= 1 or len(tasks) <= 1:
        return [fn(*args) for args in progress(tasks, desc=desc)]
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = [pool.submit(fn, *args) for args in tasks]
        return [f.result() for f in progress(futures, desc=desc)]


def run_grid(settings: DiPSSettings, kinds: tuple[str, ...] = SETTINGS_KINDS) -> GridResult:
    """Every cell of Tables 2-4: kinds x repeats x K x tau x methods (see the module docstring).

    The learned policies of the online cells (tau = 1) of the first
    repetition are kept (for Figures 1-3).
    """
    bad = [k for k in kinds if k not in SETTINGS_KINDS]
    if bad:
        raise ValueError(f"unknown kinds {bad}; choose from {SETTINGS_KINDS}")
    for kind in kinds:  # load (and check) the data before any work
        _data(settings, kind, 0)
    t0 = time.perf_counter()
    pre_tasks = [(settings, kind, r) for kind in kinds for r in range(settings.repeats)]
    pre = _run(pre_tasks, _pretrain_task, settings.workers, "pretraining")
    states = {(p["kind"], p["repeat"]): p["state"] for p in pre}
    cell_tasks = [(settings, kind, r, k, tau, states[(kind, r)], tau == 1 and r == 0)
                  for kind in kinds for r in range(settings.repeats) for tau in settings.taus for k in settings.ks]
    cells = _run(cell_tasks, _method_task, settings.workers, "Tables 2-4")
    runs = pd.DataFrame([row for c in cells for row in c["rows"]])
    artefacts = {key: val for c in cells for key, val in c["artefacts"].items()}
    pretrain = pd.DataFrame([{"setting": p["kind"], "repeat": p["repeat"], "final_loss": p["history"][-1],
                              "cpu_s": p["cpu_s"]} for p in pre])
    return GridResult(runs, artefacts, pretrain, time.perf_counter() - t0)


def rebuild(settings: DiPSSettings, kind: str, n_items: int, artefact: dict):
    """The base model and policy of a kept run, from its state dicts."""
    model = _base_from_state(settings, kind, n_items, artefact["model"])
    policy = SketchPolicy(n_items, settings.policy_hidden)
    policy.load_state_dict(artefact["policy"])
    return model.eval(), policy.eval()
