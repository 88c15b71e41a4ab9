"""Pinned numerics: the same seed gives the same numbers on any x86-64 machine of our kind.

Training on another CPU drifts in the last digits when the libraries pick
other kernels: torch's vectorised kernels follow the CPU's widest instruction
set, MKL and oneDNN dispatch on the CPU model, reductions split by thread
count, and a multithreaded HNSW build inserts nodes in a racy order. This
module fixes each of them, in one place:

===========================  =========  ==========================================
environment variable          value      what it pins
===========================  =========  ==========================================
``ATEN_CPU_CAPABILITY``       ``avx2``   torch's vectorised CPU kernels (AVX2 on
                                         every x86-64 CPU of this decade, also
                                         those with AVX-512)
``MKL_CBWR``                  ``AVX2``   MKL's conditional numerical
                                         reproducibility branch (torch's BLAS)
``ONEDNN_MAX_CPU_ISA``        ``AVX2``   oneDNN (torch's convolutions)
``NPY_DISABLE_CPU_FEATURES``  AVX-512    NumPy's SIMD loops stay at AVX2 (read
                                         when NumPy is imported: effective in
                                         processes started with :func:`environment`)
``OPENBLAS_CORETYPE``         Haswell    the OpenBLAS bundled with NumPy and with
                                         FAISS picks its kernels by CPU model
                                         (SkylakeX on AVX-512); Haswell's are AVX2,
                                         the ones it picks on this machine (read
                                         when the library loads)
``FAISS_SIMD_LEVEL``          ``AVX2``   FAISS 1.15 dispatches its distance kernels
                                         at run time (AVX-512 where available);
                                         read when faiss is imported
``OMP_NUM_THREADS`` and       ``2``      thread counts: reductions split the same
``MKL_NUM_THREADS`` /                    way on every machine
``OPENBLAS_NUM_THREADS``
``OMP_WAIT_POLICY``           PASSIVE    idle OpenMP threads sleep instead of
                                         spinning (speed only, not numbers):
                                         measured with one other busy process on
                                         the 2 cores, a two-thread loop of small
                                         matmuls took 13-16 s spinning, 0.9-1.1 s
                                         passive; read when OpenMP starts, so
                                         effective in processes started with
                                         :func:`environment` or after the
                                         exports of :func:`shell_exports`
===========================  =========  ==========================================

plus, in the process: torch's intra-op threads (:data:`THREADS`, or a worker's own count set
with :func:`set_threads`), one inter-op
thread, deterministic algorithms, and :func:`single_threaded_build` around
every index build (FAISS HNSW).

``rec_lib`` calls :func:`pin` when it is imported, so notebooks, papermill,
nbval and ``python -m rec_lib run`` all go through it; the launchers
(``python -m rec_lib run``/``execute``, ``tests/run_tiers.sh``) also pass
:func:`environment` to the kernels they start, so NumPy is pinned from its
import. A value already set in the environment (a shell's
``OMP_NUM_THREADS=16``, an ``ATEN_CPU_CAPABILITY`` left from debugging) is
overridden, and every ledger records what was in effect and what was
overridden under ``numerics`` (:func:`describe`).

Two variables change the pins on purpose (numbers may then differ in their
last digits from the committed ones; the ledger says so):
``REC_LIB_THREADS=N`` and ``REC_LIB_CPU_CAPABILITY`` (``default``, ``avx2``,
``avx512``: the test suite uses ``default`` to emulate another CPU).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["THREADS", "PINNED", "environment", "pin", "set_threads", "describe", "single_threaded_build", "shell_exports"]

#: torch intra-op threads (and OpenMP/MKL/OpenBLAS threads) of every process.
THREADS = 2

_NPY_AVX512 = (
    "AVX512F AVX512CD AVX512VL AVX512BW AVX512DQ AVX512_SKX AVX512_CLX AVX512_CNL "
    "AVX512_ICL AVX512_SPR AVX512_KNL AVX512_KNM X86_V4"
)


def _threads() -> int:
    raw = os.environ.get("REC_LIB_THREADS", str(THREADS))
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"REC_LIB_THREADS={raw!r} is not an integer; unset it or give a count such as 2") from None
    if n < 1:
        raise ValueError(f"REC_LIB_THREADS={n} must be >= 1")
    return n


def _pinned() -> dict[str, str]:
    n = str(_threads())
    return {
        "ATEN_CPU_CAPABILITY": os.environ.get("REC_LIB_CPU_CAPABILITY", "avx2"),
        "MKL_CBWR": "AVX2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "DNNL_MAX_CPU_ISA": "AVX2",
        "NPY_DISABLE_CPU_FEATURES": _NPY_AVX512,
        "OPENBLAS_CORETYPE": "Haswell",
        "FAISS_SIMD_LEVEL": "AVX2",
        "OMP_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "OPENBLAS_NUM_THREADS": n,
        "OMP_WAIT_POLICY": "PASSIVE",
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
    }


#: The pinned variables at the default thread count (documentation and tests).
PINNED = _pinned()


def environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default ``os.environ``) with every pinned variable set to its pinned value.

    Pass the result as ``env=`` to a process that starts a kernel, so the
    kernel's libraries are pinned from their first import.
    """
    env = dict(os.environ if base is None else base)
    env.update(_pinned())
    return env


