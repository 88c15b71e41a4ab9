import math

import numpy as np
import pytest
import torch

from rec_lib import metrics


def test_rank_against_candidates_counts_ties_pessimistically():
    scores = torch.tensor([[0.5, 0.1, 0.9, 0.5], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    # row 0: one higher (0.9) and one tie (0.5) -> rank 3; row 1: best -> 1; row 2: all tie -> worst (4)
    assert metrics.rank_against_candidates(scores).tolist() == [3, 1, 4]


def test_rank_against_candidates_other_target_column():
    scores = torch.tensor([[0.1, 0.2, 0.3]])
    assert metrics.rank_against_candidates(scores, target_col=2).tolist() == [1]


def test_rank_against_candidates_rejects_nan_and_bad_shape():
    with pytest.raises(ValueError, match="NaN"):
        metrics.rank_against_candidates(torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="batch"):
        metrics.rank_against_candidates(torch.tensor([0.1, 0.2]))


def test_rank_in_catalogue_with_exclusion():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.5, 0.0]])
    targets = torch.tensor([2])
    assert metrics.rank_in_catalogue(scores, targets).tolist() == [3]  # 0.9 above, tie at item 3
    exclude = torch.tensor([[False, True, True, False, False]])  # excluding the target is ignored
    assert metrics.rank_in_catalogue(scores, targets, exclude).tolist() == [2]


def test_hand_checked_ranking_metrics():
    ranks = torch.tensor([1, 3, 12, 50])
    out = metrics.ranking_metrics(ranks, ks=(10,), which=("recall", "hr", "mrr_k", "ndcg", "mrr"))
    assert out["recall@10"] == pytest.approx(0.5)
    assert out["hr@10"] == pytest.approx(0.5)
    assert out["mrr@10"] == pytest.approx((1 + 1 / 3) / 4)
    assert out["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4)) / 4)
    assert out["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 12 + 1 / 50) / 4)


def test_individual_metrics_and_k_validation():
    ranks = np.array([1, 2, 6])
    assert metrics.recall_at_k(ranks, 5) == pytest.approx(2 / 3)
    assert metrics.ndcg_at_k(ranks, 1) == pytest.approx(1 / 3)
    assert metrics.mrr_at_k(ranks, 2) == pytest.approx((1 + 0.5) / 3)
    assert metrics.hit_at_k(ranks, 2).tolist() == [1.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="positive integer"):
        metrics.recall_at_k(ranks, 0)
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.ranking_metrics(ranks, which=("auc",))
    with pytest.raises(ValueError, match="no ranks"):
        metrics.ranking_metrics(np.array([]))


def test_rmse():
    assert metrics.rmse([1.0, 2.0, 3.0], [1.0, 2.0, 5.0]) == pytest.approx(math.sqrt(4 / 3))
    with pytest.raises(ValueError, match="shapes"):
        metrics.rmse([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="empty"):
        metrics.rmse([], [])


def test_weighted_mean():
    out = metrics.weighted_mean({"a": {"m": 1.0}, "b": {"m": 3.0}}, {"a": 1, "b": 3})
    assert out["m"] == pytest.approx(2.5)
    with pytest.raises(ValueError):
        metrics.weighted_mean({"a": {"m": 1.0}}, {"a": 0})


def test_random_scores_give_k_over_n_plus_one():
    g = torch.Generator().manual_seed(0)
    ranks = metrics.rank_against_candidates(torch.rand(20000, 100, generator=g))
    assert metrics.recall_at_k(ranks, 10) == pytest.approx(0.1, abs=0.01)


def test_rowwise_spearman_matches_pandas_and_broadcasts():
    import pandas as pd

    from rec_lib.metrics import rowwise_spearman

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4, 30)), rng.standard_normal((4, 30))
    want = [pd.Series(a[i]).corr(pd.Series(b[i]), method="spearman") for i in range(4)]
    assert rowwise_spearman(a, b).numpy() == pytest.approx(want, abs=1e-12)
    assert rowwise_spearman(a, a[0]).numpy()[0] == pytest.approx(1.0)
    assert rowwise_spearman(a, -a).numpy() == pytest.approx(-np.ones(4))
    with pytest.raises(ValueError, match="need a"):
        rowwise_spearman(a, b[:, :5])
