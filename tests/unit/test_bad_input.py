"""Bad input is refused before any work, naming the problem and the fix, and nothing is written (issue 20).

Each test feeds one kind of bad input (a misspelled papermill parameter, a
missing or damaged dataset file, a device that does not exist, ...) and
checks three things: the error names what is wrong, it says how to fix it,
and no ledger, run folder or cache entry was left behind.
"""

from __future__ import annotations

import gzip
import json
import os
import stat
import zipfile
from pathlib import Path

import pytest

from rec_lib import data, paths, rerun, utils
from rec_lib.config import BaseSettings, ChapterSpec, SettingsError
from rec_lib.data import DatasetFormatError, DatasetNotFoundError
from rec_lib.data.errors import ChecksumError, DatasetsMissingError, EmptyDatasetError, FilterEmptiedError
from rec_lib.data.loaders import PAPER_DATASETS
from rec_lib.ledger import Ledger

PRESETS = {"smoke": {}, "tutorial": {}, "paper": {}}


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def nothing_cached(data_tmp: Path) -> bool:
    """No parse cache entry and no checksum record under ``<data>/cache``."""
    cache = data_tmp / "cache"
    return not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))


def settings_cell(code: str, **parameters):
    """Run ``code`` as a notebook's settings cell would: in a ``__main__`` namespace holding the parameters."""
    namespace = {"__name__": "__main__", **parameters}
    exec(code, namespace)
    return namespace


# ------------------------------------------------------------------- papermill parameters
TOY = ChapterSpec(name="toy", settings=BaseSettings, presets=PRESETS, datasets=lambda s: [])
TOY_CELL = "settings = CHAPTER.make(SCALE, seed=SEED, device=DEVICE, dataset=DATASET)"
TOY_PARAMETERS = dict(SCALE="smoke", SEED=0, DEVICE="cpu", DATASET=None, CHAPTER=TOY)


def test_misspelled_parameter_is_refused_with_the_valid_names(results_tmp):
    with pytest.raises(SettingsError) as err:
        settings_cell(TOY_CELL, **TOY_PARAMETERS, SEEED=1)  # papermill -p SEEED 1 injects SEEED = 1
    msg = str(err.value)
    assert "unknown parameter(s) SEEED" in msg
    assert "SCALE, SEED, DEVICE, DATASET" in msg and "spelling" in msg
    assert not results_tmp.exists()


def test_a_settings_field_the_notebook_does_not_pass_is_refused(results_tmp):
    # DEVICE is a settings field, but this cell does not pass it: papermill's -p DEVICE would be ignored
    with pytest.raises(SettingsError, match=r"unknown parameter\(s\) DEVICE for chapter toy; its parameters: SCALE, SEED\."):
        settings_cell("settings = CHAPTER.make(SCALE, seed=SEED).__class__", SCALE="smoke", SEED=0,
                      DEVICE="cpu", CHAPTER=TOY)


def test_constants_modules_and_classes_are_not_parameters():
    # METHODS is allow-listed; PAPER_DATASETS is a constant imported from rec_lib; NP a module; SNIS a class
    ns = settings_cell("from rec_lib.two_time_scale.experiments import METHODS\n"
                       "from rec_lib.data.loaders import PAPER_DATASETS\n"
                       "import numpy as NP\n" + TOY_CELL, **TOY_PARAMETERS, SNIS=ChapterSpec, ABLATIONS=("a",))
    assert ns["settings"].seed == 0


def test_library_callers_are_unaffected():
    # not a notebook namespace: unknown upper-case globals, a missing dataset and a bad device are not looked at
    ns = {"__name__": "some_module", "SCALE": "paper", "SEEED": 1}
    spec = ChapterSpec(name="toy", settings=BaseSettings, presets=PRESETS, datasets=lambda s: ["twitch"])
    exec("settings = SPEC.make('paper', device='cuda:7')", {**ns, "SPEC": spec})
    assert TOY.make("smoke", seed=3).seed == 3


