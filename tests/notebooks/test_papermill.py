"""Every chapter runs end to end at SCALE="smoke" and leaves a well-formed ledger."""

import pytest

from rec_lib.notebooks import chapters

from .conftest import run_chapter

VERDICTS = {"holds", "does not hold", "inconclusive"}


@pytest.mark.parametrize("chapter", chapters())
def test_chapter_runs_at_smoke_scale(chapter, smoke_run):
    run = smoke_run(chapter)
    led = run.ledger
    assert led["chapter"] == chapter
    assert led["settings"]["scale"] == "smoke"
    assert led["metrics"], "the chapter recorded no metrics"
    assert led["claims"], "the chapter ends with a claims table computed from the ledger"
    for claim in led["claims"]:
        assert claim["verdict"] in VERDICTS
        assert claim["paper"] != "" and claim["ours"] != ""


@pytest.mark.parametrize("chapter", chapters())
def test_bad_parameter_fails_before_any_work(chapter, tmp_path):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError) as err:
        run_chapter(chapter, tmp_path, {"SCALE": "huge"})
    assert "SCALE='huge'" in str(err.value)
    assert not (tmp_path / "results").exists(), "a failed run must not leave a ledger"
