"""``fpscale compare``: several finished results folders in one report.

Each folder (written by ``fpscale run`` or ``fpscale evaluate``) is untrusted
input and is only read, never locked or written: its manifest must be
fpscale's, of this format and complete, and must list ``summary.json`` with
the size and sha256 the file has; the summary is then validated as
``fpscale report`` validates it. The comparison goes to its own folder
(report.md, report.html with the plots embedded, plots/*.png and
operating_points.csv), which has a manifest of its own, so ``--overwrite``
and a second compare into it behave as they do for ``fpscale run``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path

from fpscale.bench.report.compare_plots import plot_cmc, plot_det, plot_fpir_vs_n, plot_throughput_recall
from fpscale.bench.report.compare_text import OP_HEADER, Run, operating_point_rows, render_compare
from fpscale.bench.report.html import markdown_to_html
from fpscale.bench.run.host import fpscale_version
from fpscale.bench.scenario import safe_name
from fpscale.bench.store.files import ResultsError
from fpscale.bench.store.manifest import (FORMAT_VERSION, MANIFEST, DamagedError, file_problem,
                                  open_for_run, read_manifest)
from fpscale.bench.store.summary import SUMMARY, Summary, read_summary

MAX_RUNS = 50
MAX_ROWS = 200  # run/backend curves: more cannot be told apart on one plot
OPERATING_POINTS = "operating_points.csv"
PLOTS = {"det": "plots/det.png", "cmc": "plots/cmc.png", "fpir_vs_n": "plots/fpir_vs_n.png",
         "throughput_recall": "plots/throughput_recall.png"}


def read_run(folder: Path) -> tuple[Summary, str]:
    """The summary of a finished results folder and summary.json's sha256;
    ResultsError (one line) when the folder is not one, is unfinished or
    damaged. Reads only."""
    folder = Path(folder)
    if not folder.exists():
        raise ResultsError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise ResultsError(f"{folder} is not a folder")
    try:
        m = read_manifest(folder)
    except DamagedError:
        raise
    except ResultsError:  # a manifest of another tool
        raise ResultsError(f"{folder} holds a {MANIFEST} that fpscale did not write: it is not "
                           "an fpscale results folder") from None
    if m is None:
        raise ResultsError(f"{folder} holds no {MANIFEST}: it is not a results folder of "
                           "fpscale run or fpscale evaluate")
    if m.get("format") != FORMAT_VERSION:
        raise ResultsError(f"{folder} holds results of another fpscale format "
                           f"({str(m.get('format'))[:10]}); run its scenario again")
    if not m["complete"]:
        raise ResultsError(f"{folder} holds an unfinished run; finish it (run the same command "
                           "again) before comparing it")
    if SUMMARY not in m["files"]:
        raise ResultsError(f"{folder} holds no {SUMMARY} (is it a comparison?): compare results "
                           "folders of fpscale run or fpscale evaluate")
    why = file_problem(folder, m["files"], SUMMARY)
    if why:
        raise ResultsError(f"{folder / SUMMARY} {why}: the folder is damaged; run its scenario "
                           "again")
    return read_summary(folder), m["files"][SUMMARY]["sha256"]


def run_labels(names: list[str], folders: list[Path]) -> list[str]:
    """Each run's label: its scenario name; names that collide get the
    folder's name in brackets, and a number after '#' when that collides
    too. (Scenario names hold no '[' or '#', so a label made here cannot
    equal another run's name.)"""
    count = Counter(names)
    labels = [n if count[n] == 1 else f"{n}[{safe_name(f.name)}]" for n, f in zip(names, folders)]
    count, seen = Counter(labels), Counter()
    out = []
    for label in labels:
        if count[label] > 1:
            seen[label] += 1
            label = f"{label}#{seen[label]}"
        out.append(label)
    return out


def _inside(a: Path, b: Path) -> bool:
    """Whether a is b or lies under it."""
    return a == b or b in a.parents


def check_folders(folders: list[Path], out: Path) -> None:
    """ResultsError when the runs are fewer than two or too many, one is
    given twice, or one is --out or holds it or lies in it."""
    if len(folders) < 2:
        raise ResultsError("give two or more results folders to compare")
    if len(folders) > MAX_RUNS:
        raise ResultsError(f"give at most {MAX_RUNS} results folders to compare, got {len(folders)}")
    real_out = Path(os.path.realpath(out))
    seen = {}
    for f in folders:
        real = Path(os.path.realpath(f))
        if real in seen:
            raise ResultsError(f"{f} is given twice (as {seen[real]} too)")
        seen[real] = f
        if _inside(real_out, real):
            raise ResultsError(f"--out {out} is {'the results folder' if real == real_out else 'inside'} "
                               f"{f}; fpscale compare writes only into a folder of its own")
        if _inside(real, real_out):
            raise ResultsError(f"{f} lies inside --out {out}; choose another --out")


def compare_files(runs: list[Run]) -> dict[str, bytes]:
    """The report's files, rendered: {name in the out folder: bytes}."""
    labeled = [(label, s) for label, _, s in runs]
    plots = {PLOTS["det"]: plot_det(labeled), PLOTS["cmc"]: plot_cmc(labeled),
             PLOTS["throughput_recall"]: plot_throughput_recall(labeled)}
    fpir_n = plot_fpir_vs_n(labeled)
    if fpir_n is not None:
        plots[PLOTS["fpir_vs_n"]] = fpir_n
    md = render_compare(runs, {k: v for k, v in PLOTS.items() if v in plots})
    title = "fpscale comparison: " + ", ".join(label for label, _, _ in runs)
    return {"report.md": md.encode(), "report.html": markdown_to_html(md, title, plots).encode(),
            **plots}


def compare(folders: list[Path], out: Path, overwrite: bool = False) -> Path:
    """Compare finished results folders into out; returns report.md.
    Every folder is read and checked and every file rendered before out is
    opened; nothing is written anywhere else."""
    folders, out = [Path(f) for f in folders], Path(out)
    check_folders(folders, out)
    read = [read_run(f) for f in folders]
    rows = sum(len(s.backends) for s, _ in read)
    if rows > MAX_ROWS:
        raise ResultsError(f"the folders hold {rows:,} backends in all; compare at most {MAX_ROWS} "
                           "side by side")
    labels = run_labels([s.scenario.name for s, _ in read], folders)
    runs = [(label, str(f), s) for label, f, (s, _) in zip(labels, folders, read)]
    try:
        files = compare_files(runs)
    except (ValueError, TypeError, IndexError, KeyError, OverflowError, ZeroDivisionError) as e:
        raise ResultsError(f"the summaries hold values the comparison cannot show "
                           f"({type(e).__name__}: {str(e)[:120]})") from None
    inputs = [{"label": label, "folder": str(f), "summary_sha256": sha}
              for label, f, (_, sha) in zip(labels, folders, read)]
    fingerprint = "compare-" + hashlib.sha256(json.dumps(inputs).encode()).hexdigest()[:16]
    with open_for_run(out, fingerprint, fpscale_version(), overwrite, what="compare") as rf:
        for rel, data in files.items():
            rf.write_bytes(rel, data)
        rf.write_csv(OPERATING_POINTS, OP_HEADER, operating_point_rows(runs))
        rf.mark("compare", {"runs": inputs})
        rf.mark_complete()
    return out / "report.md"
