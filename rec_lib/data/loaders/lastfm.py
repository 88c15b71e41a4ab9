"""Last.fm 1K users' listening histories (Celma 2010; 2TS).

Folder ``raw/lastfm-1k/`` holds one of:

1. ``userid-timestamp-artid-artname-traid-traname.tsv`` (or the folder
   ``lastfm-dataset-1K/`` that ``lastfm-dataset-1K.tar.gz`` extracts into),
   from http://ocelma.net/MusicRecommendationDataset/lastfm-1K.html: 19,150,868
   plays of 992 users, tab-separated ``userid, timestamp (2009-05-04T23:08:57Z),
   artist MBID, artist name, track MBID, track name``; the MBIDs are often
   empty. Its README publishes the file's md5, recorded here.
2. ``lastfm.csv``: the version JODIE (Kumar et al. 2019) made of it and the one
   2TS's Table 2 matches (1,000 users, 1,000 items, 1,293,103 interactions),
   from http://snap.stanford.edu/jodie/lastfm.csv: a header, then
   ``user_id,item_id,timestamp,state_label,features...``.

Options for the Celma file: ``item`` (``"track"``, default: the track MBID, or
artist and track name when it is missing; ``"artist"``), ``top_users`` and
``top_items`` (keep only the N most active users / most played items, ties
broken by first appearance; e.g. 1000 and 1000 to approach JODIE's cut).
The rating is 1 per play; no preprocessing by default.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rec_lib.data.errors import DatasetFormatError
from rec_lib.data.io import iter_delimited
from rec_lib.data.loaders.base import DEFAULT_CHUNKSIZE, check_choice, first_bad, register_loader, to_unix_seconds, joined
from rec_lib.data.schema import Interactions

__all__ = ["parse_lastfm", "LASTFM_1K", "top_n"]

TSV = "userid-timestamp-artid-artname-traid-traname.tsv"
_LAYOUTS = (TSV, f"lastfm-dataset-1K/{TSV}", "lastfm.csv")
_NAMES = ["user", "time", "artist_id", "artist", "track_id", "track"]
TSV_MD5 = "64747b21563e3d2aa95751e0ddc46b68"


def parse_lastfm(folder: Path, layout: int = 0, *, item: str = "track", top_users: int | None = None,
                 top_items: int | None = None, chunksize: int = DEFAULT_CHUNKSIZE,
                 bad_lines: str = "error") -> Interactions:
    """Parse the Last.fm 1K plays found in ``folder`` (see the module docstring)."""
    check_choice("lastfm-1k", "item", item, ("track", "artist"))
    for key, value in (("top_users", top_users), ("top_items", top_items)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"load('lastfm-1k'): {key} must be an integer >= 1 or None, got {value!r}")
    path = folder / _LAYOUTS[layout]
    frame = _jodie(path, bad_lines) if layout == 2 else _celma(path, item, chunksize, bad_lines)
    keep = np.ones(len(frame), dtype=bool)
    if top_users is not None:
        keep &= top_n(frame["user"].to_numpy(), top_users)
    if top_items is not None:
        keep &= top_n(frame["item"].to_numpy(), top_items)
    frame = frame[keep] if not keep.all() else frame
    frame["rating"] = np.float32(1.0)
    return Interactions.from_raw(frame, name="lastfm-1k")


def top_n(keys: np.ndarray, n: int) -> np.ndarray:
    """Mask of the rows whose key is among the ``n`` most frequent (ties: first appearance first)."""
    codes, uniques = pd.factorize(keys)
    counts = np.bincount(codes, minlength=len(uniques))
    order = np.lexsort((np.arange(len(counts)), -counts))
    chosen = np.zeros(len(counts), dtype=bool)
    chosen[order[:n]] = True
    return chosen[codes]


def _celma(path: Path, item: str, chunksize: int, bad_lines: str) -> pd.DataFrame:
    parts = []
    for chunk in iter_delimited(path, _NAMES, chunksize=chunksize, required=["user", "time"], bad_lines=bad_lines,
                                line_column="_line", progress_desc="lastfm-1k"):
        if item == "track":
            key = chunk["track_id"].where(chunk["track_id"] != "", chunk["artist"] + "\x1f" + chunk["track"])
        else:
            key = chunk["artist_id"].where(chunk["artist_id"] != "", chunk["artist"])
        parts.append(pd.DataFrame({"user": chunk["user"].to_numpy(), "item": key.to_numpy(),
                                   "timestamp": to_unix_seconds(chunk["time"], "%Y-%m-%dT%H:%M:%SZ", path,
                                                                chunk["_line"].to_numpy(), "the timestamp")}))
    return joined(parts, path)


def _jodie(path: Path, bad_lines: str) -> pd.DataFrame:
    chunk = next(iter_delimited(path, ["line"], header_lines=1, line_column="_line", bad_lines=bad_lines))
    fields = chunk["line"].str.split(",", n=4, expand=True)
    if fields.shape[1] < 4:
        raise DatasetFormatError(path, 2, "expected user_id,item_id,timestamp,state_label,features")
    values = {c: pd.to_numeric(fields[i], errors="coerce") for i, c in enumerate(["user", "item", "timestamp"])}
    bad = np.zeros(len(fields), dtype=bool)
    for v in values.values():
        bad |= v.isna().to_numpy()
    if bad.any():
        raise DatasetFormatError(path, first_bad(bad, chunk["_line"].to_numpy()),
                                 "expected numbers in user_id,item_id,timestamp")
    return pd.DataFrame({"user": values["user"].to_numpy(np.int64), "item": values["item"].to_numpy(np.int64),
                         "timestamp": np.rint(values["timestamp"].to_numpy(np.float64)).astype(np.int64)})


LASTFM_1K = register_loader(
    parse_lastfm,
    name="lastfm-1k", folder="lastfm-1k",
    files=tuple((f,) for f in _LAYOUTS),
    url="http://ocelma.net/MusicRecommendationDataset/lastfm-1K.html",
    description="Last.fm 1K: 19.2M plays of 992 users (2005-2009); JODIE's lastfm.csv: 1.29M of 1,000 x 1,000.",
    licence="Non-commercial use, with permission of Last.fm (see the dataset's README).",
    md5={TSV: TSV_MD5},
    how_to_get=("download lastfm-dataset-1K.tar.gz from http://ocelma.net/MusicRecommendationDataset/lastfm-1K.html "
                "and extract it here, or put JODIE's lastfm.csv (http://snap.stanford.edu/jodie/lastfm.csv) here"),
    paper="2TS",
    checksums="md5 of the TSV as published in the dataset's README; none for JODIE's lastfm.csv.",
)
