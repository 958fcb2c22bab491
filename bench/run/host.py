"""Facts about the machine and the software a run used."""

from __future__ import annotations

import os
import platform
from importlib.metadata import version as pkg_version

import numba
import numpy as np

from bench.store.summary import HostInfo


def fpscale_version() -> str:
    """The installed fpscale version ("0+unknown" from a source tree that is not installed)."""
    try:
        return pkg_version("fpscale")
    except Exception:  # running from a source tree that is not installed
        return "0+unknown"


def host_info() -> HostInfo:
    """CPU, memory, Python and library versions of this process."""
    import faiss
    return HostInfo(
        platform.machine(), platform.processor(), platform.system(), platform.python_version(),
        os.cpu_count(), numba.config.NUMBA_NUM_THREADS, total_memory(),
        {"fpscale": fpscale_version(), "numpy": np.__version__, "numba": numba.__version__,
         "faiss": faiss.__version__})


def peak_rss() -> int | None:
    """Peak resident memory of this process in bytes (None where unknown)."""
    try:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    except (ImportError, OSError):
        return None


def total_memory() -> int | None:
    """Physical memory of the machine in bytes (None where unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
