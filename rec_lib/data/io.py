"""Reading delimited dataset files with errors that name the file and the line."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from rec_lib.data.errors import ChecksumError, DatasetFormatError

__all__ = ["read_delimited", "sha256_of", "verify_sha256"]

_PANDAS_LINE = re.compile(r"line (\d+)")


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: str | Path, expected: str | None, how_to_get: str = "") -> None:
    """Raise :class:`ChecksumError` when ``expected`` is given and differs."""
    if expected:
        actual = sha256_of(path)
        if actual != expected:
            raise ChecksumError(path, expected, actual, how_to_get)


def read_delimited(
    path: str | Path,
    names: Sequence[str],
    sep: str = "\t",
    numeric: Sequence[str] = (),
    header_lines: int = 0,
    encoding: str = "utf-8",
    chunksize: int | None = None,
    progress_desc: str | None = None,
    engine: str = "c",
) -> pd.DataFrame:
    """Read a delimited file with a fixed number of columns.

    Every column is read as text first; the columns in ``numeric`` are then
    converted, and the first value that is not a number raises
    :class:`DatasetFormatError` with its 1-based line number in the file. A
    line with the wrong number of fields raises likewise. ``chunksize`` reads a
    large file in chunks (with a progress bar when ``progress_desc`` is set).
    """
    path = Path(path)
    kw = dict(sep=sep, names=list(names), header=None, dtype=str, skiprows=header_lines,
              encoding=encoding, engine=engine, keep_default_na=False, na_values=[""], quoting=3)
    try:
        if chunksize:
            from rec_lib.utils import progress

            reader = pd.read_csv(path, chunksize=chunksize, **kw)
            parts, first_line = [], header_lines + 1
            for part in progress(reader, desc=progress_desc or path.name, unit="chunk"):
                parts.append(_convert(part, numeric, path, first_line))
                first_line += len(part)
            frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(names))
            return frame
        frame = pd.read_csv(path, **kw)
    except pd.errors.ParserError as err:
        m = _PANDAS_LINE.search(str(err))
        line = int(m.group(1)) + header_lines if m else None
        raise DatasetFormatError(path, line, f"expected {len(names)} fields ({', '.join(names)}): {err}") from err
    except UnicodeDecodeError as err:
        raise DatasetFormatError(path, None, f"not {encoding} text ({err})", "is it the right file, unzipped?") from err
    return _convert(frame, numeric, path, header_lines + 1)


def _convert(frame: pd.DataFrame, numeric: Sequence[str], path: Path, first_line: int) -> pd.DataFrame:
    # pandas pads short lines with empty fields, read here as NaN: the last field must be present.
    if len(frame.columns) and frame[frame.columns[-1]].isna().any():
        bad = int(np.flatnonzero(frame[frame.columns[-1]].isna().to_numpy())[0])
        raise DatasetFormatError(path, first_line + bad, f"too few fields, or an empty last field (expected {len(frame.columns)})")
    text_cols = [c for c in frame.columns if c not in numeric]
    frame[text_cols] = frame[text_cols].fillna("")
    for col in numeric:
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = values.isna().to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DatasetFormatError(path, first_line + i, f"column {col!r} holds {frame[col].iloc[i]!r}, not a number")
        frame[col] = values
    return frame
