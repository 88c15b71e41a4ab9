"""Online updates of a recommender: MeLON (Kim et al. 2022) and the strategies it is compared with.

- :mod:`.stream`: the chronological stream in mini-batches and the prequential protocol;
- :mod:`.recommender`: BPR-MF / NCF as parameters updated online, per-interaction
  gradients with ``torch.func``;
- :mod:`.strategies`: Default, eALS, MWNet, MetaSGD, S2Meta, SML (one interface);
- :mod:`.melon`: MeLON's three steps and its ablations MeLON_I / MeLON_P;
- :mod:`.analysis`: the learning-rate matrix of a batch, Lemma 1-2 and Theorem 3;
- :mod:`.drift`: a stream with planted heterogeneous drift and MeLON's rates read against it;
- :mod:`.experiment`: the chapter's settings (``CHAPTER``) and runners.
"""

from rec_lib.online_update.analysis import (
    BatchView, best_rank_k, numerical_rank, one_directional_gap, pair_table, rank_table, singular_values,
    spectral_norm, submatrix,
)
from rec_lib.online_update.experiment import (
    ABLATIONS, CHAPTER, PRESETS, RECOMMENDERS, STRATEGIES, Comparison, MelonSettings, load_stream, make_strategy,
    pretrain, run_comparison, select_on_warmup, time_strategies, trained_strategies_view, margin_over, BPR_ONLY,
    strategies_for, CONTROLS, DEFAULT_AT_MELON, meta_pretrain, select_passes, segment_runs, run_popularity,
    load_drift_stream, paired, BIASED_STRATEGIES, run_drift, drift_rates, drift_decomposition, time_per_pair, head,
    pairs_per_interaction,
)
from rec_lib.online_update.drift import (
    USER_TYPES, gradient_correlations, pair_groups, planted_drift_stream, rates_by_group, two_way_decomposition,
)
from rec_lib.online_update.melon import VARIANTS, MeLON, MeLONNet, role_features
from rec_lib.online_update.recommender import OnlineRecommender, PerSample
from rec_lib.online_update.strategies import (
    EALS, SML, Default, GlobalRate, MetaSGD, MetaStrategy, MWNet, NoUpdate, S2Meta, Touched, UpdateStrategy, preprocess,
)
from rec_lib.online_update.stream import Batch, InteractionHistory, OnlineStream, PastPairs, PrequentialResult, run_prequential

__all__ = [
    "Batch", "InteractionHistory", "PastPairs", "OnlineStream", "PrequentialResult", "run_prequential",
    "OnlineRecommender", "PerSample",
    "UpdateStrategy", "NoUpdate", "Default", "EALS", "MetaStrategy", "MWNet", "MetaSGD", "S2Meta", "SML", "Touched", "preprocess",
    "MeLON", "MeLONNet", "VARIANTS", "role_features",
    "BatchView", "singular_values", "numerical_rank", "best_rank_k", "spectral_norm", "one_directional_gap",
    "rank_table", "pair_table", "submatrix",
    "MelonSettings", "PRESETS", "CHAPTER", "STRATEGIES", "ABLATIONS", "RECOMMENDERS", "load_stream", "pretrain",
    "make_strategy", "select_on_warmup", "Comparison", "run_comparison", "time_strategies", "trained_strategies_view",
    "margin_over", "BPR_ONLY", "strategies_for", "CONTROLS", "DEFAULT_AT_MELON", "meta_pretrain", "select_passes",
    "segment_runs", "run_popularity", "load_drift_stream", "paired", "GlobalRate",
    "USER_TYPES", "gradient_correlations", "pair_groups", "planted_drift_stream", "rates_by_group",
    "two_way_decomposition", "BIASED_STRATEGIES", "run_drift", "drift_rates", "drift_decomposition",
    "time_per_pair", "head", "pairs_per_interaction",
]
