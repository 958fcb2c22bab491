"""The report's plots: DET, CMC, throughput against recall, FPIR against N
and people per year, each rendered as PNG bytes (written by the caller)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bench.measure.projection import FingerSetProjection, fpir_at_n, power_model  # noqa: E402
from bench.store.summary import Summary  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buf.getvalue()


def plot_det(summary: Summary) -> bytes:
    """FNIR against FPIR, log-log, one curve per backend row."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for b in summary.backends:
        det = b.metrics.det
        fp, fn = np.array(det.fpir, dtype=float), np.array(det.fnir, dtype=float)
        ok = (fp > 0) & (fn > 0)
        ax.loglog(fp[ok], fn[ok], label=b.key)
    ax.set_xlabel("FPIR (non-mated searches with a candidate >= T)")
    ax.set_ylabel("FNIR (mated searches missed)")
    ax.set_title("DET: FNIR against FPIR as the threshold sweeps")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def plot_cmc(summary: Summary) -> bytes:
    """Rank-r hit rate against r, one curve per backend row."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for b in summary.backends:
        c = np.array(b.metrics.cmc, dtype=float)
        ax.plot(np.arange(1, len(c) + 1), c, marker=".", label=b.key)
    ax.set_xlabel("rank r")
    ax.set_ylabel("hit rate within rank r (CMC)")
    ax.set_title("CMC")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def plot_fpir_vs_n(proj: FingerSetProjection, target_n: int) -> bytes:
    """Measured FPIR per rung with both models, out to the target N."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ns = np.logspace(np.log10(proj.rungs[0]), np.log10(target_n), 60)
    for i, s in enumerate(proj.studies):
        color = f"C{i}"
        n = np.array([m.n for m in s.measured])
        f = np.array([m.fpir for m in s.measured], dtype=float)
        lo = np.array([m.ci95[0] for m in s.measured], dtype=float)
        hi = np.array([m.ci95[1] for m in s.measured], dtype=float)
        ax.errorbar(n, f, yerr=[np.maximum(f - lo, 0), np.maximum(hi - f, 0)], fmt="o", color=color,
                    label=f"measured, T = {s.threshold:.3f}")
        ax.plot(ns, fpir_at_n(s.fmr, ns), "--", color=color, alpha=0.8)
        if s.fit:
            ax.plot(ns, power_model(s.fit.a, s.fit.b, ns), ":", color=color, alpha=0.8)
    ax.axvline(target_n, color="k", lw=0.8)
    ax.text(target_n, 1e-4, " target", fontsize=8, rotation=90, va="bottom")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(1e-4, 1.5)
    ax.set_xlabel("gallery size N (enrolled identities)")
    ax.set_ylabel("FPIR(N, T)")
    ax.set_title(f"FPIR against N ({proj.finger_set}): -- independence, : fitted")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def plot_people(proj: FingerSetProjection) -> bytes:
    """False matches per year at the target against the threshold, with FNIR."""
    sw = proj.target.sweep
    t = np.array(sw.threshold)
    people = np.array(sw.false_matches_per_year, dtype=float)
    lo, hi = (np.array(x, dtype=float) for x in sw.false_matches_per_year_ci95)
    wrong = np.array(sw.mated_wrong_per_year, dtype=float)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    floor = 1e-3
    ax.semilogy(t, np.maximum(people, floor), label="non-mated searches falsely matched")
    ax.fill_between(t, np.maximum(lo, floor), np.maximum(hi, floor), alpha=0.25)
    ax.semilogy(t, np.maximum(wrong, floor), label="mated searches matched to someone else")
    ax.axhline(1.0, color="k", lw=0.8)
    ax2 = ax.twinx()
    ax2.plot(t, np.array(sw.fnir_sim, dtype=float), "k:", label="FNIR (simulated)")
    ax2.set_ylabel("FNIR at T (mates missed)")
    ax2.set_ylim(0, 1)
    ax.set_xlabel("threshold T")
    ax.set_ylabel("people per year")
    ax.set_title(f"Misidentified people per year at N = {proj.target.gallery_size:,} "
                 f"({proj.finger_set})", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + ax2.get_legend_handles_labels()[1]
    ax.legend(lines, labels, fontsize=7, loc="upper right")
    return _png(fig)


def plot_throughput_recall(summary: Summary) -> bytes:
    """Searches per second against recall@L, one point per backend row."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for b in summary.backends:
        qps = b.timings.throughput_searches_per_s
        rec = b.vs_exact.recall_at_L if b.vs_exact else (1.0 if not b.binary else None)
        if qps is None or rec is None:
            continue
        ax.scatter(rec, qps)
        ax.annotate(b.key, (rec, qps), fontsize=7)
    ax.set_xlabel("recall@L against exact search")
    ax.set_ylabel("searches per second")
    ax.set_yscale("log")
    ax.set_title("Throughput against recall")
    ax.grid(True, which="both", alpha=0.3)
    return _png(fig)
