"""rec_lib.online_update: meta-training on the replay, the controls, MeLON-code, the planted drift and its analysis."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from rec_lib import data
from rec_lib.models import fit_pairs
from rec_lib.online_update import (
    CHAPTER, DEFAULT_AT_MELON, Comparison, Default, GlobalRate, MeLON, OnlineRecommender, OnlineStream,
    load_drift_stream, meta_pretrain, pair_groups, paired, planted_drift_stream, rates_by_group, run_popularity,
    segment_runs, select_passes, two_way_decomposition, gradient_correlations,
)
from rec_lib.online_update.claims import hr_claim, rate_gap_claim, segment_claim
from rec_lib.utils import seed_everything
from tests.unit.test_online_update import _one_thread  # noqa: F401  (autouse: one thread, as in the chapter)


@pytest.fixture(scope="module")
def stream() -> OnlineStream:
    d = planted_drift_stream(n_users=80, n_items=100, max_interactions=40, seed=1)
    return OnlineStream(d, batch_size=32, train_share=0.7, warmup_share=0.1, n_eval_neg=20, n_neighbours=5, seed=0)


def _rec(stream, kind="BPR", seed=0) -> OnlineRecommender:
    torch.manual_seed(seed)
    rec = OnlineRecommender.build(kind, stream.n_users, stream.n_items, dim=8, layers=(8, 4))
    fit_pairs(rec.model, stream.pretrain.users, stream.pretrain.items, stream.seen_pretrain, seed_everything(seed),
              loss=rec.loss, epochs=2, batch_size=256, lr=1e-2)
    return rec


# ------------------------------------------------------------- the generator
def test_planted_drift_stream_types_weights_and_determinism():
    d = planted_drift_stream(n_users=60, n_items=80, max_interactions=30, seed=4)
    t, w = d.ground_truth["user_type"], d.ground_truth["weight"]
    assert (t == "fast").sum() == 30 and set(np.unique(t)) == {"fast", "stable"}
    assert np.all(w[t == "fast"] == 0.0) and np.all(w[t == "stable"] == 1.0)
    assert d.df["timestamp"].is_monotonic_increasing
    assert not d.df.duplicated(["user", "item"]).any()  # an item is chosen once per user
    again = planted_drift_stream(n_users=60, n_items=80, max_interactions=30, seed=4)
    pd.testing.assert_frame_equal(d.df, again.df)
    alike = planted_drift_stream(n_users=60, n_items=80, max_interactions=30, seed=4, alike=True)
    assert np.all(alike.ground_truth["weight"] == 0.5) and (alike.ground_truth["user_type"] == "fast").sum() == 30
    for bad in (dict(fast_share=1.0), dict(max_interactions=200), dict(n_users=1)):
        with pytest.raises(ValueError):
            planted_drift_stream(**{**dict(n_users=60, n_items=80, max_interactions=30), **bad})


def test_load_drift_stream_uses_the_settings():
    s = CHAPTER.make("smoke")
    st = load_drift_stream(s, seed=0)
    assert st.n_users == s.drift_users and st.batch_size == s.drift_batch
    assert st.data.name == "planted-drift" and load_drift_stream(s, 0, alike=True).data.name == "planted-drift-alike"


# ------------------------------------------------------------ decomposition
def test_two_way_decomposition_additive_random_and_pruning():
    gen = torch.Generator().manual_seed(0)
    mask = torch.rand(12, 30, generator=gen) > 0.3
    add = torch.arange(12.0)[:, None] + 2 * torch.arange(30.0)[None, :]
    d = two_way_decomposition(add, mask)
    assert d["interaction"] == pytest.approx(0.0, abs=1e-9)
    assert d["row"] + d["column"] + d["interaction"] == pytest.approx(1.0)
    r = two_way_decomposition(torch.rand(12, 30, generator=gen), mask)
    assert r["interaction"] > 0.3 and r["row"] + r["column"] + r["interaction"] == pytest.approx(1.0)
    # an entry alone in its column carries no interaction information: pruned
    single = torch.zeros(3, 3, dtype=torch.bool)
    single[0, 0] = True
    with pytest.raises(ValueError, match="fewer than 3"):
        two_way_decomposition(torch.rand(3, 3), single)
    const = two_way_decomposition(torch.ones(12, 30), mask)
    assert const["interaction"] == 0.0 and const["row"] == 0.0


# ------------------------------------------------------------ strategies
def test_global_rate_learns_one_rate_and_rebind_keeps_it(stream):
    rec0 = _rec(stream)
    g = GlobalRate(0.1, meta_lr=0.05).bind(rec0.clone(), stream)
    for b in stream.batches("warmup"):
        g.step(b)
    assert g.alpha != pytest.approx(0.1) and len(g.rate_log) == len(stream.batches("warmup"))
    a, params = g.alpha, g.meta_params
    g.rebind(rec0.clone(), stream)
    assert g.alpha == a and g.meta_params is params and g._prev is None and g.rate_log == []


def test_meta_pretrain_resets_the_recommender_and_keeps_the_meta_model(stream):
    rec0 = _rec(stream)
    torch.manual_seed(0)
    m = MeLON(0.1, meta_lr=0.05)
    replay = stream.replay_batches(3)
    assert len(replay) == 3 and all(b.phase == "pretrain" for b in replay)
    assert replay[-1].rows[-1] == stream.pre_end - 1  # the end of the pre-training share
    before = [p.detach().clone() for p in MeLON(0.1).build(rec0)]  # a fresh net (same seed) for comparison
    torch.manual_seed(0)
    meta_pretrain(m, rec0, stream, replay, passes=2)
    moved = any(not torch.equal(a, b) for a, b in zip(before, m.net.parameters()))
    assert moved and len(m.meta_losses) == 2 * len(replay) - 1
    for k, v in rec0.snapshot().items():
        assert torch.equal(m.rec.params[k], v)  # starts again from the pre-trained model
    with pytest.raises(ValueError):
        stream.replay_batches(0)


def test_select_passes_picks_from_the_grid_on_the_warmup(stream):
    rec0 = _rec(stream)
    chosen, table, strat = select_passes(lambda: MeLON(0.1, meta_lr=0.05), rec0, stream,
                                         stream.replay_batches(2), (0, 1))
    assert chosen in (0, 1) and list(table["value"]) == [0, 1] and table["ndcg@10"].notna().all()
    assert strat.rec is not rec0 and strat._prev is None


def test_melon_code_with_a_closed_forget_gate_is_melon_update(stream):
    """With f = 1 (huge forget bias) MeLON-code's step is theta - sum_x w g / n_m with its own rates."""
    rec = _rec(stream)
    torch.manual_seed(0)
    m = MeLON(0.1, variant="F").bind(rec.clone(), stream)
    with torch.no_grad():
        m.net.forget_theta.bias.fill_(60.0)
    b = stream.batches("test")[0]
    w, ps = m.pair_rates(b)
    from rec_lib.online_update.melon import _unflat

    ref = m.rec.apply_per_sample(m.rec.snapshot(), ps, _unflat(ps, w))
    with torch.no_grad():
        new = m.look_ahead(m.rec.snapshot(), b, m.prepare(m.rec.snapshot(), b))
    for k in ref:
        assert torch.allclose(new[k], ref[k], atol=1e-6)
    # an open gate shrinks the involved rows towards 0
    with torch.no_grad():
        m.net.forget_theta.bias.fill_(-60.0)
        shrunk = m.look_ahead(m.rec.snapshot(), b, m.prepare(m.rec.snapshot(), b))
    u = b.users[0]
    assert shrunk["user.weight"][u].norm() < m.rec.params["user.weight"][u].norm()
    assert m.name == "MeLON-code" and m.direction == "2D"


