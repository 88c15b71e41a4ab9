"""Every chapter runs end to end at SCALE="smoke" and leaves a well-formed ledger of typed claims."""

import pytest

from rec_lib import evidence
from rec_lib.ledger import compare_across_machines
from rec_lib.notebooks import chapters

from tests.conftest import chapter_params

from .conftest import MACHINE_DRIFT, run_chapter

VERDICTS = {"holds", "does not hold", "inconclusive"}
FIELDS = {"id", "kind", "role", "claim", "paper", "effect", "ci", "n", "floor", "margin", "test", "verdict",
          "cause", "why", "section"}
# Another machine, emulated in one rerun: the caller's shell sets thread counts
# of its own (the pins in rec_lib.numerics override them, and the ledger says
# so), and torch runs its scalar kernels instead of AVX2 (on purpose, through
# REC_LIB_CPU_CAPABILITY). Numbers may move in their last digits; verdicts must
# not, nor any number a claim reads beyond the resolution the book shows.
OTHER_MACHINE = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "REC_LIB_CPU_CAPABILITY": "default"}
ATOL = 5e-4  # half the last digit of a number shown at 3 decimals


@pytest.mark.parametrize("chapter", chapter_params(chapters()))
def test_chapter_runs_at_smoke_scale(chapter, smoke_run):
    run = smoke_run(chapter)
    led = run.ledger
    assert led["chapter"] == chapter
    assert led["settings"]["scale"] == "smoke"
    assert led["metrics"], "the chapter recorded no metrics"
    assert led["claims"], "the chapter ends with a claims table computed from the ledger"
    assert led["timings"]["wall_s"] > 0 and led["numerics"]["torch_cpu_capability"] == "AVX2"
    for claim in led["claims"]:
        assert FIELDS <= set(claim), f"{claim.get('id')}: lacks {sorted(FIELDS - set(claim))}"
        assert claim["kind"] in evidence.KINDS and claim["role"] in evidence.ROLES
        if claim["kind"] == "check":
            assert claim["verdict"] in ("passes", "fails")
            continue
        assert claim["verdict"] in VERDICTS
        assert evidence.recompute_verdict(claim) == claim["verdict"], claim["id"]
        if claim["verdict"] != "holds":
            assert claim["cause"] in evidence.CAUSES and claim["why"], claim["id"]


def _rerun(chapter: str, tmp_path, env: dict) -> dict:
    import json

    run_chapter(chapter, tmp_path, {"SCALE": "smoke"}, env=env)
    return json.loads((tmp_path / "results" / f"{chapter}.json").read_text())


# Chapters whose smoke ledger does not survive the emulated machine, with what was measured. A verdict
# that flips is a finding about the chapter, not a tolerance to widen: the test stays, expected to fail.
NOT_PORTABLE_AT_SMOKE = {
    "dips": "issue 13/15, measured 2026-11-30: under torch's scalar kernels policy-learns-implicit goes from "
            "'does not hold' (both smoke splits differ by exactly 0) to 'inconclusive' (one split by one hit of "
            "about 440); per-user replicates of transfer-gru4rec flip by one hit (1/22)",
}


def _portable_params(names):
    return [pytest.param(n, marks=pytest.mark.xfail(strict=False, reason=NOT_PORTABLE_AT_SMOKE[n]))
            if n in NOT_PORTABLE_AT_SMOKE else n for n in names]


@pytest.mark.parametrize("chapter", _portable_params(chapters()))
def test_same_ledger_on_another_machine(chapter, smoke_run, tmp_path):
    """Verdicts exactly, claims' numbers at their resolution, tables' structure (issue 13).

    Measured 2026-11-30 (scalar kernels vs AVX2): in five chapters every verdict equal, the largest
    claim move MeLON's control-sml-returning replicate, 5.4e-3 against its resolution 0.19 (one test
    row of 184 flipped), and 0 to 39 table cells per chapter moved past 5e-4 (one Monte Carlo draw in
    the fast offline policy's gradient map moved a single-draw cosine from 0.37 to 0.56). DiPS: see
    NOT_PORTABLE_AT_SMOKE (its grid cache had hidden it: the cache is now keyed on the pinned kernels).
    """
    this = smoke_run(chapter).raw
    other = _rerun(chapter, tmp_path, OTHER_MACHINE)
    assert other["numerics"]["torch_cpu_capability"] == "DEFAULT"
    assert "OMP_NUM_THREADS" in other["numerics"]["overridden"], "the caller's thread count was not overridden"
    assert other["numerics"]["torch_threads"] == this["numerics"]["torch_threads"]  # the pins, not the caller's 1
    found = compare_across_machines(this, other, atol=ATOL)
    MACHINE_DRIFT[chapter] = found.summary()
    assert not found.failures, f"{chapter}: the smoke ledger moved under {OTHER_MACHINE}:\n" + "\n".join(
        found.failures[:20])


@pytest.mark.parametrize("chapter", chapters())
def test_bad_parameter_fails_before_any_work(chapter, tmp_path):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError) as err:
        run_chapter(chapter, tmp_path, {"SCALE": "huge"})
    assert "SCALE='huge'" in str(err.value)
    assert not (tmp_path / "results").exists(), "a failed run must not leave a ledger"
