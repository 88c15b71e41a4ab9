import shutil
import zipfile
from pathlib import Path

import pytest

from rec_lib import data
from rec_lib.data import DatasetFormatError, DatasetNotFoundError, DatasetSpec
from rec_lib.data.io import read_delimited, sha256_of, verify_sha256
from rec_lib.data.errors import ChecksumError
from rec_lib.data.movielens import load_ml100k

INTER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n"
ITEM = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n242\tKolya\t1996\tComedy\n302\tL.A. Confidential\t1997\tCrime Film-Noir\n377\tHeavyweights\t1994\tChildren's Comedy\n"


def write(folder: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding=encoding)
    return folder / name


def test_missing_dataset_names_file_place_and_source(data_tmp):
    with pytest.raises(DatasetNotFoundError) as err:
        data.load("ml-100k")
    msg = str(err.value)
    assert "ml-100k.inter" in msg and str(data_tmp / "raw" / "ml-100k") in msg
    assert "fetch-data" in msg and "u.data" in msg


# The toy files below are not the published ML-100K, so they load with verify=False (the default checks
# the recorded sha256: see test_bad_input.py).
def test_recbole_layout_loads_with_titles(data_tmp):
    folder = data_tmp / "raw" / "ml-100k"
    write(folder, "ml-100k.inter", INTER)
    write(folder, "ml-100k.item", ITEM)
    d = data.load("ml-100k", verify=False)
    assert len(d) == 3 and d.n_users == 3 and d.n_items == 3
    first = d.df.iloc[0]  # earliest: user 22 rated 377 at 878887116
    assert d.user_ids[int(first["user"])] == 22 and d.item_titles([int(first["item"])]) == ["Heavyweights"]


def test_grouplens_layout_loads_with_titles(data_tmp):
    folder = data_tmp / "raw" / "ml-100k"
    write(folder, "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    genres = "|".join(["0"] * 19)
    write(folder, "u.item", f"242|Kolya (1996)|24-Jan-1997||http://x|{genres}\n302|L.A. Confidential (1997)|01-Jan-1997||http://y|{genres}\n", "latin-1")
    d = data.load("ml-100k", verify=False)
    assert sorted(d.item_titles([0, 1])) == ["Kolya", "L.A. Confidential"]
    assert d.item_meta["year"].tolist() == [1996, 1997]


def test_malformed_line_names_file_and_line(data_tmp):
    folder = data_tmp / "raw" / "ml-100k"
    write(folder, "ml-100k.inter", INTER + "5\t6\tfive\t881250949\n")
    with pytest.raises(DatasetFormatError) as err:
        data.load("ml-100k", verify=False)
    assert "ml-100k.inter, line 5" in str(err.value) and "'five'" in str(err.value)


def test_wrong_field_count_names_line(tmp_path):
    p = write(tmp_path, "x.tsv", "1\t2\t3\n4\t5\n")
    with pytest.raises(DatasetFormatError, match="line 2"):
        read_delimited(p, ["a", "b", "c"], numeric=["a"])
    p = write(tmp_path, "y.tsv", "1\t2\n4\t5\t6\n")
    with pytest.raises(DatasetFormatError, match="line 2"):
        read_delimited(p, ["a", "b"])


def test_read_delimited_in_chunks_reports_absolute_line(tmp_path):
    good = "".join(f"{i}\t{i}\n" for i in range(10))
    frame = read_delimited(write(tmp_path, "good.tsv", good), ["a", "b"], numeric=["a", "b"], chunksize=4)
    assert frame["a"].tolist() == list(range(10))
    p = write(tmp_path, "big.tsv", good + "x\t1\n")
    with pytest.raises(DatasetFormatError, match="line 11"):
        read_delimited(p, ["a", "b"], numeric=["a"], chunksize=4)


def test_not_utf8_is_reported(tmp_path):
    p = tmp_path / "bin.tsv"
    p.write_bytes(b"\xff\xfe\x00\x01\tx\n")
    with pytest.raises(DatasetFormatError, match="utf-8"):
        read_delimited(p, ["a", "b"])


def test_checksum(tmp_path):
    p = write(tmp_path, "f.txt", "hello")
    verify_sha256(p, sha256_of(p))
    verify_sha256(p, None)
    with pytest.raises(ChecksumError, match="corrupt"):
        verify_sha256(p, "0" * 64)


def test_registry_register_and_list(data_tmp):
    spec = DatasetSpec(name="toy", folder="toy", files=(("a.tsv",),), url="https://example.org/toy",
                       loader=lambda folder, layout: load_ml100k(folder, layout))
    data.register(spec)
    assert "toy" in [s.name for s in data.list_datasets()]
    assert not data.dataset_available("toy")
    with pytest.raises(KeyError, match="unknown dataset"):
        data.get_spec("nope")
    with pytest.raises(ValueError, match="at least one file"):
        data.register(DatasetSpec(name="bad", folder="bad", files=(), url="", loader=load_ml100k))


def test_fetch_extracts_from_a_wheel_and_is_atomic(data_tmp, tmp_path, monkeypatch):
    from rec_lib.data import fetch

    folder = tmp_path / "w"
    inter = write(folder, "ml-100k.inter", INTER)
    item = write(folder, "ml-100k.item", ITEM)
    user = write(folder, "ml-100k.user", "user_id:token\n1\n")
    wheel = tmp_path / "recbole.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for p in (inter, item, user):
            zf.write(p, fetch._PREFIX + p.name)
    monkeypatch.setattr(fetch, "RECBOLE_WHEEL_SHA256", sha256_of(wheel))
    monkeypatch.setattr(fetch, "ML100K_SHA256", {"ml-100k.inter": sha256_of(inter), "ml-100k.item": sha256_of(item)})
    target = fetch.fetch_ml100k(wheel=wheel, quiet=True)
    assert (target / "ml-100k.inter").read_text() == INTER
    assert data.load("ml-100k", verify=False).n_users == 3
    # a second call is a no-op
    assert fetch.fetch_ml100k(wheel=tmp_path / "does-not-exist.whl", quiet=True) == target
    # a wheel with a wrong checksum is refused and leaves nothing behind
    shutil.rmtree(target)
    monkeypatch.setattr(fetch, "RECBOLE_WHEEL_SHA256", "0" * 64)
    with pytest.raises(ChecksumError):
        fetch.fetch_ml100k(wheel=wheel, quiet=True)
    assert not target.exists() and not list((data_tmp / "raw").glob(".ml-100k.*"))
