"""MovieLens 1M, 10M and 25M from GroupLens (DiPS: 1M and 10M, explicit ratings; 2TS: 25M as interactions).

Each folder accepts the published zip as it is, or its extracted files:

========  ==============  =================================================================
name      folder          files (any one layout)
========  ==============  =================================================================
ml-1m     ``raw/ml-1m/``  ``ratings.dat`` | ``ml-1m/ratings.dat`` | ``ml-1m.zip``
ml-10m    ``raw/ml-10m/`` ``ratings.dat`` | ``ml-10M100K/ratings.dat`` | ``ml-10m.zip``
ml-25m    ``raw/ml-25m/`` ``ratings.csv`` | ``ml-25m/ratings.csv`` | ``ml-25m.zip``
========  ==============  =================================================================

Formats (GroupLens READMEs): 1M and 10M ``UserID::MovieID::Rating::Timestamp``
and ``MovieID::Title::Genres``; 25M ``ratings.csv`` with the header
``userId,movieId,rating,timestamp`` and a quoted CSV ``movies.csv``. Timestamps
are Unix seconds. The movie files are optional (titles, years and genres
become ``item_meta``).

Checksums: GroupLens publishes an md5 per zip (``<zip>.md5`` beside each
download), recorded here; the sha256 of ``ml-1m.zip`` and ``ml-25m.zip`` are
those TensorFlow Datasets records for the same GroupLens addresses (its
``url_checksums/movielens.txt``, with the same sizes, 5,917,549 and
261,978,986 bytes). ``load(name)`` checks them when the zip layout is used
(once per file: see :func:`rec_lib.data.registry.verify_files`;
``verify=False`` skips it); extracted files have no published checksum.

No preprocessing by default: DiPS uses the ratings as they are (every user
has at least 20 ratings); 2TS ignores the ratings (``implicit_threshold=0``
keeps every rating as an interaction with rating 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rec_lib.data.errors import DatasetFormatError
from rec_lib.data.io import iter_delimited
from rec_lib.data.loaders.base import DEFAULT_CHUNKSIZE, first_bad, open_member, register_loader
from rec_lib.data.schema import Interactions

__all__ = ["parse_movielens", "ML1M", "ML10M", "ML25M"]

# per dataset and layout: (ratings, movies); "archive.zip:member" reads inside the zip
_SOURCES = {
    "ml-1m": [("ratings.dat", "movies.dat"), ("ml-1m/ratings.dat", "ml-1m/movies.dat"),
              ("ml-1m.zip:ml-1m/ratings.dat", "ml-1m.zip:ml-1m/movies.dat")],
    "ml-10m": [("ratings.dat", "movies.dat"), ("ml-10M100K/ratings.dat", "ml-10M100K/movies.dat"),
               ("ml-10m.zip:ml-10M100K/ratings.dat", "ml-10m.zip:ml-10M100K/movies.dat")],
    "ml-25m": [("ratings.csv", "movies.csv"), ("ml-25m/ratings.csv", "ml-25m/movies.csv"),
               ("ml-25m.zip:ml-25m/ratings.csv", "ml-25m.zip:ml-25m/movies.csv")],
}
_DAT_NAMES = ["user", "sep1", "item", "sep2", "rating", "sep3", "timestamp"]  # "::" read as ":" + empty field
_NUMERIC = ["user", "item", "rating", "timestamp"]


def _member_exists(folder: Path, relative: str) -> bool:
    if ":" not in relative:
        return (folder / relative).exists()
    import zipfile

    archive, member = relative.split(":", 1)
    with zipfile.ZipFile(folder / archive) as zf:
        return member in zf.namelist()


def parse_movielens(folder: Path, layout: int = 0, *, dataset: str, chunksize: int = DEFAULT_CHUNKSIZE,
                    bad_lines: str = "error") -> Interactions:
    """Parse one MovieLens release (``dataset``: ml-1m, ml-10m or ml-25m) from ``folder``."""
    ratings_rel, movies_rel = _SOURCES[dataset][layout]
    csv = ratings_rel.endswith(".csv")
    fh, where = open_member(folder, ratings_rel)
    parts = []
    with fh:
        if csv:
            chunks = iter_delimited(fh, _NUMERIC, sep=",", numeric=_NUMERIC, header_lines=1, chunksize=chunksize,
                                    label=where, required=_NUMERIC, bad_lines=bad_lines, progress_desc=dataset)
        else:
            chunks = iter_delimited(fh, _DAT_NAMES, sep=":", numeric=_NUMERIC, chunksize=chunksize, label=where,
                                    required=_NUMERIC, bad_lines=bad_lines, line_column="_line",
                                    progress_desc=dataset)
        for chunk in chunks:
            if not csv:
                seps = (chunk[["sep1", "sep2", "sep3"]] != "").any(axis=1).to_numpy()
                if seps.any():
                    raise DatasetFormatError(where, first_bad(seps, chunk["_line"].to_numpy()),
                                             "expected UserID::MovieID::Rating::Timestamp")
            parts.append(pd.DataFrame({c: chunk[c].to_numpy() for c in _NUMERIC}))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=_NUMERIC)
    frame["user"], frame["item"] = frame["user"].astype(np.int64), frame["item"].astype(np.int64)
    meta = _movies(folder, movies_rel) if _member_exists(folder, movies_rel) else None
    return Interactions.from_raw(frame, name=dataset, item_meta=meta)


def _movies(folder: Path, relative: str) -> pd.DataFrame:
    """Titles, years and genres, indexed by the raw movie id."""
    if relative.endswith(".csv"):
        fh, where = open_member(folder, relative)
        with fh:
            try:
                f = pd.read_csv(fh, dtype=str, keep_default_na=False)
            except (pd.errors.ParserError, UnicodeDecodeError) as err:
                raise DatasetFormatError(where, None, f"not a movies.csv (movieId,title,genres): {err}") from err
        if list(f.columns) != ["movieId", "title", "genres"]:
            raise DatasetFormatError(where, 1, f"header {list(f.columns)} is not movieId,title,genres")
        f = f.rename(columns={"movieId": "item", "title": "title_year"})
    else:
        f = None
        for encoding in ("utf-8", "latin-1"):  # 1M is Latin-1; later releases are UTF-8
            fh, where = open_member(folder, relative)
            with fh:
                try:
                    f = next(iter_delimited(fh, ["item", "title_year", "genres"], sep="::", engine="python",
                                            encoding=encoding, label=where, required=["item", "title_year"]))
                    break
                except DatasetFormatError as err:
                    if "not utf-8" not in str(err):
                        raise
    item = pd.to_numeric(f["item"], errors="coerce")
    if item.isna().any():
        raise DatasetFormatError(where, first_bad(item.isna().to_numpy()) + (1 if relative.endswith(".csv") else 0),
                                 "the movie id is not a number")
    year = f["title_year"].str.extract(r"\((\d{4})\)\s*$")[0]
    out = pd.DataFrame({"title": f["title_year"].str.replace(r"\s*\(\d{4}\)\s*$", "", regex=True).to_numpy(),
                        "year": pd.to_numeric(year, errors="coerce").to_numpy(),
                        "genres": f["genres"].to_numpy()}, index=pd.Index(item.astype(np.int64), name="item"))
    return out


def _parser(dataset: str):
    def parse(folder: Path, layout: int = 0, *, chunksize: int = DEFAULT_CHUNKSIZE, bad_lines: str = "error"):
        return parse_movielens(folder, layout, dataset=dataset, chunksize=chunksize, bad_lines=bad_lines)

    parse.__doc__ = __doc__
    return parse


_HOW = ("download {zip} from {url} and put it (or its extracted files) in this folder; "
        "no account is needed; the licence forbids redistribution")

ML1M = register_loader(
    _parser("ml-1m"),
    name="ml-1m", folder="ml-1m",
    files=(("ratings.dat",), ("ml-1m/ratings.dat",), ("ml-1m.zip",)),
    url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
    description="MovieLens 1M: 1,000,209 ratings (1-5) of 3,706 movies by 6,040 users, 2000-2003.",
    licence="GroupLens research licence: no redistribution.",
    sha256={"ml-1m.zip": "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"},
    md5={"ml-1m.zip": "c4d9eecfca2ab87c1945afe126590906"},
    how_to_get=_HOW.format(zip="ml-1m.zip", url="https://grouplens.org/datasets/movielens/1m/"),
    paper="DiPS",
    checksums="md5 published by GroupLens beside the zip; sha256 of the zip as recorded by TensorFlow Datasets.",
)
ML10M = register_loader(
    _parser("ml-10m"),
    name="ml-10m", folder="ml-10m",
    files=(("ratings.dat",), ("ml-10M100K/ratings.dat",), ("ml-10m.zip",)),
    url="https://files.grouplens.org/datasets/movielens/ml-10m.zip",
    description="MovieLens 10M: 10,000,054 ratings (0.5-5 in half stars) of 10,681 movies by 71,567 users.",
    licence="GroupLens research licence: no redistribution.",
    md5={"ml-10m.zip": "ce571fd55effeba0271552578f2648bd"},
    how_to_get=_HOW.format(zip="ml-10m.zip", url="https://grouplens.org/datasets/movielens/10m/")
    + " (the zip extracts into ml-10M100K/)",
    paper="DiPS",
    checksums="md5 published by GroupLens beside the zip; no sha256 is published.",
)
ML25M = register_loader(
    _parser("ml-25m"),
    name="ml-25m", folder="ml-25m",
    files=(("ratings.csv",), ("ml-25m/ratings.csv",), ("ml-25m.zip",)),
    url="https://files.grouplens.org/datasets/movielens/ml-25m.zip",
    description="MovieLens 25M: 25,000,095 ratings of 59,047 movies by 162,541 users, 1995-2019.",
    licence="GroupLens research licence: no redistribution.",
    sha256={"ml-25m.zip": "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa"},
    md5={"ml-25m.zip": "6b51fb2759a8657d3bfcbfc42b592ada"},
    how_to_get=_HOW.format(zip="ml-25m.zip", url="https://grouplens.org/datasets/movielens/25m/"),
    paper="2TS",
    checksums="md5 published by GroupLens beside the zip; sha256 of the zip as recorded by TensorFlow Datasets.",
)
