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
from rec_lib.sketching.synthetic import STREAMS, StreamSpec, make_stream
from rec_lib.sketching.training import (METHODS, REFERENCES, SequenceBatch, SketchConfig, evaluate_sketching,
                                        make_base_model, train_sketching)
from rec_lib.utils import isolated_globals, progress, seed_everything, set_threads

__all__ = ["DiPSSettings", "PRESETS", "CHAPTER", "check_datasets", "SketchData", "prepare_data", "truncate_sequences", "run_grid",
           "GridResult", "sketch_config", "rebuild", "prepare_synthetic", "run_synthetic", "paper_table",
           "SYNTHETIC_METHODS", "CONTROL_METHODS", "repeat_data", "split_cells", "gradient_check",
           "sketch_composition"]

SETTINGS_KINDS = ("explicit", "implicit")
SYNTHETIC_KINDS = tuple(STREAMS)
# every method on the signal stream; the controls compare DiPS with the simple policies
SYNTHETIC_METHODS = ("Random", "Recent", "Hardest", "DiPS@1", "DiPS")
CONTROL_METHODS = ("Random", "Recent", "DiPS")


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
    epochs: int = 1  # fine-tuning epochs per method (Theta and, for DiPS, Phi)
    policy_epochs: int = 1  # extra epochs of the learned methods that train Phi alone (Theta frozen)
    lr: float = 3e-3  # Adam, Theta, explicit
    implicit_lr: float = 1e-2  # Adam, Theta, implicit
    policy_lr: float = 1e-2  # Adam, Phi
    alpha: float = 2.0  # inner step size (eq. 7), on the mean loss over the sketch
    inner_loss: str = "mean"  # "mean" | "sum" (eq. 2)
    inner_steps: int = 1
    queue: int = 50  # Q
    dim: int = 16
    layers: tuple[int, ...] = (32, 16)
    implicit_layers: tuple[int, ...] = (16, 8)
    policy_hidden: int = 64
    damping: float = 1e-3  # Influence: (H + damping I)
    workers: int = 2  # processes for the grid
    fig1_lrs: tuple[float, ...] = (0.0, 1e-3, 1e-2, 1e-1)
    fig1_users: int = 32
    fig1_every: int = 3
    gru_dim: int = 32
    gru_hidden: int = 64
    gru_epochs: int = 8
    session_len: int = 4
    fig3_steps: int = 15
    syn_streams: tuple[str, ...] = ("signal", "clean", "drift")
    syn_users: int = 300  # per stream and repetition, split 60/20/20
    syn_len: int = 40  # interactions per user
    syn_queue: int = 20  # Q on the synthetic streams (< SYN_LEN: the queue evicts)
    syn_batch_size: int = 64
    syn_ks: tuple[int, ...] = (2, 4)  # signal stream; the controls use the largest
    syn_repeats: int = 3  # each a new stream (seed) and a new initialisation
    syn_pretrain_epochs: int = 2
    syn_alpha: float = 8.0  # inner step size on the synthetic streams (at ALPHA = 2 a full history barely moves the user)

    def validate(self) -> None:
        super().validate()
        for name in ("core", "repeats", "batch_size", "pretrain_epochs", "epochs", "inner_steps", "queue", "dim",
                     "policy_hidden", "workers", "fig1_users", "fig1_every", "gru_dim", "gru_hidden", "gru_epochs",
                     "session_len", "fig3_steps", "syn_repeats", "syn_pretrain_epochs", "syn_queue",
                     "syn_batch_size"):
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
        for name in ("lr", "implicit_lr", "policy_lr", "alpha", "syn_alpha", "damping"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name.upper()} must be > 0, got {getattr(self, name)}")
        if self.policy_epochs < 0:
            raise SettingsError(f"POLICY_EPOCHS must be >= 0, got {self.policy_epochs}")
        if self.inner_loss not in ("mean", "sum"):
            raise SettingsError(f"INNER_LOSS must be 'mean' or 'sum', got {self.inner_loss!r}")
        bad = [s for s in self.syn_streams if s not in STREAMS]
        if bad:
            raise SettingsError(f"SYN_STREAMS: unknown {bad}; choose from {tuple(STREAMS)}")
        if self.syn_users < 10 or not self.syn_ks or min(self.syn_ks) < 1 or self.syn_len < max(self.syn_ks) + 3:
            raise SettingsError(f"need SYN_USERS >= 10, SYN_KS >= 1 and SYN_LEN > max(SYN_KS) + 2, got "
                                f"{self.syn_users}, {self.syn_ks}, {self.syn_len}")
        if any(lr < 0 for lr in self.fig1_lrs) or not self.fig1_lrs:
            raise SettingsError(f"FIG1_LRS must be learning rates >= 0, got {self.fig1_lrs}")


