"""The experiments of the MeLON chapter (``book/melon.ipynb``): settings, presets, runners.

One call per table or figure: :func:`run_comparison` (Table 2, Table 3,
Figure 5: every strategy on every recommender and seed, prequentially),
:func:`time_strategies` (Table 4: time per online batch, in rotation), and
:func:`trained_strategies_view` (Figure 4 and the rank checks: the learning
rates of every trained strategy on one batch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from rec_lib import data as rdata
from rec_lib.config import BaseSettings, ChapterSpec, SettingsError
from rec_lib.models import fit_pairs
from rec_lib.online_update.analysis import BatchView
from rec_lib.online_update.melon import MeLON
from rec_lib.online_update.recommender import OnlineRecommender
from rec_lib.evaluation import per_row_metrics, segment_breakdown
from rec_lib.metrics import rank_against_candidates
from rec_lib.models import Popularity
from rec_lib.online_update.drift import planted_drift_stream
from rec_lib.online_update.strategies import (
    SML, EALS, MWNet, Default, GlobalRate, MetaSGD, MetaStrategy, NoUpdate, S2Meta, UpdateStrategy,
)
from rec_lib.online_update.stream import OnlineStream, PrequentialResult, run_prequential
from rec_lib.utils import Seeds, Stopwatch, benchmark_rotation, progress, seed_everything

__all__ = [
    "MelonSettings", "PRESETS", "CHAPTER", "STRATEGIES", "ABLATIONS", "RECOMMENDERS", "SYNTHETIC",
    "load_stream", "pretrain", "make_strategy", "select_on_warmup", "Comparison", "run_comparison",
    "time_strategies", "trained_strategies_view", "margin_over", "BPR_ONLY", "strategies_for",
    "CONTROLS", "meta_pretrain", "select_passes", "segment_runs", "run_popularity", "load_drift_stream",
    "paired", "DEFAULT_AT_MELON", "BIASED_STRATEGIES", "run_drift", "drift_rates", "drift_decomposition",
    "time_per_pair", "head", "pairs_per_interaction",
]

STRATEGIES = ("Default", "eALS", "MWNet", "MetaSGD", "S2Meta", "SML", "MeLON")
BPR_ONLY = ("SML",)  # transfers embedding tables: N/A on NCF, as in MeLON's Table 2
ABLATIONS = ("MeLON_I", "MeLON_P", "MeLON-code")
DEFAULT_AT_MELON = "Default at MeLON's rate"
BIASED_STRATEGIES = ("No update", "Default", "MeLON", DEFAULT_AT_MELON)  # the cold-start control's rows
CONTROLS = ("Global rate", DEFAULT_AT_MELON)
RECOMMENDERS = ("BPR", "NCF", "BiasedBPR")
SYNTHETIC = "synthetic"
PAPER_DATASETS = ("adressa", "amazon-book", "yelp")


@dataclass(frozen=True)
class MelonSettings(BaseSettings):
    """Knobs of the MeLON chapter (see the chapter's parameters cell)."""

    dataset: str = "ml-100k"  # the preset; "synthetic" for the drifting stream
    max_interactions: int | None = None  # keep only the first N interactions of the stream
    batch_size: int = 256
    train_share: float = 0.8
    warmup_share: float = 0.1
    n_eval_neg: int = 99
    n_neighbours: int = 20
    recommenders: tuple[str, ...] = RECOMMENDERS
    strategies: tuple[str, ...] = STRATEGIES
    ablations: tuple[str, ...] = ABLATIONS
    controls: tuple[str, ...] = CONTROLS
    replay_batches: int | None = 60  # meta-training replays the last N batches of the pre-training share
    meta_passes: tuple[int, ...] = (0, 1, 2)  # passes over the replay, chosen on the warm-up share
    drift_users: int = 500
    drift_items: int = 500
    drift_max_interactions: int = 100
    drift_batch: int = 128
    drift_seeds: int = 3
    drift_strategies: tuple[str, ...] = ("Default", "MetaSGD", "MeLON_I", "MeLON_P", "MeLON", "MeLON-code")
    n_seeds: int = 3
    mf_dim: int = 32
    ncf_dim: int = 16
    ncf_layers: tuple[int, ...] = (32, 16)
    pretrain_epochs: int = 20
    pretrain_lr: float = 5e-3
    pretrain_batch: int = 1024
    lr: float | None = None  # base learning rate eta; None: selected on the warm-up share
    lr_grid: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0)
    w_new_grid: tuple[float, ...] = (1.0, 2.0, 4.0)
    eals_alpha: float = 0.4
    meta_lr: float = 1e-3
    melon_hidden: int = 16
    melon_layers: int = 2
    max_ratio: float = 4.0
    sml_lr: float | None = None  # SML's Adam rate for W_hat; None: selected on the warm-up share
    sml_lr_grid: tuple[float, ...] = (3e-3, 1e-2, 3e-2)
    sml_outer_iters: int = 2
    timing_repeats: int = 10
    sweep_dims: tuple[int, ...] = (8, 16, 32)  # NCF sizes d (tower (2d, d)) of the time-vs-pairs sweep
    sweep_batches: tuple[int, ...] = (64, 128, 256)  # batch sizes n of the sweep (at most batch_size)
    sweep_rounds: int = 4
    gap_steps: int = 200
    synthetic_users: int = 1000
    synthetic_items: int = 1000
    synthetic_drift: tuple[float, ...] = (0.2, 0.9)
    synthetic_seeds: int = 2

    def validate(self) -> None:
        super().validate()
        allowed = {spec.name for spec in rdata.list_datasets()} | {SYNTHETIC} | set(PAPER_DATASETS)
        if self.dataset not in allowed:
            raise SettingsError(f"DATASET={self.dataset!r} is not a registered dataset nor {SYNTHETIC!r}; "
                                f"choose from {sorted(allowed)}")
        for name in ("batch_size", "n_eval_neg", "n_neighbours", "n_seeds", "mf_dim", "ncf_dim", "pretrain_epochs",
                     "pretrain_batch", "melon_hidden", "melon_layers", "timing_repeats", "sweep_rounds", "gap_steps", "synthetic_users",
                     "synthetic_items", "synthetic_seeds", "sml_outer_iters", "drift_users", "drift_items",
                     "drift_max_interactions", "drift_batch", "drift_seeds"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name.upper()} must be >= 1, got {getattr(self, name)}")
        if self.max_interactions is not None and self.max_interactions < 1000:
            raise SettingsError(f"MAX_INTERACTIONS must be None or >= 1000, got {self.max_interactions}")
        if not 0 < self.train_share < 1 or not 0 <= self.warmup_share < self.train_share:
            raise SettingsError(f"need 0 < TRAIN_SHARE < 1 and 0 <= WARMUP_SHARE < TRAIN_SHARE, "
                                f"got {self.train_share}, {self.warmup_share}")
        if self.lr is None and self.warmup_share == 0:
            raise SettingsError("LR=None selects the learning rate on the warm-up share: set WARMUP_SHARE > 0 or give LR")
        bad = [r for r in self.recommenders if r not in RECOMMENDERS]
        if bad or not self.recommenders:
            raise SettingsError(f"RECOMMENDERS must be a non-empty subset of {RECOMMENDERS}, got {self.recommenders}")
        bad = [s for s in self.strategies if s not in STRATEGIES]
        if bad or "Default" not in self.strategies or "MeLON" not in self.strategies:
            raise SettingsError(f"STRATEGIES must be a subset of {STRATEGIES} holding Default and MeLON, got {self.strategies}")
        if any(a not in ABLATIONS for a in self.ablations):
            raise SettingsError(f"ABLATIONS must be a subset of {ABLATIONS}, got {self.ablations}")
        if any(c not in CONTROLS for c in self.controls):
            raise SettingsError(f"CONTROLS must be a subset of {CONTROLS}, got {self.controls}")
        if self.replay_batches is not None and self.replay_batches < 1:
            raise SettingsError(f"REPLAY_BATCHES must be None or >= 1, got {self.replay_batches}")
        if not self.meta_passes or min(self.meta_passes) < 0:
            raise SettingsError(f"META_PASSES must hold integers >= 0, got {self.meta_passes}")
        if not self.sweep_dims or min(self.sweep_dims) < 1 or not self.sweep_batches or min(self.sweep_batches) < 1:
            raise SettingsError(f"SWEEP_DIMS and SWEEP_BATCHES must hold integers >= 1, got {self.sweep_dims}, "
                                f"{self.sweep_batches}")
        if max(self.sweep_batches) > self.batch_size:
            raise SettingsError(f"SWEEP_BATCHES cannot exceed BATCH_SIZE={self.batch_size} (the sweep takes the first "
                                f"n interactions of test batches), got {self.sweep_batches}")
        if self.drift_max_interactions > self.drift_items:
            raise SettingsError("DRIFT_MAX_INTERACTIONS cannot exceed DRIFT_ITEMS")
        if self.sml_lr is not None and self.sml_lr <= 0:
            raise SettingsError(f"SML_LR must be None or > 0, got {self.sml_lr}")
        if self.sml_lr is None and self.warmup_share == 0 and "SML" in self.strategies:
            raise SettingsError("SML_LR=None selects SML's rate on the warm-up share: set WARMUP_SHARE > 0 or give SML_LR")
        for name in ("lr_grid", "w_new_grid", "sml_lr_grid"):
            if not getattr(self, name) or min(getattr(self, name)) <= 0:
                raise SettingsError(f"{name.upper()} must hold positive numbers, got {getattr(self, name)}")
        if self.lr is not None and self.lr <= 0 or self.meta_lr <= 0 or self.pretrain_lr <= 0:
            raise SettingsError("LR, META_LR and PRETRAIN_LR must be > 0")
        if self.max_ratio <= 1:
            raise SettingsError(f"MAX_RATIO must be > 1, got {self.max_ratio}")
        if not all(0 <= w <= 1 for w in self.synthetic_drift) or not self.synthetic_drift:
            raise SettingsError(f"SYNTHETIC_DRIFT holds long-term weights in [0, 1], got {self.synthetic_drift}")


