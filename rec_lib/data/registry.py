"""The dataset registry: one :class:`DatasetSpec` per dataset, loaded by name.

A spec says where the files live (``data/raw/<folder>/``), which files are
expected, where to get them, their sha256 where the source publishes stable
files, and the function that parses them into :class:`Interactions`. The
paper-scale loaders plug in with :func:`register`::

    register(DatasetSpec(name="ml-1m", folder="ml-1m", files=("ratings.dat",),
                         url="https://grouplens.org/datasets/movielens/1m/",
                         loader=load_ml1m))

``load("ml-1m")`` then, before any parsing starts, checks that the files are
present (raising :class:`DatasetNotFoundError` that names every missing file,
the place and the source), that none is empty, and that each file with a
recorded checksum matches it (verified once per file: the result is kept in
``<cache>/checksums.json`` under the file's size and modification time).
A file that turns out truncated or damaged while it is parsed, or a
malformed line, raises an error naming the file, the line where there is
one, and the fix (the source to fetch it again from, or ``bad_lines="skip"``).
:func:`missing_datasets` is the presence check that ``python -m rec_lib run``
and the chapters' settings cells use before any work.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rec_lib.data.errors import ChecksumError, DatasetFormatError, DatasetNotFoundError
from rec_lib.data.io import DAMAGED_HINT, check_not_empty
from rec_lib.data.schema import Interactions
from rec_lib.paths import cache_dir, raw_dir

__all__ = ["DatasetSpec", "register", "get_spec", "list_datasets", "load", "dataset_available", "missing_datasets",
           "verify_files"]


@dataclass(frozen=True)
class DatasetSpec:
    """How to find and parse one dataset.

    ``files`` lists alternatives: each entry is a tuple of files that together
    make one accepted layout (e.g. GroupLens ``u.data`` or RecBole
    ``ml-100k.inter``); the first layout whose files all exist is used.
    ``loader(folder, layout_index, **options)`` returns :class:`Interactions`.
    """

    name: str
    folder: str
    files: tuple[tuple[str, ...], ...]
    loader: Callable[..., Interactions]
    url: str
    description: str = ""
    licence: str = ""
    sha256: dict[str, str] = field(default_factory=dict)
    md5: dict[str, str] = field(default_factory=dict)  # where the source publishes only md5
    how_to_get: str = ""
    paper: str = ""  # which chapter(s) use it

    def directory(self) -> Path:
        return raw_dir() / self.folder

    def find_layout(self) -> tuple[int, tuple[Path, ...]] | None:
        """The first layout whose files all exist, as (index, paths); else ``None``."""
        d = self.directory()
        for i, layout in enumerate(self.files):
            paths = tuple(d / f for f in layout)
            if all(p.exists() for p in paths):
                return i, paths
        return None

    def missing_files(self) -> list[Path]:
        """The files the most nearly complete layout lacks (the first layout on a tie); empty when one is complete."""
        d = self.directory()
        best: list[Path] | None = None
        for layout in self.files:
            lacking = [d / f for f in layout if not (d / f).exists()]
            if best is None or len(lacking) < len(best):
                best = lacking
        return best or []

    def missing_error(self) -> DatasetNotFoundError:
        """The error naming every file the nearest layout lacks, the folder and where to get the dataset."""
        lacking = self.missing_files() or [self.directory() / self.files[0][0]]
        how = self.how_to_get or f"download from {self.url}"
        if len(self.files) > 1:
            alternatives = " or ".join("+".join(layout) for layout in self.files)
            how += f" (accepted layouts: {alternatives})"
        return DatasetNotFoundError(self.name, lacking, self.directory(), how)

    def source(self) -> str:
        """Where to get the files again: the spec's instructions, else its URL."""
        return self.how_to_get or self.url


