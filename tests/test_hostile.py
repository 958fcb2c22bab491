"""Hostile and careless use, case by case: each is refused with exit code 2
and one line on stderr, without a traceback and without a new file, or
(damaged state) repaired to the results of an uninterrupted run. Nothing
outside the results folder is ever written or deleted."""

import dataclasses
import fcntl
import http.server
import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fpscale.bench.cli import main
from fpscale.bench.report.write import report_files
from fpscale.bench.run import checkpoints as ck_mod
from fpscale.bench.run import cluster as cluster_mod
from fpscale.bench.run.planner import COMPILE, kernel_modules, plan
from fpscale.bench.run.steps import run_scenario
from fpscale.bench.scenario import scenario_from_dict
from fpscale.bench.store.files import FILE_MODE, file_digest, read_npz, write_npz
from fpscale.bench.run.host import fpscale_version
from fpscale.bench.store.manifest import LOCK, open_for_run
from fpscale.bench.store.summary import read_summary


def _micro(tiny, ladder=False, **over):
    d = tiny(population__gallery_size=600, population__n_submissions=150,
             search__candidates=5, search__chunk_size=200, search__probe_batch=50,
             search__backends=[{"name": "numba-flat"}, {"name": "faiss:Flat"}],
             metrics__target_fpir=[0.1],
             projection__ladder=[150, 300, 600] if ladder else [])
    if ladder:
        d["projection"]["finger_sets"] = ["one"]
    d["name"] = "micro"
    for k, v in over.items():
        sec, key = k.split("__")
        d.setdefault(sec, {})[key] = v
    return d


def _snapshot(root: Path) -> dict:
    out = {}
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def _cli(args, capsys):
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    return code, err


def _one_line(err: str, needle: str = "") -> None:
    assert err.count("\n") == 1 and err.startswith("fpscale: error: "), err
    assert "Traceback" not in err
    assert needle in err, err


def _refused(args, capsys, watch: Path, needle: str = "") -> str:
    before = _snapshot(watch)
    code, err = _cli(args, capsys)
    assert code == 2, err
    _one_line(err, needle)
    assert _snapshot(watch) == before, "a refused command changed files"
    return err


@pytest.fixture(scope="module")
def ref_plain(tmp_path_factory, tiny):
    """A complete run of a small scenario without a ladder: what every
    repaired folder must equal."""
    out = tmp_path_factory.mktemp("ref") / "plain"
    run_scenario(scenario_from_dict(_micro(tiny)), out, progress=False)
    return out


@pytest.fixture(scope="module")
def ref_ladder(tmp_path_factory, tiny):
    out = tmp_path_factory.mktemp("ref") / "ladder"
    run_scenario(scenario_from_dict(_micro(tiny, ladder=True)), out, progress=False)
    return out


class _Interrupted(BaseException):
    pass


@pytest.fixture(scope="module")
def partial(tmp_path_factory, tiny):
    """The small scenario interrupted after its gallery was built and two
    probe batches of the first backend were searched (checkpoint per chunk)."""
    out = tmp_path_factory.mktemp("partial") / "run"
    mp = pytest.MonkeyPatch()
    seen = []

    def crash(self, step, before):
        if step.startswith("search_next") and not before:
            seen.append(step)
            if len(seen) == 2:
                raise _Interrupted
    mp.setattr(ck_mod, "CHECKPOINT_S", 0.0)
    mp.setattr(ck_mod.Checkpoints, "_maybe_crash", crash)
    try:
        with pytest.raises(_Interrupted):
            run_scenario(scenario_from_dict(_micro(tiny)), out, progress=False)
    finally:
        mp.undo()
    names = sorted(p.name for p in (out / "state").iterdir())
    # numba-flat's checkpoints appended a part per chunk; faiss's were rewritten
    assert {"index_numba-flat@0-1.npz", "index_numba-flat@1-2.npz", "index_numba-flat@2-3.npz",
            "index_faiss-Flat@3.npz", "search_numba-flat@100.npz"} <= set(names), names
    assert not any(n.startswith("index_faiss-Flat@") and n != "index_faiss-Flat@3.npz" for n in names)
    return out


