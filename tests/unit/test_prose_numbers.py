"""Numbers in the prose come from the outputs (glue) or are marked as the paper's.

Every chapter's markdown is scanned for decimal numbers and percentages. One
is allowed when it is inserted by MyST-NB's ``glue`` (``{glue:text}`key```,
``{glue}`key```), marked as a paper's number with the book's ``{paper}`` role
(``{paper}`0.26 s```, rendered in the paper-number style), inside math or
code, or a label such as "Section 4.2", "eq. 3.1", "Table 2", "version 1.0".
Everything else is a number typed by hand: a rerun at another seed or scale
would leave it wrong.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import chapter_params

BOOK = Path(__file__).resolve().parents[2] / "book"
CHAPTERS = sorted(p.stem for p in BOOK.glob("*.ipynb"))

_STRIP = [
    re.compile(r"```.*?```", re.S),  # fenced code and directives
    re.compile(r":::.*?:::", re.S),
    re.compile(r"\$\$.*?\$\$", re.S),  # display math
    re.compile(r"\\begin\{.*?\\end\{[^}]*\}", re.S),
    re.compile(r"\$[^$\n]+\$"),  # inline math
    re.compile(r"\{(?:glue|glue:text|glue:md|glue:any|glue:figure|paper|ref|doc|cite|cite:t|cite:p|numref|eq|math)\}`[^`]*`"),
    re.compile(r"`[^`\n]*`"),  # inline code
    re.compile(r"\]\([^)]*\)"),  # link targets
    re.compile(r"<[^>\n]+>"),  # html tags
    re.compile(r"^\([\w-]+\)=\s*$", re.M),  # MyST labels
    re.compile(r"^:\w[\w-]*:.*$", re.M),  # directive options
]
_LABEL = re.compile(
    r"(?:Section|Sections|Sec\.|§|eq\.|Eq\.|eqs\.|equation|equations|Equation|Table|Tables|Figure|Figures|Fig\.|"
    r"Algorithm|Appendix|Proposition|Lemma|Theorem|Corollary|Definition|Assumption|Remark|Implication|Example|"
    r"version|Python|python|v|jupyter-book|step|Step|part|Part)\s*\(?$"
)
_NUMBER = re.compile(r"(?<![\w.])(\d+\.\d+|\d+(?:\.\d+)?\s?%)(?![\w.]*\d)")


def unglued_numbers(markdown: str) -> list[str]:
    """Decimal numbers and percentages in ``markdown`` that are neither glued, marked as the paper's, nor labels."""
    text = markdown
    for pattern in _STRIP:
        text = pattern.sub(" ", text)
    found = []
    for m in _NUMBER.finditer(text):
        before = text[max(0, m.start() - 24) : m.start()].rstrip()
        if _LABEL.search(before + ("" if before.endswith("(") else "")):
            continue
        found.append(f"{m.group(1)!r} in '...{text[max(0, m.start() - 40) : m.end() + 20].strip()}...'")
    return found


def _markdown_cells(name: str) -> list[str]:
    nb = json.loads((BOOK / f"{name}.ipynb").read_text())
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]


def test_scanner_on_written_examples():
    assert unglued_numbers("MRR is {glue:text}`mrr` against {paper}`0.26` in Section 4.2 and $x = 0.5$.") == []
    assert unglued_numbers("see eq. 3.1, Table 2 and `lr=0.01`") == []
    bad = unglued_numbers("Our MRR is 0.228, and 72% of users are new.")
    assert len(bad) == 2 and "0.228" in bad[0] and "72%" in bad[1]


@pytest.mark.parametrize("chapter", chapter_params(CHAPTERS))
def test_every_number_in_the_prose_is_glued_or_the_papers(chapter):
    problems = [f"markdown cell {i}: {n}" for i, cell in enumerate(_markdown_cells(chapter)) for n in unglued_numbers(cell)]
    assert not problems, (
        f"{chapter}: {len(problems)} number(s) typed by hand; glue them from the outputs "
        "(myst_nb.glue + {glue:text}`key`) or mark a paper's number as {paper}`...`:\n" + "\n".join(problems[:40])
    )
