"""rec_lib.numerics: the pinned variables, their override record, and per-worker thread counts."""

import json
import os
import subprocess
import sys

import pytest

from rec_lib import numerics


def _in_fresh_process(code: str, **env) -> dict:
    """Run ``code`` (which prints one JSON line) in a new interpreter with ``env`` added."""
    full = {**os.environ, **env}
    out = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_pinned_values_cap_kernels_at_avx2_and_threads_at_two():
    p = numerics.PINNED
    assert p["ATEN_CPU_CAPABILITY"] == "avx2" and p["MKL_CBWR"] == "AVX2"
    assert p["OMP_NUM_THREADS"] == p["MKL_NUM_THREADS"] == str(numerics.THREADS) == "2"
    assert "AVX512F" in p["NPY_DISABLE_CPU_FEATURES"] and p["OMP_WAIT_POLICY"] == "PASSIVE"
    assert p["OPENBLAS_CORETYPE"] == "Haswell" and p["FAISS_SIMD_LEVEL"] == "AVX2"


_KERNELS = """
import ctypes, glob, os, numpy, faiss
lib = glob.glob(os.path.join(os.path.dirname(numpy.__path__[0]), "numpy.libs", "*openblas*"))
name = b"?"
if lib:
    f = getattr(ctypes.CDLL(lib[0]), "scipy_openblas_get_corename64_", None)
    if f is not None:
        f.restype = ctypes.c_char_p
        name = f()
print(faiss.SIMDConfig.get_level_name(), name.decode())
"""


def test_a_pinned_process_runs_faiss_and_numpys_openblas_at_avx2():
    """The variables are read when the libraries load: a process started with environment() gets them."""
    env = numerics.environment({k: v for k, v in os.environ.items() if k not in ("FAISS_SIMD_LEVEL", "OPENBLAS_CORETYPE")})
    faiss_level, core = subprocess.run([sys.executable, "-c", _KERNELS], env=env, capture_output=True, text=True,
                                       check=True).stdout.split()
    assert faiss_level == "AVX2"
    assert core in ("Haswell", "?")  # "?": a NumPy whose OpenBLAS does not report its core


def test_environment_overrides_a_callers_values_and_keeps_the_rest():
    env = numerics.environment({"OMP_NUM_THREADS": "16", "HOME": "/x"})
    assert env["OMP_NUM_THREADS"] == "2" and env["HOME"] == "/x" and env["ATEN_CPU_CAPABILITY"] == "avx2"


def test_shell_exports_lists_every_pinned_variable():
    lines = numerics.shell_exports().splitlines()
    assert len(lines) == len(numerics.PINNED) and all(line.startswith("export ") for line in lines)


def test_importing_rec_lib_pins_torch_and_records_what_it_overrode():
    got = _in_fresh_process(
        "import json, torch, rec_lib; from rec_lib import numerics; d = numerics.describe();"
        "print(json.dumps({'t': torch.get_num_threads(), 'det': d['torch_deterministic'],"
        " 'cap': d['torch_cpu_capability'], 'over': d['overridden']}))",
        OMP_NUM_THREADS="7")
    assert got["t"] == 2 and got["det"] is True and got["cap"] == "AVX2"
    assert got["over"] == {"OMP_NUM_THREADS": "7"}


def test_rec_lib_threads_changes_the_pin_on_purpose_and_bad_values_are_refused():
    got = _in_fresh_process("import json, torch, rec_lib; print(json.dumps(torch.get_num_threads()))",
                            REC_LIB_THREADS="1")
    assert got == 1
    with pytest.raises(subprocess.CalledProcessError) as err:
        _in_fresh_process("import rec_lib", REC_LIB_THREADS="two")
    assert "REC_LIB_THREADS='two' is not an integer" in err.value.stderr


def test_a_workers_thread_count_survives_seed_everything():
    got = _in_fresh_process(
        "import json, torch, rec_lib; from rec_lib.utils import set_threads, seed_everything;"
        "set_threads(1); seed_everything(3); from rec_lib import numerics; numerics.describe();"
        "print(json.dumps(torch.get_num_threads()))")
    assert got == 1


def test_set_threads_refuses_zero():
    with pytest.raises(ValueError, match="threads must be >= 1"):
        numerics.set_threads(0)


def test_single_threaded_build_restores_faiss_threads():
    import faiss

    before = faiss.omp_get_max_threads()
    with numerics.single_threaded_build():
        assert faiss.omp_get_max_threads() == 1
    assert faiss.omp_get_max_threads() == before
