"""Adressa news click logs (Gulla et al. 2017; SML, MeLON).

Folder ``raw/adressa/`` holds one of the releases from
https://reclab.idi.ntnu.no/dataset/ extracted as published: ``one_week/``
(``one_week.tar.gz``: the day files ``20170101`` ... ``20170107``) or
``three_month/`` (``three_month.tar.gz``: ``20170101`` ... ``20170331``). A day
file is JSON lines, one event a line; the fields read are ``userId``, ``id``
(the article; absent on pages that are not articles), ``time`` (Unix seconds),
``activeTime`` (seconds of reading; often absent), ``title`` and ``category1``.

Options: ``release`` (``"one_week"`` or ``"three_month"``; default: the one
present, one_week first), ``days`` (the first N day files; SML's three weeks
are ``days=21`` of three_month), ``min_active_time`` (default 1: SML removes
interactions "that have a news reading time of zero"; an absent reading time
cannot be told from zero, so those are removed too; ``None`` keeps every
article event). Events without an article are always dropped. SML cuts each
day into morning (0-10 h), afternoon (10-17 h) and evening (17-24 h):
:func:`adressa_periods` does that in Norwegian time. No checksum is published.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rec_lib.data.loaders.base import (DEFAULT_CHUNKSIZE, NO_PUBLISHED_CHECKSUM, check_choice, iter_json_lines,
                                       missing_file, register_loader, require, joined)
from rec_lib.data.schema import Interactions
from rec_lib.data.splits import calendar_periods

__all__ = ["parse_adressa", "adressa_periods", "ADRESSA", "RELEASES", "SML_DAY_PARTS", "ADRESSA_TZ"]

RELEASES = {"one_week": pd.date_range("2017-01-01", "2017-01-07"),
            "three_month": pd.date_range("2017-01-01", "2017-03-31")}
SML_DAY_PARTS = (0, 10, 17)
ADRESSA_TZ = "Europe/Oslo"
_FIELDS = {"userId": "string", "id": "string", "time": "int64", "activeTime": "int64", "title": "string",
           "category1": "string"}
_HOW = ("download one_week.tar.gz or three_month.tar.gz from https://reclab.idi.ntnu.no/dataset/ "
        "(a form asks for your name and use) and extract it here, giving one_week/20170101 ...")


def parse_adressa(folder: Path, layout: int = 0, *, release: str | None = None, days: int | None = None,
                  min_active_time: int | None = 1, chunksize: int = DEFAULT_CHUNKSIZE,
                  bad_lines: str = "error") -> Interactions:
    """Parse Adressa day files into (user, article) interactions (see the module docstring)."""
    release = release or list(RELEASES)[layout]
    check_choice("adressa", "release", release, tuple(RELEASES))
    dates = RELEASES[release]
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= len(dates)):
        raise ValueError(f"load('adressa'): days must be an integer in [1, {len(dates)}] for {release}, got {days!r}")
    if min_active_time is not None and (isinstance(min_active_time, bool) or not isinstance(min_active_time, int)):
        raise ValueError(f"load('adressa'): min_active_time must be an integer or None, got {min_active_time!r}")
    files = [folder / release / d.strftime("%Y%m%d") for d in dates[:days]]
    for f in files:  # every day file before any parsing
        if not f.exists():
            raise missing_file("adressa", f, folder, _HOW)
    parts, meta = [], []
    for path in files:
        for chunk in iter_json_lines(path, _FIELDS, chunksize=min(chunksize, 500_000), bad_lines=bad_lines,
                                     progress_desc=f"adressa {path.name}"):
            require(chunk, ["userId", "time"], path)
            keep = chunk["id"].notna().to_numpy()
            if min_active_time is not None:
                keep = keep & (chunk["activeTime"].fillna(-1) >= min_active_time).to_numpy()
            chunk = chunk[keep]
            parts.append(pd.DataFrame({"user": chunk["userId"].to_numpy(), "item": chunk["id"].to_numpy(),
                                       "timestamp": chunk["time"].to_numpy(np.int64)}))
            meta.append(chunk[["id", "title", "category1"]].drop_duplicates("id"))
    frame = joined(parts, folder / release)
    frame["rating"] = np.float32(1.0)
    items = pd.concat(meta).drop_duplicates("id").set_index("id").rename_axis("item")
    return Interactions.from_raw(frame, name="adressa", item_meta=items)


def adressa_periods(data: Interactions, day_parts: tuple[int, ...] = SML_DAY_PARTS, tz: str = ADRESSA_TZ) -> np.ndarray:
    """SML's periods: each day cut at 0, 10 and 17 h (morning, afternoon, evening) in Norwegian time.

    Returns the period id of each interaction (0, 1, ... in time order); three
    weeks give SML's 63 periods.
    """
    return calendar_periods(data, day_parts=day_parts, tz=tz)


ADRESSA = register_loader(
    parse_adressa,
    name="adressa", folder="adressa",
    files=(("one_week/20170101",), ("three_month/20170101",)),
    url="https://reclab.idi.ntnu.no/dataset/",
    description="Adressa news clicks (Trondheim), 2017: one week (about 15M events) or three months.",
    licence="Research use under the terms on the Adressa page; cite Gulla et al. (2017).",
    how_to_get=_HOW,
    paper="SML, MeLON",
    checksums=NO_PUBLISHED_CHECKSUM,
)
