"""compare_ledgers: what a rerun must reproduce (verdicts exactly, numbers within a tolerance, timings never)."""

from __future__ import annotations

import copy

import pandas as pd

from rec_lib import evidence as ev
from rec_lib.ledger import Ledger, _jsonable, compare_ledgers


def _ledger() -> dict:
    led = Ledger("demo", {"scale": "smoke", "seed": 0})
    led.log_metric("recall@20", 0.2345)
    led.log_metric("wall_s", 12.0)
    led.log_table("table1", pd.DataFrame({"recall": [0.1, 0.2], "time (s)": [1.0, 2.0]}, index=["A", "B"]))
    led.add_claims([
        ev.superiority("a-beats-b", "A beats B", "", [0.3, 0.31, 0.32], [0.2, 0.21, 0.2], floor=0.01),
        ev.ratio("speed", "A is faster", "", [1.0, 1.1], [10.0, 12.0], floor=5),
    ])
    return _jsonable(led.to_dict())


def test_identical_ledgers_agree_whatever_their_timings():
    a = _ledger()
    b = copy.deepcopy(a)
    b["metrics"]["wall_s"] = 99.0
    b["timings"]["wall_s"] = 50.0
    b["tables"]["table1"]["data"][0][1] = 7.0  # the time column
    b["claims"][1]["verdict"] = "does not hold"  # a timing claim
    b["numerics"] = {"ATEN_CPU_CAPABILITY": "default"}
    assert compare_ledgers(a, b) == []


def test_numbers_and_verdicts_that_moved_are_named():
    a = _ledger()
    b = copy.deepcopy(a)
    b["metrics"]["recall@20"] = 0.2346
    b["tables"]["table1"]["data"][1][0] = 0.25
    b["claims"][0]["verdict"] = "inconclusive"
    diffs = compare_ledgers(a, b)
    assert any("metrics.recall@20" in d for d in diffs)
    assert any("table1" in d and "'recall'" in d for d in diffs)
    assert any("verdict 'holds' vs 'inconclusive'" in d for d in diffs)
    assert compare_ledgers(a, b | {"claims": a["claims"]}, atol=0.1) == []


def test_missing_claims_and_tables_are_differences():
    a = _ledger()
    b = copy.deepcopy(a)
    b["claims"] = b["claims"][:1]
    del b["tables"]["table1"]
    diffs = compare_ledgers(a, b)
    assert any("claims.speed: present in only one" in d for d in diffs)
    assert any("table1: present in only one" in d for d in diffs)


def test_typed_claims_marked_timing_are_compared_on_presence_only():
    """A trend or superiority read from wall-clock seconds (timing=True) may flip between runs."""
    led = Ledger("demo", {"scale": "smoke", "seed": 0})
    led.add_claims([ev.trend("flat-retrain", "retraining stays flat", "", [1, 2, 3, 4], [1.0, 1.01, 0.99, 1.0],
                             expect="flat", margin=0.05, timing=True),
                    ev.superiority("a-beats-b", "A beats B", "", [0.3, 0.31, 0.32], [0.2, 0.21, 0.2], floor=0.01)])
    a = _jsonable(led.to_dict())
    assert a["claims"][0]["timing"] is True and a["claims"][1]["timing"] is False
    b = copy.deepcopy(a)
    b["claims"][0]["verdict"], b["claims"][0]["effect"] = "does not hold", 0.4
    assert compare_ledgers(a, b) == []
    b["claims"][1]["effect"] += 0.01
    diffs = compare_ledgers(a, b)
    assert len(diffs) == 1 and diffs[0].startswith("claims.a-beats-b.effect")
