"""What every paper-scale loader shares: options, the parse cache, JSON lines, post-processing.

A loader module writes one *parse* function per dataset,
``parse(folder, layout, *, <parse options>, chunksize, bad_lines) -> Interactions``,
that turns the published files into the common schema (raw ids kept in
``user_ids`` / ``item_ids``), and registers it with :func:`register_loader`.
The registered loader then

1. checks the option names (an unknown one raises, listing the valid ones)
   and the common options' values, before reading anything;
2. parses the files, or reuses the parse cached under
   ``<cache>/datasets/<name>/`` (parquet), keyed by the size and
   modification time of every file in the dataset's folder, by the parse
   options and by a hash of the parsing code (editing a loader re-parses);
   the cache is written atomically (temporary folder, then rename);
3. applies the common post-processing options, in this order (also cached):

   ``implicit_threshold``  keep ``rating >= t`` and set ratings to 1 (``None``: keep ratings)
   ``drop_repeats``        keep the first interaction of each (user, item) pair
   ``min_user``            drop users with fewer interactions, one pass (DiPS on Netflix)
   ``user_core``, ``item_core``  iterative k-core (DiPS: 20/20; SML on Yelp: 10/20)

Every dataset sets its own defaults for these (the paper's preprocessing);
``None`` switches one off. ``cache=False`` parses afresh and writes nothing;
``chunksize`` sets the lines per chunk of large files; ``bad_lines="skip"``
drops malformed lines (with a warning that counts them) instead of raising.
"""

from __future__ import annotations

import gzip
import hashlib
import inspect
import io
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rec_lib.data.errors import DatasetFormatError, DatasetNotFoundError, EmptyDatasetError, FilterEmptiedError
from rec_lib.data.io import DAMAGED_HINT, READ_ERRORS, check_not_empty, unreadable
from rec_lib.data.filters import drop_repeats as _drop_repeats
from rec_lib.data.filters import k_core, min_user_interactions, to_implicit
from rec_lib.data.registry import DatasetSpec, register
from rec_lib.data.schema import Interactions
from rec_lib.paths import cache_dir

__all__ = [
    "CACHE_VERSION", "POST_OPTIONS", "RUN_OPTIONS", "register_loader", "loader_options", "cached",
    "save_interactions", "load_interactions", "postprocess", "iter_json_lines", "open_member",
    "to_unix_seconds", "check_choice", "first_bad", "joined", "require", "missing_file", "NO_PUBLISHED_CHECKSUM",
]

CACHE_VERSION = 1
DEFAULT_CHUNKSIZE = 2_000_000
POST_OPTIONS: dict[str, Any] = {
    "implicit_threshold": None, "drop_repeats": False, "min_user": None, "user_core": None, "item_core": None,
}
RUN_OPTIONS: dict[str, Any] = {"cache": True, "chunksize": DEFAULT_CHUNKSIZE, "bad_lines": "error"}
NO_PUBLISHED_CHECKSUM = ("none recorded: the source publishes none we could find, and the files could not be "
                         "downloaded here to compute one.")
_NOT_KEYED = ("cache", "chunksize")  # options that do not change the result


