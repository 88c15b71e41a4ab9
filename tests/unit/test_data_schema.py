import numpy as np
import pandas as pd
import pytest

from rec_lib.data import COLUMNS, Interactions


def test_from_raw_reindexes_contiguously_and_sorts(tiny):
    assert list(tiny.df.columns) == list(COLUMNS)
    assert tiny.n_users == 4 and tiny.n_items == 5
    assert tiny.df["timestamp"].is_monotonic_increasing
    assert set(tiny.users) == set(range(4)) and set(tiny.items) == set(range(5))
    # ids follow first appearance in time: "a" first (t=10), then "b" (t=15)
    assert list(tiny.user_ids[:2]) == ["a", "b"]
    assert tiny.df.dtypes["rating"] == np.float32


def test_maps_back_to_raw_ids(tiny):
    raw = pd.DataFrame({"u": tiny.user_ids[tiny.users], "i": tiny.item_ids[tiny.items]})
    assert ("d", "w") in set(map(tuple, raw.to_numpy()))


def test_item_meta_follows_contiguous_ids():
    frame = pd.DataFrame({"user": [1, 2], "item": [20, 10], "timestamp": [1, 2]})
    meta = pd.DataFrame({"title": ["ten", "twenty"]}, index=[10, 20])
    d = Interactions.from_raw(frame, "m", item_meta=meta)
    assert d.item_titles([0, 1]) == ["twenty", "ten"]
    assert d.ratings.tolist() == [1.0, 1.0]  # implicit by default


def test_from_raw_errors():
    with pytest.raises(ValueError, match="lacks the columns"):
        Interactions.from_raw(pd.DataFrame({"user": [1]}), "bad")
    with pytest.raises(ValueError, match="missing user or item"):
        Interactions.from_raw(pd.DataFrame({"user": [1, None], "item": [1, 2]}), "bad")


def test_validate_catches_out_of_range_ids(tiny):
    tiny.df.loc[0, "item"] = 99
    with pytest.raises(ValueError, match="item ids outside"):
        tiny.validate()


def test_subset_keeps_id_space_and_reindexed_drops_unused(tiny):
    part = tiny.subset(tiny.users == 0)
    assert part.n_users == tiny.n_users and len(part) == 4
    small = part.reindexed()
    assert small.n_users == 1 and small.n_items == len(np.unique(part.items))
    assert small.item_ids.tolist() == tiny.item_ids[np.unique(part.items)].tolist()


def test_matrix_and_stats(tiny):
    m = tiny.matrix()
    assert m.shape == (4, 5) and m.sum() == 12
    s = tiny.stats()
    assert s["interactions"] == 12 and s["users"] == 4 and s["items"] == 5
    assert s["density"] == pytest.approx(12 / 20)


def test_item_titles_fallback_to_raw_ids(tiny):
    assert tiny.item_titles([0]) == [str(tiny.item_ids[0])]
