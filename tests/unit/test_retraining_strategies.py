"""The retraining strategies of SML's Table 1, the chapter's settings and experiment helpers."""

import numpy as np
import pandas as pd
import pytest
import torch

from rec_lib.config import SettingsError
from rec_lib.models.losses import bce_loss
from rec_lib.retraining import History, Reservoir, previous_items
from rec_lib.retraining.chapter import CHAPTER, PRESETS
from rec_lib.retraining.experiments import (
    benchmark_retraining,
    by_interaction_type,
    filter_reading,
    make_strategy,
    run_comparison,
    sweep_transfer,
    returning_stream,
    row_states,
    timing_table,
)
from rec_lib.retraining.strategies import MFConfig, MFStrategy, SPMF, pretrain_mf
from rec_lib.retraining.transfer import TransferCNN
from rec_lib.utils import seed_everything, set_threads

from tests.unit.retraining_setup import SMALL, small_stream

SMALL = SMALL | dict(reservoir=300, replay=150, gru_hidden=8, gru_max_len=5, caser_epochs=2, caser_pretrain_epochs=2,
                     stream_users=60, stream_items=400, stream_max=40, sweep_filters=(2, 10), sweep_layers=(1, 2))


@pytest.fixture(scope="module")
def stream():
    return small_stream()


@pytest.fixture(scope="module")
def settings():
    return CHAPTER.make("smoke", **SMALL)


def _fixed_loss(strategy, stream, t):
    """The log loss (eq. 13) of the served model on D_t with negatives fixed in advance."""
    u, i = stream.arrays(t)
    rows = torch.arange(stream.bounds[t], stream.bounds[t + 1])
    cands = torch.as_tensor(np.stack([i, np.random.default_rng(0).integers(0, stream.data.n_items, len(i))], 1))
    with torch.no_grad():
        s = strategy.score(torch.tensor(u), rows, cands).float()
    return bce_loss(s[:, 0], s[:, 1:]).item()


@pytest.mark.parametrize("name", ["Full-retrain", "Fine-tune", "SPMF", "GRU4Rec", "Caser", "SML", "SML-FP"])
def test_each_strategy_trains_and_lowers_its_loss(name, stream, settings):
    seeds = seed_everything(0)
    torch.manual_seed(0)
    s = make_strategy(name, stream, settings.__class__(**{**settings.as_dict(), "epochs": 5, "hat_epochs": 3}), seeds)
    s.pretrain(History(stream, 2))
    before = _fixed_loss(s, stream, 3)
    s.update(History(stream, 3))
    after = _fixed_loss(s, stream, 3)
    assert after < before, f"{name}: loss on D_3 {before:.4f} -> {after:.4f}"


def test_make_strategy_rejects_unknown(stream, settings):
    with pytest.raises(ValueError, match="unknown strategy"):
        make_strategy("ALS", stream, settings, seed_everything(0))
    with pytest.raises(NotImplementedError):
        MFStrategy(MFConfig(dim=4), seed_everything(0)).training_data(History(stream, 3))


def test_reservoir_matches_algorithm_r_one_by_one():
    """The vectorised block update equals Algorithm R fed element by element with the same draws."""
    stream_u, stream_i = np.arange(100), np.arange(100) * 10
    res = Reservoir(7, np.random.default_rng(5))
    for block in np.array_split(np.arange(100), 6):
        res.add(stream_u[block], stream_i[block])
    rng, slots, n = np.random.default_rng(5), [], 0
    for block in np.array_split(np.arange(100), 6):
        first_free = max(0, min(7 - len(slots), len(block)))
        slots += list(block[:first_free])
        draws = rng.random(len(block) - first_free)
        for x, u in zip(block[first_free:], draws):
            j = int(u * (x + 1))
            if j < 7:
                slots[j] = x
    assert res.users.tolist() == slots and np.array_equal(res.items, res.users * 10) and res.n_seen == 100
    with pytest.raises(ValueError, match="size"):
        Reservoir(0, np.random.default_rng(0))


def test_reservoir_is_uniform():
    hits = np.zeros(50)
    for seed in range(400):
        r = Reservoir(10, np.random.default_rng(seed))
        r.add(np.arange(30), np.arange(30))
        r.add(np.arange(30, 50), np.arange(30, 50))
        hits[r.users] += 1
    assert len(r) == 10
    assert np.abs(hits / 400 - 10 / 50).max() < 0.08  # each element kept with probability size / n


def test_spmf_replays_what_the_model_ranks_low(stream, settings):
    s = SPMF(settings.mf_config(), seed_everything(0))
    s.pretrain(History(stream, 2))
    p = s.replay_probabilities()
    assert p.shape == (len(s.reservoir),) and p.sum() == pytest.approx(1.0)
    scores = s.model.score_all(torch.as_tensor(s.reservoir.users))
    own = scores[torch.arange(len(p)), torch.as_tensor(s.reservoir.items)]
    rank = (scores >= own[:, None]).sum(1).numpy()
    assert np.all(np.diff(p[np.argsort(rank)]) >= -1e-12)  # higher rank (worse) -> replayed more often
    u, i = s.training_data(History(stream, 3))
    assert len(u) == len(stream.arrays(3)[0]) + min(settings.replay, 300)