# --------------------------------------------------------------------------- registering
def register_loader(parse: Callable[..., Interactions], defaults: Mapping[str, Any] | None = None,
                    checksums: str = "", **spec_fields: Any) -> DatasetSpec:
    """Register ``parse`` as dataset ``spec_fields["name"]`` with the common options.

    ``defaults`` overrides :data:`POST_OPTIONS` (the paper's preprocessing of
    this dataset). ``checksums`` says where the recorded digests come from,
    or why none is recorded (required: it is appended to the description).
    ``spec_fields`` are those of :class:`DatasetSpec` except ``loader``.
    """
    name = spec_fields["name"]
    if not checksums:
        raise ValueError(f"{name}: say where the checksums come from, or why there is none (checksums=...)")
    spec_fields["description"] = f"{spec_fields.get('description', '')} Checksums: {checksums}".strip()
    parse_opts = {p.name: p.default for p in inspect.signature(parse).parameters.values()
                  if p.kind is inspect.Parameter.KEYWORD_ONLY}
    unknown = set(defaults or {}) - set(POST_OPTIONS)
    if unknown:
        raise ValueError(f"{name}: defaults {sorted(unknown)} are not post-processing options {sorted(POST_OPTIONS)}")
    options = {**{k: v for k, v in parse_opts.items() if k not in RUN_OPTIONS}, **POST_OPTIONS, **(defaults or {}),
               **RUN_OPTIONS}

    def load(folder: Path, layout: int = 0, **given: Any) -> Interactions:
        opts = _check_options(name, options, given)
        parse_kw = {k: opts[k] for k in parse_opts}
        fingerprint = _fingerprint(folder) + [("code", _code_version(parse), 0)]
        raw = cached(name, "parsed", fingerprint, {"layout": layout, **parse_kw},
                     lambda: _not_empty(parse(folder, layout, **parse_kw), folder), opts["cache"])
        post = {k: opts[k] for k in POST_OPTIONS}
        if all(v is None or v is False for v in post.values()):
            return raw
        return cached(name, "final", fingerprint, {"layout": layout, **parse_kw, **post},
                      lambda: postprocess(raw, **post), opts["cache"])

    load.options = dict(options)  # type: ignore[attr-defined]
    load.__name__ = f"load_{name.replace('-', '_')}"
    load.__doc__ = parse.__doc__
    return register(DatasetSpec(loader=load, **spec_fields))


def _not_empty(data: Interactions, folder: Path) -> Interactions:
    """``data``, or :class:`EmptyDatasetError` when the files held no interaction (nothing is cached then)."""
    if len(data) == 0:
        raise EmptyDatasetError(folder, None, f"no interactions were read from the files of {data.name!r} here",
                                DAMAGED_HINT, damaged=True)
    return data


def loader_options(name: str) -> dict[str, Any]:
    """The options ``rec_lib.data.load(name, ...)`` accepts, with their defaults."""
    from rec_lib.data.registry import get_spec

    return dict(getattr(get_spec(name).loader, "options", {}))


def _check_options(name: str, options: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(given) - set(options))
    if unknown:
        raise TypeError(f"load({name!r}) got unknown option(s) {', '.join(unknown)}; "
                        f"its options (with defaults): {', '.join(f'{k}={v!r}' for k, v in options.items())}")
    opts = {**options, **given}
    t = opts["implicit_threshold"]
    if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float))):
        raise ValueError(f"load({name!r}): implicit_threshold must be a number or None, got {t!r}")
    for key in ("min_user", "user_core", "item_core"):
        v = opts[key]
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"load({name!r}): {key} must be an integer >= 1 or None, got {v!r}")
    for key in ("drop_repeats", "cache"):
        if not isinstance(opts[key], bool):
            raise ValueError(f"load({name!r}): {key} must be True or False, got {opts[key]!r}")
    c = opts["chunksize"]
    if isinstance(c, bool) or not isinstance(c, int) or c < 1:
        raise ValueError(f"load({name!r}): chunksize must be an integer >= 1, got {c!r}")
    check_choice(name, "bad_lines", opts["bad_lines"], ("error", "skip"))
    return opts


def check_choice(name: str, option: str, value: Any, choices: Sequence[Any]) -> None:
    """Raise ``ValueError`` naming the option and the accepted values."""
    if value not in choices:
        raise ValueError(f"load({name!r}): {option} must be one of {tuple(choices)}, got {value!r}")


def postprocess(data: Interactions, implicit_threshold: float | None = None, drop_repeats: bool = False,
                min_user: int | None = None, user_core: int | None = None,
                item_core: int | None = None) -> Interactions:
    """Apply the common post-processing options (see the module docstring), then reindex.

    A step that leaves no interaction raises :class:`FilterEmptiedError`
    naming the option (and its value) that removed everything and how to relax it.
    """
    name = data.name

    def emptied(step: str, relax: str, before: int) -> FilterEmptiedError:
        return FilterEmptiedError(
            f"load({name!r}): {step} left none of the {before:,} interactions it was given.\n"
            f"  Fix: relax it, e.g. load({name!r}, {relax}), or pass a smaller value; the defaults are the "
            f"paper's preprocessing (rec_lib.data.loader_options({name!r}) lists them)."
        )

    if implicit_threshold is not None:
        before, data = len(data), to_implicit(data, implicit_threshold, reindex=False)
        if len(data) == 0 and before:
            raise emptied(f"implicit_threshold={implicit_threshold!r}", "implicit_threshold=None", before)
    if drop_repeats:
        data = _drop_repeats(data)
    if min_user is not None:
        before, data = len(data), min_user_interactions(data, min_user)
        if len(data) == 0 and before:
            raise emptied(f"min_user={min_user!r}", "min_user=None", before)
    if user_core is not None or item_core is not None:
        before = len(data)
        try:
            data = k_core(data, user_core or 1, item_core or 1)
        except ValueError as err:  # thresholds are checked before reading: only an emptied result gets here
            if "nothing is left" not in str(err):
                raise
            raise emptied(f"the k-core filter (user_core={user_core!r}, item_core={item_core!r})",
                          "user_core=None, item_core=None", before) from err
    return data.reindexed()


