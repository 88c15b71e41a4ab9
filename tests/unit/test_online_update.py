"""rec_lib.online_update: the stream, per-sample gradients, every strategy, MeLON, the rank checks."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from rec_lib import data
from rec_lib.config import SettingsError
from rec_lib.models import fit_pairs
from rec_lib.online_update import (
    CHAPTER, EALS, SML, BatchView, Default, InteractionHistory, MeLON, MeLONNet, MetaSGD, MWNet, NoUpdate,
    OnlineRecommender, OnlineStream, PastPairs, S2Meta, Touched, best_rank_k, load_stream, make_strategy,
    numerical_rank, one_directional_gap, pair_table, preprocess, rank_table, role_features, run_comparison,
    run_prequential, select_on_warmup, singular_values, spectral_norm, submatrix, time_strategies,
    trained_strategies_view, margin_over, strategies_for,
)
from rec_lib.retraining import SMLUpdater
from rec_lib.utils import seed_everything

ALL = ("Default", "eALS", "MWNet", "MetaSGD", "S2Meta", "MeLON", "MeLON_I", "MeLON_P")


# ------------------------------------------------------------------ fixtures
@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Online batches are small tensors: one thread is several times faster (as in the chapter)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def drift() -> data.Interactions:
    """A small stream with fast-drifting interests (new users keep arriving)."""
    return data.drifting_stream(n_users=150, n_items=120, long_term_weight=0.2, max_interactions=60, seed=3)


@pytest.fixture(scope="module")
def stream(drift) -> OnlineStream:
    return OnlineStream(drift, batch_size=32, train_share=0.7, warmup_share=0.1, n_eval_neg=30, n_neighbours=5, seed=0)


def _pretrained(stream, kind, epochs=3, seed=0) -> OnlineRecommender:
    seeds = seed_everything(seed)
    torch.manual_seed(seed)
    rec = OnlineRecommender.build(kind, stream.n_users, stream.n_items, dim=8, layers=(8, 4))
    fit_pairs(rec.model, stream.pretrain.users, stream.pretrain.items, stream.seen_pretrain, seeds, loss=rec.loss,
              epochs=epochs, batch_size=256, lr=1e-2)
    return rec


@pytest.fixture(scope="module")
def recs(stream) -> dict[str, OnlineRecommender]:
    return {k: _pretrained(stream, k) for k in ("BPR", "NCF")}


# -------------------------------------------------------------------- stream
def test_history_counts_and_neighbours_are_strictly_in_the_past(tiny):
    h = InteractionHistory(tiny)
    u, i, t = tiny.users, tiny.items, tiny.timestamps
    brute = np.array([((u == u[r]) & (t < t[r])).sum() for r in range(len(tiny))])
    assert np.array_equal(h.counts(u, t, "user"), brute)
    brute_i = np.array([((i == i[r]) & (t < t[r])).sum() for r in range(len(tiny))])
    assert np.array_equal(h.counts(i, t, "item"), brute_i)
    ids, mask = h.neighbours(u, t, "user", k=10, rng=np.random.default_rng(0))
    for r in range(len(tiny)):  # K exceeds every history: all previous items, exactly
        expected = sorted(i[(u == u[r]) & (t < t[r])])
        assert sorted(ids[r][mask[r]]) == expected
    ids, mask = h.neighbours(u, t, "user", k=1, rng=np.random.default_rng(0))
    assert mask.sum(1).max() == 1
    for r in np.flatnonzero(mask[:, 0]):
        assert ids[r, 0] in i[(u == u[r]) & (t < t[r])]
    with pytest.raises(ValueError, match="cap K"):
        h.neighbours(u, t, "user", k=0, rng=np.random.default_rng(0))


def test_past_pairs_negatives_are_never_seen_before(drift):
    past = PastPairs(drift)
    rng = np.random.default_rng(0)
    pos = len(drift) // 2
    users = drift.users[pos - 200 : pos]
    neg = past.sample_negatives(users, pos, rng)
    assert not past.seen_before(users, neg, pos).any()
    # a pair first seen at position p is "seen before" p + 1 but not before p
    p = 100
    assert past.seen_before(drift.users[[p]], drift.items[[p]], p + 1)[0]
    first = np.flatnonzero((drift.users == drift.users[p]) & (drift.items == drift.items[p]))[0]
    assert not past.seen_before(drift.users[[p]], drift.items[[p]], first)[0]


def test_stream_shares_batches_and_candidates(stream, drift):
    rows = [stream.phase_rows(p) for p in ("pretrain", "warmup", "test")]
    assert np.array_equal(np.concatenate(rows), np.arange(len(drift)))
    assert len(rows[1]) == round(0.1 * len(drift)) and len(rows[2]) == len(drift) - round(0.7 * len(drift))
    batches = stream.batches("test")
    assert all(len(b) <= 32 for b in batches) and sum(len(b) for b in batches) == len(rows[2])
    b = batches[0]
    assert torch.equal(b.candidates[:, 0], b.items) and b.candidates.shape == (len(b), 31)
    assert not stream.seen_all.contains(b.users.numpy()[:, None], b.candidates[:, 1:].numpy()).any()
    assert not stream.past.seen_before(b.users.numpy(), b.negatives.numpy(), int(b.rows[-1]) + 1).any()
    assert stream.batches("test") is batches  # built once
    assert stream.summary()["test"] == len(rows[2])
    with pytest.raises(ValueError, match="online phases"):
        stream.batches("pretrain")
    with pytest.raises(ValueError, match="warmup_share"):
        OnlineStream(drift, warmup_share=0.9, train_share=0.8)
    with pytest.raises(ValueError, match="batch_size"):
        OnlineStream(drift, batch_size=0)


def test_stream_draws_are_seeded(drift):
    a = OnlineStream(drift, 32, 0.7, 0.1, 30, 5, seed=1).batches("test")[2]
    b = OnlineStream(drift, 32, 0.7, 0.1, 30, 5, seed=1).batches("test")[2]
    c = OnlineStream(drift, 32, 0.7, 0.1, 30, 5, seed=2).batches("test")[2]
    assert torch.equal(a.candidates, b.candidates) and torch.equal(a.user_nbrs, b.user_nbrs)
    assert not torch.equal(a.candidates, c.candidates)


def test_prequential_loop_scores_each_batch_before_training_on_it(stream, recs):
    rec = recs["BPR"].clone()
    events = []
    strat = Default(0.5).bind(rec, stream)

    def score(batch):
        events.append(("score", batch.index))
        return rec.rank(batch)

    def update(batch):
        events.append(("update", batch.index))
        strat.step(batch)

    res = run_prequential(score, update, stream)
    test_ids = [b.index for b in stream.batches("test")]
    for idx in test_ids:
        assert events.index(("score", idx)) < events.index(("update", idx))
    assert [e for e in events if e[0] == "score"] == [("score", i) for i in test_ids]  # warm-up is not scored
    assert len(res.ranks) == sum(len(b) for b in stream.batches("test"))
    assert set(res.metrics()) == {f"{m}@{k}" for m in ("hr", "ndcg") for k in (5, 10, 20)}
    assert list(res.per_batch["batch"]) == test_ids


def test_prequential_scores_do_not_depend_on_the_batch_itself(stream, recs):
    """Scoring batch t with the recommender updated on batches < t only: replaying gives the same ranks."""
    rec = recs["NCF"].clone()
    strat = Default(0.5).bind(rec, stream)
    res = run_prequential(rec.rank, strat.step, stream)
    rec2 = recs["NCF"].clone()
    strat2 = Default(0.5).bind(rec2, stream)
    for b in stream.batches("warmup"):
        strat2.step(b)
    test = stream.batches("test")
    for b in test[:3]:
        strat2.step(b)
    r = rec2.rank(test[3])  # trained on batches 0..2 only
    start = sum(len(b) for b in test[:3])
    assert torch.equal(r, res.ranks[start : start + len(test[3])])
    with pytest.raises(ValueError, match="no batch was evaluated"):
        run_prequential(rec.rank, strat.step, stream, evaluate=())


# -------------------------------------------------------------- recommender
@pytest.mark.parametrize("kind", ["BPR", "NCF"])
def test_per_sample_gradients_equal_single_sample_gradients(stream, recs, kind):
    rec = recs[kind]
    batch = stream.batches("test")[1]
    ps = rec.per_sample(batch)
    params = rec.snapshot()
    assert ps.losses.shape == (len(batch),)
    for x in (0, 7, len(batch) - 1):
        leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        single = replace(batch, users=batch.users[x : x + 1], items=batch.items[x : x + 1],
                         negatives=batch.negatives[x : x + 1])
        (loss,) = rec.losses(leaves, single)
        g = dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))
        assert loss.item() == pytest.approx(ps.losses[x].item(), rel=1e-5)
        for k in rec.tables:
            assert torch.allclose(g[k][ps.rows[k][x]], ps.grads[k][x], atol=1e-6), k
            untouched = torch.ones(g[k].shape[0], dtype=torch.bool)
            untouched[ps.rows[k][x]] = False
            assert g[k][untouched].abs().max() == 0  # the selective update: nothing else moves
        for k in rec.dense:
            assert torch.allclose(g[k], ps.grads[k][x], atol=1e-6), k


def test_losses_are_bpr_and_log_loss(stream, recs):
    batch = stream.batches("test")[0]
    for kind, ref in (("BPR", lambda s: -torch.nn.functional.logsigmoid(s[:, 0] - s[:, 1])),
                      ("NCF", lambda s: -torch.nn.functional.logsigmoid(s[:, 0]) - torch.nn.functional.logsigmoid(-s[:, 1]))):
        rec = recs[kind]
        s = rec.pair_scores(rec.snapshot(), batch)
        assert torch.allclose(rec.losses(rec.snapshot(), batch), ref(s), atol=1e-6)
        w = torch.linspace(0, 2, len(batch))
        assert rec.batch_loss(rec.snapshot(), batch, w).item() == pytest.approx((w * ref(s)).mean().item(), rel=1e-5)


def test_mean_gradient_normalises_by_involvement_and_matches_eq5(stream, recs):
    rec = recs["BPR"]
    batch = stream.batches("test")[0]
    b = replace(batch, users=torch.tensor([0, 0, 1]), items=torch.tensor([5, 6, 5]), negatives=torch.tensor([7, 8, 9]))
    losses, g, touched = rec.mean_gradient(b)
    ps = rec.per_sample(b)
    # user 0 is in two interactions: its gradient is the mean of the two
    assert torch.allclose(g["user.weight"][0], (ps.grads["user.weight"][0, 0] + ps.grads["user.weight"][1, 0]) / 2, atol=1e-6)
    # item 5 is the positive of two interactions
    assert torch.allclose(g["item.weight"][5], (ps.grads["item.weight"][0, 0] + ps.grads["item.weight"][2, 0]) / 2, atol=1e-6)
    assert touched["user.weight"].tolist() == [0, 1] and touched["item.weight"].tolist() == [5, 6, 7, 8, 9]
    for kind in ("BPR", "NCF"):
        rec = recs[kind]
        ps = rec.per_sample(batch)
        _, g, _ = rec.mean_gradient(batch)
        new = rec.apply_per_sample(rec.snapshot(), ps, {k: torch.tensor(0.3) for k in rec.params})
        for k, v in rec.snapshot().items():
            assert torch.allclose(new[k], v - 0.3 * g[k], atol=1e-6), (kind, k)


def test_apply_per_sample_is_differentiable_in_W(stream, recs):
    rec = recs["NCF"]
    batch = stream.batches("test")[0]
    ps = rec.per_sample(batch)
    W = {k: torch.full_like(g, 0.2, dtype=torch.float64).float().requires_grad_(True) for k, g in ps.grads.items()}
    loss = rec.batch_loss(rec.apply_per_sample(rec.snapshot(), ps, W), stream.batches("test")[1])
    grads = torch.autograd.grad(loss, list(W.values()))
    k = "mlp.0.weight"
    j = list(W).index(k)
    direction = torch.randn_like(W[k])
    eps = 1e-3
    with torch.no_grad():
        def at(t):
            W2 = {kk: (v + t * direction if kk == k else v) for kk, v in W.items()}
            return rec.batch_loss(rec.apply_per_sample(rec.snapshot(), ps, W2), stream.batches("test")[1]).item()
        fd = (at(eps) - at(-eps)) / (2 * eps)
    assert (grads[j] * direction).sum().item() == pytest.approx(fd, rel=2e-2, abs=1e-5)


def test_recommender_helpers_and_errors(stream, recs):
    rec = recs["NCF"]
    batch = stream.batches("test")[0]
    assert rec.user_embedding(rec.snapshot(), batch.users).shape == (len(batch), rec.embedding_dim)
    assert rec.item_embedding(rec.snapshot(), batch.user_nbrs).shape == (*batch.user_nbrs.shape, rec.embedding_dim)
    from rec_lib.metrics import rank_against_candidates
    assert torch.equal(rec.rank(batch), rank_against_candidates(rec.model(batch.users, batch.candidates)))
    c = rec.clone()
    with torch.no_grad():
        next(iter(c.params.values())).add_(1.0)
    assert not torch.equal(next(iter(c.params.values())), next(iter(rec.params.values())))
    assert rec.n_parameters() == sum(p.numel() for p in rec.model.parameters())
    with pytest.raises(ValueError, match="kind"):
        OnlineRecommender.build("GRU", 3, 3)
    with pytest.raises(ValueError, match="loss"):
        OnlineRecommender(rec.model, loss="mse")
    with pytest.raises(ValueError, match="neither user"):
        OnlineRecommender(torch.nn.Sequential(torch.nn.Embedding(3, 2)))


# --------------------------------------------------------------- strategies
def test_preprocess_matches_andrychowicz():
    x = torch.tensor([2.0, -0.5, 0.0, 1e-6])
    out = preprocess(x, p=10.0)
    assert out.shape == (4, 2)
    assert out[0].tolist() == pytest.approx([math.log(2.0) / 10, 1.0])
    assert out[1].tolist() == pytest.approx([math.log(0.5) / 10, -1.0])
    assert out[2].tolist() == pytest.approx([-1.0, 0.0])
    assert out[3].tolist() == pytest.approx([-1.0, math.exp(10) * 1e-6], rel=1e-5)  # |x| < e^-10
    with pytest.raises(ValueError):
        preprocess(x, p=0)


def test_touched_round_trip(stream, recs):
    rec = recs["BPR"]
    _, g, rows = rec.mean_gradient(stream.batches("test")[0])
    t = Touched(rec, rows)
    flat = t.gather(rec.snapshot())
    assert flat.shape == (t.M,) and t.M == sum(len(rows[k]) * rec.params[k].shape[1] for k in rec.tables)
    back = t.replace(rec.snapshot(), flat * 0 + 7.0)
    assert torch.all(back["user.weight"][rows["user.weight"]] == 7.0)
    untouched = torch.ones(rec.n_users, dtype=torch.bool)
    untouched[rows["user.weight"]] = False
    assert torch.equal(back["user.weight"][untouched], rec.snapshot()["user.weight"][untouched])


def _bound(name, rec, stream, lr=0.3, seed=0):
    from rec_lib.online_update.experiment import MelonSettings

    torch.manual_seed(seed)
    return make_strategy(name, MelonSettings(meta_lr=1e-2, melon_hidden=8), lr, 2.0, seed).bind(rec.clone(), stream)


@pytest.mark.parametrize("kind", ["BPR", "NCF"])
@pytest.mark.parametrize("name", ["Default", "MWNet", "MetaSGD", "MeLON", "MeLON_I", "MeLON_P"])
def test_first_update_is_eq5_with_the_strategy_W(stream, recs, kind, name):
    """Each strategy's update equals theta - (1/n_m) sum_x W[x, m] g_x,m with its own W."""
    s = _bound(name, recs[kind], stream)
    batch = stream.batches("test")[0]
    view = BatchView(s.rec, batch)
    W = s.learning_rate_matrix(view)
    assert W.shape == (len(batch), view.M)
    before = view.touched.gather(s.rec.snapshot())
    s.step(batch)
    after = view.touched.gather(s.rec.snapshot())
    assert torch.allclose(after - before, view.update(W), atol=1e-6)


