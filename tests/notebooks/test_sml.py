"""What the SML chapter's smoke run measured and wrote to its ledger."""

import pytest

from rec_lib.retraining.chapter import ABLATIONS, METHODS

CLAIMS = {"sml-vs-finetune", "sml-vs-full", "sml-vs-caser", "smls-vs-finetune", "smln-worse", "time-flat", "speedup",
          "gains-new-users", "regime-long", "regime-short", "sml-both-regimes", "first-order"}


@pytest.fixture(scope="module")
def ledger(smoke_run):
    return smoke_run("sml").ledger


def test_every_strategy_is_in_table_1(ledger):
    table = ledger["tables"]["table1"].set_index("method")
    assert set(table.index) == set(METHODS) | {"SML-S"}
    means = ledger["metrics"]["table1_mean_recall20"]
    assert all(0.0 <= v <= 1.0 for v in means.values())
    runs = ledger["tables"]["table1_runs"]
    assert (runs["recall@5"] <= runs["recall@10"]).all() and (runs["recall@10"] <= runs["recall@20"]).all()


def test_protocol_and_checks(ledger):
    periods = ledger["tables"]["periods"]
    assert list(periods["role"].unique()) == ["init", "train", "val", "test"]
    assert ledger["metrics"]["no_leakage"] is True
    per = ledger["tables"]["per_period"]
    assert set(per["period"]) == set(periods.loc[periods["role"].isin(["val", "test"]), "period"])
    first = ledger["tables"]["first_order"]
    assert first["cosine"].between(-1, 1).all() and (first["relative gap"] >= 0).all()


def test_timings_ablations_sweeps_and_regimes(ledger):
    t2 = ledger["tables"]["table2_seconds"].set_index("method")
    assert list(t2.index) == ["Full-retrain", "SML", "Fine-tune", "SML-S", "Full-retrain / SML"]
    bench = ledger["tables"]["benchmark"]
    assert set(bench["method"]) == {"Full-retrain", "SML", "Fine-tune", "SML-S"} and (bench["median_s"] > 0).all()
    assert ledger["metrics"]["speedup_full_over_sml"] > 0
    assert set(ledger["tables"]["ablation"]["method"]) == {"SML", *ABLATIONS}
    sweep = ledger["tables"]["sweep"]
    assert set(sweep["sweep"]) == {"filters", "layers"}
    regimes = ledger["tables"]["regimes"]
    assert regimes.groupby("long_term_weight")["method"].nunique().eq(4).all()
    types = ledger["tables"]["interaction_types"]
    assert set(types["type"]) <= {"OU-OI", "OU-NI", "NU-OI", "NU-NI"}


def test_claims(ledger):
    assert {c["id"] for c in ledger["claims"]} == CLAIMS
    assert all(c["section"].startswith("sml-") for c in ledger["claims"])