def test_papermill_run_with_a_misspelled_parameter_stops_in_the_settings_cell(tmp_path, results_tmp):
    nbformat = pytest.importorskip("nbformat")
    pm = pytest.importorskip("papermill")
    marker = tmp_path / "work-started"
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"},
                                            "language_info": {"name": "python"}})
    params = nbformat.v4.new_code_cell('SCALE = "smoke"\nSEED = 0')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params,
                nbformat.v4.new_code_cell(
                    "from rec_lib.config import BaseSettings, ChapterSpec\n"
                    "SPEC = ChapterSpec('toy', BaseSettings, {'smoke': {}, 'tutorial': {}, 'paper': {}}, "
                    "datasets=lambda s: [])\n"
                    "settings = SPEC.make(SCALE, seed=SEED)"),
                nbformat.v4.new_code_cell(f"open({str(marker)!r}, 'w').write('work')")]
    source = tmp_path / "toy.ipynb"
    nbformat.write(nb, source)
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(str(source), str(tmp_path / "out.ipynb"), parameters={"SEEED": 1}, kernel_name="python3",
                            progress_bar=False, log_output=False, cwd=str(tmp_path))
    assert err.value.ename == "SettingsError" and "SEEED" in err.value.evalue and "SEED" in err.value.evalue
    assert not marker.exists() and not results_tmp.exists()


# --------------------------------------------------------------------- datasets in make()
@pytest.mark.parametrize("module, needed", [("rec_lib.policy_learning", "twitch"),
                                            ("rec_lib.two_time_scale", "ml-25m")])
def test_paper_scale_notebook_stops_in_the_settings_cell_when_data_is_missing(data_tmp, results_tmp, module,
                                                                               needed):
    import importlib

    chapter = importlib.import_module(module).CHAPTER
    with pytest.raises(DatasetsMissingError) as err:
        settings_cell("settings = CHAPTER.make(SCALE, seed=SEED, device=DEVICE)", SCALE="paper", SEED=0,
                      DEVICE="cpu", CHAPTER=chapter)
    spec = data.get_spec(needed)
    msg = str(err.value)
    assert f"chapter {chapter.name} at scale 'paper'" in msg and f"dataset {needed!r}" in msg
    assert spec.files[0][0] in msg and str(data_tmp / "raw" / spec.folder) in msg and "where to get it" in msg
    assert not results_tmp.exists() and nothing_cached(data_tmp)


def test_synthetic_settings_need_no_data(data_tmp):
    from rec_lib.policy_learning import CHAPTER

    ns = settings_cell("settings = CHAPTER.make(SCALE, dataset='synthetic', second_dataset='synthetic')",
                       SCALE="smoke", CHAPTER=CHAPTER)
    assert CHAPTER.datasets(ns["settings"]) == []


