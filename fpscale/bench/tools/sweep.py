"""``fpscale sweep``: one scenario run over several values of one key."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

from fpscale.bench.run.progress import stage
from fpscale.bench.run.steps import run_scenario
from fpscale.bench.report.plots import plot_sweep
from fpscale.bench.scenario import ScenarioError, load_scenario, parse_value, safe_name, scenario_from_dict
from fpscale.bench.store.files import write_bytes, write_csv, write_json


def parse_values(text: str) -> list:
    """"1000,2000" -> [1000, 2000]; values are read as TOML scalars."""
    if len(text) > 10_000:
        raise ScenarioError("--values: give at most 10,000 characters of values")
    out = [parse_value(raw.strip()) for raw in text.split(",")]
    if not out or any(v == "" for v in out) or len(out) > 100:
        raise ScenarioError(f"--values {text[:60]!r}: give a comma-separated list of up to 100 "
                            "values such as 1000,2000")
    return out


def sweep(scenario_path: str, key: str, values: list, out: Path, overwrite: bool = False,
          progress: bool = True) -> list[dict]:
    """Run the scenario once per value of key ("table.name", e.g.
    population.gallery_size) into out/<key>=<value>; returns one row per run."""
    base = load_scenario(scenario_path)
    d = dataclasses.asdict(base)
    if "." not in key:
        raise ScenarioError(f"--key {key[:60]!r}: use table.name, e.g. population.gallery_size")
    table, name = key.split(".", 1)
    if table not in d or not isinstance(d[table], dict) or name not in d[table]:
        raise ScenarioError(f"--key {key[:60]!r}: no such key in the scenario")
    runs = []
    for v in values:
        dv = copy.deepcopy(d)
        dv[table][name] = v
        sc = scenario_from_dict(dv, base.name)
        runs.append((v, sc))  # all validated before any work starts
    folders = [Path(out) / f"{safe_name(key)}={safe_name(str(v))}" for v, _ in runs]  # own names
    if len(set(folders)) != len(folders):
        raise ScenarioError("--values: two values give the same folder name; give distinct values")
    rows = []
    with stage(f"sweep {key}", len(runs), "runs", progress) as st:
        for (v, sc), folder in zip(runs, folders):
            summary = run_scenario(sc, folder, overwrite=overwrite, progress=progress)
            for b in summary.backends:
                ops = b.metrics.operating_points
                op = ops[0] if ops else None
                r1 = b.metrics.rank1_hit_rate
                fn = op.fnir if op and op.fnir else None
                fp = op.fpir if op and op.fpir else None
                rows.append({"value": v, "backend": b.key,
                             "rank1": r1.value, "rank1_low": r1.ci95[0], "rank1_high": r1.ci95[1],
                             "target_fpir": op.target_fpir if op else None,
                             "threshold": op.threshold if op else None,
                             "fnir": fn.value if fn else None,
                             "fnir_low": fn.ci95[0] if fn else None,
                             "fnir_high": fn.ci95[1] if fn else None,
                             "fpir": fp.value if fp else None,
                             "fpir_low": fp.ci95[0] if fp else None,
                             "fpir_high": fp.ci95[1] if fp else None,
                             "searches_per_s": b.timings.throughput_searches_per_s,
                             "folder": str(folder)})
            st.update(1)
    write_json(Path(out) / "sweep.json", {"scenario": str(scenario_path), "key": key,
                                          "values": values, "rows": rows})
    header = list(rows[0]) if rows else ["value"]
    write_csv(Path(out) / "sweep.csv", header, [[r[k] for k in header] for r in rows])
    write_bytes(Path(out) / "sweep.png", plot_sweep(rows, key))
    return rows
