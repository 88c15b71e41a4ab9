import numpy as np
import pytest

from rec_lib import data
from rec_lib.data import SeenItems


def make_seen(n_users=50, n_items=200, per_user=30, seed=0):
    rng = np.random.default_rng(seed)
    items = np.stack([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    users = np.repeat(np.arange(n_users), per_user)
    return SeenItems.from_pairs(users, items.ravel(), n_users, n_items), items


def test_contains_mask_counts():
    seen, items = make_seen()
    assert seen.contains(np.zeros(30, int), items[0]).all()
    m = seen.mask(np.array([0, 3]))
    assert m.shape == (2, 200) and m[0, items[0]].all() and m[0].sum() == 30 and m[1, items[3]].all()
    assert seen.counts(np.array([0, 1])).tolist() == [30, 30]


def test_from_interactions_requires_same_id_space(tiny):
    s = SeenItems.from_interactions(tiny)
    assert s.contains(tiny.users, tiny.items).all()
    with pytest.raises(ValueError, match="id space"):
        SeenItems.from_interactions(tiny, tiny.subset(np.arange(3)).reindexed())


def test_negatives_exclude_positives_and_are_distinct(rng):
    seen, _ = make_seen()
    users = np.arange(50).repeat(4)
    neg = data.sample_negatives(users, 99, seen, rng)
    assert neg.shape == (200, 99)
    assert not seen.contains(users[:, None], neg).any()
    assert all(len(set(row)) == 99 for row in neg)


def test_negatives_are_uniform_over_unseen(rng):
    seen = SeenItems.from_pairs(np.array([0, 0]), np.array([0, 1]), 1, 10)
    neg = data.sample_negatives(np.zeros(20000, int), 1, seen, rng)
    freq = np.bincount(neg.ravel(), minlength=10) / neg.size
    assert freq[:2].sum() == 0
    assert np.abs(freq[2:] - 1 / 8).max() < 0.01


def test_user_with_too_few_unseen_items_gets_repeats(rng):
    seen = SeenItems.from_pairs(np.zeros(7, int), np.arange(7), 1, 10)  # 3 unseen
    neg = data.sample_negatives(np.array([0]), 5, seen, rng)
    assert set(neg[0]) == {7, 8, 9} and neg.shape == (1, 5)
    full = SeenItems.from_pairs(np.zeros(10, int), np.arange(10), 1, 10)
    with pytest.raises(ValueError, match="every item"):
        data.sample_negatives(np.array([0]), 2, full, rng)
    with pytest.raises(ValueError, match="every item"):
        data.training_negatives(np.array([0]), full, rng)


def test_candidate_sets_put_positive_first(rng):
    seen, items = make_seen()
    users = np.arange(50)
    cands = data.candidate_sets(users, items[:, 0], 20, seen, rng)
    assert cands.shape == (50, 21) and (cands[:, 0] == items[:, 0]).all()
    assert not seen.contains(users[:, None], cands[:, 1:]).any()
    with pytest.raises(ValueError, match="must be in `seen`"):
        data.candidate_sets(np.array([0]), np.array([np.setdiff1d(np.arange(200), items[0])[0]]), 5, seen, rng)


def test_rejection_path_for_large_catalogues(rng):
    seen = SeenItems.from_pairs(np.array([0, 1]), np.array([5, 6]), 2, 300_000)
    neg = data.sample_negatives(np.array([0, 1]), 50, seen, rng)
    assert neg.shape == (2, 50) and not seen.contains(np.array([[0], [1]]), neg).any()


def test_training_negatives_shapes(rng):
    seen, _ = make_seen()
    assert data.training_negatives(np.arange(50), seen, rng).shape == (50,)
    assert data.training_negatives(np.arange(50), seen, rng, k=3).shape == (50, 3)


def test_sampling_is_seeded():
    seen, _ = make_seen()
    a = data.sample_negatives(np.arange(50), 10, seen, np.random.default_rng(3))
    b = data.sample_negatives(np.arange(50), 10, seen, np.random.default_rng(3))
    assert (a == b).all()


def test_padding_report_counts_padded_rows_and_warns():
    from rec_lib.data.sampling import PaddingWarning, padded_rows, padding_report

    # user 0 has seen 7 of 10 items (3 unseen), user 1 has seen 1 (9 unseen)
    seen = SeenItems.from_pairs(np.r_[np.zeros(7, int), 1], np.r_[np.arange(7), 0], 2, 10)
    users = np.array([0, 0, 1, 1, 1])
    assert padded_rows(users, 5, seen).tolist() == [True, True, False, False, False]
    with pytest.warns(PaddingWarning, match="2 of 5 candidate rows"):
        rep = padding_report(users, 5, seen, warn_above=0.1)
    assert rep == {"n": 5, "rows": 5, "padded": 2, "share": 0.4, "repeats": 4, "users_padded": 1}
    # the report matches what the sampler does: padded rows repeat items, the others do not
    cands = data.candidate_sets(np.array([0, 1]), np.array([0, 0]), 5, seen, np.random.default_rng(0))
    assert len(set(cands[0, 1:])) == 3 and len(set(cands[1, 1:])) == 5
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert padding_report(np.array([1, 1]), 5, seen)["padded"] == 0  # no warning at share 0
        assert padding_report(users, 5, seen, warn_above=None)["padded"] == 2
    with pytest.raises(ValueError, match="n must be"):
        padded_rows(users, 0, seen)


def test_candidate_sets_unchanged_by_the_padding_report():
    """candidate_sets returns exactly what it returned before the report existed (other chapters rely on it)."""
    seen, items = make_seen()
    users = np.arange(50)
    a = data.candidate_sets(users, items[:, 0], 20, seen, np.random.default_rng(7))
    from rec_lib.data.sampling import padding_report

    padding_report(users, 20, seen)
    b = data.candidate_sets(users, items[:, 0], 20, seen, np.random.default_rng(7))
    assert (a == b).all() and a.shape == (50, 21)