PRESETS = {
    "smoke": dict(ks=(2, 4), taus=(1, 4), repeats=1, max_len=12, train_users=48, eval_users=40, batch_size=24, pretrain_epochs=1,
                  epochs=1, workers=1, fig1_lrs=(0.0, 1e-2), fig1_users=16, fig1_every=3, gru_epochs=1,
                  gru_dim=16, gru_hidden=16, fig3_steps=6, layers=(16, 8), implicit_layers=(8,), policy_hidden=16,
                  syn_users=60, syn_len=16, syn_ks=(2,), syn_repeats=2, syn_pretrain_epochs=1, syn_queue=8),
    "tutorial": dict(taus=(1,), ks=(2, 4), syn_users=240),  # 5.2 min on 2 cores when quiet, 8.9 under load (the book's limit is 10)
    "paper": dict(taus=(1, 4), dataset="ml-1m", implicit_dataset="amazon-book", max_len=0, repeats=5, pretrain_epochs=10,
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


def prepare_synthetic(settings: DiPSSettings, stream: str, repeat: int) -> SketchData:
    """A seeded synthetic stream (``rec_lib.sketching.synthetic``), its users split 60/20/20 (implicit)."""
    if stream not in STREAMS:
        raise ValueError(f"stream must be one of {tuple(STREAMS)}, got {stream!r}")
    spec: StreamSpec = replace(STREAMS[stream], length=settings.syn_len)
    seed = _task_seed(settings, 7, SYNTHETIC_KINDS.index(stream), repeat)
    d = make_stream(spec, settings.syn_users, seed, name=f"synthetic-{stream}")
    parts = rdata.split_users(d, (0.6, 0.2, 0.2), seed=seed)
    seqs, batches = {}, {}
    for part_name, part in zip(("train", "val", "test"), parts):
        s = rdata.user_sequences(part, min_length=2)
        seqs[part_name] = s
        batches[part_name] = SequenceBatch.from_sequences(s, int(s.lengths.max()), False)
    return SketchData(f"synthetic-{stream}", False, d, seqs, batches)


def _first_users(seqs: rdata.Sequences, n: int) -> rdata.Sequences:
    n = min(n, len(seqs))
    end = seqs.offsets[n]
    return rdata.Sequences(seqs.users[:n], seqs.offsets[: n + 1], seqs.items[:end], seqs.ratings[:end],
                           seqs.timestamps[:end])


# ---------------------------------------------------------------------------------------- grid
def sketch_config(settings: DiPSSettings, kind: str, k: int, tau: int, method: str) -> SketchConfig:
    """The :class:`SketchConfig` of one cell of Tables 2-4 (or of a synthetic stream)."""
    queue = settings.syn_queue if kind in SYNTHETIC_KINDS else settings.queue
    alpha = settings.syn_alpha if kind in SYNTHETIC_KINDS else settings.alpha
    return SketchConfig(k=k, tau=tau, method=method, explicit=kind == "explicit", alpha=alpha,
                        inner_steps=settings.inner_steps, queue=queue, damping=settings.damping,
                        inner_loss=settings.inner_loss)


def _train_kwargs(settings: DiPSSettings, kind: str) -> dict:
    implicit = kind != "explicit"
    return dict(batch_size=settings.syn_batch_size if kind in SYNTHETIC_KINDS else settings.batch_size, lr=settings.implicit_lr if implicit else settings.lr,
                policy_lr=settings.policy_lr, dim=settings.dim,
                layers=settings.implicit_layers if implicit else settings.layers,
                policy_hidden=settings.policy_hidden, device=settings.device)


_DATA_CACHE: dict[tuple, SketchData] = {}


def _data(settings: DiPSSettings, kind: str, repeat: int) -> SketchData:
    key = (settings, kind, repeat)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear() if len(_DATA_CACHE) > 8 else None
        _DATA_CACHE[key] = (prepare_synthetic(settings, kind, repeat) if kind in SYNTHETIC_KINDS
                            else prepare_data(settings, kind, repeat))
    return _DATA_CACHE[key]


def _task_seed(settings: DiPSSettings, *parts: int) -> int:
    seed = settings.seed
    for p in parts:
        seed = seed * 1_000_003 + p
    return seed % (2**31)


def _kind_index(kind: str) -> int:
    return SETTINGS_KINDS.index(kind) if kind in SETTINGS_KINDS else 10 + SYNTHETIC_KINDS.index(kind)


def _pretrain_k(settings: DiPSSettings, kind: str) -> int:
    ks = sorted(settings.syn_ks if kind in SYNTHETIC_KINDS else settings.ks)
    return ks[len(ks) // 2]


def _pretrain_task(settings: DiPSSettings, kind: str, repeat: int, threads: int | None = 1) -> dict:
    """Base model trained with reservoir sketches (K = middle of KS, tau = 1): the shared starting point."""
    if threads:
        set_threads(threads)
    d = _data(settings, kind, repeat)
    seeds = seed_everything(_task_seed(settings, _kind_index(kind), repeat))
    cfg = sketch_config(settings, kind, _pretrain_k(settings, kind), 1, "Random")
    epochs = settings.syn_pretrain_epochs if kind in SYNTHETIC_KINDS else settings.pretrain_epochs
    c0 = time.process_time()
    res = train_sketching(cfg, d.batches["train"], None, d.n_items, seeds, epochs=epochs,
                          desc=f"pretrain {kind} #{repeat}", **_train_kwargs(settings, kind))
    return {"kind": kind, "repeat": repeat, "state": {k_: v.cpu() for k_, v in res.model.state_dict().items()},
            "history": res.history, "cpu_s": time.process_time() - c0}


def _base_from_state(settings: DiPSSettings, kind: str, n_items: int, state: dict):
    implicit = kind != "explicit"
    model = make_base_model(n_items, not implicit, settings.dim, settings.implicit_layers if implicit else settings.layers)
    model.load_state_dict(state)
    return model


def _metrics_row(metrics: dict, kind: str, suffix: str = "") -> dict:
    keys = ("rmse",) if kind == "explicit" else ("recall@20", "mrr@20")
    return {k + suffix: float(metrics[k]) for k in keys}


def _method_task(settings: DiPSSettings, kind: str, repeat: int, k: int, tau: int, pre_state: dict,
                 keep: bool, threads: int | None = 1, methods: tuple[str, ...] = METHODS) -> dict:
    """Fine-tune and evaluate the methods of one cell (kind, repeat, K, tau).

    Every method fine-tunes ``Theta`` for ``EPOCHS`` epochs with its own
    sketches; DiPS and DiPS@1 learn their policy from a fresh initialisation
    ``Phi_0`` in them and in ``POLICY_EPOCHS`` more epochs that train ``Phi``
    alone. The validation users select among the *trained* epochs only
    (``selected_epoch >= 1``; the starting point's score is recorded for the
    learning curve). A learned method is also tested with its final
    ``Theta`` and the initial ``Phi_0`` (columns ``*_phi0``): what the policy
    learned, at equal base model. References (``K=0``, ``Full``) take
    ``k`` as given (``Full``: the sequence length).
    """
    if threads:
        set_threads(threads)
    d = _data(settings, kind, repeat)
    device = torch.device(settings.device)
    base = _base_from_state(settings, kind, d.n_items, pre_state)
    rows, curves, artefacts = [], [], {}
    for method in methods:
        mi = (METHODS + REFERENCES).index(method)
        cfg = sketch_config(settings, kind, k, tau, method)
        seeds = seed_everything(_task_seed(settings, _kind_index(kind), repeat, k, tau, mi))
        init_policy = SketchPolicy(d.n_items, settings.policy_hidden) if cfg.learned else None
        c0 = time.process_time()
        res = train_sketching(cfg, d.batches["train"], d.batches["val"], d.n_items, seeds, epochs=settings.epochs,
                              init=(base, init_policy), record_init=True, policy_epochs=settings.policy_epochs,
                              desc=f"{kind} #{repeat} K={k} tau={tau} {method}", **_train_kwargs(settings, kind))
        train_s = time.process_time() - c0
        test_batch = d.batches["test"].to(device)
        test = evaluate_sketching(res.model, res.policy, test_batch, cfg, generator=seeds.torch_gen)
        extra = {}
        if cfg.learned:
            phi0 = evaluate_sketching(res.model, init_policy.to(device).eval(), test_batch, cfg,
                                      generator=seeds.torch_gen)
            extra = _metrics_row(phi0, kind, "_phi0")
        label = 0 if method == "K=0" else k  # Full: k covers the sequence
        rows.append({"setting": kind, "dataset": d.name, "tau": tau, "K": label, "method": method,
                     "repeat": repeat, **_metrics_row(test, kind), **extra, "selected_epoch": res.best_epoch,
                     "train_cpu_s": train_s, "eval_cpu_s": time.process_time() - c0 - train_s})
        for e, v in enumerate(res.val_history):
            curves.append({"setting": kind, "tau": tau, "K": label, "method": method, "repeat": repeat,
                           "epoch": e, "val": -v if kind != "explicit" else v,
                           "train_loss": res.history[e - 1] if e else np.nan})
        if keep and cfg.learned:
            artefacts[(kind, repeat, k, tau, method)] = {
                "model": {k_: v.cpu() for k_, v in res.model.state_dict().items()},
                "policy": {k_: v.cpu() for k_, v in res.policy.state_dict().items()}}
    return {"rows": rows, "curves": curves, "artefacts": artefacts}


@dataclass
class GridResult:
    """Runs (one row per kind, tau, K, method, repeat), validation curves, and the learned policies kept."""

    runs: pd.DataFrame
    artefacts: dict
    pretrain: pd.DataFrame
    wall_s: float
    curves: pd.DataFrame | None = None
    from_cache: bool = False  # set by :func:`cached` when the result was read back, not computed


def _run(tasks: list[tuple], fn, workers: int, desc: str) -> list:
    """``fn(*task)`` for every task, in ``workers`` spawned processes (or in this one), one torch thread each.

    The tensors of a step are small, so the parallelism is across processes
    (cells of the grid), not inside the operations.
    """
    if workers <= 1 or len(tasks) <= 1:
        with isolated_globals():  # as in a worker: the caller's RNGs do not depend on where tasks ran
            return [fn(*args) for args in progress(tasks, desc=desc)]
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = [pool.submit(fn, *args) for args in tasks]
        return [f.result() for f in progress(futures, desc=desc)]


def _full_k(settings: DiPSSettings, kind: str) -> int:
    """A sketch size that holds every item of the longest sequence (the ``Full`` reference)."""
    return int(max(int(b.items.shape[1]) for b in _data(settings, kind, 0).batches.values()))


def _collect(pre: list[dict], cells: list[dict], t0: float) -> GridResult:
    runs = pd.DataFrame([row for c in cells for row in c["rows"]])
    curves = pd.DataFrame([row for c in cells for row in c["curves"]])
    artefacts = {key: val for c in cells for key, val in c["artefacts"].items()}
    pretrain = pd.DataFrame([{"setting": p["kind"], "repeat": p["repeat"], "final_loss": p["history"][-1],
                              "cpu_s": p["cpu_s"]} for p in pre])
    return GridResult(runs, artefacts, pretrain, time.perf_counter() - t0, curves)


def run_grid(settings: DiPSSettings, kinds: tuple[str, ...] = SETTINGS_KINDS) -> GridResult:
    """Every cell of Tables 2-4: kinds x repeats x K x tau x methods (see the module docstring).

    Plus, per kind and repetition, the references ``K=0`` and ``Full``
    (fine-tuned the same way). The learned policies of the online cells
    (tau = 1) are kept for every repetition (Figures 1-3).
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
    cell_tasks = [(settings, kind, r, k, tau, states[(kind, r)], tau == 1)
                  for kind in kinds for r in range(settings.repeats) for tau in settings.taus for k in settings.ks]
    cell_tasks += [(settings, kind, r, _full_k(settings, kind), 1, states[(kind, r)], False, 1, REFERENCES)
                   for kind in kinds for r in range(settings.repeats)]
    cells = _run(cell_tasks, _method_task, settings.workers, "Tables 2-4")
    return _collect(pre, cells, t0)


def run_synthetic(settings: DiPSSettings) -> GridResult:
    """The synthetic streams: per stream and repetition (a new stream seed), a pretrained base model, then
    every method of :data:`SYNTHETIC_METHODS` at each ``K`` of ``SYN_KS`` on ``signal``, the methods of
    :data:`CONTROL_METHODS` at the largest ``K`` on the controls, and the references ``K=0`` and ``Full``;
    online (tau = 1). The DiPS policies of the first repetition are kept.
    """
    t0 = time.perf_counter()
    streams = settings.syn_streams
    pre_tasks = [(settings, s, r) for s in streams for r in range(settings.syn_repeats)]
    pre = _run(pre_tasks, _pretrain_task, settings.workers, "synthetic pretraining")
    states = {(p["kind"], p["repeat"]): p["state"] for p in pre}
    tasks = []
    for s in streams:
        ks = settings.syn_ks if s == "signal" else (max(settings.syn_ks),)
        methods = SYNTHETIC_METHODS if s == "signal" else CONTROL_METHODS
        for r in range(settings.syn_repeats):
            tasks += [(settings, s, r, k, 1, states[(s, r)], r == 0, 1, methods) for k in ks]
            tasks.append((settings, s, r, settings.syn_len, 1, states[(s, r)], False, 1, REFERENCES))
    cells = _run(tasks, _method_task, settings.workers, "synthetic streams")
    return _collect(pre, cells, t0)


def paper_table(runs: pd.DataFrame, setting: str, metric: str, taus: tuple[int, ...] | None = None,
                digits: int = 3) -> pd.DataFrame:
    """Rows (tau, K), a column per method (mean over repetitions, rounded), plus ``K=0`` and ``full``.

    The references do not depend on K or tau: their mean is repeated on every row.
    """
    sub = runs[runs.setting == setting]
    main = sub[~sub.method.isin(REFERENCES)]
    if taus is not None:
        main = main[main.tau.isin(taus)]
    table = main.groupby(["tau", "K", "method"])[metric].mean().unstack("method")
    table = table[[m for m in METHODS if m in table.columns]]
    for ref, col in (("K=0", "K=0"), ("Full", "full")):
        vals = sub[sub.method == ref][metric]
        if len(vals):
            table[col] = float(vals.mean())
    return table.round(digits)


def rebuild(settings: DiPSSettings, kind: str, n_items: int, artefact: dict):
    """The base model and policy of a kept run, from its state dicts."""
    model = _base_from_state(settings, kind, n_items, artefact["model"])
    policy = SketchPolicy(n_items, settings.policy_hidden)
    policy.load_state_dict(artefact["policy"])
    return model.eval(), policy.eval()


def repeat_data(settings: DiPSSettings, kind: str, repeat: int) -> SketchData:
    """The data of one repetition (a dataset kind or a synthetic stream), cached."""
    return _data(settings, kind, repeat)


def split_cells(runs: pd.DataFrame, setting: str, metric: str, taus: tuple[int, ...] = (1,),
                ks: tuple[int, ...] | None = None) -> pd.DataFrame:
    """One row per split-cell ``(tau, K, repeat)``, one column per method: the values a paired claim compares.

    Learned methods also get ``<method>_phi0`` (the same ``Theta`` with the
    initial policy) when the runs have ``<metric>_phi0``.
    """
    sub = runs[(runs.setting == setting) & runs.tau.isin(taus) & ~runs.method.isin(REFERENCES)]
    if ks is not None:
        sub = sub[sub.K.isin(ks)]
    out = sub.pivot_table(index=["tau", "K", "repeat"], columns="method", values=metric)
    if f"{metric}_phi0" in sub:
        phi0 = sub.dropna(subset=[f"{metric}_phi0"]).pivot_table(index=["tau", "K", "repeat"], columns="method",
                                                                   values=f"{metric}_phi0")
        out = out.join(phi0.add_suffix("_phi0"))
    return out[[c for c in list(METHODS) + [m + "_phi0" for m in METHODS] if c in out.columns]]


def gradient_check(settings: DiPSSettings, grid: GridResult, k: int, lrs: tuple[float, ...] | None = None) -> pd.DataFrame:
    """Figure 1 for every repetition: queue vs true policy gradient (``training.gradient_agreement``) of the
    trained explicit, online DiPS policy of size ``k``, on ``FIG1_USERS`` training users. Adds ``repeat``."""
    from rec_lib.sketching.training import gradient_agreement

    frames = []
    for r in range(settings.repeats):
        key = ("explicit", r, k, 1, "DiPS")
        if key not in grid.artefacts:
            continue
        d = repeat_data(settings, "explicit", r)
        model, policy = rebuild(settings, "explicit", d.n_items, grid.artefacts[key])
        batch = d.batches["train"].take(np.arange(min(settings.fig1_users, len(d.batches["train"]))))
        f = gradient_agreement(model, policy, batch, sketch_config(settings, "explicit", k, 1, "DiPS"),
                               lrs=lrs or settings.fig1_lrs, seed=settings.seed + r, every=settings.fig1_every)
        frames.append(f.assign(repeat=r))
    return pd.concat(frames, ignore_index=True)


def sketch_composition(settings: DiPSSettings, syn: GridResult, stream: str, k: int, repeat: int = 0,
                       methods: tuple[str, ...] = ("Random", "Recent", "Hardest", "DiPS")) -> pd.DataFrame:
    """What each policy keeps on a synthetic stream's test users (steps with a full sketch): the share of
    sketch slots holding a noise item, and an item of the user's *current* topic. The DiPS run of
    ``repeat`` supplies the base model (and the policy)."""
    from rec_lib.sketching.synthetic import topic_of

    d = repeat_data(settings, stream, repeat)
    model, policy = rebuild(settings, stream, d.n_items, syn.artefacts[(stream, repeat, k, 1, "DiPS")])
    batch = d.batches["test"]
    spec = d.interactions.ground_truth["spec"]
    topics = torch.as_tensor(d.interactions.ground_truth["topics"][batch.users])  # [B, T] current topic
    rows = []
    for method in methods:
        cfg = sketch_config(settings, stream, k, 1, method)
        traj = evaluate_sketching(model, policy if cfg.learned else None, batch, cfg,
                                  generator=torch.Generator().manual_seed(settings.seed), record=True)["trajectory"]
        B, T, K = traj.shape
        items = batch.items.gather(1, traj.clamp(min=0).reshape(B, T * K)).reshape(B, T, K)
        top = torch.as_tensor(topic_of(items.numpy(), spec))
        t = torch.arange(T)
        ok = (traj >= 0) & (t[None, :, None] >= k - 1) & (t[None, :, None] + 1 < batch.lengths[:, None, None])
        cur = top == topics[:, :T, None]
        rows.append({"method": method, "noise share": float((top < 0)[ok].float().mean()),
                     "current-topic share": float(cur[ok].float().mean())})
    return pd.DataFrame(rows).set_index("method")


def _cache_key(settings: DiPSSettings, what: str) -> str:
    """A hash of the settings, of the pinned numerics (kernels and threads: another CPU capability is another
    result) and of every source the grid's numbers depend on (so a library change misses)."""
    import hashlib
    import inspect

    from rec_lib import numerics
    from rec_lib.sketching import baselines, inner, policy, projection, synthetic, training

    parts = [what, repr(settings), torch.__version__, repr(sorted(numerics.environment({}).items()))]
    parts += [inspect.getsource(m) for m in (baselines, inner, policy, projection, synthetic, training)]
    parts += [inspect.getsource(f) for f in (prepare_data, prepare_synthetic, truncate_sequences, sketch_config,
                                             _train_kwargs, _pretrain_task, _method_task, _base_from_state,
                                             _metrics_row, _full_k, _collect, run_grid, run_synthetic)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def cached(settings: DiPSSettings, what: str, fn, use_cache: bool = True) -> GridResult:
    """``fn(settings)`` (``run_grid`` or ``run_synthetic``), stored under ``cache_dir()/dips`` keyed by
    :func:`_cache_key`: a rerun with the same settings and library returns the stored result (timings
    included: ``wall_s`` is the time of the run that made it), marked ``from_cache = True``."""
    from rec_lib.paths import cache_dir

    path = cache_dir() / "dips" / f"{what}-{_cache_key(settings, what)}.pt"
    if use_cache and path.exists():
        out = torch.load(path, weights_only=False)
        out.from_cache = True  # so a report can add the stored run's wall time to its own
        return out
    out = fn(settings)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(out, tmp)
        tmp.replace(path)
    return out
