"""The DiPS chapter's additions: synthetic streams, Recent and the references, the mean inner loss,
selection among trained epochs, policy-only epochs, sketch contributions, paired split-cells."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from rec_lib.sketching import case_studies, inner, protocol, synthetic, training
from rec_lib.utils import seed_everything


# ------------------------------------------------------------------------------------ synthetic
def test_stream_structure_is_planted_and_seeded():
    spec = synthetic.StreamSpec(noise=0.7, length=40)
    d = synthetic.make_stream(spec, 400, seed=3)
    again = synthetic.make_stream(spec, 400, seed=3)
    assert d.df.equals(again.df) and d.n_items == spec.n_items == 150
    items = d.df.sort_values(["user", "timestamp"]).item.to_numpy().reshape(400, 40)
    noise = synthetic.is_noise(items, spec)
    assert abs(noise.mean() - 0.7) < 0.02
    topics = d.ground_truth["topics"]
    top = synthetic.topic_of(items, spec)
    assert np.all(top[~noise] == topics[~noise])  # topic items come from the user's topic
    assert np.all(topics == topics[:, :1])  # no drift
    # Zipf: the first noise item is drawn more than the last
    counts = np.bincount(items[noise] - spec.n_topics * spec.topic_items, minlength=spec.noise_items)
    assert counts[0] > 5 * counts[-1]


def test_drift_and_clean_streams():
    drift = synthetic.make_stream(synthetic.STREAMS["drift"], 50, seed=0)
    topics = drift.ground_truth["topics"]
    every = synthetic.STREAMS["drift"].drift_every
    assert np.all(topics[:, every] != topics[:, every - 1]) and np.all(topics[:, 1:every] == topics[:, :1])
    clean = synthetic.make_stream(synthetic.STREAMS["clean"], 50, seed=0)
    assert not synthetic.is_noise(clean.df.item.to_numpy(), synthetic.STREAMS["clean"]).any()
    with pytest.raises(ValueError):
        synthetic.StreamSpec(noise=1.0)
    with pytest.raises(ValueError):
        synthetic.make_stream(synthetic.StreamSpec(), 0, seed=0)


def test_prepare_synthetic_splits_users():
    s = protocol.CHAPTER.make("smoke")
    d = protocol.prepare_synthetic(s, "signal", 0)
    users = {k: set(v.users) for k, v in d.sequences.items()}
    assert not (users["train"] & users["test"]) and sum(map(len, users.values())) == s.syn_users
    assert d.batches["train"].items.shape[1] == s.syn_len and not d.explicit
    assert protocol.sketch_config(s, "signal", 2, 1, "DiPS").queue == s.syn_queue
    # the synthetic streams have their own inner step size; the real data keep ALPHA
    assert protocol.sketch_config(s, "signal", 2, 1, "DiPS").alpha == s.syn_alpha != s.alpha
    assert protocol.sketch_config(s, "implicit", 2, 1, "DiPS").alpha == s.alpha
    with pytest.raises(ValueError):
        protocol.prepare_synthetic(s, "nope", 0)


# ----------------------------------------------------------------------------- methods and inner loss
def _batch(T=8, B=3, n_items=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(1, n_items, (B, T), generator=g)
    return training.SequenceBatch(items, torch.ones(B, T), torch.ones(B, T), torch.full((B,), T), np.arange(B))


def test_recent_keeps_the_newest_and_full_keeps_all():
    batch = _batch()
    model = training.make_base_model(20, False, dim=4, layers=(4,))
    rec = training.evaluate_sketching(model, None, batch, training.SketchConfig(3, 1, "Recent", False), record=True)
    traj = rec["trajectory"]
    for t in range(2, 7):
        assert sorted(traj[0, t].tolist()) == [t - 2, t - 1, t]
    full = training.evaluate_sketching(model, None, batch, training.SketchConfig(8, 1, "Full", False), record=True)
    assert sorted(p for p in full["trajectory"][0, 6].tolist() if p >= 0) == list(range(7))


def test_k0_does_not_adapt_and_mean_loss_does_not_grow_with_k():
    model = training.make_base_model(20, True, dim=4, layers=(4,), mean_rating=3.0)
    g = inner.inner_gradients(model, True, create_graph=False)
    items = torch.tensor([[1, 1, 1, 1]])
    r = torch.tensor([[5.0, 5.0, 5.0, 5.0]])
    z = torch.ones(1, 4)
    cfg_sum = training.SketchConfig(4, 1, "Random", True, alpha=0.5, inner_loss="sum")
    cfg_mean = replace(cfg_sum, inner_loss="mean")
    one = training._adapt(model, cfg_mean, items[:, :1], r[:, :1], z[:, :1], False, g)
    four = training._adapt(model, cfg_mean, items, r, z, False, g)
    assert torch.allclose(one, four, atol=1e-6)  # the same item four times: the same mean step
    four_sum = training._adapt(model, cfg_sum, items, r, z, False, g)
    assert torch.allclose(four_sum - g.theta0, 4 * (one - g.theta0), atol=1e-5)  # the sum's step grows with K
    k0 = training._adapt(model, replace(cfg_sum, method="K=0"), items, r, z, False, g)
    assert torch.allclose(k0, g.theta0.expand_as(k0))
    with pytest.raises(ValueError):
        training.SketchConfig(2, 1, "Random", True, inner_loss="median")


def test_record_init_never_selects_the_untrained_policy_and_policy_epochs_freeze_theta():
    batch = _batch(T=10, B=6)
    seeds = seed_everything(0)
    cfg = training.SketchConfig(2, 1, "DiPS", False, alpha=2.0)
    base = training.make_base_model(20, False, dim=4, layers=(4,))
    from rec_lib.sketching.policy import SketchPolicy

    pol = SketchPolicy(20, 4)
    res = training.train_sketching(cfg, batch, batch, 20, seeds, epochs=1, batch_size=3, dim=4, layers=(4,),
                                   policy_hidden=4, init=(base, pol), record_init=True, policy_epochs=2)
    assert len(res.val_history) == 4 and len(res.history) == 3 and res.best_epoch >= 1
    # policy-only epochs leave Theta as the joint epoch left it: rerun with policy_epochs=0
    res0 = training.train_sketching(cfg, batch, None, 20, seed_everything(0), epochs=1, batch_size=3, dim=4,
                                    layers=(4,), policy_hidden=4, init=(base, pol), policy_epochs=0)
    res2 = training.train_sketching(cfg, batch, None, 20, seed_everything(0), epochs=1, batch_size=3, dim=4,
                                    layers=(4,), policy_hidden=4, init=(base, pol), policy_epochs=2)
    for a, b in zip(res0.model.parameters(), res2.model.parameters()):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(res0.policy.parameters(), res2.policy.parameters()))
    with pytest.raises(ValueError):
        training.train_sketching(cfg, batch, batch, 20, seeds, epochs=1, include_init=True, record_init=True)


# ------------------------------------------------------------------------------- case study helpers
def test_sketch_contributions_match_the_score_change_to_first_order():
    torch.manual_seed(0)
    model = training.make_base_model(20, False, dim=4, layers=(4,))
    batch = _batch(T=6, B=2)
    cfg = training.SketchConfig(3, 1, "Recent", False, alpha=1e-3)
    traj = training.evaluate_sketching(model, None, batch, cfg, record=True)["trajectory"]
    c = case_studies.sketch_contributions(model, batch, traj, alpha=1e-3)
    g = inner.inner_gradients(model, False, create_graph=False)
    t = 3
    pos = traj[:, t]
    items = batch.items.gather(1, pos)
    theta = training._adapt(model, cfg, items, torch.ones_like(items, dtype=torch.float), torch.ones(2, 3), False, g)
    nxt = batch.items[:, t + 1]
    with torch.no_grad():
        change = (model.score_with_user(theta, nxt.unsqueeze(1)) - model.score_with_user(
            g.theta0.expand(2, -1), nxt.unsqueeze(1))).squeeze(1)
    assert torch.allclose(c[:, t].sum(-1), change, rtol=1e-2, atol=1e-7)
    assert torch.all(c[:, -1] == 0)  # no next item at the last step


def test_user_recall_and_split_cells():
    ranks = torch.tensor([1, 30, 5, 100])
    rows = torch.tensor([0, 0, 2, 2])
    r = case_studies.user_recall(ranks, rows, 3)
    assert r[0] == 0.5 and np.isnan(r[1]) and r[2] == 0.5
    runs = pd.DataFrame([
        {"setting": "explicit", "tau": 1, "K": k, "method": m, "repeat": rep, "rmse": 1.0 + 0.1 * i + rep,
         "rmse_phi0": 2.0 if m in training.LEARNED else np.nan}
        for rep in range(2) for k in (2, 4) for i, m in enumerate(training.METHODS)
    ] + [{"setting": "explicit", "tau": 1, "K": 0, "method": "K=0", "repeat": 0, "rmse": 3.0}])
    cells = protocol.split_cells(runs, "explicit", "rmse")
    assert cells.shape[0] == 4 and "DiPS_phi0" in cells and "K=0" not in cells
    table = protocol.paper_table(runs, "explicit", "rmse")
    assert list(table.columns[-1:]) == ["K=0"] and table["K=0"].eq(3.0).all()


def test_cached_marks_a_result_read_back(data_tmp):
    s = protocol.CHAPTER.make("smoke")
    calls = []

    def fake(settings):
        calls.append(1)
        return protocol.GridResult(pd.DataFrame({"x": [1]}), {}, pd.DataFrame(), wall_s=12.5)

    first = protocol.cached(s, "synthetic", fake)
    again = protocol.cached(s, "synthetic", fake)
    assert len(calls) == 1 and not first.from_cache and again.from_cache and again.wall_s == 12.5
    assert not protocol.cached(s, "synthetic", fake, use_cache=False).from_cache and len(calls) == 2
