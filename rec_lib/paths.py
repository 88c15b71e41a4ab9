"""Where things live, resolved from the package, never from the working directory.

papermill runs a notebook in the caller's directory while nbval and the book
run it in the notebook's directory; every path in the project therefore goes
through these functions. Environment variables override the defaults:

- ``REC_LIB_ROOT``: the repository root (default: the parent of this package
  when it holds ``_config.yml``, as in an editable install; otherwise
  :func:`repo_root` raises rather than guess from the working directory).
- ``REC_LIB_DATA``: the data directory (default ``<root>/data``), holding
  ``raw/`` (datasets as published) and ``cache/`` (parsed and derived files).
- ``REC_LIB_RESULTS``: where ledgers are written (default ``<root>/results``).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["RepoRootError", "repo_root", "data_dir", "raw_dir", "cache_dir", "results_dir", "book_dir"]


class RepoRootError(RuntimeError):
    """The repository root cannot be found: ``REC_LIB_ROOT`` is unset and the package is not in a checkout."""


def repo_root() -> Path:
    """The repository root: ``$REC_LIB_ROOT``, else the checkout holding this package.

    When ``rec_lib`` is installed as a regular (non-editable) package there is
    no checkout beside it; rather than guess (the working directory would
    put ledgers and caches wherever the command happens to run), this raises
    :class:`RepoRootError` saying how to point at the repository.
    """
    env = os.environ.get("REC_LIB_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    here = Path(__file__).resolve().parent.parent
    if (here / "_config.yml").exists():
        return here
    raise RepoRootError(
        f"cannot tell where the repository is: rec_lib is loaded from {here / 'rec_lib'}, which is not inside "
        "a checkout of the book (no _config.yml beside it), and REC_LIB_ROOT is not set. Fix: set "
        "REC_LIB_ROOT=/path/to/the/checkout, or install the package editable from the checkout "
        "(`pip install -e .`). REC_LIB_DATA and REC_LIB_RESULTS can move the data and ledgers on their own."
    )


def data_dir() -> Path:
    """``$REC_LIB_DATA`` or ``<root>/data``."""
    env = os.environ.get("REC_LIB_DATA")
    return Path(env).expanduser().resolve() if env else repo_root() / "data"


def raw_dir() -> Path:
    """Datasets as published, one folder each: ``<data>/raw/<name>/``."""
    return data_dir() / "raw"


def cache_dir() -> Path:
    """Parsed datasets, FAISS indexes and other derived files: ``<data>/cache/``."""
    return data_dir() / "cache"


def results_dir() -> Path:
    """Ledgers (``<chapter>.json``): ``$REC_LIB_RESULTS`` or ``<root>/results``."""
    env = os.environ.get("REC_LIB_RESULTS")
    return Path(env).expanduser().resolve() if env else repo_root() / "results"


def book_dir() -> Path:
    """The chapters: ``<root>/book``."""
    return repo_root() / "book"
