"""rec_lib.evidence: the verdict rules, calibrated by simulation, and their errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rec_lib import evidence as ev
from rec_lib.ledger import Ledger


def _sup(diffs, floor=0.01, **kw):
    return ev.superiority("x", "A beats B", "paper", diffs, floor=floor, **kw)


@pytest.mark.parametrize("n", [3, 10])
def test_superiority_false_holds_at_most_5_percent_under_no_effect(n):
    rng = np.random.default_rng(12)
    draws = rng.normal(0.0, 0.02, size=(2000, n))  # paired noise like a chapter's seeds (s.d. 0.02)
    holds = sum(_sup(d, floor=0.001).verdict == "holds" for d in draws)
    assert holds / 2000 <= 0.05


def test_superiority_power_at_floor_plus_three_standard_errors():
    # n = 10: at least 80%. (With n = 3 a t interval has 2 degrees of freedom and
    # the same effect holds only about half the time: chapters with 3 seeds get
    # their power from a per-user paired bootstrap or more seeds.)
    n, sd, floor = 10, 0.02, 0.005
    se = sd / math.sqrt(n)
    rng = np.random.default_rng(3)
    draws = rng.normal(floor + 3 * se, sd, size=(2000, n))
    holds = sum(_sup(d, floor=floor).verdict == "holds" for d in draws)
    assert holds / 2000 >= 0.80


@pytest.mark.parametrize("n", [3, 10])
def test_equivalence_at_twice_the_margin(n):
    """Never holds while the noise is below the margin; a rare chance event (well under TOST's 5%) otherwise.

    With 3 replicates and noise twice the margin, 3 values can fall close
    together near 0 by chance (7 of 2,000 draws): "never" is not a property
    any test on 3 noisy replicates can have.
    """
    margin = 0.01
    for sd, most in ((0.005, 0), (0.02, 0.01), (0.05, 0.01)):
        draws = np.random.default_rng(5).normal(2 * margin, sd, size=(2000, n))
        holds = sum(ev.equivalence("e", "A as good as B", "", d, margin=margin).verdict == "holds" for d in draws)
        assert holds / 2000 <= most, (sd, holds)


def test_equivalence_noise_makes_it_harder_to_pass():
    base = np.array([0.001, -0.002, 0.0015, 0.0, -0.001])
    quiet = ev.equivalence("e", "c", "", base, margin=0.01)
    noisy = ev.equivalence("e", "c", "", base * 20, margin=0.01)
    assert quiet.verdict == "holds" and noisy.verdict != "holds"


@pytest.mark.parametrize("kind", ["superiority", "equivalence", "non_inferiority"])
def test_single_replicate_is_never_decisive(kind):
    fn = getattr(ev, kind)
    kw = {"floor": 0.01} if kind == "superiority" else {"margin": 0.01}
    c = fn("one", "claim", "", [0.5], **kw)
    assert c.verdict == "inconclusive" and c.n == 1 and c.cause and c.why


def test_superiority_verdicts_and_orientation():
    a, b = np.array([0.30, 0.31, 0.32]), np.array([0.20, 0.21, 0.215])
    c = ev.superiority("s", "A beats B", "0.3 vs 0.2", a, b, floor=0.05)
    assert c.verdict == "holds" and c.effect > 0 and c.ci[0] > 0 and c.cause is None
    rev = ev.superiority("s", "B beats A", "", b, a, floor=0.05)
    assert rev.verdict == "does not hold" and rev.cause == "undetermined" and "reversed" in rev.why
    # lower is better (RMSE): effect oriented B - A
    rmse = ev.superiority("r", "A has lower RMSE", "", [0.90, 0.91, 0.92], [0.95, 0.96, 0.97], floor=0.01,
                          higher_is_better=False)
    assert rmse.verdict == "holds" and rmse.effect == pytest.approx(0.05)
    small = ev.superiority("t", "tiny", "", [0.0011, 0.0010, 0.0012, 0.0011], floor=0.01, cause="scale",
                           why="our catalogue is small")
    assert small.verdict == "does not hold" and small.cause == "scale" and small.why == "our catalogue is small"


def test_verdicts_recompute_from_stored_fields():
    rng = np.random.default_rng(0)
    claims = [_sup(rng.normal(m, 0.01, 4), floor=0.005) for m in (-0.02, 0.0, 0.004, 0.02)]
    claims += [ev.equivalence("e", "c", "", rng.normal(m, 0.01, 5), margin=0.01) for m in (0, 0.03)]
    claims += [ev.non_inferiority("n", "c", "", rng.normal(m, 0.01, 5), margin=0.01) for m in (0, -0.05)]
    claims += [ev.trend("t", "c", "", [1, 2, 3, 4], [1.0, 2.1, 2.9, 4.2], expect="increasing", floor=0.5)]
    claims += [ev.ratio("r", "c", "", [1.0, 1.1, 0.9], [10.0, 12.0, 9.5], floor=5)]
    for c in claims:
        assert ev.recompute_verdict(c.as_dict()) == c.verdict, c


def test_ratio_from_rotation_rounds():
    fast, slow = [0.010, 0.011, 0.012, 0.010], [0.30, 0.31, 0.35, 0.29]
    c = ev.ratio("speed", "A is 10x faster", "5-30x", fast, slow, floor=10)
    assert c.verdict == "holds" and 25 < c.effect < 35 and c.ci[0] < c.effect < c.ci[1] and c.timing
    assert ev.ratio("speed", "A is 100x faster", "", fast, slow, floor=100).verdict == "does not hold"
    with pytest.raises(ev.EvidenceError, match="positive"):
        ev.ratio("speed", "c", "", [0.0, 1.0], [1.0, 1.0], floor=2)


def test_trend_needs_three_points_and_flat_uses_margin():
    assert ev.trend("t", "c", "", [1, 2], [1, 2], expect="increasing", floor=0.1).verdict == "inconclusive"
    flat = ev.trend("f", "time flat in t", "", [1, 2, 3, 4, 5], [1.0, 1.01, 0.99, 1.0, 1.005], expect="flat",
                    margin=0.05)
    assert flat.verdict == "holds" and flat.margin == 0.05
    falls = ev.trend("d", "falls", "", [1, 2, 3, 4], [4.0, 3.0, 2.1, 0.9], expect="decreasing", floor=0.5)
    assert falls.verdict == "holds" and falls.effect > 0


def test_check_is_apart_and_never_counted():
    c = ev.check("id", "covariance identity", abs(1e-7) < 1e-5, value=1e-7, test="max |a - b| < 1e-5")
    assert c.kind == "check" and c.role == "check" and c.verdict == "passes"
    table = ev.claims_table([c, _sup([0.02, 0.03, 0.025])])
    assert list(table.index) == ["x"]
    assert list(ev.checks_table([c]).index) == ["id"]
    counts = ev.summary_counts([c, _sup([0.02, 0.03, 0.025])])
    assert counts.loc["headline", "holds"] == 1 and counts.loc["headline", "checks passed"] == "1 of 1"


@pytest.mark.parametrize("kw, match", [
    (dict(floor=-0.01), "positive"),
    (dict(floor=0.0), "positive"),
    (dict(floor=float("nan")), "positive"),
    (dict(floor=0.01, role="hero"), "role"),
    (dict(floor=0.01, cause="bad luck"), "cause"),
    (dict(floor=0.01, role="check"), "check"),
    (dict(floor=0.01, interval="jackknife"), "interval"),
])
def test_bad_arguments_are_refused(kw, match):
    with pytest.raises(ev.EvidenceError, match=match):
        _sup([0.01, 0.02], **kw)


def test_unaligned_replicates_are_refused():
    with pytest.raises(ev.EvidenceError, match="align"):
        ev.superiority("x", "c", "", [1, 2, 3], [1, 2], floor=0.1)


def test_bootstrap_interval_is_seeded_and_covers_the_mean():
    x = np.random.default_rng(1).normal(0.01, 0.1, 5000)
    a, b = ev.bootstrap_interval(x, seed=4), ev.bootstrap_interval(x, seed=4)
    assert a == b and a[1] < a[0] < a[2] and a[3] == 5000
    t = ev.t_interval(x)
    assert abs((a[2] - a[1]) - (t[2] - t[1])) < 0.2 * (t[2] - t[1])


def test_ledger_stores_typed_claims_with_every_field(tmp_path):
    led = Ledger("demo", {"scale": "smoke"})
    table = led.add_claims([_sup([0.02, 0.03, 0.025]), ev.check("c", "identity", True, test="exact")])
    assert "verdict" in table.columns
    path = led.save(tmp_path)
    import json

    data = json.loads(path.read_text())
    need = {"id", "kind", "role", "claim", "paper", "effect", "ci", "n", "floor", "margin", "test", "verdict",
            "cause", "why", "section"}
    for c in data["claims"]:
        assert need <= set(c)
    assert data["claims"][0]["scale"] == "smoke" and "numerics" in data and data["timings"]["wall_s"] >= 0
    with pytest.raises(ValueError, match="share an id"):
        led.add_claims([_sup([0.1, 0.2]), _sup([0.1, 0.2])])


def test_forest_plot_draws_one_row_per_claim():
    import matplotlib

    matplotlib.use("Agg")
    claims = [_sup([0.02, 0.03, 0.025]), ev.equivalence("e", "c", "", [0.001, 0.0, -0.001], margin=0.01),
              ev.ratio("r", "c", "", [1.0, 1.1], [10.0, 11.0], floor=5), ev.check("k", "c", True, test="t")]
    ax = ev.forest_plot(claims)
    assert len(ax.get_yticks()) == 3
