"""What the data chapter's smoke run measured."""

import pytest


def test_data_chapter_ledger(smoke_run, ml100k_available):
    led = smoke_run("data_protocols").ledger
    m = led["metrics"]
    if ml100k_available:
        assert m["ml_stats"]["interactions"] == 100_000 and m["ml_stats"]["users"] == 943
    assert m["hr10_random"] == pytest.approx(0.1, abs=0.02)
    assert {c["id"] for c in led["claims"]} == {"random-hr", "power-law-fit"}
    table = led["tables"]["sampled_vs_full"]
    assert table.loc["1 + 99 sampled", "recall@10"] >= table.loc["full catalogue", "recall@10"]
