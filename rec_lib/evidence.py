"""Typed claims with paired intervals: the rules behind every claims table of the book.

A claim is declared with its kind, its comparison and the smallest effect that
would matter *before* its numbers are looked at, then computed from the
replicates (seeds, splits, or test users) that the compared methods share:

==================  ==============================================================
kind                verdict
==================  ==============================================================
``superiority``     A beats B. ``effect`` = mean paired difference, oriented so
                    that positive supports the claim, with a 95% t interval over
                    the replicates (or a paired bootstrap over test users).
                    *holds*: the interval excludes 0 and the effect reaches the
                    ``floor``; *does not hold*: the whole interval lies below the
                    floor (reversed, or too small to matter); else *inconclusive*.
``equivalence``     A is as good as B. Two one-sided tests against ``margin``
                    (a 90% interval). *holds*: the whole interval lies inside
                    (-margin, margin); *does not hold*: it lies wholly outside;
                    else *inconclusive*. More noise makes it harder to pass.
``non-inferiority`` A is not worse than B by more than ``margin``: *holds* when
                    the interval's low end is above -margin; *does not hold* when
                    its high end is below -margin.
``ratio``           A is ``floor`` times faster than B: per-round ratios of a
                    rotation benchmark (A, B, A, B, ...), interval on the log
                    scale. *holds*: the interval excludes 1 and the ratio reaches
                    the floor; *does not hold*: the interval lies below the floor.
``trend``           y grows (or falls, or stays flat) with x: least-squares slope
                    over at least 3 points with its t interval; ``increasing`` /
                    ``decreasing`` are judged like superiority on the (oriented)
                    slope, ``flat`` like equivalence.
``check``           an identity, a theorem verified numerically, a sanity test:
                    *passes* or *fails*; shown apart, never counted as a
                    reproduced claim.
==================  ==============================================================

Fewer than two replicates never give a decisive verdict. Every claim that does
not hold names a ``cause`` (``scale``, ``protocol``, ``implementation``,
``paper``, ``undetermined``) and says ``why``. The stored ``effect``, ``ci`` and
``floor``/``margin`` are enough to recompute the verdict
(:func:`recompute_verdict`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "KINDS", "ROLES", "CAUSES", "Claim", "EvidenceError",
    "t_interval", "bootstrap_interval", "paired_differences",
    "superiority", "equivalence", "non_inferiority", "ratio", "trend", "check",
    "recompute_verdict", "claims_table", "checks_table", "summary_counts", "forest_plot",
]

KINDS = ("superiority", "equivalence", "non-inferiority", "ratio", "trend", "check")
ROLES = ("headline", "mechanism", "control", "check")
CAUSES = ("scale", "protocol", "implementation", "paper", "undetermined")
VERDICTS = ("holds", "does not hold", "inconclusive")
CHECK_VERDICTS = ("passes", "fails")


class EvidenceError(ValueError):
    """A claim was declared with a bad argument (negative floor, unknown role, ...)."""


@dataclass
class Claim:
    """One claim as stored in a ledger (``ledger["claims"]``) and shown in the report.

    ``effect`` is oriented so that a positive number supports the claim (for
    ``ratio``: the measured ratio, compared with ``floor``); ``ci`` is its
    interval at ``level``; ``n`` the number of independent replicates.
    """

    id: str
    kind: str
    role: str
    claim: str
    paper: str
    effect: float | None
    ci: list[float | None]
    n: int
    floor: float | None
    margin: float | None
    test: str
    verdict: str
    cause: str | None
    why: str
    section: str = ""
    unit: str = ""
    level: float = 0.95
    floor_why: str = ""
    timing: bool = False
    scale: str = ""
    ours: str = ""
    replicates: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------ intervals
def t_interval(x: Sequence[float], level: float = 0.95) -> tuple[float, float, float, int]:
    """Mean of ``x`` and its two-sided t interval: ``(mean, low, high, n)``.

    With fewer than two values the interval is ``(nan, nan)``: one replicate
    says nothing about its own noise.
    """
    from scipy import stats

    x = np.asarray(x, dtype=float).ravel()
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    m = float(x.mean())
    if n < 2:
        return m, math.nan, math.nan, n
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return m, m - half, m + half, n


def bootstrap_interval(
    x: Sequence[float], level: float = 0.95, n_boot: int = 2000, seed: int = 0, chunk: int = 100
) -> tuple[float, float, float, int]:
    """Mean of per-unit paired differences ``x`` (e.g. per test user) with a percentile bootstrap interval.

    Resamples units with replacement ``n_boot`` times (fixed ``seed``), in
    chunks so that memory stays at ``chunk * len(x)`` numbers.
    """
    x = np.asarray(x, dtype=float).ravel()
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n < 2:
        return (float(x.mean()) if n else math.nan), math.nan, math.nan, n
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for s in range(0, n_boot, chunk):
        k = min(chunk, n_boot - s)
        means[s : s + k] = x[rng.integers(0, n, size=(k, n))].mean(axis=1)
    lo, hi = np.quantile(means, [0.5 - level / 2, 0.5 + level / 2])
    return float(x.mean()), float(lo), float(hi), n


def paired_differences(a: Sequence[float], b: Sequence[float], higher_is_better: bool = True) -> np.ndarray:
    """``a - b`` per replicate (``b - a`` when lower is better): positive favours A."""
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise EvidenceError(
            f"paired replicates must align: A has {a.size} values, B has {b.size}; "
            "pass one value per shared seed, split or user, in the same order"
        )
    return (a - b) if higher_is_better else (b - a)


# --------------------------------------------------------------- validation
def _validate(id: str, role: str, kind: str, cause: str | None, **numbers: float | None) -> None:
    if not id or not isinstance(id, str):
        raise EvidenceError(f"a claim needs a non-empty string id, got {id!r}")
    if kind not in KINDS:
        raise EvidenceError(f"claim {id!r}: kind {kind!r} is not one of {KINDS}")
    if role not in ROLES:
        raise EvidenceError(f"claim {id!r}: role {role!r} is not one of {ROLES}")
    if (role == "check") != (kind == "check"):
        raise EvidenceError(f"claim {id!r}: role 'check' goes with kind 'check' and only with it")
    if cause is not None and cause not in CAUSES:
        raise EvidenceError(f"claim {id!r}: cause {cause!r} is not one of {CAUSES}")
    for name, v in numbers.items():
        if v is None:
            continue
        if not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v) or v <= 0:
            raise EvidenceError(
                f"claim {id!r}: {name}={v!r} must be a positive finite number "
                f"(the smallest effect that matters, in the metric's units)"
            )


def _num(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _finish(
    *, id: str, kind: str, role: str, claim: str, paper: str, effect: float, lo: float, hi: float, n: int,
    floor: float | None, margin: float | None, test: str, verdict: str, cause: str | None, why: str,
    auto_why: str, section: str, unit: str, level: float, floor_why: str, timing: bool, replicates: Sequence[float],
    fmt: str,
) -> Claim:
    if verdict != "holds":
        cause = cause or "undetermined"
        why = why or auto_why
    else:
        cause, why = None, ""
    ours = "n/a" if not math.isfinite(effect) else fmt.format(effect)
    if math.isfinite(lo) and math.isfinite(hi):
        ours += f" [{fmt.format(lo)}, {fmt.format(hi)}]"
    return Claim(
        id=id, kind=kind, role=role, claim=claim, paper=paper, effect=_num(effect), ci=[_num(lo), _num(hi)], n=int(n),
        floor=_num(floor) if floor is not None else None, margin=_num(margin) if margin is not None else None,
        test=test, verdict=verdict, cause=cause, why=why, section=section, unit=unit, level=level,
        floor_why=floor_why, timing=timing, ours=ours,
        replicates=[float(v) for v in np.asarray(replicates, dtype=float).ravel()][:50],
    )


def _superiority_verdict(effect: float, lo: float, hi: float, n: int, floor: float) -> tuple[str, str]:
    if n < 2 or not (math.isfinite(lo) and math.isfinite(hi)):
        return "inconclusive", f"{n} replicate(s): no interval, so no decisive verdict"
    if lo > 0 and effect >= floor:
        return "holds", ""
    if hi < floor:
        if hi < 0:
            return "does not hold", "reversed: the whole interval lies below 0"
        return "does not hold", "too small to matter: the whole interval lies below the floor"
    if lo <= 0:
        return "inconclusive", "the interval includes 0 (noise as large as the effect)"
    return "inconclusive", "the interval excludes 0 but the estimate is below the floor"


def _interval(diffs: np.ndarray, method: str, level: float, seed: int) -> tuple[float, float, float, int]:
    if method == "t":
        return t_interval(diffs, level)
    if method == "bootstrap":
        return bootstrap_interval(diffs, level, seed=seed)
    raise EvidenceError(f"interval method {method!r} is not 't' or 'bootstrap'")


# ------------------------------------------------------------------ claims
def superiority(
    id: str, claim: str, paper: str, a: Sequence[float], b: Sequence[float] | None = None, *, floor: float,
    floor_why: str = "", higher_is_better: bool = True, role: str = "headline", section: str = "", unit: str = "",
    cause: str | None = None, why: str = "", interval: str = "t", seed: int = 0, fmt: str = "{:+.4g}",
    replicate: str = "seed", timing: bool = False,
) -> Claim:
    """A beats B by at least ``floor``: paired differences of ``a`` and ``b`` (or ``a`` already differences).

    ``interval="t"`` over replicates (seeds, splits); ``"bootstrap"`` over
    units of one run (test users). ``cause``/``why`` are used when the claim
    does not hold (an automatic reason is written otherwise). ``timing=True``
    marks a claim read from wall-clock times (every typed claim takes it;
    :func:`ratio` sets it): reruns compare such claims on presence only
    (:func:`rec_lib.ledger.compare_ledgers`), nbval must not check them.
    """
    _validate(id, role, "superiority", cause, floor=floor)
    diffs = np.asarray(a, dtype=float).ravel() if b is None else paired_differences(a, b, higher_is_better)
    effect, lo, hi, n = _interval(diffs, interval, 0.95, seed)
    v, auto = _superiority_verdict(effect, lo, hi, n, floor)
    how = "t interval over" if interval == "t" else "percentile bootstrap (2,000 resamples) over"
    test = (f"paired difference per {replicate} ({'A - B' if higher_is_better else 'B - A'}), 95% {how} "
            f"{n} {replicate}s; holds if the interval excludes 0 and the mean reaches the floor {floor:g}")
    return _finish(id=id, kind="superiority", role=role, claim=claim, paper=paper, effect=effect, lo=lo, hi=hi, n=n,
                   floor=floor, margin=None, test=test, verdict=v, cause=cause, why=why, auto_why=auto,
                   section=section, unit=unit, level=0.95, floor_why=floor_why, timing=timing, replicates=diffs, fmt=fmt)


def equivalence(
    id: str, claim: str, paper: str, a: Sequence[float], b: Sequence[float] | None = None, *, margin: float,
    floor_why: str = "", role: str = "headline", section: str = "", unit: str = "", cause: str | None = None,
    why: str = "", interval: str = "t", seed: int = 0, fmt: str = "{:+.4g}", replicate: str = "seed",
    timing: bool = False,
) -> Claim:
    """A is as good as B within ``margin``: two one-sided tests (a 90% interval inside ±margin)."""
    _validate(id, role, "equivalence", cause, margin=margin)
    diffs = np.asarray(a, dtype=float).ravel() if b is None else paired_differences(a, b)
    effect, lo, hi, n = _interval(diffs, interval, 0.90, seed)
    if n < 2 or not math.isfinite(lo):
        v, auto = "inconclusive", f"{n} replicate(s): no interval, so no decisive verdict"
    elif -margin < lo and hi < margin:
        v, auto = "holds", ""
    elif lo >= margin or hi <= -margin:
        v, auto = "does not hold", "the whole interval lies outside the margin: the difference matters"
    else:
        v, auto = "inconclusive", "the interval reaches past the margin (too noisy to show equivalence)"
    test = (f"paired difference per {replicate}, two one-sided tests: 90% interval over {n} {replicate}s "
            f"must lie inside ±{margin:g}")
    return _finish(id=id, kind="equivalence", role=role, claim=claim, paper=paper, effect=effect, lo=lo, hi=hi, n=n,
                   floor=None, margin=margin, test=test, verdict=v, cause=cause, why=why, auto_why=auto,
                   section=section, unit=unit, level=0.90, floor_why=floor_why, timing=timing, replicates=diffs, fmt=fmt)


def non_inferiority(
    id: str, claim: str, paper: str, a: Sequence[float], b: Sequence[float] | None = None, *, margin: float,
    floor_why: str = "", higher_is_better: bool = True, role: str = "headline", section: str = "", unit: str = "",
    cause: str | None = None, why: str = "", interval: str = "t", seed: int = 0, fmt: str = "{:+.4g}",
    replicate: str = "seed", timing: bool = False,
) -> Claim:
    """A is not worse than B by more than ``margin`` (one-sided 95%: the low end of a 90% interval)."""
    _validate(id, role, "non-inferiority", cause, margin=margin)
    diffs = np.asarray(a, dtype=float).ravel() if b is None else paired_differences(a, b, higher_is_better)
    effect, lo, hi, n = _interval(diffs, interval, 0.90, seed)
    if n < 2 or not math.isfinite(lo):
        v, auto = "inconclusive", f"{n} replicate(s): no interval, so no decisive verdict"
    elif lo > -margin:
        v, auto = "holds", ""
    elif hi < -margin:
        v, auto = "does not hold", "the whole interval lies below -margin: A is worse by more than the margin"
    else:
        v, auto = "inconclusive", "the interval reaches below -margin"
    test = (f"paired difference per {replicate} (positive favours A), one-sided 95% bound over {n} "
            f"{replicate}s must stay above -{margin:g}")
    return _finish(id=id, kind="non-inferiority", role=role, claim=claim, paper=paper, effect=effect, lo=lo, hi=hi,
                   n=n, floor=None, margin=margin, test=test, verdict=v, cause=cause, why=why, auto_why=auto,
                   section=section, unit=unit, level=0.90, floor_why=floor_why, timing=timing, replicates=diffs, fmt=fmt)


def ratio(
    id: str, claim: str, paper: str, fast: Sequence[float], slow: Sequence[float], *, floor: float,
    floor_why: str = "", role: str = "headline", section: str = "", cause: str | None = None, why: str = "",
    fmt: str = "{:.3g}",
) -> Claim:
    """A (``fast`` times) is at least ``floor`` times faster than B (``slow``), from rotation rounds.

    ``fast[i]`` and ``slow[i]`` are the times of round ``i`` of a rotation
    benchmark (:func:`rec_lib.utils.benchmark_rotation` with ``rounds=True``):
    the interval is a t interval of ``log(slow / fast)`` over rounds,
    exponentiated. ``effect`` is the geometric-mean speed-up.
    """
    _validate(id, role, "ratio", cause, floor=floor)
    slow_t, fast_t = np.asarray(slow, float).ravel(), np.asarray(fast, float).ravel()
    paired_differences(slow_t, fast_t)  # same number of rounds, or a clear error
    if (slow_t <= 0).any() or (fast_t <= 0).any():
        raise EvidenceError(f"claim {id!r}: times must be positive seconds")
    logs = np.log(slow_t) - np.log(fast_t)
    m, lo, hi, n = t_interval(logs)
    effect, elo, ehi = math.exp(m), (math.exp(lo) if math.isfinite(lo) else math.nan), (
        math.exp(hi) if math.isfinite(hi) else math.nan)
    if n < 2 or not math.isfinite(lo):
        v, auto = "inconclusive", f"{n} round(s): no interval"
    elif lo > 0 and effect >= floor:
        v, auto = "holds", ""
    elif ehi < floor:
        v, auto = "does not hold", f"the whole interval lies below {floor:g}x"
    else:
        v, auto = "inconclusive", f"the interval reaches {floor:g}x or 1x"
    test = (f"rotation benchmark, {n} rounds: 95% t interval of log(time B / time A), exponentiated; holds if it "
            f"excludes 1 and the speed-up reaches {floor:g}x")
    return _finish(id=id, kind="ratio", role=role, claim=claim, paper=paper, effect=effect, lo=elo, hi=ehi, n=n,
                   floor=floor, margin=None, test=test, verdict=v, cause=cause, why=why, auto_why=auto,
                   section=section, unit="x", level=0.95, floor_why=floor_why, timing=True, replicates=np.exp(logs),
                   fmt=fmt)


def trend(
    id: str, claim: str, paper: str, x: Sequence[float], y: Sequence[float], *, expect: str,
    floor: float | None = None, margin: float | None = None, floor_why: str = "", role: str = "headline",
    section: str = "", unit: str = "", cause: str | None = None, why: str = "", x_label: str = "x",
    fmt: str = "{:+.4g}", timing: bool = False,
) -> Claim:
    """y grows (``expect="increasing"``), falls (``"decreasing"``) or stays flat (``"flat"``) with x.

    Least-squares slope of ``y`` on ``x`` (transform ``x`` yourself, e.g.
    ``np.log(P)``) over at least 3 points, with its t interval on ``n - 2``
    degrees of freedom. Increasing/decreasing need ``floor`` (the smallest
    slope that matters, oriented); flat needs ``margin`` (90% interval of the
    slope inside ±margin).
    """
    from scipy import stats

    if expect not in ("increasing", "decreasing", "flat"):
        raise EvidenceError(f"claim {id!r}: expect={expect!r} is not 'increasing', 'decreasing' or 'flat'")
    if expect == "flat" and margin is None:
        raise EvidenceError(f"claim {id!r}: a flat trend needs a margin on the slope")
    if expect != "flat" and floor is None:
        raise EvidenceError(f"claim {id!r}: an {expect} trend needs a floor on the slope")
    _validate(id, role, "trend", cause, floor=floor, margin=margin)
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    if x.shape != y.shape:
        raise EvidenceError(f"claim {id!r}: x has {x.size} points, y has {y.size}")
    n = int(x.size)
    level = 0.90 if expect == "flat" else 0.95
    if n < 3 or np.ptp(x) == 0:
        slope, lo, hi = (math.nan,) * 3
        v, auto = "inconclusive", f"{n} point(s): a trend needs at least 3 distinct x"
    else:
        fit = stats.linregress(x, y)
        half = float(stats.t.ppf(0.5 + level / 2, n - 2) * fit.stderr) if n > 2 else math.nan
        sign = -1.0 if expect == "decreasing" else 1.0
        slope = sign * float(fit.slope)
        lo, hi = slope - half, slope + half
        if expect == "flat":
            if -margin < lo and hi < margin:
                v, auto = "holds", ""
            elif lo >= margin or hi <= -margin:
                v, auto = "does not hold", "the slope's interval lies outside the margin"
            else:
                v, auto = "inconclusive", "the slope's interval reaches past the margin"
        else:
            v, auto = _superiority_verdict(slope, lo, hi, n, floor)
    test = (f"least-squares slope of y on {x_label} over {n} points, {int(level * 100)}% t interval "
            + (f"inside ±{margin:g}" if expect == "flat" else f"({expect}; floor {floor:g})"))
    return _finish(id=id, kind="trend", role=role, claim=claim, paper=paper, effect=slope, lo=lo, hi=hi, n=n,
                   floor=floor, margin=margin, test=test, verdict=v, cause=cause, why=why, auto_why=auto,
                   section=section, unit=unit, level=level, floor_why=floor_why, timing=timing, replicates=y, fmt=fmt)


def check(
    id: str, claim: str, passed: bool, *, value: float | None = None, test: str, paper: str = "",
    tolerance: float | None = None, section: str = "", why: str = "", fmt: str = "{:.3g}",
) -> Claim:
    """An identity, a numerically verified theorem, a sanity test: ``passes`` or ``fails``."""
    _validate(id, "check", "check", None)
    v = "passes" if bool(passed) else "fails"
    val = _num(float(value)) if value is not None else None
    return Claim(id=id, kind="check", role="check", claim=claim, paper=paper, effect=val, ci=[None, None], n=1,
                 floor=None, margin=_num(tolerance) if tolerance is not None else None, test=test, verdict=v,
                 cause=None if passed else "implementation", why="" if passed else (why or "the check failed"),
                 section=section, ours="" if val is None else fmt.format(val))


# --------------------------------------------------------------- re-reading
def recompute_verdict(c: dict[str, Any]) -> str:
    """The verdict implied by a stored claim's ``effect``, ``ci``, ``n`` and ``floor``/``margin``."""
    kind, n = c["kind"], c.get("n") or 0
    if kind == "check":
        return c["verdict"]
    lo, hi = c["ci"]
    eff = c["effect"]
    if n < 2 or lo is None or hi is None or eff is None:
        return "inconclusive"
    if kind in ("superiority",) or (kind == "trend" and c.get("floor") is not None):
        return _superiority_verdict(eff, lo, hi, n, c["floor"])[0]
    if kind == "ratio":
        if lo > 1 and eff >= c["floor"]:
            return "holds"
        return "does not hold" if hi < c["floor"] else "inconclusive"
    m = c["margin"]
    if kind in ("equivalence", "trend"):
        if -m < lo and hi < m:
            return "holds"
        return "does not hold" if (lo >= m or hi <= -m) else "inconclusive"
    if kind == "non-inferiority":
        if lo > -m:
            return "holds"
        return "does not hold" if hi < -m else "inconclusive"
    raise EvidenceError(f"unknown kind {kind!r}")