def test_s2meta_update_is_gated(stream, recs):
    s = _bound("S2Meta", recs["BPR"], stream)
    batch = stream.batches("test")[0]
    view = BatchView(s.rec, batch)
    W = s.learning_rate_matrix(view)
    i, f = s.gates(view.theta, view.mean_grad, view.losses.mean(), view.touched.gather(s.state_i),
                   view.touched.gather(s.state_f))
    s.step(batch)
    after = view.touched.gather(s.rec.snapshot())
    assert torch.allclose(after, f * view.theta + view.update(W), atol=1e-6)
    assert 0.99 < f.min() and f.max() < 1.0  # forget gate starts near one
    assert W[0].mean().item() == pytest.approx(0.3, rel=0.2)  # input gate starts near eta


def test_eals_is_default_scaled_with_popularity_negatives(stream, recs):
    a = EALS(0.2, w_new=3.0, alpha=0.5, seed=4).bind(recs["BPR"].clone(), stream)
    twin = EALS(0.2, w_new=3.0, alpha=0.5, seed=4).bind(recs["BPR"].clone(), stream)
    batch = stream.batches("test")[0]
    negs = twin.popularity_negatives(batch)  # the same draws as a's next step
    assert not stream.past.seen_before(batch.users.numpy(), negs.numpy(), int(batch.rows[-1]) + 1).any()
    ref = Default(0.6).bind(recs["BPR"].clone(), stream)
    ref.step(replace(batch, negatives=negs))
    a.step(batch)
    for k, v in a.rec.snapshot().items():
        assert torch.allclose(v, ref.rec.snapshot()[k], atol=1e-6)
    # popular items are drawn more often as negatives
    many = np.concatenate([twin.popularity_negatives(batch).numpy() for _ in range(30)])
    counts = twin.counts
    assert counts[many].mean() > counts.mean()
    with pytest.raises(ValueError, match="stream"):
        EALS(0.1).bind(recs["BPR"].clone())