def test_settings_presets_and_errors():
    for scale in PRESETS:
        s = CHAPTER.make(scale)
        assert s.protocol().n_periods >= 10 and s.seeds[0] == s.seed
    assert CHAPTER.datasets(CHAPTER.make("paper")) == ["yelp"]
    assert CHAPTER.make("paper", dataset="adressa").protocol().scheme == "dayparts"
    with pytest.raises(SettingsError, match="DATASET"):
        CHAPTER.make("tutorial", dataset="netflix")
    with pytest.raises(SettingsError, match="bad periods"):
        CHAPTER.make("tutorial", init_end=25)
    with pytest.raises(SettingsError, match="FILTERS"):
        CHAPTER.make("tutorial", filters=())
    with pytest.raises(SettingsError, match="STREAM_WEIGHTS"):
        CHAPTER.make("tutorial", stream_weights=(1.5,))
    with pytest.raises(SettingsError, match="SCALE"):
        CHAPTER.make("huge")
    s = CHAPTER.make("tutorial", dim=8, filters=(4,))
    assert s.mf_config().dim == 8 and s.sml_config().filters == (4,) and s.sml_config(fc=None).fc is None
    assert s.seq_config().caser_L == s.caser_l


def test_comparison_tables(stream, settings):
    comp = run_comparison(stream, settings, ["Full-retrain", "Fine-tune", "SML", "SML-S"], [0], keep=["SML"])
    runs = comp.runs()
    assert list(runs["method"]) == ["Full-retrain", "Fine-tune", "SML", "SML-S"]
    per = comp.per_period()
    assert set(per["period"]) == {5, 6, 7} and set(per["role"]) == {"val", "test"}
    sml, sml_s = comp.results[("SML", 0)], comp.results[("SML-S", 0)]
    assert sml.metrics.loc[5].equals(sml_s.metrics.loc[5])  # same model until serving starts
    assert set(sml.seconds) == set(range(3, 8))
    table = timing_table(comp)
    assert list(table.columns) == [0, 1] and "Full-retrain / SML" in table.index
    assert table.loc["Full-retrain / SML", 0] == pytest.approx(table.loc["Full-retrain", 0] / table.loc["SML", 0])
    types = by_interaction_type(comp)
    n_test = sum(len(stream.arrays(t)[0]) for t in stream.test_periods)
    assert types.groupby(["method", "seed"])["n"].sum().eq(n_test).all()
    reading = filter_reading(comp.strategies[("SML", 0)].updater.transfer.nets["item"])
    assert set(reading) >= {"hat_vs_prev", "opposite_sign"}
    assert comp.seconds()["seconds"].ge(0).all()


def test_benchmark_retraining_times_each_kept_strategy(stream, settings):
    methods = ["Full-retrain", "SML", "Fine-tune", "SML-S"]
    comp = run_comparison(stream, settings, methods, [0], keep=methods)
    ft_before = comp.strategies[("Fine-tune", 0)].model.user.weight.detach().clone()
    sml_before = comp.strategies[("SML", 0)].updater.P.clone()
    table = benchmark_retraining(comp, 0, [3, 7], repeats=1)
    assert len(table) == 8 and set(table["method"]) == set(methods) and (table["median_s"] > 0).all()
    assert table.loc[table["method"] == "Full-retrain", "speedup"].eq(1.0).all()
    # copies were timed: the kept states are untouched
    assert torch.equal(comp.strategies[("Fine-tune", 0)].model.user.weight, ft_before)
    assert torch.equal(comp.strategies[("SML", 0)].updater.P, sml_before)


def test_run_comparison_does_not_depend_on_order_or_workers(stream, settings):
    a = run_comparison(stream, settings, ["Fine-tune", "SML"], [0]).runs().set_index("method")
    b = run_comparison(stream, settings, ["SML", "Fine-tune"], [0]).runs().set_index("method")
    pd.testing.assert_frame_equal(a.sort_index(), b.sort_index())


@pytest.mark.slow
def test_run_comparison_in_worker_processes_gives_the_same_numbers(stream, settings):
    # workers run one torch thread each; the sequential run must too (float sums split by threads round differently)
    # (set_threads, not torch.set_num_threads: seed_everything in each job keeps a count set by set_threads)
    threads = torch.get_num_threads()
    set_threads(1)
    try:
        a = run_comparison(stream, settings, ["Fine-tune", "SML"], [0]).runs().set_index("method")
    finally:
        set_threads(threads)
    c = run_comparison(stream, settings, ["Fine-tune", "SML"], [0], workers=2).runs().set_index("method")
    pd.testing.assert_frame_equal(a, c)


