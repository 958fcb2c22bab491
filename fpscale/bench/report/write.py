"""``fpscale report``: report.md, report.html and plots/*.png of a results folder.

The folder is untrusted input: its summary is validated against the
summary's schema (``fpscale.bench.store.summary``), every file is rendered in
memory before anything is written, and the names written are fpscale's own
(the plots of a projection are named after fpscale's finger sets, never
after keys read from the file).
"""

from __future__ import annotations

from pathlib import Path

from fpscale.bench.report.html import markdown_to_html
from fpscale.bench.report.markdown import render_markdown
from fpscale.bench.report.plots import (plot_cmc, plot_det, plot_fpir_vs_n, plot_held_out,
                                plot_throughput_recall)
from fpscale.bench.scenario import PROJECTIONS
from fpscale.bench.store.files import ResultsError
from fpscale.bench.store.manifest import ResultsFolder, open_existing, read_manifest
from fpscale.bench.store.summary import Summary, read_summary

REPORT_FILES = ("report.md", "report.html", "plots/det.png", "plots/cmc.png",
                "plots/throughput_recall.png")


def projection_plots(finger_set: str) -> tuple[str, str]:
    """The plots of one finger set's projection."""
    return f"plots/fpir_vs_n_{finger_set}.png", f"plots/heldout_{finger_set}.png"


def report_names(summary: Summary) -> list[str]:
    """The names of the report's files for this summary."""
    proj = summary.projection or {}
    return list(REPORT_FILES) + [n for fs in PROJECTIONS if fs in proj for n in projection_plots(fs)]


def report_files(summary: Summary) -> dict[str, bytes]:
    """Every file of the report, rendered: {name in the results folder: bytes}."""
    md_name, html_name, det, cmc, tr = REPORT_FILES
    files = {det: plot_det(summary), cmc: plot_cmc(summary), tr: plot_throughput_recall(summary)}
    proj = summary.projection or {}
    for fs in PROJECTIONS:  # fpscale's names, whatever the file says
        if fs in proj:
            a, b = projection_plots(fs)
            files[a] = plot_fpir_vs_n(proj[fs])
            files[b] = plot_held_out(proj[fs])
    md = render_markdown(summary)
    files[md_name] = md.encode()
    plots = {rel: data for rel, data in files.items() if rel.startswith("plots/")}
    files[html_name] = markdown_to_html(md, f"fpscale: {summary.scenario.name}", plots).encode()
    return files


def check_not_foreign(folder: Path, names: list[str], rf: ResultsFolder | None = None) -> None:
    """ResultsError when one of names exists in the folder but its manifest
    does not list it (a file fpscale did not write)."""
    if rf is None:
        m = read_manifest(folder)
        if m is None:
            raise ResultsError(f"{folder} holds no manifest.json: it is not a results folder of "
                               "fpscale run")
        listed = m.get("files", {})
    else:
        listed = rf.files
    for rel in names:
        p = Path(folder) / rel
        if (p.exists() or p.is_symlink()) and rel not in listed:
            raise ResultsError(f"{p} exists and fpscale did not write it; move it away first")


def write_report(folder: Path) -> Path:
    """Write report.md, report.html and plots/*.png into a results folder
    from its summary.json; returns report.md. Nothing is written unless
    the summary is valid and every file renders."""
    folder = Path(folder)
    summary = read_summary(folder)
    check_not_foreign(folder, report_names(summary))  # before any work or lock
    try:
        files = report_files(summary)
    except (ValueError, TypeError, IndexError, KeyError, OverflowError, ZeroDivisionError) as e:
        raise ResultsError(f"{folder / 'summary.json'} holds values the report cannot show "
                           f"({type(e).__name__}: {str(e)[:120]})") from None
    with open_existing(folder, "report") as rf:
        check_not_foreign(folder, list(files), rf)
        for rel, data in files.items():
            rf.write_bytes(rel, data)
        rf.save()
    return folder / "report.md"