PRESETS = {
    "smoke": dict(max_interactions=10_000, n_seeds=2, pretrain_epochs=3, lr_grid=(0.1, 0.3), w_new_grid=(1.0, 2.0),
                  mf_dim=16, ncf_dim=8, ncf_layers=(16, 8), timing_repeats=2, sweep_dims=(4, 8), sweep_batches=(32, 64), sweep_rounds=2,
                  gap_steps=20, synthetic_users=200,
                  synthetic_items=400, synthetic_drift=(0.2,), synthetic_seeds=1, replay_batches=4,
                  meta_passes=(0, 1), meta_lr=1e-2, drift_users=150, drift_items=200, drift_max_interactions=60, drift_seeds=2),
    # meta_lr 1e-2: few meta-steps per strategy here against the official code's up to 100 epochs at 1e-3.
    # Cut to fit 8 minutes on 2 CPU cores (the chapter names each cut): a replay of 20 batches (not 60), an
    # NCF tower of (16, 8) (MeLON's role MLP runs over every dense weight: the step costs in proportion to
    # their number), SML's rate fixed at the grid's middle (not chosen on the warm-up)
    "tutorial": dict(meta_lr=1e-2, replay_batches=20, meta_passes=(0, 1), ncf_layers=(16, 8), sml_lr=1e-2),
    "paper": dict(dataset="adressa", n_seeds=5, mf_dim=64, ncf_dim=64, ncf_layers=(128, 64, 32), pretrain_epochs=30,
                  pretrain_batch=4096, lr_grid=(0.01, 0.03, 0.1, 0.3, 1.0), melon_hidden=32, timing_repeats=20,
                  synthetic_users=10_000, synthetic_items=5000, synthetic_seeds=5, replay_batches=None,
                  meta_passes=(0, 1, 2, 3), drift_users=5000, drift_items=2000, drift_max_interactions=400,
                  drift_batch=256, drift_seeds=5),
}


