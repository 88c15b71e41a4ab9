"""Every chapter runs end to end at SCALE="smoke" and leaves a well-formed ledger of typed claims."""

import pytest

from rec_lib import evidence
from rec_lib.ledger import compare_ledgers, read_ledger
from rec_lib.notebooks import chapters

from .conftest import run_chapter

VERDICTS = {"holds", "does not hold", "inconclusive"}
FIELDS = {"id", "kind", "role", "claim", "paper", "effect", "ci", "n", "floor", "margin", "test", "verdict",
          "cause", "why", "section"}
# A reader's shell may set thread counts or a kernel level of its own: the pins
# (rec_lib.numerics) override them in every process, so the numbers are identical.
FOREIGN_ENV = {"ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# Another CPU, emulated: torch's scalar kernels instead of AVX2, on purpose.
# Numbers may move in their last digits; verdicts must not, nor anything a claim reads.
OTHER_KERNELS = {"REC_LIB_CPU_CAPABILITY": "default"}
ATOL = 5e-4  # half the last digit of a number shown at 3 decimals


@pytest.mark.parametrize("chapter", chapters())
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


@pytest.mark.parametrize("chapter", chapters())
def test_same_ledger_whatever_the_callers_environment(chapter, smoke_run, tmp_path):
    other = _rerun(chapter, tmp_path, FOREIGN_ENV)
    assert other["numerics"]["torch_cpu_capability"] == "AVX2"
    assert set(other["numerics"]["overridden"]) >= {"ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS"}
    diffs = compare_ledgers(smoke_run(chapter).raw, other, atol=1e-12, rtol=1e-9)
    assert not diffs, f"{chapter}: the smoke ledger moved when the caller set {FOREIGN_ENV}:\n" + "\n".join(diffs[:20])


@pytest.mark.parametrize("chapter", chapters())
def test_same_verdicts_under_another_cpu_capability(chapter, smoke_run, tmp_path):
    other = _rerun(chapter, tmp_path, OTHER_KERNELS)
    assert other["numerics"]["torch_cpu_capability"] == "DEFAULT"
    diffs = compare_ledgers(smoke_run(chapter).raw, other, atol=ATOL, rtol=0.0)
    assert not diffs, f"{chapter}: the smoke ledger moved under {OTHER_KERNELS}:\n" + "\n".join(diffs[:20])


@pytest.mark.parametrize("chapter", chapters())
def test_bad_parameter_fails_before_any_work(chapter, tmp_path):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError) as err:
        run_chapter(chapter, tmp_path, {"SCALE": "huge"})
    assert "SCALE='huge'" in str(err.value)
    assert not (tmp_path / "results").exists(), "a failed run must not leave a ledger"
