"""rec_lib.data.io: chunked reading, open files, blank lines, skipping bad lines, md5 checksums."""

import io
import zipfile

import pytest

from rec_lib import data
from rec_lib.data import DatasetFormatError, DatasetSpec
from rec_lib.data.errors import ChecksumError
from rec_lib.data.io import file_digest, iter_delimited, read_delimited, verify_checksum


def test_blank_lines_are_skipped_without_shifting_line_numbers(tmp_path):
    p = tmp_path / "f.tsv"
    p.write_text("1\t2\n\n3\t4\n\nx\t5\n")
    with pytest.raises(DatasetFormatError, match="line 5"):
        read_delimited(p, ["a", "b"], numeric=["a"])
    p.write_text("1\t2\n\n3\t4\n\n")
    assert read_delimited(p, ["a", "b"], numeric=["a", "b"])["b"].tolist() == [2, 4]
    assert read_delimited(p, ["a", "b"], line_column="line")["line"].tolist() == [1, 3]


def test_iter_delimited_yields_chunks_with_absolute_lines(tmp_path):
    p = tmp_path / "f.tsv"
    p.write_text("".join(f"{i}\t{i * 2}\n" for i in range(7)))
    chunks = list(iter_delimited(p, ["a", "b"], numeric=["a", "b"], chunksize=3))
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert chunks[2]["b"].tolist() == [12]
    p.write_text("h\n" + "".join(f"{i}\t{i}\n" for i in range(7)) + "5\t\n")
    with pytest.raises(DatasetFormatError, match=r"line 9: too few fields, or an empty 'b' field"):
        list(iter_delimited(p, ["a", "b"], header_lines=1, chunksize=3))


def test_too_many_fields_reports_the_file_line_after_a_header(tmp_path):
    p = tmp_path / "f.tsv"
    p.write_text("h\n" + "".join(f"{i}\t{i}\n" for i in range(10)) + "1\t2\t3\n")
    for chunksize in (None, 3):
        with pytest.raises(DatasetFormatError, match="line 12:"):
            read_delimited(p, ["a", "b"], header_lines=1, chunksize=chunksize)


def test_open_file_with_label_names_the_member(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("d/r.dat", "1:2\n3:x\n")
    with zipfile.ZipFile(archive) as zf, zf.open("d/r.dat") as fh:
        with pytest.raises(DatasetFormatError, match=r"a.zip:d/r.dat, line 2: column 'b' holds 'x'"):
            read_delimited(fh, ["a", "b"], sep=":", numeric=["a", "b"], label=f"{archive}:d/r.dat")
    assert read_delimited(io.BytesIO(b"1,2\n"), ["a", "b"], sep=",", numeric=["a"])["b"].tolist() == ["2"]


def test_required_columns_and_optional_last_field(tmp_path):
    p = tmp_path / "f.tsv"
    p.write_text("u1\t10\t\nu2\t11\tsong\n")
    f = read_delimited(p, ["user", "t", "name"], numeric=["t"], required=["user"])
    assert f["name"].tolist() == ["", "song"]
    with pytest.raises(DatasetFormatError, match="line 1"):
        read_delimited(p, ["user", "t", "name"], numeric=["t"])


def test_skip_bad_lines_warns_with_count_and_first_line(tmp_path):
    p = tmp_path / "f.csv"
    p.write_text("1,2\nx,3\n4,5\n6,\n7,8\n")
    with pytest.warns(UserWarning, match=r"skipped 2 malformed lines \(the first at line 2\)"):
        f = read_delimited(p, ["a", "b"], sep=",", numeric=["a", "b"], bad_lines="skip", chunksize=2)
    assert f["a"].tolist() == [1, 4, 7]
    with pytest.raises(ValueError, match="bad_lines"):
        read_delimited(p, ["a", "b"], bad_lines="ignore")


def test_md5_checksums_verified_by_load(data_tmp, tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("abc")
    assert file_digest(p, "md5") == "900150983cd24fb0d6963f7d28e17f72"
    verify_checksum(p, "900150983cd24fb0d6963f7d28e17f72", algorithm="md5")
    with pytest.raises(ChecksumError, match="md5"):
        verify_checksum(p, "0" * 32, algorithm="md5")
    folder = data_tmp / "raw" / "md5toy"
    folder.mkdir()
    (folder / "r.tsv").write_text("1\t2\n")
    spec = DatasetSpec(name="md5toy", folder="md5toy", files=(("r.tsv",),), url="https://example.org",
                       md5={"r.tsv": "0" * 32},
                       loader=lambda d, layout: data.Interactions.from_raw(read_delimited(d / "r.tsv", ["user", "item"]), "t"))
    data.register(spec)
    assert len(data.load("md5toy", verify=False)) == 1
    with pytest.raises(ChecksumError, match="md5"):  # verified by default
        data.load("md5toy")


def test_numeric_columns_parsed_fast_keep_the_checks(tmp_path):
    p = tmp_path / "f.csv"
    p.write_text("1,2.5,a\n3,4,b\n")
    f = read_delimited(p, ["x", "y", "z"], sep=",", numeric=["x", "y"])
    assert f["x"].dtype == "int64" and f["y"].tolist() == [2.5, 4.0] and f["z"].tolist() == ["a", "b"]
    for bad, line in (("1,2,a\nTrue,3,b\n", 2), ("1,2,a\n3,,b\n", 2), ("NA,2,a\n", 1)):
        p.write_text(bad)
        with pytest.raises(DatasetFormatError, match=f"line {line}"):
            read_delimited(p, ["x", "y", "z"], sep=",", numeric=["x", "y"])