# ---------------------------------------------------------------- displays
def _as_dicts(claims: Sequence[Claim | dict[str, Any]]) -> list[dict[str, Any]]:
    return [c.as_dict() if isinstance(c, Claim) else dict(c) for c in claims]


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return ""
    return f"{x:.{digits}g}"


def claims_table(claims: Sequence[Claim | dict[str, Any]], digits: int = 3):
    """The claims (checks left out) as a DataFrame: role, kind, effect, interval, n, floor or margin, verdict, cause."""
    import pandas as pd

    rows = []
    for c in _as_dicts(claims):
        if c.get("kind") == "check":
            continue
        lo, hi = (c.get("ci") or [None, None])[:2]
        bound = c.get("floor") if c.get("floor") is not None else c.get("margin")
        rows.append({
            "id": c["id"], "role": c.get("role", ""), "kind": c.get("kind", ""), "claim": c["claim"],
            "effect": _fmt(c.get("effect"), digits) + (f" {c['unit']}" if c.get("unit") and c.get("unit") != "x" else ""),
            "interval": "" if lo is None else f"[{_fmt(lo, digits)}, {_fmt(hi, digits)}]",
            "n": c.get("n"),
            "floor / margin": "" if bound is None else ("±" if c.get("floor") is None else "") + _fmt(bound, digits),
            "verdict": c["verdict"], "cause": c.get("cause") or "", "why": c.get("why") or "",
        })
    cols = ["role", "kind", "claim", "effect", "interval", "n", "floor / margin", "verdict", "cause", "why"]
    return pd.DataFrame(rows, columns=["id", *cols]).set_index("id")


