"""Two-time-scale user representations (2TS): theory, simulation, model, baselines, protocol.

The chapter ``book/two_time_scale.ipynb`` derives and re-runs
*Learning Two-Time-Scale Representations for Large Scale Recommendations*:

- :mod:`~rec_lib.two_time_scale.theory`: Theorem 2.1 (``beta(t*)`` with the Hurwitz
  zeta function), the optimal threshold ``t**`` (eq. 7), Implications 1-2;
- :mod:`~rec_lib.two_time_scale.simulation`: the learning-to-learn setting
  simulated, vectorised over users;
- :mod:`~rec_lib.two_time_scale.model`: stage 1 (eq. 10), stage 2 (eq. 8-12),
  2TS-Plus, 2TS-SingleStage, 2-GRU;
- :mod:`~rec_lib.two_time_scale.baselines`: CCF, SumPooling, GRU4Rec;
- :mod:`~rec_lib.two_time_scale.protocol`: the 70/10/20 time split, 499
  sampled negatives, MRR and Recall@10, batched sequence evaluation;
- :mod:`~rec_lib.two_time_scale.experiments`: running every method per seed;
- :mod:`~rec_lib.two_time_scale.chapter`: the chapter's settings (``CHAPTER``).
"""

from rec_lib.two_time_scale import baselines, experiments, model, protocol, simulation, stream, theory
from rec_lib.two_time_scale.chapter import CHAPTER, PRESETS, TTSSettings

__all__ = ["CHAPTER", "PRESETS", "TTSSettings", "theory", "simulation", "model", "baselines", "protocol", "stream",
           "experiments"]
