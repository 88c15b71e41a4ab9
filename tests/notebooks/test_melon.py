"""What the MeLON chapter's smoke run wrote to its ledger."""

import pytest

STRATEGIES = {"No update", "Default", "eALS", "MWNet", "MetaSGD", "S2Meta", "SML", "MeLON",
              "Default at MeLON's rate"}
BY_KIND = {"BPR": STRATEGIES | {"MeLON_I", "MeLON_P", "MeLON-code", "Global rate"},
           "NCF": STRATEGIES - {"SML"},  # SML transfers embeddings: BPR-MF only
           "BiasedBPR": {"No update", "Default", "MeLON", "Default at MeLON's rate"},
           "none": {"Popularity"}}


@pytest.fixture(scope="module")
def led(smoke_run):
    return smoke_run("melon").ledger


def test_table2_has_every_strategy_recommender_and_control(led):
    t2 = led["tables"]["table2"]
    assert set(t2["recommender"]) == set(BY_KIND)
    for kind, names in BY_KIND.items():
        assert set(t2[t2["recommender"] == kind]["strategy"]) == names, kind
    runs = led["tables"]["runs"]
    assert runs.groupby(["recommender", "strategy"]).size().min() >= 2  # paired over seeds
    assert runs[["hr@5", "hr@10"]].apply(lambda r: r.is_monotonic_increasing, axis=1).all()
    assert (runs["ndcg@5"] <= runs["hr@5"] + 1e-12).all()


def test_segments_meta_training_and_drift(led):
    seg = led["tables"]["table2_segments"]
    assert {"returning user", "new user", "all"} <= set(seg["segment"])
    assert "Popularity" in set(seg["strategy"])
    sel = led["tables"]["warmup_selection"]
    assert any(p.startswith("passes ") for p in sel["parameter"])  # passes chosen on the warm-up
    rates = led["tables"]["drift_rates"]
    assert set(rates["user_type"]) == {"fast", "stable"} and set(rates["stream"]) == {"planted drift",
                                                                                     "every user alike"}
    dec = led["tables"]["drift_decomposition"]
    assert ((dec["row"] + dec["column"] + dec["interaction"]) - 1).abs().max() < 1e-9


def test_timings_and_claims(led):
    t4 = led["tables"]["table4"]
    for kind in ("BPR", "NCF"):
        t = t4[t4["recommender"] == kind].set_index("strategy")
        assert t.loc["Default", "x Default"] == pytest.approx(1.0)
        assert (t["median_s"] > 0).all()
    claims = {c["id"]: c for c in led["claims"]}
    checks = {i for i, c in claims.items() if c["kind"] == "check"}
    assert {"lemma1", "lemma2", "theorem3", "melon-rank", "rates-in-range", "melon-kept-graph-identical"} <= checks
    for i in ("lemma1", "lemma2", "theorem3", "rates-in-range", "melon-kept-graph-identical"):
        assert claims[i]["verdict"] == "passes", i
    sweep = led["tables"]["table4_sweep"]  # the time-vs-pairs sweep: one row per (d, n), pairs = n M
    assert len(sweep) == 4 and (sweep["pairs"] == sweep["n"] * sweep["M"]).all() and sweep["identical"].all()
    assert claims["melon-time-budget"]["kind"] == "ratio" and claims["melon-time-pairs"]["kind"] == "trend"
    assert claims["melon-time-pairs"]["n"] == len(sweep)
    roles = {c["role"] for c in claims.values()}
    assert {"headline", "mechanism", "control", "check"} <= roles
    for i in ("melon-beats-default-BPR", "melon-best-NCF", "drift-fast-user-rates", "control-alike-halves",
              "control-default-at-melon-rate-BPR", "control-global-rate"):
        assert i in claims and claims[i]["n"] >= 2, i
    assert led["timings"]["wall_s"] > 0
