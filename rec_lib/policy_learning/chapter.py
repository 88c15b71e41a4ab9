"""Settings of the chapter "Fast offline policy learning" (``book/fast_offline_policy.ipynb``)."""

from __future__ import annotations

from dataclasses import dataclass

from rec_lib.config import BaseSettings, ChapterSpec, SettingsError

__all__ = ["PolicySettings", "PRESETS", "CHAPTER", "SYNTHETIC"]

SYNTHETIC = "synthetic"  # a structured synthetic catalogue instead of a registry dataset


@dataclass(frozen=True)
class PolicySettings(BaseSettings):
    """Knobs of the offline-policy chapter.

    ``dataset`` is the main problem (the paper's Twitch: Figures 3, 5-7,
    Table 2), ``second_dataset`` the second one (GoodReads: Figure 4); either
    may be ``"synthetic"`` (a catalogue of ``synthetic_items`` items with
    ``synthetic_users`` sessions). ``lr``/``top_k`` go with ``dataset``,
    ``second_lr``/``second_top_k`` with ``second_dataset``.
    """

    dataset: str = SYNTHETIC
    second_dataset: str = "ml-100k"
    synthetic_items: int = 30_000
    synthetic_users: int = 2600
    synthetic_fractions: tuple[float, ...] = (0.46, 0.08, 0.46)
    min_interactions: int = 20
    dim: int = 32
    batch_size: int = 32
    lr: float = 3e-2
    second_lr: float = 3e-3
    epochs: int = 10
    init: str = "default"
    n_samples: int = 1000
    top_k: int = 256
    second_top_k: int = 64
    epsilon: float = 0.8
    epsilons: tuple[float, ...] = (0.0, 0.2, 0.5, 0.8, 1.0)
    k_values: tuple[int, ...] = (32, 64, 128, 256, 512)
    s_values: tuple[int, ...] = (50, 200, 500, 1000)
    seeds: int = 3
    topk_refresh: int = 4
    hnsw_m: int = 16
    ef_construction: int = 64
    ef_search: int = 256
    ef_values: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
    bench_sizes: tuple[int, ...] = (10_000, 30_000, 100_000, 300_000, 1_000_000)
    bench_dims: tuple[int, ...] = (16, 64, 256)
    bench_dim: int = 32
    bench_dims_items: int = 100_000
    bench_hnsw_max: int = 30_000
    ivf_nprobe: int = 16
    bench_repeats: int = 5
    map_sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    map_temperatures: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
    map_samples: int = 200
    map_top_k: int = 128
    map_repeats: int = 20
    regime_items: int = 50_000
    regime_clusters: int = 1500
    regime_spread: float = 0.1
    control_items: int = 500
    control_spread: float = 0.35
    regime_users: int = 3800
    regime_dim: int = 16
    regime_epochs: int = 10
    # the uniform proposal's epochs at equal time on the regime problem, in units of regime_epochs: a mixture
    # step costs about 4 uniform steps there (the chapter prints the measured ratio beside it); fixed, not
    # timed at run time, so the same seed gives the same numbers
    regime_time_factor: int = 4
    regime_lrs: tuple[float, ...] = (1e-2, 3e-2, 1e-1, 3e-1, 1.0)
    regime_batch: int = 64
    regime_samples: int = 200
    regime_top_k: int = 128
    # the S and K sweeps on the regime problem: the mixture with a smaller S, and with a smaller K (`seeds` each)
    regime_s_small: int = 50
    regime_k_small: int = 32
    bias_repeats: int = 60
    grad_repeats: int = 20
    ope_repeats: int = 10
    threads: int = 1

    def validate(self) -> None:
        super().validate()
        positive = ("synthetic_items", "synthetic_users", "min_interactions", "dim", "batch_size", "epochs",
                    "top_k", "second_top_k", "seeds", "topk_refresh", "hnsw_m", "ef_construction", "ef_search",
                    "bench_repeats", "grad_repeats", "ope_repeats", "bench_dim", "bench_dims_items", "ivf_nprobe",
                    "map_samples", "map_top_k", "map_repeats", "regime_items", "regime_clusters", "control_items",
                    "regime_users", "regime_dim", "regime_epochs", "regime_batch", "regime_samples", "regime_top_k",
                    "bias_repeats", "regime_time_factor", "regime_k_small")
        for name in positive:
            if getattr(self, name) < 1:
                raise SettingsError(f"{name.upper()} must be >= 1, got {getattr(self, name)}")
        if self.init not in ("identity", "default"):
            raise SettingsError(f"INIT must be 'identity' or 'default', got {self.init!r}")
        if self.threads < 0:
            raise SettingsError(f"THREADS must be >= 0 (0 = all cores), got {self.threads}")
        if self.n_samples < 2 or any(s < 2 for s in self.s_values):
            raise SettingsError("N_SAMPLES and every S_VALUES entry must be >= 2 (a covariance needs two samples)")
        for name in ("epsilon", *(f"epsilons[{i}]" for i in range(len(self.epsilons)))):
            v = self.epsilon if name == "epsilon" else self.epsilons[int(name[9:-1])]
            if not 0.0 <= v <= 1.0:
                raise SettingsError(f"{name.upper()} must lie in [0, 1], got {v}")
        if not 2 <= self.regime_s_small < self.regime_samples or self.regime_k_small >= self.regime_top_k:
            raise SettingsError(f"REGIME_S_SMALL must lie in [2, REGIME_SAMPLES) and REGIME_K_SMALL below "
                                f"REGIME_TOP_K (the sweeps compare them with the defaults), got "
                                f"{self.regime_s_small}, {self.regime_k_small}")
        if not self.regime_lrs or min(self.regime_lrs) <= 0:
            raise SettingsError(f"REGIME_LRS must be a non-empty tuple of rates > 0, got {self.regime_lrs}")
        if self.lr <= 0 or self.second_lr <= 0:
            raise SettingsError(f"LR and SECOND_LR must be > 0, got {self.lr}, {self.second_lr}")
        if not self.epsilons or not self.k_values or not self.s_values or not self.bench_sizes or not self.bench_dims:
            raise SettingsError("EPSILONS, K_VALUES, S_VALUES, BENCH_SIZES and BENCH_DIMS must not be empty")
        if any(k < 1 for k in (*self.k_values, *self.ef_values)):
            raise SettingsError("K_VALUES and EF_VALUES must be positive")
        if self.bias_repeats < 3 or self.map_repeats < 2:
            raise SettingsError("BIAS_REPEATS must be >= 3 and MAP_REPEATS >= 2")
        if len(self.synthetic_fractions) != 3 or abs(sum(self.synthetic_fractions) - 1) > 1e-6:
            raise SettingsError(f"SYNTHETIC_FRACTIONS must be 3 shares summing to 1, got {self.synthetic_fractions}")
        if min(self.regime_items, self.control_items, *self.map_sizes) <= max(self.regime_top_k, self.map_top_k):
            raise SettingsError("REGIME_ITEMS, CONTROL_ITEMS and MAP_SIZES must exceed REGIME_TOP_K and MAP_TOP_K")
        if self.bench_dims_items <= self.top_k:
            raise SettingsError(f"BENCH_DIMS_ITEMS must exceed TOP_K={self.top_k}")
        if min(self.bench_sizes) <= self.top_k:
            raise SettingsError(f"every BENCH_SIZES entry must exceed TOP_K={self.top_k}, got {self.bench_sizes}")
        if self.dataset == SYNTHETIC and self.synthetic_items <= max(self.top_k, *self.k_values):
            raise SettingsError(f"SYNTHETIC_ITEMS={self.synthetic_items} must exceed TOP_K and every K_VALUES entry")


