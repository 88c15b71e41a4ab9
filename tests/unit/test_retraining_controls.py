"""Issue 16's additions: cold-start controls, segments, tuning, the transfer's warm start and
the unrolled first-order check, the mechanism stream's pieces."""

import numpy as np
import pytest
import torch

from rec_lib.retraining import History
from rec_lib.retraining.chapter import CHAPTER
from rec_lib.retraining.experiments import (
    cold_start_table,
    filter_shift,
    first_order_table,
    make_strategy,
    run_comparison,
    segment_runs,
    speed_benchmark,
    tune_learning_rates,
)
from rec_lib.retraining.strategies import cold_start_stats
from rec_lib.retraining.transfer import (
    SMLTask,
    SMLTransfer,
    SMLUpdater,
    block_batches,
    identity_warm_start,
    meta_gradients,
    unrolled_meta_gradients,
)
from rec_lib.utils import seed_everything

from tests.unit.retraining_setup import SMALL, small_stream

SMALL = SMALL | dict(lr_grid=(1e-2, 3e-2))


@pytest.fixture(scope="module")
def stream():
    return small_stream()


@pytest.fixture(scope="module")
def settings():
    return CHAPTER.make("smoke", **SMALL)


@pytest.fixture(scope="module")
def comp(stream, settings):
    return run_comparison(stream, settings, ["Popularity", "BiasedMF", "Full-retrain", "SML"], [0],
                          keep=["Full-retrain", "SML"])


def test_cold_start_stats_on_known_rows():
    rows = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    pop = np.array([1.0, 5.0, 3.0])
    scores = torch.tensor([[0.0, 2.0, 1.0]]).repeat(3, 1)
    out = cold_start_stats(rows, scores, pop)
    assert out["n"] == 3 and out["cosine"] == pytest.approx(1.0) and out["spearman_pop"] == pytest.approx(1.0)
    out = cold_start_stats(rows, -scores, pop)
    assert out["spearman_pop"] == pytest.approx(-1.0)
    assert np.isnan(cold_start_stats(None, scores[:0], pop)["cosine"])


def test_popularity_strategy_counts_the_history(stream, settings):
    s = make_strategy("Popularity", stream, settings, seed_everything(0))
    s.update(History(stream, 4))
    counts = np.bincount(stream.arrays_upto(4)[1], minlength=stream.data.n_items)
    assert np.allclose(s.model.counts.numpy(), counts)
    cands = torch.tensor([[0, 1, 2]])
    assert torch.equal(s.score(torch.tensor([0]), torch.tensor([0]), cands), torch.as_tensor(counts[[0, 1, 2]][None]).float())


def test_biased_mf_gives_new_users_the_mean_user(stream, settings):
    s = make_strategy("BiasedMF", stream, settings, seed_everything(0))
    s.pretrain(History(stream, 2))
    first_u, _ = stream.first_periods()
    new = np.flatnonzero(first_u > 2)
    assert len(new) >= 2
    rows, _ = s._rows_and_scores(torch.as_tensor(new[:2]))
    assert torch.allclose(rows[0], rows[1]) and torch.allclose(rows[0], s.model.mean_user()[0])


def test_segments_probe_and_mechanism_pieces(comp, stream):
    seg = segment_runs(comp)
    assert {"returning user", "new user", "all"} <= set(seg["segment"])
    allrow = seg[seg["segment"] == "all"].set_index("method")["recall@20"]
    runs = comp.runs().set_index("method")["recall@20"]
    assert np.allclose(allrow.reindex(runs.index), runs)
    cold = cold_start_table(comp)
    assert set(cold["method"]) == {"BiasedMF", "Full-retrain", "SML"}
    assert cold.loc[cold.method == "BiasedMF", "cosine"].iloc[0] == pytest.approx(1.0)
    assert set(comp.results[("SML", 0)].probe) <= set(stream.eval_periods)
    upd = comp.strategies[("SML", 0)].updater
    shift = filter_shift(upd)
    assert list(shift["group"]) == ["user", "item"] and np.isfinite(shift["log shift"]).all()
    fo = first_order_table(upd, stream, 0, (1e-2,), repeats=1, batch_size=64)
    assert fo["steps"].iloc[0] >= 1 and -1 <= fo["cosine"].iloc[0] <= 1