def test_filter_reading_by_hand():
    net = TransferCNN(2, filters=(2,), fc=None)
    with torch.no_grad():
        net.convs[0].weight[:, 0, :, 0] = torch.tensor([[1.0, -2.0, 0.0], [-1.0, -4.0, 1.0]])
    r = filter_reading(net)
    assert r["hat_vs_prev"] == pytest.approx(3.0) and r["opposite_sign"] == pytest.approx(0.5)
    assert r["mean_dot"] == pytest.approx(0.5)


def test_sweep_transfer_reuses_the_default(stream, settings):
    comp = run_comparison(stream, settings, ["SML"], [0])
    sweep = sweep_transfer(stream, settings.__class__(**{**settings.as_dict(), "filters": (10,)}), [0], reuse=comp)
    assert list(zip(sweep["sweep"], sweep["value"])) == [("filters", 2), ("filters", 10), ("layers", 1), ("layers", 2)]
    default = comp.runs()["recall@20"].iloc[0]
    assert sweep.loc[sweep["value"].eq(10), "recall@20"].iloc[0] == default


def test_returning_stream_has_no_new_user_after_the_initial_periods(settings):
    s = settings.__class__(**{**settings.as_dict(), "stream_users": 150, "stream_items": 200, "stream_max": 60,
                              "mech_periods": (8, 3, 5, 6)})
    st = returning_stream(s, 0.5, seed=0)
    first_u, _ = st.first_periods()
    assert st.n_periods == 8 and (first_u[st.data.users] < 3).all()
    # each row carries the generator's state q_u(t): the affinity it implies is the generator's own, row by row
    gt = st.data.ground_truth
    orig_items = st.data.item_ids[st.data.items]
    assert gt["row_state"].shape == (len(st.data), 16)
    from rec_lib.data import drifting_stream
    raw = drifting_stream(n_users=150, n_items=200, max_interactions=60, long_term_weight=0.5, seed=0)
    want = dict(zip(zip(raw.users.tolist(), raw.items.tolist()), raw.ground_truth["affinity"].tolist()))
    got = np.einsum("nd,nd->n", gt["row_state"], gt["item_vectors"][orig_items])
    keys = zip(st.data.user_ids[st.data.users].tolist(), orig_items.tolist())
    assert got == pytest.approx([want[k] for k in keys], rel=1e-5, abs=1e-6)
    with pytest.raises(ValueError, match="not rows of the original"):
        row_states(st.data, raw)  # raw has rows the filtered stream dropped


def test_true_state_probe_rewards_a_model_that_serves_the_true_state(settings):
    """A strategy whose rows and items are the generator's own scores near 1; a shuffled one near 0."""
    s = settings.__class__(**{**settings.as_dict(), "stream_users": 150, "stream_items": 200, "stream_max": 60,
                              "mech_periods": (8, 3, 5, 6)})
    st = returning_stream(s, 0.0, seed=0)
    gt, ids = st.data.ground_truth, st.data.item_ids

    class Oracle(MFStrategy):
        def _rows_and_scores(self, users):
            rows = np.arange(*st.rows(self.t + 1).indices(len(st.data)))
            u, first = np.unique(st.data.users[rows], return_index=True)
            q = torch.as_tensor(gt["row_state"][rows[first]], dtype=torch.float64)
            sc = q @ torch.as_tensor(gt["item_vectors"][ids]).double().T + torch.as_tensor(gt["item_bias"][ids])
            assert np.array_equal(u, users.numpy())
            return q, sc if self.sign > 0 else sc[:, torch.randperm(sc.shape[1], generator=torch.Generator().manual_seed(0))]

    for sign, lo, hi in ((1, 0.999, 1.0 + 1e-9), (-1, -0.2, 0.2)):
        o = Oracle(MFConfig(dim=4), seed_everything(0))
        o.sign, o.t = sign, 4  # period 5 is the first tested one (mech_periods)
        o.record_true_state(History(st, 4))
        assert lo <= o.probe[5]["true_spearman"] <= hi
    o.t = st.n_periods - 1  # nothing after the last period: no reading
    o.record_true_state(History(st, st.n_periods - 1))
    assert st.n_periods not in o.probe


def test_mechanism_runs_record_the_true_state_of_every_test_period(settings):
    from rec_lib.retraining.experiments import run_mechanism, true_state_runs

    s = settings.__class__(**{**settings.as_dict(), "stream_users": 120, "stream_items": 150, "stream_max": 40,
                              "mech_periods": (8, 3, 5, 6), "mech_outer_iters": 1, "mech_theta_epochs": 1,
                              "mech_warm_start": 5, "mech_fc": 8, "epochs": 1, "pretrain_epochs": 1})
    mech = run_mechanism(s, [0.0], [0])
    ts = true_state_runs(mech)
    assert set(ts.method) == {"Full-retrain", "Fine-tune", "SML", "SML-N"}
    n_test = len(mech[(0.0, 0)].stream.test_periods)
    assert (ts.periods == n_test).all() and ts.true_spearman.between(-1, 1).all()
