"""``fpscale sweep --param``: one backend's search parameter over one built index.

The scenario's gallery is generated and indexed once, into the swept
backend and into exact search of the same records (numba-flat, or
numba-hamming for binary codes); then, for each value of the parameter
("nprobe=1,4,16,64" for IVF, "efSearch=16,32,64,128" for HNSW), faiss's
search-time setting is changed on the built index and every submission is
searched again. Each value gives recall@L against exact search with a 95%
bootstrap interval over the searches, searches per second (the fastest of
``REPEATS`` timed passes, as ann-benchmarks keeps the best of its runs), and
the NIST rates at the scenario's first FPIR target. The out folder holds
frontier.csv, frontier.png and sweep.json under a manifest of its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fpscale.bench.measure import metrics
from fpscale.bench.measure.recall import FrontierPoint, bootstrap_mean_ci, pareto_front, search_recall
from fpscale.bench.report.frontier import plot_frontier
from fpscale.bench.run.gallery import BackendRun, GalleryBuilder, new_backend, train_backend
from fpscale.bench.run.host import fpscale_version
from fpscale.bench.run.planner import check
from fpscale.bench.run.progress import stage
from fpscale.bench.run.steps import threads
from fpscale.bench.run.submissions import make_submissions
from fpscale.bench.scenario import BackendSpec, Scenario, ScenarioError, load_scenario, scenario_from_dict
from fpscale.bench.store.manifest import open_for_run
from fpscale.matcher.exact import thread_count
from fpscale.matcher.interface import Backend
from fpscale.matcher.registry import is_binary, is_exact
from fpscale.synth.population import chunks

REPEATS = 3
MAX_VALUES = 100
MAX_VALUE = 1_000_000  # what a scenario's params allow
_NAME = re.compile(r"[A-Za-z_]\w{0,63}")

CSV_HEADER = ["backend", "params", "param", "value", "recall", "recall_lo", "recall_hi",
              "rank1_agreement", "searches_per_s", "search_s", "rank1_hit_rate",
              "rank1_hit_rate_lo", "rank1_hit_rate_hi", "target_fpir", "threshold",
              "fnir", "fnir_lo", "fnir_hi", "pareto"]


@dataclass(frozen=True)
class ParamSweep:
    """A checked sweep: the scenario searched (exact search, then the swept
    backend at the first value; no re-scoring, no ladder), the swept
    backend as the scenario gives it, and the parameter's values."""

    scenario: Scenario
    backend: BackendSpec
    param: str
    values: tuple[int, ...]


def parse_param(text: str) -> tuple[str, tuple[int, ...]]:
    """"nprobe=1,4,16,64" -> ("nprobe", (1, 4, 16, 64)), values ascending."""
    shown = repr(text if len(text) <= 60 else text[:57] + "...")
    name, sep, rest = text.partition("=")
    name = name.strip()
    try:
        values = [int(v) for v in rest.split(",")] if sep else []
    except ValueError:
        values = []
    if not _NAME.fullmatch(name) or not values or len(values) > MAX_VALUES \
            or not all(1 <= v <= MAX_VALUE for v in values):
        raise ScenarioError(f"--param {shown}: give a search parameter and up to {MAX_VALUES} "
                            f"whole values in [1, {MAX_VALUE:,}], such as nprobe=1,4,16,64")
    if len(set(values)) != len(values):
        raise ScenarioError(f"--param {shown}: a value is given twice")
    return name, tuple(sorted(values))


def with_param(params: str, name: str, value: int) -> str:
    """params ("nprobe=16,ht=20") with name set to value, the others kept."""
    items = [p for p in params.split(",") if p.strip() and p.split("=")[0].strip() != name]
    return ",".join(items + [f"{name}={value}"])


def _swept_backend(base: Scenario, name: str | None) -> BackendSpec:
    backends = base.search.backends
    if name is None:
        approx = [b for b in backends if b.name.startswith("faiss:") and not is_exact(b.name)]
        if not approx:
            raise ScenarioError("the scenario has no approximate faiss backend: name one with "
                                "--backend, such as --backend faiss:IVF256,Flat")
        return approx[0]
    for b in backends:
        if b.name == name:
            return b
    return BackendSpec(name)


def plan_param_sweep(scenario_path: str, backend: str | None, param_text: str) -> ParamSweep:
    """The sweep, checked before any work: every value set on an empty
    index of the backend, training points and memory planned
    (ScenarioError, PlanError)."""
    base = load_scenario(scenario_path)
    param, values = parse_param(param_text)
    spec = _swept_backend(base, backend)
    ref = "numba-hamming" if is_binary(spec.name) else "numba-flat"
    d = dataclasses.asdict(base)
    d["search"]["rescore"] = False  # lists of the index itself, not re-scored
    d["projection"]["ladder"] = []
    d["cluster"] = {}  # built and searched in this process
    scenarios = []
    for v in values:
        d["search"]["backends"] = [
            {"name": ref},
            {"name": spec.name, "params": with_param(spec.params, param, v),
             "train_size": spec.train_size}]
        try:
            scenarios.append(scenario_from_dict(d, base.name))
        except ScenarioError as e:
            raise ScenarioError(f"--param {param}={v} on {spec.name}: {e}") from None
    check(scenarios[0])
    return ParamSweep(scenarios[0], spec, param, values)


