"""Amazon Books ratings from Julian McAuley's group (DiPS; MeLON uses the 2018 release).

Folder ``raw/amazon-book/`` accepts one of (first found wins):

1. ``ratings_Books.csv``: the 2014 release's "ratings only" file (He and
   McAuley 2016), no header, ``user,item,rating,timestamp``;
2. ``Books.csv``: the 2018 release's ratings-only file (Ni, Li and McAuley
   2019), no header, ``item,user,rating,timestamp`` (note the order);
3. ``Books_5.json.gz`` or ``reviews_Books_5.json.gz``: the 2018 / 2014 5-core
   review files, one JSON object a line with ``reviewerID``, ``asin``,
   ``overall`` and ``unixReviewTime``.

Ratings are whole stars 1-5; timestamps are Unix seconds (days). Default
preprocessing (DiPS): keep ratings above 3.5 as implicit positives
(``implicit_threshold=3.5``: ``rating >= 3.5``, the same as ``> 3.5`` on whole
stars) and take the 20-core (``user_core=20, item_core=20``). The files carry
no published checksum.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rec_lib.data.io import iter_delimited
from rec_lib.data.loaders.base import (DEFAULT_CHUNKSIZE, NO_PUBLISHED_CHECKSUM, iter_json_lines, register_loader,
                                       require, joined)
from rec_lib.data.schema import Interactions

__all__ = ["parse_amazon_books", "AMAZON_BOOK"]

_LAYOUTS = ("ratings_Books.csv", "Books.csv", "Books_5.json.gz", "reviews_Books_5.json.gz")
_COLUMNS = {"ratings_Books.csv": ["user", "item", "rating", "timestamp"],
            "Books.csv": ["item", "user", "rating", "timestamp"]}
_JSON_FIELDS = {"reviewerID": "string", "asin": "string", "overall": "float64", "unixReviewTime": "int64"}


def parse_amazon_books(folder: Path, layout: int = 0, *, chunksize: int = DEFAULT_CHUNKSIZE,
                       bad_lines: str = "error") -> Interactions:
    """Parse the Amazon Books ratings found in ``folder`` (see the module docstring)."""
    name = _LAYOUTS[layout]
    path = folder / name
    parts = []
    if name.endswith(".csv"):
        for chunk in iter_delimited(path, _COLUMNS[name], sep=",", numeric=["rating", "timestamp"],
                                    chunksize=chunksize, required=_COLUMNS[name], bad_lines=bad_lines,
                                    progress_desc="amazon-book"):
            parts.append(chunk[["user", "item", "rating", "timestamp"]])
    else:
        for chunk in iter_json_lines(path, _JSON_FIELDS, chunksize=min(chunksize, 500_000),
                                     progress_desc="amazon-book", bad_lines=bad_lines):
            require(chunk, list(_JSON_FIELDS), path)
            parts.append(pd.DataFrame({"user": chunk["reviewerID"].to_numpy(), "item": chunk["asin"].to_numpy(),
                                       "rating": chunk["overall"].to_numpy(np.float32),
                                       "timestamp": chunk["unixReviewTime"].to_numpy(np.int64)}))
    return Interactions.from_raw(joined(parts, path), name="amazon-book")


AMAZON_BOOK = register_loader(
    parse_amazon_books,
    defaults={"implicit_threshold": 3.5, "user_core": 20, "item_core": 20},
    name="amazon-book", folder="amazon-book",
    files=tuple((f,) for f in _LAYOUTS),
    url="https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/links.html",
    description="Amazon Books ratings: 22.5M ratings (2014 release) or 51.3M (2018), 1-5 stars, 1996-2018.",
    licence="Research use; cite the dataset papers (He and McAuley 2016; Ni, Li and McAuley 2019).",
    how_to_get=("download ratings_Books.csv (2014, https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/links.html) "
                "or the 2018 Books.csv / Books_5.json.gz "
                "(https://cseweb.ucsd.edu/~jmcauley/datasets/amazon_v2/) into this folder"),
    paper="DiPS, MeLON",
    checksums=NO_PUBLISHED_CHECKSUM,
)