def test_rates_by_group_and_gradient_correlations(stream):
    rec = _rec(stream)
    torch.manual_seed(0)
    m = MeLON(0.1).bind(rec.clone(), stream)
    batches = stream.batches("test")[:2]
    types = stream.data.ground_truth["user_type"]
    df = rates_by_group(m, batches, types)
    assert set(df["group"]) == {"user row", "positive item row", "negative item row"}
    assert len(df) == 3 * sum(len(b) for b in batches) and set(df["user_type"]) <= {"fast", "stable"}
    assert df["rate"].between(0, m.max_ratio).all()
    assert df["rate"].mean() == pytest.approx(1.0, abs=0.1)  # untrained: Default's rate
    c = gradient_correlations(m, batches)
    assert set(c.index) == set(df["group"]) and c.abs().le(1).all()
    ps = rec.per_sample(batches[0])
    groups = pair_groups(ps)
    assert groups[-1][2] == sum(g[0].numel() for g in ps.grads.values())
    with pytest.raises(ValueError, match="per-pair"):
        MeLON(0.1, variant="P").bind(rec.clone(), stream).pair_rates(batches[0])


def test_biased_bpr_starts_new_users_at_the_mean(stream):
    rec = OnlineRecommender.build("BiasedBPR", stream.n_users, stream.n_items, dim=8)
    with torch.no_grad():
        rec.params["user_bias.weight"].normal_()
    known = np.array([0, 2, 5])
    rec.mean_new_users(known)
    P = rec.params["user.weight"]
    assert torch.allclose(P[1], P[known].mean(0)) and torch.allclose(P[7], P[known].mean(0))
    assert rec.params["user_bias.weight"][1].item() == 0.0 and rec.params["user_bias.weight"][0].item() != 0.0
    assert rec.per_sample(stream.batches("test")[0]).losses.shape == (len(stream.batches("test")[0]),)