def _same_results(ref: Path, out: Path) -> None:
    man = json.loads((out / "manifest.json").read_text())
    assert man["complete"] and not list((out / "state").iterdir())
    a = json.loads((ref / "summary.json").read_text())
    b = json.loads((out / "summary.json").read_text())
    assert [x["metrics"] for x in a["backends"]] == [x["metrics"] for x in b["backends"]]
    assert a.get("projection") == b.get("projection")
    files = sorted(f.name for f in ref.glob("*.npz"))
    assert files == sorted(f.name for f in out.glob("*.npz"))
    for name in files:
        x, y = read_npz(ref / name), read_npz(out / name)
        for k in x:
            assert np.array_equal(x[k], y[k]), (name, k)
    for rel, entry in man["files"].items():  # the manifest checks out
        assert file_digest(out / rel) == entry, rel


# -- resources ---------------------------------------------------------------

@pytest.mark.parametrize("over,needle", [
    ({"metrics__thresholds": 1_000_000_000}, "[metrics] thresholds"),
    ({"metrics__rank": 1_000_000_000_000}, "[metrics] rank"),
    ({"metrics__rank": 6}, "in [1, 5]"),  # beyond the candidate list
    ({"search__threads": 1_000_000}, "[search] threads"),
    ({"search__chunk_size": 10**12}, "[search] chunk_size"),
    ({"search__probe_batch": 10**12}, "[search] probe_batch"),
    ({"search__candidates": 10**9}, "[search] candidates"),
    ({"search__backends": [{"name": "faiss:IVF16,Flat", "train_size": 10**12}]}, "train_size"),
    ({"population__gallery_size": 10**15}, "gallery_size"),
    ({"target__gallery_size": 10**15}, "[target] gallery_size"),
    ({"cluster__workers": 10**7}, "[cluster] workers"),
])
def test_resource_values_are_bounded(tmp_path, capsys, tiny, write_toml, over, needle):
    scen = write_toml(tmp_path / "s.toml", _micro(tiny, **over))
    _refused(["run", scen, "--out", tmp_path / "o", "--quiet"], capsys, tmp_path, needle)


def test_plan_counts_first_compilation_and_the_det_sweep(tiny, monkeypatch, tmp_path):
    sc = scenario_from_dict(_micro(tiny))
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "empty"))
    cold = plan(sc)
    # warm: kernels of every module the scenario runs are cached; a cache
    # missing one module's kernels still compiles, so it counts as cold
    mods = sorted(kernel_modules(sc))
    assert {"exact", "impressions"} <= set(mods) and "ladder" not in mods  # no ladder here
    (tmp_path / "warm" / "x").mkdir(parents=True)
    for m in mods:
        (tmp_path / "warm" / "x" / f"{m}.kernel-12.py311.nbi").write_bytes(b"")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "warm"))
    warm = plan(sc)
    assert cold.total - warm.total == COMPILE
    (tmp_path / "warm" / "x" / f"{mods[0]}.kernel-12.py311.nbi").unlink()
    assert plan(sc).total == cold.total
    def det(n):
        return plan(scenario_from_dict(_micro(tiny, population__n_submissions=200_000,
                                              metrics__thresholds=n)))
    assert det(10_000).transient > det(10).transient


def test_max_memory_below_a_cold_first_run_is_refused(tmp_path, capsys, tiny, write_toml,
                                                      monkeypatch):
    scen = write_toml(tmp_path / "s.toml", _micro(tiny))
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "empty-cache"))
    _refused(["run", scen, "--out", tmp_path / "o", "--max-memory", "400M", "--quiet"], capsys,
             tmp_path, "needs about")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400G", "-5M", "0", "", "12Q"])