def checks_table(claims: Sequence[Claim | dict[str, Any]]):
    """The checks as a DataFrame: what is checked, the value, the test, passes or fails."""
    import pandas as pd

    rows = [{"id": c["id"], "check": c["claim"], "value": c.get("ours", ""), "test": c.get("test", ""),
             "verdict": c["verdict"]} for c in _as_dicts(claims) if c.get("kind") == "check"]
    return pd.DataFrame(rows, columns=["id", "check", "value", "test", "verdict"]).set_index("id")


def summary_counts(claims: Sequence[Claim | dict[str, Any]]):
    """Claims by role and verdict (checks counted apart, as passes / fails)."""
    import pandas as pd

    ds = _as_dicts(claims)
    rows = {}
    for role in ROLES[:3]:
        sel = [c for c in ds if c.get("role") == role and c.get("kind") != "check"]
        rows[role] = {v: sum(c["verdict"] == v for c in sel) for v in VERDICTS}
    out = pd.DataFrame.from_dict(rows, orient="index", columns=list(VERDICTS))
    chk = [c for c in ds if c.get("kind") == "check"]
    out["checks passed"] = ""
    out.loc["headline", "checks passed"] = f"{sum(c['verdict'] == 'passes' for c in chk)} of {len(chk)}"
    return out


