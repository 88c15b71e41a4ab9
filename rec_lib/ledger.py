"""The results ledger: what a chapter measured, written to ``results/<chapter>.json``.

A ledger records the settings, seeds, library versions, metrics, tables,
timings and claims of one run. The book's tables and the claims verdicts are
computed from it, and the tests read it back.

Claims: each headline claim of a paper becomes a :class:`Claim` whose verdict
is *computed* from measured numbers by :func:`verdict` (never typed in).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from rec_lib.paths import results_dir
from rec_lib.utils import atomic_write

__all__ = ["Ledger", "Claim", "verdict", "read_ledger", "claims_frame", "library_versions", "compare_ledgers",
           "claim_resolution", "compare_across_machines", "MachineComparison"]

Verdict = Literal["holds", "does not hold", "inconclusive"]
_LIBS = ("torch", "numpy", "pandas", "scipy", "faiss", "matplotlib", "rec_lib")


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries whose numbers could change a result."""
    import importlib

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in _LIBS:
        try:
            out[name] = getattr(importlib.import_module(name), "__version__", "?")
        except ImportError:  # pragma: no cover - every one is a dependency
            out[name] = "missing"
    return out


def _jsonable(x: Any) -> Any:
    """Turn numpy/torch/pandas values into plain JSON (NaN and inf become None)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, pd.DataFrame):
        return {"__frame__": True, **json.loads(x.to_json(orient="split", double_precision=15))}
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if hasattr(x, "detach") and hasattr(x, "tolist"):  # torch tensor
        return _jsonable(x.detach().cpu().tolist())
    if isinstance(x, (bool, int, str)) or x is None:
        return x
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"cannot store a {type(x).__name__} in the ledger: {x!r}")


def _labels(labels: list) -> Any:
    """Index or column labels of a stored frame; a MultiIndex is stored as a list of lists (its tuples)."""
    if labels and all(isinstance(v, list) for v in labels):
        return pd.MultiIndex.from_tuples([tuple(v) for v in labels])
    return labels


def _from_json(x: Any) -> Any:
    if isinstance(x, dict):
        if x.get("__frame__"):
            return pd.DataFrame(x["data"], index=_labels(x["index"]), columns=_labels(x["columns"]))
        return {k: _from_json(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_from_json(v) for v in x]
    return x


def verdict(
    measured: float,
    op: Literal[">", ">=", "<", "<=", "between"],
    target: float | tuple[float, float],
    tolerance: float = 0.0,
) -> Verdict:
    """Compare a measured number with the paper's, with an inconclusive band.

    ``holds`` when ``measured op target`` holds by more than ``tolerance``;
    ``does not hold`` when it fails by more than ``tolerance``; otherwise
    ``inconclusive`` (the difference is within noise). For ``between``,
    ``target`` is ``(low, high)`` and the band widens both ends.
    """
    if measured is None or (isinstance(measured, float) and math.isnan(measured)):
        return "inconclusive"
    if op == "between":
        lo, hi = target  # type: ignore[misc]
        if lo + tolerance <= measured <= hi - tolerance:
            return "holds"
        if measured < lo - tolerance or measured > hi + tolerance:
            return "does not hold"
        return "inconclusive"
    t = float(target)  # type: ignore[arg-type]
    margin = {">": measured - t, ">=": measured - t, "<": t - measured, "<=": t - measured}[op]
    if margin > tolerance or (op in (">=", "<=") and margin >= 0 and tolerance == 0):
        return "holds"
    if margin < -tolerance:
        return "does not hold"
    return "inconclusive"


@dataclass
class Claim:
    """One headline claim of a paper, checked against what we measured.

    ``section`` is the label of the chapter section that shows the evidence
    (used for links from the reproducibility report).
    """

    id: str
    claim: str
    paper: str
    ours: str
    verdict: Verdict
    scale: str = ""
    note: str = ""
    section: str = ""


@dataclass
class Ledger:
    """Collects one chapter's results and writes them atomically as JSON."""

    chapter: str
    settings: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter, repr=False)

    def __post_init__(self) -> None:
        if not self.chapter or not self.chapter.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"chapter name must be a simple identifier, got {self.chapter!r}")
        if hasattr(self.settings, "as_dict"):
            self.settings = self.settings.as_dict()

    # -- recording -----------------------------------------------------------------
    def log_metric(self, name: str, value: Any) -> Any:
        """Record a number (or dict of numbers) under ``name``; returns ``value``."""
        self.metrics[name] = _jsonable(value)
        return value

    def log_table(self, name: str, frame: pd.DataFrame) -> pd.DataFrame:
        """Record a table; returns it so a cell can end with ``ledger.log_table(...)``."""
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"log_table expects a DataFrame, got {type(frame).__name__}")
        self.tables[name] = _jsonable(frame)
        return frame

    def log_timing(self, name: str, seconds: Any) -> Any:
        self.timings[name] = _jsonable(seconds)
        return seconds

    def claim(
        self,
        id: str,
        claim: str,
        paper: str,
        ours: float | str,
        verdict: Verdict,
        note: str = "",
        section: str = "",
        fmt: str = "{:.3g}",
    ) -> Claim:
        """Record a claim; ``verdict`` must come from :func:`verdict` or a computed test."""
        if verdict not in ("holds", "does not hold", "inconclusive"):
            raise ValueError(f"verdict must be 'holds', 'does not hold' or 'inconclusive', got {verdict!r}")
        ours_s = fmt.format(ours) if isinstance(ours, (int, float, np.floating)) else str(ours)
        c = Claim(id, claim, paper, ours_s, verdict, self.settings.get("scale", ""), note, section)
        self.claims = [x for x in self.claims if x.id != id] + [c]
        return c

    def add_claims(self, claims: "list[evidence.Claim]") -> pd.DataFrame:  # noqa: F821
        """Record typed claims (:mod:`rec_lib.evidence`); returns the claims table to display.

        A claim with the id of one already recorded replaces it. Checks are
        kept too, and shown apart by :func:`rec_lib.evidence.checks_table`.
        """
        from rec_lib import evidence

        for c in claims:
            if not isinstance(c, evidence.Claim):
                raise TypeError(f"add_claims expects rec_lib.evidence claims, got {type(c).__name__}")
            c.scale = c.scale or str(self.settings.get("scale", ""))
        ids = {c.id for c in claims}
        if len(ids) != len(claims):
            raise ValueError("two claims share an id: " + ", ".join(sorted({c.id for c in claims
                                                                              if [x.id for x in claims].count(c.id) > 1})))
        self.claims = [x for x in self.claims if x.id not in ids] + list(claims)
        return evidence.claims_table(claims)

    # -- output --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The ledger as JSON-ready data; ``timings.wall_s`` is the time since the ledger was made."""
        from rec_lib import numerics

        self.timings["wall_s"] = round(time.perf_counter() - self.started, 1)
        return {
            "chapter": self.chapter,
            "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "versions": library_versions(),
            "numerics": numerics.describe(),
            "settings": _jsonable(self.settings),
            "metrics": self.metrics,
            "tables": self.tables,
            "timings": self.timings,
            "claims": [_jsonable(c.as_dict() if hasattr(c, "as_dict") else asdict(c)) for c in self.claims],
            "notes": self.notes,
        }

    def save(self, directory: str | Path | None = None) -> Path:
        """Write ``<directory>/<chapter>.json`` (default :func:`rec_lib.paths.results_dir`)."""
        path = Path(directory or results_dir()) / f"{self.chapter}.json"
        payload = json.dumps(self.to_dict(), indent=1, sort_keys=False, allow_nan=False)
        with atomic_write(path) as fh:
            fh.write(payload + "\n")
        return path

    def claims_frame(self) -> pd.DataFrame:
        return claims_frame([c.as_dict() if hasattr(c, "as_dict") else asdict(c) for c in self.claims])


