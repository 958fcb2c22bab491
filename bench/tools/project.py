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

from bench.measure.ladder import HIST_BINS
from bench.measure.projection import FingerSetProjection, project
from bench.report.write import check_not_foreign
from bench.scenario import FINGER_SETS, Scenario, TargetSpec, scenario_from_dict
from bench.store.files import ResultsError, read_npz
from bench.store.manifest import open_existing
from bench.store.summary import read_summary, to_json_dict


def _ladder_problem(st: dict, sc: Scenario) -> str | None:
    """None when a ladder file's arrays fit the scenario, else what is wrong."""
    Q, N = sc.population.n_submissions, sc.population.gallery_size
    rungs = np.asarray(sc.projection.ladder, dtype=np.int64)
    R = len(rungs)
    want = {"mate": (np.int64, (Q,)), "rungs": (np.int64, (R,)),
            "top_nonmate": (np.float32, (Q, R)), "better_than_mate": (np.int64, (Q, R)),
            "impostor_hist": (np.int64, (HIST_BINS,)), "hist_edges": (np.float64, (HIST_BINS + 1,)),
            "mate_score": (np.float32, (Q,))}
    if set(st) != set(want):
        return f"holds arrays {sorted(st)[:10]}, expected {sorted(want)}"
    for k, (dtype, shape) in want.items():
        if st[k].dtype != np.dtype(dtype) or st[k].shape != shape:
            return f"{k} is {st[k].dtype} {st[k].shape}, expected {np.dtype(dtype)} {shape}"
    if not np.array_equal(st["rungs"], rungs):
        return "its rungs differ from the scenario's ladder"
    if st["mate"].min() < -1 or st["mate"].max() >= N:
        return "mate holds ids outside the gallery"
    if st["impostor_hist"].min() < 0 or st["better_than_mate"].min() < 0:
        return "holds negative counts"
    edges = st["hist_edges"]
    if not np.isfinite(edges).all() or not (np.diff(edges) > 0).all():
        return "hist_edges are not finite and increasing"
    if np.isnan(st["top_nonmate"]).any() or np.isnan(st["mate_score"]).any():
        return "holds NaN scores"
    return None


def reproject(folder: Path, gallery_size: int | None = None,
              searches_per_year: float | None = None,
              mated_share: float | None = None) -> tuple[TargetSpec, dict[str, FingerSetProjection]]:
    """(the target used, the projection per finger set) of a results folder
    for the target its scenario names, with the values given replaced."""
    folder = Path(folder)
    summary = read_summary(folder)
    d = summary.scenario.to_dict()
    for key, v in (("gallery_size", gallery_size), ("searches_per_year", searches_per_year),
                   ("mated_share", mated_share)):
        if v is not None:
            d["target"][key] = v
    sc = scenario_from_dict(d, summary.scenario.name)  # the new values checked as a file's are
    state = {}
    mate = None
    for fs in FINGER_SETS:
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
        mate = st.pop("mate")
        state[fs] = st
    if not state:
        raise ResultsError(f"{folder} has no ladder files: the scenario has no [projection] ladder")
    return sc.target, project(sc.target, state, mate, sc.population.seed)


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
