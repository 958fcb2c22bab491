"""Shared test set-up: hypothesis settings and small scenarios as fixtures."""

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import fpscale.bench  # noqa: F401  (points numba's cache at a per-version folder before numba loads)

ROOT = Path(__file__).resolve().parent.parent

# numba compiles on first call: allow slow first examples
settings.register_profile("fpscale", deadline=None, max_examples=25,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("fpscale")


def _tiny(**over) -> dict:
    d = {
        "name": "tiny",
        "population": {"seed": 7, "gallery_size": 800, "n_submissions": 240, "mated_share": 0.4,
                       "legacy_share": 0.3, "search_fingers": [2, 7]},
        "search": {"candidates": 10, "chunk_size": 300, "probe_batch": 100,
                   "backends": [{"name": "numba-flat"}, {"name": "faiss:Flat"},
                                {"name": "numba-hamming"}]},
        "metrics": {"target_fpir": [0.1, 0.01]},
        "projection": {"ladder": [40, 80, 400, 800], "finger_sets": ["one", "two_index"]},
        "target": {"gallery_size": 1_000_000, "searches_per_year": 100_000, "mated_share": 0.063},
    }
    for k, v in over.items():
        sec, key = k.split("__")
        d[sec][key] = v
    if not d["projection"]["ladder"]:
        del d["projection"]
    return d


def _write_toml(path: Path, d: dict) -> Path:
    def val(v):
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {val(x)}" for k, x in v.items()) + " }"
        return repr(v)
    lines = [f"name = {val(d['name'])}"]
    for sec, t in d.items():
        if isinstance(t, dict):
            lines.append(f"[{sec}]")
            lines += [f"{k} = {val(v)}" for k, v in t.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny():
    """tiny(table__key=value, ...): a small valid scenario dict (800 records,
    240 searches), with the given values replaced."""
    return _tiny


@pytest.fixture(scope="session")
def write_toml():
    """write_toml(path, scenario dict): the scenario as a TOML file at path."""
    return _write_toml


@pytest.fixture(scope="session")
def rescored_run(tmp_path_factory):
    """(summary, folder) of a small finished run, read only: numba-flat on
    two index fingers, two of its ten candidates re-scored (so that many
    mates go unlisted)."""
    from fpscale.bench.run.steps import run_scenario
    from fpscale.bench.scenario import scenario_from_dict
    d = _tiny(population__gallery_size=400, population__n_submissions=120,
              search__backends=[{"name": "numba-flat"}], search__rescore=True,
              search__rescore_candidates=2, projection__ladder=[20, 40, 200, 400],
              projection__finger_sets=["two_index"])
    out = tmp_path_factory.mktemp("rescored") / "run"
    return run_scenario(scenario_from_dict(d), out, progress=False), out
