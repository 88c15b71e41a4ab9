"""Tables for the book: mean ± std over seeds, and consistent number formatting."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

__all__ = ["mean_std", "mean_std_table"]


def mean_std(runs: pd.DataFrame, by: str | Sequence[str], metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean and sample std of ``metrics`` over repeated runs, grouped by ``by``.

    ``runs`` has one row per (method, seed, ...). Returns a frame with a
    two-level column index ``(metric, mean|std)`` and the number of runs ``n``.
    """
    by = [by] if isinstance(by, str) else list(by)
    metrics = list(metrics) if metrics is not None else [c for c in runs.select_dtypes("number").columns if c not in by and c != "seed"]
    missing = [m for m in metrics + by if m not in runs.columns]
    if missing:
        raise KeyError(f"columns {missing} not in the runs table (has {list(runs.columns)})")
    g = runs.groupby(by, sort=False)[metrics]
    out = pd.concat({"mean": g.mean(), "std": g.std(ddof=1).fillna(0.0)}, axis=1).swaplevel(axis=1)
    out = out[[(m, s) for m in metrics for s in ("mean", "std")]]
    out[("n", "")] = g.size()
    return out


def mean_std_table(runs: pd.DataFrame, by: str | Sequence[str], metrics: Sequence[str] | None = None, digits: int = 3) -> pd.DataFrame:
    """Like :func:`mean_std` but formatted as ``"0.123 ± 0.004"`` strings, one column per metric."""
    stats = mean_std(runs, by, metrics)
    names = [m for m in stats.columns.get_level_values(0).unique() if m != "n"]
    table = pd.DataFrame(index=stats.index)
    for m in names:
        table[m] = [f"{a:.{digits}f} ± {b:.{digits}f}" for a, b in zip(stats[(m, "mean")], stats[(m, "std")])]
    table["runs"] = stats[("n", "")].astype(int)
    return table
