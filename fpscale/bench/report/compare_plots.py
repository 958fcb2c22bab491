"""Plots of several results side by side (``fpscale compare``): DET with the
operating points and their 95% intervals, CMC, measured FPIR against gallery
size N, and throughput against recall; one curve per run/backend, each
rendered as PNG bytes (written by the caller).

A run is given as (label, summary); a curve is labelled ``label/backend``.
Colours tell the curves apart, line styles the runs.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# one way of rendering a figure, of error bars and of a row's recall
from fpscale.bench.report.plots import _STYLES, _errs, _png, list_recall  # noqa: E402
from fpscale.bench.store.summary import Summary  # noqa: E402

Labeled = list[tuple[str, Summary]]


def _curves(runs: Labeled):
    """(label/backend, backend row, colour, line style) of every row of every run."""
    total = sum(len(s.backends) for _, s in runs)
    # ten colours tell ten curves apart; past that, twenty paler and darker pairs
    colour = (lambda i: f"C{i}") if total <= 10 else (lambda i: plt.get_cmap("tab20")(i % 20))
    i = 0
    for r, (label, s) in enumerate(runs):
        for b in s.backends:
            yield f"{label}/{b.key}", b, colour(i), _STYLES[r % len(_STYLES)]
            i += 1


def _log_limits(ax, xs: list[float], ys: list[float]) -> None:
    # clipped error bars reach towards 0: set the limits from the data
    # instead of letting them stretch the axes over many empty decades
    xs = [v for v in xs if v is not None and v > 0]
    ys = [v for v in ys if v is not None and v > 0]
    if xs:
        ax.set_xlim(min(xs) / 1.5, max(xs) * 1.5)
    if ys:
        ax.set_ylim(min(ys) / 1.5, max(ys) * 1.5)


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def plot_det(runs: Labeled) -> bytes:
    """FNIR against FPIR (log-log) of every run/backend, with each operating
    point marked and its 95% intervals of FPIR and FNIR as error bars
    (hollow where the data do not resolve the FPIR target)."""
    fig, ax = plt.subplots(figsize=(7.5, 5))
    ax.set_xscale("log", nonpositive="clip")
    ax.set_yscale("log", nonpositive="clip")
    xs, ys = [], []
    for name, b, color, style in _curves(runs):
        det = b.metrics.det
        fp, fn = np.array(det.fpir, dtype=float), np.array(det.fnir, dtype=float)
        ok = (fp > 0) & (fn > 0)
        ax.plot(fp[ok], fn[ok], color=color, ls=style, lw=1.2, label=name)
        xs += fp[ok].tolist()
        ys += fn[ok].tolist()
        for op in b.metrics.operating_points:
            if op.fnir is None or op.fpir is None or op.fnir.value is None or op.fpir.value is None:
                continue
            x, y = op.fpir.value, op.fnir.value
            if x <= 0 or y <= 0:
                continue  # a rate of 0 has no place on log axes; the table gives it
            ax.errorbar([x], [y], xerr=_errs(x, op.fpir.ci95), yerr=_errs(y, op.fnir.ci95), fmt="o",
                        color=color, ms=5, capsize=2, mfc=color if op.resolved else "none")
            xs += [x, op.fpir.ci95[1]]
            ys += [y, op.fnir.ci95[1]]
    _log_limits(ax, xs, ys)
    ax.set_xlabel("FPIR (non-mated searches with a candidate >= T)")
    ax.set_ylabel("FNIR (mated searches missed)")
    ax.set_title("DET; markers: operating points (FNIR at rank R) with 95% intervals", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax)
    return _png(fig)


def plot_cmc(runs: Labeled) -> bytes:
    """Rank-r hit rate against r of every run/backend."""
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for name, b, color, style in _curves(runs):
        c = np.array([np.nan if v is None else v for v in b.metrics.cmc], dtype=float)
        ax.plot(np.arange(1, len(c) + 1), c, marker=".", color=color, ls=style, label=name)
    ax.set_xlabel("rank r")
    ax.set_ylabel("hit rate within rank r (CMC)")
    ax.set_title("CMC")
    ax.grid(True, alpha=0.3)
    _legend(ax)
    return _png(fig)


def ladder_sets(runs: Labeled) -> list[str]:
    """The finger sets for which at least one run measured a ladder, in
    the order the runs name them."""
    out: list[str] = []
    for _, s in runs:
        for fs in s.projection or {}:
            if fs not in out:
                out.append(fs)
    return out


def plot_fpir_vs_n(runs: Labeled) -> bytes | None:
    """Measured FPIR against gallery size N (log-log) at each run's study
    thresholds, with 95% intervals: one panel per finger set, one curve per
    run and threshold. None when no run measured a ladder."""
    sets = ladder_sets(runs)
    if not sets:
        return None
    fig, axes = plt.subplots(1, len(sets), figsize=(6.5 * len(sets), 4.8), squeeze=False)
    for ax, fs in zip(axes[0], sets):
        ax.set_xscale("log")
        ax.set_yscale("log", nonpositive="clip")
        xs, ys, i = [], [], 0
        for r, (label, s) in enumerate(runs):
            p = (s.projection or {}).get(fs)
            if p is None:
                continue
            for a in p.at_target:
                pts = [m for m in a.measured if m.value is not None and m.value > 0]
                if pts:
                    n = [m.n for m in pts]
                    f = [m.value for m in pts]
                    err = np.array([_errs(m.value, m.ci95) for m in pts])[:, :, 0].T
                    ax.errorbar(n, f, yerr=err, fmt="o", ls=_STYLES[r % len(_STYLES)],
                                color=f"C{i % 10}", ms=4, capsize=2,
                                label=f"{label}/{fs} T = {a.threshold:.4g}")
                    xs += n
                    ys += f + [m.ci95[1] for m in pts]
                i += 1
        _log_limits(ax, xs, ys)
        ax.set_xlabel("gallery size N (enrolled identities)")
        ax.set_ylabel("FPIR(N, T), measured")
        ax.set_title(f"FPIR against N ({fs}), 95% intervals", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        _legend(ax)
    fig.tight_layout()
    return _png(fig)


def plot_throughput_recall(runs: Labeled) -> bytes:
    """Searches per second (log) against recall@L of the candidate lists
    against exact search, one point per run/backend that has both."""
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for name, b, color, _ in _curves(runs):
        qps, rec = b.timings.throughput_searches_per_s, list_recall(b)
        if qps is None or rec is None or qps <= 0:
            continue
        ax.scatter([rec], [qps], color=color, label=name)
    ax.set_xlabel("recall@L against exact search")
    ax.set_ylabel("searches per second")
    ax.set_yscale("log")
    ax.set_title("Throughput against recall (timings of each run's own host)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax)
    return _png(fig)
