"""The book's chapters as the command line and the reproducibility report see them.

Each chapter is a notebook ``book/<name>.ipynb`` and a module that declares
``CHAPTER = ChapterSpec(...)`` (:mod:`rec_lib.config`): its settings class,
presets and the datasets a run needs. A chapter whose notebook or module is
not (yet) in the checkout is simply absent from :func:`available`.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from rec_lib.config import ChapterSpec
from rec_lib.paths import book_dir

__all__ = ["ChapterEntry", "CHAPTERS", "available", "entry", "chapter_spec"]


@dataclass(frozen=True)
class ChapterEntry:
    """A chapter: its notebook stem, the module holding ``CHAPTER``, the paper's BibTeX key."""

    name: str
    module: str
    paper: str = ""  # key in book/references.bib; "" for the book's own chapters
    title: str = ""  # short name of the paper for tables


CHAPTERS: dict[str, ChapterEntry] = {e.name: e for e in (
    ChapterEntry("data_protocols", "rec_lib.data.chapter", "", "Data, protocols and metrics"),
    ChapterEntry("fast_offline_policy", "rec_lib.policy_learning", "sakhi2023fast", "Fast offline policy learning"),
    ChapterEntry("sml", "rec_lib.retraining", "zhang2020sml", "SML"),
    ChapterEntry("two_time_scale", "rec_lib.two_time_scale", "anon2022twotimescale", "2TS"),
    ChapterEntry("melon", "rec_lib.online_update", "kim2022melon", "MeLON"),
    ChapterEntry("dips", "rec_lib.sketching", "ghosh2022dips", "DiPS"),
)}


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def available() -> list[str]:
    """Chapters whose notebook and module both exist, in book order (``_toc.yml``), then the rest."""
    from rec_lib.notebooks import chapters as toc_order

    present = [n for n, e in CHAPTERS.items() if (book_dir() / f"{n}.ipynb").exists() and _module_exists(e.module)]
    order = {n: i for i, n in enumerate(toc_order())}
    return sorted(present, key=lambda n: (order.get(n, len(order)), list(CHAPTERS).index(n)))


def entry(name: str) -> ChapterEntry:
    """The chapter's entry; a clear error lists the runnable chapters otherwise."""
    if name not in available():
        known = ", ".join(available()) or "none"
        why = "is not a chapter" if name not in CHAPTERS else "is not in this checkout yet (notebook or module missing)"
        raise ValueError(f"{name!r} {why}; chapters that can be run: {known}")
    return CHAPTERS[name]


def chapter_spec(name: str) -> ChapterSpec:
    """Import the chapter's module and return its ``CHAPTER``, checked."""
    e = entry(name)
    module = importlib.import_module(e.module)
    spec = getattr(module, "CHAPTER", None)
    if not isinstance(spec, ChapterSpec):
        raise ValueError(f"{e.module} must define CHAPTER = ChapterSpec(name={name!r}, settings=..., presets=..., "
                         f"datasets=...) for `python -m rec_lib run {name}`")
    if spec.name != name:
        raise ValueError(f"{e.module}.CHAPTER.name is {spec.name!r}, expected {name!r} (the notebook's stem)")
    return spec
