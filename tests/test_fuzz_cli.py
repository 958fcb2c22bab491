"""Random and malformed scenarios fed to `fpscale run`: it never shows a
traceback (main only returns 0 or 2, or the test fails on the exception) and
a refused run writes nothing."""

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from bench.cli import main

VALUES = st.one_of(st.integers(-10, 60), st.floats(allow_nan=True, allow_infinity=True),
                   st.booleans(), st.text(max_size=8), st.lists(st.integers(-2, 12), max_size=4))
POP_KEYS = ["seed", "gallery_size", "n_submissions", "mated_share", "legacy_share",
            "gallery_capture", "booking_capture", "search_fingers", "dim", "bits", "fusion",
            "gallery_quality", "colour"]
SEARCH_KEYS = ["candidates", "chunk_size", "probe_batch", "threads", "rescore", "backends", "speed"]


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return {float("inf"): "inf", float("-inf"): "-inf"}.get(v, "nan" if v != v else repr(v))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return str(v)


@st.composite
def scenario_text(draw):
    if draw(st.booleans()):  # not TOML at all, or broken TOML
        return draw(st.text(max_size=60)) + draw(st.sampled_from(["", "[population", "= 3", "[[x]]"]))
    lines = []
    for table, keys in (("population", POP_KEYS), ("search", SEARCH_KEYS)):
        if draw(st.integers(0, 9)) == 0:
            continue
        lines.append(f"[{table}]")
        base = {"gallery_size": 40, "n_submissions": 10} if table == "population" else {}
        chosen = draw(st.lists(st.sampled_from(keys), max_size=3, unique=True))
        vals = dict(base)
        for k in chosen:
            vals[k] = draw(VALUES)
        for k, v in vals.items():
            lines.append(f"{k} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"


@settings(max_examples=40, deadline=None)
@given(scenario_text())
def test_cli_never_tracebacks_and_refusals_write_nothing(tmp_path_factory, text):
    d = tmp_path_factory.mktemp("fz")
    scen = d / "s.toml"
    scen.write_text(text)
    out = d / "out"
    code = main(["run", str(scen), "--out", str(out), "--quiet"])
    assert code in (0, 2)
    if code == 2:
        assert not out.exists() or not any(out.iterdir())
    else:
        man = json.loads((out / "manifest.json").read_text())
        assert man["complete"] and (out / "summary.json").is_file()
