"""The step order of a run: scenario -> submissions, gallery, searches, summary.

Steps, each recorded in the results folder's manifest when finished:
submissions (generated once, ground truth kept in its own array), build
(gallery chunks streamed into every backend and the ladder scan), search and
re-scoring (per backend, probe batches and segments checkpointed), the
projection, the summary and the report. Where the work executes (this
process or a Dask cluster) is the executor's business, not the steps'.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numba
import numpy as np

from fpscale.bench.measure import metrics
from fpscale.bench.measure.individuality import compare as individuality
from fpscale.bench.measure.ladder import LadderScan
from fpscale.bench.measure.miss_sources import MateOutcomes, MissSources, miss_sources
from fpscale.bench.measure.projection import Study, project
from fpscale.bench.measure.recall import recall_against
from fpscale.bench.measure.rescored_ladder import PIPELINE_SUFFIX, rescored_ladder_state, rung_union
from fpscale.bench.report.write import REPORT_FILES, projection_plots, report_files
from fpscale.bench.run.checkpoints import Checkpoints
from fpscale.bench.run.context import RunContext
from fpscale.bench.run.executor import Executor
from fpscale.bench.run.gallery import BackendRun, Gallery, finger_set_columns, rung_list_length
from fpscale.bench.run.host import fpscale_version, host_info, peak_rss
from fpscale.bench.run.local import LocalExecutor
from fpscale.bench.run.planner import Plan, check
from fpscale.bench.run.refine import refine_lists, refinement_would_list
from fpscale.bench.run.rescore import rescore_lists
from fpscale.bench.run.rescore_segment import unlisted_mate_scores
from fpscale.bench.run.resume import notice, verify_resume
from fpscale.bench.run.search import search_backend
from fpscale.bench.run.submissions import Submissions, make_submissions
from fpscale.bench.run.warmup import warm_up
from fpscale.bench.scenario import Scenario, SearchSpec, pipeline_finger_set
from fpscale.bench.store.manifest import ResultsFolder, open_for_run
from fpscale.bench.store.summary import (SUMMARY, BackendResult, Memory, MemoryPlan, Refinement,
                                         RescoreTimings, Resumed, Summary, Timings, read_summary,
                                         to_json_dict, untimed)
from fpscale.bench.store.tables import SearchTable, write_metric_tables, write_searches_parquet
from fpscale.matcher.registry import final_index_bytes, is_exact_float
from fpscale.synth.population import booking_best_quality, unmatchable_bookings


INDIVIDUALITY_PAIRS = 2000  # impostor pairs of the individuality comparison


def threads(search: SearchSpec) -> int:
    """Threads a run uses in this process: [search] threads, or all cores."""
    return search.threads or numba.config.NUMBA_NUM_THREADS


def run_scenario(sc: Scenario, out: Path, overwrite: bool = False, progress: bool = True,
                 max_memory: int | None = None) -> Summary:
    """Run a scenario end to end into ``out``; returns its summary.

    Refuses (PlanError) before any work when it would not fit in memory.
    With sc.cluster.scheduler set, the gallery is built and searched in
    shards on a Dask cluster; the results are the same. The folder is
    locked for the whole run; a resumed or complete folder is checked
    against its manifest first (``fpscale.bench.run.resume``)."""
    on_cluster = bool(sc.cluster.scheduler)
    plan = check(sc, max_memory, indexes=not on_cluster)
    with _executor(sc, progress) as executor:  # a cluster is reached and planned first
        with open_for_run(Path(out), sc.fingerprint(), fpscale_version(), overwrite) as folder:
            ctx = RunContext(sc, Checkpoints(folder), executor, progress)
            if folder.manifest["complete"]:
                summary = _complete(ctx)
                if summary is not None:
                    return summary  # nothing left to do
            else:
                verify_resume(ctx.checkpoints, sc)
            return _run(ctx, plan)


def _expected_files(sc: Scenario) -> list[str]:
    """The files a complete results folder of sc holds."""
    names = ["truth.npz", SUMMARY, *REPORT_FILES]
    for b in sc.search.backends:
        names.append(f"searches_{b.key}.npz")
        if sc.search.rescore:
            names.append(f"searches_{b.key}+minutiae.npz")
    if sc.projection.ladder:
        for fs in sc.projection.finger_sets:
            if finger_set_columns(sc.population, fs) is not None:
                names += [f"ladder_{fs}.npz", *projection_plots(fs)]
        if sc.projection.rescored:
            fs = pipeline_finger_set(sc.population.search_fingers, sc.projection.finger_sets)
            names += [f"ladder_{fs}{PIPELINE_SUFFIX}.npz", *projection_plots(fs + PIPELINE_SUFFIX)]
    return names


def _complete(ctx: RunContext) -> Summary | None:
    """The summary of a complete folder whose files are what fpscale wrote;
    a damaged report is written again; any other damaged file (reported)
    gives None: the run is done again (a complete folder keeps no
    checkpoints)."""
    folder = ctx.folder
    names = _expected_files(ctx.scenario)
    for rel in [r for r in folder.files if r.startswith("projection_")]:
        why = folder.problem(rel)
        if why:
            notice(f"warning: {rel} {why}; removed from the folder's list (run fpscale project again)")
            folder.remove(rel)
            folder.save()
    if any(r.startswith("state/") for r in folder.files):  # a kill as the run completed
        folder.remove_all("state/")
        folder.save()
    bad = {rel: why for rel in names if (why := folder.problem(rel))}
    if not bad:
        return read_summary(folder.path)
    rel, why = next(iter(bad.items()))
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    if all(r in REPORT_FILES or r.startswith("plots/") for r in bad):
        notice(f"warning: {rel} {why}{more}; writing the report again")
        summary = read_summary(folder.path)
        _write_report(folder, summary)
        folder.save()
        return summary
    notice(f"warning: {rel} {why}{more}; running the scenario again")
    folder.manifest["steps"] = {}
    folder.manifest["complete"] = False
    folder.remove_all("state/")
    folder.save()
    return None


def _resumed(ck: Checkpoints, sc: Scenario) -> Resumed | None:
    """What the earlier starts of this run did, or None on its first start."""
    starts, earlier_s = ck.earlier()
    if not starts:
        return None
    N = sc.population.gallery_size
    built = N if ck.get("build") else min(ck.get("build_next", 0) * sc.search.chunk_size, N)
    return Resumed(starts + 1, earlier_s, built)


def _write_report(folder: ResultsFolder, summary: Summary) -> None:
    for rel, data in report_files(summary).items():
        folder.write_bytes(rel, data)


@contextlib.contextmanager
def _executor(sc: Scenario, progress: bool) -> Iterator[Executor]:
    if not sc.cluster.scheduler:
        yield LocalExecutor(threads(sc.search), progress)
        return
    from fpscale.bench.run.cluster import DaskExecutor, open_cluster, plan_cluster
    with open_cluster(sc.cluster, progress) as client:
        yield DaskExecutor(client, plan_cluster(sc, client), threads(sc.search), progress)


def _run(ctx: RunContext, plan: Plan) -> Summary:
    sc, out, ck = ctx.scenario, ctx.out, ctx.checkpoints
    t_start = time.perf_counter()
    resumed = _resumed(ck, sc)
    warm_up(sc, ctx.progress)
    subs = make_submissions(sc.population, sc.search.chunk_size, ctx.progress)
    folder = ctx.folder
    folder.write_npz("truth.npz", mate=subs.mate)
    gallery = ctx.executor.build(sc, subs, ck)
    ck.mark("build")
    try:
        rows = _search_all(ctx, gallery, subs)
    finally:
        ctx.executor.release()
    summary = Summary(
        scenario=sc, fingerprint=sc.fingerprint(), seed=sc.population.seed, host=host_info(),
        generation_s=gallery.generation_s, ladder_s=gallery.ladder_s, backends=rows,
        memory_plan=MemoryPlan(plan.indexes, plan.submissions, plan.transient, plan.baseline,
                               plan.total, None, plan.after_search),
        cluster=ctx.executor.cluster_info())
    if gallery.scans:
        # a rung's list as long as the re-scored ladder reads it: a streamed
        # search's deeper lists were the searches' alone
        width = rung_list_length(sc.search)
        ladder_state = {fs: s.state(width) for fs, s in gallery.scans.items()}
        for fs, st in ladder_state.items():
            st.update(mate=subs.mate, person=subs.person)
            folder.write_npz(f"ladder_{fs}.npz", **st)
        piped = pipeline_finger_set(sc.population.search_fingers, sc.projection.finger_sets)
        if sc.projection.rescored and piped in ladder_state:
            st, summary.ladder_rescore = _rescored_ladder(ctx, piped, ladder_state[piped], subs)
            ladder_state[piped + PIPELINE_SUFFIX] = st
            folder.write_npz(f"ladder_{piped}{PIPELINE_SUFFIX}.npz", **st)
        with ctx.stage("projection", len(ladder_state), "finger sets") as prog:
            summary.projection = project(Study(sc.projection, sc.target, sc.population.seed),
                                         ladder_state, lambda: prog.update(1))
        ck.mark("projection")
    if sc.search.rescore:
        pop = sc.population
        with ctx.stage("individuality", INDIVIDUALITY_PAIRS, "pairs") as prog:
            summary.individuality = individuality(pop.seed, INDIVIDUALITY_PAIRS,
                                                  pop.search_fingers[0], pop.booking_capture, 2)
            prog.update(INDIVIDUALITY_PAIRS)
    summary.wall_s = time.perf_counter() - t_start
    summary.resumed = resumed
    # read when every step that can grow memory has run (the re-scored
    # ladder's batches come after the searches)
    summary.memory_plan.peak_rss_bytes = peak_rss()
    with ctx.stage("report", 2, "steps") as prog:
        folder.write_json(SUMMARY, to_json_dict(summary))
        write_metric_tables(folder, [(b.key, b.metrics) for b in summary.backends])
        ck.mark("summary")
        prog.update(1)
        # from the file just written, as `fpscale report` does
        _write_report(folder, read_summary(out))
        prog.update(1)
    folder.mark_complete()
    ck.clear()  # a complete folder needs no checkpoints
    folder.save()
    return summary


def _search_all(ctx: RunContext, gallery: Gallery, subs: Submissions) -> list[BackendResult]:
    """Search every backend (and re-score its lists), writing each one's
    per-search table; returns the summary rows, approximate float backends
    compared with the exact one."""
    rows, lists = [], {}
    exact_key = None
    for run in gallery.runs:
        key = run.spec.key
        if ctx.scenario.search.streamed:
            deep, deep_scores, timings = _streamed_lists(ctx, gallery)
        else:
            deep, deep_scores, timings = search_backend(ctx, run, subs.probes(run.spec.binary))
        # the row reports the list NIST's protocol asks for; only the
        # refinement and the re-scoring of poor searches read further down
        L = ctx.scenario.search.candidates
        ids, scores = np.ascontiguousarray(deep[:, :L]), np.ascontiguousarray(deep_scores[:, :L])
        lists[key] = (ids, scores)
        if exact_key is None and is_exact_float(run.spec.name):
            exact_key = key
        # measured once per index: faiss's nbytes serializes the whole index
        memory = Memory(_estimate(ctx.scenario, run), ctx.executor.index_nbytes(run))
        row = BackendResult(name=run.spec.name, params=run.spec.params, key=key,
                            binary=run.spec.binary, memory=memory, timings=timings,
                            metrics=_measure(ctx, key, (ids, scores), subs.mate))
        rows.append(row)
        ctx.checkpoints.mark(f"search:{key}")
        if ctx.scenario.search.rescore:
            refined, handed = None, _handed_on(ctx, deep, subs.mate)
            if ctx.scenario.search.refine_candidates:
                deep, deep_scores, refined = refine_lists(ctx, key, subs.vectors,
                                                          _to_refine(ctx, gallery, deep))
                ctx.checkpoints.mark(f"refine:{key}")
                handed = handed._replace(ids=deep, refinable=_refinable(ctx, subs, handed,
                                                                        deep_scores))
            rows.append(_rescored(ctx, row, handed, subs.mate, refined))
            ctx.checkpoints.mark(f"rescore:{key}")
    if exact_key is not None:
        for row in rows:
            if not row.binary and row.key != exact_key and row.key in lists:
                row.vs_exact = recall_against(lists[exact_key], lists[row.key])
    return rows


def _streamed_lists(ctx: RunContext, gallery: Gallery) -> tuple[np.ndarray, np.ndarray, Timings]:
    """A streamed search's lists (Q, search.searched): the top rung's lists of the scan of
    every searched finger, which is the whole gallery. Their time is in the
    gallery pass's ladder seconds, not measured apart: no search time,
    throughput or latency."""
    ids, scores = _pipeline_scan(ctx, gallery).top_list()
    return ids, scores, untimed()


def _pipeline_scan(ctx: RunContext, gallery: Gallery) -> LadderScan:
    """The scan of every searched finger, which a streamed search's lists come from."""
    sc = ctx.scenario
    return gallery.scans[pipeline_finger_set(sc.population.search_fingers, sc.projection.finger_sets)]