# ----------------------------------------------------------------------------- devices
def test_a_device_that_does_not_exist_is_refused(monkeypatch, results_tmp, tmp_path):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert utils.resolve_device("cuda:0").index == 0
    with pytest.raises(RuntimeError) as err:
        utils.resolve_device("cuda:7")
    assert "'cuda:7' does not exist" in str(err.value) and "'cpu', 'cuda', 'cuda:0'" in str(err.value)
    with pytest.raises(SettingsError, match="'cuda:7' does not exist"):
        settings_cell(TOY_CELL, **{**TOY_PARAMETERS, "DEVICE": "cuda:7"})
    with pytest.raises(rerun.RunError, match="'cuda:7' does not exist"):
        rerun.plan("data_protocols", "smoke", ["DEVICE=cuda:7"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="the devices here: 'cpu'.*DEVICE='cpu'"):
        utils.resolve_device("cuda:7")
    with pytest.raises(ValueError, match="not one of"):
        utils.resolve_device("cuda:x")
    assert not results_tmp.exists() and not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------ file modes
def test_ledger_gets_the_mode_of_a_plain_file(results_tmp):
    old = os.umask(0o022)
    try:
        path = Ledger("modes", BaseSettings()).save()
        assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600
        os.chmod(path, 0o640)
        Ledger("modes", BaseSettings()).save()
        assert stat.S_IMODE(path.stat().st_mode) == 0o640  # an existing file keeps its mode
        os.umask(0o027)
        with utils.atomic_write(results_tmp / "other.json") as fh:
            fh.write("{}")
        assert stat.S_IMODE((results_tmp / "other.json").stat().st_mode) == 0o640
    finally:
        os.umask(old)
    assert sorted(p.name for p in results_tmp.iterdir()) == ["modes.json", "other.json"]  # no temporary left


# ------------------------------------------------------------------------- repo root
def test_repo_root_refuses_to_guess_outside_a_checkout(monkeypatch, tmp_path):
    monkeypatch.delenv("REC_LIB_ROOT", raising=False)
    monkeypatch.delenv("REC_LIB_RESULTS", raising=False)
    monkeypatch.setattr(paths, "__file__", str(tmp_path / "site-packages" / "rec_lib" / "paths.py"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(paths.RepoRootError) as err:
        paths.repo_root()
    assert "REC_LIB_ROOT" in str(err.value) and "pip install -e ." in str(err.value)
    with pytest.raises(paths.RepoRootError):
        paths.results_dir()
    monkeypatch.setenv("REC_LIB_ROOT", str(tmp_path))
    assert paths.results_dir() == tmp_path / "results"
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ ML-100K, checksums
INTER = ("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
         "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n")


def test_ml100k_malformed_id_names_file_and_line(data_tmp):
    write(data_tmp / "raw" / "ml-100k" / "ml-100k.inter", INTER + "u9\t302\t3\t891717742\n")
    with pytest.raises(DatasetFormatError) as err:
        data.load("ml-100k", verify=False)
    msg = str(err.value)
    assert "ml-100k.inter, line 5" in msg and "user id 'u9' is not an integer" in msg
    assert "fetch it again" in msg and "fetch-data" in msg
    assert nothing_cached(data_tmp)


def test_checksums_are_verified_once_per_file(data_tmp, monkeypatch):
    from rec_lib.data import registry
    from rec_lib.data.io import sha256_of
    from rec_lib.data.movielens import ML100K_SHA256

    inter = write(data_tmp / "raw" / "ml-100k" / "ml-100k.inter", INTER)
    with pytest.raises(ChecksumError) as err:  # not the published file
        data.load("ml-100k")
    msg = str(err.value)
    assert str(inter) in msg and "corrupt" in msg and "fetch it again" in msg and "fetch-data" in msg
    assert nothing_cached(data_tmp)

    monkeypatch.setitem(ML100K_SHA256, "ml-100k.inter", sha256_of(inter))
    assert len(data.load("ml-100k")) == 3
    record = json.loads((data_tmp / "cache" / "checksums.json").read_text())
    assert record[str(inter.resolve())]["sha256"] == sha256_of(inter)

    class NoHashing:
        @staticmethod
        def new(name):
            raise AssertionError("an unchanged, verified file is hashed again")

    monkeypatch.setattr(registry, "hashlib", NoHashing)
    assert len(data.load("ml-100k")) == 3  # remembered by size and mtime
    monkeypatch.undo()
    monkeypatch.setitem(ML100K_SHA256, "ml-100k.inter", record[str(inter.resolve())]["sha256"])
    write(inter, INTER.replace("881250949", "881250948"))  # same size, new content and mtime
    with pytest.raises(ChecksumError, match="ml-100k.inter"):
        data.load("ml-100k")


# ------------------------------------------------------------------- damaged downloads
TWITCH = "1,34347669376,grimnax,5415,5419\n1,34391109664,jtgtv,5792,5795\n"
URL = {"twitch": "cseweb.ucsd.edu/~jmcauley/datasets.html#twitch", "ml-1m": "grouplens.org/datasets/movielens/1m",
       "ml-10m": "grouplens.org/datasets/movielens/10m", "ml-25m": "grouplens.org/datasets/movielens/25m"}


def assert_damaged(err: pytest.ExceptionInfo, path: Path, name: str) -> None:
    msg = str(err.value)
    assert str(path) in msg and "download complete" in msg and "fetch it again" in msg and URL[name] in msg, msg


@pytest.mark.parametrize("damage", ["truncated", "not gzip"])
def test_damaged_twitch_gz_names_the_file_and_the_source(data_tmp, damage):
    path = data_tmp / "raw" / "twitch" / "full_a.csv.gz"
    full = gzip.compress((TWITCH * 2000).encode())
    write(path, full[: len(full) // 2] if damage == "truncated" else TWITCH.encode())
    with pytest.raises(DatasetFormatError) as err:
        data.load("twitch")
    assert_damaged(err, path, "twitch")
    assert nothing_cached(data_tmp)


@pytest.mark.parametrize("name, archive", [("ml-1m", "ml-1m.zip"), ("ml-10m", "ml-10m.zip"),
                                           ("ml-25m", "ml-25m.zip")])
def test_truncated_movielens_zip_names_the_file_and_the_source(data_tmp, name, archive):
    folder = data_tmp / "raw" / name
    folder.mkdir(parents=True)
    with zipfile.ZipFile(folder / archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x/ratings.dat", "1::2::5::978300760\n" * 1000)
    whole = (folder / archive).read_bytes()
    (folder / archive).write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DatasetFormatError) as err:
        data.load(name, verify=False)  # the parse path; the default checksum check refuses it too:
    assert_damaged(err, folder / archive, name)
    with pytest.raises(ChecksumError, match="fetch it again"):
        data.load(name)
    assert nothing_cached(data_tmp)


def test_netflix_names_the_files_that_are_missing(data_tmp):
    folder = data_tmp / "raw" / "netflix"
    for i in (1, 2, 3):
        write(folder / f"combined_data_{i}.txt", "1:\n6,3,2005-09-06\n")
    with pytest.raises(DatasetNotFoundError) as err:
        data.load("netflix")
    msg = str(err.value)
    assert "'combined_data_4.txt' not found" in msg and "combined_data_1.txt" not in msg.split("where to get it")[0]
    assert err.value.missing_files == [folder / "combined_data_4.txt"]
    (folder / "combined_data_3.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match="2 files not found: 'combined_data_3.txt', 'combined_data_4.txt'"):
        data.load("netflix")
    assert nothing_cached(data_tmp)


@pytest.mark.parametrize("name", ["ml-100k", *PAPER_DATASETS])
def test_an_empty_file_is_an_error_naming_it(data_tmp, name):
    spec = data.get_spec(name)
    layout = spec.files[0]
    for f in layout:
        write(spec.directory() / f, b"")
    with pytest.raises(EmptyDatasetError) as err:
        data.load(name)
    msg = str(err.value)
    assert str(spec.directory() / layout[0]) in msg and "empty (0 bytes)" in msg
    assert "download complete" in msg and "fetch it again" in msg
    assert nothing_cached(data_tmp)


def test_an_empty_file_outside_the_registered_layout_is_named_too(data_tmp):
    folder = data_tmp / "raw" / "adressa" / "one_week"
    event = json.dumps({"userId": "u1", "id": "a1", "time": 1483254000, "activeTime": 30}) + "\n"
    for day in range(1, 8):
        write(folder / f"201701{day:02d}", event if day != 3 else "")
    with pytest.raises(EmptyDatasetError, match="20170103.*empty") as err:
        data.load("adressa")
    assert "reclab.idi.ntnu.no" in str(err.value)
    assert nothing_cached(data_tmp)


def test_a_file_with_no_interactions_is_an_error(data_tmp):
    write(data_tmp / "raw" / "goodreads" / "goodreads_interactions.csv", "user_id,book_id,is_read,rating,is_reviewed\n")
    with pytest.raises(EmptyDatasetError, match="no interactions were read"):
        data.load("goodreads")
    assert nothing_cached(data_tmp)


# ------------------------------------------------------------------ filters and lines
def test_a_default_kcore_that_empties_the_data_names_the_option(data_tmp):
    rows = [{"user_id": f"u{i}", "business_id": f"b{i}", "stars": 4.0, "date": "2016-03-09"} for i in range(5)]
    write(data_tmp / "raw" / "yelp" / "review.json", "".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(FilterEmptiedError) as err:
        data.load("yelp")
    msg = str(err.value)
    assert "k-core filter (user_core=10, item_core=20)" in msg and "none of the 5 interactions" in msg
    assert "load('yelp', user_core=None, item_core=None)" in msg
    # the file parsed correctly, so its parse is kept for the relaxed rerun; no filtered result is cached
    assert not list((data_tmp / "cache" / "datasets" / "yelp").glob("final-*"))
    assert len(data.load("yelp", user_core=None, item_core=None)) == 5


def test_a_malformed_line_mentions_bad_lines_skip(data_tmp):
    write(data_tmp / "raw" / "twitch" / "100k_a.csv", TWITCH + "2,x,grimnax,5415,5419\n")
    with pytest.raises(DatasetFormatError) as err:
        data.load("twitch")
    msg = str(err.value)
    assert "100k_a.csv, line 3" in msg and "bad_lines=\"skip\"" in msg and URL["twitch"] in msg
    assert nothing_cached(data_tmp)
    with pytest.warns(UserWarning, match="skipped 1 malformed lines"):
        assert len(data.load("twitch", bad_lines="skip", cache=False)) == 2


@pytest.mark.parametrize("name", ["twitch", "netflix", "yelp", "foursquare", "taobao", "lastfm-1k"])
def test_a_file_of_blank_lines_is_an_error_naming_it(data_tmp, name):
    spec = data.get_spec(name)
    for f in spec.files[-1] if name == "twitch" else spec.files[0]:  # twitch: the plain-text sample 100k_a.csv
        write(spec.directory() / f, "\n\n")
    with pytest.raises(EmptyDatasetError, match="no interactions were read") as err:
        data.load(name, verify=False)
    assert str(spec.directory()) in str(err.value) and "fetch it again" in str(err.value)
    assert nothing_cached(data_tmp)