def _timed(index: Backend, probes: np.ndarray, L: int, batch: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Every probe's top L: ids (Q, L), scores (Q, L), and the seconds of the
    fastest of REPEATS passes over all probes, batch by batch."""
    index.search(probes[:1], L)  # warm-up: kernels compiled or loaded outside the timing
    best = float("inf")
    for _ in range(REPEATS):
        parts, t0 = [], time.perf_counter()
        for a, b in chunks(len(probes), batch):
            parts.append(index.search(probes[a:b], L))
        best = min(best, time.perf_counter() - t0)
    return np.vstack([p[0] for p in parts]), np.vstack([p[1] for p in parts]), best


def _row(label: tuple[str, str, str, int | None], lists: tuple[np.ndarray, np.ndarray],
         exact_ids: np.ndarray, mate: np.ndarray, sc: Scenario) -> dict:
    """One CSV row: recall against exact search and the NIST rates."""
    ids, scores = lists
    rec = search_recall(exact_ids, ids)
    lo, hi = bootstrap_mean_ci(rec, seed=sc.population.seed)
    m = metrics.summarize(ids, scores, mate, sc.metrics)
    op = m.operating_points[0]
    name, params, param, value = label
    return {"backend": name, "params": params, "param": param, "value": value,
            "recall": float(rec.mean()), "recall_lo": lo, "recall_hi": hi,
            "rank1_agreement": float(np.mean(ids[:, 0] == exact_ids[:, 0])),
            "rank1_hit_rate": m.rank1_hit_rate.value, "rank1_hit_rate_lo": m.rank1_hit_rate.ci95[0],
            "rank1_hit_rate_hi": m.rank1_hit_rate.ci95[1], "target_fpir": op.target_fpir,
            "threshold": op.threshold, "fnir": op.fnir.value, "fnir_lo": op.fnir.ci95[0],
            "fnir_hi": op.fnir.ci95[1], "pareto": None}


def _build(sc: Scenario, progress: bool) -> list[BackendRun]:
    """Both indexes of sc trained and filled with the whole gallery, once."""
    pop, search = sc.population, sc.search
    runs = []
    for slot, b in enumerate(search.backends):
        idx = new_backend(pop, b, threads(search))
        run = BackendRun(b, slot, idx)
        run.train_s = train_backend(pop, b, idx)
        idx.set_search_params(b.params)
        runs.append(run)
    builder = GalleryBuilder(pop, runs, {}, {})
    with stage("build gallery", pop.gallery_size, "rec", show=progress) as bar:
        for a, b in chunks(pop.gallery_size, search.chunk_size):
            builder.add_chunk(a, b)
            bar.update(b - a)
    return runs


def _fingerprint(ps: ParamSweep) -> str:
    blob = json.dumps([ps.scenario.fingerprint(), ps.backend.name, ps.backend.params,
                       ps.backend.train_size, ps.param, list(ps.values)])
    return "sweep-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_param_sweep(ps: ParamSweep, out: Path, overwrite: bool = False,
                    progress: bool = True) -> list[dict]:
    """Build once, search once per value; write frontier.csv, frontier.png
    and sweep.json into out. Returns the rows: exact search first, then one
    per value."""
    sc = ps.scenario
    search = sc.search
    with open_for_run(Path(out), _fingerprint(ps), fpscale_version(), overwrite, what="sweep") as rf:
        subs = make_submissions(sc.population, search.chunk_size, progress)
        mate = subs.mate
        with thread_count(threads(search)):
            ref, swept = _build(sc, progress)
            probes = subs.probes(swept.spec.binary)
            L, batch = search.candidates, search.probe_batch
            e_ids, e_scores, e_s = _timed(ref.index, probes, L, batch)
            rows = [_row((ref.spec.name, "", "", None), (e_ids, e_scores), e_ids, mate, sc)]
            rows[0].update(searches_per_s=len(probes) / e_s, search_s=e_s)
            values = stage(f"search {ps.backend.name} ({ps.param})", len(ps.values), "value",
                           show=progress)
            for v in ps.values:
                values.update(0)
                params = with_param(ps.backend.params, ps.param, v)
                swept.index.set_search_params(params)
                ids, scores, s = _timed(swept.index, probes, L, batch)
                row = _row((swept.spec.name, params, ps.param, v), (ids, scores), e_ids, mate, sc)
                rows.append({**row, "searches_per_s": len(probes) / s, "search_s": s})
                values.update(1)
            values.close()
        front = pareto_front([r["recall"] for r in rows[1:]], [r["searches_per_s"] for r in rows[1:]])
        for r, p in zip(rows[1:], front):
            r["pareto"] = bool(p)
        rf.write_csv("frontier.csv", CSV_HEADER, [[r[k] for k in CSV_HEADER] for r in rows])
        rf.write_bytes("frontier.png", _plot(ps, rows))
        rf.write_json("sweep.json", {
            "scenario": sc.name, "fingerprint": sc.fingerprint(), "backend": ps.backend.name,
            "param": ps.param, "values": list(ps.values), "reference": ref.spec.name,
            "repeats": REPEATS, "threads": threads(search), "searches": len(probes),
            "candidates": L, "train_s": swept.train_s, "build_s": swept.build_s,
            "index_bytes": swept.index.nbytes(), "rows": rows})
        rf.mark("sweep")
        rf.mark_complete()
    return rows


def _plot(ps: ParamSweep, rows: list[dict]) -> bytes:
    def point(r: dict, label: str) -> FrontierPoint:
        return FrontierPoint(label, r["recall"], (r["recall_lo"], r["recall_hi"]),
                             r["searches_per_s"], bool(r["pareto"]))
    sc = ps.scenario
    title = (f"{ps.backend.name}: {ps.param} swept ({sc.name}, gallery "
             f"{sc.population.gallery_size:,}, {sc.population.n_submissions:,} searches, "
             f"L = {sc.search.candidates})")
    return plot_frontier([point(r, f"{ps.param}={r['value']}") for r in rows[1:]],
                         point(rows[0], f"exact ({rows[0]['backend']})"), title)