def _to_refine(ctx: RunContext, gallery: Gallery, deep: np.ndarray) -> np.ndarray:
    """The lists (Q, refine_candidates) a backend hands to the refinement:
    its deep lists, or where they are re-ranked (search.rerank_candidates)
    the best by the asymmetric scores the scan carried."""
    srch = ctx.scenario.search
    if not srch.rerank_candidates:
        return deep
    return _pipeline_scan(ctx, gallery).reranked(srch.refine_candidates)[0]


def _measure(ctx: RunContext, key: str, lists: tuple[np.ndarray, np.ndarray],
             mate: np.ndarray) -> metrics.MetricsSummary:
    """Write the per-search table of one row and summarize its metrics."""
    ids, scores = lists
    rank, mscore = metrics.mate_rank(ids, mate, scores)
    ctx.folder.write_npz(f"searches_{key}.npz", probe=np.arange(len(ids)), mate=mate,
                         mate_rank=rank, mate_score=mscore, cand_ids=ids, cand_scores=scores)
    write_searches_parquet(ctx.folder, f"searches_{key}.parquet",
                           SearchTable(ids, scores, mate, rank, mscore))
    return metrics.summarize(ids, scores, mate, ctx.scenario.metrics)


class HandedOn(NamedTuple):
    """A backend's lists as the re-scoring reads them: ids (Q, L) re-scored
    (refined first when the scenario refines); retrieved_rank (Q,), the
    mate's rank in the lists the backend retrieved, 1-based, 0 when not in
    them, None where they are no longer than every search has re-scored;
    depth, their length; refinable (Q,) bool, the mated searches whose mate
    it did not retrieve but the refinement would have handed on
    (refinement_would_list), None where nothing is refined."""

    ids: np.ndarray
    retrieved_rank: np.ndarray | None
    depth: int
    refinable: np.ndarray | None = None


