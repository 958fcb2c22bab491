"""``fpscale project``: a finished run's projection to another national target.

The ladder files hold everything the projection needs, so nothing is
generated or searched again.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bench.measure.projection import FingerSetProjection, Study, project
from bench.scenario import TargetSpec, scenario_from_dict
from bench.store.files import ResultsError, read_npz, write_json
from bench.store.summary import read_summary, to_json_dict


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
    files = sorted(folder.glob("ladder_*.npz"))
    if not files:
        raise ResultsError(f"{folder} has no ladder files: the scenario has no [projection] ladder")
    state = {f.stem.removeprefix("ladder_"): read_npz(f) for f in files}
    return sc.target, project(Study(sc.projection, sc.target, sc.population.seed, thresholds), state)


def write_projection(folder: Path, target: TargetSpec,
                     projection: dict[str, FingerSetProjection]) -> Path:
    """projection_<N>.json in the results folder; returns its path."""
    out = Path(folder) / f"projection_{target.gallery_size}.json"
    write_json(out, {"target": dataclasses.asdict(target), "projection": to_json_dict(projection)})
    return out
