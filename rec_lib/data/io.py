"""Reading delimited dataset files with errors that name the file and the line."""

from __future__ import annotations

import hashlib
import os
import re
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from rec_lib.data.errors import ChecksumError, DatasetFormatError, EmptyDatasetError

__all__ = ["read_delimited", "iter_delimited", "file_digest", "sha256_of", "verify_sha256", "verify_checksum",
           "check_not_empty", "unreadable", "DAMAGED_HINT", "READ_ERRORS"]

_PANDAS_LINE = re.compile(r"line (\d+)")
BAD_LINES = ("error", "skip")
DAMAGED_HINT = "is the download complete? Delete the file and fetch it again."
# what a truncated or corrupt file (a .gz cut short, not gzip at all, a bad zip) raises while it is read
READ_ERRORS = (OSError, EOFError, zlib.error, zipfile.BadZipFile)


def check_not_empty(path: str | Path) -> None:
    """Raise :class:`EmptyDatasetError` naming ``path`` when the file holds 0 bytes (a failed download)."""
    if os.path.getsize(path) == 0:
        raise EmptyDatasetError(path, None, "the file is empty (0 bytes)", DAMAGED_HINT, damaged=True)


def unreadable(where: str | Path, err: BaseException) -> DatasetFormatError:
    """The error for a file that cannot be read at all (truncated, corrupt), naming it and the fix."""
    return DatasetFormatError(where, None, f"cannot be read ({type(err).__name__}: {err})", DAMAGED_HINT,
                              damaged=True)