# --------------------------------------------------------------------------------- cache
def _code_version(parse: Callable[..., Any]) -> str:
    """A hash of the code a parse depends on (its module, this one, io, schema, filters): editing it re-parses."""
    import sys

    from rec_lib.data import filters, io as data_io, schema

    h = hashlib.sha256()
    for module in (sys.modules[parse.__module__], sys.modules[__name__], data_io, schema, filters):
        h.update(Path(inspect.getfile(module)).read_bytes())
    return h.hexdigest()[:16]


def _fingerprint(folder: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime in ns) of every file in the dataset's folder."""
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts):
            st = p.stat()
            out.append((rel.as_posix(), st.st_size, st.st_mtime_ns))
    return out


def cached(name: str, stage: str, fingerprint: list, options: Mapping[str, Any],
           build: Callable[[], Interactions], use_cache: bool = True) -> Interactions:
    """``build()``, or its result stored under ``<cache>/datasets/<name>/`` for these files and options.

    Entries of the same dataset and stage made from other versions of the
    files are deleted when a new one is written (they can never match again).
    """
    if not use_cache:
        return build()
    keyed = {k: v for k, v in options.items() if k not in _NOT_KEYED}
    files_key = hashlib.sha256(json.dumps(fingerprint).encode()).hexdigest()[:16]
    blob = json.dumps({"v": CACHE_VERSION, "name": name, "stage": stage, "files": files_key, "options": keyed},
                      sort_keys=True, default=repr)
    key = hashlib.sha256(blob.encode()).hexdigest()[:20]
    root = cache_dir() / "datasets" / name
    target = root / f"{stage}-{key}"
    if (target / "meta.json").exists():
        return load_interactions(target)
    data = build()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{stage}-{key}.", dir=root))
    try:
        from rec_lib.utils import _current_umask

        os.chmod(tmp, 0o777 & ~_current_umask())  # mkdtemp's folder is private (0700): give a plain folder's mode
        save_interactions(data, tmp, extra={"files": files_key, "stage": stage, "options": json.loads(blob)["options"]})
        try:
            os.rename(tmp, target)
        except OSError:  # another process wrote it first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _prune(root, stage, files_key, keep=target)
    return data


def _prune(root: Path, stage: str, files_key: str, keep: Path) -> None:
    for entry in root.glob(f"{stage}-*"):
        if entry == keep:
            continue
        try:
            meta = json.loads((entry / "meta.json").read_text())
        except (OSError, ValueError):
            continue
        if meta.get("files") != files_key:
            shutil.rmtree(entry, ignore_errors=True)


