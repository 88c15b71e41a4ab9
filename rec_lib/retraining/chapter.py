"""Settings of the periodic-retraining chapter (``book/sml.ipynb``): presets and validation."""

from __future__ import annotations

from dataclasses import dataclass, replace

from rec_lib.config import BaseSettings, ChapterSpec, SettingsError
from rec_lib.retraining.protocol import PROTOCOLS, PeriodProtocol
from rec_lib.retraining.strategies import MFConfig, SeqConfig, SMLConfig

__all__ = ["SMLSettings", "PRESETS", "CHAPTER", "METHODS", "ABLATIONS", "MF_BASELINES"]

METHODS = ("Popularity", "BiasedMF", "Full-retrain", "Fine-tune", "SPMF", "GRU4Rec", "Caser", "SML")
MF_BASELINES = ("BiasedMF", "Full-retrain", "Fine-tune", "SPMF")  # their learning rate is tuned on validation
ABLATIONS = ("SML-CNN", "SML-FC", "SML-N", "SML-S", "SML-FP")


@dataclass(frozen=True)
class SMLSettings(BaseSettings):
    """Knobs of the SML chapter. ``None`` in a protocol field keeps the dataset's protocol."""

    dataset: str = "ml-100k"
    n_seeds: int = 3
    n_neg: int = 999
    # periods (None: the dataset's protocol in PROTOCOLS)
    n_periods: int | None = None
    init_end: int | None = None
    val_start: int | None = None
    test_start: int | None = None
    # MF and the MF-based baselines
    dim: int = 16
    epochs: int = 5
    pretrain_epochs: int = 20
    lr: float = 1e-2
    lr_grid: tuple[float, ...] = (3e-3, 1e-2, 3e-2)  # the MF baselines' rates tried on the validation periods
    batch_size: int = 1024
    reservoir: int = 7000
    replay: int = 3333
    # SML
    filters: tuple[int, ...] = (10, 5)
    fc: int = 512
    outer_iters: int = 2
    hat_epochs: int = 1
    theta_epochs: int = 1
    lr_hat: float = 1e-2
    lr_theta: float = 1e-2  # validated on the validation periods: 1e-3 too slow, 3e-2 diverges
    l2_theta: float = 0.0
    # sequential baselines
    gru_hidden: int = 32
    gru_epochs: int = 2
    gru_max_len: int = 20
    caser_l: int = 5
    caser_epochs: int = 2
    caser_pretrain_epochs: int = 10
    # the transfer's mechanism: a synthetic stream of returning users, long-term weight at both ends
    stream_users: int = 800
    stream_items: int = 600
    stream_max: int = 200
    stream_weights: tuple[float, ...] = (0.0, 0.9)
    stream_seeds: int = 5
    mech_periods: tuple[int, int, int, int] = (20, 5, 14, 16)  # periods, init_end, val_start, test_start
    mech_n_neg: int = 99
    mech_batch: int = 256
    mech_fc: int = 128
    mech_outer_iters: int = 5
    mech_theta_epochs: int = 3
    mech_warm_start: int = 200
    # ablations, sweeps, timing
    ablation_seeds: int = 3
    bench_epochs: int = 20
    sweep_filters: tuple[int, ...] = (6, 10, 14)
    sweep_layers: tuple[int, ...] = (1, 2, 3)
    benchmark_repeats: int = 3
    workers: int = 2

    def validate(self) -> None:
        super().validate()
        if self.dataset not in PROTOCOLS or self.dataset == "synthetic":
            known = sorted(k for k in PROTOCOLS if k != "synthetic")
            raise SettingsError(f"DATASET={self.dataset!r} has no period protocol; choose one of {known}")
        for name in ("n_seeds", "n_neg", "dim", "epochs", "pretrain_epochs", "batch_size", "reservoir", "replay", "fc",
                     "outer_iters", "hat_epochs", "theta_epochs", "gru_hidden", "gru_epochs", "gru_max_len", "caser_l",
                     "caser_epochs", "caser_pretrain_epochs", "stream_users", "stream_items", "stream_seeds",
                     "ablation_seeds", "benchmark_repeats", "workers", "stream_max", "mech_n_neg", "mech_batch",
                     "mech_fc", "mech_outer_iters", "mech_theta_epochs", "bench_epochs"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name.upper()} must be >= 1, got {getattr(self, name)}")
        if self.mech_warm_start < 0:
            raise SettingsError(f"MECH_WARM_START must be >= 0, got {self.mech_warm_start}")
        if not self.lr_grid or any(v <= 0 for v in self.lr_grid):
            raise SettingsError(f"LR_GRID must hold positive learning rates, got {self.lr_grid}")
        for name in ("lr", "lr_hat", "lr_theta"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name.upper()} must be > 0, got {getattr(self, name)}")
        if self.l2_theta < 0:
            raise SettingsError(f"L2_THETA must be >= 0, got {self.l2_theta}")
        if not self.filters or any(n < 1 for n in self.filters):
            raise SettingsError(f"FILTERS must be a non-empty tuple of positive filter counts, got {self.filters}")
        if any(n < 1 for n in self.sweep_filters) or any(n < 1 for n in self.sweep_layers):
            raise SettingsError("SWEEP_FILTERS and SWEEP_LAYERS must hold positive integers")
        if not self.stream_weights or any(not 0 <= w <= 1 for w in self.stream_weights):
            raise SettingsError(f"STREAM_WEIGHTS must be long-term weights in [0, 1], got {self.stream_weights}")
        if self.stream_max > self.stream_items:
            raise SettingsError(f"STREAM_MAX ({self.stream_max}) cannot exceed STREAM_ITEMS ({self.stream_items})")
        try:
            self.protocol().validate()
            self.mech_protocol().validate()
        except ValueError as err:
            raise SettingsError(f"bad periods (N_PERIODS, INIT_END, VAL_START, TEST_START): {err}") from None

    # -------------------------------------------------------------- derived
    def protocol(self) -> PeriodProtocol:
        """The dataset's :class:`PeriodProtocol` with this run's overrides."""
        base = PROTOCOLS[self.dataset]
        over = {k: getattr(self, k) for k in ("n_periods", "init_end", "val_start", "test_start")
                if getattr(self, k) is not None}
        return replace(base, **over)

    def stream_protocol(self) -> PeriodProtocol:
        """The synthetic stream's protocol (equal-count periods, same overrides as the dataset's)."""
        over = {k: getattr(self, k) for k in ("n_periods", "init_end", "val_start", "test_start")
                if getattr(self, k) is not None}
        return replace(PROTOCOLS["synthetic"], **over)

    def mech_protocol(self) -> PeriodProtocol:
        """The mechanism stream's protocol: ``mech_periods`` equal-count periods."""
        n, init_end, val_start, test_start = self.mech_periods
        return PeriodProtocol("count", n, init_end=init_end, val_start=val_start, test_start=test_start)

    def mf_config(self) -> MFConfig:
        return MFConfig(dim=self.dim, epochs=self.epochs, pretrain_epochs=self.pretrain_epochs, lr=self.lr,
                        batch_size=self.batch_size, reservoir=self.reservoir, replay=self.replay)

    def sml_config(self, **over) -> SMLConfig:
        cfg = SMLConfig(filters=self.filters, fc=self.fc, outer_iters=self.outer_iters, hat_epochs=self.hat_epochs,
                        theta_epochs=self.theta_epochs, lr_hat=self.lr_hat, lr_theta=self.lr_theta,
                        l2_theta=self.l2_theta, batch_size=self.batch_size)
        return replace(cfg, **over)

    def seq_config(self) -> SeqConfig:
        return SeqConfig(gru_hidden=self.gru_hidden, gru_max_len=self.gru_max_len, gru_epochs=self.gru_epochs,
                         caser_L=self.caser_l, caser_epochs=self.caser_epochs,
                         caser_pretrain_epochs=self.caser_pretrain_epochs)

    @property
    def seeds(self) -> list[int]:
        return [self.seed + k for k in range(self.n_seeds)]


