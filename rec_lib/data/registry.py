"""The dataset registry: one :class:`DatasetSpec` per dataset, loaded by name.

A spec says where the files live (``data/raw/<folder>/``), which files are
expected, where to get them, their sha256 where the source publishes stable
files, and the function that parses them into :class:`Interactions`. The
paper-scale loaders plug in with :func:`register`::

    register(DatasetSpec(name="ml-1m", folder="ml-1m", files=("ratings.dat",),
                         url="https://grouplens.org/datasets/movielens/1m/",
                         loader=load_ml1m))

``load("ml-1m")`` then checks that the files are present (raising
:class:`DatasetNotFoundError` that names the file, the place and the source)
before any parsing starts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rec_lib.data.errors import DatasetNotFoundError
from rec_lib.data.io import verify_checksum
from rec_lib.data.schema import Interactions
from rec_lib.paths import raw_dir

__all__ = ["DatasetSpec", "register", "get_spec", "list_datasets", "load", "dataset_available"]


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

    def missing_error(self) -> DatasetNotFoundError:
        first = self.directory() / self.files[0][0]
        how = self.how_to_get or f"download from {self.url}"
        if len(self.files) > 1:
            alternatives = " or ".join("+".join(layout) for layout in self.files)
            how += f" (accepted layouts: {alternatives})"
        return DatasetNotFoundError(self.name, first, self.directory(), how)


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


def load(name: str, verify: bool = False, **options: Any) -> Interactions:
    """Load a registered dataset into the common schema.

    Raises :class:`DatasetNotFoundError` (naming file, place and source) when
    no accepted layout is complete; with ``verify=True`` also checks the
    sha256 (or md5) of each file the spec lists a checksum for.
    """
    spec = get_spec(name)
    found = spec.find_layout()
    if found is None:
        raise spec.missing_error()
    index, paths = found
    if verify:
        for p in paths:
            verify_checksum(p, spec.sha256.get(p.name), spec.how_to_get or spec.url, "sha256")
            verify_checksum(p, spec.md5.get(p.name), spec.how_to_get or spec.url, "md5")
    return spec.loader(spec.directory(), index, **options)


def _layouts(*layouts: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(x) for x in layouts)
