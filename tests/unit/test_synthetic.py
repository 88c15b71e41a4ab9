import numpy as np
import pytest

from rec_lib import data


def test_power_law_counts_bounds_and_exponent():
    rng = np.random.default_rng(0)
    c = data.power_law_counts(50_000, 2.0, 5, 10_000, rng)
    assert c.min() >= 5 and c.max() <= 10_000
    fit = data.fit_power_law(c, t_min=20)
    assert fit.alpha == pytest.approx(2.0, abs=0.1)
    with pytest.raises(ValueError, match="> 1"):
        data.power_law_counts(5, 1.0, 1, 10, rng)
    with pytest.raises(ValueError, match="low <= high"):
        data.power_law_counts(5, 2.0, 10, 1, rng)


def test_drifting_stream_schema_and_truth():
    s = data.drifting_stream(n_users=80, n_items=120, dim=8, max_interactions=60, seed=1)
    s.validate()
    gt = s.ground_truth
    assert gt["state"].shape == (len(s), 8) and gt["item_vectors"].shape == (120, 8)
    assert not s.df.duplicated(["user", "item"]).any()  # no repeated items per user
    assert (np.bincount(s.users, minlength=80) == gt["activity"]).all()
    assert s.timestamps.min() >= 1_577_836_800


def test_drifting_stream_is_seeded_and_drift_depends_on_weight():
    a = data.drifting_stream(n_users=60, n_items=100, max_interactions=50, seed=3)
    b = data.drifting_stream(n_users=60, n_items=100, max_interactions=50, seed=3)
    assert a.df.equals(b.df)

    def drift(w):
        s = data.drifting_stream(n_users=200, n_items=200, max_interactions=100, long_term_weight=w, seed=0)
        q = s.ground_truth["state"]
        first = s.df.assign(r=np.arange(len(s))).groupby("user")["r"].transform("min").to_numpy()
        late = (s.timestamps - s.timestamps[first]) > 60 * 86400
        cos = (q * q[first]).sum(1) / (np.linalg.norm(q, axis=1) * np.linalg.norm(q[first], axis=1))
        return cos[late].mean()

    assert drift(0.9) > drift(0.1) + 0.2


def test_drifting_stream_explicit_ratings_and_errors():
    s = data.drifting_stream(n_users=30, n_items=60, max_interactions=40, explicit=True, seed=0)
    assert set(np.unique(s.ratings)) <= {1.0, 2.0, 3.0, 4.0, 5.0} and len(np.unique(s.ratings)) > 2
    with pytest.raises(ValueError, match="cannot exceed"):
        data.drifting_stream(n_users=5, n_items=10, max_interactions=20)
    with pytest.raises(ValueError, match="long_term_weight"):
        data.drifting_stream(long_term_weight=2.0)


def test_item_catalogue_structure():
    cat = data.item_catalogue(20_000, 16, seed=0)
    assert cat.beta.shape == (20_000, 16) and cat.beta.dtype == np.float32
    sv = np.linalg.svd(cat.beta - cat.beta.mean(0), compute_uv=False)
    assert sv[0] / sv[-1] > 3  # decaying spectrum (isotropic Gaussian gives about 1.1)
    sizes = np.sort(np.bincount(cat.cluster))[::-1]
    assert sizes[0] > 10 * np.median(sizes)  # Zipf-sized clusters
    assert np.array_equal(data.item_catalogue(100, 4, seed=5).beta, data.item_catalogue(100, 4, seed=5).beta)
    with pytest.raises(ValueError):
        data.item_catalogue(1, 4)


def test_catalogue_sessions_follow_interests():
    cat = data.item_catalogue(5000, 16, n_clusters=50, seed=0)
    s = data.catalogue_sessions(cat, 200, length_range=(5, 20), seed=0)
    lengths = np.bincount(s.users, minlength=200)
    assert lengths.min() >= 5 and lengths.max() <= 20
    assert not s.df.duplicated(["user", "item"]).any()
    interests = s.ground_truth["interests"]
    in_interest = (cat.cluster[s.items][:, None] == interests[s.users]).any(axis=1)
    assert in_interest.all()
    with pytest.raises(ValueError, match="length_range"):
        data.catalogue_sessions(cat, 10, length_range=(1, 5))


def test_fit_power_law_and_ccdf():
    t, p = data.ccdf(np.array([1, 1, 2, 4]))
    assert t.tolist() == [1, 2, 4] and p.tolist() == [1.0, 0.5, 0.25]
    with pytest.raises(ValueError):
        data.fit_power_law(np.arange(1, 5))
    with pytest.raises(ValueError):
        data.ccdf(np.array([]))
