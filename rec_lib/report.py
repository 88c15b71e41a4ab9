"""The reproducibility report: every chapter's claims, read from the ledgers when the book is built.

:func:`claims_table` gathers the claims of every ledger in ``results/`` (or
``$REC_LIB_RESULTS``): paper, claim, the paper's number, ours, scale and the
verdict each chapter computed. :func:`report_markdown` renders them as a MyST
table whose claims link to the chapter sections named by the ledger
(``section``, a MyST label) or else to the chapter. As a Sphinx extension
(``sphinx: extra_extensions: [rec_lib.report]`` in ``_config.yml``) this
module adds the directive ``reproducibility-table``, which
``book/reproducibility.md`` uses: the table is produced by every build from
the ledgers present, never typed in and never committed. The page notes the
results folder as a dependency, which makes Sphinx re-read it on every build,
so an incremental build shows new or changed ledgers too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rec_lib.paths import results_dir

__all__ = ["ClaimRow", "ledger_paths", "claims_table", "report_markdown", "write_forest_plots", "wall_times", "plain_scalar", "setup"]

VERDICT_MARK = {"holds": "holds", "does not hold": "does not hold", "inconclusive": "inconclusive"}
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|$~])")
_ROLE_UNSAFE = re.compile(r"[<>`]")


@dataclass(frozen=True)
class ClaimRow:
    """One row of the report: a claim (typed by :mod:`rec_lib.evidence`, or an older untyped one)."""

    chapter: str
    paper_key: str  # BibTeX key, "" for the book's own chapters
    chapter_title: str
    id: str
    claim: str
    paper: str
    ours: str
    scale: str
    verdict: str
    note: str
    section: str
    kind: str = ""  # "" for an untyped claim
    role: str = ""
    effect: float | None = None
    ci: tuple = (None, None)
    n: int | None = None
    floor: float | None = None
    margin: float | None = None
    cause: str = ""
    why: str = ""
    unit: str = ""
    test: str = ""

    @property
    def is_check(self) -> bool:
        return self.kind == "check"

    def as_claim(self) -> dict[str, Any]:
        """The fields :mod:`rec_lib.evidence` displays and plots."""
        return {"id": self.id, "kind": self.kind, "role": self.role, "claim": self.claim, "effect": self.effect,
                "ci": list(self.ci), "n": self.n, "floor": self.floor, "margin": self.margin,
                "verdict": self.verdict}


def ledger_paths(directory: str | Path | None = None) -> list[Path]:
    """The ledgers (``*.json``) in ``directory`` (default :func:`rec_lib.paths.results_dir`)."""
    d = Path(directory) if directory is not None else results_dir()
    return sorted(p for p in d.glob("*.json") if not p.name.startswith(".")) if d.is_dir() else []


def _book_order() -> list[str]:
    try:
        from rec_lib.notebooks import chapters

        return chapters()
    except (OSError, ValueError):
        return []


def claims_table(directory: str | Path | None = None) -> tuple[list[ClaimRow], list[str]]:
    """All claims of all ledgers, chapters in book order; and the problems found (unreadable ledgers).

    A ledger that is not valid JSON or lacks ``chapter`` / ``claims`` is
    reported as a problem rather than skipped silently.
    """
    from rec_lib.chapters import CHAPTERS

    order = {name: i for i, name in enumerate(_book_order())}
    ledgers, problems = [], []
    for path in ledger_paths(directory):
        try:
            led = json.loads(path.read_text())
            chapter, claims = led["chapter"], led["claims"]
            if not isinstance(claims, list):
                raise TypeError("claims is not a list")
        except (ValueError, KeyError, TypeError) as err:
            problems.append(f"{path}: not a chapter ledger ({err}); rerun the chapter or delete the file")
            continue
        ledgers.append((order.get(chapter, len(order)), chapter, claims, led.get("settings", {})))
    rows = []
    for _, chapter, claims, settings in sorted(ledgers, key=lambda t: (t[0], t[1])):
        entry = CHAPTERS.get(chapter)
        for c in claims:
            ci = c.get("ci") or [None, None]
            rows.append(ClaimRow(
                chapter=chapter, paper_key=entry.paper if entry else "",
                chapter_title=entry.title if entry else chapter,
                id=str(c.get("id", "")), claim=str(c.get("claim", "")), paper=str(c.get("paper", "")),
                ours=str(c.get("ours", "")), scale=str(c.get("scale") or settings.get("scale", "")),
                verdict=str(c.get("verdict", "")), note=str(c.get("note", "")), section=str(c.get("section") or ""),
                kind=str(c.get("kind") or ""), role=str(c.get("role") or ""), effect=c.get("effect"),
                ci=(ci[0], ci[1]) if len(ci) == 2 else (None, None), n=c.get("n"), floor=c.get("floor"),
                margin=c.get("margin"), cause=str(c.get("cause") or ""), why=str(c.get("why") or ""),
                unit=str(c.get("unit") or ""), test=str(c.get("test") or ""),
            ))
    return rows, problems


def _text(s: str) -> str:
    """Plain text for a Markdown table cell: Markdown punctuation escaped, no line breaks."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(s.split())) or " "


