"""Fast offline policy learning over large catalogues (Sakhi, Rohde and Gilotte, AAAI 2023).

The chapter ``book/fast_offline_policy.ipynb`` derives everything here.

- :mod:`~rec_lib.policy_learning.policy`: the softmax policy over fixed item
  embeddings, :math:`f_\\theta(a, x) = h_\\theta(x)^\\top\\beta_a` (section 2, eq. 5).
- :mod:`~rec_lib.policy_learning.rewards`: reward estimators (session
  completion, clipped IPS, clipped DR; eq. 3-4) and synthetic logged bandit data.
- :mod:`~rec_lib.policy_learning.index`: exact, FAISS HNSW (cached) and FAISS IVF inner-product search.
- :mod:`~rec_lib.policy_learning.estimators`: the gradient estimators (exact,
  Reinforce, optimised Reinforce, SNIS with the uniform or mixture proposal:
  eq. 6-9 and Algorithm 1).
- :mod:`~rec_lib.policy_learning.protocol`: the session-completion protocol,
  training and greedy evaluation (section 5).
- :mod:`~rec_lib.policy_learning.bench`: the speed benchmark
  (``python -m rec_lib.policy_learning.bench``, Figures 1-2).
- :mod:`~rec_lib.policy_learning.scale`: per-round rotation timings up to
  :math:`10^6` items (HNSW, or IVF where a single-threaded HNSW build is too
  slow), cost fits and the size where the speed-up passes a bar.
- :mod:`~rec_lib.policy_learning.regime`: where the uniform proposal breaks
  (gradient map), training in that regime and in a control, per-user hits,
  bias U-statistics.
- :mod:`~rec_lib.policy_learning.experiments`: the chapter's experiments.
"""

from rec_lib.policy_learning.chapter import CHAPTER, PRESETS, PolicySettings
from rec_lib.policy_learning.estimators import (
    SNIS,
    ExactGradient,
    FastReinforce,
    Reinforce,
    covariance_loss,
    estimator_gradient,
    mixture_log_q,
    sample_mixture,
    sample_softmax,
    snis_weights,
    stratified_counts,
)
from rec_lib.policy_learning.index import ExactIndex, HNSWIndex, IVFIndex, beta_hash, topk_recall
from rec_lib.policy_learning.membership import RowMembership
from rec_lib.policy_learning.policy import SoftmaxPolicy, exact_topk
from rec_lib.policy_learning.protocol import (
    SessionProblem,
    TrainResult,
    argmax_reward,
    mean_contexts,
    session_completion,
    svd_item_embeddings,
    synthetic_session_data,
    train_policy,
)
from rec_lib.policy_learning.rewards import (
    DRReward,
    IPSReward,
    LinearRewardModel,
    LoggedBandit,
    SessionReward,
    logged_bandit,
    policy_value,
)

__all__ = [
    "CHAPTER", "PRESETS", "PolicySettings",
    "SoftmaxPolicy", "exact_topk",
    "SessionReward", "IPSReward", "DRReward", "LinearRewardModel", "LoggedBandit", "logged_bandit", "policy_value",
    "ExactIndex", "HNSWIndex", "IVFIndex", "topk_recall", "beta_hash", "RowMembership",
    "snis_weights", "covariance_loss", "stratified_counts", "mixture_log_q", "sample_mixture", "sample_softmax",
    "ExactGradient", "Reinforce", "FastReinforce", "SNIS", "estimator_gradient",
    "SessionProblem", "TrainResult", "svd_item_embeddings", "mean_contexts", "session_completion",
    "synthetic_session_data", "argmax_reward", "train_policy",
    "BenchResult", "speed_benchmark",
]


def __getattr__(name: str):
    """Import the benchmark lazily (PEP 562), so that ``python -m
    rec_lib.policy_learning.bench`` does not find its module already imported."""
    if name in ("BenchResult", "speed_benchmark"):
        from rec_lib.policy_learning import bench

        return getattr(bench, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