def read_ledger(chapter: str, directory: str | Path | None = None) -> dict[str, Any]:
    """Read ``<directory>/<chapter>.json`` back; tables come back as DataFrames."""
    path = Path(directory or results_dir()) / f"{chapter}.json"
    if not path.exists():
        raise FileNotFoundError(
            f"no ledger for chapter {chapter!r} at {path}; execute the chapter first "
            f"(e.g. `python -m rec_lib run {chapter}`) or set REC_LIB_RESULTS"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"ledger {path} is not valid JSON ({err}); delete it and rerun the chapter") from err
    for key in ("chapter", "settings", "metrics", "claims"):
        if key not in data:
            raise ValueError(f"ledger {path} lacks the key {key!r}; delete it and rerun the chapter")
    data["tables"] = {k: _from_json(v) for k, v in data.get("tables", {}).items()}
    return data


_VERDICT_MARK = {"holds": "✅ holds", "does not hold": "❌ does not hold", "inconclusive": "➖ inconclusive"}


def claims_frame(claims: list[dict[str, Any]]) -> pd.DataFrame:
    """The claims table of a chapter: claim, paper, ours, scale, verdict."""
    if claims and all("kind" in c for c in claims):  # typed claims (rec_lib.evidence)
        from rec_lib import evidence

        return evidence.claims_table(claims)
    cols = ["claim", "paper", "ours", "scale", "verdict", "note"]
    if not claims:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(claims)
    df["verdict"] = df["verdict"].map(_VERDICT_MARK).fillna(df["verdict"])
    return df.set_index("id")[cols]


