"""GoodReads user-book interactions (Wan and McAuley 2018; Sakhi et al. use them).

Folder ``raw/goodreads/`` holds one of the UCSD Book Graph files
(https://mengtingwan.github.io/data/goodreads.html):

1. ``goodreads_interactions.csv`` (4.1 GB, 229M rows), header
   ``user_id,book_id,is_read,rating,is_reviewed`` with integer ids (mapped to
   the site's ids by ``user_id_map.csv`` / ``book_id_map.csv``, not needed
   here); it has no dates, so the file order stands in for time;
2. ``goodreads_interactions_dedup.json.gz`` (11 GB), one JSON object a line
   with ``user_id``, ``book_id``, ``is_read``, ``rating`` and ``date_added``
   (``Thu Dec 17 11:44:17 -0800 2015``), which becomes the timestamp.

Options: ``is_read`` (default ``True``: keep the books a user has read, the
interactions the paper's user-book matrix is built from; ``False`` keeps the
shelved-but-unread ones too), ``min_rating`` (default ``None``; ratings are
0-5, 0 meaning not rated). The rating column holds the 0-5 rating. No
checksum is published.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rec_lib.data.errors import DatasetFormatError
from rec_lib.data.io import iter_delimited
from rec_lib.data.loaders.base import (DEFAULT_CHUNKSIZE, NO_PUBLISHED_CHECKSUM, first_bad, iter_json_lines,
                                       register_loader, require, to_unix_seconds, joined)
from rec_lib.data.schema import Interactions

__all__ = ["parse_goodreads", "GOODREADS"]

_LAYOUTS = ("goodreads_interactions.csv", "goodreads_interactions_dedup.json.gz")
_CSV = ["user", "item", "is_read", "rating", "is_reviewed"]
_FIELDS = {"user_id": "string", "book_id": "string", "is_read": "bool", "rating": "int64", "date_added": "string"}
DATE_FORMAT = "%a %b %d %H:%M:%S %z %Y"


def parse_goodreads(folder: Path, layout: int = 0, *, is_read: bool = True, min_rating: int | None = None,
                    chunksize: int = DEFAULT_CHUNKSIZE, bad_lines: str = "error") -> Interactions:
    """Parse the GoodReads interactions found in ``folder`` (see the module docstring)."""
    if not isinstance(is_read, bool):
        raise ValueError(f"load('goodreads'): is_read must be True or False, got {is_read!r}")
    if min_rating is not None and (isinstance(min_rating, bool) or not isinstance(min_rating, int)):
        raise ValueError(f"load('goodreads'): min_rating must be an integer 0-5 or None, got {min_rating!r}")
    path = folder / _LAYOUTS[layout]
    parts = []
    if layout == 0:
        for chunk in iter_delimited(path, _CSV, sep=",", numeric=_CSV, header_lines=1, chunksize=chunksize,
                                    required=_CSV, bad_lines=bad_lines, line_column="_line",
                                    progress_desc="goodreads"):
            flags = chunk["is_read"].to_numpy()
            not_flag = ~np.isin(flags, (0, 1))
            if not_flag.any():
                raise DatasetFormatError(path, first_bad(not_flag, chunk["_line"].to_numpy()), "is_read must be 0 or 1")
            keep = _keep(flags == 1, chunk["rating"].to_numpy(), is_read, min_rating)
            kept = chunk[keep]
            parts.append(pd.DataFrame({"user": kept["user"].to_numpy(np.int64), "item": kept["item"].to_numpy(np.int64),
                                       "rating": kept["rating"].to_numpy(np.float32)}))
    else:
        for chunk in iter_json_lines(path, _FIELDS, chunksize=min(chunksize, 500_000), bad_lines=bad_lines,
                                     progress_desc="goodreads"):
            require(chunk, list(_FIELDS), path)
            kept = chunk[_keep(chunk["is_read"].to_numpy(bool), chunk["rating"].to_numpy(), is_read, min_rating)]
            parts.append(pd.DataFrame({
                "user": kept["user_id"].to_numpy(), "item": kept["book_id"].to_numpy(),
                "rating": kept["rating"].to_numpy(np.float32),
                "timestamp": to_unix_seconds(kept["date_added"], DATE_FORMAT, path, kept["_line"].to_numpy(),
                                             "date_added"),
            }))
    return Interactions.from_raw(joined(parts, path), name="goodreads")


def _keep(read: np.ndarray, rating: np.ndarray, is_read: bool, min_rating: int | None) -> np.ndarray:
    keep = np.asarray(read, dtype=bool) if is_read else np.ones(len(rating), dtype=bool)
    if min_rating is not None:
        keep = keep & (np.asarray(rating) >= min_rating)
    return keep


GOODREADS = register_loader(
    parse_goodreads,
    name="goodreads", folder="goodreads",
    files=tuple((f,) for f in _LAYOUTS),
    url="https://mengtingwan.github.io/data/goodreads.html",
    description="GoodReads shelves: 229M user-book interactions of 876K users and 2.4M books, scraped in 2017.",
    licence="Academic, non-commercial use; cite Wan and McAuley (RecSys 2018).",
    how_to_get=("download goodreads_interactions.csv (or goodreads_interactions_dedup.json.gz) from the UCSD Book "
                "Graph page https://mengtingwan.github.io/data/goodreads.html into this folder"),
    paper="Sakhi et al. (fast offline policy learning)",
    checksums=NO_PUBLISHED_CHECKSUM,
)