def _role(role: str, title: str, target: str) -> str:
    """A MyST role with an explicit title; a pipe is escaped for the table (markdown-it unescapes it)."""
    return f"{{{role}}}`{title.replace('|', chr(92) + '|')} <{target}>`"


def _num(x: float | None, digits: int = 3) -> str:
    return "" if x is None else f"{x:.{digits}g}"


def _effect(r: ClaimRow) -> str:
    """Effect and interval, e.g. ``+0.012 [0.004, 0.020]``; an untyped claim shows its ``ours`` text."""
    if not r.kind:
        return _text(r.ours)
    if r.effect is None:
        return "n/a"
    unit = "x" if r.kind == "ratio" else ""
    sign = "+" if r.kind not in ("ratio",) and r.effect > 0 else ""
    out = f"{sign}{_num(r.effect)}{unit}"
    if r.ci[0] is not None and r.ci[1] is not None:
        out += f" [{_num(r.ci[0])}, {_num(r.ci[1])}]"
    return _text(out)


def _bound(r: ClaimRow) -> str:
    if r.floor is not None:
        return _text(f"{_num(r.floor)}{'x' if r.kind == 'ratio' else ''}")
    if r.margin is not None:
        return _text(f"±{_num(r.margin)}")
    return " "


def _badge(verdict: str) -> str:
    return f"{{verdict}}`{verdict}`" if verdict in VERDICT_MARK or verdict in ("passes", "fails") else _text(verdict)


def _claim_cell(r: ClaimRow, linked: bool, docname_prefix: str) -> str:
    target = r.section if (r.section and linked) else (docname_prefix + r.chapter if linked else "")
    role = "ref" if r.section and linked else "doc"
    claim_text = " ".join(r.claim.split())
    if target and claim_text and not _ROLE_UNSAFE.search(claim_text):
        cell = _role(role, claim_text, target)
    elif target:
        cell = f"{_text(claim_text)} ({_role(role, 'evidence', target)})"
    else:
        cell = _text(claim_text)
    if r.note:
        cell += f" — *{_text(r.note)}*"
    return cell


