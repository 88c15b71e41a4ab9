"""What the SML chapter's smoke run measured and wrote to its ledger."""

import pytest

from rec_lib.retraining.chapter import ABLATIONS, METHODS, MF_BASELINES

CLAIMS = {"sml-vs-full", "sml-vs-finetune", "sml-vs-spmf", "sml-vs-caser", "sml-vs-pop", "sml-vs-biasedmf",
          "sml-vs-pop-new", "sml-vs-biasedmf-new", "gains-new-users", "cold-rows-alike", "cold-rows-popular",
          "smls-vs-finetune", "sml-n-worse", "sml-fp-worse", "sml-fc-worse", "sml-cnn-worse", "sml-s-worse",
          "time-flat", "speedup-grows", "speedup", "mech-sml-ge-best-drift", "mech-sml-ge-best-lasting",
          "true-state-ge-best-drift", "true-state-ge-best-lasting",
          "regime-long", "regime-short", "smln-gap-drift", "filters-drift", "smln-lasting", "no-leakage",
          "returning-only", "first-order"}


@pytest.fixture(scope="module")
def ledger(smoke_run):
    return smoke_run("sml").ledger


def test_every_strategy_is_in_table_1_with_segments(ledger):
    table = ledger["tables"]["table1"].set_index("method")
    assert set(table.index) == set(METHODS) | {"SML-S"}
    assert {"returning users recall@20", "new users recall@20"} <= set(table.columns)
    runs = ledger["tables"]["table1_runs"]
    assert (runs["recall@5"] <= runs["recall@10"]).all() and (runs["recall@10"] <= runs["recall@20"]).all()
    seg = ledger["tables"]["segments"]
    assert {"returning user", "new user", "all"} <= set(seg["segment"])
    cold = ledger["tables"]["cold_start"]
    assert {"SML", "Full-retrain", "BiasedMF"} <= set(cold["method"])
    assert set(ledger["metrics"]["tuned_lr"]) <= set(MF_BASELINES) and ledger["metrics"]["tuned_lr"]


def test_protocol_and_checks(ledger):
    periods = ledger["tables"]["periods"]
    assert list(periods["role"].unique()) == ["init", "train", "val", "test"]
    assert ledger["metrics"]["no_leakage"] is True
    first = ledger["tables"]["first_order"]
    assert first["cosine"].between(-1, 1).all() and (first["relative gap"] >= 0).all()


def test_timings_ablations_sweeps_and_mechanism(ledger):
    speed = ledger["tables"]["speed"]
    assert speed["period"].nunique() == 3 and (speed["full_s"] > 0).all() and (speed["sml_s"] > 0).all()
    assert set(ledger["tables"]["ablation"]["method"]) == {"SML", *ABLATIONS}
    mech = ledger["tables"]["mechanism"]
    assert mech.groupby("w")["method"].nunique().eq(4).all() and mech["seed"].nunique() >= 2
    assert set(ledger["tables"]["filter_shift"]["group"]) == {"user", "item"}
    ts = ledger["tables"]["true_state"]  # every mechanism run read against the generator's state
    assert len(ts) == len(mech) and ts["true_spearman"].between(-1, 1).all()


def test_claims(ledger):
    claims = ledger["claims"]
    assert {c["id"] for c in claims} == CLAIMS
    assert all(c["section"].startswith("sml-") for c in claims)
    assert {"headline", "mechanism", "control", "check"} <= {c["role"] for c in claims}
