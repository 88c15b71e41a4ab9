"""Simple baselines (issue 12, section 6): popularity, biased MF with a mean-user prior, ItemKNN, EASE^R."""

import numpy as np
import pytest
import torch

from rec_lib import data, evaluation, models
from rec_lib.utils import seed_everything

# 4 users x 3 items: user 3 has no interactions
U = np.array([0, 0, 1, 1, 1, 2, 0])
I = np.array([0, 1, 0, 1, 2, 2, 0])  # (0, 0) twice: counted twice by Popularity, once by X
X = np.array([[1, 1, 0], [1, 1, 1], [0, 0, 1], [0, 0, 0]], dtype=float)


def check_call_shapes(m, n_items):
    u = torch.tensor([0, 1, 3])
    full = m.score_all(u)
    assert full.shape == (3, n_items) and full.dtype == torch.float32
    i = torch.tensor([2, 0, 1])
    assert torch.allclose(m(u, i), full[torch.arange(3), i], atol=1e-6)
    cand = torch.tensor([[0, 1], [2, 0], [1, 2]])
    assert torch.allclose(m(u, cand), full.gather(1, cand), atol=1e-6)


def test_interaction_matrix_is_binary():
    M = models.interaction_matrix(U, I, 4, 3)
    assert np.array_equal(M.toarray(), X)
    with pytest.raises(ValueError):
        models.interaction_matrix(U, I + 1, 4, 3)
    with pytest.raises(ValueError):
        models.interaction_matrix(U[:-1], I, 4, 3)


def test_popularity_orders_by_training_count():
    m = models.Popularity(4, 3).fit(U, I)
    assert m.counts.tolist() == [3.0, 2.0, 2.0]
    check_call_shapes(m, 3)
    assert torch.equal(m.score_all(torch.tensor([0, 3])), torch.tensor([[3.0, 2, 2], [3.0, 2, 2]]))
    ranks = evaluation.full_ranks(m.score_all, np.array([3, 3]), np.array([0, 1]))
    assert ranks.tolist() == [1, 3]  # the item seen most ranks first; ties rank pessimistically
    with pytest.raises(ValueError):
        models.Popularity(0, 3)
    with pytest.raises(ValueError):
        m.fit([0], [5])


def test_ease_against_the_closed_form_by_hand():
    lam = 0.5
    m = models.EASE(4, 3, lam=lam).fit(U, I)
    P = np.linalg.inv(X.T @ X + lam * np.eye(3))
    B = np.eye(3) - P @ np.diag(1 / np.diag(P))
    assert np.allclose(np.diag(B), 0)
    assert np.allclose(m.B.numpy(), B, atol=1e-6)
    assert np.allclose(models.EASE.weights(X, lam).numpy(), B, atol=1e-12)
    # B also solves the constrained ridge problem: its gradient vanishes off the diagonal
    grad = X.T @ (X @ B - X) + lam * B
    assert np.allclose(grad - np.diag(np.diag(grad)), 0, atol=1e-10)
    check_call_shapes(m, 3)
    assert np.allclose(m.score_all(torch.tensor([0, 1, 2])).numpy(), X[:3] @ B, atol=1e-5)
    assert (m.score_all(torch.tensor([3])) == 0).all()  # no history: no score
    with pytest.raises(ValueError):
        models.EASE(4, 3, lam=0)


