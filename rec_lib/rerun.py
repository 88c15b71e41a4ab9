"""``python -m rec_lib run``: rerun a chapter at another scale through papermill.

:func:`plan` checks everything before anything runs: the chapter exists, each
``-p NAME=VALUE`` names a parameter of the notebook's ``parameters`` cell,
its value has the settings field's type and passes the chapter's checks
(the same :meth:`ChapterSpec.make` the notebook calls), the device exists,
and every dataset the run needs is in ``data/raw/``. Only then does
:func:`execute` create ``runs/<chapter>-<timestamp>/`` and run the notebook
there with ``REC_LIB_RESULTS`` pointing at it, so the ledger lands beside the
executed notebook, with ``run.json`` recording what was run.

Values arrive as text and are read as Python literals (``3``, ``0.5``,
``(1, 2)``, ``None``, ``"cpu"``); anything else is taken as a string, so
``-p DATASET=ml-1m`` works without quotes.
"""

from __future__ import annotations

import ast
import contextlib
import datetime as _dt
import json
import os
import time
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rec_lib.config import SCALES, BaseSettings, SettingsError, _type_ok
from rec_lib.paths import book_dir, repo_root

__all__ = ["RunError", "RunFailed", "RunPlan", "RunResult", "parse_assignments", "notebook_parameters", "plan", "execute",
           "describe", "runs_dir"]


class RunError(ValueError):
    """A rerun was refused before it started (bad chapter, parameter, value or missing data)."""


class RunFailed(RuntimeError):
    """The chapter raised while running; ``folder`` keeps the partly executed notebook and ``run.json``."""

    def __init__(self, message: str, folder: Path, notebook: Path):
        super().__init__(message)
        self.folder, self.notebook = folder, notebook


@dataclass
class RunPlan:
    """A validated rerun: what :func:`execute` will pass to papermill."""

    chapter: str
    notebook: Path
    scale: str
    parameters: dict[str, Any]  # SCALE and the -p values, as the notebook will receive them
    settings: BaseSettings
    datasets: list[str] = field(default_factory=list)


@dataclass
class RunResult:
    folder: Path
    notebook: Path
    ledger: Path | None
    seconds: float


def runs_dir() -> Path:
    """Where runs go by default: ``<root>/runs`` (git-ignored)."""
    return repo_root() / "runs"


