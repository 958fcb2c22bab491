"""Scenarios, the run, NIST 1:N metrics, projection, reports and the CLI.

The flow: ``scenario`` -> ``run`` (steps, executors, checkpoints, planner)
-> ``measure`` (metrics, ladder, projection) -> ``store`` (results folder,
typed summary) -> ``report``; ``tools`` holds the commands beside a run and
``cli`` the ``fpscale`` command line.

Importing ``bench`` first points numba's on-disk cache at a folder keyed by a
hash of fpscale's sources: numba invalidates a cached kernel only when its own
file changes, not when a kernel it calls (in another module) does, so a
shared cache across versions could run stale machine code. The folder is
FPSCALE_NUMBA_CACHE when set, else ``.numba_cache`` at the root of a source
checkout (as ``make`` sets it), else the per-user cache folder.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def default_cache_base(root: Path) -> Path:
    """Where numba's cache goes when FPSCALE_NUMBA_CACHE is unset: the
    ``.numba_cache`` folder of a source checkout (root holds pyproject.toml
    and is writable: the folder ``make`` uses too), else the per-user cache
    folder."""
    local = root / ".numba_cache"
    if (root / "pyproject.toml").is_file() and os.access(local if local.is_dir() else root,
                                                         os.W_OK | os.X_OK):
        return local
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fpscale" / "numba"


def _point_numba_cache() -> None:
    if "NUMBA_CACHE_DIR" in os.environ:
        return
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha1()
    for pkg in ("synth", "matcher", "bench"):
        for f in sorted((root / pkg).rglob("*.py")):
            digest.update(str(f.relative_to(root)).encode())
            digest.update(f.read_bytes())
    base = os.environ.get("FPSCALE_NUMBA_CACHE") or default_cache_base(root)
    os.environ["NUMBA_CACHE_DIR"] = str(Path(base) / digest.hexdigest()[:16])


_point_numba_cache()
