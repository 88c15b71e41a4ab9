"""Small shared helpers: seeding, device choice, progress bars, timing, atomic writes."""

from __future__ import annotations

import contextlib
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "seed_everything",
    "Seeds",
    "resolve_device",
    "progress",
    "Stopwatch",
    "benchmark_rotation",
    "atomic_write",
    "set_threads",
    "isolated_globals",
]


# --------------------------------------------------------------------------- seeds
@dataclass
class Seeds:
    """Every random source of a run, derived from one integer.

    ``rng`` is a NumPy ``Generator`` and ``torch_gen`` a CPU ``torch.Generator``;
    pass them explicitly to the functions that draw random numbers. The global
    generators of ``random``, NumPy and torch are seeded too, for third-party
    code that uses them.
    """

    seed: int
    rng: np.random.Generator = field(repr=False)
    torch_gen: torch.Generator = field(repr=False)

    def child(self, offset: int) -> "Seeds":
        """An independent stream for a sub-task (e.g. repetition ``offset``)."""
        return seed_everything(self.seed * 1_000_003 + offset, set_global=False)


def seed_everything(seed: int, set_global: bool = True, deterministic: bool = True) -> Seeds:
    """Seed Python, NumPy and torch (CPU and CUDA) from ``seed`` and return the generators.

    With ``deterministic=True`` torch is asked for deterministic kernels where it
    has them (``warn_only``: an op without one warns rather than fails).
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    from rec_lib import numerics

    numerics.pin()  # torch may have been imported after rec_lib: pin its threads now
    if set_global:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    gen = torch.Generator().manual_seed(seed)
    return Seeds(seed=seed, rng=np.random.default_rng(seed), torch_gen=gen)


@contextlib.contextmanager
def isolated_globals() -> Iterator[None]:
    """Run a block as if in another process: the global RNGs and torch's thread count are restored after it.

    For work that may run in this process or in worker processes (a pool
    with one worker runs its tasks here): tasks that call
    :func:`seed_everything` would otherwise leave the caller's global
    Python, NumPy and torch generators (and thread count) where the last
    task put them, so what the caller draws next (a model's initial weights)
    would depend on whether the tasks ran here, in workers, or not at all
    (a cache hit).
    """
    from rec_lib import numerics

    state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])
        torch.set_rng_state(state[2])
        if torch.get_num_threads() != threads:
            numerics.set_threads(threads)


def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads for the rest of this process (default: the pinned count,
    :data:`rec_lib.numerics.THREADS` or ``REC_LIB_THREADS``); return the number used.

    Goes through :func:`rec_lib.numerics.set_threads`, so a later ``seed_everything`` keeps it.
    """
    from rec_lib import numerics

    return numerics.set_threads(n or numerics._threads())


# -------------------------------------------------------------------------- device
_DEVICE_CHOICES = ("cpu", "cuda", "auto")


def resolve_device(name: str = "cpu") -> torch.device:
    """Turn a ``DEVICE`` parameter into a ``torch.device``, refusing one that does not exist.

    ``"cpu"`` (the default everywhere), ``"cuda"`` / ``"cuda:N"`` (an error if no
    GPU is present, or if GPU ``N`` is not one of those torch sees), or
    ``"auto"`` (CUDA when present, else CPU). Every error names the devices
    that do exist and the value to use instead.
    """
    if not isinstance(name, str):
        raise TypeError(f"DEVICE must be a string such as 'cpu', 'cuda' or 'auto', got {name!r}")
    base, sep, index = name.partition(":")
    if base not in _DEVICE_CHOICES or (sep and (base != "cuda" or not index.isdigit())):
        raise ValueError(f"DEVICE={name!r} is not one of 'cpu', 'cuda', 'cuda:N', 'auto'")
    if base == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if base == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"DEVICE={name!r} was asked for but torch sees no CUDA device "
            f"(torch {torch.__version__}); the devices here: 'cpu'. Rerun with DEVICE='cpu', or DEVICE='auto' "
            "to use a GPU only when one is present."
        )
    if base == "cuda" and sep:
        count = torch.cuda.device_count()
        if int(index) >= count:
            existing = ", ".join(["'cpu'", "'cuda'"] + [f"'cuda:{i}'" for i in range(count)])
            raise RuntimeError(
                f"DEVICE={name!r} does not exist: torch sees {count} CUDA device(s); the devices here: "
                f"{existing}. Rerun with one of them (or set CUDA_VISIBLE_DEVICES to show the GPU you mean)."
            )
    return torch.device(name)


