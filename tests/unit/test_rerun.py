"""The rerun command's checks (nothing runs, no folder is left) and the chapter map.

The end-to-end run of a chapter is in tests/notebooks/test_rerun_command.py
(papermill tier).
"""

from __future__ import annotations

import nbformat
import pytest

from rec_lib import chapters, rerun
from rec_lib.__main__ import main
from rec_lib.data.chapter import DataSettings


@pytest.fixture
def runs(tmp_path):
    return tmp_path / "runs"


def refused(capsys, runs, *argv: str) -> str:
    """Run the CLI, expect exit status 2 and no run folder; return stderr."""
    assert main(["run", *argv, "--runs-dir", str(runs)]) == 2
    assert not runs.exists(), "a refused run must not leave a folder"
    return capsys.readouterr().err


def test_parse_assignments():
    assert rerun.parse_assignments(["SEED=1", "DATASET = ml-1m", "X=a=b"]) == {"SEED": "1", "DATASET": "ml-1m",
                                                                                 "X": "a=b"}
    with pytest.raises(rerun.RunError, match="expected NAME=VALUE"):
        rerun.parse_assignments(["SEED"])
    with pytest.raises(rerun.RunError, match="given twice"):
        rerun.parse_assignments(["SEED=1", "SEED=2"])


def test_values_are_literals_typed_by_the_settings_field():
    read = rerun._read_value
    assert read("3", int) == 3 and read("0.5", float) == 0.5 and read("(2, 4)", tuple[int, ...]) == (2, 4)
    assert read("None", int | None) is None and read('"cpu"', str) == "cpu"
    assert read("ml-1m", str) == "ml-1m" and read("1", str) == "1"  # a str field keeps the text
    assert read("abc", int) == "abc"  # left for make_settings to refuse with its message
    assert rerun._plain((1, (2, 3))) == [1, [2, 3]]


def test_plan_accepts_good_parameters_and_uses_the_notebook_defaults():
    p = rerun.plan("data_protocols", "smoke", ["SEED=3", "STREAM_USERS=400"])
    assert isinstance(p.settings, DataSettings)
    assert (p.settings.scale, p.settings.seed, p.settings.stream_users) == ("smoke", 3, 400)
    assert p.settings.catalogue_items == 10_000  # the smoke preset, CATALOGUE_ITEMS = None in the notebook
    assert p.parameters == {"SCALE": "smoke", "SEED": 3, "STREAM_USERS": 400}
    assert p.datasets == ["ml-100k"] and p.notebook.name == "data_protocols.ipynb"


def test_unknown_parameter_lists_the_valid_ones(capsys, runs):
    err = refused(capsys, runs, "data_protocols", "--scale", "smoke", "-p", "CORE=5")
    assert "unknown parameter(s) CORE" in err
    assert "SEED, DEVICE, DATASET, STREAM_USERS, CATALOGUE_ITEMS" in err


def test_wrong_type_and_bad_value_are_refused(capsys, runs):
    err = refused(capsys, runs, "data_protocols", "--scale", "smoke", "-p", "STREAM_USERS=many")
    assert "STREAM_USERS='many' has type str" in err and "expects" in err
    err = refused(capsys, runs, "data_protocols", "--scale", "smoke", "-p", "STREAM_USERS=0")
    assert "STREAM_USERS must be >= 1, got 0" in err
    err = refused(capsys, runs, "data_protocols", "--scale", "smoke", "-p", "SEED=1.5")
    assert "SEED=1.5 has type float" in err


def test_scale_device_and_chapter_are_checked(capsys, runs, monkeypatch):
    assert "--scale 'huge' is not one of" in refused(capsys, runs, "data_protocols", "--scale", "huge")
    assert "set the scale with --scale" in refused(capsys, runs, "data_protocols", "-p", "SCALE=smoke")
    assert "'nope' is not a chapter" in refused(capsys, runs, "nope")
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert "torch sees no CUDA device" in refused(capsys, runs, "data_protocols", "--scale", "smoke",
                                                  "-p", "DEVICE=cuda")


def test_missing_dataset_is_named_with_its_folder_before_running(capsys, runs, data_tmp):
    err = refused(capsys, runs, "data_protocols", "--scale", "smoke", "-p", "DATASET=ml-1m")
    assert "needs data that is not here" in err and "ml-1m" in err
    assert str(data_tmp / "raw" / "ml-1m") in err and "grouplens.org" in err
    err = refused(capsys, runs, "data_protocols", "--scale", "smoke", "-p", "DATASET=imaginary")
    assert "needs dataset 'imaginary', which is not registered" in err


