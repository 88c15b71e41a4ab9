"""Errors raised by the data layer; each message names the file, the place and the fix."""

from __future__ import annotations

from pathlib import Path

__all__ = ["DatasetError", "DatasetNotFoundError", "DatasetFormatError", "ChecksumError"]


class DatasetError(Exception):
    """Base class of the data layer's errors."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset file is missing. The message says where to put it and where to get it."""

    def __init__(self, name: str, missing: Path | str, expected_dir: Path | str, how_to_get: str):
        self.name, self.missing, self.expected_dir = name, Path(missing), Path(expected_dir)
        super().__init__(
            f"dataset {name!r}: file {Path(missing).name!r} not found.\n"
            f"  expected at: {missing}\n"
            f"  put the dataset's files in: {expected_dir}/\n"
            f"  where to get it: {how_to_get}"
        )


class DatasetFormatError(DatasetError, ValueError):
    """A dataset file does not parse; the message names the file and the line."""

    def __init__(self, path: Path | str, line: int | None, problem: str, hint: str = ""):
        self.path, self.line = Path(path), line
        where = f"{path}, line {line}" if line is not None else f"{path}"
        msg = f"malformed dataset file {where}: {problem}"
        if hint:
            msg += f"\n  {hint}"
        super().__init__(msg)


class ChecksumError(DatasetError, ValueError):
    """A file's checksum (sha256, or md5 where the source publishes only that) differs from the published one."""

    def __init__(self, path: Path | str, expected: str, actual: str, how_to_get: str = "", algorithm: str = "sha256"):
        super().__init__(
            f"{path}: {algorithm} {actual} differs from the published {expected}; "
            f"the file is corrupt or another version. Delete it and fetch it again"
            + (f" ({how_to_get})" if how_to_get else "")
            + "."
        )