def test_max_memory_must_be_a_finite_positive_size(tmp_path, capsys, tiny, write_toml, value):
    scen = write_toml(tmp_path / "s.toml", _micro(tiny))
    _refused(["run", scen, "--out", tmp_path / "o", "--max-memory", value], capsys, tmp_path,
             "--max-memory")


# -- values checked before anything is written ---------------------------------

def _raw(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.toml"
    p.write_text(text)
    return p


BASE_TOML = '[population]\ngallery_size = 400\nn_submissions = 50\n'


@pytest.mark.parametrize("text,needle", [
    (BASE_TOML + "[target]\nsearches_per_year = nan\n", "searches_per_year"),
    (BASE_TOML + "[target]\nsearches_per_year = inf\n", "searches_per_year"),
    (BASE_TOML + "[target]\nmated_share = nan\n", "mated_share"),
    (BASE_TOML.replace("n_submissions = 50", "n_submissions = 50\nsearch_fingers = [true, 7]"),
     "search_fingers"),
    ('name = "a\\u0000b"\n' + BASE_TOML, "name"),
    ('name = "../../../elsewhere/x"\n' + BASE_TOML, "name"),
    ('name = "/tmp/elsewhere/x"\n' + BASE_TOML, "name"),
    ("x = " + "[" * 20_000 + "]" * 20_000 + "\n", "nested"),
    ("[" + ".".join(["t"] * 2000) + "]\nv = 1\n", "nested"),
    (BASE_TOML + '[search]\nbackends = [{name = "faiss:IVF1024,Flat"}]\n', "training points"),
    (BASE_TOML + '[search]\nbackends = [{name = "faiss:IVF16,Flat", params = "nprobee=4"}]\n',
     "do not apply"),
    (BASE_TOML + '[search]\nbackends = [{name = "numba-flat", params = "nprobe=4"}]\n',
     "takes no search parameters"),
    (BASE_TOML + '[search]\nbackends = [{name = "faiss:IVF16,Flat", params = "nprobe=0"}]\n',
     "params"),
    (BASE_TOML + '[cluster]\nscheduler = "tcp://h:99999"\n', "scheduler"),
    (BASE_TOML + 'description = "' + "x" * 30_000 + '"\n', "description"),
    (BASE_TOML + '[search]\nbackends = ["faiss:IVF0,Flat"]\n', "IVF0"),
    (BASE_TOML + '[search]\nbackends = ["faiss:IVF4,PQ8x20"]\n', "more than 16 bits"),
    (BASE_TOML.replace("n_submissions = 50", "n_submissions = 50\ndim = 4096"), "dim"),
])
def test_bad_scenarios_are_refused_before_anything_is_written(tmp_path, capsys, text, needle):
    scen = _raw(tmp_path, text)
    _refused(["run", scen, "--out", tmp_path / "o", "--quiet"], capsys, tmp_path, needle)


@pytest.mark.parametrize("name", ["../../../elsewhere/x", "/tmp/elsewhere-abs/x", "..", "a/b"])
def test_scenario_names_never_leave_results(tmp_path, capsys, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    scen = _raw(tmp_path, f"name = {json.dumps(name)}\n" + BASE_TOML)
    _refused(["run", scen, "--quiet"], capsys, tmp_path, "name")
    assert not Path("/tmp/elsewhere-abs").exists()


def test_a_file_stem_becomes_a_plain_folder_name(tmp_path, capsys):
    from fpscale.bench.scenario import load_scenario
    p = tmp_path / "my scenario (copy).toml"
    p.write_text(BASE_TOML)
    assert load_scenario(p).name == "my-scenario--copy-"


@pytest.mark.parametrize("out", ["x" * 300, "a\0b"])
def test_out_names_the_system_cannot_hold(tmp_path, capsys, tiny, write_toml, out, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scen = write_toml(tmp_path / "s.toml", _micro(tiny))
    _refused(["run", scen, "--out", out, "--quiet"], capsys, tmp_path, "--out")


@pytest.mark.parametrize("args,needle", [
    (["synth-stats", "-n", "0"], "-n 0"),
    (["synth-stats", "-n", "-3"], "-n"),
    (["synth-stats", "-n", "1000000000"], "-n"),
    (["synth-stats", "--seed", "-1"], "--seed"),
    (["synth-stats", "-n", "many"], "invalid int"),
    (["bench", "scaling", "--sizes", "1e400,2"], "--sizes"),
    (["bench", "scaling", "--sizes", "nan,2"], "--sizes"),
    (["bench", "scaling", "--sizes", "5,5"], "--sizes"),
    (["bench", "scaling", "--sizes", "2.5,10"], "--sizes"),
    (["bench", "scaling", "--sizes", "100,200"], "training points"),  # IVF1024 by default
    (["bench", "scaling", "--sizes", "100,200", "--backends", "numba-flat", "--dim", "0"], "--dim"),
    (["bench", "scaling", "--sizes", "100,200", "--backends", "numba-flat", "--probes", "10000000"],
     "--probes"),
    (["bench", "scaling", "--sizes", "100,200", "--backends", "nope"], "unknown backend"),
    (["bench", "scaling", "--sizes", "1e8,2", "--backends", "numba-flat", "--dim", "4096"], "GiB"),
    (["run"], "required"),
    (["frobnicate"], "invalid choice"),
])
def test_cli_arguments_are_checked_first(tmp_path, capsys, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    if args[0] == "bench":
        args = args + ["--out", "sc", "--quiet"]
    _refused(args, capsys, tmp_path, needle)


# -- damaged state: recovered to the uninterrupted results ----------------------

def _damaged(partial: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(partial, out, symlinks=True)
    return out


def _resume(out: Path, tiny, capsys, needle: str) -> None:
    run_scenario(scenario_from_dict(_micro(tiny)), out, progress=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fpscale: warning: ") and needle in err[0], err


def test_truncated_state_file_is_rebuilt(partial, ref_plain, tmp_path, tiny, capsys):
    out = _damaged(partial, tmp_path)
    p = out / "state" / "index_numba-flat@1-2.npz"  # an appended part, written once
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    _resume(out, tiny, capsys, "building the gallery again")
    _same_results(ref_plain, out)


def test_bit_flipped_state_file_is_searched_again(partial, ref_plain, tmp_path, tiny, capsys):
    out = _damaged(partial, tmp_path)
    p = out / "state" / "search_numba-flat@100.npz"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x10
    p.write_bytes(bytes(data))
    _resume(out, tiny, capsys, "checksum")
    _same_results(ref_plain, out)


def test_deleted_state_file_is_rebuilt(partial, ref_plain, tmp_path, tiny, capsys):
    out = _damaged(partial, tmp_path)
    (out / "state" / "index_faiss-Flat@3.npz").unlink()
    _resume(out, tiny, capsys, "is missing")
    _same_results(ref_plain, out)


def test_checkpoint_with_ids_shorter_than_its_vectors_is_not_used(partial, ref_plain, tmp_path,
                                                                  tiny, capsys):
    # a well-formed file whose checksum the manifest agrees with: only its
    # shapes give it away (the kernel would read past the ids)
    out = _damaged(partial, tmp_path)
    rel = "state/index_numba-flat@2-3.npz"
    st = read_npz(out / rel)
    m = len(st["ids"])
    write_npz(out / rel, vecs=st["vecs"], ids=st["ids"][:-100])
    man = json.loads((out / "manifest.json").read_text())
    man["files"][rel] = file_digest(out / rel)
    (out / "manifest.json").write_text(json.dumps(man))
    _resume(out, tiny, capsys, f"ids is int64 ({m - 100},), expected int64 ({m},)")
    _same_results(ref_plain, out)
    cand = read_npz(out / "searches_numba-flat.npz")["cand_ids"]
    assert cand.min() >= 0 and cand.max() < 600


@pytest.mark.parametrize("edit,needle", [
    (lambda s: s.update({"search_next:numba-flat": [70, 0.1]}), "checkpoint boundary"),
    (lambda s: s.update({"search_next:numba-flat": [100, -1.0]}), "time in seconds"),
    (lambda s: s.update({"build_next": 99}), "build_next = 99"),
    (lambda s: s.update({"build_parts": [2, 1, 3]}), "build_parts is not the increasing"),
    (lambda s: s.update({"build_parts": [1, 3]}), "index_numba-flat@1-3.npz is not listed"),
    (lambda s: s.update({"search_next:numba-flat": "lots"}), "not [count, seconds]"),
    (lambda s: s.update({"run_time": [2, float("nan")]}), "run_time = nan is not a time"),
    (lambda s: s.update({"run_time": [0, 5.0]}), "run_time = 0 is not in [1,"),
    (lambda s: s.update({"run_time": {"starts": 2}}), "not [starts, seconds]"),
])
def test_hand_edited_checkpoint_values_are_not_trusted(partial, ref_plain, tmp_path, tiny, capsys,
                                                       edit, needle):
    out = _damaged(partial, tmp_path)
    man = json.loads((out / "manifest.json").read_text())
    edit(man["steps"])
    (out / "manifest.json").write_text(json.dumps(man))
    _resume(out, tiny, capsys, needle)
    _same_results(ref_plain, out)


def test_state_that_is_a_file_is_refused_with_the_command_that_starts_afresh(
        partial, tmp_path, tiny, write_toml, capsys):
    out = _damaged(partial, tmp_path)
    shutil.rmtree(out / "state")
    (out / "state").write_text("not a folder")
    scen = write_toml(tmp_path / "s.toml", _micro(tiny))
    err = _refused(["run", scen, "--out", out, "--quiet"], capsys, tmp_path, "start afresh with: ")
    assert f"--out {out}-2" in err


def test_manifest_that_is_a_json_list_is_refused(partial, tmp_path, tiny, write_toml, capsys):
    out = _damaged(partial, tmp_path)
    (out / "manifest.json").write_text("[1, 2, 3]\n")
    scen = write_toml(tmp_path / "s.toml", _micro(tiny))
    _refused(["run", scen, "--out", out, "--quiet"], capsys, tmp_path, "start afresh with: ")
    _refused(["run", scen, "--out", out, "--overwrite", "--quiet"], capsys, tmp_path,
             "start afresh with: ")


def test_damaged_file_of_a_complete_folder_is_recomputed(ref_plain, tmp_path, tiny, capsys):
    out = _damaged(ref_plain, tmp_path)
    (out / "searches_faiss-Flat.npz").unlink()
    _resume(out, tiny, capsys, "searches_faiss-Flat.npz is missing; running the scenario again")
    _same_results(ref_plain, out)
    (out / "report.md").write_text("edited\n")
    _resume(out, tiny, capsys, "report.md has 7 bytes where fpscale wrote")
    man = json.loads((out / "manifest.json").read_text())
    assert file_digest(out / "report.md") == man["files"]["report.md"]
    assert (out / "report.md").read_text().startswith("# fpscale report: micro")


def test_damaged_ladder_state_is_rebuilt(ref_ladder, tmp_path, tiny, capsys, monkeypatch):
    out = tmp_path / "lad"
    seen = []

    def crash(self, step, before):
        if step.startswith("search_next") and not before:
            seen.append(step)
            raise _Interrupted
    monkeypatch.setattr(ck_mod, "CHECKPOINT_S", 0.0)
    monkeypatch.setattr(ck_mod.Checkpoints, "_maybe_crash", crash)
    sc = scenario_from_dict(_micro(tiny, ladder=True))
    with pytest.raises(_Interrupted):
        run_scenario(sc, out, progress=False)
    monkeypatch.undo()
    p = out / "state" / "ladder_one@3.npz"
    data = bytearray(p.read_bytes())
    data[-200] ^= 0x01
    p.write_bytes(bytes(data))
    run_scenario(sc, out, progress=False)
    err = capsys.readouterr().err
    assert "ladder_one@3.npz" in err and "building the gallery again" in err
    _same_results(ref_ladder, out)


# -- writing where it must not -------------------------------------------------

def _copy_results(ref: Path, parent: Path) -> Path:
    out = parent / "res"
    shutil.copytree(ref, out)
    (parent / "sibling").mkdir()
    (parent / "sibling" / "keep.npz").write_bytes(b"user data")
    return out


def _edit_summary(out: Path, fn) -> None:
    d = json.loads((out / "summary.json").read_text())
    d = fn(d)
    (out / "summary.json").write_text(json.dumps(d) if not isinstance(d, str) else d)


def _rename_projection(key):
    def fn(d):
        d["projection"] = {key: d["projection"]["one"]}
        return d
    return fn


def _deep(d):
    x = []
    for _ in range(300):
        x = [x]
    d["host"]["versions"] = {"numpy": x}
    return d


def _drop(path):
    def fn(d):
        t = d
        for k in path[:-1]:
            t = t[k]
        del t[path[-1]]
        return d
    return fn


def _set(path, value):
    def fn(d):
        t = d
        for k in path[:-1]:
            t = t[k]
        t[path[-1]] = value
        return d
    return fn


SUMMARY_EDITS = [
    (_rename_projection("/../../../../elsewhere/x"), "projection key"),
    (_rename_projection("../sibling/x"), "projection key"),
    (lambda d: [d], "JSON object"),
    (_drop(["backends"]), "missing value"),
    (_drop(["projection", "one", "at_target"]), "missing value"),
    (lambda d: json.dumps(d).replace('"wall_s": ', '"wall_s": NaN, "x": '), "not readable JSON"),
    (_set(["wall_s"], "fast"), "wrong value type"),
    (_set(["scenario", "target", "gallery_size"], "lots"), "gallery_size"),
    (_set(["scenario", "target", "searches_per_year"], -1), "searches_per_year"),
    (_deep, "nested"),
    (_set(["projection", "one", "rungs"], []), "rungs"),
    (_set(["projection", "one", "at_target", 0, "measured"], []), "every rung"),
    (_set(["projection", "one", "at_target", 0, "fpir", "ci95"], [0.1]), "two-sided interval"),
    (_set(["backends", 0, "metrics", "rank1_hit_rate", "ci95"], [0.1]), "interval"),
    (lambda d: "1" * 5000, "not readable JSON"),
    (lambda d: "[" * 100_000 + "]" * 100_000, "not readable JSON"),
]


@pytest.mark.parametrize("edit,needle", SUMMARY_EDITS)
def test_report_and_project_treat_the_folder_as_untrusted(ref_ladder, tmp_path, capsys, edit, needle):
    out = _copy_results(ref_ladder, tmp_path)
    _edit_summary(out, edit)
    _refused(["report", out], capsys, tmp_path, needle)
    _refused(["project", out, "--gallery-size", "5000000"], capsys, tmp_path, needle)
    assert not Path("/elsewhere").exists()


@pytest.mark.parametrize("args,needle", [
    (["--searches-per-year", "nan"], "searches_per_year"),
    (["--searches-per-year", "inf"], "searches_per_year"),
    (["--searches-per-year", "-1"], "searches_per_year"),
    (["--gallery-size", "0"], "gallery_size"),
    (["--gallery-size", str(10**15)], "gallery_size"),
    (["--mated-share", "nan"], "mated_share"),
    (["--mated-share", "2"], "mated_share"),
])
def test_project_arguments(ref_ladder, tmp_path, capsys, args, needle):
    out = _copy_results(ref_ladder, tmp_path)
    _refused(["project", out, *args], capsys, tmp_path, needle)


def test_project_checks_ladder_arrays(ref_ladder, tmp_path, capsys):
    out = _copy_results(ref_ladder, tmp_path)
    st = read_npz(out / "ladder_one.npz")
    st["top_nonmate"] = st["top_nonmate"][:, :2]
    write_npz(out / "ladder_one.npz", **st)
    _refused(["project", out], capsys, tmp_path, "top_nonmate")
    (out / "ladder_one.npz").write_bytes(b"PK\x03\x04 truncated")
    _refused(["project", out], capsys, tmp_path, "not a readable npz")


def test_report_and_project_write_only_fpscale_names(ref_ladder, tmp_path, capsys):
    out = _copy_results(ref_ladder, tmp_path)
    before = _snapshot(tmp_path / "sibling")
    code, err = _cli(["report", out], capsys)
    assert code == 0, err
    code, err = _cli(["project", out, "--gallery-size", "5000000"], capsys)
    assert code == 0, err
    assert (out / "projection_5000000.json").is_file()
    assert _snapshot(tmp_path / "sibling") == before
    man = json.loads((out / "manifest.json").read_text())
    for rel in ("report.md", "plots/heldout_one.png", "projection_5000000.json"):
        assert file_digest(out / rel) == man["files"][rel]
    # a complete folder still verifies: nothing is recomputed
    assert read_summary(out).backends


def test_report_without_a_manifest_or_over_a_user_file(ref_ladder, tmp_path, capsys):
    out = _copy_results(ref_ladder, tmp_path)
    (out / "manifest.json").unlink()
    _refused(["report", out], capsys, tmp_path, "no manifest.json")
    out2 = tmp_path / "res2"
    shutil.copytree(ref_ladder, out2)
    man = json.loads((out2 / "manifest.json").read_text())
    del man["files"]["plots/cmc.png"]  # a plot fpscale did not write
    (out2 / "manifest.json").write_text(json.dumps(man))
    _refused(["report", out2], capsys, tmp_path, "fpscale did not write it")


def test_a_run_without_mated_searches_completes(tmp_path, tiny, capsys):
    # no mate scores: the projection has no FNIR at its threshold, and the
    # report and the table say so instead of failing to format None
    d = _micro(tiny, ladder=True, population__mated_share=0.0)
    out = tmp_path / "o"
    run_scenario(scenario_from_dict(d), out, progress=False)
    assert "simulated FNIR is" not in (out / "report.md").read_text()


def test_binary_ivf_trains_and_runs(tmp_path, tiny):
    d = _micro(tiny, search__backends=[{"name": "faiss:BIVF4", "params": "nprobe=2",
                                        "train_size": 600}])
    s = run_scenario(scenario_from_dict(d), tmp_path / "o", progress=False)
    assert s.backends[0].key == "faiss-BIVF4_nprobe-2"


def test_description_that_looks_like_markup_renders(ref_ladder):
    s = read_summary(ref_ladder)
    s.scenario = dataclasses.replace(s.scenario, description="![x\n# not a heading\n| no | table")
    files = report_files(s)
    html = files["report.html"].decode()
    assert "<p>![x</p>" in html and "<p># not a heading</p>" in html


def test_symlinked_state_and_plots_are_refused(ref_plain, tmp_path, tiny, write_toml, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.npz").write_bytes(b"user data")
    out = tmp_path / "res"
    shutil.copytree(ref_plain, out)
    shutil.rmtree(out / "state")
    shutil.rmtree(out / "plots")
    (out / "state").symlink_to(outside)
    (out / "plots").symlink_to(outside)
    scen = write_toml(tmp_path / "s.toml", _micro(tiny))
    for extra in ([], ["--overwrite"]):
        _refused(["run", scen, "--out", out, "--quiet", *extra], capsys, tmp_path, "link")
    _refused(["report", out], capsys, tmp_path, "link")
    assert (outside / "precious.npz").read_bytes() == b"user data"


def test_overwrite_removes_only_files_its_manifest_lists(ref_plain, tmp_path, tiny, write_toml,
                                                         capsys):
    # another tool's folder: its manifest.json, summary.json, report, plots and npz
    other = tmp_path / "other"
    (other / "plots").mkdir(parents=True)
    (other / "manifest.json").write_text(json.dumps({"tool": "else", "version": 3}))
    for name in ("summary.json", "report.md", "plots/a.png", "data.npz", "truth.npz"):
        (other / name).write_text("user's")
    scen = write_toml(tmp_path / "s.toml", _micro(tiny))
    for extra in ([], ["--overwrite"]):
        _refused(["run", scen, "--out", other, "--quiet", *extra], capsys, tmp_path,
                 "fpscale did not write")
    # fpscale's own folder of another scenario: --overwrite keeps the user's files
    out = tmp_path / "res"
    shutil.copytree(ref_plain, out)
    (out / "notes.txt").write_text("mine")
    (out / "plots" / "mine.png").write_text("mine")
    (out / "searches_mine.npz").write_text("mine")
    scen2 = write_toml(tmp_path / "s2.toml", _micro(tiny, population__seed=9))
    _refused(["run", scen2, "--out", out, "--quiet"], capsys, tmp_path, "another scenario")
    listed = set(json.loads((out / "manifest.json").read_text())["files"])
    removed = []
    orig = Path.unlink

    def spy(self, *a, **k):
        removed.append(str(self.relative_to(out)))
        return orig(self, *a, **k)
    mp = pytest.MonkeyPatch()
    mp.setattr(Path, "unlink", spy)
    try:
        sc2 = scenario_from_dict(_micro(tiny, population__seed=9))
        open_for_run(out, sc2.fingerprint(), fpscale_version(), overwrite=True).close()
    finally:
        mp.undo()
    assert {r for r in removed if not r.endswith(".fpscale-tmp")} == listed
    for name in ("notes.txt", "plots/mine.png", "searches_mine.npz"):
        assert (out / name).read_text() == "mine"
    run_scenario(sc2, out, overwrite=True, progress=False)
    for name in ("notes.txt", "plots/mine.png", "searches_mine.npz"):
        assert (out / name).read_text() == "mine"


# -- concurrency ---------------------------------------------------------------

def test_a_second_run_into_a_locked_folder_is_refused(ref_plain, tmp_path, tiny, write_toml,
                                                      capsys):
    out = tmp_path / "res"
    shutil.copytree(ref_plain, out)
    fd = os.open(out / LOCK, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.ftruncate(fd, 0)
    os.write(fd, b"fpscale run, pid 4242 on elsewhere, started 2026-01-01T00:00:00+00:00")
    try:
        scen = write_toml(tmp_path / "s.toml", _micro(tiny, population__seed=11))
        _refused(["run", scen, "--out", out, "--overwrite", "--quiet"], capsys, tmp_path,
                 "in use by another fpscale process (fpscale run, pid 4242 on elsewhere")
        _refused(["report", out], capsys, tmp_path, "pid 4242")
    finally:
        os.close(fd)


# -- schedulers that are not Dask schedulers -------------------------------------

@pytest.fixture
def http_server():
    srv = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def silent_listener():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(5)
    yield s.getsockname()[1]
    s.close()


@pytest.mark.parametrize("server", ["http_server", "silent_listener"])
def test_a_scheduler_that_is_not_dask_gives_one_line_in_time(server, request, tmp_path, capsys,
                                                             tiny, write_toml, monkeypatch):
    port = request.getfixturevalue(server)
    monkeypatch.setattr(cluster_mod, "CONNECT_TIMEOUT_S", 2)
    scen = write_toml(tmp_path / "s.toml", _micro(tiny))
    t0 = time.monotonic()
    _refused(["run", scen, "--out", tmp_path / "o", "--quiet", "--scheduler",
              f"tcp://127.0.0.1:{port}"], capsys, tmp_path, "Dask scheduler")
    assert time.monotonic() - t0 < 2 + 3


# -- file modes ----------------------------------------------------------------

def test_results_files_follow_the_umask(ref_ladder):
    mask = os.umask(0o022)
    os.umask(mask)
    assert FILE_MODE == 0o666 & ~mask
    for p in ref_ladder.rglob("*"):
        if p.is_file():
            assert p.stat().st_mode & 0o777 == 0o666 & ~mask, p

