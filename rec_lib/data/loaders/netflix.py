"""The Netflix Prize data in the layout of its Kaggle copy (DiPS, explicit ratings).

Folder ``raw/netflix/`` holds ``combined_data_1.txt`` ... ``combined_data_4.txt``
(and optionally ``movie_titles.csv``) from
https://www.kaggle.com/datasets/netflix-inc/netflix-prize-data (a Kaggle
account is needed). Each combined file is a sequence of blocks: a line
``MovieID:`` followed by lines ``CustomerID,Rating,Date`` (rating 1-5, date
``YYYY-MM-DD``). ``movie_titles.csv`` is Latin-1 ``MovieID,YearOfRelease,Title``
(titles may hold commas; the year may be ``NULL``). About 100 million ratings
of 17,770 movies by 480,189 users; dates become Unix seconds at midnight UTC.

Default preprocessing (DiPS): users with fewer than 20 ratings are dropped
(``min_user=20``). No checksum is published for these files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rec_lib.data.errors import DatasetFormatError
from rec_lib.data.io import iter_delimited
from rec_lib.data.loaders.base import (DEFAULT_CHUNKSIZE, NO_PUBLISHED_CHECKSUM, first_bad, register_loader,
                                       to_unix_seconds, joined)
from rec_lib.data.schema import Interactions

__all__ = ["parse_netflix", "NETFLIX", "NETFLIX_FILES"]

NETFLIX_FILES = tuple(f"combined_data_{i}.txt" for i in range(1, 5))
_MOVIE_ID = r"\d+:"
_STARS = ("1", "2", "3", "4", "5")
_DATE = r"\d{4}-\d{2}-\d{2}"


def parse_netflix(folder: Path, layout: int = 0, *, chunksize: int = DEFAULT_CHUNKSIZE,
                  bad_lines: str = "error") -> Interactions:
    """Parse the four ``combined_data_*.txt`` files (see the module docstring)."""
    parts = []
    for name in NETFLIX_FILES:
        path = folder / name
        movie = None  # the movie of the block that continues into the next chunk
        for chunk in iter_delimited(path, ["a", "rating", "date"], sep=",", chunksize=chunksize, required=["a"],
                                    line_column="_line", bad_lines=bad_lines, progress_desc=name):
            lines = chunk["_line"].to_numpy()
            a, rating, date = chunk["a"], chunk["rating"], chunk["date"]
            is_movie = (a.str.fullmatch(_MOVIE_ID) & (rating == "") & (date == "")).to_numpy(bool)
            is_rating = (a.str.fullmatch(r"\d+") & rating.isin(_STARS) & date.str.fullmatch(_DATE)).to_numpy(bool)
            bad = ~(is_movie | is_rating)
            if bad.any():
                if bad_lines == "error":
                    i = int(np.flatnonzero(bad)[0])
                    text = ",".join(v for v in (a.iloc[i], rating.iloc[i], date.iloc[i]) if v)
                    raise DatasetFormatError(path, int(lines[i]),
                                             f"{text!r} is neither 'MovieID:' nor 'CustomerID,Rating,Date'")
                is_rating = is_rating & ~bad
            ids = pd.Series(np.where(is_movie, a.str[:-1], None), dtype=object).ffill()
            if movie is not None:
                ids = ids.fillna(movie)
            if is_rating.any() and ids[is_rating].isna().any():
                raise DatasetFormatError(path, first_bad(is_rating & ids.isna().to_numpy(), lines),
                                         "a rating line before the first 'MovieID:' line")
            if len(ids) and pd.notna(ids.iloc[-1]):
                movie = ids.iloc[-1]
            if not is_rating.any():
                continue
            kept = chunk[is_rating]
            parts.append(pd.DataFrame({
                "user": kept["a"].astype(np.int64).to_numpy(),
                "item": ids[is_rating].astype(np.int64).to_numpy(),
                "rating": kept["rating"].astype(np.float32).to_numpy(),
                "timestamp": to_unix_seconds(kept["date"], "%Y-%m-%d", path, lines[is_rating], "the date"),
            }))
    frame = joined(parts, folder)
    titles = folder / "movie_titles.csv"
    return Interactions.from_raw(frame, name="netflix", item_meta=_titles(titles) if titles.exists() else None)


def _titles(path: Path) -> pd.DataFrame:
    f = iter_delimited(path, ["line"], sep="\t", encoding="latin-1", line_column="_line")
    f = next(f)
    fields = f["line"].str.split(",", n=2, expand=True)
    if fields.shape[1] < 3 or fields[2].isna().any():
        bad = fields[2].isna().to_numpy() if fields.shape[1] == 3 else np.ones(len(f), bool)
        raise DatasetFormatError(path, first_bad(bad, f["_line"].to_numpy()), "expected MovieID,YearOfRelease,Title")
    item = pd.to_numeric(fields[0], errors="coerce")
    if item.isna().any():
        raise DatasetFormatError(path, first_bad(item.isna().to_numpy(), f["_line"].to_numpy()),
                                 "the movie id is not a number")
    return pd.DataFrame({"title": fields[2].to_numpy(), "year": pd.to_numeric(fields[1], errors="coerce").to_numpy()},
                        index=pd.Index(item.astype(np.int64).to_numpy(), name="item"))


NETFLIX = register_loader(
    parse_netflix,
    defaults={"min_user": 20},
    name="netflix", folder="netflix",
    files=(NETFLIX_FILES,),
    url="https://www.kaggle.com/datasets/netflix-inc/netflix-prize-data",
    description="Netflix Prize: about 100M ratings (1-5) of 17,770 movies by 480,189 users, 1998-2005.",
    licence="Netflix Prize rules: research use; redistribution not allowed.",
    how_to_get=("download the Kaggle dataset netflix-inc/netflix-prize-data (free account), unzip it and put "
                "combined_data_1.txt ... combined_data_4.txt (and movie_titles.csv) in this folder"),
    paper="DiPS",
    checksums=NO_PUBLISHED_CHECKSUM.replace("the source publishes", "Kaggle publishes"),
)
