"""Random and malformed input fed to the command line: scenarios to
`fpscale run`, damaged results folders to `fpscale report`, `fpscale
project` and `fpscale compare`, random arguments to `fpscale synth-stats`
and `fpscale bench`.
fpscale never shows a traceback (main only returns 0 or 2, or the test
fails on the exception), says what is wrong in one line, and a refused run
writes nothing."""

import contextlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from fpscale.bench.cli import main
from fpscale.bench.run.steps import run_scenario
from fpscale.bench.scenario import scenario_from_dict
from fpscale.bench.store.files import read_npz, write_npz

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


# -- report, project, synth-stats and bench on crafted folders and arguments --
#
# Each example runs one command in a fresh copy of a finished results folder
# (damaged at random) or with random arguments. The command either succeeds
# or says what is wrong in one line (exit 2), never shows a traceback, and
# never creates, changes or deletes a file outside its results folder: a
# sibling folder and everything else under the parent is compared before and
# after.

FUZZ = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny):
    """A finished run with a ladder, to be copied and damaged."""
    d = tiny(population__gallery_size=600, population__n_submissions=150,
             search__candidates=5, search__chunk_size=200, search__probe_batch=50,
             search__backends=[{"name": "numba-flat"}], metrics__target_fpir=[0.1],
             projection__ladder=[150, 300, 600])
    d["projection"]["finger_sets"] = ["one"]
    out = tmp_path_factory.mktemp("finished") / "res"
    run_scenario(scenario_from_dict(d), out, progress=False)
    return out


def _tree(root: Path, skip: Path) -> dict:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if Path(dirpath) / x != skip]
        for name in dirs + files:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def _workspace(tmp_path_factory) -> Path:
    parent = tmp_path_factory.mktemp("ws")
    (parent / "sibling").mkdir()
    (parent / "sibling" / "keep.npz").write_bytes(b"not fpscale's")
    (parent / "sibling" / "x.png").write_bytes(b"not fpscale's")
    return parent


def _run_cli(args: list, parent: Path, res: Path) -> tuple[int, str]:
    before = _tree(parent, res)
    err, out = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(parent)  # relative names land here, where they are watched
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = main([str(a) for a in args])
    finally:
        os.chdir(cwd)
    text = err.getvalue()
    assert code in (0, 2), (code, text)
    event(f"exit {code}")
    assert "Traceback" not in text
    if code == 2:
        lines = [x for x in text.splitlines() if x.startswith("fpscale: error:")]
        assert len(lines) == 1 and text.count("\n") == 1, text
    assert _tree(parent, res) == before, f"{args} changed files outside {res}"
    return code, text


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["/../../../elsewhere/x", "../sibling/x", "one", "all", "\u0000"]),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=12), kids, max_size=3),
    max_leaves=6)


def _paths(o, prefix=()):
    yield prefix
    if isinstance(o, dict):
        for k, v in o.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(o, list):
        for i, v in enumerate(o[:3]):
            yield from _paths(v, prefix + (i,))


@st.composite
def damage(draw):
    """A function that damages one file of a results folder."""
    kind = draw(st.sampled_from(["summary", "summary", "summary", "manifest", "ladder", "bytes",
                                 "link", "literal"]))
    value = draw(JSON_VALUES)
    pick = draw(st.integers(0, 10**6))
    delete = draw(st.booleans())
    raw = draw(st.binary(max_size=64))
    literal = draw(st.sampled_from(["NaN", "Infinity", "-1e400", "1e400", "[" * 5000, "{}", "[]"]))

    def apply(res: Path) -> None:
        if kind in ("summary", "manifest"):
            p = res / f"{kind}.json"
            d = json.loads(p.read_text())
            paths = list(_paths(d))
            path = paths[pick % len(paths)]
            if not path:
                d = value
            else:
                t = d
                for k in path[:-1]:
                    t = t[k]
                if delete and isinstance(t, dict):
                    del t[path[-1]]
                else:
                    t[path[-1]] = value
            p.write_text(json.dumps(d))
        elif kind == "literal":
            p = res / "summary.json"
            text = p.read_text()
            i = text.find(": ", pick % max(len(text), 1))
            if i > 0:
                j = min(x for x in (text.find(",", i), text.find("\n", i), len(text)) if x >= 0)
                p.write_text(text[:i + 2] + literal + text[j:])
        elif kind == "ladder":
            p = res / "ladder_one.npz"
            st_ = read_npz(p)
            k = sorted(st_)[pick % len(st_)]
            a = st_[k]
            st_[k] = a[: max(0, len(a) - 1 - pick % 3)] if delete else \
                np.full(a.shape, np.nan if a.dtype.kind == "f" else -5, dtype=a.dtype)
            write_npz(p, **st_)
        elif kind == "bytes":
            names = ["summary.json", "manifest.json", "ladder_one.npz"]
            (res / names[pick % 3]).write_bytes(raw)
        else:  # a file or sub-folder replaced by a link out of the folder
            names = ["summary.json", "plots", "ladder_one.npz", "report.md"]
            p = res / names[pick % 4]
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
            p.symlink_to(res.parent / "sibling")
    return apply


