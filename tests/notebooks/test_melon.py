"""What the MeLON chapter's smoke run wrote to its ledger."""

import pytest

STRATEGIES = {"No update", "Default", "eALS", "MWNet", "MetaSGD", "S2Meta", "SML", "MeLON"}
BY_KIND = {"BPR": STRATEGIES, "NCF": STRATEGIES - {"SML"}}  # SML transfers embeddings: BPR-MF only


@pytest.fixture(scope="module")
def led(smoke_run):
    return smoke_run("melon").ledger


def test_table2_has_every_strategy_and_recommender(led):
    t2 = led["tables"]["table2"]
    assert set(t2["recommender"]) == {"BPR", "NCF"}
    for kind in ("BPR", "NCF"):
        assert set(t2[t2["recommender"] == kind]["strategy"]) == BY_KIND[kind]
    runs = led["tables"]["runs"]
    assert runs.groupby(["recommender", "strategy"]).size().min() >= 2  # mean ± std over seeds
    assert runs[["hr@5", "hr@10", "hr@20"]].apply(lambda r: r.is_monotonic_increasing, axis=1).all()
    assert (runs["ndcg@5"] <= runs["hr@5"] + 1e-12).all()


def test_updates_help_and_ablations_ran(led):
    runs = led["tables"]["runs"]
    t3 = led["tables"]["table3"]
    assert list(t3["strategy"]) == ["MeLON_I", "MeLON_P", "MeLON"]
    bpr = runs[runs["recommender"] == "BPR"].groupby("strategy")["hr@5"].mean()
    assert {"MeLON_I", "MeLON_P"} <= set(bpr.index)
    assert led["metrics"]["stream"]["test"] > 0


def test_ranks_and_rank_one_approximation(led):
    ranks = led["tables"]["ranks"]
    for kind in ("BPR", "NCF"):
        r = ranks[ranks["recommender"] == kind].set_index("strategy")["rank"]
        assert r["MeLON"] > 1 and "SML" not in r.index  # SML's transfer has no learning-rate matrix
        for s in ("Default", "eALS", "MWNet", "MetaSGD", "S2Meta", "MeLON_I", "MeLON_P"):
            if s in r.index:
                assert r[s] == 1, s
    gaps = led["tables"]["theorem3"]
    assert (gaps["svd error / sigma_2 - 1"].abs() < 1e-8).all()
    assert (gaps[["interaction_wise_error", "parameter_wise_error"]].min(axis=1) >= gaps["sigma_2"] * (1 - 1e-9)).all()


def test_timings_and_claims(led):
    t4 = led["tables"]["table4"]
    for kind in ("BPR", "NCF"):
        t = t4[t4["recommender"] == kind].set_index("strategy")
        assert t.loc["Default", "x Default"] == pytest.approx(1.0)
        assert (t["median_s"] > 0).all() and set(t.index) == BY_KIND[kind] - {"No update"}
        assert set(led["timings"][f"per_batch_{kind}"]) == set(t.index)
    ids = {c["id"] for c in led["claims"]}
    assert ids == {"melon-best-BPR", "melon-best-NCF", "melon-beats-sml", "ablations-below", "melon-affordable", "lemma1", "lemma2",
                   "melon-rank", "theorem3", "lr-follows-gradient", "melon-both-drifts"}
    verdicts = {c["id"]: c["verdict"] for c in led["claims"]}
    assert verdicts["lemma1"] == verdicts["lemma2"] == verdicts["melon-rank"] == verdicts["theorem3"] == "holds"
