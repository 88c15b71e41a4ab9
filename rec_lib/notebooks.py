"""The book's chapters as notebooks: listing them and executing them in place.

``python -m rec_lib execute`` runs every chapter at its default scale
(``tutorial``) in the notebook's own directory, as the book build and nbval
do, and writes the outputs back into the ``.ipynb`` so the book shows them.
Progress bars are switched off so the committed outputs stay clean.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
import yaml

from rec_lib.paths import repo_root

__all__ = ["chapters", "chapter_path", "execute_in_place"]


def chapters() -> list[str]:
    """Chapter names (notebook stems under ``book/``) in the order of ``_toc.yml``."""
    toc = yaml.safe_load((repo_root() / "_toc.yml").read_text())
    entries: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            if "file" in node:
                entries.append(str(node["file"]))
            for key in ("root", "chapters", "sections", "parts"):
                if key == "root" and key in node:
                    entries.append(str(node["root"]))
                elif key in node:
                    walk(node[key])
        elif isinstance(node, list):
            for x in node:
                walk(x)

    walk(toc)
    root = repo_root()
    return [Path(e).name for e in entries if (root / f"{e}.ipynb").exists()]


def chapter_path(name: str) -> Path:
    """``book/<name>.ipynb``; a clear error names the known chapters otherwise."""
    path = repo_root() / "book" / f"{name}.ipynb"
    if not path.exists():
        raise FileNotFoundError(f"no chapter {name!r} (looked for {path}); chapters: {', '.join(chapters())}")
    return path


def execute_in_place(name: str, timeout: int | None = None, kernel: str = "python3") -> float:
    """Execute ``book/<name>.ipynb`` in its directory and save the outputs; return seconds.

    The notebook is written only after every cell ran: a failing cell raises
    and leaves the committed notebook as it was.
    """
    from nbclient import NotebookClient

    from rec_lib.utils import atomic_write

    path = chapter_path(name)
    nb = nbformat.read(path, as_version=4)
    env_before = os.environ.get("REC_LIB_PROGRESS")
    os.environ["REC_LIB_PROGRESS"] = "0"
    try:
        t0 = time.perf_counter()
        client = NotebookClient(nb, timeout=timeout, kernel_name=kernel, resources={"metadata": {"path": str(path.parent)}},
                                record_timing=False)
        client.execute()
        seconds = time.perf_counter() - t0
    finally:
        if env_before is None:
            os.environ.pop("REC_LIB_PROGRESS", None)
        else:
            os.environ["REC_LIB_PROGRESS"] = env_before
    with atomic_write(path) as fh:
        nbformat.write(nb, fh)
    return seconds
