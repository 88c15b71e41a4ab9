"""The data chapter's checks (rec_lib.data.checks) on hand-built cases."""

import numpy as np
import pandas as pd
import pytest
import torch

from rec_lib import data
from rec_lib.data import checks
from rec_lib.data.chapter import CHAPTER
from rec_lib.config import SettingsError
from rec_lib.evaluation import full_ranks, segment_labels
from rec_lib.metrics import rank_against_candidates


def _seen(n_users=30, n_items=60, per_user=10, seed=0):
    rng = np.random.default_rng(seed)
    items = np.stack([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    users = np.repeat(np.arange(n_users), per_user)
    return data.SeenItems.from_pairs(users, items.ravel(), n_users, n_items), items


def test_protocol_ranks_match_the_library_and_sampled_never_exceeds_full():
    seen, items = _seen()
    users = np.arange(30).repeat(2)
    targets = items[users, np.tile([0, 1], 30)]
    W = torch.randn(30, 60, generator=torch.Generator().manual_seed(0))
    W[:, ::7] = 0.0  # ties

    def score_all(u):
        return W[u]

    cands = data.candidate_sets(users, targets, 20, seen, np.random.default_rng(1))
    r = checks.protocol_ranks(score_all, users, targets, {"s": cands}, seen, batch_size=7)
    ref_full = full_ranks(score_all, users, targets, exclude=seen).numpy()
    ref_s = rank_against_candidates(W[users][torch.arange(len(users))[:, None], torch.as_tensor(cands)]).numpy()
    assert (r["full"] == ref_full).all() and (r["s"] == ref_s).all()
    assert (r["s"] <= r["full"]).all()


def test_sampled_hit_probability_is_hypergeometric():
    # 10 unseen items, target at full rank 4 (3 above it), 2 negatives: P(no better item drawn)
    p = checks.sampled_hit_probability(np.array([4, 1, 11]), np.array([10, 10, 10]), n=2, k=1)
    assert p[0] == pytest.approx((7 / 10) * (6 / 9))
    assert p[1] == 1.0 and p[2] == 0.0
    # rows with fewer unseen items than negatives (padded) have no prediction
    assert np.isnan(checks.sampled_hit_probability(np.array([1]), np.array([3]), n=5))[0]
    with pytest.raises(ValueError, match="rank"):
        checks.sampled_hit_probability(np.array([12]), np.array([10]), n=2)
    # Monte Carlo agreement
    rng = np.random.default_rng(0)
    draws = np.array([(rng.choice(10, 2, replace=False) < 3).sum() == 0 for _ in range(20000)])
    assert draws.mean() == pytest.approx(p[0], abs=0.015)


def test_discordant_pairs():
    a = {"x": 0.30, "y": 0.20, "z": 0.10}
    b = {"x": 0.10, "y": 0.25, "z": 0.05}
    assert checks.discordant_pairs(a, b) == [("x", "y")]
    assert checks.discordant_pairs(a, b, min_gap=0.2) == []
    assert checks.discordant_pairs(a, a) == []


def test_user_share_units_mean_is_the_row_share():
    users = np.array([0, 0, 0, 1, 2, 2])
    flag = np.array([1, 1, 1, 0, 1, 1])
    x = checks.user_share_units(users, flag)
    assert len(x) == 3 and x.mean() == pytest.approx(flag.mean() - 0.5)


def test_hit_table_per_segment():
    labels = segment_labels(np.array([0, 0, 1, 2]), np.array([1, 2, 3, 4]), np.array([0, 1]), np.array([1, 3]))
    ranks = {"m": {"full": np.array([1, 20, 5, 3])}}
    t = checks.hit_table(ranks, labels).set_index("user_segment")
    assert t.loc["returning user", "hr"] == pytest.approx(2 / 3) and t.loc["new user", "hr"] == 1.0
    assert t.loc["all", "n"] == 4


def _stream(w=0.2, seed=0):
    return data.drifting_stream(n_users=200, n_items=300, max_interactions=150, long_term_weight=w, seed=seed)


def test_ou_autocorrelation_matches_the_planted_drift():
    s = _stream()
    ou = checks.ou_autocorrelation(s, min_rows=100)
    assert len(ou) >= 3 and ou["z"].abs().max() < 4
    assert ou["exp(-d/tau)"].iloc[0] > ou["exp(-d/tau)"].iloc[-1]
    # the recovered short-term interest does not depend on w (same seed, same OU path)
    assert np.allclose(ou["measured"], checks.ou_autocorrelation(_stream(w=0.9), min_rows=100)["measured"])
    with pytest.raises(ValueError, match="long_term_weight = 1"):
        checks.ou_autocorrelation(_stream(w=1.0))


def test_drift_cosine_analytic_limits():
    s = _stream(w=0.2)
    a = checks.drift_cosine_analytic(s, np.array([0.0, 1e6]))
    assert a[0] == pytest.approx(1.0) and 0 < a[1] < 0.5
    curve = checks.drift_cosine(s)
    assert (np.diff(curve.to_numpy()[:3]) < 0).all()  # the cosine falls with time at w = 0.2


def test_heldout_choice_ranks_order_and_choice_set():
    s = _stream()
    test = np.arange(len(s)) >= int(0.8 * len(s))
    r = checks.heldout_choice_ranks(s, test, batch_size=100)
    mrr = {k: (1.0 / v).mean() for k, v in r.items()}
    assert mrr["oracle"] > max(mrr["long-term taste"], mrr["common mean"], mrr["popularity"]) + 0.05
    s9 = _stream(w=0.9)
    r9 = checks.heldout_choice_ranks(s9, np.arange(len(s9)) >= int(0.8 * len(s9)))
    mrr9 = {k: (1.0 / v).mean() for k, v in r9.items()}
    assert mrr9["long-term taste"] > mrr9["common mean"] + 0.02  # stable tastes: the personal part matters
    # ranks count only items not chosen before: at most n_items minus the user's earlier choices
    pos = s.df.assign(r=np.arange(len(s))).groupby("user").cumcount().to_numpy()[test]
    assert (r["oracle"] <= s.n_items - pos).all()


def test_spectrum_slope():
    k = np.arange(1, 17)
    rng = np.random.default_rng(0)
    beta = rng.standard_normal((20000, 16)) * k ** -0.5
    assert checks.spectrum_slope(beta) == pytest.approx(-0.5, abs=0.05)
    cat = data.item_catalogue(20000, 32, seed=0)  # the planted k^-1 variance, as the chapter checks it
    k = np.arange(1, 33)
    sd = cat.beta.astype(float).std(0)
    assert np.polyfit(np.log(k), np.log(sd), 1)[0] == pytest.approx(-0.5, abs=0.1)


def test_settings_need_two_seeds():
    assert CHAPTER.make("smoke").n_seeds >= 2
    with pytest.raises(SettingsError, match="N_SEEDS"):
        CHAPTER.make("smoke", n_seeds=1)
