"""Twitch live-streaming interactions (Rappaz, McAuley and Aberer 2021; Sakhi et al. use it).

Folder ``raw/twitch/`` holds ``full_a.csv.gz`` (or ``full_a.csv``; 124M
interactions, 15.5M users, 465K streamers) or the 100K-user sample
``100k_a.csv`` (3M interactions), from
https://cseweb.ucsd.edu/~jmcauley/datasets.html#twitch. No header; columns
``user_id, stream_id, streamer_username, time_start, time_stop``, the times
counted in 10-minute crawl rounds over 43 days. The item is the streamer
(the paper's user-streamer matrix); the timestamp is ``time_start`` x 600
seconds from the start of the crawl. When both files are present the full one
is read. No preprocessing by default; no checksum is published.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rec_lib.data.errors import DatasetFormatError
from rec_lib.data.io import iter_delimited
from rec_lib.data.loaders.base import DEFAULT_CHUNKSIZE, NO_PUBLISHED_CHECKSUM, first_bad, register_loader, joined
from rec_lib.data.schema import Interactions

__all__ = ["parse_twitch", "TWITCH", "ROUND_SECONDS"]

_LAYOUTS = ("full_a.csv.gz", "full_a.csv", "100k_a.csv")
_NAMES = ["user", "stream", "streamer", "start", "stop"]
ROUND_SECONDS = 600


def parse_twitch(folder: Path, layout: int = 0, *, chunksize: int = DEFAULT_CHUNKSIZE,
                 bad_lines: str = "error") -> Interactions:
    """Parse the Twitch file found in ``folder`` into (user, streamer) interactions."""
    path = folder / _LAYOUTS[layout]
    parts = []
    for chunk in iter_delimited(path, _NAMES, sep=",", numeric=["user", "stream", "start", "stop"],
                                chunksize=chunksize, required=_NAMES, bad_lines=bad_lines, line_column="_line",
                                progress_desc="twitch"):
        backwards = (chunk["stop"] < chunk["start"]).to_numpy()
        if backwards.any():
            raise DatasetFormatError(path, first_bad(backwards, chunk["_line"].to_numpy()),
                                     "time_stop is before time_start")
        parts.append(pd.DataFrame({"user": chunk["user"].to_numpy(np.int64), "item": chunk["streamer"].to_numpy(),
                                   "timestamp": chunk["start"].to_numpy(np.int64) * ROUND_SECONDS}))
    frame = joined(parts, path)
    frame["rating"] = np.float32(1.0)
    return Interactions.from_raw(frame, name="twitch")


TWITCH = register_loader(
    parse_twitch,
    name="twitch", folder="twitch",
    files=tuple((f,) for f in _LAYOUTS),
    url="https://cseweb.ucsd.edu/~jmcauley/datasets.html#twitch",
    description="Twitch: users seen in streamers' chats over 43 days (full: 124M rows; sample: 3M rows).",
    licence="Research use; cite Rappaz, McAuley and Aberer (RecSys 2021).",
    how_to_get=("download full_a.csv.gz (or the sample 100k_a.csv) linked from "
                "https://cseweb.ucsd.edu/~jmcauley/datasets.html#twitch into this folder"),
    paper="Sakhi et al. (fast offline policy learning)",
    checksums=NO_PUBLISHED_CHECKSUM,
)
