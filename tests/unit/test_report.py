"""The reproducibility report: claims gathered from ledgers, the Markdown table, and a Sphinx build using it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rec_lib.report import ClaimRow, claims_table, ledger_paths, report_markdown


def claim(id, verdict="holds", section="", claim="A claim", paper="0.5", ours="0.6", scale="tutorial", note=""):
    return {"id": id, "claim": claim, "paper": paper, "ours": ours, "verdict": verdict, "scale": scale,
            "note": note, "section": section}


def write_ledger(folder: Path, chapter: str, claims: list[dict], scale: str = "tutorial") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{chapter}.json"
    path.write_text(json.dumps({"chapter": chapter, "settings": {"scale": scale}, "metrics": {}, "claims": claims}))
    return path


@pytest.fixture
def ledgers(tmp_path):
    d = tmp_path / "results"
    write_ledger(d, "sml", [claim("sml-beats-full", "holds", "sml-table-1", "SML beats Full-retrain on Yelp",
                                  "0.2876", "0.301"),
                            claim("speed", "does not hold", "", "SML is 18x faster | than Full-retrain", "18", "3.1",
                                  note="2 cores, not a GPU")])
    write_ledger(d, "data_protocols", [claim("random-hr", "holds", "", "A random scorer has HR@10 = 10/(N+1)",
                                             "0.100", "0.104")])
    write_ledger(d, "orphan", [claim("x", "inconclusive", "", "Uses <angle> brackets and $x$", scale="")],
                 scale="smoke")
    return d


def test_claims_table_orders_chapters_and_fills_papers(ledgers):
    rows, problems = claims_table(ledgers)
    assert problems == []
    # chapters of the book in book order, then the others by name
    assert [r.chapter for r in rows] == ["data_protocols", "sml", "sml", "orphan"]
    sml = [r for r in rows if r.chapter == "sml"]
    assert sml[0].paper_key == "zhang2020sml" and sml[0].section == "sml-table-1" and sml[1].note
    assert rows[0].paper_key == "" and rows[0].chapter_title == "Data, protocols and metrics"
    assert rows[3].scale == "smoke"


def test_claims_table_reports_unreadable_ledgers(ledgers):
    (ledgers / "broken.json").write_text("{not json")
    (ledgers / "other.json").write_text(json.dumps({"metrics": {}}))
    rows, problems = claims_table(ledgers)
    assert len(rows) == 4 and len(problems) == 2
    assert any("broken.json" in p and "not a chapter ledger" in p for p in problems)


def test_no_results_folder(tmp_path):
    assert ledger_paths(tmp_path / "absent") == []
    assert claims_table(tmp_path / "absent") == ([], [])
    assert "No chapter has written a ledger" in report_markdown([])


def test_markdown_links_escapes_and_counts(ledgers):
    rows, _ = claims_table(ledgers)
    md = report_markdown(rows, docs={"sml", "data_protocols"})
    lines = md.splitlines()
    assert lines[0] == ("4 claims from 3 chapters; holds: 2, does not hold: 1, inconclusive: 1; "
                        "and 0 checks, shown apart.")
    assert lines[2].startswith("| Chapter | Claims | holds |")
    body = "\n".join(lines[4:])
    assert "{ref}`SML beats Full-retrain on Yelp <sml-table-1>` | untyped | 0.2876 | 0.301" in body
    assert "Paper: {cite:t}`zhang2020sml`" in body
    assert "{doc}`Data, protocols and metrics </book/data_protocols>`" in body  # the book's own chapter
    assert "{doc}`A random scorer has HR@10 = 10/(N+1) </book/data_protocols>`" in body  # no section: the chapter
    assert "SML is 18x faster \\| than Full-retrain" in body and "*2 cores, not a GPU*" in body
    orphan = next(ln for ln in lines if "angle" in ln)  # not in the book: no links, Markdown escaped
    assert "\\<angle\\>" in orphan and "\\$x\\$" in orphan and "{ref}" not in orphan and "{doc}" not in orphan
    assert "{verdict}`does not hold`" in body and "{verdict}`inconclusive`" in body
    assert "✅" not in md and "❌" not in md and "➖" not in md  # badges are CSS, not glyphs
    table = [ln for ln in lines if "{verdict}`" in ln]
    assert len(table) == 4 and all(len(re.split(r"(?<!\\)\|", ln)) == 10 for ln in table)  # eight cells a claim row


def _typed(id, verdict, kind="superiority", role="headline", effect=0.02, ci=(0.01, 0.03), n=3, floor=0.005,
           margin=None, cause=None, why=""):
    return {"id": id, "kind": kind, "role": role, "claim": f"claim {id}", "paper": "0.1", "effect": effect,
            "ci": list(ci), "n": n, "floor": floor, "margin": margin, "test": "paired t", "verdict": verdict,
            "cause": cause, "why": why, "section": "", "ours": "+0.02", "scale": "tutorial"}


def test_typed_claims_summary_checks_apart_and_forest_plot(tmp_path):
    from rec_lib.report import write_forest_plots

    d = tmp_path / "results"
    write_ledger(d, "sml", [
        _typed("a", "holds"),
        _typed("b", "does not hold", role="control", effect=-0.01, ci=(-0.02, -0.001), cause="scale",
               why="a small catalogue"),
        _typed("e", "holds", kind="equivalence", role="mechanism", floor=None, margin=0.01, ci=(-0.004, 0.005)),
        {**_typed("k", "passes", kind="check", role="check", effect=1e-7, ci=(None, None), n=1, floor=None),
         "ours": "1e-07"},
    ])
    rows, problems = claims_table(d)
    assert problems == [] and [r.is_check for r in rows] == [False, False, False, True]
    plots = write_forest_plots(rows, tmp_path / "gen")
    assert plots["sml"].exists() and plots["sml"].stat().st_size > 1000
    md = report_markdown(rows, docs={"sml"}, figures={"sml": "/gen/forest-sml.png"}, times={"sml": 312.0})
    assert md.splitlines()[0].startswith("3 claims from 1 chapter; holds: 2, does not hold: 1, inconclusive: 0; "
                                         "and 1 check")
    assert "headline 1 / 0 / 0; mechanism 1 / 0 / 0; control 0 / 1 / 0" in md and "1 of 1 pass" in md
    assert "| 5.2 min |" in md
    assert "+0.02 \\[0.01, 0.03\\]" in md and "±0.01" in md and "scale: a small catalogue" in md
    assert "| Check | Value | Test | Result |" in md and "{verdict}`passes`" in md
    assert "```{figure} /gen/forest-sml.png" in md and ":alt: Forest plot" in md


def test_unsafe_claim_text_gets_a_separate_link():
    row = ClaimRow("sml", "zhang2020sml", "SML", "i", "Recall@20 > baseline", "1", "2", "tutorial", "holds", "", "sec")
    md = report_markdown([row], docs={"sml"})
    assert "Recall@20 \\> baseline ({ref}`evidence <sec>`)" in md


BOOK = {
    "conf.py": 'extensions = ["myst_parser", "sphinxcontrib.bibtex", "rec_lib.report"]\n'
               'bibtex_bibfiles = ["refs.bib"]\nmyst_enable_extensions = ["dollarmath"]\n'
               'exclude_patterns = ["_build"]\n',
    "index.md": "# Book\n\n```{toctree}\nbook/data_protocols\nbook/sml\nbook/reproducibility\nrefs\n```\n",
    "book/data_protocols.md": "# Data, protocols and metrics\n\nText.\n",
    "book/sml.md": "# Periodic retraining\n\n(sml-table-1)=\n## Table 1: average performance\n\nText.\n",
    "book/reproducibility.md": "# Reproducibility report\n\n```{reproducibility-table}\n```\n",
    "refs.md": "# References\n\n```{bibliography}\n```\n",
    "refs.bib": "@inproceedings{zhang2020sml,\n  title = {How to Retrain Recommender System?},\n"
                "  author = {Zhang, Yang and Feng, Fuli},\n  booktitle = {SIGIR},\n  year = {2020}\n}\n",
}


def build(tmp_path: Path, results: Path) -> subprocess.CompletedProcess:
    src = tmp_path / "src"
    for name, text in BOOK.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    env = {**os.environ, "REC_LIB_RESULTS": str(results)}
    return subprocess.run([sys.executable, "-m", "sphinx", "-W", "-n", "-q", "-b", "html", str(src),
                           str(tmp_path / "out")], capture_output=True, text=True, env=env)


def test_sphinx_build_renders_the_table_from_ledgers(tmp_path, ledgers):
    done = build(tmp_path, ledgers)
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "out" / "book" / "reproducibility.html").read_text()
    assert 'href="sml.html#sml-table-1"' in page  # the claim links to its section
    assert 'href="data_protocols.html"' in page
    assert "Zhang and Feng" in page or "Zhang" in page  # {cite:t} resolved
    assert "SML beats Full-retrain on Yelp" in page and "0.2876" in page and "Uses &lt;angle&gt; brackets" in page
    assert "4 claims from 3 chapters" in page
    assert 'class="verdict verdict-holds"' in page and "rec_lib.css" in page


def test_sphinx_build_fails_on_an_unreadable_ledger_or_unknown_section(tmp_path, ledgers):
    (ledgers / "broken.json").write_text("{not json")
    done = build(tmp_path / "a", ledgers)
    assert done.returncode != 0 and "broken.json: not a chapter ledger" in done.stderr
    (ledgers / "broken.json").unlink()
    write_ledger(ledgers, "sml", [claim("c", section="no-such-label")])
    done = build(tmp_path / "b", ledgers)
    assert done.returncode != 0 and "no-such-label" in done.stderr


def test_glued_numpy_scalars_are_formatted():
    from myst_nb.core.variables import format_plain_text

    from rec_lib.report import _numpy_scalars_in_glue, plain_scalar

    assert plain_scalar("np.float64(0.125)") == "0.125" and plain_scalar("np.int64(3)") == "3"
    assert plain_scalar("'holds'") == "'holds'"
    _numpy_scalars_in_glue()
    from myst_nb.ext.glue import roles

    assert roles.format_plain_text("np.float64(0.12345)", ".3f") == "0.123"
    assert format_plain_text("0.5", ".2f") == "0.50"


def test_wall_times_add_the_stored_time_of_cached_results(tmp_path):
    from rec_lib.report import wall_times

    for chapter, timings in (("sml", {"wall_s": 300.0}), ("dips", {"wall_s": 50.0, "cached_s": 224.0})):
        write_ledger(tmp_path, chapter, [claim("a")])
        path = tmp_path / f"{chapter}.json"
        led = json.loads(path.read_text())
        led["timings"] = timings
        path.write_text(json.dumps(led))
    (tmp_path / "broken.json").write_text("{")
    assert wall_times(tmp_path) == {"sml": 300.0, "dips": 274.0}
