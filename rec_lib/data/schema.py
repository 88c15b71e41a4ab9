"""The one interaction schema every dataset is turned into.

An :class:`Interactions` holds a pandas DataFrame with the columns
``user, item, rating, timestamp`` (int64, int64, float32, int64), ids
contiguous from 0, rows sorted by time (ties by user, then item, so the order
is deterministic), plus maps back to the raw ids and optional item metadata
indexed by the contiguous item id. Implicit data has ``rating = 1``.

Subsets (splits) keep the id space of their parent (``n_users``, ``n_items``
and the maps), so a model trained on one split scores the items of another.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["Interactions", "COLUMNS"]

COLUMNS = ("user", "item", "rating", "timestamp")
_DTYPES = {"user": "int64", "item": "int64", "rating": "float32", "timestamp": "int64"}


@dataclass
class Interactions:
    """Interactions in the common schema (see the module docstring)."""

    df: pd.DataFrame
    n_users: int
    n_items: int
    user_ids: np.ndarray  # raw id of each contiguous user id
    item_ids: np.ndarray  # raw id of each contiguous item id
    name: str = "interactions"
    item_meta: pd.DataFrame | None = None  # indexed by contiguous item id
    ground_truth: dict[str, Any] | None = field(default=None, repr=False)

    # ----------------------------------------------------------------- building
    @classmethod
    def from_raw(
        cls,
        frame: pd.DataFrame,
        name: str,
        item_meta: pd.DataFrame | None = None,
        ground_truth: dict[str, Any] | None = None,
    ) -> "Interactions":
        """Build from raw ids: reindex users and items contiguously, sort by time.

        ``frame`` needs columns ``user, item`` and optionally ``rating``
        (default 1) and ``timestamp`` (default: the row order). ``item_meta`` is
        indexed by *raw* item id and is re-indexed to the contiguous ids.
        Contiguous ids follow the order of first appearance in time, so they are
        deterministic for a given file.
        """
        missing = {"user", "item"} - set(frame.columns)
        if missing:
            raise ValueError(f"{name}: the interaction frame lacks the columns {sorted(missing)}")
        f = pd.DataFrame({"user": frame["user"].to_numpy(), "item": frame["item"].to_numpy()})
        f["rating"] = frame["rating"].to_numpy() if "rating" in frame else 1.0
        f["timestamp"] = frame["timestamp"].to_numpy() if "timestamp" in frame else np.arange(len(frame))
        if f[["user", "item"]].isna().any().any():
            raise ValueError(f"{name}: missing user or item ids in {int(f[['user','item']].isna().any(axis=1).sum())} rows")
        f = f.sort_values("timestamp", kind="stable").reset_index(drop=True)
        user_codes, user_ids = pd.factorize(f["user"])
        item_codes, item_ids = pd.factorize(f["item"])
        f["user"], f["item"] = user_codes, item_codes
        meta = None
        if item_meta is not None:
            meta = item_meta.rename_axis("raw_item").reindex(pd.Index(item_ids, name="raw_item")).reset_index()
            meta.index.name = "item"
        data = cls(f, len(user_ids), len(item_ids), np.asarray(user_ids), np.asarray(item_ids), name, meta, ground_truth)
        return data.normalised()

    def normalised(self) -> "Interactions":
        """Cast dtypes, sort by (timestamp, user, item) and validate."""
        df = self.df.astype(_DTYPES)[list(COLUMNS)]
        df = df.sort_values(["timestamp", "user", "item"], kind="stable").reset_index(drop=True)
        out = replace(self, df=df)
        out.validate()
        return out

    def validate(self) -> None:
        """Check the schema; raise ``ValueError`` naming the problem."""
        df = self.df
        if list(df.columns) != list(COLUMNS):
            raise ValueError(f"{self.name}: columns must be {COLUMNS}, got {tuple(df.columns)}")
        if len(df) and (df["user"].min() < 0 or df["user"].max() >= self.n_users):
            raise ValueError(f"{self.name}: user ids outside [0, {self.n_users})")
        if len(df) and (df["item"].min() < 0 or df["item"].max() >= self.n_items):
            raise ValueError(f"{self.name}: item ids outside [0, {self.n_items})")
        if len(self.user_ids) != self.n_users or len(self.item_ids) != self.n_items:
            raise ValueError(f"{self.name}: id maps do not match n_users / n_items")
        if not df["timestamp"].is_monotonic_increasing:
            raise ValueError(f"{self.name}: rows are not sorted by timestamp")

    # ------------------------------------------------------------------ subsets
    def subset(self, rows: np.ndarray | pd.Series, name: str | None = None) -> "Interactions":
        """Rows selected by a boolean mask or positional index; ids unchanged."""
        rows = np.asarray(rows)
        df = self.df[rows] if rows.dtype == bool else self.df.iloc[rows]
        df = df.sort_values(["timestamp", "user", "item"], kind="stable").reset_index(drop=True)
        return replace(self, df=df, name=name or self.name)

    def reindexed(self, name: str | None = None) -> "Interactions":
        """Drop users and items without interactions and renumber the rest contiguously."""
        users = np.unique(self.df["user"].to_numpy())
        items = np.unique(self.df["item"].to_numpy())
        umap = np.full(self.n_users, -1, dtype=np.int64)
        imap = np.full(self.n_items, -1, dtype=np.int64)
        umap[users] = np.arange(len(users))
        imap[items] = np.arange(len(items))
        df = self.df.copy()
        df["user"], df["item"] = umap[df["user"].to_numpy()], imap[df["item"].to_numpy()]
        meta = None
        if self.item_meta is not None:
            meta = self.item_meta.iloc[items].reset_index(drop=True)
            meta.index.name = "item"
        gt = dict(self.ground_truth or {})
        if gt:
            gt["user_index"], gt["item_index"] = users, items  # positions in the ground-truth arrays
        out = replace(self, df=df, n_users=len(users), n_items=len(items), user_ids=self.user_ids[users],
                      item_ids=self.item_ids[items], item_meta=meta, name=name or self.name,
                      ground_truth=gt or None)
        return out.normalised()

    # ------------------------------------------------------------------- views
    def __len__(self) -> int:
        return len(self.df)

    @property
    def users(self) -> np.ndarray:
        return self.df["user"].to_numpy()

    @property
    def items(self) -> np.ndarray:
        return self.df["item"].to_numpy()

    @property
    def ratings(self) -> np.ndarray:
        return self.df["rating"].to_numpy()

    @property
    def timestamps(self) -> np.ndarray:
        return self.df["timestamp"].to_numpy()

    def matrix(self, binary: bool = True) -> sp.csr_matrix:
        """The user x item matrix (CSR); duplicates summed unless ``binary``."""
        vals = np.ones(len(self.df), dtype=np.float32) if binary else self.ratings.astype(np.float32)
        m = sp.csr_matrix((vals, (self.users, self.items)), shape=(self.n_users, self.n_items))
        if binary:
            m.data[:] = 1.0
        return m

    def stats(self) -> dict[str, float]:
        """Counts, density and activity quantiles, for the data chapter's tables."""
        per_user = np.bincount(self.users, minlength=self.n_users)
        per_item = np.bincount(self.items, minlength=self.n_items)
        active_u, active_i = int((per_user > 0).sum()), int((per_item > 0).sum())
        return {
            "interactions": len(self.df),
            "users": active_u,
            "items": active_i,
            "density": len(self.df) / max(active_u * active_i, 1),
            "per_user_median": float(np.median(per_user[per_user > 0])) if active_u else 0.0,
            "per_user_max": int(per_user.max()) if len(per_user) else 0,
            "per_item_median": float(np.median(per_item[per_item > 0])) if active_i else 0.0,
            "rating_mean": float(self.df["rating"].mean()) if len(self.df) else float("nan"),
            "days": float((self.timestamps.max() - self.timestamps.min()) / 86400) if len(self.df) else 0.0,
        }

    def item_titles(self, items: np.ndarray | list[int]) -> list[str]:
        """Titles of contiguous item ids (the raw id when there is no title)."""
        items = np.asarray(items, dtype=np.int64)
        if self.item_meta is not None and "title" in self.item_meta:
            return [str(t) for t in self.item_meta["title"].to_numpy()[items]]
        return [str(i) for i in self.item_ids[items]]
