"""Foursquare global-scale check-ins by Dingqi Yang (DiPS, implicit).

DiPS uses the check-ins "from Apr. 2012 to Jan. 2014" (Yang et al. 2019): the
WWW 2019 release ``dataset_WWW2019.zip`` whose ``dataset_WWW_Checkins_anonymized.txt``
holds 22,809,624 check-ins by 114,324 users at 3,820,891 venues. The earlier
TIST 2015 release (``dataset_TIST2015_Checkins.txt``, Apr. 2012 to Sep. 2013)
has the same format and is accepted too. Folder ``raw/foursquare/`` may hold
the text file itself or the folder the zip extracts into.

Format: tab-separated ``user_id  venue_id  UTC time  timezone offset (minutes)``
with times like ``Tue Apr 03 18:00:07 +0000 2012``; times become Unix seconds.

Default preprocessing (DiPS): the 20-core (``user_core=20, item_core=20``),
counting repeated check-ins (``drop_repeats=True`` counts distinct venues).
No checksum is published.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rec_lib.data.io import iter_delimited
from rec_lib.data.loaders.base import DEFAULT_CHUNKSIZE, NO_PUBLISHED_CHECKSUM, register_loader, to_unix_seconds, joined
from rec_lib.data.schema import Interactions

__all__ = ["parse_foursquare", "FOURSQUARE"]

_LAYOUTS = ("dataset_WWW_Checkins_anonymized.txt", "dataset_WWW2019/dataset_WWW_Checkins_anonymized.txt",
            "dataset_TIST2015_Checkins.txt", "dataset_TIST2015/dataset_TIST2015_Checkins.txt")
_NAMES = ["user", "item", "utc_time", "offset"]
TIME_FORMAT = "%a %b %d %H:%M:%S %z %Y"


def parse_foursquare(folder: Path, layout: int = 0, *, chunksize: int = DEFAULT_CHUNKSIZE,
                     bad_lines: str = "error") -> Interactions:
    """Parse the check-ins file found in ``folder`` (see the module docstring)."""
    path = folder / _LAYOUTS[layout]
    parts = []
    for chunk in iter_delimited(path, _NAMES, numeric=["offset"], chunksize=chunksize, required=_NAMES,
                                bad_lines=bad_lines, line_column="_line", progress_desc="foursquare"):
        parts.append(pd.DataFrame({
            "user": chunk["user"].to_numpy(), "item": chunk["item"].to_numpy(),
            "timestamp": to_unix_seconds(chunk["utc_time"], TIME_FORMAT, path, chunk["_line"].to_numpy(),
                                         "the check-in time"),
        }))
    frame = joined(parts, path)
    frame["rating"] = np.float32(1.0)
    return Interactions.from_raw(frame, name="foursquare")


FOURSQUARE = register_loader(
    parse_foursquare,
    defaults={"user_core": 20, "item_core": 20},
    name="foursquare", folder="foursquare",
    files=tuple((f,) for f in _LAYOUTS),
    url="https://sites.google.com/site/yangdingqi/home/foursquare-dataset",
    description="Foursquare global check-ins: 22.8M check-ins, 114K users, 3.8M venues, Apr 2012 - Jan 2014.",
    licence="Research use; cite Yang et al. (WWW 2019 / TIST 2015).",
    how_to_get=("download dataset_WWW2019.zip (\"Global-scale Check-in Dataset with User Social Networks\") "
                "from Dingqi Yang's page and unzip it here"),
    paper="DiPS",
    checksums=NO_PUBLISHED_CHECKSUM,
)
