"""Learned sketching policies: DiPS (Ghosh, Mitra and Lan, AAAI 2022) and the static policies it is compared with.

Derived in ``book/dips.ipynb``. Modules: :mod:`~rec_lib.sketching.projection`
(the Top-K projection layer, straight-through selection),
:mod:`~rec_lib.sketching.policy` (the policy network ``f``),
:mod:`~rec_lib.sketching.inner` (the MAML-style user adaptation),
:mod:`~rec_lib.sketching.baselines` (Random, Hardest, Influence),
:mod:`~rec_lib.sketching.training` (Algorithm 1),
:mod:`~rec_lib.sketching.case_studies` (GRU4Rec transfer and session augmentation),
:mod:`~rec_lib.sketching.protocol` (data, settings, the experiment grid).
"""

from rec_lib.sketching.protocol import CHAPTER, PRESETS, DiPSSettings

__all__ = ["CHAPTER", "PRESETS", "DiPSSettings"]