# ------------------------------------------------------------------ reruns
_TIMING = re.compile(r"(_s|_ms|_sec|_secs|_seconds|\(s\)|\(ms\))$|^x_|(^|_)(ms|s|sec)_per|per_batch|time|timing|wall|speed|elapsed|"
                     r"throughput|per_step|seconds|millis", re.I)  # "x Default": a time as a multiple of another


# Claims read from wall-clock times (speed-ups, cost fits, equal-time budgets)
# vary between runs: compared only on their presence.
_TIMED_CLAIM = re.compile(r"speed|cost|time", re.I)


def _is_timing(key: str) -> bool:
    return bool(_TIMING.search(str(key).replace(" ", "_").replace("-", "_")))


def _col_name(c: Any) -> str:
    """A table column's name as text (a string, a number, or a MultiIndex tuple)."""
    return " ".join(map(str, c)) if isinstance(c, (list, tuple)) else str(c)


def _close(a: Any, b: Any, atol: float, rtol: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return a == b
    if a == b or (math.isnan(a) and math.isnan(b)):  # equal infinities; NaN where both have none
        return True
    return abs(a - b) <= atol + rtol * abs(b)


def _diff(a: Any, b: Any, path: str, atol: float, rtol: float, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        if a.get("__frame__") and b.get("__frame__"):
            cols = a.get("columns", [])
            if cols != b.get("columns") or a.get("index") != b.get("index"):
                out.append(f"{path}: the table's rows or columns differ")
                return
            keep = [j for j, c in enumerate(cols) if not _is_timing(_col_name(c))]
            for i, (ra, rb) in enumerate(zip(a["data"], b["data"])):
                for j in keep:
                    if not _close(ra[j], rb[j], atol, rtol):
                        out.append(f"{path}[{a['index'][i]!r}, {cols[j]!r}]: {ra[j]!r} vs {rb[j]!r}")
            return
        for k in sorted(set(a) | set(b)):
            if _is_timing(k):
                continue
            if k not in a or k not in b:
                out.append(f"{path}.{k}: present in only one ledger")
                continue
            _diff(a[k], b[k], f"{path}.{k}", atol, rtol, out)
        return
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: {len(a)} vs {len(b)} entries")
            return
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(x, y, f"{path}[{i}]", atol, rtol, out)
        return
    if not _close(a, b, atol, rtol):
        out.append(f"{path}: {a!r} vs {b!r}")


def compare_ledgers(a: dict[str, Any], b: dict[str, Any], atol: float = 1e-9, rtol: float = 1e-6) -> list[str]:
    """Differences between two ledgers of the same chapter and settings (empty when they agree).

    Claims must agree on their verdicts exactly (timing claims, ``timing``
    true, kind ``ratio``, or an id that names speed, cost or time, are
    compared on nothing but their presence: wall time varies); every
    other number in claims, metrics and tables within ``atol + rtol * |b|``.
    Timings, versions, numerics and the write date are not compared; nor is
    any metric or table column whose name says it is a time (``..._s``,
    ``time``, ``speedup``, ...).
    """
    out: list[str] = []
    ca = {c["id"]: c for c in a.get("claims", [])}
    cb = {c["id"]: c for c in b.get("claims", [])}
    for cid in sorted(set(ca) | set(cb)):
        if cid not in ca or cid not in cb:
            out.append(f"claims.{cid}: present in only one ledger")
            continue
        x, y = ca[cid], cb[cid]
        if x.get("timing") or y.get("timing") or x.get("kind") == "ratio" or _TIMED_CLAIM.search(cid):
            continue
        if x["verdict"] != y["verdict"]:
            out.append(f"claims.{cid}: verdict {x['verdict']!r} vs {y['verdict']!r}")
        for key in ("effect", "ci"):
            if key in x or key in y:
                _diff(x.get(key), y.get(key), f"claims.{cid}.{key}", atol, rtol, out)
    for section in ("settings", "metrics", "tables"):
        _diff(a.get(section, {}), b.get(section, {}), section, atol, rtol, out)
    return out


def claim_resolution(claim: dict[str, Any], atol: float = 5e-4) -> float:
    """How far a claim's numbers may move between machines without changing what it says.

    The larger of ``atol`` (half the last digit the book shows), the claim's
    declared floor or margin (the smallest effect it calls meaningful), and
    the half-width of its interval (the seed-to-seed uncertainty it already
    admits): the same seed on another CPU must perturb a claim less than
    another seed does. Checks carry no interval: ``atol`` alone.
    """
    parts = [atol]
    if claim.get("kind") != "check":
        parts += [abs(claim.get("floor") or 0.0), abs(claim.get("margin") or 0.0)]
        lo, hi = (claim.get("ci") or [None, None])[:2]
        if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
            parts.append((hi - lo) / 2)
    return max(parts)


@dataclass
class MachineComparison:
    """What :func:`compare_across_machines` found: ``failures`` must be empty; ``drift`` is reported."""

    failures: list[str]
    drift: list[str]
    cells: int  # numeric table cells compared
    atol: float = 5e-4  # the tolerance a table cell moved past to count in ``drift``

    def summary(self) -> str:
        moved = len(self.drift)
        return f"{moved} of {self.cells} table cells moved by more than {self.atol:g}" + (
            f" (e.g. {self.drift[0]})" if moved else "")


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?")


def _numbers_in(v: Any) -> tuple[str, list[float]] | None:
    """A cell as (its text with numbers blanked, its numbers): ``'0.372 ± 0.021'`` is numeric too."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return ("#", [float(v)])
    if isinstance(v, str) and _NUMBER.search(v):
        return (_NUMBER.sub("#", v), [float(x) for x in _NUMBER.findall(v)])
    return None


def _table_drift(x: Any, y: Any, path: str, atol: float, rtol: float, fail: list[str], drift: list[str]) -> int:
    """Structure of two logged tables into ``fail``, their numeric cells that moved into ``drift``."""
    if not (isinstance(x, dict) and x.get("__frame__") and isinstance(y, dict) and y.get("__frame__")):
        _diff(x, y, path, atol, rtol, drift)
        return 1
    if x.get("columns") != y.get("columns") or x.get("index") != y.get("index"):
        fail.append(f"{path}: the table's rows or columns differ")
        return 0
    cols, n = x["columns"], 0
    keep = [j for j, c in enumerate(cols) if not _is_timing(_col_name(c))]
    for i, (ra, rb) in enumerate(zip(x["data"], y["data"])):
        for j in keep:
            na, nb = _numbers_in(ra[j]), _numbers_in(rb[j])
            where = f"{path}[{x['index'][i]!r}, {cols[j]!r}]: {ra[j]!r} vs {rb[j]!r}"
            if na is None or nb is None or na[0] != nb[0] or len(na[1]) != len(nb[1]):
                if ra[j] != rb[j] and not (_nan(ra[j]) and _nan(rb[j])):
                    fail.append(where)
                continue
            n += 1
            if not all(_close(u, v, atol, rtol) or (math.isnan(u) and math.isnan(v)) for u, v in zip(*[na[1], nb[1]])):
                drift.append(where)
    return n


def _nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def compare_across_machines(a: dict[str, Any], b: dict[str, Any], atol: float = 5e-4,
                            rtol: float = 1e-4) -> MachineComparison:
    """Compare two ledgers of one seed run on two machines, at the resolution each claim needs.

    Required (``failures``): every claim present in both with the same
    verdict, ``n`` and confidence level; a non-timing claim's effect and
    each of its replicates within :func:`claim_resolution` (its interval is
    a function of these, so its endpoints are not compared again: with two
    replicates a t interval multiplies a move of the replicates by 12.7);
    settings equal; metrics within ``atol + rtol * |b|``; every table with
    the same rows, columns and non-numeric cells. Reported, not required
    (``drift``): table cells that moved beyond ``atol + rtol * |b|`` (a single
    Monte Carlo draw or one flipped ranking at the smoke scale moves a cell;
    the claims built on the tables are what must hold).
    """
    fail: list[str] = []
    ca = {c["id"]: c for c in a.get("claims", [])}
    cb = {c["id"]: c for c in b.get("claims", [])}
    for cid in sorted(set(ca) ^ set(cb)):
        fail.append(f"claims.{cid}: present in only one ledger")
    for cid in sorted(set(ca) & set(cb)):
        x, y = ca[cid], cb[cid]
        if x.get("timing") or y.get("timing") or x.get("kind") == "ratio" or _TIMED_CLAIM.search(cid):
            continue
        for key in ("verdict", "n", "level"):
            if x.get(key) != y.get(key):
                fail.append(f"claims.{cid}.{key}: {x.get(key)!r} vs {y.get(key)!r}")
        res = claim_resolution(x, atol)
        _diff([x.get("effect")] + list(x.get("replicates") or []), [y.get("effect")] + list(y.get("replicates") or []),
              f"claims.{cid}.(effect, replicates) at resolution {res:.3g}", res, 0.0, fail)
    _diff(a.get("settings", {}), b.get("settings", {}), "settings", 0.0, 0.0, fail)
    _diff(a.get("metrics", {}), b.get("metrics", {}), "metrics", atol, rtol, fail)
    drift: list[str] = []
    cells = 0
    ta, tb = a.get("tables") or {}, b.get("tables") or {}
    for name in sorted(set(ta) ^ set(tb)):
        fail.append(f"tables.{name}: present in only one ledger")
    for name in sorted((set(ta) & set(tb)) - {t for t in ta if _is_timing(t)}):
        cells += _table_drift(ta[name], tb[name], f"tables.{name}", atol, rtol, fail, drift)
    return MachineComparison(fail, drift, cells, atol)
