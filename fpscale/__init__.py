"""fpscale: a benchmark harness for fingerprint identification at national scale.

Three packages, imports one way: ``fpscale.synth`` (the synthetic population:
master fingers, impressions, vectors and codes) and ``fpscale.matcher``
(search backends, 1:1 minutiae matchers, top-k merging) import neither each
other nor ``fpscale.bench`` (scenarios, the run, NIST metrics, projection,
reports and the ``fpscale`` command line), which uses both.

Importing ``fpscale`` (any part of it) first points numba's on-disk cache at a
folder keyed by a hash of fpscale's sources: numba invalidates a cached kernel
only when its own file changes, not when a kernel it calls (in another module)
does, so a shared cache across versions could run stale machine code. The
folder is FPSCALE_NUMBA_CACHE when set, else ``.numba_cache`` at the root of a
source checkout (as ``make`` sets it), else the per-user cache folder.
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
    package = Path(__file__).resolve().parent
    digest = hashlib.sha1()
    for f in sorted(package.rglob("*.py")):
        digest.update(str(f.relative_to(package)).encode())
        digest.update(f.read_bytes())
    base = os.environ.get("FPSCALE_NUMBA_CACHE") or default_cache_base(package.parent)
    os.environ["NUMBA_CACHE_DIR"] = str(Path(base) / digest.hexdigest()[:16])


_point_numba_cache()