def test_speed_benchmark_rows(comp, stream):
    sp = speed_benchmark(comp, 0, [3, 7], repeats=1, full_epochs=1)
    assert list(sp["period"]) == [3, 7] and (sp["ratio"] > 0).all()


def test_speed_benchmark_warmup_rounds_are_untimed(comp, monkeypatch):
    calls = []
    real_update = type(comp.strategies[("SML", 0)]).update

    def counting(self, history):
        calls.append(type(self).__name__)
        return real_update(self, history)

    monkeypatch.setattr(type(comp.strategies[("SML", 0)]), "update", counting)
    sp = speed_benchmark(comp, 0, [3], repeats=2, full_epochs=1, warmup=1)
    assert list(sp["round"]) == [0, 1]  # the warm-up round is run, not reported
    assert calls.count(type(comp.strategies[("SML", 0)]).__name__) == 3
    with pytest.raises(ValueError, match="warmup >= 0"):
        speed_benchmark(comp, 0, [3], warmup=-1)


def test_tuning_picks_one_rate_per_method(stream, settings):
    tun = tune_learning_rates(stream, settings, ["Fine-tune"], (1e-2, 3e-2), 0)
    assert len(tun) == 2 and tun["chosen"].sum() == 1
    best = tun.loc[tun["recall@20"].idxmax(), "lr"]
    assert tun.loc[tun["chosen"], "lr"].iloc[0] == best


def test_identity_warm_start_learns_to_return_w_hat():
    torch.manual_seed(0)
    tr = SMLTransfer({"user": 4}, (3,), 16)
    w = torch.randn(50, 4)
    losses = identity_warm_start(tr, {"user": w}, seed_everything(0), steps=150, lr=1e-2, batch_size=50)
    assert losses[-1] < 0.2 * losses[0]
    with torch.no_grad():
        err = (tr("user", w, w) - w).norm() / w.norm()
    assert err < 0.5


def test_updater_keeps_initial_filters_and_warm_start_is_optional(stream):
    P0, Q0 = torch.randn(stream.data.n_users, 4), torch.randn(stream.data.n_items, 4)
    a = SMLUpdater(P0, Q0, stream.seen, seed_everything(0), filters=(3,), fc=8)
    b = SMLUpdater(P0, Q0, stream.seen, seed_everything(0), filters=(3,), fc=8, warm_start=5)
    assert a.warm_losses == [] and len(b.warm_losses) == 5
    assert torch.equal(a.initial_filters["user"], a.transfer.nets["user"].first_filters)


def test_unrolled_one_plain_step_agrees_with_first_order_at_small_rates(stream):
    torch.manual_seed(0)
    tr = SMLTransfer({"user": 4, "item": 4}, (3,), 8)
    task = SMLTask({"user": 0.1 * torch.randn(stream.data.n_users, 4), "item": 0.1 * torch.randn(stream.data.n_items, 4)})
    g = seed_everything(0)
    b_t = list(block_batches(*stream.arrays(3), stream.seen, g, batch_size=64))
    b_n = next(block_batches(*stream.arrays(4), stream.seen, g, batch_size=64))
    ex_small, fo_small = unrolled_meta_gradients(tr, task, b_t, b_n, lr=1e-6)
    assert torch.nn.functional.cosine_similarity(ex_small, fo_small, dim=0) > 0.999
    ex_big, fo_big = unrolled_meta_gradients(tr, task, b_t, b_n, lr=0.5)
    assert not torch.allclose(ex_big, fo_big)
    with pytest.raises(ValueError):
        unrolled_meta_gradients(tr, task, [], b_n)
    meta_gradients(tr, task, b_t[0], b_n)  # the one-step version still works


def test_settings_reject_bad_new_knobs():
    from rec_lib.config import SettingsError

    for bad in (dict(lr_grid=()), dict(lr_grid=(0.0,)), dict(stream_max=1000, stream_items=400),
                dict(mech_outer_iters=0), dict(bench_epochs=0)):
        with pytest.raises(SettingsError):
            CHAPTER.make("smoke", **bad)


def test_synthetic_stream_of_the_committed_chapter(settings):
    from rec_lib.retraining.experiments import synthetic_stream

    st = synthetic_stream(settings.__class__(**{**settings.as_dict(), "stream_users": 60, "stream_items": 400}), 0.5)
    assert st.n_periods == 8 and st.data.ground_truth["params"]["long_term_weight"] == 0.5
