"""MovieLens-100K, the default real dataset (943 users, 1682 movies, 100,000 ratings).

Two layouts are accepted in ``data/raw/ml-100k/``:

1. RecBole's atomic files ``ml-100k.inter`` (+ ``ml-100k.item`` with titles),
   taken from the ``recbole`` 1.2.1 wheel by ``python -m rec_lib fetch-data``
   (the setup step; the wheel is downloaded from PyPI, never installed).
2. GroupLens's original ``u.data`` (+ ``u.item``), for readers who have
   ``ml-100k.zip`` from https://grouplens.org/datasets/movielens/100k/.

The licence of MovieLens forbids redistribution, so the data is never committed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rec_lib.data.errors import DatasetFormatError
from rec_lib.data.io import read_delimited
from rec_lib.data.registry import DatasetSpec, _layouts, register
from rec_lib.data.schema import Interactions

__all__ = ["load_ml100k", "ML100K"]

RECBOLE_VERSION = "1.2.1"
RECBOLE_WHEEL = f"recbole-{RECBOLE_VERSION}-py3-none-any.whl"
RECBOLE_WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
ML100K_SHA256 = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
}
_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
           "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
           "Thriller", "War", "Western"]


def load_ml100k(folder: Path, layout: int = 0) -> Interactions:
    """Parse ML-100K from ``folder`` (layout 0: RecBole files, 1: GroupLens files)."""
    path = folder / ("ml-100k.inter" if layout == 0 else "u.data")
    inter = read_delimited(path, ["user", "item", "rating", "timestamp"], numeric=["rating", "timestamp"],
                           header_lines=1 if layout == 0 else 0, line_column="_line")
    meta = _recbole_items(folder / "ml-100k.item") if layout == 0 else _grouplens_items(folder / "u.item")
    for col in ("user", "item"):
        inter[col] = _integer_ids(inter[col], inter["_line"], path, col)
    return Interactions.from_raw(inter.drop(columns="_line"), name="ml-100k", item_meta=meta)


def _integer_ids(values: pd.Series, lines: pd.Series, path: Path, column: str) -> pd.Series:
    """Ids read as text -> integers; the first that is not an integer raises naming the file and its line."""
    text = values.astype(str).str.strip()
    ok = text.str.fullmatch(r"[+-]?\d+").fillna(False).to_numpy(bool)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise DatasetFormatError(path, int(lines.iloc[i]), f"the {column} id {values.iloc[i]!r} is not an integer",
                                 skippable=False)
    return text.astype(np.int64)


def _recbole_items(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    f = read_delimited(path, ["item", "title", "year", "genres"], header_lines=1, line_column="_line")
    f["item"] = _integer_ids(f["item"], f.pop("_line"), path, "item")
    f["year"] = pd.to_numeric(f["year"], errors="coerce")
    return f.set_index("item")


def _grouplens_items(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    names = ["item", "title_year", "release", "video", "url"] + _GENRES
    f = read_delimited(path, names, sep="|", encoding="latin-1", numeric=["item"] + _GENRES)
    out = pd.DataFrame({"item": f["item"].astype(int)})
    out["title"] = f["title_year"].str.replace(r"\s*\(\d{4}\)\s*$", "", regex=True)
    out["year"] = pd.to_numeric(f["title_year"].str.extract(r"\((\d{4})\)\s*$")[0], errors="coerce")
    genre_flags = f[_GENRES].to_numpy().astype(bool)
    out["genres"] = [" ".join(g for g, on in zip(_GENRES, row) if on) for row in genre_flags]
    return out.set_index("item")


ML100K = register(
    DatasetSpec(
        name="ml-100k",
        folder="ml-100k",
        files=_layouts(("ml-100k.inter",), ("u.data",)),
        loader=load_ml100k,
        url="https://grouplens.org/datasets/movielens/100k/",
        description="MovieLens-100K: 100,000 ratings (1-5) of 1,682 movies by 943 users, with timestamps.",
        licence="GroupLens research licence: no redistribution (so it is fetched, never committed).",
        sha256=ML100K_SHA256,
        how_to_get=(
            "run `python -m rec_lib fetch-data` (or `make data`), which takes it from the "
            f"recbole {RECBOLE_VERSION} wheel on PyPI; or unzip GroupLens's ml-100k.zip "
            "so that u.data (and u.item) sit in this folder"
        ),
        paper="all chapters",
    )
)