def save_interactions(data: Interactions, directory: Path, extra: Mapping[str, Any] | None = None) -> None:
    """Write ``data`` as parquet files plus ``meta.json`` (written last: its presence marks a complete entry)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(data.df, preserve_index=False), directory / "interactions.parquet")
    pq.write_table(pa.table({"id": pa.array(data.user_ids)}), directory / "users.parquet")
    pq.write_table(pa.table({"id": pa.array(data.item_ids)}), directory / "items.parquet")
    if data.item_meta is not None:
        pq.write_table(pa.Table.from_pandas(data.item_meta.reset_index(drop=True), preserve_index=False),
                       directory / "item_meta.parquet")
    meta = {"name": data.name, "n_users": data.n_users, "n_items": data.n_items, **(extra or {})}
    (directory / "meta.json").write_text(json.dumps(meta, indent=1, default=repr))


def load_interactions(directory: Path) -> Interactions:
    """Read back what :func:`save_interactions` wrote."""
    import pyarrow.parquet as pq

    meta = json.loads((directory / "meta.json").read_text())
    df = pq.read_table(directory / "interactions.parquet").to_pandas()
    users = pq.read_table(directory / "users.parquet").column("id").to_numpy(zero_copy_only=False)
    items = pq.read_table(directory / "items.parquet").column("id").to_numpy(zero_copy_only=False)
    item_meta = None
    if (directory / "item_meta.parquet").exists():
        item_meta = pq.read_table(directory / "item_meta.parquet").to_pandas()
        item_meta.index.name = "item"
    data = Interactions(df, int(meta["n_users"]), int(meta["n_items"]), users, items, meta["name"], item_meta)
    data.validate()
    return data


# --------------------------------------------------------------------------- reading files
def open_member(folder: Path, relative: str) -> tuple[Any, str]:
    """Open ``relative`` for reading: a file in ``folder``, or ``archive.zip:member`` inside a zip.

    Returns the binary file object and the label errors should name. An
    empty file or member raises :class:`EmptyDatasetError`, an archive that is
    not a readable zip (truncated, another format) :class:`DatasetFormatError`,
    both naming the file and saying to fetch it again.
    """
    if ":" in relative:
        archive, member = relative.split(":", 1)
        import zipfile

        check_not_empty(folder / archive)
        try:
            zf = zipfile.ZipFile(folder / archive)
        except FileNotFoundError:
            raise
        except READ_ERRORS as err:
            raise unreadable(folder / archive, err) from err
        label = f"{folder / archive}:{member}"
        try:
            info = zf.getinfo(member)
        except KeyError:
            zf.close()
            raise DatasetFormatError(folder / archive, None, f"the archive has no member {member!r}",
                                     "is it the file the source publishes?") from None
        if info.file_size == 0:
            zf.close()
            raise EmptyDatasetError(label, None, "the archive member is empty (0 bytes)", DAMAGED_HINT, damaged=True)
        try:
            return zf.open(info), label
        except READ_ERRORS as err:
            zf.close()
            raise unreadable(folder / archive, err) from err
    check_not_empty(folder / relative)
    return open(folder / relative, "rb"), str(folder / relative)


def _open_lines(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def iter_json_lines(path: Path, fields: Mapping[str, str], chunksize: int = 500_000,
                    progress_desc: str | None = None, bad_lines: str = "error") -> Iterator[pd.DataFrame]:
    """Read a JSON-lines file (``.gz`` too) in chunks of ``chunksize`` lines.

    ``fields`` maps the JSON fields to read to pyarrow type names
    (``"string"``, ``"int64"``, ``"float64"``, ``"bool"``); other fields are
    ignored and absent ones become missing values. Each chunk is a DataFrame
    of those fields plus ``_line``, the line number of each object in the file
    (blank lines are skipped, not counted as objects). An empty (0-byte) or
    unreadable (truncated ``.gz``) file raises naming it. A line that is not a
    JSON object, or whose field has another type than declared, raises
    :class:`DatasetFormatError` naming the file, the line and the field; with
    ``bad_lines="skip"`` such lines are dropped and counted in a warning.
    """
    import pyarrow as pa
    import pyarrow.json as pj

    from rec_lib.utils import progress

    schema = pa.schema([(k, pa.type_for_alias(v)) for k, v in fields.items()])
    parse_options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    read_options = pj.ReadOptions(block_size=16 << 20)
    check_not_empty(path)
    skipped, first_skipped = 0, None
    with _open_lines(path) as fh:
        next_line = 1
        chunks = iter(lambda: list(islice(fh, chunksize)), [])
        try:
            for block in progress(chunks, desc=progress_desc or path.name, unit="chunk"):
                lines = np.arange(next_line, next_line + len(block), dtype=np.int64)
                next_line += len(block)
                keep = np.fromiter(map(len, map(bytes.strip, block)), dtype=np.int64, count=len(block)) > 0
                if not keep.all():
                    block, lines = [b for b, k in zip(block, keep) if k], lines[keep]
                if not block:
                    continue
                try:
                    table = pj.read_json(io.BytesIO(_joined(block)), read_options=read_options,
                                         parse_options=parse_options)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                    bad, problem = _bad_json_lines(block, fields)
                    if not bad.any():
                        raise DatasetFormatError(path, int(lines[0]), f"the chunk starting here does not parse ({err})")
                    if bad_lines == "error":
                        i = int(np.flatnonzero(bad)[0])
                        raise DatasetFormatError(path, int(lines[i]), problem, skippable=True) from err
                    skipped += int(bad.sum())
                    first_skipped = first_skipped or int(lines[bad][0])
                    block, lines = [b for b, k in zip(block, bad) if not k], lines[~bad]
                    if not block:
                        continue
                    table = pj.read_json(io.BytesIO(_joined(block)), read_options=read_options,
                                         parse_options=parse_options)
                frame = table.to_pandas()
                frame["_line"] = lines
                yield frame
        except READ_ERRORS as err:  # e.g. a truncated or corrupt .gz
            raise unreadable(path, err) from err
    if skipped:
        warnings.warn(f"{path}: skipped {skipped} malformed lines (the first at line {first_skipped})", stacklevel=2)


def _joined(block: list[bytes]) -> bytes:
    return b"".join(b if b.endswith(b"\n") else b + b"\n" for b in block)


_PY_TYPES = {"string": (str,), "int64": (int,), "float64": (int, float), "bool": (bool,)}


def _bad_json_lines(block: list[bytes], fields: Mapping[str, str]) -> tuple[np.ndarray, str]:
    """Which lines of a chunk pyarrow refused are at fault, and what is wrong with the first.

    This per-line check runs only on the error path.
    """
    bad = np.zeros(len(block), dtype=bool)
    first = ""
    for i, raw in enumerate(block):
        problem = ""
        try:
            obj = json.loads(raw)
        except ValueError as err:
            problem = f"not a JSON object ({err})"
        else:
            if not isinstance(obj, dict):
                problem = f"not a JSON object but a {type(obj).__name__}"
            else:
                for key, typ in fields.items():
                    value = obj.get(key)
                    allowed = _PY_TYPES.get(typ, (object,))
                    if value is not None and (not isinstance(value, allowed)
                                              or (isinstance(value, bool) and bool not in allowed)):
                        problem = f"field {key!r} holds {value!r}; expected a {typ} value"
                        break
        if problem:
            bad[i] = True
            first = first or problem
    return bad, first


def joined(parts: Sequence[pd.DataFrame], where: str | Path) -> pd.DataFrame:
    """The chunks a parse read, concatenated; none at all (a file of blank lines) raises naming ``where``."""
    if not parts:
        raise EmptyDatasetError(where, None, "no interactions were read (the file holds no data lines)",
                                DAMAGED_HINT, damaged=True)
    return pd.concat(parts, ignore_index=True)


def first_bad(mask: np.ndarray, lines: np.ndarray | None = None) -> int | None:
    """The file line of the first ``True`` in ``mask`` (position + 1 when ``lines`` is None)."""
    idx = np.flatnonzero(np.asarray(mask))
    if not len(idx):
        return None
    return int(lines[idx[0]]) if lines is not None else int(idx[0]) + 1


def to_unix_seconds(values: pd.Series, fmt: str, where: str | Path, lines: np.ndarray, what: str) -> np.ndarray:
    """Parse date strings with ``fmt`` (``"ISO8601"`` too) to Unix seconds; the first failure names its line."""
    parsed = pd.to_datetime(values, format=fmt, utc=True, errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DatasetFormatError(where, int(lines[i]), f"{what} {values.iloc[i]!r} is not a date of the form {fmt!r}")
    return ((parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)


def require(frame: pd.DataFrame, columns: Sequence[str], where: str | Path, what: str = "field") -> None:
    """Raise naming the first line whose required column is missing (``_line`` gives the lines)."""
    for col in columns:
        missing = frame[col].isna().to_numpy()
        if missing.any():
            line = first_bad(missing, frame["_line"].to_numpy() if "_line" in frame else None)
            raise DatasetFormatError(where, line, f"the {what} {col!r} is missing")


def missing_file(name: str, path: Path, folder: Path, how_to_get: str) -> DatasetNotFoundError:
    """The not-found error for a file a layout needs beyond the registry's list."""
    return DatasetNotFoundError(name, path, folder, how_to_get)