PRESETS = {
    "smoke": dict(n_seeds=1, n_neg=99, n_periods=10, init_end=4, val_start=7, test_start=8, dim=8, epochs=1,
                  pretrain_epochs=2, reservoir=2000, replay=1000, fc=32, outer_iters=1, hat_epochs=1, theta_epochs=1,
                  gru_hidden=8, gru_epochs=1, gru_max_len=10, caser_epochs=1, caser_pretrain_epochs=1,
                  stream_users=150, stream_items=200, stream_max=60, stream_seeds=2,
                  mech_periods=(8, 3, 5, 6), mech_fc=16, mech_outer_iters=2, mech_theta_epochs=1, mech_warm_start=20,
                  lr_grid=(1e-2, 3e-2), ablation_seeds=2, bench_epochs=2,
                  sweep_filters=(6, 10), sweep_layers=(1, 2), benchmark_repeats=2, workers=1),
    "tutorial": dict(lr_grid=(1e-2, 3e-2)),
    "paper": dict(dataset="yelp", n_seeds=3, dim=64, gru_max_len=50, workers=1, epochs=20, pretrain_epochs=100, batch_size=2048,
                  reservoir=30000, replay=15000, outer_iters=5, hat_epochs=5, theta_epochs=5, lr_theta=1e-3,
                  gru_hidden=128, gru_epochs=10, caser_epochs=10, caser_pretrain_epochs=50,
                  stream_users=3000, stream_items=2000, stream_max=400, stream_seeds=5, ablation_seeds=3,
                  lr_grid=(1e-3, 3e-3, 1e-2, 3e-2),
                  sweep_filters=(6, 8, 10, 12, 14), sweep_layers=(1, 2, 3, 4), benchmark_repeats=5),
}


def _datasets(settings: SMLSettings) -> list[str]:
    return [settings.dataset]


CHAPTER = ChapterSpec(name="sml", settings=SMLSettings, presets=PRESETS, datasets=_datasets)