PRESETS = {
    "smoke": dict(synthetic_items=4000, synthetic_users=400, epochs=2, n_samples=200, top_k=64, second_top_k=32,
                  epsilons=(0.0, 0.8, 1.0), k_values=(32, 64), s_values=(50, 200), seeds=2, ef_values=(16, 64),
                  bench_sizes=(2000, 5000, 10_000), bench_dims=(8, 16, 32), bench_dim=16, bench_dims_items=5000,
                  bench_hnsw_max=5000, bench_repeats=3, grad_repeats=5, ope_repeats=2, dim=16,
                  map_sizes=(1000, 5000, 20_000), map_temperatures=(1.0, 4.0, 16.0), map_repeats=4,
                  regime_items=5000, regime_clusters=300, control_items=1000, regime_users=600, regime_epochs=2,
                  regime_time_factor=2, regime_lrs=(3e-2, 1e-1),
                  regime_samples=100, regime_top_k=32, regime_s_small=25, regime_k_small=8, bias_repeats=6),
    "tutorial": {},
    "paper": dict(dataset="twitch", second_dataset="goodreads", dim=1000, lr=1e-4, second_lr=5e-5, epochs=50,
                  second_top_k=256, ef_construction=128, bench_sizes=(10_000, 30_000, 100_000, 300_000, 1_000_000),
                  bench_dims=(16, 64, 256, 1000), bench_hnsw_max=1_000_000, hnsw_m=32, grad_repeats=100,
                  threads=0, regime_items=300_000, regime_clusters=10_000, regime_users=10_000,
                  regime_epochs=30, bias_repeats=200),
}


def _datasets(settings: PolicySettings) -> list[str]:
    return [d for d in (settings.dataset, settings.second_dataset) if d != SYNTHETIC]


CHAPTER = ChapterSpec(name="fast_offline_policy", settings=PolicySettings, presets=PRESETS, datasets=_datasets)
