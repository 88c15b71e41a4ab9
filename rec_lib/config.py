"""Scale presets: one ``SCALE`` parameter picks a preset; single knobs override it.

Every chapter declares a frozen dataclass of its settings and a preset table::

    @dataclass(frozen=True)
    class SMLSettings(BaseSettings):
        n_periods: int = 30
        epochs: int = 10

    PRESETS = {"smoke": dict(n_periods=6, epochs=1), "tutorial": {}, "paper": dict(...)}

    settings = make_settings(SMLSettings, PRESETS, scale="tutorial", seed=0, epochs=None)

``None`` for an override means "keep the preset's value", so a notebook's
``parameters`` cell can hold ``EPOCHS = None`` and papermill can override it.
Unknown names, wrong types and unknown scales raise before any work starts.

A notebook's settings cell calls ``CHAPTER.make(SCALE, seed=SEED, ...)``
(:meth:`ChapterSpec.make`). Called from a notebook, ``make`` also refuses,
before any work, what plain papermill lets through: a parameter name that
neither the ``parameters`` cell nor the settings know (papermill only warns
about ``-p SEEED 1`` and runs on the defaults), a device that does not exist,
and a dataset the settings need that is not in ``data/raw/``.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SCALES", "BaseSettings", "make_settings", "SettingsError", "ChapterSpec", "unknown_parameters",
           "NOT_PARAMETERS"]

SCALES = ("smoke", "tutorial", "paper")


class SettingsError(ValueError):
    """A chapter parameter has an unknown name, a wrong type or a bad value."""


@dataclass(frozen=True)
class BaseSettings:
    """Settings every chapter has. Subclass and add the chapter's knobs."""

    scale: str = "tutorial"
    seed: int = 0
    device: str = "cpu"
    dataset: str = "ml-100k"

    def validate(self) -> None:
        """Check values (types are checked by :func:`make_settings`); extend in subclasses."""
        if self.scale not in SCALES:
            raise SettingsError(f"SCALE={self.scale!r} is not one of {SCALES}")
        if self.seed < 0:
            raise SettingsError(f"SEED must be >= 0, got {self.seed}")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:  # a readable block for the notebook's settings cell
        width = max(len(f.name) for f in dataclasses.fields(self))
        lines = [f"{type(self).__name__}("]
        lines += [f"  {f.name:<{width}} = {getattr(self, f.name)!r}" for f in dataclasses.fields(self)]
        return "\n".join(lines + [")"])


