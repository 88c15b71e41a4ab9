"""Errors raised by the data layer; each message names the file, the place and the fix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["DatasetError", "DatasetNotFoundError", "DatasetFormatError", "EmptyDatasetError", "FilterEmptiedError",
           "DatasetsMissingError",
           "ChecksumError"]


class DatasetError(Exception):
    """Base class of the data layer's errors."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """Dataset files are missing. The message names each one, where to put it and where to get it.

    ``missing`` is one path or several (all the files a layout lacks);
    ``self.missing`` is the first, ``self.missing_files`` all of them.
    """

    def __init__(self, name: str, missing: Path | str | Sequence[Path | str], expected_dir: Path | str,
                 how_to_get: str):
        files = [Path(missing)] if isinstance(missing, (str, Path)) else [Path(m) for m in missing]
        self.name, self.missing_files, self.expected_dir = name, files, Path(expected_dir)
        self.missing = files[0]
        if len(files) == 1:
            head = f"dataset {name!r}: file {files[0].name!r} not found.\n  expected at: {files[0]}\n"
        else:
            head = (f"dataset {name!r}: {len(files)} files not found: {', '.join(repr(f.name) for f in files)}.\n"
                    f"  expected at: {', '.join(str(f) for f in files)}\n")
        super().__init__(
            head
            + f"  put the dataset's files in: {expected_dir}/\n"
            f"  where to get it: {how_to_get}"
        )


class DatasetsMissingError(DatasetError, FileNotFoundError):
    """Datasets a run needs are not here; ``errors`` holds one :class:`DatasetNotFoundError` per dataset."""

    def __init__(self, context: str, errors: Sequence[DatasetNotFoundError]):
        self.errors = list(errors)
        super().__init__(f"{context} needs data that is not here:\n\n" + "\n\n".join(str(e) for e in self.errors))


class DatasetFormatError(DatasetError, ValueError):
    """A dataset file does not parse, or is empty or damaged; the message names the file and the line.

    ``skippable`` marks a malformed line that ``bad_lines="skip"`` would drop;
    ``damaged`` marks a file that cannot be read at all (empty, truncated, not
    the archive it should be), which only fetching it again fixes.
    :func:`rec_lib.data.load` adds the dataset's source, or the
    ``bad_lines="skip"`` option, to such messages.
    """

    def __init__(self, path: Path | str, line: int | None, problem: str, hint: str = "", *,
                 skippable: bool = False, damaged: bool = False):
        self.path, self.line, self.problem, self.hint = Path(path), line, problem, hint
        self.where = str(path)
        self.skippable, self.damaged = skippable, damaged
        where = f"{path}, line {line}" if line is not None else f"{path}"
        msg = f"malformed dataset file {where}: {problem}"
        if hint:
            msg += f"\n  {hint}"
        super().__init__(msg)

    def with_hint(self, extra: str, replace: bool = False) -> "DatasetFormatError":
        """The same error with ``extra`` added to its hint, or instead of it with ``replace=True``."""
        hint = f"{self.hint}\n  {extra}" if self.hint and not replace else extra
        err = type(self)(self.where, self.line, self.problem, hint, skippable=self.skippable,
                                 damaged=self.damaged)
        err.path = self.path
        return err


class EmptyDatasetError(DatasetFormatError):
    """A dataset file holds nothing (0 bytes, e.g. a failed download), or no interactions were read."""


class FilterEmptiedError(DatasetError, ValueError):
    """A loader's preprocessing option (by default the paper's) left no interactions; the message names the option."""


class ChecksumError(DatasetError, ValueError):
    """A file's checksum (sha256, or md5 where the source publishes only that) differs from the published one."""

    def __init__(self, path: Path | str, expected: str, actual: str, how_to_get: str = "", algorithm: str = "sha256"):
        self.path, self.expected, self.actual, self.algorithm = Path(path), expected, actual, algorithm
        super().__init__(
            f"{path}: {algorithm} {actual} differs from the published {expected}; "
            f"the file is corrupt or another version. Delete it and fetch it again"
            + (f" ({how_to_get})" if how_to_get else "")
            + "."
        )
