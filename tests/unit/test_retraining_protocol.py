"""The period protocol of the retraining chapter: periods, the no-leakage rule, evaluation."""

import numpy as np
import pandas as pd
import pytest
import torch

from rec_lib import data
from rec_lib.retraining import (
    History,
    LeakageError,
    PeriodProtocol,
    interaction_types,
    make_stream,
    previous_items,
    run_strategy,
)

from tests.unit.retraining_setup import small_stream


@pytest.fixture(scope="module")
def stream():
    return small_stream()


def test_make_stream_cuts_equal_count_periods(stream):
    assert stream.n_periods == 8
    sizes = np.diff(stream.bounds)
    assert sizes.sum() == len(stream.data) and sizes.max() - sizes.min() <= 1
    assert np.all(np.diff(stream.period) >= 0)
    u, i = stream.arrays(2)
    assert len(u) == sizes[2] and np.all(stream.period[stream.rows(2)] == 2)
    summary = stream.summary()
    assert list(summary["role"]) == ["init"] * 3 + ["train"] * 2 + ["val"] + ["test"] * 2
    assert summary.loc[0, "new users"] == 1.0
    assert stream.eval_periods == [5, 6, 7] and stream.test_periods == [6, 7]


def test_make_stream_dayparts_and_filters():
    # 3 days x 3 day parts: interactions at 05:00, 12:00 and 20:00 of each day (UTC)
    hours = np.tile([5, 12, 20], 3) + np.repeat([0, 24, 48], 3)
    frame = pd.DataFrame({"user": np.arange(9) % 3, "item": np.arange(9) % 4, "timestamp": 1_600_000_000 // 86400 * 86400 + hours * 3600})
    inter = data.Interactions.from_raw(frame, name="toy")
    st = make_stream(inter, PeriodProtocol("dayparts", 9, init_end=2, val_start=6, test_start=7))
    assert st.n_periods == 9 and np.array_equal(np.diff(st.bounds), np.ones(9))
    with pytest.raises(ValueError, match="init_end"):
        make_stream(inter, PeriodProtocol("dayparts", 9, init_end=2, val_start=6, test_start=12))
    with pytest.raises(ValueError, match="scheme"):
        make_stream(inter, PeriodProtocol("weekly", 9, 2, 6, 7))
    kept = make_stream(data.drifting_stream(n_users=60, n_items=90, dim=4, max_interactions=40, seed=1),
                       PeriodProtocol("count", 8, 3, 5, 6, min_user=10, min_item=5))
    assert np.bincount(kept.data.users).min() >= 10 and np.bincount(kept.data.items).min() >= 5


def test_history_refuses_the_future_and_logs_reads(stream):
    log = []
    h = History(stream, 4, log)
    u, i = h.upto()
    assert len(u) == stream.bounds[5]
    assert np.array_equal(h.rows(4), np.arange(stream.bounds[4], stream.bounds[5]))
    assert len(h.interactions()) == stream.bounds[5]
    with pytest.raises(LeakageError, match="period 5"):
        h.period(5)
    with pytest.raises(LeakageError):
        h.upto(6)
    assert ("read", 4) in log and ("read", 5) not in log
    # training negatives are drawn outside the pairs seen so far, not outside the future ones
    later_u, later_i = stream.arrays(7)
    assert not h.seen.contains(later_u, later_i).all()
    assert h.seen.contains(u, i).all()


def test_candidates_are_shared_and_never_positives(stream):
    c1, c2 = stream.candidates(6, seed=3, n_neg=20), stream.candidates(6, seed=3, n_neg=20)
    u, i = stream.arrays(6)
    assert torch.equal(c1, c2) and c1.shape == (len(u), 21)
    assert np.array_equal(c1[:, 0].numpy(), i)
    assert not stream.seen.contains(u[:, None], c1[:, 1:].numpy()).any()
    assert not torch.equal(stream.candidates(6, seed=4, n_neg=20), c1)
    import pickle
    assert "_cand_cache" not in pickle.loads(pickle.dumps(stream)).__dict__


def test_previous_items_by_hand(tiny):
    # tiny's rows in time order (user: item): a:x, b:x, a:y, c:z, a:z, b:y, d:w, c:v, b:z, d:x, a:w, c:x
    prev = previous_items(tiny, 2, pad=-1)
    names = {k: v for v, k in enumerate(tiny.item_ids)}
    users = [tiny.user_ids[u] for u in tiny.users]
    a_rows = [r for r, u in enumerate(users) if u == "a"]
    assert prev[a_rows[0]].tolist() == [-1, -1]
    assert prev[a_rows[1]].tolist() == [-1, names["x"]]
    assert prev[a_rows[3]].tolist() == [names["y"], names["z"]]  # oldest first, most recent last
    with pytest.raises(ValueError, match="L must be"):
        previous_items(tiny, 0, pad=-1)


def test_previous_items_only_look_back(stream):
    prev = previous_items(stream.data, 3, pad=stream.data.n_items)
    order = np.lexsort((np.arange(len(stream.data)), stream.data.users))
    pos_in_user = np.empty(len(order), int)
    starts = np.r_[0, np.flatnonzero(np.diff(stream.data.users[order])) + 1]
    pos_in_user[order] = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    # the number of real (non-pad) entries equals min(3, earlier rows of the same user)
    assert np.array_equal((prev != stream.data.n_items).sum(1), np.minimum(pos_in_user, 3))


def test_interaction_types(stream):
    kinds = interaction_types(stream, 6)
    first_u, first_i = stream.first_periods()
    u, i = stream.arrays(6)
    assert len(kinds) == len(u)
    assert np.array_equal(kinds == "NU-NI", (first_u[u] == 6) & (first_i[i] == 6))
    assert np.array_equal(np.char.startswith(kinds.astype(str), "OU"), first_u[u] < 6)


class Recorder:
    """A strategy that scores by popularity so far and records what it saw."""

    name = "recorder"

    def __init__(self, peek=False):
        self.peek, self.counts = peek, None

    def pretrain(self, history):
        self.counts = np.bincount(history.upto()[1], minlength=history.n_items).astype(float)

    def update(self, history):
        if self.peek:
            history.period(history.t + 1)
        self.counts += np.bincount(history.period(history.t)[1], minlength=history.n_items)

    def score(self, users, rows, cands):
        return torch.as_tensor(self.counts)[cands]


def test_run_strategy_tests_each_period_before_training_on_it(stream):
    log = []
    res = run_strategy(Recorder(), stream, seed=0, n_neg=20, log=log)
    assert list(res.ranks) == [5, 6, 7] and list(res.metrics.index) == [5, 6, 7]
    for t in res.ranks:
        test_at = log.index(("test", t))
        reads = [k for k, e in enumerate(log) if e == ("read", t)]
        assert reads and min(reads) > test_at  # D_t is tested before any read of D_t
        assert log.index(("update", t)) > test_at
    assert log[0] == ("pretrain", 2) and set(res.seconds) == set(range(3, 8))
    avg = res.average()
    w = res.metrics["interactions"]
    assert avg["recall@10"] == pytest.approx((res.metrics["recall@10"] * w).sum() / w.sum())
    assert res.ranks[6].max() <= 21 and res.ranks[6].min() >= 1


def test_run_strategy_stops_a_strategy_that_peeks(stream):
    with pytest.raises(LeakageError, match="has not arrived"):
        run_strategy(Recorder(peek=True), stream, seed=0, n_neg=20)


def test_run_strategy_resumes(stream):
    s = Recorder()
    head = run_strategy(s, stream, seed=0, n_neg=20, stop=5)
    tail = run_strategy(s, stream, seed=0, n_neg=20, start=5)
    full = run_strategy(Recorder(), stream, seed=0, n_neg=20)
    assert head.ranks == {} and pd.DataFrame.equals(tail.metrics, full.metrics)