# ------------------------------------------------------------ controls, tables
def test_popularity_segments_and_paired_on_a_tiny_comparison(stream):
    rec0 = _rec(stream)
    from rec_lib.online_update import run_prequential

    comp = Comparison(pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), {}, streams={0: stream})
    for name, strat in (("Default", Default(0.1)), ("No update", Default(1e-9))):
        s = strat.bind(rec0.clone(), stream)
        res = run_prequential(s.rec.rank, s.step, stream)
        comp.ranks[("BPR", name, 0)] = res.ranks
        comp.runs = pd.concat([comp.runs, pd.DataFrame([{"recommender": "BPR", "strategy": name, "seed": 0,
                                                         **res.metrics()}])], ignore_index=True)
    pop = run_popularity(comp)
    assert len(pop) == 1 and 0 <= pop["hr@5"].iloc[0] <= 1 and ("none", "Popularity", 0) in comp.ranks
    seg = segment_runs(comp)
    assert set(seg["segment"]) == {"returning user", "new user", "all"}
    allrows = seg[seg.segment == "all"].set_index("strategy")["hr@5"]
    assert allrows["Default"] == pytest.approx(comp.runs.set_index("strategy").loc["Default", "hr@5"])
    typed = segment_runs(comp, {0: stream.data.ground_truth["user_type"]})
    assert set(typed["segment"]) <= {"fast", "stable"}
    a, b = paired(comp.runs, "Default", "No update", recommender="BPR")
    assert len(a) == len(b) == 1
    with pytest.raises(KeyError, match="not run"):
        paired(comp.runs, "Default", "MeLON")


def test_claim_builders_pair_on_seeds():
    runs = pd.DataFrame({"recommender": "BPR", "strategy": ["A"] * 3 + ["B"] * 3, "seed": [0, 1, 2] * 2,
                         "hr@5": [0.30, 0.32, 0.31, 0.20, 0.22, 0.21]})
    c = hr_claim("x", "A beats B", "-", runs, "A", "B")
    assert c.verdict == "holds" and c.effect == pytest.approx(0.1) and c.n == 3
    seg = runs.assign(segment="new user")
    assert segment_claim("y", "A beats B", "-", seg, "A", "B", "new user").effect == pytest.approx(0.1)
    rates = pd.DataFrame({"seed": [0, 0, 1, 1], "user_type": ["fast", "stable"] * 2, "group": "user row",
                          "rate": [1.5, 1.0, 1.4, 1.0]})
    r = rate_gap_claim("z", "fast above stable", "-", rates, ("fast", "user row"), ("stable", "user row"))
    assert r.effect == pytest.approx(0.45) and r.n == 2 and r.role == "mechanism"


def test_new_settings_are_validated():
    from rec_lib.config import SettingsError

    for bad in (dict(replay_batches=0), dict(meta_passes=()), dict(meta_passes=(-1,)), dict(controls=("X",)),
                dict(drift_max_interactions=10_000)):
        with pytest.raises(SettingsError):
            CHAPTER.make("smoke", **bad)
    assert DEFAULT_AT_MELON in CHAPTER.make("tutorial").controls


# ------------------------------------------------- kept look-ahead graph, time sweep
def _stepped(stream, name, keep, n_steps=5, kind="NCF", live_only=True):
    from rec_lib.online_update import make_strategy

    s = CHAPTER.make("smoke")
    strat = make_strategy(name, s, lr=0.1)
    strat.keep_graph = keep
    strat.live_only = live_only
    torch.manual_seed(3)
    strat.bind(_rec(stream, kind), stream)
    for b in stream.batches("test")[:n_steps]:
        strat.step(b)
    return strat


@pytest.mark.parametrize("name", ["MeLON", "MeLON-code", "MeLON_P", "MeLON_I", "MetaSGD", "S2Meta", "MWNet",
                                  "Global rate"])
def test_kept_graph_gives_the_same_numbers_as_recomputing(stream, name):
    a, b = _stepped(stream, name, True), _stepped(stream, name, False)
    assert a._prev[3] is not None and b._prev[3] is None  # the graph is kept only when asked
    assert all(torch.equal(a.rec.params[k], b.rec.params[k]) for k in a.rec.params)
    assert all(torch.equal(x, y) for x, y in zip(a.meta_params, b.meta_params))
    assert a.meta_losses == b.meta_losses and len(a.meta_losses) == 4
    assert a.rate_log == b.rate_log  # the applied updates only, whichever order


