"""``fpscale report``: report.md, report.html and plots/*.png of a results folder."""

from __future__ import annotations

from pathlib import Path

from bench.report.html import markdown_to_html
from bench.report.markdown import render_markdown
from bench.report.plots import (plot_cmc, plot_det, plot_fpir_vs_n, plot_held_out,
                                plot_throughput_recall)
from bench.store.files import write_text
from bench.store.summary import Summary, read_summary


def write_report(folder: Path, summary: Summary | None = None) -> Path:
    """Write report.md, report.html and plots/*.png into a results folder
    (from its summary.json unless a summary is given); returns report.md."""
    folder = Path(folder)
    if summary is None:
        summary = read_summary(folder)
    plots = folder / "plots"
    plot_det(summary, plots / "det.png")
    plot_cmc(summary, plots / "cmc.png")
    plot_throughput_recall(summary, plots / "throughput_recall.png")
    for fs, p in (summary.projection or {}).items():
        plot_fpir_vs_n(p, plots / f"fpir_vs_n_{fs}.png")
        if p.held_out:
            plot_held_out(p, plots / f"heldout_{fs}.png")
    md = render_markdown(summary)
    write_text(folder / "report.md", md)
    write_text(folder / "report.html", markdown_to_html(md, f"fpscale: {summary.scenario.name}"))
    return folder / "report.md"
