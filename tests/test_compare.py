"""`fpscale compare`: two small runs side by side in one report, whose table
holds each run's own numbers; folders that are not finished, undamaged
results are refused in one line, and nothing is written outside --out."""

import csv
import json
import os
import shutil
from pathlib import Path

import pytest

from fpscale.bench.cli import main
from fpscale.bench.run.steps import run_scenario
from fpscale.bench.scenario import scenario_from_dict
from fpscale.bench.store.summary import read_summary
from fpscale.bench.tools.compare import run_labels


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny):
    root = tmp_path_factory.mktemp("cmp")
    a = root / "a"
    run_scenario(scenario_from_dict(tiny(projection__ladder=[40, 80, 400, 800])), a, progress=False)
    d = tiny(projection__ladder=[],
             search__backends=[{"name": "numba-flat"},
                               {"name": "faiss:IVF8,Flat", "params": "nprobe=2", "train_size": 800}])
    d["name"] = "ivf"
    b = root / "b"
    run_scenario(scenario_from_dict(d), b, progress=False)
    return root, a, b


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under root with its size and modification time."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = Path(dirpath) / n
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def _refused(args, capsys, what: str) -> None:
    assert main([str(a) for a in args]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fpscale: error: "), err
    assert "Traceback" not in err
    assert what in lines[0], lines[0]


def test_compare_writes_one_report_of_every_run_and_backend(two_runs, tmp_path, capsys):
    root, a, b = two_runs
    before = _tree(root)
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    assert _tree(root) == before  # the runs are only read: no lock, no file, no change
    assert set(_tree(tmp_path)) == {f"cmp/{n}" for n in _tree(out)}
    for f in ("report.md", "report.html", "operating_points.csv", "manifest.json",
              "plots/det.png", "plots/cmc.png", "plots/fpir_vs_n.png",
              "plots/throughput_recall.png"):
        assert (out / f).is_file(), f
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    sa, sb = read_summary(a), read_summary(b)
    for label, s in (("tiny", sa), ("ivf", sb)):
        for be in s.backends:
            assert f"{label}/{be.key}" in md
            assert f"{label}/{be.key}" in html
    # the plots are inside the page, not links beside it
    assert html.count("data:image/png;base64,") == 4 and 'src="plots/' not in html
    # recall of the approximate index against exact search is in the table
    ivf = sb.backend("faiss-IVF8-Flat_nprobe-2")
    assert f"{ivf.vs_exact.recall_at_L:.3f}" in md


def test_operating_point_table_holds_each_runs_own_numbers(two_runs, tmp_path):
    _, a, b = two_runs
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    with open(out / "operating_points.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    want = []
    for label, folder in (("tiny", a), ("ivf", b)):
        s = json.loads((folder / "summary.json").read_text())
        for be in s["backends"]:
            for op in be["metrics"]["operating_points"]:
                want.append((label, be["key"], op))
    assert len(rows) == len(want)
    md = (out / "report.md").read_text()
    for row, (label, key, op) in zip(rows, want):
        assert (row["run"], row["backend"]) == (label, key)
        assert float(row["target_fpir"]) == op["target_fpir"]
        assert float(row["threshold"]) == op["threshold"]
        assert row["resolved"] == ("true" if op["resolved"] else "false")
        for rate in ("fnir", "fpir"):
            r = op[rate]
            assert float(row[rate]) == r["value"]
            assert [float(row[f"{rate}_lo"]), float(row[f"{rate}_hi"])] == r["ci95"]
            assert (int(row[f"{rate}_count"]), int(row[f"{rate}_of"])) == (r["count"], r["of"])
        assert float(row["sel"]) == op["sel"]
        # the page shows the same numbers, rounded
        fn, fp = op["fnir"], op["fpir"]
        cell = (f"| {label}/{key} | {op['target_fpir']:g} | {op['threshold']:.4f} | "
                f"{fn['value']:.4f} [{fn['ci95'][0]:.4f}, {fn['ci95'][1]:.4f}] | "
                f"{fp['value']:.4f} [{fp['ci95'][0]:.4f}, {fp['ci95'][1]:.4f}] |")
        assert cell in md, cell


def test_colliding_run_names_are_told_apart(two_runs, tmp_path, capsys):
    _, a, _ = two_runs
    copy = tmp_path / "again"
    shutil.copytree(a, copy)
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(copy), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "tiny[a]/numba-flat" in md and "tiny[again]/numba-flat" in md
    assert run_labels(["x", "x", "y", "x"], [Path("p/r"), Path("q/r"), Path("r"), Path("s")]) == \
        ["x[r]#1", "x[r]#2", "y", "x[s]"]


def test_overwrite_semantics_of_the_out_folder(two_runs, tmp_path, capsys):
    _, a, b = two_runs
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0  # the same comparison again
    _refused(["compare", b, a, "--out", out], capsys, "--overwrite")  # another one
    assert main(["compare", str(b), str(a), "--out", str(out), "--overwrite"]) == 0
    with open(out / "operating_points.csv", newline="") as f:
        assert next(csv.DictReader(f))["run"] == "ivf"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    _refused(["compare", a, b, "--out", mine], capsys, "not empty")
    assert (mine / "notes.txt").read_text() == "keep" and len(list(mine.iterdir())) == 1


def test_folders_that_are_not_finished_undamaged_results_are_refused(two_runs, tmp_path, capsys):
    _, a, b = two_runs
    out = tmp_path / "cmp"
    _refused(["compare", a, "--out", out], capsys, "two or more")
    _refused(["compare", a, tmp_path / "nowhere", "--out", out], capsys, "no such folder")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "summary.json").write_text("{}")
    _refused(["compare", a, plain, "--out", out], capsys, "no manifest.json")
    _refused(["compare", a, plain / "summary.json", "--out", out], capsys, "not a folder")
    _refused(["compare", a, a, "--out", out], capsys, "given twice")
    _refused(["compare", a, b, "--out", a], capsys, "is the results folder")
    _refused(["compare", a, b, "--out", a / "plots"], capsys, "inside")
    _refused(["compare", a, b, "--out", tmp_path.parent], capsys, "inside --out")

    def damaged(name, change):
        d = tmp_path / name
        shutil.copytree(a, d)
        change(d)
        return d

    def edit_summary(d):
        s = json.loads((d / "summary.json").read_text())
        s["backends"][0]["metrics"]["rank1_hit_rate"]["value"] = 0.99
        (d / "summary.json").write_text(json.dumps(s))

    def unfinished(d):
        m = json.loads((d / "manifest.json").read_text())
        m["complete"] = False
        (d / "manifest.json").write_text(json.dumps(m))

    def foreign(d):
        (d / ".fpscale.lock").unlink(missing_ok=True)
        (d / "manifest.json").write_text('{"tool": "other"}')

    cases = [("edited", edit_summary, "the folder is damaged"),
             ("gone", lambda d: (d / "summary.json").unlink(), "is missing"),
             ("bad-manifest", lambda d: (d / "manifest.json").write_text("{not json"),
              "not readable JSON"),
             ("foreign", foreign, "did not write"),
             ("unfinished", unfinished, "unfinished")]
    for name, change, what in cases:
        _refused(["compare", a, damaged(name, change), "--out", out], capsys, what)
    # a comparison is not a results folder to compare
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    _refused(["compare", a, out, "--out", tmp_path / "cmp2"], capsys, "holds no summary.json")
    assert not (tmp_path / "cmp2").exists()