# ------------------------------------------------------------------------ progress
def progress(iterable: Iterable | None = None, desc: str = "", total: int | None = None, **kw):
    """A tqdm progress bar on stderr (the book hides stderr; tests see it).

    Disabled when ``REC_LIB_PROGRESS=0``. Accepts tqdm's keyword arguments.
    """
    from tqdm import tqdm  # text bars on stderr (the book hides stderr; no ipywidgets needed)

    disable = os.environ.get("REC_LIB_PROGRESS", "1") == "0"
    kw.setdefault("mininterval", 1.0)
    kw.setdefault("leave", False)
    kw.setdefault("dynamic_ncols", True)
    return tqdm(iterable, desc=desc, total=total, disable=disable, **kw)


# -------------------------------------------------------------------------- timing
class Stopwatch:
    """Accumulates wall time per label; ``with sw("train"): ...``.

    Synchronises CUDA before reading the clock when a GPU is in use, so GPU
    work is counted where it happens.
    """

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}

    @contextlib.contextmanager
    def __call__(self, label: str) -> Iterator[None]:
        _sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            _sync()
            self.times.setdefault(label, []).append(time.perf_counter() - t0)

    def total(self, label: str) -> float:
        return float(sum(self.times.get(label, [])))

    def median(self, label: str) -> float:
        return float(statistics.median(self.times[label]))

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            k: {"n": len(v), "total_s": float(sum(v)), "median_s": float(statistics.median(v))}
            for k, v in self.times.items()
        }


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def benchmark_rotation(
    fns: Mapping[str, Callable[[], object]],
    repeats: int = 5,
    warmup: int = 1,
    baseline: str | None = None,
    rounds: bool = False,
):
    """Time callables in rotation (A, B, C, A, B, C, ...) and report medians and ratios.

    Rotation makes machine noise hit every candidate alike, so the *ratios* are
    meaningful on a shared, noisy machine even when absolute times are not.

    Returns a DataFrame indexed by name with ``median_s``, ``min_s``, ``max_s``,
    ``n`` and, when ``baseline`` is given, ``speedup`` = baseline median / median;
    with ``rounds=True`` also the seconds of every timed round (one column per
    name, one row per round: the paired samples of :func:`rec_lib.evidence.ratio`).
    """
    import pandas as pd

    if not fns:
        raise ValueError("benchmark_rotation needs at least one callable")
    if baseline is not None and baseline not in fns:
        raise ValueError(f"baseline {baseline!r} is not one of {list(fns)}")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync()
            t0 = time.perf_counter()
            fn()
            _sync()
            samples[name].append(time.perf_counter() - t0)
    rows = {
        k: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v), "n": len(v)}
        for k, v in samples.items()
    }
    df = pd.DataFrame.from_dict(rows, orient="index")
    if baseline is not None:
        df["speedup"] = df.loc[baseline, "median_s"] / df["median_s"]
    return (df, pd.DataFrame(samples)) if rounds else df


# ------------------------------------------------------------------- atomic writes
def _current_umask() -> int:
    """The process's umask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **kw) -> Iterator:
    """Write to a temporary file beside ``path`` and rename it into place on success.

    A failure midway leaves nothing half-written: the temporary file is removed
    and any previous ``path`` is untouched. The file gets the permissions a
    plain ``open(path, "w")`` would give it: an existing file keeps its mode, a
    new one gets ``0o666`` less the umask (``mkstemp``'s private ``0o600`` is
    not kept, so a ledger stays readable by the group as any other file).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        target_mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        target_mode = 0o666 & ~_current_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, target_mode)
        with open(tmp, mode, **kw) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