# --------------------------------------------------------------------------- parameters
def parse_assignments(items: Sequence[str]) -> dict[str, str]:
    """``["SEED=1", "DATASET=ml-1m"]`` -> ``{"SEED": "1", "DATASET": "ml-1m"}`` (values still text)."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise RunError(f"-p {item!r}: expected NAME=VALUE, e.g. -p SEED=1")
        if name in out:
            raise RunError(f"-p {name} is given twice")
        out[name] = value.strip()
    return out


def notebook_parameters(notebook: Path) -> dict[str, Any]:
    """The notebook's ``parameters`` cell: name -> default value (a literal)."""
    import papermill as pm

    found = pm.inspect_notebook(str(notebook))
    if not found:
        raise RunError(f"{notebook} has no cell tagged 'parameters'")
    out = {}
    for name, info in found.items():
        try:
            out[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            raise RunError(f"{notebook}: the parameters cell must hold literals; {name} = {info['default']}") from None
    return out


def _read_value(text: str, annotation: Any) -> Any:
    """A -p value as a Python literal, else as the string itself (typed by the settings field when known)."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    if annotation is not None and not _type_ok(value, annotation) and _type_ok(text, annotation):
        return text  # e.g. DATASET=1 for a str field
    return value


def _plain(value: Any) -> Any:
    """Tuples become lists (papermill writes lists as literals, tuples as strings)."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def plan(chapter: str, scale: str = "paper", assignments: Mapping[str, str] | Sequence[str] = ()) -> RunPlan:
    """Validate a rerun without running or writing anything; raise :class:`RunError` naming the problem."""
    from rec_lib.chapters import chapter_spec
    from rec_lib.data import get_spec
    from rec_lib.data.errors import DatasetsMissingError
    from rec_lib.data.registry import missing_datasets

    try:
        spec = chapter_spec(chapter)
    except ValueError as err:
        raise RunError(str(err)) from None
    if scale not in SCALES:
        raise RunError(f"--scale {scale!r} is not one of {', '.join(SCALES)}")
    given = parse_assignments(assignments) if not isinstance(assignments, Mapping) else dict(assignments)
    notebook = book_dir() / f"{chapter}.ipynb"
    cell = notebook_parameters(notebook)
    if "SCALE" in given:
        raise RunError("set the scale with --scale, not -p SCALE=...")
    valid = [n for n in cell if n != "SCALE"]
    unknown = [n for n in given if n not in cell]
    if unknown:
        raise RunError(f"unknown parameter(s) {', '.join(unknown)} for chapter {chapter}; "
                       f"its parameters: {', '.join(valid)} (and --scale)")
    hints = typing.get_type_hints(spec.settings)
    values = {n: _read_value(given[n], hints.get(n.lower())) if n in given else cell[n] for n in valid}
    for name, value in values.items():  # parameters that are not settings fields: the default's type
        default = cell[name]
        if name.lower() not in hints and default is not None and name in given and not _type_ok(value, type(default)):
            raise RunError(f"{name}={value!r} has type {type(value).__name__}; the notebook's default is {default!r}")
    try:
        settings = spec.make(scale, **{n.lower(): v for n, v in values.items() if n.lower() in hints})
    except SettingsError as err:
        raise RunError(f"chapter {chapter}: {err}") from None
    _check_device(settings)
    datasets = list(spec.datasets(settings))
    for name in datasets:
        try:
            get_spec(name)
        except KeyError as err:
            raise RunError(f"chapter {chapter} needs dataset {name!r}, which is not registered ({err.args[0]})") from None
    missing = missing_datasets(datasets)  # the same check the notebook's settings cell makes (ChapterSpec.make)
    if missing:
        raise RunError(str(DatasetsMissingError(f"chapter {chapter} at scale {scale!r}", missing)))
    parameters = {"SCALE": scale, **{n: _plain(values[n]) for n in given}}
    return RunPlan(chapter, notebook, scale, parameters, settings, datasets)


def _check_device(settings: BaseSettings) -> None:
    device = getattr(settings, "device", "cpu")
    if device == "cpu" or device == "auto":
        return
    from rec_lib.utils import resolve_device

    try:
        resolve_device(device)
    except (RuntimeError, ValueError) as err:
        raise RunError(str(err)) from None


# ---------------------------------------------------------------------------- running
def _new_folder(base: Path, chapter: str) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for k in range(1, 1000):
        folder = base / (f"{chapter}-{stamp}" if k == 1 else f"{chapter}-{stamp}-{k}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise RunError(f"cannot create a run folder in {base}")


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def execute(p: RunPlan, base: Path | None = None, timeout: int | None = None, kernel: str = "python3",
            progress: bool = False) -> RunResult:
    """Run a validated plan in a new ``<base>/<chapter>-<timestamp>/`` folder and return where things went.

    A failing cell raises :class:`RunFailed`; the partly executed notebook
    and ``run.json`` (status ``failed``) stay in the folder for inspection.
    """
    import papermill as pm

    from rec_lib.ledger import library_versions

    folder = _new_folder(Path(base) if base else runs_dir(), p.chapter)
    out = folder / f"{p.chapter}.ipynb"
    record = {"chapter": p.chapter, "scale": p.scale, "parameters": p.parameters, "settings": p.settings.as_dict(),
              "datasets": p.datasets, "notebook": out.name, "status": "running",
              "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "versions": library_versions()}
    (folder / "run.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    t0 = time.perf_counter()
    try:
        with _env(REC_LIB_RESULTS=str(folder)):
            pm.execute_notebook(str(p.notebook), str(out), parameters=p.parameters, kernel_name=kernel,
                                cwd=str(folder), progress_bar=progress, log_output=False,
                                execution_timeout=timeout)
        record["status"] = "done"
    except pm.PapermillExecutionError as err:
        record["status"], record["error"] = "failed", f"{err.ename}: {err.evalue}"
        raise RunFailed(f"the chapter failed in cell {err.exec_count}: {err.ename}: {err.evalue}", folder, out) from err
    except BaseException:
        record["status"] = "failed"
        raise
    finally:
        record["seconds"] = round(time.perf_counter() - t0, 1)
        (folder / "run.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    ledger = folder / f"{p.chapter}.json"
    if not ledger.exists():
        others = sorted(q for q in folder.glob("*.json") if q.name != "run.json")
        ledger = others[0] if others else None
    return RunResult(folder, out, ledger, record["seconds"])


# ----------------------------------------------------------------------------- listing
def describe(chapter: str) -> str:
    """The chapter's parameters: type, the notebook's default, the value each scale would use; its datasets."""
    from rec_lib.chapters import CHAPTERS, chapter_spec
    from rec_lib.data import dataset_available

    spec = chapter_spec(chapter)
    notebook = book_dir() / f"{chapter}.ipynb"
    cell = notebook_parameters(notebook)
    hints = typing.get_type_hints(spec.settings)
    effective = {}
    for scale in SCALES:
        try:
            effective[scale] = spec.make(scale, **{n.lower(): v for n, v in cell.items()
                                                   if n != "SCALE" and n.lower() in hints})
        except SettingsError as err:
            effective[scale] = err
    rows = [("parameter", "type", "notebook", *SCALES)]
    for name, default in cell.items():
        typ = _type_name(hints.get(name.lower(), type(default) if default is not None else Any))
        if name == "SCALE":
            rows.append((name, "str", repr(default), "--scale", "", ""))
            continue
        vals = [repr(getattr(s, name.lower(), "")) if isinstance(s, BaseSettings) else "invalid"
                for s in effective.values()]
        rows.append((name, typ, repr(default), *vals))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"{chapter}  (book/{chapter}.ipynb; settings: {CHAPTERS[chapter].module}.CHAPTER)"]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    paper = effective["paper"]
    if isinstance(paper, BaseSettings):
        names = list(spec.datasets(paper))
        status = [f"{n} ({'present' if _present(n, dataset_available) else 'missing'})" for n in names]
        lines.append(f"  datasets at paper scale: {', '.join(status) if status else 'none (synthetic data)'}")
    return "\n".join(lines)


def _present(name: str, available) -> bool:
    try:
        return available(name)
    except KeyError:
        return False


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")
