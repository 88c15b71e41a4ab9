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

__all__ = ["ClaimRow", "ledger_paths", "claims_table", "report_markdown", "setup"]

VERDICT_MARK = {"holds": "✅ holds", "does not hold": "❌ does not hold", "inconclusive": "➖ inconclusive"}
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|$~])")
_ROLE_UNSAFE = re.compile(r"[<>`]")


@dataclass(frozen=True)
class ClaimRow:
    """One row of the report."""

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
            rows.append(ClaimRow(
                chapter=chapter, paper_key=entry.paper if entry else "",
                chapter_title=entry.title if entry else chapter,
                id=str(c.get("id", "")), claim=str(c.get("claim", "")), paper=str(c.get("paper", "")),
                ours=str(c.get("ours", "")), scale=str(c.get("scale") or settings.get("scale", "")),
                verdict=str(c.get("verdict", "")), note=str(c.get("note", "")), section=str(c.get("section") or ""),
            ))
    return rows, problems


def _text(s: str) -> str:
    """Plain text for a Markdown table cell: Markdown punctuation escaped, no line breaks."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(s.split())) or " "


def _role(role: str, title: str, target: str) -> str:
    """A MyST role with an explicit title; a pipe is escaped for the table (markdown-it unescapes it)."""
    return f"{{{role}}}`{title.replace('|', chr(92) + '|')} <{target}>`"


def report_markdown(rows: Iterable[ClaimRow], docs: Iterable[str] = (), docname_prefix: str = "/book/") -> str:
    """The report as MyST Markdown: a summary line and one table.

    ``docs`` are the chapters present in the book: their rows link to the
    chapter (and to ``section`` when the ledger names one); rows of other
    ledgers are shown without links.
    """
    rows = list(rows)
    docs = set(docs)
    if not rows:
        return ("No chapter has written a ledger with claims yet: execute a chapter "
                "(`python -m rec_lib execute CHAPTER`) and rebuild the book.")
    counts = {v: sum(r.verdict == v for r in rows) for v in VERDICT_MARK}
    chapters = list(dict.fromkeys(r.chapter for r in rows))
    summary = (f"{len(rows)} claim{'s' if len(rows) != 1 else ''} from {len(chapters)} "
               f"chapter{'s' if len(chapters) != 1 else ''}; " + ", ".join(f"{v}: {n}" for v, n in counts.items()) + ".")
    lines = [summary, "", "| Paper | Claim | Paper's number | Ours | Scale | Verdict |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        linked = r.chapter in docs
        if r.paper_key:
            paper = f"{{cite:t}}`{r.paper_key}`"
        else:
            paper = _role("doc", r.chapter_title, docname_prefix + r.chapter) if linked else _text(r.chapter_title)
        target = r.section if (r.section and linked) else (docname_prefix + r.chapter if linked else "")
        role = "ref" if r.section and linked else "doc"
        claim_text = " ".join(r.claim.split())
        if target and claim_text and not _ROLE_UNSAFE.search(claim_text):
            claim = _role(role, claim_text, target)
        elif target:
            claim = f"{_text(claim_text)} ({_role(role, 'evidence', target)})"
        else:
            claim = _text(claim_text)
        if r.note:
            claim += f" — *{_text(r.note)}*"
        verdict = VERDICT_MARK.get(r.verdict, _text(r.verdict))
        lines.append(f"| {paper} | {claim} | {_text(r.paper)} | {_text(r.ours)} | {_text(r.scale)} | {verdict} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ Sphinx
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
            text = report_markdown(rows, docs)
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

    app.add_role("paper", paper_role)
    app.add_role("verdict", verdict_role)
    app.connect("builder-inited", add_static)
    app.add_css_file("rec_lib.css")
    app.add_directive("reproducibility-table", ReproducibilityTable)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