def test_list_shows_chapters_parameters_and_datasets(capsys):
    assert main(["run", "--list"]) == 0
    out = capsys.readouterr().out
    assert "data_protocols" in out and "STREAM_USERS" in out and "datasets at paper scale: ml-100k" in out
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("STREAM_USERS"))
    assert line.split()[-3:] == ["300", "2000", "20000"]  # smoke, tutorial, paper presets


def test_run_without_chapter_asks_for_one(capsys):
    assert main(["run"]) == 2
    assert "--list" in capsys.readouterr().err


def test_datasets_command_lists_folders(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "ml-1m" in out and "taobao" in out and "grouplens" in out


def test_available_hides_chapters_without_notebook_or_module(tmp_path, monkeypatch):
    book = tmp_path / "book"
    book.mkdir()
    nb = nbformat.v4.new_notebook()
    for name in ("data_protocols", "sml", "ghost"):
        nbformat.write(nb, book / f"{name}.ipynb")
    monkeypatch.setattr(chapters, "book_dir", lambda: book)
    monkeypatch.setitem(chapters.CHAPTERS, "ghost", chapters.ChapterEntry("ghost", "rec_lib.no_such_module"))
    names = chapters.available()
    assert "data_protocols" in names and "ghost" not in names
    assert ("sml" in names) == chapters._module_exists("rec_lib.retraining")
    with pytest.raises(ValueError, match="not in this checkout yet"):
        chapters.entry("ghost")


def test_chapter_spec_must_be_declared(monkeypatch):
    import types

    fake = types.ModuleType("rec_lib.fake_chapter")
    monkeypatch.setitem(__import__("sys").modules, "rec_lib.fake_chapter", fake)
    monkeypatch.setitem(chapters.CHAPTERS, "data_protocols", chapters.ChapterEntry("data_protocols", "rec_lib.fake_chapter"))
    monkeypatch.setattr(chapters, "_module_exists", lambda name: True)
    with pytest.raises(ValueError, match="must define CHAPTER = ChapterSpec"):
        chapters.chapter_spec("data_protocols")


def test_execute_records_the_run_and_keeps_a_failed_notebook(tmp_path, monkeypatch):
    """A tiny notebook (not a chapter) through execute(): ledger beside the notebook; a failure is kept."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("SCALE = 'tutorial'\nFAIL = False")
    params.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell(
        "import os, pathlib\n"
        "pathlib.Path(os.environ['REC_LIB_RESULTS'], 'toy.json').write_text('{\"scale\": \"%s\"}' % SCALE)\n"
        "assert not FAIL, 'asked to fail'")
    nb.cells = [params, body]
    path = tmp_path / "toy.ipynb"
    nbformat.write(nb, path)
    settings = DataSettings(scale="smoke")
    result = rerun.execute(rerun.RunPlan("toy", path, "smoke", {"SCALE": "smoke"}, settings), tmp_path / "runs")
    assert result.folder.parent == tmp_path / "runs" and result.folder.name.startswith("toy-")
    assert result.ledger == result.folder / "toy.json" and '"smoke"' in result.ledger.read_text()
    record = __import__("json").loads((result.folder / "run.json").read_text())
    assert record["status"] == "done" and record["parameters"] == {"SCALE": "smoke"} and record["seconds"] >= 0
    with pytest.raises(rerun.RunFailed, match="asked to fail") as err:
        rerun.execute(rerun.RunPlan("toy", path, "smoke", {"SCALE": "smoke", "FAIL": True}, settings), tmp_path / "runs")
    assert err.value.notebook.exists()
    assert '"status": "failed"' in (err.value.folder / "run.json").read_text()
    assert err.value.folder != result.folder


@pytest.mark.parametrize("chapter", chapters.available())
def test_notebook_defaults_keep_each_scales_datasets(chapter):
    """A literal in the parameters cell must not override a preset: with the
    notebook's defaults, every scale reads the datasets its preset names (a
    literal DATASET = "ml-100k" once made --scale paper run on ML-100K)."""
    import typing

    spec = chapters.chapter_spec(chapter)
    cell = rerun.notebook_parameters(rerun.book_dir() / f"{chapter}.ipynb")
    fields = typing.get_type_hints(spec.settings)
    # SEED and DEVICE apply to every scale alike; the other knobs must be None
    keep = {"SCALE", "SEED", "DEVICE"}
    pinned = {n: v for n, v in cell.items() if n not in keep and v is not None and n.lower() in fields}
    assert not pinned, f"{chapter}: parameters that override every preset: {pinned}"
    for scale in ("smoke", "tutorial", "paper"):
        from_cell = spec.make(scale, **{n.lower(): v for n, v in cell.items() if n != "SCALE" and n.lower() in fields})
        assert list(spec.datasets(from_cell)) == list(spec.datasets(spec.make(scale)))