def _handed_on(ctx: RunContext, retrieved: np.ndarray, mate: np.ndarray) -> HandedOn:
    """The backend's retrieved lists (Q, D) as HandedOn, before any refinement."""
    srch = ctx.scenario.search
    deeper = retrieved.shape[1] > min(srch.rescore_candidates, srch.candidates)
    return HandedOn(retrieved, metrics.list_rank(retrieved, mate) if deeper else None,
                    retrieved.shape[1])


def _refinable(ctx: RunContext, subs: Submissions, handed: HandedOn,
               refined_scores: np.ndarray) -> np.ndarray | None:
    """HandedOn.refinable: the last float score each refined list (Q, W)
    hands on is its score at the depth the search is re-scored to."""
    if handed.retrieved_rank is None:
        return None  # nothing retrieved beyond what is re-scored: nothing to split
    pop, r = ctx.scenario.population, ctx.scenario.search.rescoring
    Q, W = refined_scores.shape
    depth = np.full(Q, min(r.candidates, W))
    if r.poor_candidates:
        depth = np.where(booking_best_quality(pop, Q) >= r.poor_quality, r.longest(W), depth)
    last = refined_scores[np.arange(Q), depth - 1]
    who = (subs.mate >= 0) & (handed.retrieved_rank == 0)
    return refinement_would_list(pop, subs.vectors, subs.mate, last, who)


