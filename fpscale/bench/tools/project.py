"""``fpscale project``: a finished run's projection to another national target.

The ladder files hold everything the projection needs, so nothing is
generated or searched again. The results folder is untrusted input: the
summary is validated, the ladder files are the ones named after fpscale's
finger sets (never names read from the folder) and their arrays are checked
against the summary's scenario before use.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from fpscale.bench.measure.ladder import HIST_BINS
from fpscale.bench.measure.projection import FingerSetProjection, Study, project
from fpscale.bench.report.write import check_not_foreign
from fpscale.bench.scenario import PROJECTIONS, Scenario, TargetSpec, scenario_from_dict
from fpscale.bench.store.files import ResultsError, read_npz
from fpscale.bench.store.manifest import open_existing
from fpscale.bench.store.summary import read_summary, to_json_dict


def _bins(st: dict) -> int:
    # fpscale's scan writes HIST_BINS; a ladder from candidate lists fewer
    h = st.get("impostor_hist")
    n = int(h.shape[0]) if isinstance(h, np.ndarray) and h.ndim == 1 else HIST_BINS
    return n if 2 <= n <= HIST_BINS else HIST_BINS


def _ladder_problem(st: dict, sc: Scenario) -> str | None:
    """None when a ladder file's arrays fit the scenario, else what is wrong."""
    Q, N = sc.population.n_submissions, sc.population.gallery_size
    rungs = np.asarray(sc.projection.ladder, dtype=np.int64)
    R = len(rungs)
    want = {"mate": (np.int64, (Q,)), "rungs": (np.int64, (R,)),
            "top_nonmate": (np.float32, (Q, R)), "better_than_mate": (np.int64, (Q, R)),
            "impostor_hist": (np.int64, (_bins(st),)), "hist_edges": (np.float64, (_bins(st) + 1,)),
            "mate_score": (np.float32, (Q,)), "person": (np.int64, (Q,))}
    # optional: written since searches carry persons; a scan's rung lists
    # (projection.rescored); a re-scored pipeline's flag
    optional = {"person", "list_ids", "list_scores", "nested"}
    lists = st.get("list_ids")
    width = lists.shape[-1] if isinstance(lists, np.ndarray) and lists.ndim == 3 else 0
    if not 1 <= width <= sc.search.candidates:
        width = -1  # no length fits: any list_ids is reported below
    want.update({"list_ids": (np.int64, (Q, R, width)), "list_scores": (np.float32, (Q, R, width)),
                 "nested": (np.bool_, ())})
    if set(st) - optional != set(want) - optional or not set(st) <= set(want) \
            or ("list_ids" in st) != ("list_scores" in st):
        return f"holds arrays {sorted(st)[:10]}, expected {sorted(set(want) - optional)}"
    for k, (dtype, shape) in want.items():
        if k not in st:
            continue
        # scores: float32 from fpscale's own searches, float64 from another matcher's lists
        same_type = (st[k].dtype.kind == "f" and st[k].dtype.itemsize in (4, 8)
                     if dtype is np.float32 else st[k].dtype == np.dtype(dtype))
        if not same_type or st[k].shape != shape:
            return f"{k} is {st[k].dtype} {st[k].shape}, expected {np.dtype(dtype)} {shape}"
    if not np.array_equal(st["rungs"], rungs):
        return "its rungs differ from the scenario's ladder"
    if st["mate"].min() < -1 or st["mate"].max() >= N:
        return "mate holds ids outside the gallery"
    if "list_ids" in st and (st["list_ids"].min(initial=0) < -1
                             or st["list_ids"].max(initial=0) >= N):
        return "list_ids holds ids outside the gallery"
    if st["impostor_hist"].min() < 0 or st["better_than_mate"].min() < 0:
        return "holds negative counts"
    edges = st["hist_edges"]
    if not np.isfinite(edges).all() or not (np.diff(edges) > 0).all():
        return "hist_edges are not finite and increasing"
    if np.isnan(st["top_nonmate"]).any() or np.isnan(st["mate_score"]).any():
        return "holds NaN scores"
    return None


def reproject(folder: Path, target: dict,
              thresholds: tuple[float, ...] | None = None) -> tuple[TargetSpec, dict[str, FingerSetProjection]]:
    """(the target used, the projection per finger set) of a results folder
    for the target its scenario names, with the [target] values in target
    replaced (checked as a scenario file's are), at the given thresholds or
    the scenario's study thresholds."""
    folder = Path(folder)
    summary = read_summary(folder)
    d = summary.scenario.to_dict()
    d["target"].update({k: v for k, v in target.items() if v is not None})
    sc = scenario_from_dict(d, summary.scenario.name)  # the new values checked as a file's are
    state = {}
    mate = None
    for fs in PROJECTIONS:
        f = folder / f"ladder_{fs}.npz"
        if not f.exists():
            continue
        if not sc.projection.ladder:
            raise ResultsError(f"{f} does not belong to a scenario without a [projection] ladder")
        st = read_npz(f)
        bad = _ladder_problem(st, sc)
        if bad:
            raise ResultsError(f"{f}: {bad}")
        if mate is not None and not np.array_equal(mate, st["mate"]):
            raise ResultsError(f"{f}: its searches differ from the other ladder files'")
        mate = st["mate"]
        state[fs] = st
    if not state:
        raise ResultsError(f"{folder} has no ladder files: the scenario has no [projection] ladder")
    return sc.target, project(Study(sc.projection, sc.target, sc.population.seed, thresholds), state)


def write_projection(folder: Path, target: TargetSpec,
                     projection: dict[str, FingerSetProjection]) -> Path:
    """projection_<N>.json in the results folder; returns its path."""
    rel = f"projection_{int(target.gallery_size)}.json"
    check_not_foreign(Path(folder), [rel])  # before the lock: a refusal changes nothing
    with open_existing(Path(folder), "project") as rf:
        check_not_foreign(Path(folder), [rel], rf)
        rf.write_json(rel, {"target": dataclasses.asdict(target),
                            "projection": to_json_dict(projection)})
        rf.save()
    return Path(folder) / rel