_COLORS = {"holds": "#1b7837", "does not hold": "#b2182b", "inconclusive": "#737373"}


def _scaled(c: dict[str, Any]) -> tuple[float, float, float, float] | None:
    """Effect and interval on a common axis: 0 = no effect, 1 = the floor (or the margin)."""
    eff, (lo, hi) = c.get("effect"), (c.get("ci") or [None, None])[:2]
    if eff is None:
        return None
    if c["kind"] == "ratio":
        f = math.log(c["floor"]) if c["floor"] and c["floor"] > 1 else 1.0
        t = lambda v: None if v is None or v <= 0 else math.log(v) / f  # noqa: E731
        return t(eff), t(lo), t(hi), 1.0
    unit = c.get("floor") if c.get("floor") else c.get("margin")
    if not unit:
        return None
    s = lambda v: None if v is None else v / unit  # noqa: E731
    return s(eff), s(lo), s(hi), 1.0


def forest_plot(claims: Sequence[Claim | dict[str, Any]], ax=None, title: str = ""):
    """Each claim's effect and interval on one axis (0 = no effect, 1 = its floor; ±1 = its margin).

    Ratios are drawn on the log scale (1 = the claimed speed-up). Colour is
    the verdict. Returns the axes.
    """
    import matplotlib.pyplot as plt

    ds = [c for c in _as_dicts(claims) if c.get("kind") != "check"]
    if ax is None:
        _, ax = plt.subplots(figsize=(7.0, 0.32 * max(len(ds), 3) + 1.0))
    for i, c in enumerate(ds):
        y = len(ds) - 1 - i
        sc = _scaled(c)
        color = _COLORS.get(c["verdict"], "#737373")
        if sc is None or sc[0] is None:
            ax.plot([], [])
            continue
        eff, lo, hi, _ = sc
        clip = lambda v: max(min(v, 6.0), -6.0)  # noqa: E731
        if lo is not None and hi is not None:
            ax.plot([clip(lo), clip(hi)], [y, y], color=color, lw=2)
        marker = "D" if c.get("margin") is not None else "o"
        ax.plot([clip(eff)], [y], marker=marker, color=color, ms=5)
    ax.axvline(0, color="black", lw=0.8)
    ax.axvline(1, color="black", lw=0.8, ls="--")
    ax.axvline(-1, color="grey", lw=0.6, ls=":")
    ax.set_yticks(range(len(ds)))
    ax.set_yticklabels([c["id"] for c in reversed(ds)], fontsize=8)
    ax.set_xlim(-6.2, 6.2)
    ax.set_xlabel("effect / floor (or / margin); ratios: log(speed-up) / log(claimed)")
    if title:
        ax.set_title(title)
    return ax