@FUZZ
@given(damage(), st.sampled_from(["report", "project"]),
       st.lists(st.sampled_from(["--gallery-size", "--searches-per-year", "--mated-share"]),
                max_size=2, unique=True),
       st.lists(st.sampled_from(["0", "-1", "1", "5000000", "nan", "inf", "1e400", "0.5", "2",
                                 "99999999999999999999", "x"]), min_size=2, max_size=2))
def test_report_and_project_on_damaged_folders(tmp_path_factory, finished, harm, command,
                                               opts, values):
    parent = _workspace(tmp_path_factory)
    res = parent / "res"
    shutil.copytree(finished, res, symlinks=True)
    harm(res)
    args = [command, res]
    if command == "project":
        for o, v in zip(opts, values):
            args += [o, v]
    _run_cli(args, parent, res)


@FUZZ
@given(damage())
def test_compare_reads_damaged_folders_and_writes_only_its_own(tmp_path_factory, finished, harm):
    parent = _workspace(tmp_path_factory)
    res, good = parent / "res", parent / "good"
    shutil.copytree(finished, res, symlinks=True)
    shutil.copytree(finished, good, symlinks=True)
    harm(res)
    out = parent / "cmp"
    # both runs are watched too: compare only reads them
    code, _ = _run_cli(["compare", good, res, "--out", out], parent, out)
    if code == 0:
        assert (out / "report.html").is_file() and (out / "operating_points.csv").is_file()


SIZE_TOKENS = st.sampled_from(["1e400", "nan", "inf", "-1", "0", "2", "40", "64", "200", "2.5",
                               "1e9", "abc", "", "1e2", "0x10"])


@FUZZ
@example(["40", "64"], ["numba-flat", "faiss:HNSW8"], 8, 3)
@given(st.lists(SIZE_TOKENS, min_size=1, max_size=4),
       st.lists(st.sampled_from(["numba-flat", "numba-hamming", "faiss:Flat", "faiss:HNSW8",
                                 "faiss:IVF1024,Flat", "faiss:IVF4,Flat", "faiss:BFlat", "nope",
                                 "faiss:", "faiss:PQ3"]), min_size=1, max_size=2),
       st.sampled_from([-1, 0, 8, 16, 10**6]), st.sampled_from([-5, 0, 3, 10**8]))
def test_bench_scaling_arguments(tmp_path_factory, sizes, backends, dim, probes):
    parent = _workspace(tmp_path_factory)
    res = parent / "res"
    _run_cli(["bench", "scaling", "--sizes", ",".join(sizes), "--backends", ",".join(backends),
              "--dim", dim, "--probes", probes, "--out", res, "--quiet"], parent, res)


@FUZZ
@example(10, 7, None)
@given(st.sampled_from([-5, 0, 1, 9, 10, 12, 10**6, 10**12]),
       st.sampled_from([-1, 0, 7, 2**63 - 1, 2**63, 2**80]),
       st.sampled_from([None, "missing.toml", "bad", "deep", "nan"]))
def test_synth_stats_arguments(tmp_path_factory, n, seed, scenario):
    parent = _workspace(tmp_path_factory)
    args = ["synth-stats", "-n", n, "--seed", seed]
    texts = {"bad": "[population\n", "deep": "x = " + "[" * 3000 + "]" * 3000,
             "nan": "[population]\nseed = nan\n"}
    if scenario in texts:
        (parent / "s.toml").write_text(texts[scenario])
        args += ["--scenario", "s.toml"]
    elif scenario:
        args += ["--scenario", scenario]
    _run_cli(args, parent, parent / "none")