def test_itemknn_similarities_against_manual_cosine():
    m = models.ItemKNN(4, 3, k=2, shrink=0.0).fit(U, I)
    norms = np.sqrt((X ** 2).sum(0))
    S = (X.T @ X) / np.outer(norms, norms)
    np.fill_diagonal(S, 0)
    assert np.allclose(m.W.toarray(), S, atol=1e-6)
    assert S[0, 1] == pytest.approx(1.0) and S[0, 2] == pytest.approx(1 / 2)
    check_call_shapes(m, 3)
    assert np.allclose(m.score_all(torch.tensor([0, 2])).numpy(), X[[0, 2]] @ S, atol=1e-6)
    # shrinkage divides by (|x_i| |x_j| + shrink)
    s3 = models.ItemKNN(4, 3, k=2, shrink=3.0).fit(U, I)
    assert s3.W[0, 1] == pytest.approx(2 / (2 + 3))
    # top-1 pruning keeps, per column j, the single most similar item
    m1 = models.ItemKNN(4, 3, k=1).fit(U, I)
    W1 = m1.W.toarray()
    assert (np.count_nonzero(W1, axis=0) == 1).all()
    assert W1[1, 0] == pytest.approx(1.0) and W1[0, 1] == pytest.approx(1.0)
    for bad in ({"k": 0}, {"k": 1.5}, {"shrink": -1.0}):
        with pytest.raises(ValueError):
            models.ItemKNN(4, 3, **bad)


def test_itemknn_blocks_agree_with_dense_cosine_on_random_data():
    rng = np.random.default_rng(0)
    Xr = (rng.random((60, 45)) < 0.15).astype(float)
    u, i = np.nonzero(Xr)
    m = models.ItemKNN(60, 45, k=5, shrink=1.0).fit(u, i)
    n = np.sqrt(Xr.sum(0))
    S = (Xr.T @ Xr) / (np.outer(n, n) + 1.0 + 1e-12)
    np.fill_diagonal(S, 0)
    W = m.W.toarray()
    for j in range(45):  # column j keeps its 5 largest similarities (values, ties aside)
        kept = np.sort(W[:, j][W[:, j] > 0])[::-1]
        assert np.allclose(kept, np.sort(S[:, j])[::-1][: len(kept)], atol=1e-6)
        assert len(kept) == min(5, np.count_nonzero(S[:, j]))


def test_set_history_changes_profiles_not_weights():
    m = models.EASE(4, 3, lam=1.0).fit(U, I)
    B = m.B.clone()
    m.set_history([3], [1])
    assert torch.equal(m.B, B)
    assert torch.allclose(m.score_all(torch.tensor([3]))[0], B[1], atol=1e-6)
    assert (m.score_all(torch.tensor([0])) == 0).all()


def test_biased_mf_new_user_gets_the_mean_known_user():
    g = torch.Generator().manual_seed(0)
    m = models.BiasedMF(5, 6, dim=4, generator=g)
    with torch.no_grad():
        m.user_bias.weight.normal_(generator=g)
        m.item_bias.weight.normal_(generator=g)
        m.global_bias.fill_(0.3)
    m.set_known_users([0, 2, 3])
    mean = m.user.weight[[0, 2, 3]].mean(0)
    p, b = m.user_params(torch.tensor([1, 2, 4]))
    assert torch.allclose(p[0], mean) and torch.allclose(p[2], mean) and torch.allclose(p[1], m.user.weight[2])
    assert b[0] == 0 and b[2] == 0 and b[1] == m.user_bias.weight[2, 0]
    # new user's scores: mean vector . q_i + b_i + b; same through every call form
    expect = m.item.weight @ mean + m.item_bias.weight[:, 0] + 0.3
    full = m.score_all(torch.tensor([1, 4]))
    assert torch.allclose(full[0], expect, atol=1e-6) and torch.allclose(full[1], expect, atol=1e-6)
    u = torch.tensor([1, 2, 4])
    check = m.score_all(u)
    assert torch.allclose(m(u, torch.tensor([0, 5, 3])), check[torch.arange(3), torch.tensor([0, 5, 3])], atol=1e-6)
    cand = torch.tensor([[0, 1], [2, 3], [4, 5]])
    assert torch.allclose(m(u, cand), check.gather(1, cand), atol=1e-6)
    # a boolean mask works as well; an empty set does not
    m.set_known_users(np.array([True, False, True, True, False]))
    assert m.known.tolist() == [True, False, True, True, False]
    with pytest.raises(ValueError):
        m.set_known_users(np.zeros(5, bool))
    with pytest.raises(ValueError):
        m.set_known_users(np.ones(3, bool))
    with pytest.raises(ValueError):
        m.set_known_users([7])


