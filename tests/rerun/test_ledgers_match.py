"""The nbval tier's re-executed ledgers against the committed ``results/*.json``.

Run by ``tests/run_tiers.sh nbval`` after nbval has re-executed every chapter
with ``REC_LIB_RESULTS`` pointing at a scratch folder, which it passes here as
``REC_LIB_RERUN_RESULTS``. Verdicts must be equal; every other number of the
claims, metrics and tables must agree to the resolution the claims need
(``ATOL``: below the smallest floor any chapter declares); timings are not
compared (:func:`rec_lib.ledger.compare_ledgers`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rec_lib.ledger import compare_ledgers, read_ledger
from rec_lib.notebooks import chapters
from rec_lib.paths import repo_root

RERUN = os.environ.get("REC_LIB_RERUN_RESULTS")
ATOL = 5e-4  # half the last digit of a number shown at 3 decimals

pytestmark = pytest.mark.skipif(not RERUN, reason="set REC_LIB_RERUN_RESULTS to the folder of re-executed ledgers")


@pytest.mark.parametrize("chapter", chapters())
def test_rerun_reproduces_the_committed_ledger(chapter):
    rerun = Path(RERUN) / f"{chapter}.json"
    assert rerun.exists(), f"nbval did not leave a ledger for {chapter} in {RERUN}"
    committed = read_ledger(chapter, repo_root() / "results")
    fresh = read_ledger(chapter, RERUN)
    import json

    diffs = compare_ledgers(json.loads((repo_root() / "results" / f"{chapter}.json").read_text()),
                            json.loads(rerun.read_text()), atol=ATOL, rtol=0.0)
    assert committed["chapter"] == fresh["chapter"]
    assert not diffs, f"{chapter}: the re-executed ledger differs from results/{chapter}.json:\n" + "\n".join(diffs[:30])