_REGISTRY: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add (or replace) a dataset in the registry."""
    if not spec.files or not all(spec.files):
        raise ValueError(f"dataset {spec.name!r}: files must name at least one file per layout")
    _REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> DatasetSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; registered: {', '.join(sorted(_REGISTRY))}") from None


def list_datasets() -> list[DatasetSpec]:
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def dataset_available(name: str) -> bool:
    """True when the files of one accepted layout are present."""
    return get_spec(name).find_layout() is not None


def missing_datasets(names: Iterable[str]) -> list[DatasetNotFoundError]:
    """The presence check run before any work: one :class:`DatasetNotFoundError` per dataset not here.

    Each error names the missing files, the folder and where to get them.
    An unregistered name raises ``KeyError`` listing the registered ones.
    Used by ``python -m rec_lib run`` and by :meth:`rec_lib.config.ChapterSpec.make`.
    """
    out = []
    for name in names:
        spec = get_spec(name)
        if spec.find_layout() is None:
            out.append(spec.missing_error())
    return out


# ---------------------------------------------------------------------------- checksums
_ALGORITHMS = ("sha256", "md5")


def _checksum_cache() -> Path:
    return cache_dir() / "checksums.json"


def _read_checksum_cache() -> dict[str, Any]:
    try:
        cache = json.loads(_checksum_cache().read_text())
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def verify_files(spec: DatasetSpec, paths: Sequence[Path]) -> None:
    """Check each file of ``paths`` that ``spec`` records a sha256 or md5 for; raise :class:`ChecksumError`.

    A file is hashed once: a match is remembered in ``<cache>/checksums.json``
    with the file's size and modification time (and the digest checked), so
    later loads skip it until the file changes. A mismatch is never
    remembered, and the error names the file and where to fetch it again.
    """
    cache = _read_checksum_cache()
    verified: dict[str, Any] = {}
    for path in paths:
        expected = {a: d for a, d in (("sha256", spec.sha256.get(path.name)), ("md5", spec.md5.get(path.name))) if d}
        if not expected:
            continue
        st = path.stat()
        key = str(path.resolve())
        entry = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, **expected}
        if cache.get(key) == entry:
            continue
        hashes = {a: hashlib.new(a) for a in expected}
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                for h in hashes.values():
                    h.update(block)
        for algorithm, digest in expected.items():
            actual = hashes[algorithm].hexdigest()
            if actual != digest:
                raise ChecksumError(path, digest, actual, spec.source(), algorithm)
        verified[key] = entry
    if verified:
        from rec_lib.utils import atomic_write

        cache = {**_read_checksum_cache(), **verified}  # re-read: another process may have added entries
        with atomic_write(_checksum_cache()) as fh:
            json.dump(cache, fh, indent=1, sort_keys=True)


def load(name: str, verify: bool = True, **options: Any) -> Interactions:
    """Load a registered dataset into the common schema.

    Before parsing, raises :class:`DatasetNotFoundError` (naming every
    missing file, the place and the source) when no accepted layout is
    complete, :class:`~rec_lib.data.errors.EmptyDatasetError` when one of its
    files is empty (0 bytes: a failed download), and, with ``verify=True``
    (the default), :class:`ChecksumError` when a file's sha256 (or md5)
    differs from the recorded one (see :func:`verify_files`; ``verify=False``
    skips the check, e.g. for a deliberately edited copy). A file found
    truncated while parsing, or a malformed line, raises
    :class:`DatasetFormatError` naming the file (and line) and the fix.
    """
    spec = get_spec(name)
    found = spec.find_layout()
    if found is None:
        raise spec.missing_error()
    index, paths = found
    try:
        for p in paths:
            if p.is_file():
                check_not_empty(p)
        if verify:
            verify_files(spec, paths)
        return spec.loader(spec.directory(), index, **options)
    except DatasetFormatError as err:
        fixed = _with_fix(err, spec)
        if fixed is err:
            raise
        raise fixed from err


def _with_fix(err: DatasetFormatError, spec: DatasetSpec) -> DatasetFormatError:
    """Add the fix to a parse error: the source for a damaged file, ``bad_lines="skip"`` for a bad line."""
    if err.damaged:
        if err.hint == DAMAGED_HINT:
            return err.with_hint(f"is the download complete? Delete the file and fetch it again: {spec.source()}",
                                 replace=True)
        return err.with_hint(f"fetch it again: {spec.source()}")
    if err.skippable and "bad_lines" in getattr(spec.loader, "options", {}):
        return err.with_hint(f"if only a few lines are damaged, load({spec.name!r}, bad_lines=\"skip\") drops "
                             "the malformed lines (a warning counts them); otherwise fetch the file again: "
                             f"{spec.source()}")
    if err.line is not None:
        return err.with_hint(f"is it the file the source publishes? fetch it again: {spec.source()}")
    return err


def _layouts(*layouts: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(x) for x in layouts)
