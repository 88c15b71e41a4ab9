"""The MeLON chapter's claims, declared once (kind, role, floor and its reason) and computed from the runs.

Every comparison is paired on the seed: both strategies ran on the same
stream, the same pre-trained recommender and the same random draws. On the
planted-drift streams the seed also draws the stream, so the replicates vary
every random source the claim generalises over.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from rec_lib import evidence as ev
from rec_lib.online_update.experiment import paired

__all__ = ["HR_FLOOR", "HR_WHY", "RATE_FLOOR", "RATE_WHY", "hr_claim", "segment_claim", "rate_gap_claim",
           "share_claim", "best_other"]

HR_FLOOR = 0.005
HR_WHY = "half a point of HR@5: smaller gains would not change a reader's choice of update strategy"
RATE_FLOOR = 0.05
RATE_WHY = "a 5% difference of the mean learning rate (in units of eta) is the smallest we read as structure"


def hr_claim(id: str, claim: str, paper: str, runs: pd.DataFrame, a: str, b: str, *, role: str = "headline",
             section: str = "", recommender: str | None = "BPR", metric: str = "hr@5", cause: str | None = None,
             why: str = "") -> ev.Claim:
    """``a`` beats ``b`` on ``metric``, paired per seed."""
    where = {} if recommender is None else {"recommender": recommender}
    x, y = paired(runs, a, b, metric, **where)
    return ev.superiority(id, claim, paper, x, y, floor=HR_FLOOR, floor_why=HR_WHY, role=role, section=section,
                          unit=metric, cause=cause, why=why, fmt="{:+.4f}")


def segment_claim(id: str, claim: str, paper: str, seg: pd.DataFrame, a: str, b: str, segment: str, *,
                  recommender_a: str = "BPR", recommender_b: str = "BPR", role: str = "mechanism",
                  section: str = "", cause: str | None = None, why: str = "") -> ev.Claim:
    """``a`` beats ``b`` on HR@5 within one user segment, paired per seed."""
    s = seg[seg["segment"] == segment]
    x = s[(s.strategy == a) & (s.recommender == recommender_a)].set_index("seed")["hr@5"]
    y = s[(s.strategy == b) & (s.recommender == recommender_b)].set_index("seed")["hr@5"]
    both = x.index.intersection(y.index)
    return ev.superiority(id, claim, paper, x[both].to_numpy(), y[both].to_numpy(), floor=HR_FLOOR,
                          floor_why=HR_WHY, role=role, section=section, unit="hr@5", cause=cause, why=why,
                          fmt="{:+.4f}")


def rate_gap_claim(id: str, claim: str, paper: str, rates: pd.DataFrame, a: tuple[str, str], b: tuple[str, str], *,
                   role: str = "mechanism", section: str = "", cause: str | None = None, why: str = "") -> ev.Claim:
    """Mean rate / eta of (user type, group) ``a`` above that of ``b``, paired per seed."""
    wide = rates.pivot_table(index="seed", columns=["user_type", "group"], values="rate")
    return ev.superiority(id, claim, paper, wide[a].to_numpy(), wide[b].to_numpy(), floor=RATE_FLOOR,
                          floor_why=RATE_WHY, role=role, section=section, unit="w / eta", cause=cause, why=why,
                          fmt="{:+.3f}")


def share_claim(id: str, claim: str, paper: str, values: Sequence[float], *, floor: float, floor_why: str,
                role: str = "mechanism", section: str = "", unit: str = "", cause: str | None = None,
                why: str = "") -> ev.Claim:
    """A per-seed quantity (already oriented) above ``floor``: one-sample superiority."""
    return ev.superiority(id, claim, paper, np.asarray(values, float), floor=floor, floor_why=floor_why, role=role,
                          section=section, unit=unit, cause=cause, why=why, fmt="{:+.3f}")


def best_other(runs: pd.DataFrame, recommender: str, candidates: Sequence[str], metric: str = "hr@5") -> str:
    """The candidate with the best mean ``metric`` on ``recommender`` (the paper's "best other")."""
    df = runs[(runs.recommender == recommender) & runs.strategy.isin(candidates)]
    return str(df.groupby("strategy")[metric].mean().idxmax())
