"""What the two-time-scale chapter's smoke run wrote to its ledger."""

import math

import pytest
from scipy.special import zeta

from rec_lib.two_time_scale import theory
from rec_lib.two_time_scale.experiments import METHODS


@pytest.fixture(scope="module")
def led(smoke_run):
    return smoke_run("two_time_scale").ledger


def test_simulation_numbers_follow_the_theory(led):
    sim = led["metrics"]["simulation"]
    assert sim["Q"] == pytest.approx(400.0)  # (B_x + c B_phi)^2 / c^2 with B_x = 1, c = 0.1, B_phi = 1/c
    assert sim["t** (exact)"] == theory.optimal_threshold(sim["Q"], sim["Var_m"])
    assert sim["t** (eq. 7)"] in (sim["t** (exact)"], sim["t** (exact)"] - 1)
    sweep = led["tables"]["simulation_sweep"].set_index("t_star")
    a = led["settings"]["sim_alpha"]
    t = 5
    expect = zeta(a + 1, t + 1) / zeta(a, 1) * sim["Q"] + (1 - zeta(a, t + 1) / zeta(a, 1)) * sim["Var_m"]
    assert sweep.loc[t, "beta"] == pytest.approx(expect)
    assert (sweep["risk_shared"] <= sweep["bound_shared"]).all()
    assert math.isclose(sweep.loc[0, "share_active"], 1.0)
    thr = led["tables"]["simulation_thresholds"]
    assert len(thr) == led["settings"]["sim_seeds"]
    assert (thr["t_hat (calibrated)"] < thr["t** (exact)"]).all()  # the measured constant is below the worst case


def test_tables_cover_every_method_and_dataset(led):
    runs = led["tables"]["runs"]
    assert set(runs["method"]) == set(METHODS)
    assert set(runs["dataset"]) == {led["settings"]["dataset"], "synthetic", "synthetic-control"}
    assert runs["mrr"].between(0, 1).all() and runs["mrr_full"].between(0, 1).all()
    assert {"T = 0", "T > t*", "all"} <= set(led["tables"]["segments"]["segment"])
    assert {"T_low", "mrr", "method"} <= set(led["tables"]["buckets"].columns)
    assert led["metrics"]["padded_share"] == 0


def test_claims_are_typed_with_mechanisms_and_controls(led):
    claims = {c["id"]: c for c in led["claims"]}
    label = led["settings"]["dataset"]
    assert {"sim-threshold", "sim-threshold-calibrated", "sim-gamma", "sim-two-steps", "sim-bound"} <= set(claims)
    for base in ("ccf", "sumpooling", "gru4rec", "2ts-singlestage", "2-gru"):
        assert f"2ts-vs-{base}-{label}" in claims
    assert {f"plus-{label}", f"speed-{label}", f"drift-{label}", f"split-active-{label}"} <= set(claims)
    roles = {c["role"] for c in claims.values()}
    assert {"headline", "mechanism", "control"} <= roles
    assert claims["sim-bound"]["kind"] == "check" and claims["sim-bound"]["verdict"] == "passes"
    assert claims["no-padded-sets"]["verdict"] == "passes"
    assert claims[f"speed-{label}"]["kind"] == "ratio"
