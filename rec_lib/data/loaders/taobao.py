"""Taobao user behaviour (Alibaba, Tianchi dataset 649; Pi et al. 2019; 2TS).

Folder ``raw/taobao/`` holds ``UserBehavior.csv`` (3.4 GB, extracted from
``UserBehavior.csv.zip`` at https://tianchi.aliyun.com/dataset/649, free
account): 100,150,807 behaviours of 987,994 users on 4,162,024 items from
2017-11-25 to 2017-12-03. No header; columns ``user_id, item_id,
category_id, behavior_type, timestamp`` with behaviour ``pv`` (page view),
``buy``, ``cart`` or ``fav`` and Unix-second timestamps.

Options: ``behaviours`` (default all four; e.g. ``("pv",)`` for clicks only),
``clip_dates`` (default ``True``: keep the documented nine days, 2017-11-25
00:00 to 2017-12-04 00:00 China time, dropping the few rows stamped outside
them). The item's category becomes ``item_meta["category"]`` (the item
feature 2TS uses). 2TS reports 96,678,667 interactions of 987,975 users on
4,111,798 items without saying how it filtered; these options do not claim
to reproduce that count. No checksum is published.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rec_lib.data.errors import DatasetFormatError
from rec_lib.data.io import iter_delimited
from rec_lib.data.loaders.base import DEFAULT_CHUNKSIZE, NO_PUBLISHED_CHECKSUM, first_bad, register_loader, joined
from rec_lib.data.schema import Interactions

__all__ = ["parse_taobao", "TAOBAO", "BEHAVIOURS", "PERIOD"]

BEHAVIOURS = ("pv", "buy", "cart", "fav")
PERIOD = (pd.Timestamp("2017-11-25", tz="Asia/Shanghai"), pd.Timestamp("2017-12-04", tz="Asia/Shanghai"))
_NAMES = ["user", "item", "category", "behaviour", "timestamp"]


def parse_taobao(folder: Path, layout: int = 0, *, behaviours: tuple[str, ...] = BEHAVIOURS, clip_dates: bool = True,
                 chunksize: int = DEFAULT_CHUNKSIZE, bad_lines: str = "error") -> Interactions:
    """Parse ``UserBehavior.csv`` (see the module docstring)."""
    if isinstance(behaviours, str):
        behaviours = (behaviours,)
    unknown = set(behaviours) - set(BEHAVIOURS)
    if not behaviours or unknown:
        raise ValueError(f"load('taobao'): behaviours must be a non-empty subset of {BEHAVIOURS}, got {behaviours!r}")
    if not isinstance(clip_dates, bool):
        raise ValueError(f"load('taobao'): clip_dates must be True or False, got {clip_dates!r}")
    lo, hi = (int(t.timestamp()) for t in PERIOD)
    path = folder / "UserBehavior.csv"
    parts, meta = [], []
    for chunk in iter_delimited(path, _NAMES, sep=",", numeric=["user", "item", "category", "timestamp"],
                                chunksize=chunksize, required=_NAMES, bad_lines=bad_lines, line_column="_line",
                                progress_desc="taobao"):
        kind = chunk["behaviour"].to_numpy()
        known = np.isin(kind, BEHAVIOURS)
        if not known.all():
            i = int(np.flatnonzero(~known)[0])
            raise DatasetFormatError(path, first_bad(~known, chunk["_line"].to_numpy()),
                                     f"behavior_type {kind[i]!r} is not one of {BEHAVIOURS}")
        keep = np.isin(kind, behaviours)
        ts = chunk["timestamp"].to_numpy(np.int64)
        if clip_dates:
            keep &= (ts >= lo) & (ts < hi)
        kept = chunk[keep]
        parts.append(pd.DataFrame({"user": kept["user"].to_numpy(np.int64), "item": kept["item"].to_numpy(np.int64),
                                   "timestamp": ts[keep]}))
        meta.append(pd.DataFrame({"item": kept["item"].to_numpy(np.int64),
                                  "category": kept["category"].to_numpy(np.int64)}).drop_duplicates("item"))
    frame = joined(parts, path)
    frame["rating"] = np.float32(1.0)
    items = pd.concat(meta).drop_duplicates("item").set_index("item")
    return Interactions.from_raw(frame, name="taobao", item_meta=items)


TAOBAO = register_loader(
    parse_taobao,
    name="taobao", folder="taobao",
    files=(("UserBehavior.csv",),),
    url="https://tianchi.aliyun.com/dataset/649",
    description="Taobao UserBehavior: 100M page views, purchases, carts and favourites, 2017-11-25 to 12-03.",
    licence="Tianchi dataset licence: research use.",
    how_to_get=("download UserBehavior.csv.zip from https://tianchi.aliyun.com/dataset/649 (free Tianchi account) "
                "and extract UserBehavior.csv here"),
    paper="2TS",
    checksums=NO_PUBLISHED_CHECKSUM,
)
