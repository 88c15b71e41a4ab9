"""The chapter's synthetic stream: users whose taste has a learnable long-term part and a short-term drift.

:func:`two_scale_stream` draws it with :func:`rec_lib.data.drifting_stream`
(power-law activity, long-term tastes ``p_u`` around a common mean, an OU
drift of the short-term part) at sizes chosen so that the methods can be told
apart (issue 18):

* enough items that no evaluation candidate set is padded: ``n_items >=
  max_interactions + n_neg_eval`` (the stream never repeats an item, so a
  user has at least ``n_neg_eval`` unseen items; :func:`padded_share` measures it);
* personal taste that is learnable (``user_spread`` ~ 1, a low temperature)
  and a short-term drift of a few days, so that recent clicks carry
  information the long-term taste does not;
* long histories for the most active users (``max_interactions``).

``user_spread=0`` gives the *control* stream: no personal taste, every user
drifts around the same mean, so a transductive embedding has nothing to hold
that the common start ``psi`` does not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rec_lib.data import Interactions, drifting_stream
from rec_lib.two_time_scale.protocol import TEST, TTSData

__all__ = ["two_scale_stream", "padded_share", "bucket_ceilings"]


def two_scale_stream(n_users: int = 1500, n_items: int = 1200, dim: int = 8, max_interactions: int = 300,
                     activity_exponent: float = 1.8, long_term_weight: float = 0.6, drift_days: float = 5.0,
                     user_spread: float = 1.0, temperature: float = 0.1, n_neg_eval: int = 499,
                     seed: int = 0) -> Interactions:
    """Draw the stream (module docstring); refuses sizes that would pad candidate sets of ``n_neg_eval``."""
    if n_items < max_interactions + n_neg_eval + 1:
        raise ValueError(f"n_items = {n_items} < max_interactions + n_neg_eval + 1 = "
                         f"{max_interactions + n_neg_eval + 1}: heavy users would get padded candidate sets")
    return drifting_stream(n_users=n_users, n_items=n_items, dim=dim, max_interactions=max_interactions,
                           activity_exponent=activity_exponent, long_term_weight=long_term_weight,
                           drift_days=drift_days, user_spread=user_spread, temperature=temperature, seed=seed)


def padded_share(d: TTSData, n_neg: int, which: int = TEST) -> float:
    """Share of the evaluation rows whose user has fewer than ``n_neg`` items never interacted with.

    Such rows get a candidate set padded with duplicates by
    :func:`rec_lib.data.candidate_sets`; 0 means every set holds ``n_neg``
    distinct negatives.
    """
    users = d.position_users(d.positions(which))
    df = d.data.df
    distinct = df.groupby("user")["item"].nunique().reindex(range(d.n_users), fill_value=0).to_numpy()
    return float((d.n_items - distinct[users] < n_neg).mean()) if len(users) else 0.0


def bucket_ceilings(ceiling_ranks: dict[str, np.ndarray], T: np.ndarray, edges) -> pd.DataFrame:
    """MRR of each ceiling (oracle, long-term, common mean, ...) per bucket of ``T`` (``edges[k] <= T < edges[k+1]``)."""
    edges = np.asarray(edges)
    b = np.searchsorted(edges, T, side="right") - 1
    rows = []
    for name, r in ceiling_ranks.items():
        rr = 1.0 / np.asarray(r, dtype=float)
        for k in np.unique(b):
            rows.append({"ceiling": name, "T_low": int(edges[k]), "mrr": float(rr[b == k].mean()),
                         "rows": int((b == k).sum())})
    return pd.DataFrame(rows)
