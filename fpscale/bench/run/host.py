"""Facts about the machine and the software a run used."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib.metadata import version as pkg_version
from pathlib import Path

import numba
import numpy as np
import psutil
from threadpoolctl import threadpool_info

from fpscale.bench.store.summary import HostInfo, ThreadPool

SOURCE_ROOT = Path(__file__).resolve().parent.parent.parent


def fpscale_version() -> str:
    """The installed fpscale version ("0+unknown" from a source tree that is not installed)."""
    try:
        return pkg_version("fpscale")
    except Exception:  # running from a source tree that is not installed
        return "0+unknown"


def host_info() -> HostInfo:
    """CPU, memory, Python and library versions of this process, its BLAS and
    OpenMP thread pools, the source tree's git commit and the time now."""
    import faiss  # loads faiss's own BLAS, so that its pool is listed too
    return HostInfo(
        platform.machine(), platform.processor(), platform.system(), platform.python_version(),
        os.cpu_count(), numba.config.NUMBA_NUM_THREADS, total_memory(),
        {"fpscale": fpscale_version(), "numpy": np.__version__, "numba": numba.__version__,
         "faiss": faiss.__version__},
        cpu_model=cpu_model(), physical_cores=psutil.cpu_count(logical=False),
        thread_pools=thread_pools(), git_commit=git_commit(),
        timestamp=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what platform says)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def thread_pools() -> list[ThreadPool]:
    """Every BLAS and OpenMP library loaded, with the kernel each BLAS chose."""
    out = []
    for p in threadpool_info():
        out.append(ThreadPool(str(p.get("user_api", "")), str(p.get("internal_api", "")),
                              p.get("version"), int(p.get("num_threads") or 0),
                              p.get("architecture"), p.get("threading_layer"),
                              str(p.get("filepath", ""))))
    return out


def git_commit() -> str | None:
    """The commit of the source tree fpscale runs from, with "-dirty" when
    tracked files differ from it; None outside a git checkout or without git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=SOURCE_ROOT, capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=SOURCE_ROOT, capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def peak_rss() -> int | None:
    """Peak resident memory of this process image in bytes (None where unknown).

    Linux's VmHWM first: getrusage's ru_maxrss carries the high-water mark
    of the image before exec, so a run started from a large parent process
    (a test runner, say) would report the parent's peak as its own."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
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
