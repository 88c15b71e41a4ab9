import numpy as np
import pandas as pd
import pytest

from rec_lib import data
from rec_lib.data import Interactions


def test_to_implicit_threshold(tiny):
    imp = data.to_implicit(tiny, 4, reindex=False)
    assert len(imp) == int((tiny.ratings >= 4).sum())
    assert set(imp.ratings) == {1.0}
    assert len(data.to_implicit(tiny)) == len(tiny)


def test_k_core_iterates_until_stable():
    # user 0: items 0,1,2; user 1: items 0,1; user 2: item 3 only. 2-core drops user 2 and item 3,
    # then item 2 has 1 user -> dropped; user 0 keeps 0,1.
    frame = pd.DataFrame({"user": [0, 0, 0, 1, 1, 2], "item": [0, 1, 2, 0, 1, 3], "timestamp": range(6)})
    d = Interactions.from_raw(frame, "k")
    core = data.k_core(d, 2)
    assert len(core) == 4 and core.n_users == 2 and core.n_items == 2
    assert np.bincount(core.users).min() >= 2 and np.bincount(core.items).min() >= 2
    with pytest.raises(ValueError, match="nothing is left"):
        data.k_core(d, 5)
    with pytest.raises(ValueError, match=">= 1"):
        data.k_core(d, 0)


def test_drop_repeats_and_min_user(tiny):
    frame = pd.DataFrame({"user": [0, 0, 1], "item": [0, 0, 1], "timestamp": [1, 2, 3]})
    d = Interactions.from_raw(frame, "r")
    assert len(data.drop_repeats(d)) == 2
    assert data.drop_repeats(d, keep="last").timestamps.tolist() == [2, 3]
    with pytest.raises(ValueError):
        data.drop_repeats(d, keep="middle")
    assert data.min_user_interactions(tiny, 4).n_users == 1  # only "a" has 4


def test_split_users_partitions_users(tiny):
    parts = data.split_users(tiny, (0.5, 0.25, 0.25), seed=1)
    users = [set(p.users) for p in parts]
    assert sum(len(p) for p in parts) == len(tiny)
    assert not (users[0] & users[1]) and not (users[0] & users[2]) and not (users[1] & users[2])
    assert [len(u) for u in users] == [2, 1, 1]
    with pytest.raises(ValueError, match="sum to 1"):
        data.split_users(tiny, (0.5, 0.6))


def test_split_by_time_is_chronological(tiny):
    tr, va, te = data.split_by_time(tiny, (0.5, 0.25, 0.25))
    assert (len(tr), len(va), len(te)) == (6, 3, 3)
    assert tr.timestamps.max() <= va.timestamps.min() and va.timestamps.max() <= te.timestamps.min()


def test_equal_count_periods(tiny):
    p = data.assign_periods(tiny, 4)
    assert np.bincount(p).tolist() == [3, 3, 3, 3]
    assert (np.diff(p) >= 0).all()
    parts = data.split_periods(tiny, p)
    assert [len(x) for x in parts] == [3, 3, 3, 3]
    with pytest.raises(ValueError):
        data.assign_periods(tiny, 0)
    with pytest.raises(ValueError, match="one id per interaction"):
        data.split_periods(tiny, p[:-1])


def test_calendar_periods_day_parts_and_freq():
    day = 86400
    ts = [0 * 3600, 9 * 3600, 11 * 3600, 18 * 3600, day + 1 * 3600, day + 12 * 3600]
    d = Interactions.from_raw(pd.DataFrame({"user": range(6), "item": range(6), "timestamp": ts}), "c")
    parts = data.calendar_periods(d, day_parts=(0, 10, 17))
    assert parts.tolist() == [0, 0, 1, 2, 3, 4]  # morning, morning, afternoon, evening, next morning, next afternoon
    assert data.calendar_periods(d, freq="1D").tolist() == [0, 0, 0, 0, 1, 1]
    assert data.calendar_periods(d, freq="M").tolist() == [0] * 6
    with pytest.raises(ValueError, match="exactly one"):
        data.calendar_periods(d)
    with pytest.raises(ValueError, match="start at 0"):
        data.calendar_periods(d, day_parts=(5, 10))


def test_split_user_items_halves(tiny):
    X, Y = data.split_user_items(tiny, 0.5, seed=0)
    cx, cy = np.bincount(X.users, minlength=4), np.bincount(Y.users, minlength=4)
    total = np.bincount(tiny.users, minlength=4)
    assert (cx == np.floor(total * 0.5).astype(int)).all() and (cx + cy == total).all()
    Xt, _ = data.split_user_items(tiny, 0.5, by="time")
    first_a = tiny.df[tiny.df.user == 0].timestamp.nsmallest(2).tolist()
    assert sorted(Xt.df[Xt.df.user == 0].timestamp.tolist()) == first_a
    with pytest.raises(ValueError):
        data.split_user_items(tiny, 1.0)
    with pytest.raises(ValueError):
        data.split_user_items(tiny, 0.5, by="size")


def test_user_sequences_and_padding(tiny):
    seqs = data.user_sequences(tiny)
    assert len(seqs) == 4 and seqs.lengths.sum() == 12
    a = seqs.sequence(0)
    expected = tiny.df[tiny.df.user == seqs.users[0]].sort_values("timestamp").item.tolist()
    assert a.tolist() == expected
    padded, lengths = seqs.padded(max_len=2, pad=-1)
    assert padded.shape == (4, 2) and lengths.tolist() == [2, 2, 2, 2]
    assert padded[0].tolist() == expected[-2:]
    padded, lengths = seqs.padded(pad=-1, keep="first")
    assert padded.shape[1] == seqs.lengths.max() and padded[0, : len(a)].tolist() == expected
    assert len(data.user_sequences(tiny, min_length=4)) == 1
