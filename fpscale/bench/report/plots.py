"""The report's plots: DET, CMC, throughput against recall, FPIR against N
and the held-out check, each rendered as PNG bytes (written by the caller)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fpscale.bench.measure.projection import MODELS, FingerSetProjection  # noqa: E402
from fpscale.bench.store.summary import BackendResult, Summary  # noqa: E402
from fpscale.matcher.registry import is_exact_float  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buf.getvalue()


# re-scored rows share their source's colour with another line style, so
# that a row and its re-scoring read as a pair and identical curves stay visible
_STYLES = ("-", "--", ":", "-.")


def list_recall(b: BackendResult) -> float | None:
    """recall@L of a row's candidate lists against exact float search:
    measured for an approximate float backend, 1 for exact float search
    itself, None where it is not defined (binary codes, lists re-ordered by
    minutiae re-scoring, another matcher's lists)."""
    if b.vs_exact is not None:
        return b.vs_exact.recall_at_L
    if b.rescored_from is None and is_exact_float(b.name):
        return 1.0
    return None


def _errs(value: float, ci: list) -> list[list[float]]:
    """Error-bar lengths below and above value (a bound that is None: none)."""
    lo, hi = ci
    return [[max(value - lo, 0.0) if lo is not None else 0.0],
            [max(hi - value, 0.0) if hi is not None else 0.0]]


def _style(summary: Summary, i: int) -> dict:
    b = summary.backends[i]
    keys = [x.key for x in summary.backends if not x.rescored_from]
    base = b.rescored_from or b.key
    k = keys.index(base) if base in keys else i
    # earlier rows are drawn wider, so a later identical curve (numba and
    # faiss exact search agree) shows as a line inside a wider one
    return {"color": f"C{k % 10}", "ls": _STYLES[(1 if b.rescored_from else 0) + 2 * (k // 10) % 4],
            "lw": max(3.4 - 0.8 * (k % 10), 1.0)}


def _sizes(summary: Summary) -> str:
    pop, L = summary.scenario.population, summary.scenario.search.candidates
    return f"N = {pop.gallery_size:,}, L = {L}, {pop.n_submissions:,} searches"


def plot_det(summary: Summary) -> bytes:
    """FNIR against FPIR, log-log, one curve per backend row, with each
    operating point and its 95% intervals in both rates."""
    fig, ax = plt.subplots(figsize=(7.8, 4.5))
    for i, b in enumerate(summary.backends):
        st = _style(summary, i)
        det = b.metrics.det
        fp, fn = np.array(det.fpir, dtype=float), np.array(det.fnir, dtype=float)
        ok = (fp > 0) & (fn > 0)
        ax.loglog(fp[ok], fn[ok], label=b.key, **st)
        for op in b.metrics.operating_points:
            if op.fpir is None or op.fnir is None or not op.fpir.value or not op.fnir.value:
                continue
            x, y = op.fpir.value, op.fnir.value
            ax.errorbar([x], [y], xerr=_errs(x, op.fpir.ci95), yerr=_errs(y, op.fnir.ci95), fmt="o",
                        ms=4, color=st["color"], capsize=2)
    ax.set_xlabel("FPIR (non-mated searches with a candidate >= T)")
    ax.set_ylabel("FNIR (mated searches missed)")
    ax.set_title(f"DET ({_sizes(summary)}); dots: operating points with 95% intervals", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(fig)


def plot_cmc(summary: Summary) -> bytes:
    """Rank-r hit rate against r, one curve per backend row."""
    from matplotlib.ticker import MaxNLocator
    fig, ax = plt.subplots(figsize=(7.8, 4.5))
    for i, b in enumerate(summary.backends):
        c = np.array(b.metrics.cmc, dtype=float)
        ax.plot(np.arange(1, len(c) + 1), c, label=b.key, **_style(summary, i))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # ranks are whole numbers
    ax.set_xlabel("rank r")
    ax.set_ylabel("hit rate within rank r (CMC)")
    ax.set_title(f"CMC ({_sizes(summary)})", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(fig)


def plot_fpir_vs_n(proj: FingerSetProjection) -> bytes:
    """Measured FPIR per rung at each study threshold, the headline model's
    curve with its 95% band as far as it is resolved, and the target."""
    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    for i, a in enumerate(proj.at_target):
        color = f"C{i}"
        n = np.array([m.n for m in a.measured], dtype=float)
        f = np.array([m.value for m in a.measured], dtype=float)
        lo = np.array([m.ci95[0] for m in a.measured], dtype=float)
        hi = np.array([m.ci95[1] for m in a.measured], dtype=float)
        ax.errorbar(n, f, yerr=[np.maximum(f - lo, 0), np.maximum(hi - f, 0)], fmt="o", color=color,
                    label=f"T = {a.threshold:.3f}: measured")
        if a.curve is not None:
            c = a.curve
            cn = np.array(c.n, dtype=float)
            ok = np.array([v is not None for v in c.fpir])
            if ok.any():
                ax.plot(cn[ok], np.array(c.fpir, dtype=float)[ok], "-", color=color, lw=1.2)
                ax.fill_between(cn[ok], np.array(c.lo, dtype=float)[ok],
                                np.array(c.hi, dtype=float)[ok], color=color, alpha=0.15)
    ax.axvline(proj.target_gallery_size, color="k", lw=0.8)
    ax.text(proj.target_gallery_size, 1.2e-4, " target", fontsize=8, rotation=90, va="bottom")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(1e-4, 1.5)
    ax.set_xlim(proj.rungs[0] / 2, proj.target_gallery_size * 2)
    ax.set_xlabel("gallery size N (enrolled identities)")
    ax.set_ylabel("FPIR(N, T)")
    ax.set_title(f"FPIR against N ({proj.finger_set}); line and band: {proj.model} model, "
                 f"up to {proj.max_decades:g} decade(s) past the data", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # no study threshold: nothing to label
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(fig)


def _chosen(proj: FingerSetProjection) -> str:
    # whether the plotted check chose the headline model or only validated it
    ch = proj.choice
    if proj.selection:
        s0 = proj.selection[0]
        who = "no model passed" if ch is None or ch.chosen == "none" else f"{ch.chosen} chosen"
        return f"\n{who} on rungs up to {s0.n_fit:,} predicting {s0.n_test:,}"
    return "\nchosen and checked here (optimistic)" if ch is not None and ch.scheme == "same-rung" else ""


def plot_held_out(proj: FingerSetProjection) -> bytes:
    """Each model's prediction of the held-out rung against what it measured."""
    fig, ax = plt.subplots(figsize=(6.8, 4.2))
    for i, h in enumerate(proj.held_out):
        m = h.measured
        if m.value is None:
            continue
        ax.errorbar([i], [m.value], yerr=[[max(m.value - m.ci95[0], 0)], [max(m.ci95[1] - m.value, 0)]],
                    fmt="ks", label="measured" if i == 0 else None)
        for j, name in enumerate(MODELS):
            c = next((c for c in h.checks if c.model == name), None)
            if c is None or c.predicted.value is None:
                continue
            v, (lo, hi) = c.predicted.value, c.predicted.ci95
            # a percentile interval need not hold its point estimate
            ax.errorbar([i + 0.15 * (j + 1)], [v], yerr=[[max(v - lo, 0)], [max(hi - v, 0)]], fmt="o",
                        color=f"C{j}", label=name if i == 0 else None)
    ax.set_xticks(range(len(proj.held_out)), [f"T = {h.threshold:.3f}" for h in proj.held_out])
    if proj.held_out:
        ax.set_yscale("log")
        ax.set_ylabel(f"FPIR at N = {proj.held_out[0].n_test:,}")
        ax.set_title(f"{'Validation' if proj.selection else 'Held out'} ({proj.finger_set}): fitted on "
                     f"rungs up to {proj.held_out[0].n_fit:,}{_chosen(proj)}", fontsize=9)
    else:
        ax.set_title(f"Held out ({proj.finger_set}): {proj.model_note}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(fig)


def plot_throughput_recall(summary: Summary) -> bytes:
    """Searches per second against recall@L (``list_recall``), one point
    per row that has both."""
    fig, ax = plt.subplots(figsize=(7.8, 4.5))
    for i, b in enumerate(summary.backends):
        qps, rec = b.timings.throughput_searches_per_s, list_recall(b)
        if qps is None or rec is None:
            continue
        ax.scatter(rec, qps, color=_style(summary, i)["color"], label=b.key)
    ax.set_xlabel("recall@L against exact search")
    ax.set_ylabel("searches per second")
    ax.set_yscale("log")
    ax.set_title(f"Throughput against recall ({_sizes(summary)})", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(fig)


def plot_sweep(rows: list[dict], key: str) -> bytes:
    """Rank-1 hit rate and FNIR at the first FPIR target against the swept
    value, one line per backend, with 95% intervals; values that are not
    numbers are placed in their given order."""
    values = list(dict.fromkeys(r["value"] for r in rows))
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    pos = {v: (float(v) if numeric else i) for i, v in enumerate(values)}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for k, name in enumerate(dict.fromkeys(r["backend"] for r in rows)):
        mine = [r for r in rows if r["backend"] == name]
        for ax, m in zip(axes, ("rank1", "fnir")):
            pts = [r for r in mine if r[m] is not None]
            if not pts:
                continue
            x = [pos[r["value"]] for r in pts]
            y = np.array([r[m] for r in pts], dtype=float)
            lo = np.array([r[m + "_low"] if r[m + "_low"] is not None else r[m] for r in pts], dtype=float)
            hi = np.array([r[m + "_high"] if r[m + "_high"] is not None else r[m] for r in pts], dtype=float)
            ax.errorbar(x, y, yerr=[np.maximum(y - lo, 0), np.maximum(hi - y, 0)], marker="o",
                        capsize=2, color=f"C{k % 10}", ls=_STYLES[(k // 10) % 4], label=name)
    target = next((r["target_fpir"] for r in rows if r["target_fpir"] is not None), None)
    for ax, label in zip(axes, ("rank-1 hit rate", f"FNIR at FPIR {target:g}" if target else "FNIR")):
        ax.set_xlabel(key)
        ax.set_ylabel(label + " (95% interval)")
        ax.grid(True, alpha=0.3)
        if not numeric:
            ax.set_xticks(range(len(values)), [str(v) for v in values])
        elif len(values) > 1 and min(values) > 0 and max(values) / min(values) >= 10:
            ax.set_xscale("log")
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(f"sweep of {key}", fontsize=10)
    return _png(fig)
