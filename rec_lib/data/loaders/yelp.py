"""Yelp reviews from the Yelp Open Dataset (SML, MeLON).

Folder ``raw/yelp/`` holds the review file of the Yelp dataset
(https://www.yelp.com/dataset; also on Kaggle as yelp-dataset/yelp-dataset):
``yelp_academic_dataset_review.json`` (current name) or ``review.json`` (the
2019 challenge tarball). One JSON object a line; the fields read are
``user_id``, ``business_id``, ``stars`` (1-5) and ``date`` (``2016-03-09`` or
``2016-03-09 00:00:00``, read as UTC), which becomes Unix seconds.

Default preprocessing (SML): "remove the inactive users with less than 10
interactions and unpopular items with less than 20 interactions", applied
until both hold (``user_core=10, item_core=20``); the stars stay as ratings
(``implicit_threshold=0`` turns them into interactions of rating 1). Yelp
replaces the dataset from year to year, so no checksum can be recorded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rec_lib.data.loaders.base import DEFAULT_CHUNKSIZE, iter_json_lines, register_loader, require, to_unix_seconds, joined
from rec_lib.data.schema import Interactions

__all__ = ["parse_yelp", "YELP"]

_LAYOUTS = ("yelp_academic_dataset_review.json", "review.json")
_FIELDS = {"user_id": "string", "business_id": "string", "stars": "float64", "date": "string"}


def parse_yelp(folder: Path, layout: int = 0, *, chunksize: int = DEFAULT_CHUNKSIZE,
               bad_lines: str = "error") -> Interactions:
    """Parse the Yelp review file found in ``folder`` (see the module docstring)."""
    path = folder / _LAYOUTS[layout]
    parts = []
    for chunk in iter_json_lines(path, _FIELDS, chunksize=min(chunksize, 500_000), bad_lines=bad_lines,
                                 progress_desc="yelp"):
        require(chunk, list(_FIELDS), path)
        parts.append(pd.DataFrame({
            "user": chunk["user_id"].to_numpy(), "item": chunk["business_id"].to_numpy(),
            "rating": chunk["stars"].to_numpy(np.float32),
            "timestamp": to_unix_seconds(chunk["date"], "ISO8601", path, chunk["_line"].to_numpy(), "the date"),
        }))
    return Interactions.from_raw(joined(parts, path), name="yelp")


YELP = register_loader(
    parse_yelp,
    defaults={"user_core": 10, "item_core": 20},
    name="yelp", folder="yelp",
    files=tuple((f,) for f in _LAYOUTS),
    url="https://www.yelp.com/dataset",
    description="Yelp Open Dataset reviews: about 7-8M reviews of businesses, 2004 onwards.",
    licence="Yelp Dataset Terms of Use: academic, non-commercial use; no redistribution.",
    how_to_get=("download the Yelp Open Dataset (https://www.yelp.com/dataset, after accepting its terms) and "
                "put yelp_academic_dataset_review.json (or the 2019 review.json) in this folder"),
    paper="SML, MeLON",
    checksums="none: Yelp replaces the dataset from year to year and publishes no digest.",
)