def test_biased_mf_fit_is_seeded_and_learns_popularity_for_new_users():
    # 30 users; items 0..3 popular, 4..19 rare; users 25..29 never seen in training
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(25), 6)
    items = np.where(rng.random(len(users)) < 0.7, rng.integers(0, 4, len(users)), rng.integers(4, 20, len(users)))

    def run():
        m = models.BiasedMF(30, 20, dim=4, generator=torch.Generator().manual_seed(1))
        hist = m.fit(users, items, seed_everything(0, set_global=False), epochs=15, lr=0.05)
        return m, hist

    m, hist = run()
    m2, hist2 = run()
    assert hist == hist2 and torch.equal(m.score_all(torch.arange(30)), m2.score_all(torch.arange(30)))
    assert hist[-1] < hist[0]
    assert m.known.tolist() == [True] * 25 + [False] * 5
    new = m.score_all(torch.tensor([27]))[0]
    assert set(torch.topk(new, 4).indices.tolist()) == {0, 1, 2, 3}  # the prior ranks popular items first
    assert not m.training


def test_tune_on_validation_picks_the_best_point_within_budget():
    calls = []

    def make(a, b=0):
        return {"a": a, "b": b}

    res = models.tune_on_validation(make, {"a": [1, 2, 3], "b": [0, 1]}, calls.append, lambda m: -(m["a"] - 2) ** 2 + m["b"])
    assert res.params == {"a": 2, "b": 1} and res.score == 1 and res.model == {"a": 2, "b": 1}
    assert len(calls) == 6 and list(res.table.columns) == ["a", "b", "score"] and len(res.table) == 6
    low = models.tune_on_validation(make, [{"a": 5}, {"a": 1}], lambda m: None, lambda m: m["a"], maximize=False)
    assert low.params == {"a": 1}
    sub = models.tune_on_validation(make, {"a": range(10)}, lambda m: None, lambda m: m["a"], budget=3, seed=0)
    assert len(sub.table) == 3 and list(sub.table["a"]) == sorted(sub.table["a"])
    again = models.tune_on_validation(make, {"a": range(10)}, lambda m: None, lambda m: m["a"], budget=3, seed=0)
    assert sub.params == again.params
    with pytest.raises(ValueError):
        models.tune_on_validation(make, [], lambda m: None, lambda m: 0.0)
    with pytest.raises(ValueError):
        models.tune_on_validation(make, {"a": [1]}, lambda m: None, lambda m: 0.0, budget=0)
    with pytest.raises(ValueError):
        models.tune_on_validation(make, {"a": [1]}, lambda m: None, lambda m: float("nan"))


def test_baselines_rank_with_the_evaluation_protocols(rng):
    # a planted structure: users 0..19 like items 0..4, users 20..39 like items 5..9
    users = np.repeat(np.arange(40), 3)
    items = np.where(users < 20, rng.integers(0, 5, len(users)), rng.integers(5, 10, len(users)))
    seen = data.SeenItems.from_pairs(users, items, 40, 12)
    test_u = np.array([0, 25])
    test_i = np.array([np.setdiff1d(np.arange(5), items[users == 0])[0], np.setdiff1d(np.arange(5, 10), items[users == 25])[0]])
    for m in (models.ItemKNN(40, 12, k=20).fit(users, items), models.EASE(40, 12, lam=1.0).fit(users, items)):
        ranks = evaluation.full_ranks(m.score_all, test_u, test_i, exclude=seen)
        assert (ranks <= 2).all(), type(m).__name__
        seen_all = data.SeenItems.from_pairs(np.r_[users, test_u], np.r_[items, test_i], 40, 12)
        assert (evaluation.sampled_ranks(m, test_u, test_i, 2, seen_all, rng) <= 2).all()