_STATE: dict[str, Any] = {}


def pin() -> dict[str, Any]:
    """Pin this process's numerics (idempotent); returns :func:`describe`'s record.

    Sets the pinned environment variables, overriding other values (torch reads
    ``ATEN_CPU_CAPABILITY`` and MKL ``MKL_CBWR`` at their first operation,
    so this works after ``import torch`` as long as nothing was computed),
    then torch's thread counts and deterministic algorithms.
    """
    if not _STATE:
        _STATE["numpy_imported_before_pin"] = "numpy" in sys.modules
        _STATE["torch_imported_before_pin"] = "torch" in sys.modules
    for key, value in _pinned().items():
        before = os.environ.get(key)
        if before is not None and before != value:
            _STATE.setdefault("overridden", {})[key] = before
        os.environ[key] = value
    if "torch" in sys.modules:
        _pin_torch()
    return describe()


def set_threads(n: int) -> int:
    """Give this process ``n`` torch intra-op threads from now on, and keep them.

    A pool of ``k`` worker processes on a machine pinned to :data:`THREADS`
    threads gives each worker ``THREADS // k`` (usually 1): two workers with
    two threads each on two cores spin against each other and run several
    times slower. Later :func:`pin` calls (every ``seed_everything``) keep
    this count instead of restoring the default; a job's numbers depend on
    the thread count, so the count is part of each job's definition.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    import torch

    _STATE["threads"] = n
    torch.set_num_threads(n)
    return n


def _pin_torch() -> None:
    import torch

    n = _STATE.get("threads") or _threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    if torch.get_num_interop_threads() != 1:
        with contextlib.suppress(RuntimeError):  # only settable before inter-op work starts
            torch.set_num_interop_threads(1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    _STATE["torch_pinned"] = True


def describe() -> dict[str, Any]:
    """What is in effect: the variables, torch's kernel level and threads, NumPy's SIMD.

    Stored in every ledger under ``numerics``; two ledgers whose records
    differ were not computed with the same kernels.
    """
    out: dict[str, Any] = {k: os.environ.get(k) for k in _pinned()}
    out["threads"] = _threads()
    if "torch" in sys.modules:
        import torch

        _pin_torch()
        out["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        out["torch_threads"] = torch.get_num_threads()
        out["torch_interop_threads"] = torch.get_num_interop_threads()
        out["torch_deterministic"] = torch.are_deterministic_algorithms_enabled()
    if "numpy" in sys.modules:
        try:
            from numpy._core._multiarray_umath import __cpu_features__ as feats
        except ImportError:  # pragma: no cover - numpy < 2
            feats = {}
        out["numpy_avx512_in_use"] = any(v for k, v in feats.items() if k.startswith("AVX512"))
    out["numpy_imported_before_pin"] = _STATE.get("numpy_imported_before_pin")
    out["overridden"] = dict(_STATE.get("overridden", {}))
    out["deliberate"] = {k: os.environ[k] for k in ("REC_LIB_THREADS", "REC_LIB_CPU_CAPABILITY") if k in os.environ}
    return out


@contextlib.contextmanager
def single_threaded_build() -> Iterator[None]:
    """Run an index build on one OpenMP thread (FAISS HNSW inserts racily otherwise).

    Searches stay multithreaded: each query's result does not depend on the
    thread that computes it.
    """
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def shell_exports() -> str:
    """``export NAME=VALUE`` lines of the pinned variables, as :func:`environment` sets them."""
    import shlex

    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in _pinned().items())