def _datasets(settings: MelonSettings) -> list[str]:
    return [] if settings.dataset == SYNTHETIC else [settings.dataset]


CHAPTER = ChapterSpec(name="melon", settings=MelonSettings, presets=PRESETS, datasets=_datasets)


# ------------------------------------------------------------------------- pieces
def load_stream(settings: MelonSettings, seed: int, long_term_weight: float | None = None) -> OnlineStream:
    """The chronological stream of ``settings.dataset`` (or a synthetic drifting one) in batches.

    ``long_term_weight`` (or ``dataset="synthetic"``) draws
    :func:`rec_lib.data.drifting_stream` with that weight ``w`` of stable
    tastes (``w`` small: fast drift). The stream's random draws use ``seed``.
    """
    if long_term_weight is not None or settings.dataset == SYNTHETIC:
        w = settings.synthetic_drift[0] if long_term_weight is None else long_term_weight
        data = rdata.drifting_stream(n_users=settings.synthetic_users, n_items=settings.synthetic_items,
                                     long_term_weight=w, max_interactions=min(400, settings.synthetic_items // 2),
                                     seed=seed)
    else:
        data = rdata.load(settings.dataset)
    if settings.max_interactions is not None and len(data) > settings.max_interactions:
        data = data.subset(np.arange(settings.max_interactions))
    return OnlineStream(data, settings.batch_size, settings.train_share, settings.warmup_share,
                        settings.n_eval_neg, settings.n_neighbours, seed=seed)


def pretrain(kind: str, stream: OnlineStream, settings: MelonSettings, seeds: Seeds,
             device: torch.device | str = "cpu") -> OnlineRecommender:
    """The offline recommender: BPR-MF (BPR loss) or NCF (log loss), trained on the pre-training share."""
    dim = settings.mf_dim if kind == "BPR" else settings.ncf_dim
    torch.manual_seed(seeds.seed)  # the model's initialisation
    rec = OnlineRecommender.build(kind, stream.n_users, stream.n_items, dim, settings.ncf_layers, device)
    pre = stream.pretrain
    fit_pairs(rec.model, pre.users, pre.items, stream.seen_pretrain, seeds, loss=rec.loss,
              epochs=settings.pretrain_epochs, batch_size=settings.pretrain_batch, lr=settings.pretrain_lr,
              device=device, desc=f"pre-train {kind}")
    rec.model.eval()
    if kind == "BiasedBPR":
        rec.mean_new_users(np.unique(pre.users))
    return rec


def strategies_for(kind: str, names: Sequence[str]) -> list[str]:
    """The strategies of ``names`` that apply to recommender ``kind`` (SML: BPR-MF only)."""
    return [n for n in names if kind == "BPR" or n not in BPR_ONLY]


def make_strategy(name: str, settings: MelonSettings, lr: float, w_new: float = 1.0, seed: int = 0,
                  sml_lr: float | None = None) -> UpdateStrategy:
    """A fresh strategy of Table 2 / Table 3 by name, with base learning rate ``lr``.

    ``sml_lr`` is SML's Adam rate for ``W_hat`` (default: ``settings.sml_lr``,
    else the middle of ``settings.sml_lr_grid``); its transfer learns at ``meta_lr``.
    """
    s = settings
    if sml_lr is None:
        sml_lr = s.sml_lr if s.sml_lr is not None else s.sml_lr_grid[len(s.sml_lr_grid) // 2]
    table: dict[str, Callable[[], UpdateStrategy]] = {
        "No update": lambda: NoUpdate(),
        "Default": lambda: Default(lr),
        "eALS": lambda: EALS(lr, w_new=w_new, alpha=s.eals_alpha, seed=seed),
        "MWNet": lambda: MWNet(lr, s.meta_lr),
        "MetaSGD": lambda: MetaSGD(lr, s.meta_lr),
        "S2Meta": lambda: S2Meta(lr, s.meta_lr, max_ratio=s.max_ratio),
        "SML": lambda: SML(sml_lr, s.meta_lr, s.sml_outer_iters, seed=seed),
        "MeLON": lambda: MeLON(lr, s.meta_lr, "2D", s.melon_hidden, s.melon_layers, s.max_ratio),
        "MeLON_I": lambda: MeLON(lr, s.meta_lr, "I", s.melon_hidden, s.melon_layers, s.max_ratio),
        "MeLON_P": lambda: MeLON(lr, s.meta_lr, "P", s.melon_hidden, s.melon_layers, s.max_ratio),
        "MeLON-code": lambda: MeLON(lr, s.meta_lr, "F", s.melon_hidden, s.melon_layers, s.max_ratio),
        "Global rate": lambda: GlobalRate(lr, s.meta_lr),
    }
    if name not in table:
        raise ValueError(f"unknown strategy {name!r}; known: {list(table)}")
    return table[name]()


def select_on_warmup(rec: OnlineRecommender, stream: OnlineStream, make: Callable[[float], UpdateStrategy],
                     grid: Sequence[float], metric: str = "ndcg@10") -> tuple[float, pd.DataFrame]:
    """The grid value whose strategy does best, prequentially, on the *warm-up* batches.

    Test batches are never touched: this is the validation of the protocol.
    """
    rows = []
    for value in grid:
        r = rec.clone()
        res = run_prequential(r.rank, make(value).bind(r, stream).step, stream, phases=("warmup",), evaluate=("warmup",))
        rows.append({"value": value, metric: res.metrics()[metric]})
    table = pd.DataFrame(rows)
    return float(table.loc[table[metric].idxmax(), "value"]), table


# ------------------------------------------------------------- meta-training
def meta_pretrain(strategy: MetaStrategy, rec0: OnlineRecommender, stream: OnlineStream, replay: Sequence,
                  passes: int) -> MetaStrategy:
    """Meta-train ``strategy`` on ``passes`` passes over the replayed pre-training batches.

    The official protocol in miniature: the strategy steps through the
    replayed batches (meta-step on each, then the update) on a copy of the
    pre-trained recommender; it is then rebound to a fresh copy of ``rec0``
    (the meta-model is kept, the recommender starts again).
    """
    strategy.bind(rec0.clone(), stream)
    for _ in range(passes):
        for batch in replay:
            strategy.step(batch)
    return strategy.rebind(rec0.clone(), stream)


def _warmup_score(strategy: UpdateStrategy, rec0: OnlineRecommender, stream: OnlineStream,
                  metric: str = "ndcg@10") -> float:
    twin = _continue(strategy, rec0, stream)
    if isinstance(twin, MetaStrategy):
        twin.rebind(twin.rec, stream)
    res = run_prequential(twin.rec.rank, twin.step, stream, phases=("warmup",), evaluate=("warmup",))
    return res.metrics()[metric]


def select_passes(make: Callable[[], MetaStrategy], rec0: OnlineRecommender, stream: OnlineStream,
                  replay: Sequence, grid: Sequence[int], metric: str = "ndcg@10"
                  ) -> tuple[int, pd.DataFrame, MetaStrategy]:
    """How many passes over the replay to meta-train for: the best on the *warm-up* share (never test).

    Trains once, scoring a copy after each pass count of ``grid``; returns
    the chosen count, the table and the strategy trained for that count
    (rebound to a fresh copy of ``rec0``).
    """
    strategy = make().bind(rec0.clone(), stream)
    rows, best, best_state, done = [], -np.inf, None, 0
    for p in sorted(set(grid)):
        for _ in range(p - done):
            for batch in replay:
                strategy.step(batch)
        done = p
        score = _warmup_score(strategy, rec0, stream, metric)
        rows.append({"value": p, metric: score})
        if score > best:
            best, best_state = score, _continue(strategy, rec0, stream)
    table = pd.DataFrame(rows)
    chosen = int(table.loc[table[metric].idxmax(), "value"])
    return chosen, table, best_state.rebind(rec0.clone(), stream)


def load_drift_stream(settings: MelonSettings, seed: int, alike: bool = False) -> OnlineStream:
    """The planted-drift stream (:func:`~.drift.planted_drift_stream`) of ``seed`` in batches."""
    data = planted_drift_stream(settings.drift_users, settings.drift_items,
                                max_interactions=settings.drift_max_interactions, alike=alike, seed=seed)
    return OnlineStream(data, settings.drift_batch, settings.train_share, settings.warmup_share,
                        settings.n_eval_neg, settings.n_neighbours, seed=seed)


# ----------------------------------------------------------------- Table 2, 3, Fig 5
@dataclass
class Comparison:
    """Everything :func:`run_comparison` measured.

    ``runs``: one row per (recommender, strategy, seed) with HR@k, NDCG@k,
    the wall seconds of the online pass, the meta-training passes and the
    mean rate / eta of the online updates (where recorded); ``per_batch``:
    NDCG@10 etc. per test batch; ``selection``: the warm-up validation of
    ``eta``, ``w_new``, SML's rate and the meta-training passes; ``ranks``:
    the test ranks of each run ``(recommender, strategy, seed)``; ``kept``:
    the trained strategies and recommenders of the first seed;
    ``kept_all``: those of every seed for the strategies in ``keep_all``.
    """

    runs: pd.DataFrame
    per_batch: pd.DataFrame
    selection: pd.DataFrame
    rates: dict[str, dict[str, float]]
    kept: dict[tuple[str, str], tuple[UpdateStrategy, OnlineRecommender]] = field(default_factory=dict)
    streams: dict[int, OnlineStream] = field(default_factory=dict)
    ranks: dict[tuple[str, str, int], torch.Tensor] = field(default_factory=dict)
    kept_all: dict[tuple[str, str, int], tuple[UpdateStrategy, OnlineRecommender]] = field(default_factory=dict)


def _select_rates(kind, rec0, stream, settings, base, seed, selection):
    if settings.lr is None:
        lr, t1 = select_on_warmup(rec0, stream, lambda v: Default(v), settings.lr_grid)
    else:
        lr, t1 = settings.lr, pd.DataFrame()
    w_new, t2 = select_on_warmup(rec0, stream, lambda v: make_strategy("eALS", settings, lr, v, seed),
                                 settings.w_new_grid) if "eALS" in base else (1.0, pd.DataFrame())
    sml_lr, t3 = settings.sml_lr, pd.DataFrame()
    if "SML" in strategies_for(kind, base) and sml_lr is None:
        sml_lr, t3 = select_on_warmup(rec0, stream, lambda v: make_strategy("SML", settings, lr, seed=seed, sml_lr=v),
                                      settings.sml_lr_grid)
    for what, t in (("eta", t1), ("w_new", t2), ("sml_lr", t3)):
        if len(t):
            selection.append(t.assign(recommender=kind, parameter=what))
    return {"lr": lr, "w_new": w_new, "sml_lr": sml_lr}


def run_comparison(settings: MelonSettings, device: torch.device | str = "cpu", strategies: Sequence[str] | None = None,
                   recommenders: Sequence[str] | None = None, n_seeds: int | None = None,
                   long_term_weight: float | None = None, keep_first_seed: bool = True,
                   ablations_on: Sequence[str] = ("BPR",), stream_fn: Callable[[int], OnlineStream] | None = None,
                   extra: Sequence[str] | None = None, keep_all: Sequence[str] = ("MeLON",),
                   meta_train: bool = True) -> Comparison:
    """Every strategy on every recommender and seed, evaluated prequentially on the test batches.

    Per seed: the stream's draws, the pre-training and every meta-model's
    initialisation change. ``eta`` (Default's rate, used by every strategy as
    its base rate), eALS's ``w_new`` and SML's rate are selected on the first
    seed's warm-up share unless given. Every meta-learned strategy is first
    meta-trained on the replayed end of the pre-training share
    (:func:`meta_pretrain`), for a number of passes chosen on the first seed's
    warm-up (:func:`select_passes`). "No update" is always run; ``extra``
    (default: the settings' ablations and controls, when ``strategies`` is
    None) on the recommenders ``ablations_on``, except
    "Default at MeLON's rate" (Default at the base rate times MeLON's mean
    rate / eta of the same seed), which runs wherever MeLON does.
    ``stream_fn(seed)`` replaces :func:`load_stream`.
    """
    base = ["No update", *(strategies if strategies is not None else settings.strategies)]
    if extra is None:
        extra = [*settings.ablations, *settings.controls] if strategies is None else []
    kinds = list(recommenders if recommenders is not None else settings.recommenders)
    n_seeds = n_seeds or settings.n_seeds
    runs, per_batch, selection, rates, kept, streams = [], [], [], {}, {}, {}
    ranks, kept_all, passes = {}, {}, {}
    for rep in range(n_seeds):
        seed = settings.seed + rep
        stream = stream_fn(seed) if stream_fn is not None else load_stream(settings, seed, long_term_weight)
        streams[seed] = stream
        replay = stream.replay_batches(settings.replay_batches)
        for kind in kinds:
            seeds = seed_everything(seed)
            rec0 = pretrain(kind, stream, settings, seeds, device)
            if kind not in rates:
                rates[kind] = _select_rates(kind, rec0, stream, settings, base, seed, selection)
            names = strategies_for(kind, base)
            names += [e for e in extra if e != DEFAULT_AT_MELON and kind in ablations_on]
            if DEFAULT_AT_MELON in extra and "MeLON" in names:
                names.append(DEFAULT_AT_MELON)
            if kind == "BiasedBPR":
                names = [n for n in names if n in BIASED_STRATEGIES]
            mean_rate = {}
            for name in progress(names, desc=f"seed {seed} {kind}"):
                torch.manual_seed(seed)  # meta-model initialisation
                r = rates[kind]
                lr = r["lr"] * mean_rate.get("MeLON", 1.0) if name == DEFAULT_AT_MELON else r["lr"]
                make = lambda n=name, lr=lr: make_strategy(  # noqa: E731
                    "Default" if n == DEFAULT_AT_MELON else n, settings, lr, r["w_new"], seed, r["sml_lr"])
                sw = Stopwatch()
                n_pass = 0
                with sw("meta-train"):
                    if isinstance(make(), MetaStrategy) and meta_train and max(settings.meta_passes) > 0:
                        if (kind, name) not in passes:
                            n_pass, t, strat = select_passes(make, rec0, stream, replay, settings.meta_passes)
                            passes[(kind, name)] = n_pass
                            selection.append(t.assign(recommender=kind, parameter=f"passes {name}"))
                        else:
                            n_pass = passes[(kind, name)]
                            strat = meta_pretrain(make(), rec0, stream, replay, n_pass)
                    else:
                        strat = make().bind(rec0.clone(), stream)
                rec = strat.rec
                with sw("online"):
                    res = run_prequential(rec.rank, strat.step, stream)
                if isinstance(strat, MetaStrategy):
                    strat.drop_graph()  # kept strategies need not hold the last look-ahead's activations
                n_batches = len(stream.batches("warmup")) + len(stream.batches("test"))
                log = getattr(strat, "rate_log", [])
                if log:
                    mean_rate[name] = float(np.mean(log))
                runs.append({"recommender": kind, "strategy": name, "seed": seed, **res.metrics(),
                             "seconds_per_batch": sw.total("online") / n_batches,
                             "meta_train_s": sw.total("meta-train"), "passes": n_pass,
                             "lr / eta": lr / r["lr"], "mean rate / eta": mean_rate.get(name, np.nan)})
                per_batch.append(res.per_batch.assign(recommender=kind, strategy=name, seed=seed))
                ranks[(kind, name, seed)] = res.ranks
                if keep_first_seed and rep == 0:
                    kept[(kind, name)] = (strat, rec)
                if name in keep_all:
                    kept_all[(kind, name, seed)] = (strat, rec)
    sel = pd.concat(selection, ignore_index=True) if selection else pd.DataFrame()
    return Comparison(pd.DataFrame(runs), pd.concat(per_batch, ignore_index=True), sel, rates, kept, streams,
                      ranks, kept_all)


def run_popularity(comparison: Comparison) -> pd.DataFrame:
    """Popularity (:class:`rec_lib.models.Popularity`) on the same streams, prequentially.

    Counts start from the pre-training share and grow with every batch after
    it was scored, so each test batch is ranked by the counts of everything
    before it. Adds its ranks to ``comparison.ranks`` under
    ``("none", "Popularity", seed)`` and returns its runs.
    """
    rows = []
    for seed, stream in comparison.streams.items():
        pop = Popularity(stream.n_users, stream.n_items).fit(stream.pretrain.users, stream.pretrain.items)

        def score(batch, pop=pop):
            return rank_against_candidates(pop(batch.users, batch.candidates))

        def update(batch, pop=pop):
            pop.counts += torch.bincount(batch.items, minlength=stream.n_items).to(pop.counts.dtype)

        res = run_prequential(score, update, stream)
        comparison.ranks[("none", "Popularity", seed)] = res.ranks
        rows.append({"recommender": "none", "strategy": "Popularity", "seed": seed, **res.metrics()})
    out = pd.DataFrame(rows)
    comparison.runs = pd.concat([comparison.runs, out], ignore_index=True)
    return out


def segment_runs(comparison: Comparison, user_type: dict[int, np.ndarray] | None = None,
                 ks: Sequence[int] = (5, 10)) -> pd.DataFrame:
    """HR@k and NDCG@k of every run per user segment (:func:`rec_lib.evaluation.segment_breakdown`).

    A test user is *returning* when it has an interaction before the online
    test (pre-training or warm-up), *new* otherwise. With ``user_type``
    (per seed, a label per user: the planted drift) the rows are split by it
    instead. One row per (recommender, strategy, seed, segment).
    """
    rows = []
    for (kind, name, seed), r in comparison.ranks.items():
        stream = comparison.streams[seed]
        test = stream.phase_rows("test")
        users, items = stream.data.users[test], stream.data.items[test]
        m = per_row_metrics(r.numpy(), ks=ks, which=("hit", "ndcg"))
        if user_type is None:
            before = np.arange(stream.train_end)
            t = segment_breakdown(users, items, stream.data.users[before], stream.data.items[before], m)
            t = t.rename(columns={"user_segment": "segment"})
        else:
            lab = user_type[seed][users]
            t = pd.DataFrame({"segment": lab, **m}).groupby("segment", as_index=False).agg(
                n=("hit@5", "size"), **{k: (k, "mean") for k in m})
        t = t.rename(columns=lambda c: c.replace("hit@", "hr@"))
        rows.append(t.assign(recommender=kind, strategy=name, seed=seed))
    return pd.concat(rows, ignore_index=True)


def run_drift(settings: MelonSettings, device: torch.device | str = "cpu", alike: bool = False,
              n_seeds: int | None = None) -> tuple[Comparison, dict[int, np.ndarray]]:
    """BPR-MF with ``settings.drift_strategies`` on the planted-drift stream of each seed (or its control).

    Each replicate draws a new stream (its seed) and a new pre-training.
    Returns the comparison and, per seed, the type of each user.
    """
    comp = run_comparison(settings, device, strategies=settings.drift_strategies, recommenders=("BPR",),
                          n_seeds=n_seeds or settings.drift_seeds, extra=[],
                          stream_fn=lambda seed: load_drift_stream(settings, seed, alike), keep_all=("MeLON",))
    types = {seed: st.data.ground_truth["user_type"] for seed, st in comp.streams.items()}
    return comp, types


def drift_rates(comparison: Comparison, user_type: dict[int, np.ndarray], name: str = "MeLON",
                kind: str = "BPR", n_batches: int = 8) -> pd.DataFrame:
    """Mean rate / eta of the trained ``name`` per seed x user type x parameter group, on the last test batches."""
    from rec_lib.online_update.drift import rates_by_group

    out = []
    for (k, n, seed), (strat, _) in comparison.kept_all.items():
        if k != kind or n != name:
            continue
        batches = comparison.streams[seed].batches("test")[-n_batches:]
        df = rates_by_group(strat, batches, user_type[seed])
        out.append(df.groupby(["user_type", "group"], as_index=False)["rate"].mean().assign(seed=seed))
    return pd.concat(out, ignore_index=True)


def drift_decomposition(comparison: Comparison, name: str = "MeLON", kind: str = "BPR") -> pd.DataFrame:
    """:func:`~.drift.two_way_decomposition` of the trained ``name``'s ``W`` on the last test batch, per seed."""
    from rec_lib.online_update.drift import two_way_decomposition

    rows = []
    for (k, n, seed), (strat, rec) in comparison.kept_all.items():
        if k != kind or n != name:
            continue
        batch = comparison.streams[seed].batches("test")[-1]
        view = BatchView(rec, batch)
        W = strat.learning_rate_matrix(view)
        rows.append({"seed": seed, **two_way_decomposition(W, view.involved)})
    return pd.DataFrame(rows)


def paired(runs: pd.DataFrame, a: str, b: str, metric: str = "hr@5", **where) -> tuple[np.ndarray, np.ndarray]:
    """``metric`` of strategies ``a`` and ``b`` aligned on the seeds both ran (rows filtered by ``where``)."""
    df = runs
    for k, v in where.items():
        df = df[df[k] == v]
    wide = df.pivot_table(index="seed", columns="strategy", values=metric)
    missing = [s for s in (a, b) if s not in wide.columns]
    if missing:
        raise KeyError(f"strategies {missing} were not run (have {sorted(wide.columns)})")
    wide = wide[[a, b]].dropna()
    return wide[a].to_numpy(), wide[b].to_numpy()


# ------------------------------------------------------------------------ Table 4
def time_strategies(comparison: Comparison, recommender: str, names: Sequence[str], repeats: int = 10,
                    ) -> pd.DataFrame:
    """Table 4: seconds per online batch update of each strategy, timed in rotation.

    Each strategy continues from its trained state (first seed) on a copy of
    its recommender and steps through the test batches, one batch per call,
    the strategies taking turns (:func:`rec_lib.utils.benchmark_rotation`).
    Returns median seconds and the ratio to Default. Strategies that do not
    apply to ``recommender`` (SML on NCF) are left out.
    """
    names = strategies_for(recommender, names)
    seed = min(comparison.streams)
    batches = comparison.streams[seed].batches("test")
    fns = {}
    for name in names:
        strat, rec = comparison.kept[(recommender, name)]
        twin = _continue(strat, rec, comparison.streams[seed])
        it = iter(range(10**9))
        fns[name] = (lambda s=twin, it=it: s.step(batches[next(it) % len(batches)]))
    df = benchmark_rotation(fns, repeats=repeats, warmup=1, baseline="Default" if "Default" in names else None)
    df["x Default"] = df["median_s"] / df.loc["Default", "median_s"] if "Default" in df.index else np.nan
    return df[["median_s", "min_s", "max_s", "n", "x Default"]]


def pairs_per_interaction(rec: OnlineRecommender, batch) -> int:
    """``M``: the parameters one interaction involves (its user, item and negative rows and every dense weight)."""
    return int(sum(g[0].numel() for g in rec.per_sample(head(batch, 1)).grads.values()))


def time_per_pair(settings: MelonSettings, stream: OnlineStream, device: torch.device | str = "cpu",
                  n_batches: int = 6) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seconds per online batch against the ``n x M`` (interaction, parameter) pairs MeLON rates (Table 4's law).

    For every NCF size ``d`` of ``settings.sweep_dims`` (tower ``(2d, d)``)
    and batch size ``n`` of ``settings.sweep_batches``: three strategies on
    fresh copies of one NCF (initialised from ``settings.seed``; the values do
    not change the cost) step through the first ``n`` interactions of
    ``n_batches`` test batches, timed in rotation over ``settings.sweep_rounds``
    rounds after one untimed round: Default; MeLON as implemented (the update
    keeps its graph for the next meta-step, and the role MLP records its graph
    at the pairs with a non-zero gradient only, ``MeLON.live_only``); MeLON
    recomputing the look-ahead (``keep_graph=False``); and the straightforward
    MeLON (``keep_graph=False``, ``live_only=False``). All MeLONs take the
    same steps from the same state: ``identical`` checks that the first two
    end with bitwise-equal recommender and meta-parameters, ``max_rel_dev``
    is the largest deviation of the first from the straightforward one
    (relative to each tensor's largest entry; float summation order only).

    Returns the table (one row per point: ``d``, ``n``, ``M``, ``pairs`` =
    ``n M``, median seconds, the ratios) and the round times (long format:
    ``d``, ``n``, ``round``, one column per strategy).
    """
    s = settings
    test = [b for b in stream.batches("test") if len(b) >= max(s.sweep_batches)][:n_batches]
    if not test:
        raise ValueError(f"the stream has no test batch of {max(s.sweep_batches)} interactions for the sweep")
    rows, rounds = [], []
    for d in s.sweep_dims:
        torch.manual_seed(s.seed)
        rec0 = OnlineRecommender.build("NCF", stream.n_users, stream.n_items, d, (2 * d, d), device)
        M = pairs_per_interaction(rec0, test[0])
        for n in s.sweep_batches:
            batches = [head(b, n) for b in test]
            strats = {"Default": Default(0.1)}
            for name, keep, live in (("MeLON", True, True), ("MeLON (recomputed)", False, True),
                                     ("MeLON (straightforward)", False, False)):
                strats[name] = MeLON(0.1, s.meta_lr, "2D", s.melon_hidden, s.melon_layers, s.max_ratio)
                strats[name].keep_graph, strats[name].live_only = keep, live
            fns = {}
            for name, strat in strats.items():
                torch.manual_seed(s.seed)  # the meta-model is built when bound: both MeLONs start alike
                strat.bind(rec0.clone(), stream)
                it = iter(range(10**9))
                fns[name] = lambda st=strat, it=it: st.step(batches[next(it) % len(batches)])
            df, times = benchmark_rotation(fns, repeats=s.sweep_rounds, warmup=1, rounds=True)
            a, b, c = strats["MeLON"], strats["MeLON (recomputed)"], strats["MeLON (straightforward)"]
            same = all(torch.equal(x, y) for x, y in zip(_state(a), _state(b)))
            med = df["median_s"]
            rows.append({"d": d, "n": n, "M": M, "pairs": n * M, "default_s": med["Default"],
                         "melon_s": med["MeLON"], "recomputed_s": med["MeLON (recomputed)"],
                         "straightforward_s": med["MeLON (straightforward)"],
                         "x Default": med["MeLON"] / med["Default"],
                         "graph speedup": med["MeLON (recomputed)"] / med["MeLON"],
                         "speedup": med["MeLON (straightforward)"] / med["MeLON"], "identical": bool(same),
                         "max_rel_dev": max(float((x - y).abs().max() / y.abs().max().clamp_min(1e-30))
                                            for x, y in zip(_state(a), _state(c)))})
            rounds.append(times.assign(d=d, n=n, round=np.arange(len(times))))
    return pd.DataFrame(rows), pd.concat(rounds, ignore_index=True)


def _state(strategy: MetaStrategy) -> list[torch.Tensor]:
    """The recommender's parameters, then the meta-parameters (for comparing two runs)."""
    return [strategy.rec.params[k] for k in sorted(strategy.rec.params)] + list(strategy.meta_params)


def _continue(strategy: UpdateStrategy, rec: OnlineRecommender, stream: OnlineStream) -> UpdateStrategy:
    """A deep copy of a trained strategy bound to a copy of its recommender (for timing)."""
    import copy

    saved = strategy.rec, strategy.stream
    strategy.rec = strategy.stream = None
    try:
        twin = copy.deepcopy(strategy)
    finally:
        strategy.rec, strategy.stream = saved
    twin.rec, twin.stream = rec.clone(), stream
    return twin


# ------------------------------------------------------------------ Figure 4, ranks
def head(batch, n: int):
    """The first ``n`` interactions of ``batch`` (every per-interaction field cut alike)."""
    from dataclasses import replace

    return replace(batch, rows=batch.rows[:n],
                   **{k: getattr(batch, k)[:n] for k in ("users", "items", "negatives", "timestamps", "candidates",
                                                           "user_nbrs", "user_nbrs_mask", "item_nbrs", "item_nbrs_mask")})


def trained_strategies_view(comparison: Comparison, recommender: str, n_interactions: int = 64
                            ) -> tuple[BatchView, dict[str, UpdateStrategy]]:
    """The first ``n_interactions`` of the last test batch that has that many, seen by MeLON's final recommender.

    Returns the :class:`BatchView` and the trained strategies of the first
    seed (for their learning-rate matrices on that same grid).
    """
    seed = min(comparison.streams)
    test = comparison.streams[seed].batches("test")
    batch = next((b for b in reversed(test) if len(b) >= n_interactions), test[-1])
    _, rec = comparison.kept[(recommender, "MeLON")]
    view = BatchView(rec, head(batch, n_interactions))
    strategies = {name: s for (kind, name), (s, _) in comparison.kept.items() if kind == recommender}
    return view, strategies


# ------------------------------------------------------------------------ claims
def margin_over(runs: pd.DataFrame, target: str, others: Sequence[str], metric: str = "hr@5",
                recommender: str | None = None) -> dict[str, float | str]:
    """How far ``target`` is ahead of the best of ``others`` on ``metric`` (means over seeds).

    Returns the margin, its standard error (``sqrt(s_a^2/n_a + s_b^2/n_b)``,
    the tolerance of a verdict), the best competitor and both means.
    """
    df = runs if recommender is None else runs[runs["recommender"] == recommender]
    g = df.groupby("strategy")[metric]
    missing = [s for s in (target, *others) if s not in g.groups]
    if missing:
        raise KeyError(f"strategies {missing} were not run (have {sorted(g.groups)})")
    mean, std, n = g.mean(), g.std(ddof=1).fillna(0.0), g.size()
    best = max(others, key=lambda s: mean[s])
    se = float(np.sqrt(std[target] ** 2 / n[target] + std[best] ** 2 / n[best]))
    return {"margin": float(mean[target] - mean[best]), "se": se, "best_other": best,
            "target_mean": float(mean[target]), "best_mean": float(mean[best]),
            "relative": float((mean[target] - mean[best]) / mean[best]) if mean[best] > 0 else float("nan")}
