"""The book's plotting helpers: stable method colours and the ordinal palette for ordered parameters."""

import numpy as np
import pandas as pd
import pytest
import matplotlib.pyplot as plt
import seaborn as sns

from rec_lib import plotting


def luminance(rgb):
    r, g, b = rgb
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_ordinal_colors_follow_sorted_values_along_the_palette():
    c = plotting.ordinal_colors([0.5, 0.01, 1.0, 0.1, 0.5])
    assert list(c) == [0.01, 0.1, 0.5, 1.0]
    assert list(c.values()) == sns.color_palette(plotting.ORDINAL_PALETTE, n_colors=4)
    lum = [luminance(v) for v in c.values()]
    assert lum == sorted(lum)  # viridis: small values dark, large values light
    # the same colours whatever order or container the values come in
    assert plotting.ordinal_colors(np.array([1.0, 0.1, 0.01, 0.5])) == c
    assert plotting.ordinal_colors(pd.Series([0.01, 0.1, 0.5, 1.0])) == c
    assert plotting.ordinal_colors([3]) == {3: sns.color_palette(plotting.ORDINAL_PALETTE, n_colors=1)[0]}
    assert len(plotting.ordinal_colors([2, 8], palette="rocket")) == 2


def test_ordinal_colors_with_a_domain_keep_each_value_s_colour():
    full = plotting.ordinal_colors([2, 4, 8, 16])
    part = plotting.ordinal_colors([16, 4], domain=[2, 4, 8, 16])
    assert list(part) == [4, 16] and part == {4: full[4], 16: full[16]}
    with pytest.raises(ValueError, match="domain"):
        plotting.ordinal_colors([32], domain=[2, 4])
    with pytest.raises(ValueError, match="comparable"):
        plotting.ordinal_colors([1, "a"])


def test_method_colors_are_the_colorblind_palette_in_order():
    c = plotting.method_colors(["A", "B", "C"])
    assert list(c) == ["A", "B", "C"] and list(c.values()) == sns.color_palette("colorblind", n_colors=3)


def test_shared_legend_lists_every_label_of_every_panel_once():
    fig, axes = plotting.subplots(2)
    axes[0, 0].plot([0, 1], label="CCF")
    axes[0, 0].plot([0, 1], label="2TS")
    axes[0, 1].plot([0, 1], label="2TS")
    axes[0, 1].plot([0, 1], label="oracle")  # drawn on the second panel only
    leg = plotting.shared_legend(fig, axes)
    assert [t.get_text() for t in leg.get_texts()] == ["CCF", "2TS", "oracle"]
    empty, ax_empty = plotting.subplots(1)
    assert plotting.shared_legend(empty, ax_empty) is None
    plt.close("all")
