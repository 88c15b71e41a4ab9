"""compare_ledgers: what a rerun must reproduce (verdicts exactly, numbers within a tolerance, timings never)."""

from __future__ import annotations

import copy

import pandas as pd

from rec_lib import evidence as ev
from rec_lib.ledger import Ledger, _jsonable, claim_resolution, compare_across_machines, compare_ledgers


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


def test_claim_resolution_is_the_largest_of_display_floor_and_half_interval():
    claim = {"kind": "superiority", "floor": 0.005, "margin": None, "ci": [0.01, 0.05]}
    assert claim_resolution(claim) == 0.02
    assert claim_resolution(claim | {"ci": [0.01, 0.012]}) == 0.005
    assert claim_resolution(claim | {"ci": [None, None], "floor": None}) == 5e-4
    assert claim_resolution({"kind": "check", "floor": 4.0, "ci": [None, None]}) == 5e-4


def test_across_machines_requires_verdicts_and_claim_numbers_at_their_resolution():
    a = _ledger()
    b = copy.deepcopy(a)
    claim = b["claims"][0]
    res = claim_resolution(claim)
    claim["effect"] += 0.9 * res
    claim["replicates"] = [r + 0.9 * res for r in claim["replicates"]]
    claim["ci"] = [claim["ci"][0] + 3 * res, claim["ci"][1]]  # endpoints follow from the replicates: not compared
    assert compare_across_machines(a, b).failures == []
    claim["replicates"][0] += 0.2 * res
    assert any("claims.a-beats-b.(effect, replicates)" in f for f in compare_across_machines(a, b).failures)
    b = copy.deepcopy(a)
    b["claims"][0]["verdict"] = "inconclusive"
    b["metrics"]["recall@20"] += 1e-3
    fails = compare_across_machines(a, b).failures
    assert any("verdict" in f for f in fails) and any("metrics.recall@20" in f for f in fails)


def test_across_machines_reports_table_cells_that_moved_and_fails_on_structure():
    a = _ledger()
    a["tables"]["shown"] = _jsonable(pd.DataFrame({"hr": ["0.372 ± 0.021"], "method": ["SML"]}))
    b = copy.deepcopy(a)
    b["tables"]["table1"]["data"][1][0] = 0.25
    b["tables"]["shown"]["data"][0][0] = "0.371 ± 0.020"
    found = compare_across_machines(a, b)
    assert found.failures == [] and found.cells == 3
    assert len(found.drift) == 2 and "2 of 3 table cells moved" in found.summary()
    assert "more than 0.1" in compare_across_machines(a, b, atol=0.1).summary()
    b["tables"]["shown"]["data"][0][1] = "MeLON"
    b["tables"]["table1"]["index"] = ["A", "C"]
    fails = compare_across_machines(a, b).failures
    assert any("'method'" in f for f in fails) and any("rows or columns differ" in f for f in fails)


def test_nan_and_infinity_on_both_sides_are_no_difference():
    a = _ledger()
    a["metrics"]["empty_mean"], a["metrics"]["ratio"] = float("nan"), float("inf")
    b = copy.deepcopy(a)
    assert compare_ledgers(a, b) == []
    b["metrics"]["empty_mean"] = 0.5
    assert [d for d in compare_ledgers(a, b) if "empty_mean" in d]