def _type_ok(value: Any, annotation: Any) -> bool:
    """True when ``value`` fits ``annotation`` (int, float, str, bool, tuples, lists, unions)."""
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False
        args = typing.get_args(annotation)
        if not args:
            return True
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return all(_type_ok(v, args[0]) for v in value)
        if origin is tuple:
            return len(args) == len(value) and all(_type_ok(v, a) for v, a in zip(value, args))
        return all(_type_ok(v, args[0]) for v in value)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def _coerce(value: Any, annotation: Any) -> Any:
    """Lists become tuples for tuple fields; ints become floats for float fields."""
    origin = typing.get_origin(annotation)
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def make_settings(
    cls: type[BaseSettings],
    presets: Mapping[str, Mapping[str, Any]],
    scale: str = "tutorial",
    **overrides: Any,
) -> BaseSettings:
    """Build ``cls`` from ``presets[scale]`` and non-``None`` overrides, then validate.

    Names are matched case-insensitively, so ``EPOCHS=3`` and ``epochs=3`` both work.
    Raises :class:`SettingsError` naming the parameter and the accepted values.
    """
    if scale not in SCALES:
        raise SettingsError(f"SCALE={scale!r} is not one of {SCALES}")
    missing = [s for s in SCALES if s not in presets]
    if missing:
        raise SettingsError(f"{cls.__name__} presets lack the scales {missing}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {"scale": scale}
    for source, mapping in (("preset", presets[scale]), ("parameter", overrides)):
        for raw_name, value in mapping.items():
            name = raw_name.lower()
            if name not in fields:
                raise SettingsError(
                    f"unknown {source} {raw_name!r} for {cls.__name__}; "
                    f"known names: {', '.join(sorted(fields))}"
                )
            if value is None and source == "parameter":
                continue
            value = _coerce(value, hints[name])
            if not _type_ok(value, hints[name]):
                raise SettingsError(
                    f"{raw_name.upper()}={value!r} has type {type(value).__name__}; "
                    f"{cls.__name__}.{name} expects {hints[name]}"
                )
            values[name] = value
    settings = cls(**values)
    settings.validate()
    return settings


def _dataset_of(settings: BaseSettings) -> list[str]:
    return [settings.dataset]


# Upper-case names a notebook binds before its settings cell that are not parameters (constants it imports).
NOT_PARAMETERS = frozenset({"CHAPTER", "METHODS", "ABLATIONS", "COLORS"})
_PARAMETER_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_LITERAL_TYPES = (type(None), bool, int, float, complex, str, bytes, list, tuple, dict, set)  # what papermill injects


def _called_from_notebook(namespace: Mapping[str, Any]) -> bool:
    """True for a notebook's (or script's) namespace holding the ``SCALE`` parameter; not for library code or tests."""
    return namespace.get("__name__") == "__main__" and "SCALE" in namespace


def _imported_from_rec_lib(name: str, value: Any) -> bool:
    """True when ``value`` is a loaded ``rec_lib`` module's attribute of the same name (an imported constant)."""
    for module_name, module in list(sys.modules.items()):
        if (module_name == "rec_lib" or module_name.startswith("rec_lib.")) and module is not None:
            if getattr(module, name, _MISSING) is value:
                return True
    return False


_MISSING = object()


def unknown_parameters(namespace: Mapping[str, Any], known: typing.Iterable[str]) -> list[str]:
    """The all-upper-case literal names of ``namespace`` that are not in ``known`` (nor imported constants).

    papermill injects its ``-p`` values as upper-case literals into the
    notebook's namespace; a name the notebook does not use is therefore one
    of these. Names in :data:`NOT_PARAMETERS`, non-literal values (modules,
    classes, functions) and constants imported from ``rec_lib`` are ignored.
    """
    known = set(known) | NOT_PARAMETERS
    return sorted(
        name for name, value in list(namespace.items())
        if _PARAMETER_NAME.match(name) and name not in known and isinstance(value, _LITERAL_TYPES)
        and not _imported_from_rec_lib(name, value)
    )


@dataclass(frozen=True)
class ChapterSpec:
    """What the command line needs to know about a chapter, declared in its module.

    ``name`` is the notebook's stem in ``book/``; the notebook's ``parameters``
    cell holds ``SCALE`` and one UPPERCASE name per settings field it exposes.
    ``datasets(settings)`` lists the registry names a run needs (checked for
    presence before a run starts); synthetic data needs none.
    """

    name: str
    settings: type[BaseSettings]
    presets: Mapping[str, Mapping[str, Any]]
    datasets: Callable[[BaseSettings], list[str]] = field(default=_dataset_of)

    def make(self, scale: str = "tutorial", **overrides: Any) -> BaseSettings:
        """:func:`make_settings` for this chapter; from a notebook, also the checks papermill does not make.

        When the caller is a notebook (its namespace is ``__main__`` and holds
        ``SCALE``), before returning this raises

        - :class:`SettingsError` for an upper-case name in the notebook that is
          not one of its parameters (``SCALE`` and the names passed here), e.g.
          papermill's ``-p SEEED 1``, listing the valid names;
        - :class:`SettingsError` for a ``DEVICE`` that does not exist here,
          naming those that do (:func:`rec_lib.utils.resolve_device`);
        - :class:`~rec_lib.data.errors.DatasetsMissingError` when a dataset the
          settings need is not in ``data/raw/``, naming each missing file,
          its folder and its source (the presence check of
          ``python -m rec_lib run``: :func:`rec_lib.data.registry.missing_datasets`).

        Library code and tests calling ``make`` get only :func:`make_settings`.
        """
        caller = sys._getframe(1).f_globals
        notebook = _called_from_notebook(caller)
        if notebook:
            valid = ["SCALE", *(k.upper() for k in overrides)]
            unknown = unknown_parameters(caller, valid)
            if unknown:
                raise SettingsError(
                    f"unknown parameter(s) {', '.join(unknown)} for chapter {self.name}; its parameters: "
                    f"{', '.join(valid)}. Check the spelling of papermill's -p NAME VALUE (papermill itself only "
                    "warns, and the chapter would run on its defaults)."
                )
        settings = make_settings(self.settings, self.presets, scale, **overrides)
        if notebook:
            self.check_device(settings)
            self.check_datasets(settings)
        return settings

    def check_device(self, settings: BaseSettings) -> None:
        """Raise :class:`SettingsError` when ``settings.device`` does not exist on this machine."""
        device = getattr(settings, "device", "cpu")
        if device in ("cpu", "auto"):
            return
        from rec_lib.utils import resolve_device

        try:
            resolve_device(device)
        except (RuntimeError, ValueError, TypeError) as err:
            raise SettingsError(f"chapter {self.name}: {err}") from None

    def check_datasets(self, settings: BaseSettings) -> list[str]:
        """The datasets ``settings`` need; raise naming every missing file before any work (none for synthetic data)."""
        from rec_lib.data.errors import DatasetsMissingError
        from rec_lib.data.registry import missing_datasets

        names = list(self.datasets(settings))
        try:
            missing = missing_datasets(names)
        except KeyError as err:
            raise SettingsError(f"chapter {self.name}: {err.args[0]}") from None
        if missing:
            raise DatasetsMissingError(f"chapter {self.name} at scale {settings.scale!r}", missing)
        return names
