"""``fpscale bench scaling``: search throughput, build time and memory
against gallery size for each backend, with the fitted growth exponent
(slope of log time against log N: about 1 for exhaustive search, well
under 1 for IVF and HNSW)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from fpscale.bench.run.planner import BASELINE, PlanError, available_memory
from fpscale.bench.run.progress import stage
from fpscale.bench.scenario import ScenarioError, check_training_points
from fpscale.bench.store.files import ResultsError, write_bytes, write_json
from fpscale.matcher.checks import MatcherInputError
from fpscale.matcher.registry import is_binary, make_backend, peak_index_bytes

DEFAULT_BACKENDS = ("numba-flat", "faiss:Flat", "faiss:IVF1024,Flat", "faiss:HNSW32", "numba-hamming")


TRAIN_MAX = 50_000  # training sample of indexes that train


def check_scaling(sizes: list[int], backends: list[str], dim: int, probes: int,
                  bits: int = 256) -> None:
    """Every argument of a scaling run checked, and its memory planned,
    before any work: MatcherInputError, ScenarioError or PlanError."""
    if not 1 <= dim <= 4096:
        raise MatcherInputError(f"--dim {dim}: give a dimension in [1, 4096]")
    if not 1 <= probes <= 100_000:
        raise MatcherInputError(f"--probes {probes}: give a number of probes in [1, 100,000]")
    if not backends or len(backends) > 16 or any(not b or len(b) > 100 for b in backends):
        raise MatcherInputError("--backends: give 1 to 16 comma-separated backend specs")
    train = min(min(sizes), TRAIN_MAX)
    for b in backends:
        idx = make_backend(b, bits if is_binary(b) else dim)
        if b.startswith("faiss:"):
            try:
                check_training_points("--backends", b, train if idx.needs_training else 1 << 62)
            except ScenarioError as e:
                raise MatcherInputError(f"{e} (the smallest --sizes)") from None
    n = max(sizes)
    data = n * (4 * dim + bits // 8) + probes * (4 * dim + bits // 8)
    need = BASELINE + data + max(peak_index_bytes(b, n, bits if is_binary(b) else dim)
                                 for b in backends)
    avail = available_memory()
    if avail is not None and need > avail:
        raise PlanError(f"a scaling run up to {n:,} records needs about {need / 2**30:.2f} GiB "
                        f"but {avail / 2**30:.2f} GiB is available; give smaller --sizes")


def scaling(sizes: list[int], backends: list[str], dim: int = 128, bits: int = 256,
            probes: int = 1000, k: int = 20, threads: int | None = None, seed: int = 0,
            progress: bool = True) -> dict:
    """Measure each backend at each gallery size on random unit vectors
    (binary: random codes). Returns rows and fitted exponents."""
    rng = np.random.default_rng(seed)
    n_max = max(sizes)
    g = rng.standard_normal((n_max, dim), dtype=np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    p = rng.standard_normal((probes, dim), dtype=np.float32)
    gb = rng.integers(0, 256, (n_max, bits // 8), dtype=np.uint8)
    pb = rng.integers(0, 256, (probes, bits // 8), dtype=np.uint8)
    rows = []
    with stage("scaling", len(sizes) * len(backends), "measurements", progress) as bar:
        for spec in backends:
            binary = is_binary(spec)
            for n in sorted(sizes):
                b = make_backend(spec, bits if binary else dim, threads=threads, seed=seed)
                data, q = (gb, pb) if binary else (g, p)
                t0 = time.perf_counter()
                if b.needs_training:
                    b.train(data[: min(n, TRAIN_MAX)])
                b.add(np.arange(n), data[:n])
                build = time.perf_counter() - t0
                b.search(q[:2], k)
                t0 = time.perf_counter()
                b.search(q, k)
                search = time.perf_counter() - t0
                rows.append({"backend": spec, "n": n, "build_s": build, "search_s": search,
                             "searches_per_s": probes / search, "memory_bytes": b.nbytes()})
                bar.update(1)
    fits = {}
    for spec in backends:
        r = [x for x in rows if x["backend"] == spec]
        if len(r) >= 2:
            n = np.log([x["n"] for x in r])
            fits[spec] = {"search_exponent": float(np.polyfit(n, np.log([x["search_s"] for x in r]), 1)[0]),
                          "build_exponent": float(np.polyfit(n, np.log([x["build_s"] for x in r]), 1)[0]),
                          "memory_exponent": float(np.polyfit(n, np.log([x["memory_bytes"] for x in r]), 1)[0])}
    return {"dim": dim, "bits": bits, "probes": probes, "k": k, "rows": rows, "fits": fits}


def write_scaling(result: dict, out: Path) -> None:
    """scaling.json and a log-log plot of search time against N."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ResultsError(f"{out} exists and is not a folder")
    write_json(out / "scaling.json", result)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for spec, fit in result["fits"].items():
        r = [x for x in result["rows"] if x["backend"] == spec]
        ax.loglog([x["n"] for x in r], [x["search_s"] for x in r], "o-",
                  label=f"{spec} (slope {fit['search_exponent']:.2f})")
    ax.set_xlabel("gallery size N")
    ax.set_ylabel(f"seconds for {result['probes']:,} searches (L = {result['k']})")
    ax.set_title("Search time against gallery size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    write_bytes(out / "scaling.png", buf.getvalue())
