"""`python -m rec_lib run` end to end: a chapter at smoke scale, from another directory, in a subprocess.

Also checks that a refused run starts no kernel and leaves no folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from rec_lib.chapters import available
from rec_lib.ledger import read_ledger


def rec_lib_cli(*args: str, cwd, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "REC_LIB_PROGRESS": "0"}
    env.pop("REC_LIB_RESULTS", None)
    return subprocess.run([sys.executable, "-m", "rec_lib", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_run_data_chapter_at_smoke_scale_from_another_directory(tmp_path):
    assert "data_protocols" in available()
    runs, elsewhere = tmp_path / "runs", tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = rec_lib_cli("run", "data_protocols", "--scale", "smoke", "-p", "SEED=1", "-p", "STREAM_USERS=350",
                       "--runs-dir", str(runs), cwd=elsewhere)
    assert done.returncode == 0, done.stderr[-3000:]
    (folder,) = runs.iterdir()
    assert folder.name.startswith("data_protocols-")
    notebook, ledger = folder / "data_protocols.ipynb", folder / "data_protocols.json"
    assert f"executed notebook: {notebook}" in done.stdout and f"ledger:            {ledger}" in done.stdout
    led = read_ledger("data_protocols", folder)
    assert led["settings"]["scale"] == "smoke" and led["settings"]["seed"] == 1
    assert led["settings"]["stream_users"] == 350 and led["claims"]
    record = json.loads((folder / "run.json").read_text())
    assert record["status"] == "done" and record["parameters"] == {"SCALE": "smoke", "SEED": 1, "STREAM_USERS": 350}
    assert list(elsewhere.iterdir()) == [], "nothing is written to the working directory"


def test_refused_run_leaves_nothing(tmp_path):
    runs = tmp_path / "runs"
    done = rec_lib_cli("run", "data_protocols", "--scale", "smoke", "-p", "STREAM_USERS=-3", "--runs-dir", str(runs),
                       cwd=tmp_path, timeout=300)
    assert done.returncode == 2 and "STREAM_USERS must be >= 1" in done.stderr
    assert not runs.exists()