def file_digest(path: str | Path, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """The hex digest (``sha256`` or ``md5``) of a file, read in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file, read in chunks."""
    return file_digest(path, "sha256", chunk)


def verify_checksum(path: str | Path, expected: str | None, how_to_get: str = "", algorithm: str = "sha256") -> None:
    """Raise :class:`ChecksumError` when ``expected`` is given and the file's digest differs."""
    if expected:
        actual = file_digest(path, algorithm)
        if actual != expected:
            raise ChecksumError(path, expected, actual, how_to_get, algorithm)


def verify_sha256(path: str | Path, expected: str | None, how_to_get: str = "") -> None:
    """Raise :class:`ChecksumError` when ``expected`` is given and differs."""
    verify_checksum(path, expected, how_to_get, "sha256")


def read_delimited(path: str | Path | IO, names: Sequence[str], **options) -> pd.DataFrame:
    """Read a delimited file with a fixed number of columns.

    Every column is read as text first; the columns in ``numeric`` are then
    converted, and the first value that is not a number raises
    :class:`DatasetFormatError` with its 1-based line number in the file. A
    line with the wrong number of fields raises likewise. An empty file
    (0 bytes) raises :class:`EmptyDatasetError`, and one that cannot be read
    (a truncated or corrupt ``.gz``) :class:`DatasetFormatError`, both naming
    the file. ``chunksize`` reads a
    large file in chunks (with a progress bar when ``progress_desc`` is set).
    The options are those of :func:`iter_delimited`, whose chunks this joins.
    """
    parts = list(iter_delimited(path, names, **options))
    if not parts:
        return pd.DataFrame(columns=list(names))
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


def iter_delimited(
    path: str | Path | IO,
    names: Sequence[str],
    sep: str = "\t",
    numeric: Sequence[str] = (),
    header_lines: int = 0,
    encoding: str = "utf-8",
    chunksize: int | None = None,
    progress_desc: str | None = None,
    engine: str = "c",
    label: str | None = None,
    required: Sequence[str] | None = None,
    bad_lines: str = "error",
    line_column: str | None = None,
) -> Iterator[pd.DataFrame]:
    """Yield a delimited file as checked chunks (one chunk when ``chunksize`` is ``None``).

    ``path`` may also be an open file (e.g. a member of a zip archive); errors
    then name ``label``. Blank lines are skipped without shifting the line
    numbers. ``required`` columns must not be empty (default: the last one,
    which also catches lines with too few fields). ``bad_lines="skip"`` drops
    malformed lines instead of raising and warns with their count and the
    first one's line number (lines with too many fields are dropped by the
    parser and not counted). ``line_column`` adds a column holding each row's
    line number in the file, for checks made after reading.
    """
    if bad_lines not in BAD_LINES:
        raise ValueError(f"bad_lines must be one of {BAD_LINES}, got {bad_lines!r}")
    where = label or (str(path) if isinstance(path, (str, Path)) else getattr(path, "name", "<stream>"))
    source = Path(path) if isinstance(path, str) else path
    if isinstance(source, Path):
        check_not_empty(source)
    required = list(names[-1:]) if required is None else list(required)
    # Numeric columns are parsed as numbers by the C parser (a value that is not one leaves the column as
    # text, converted below to find its line): about 15x faster than reading text and converting it.
    kw = dict(sep=sep, names=list(names), header=None, dtype={c: str for c in names if c not in numeric},
              skiprows=header_lines, encoding=encoding,
              engine=engine, keep_default_na=False, na_values=[""], quoting=3, skip_blank_lines=False,
              on_bad_lines="skip" if bad_lines == "skip" else "error")
    skipped = [0, None]  # count, first line
    first_line = header_lines + 1
    try:
        if chunksize:
            from rec_lib.utils import progress

            reader = pd.read_csv(source, chunksize=chunksize, **kw)
            for part in progress(reader, desc=progress_desc or Path(where).name, unit="chunk"):
                yield _convert(part, numeric, required, where, first_line, bad_lines, skipped, line_column)
                first_line += len(part)
        else:
            yield _convert(pd.read_csv(source, **kw), numeric, required, where, first_line, bad_lines, skipped,
                           line_column)
    except pd.errors.ParserError as err:
        m = _PANDAS_LINE.search(str(err))
        line = int(m.group(1)) if m else None  # pandas counts from the top of the file, skipped rows included
        raise DatasetFormatError(where, line, f"expected {len(names)} fields ({', '.join(names)}): {err}",
                                 skippable=True) from err
    except UnicodeDecodeError as err:
        raise DatasetFormatError(where, None, f"not {encoding} text ({err})", "is it the right file, unzipped?") from err
    except FileNotFoundError:
        raise
    except READ_ERRORS as err:  # e.g. a truncated or non-gzip .gz, a damaged zip member
        raise unreadable(where, err) from err
    if skipped[0]:
        warnings.warn(f"{where}: skipped {skipped[0]} malformed lines (the first at line {skipped[1]})", stacklevel=2)


def _convert(frame: pd.DataFrame, numeric: Sequence[str], required: Sequence[str], where: str, first_line: int,
             bad_lines: str = "error", skipped: list | None = None, line_column: str | None = None) -> pd.DataFrame:
    """Check one chunk; ``first_line`` is the file line of its first row (blank lines included)."""
    blank = frame.isna().all(axis=1).to_numpy()
    problems: list[tuple[np.ndarray, Callable[[int], str]]] = []  # (mask, message for a row)
    for col in required:  # pandas pads short lines with empty fields, read as NaN
        problems.append((frame[col].isna().to_numpy() & ~blank, lambda i, col=col: (
            f"too few fields, or an empty {col!r} field (expected {len(frame.columns)} fields)")))
    converted = {}
    for col in numeric:
        parsed = pd.api.types.is_numeric_dtype(frame[col]) and not pd.api.types.is_bool_dtype(frame[col])
        values = frame[col] if parsed else pd.to_numeric(frame[col].astype(str).where(frame[col].notna()),
                                                         errors="coerce")
        converted[col] = values
        problems.append((values.isna().to_numpy() & ~blank,
                         lambda i, col=col: f"column {col!r} holds {frame[col].iloc[i]!r}, not a number"))
    bad = np.zeros(len(frame), dtype=bool)
    for mask, _ in problems:
        bad |= mask
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        if bad_lines == "error":
            message = next(msg(i) for mask, msg in problems if mask[i])
            raise DatasetFormatError(where, first_line + i, message, skippable=True)
        if skipped is not None:
            skipped[1] = skipped[1] or first_line + i
            skipped[0] += int(bad.sum())
    keep = ~(blank | bad)
    text_cols = [c for c in frame.columns if c not in numeric]
    frame[text_cols] = frame[text_cols].fillna("")
    for col, values in converted.items():
        frame[col] = values
    if line_column:
        frame[line_column] = np.arange(first_line, first_line + len(frame), dtype=np.int64)
    return frame if keep.all() else frame[keep].reset_index(drop=True)
