"""What the data chapter's smoke run measured."""

import pytest

from rec_lib import evidence

CLAIMS = {"new-users-majority", "sampled-reorders", "sml-protocol-reorders", "mean-user-new",
          "stream-oracle", "stream-long-term", "stream-mean"}
CHECKS = {"random-hr", "hand-metrics", "negatives-unseen", "sampled-not-above-full", "sampled-hit-hypergeometric",
          "padding-small", "power-law-fit", "drift-ou", "spectrum-planted"}


def test_data_chapter_ledger(smoke_run, ml100k_available):
    led = smoke_run("data_protocols").ledger
    m = led["metrics"]
    if ml100k_available:
        assert m["ml_stats"]["interactions"] == 100_000 and m["ml_stats"]["users"] == 943
    assert m["hr10_random"] == pytest.approx(0.1, abs=0.02)
    claims = {c["id"]: c for c in led["claims"]}
    assert set(claims) == CLAIMS | CHECKS
    for cid in CHECKS:
        assert claims[cid]["kind"] == "check" and claims[cid]["verdict"] in ("passes", "fails")
    # the identities and sanity checks must pass at any scale
    for cid in ("random-hr", "hand-metrics", "negatives-unseen", "sampled-not-above-full", "padding-small"):
        assert claims[cid]["verdict"] == "passes", claims[cid]
    roles = {claims[c]["role"] for c in CLAIMS}
    assert {"headline", "mechanism", "control"} <= roles
    for cid in CLAIMS:
        c = claims[cid]
        assert c["n"] >= 2 and (c["floor"] or 0) > 0
        assert evidence.recompute_verdict(c) == c["verdict"]
        if c["verdict"] != "holds":
            assert c["cause"] in evidence.CAUSES and c["why"]
    table = led["tables"]["sampled_vs_full"]
    # with the same exclusions, sampled HR@10 is never below the full-catalogue HR@10
    for method in table.columns:
        assert table.loc["1 + 99", method] >= table.loc["full", method]
    padding = led["tables"]["padding"]
    assert (padding["share"] <= 1).all() and "repeats" in padding.columns
    shares = led["tables"]["segment_shares"]
    assert shares.loc[shares["user_segment"] == "all", "share"].iloc[0] == pytest.approx(1.0)
