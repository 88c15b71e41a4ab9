"""Every chapter runs end to end at SCALE="smoke" and leaves a well-formed ledger of typed claims."""

import pytest

from rec_lib import evidence
from rec_lib.ledger import compare_ledgers, read_ledger
from rec_lib.notebooks import chapters

from .conftest import run_chapter

VERDICTS = {"holds", "does not hold", "inconclusive"}
FIELDS = {"id", "kind", "role", "claim", "paper", "effect", "ci", "n", "floor", "margin", "test", "verdict",
          "cause", "why", "section"}
# Another CPU, emulated: torch's scalar kernels instead of AVX2. Numbers may move
# in their last digits; what must not move is anything a claim reads.
OTHER_CPU = {"ATEN_CPU_CAPABILITY": "default"}
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


@pytest.mark.parametrize("chapter", chapters())
def test_same_ledger_under_another_cpu_capability(chapter, smoke_run, tmp_path):
    first = smoke_run(chapter)
    run_chapter(chapter, tmp_path, {"SCALE": "smoke"}, env=OTHER_CPU)
    other = read_ledger(chapter, tmp_path / "results")
    assert other["numerics"]["torch_cpu_capability"] == "DEFAULT"
    import json

    diffs = compare_ledgers(first.raw, json.loads((tmp_path / "results" / f"{chapter}.json").read_text()),
                            atol=ATOL, rtol=0.0)
    assert not diffs, f"{chapter}: the smoke ledger moved under ATEN_CPU_CAPABILITY=default:\n" + "\n".join(diffs[:20])


@pytest.mark.parametrize("chapter", chapters())
def test_bad_parameter_fails_before_any_work(chapter, tmp_path):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError) as err:
        run_chapter(chapter, tmp_path, {"SCALE": "huge"})
    assert "SCALE='huge'" in str(err.value)
    assert not (tmp_path / "results").exists(), "a failed run must not leave a ledger"
