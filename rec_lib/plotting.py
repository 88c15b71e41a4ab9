"""The book's one plotting style and a few helpers every chapter uses.

Call :func:`use_style` once per notebook; then every figure shares fonts,
sizes, palette and grid. Methods get stable colours through :func:`method_colors`
so "SML" is the same colour in every figure of a chapter; ordered parameters
(epsilon, K, S, ...) get a sequential palette through :func:`ordinal_colors`,
dark for small values and light for large ones, in every chapter.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

__all__ = ["use_style", "method_colors", "ordinal_colors", "subplots", "line_by_method", "heatmap", "annotate_bars",
           "log_axes", "PALETTE", "ORDINAL_PALETTE"]

PALETTE = "colorblind"
ORDINAL_PALETTE = "viridis"  # sequential, colour-blind safe, readable in greyscale
_RC = {
    "figure.figsize": (6.4, 3.8),
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def use_style() -> None:
    """Seaborn's ``whitegrid`` theme, the colour-blind palette, and the book's sizes."""
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE, rc=_RC)


def method_colors(methods: Sequence[str]) -> dict[str, tuple]:
    """A stable colour per method name, in the given order."""
    colors = sns.color_palette(PALETTE, n_colors=max(len(methods), 1))
    return {m: colors[i % len(colors)] for i, m in enumerate(methods)}


def ordinal_colors(values, palette: str = ORDINAL_PALETTE, domain=None) -> dict:
    """A colour per value of an ordered parameter (epsilon, K, S, ...), in sorted order along ``palette``.

    The smallest value gets the palette's first (darkest, for ``viridis``)
    colour and the largest its last, whatever the order of ``values``;
    repeated values count once. Pass ``domain`` (every value the chapter uses)
    to give a value the same colour in figures that show only some of them:
    colours are then spread over ``domain`` and the dict holds ``values``
    only. Use it as ``hue_order=sorted(colors), palette=colors`` in seaborn.
    """
    def unique(xs):
        return list(dict.fromkeys(xs.tolist() if hasattr(xs, "tolist") else list(xs)))

    vals = unique(values)
    dom = vals if domain is None else unique(domain)
    try:
        dom = sorted(dom)
    except TypeError as e:
        raise ValueError(f"ordinal_colors needs mutually comparable values, got {dom!r}") from e
    missing = [v for v in vals if v not in dom]
    if missing:
        raise ValueError(f"values {missing!r} are not in domain {dom!r}")
    colors = sns.color_palette(palette, n_colors=max(len(dom), 1))
    pos = {v: i for i, v in enumerate(dom)}
    return {v: colors[pos[v]] for v in sorted(vals)}


def subplots(ncols: int = 1, nrows: int = 1, width: float = 6.4, height: float = 3.8, **kw):
    """``plt.subplots`` sized per panel (``width`` x ``height`` inches each)."""
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **kw)


def line_by_method(df: pd.DataFrame, x: str, y: str, method: str = "method", ax=None, errorbar=("sd", 1),
                   markers: bool = True, order: Sequence[str] | None = None, **kw):
    """One line per method (mean over seeds, shaded ± 1 sd when there are several runs)."""
    order = list(order or pd.unique(df[method]))
    ax = ax or plt.gca()
    sns.lineplot(data=df, x=x, y=y, hue=method, hue_order=order, palette=method_colors(order),
                 style=method if markers else None, markers=markers, dashes=False, errorbar=errorbar, ax=ax, **kw)
    ax.legend(title=None)
    return ax


def heatmap(matrix, ax=None, xlabel: str = "", ylabel: str = "", center: float | None = None, cmap: str | None = None, **kw):
    """A heatmap with the book's colour maps (diverging when ``center`` is given)."""
    ax = ax or plt.gca()
    cmap = cmap or ("vlag" if center is not None else "rocket_r")
    sns.heatmap(np.asarray(matrix), ax=ax, center=center, cmap=cmap, **kw)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return ax


def annotate_bars(ax, fmt: str = "{:.2f}") -> None:
    """Write each bar's height above it."""
    for p in ax.patches:
        h = p.get_height()
        if np.isfinite(h) and h != 0:
            ax.annotate(fmt.format(h), (p.get_x() + p.get_width() / 2, h), ha="center", va="bottom", fontsize=8)


def log_axes(ax, x: bool = True, y: bool = True) -> None:
    """Log scale with plain decade labels only (minor tick labels overlap on short ranges)."""
    from matplotlib.ticker import LogLocator, NullFormatter

    for on, axis, setter in ((x, ax.xaxis, ax.set_xscale), (y, ax.yaxis, ax.set_yscale)):
        if on:
            setter("log")
            axis.set_major_locator(LogLocator(base=10))
            axis.set_minor_formatter(NullFormatter())


def shared_legend(fig, axes, fontsize: float = 7, **kw):
    """One legend for a row of panels: every label drawn on any panel, once, below the figure.

    A legend on the last panel alone misses what only the other panels draw
    (a method run on one dataset only).
    """
    seen: dict[str, object] = {}
    for ax in np.ravel(axes):
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    if not seen:
        return None
    renderer = fig.canvas.get_renderer()
    to_fig = fig.transFigure.inverted()
    bottom = min(ax.get_tightbbox(renderer).transformed(to_fig).y0 for ax in np.ravel(axes))  # below tick labels
    kw = {"loc": "upper center", "bbox_to_anchor": (0.5, bottom), "ncol": min(len(seen), 5), "frameon": False} | kw
    return fig.legend(list(seen.values()), list(seen), fontsize=fontsize, **kw)