def test_graph_at_live_pairs_only_gives_the_same_numbers_to_rounding(stream):
    a, b = _stepped(stream, "MeLON", True), _stepped(stream, "MeLON", True, live_only=False)
    params, batch, cache, _ = a._prev
    live = cache["live"]
    assert live.dtype == torch.bool and 0 < live.sum() < live.numel()  # NCF: dead ReLUs give g = 0
    assert b._prev[2]["live"] is None
    for x, y in zip([a.rec.params[k] for k in sorted(a.rec.params)] + list(a.meta_params),
                    [b.rec.params[k] for k in sorted(b.rec.params)] + list(b.meta_params)):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6 * float(y.detach().abs().max()))
    assert a.meta_losses == pytest.approx(b.meta_losses, rel=1e-5)
    assert a.rate_log == pytest.approx(b.rate_log, rel=1e-5)


def test_rates_with_live_pairs_equal_and_differentiate_the_live_ones_only():
    from rec_lib.online_update.melon import MeLONNet

    torch.manual_seed(0)
    net = MeLONNet(emb_dim=4, hidden=8)
    feats, h_x = torch.randn(3, 5, 6), torch.randn(3, 8)
    live = torch.rand(3, 5) > 0.4
    with torch.no_grad():
        full = net.rates(h_x, feats)
    masked = net.rates(h_x, feats, live)
    torch.testing.assert_close(masked, full)
    upstream = torch.randn(3, 5) * live  # what a meta-loss sends back: zero where g = 0
    ga = torch.autograd.grad((masked * upstream).sum(), list(net.role.parameters()))
    gb = torch.autograd.grad((net.rates(h_x, feats) * upstream).sum(), list(net.role.parameters()))
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y)


def test_copies_drop_the_graph_and_continue_alike(stream):
    import copy

    a = _stepped(stream, "MeLON", True)
    twin = copy.deepcopy(a)  # a graph cannot be deep-copied: the copy recomputes the look-ahead once
    assert twin._prev[3] is None and a._prev[3] is not None
    nxt = stream.batches("test")[5]
    a.step(nxt)
    twin.step(nxt)
    assert all(torch.equal(a.rec.params[k], twin.rec.params[k]) for k in a.rec.params)
    a.drop_graph()
    assert a._prev[3] is None and len(a._prev) == 4


def test_rate_log_skips_replays(stream):
    a = _stepped(stream, "Global rate", True, n_steps=3)
    assert len(a.rate_log) == 3
    params, batch, cache, _ = a._prev
    a.look_ahead(params, batch, cache)  # a replay outside step() is not an applied update
    assert len(a.rate_log) == 3


def test_head_and_pairs_per_interaction(stream):
    from rec_lib.online_update import head, pairs_per_interaction

    b = stream.batches("test")[0]
    h = head(b, 3)
    assert len(h) == 3 and len(h.rows) == 3 and torch.equal(h.item_nbrs, b.item_nbrs[:3])
    mf = OnlineRecommender.build("BPR", stream.n_users, stream.n_items, dim=8)
    assert pairs_per_interaction(mf, b) == 3 * 8  # a user row, the item's and the negative's
    ncf = OnlineRecommender.build("NCF", stream.n_users, stream.n_items, dim=8, layers=(8, 4))
    dense = sum(p.numel() for k, p in ncf.params.items() if k in ncf.dense)
    assert pairs_per_interaction(ncf, b) == 3 * 2 * 8 + dense  # GMF and MLP tables, every dense weight


def test_time_per_pair_table_and_rounds(stream):
    from dataclasses import replace

    from rec_lib.online_update import time_per_pair

    s = replace(CHAPTER.make("smoke"), sweep_dims=(2, 4), sweep_batches=(8, 16), sweep_rounds=2)
    table, rounds = time_per_pair(s, stream, n_batches=2)
    assert len(table) == 4 and list(table["n"]) == [8, 16, 8, 16]
    assert (table["pairs"] == table["n"] * table["M"]).all() and table["M"].iloc[2] > table["M"].iloc[0]
    assert table["identical"].all()  # kept and recomputed graph end bitwise equal
    assert (table["max_rel_dev"] < 1e-5).all()  # the straightforward step: float rounding only
    assert (table[["default_s", "melon_s", "recomputed_s", "straightforward_s"]] > 0).all().all()
    assert np.allclose(table["speedup"], table["straightforward_s"] / table["melon_s"])
    assert len(rounds) == 4 * 2 and {"Default", "MeLON", "MeLON (recomputed)", "MeLON (straightforward)", "d", "n",
                                     "round"} <= set(rounds)
    with pytest.raises(ValueError, match="no test batch"):
        time_per_pair(replace(s, sweep_batches=(10**6,)), stream)


def test_sweep_settings_are_validated():
    from rec_lib.config import SettingsError

    with pytest.raises(SettingsError, match="SWEEP_BATCHES cannot exceed BATCH_SIZE"):
        CHAPTER.make("smoke", batch_size=64, sweep_batches=(128,))
    with pytest.raises(SettingsError, match="SWEEP_DIMS"):
        CHAPTER.make("smoke", sweep_dims=(0,))
