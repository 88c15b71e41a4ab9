"""Segment breakdown of test metrics: returning / new user, old / new item (issue 12, section 6)."""

import numpy as np
import pandas as pd
import pytest
import torch

from rec_lib import evaluation, metrics


def tiny():
    # training: users 0, 1 and items 10, 11
    train_u, train_i = np.array([0, 0, 1]), np.array([10, 11, 10])
    # test rows: (0,10) ret/old, (0,12) ret/new, (2,10) new/old, (3,12) new/new, (1,11) ret/old, (2,11) new/old
    users = np.array([0, 0, 2, 3, 1, 2])
    items = np.array([10, 12, 10, 12, 11, 11])
    hit = np.array([1.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    return users, items, train_u, train_i, hit


def test_segment_labels_by_hand():
    users, items, tu, ti, _ = tiny()
    lab = evaluation.segment_labels(users, items, tu, ti)
    assert list(lab["user"]) == list(users) and list(lab["item"]) == list(items)
    assert list(lab["user_segment"]) == ["returning user", "returning user", "new user", "new user", "returning user", "new user"]
    assert list(lab["item_segment"]) == ["old item", "new item", "old item", "new item", "old item", "old item"]
    assert lab["segment"].iloc[1] == "returning user / new item" and lab["segment"].iloc[3] == "new user / new item"
    assert list(lab["segment"].cat.categories) == list(evaluation.SEGMENTS)
    with pytest.raises(ValueError):
        evaluation.segment_labels(users, items[:-1], tu, ti)
    with pytest.raises(ValueError):
        evaluation.segment_labels(users, items, tu, ti[:-1])


def test_segment_table_shares_and_means_by_hand():
    users, items, tu, ti, hit = tiny()
    rows = evaluation.segment_labels(users, items, tu, ti).assign(hit=hit, rr=hit / 2)
    t = evaluation.segment_table(rows, ["hit", "rr"]).set_index("user_segment")
    assert list(t.index) == ["returning user", "new user", "all"]
    assert list(t["n"]) == [3, 3, 6]
    assert np.allclose(t["share"], [0.5, 0.5, 1.0])
    assert np.allclose(t["hit"], [1 / 3, 1 / 3, 2 / 6])
    assert np.allclose(t["rr"], [1 / 6, 1 / 6, 1 / 6])
    # 2 x 2 cross: every cell listed in a fixed order, shares sum to one
    c = evaluation.segment_table(rows, "hit", by=("user_segment", "item_segment"), total=False)
    assert list(zip(c["user_segment"], c["item_segment"])) == [
        ("returning user", "old item"), ("returning user", "new item"), ("new user", "old item"), ("new user", "new item")]
    assert list(c["n"]) == [2, 1, 2, 1]
    assert np.allclose(c["hit"], [0.5, 0.0, 0.5, 0.0])
    assert c["share"].sum() == pytest.approx(1.0)
    s = evaluation.segment_table(rows, "hit", by="segment", total=False)
    assert list(s["segment"]) == list(evaluation.SEGMENTS) and list(s["n"]) == [2, 1, 2, 1]


def test_segment_table_keeps_empty_segments_and_checks_columns():
    users, items, tu, ti, hit = tiny()
    rows = evaluation.segment_labels(users[:2], items[:2], tu, ti).assign(hit=hit[:2])  # returning users only
    t = evaluation.segment_table(rows, "hit", total=False)
    assert list(t["n"]) == [2, 0] and np.isnan(t["hit"].iloc[1])
    with pytest.raises(ValueError, match="lack"):
        evaluation.segment_table(rows, "ndcg")
    with pytest.raises(ValueError):
        evaluation.segment_table(rows.iloc[:0], "hit")


def test_per_row_metrics_average_to_ranking_metrics():
    ranks = torch.tensor([1, 3, 7, 12, 2, 50])
    rows = evaluation.per_row_metrics(ranks, ks=(5, 10), which=("hit", "ndcg", "rr_k", "rr"))
    assert set(rows) == {"hit@5", "hit@10", "ndcg@5", "ndcg@10", "rr@5", "rr@10", "rr"}
    ref = metrics.ranking_metrics(ranks, ks=(5, 10), which=("recall", "ndcg", "mrr_k", "mrr"))
    for k in (5, 10):
        assert rows[f"hit@{k}"].mean() == pytest.approx(ref[f"recall@{k}"])
        assert rows[f"ndcg@{k}"].mean() == pytest.approx(ref[f"ndcg@{k}"])
        assert rows[f"rr@{k}"].mean() == pytest.approx(ref[f"mrr@{k}"])
    assert rows["rr"].mean() == pytest.approx(ref["mrr"])
    assert list(rows["hit@5"]) == [1, 1, 0, 0, 1, 0]
    with pytest.raises(ValueError):
        evaluation.per_row_metrics(ranks, which=("auc",))
    with pytest.raises(ValueError):
        evaluation.per_row_metrics(np.array([0, 1]))
    with pytest.raises(ValueError):
        evaluation.per_row_metrics(ranks, ks=(0,))


def test_segment_breakdown_in_one_call():
    users, items, tu, ti, hit = tiny()
    ranks = np.where(hit > 0, 1, 20)
    out = evaluation.segment_breakdown(users, items, tu, ti, evaluation.per_row_metrics(ranks, ks=(10,)),
                                       by=("user_segment", "item_segment"))
    assert isinstance(out, pd.DataFrame) and len(out) == 5
    assert out.iloc[-1]["user_segment"] == "all" and out.iloc[-1]["hit@10"] == pytest.approx(2 / 6)
    assert out["n"].iloc[:4].sum() == 6
    with pytest.raises(ValueError, match="rows"):
        evaluation.segment_breakdown(users, items, tu, ti, {"hit": hit[:3]})
