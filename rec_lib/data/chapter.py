"""Settings of the "Data, protocols and metrics" chapter (``book/data_protocols.ipynb``)."""

from __future__ import annotations

from dataclasses import dataclass

from rec_lib.config import BaseSettings, ChapterSpec, SettingsError

__all__ = ["DataSettings", "PRESETS", "CHAPTER"]


@dataclass(frozen=True)
class DataSettings(BaseSettings):
    """Knobs of the data chapter: the sizes of the synthetic data it shows."""

    stream_users: int = 2000
    stream_items: int = 1500
    catalogue_items: int = 100_000
    catalogue_dim: int = 32
    catalogue_users: int = 5000
    n_periods: int = 30
    n_negatives: int = 99
    implicit_threshold: float = 4.0
    core: int = 20
    n_seeds: int = 3
    mf_epochs: int = 10

    def validate(self) -> None:
        super().validate()
        for name in ("stream_users", "stream_items", "catalogue_items", "catalogue_dim", "catalogue_users",
                     "n_periods", "n_negatives", "core", "mf_epochs"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name.upper()} must be >= 1, got {getattr(self, name)}")
        if self.n_seeds < 2:
            raise SettingsError(f"N_SEEDS must be >= 2 (one replicate never gives a verdict), got {self.n_seeds}")
        if self.stream_items < 400:
            raise SettingsError(f"STREAM_ITEMS must be >= 400 (users may have 400 distinct items), got {self.stream_items}")


PRESETS = {
    "smoke": dict(stream_users=300, stream_items=400, catalogue_items=10_000, catalogue_users=500, n_periods=10,
                  n_seeds=2, mf_epochs=3),
    "tutorial": {},
    "paper": dict(stream_users=20_000, stream_items=5000, catalogue_items=1_000_000, catalogue_dim=64,
                  catalogue_users=50_000),
}


def _datasets(settings: DataSettings) -> list[str]:
    return [settings.dataset]


CHAPTER = ChapterSpec(name="data_protocols", settings=DataSettings, presets=PRESETS, datasets=_datasets)
