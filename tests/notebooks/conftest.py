"""The papermill tier: each chapter executed end to end at SCALE="smoke".

A chapter runs once per session (``smoke_run`` caches it), from a temporary
working directory (papermill runs in the caller's directory, so this checks
that chapters resolve their paths through rec_lib), with its ledger written
to a temporary folder and read back for the tests.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from rec_lib.ledger import read_ledger
from rec_lib.notebooks import chapter_path

_DURATIONS: dict[str, float] = {}
MACHINE_DRIFT: dict[str, str] = {}  # chapter -> table cells that moved under another machine


@dataclass
class SmokeRun:
    chapter: str
    ledger: dict
    seconds: float
    output: Path
    raw: dict  # the ledger's JSON as written (tables not turned into DataFrames)


def run_chapter(name: str, workdir: Path, parameters: dict, env: dict[str, str] | None = None) -> float:
    """Execute a chapter with papermill from ``workdir``; ledgers go to ``workdir/results``.

    ``env`` adds variables to the kernel's environment (e.g. another
    ``ATEN_CPU_CAPABILITY`` to emulate another CPU).
    """
    import papermill as pm

    extra = {"REC_LIB_RESULTS": str(workdir / "results"), "REC_LIB_PROGRESS": "0", **(env or {})}
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        t0 = time.perf_counter()
        pm.execute_notebook(str(chapter_path(name)), str(workdir / f"{name}.ipynb"), parameters=parameters,
                            kernel_name="python3", cwd=str(workdir), progress_bar=False, log_output=False)
        return time.perf_counter() - t0
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    cache: dict[str, SmokeRun] = {}

    def get(name: str) -> SmokeRun:
        if name not in cache:
            workdir = tmp_path_factory.mktemp(f"smoke-{name}")
            seconds = run_chapter(name, workdir, {"SCALE": "smoke"})
            _DURATIONS[name] = seconds
            raw = json.loads((workdir / "results" / f"{name}.json").read_text())
            cache[name] = SmokeRun(name, read_ledger(name, workdir / "results"), seconds, workdir / f"{name}.ipynb",
                                   raw)
        return cache[name]

    return get


def pytest_terminal_summary(terminalreporter):
    if _DURATIONS:
        terminalreporter.section("chapter smoke runs (papermill, SCALE='smoke')")
        for name, s in _DURATIONS.items():
            terminalreporter.write_line(f"{name:<28} {s:6.1f} s")
    if MACHINE_DRIFT:
        terminalreporter.section("another machine (scalar kernels): table cells that moved, reported, not required")
        for name, text in MACHINE_DRIFT.items():
            terminalreporter.write_line(f"{name:<28} {text[:200]}")