def test_metasgd_meta_gradient_matches_finite_differences(stream, recs):
    s = _bound("MetaSGD", recs["BPR"], stream)
    b0, b1 = stream.batches("test")[:2]
    params = s.rec.snapshot()
    cache = s.prepare(params, b0)
    loss = s.rec.batch_loss(s.look_ahead(params, b0, cache), b1)
    (g,) = torch.autograd.grad(loss, [s.alpha["item.weight"]])
    d = torch.randn_like(g)
    eps = 1e-2
    with torch.no_grad():
        vals = []
        for t in (eps, -eps):
            s.alpha["item.weight"].add_(t * d)
            vals.append(s.rec.batch_loss(s.look_ahead(params, b0, cache), b1).item())
            s.alpha["item.weight"].sub_(t * d)
    assert (g * d).sum().item() == pytest.approx((vals[0] - vals[1]) / (2 * eps), rel=2e-2, abs=1e-6)


@pytest.mark.parametrize("name", ["MWNet", "MetaSGD", "S2Meta", "MeLON", "MeLON_I", "MeLON_P"])
def test_meta_strategies_learn_from_the_next_batch(stream, recs, name):
    s = _bound(name, recs["BPR"], stream)
    b0, b1 = stream.batches("test")[:2]
    s.step(b0)
    assert s.meta_losses == []  # nothing to look ahead from yet
    before = [p.detach().clone() for p in s.meta_params]
    s.step(b1)
    assert len(s.meta_losses) == 1 and math.isfinite(s.meta_losses[0])
    assert any(not torch.equal(a, p.detach()) for a, p in zip(before, s.meta_params))


