"""The setup step's data fetch: MovieLens-100K out of the ``recbole`` wheel.

``python -m rec_lib fetch-data`` downloads ``recbole==1.2.1`` from PyPI with
``pip download --no-deps`` (no dependency is installed, nothing is imported),
checks the wheel's sha256, and extracts ``ml-100k.inter``, ``.item`` and
``.user`` into ``data/raw/ml-100k/``. Extraction goes to a temporary folder
that is renamed into place only when every file checked out, so an
interrupted fetch leaves nothing half-written. Running it again is a no-op.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from rec_lib.data.errors import DatasetError
from rec_lib.data.io import sha256_of, verify_sha256
from rec_lib.data.movielens import ML100K_SHA256, RECBOLE_VERSION, RECBOLE_WHEEL, RECBOLE_WHEEL_SHA256
from rec_lib.paths import cache_dir, raw_dir

__all__ = ["fetch_ml100k"]

_MEMBERS = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")
_PREFIX = "recbole/dataset_example/ml-100k/"


def _complete(folder: Path) -> bool:
    return all((folder / f).exists() and sha256_of(folder / f) == h for f, h in ML100K_SHA256.items())


def fetch_ml100k(wheel: str | Path | None = None, quiet: bool = False) -> Path:
    """Make ``data/raw/ml-100k/`` hold the RecBole copy of ML-100K; return the folder.

    ``wheel`` may point to an already downloaded ``recbole`` wheel (offline use).
    A GroupLens ``u.data`` already in the folder is left alone and used as is.
    """
    target = raw_dir() / "ml-100k"
    if (target / "u.data").exists() or _complete(target):
        if not quiet:
            print(f"ml-100k: already present in {target}")
        return target
    wheel = Path(wheel) if wheel else _download_wheel(quiet)
    verify_sha256(wheel, RECBOLE_WHEEL_SHA256, f"pip download recbole=={RECBOLE_VERSION} --no-deps")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".ml-100k.", dir=target.parent))
    try:
        from rec_lib.utils import _current_umask

        os.chmod(tmp, 0o777 & ~_current_umask())  # mkdtemp's folder is private (0700); give it a plain folder's mode
        with zipfile.ZipFile(wheel) as zf:
            for member in _MEMBERS:
                with zf.open(_PREFIX + member) as src, open(tmp / member, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        for name, digest in ML100K_SHA256.items():
            verify_sha256(tmp / name, digest, "the recbole wheel")
        if target.exists():  # a partial copy from an older attempt
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not quiet:
        print(f"ml-100k: extracted {', '.join(_MEMBERS)} into {target}")
    return target


def _download_wheel(quiet: bool) -> Path:
    dest = cache_dir() / "wheels"
    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / RECBOLE_WHEEL
    if wheel.exists() and sha256_of(wheel) == RECBOLE_WHEEL_SHA256:
        return wheel
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--only-binary=:all:",
           "--dest", str(dest), f"recbole=={RECBOLE_VERSION}"]
    if not quiet:
        print("ml-100k: " + " ".join(cmd[2:]))
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not wheel.exists():
        raise DatasetError(
            f"could not download recbole=={RECBOLE_VERSION} from the package index "
            f"(pip said: {done.stderr.strip()[-500:]}).\n  Fix: check that PyPI is reachable, "
            f"or download {RECBOLE_WHEEL} elsewhere and run "
            f"`python -m rec_lib fetch-data --wheel PATH`, or put GroupLens's ml-100k/u.data "
            f"into {raw_dir() / 'ml-100k'}/"
        )
    return wheel
