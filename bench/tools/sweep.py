"""``fpscale sweep``: one scenario run over several values of one key."""

from __future__ import annotations

import copy
import dataclasses
import tomllib
from pathlib import Path

from bench.run.steps import run_scenario
from bench.scenario import ScenarioError, load_scenario, scenario_from_dict
from bench.store.files import write_json


def parse_values(text: str) -> list:
    """"1000,2000" -> [1000, 2000]; values are read as TOML scalars."""
    out = []
    for raw in text.split(","):
        raw = raw.strip()
        try:
            out.append(tomllib.loads(f"v = {raw}")["v"])
        except tomllib.TOMLDecodeError:
            out.append(raw)  # a bare word: a string
    if not out or any(v == "" for v in out):
        raise ScenarioError(f"--values {text!r}: give a comma-separated list such as 1000,2000")
    return out


def sweep(scenario_path: str, key: str, values: list, out: Path, overwrite: bool = False,
          progress: bool = True) -> list[dict]:
    """Run the scenario once per value of key ("table.name", e.g.
    population.gallery_size) into out/<key>=<value>; returns one row per run."""
    base = load_scenario(scenario_path)
    d = dataclasses.asdict(base)
    if "." not in key:
        raise ScenarioError(f"--key {key!r}: use table.name, e.g. population.gallery_size")
    table, name = key.split(".", 1)
    if table not in d or not isinstance(d[table], dict) or name not in d[table]:
        raise ScenarioError(f"--key {key!r}: no such key in the scenario")
    runs = []
    for v in values:
        dv = copy.deepcopy(d)
        dv[table][name] = v
        sc = scenario_from_dict(dv, base.name)
        runs.append((v, sc))  # all validated before any work starts
    rows = []
    for v, sc in runs:
        folder = Path(out) / f"{key}={v}"
        summary = run_scenario(sc, folder, overwrite=overwrite, progress=progress)
        for b in summary.backends:
            ops = b.metrics.operating_points
            op = ops[0] if ops else None
            rows.append({"value": v, "backend": b.key,
                         "rank1": b.metrics.rank1_hit_rate.value,
                         "target_fpir": op.target_fpir if op else None,
                         "threshold": op.threshold if op else None,
                         "fnir": op.fnir.value if op else None, "fpir": op.fpir.value if op else None,
                         "searches_per_s": b.timings.throughput_searches_per_s,
                         "folder": str(folder)})
    write_json(Path(out) / "sweep.json", {"scenario": str(scenario_path), "key": key,
                                          "values": values, "rows": rows})
    return rows