def test_strategy_errors(stream, recs):
    with pytest.raises(RuntimeError, match="bind"):
        Default(0.1).step(stream.batches("test")[0])
    with pytest.raises(ValueError, match="learning rate"):
        Default(0.0)
    with pytest.raises(ValueError, match="meta_lr"):
        MWNet(0.1, meta_lr=-1)
    with pytest.raises(ValueError, match="variant"):
        MeLON(0.1, variant="3D")
    with pytest.raises(ValueError, match="max_ratio"):
        S2Meta(0.1, max_ratio=1.0)
    with pytest.raises(ValueError, match="unknown strategy"):
        make_strategy("SGD", CHAPTER.make("smoke"), 0.1)


def test_every_strategy_improves_over_no_update_on_a_drifting_stream(stream, recs):
    base = run_prequential(recs["BPR"].clone().rank, NoUpdate().bind(recs["BPR"], stream).step, stream).metrics()
    for name in ALL:
        s = _bound(name, recs["BPR"], stream, lr=0.3)
        m = run_prequential(s.rec.rank, s.step, stream).metrics()
        assert m["ndcg@10"] > base["ndcg@10"] + 0.01, (name, m["ndcg@10"], base["ndcg@10"])


# --------------------------------------------------------------------- MeLON
def test_melon_net_shapes_and_attention_masks():
    torch.manual_seed(0)
    net = MeLONNet(emb_dim=6, hidden=5, variant="2D", max_ratio=4.0)
    n, K, M = 4, 3, 7
    e = torch.randn(n, 6)
    nb, mask = torch.randn(n, K, 6), torch.tensor([[1, 1, 0], [0, 0, 0], [1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    h = net.interaction(e, e, nb, mask, nb, mask)
    assert h.shape == (n, 5) and (h >= 0).all()
    # a masked neighbour has no influence; a user without history aggregates nothing
    nb2 = nb.clone()
    nb2[0, 2] += 100.0
    nb2[1] += 100.0
    assert torch.allclose(net.interaction(e, e, nb2, mask, nb2, mask), h)
    feats = role_features(torch.randn(1, M), torch.rand(n), torch.randn(n, M))
    assert feats.shape == (n, M, 6)
    w = net.rates(h, feats)
    assert w.shape == (n, M) and ((w > 0) & (w < 1)).all()
    assert w.mean().item() == pytest.approx(0.25, abs=0.05)  # starts at 1 / max_ratio
    with pytest.raises(ValueError, match="h_x"):
        net.rates(None, feats)
    p = MeLONNet(6, 5, variant="P")
    assert p.rates(None, feats[:1]).shape == (1, M)
    with pytest.raises(ValueError):
        MeLONNet(6, variant="X")


@pytest.mark.parametrize("kind", ["BPR", "NCF"])
def test_learning_rate_matrix_rank_two_directional_vs_one_directional(stream, recs, kind):
    batch = stream.batches("test")[2]
    ranks = {}
    for name in ALL:
        s = _bound(name, recs[kind], stream)
        view = BatchView(s.rec, batch)
        W = s.learning_rate_matrix(view)
        assert W.shape == (len(batch), view.M)  # interactions x parameters
        ranks[name] = numerical_rank(W)
    assert ranks["MeLON"] > 1
    for name in ("Default", "eALS", "MWNet", "MetaSGD", "S2Meta", "MeLON_I", "MeLON_P"):
        assert ranks[name] == 1, (name, ranks[name])


# ------------------------------------------------------------------ analysis
def test_numerical_rank_and_singular_values():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, 2, generator=gen), torch.randn(2, 30, generator=gen)
    assert numerical_rank(a @ b) == 2
    assert numerical_rank(torch.ones(5, 4) * 3) == 1
    assert numerical_rank(torch.zeros(3, 3)) == 0
    s = singular_values(torch.diag(torch.tensor([3.0, 1.0, 2.0])))
    assert s.tolist() == pytest.approx([3.0, 2.0, 1.0])


def test_eckart_young_and_theorem3():
    gen = torch.Generator().manual_seed(1)
    W = torch.rand(12, 20, generator=gen, dtype=torch.float64)
    s = singular_values(W)
    for k in (1, 2, 5):
        assert spectral_norm(W - best_rank_k(W, k)) == pytest.approx(s[k], rel=1e-9)  # Lemma 1
    assert numerical_rank(best_rank_k(W, 3)) == 3
    gap = one_directional_gap(W, steps=50)
    assert gap["svd_rank1_error"] == pytest.approx(gap["sigma_2"], rel=1e-9)
    assert gap["interaction_wise_error"] >= gap["sigma_2"] * (1 - 1e-9)
    assert gap["parameter_wise_error"] >= gap["sigma_2"] * (1 - 1e-9)
    v = torch.rand(12, 1, generator=gen, dtype=torch.float64)
    rank1 = one_directional_gap(v.expand(12, 20), steps=5)
    assert rank1["interaction_wise_error"] < 1e-9 and rank1["sigma_2"] < 1e-9
    with pytest.raises(ValueError):
        best_rank_k(W, -1)


def test_batch_view_layout(stream, recs):
    rec = recs["BPR"]
    batch = stream.batches("test")[0]
    view = BatchView(rec, batch)
    d = rec.params["user.weight"].shape[1]
    assert (view.involved.sum(1) == 3 * d).all()  # p_u, q_i, q_j
    assert view.M == len(view.columns)
    ps = rec.per_sample(batch)
    x = 3
    assert torch.allclose(view.grads[x][view.involved[x]].sort().values,
                          torch.cat([ps.grads[k][x].reshape(-1) for k in rec.tables]).sort().values)
    assert torch.allclose(view.grads.sum(0) / view.involved.sum(0).clamp(min=1), view.mean_grad, atol=1e-6)
    W = torch.rand(view.n, view.M)
    pairs = pair_table(W, view)
    assert len(pairs) == int(view.involved.sum()) and set(pairs.columns) == {"w", "loss", "abs_grad", "param"}
    block, rm, cm = submatrix(W, view, 10, 12)
    assert block.shape == (10, 12) and (~np.isnan(block)).any()  # blank (NaN) where x does not involve m
    assert np.isin(block[~np.isnan(block)], W.numpy()).all()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert np.allclose(rm, np.nanmean(block, 1), equal_nan=True)
    c = cm[~np.isnan(cm)]
    assert (np.diff(c) <= 1e-7).all()
    table = rank_table({"Default": Default(0.1), "none": NoUpdate()}, view)
    assert table.loc["Default", "rank"] == 1 and table.loc["none", "rank"] == 0


# ---------------------------------------------------------------- experiment
def test_settings_validation_and_datasets():
    s = CHAPTER.make("smoke")
    assert CHAPTER.datasets(s) == ["ml-100k"]
    assert CHAPTER.datasets(CHAPTER.make("smoke", dataset="synthetic")) == []
    assert CHAPTER.make("paper").dataset == "adressa"
    for bad in (dict(dataset="imdb"), dict(strategies=("Default", "SGD")), dict(strategies=("Default",)),
                dict(recommenders=("GRU",)), dict(lr_grid=(0.1, -1.0)), dict(warmup_share=0.0),
                dict(max_ratio=1.0), dict(max_interactions=10), dict(synthetic_drift=(1.5,)), dict(sml_lr=0.0),
                dict(sml_lr_grid=(0.01, -1.0)), dict(sml_outer_iters=0)):
        with pytest.raises(SettingsError):
            CHAPTER.make("smoke", **bad)
    with pytest.raises(SettingsError, match="SCALE"):
        CHAPTER.make("huge")


def test_load_stream_synthetic_and_truncated():
    s = CHAPTER.make("smoke", dataset="synthetic", synthetic_users=120, synthetic_items=150)
    st = load_stream(s, seed=0)
    assert st.data.name == "drifting-stream" and st.n_items == 150
    assert load_stream(s, seed=0, long_term_weight=0.9).data.ground_truth["params"]["long_term_weight"] == 0.9
    s2 = CHAPTER.make("smoke", dataset="synthetic", synthetic_users=300, max_interactions=1000)
    assert len(load_stream(s2, seed=0).data) == 1000


def test_run_comparison_time_and_views_on_a_tiny_stream():
    s = CHAPTER.make("smoke", dataset="synthetic", synthetic_users=120, synthetic_items=150, batch_size=64,
                     pretrain_epochs=2, lr_grid=(0.1, 0.3), w_new_grid=(1.0,))
    comp = run_comparison(s, n_seeds=2, recommenders=("BPR", "NCF"))
    n_strat = 1 + len(s.strategies)
    # ablations and Global rate on BPR only, SML on BPR only, Default at MeLON's rate wherever MeLON runs
    assert len(comp.runs) == 2 * (n_strat + len(s.ablations) + len(s.controls)) + 2 * n_strat
    assert set(comp.runs.query("recommender == 'NCF'")["strategy"]) == (
        {"No update", *s.strategies, "Default at MeLON's rate"} - {"SML"})
    assert set(comp.rates) == {"BPR", "NCF"} and comp.rates["BPR"]["lr"] in (0.1, 0.3)
    assert comp.rates["BPR"]["sml_lr"] in s.sml_lr_grid and comp.rates["NCF"]["sml_lr"] is None
    sel = comp.selection
    assert {"eta", "w_new", "sml_lr", "passes MeLON"} <= set(sel["parameter"])
    assert set(sel.loc[sel["parameter"] == "sml_lr", "recommender"]) == {"BPR"}
    assert {"hr@5", "ndcg@10", "seconds_per_batch"} <= set(comp.runs.columns)
    assert set(comp.per_batch["strategy"]) == set(comp.runs["strategy"])
    t = time_strategies(comp, "BPR", ["Default", "SML", "MeLON"], repeats=2)
    assert t.loc["Default", "x Default"] == 1.0 and t["median_s"].gt(0).all() and "SML" in t.index
    assert "SML" not in time_strategies(comp, "NCF", ["Default", "SML"], repeats=1).index
    view, strategies = trained_strategies_view(comp, "BPR", n_interactions=16)
    assert view.n == 16 and "MeLON_P" in strategies and "SML" in strategies
    assert "SML" not in rank_table(strategies, view).index  # a transfer, no learning-rate matrix
    assert numerical_rank(strategies["MeLON"].learning_rate_matrix(view)) > 1
    best, table = select_on_warmup(comp.kept[("BPR", "No update")][1], comp.streams[s.seed],
                                   lambda v: Default(v), (0.05, 0.2))
    assert best in (0.05, 0.2) and len(table) == 2


def test_margin_over_hand_checked():
    runs = pd.DataFrame({"recommender": "BPR", "strategy": ["A", "A", "B", "B", "C", "C"],
                         "hr@5": [0.5, 0.7, 0.4, 0.4, 0.1, 0.3]})
    m = margin_over(runs, "A", ["B", "C"])
    assert m["best_other"] == "B" and m["margin"] == pytest.approx(0.2)
    assert m["se"] == pytest.approx(np.sqrt(0.02 / 2))  # std(A) = 0.1414, std(B) = 0
    assert m["relative"] == pytest.approx(0.5)
    with pytest.raises(KeyError, match="not run"):
        margin_over(runs, "A", ["D"])


def test_batch_to_moves_every_tensor(stream):
    b = stream.batches("test")[0]
    c = b.to("cpu")
    assert c is not b and torch.equal(c.candidates, b.candidates) and c.index == b.index and len(c) == len(b)
    assert np.array_equal(c.rows, b.rows)


# ----------------------------------------------------------------------- SML
def test_strategies_for_keeps_sml_on_bpr_only():
    names = ["Default", "SML", "MeLON"]
    assert strategies_for("BPR", names) == names and strategies_for("NCF", names) == ["Default", "MeLON"]


def test_sml_step_is_the_retraining_chapters_updater(stream, recs):
    """SML's online step is rec_lib.retraining.SMLUpdater on the batch and its negatives, loaded into BPR-MF."""
    rec = recs["BPR"].clone()
    s = SML(lr=1e-2, meta_lr=1e-3, outer_iters=2, filters=(4, 2), fc=16, seed=5)
    torch.manual_seed(0)
    s.bind(rec, stream)
    p0 = recs["BPR"].snapshot()
    torch.manual_seed(0)
    ref = SMLUpdater(p0["user.weight"], p0["item.weight"], None, seed_everything(5, set_global=False).child(11),
                     filters=(4, 2), fc=16, loss="bpr", lr_hat=1e-2, lr_theta=1e-3, outer_iters=2)
    theta0 = [p.detach().clone() for p in s.updater.transfer.parameters()]
    for k, b in enumerate(stream.batches("test")[:3]):
        s.step(b)
        ref.update(b.users.numpy(), b.items.numpy(), b.negatives.numpy())
        assert torch.equal(rec.params["user.weight"], ref.P) and torch.equal(rec.params["item.weight"], ref.Q)
        moved = any(not torch.equal(a, p) for a, p in zip(theta0, s.updater.transfer.parameters()))
        assert moved == (k > 0)  # the first batch only opens a task (step 1); Theta learns from the next


def test_sml_is_bpr_only_and_has_no_rate_matrix(stream, recs):
    with pytest.raises(ValueError, match="BPR"):
        SML().bind(recs["NCF"].clone(), stream)
    with pytest.raises(ValueError, match="outer_iters"):
        SML(outer_iters=0)
    with pytest.raises(ValueError, match="meta_lr"):
        SML(meta_lr=0.0)
    s = SML(fc=16).bind(recs["BPR"].clone(), stream)
    assert not s.has_rate_matrix
    with pytest.raises(NotImplementedError, match="learning-rate matrix"):
        s.learning_rate_matrix(BatchView(s.rec, stream.batches("test")[0]))


def test_sml_improves_over_no_update_on_a_drifting_stream(stream, recs):
    base = run_prequential(recs["BPR"].clone().rank, NoUpdate().bind(recs["BPR"], stream).step, stream).metrics()
    torch.manual_seed(0)
    s = SML(lr=3e-2, fc=32, seed=0).bind(recs["BPR"].clone(), stream)
    m = run_prequential(s.rec.rank, s.step, stream).metrics()
    assert m["ndcg@10"] > base["ndcg@10"] + 0.01, (m["ndcg@10"], base["ndcg@10"])
