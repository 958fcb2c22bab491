"""``fpscale evaluate``: another matcher's candidate lists through fpscale's
metrics, tables, summary, report and national-scale projection.

Each candidates file becomes a row of the results (``<matcher>-N<size>``),
measured as a synthetic run's backends are (``fpscale.bench.measure.metrics``), with
the same per-search tables and summary. Files at two or more gallery sizes
form a ladder (``fpscale.bench.measure.list_ladder``) that the projection to the
[target] runs on; one file gives metrics at its size and no projection.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from fpscale.bench.measure import metrics
from fpscale.bench.measure.list_ladder import ladder_state
from fpscale.bench.measure.projection import Study, project
from fpscale.bench.report.write import report_files
from fpscale.bench.run.host import fpscale_version, host_info
from fpscale.bench.scenario import Scenario, load_scenario, scenario_from_dict
from fpscale.bench.store.manifest import ResultsFolder, open_for_run
from fpscale.bench.store.summary import (BackendResult, CandidateFile, Evaluation, Memory,
                                 MemoryPlan, Summary, SUMMARY, read_summary, to_json_dict,
                                 untimed)
from fpscale.bench.store.tables import SearchTable, write_metric_tables, write_searches_parquet
from fpscale.bench.tools.evaluate import CandidateLists, EvaluateOptions, Inputs, read_inputs

NO_PROJECTION = ("one gallery size: no projection to the target. Candidate lists of the same "
                 "matcher at several gallery sizes (nested galleries, each holding every mate) "
                 "give the FPIR-against-N model; two sizes at or below a tenth of the largest "
                 "give its held-out check")


def evaluation_scenario(opts: EvaluateOptions, inputs: Inputs) -> Scenario:
    """The scenario the results are filed under: the searches as read, the
    [metrics] and [target] (and the projection's study settings) of
    --scenario, the [target] values given on the command line over them."""
    base = load_scenario(opts.scenario).to_dict() if opts.scenario else {}
    Q = len(inputs.mate)
    d = {"name": opts.matcher,
         "description": f"Candidate lists of {opts.matcher} read from "
                        f"{', '.join(str(c.path) for c in inputs.lists)} with truth {inputs.truth}",
         "population": {"gallery_size": inputs.lists[-1].gallery_size, "n_submissions": Q,
                        "mated_share": float((inputs.mate >= 0).mean())},
         "search": {"candidates": max(c.ids.shape[1] for c in inputs.lists)},
         "metrics": base.get("metrics", {}),
         "projection": {k: v for k, v in base.get("projection", {}).items()
                        if k in ("study_fpir", "max_decades")},
         "target": {**base.get("target", {}),
                    **{k: v for k, v in opts.target.items() if v is not None}}}
    sizes = [c.gallery_size for c in inputs.lists]
    if len(sizes) >= 3:  # a ladder as a scenario states one: `fpscale project` reads it back
        d["projection"].update(ladder=sizes, finger_sets=["all"])
    return scenario_from_dict(d, opts.matcher)


def _fingerprint(sc: Scenario, inputs: Inputs) -> str:
    h = hashlib.sha256(sc.fingerprint().encode())
    h.update(inputs.truth_sha256.encode())
    for c in inputs.lists:
        h.update(f"{c.gallery_size}:{c.sha256}".encode())
    return h.hexdigest()[:16]


def write_lists(folder: ResultsFolder, key: str, lists: tuple[np.ndarray, np.ndarray],
                mate: np.ndarray, labels: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """The per-search tables of one row of the results (npz and Parquet):
    lists (ids (Q, L), scores (Q, L)), mate (Q,) dense id or -1, labels the
    input files' (probe ids, candidate ids) or None where the dense ids are
    the inputs' own."""
    ids, scores = lists
    rank, mscore = metrics.mate_rank(ids, mate, scores)
    folder.write_npz(f"searches_{key}.npz", probe=np.arange(len(ids)), mate=mate,
                     mate_rank=rank, mate_score=mscore, cand_ids=ids, cand_scores=scores)
    write_searches_parquet(folder, f"searches_{key}.parquet",
                           SearchTable(ids, scores, mate, rank, mscore, *(labels or (None, None))))


def finish_results(folder: ResultsFolder, summary: Summary) -> None:
    """summary.json, the CSV metric tables and the report (rendered from the
    summary as written, as ``fpscale report`` reads it); the folder marked
    complete and its manifest saved."""
    folder.write_json(SUMMARY, to_json_dict(summary))
    write_metric_tables(folder, [(b.key, b.metrics) for b in summary.backends])
    for rel, data in report_files(read_summary(folder.path)).items():
        folder.write_bytes(rel, data)
    folder.mark_complete()
    folder.save()


def _row(folder: ResultsFolder, matcher: str, lists: CandidateLists, inputs: Inputs,
         sc: Scenario) -> BackendResult:
    """One file's row of the results, with its per-search tables written."""
    key = f"{matcher}-N{lists.gallery_size}"
    ids, scores, mate = lists.ids, lists.scores, inputs.mate
    write_lists(folder, key, (ids, scores), mate, (inputs.probe_ids, inputs.candidate_ids))
    return BackendResult(name=matcher, params=f"gallery_size={lists.gallery_size}", key=key,
                         binary=False, memory=Memory(0, 0), timings=untimed(),
                         metrics=metrics.summarize(ids, scores, mate, sc.metrics))


def _evaluation(opts: EvaluateOptions, inputs: Inputs) -> Evaluation:
    files = [CandidateFile(str(c.path), c.sha256, c.gallery_size, c.rows, int(c.ids.shape[1]))
             for c in inputs.lists]
    note = NO_PROJECTION if len(files) < 2 else (
        f"ladder of {len(files)} gallery sizes from the candidate lists (nested galleries assumed)")
    return Evaluation(opts.matcher, str(inputs.truth), inputs.truth_sha256, int(len(inputs.mate)),
                      int((inputs.mate >= 0).sum()), files, note)


def run_evaluation(opts: EvaluateOptions) -> Summary:
    """Check the inputs (InputError, ScenarioError: nothing written), then
    write the results folder: per-search tables, summary.json, CSV tables,
    a ladder file and projection when there are several gallery sizes, and
    the report. Returns the summary."""
    t0 = time.perf_counter()
    inputs = read_inputs(opts)
    sc = evaluation_scenario(opts, inputs)
    out = Path(opts.out)
    fingerprint = _fingerprint(sc, inputs)
    with open_for_run(out, fingerprint, fpscale_version(), opts.overwrite) as folder:
        folder.write_npz("truth.npz", mate=inputs.mate)
        rows = [_row(folder, opts.matcher, c, inputs, sc) for c in inputs.lists]
        summary = Summary(scenario=sc, fingerprint=fingerprint, seed=0, host=host_info(),
                          generation_s=0.0, backends=rows,
                          memory_plan=MemoryPlan({}, 0, 0, 0, 0, None),
                          evaluation=_evaluation(opts, inputs))
        if len(inputs.lists) >= 2:
            # another matcher's lists are whole records: the finger set "all"
            state = ladder_state([(c.ids, c.scores) for c in inputs.lists],
                                 [c.gallery_size for c in inputs.lists], inputs.mate)
            folder.write_npz("ladder_all.npz", **state)
            summary.projection = project(Study(sc.projection, sc.target, 0), {"all": state})
        summary.wall_s = time.perf_counter() - t0
        finish_results(folder, summary)
    return summary