def wall_times(directory: str | Path | None = None) -> dict[str, float]:
    """Each ledger's total run time in seconds, by chapter.

    ``timings.wall_s`` plus ``timings.cached_s``: the stored run time of the
    results a chapter read back from a cache instead of computing them.
    """
    out = {}
    for path in ledger_paths(directory):
        try:
            led = json.loads(path.read_text())
            out[led["chapter"]] = float(led["timings"]["wall_s"]) + float(led["timings"].get("cached_s", 0.0))
        except (ValueError, KeyError, TypeError):
            continue
    return out


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return " "
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _summary(groups: dict[str, list[ClaimRow]], docs: set[str], docname_prefix: str,
             times: dict[str, float]) -> list[str]:
    lines = ["| Chapter | Claims | holds | does not hold | inconclusive | by role (holds / not / inconcl.) | Checks "
             "| Run time |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for chapter, rows in groups.items():
        claims = [r for r in rows if not r.is_check]
        checks = [r for r in rows if r.is_check]
        title = rows[0].chapter_title
        name = _role("doc", title, docname_prefix + chapter) if chapter in docs else _text(title)
        by_role = []
        for role in ("headline", "mechanism", "control"):
            sel = [r for r in claims if r.role == role]
            if sel:
                by_role.append(f"{role} {sum(r.verdict == 'holds' for r in sel)} / "
                               f"{sum(r.verdict == 'does not hold' for r in sel)} / "
                               f"{sum(r.verdict == 'inconclusive' for r in sel)}")
        untyped = sum(1 for r in claims if not r.kind)
        if untyped:
            by_role.append(f"untyped {untyped}")
        passed = sum(r.verdict == "passes" for r in checks)
        lines.append(f"| {name} | {len(claims)} | " + " | ".join(str(sum(r.verdict == v for r in claims))
                                                                 for v in VERDICT_MARK)
                     + f" | {'; '.join(by_role) or ' '} | {f'{passed} of {len(checks)} pass' if checks else ' '} | "
                     + f"{_minutes(times.get(chapter))} |")
    return lines


def report_markdown(rows: Iterable[ClaimRow], docs: Iterable[str] = (), docname_prefix: str = "/book/",
                    figures: dict[str, str] | None = None, times: dict[str, float] | None = None) -> str:
    """The report as MyST Markdown: a summary table, then per chapter its forest plot, claims and checks.

    ``docs`` are the chapters present in the book: their rows link to the
    chapter (and to ``section`` when the ledger names one); rows of other
    ledgers are shown without links. ``figures`` maps a chapter to the path
    of its forest plot (see :func:`rec_lib.evidence.forest_plot`); ``times``
    a chapter to its run time in seconds (:func:`wall_times`).
    """
    rows = list(rows)
    docs = set(docs)
    figures = figures or {}
    if not rows:
        return ("No chapter has written a ledger with claims yet: execute a chapter "
                "(`python -m rec_lib execute CHAPTER`) and rebuild the book.")
    groups: dict[str, list[ClaimRow]] = {}
    for r in rows:
        groups.setdefault(r.chapter, []).append(r)
    claims = [r for r in rows if not r.is_check]
    counts = {v: sum(r.verdict == v for r in claims) for v in VERDICT_MARK}
    n_checks = len(rows) - len(claims)
    summary = (f"{len(claims)} claim{'s' if len(claims) != 1 else ''} from {len(groups)} "
               f"chapter{'s' if len(groups) != 1 else ''}; " + ", ".join(f"{v}: {n}" for v, n in counts.items())
               + f"; and {n_checks} check{'s' if n_checks != 1 else ''}, shown apart.")
    lines = [summary, "", *_summary(groups, docs, docname_prefix, times or {})]
    for chapter, group in groups.items():
        linked = chapter in docs
        first = group[0]
        lines += ["", f"```{{rubric}} {first.chapter_title}", "```", ""]
        if first.paper_key:
            lines += [f"Paper: {{cite:t}}`{first.paper_key}`. Scale: {_text(first.scale)}.", ""]
        if chapter in figures:
            lines += [f"```{{figure}} {figures[chapter]}", f":alt: Forest plot of the {first.chapter_title} claims: "
                      "each claim's effect with its interval, scaled so that 0 is no effect and 1 is the claim's "
                      "floor (or margin); colour gives the verdict.", ":width: 90%", "",
                      f"{first.chapter_title}: effect and interval of each claim, in units of its floor "
                      "(dashed line at 1; 0 is no effect; diamonds are equivalence claims, judged against ±1).",
                      "```", ""]
        cl = [r for r in group if not r.is_check]
        if cl:
            lines += ["| Claim | Role | Paper | Effect [interval] | n | Floor / margin | Verdict | Cause |",
                      "| --- | --- | --- | --- | --- | --- | --- | --- |"]
            for r in cl:
                cause = f"{r.cause}: {r.why}" if r.cause else (r.why or " ")
                lines.append(f"| {_claim_cell(r, linked, docname_prefix)} | {_text(r.role or 'untyped')} | "
                             f"{_text(r.paper)} | {_effect(r)} | {_text(str(r.n or ''))} | {_bound(r)} | "
                             f"{_badge(r.verdict)} | {_text(cause)} |")
        ch = [r for r in group if r.is_check]
        if ch:
            lines += ["", "| Check | Value | Test | Result |", "| --- | --- | --- | --- |"]
            for r in ch:
                lines.append(f"| {_claim_cell(r, linked, docname_prefix)} | {_text(r.ours)} | {_text(r.test)} | "
                             f"{_badge(r.verdict)} |")
    return "\n".join(lines)


def write_forest_plots(rows: Iterable[ClaimRow], folder: Path) -> dict[str, Path]:
    """One forest plot per chapter with typed claims, written as ``folder/forest-<chapter>.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rec_lib.evidence import forest_plot

    groups: dict[str, list[ClaimRow]] = {}
    for r in rows:
        if r.kind and not r.is_check:
            groups.setdefault(r.chapter, []).append(r)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for chapter, group in groups.items():
        ax = forest_plot([r.as_claim() for r in group], title=group[0].chapter_title)
        path = folder / f"forest-{chapter}.png"
        ax.figure.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(ax.figure)
        out[chapter] = path
    return out


# ------------------------------------------------------------------------------ Sphinx
_NUMPY_SCALAR = re.compile(r"^np\.(?:float|int|uint|bool_|complex)\w*\((.*)\)$", re.S)


def plain_scalar(text: str) -> str:
    """``"np.float64(0.25)"`` -> ``"0.25"``: NumPy 2's repr of a scalar, as glue stores it, made plain."""
    m = _NUMPY_SCALAR.match(text.strip())
    return m.group(1) if m else text


def _numpy_scalars_in_glue() -> None:
    """Let ``{glue:text}`key:.3f``` format a glued NumPy scalar.

    MyST-NB formats the stored ``text/plain`` with ``float(literal_eval(text))``,
    which fails on NumPy 2's repr (``np.float64(0.25)``). The chapters glue
    NumPy results directly, so the book's extension unwraps that repr first.
    """
    from myst_nb.core import variables
    from myst_nb.ext.glue import crossref, roles

    original = variables.format_plain_text
    if getattr(original, "_rec_lib", False):
        return

    def format_plain_text(text: str, fmt_spec: str) -> str:
        return original(plain_scalar(text), fmt_spec)

    format_plain_text._rec_lib = True  # type: ignore[attr-defined]
    for module in (variables, crossref, roles):
        module.format_plain_text = format_plain_text


def setup(app: Any) -> dict[str, Any]:
    """Register the ``reproducibility-table`` directive (Sphinx extension entry point)."""
    from docutils import nodes
    from docutils.statemachine import StringList
    from sphinx.util import logging
    from sphinx.util.docutils import SphinxDirective

    log = logging.getLogger(__name__)

    class ReproducibilityTable(SphinxDirective):
        """Insert the claims of every ledger in ``results/`` as a table (see :mod:`rec_lib.report`)."""

        has_content = False

        def run(self) -> list[nodes.Node]:
            directory = results_dir()
            self.env.note_dependency(str(directory))  # not a file: Sphinx re-reads this page on every build
            for path in ledger_paths(directory):
                self.env.note_dependency(str(path))
            rows, problems = claims_table(directory)
            for problem in problems:
                log.warning(problem, location=(self.env.docname, self.lineno))
            docs = {r.chapter for r in rows if f"book/{r.chapter}" in self.env.found_docs}
            here = Path(self.env.doc2path(self.env.docname)).parent
            plots = write_forest_plots(rows, here / "_generated")
            figures = {ch: "/" + str(p.relative_to(self.env.srcdir)) for ch, p in plots.items()}
            text = report_markdown(rows, docs, figures=figures, times=wall_times(directory))
            container = nodes.container(classes=["reproducibility-report"])
            self.state.nested_parse(StringList(text.splitlines(), source=str(directory)), self.content_offset,
                                    container)
            return [container]

    def paper_role(name, rawtext, text, lineno, inliner, options=None, content=None):
        """``{paper}`0.26 s```: a number quoted from the paper, shown in the paper-number style."""
        return [nodes.inline(rawtext, text, classes=["paper-number"])], []

    def verdict_role(name, rawtext, text, lineno, inliner, options=None, content=None):
        """``{verdict}`holds```: a verdict badge styled in CSS (no glyph that depends on fonts)."""
        slug = "-".join(text.split())
        return [nodes.inline(rawtext, text, classes=["verdict", f"verdict-{slug}"])], []

    def add_static(app_: Any) -> None:
        static = str(Path(__file__).resolve().parent / "_static")
        if static not in app_.config.html_static_path:
            app_.config.html_static_path.append(static)

    _numpy_scalars_in_glue()
    app.add_role("paper", paper_role)
    app.add_role("verdict", verdict_role)
    app.connect("builder-inited", add_static)
    app.add_css_file("rec_lib.css")
    app.add_directive("reproducibility-table", ReproducibilityTable)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