def _rescored(ctx: RunContext, row: BackendResult, lists: HandedOn,
              mate: np.ndarray, refined: Refinement | None = None) -> BackendResult:
    """Minutiae re-scoring of one backend's lists, as a row of its own
    (refined first, as ``refined`` says, when the scenario refines)."""
    ri, rs, info = rescore_lists(ctx, row.key, lists.ids)
    rkey = f"{row.key}+minutiae"
    t = row.timings
    total = t.search_s + ctx.executor.rescore_seconds({"compare_s": info.compare_s,
                                                       "wall_s": info.wall_s})
    total += refined.refine_s if refined else 0.0
    # a streamed search's time is inside the gallery pass: no throughput
    qps = len(ri) / total if total > 0 and not ctx.scenario.search.streamed else None
    timings = type(t)(t.train_s, t.build_s, t.search_s, qps,
                      t.latency_ms, info, refined)
    measured = _measure(ctx, rkey, (ri, rs), mate)
    return BackendResult(name=row.name + "+minutiae", params=row.params, key=rkey,
                         binary=row.binary, rescored_from=row.key, memory=row.memory,
                         timings=timings, metrics=measured,
                         miss_sources=_miss_sources(ctx, (ri, rs), lists, mate, measured))


def _miss_sources(ctx: RunContext, rescored: tuple[np.ndarray, np.ndarray], lists: HandedOn,
                  mate: np.ndarray, measured: metrics.MetricsSummary) -> list[MissSources]:
    """Each operating point's misses split by where they arise: the mates the
    candidate stage did not list are scored 1:1 here, as if listed.
    rescored: the re-scored ids and scores (Q, L)."""
    ids, scores = rescored
    pop, srch = ctx.scenario.population, ctx.scenario.search
    rank, pair = metrics.mate_rank(ids, mate, scores)
    unlisted = (mate >= 0) & (rank == 0)
    if unlisted.any():
        pair = np.where(unlisted, unlisted_mate_scores(pop, mate, unlisted, srch.rescoring), pair)
    searches = MateOutcomes(
        rank, pair, mate >= 0, booking_best_quality(pop, len(mate)),
        unmatchable_bookings(pop, 0, len(mate)) if pop.unmatchable_share else None,
        lists.retrieved_rank, lists.depth, lists.refinable)
    found = (miss_sources(searches, ctx.scenario.metrics.rank, op) for op in measured.operating_points)
    return [m for m in found if m is not None]


