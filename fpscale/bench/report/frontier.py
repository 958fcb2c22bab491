"""The recall/throughput frontier of a backend's search parameter
(``fpscale sweep --param``), drawn as ann-benchmarks draws it: recall on x,
searches per second on a log y axis, the Pareto-optimal settings joined."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fpscale.bench.measure.recall import FrontierPoint  # noqa: E402
from fpscale.bench.report.plots import _png  # noqa: E402  (one way of rendering a figure)


def plot_frontier(points: list[FrontierPoint], reference: FrontierPoint | None,
                  title: str) -> bytes:
    """PNG of every setting (95% interval of recall as a horizontal bar,
    labelled with its setting), the Pareto frontier as a line, and exact
    search as a star at recall 1."""
    fig, ax = plt.subplots(figsize=(7, 4.8))
    for p in points:
        lo, hi = p.ci95
        ax.errorbar([p.recall], [p.searches_per_s],
                    xerr=[[max(p.recall - lo, 0.0)], [max(hi - p.recall, 0.0)]],
                    fmt="o", color="C0" if p.pareto else "C7", ms=5, capsize=2)
        ax.annotate(p.label, (p.recall, p.searches_per_s), textcoords="offset points",
                    xytext=(4, 4), fontsize=7)
    front = sorted((p for p in points if p.pareto), key=lambda p: p.recall)
    if front:
        ax.plot([p.recall for p in front], [p.searches_per_s for p in front], "-", color="C0",
                lw=1.2, label="Pareto frontier")
    if reference is not None:
        ax.plot([reference.recall], [reference.searches_per_s], "*", color="C3", ms=11,
                label=reference.label)
    ax.set_yscale("log")
    ax.set_xlabel("recall@L against exact search (95% bootstrap interval)")
    ax.set_ylabel("searches per second")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower left")
    return _png(fig)