def _rescored_ladder(ctx: RunContext, fs: str, st: dict,
                     subs: Submissions) -> tuple[dict, RescoreTimings]:
    """The re-scored pipeline's ladder state: the distinct candidates of
    every rung's list re-scored once (checkpointed as a backend's lists
    are), then each rung's list re-ranked by them; and the work it took."""
    # a streamed search's scan keeps whole candidate lists; the pipeline
    # re-scores each rung's top k, as the searches' re-scoring does
    list_ids = st["list_ids"][:, :, :rung_list_length(ctx.scenario.search)]
    union = rung_union(list_ids)
    rescoring = replace(ctx.scenario.search.rescoring, candidates=union.shape[1],
                        poor_candidates=0)
    ri, rs, timings = rescore_lists(ctx, f"ladder_{fs}", union, rescoring)
    ctx.checkpoints.mark(f"rescore:ladder_{fs}")
    out = rescored_ladder_state(st["rungs"], list_ids, ri, rs, subs.mate)
    out["person"] = subs.person
    return out, timings


def _estimate(sc: Scenario, run: BackendRun) -> int:
    pop = sc.population
    if sc.search.streamed:
        return 0  # no index is held
    return final_index_bytes(run.spec.name, pop.gallery_size, pop.record_width(run.spec.binary))
