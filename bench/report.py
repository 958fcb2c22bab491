"""Reports: a Markdown and an HTML page with PNG plots, from summary.json.

``fpscale report RESULTS_DIR`` rebuilds them from the folder alone.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bench.results import ResultsError, write_text  # noqa: E402


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)


def _fmt_rate(r: dict | None) -> str:
    if not r or r.get("value") is None:
        return "n/a"
    lo, hi = r["ci95"]
    return f"{r['value']:.4f} [{lo:.4f}, {hi:.4f}]"


def _num(x, digits=3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float) and (abs(x) >= 1e5 or (0 < abs(x) < 1e-3)):
        return f"{x:.{digits}g}"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return f"{x:,}"


def plot_det(summary: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for b in summary["backends"]:
        det = b["metrics"]["det"]
        fp, fn = np.array(det["fpir"], dtype=float), np.array(det["fnir"], dtype=float)
        ok = (fp > 0) & (fn > 0)
        ax.loglog(fp[ok], fn[ok], label=b["key"])
    ax.set_xlabel("FPIR (non-mated searches with a candidate >= T)")
    ax.set_ylabel("FNIR (mated searches missed)")
    ax.set_title("DET: FNIR against FPIR as the threshold sweeps")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_cmc(summary: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for b in summary["backends"]:
        c = b["metrics"]["cmc"]
        ax.plot(np.arange(1, len(c) + 1), c, marker=".", label=b["key"])
    ax.set_xlabel("rank r")
    ax.set_ylabel("hit rate within rank r (CMC)")
    ax.set_title("CMC")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_fpir_vs_n(proj: dict, target_n: int, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ns = np.logspace(np.log10(proj["rungs"][0]), np.log10(target_n), 60)
    from bench.projection import fpir_at_n, power_model
    for i, s in enumerate(proj["studies"]):
        color = f"C{i}"
        n = np.array([m["n"] for m in s["measured"]])
        f = np.array([m["fpir"] for m in s["measured"]])
        lo = np.array([m["ci95"][0] for m in s["measured"]])
        hi = np.array([m["ci95"][1] for m in s["measured"]])
        ax.errorbar(n, f, yerr=[np.maximum(f - lo, 0), np.maximum(hi - f, 0)], fmt="o", color=color,
                    label=f"measured, T = {s['threshold']:.3f}")
        ax.plot(ns, fpir_at_n(s["fmr"], ns), "--", color=color, alpha=0.8)
        if s["fit"]:
            ax.plot(ns, power_model(s["fit"]["a"], s["fit"]["b"], ns), ":", color=color, alpha=0.8)
    ax.axvline(target_n, color="k", lw=0.8)
    ax.text(target_n, 1e-4, " target", fontsize=8, rotation=90, va="bottom")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(1e-4, 1.5)
    ax.set_xlabel("gallery size N (enrolled identities)")
    ax.set_ylabel("FPIR(N, T)")
    ax.set_title(f"FPIR against N ({proj['finger_set']}): -- independence, : fitted")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, path)


def plot_people(proj: dict, path: Path) -> None:
    sw = proj["target"]["sweep"]
    t = np.array(sw["threshold"])
    people = np.array(sw["false_matches_per_year"], dtype=float)
    lo, hi = (np.array(x, dtype=float) for x in sw["false_matches_per_year_ci95"])
    wrong = np.array(sw["mated_wrong_per_year"], dtype=float)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    floor = 1e-3
    ax.semilogy(t, np.maximum(people, floor), label="non-mated searches falsely matched")
    ax.fill_between(t, np.maximum(lo, floor), np.maximum(hi, floor), alpha=0.25)
    ax.semilogy(t, np.maximum(wrong, floor), label="mated searches matched to someone else")
    ax.axhline(1.0, color="k", lw=0.8)
    ax2 = ax.twinx()
    ax2.plot(t, sw["fnir_sim"], "k:", label="FNIR (simulated)")
    ax2.set_ylabel("FNIR at T (mates missed)")
    ax2.set_ylim(0, 1)
    ax.set_xlabel("threshold T")
    ax.set_ylabel("people per year")
    ax.set_title(f"Misidentified people per year at N = {proj['target']['gallery_size']:,} "
                 f"({proj['finger_set']})", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + ax2.get_legend_handles_labels()[1]
    ax.legend(lines, labels, fontsize=7, loc="upper right")
    _save(fig, path)


def plot_throughput_recall(summary: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for b in summary["backends"]:
        qps = b["timings"].get("throughput_searches_per_s")
        rec = b.get("vs_exact", {}).get("recall_at_L", 1.0 if not b["binary"] else None)
        if qps is None or rec is None:
            continue
        ax.scatter(rec, qps)
        ax.annotate(b["key"], (rec, qps), fontsize=7)
    ax.set_xlabel("recall@L against exact search")
    ax.set_ylabel("searches per second")
    ax.set_yscale("log")
    ax.set_title("Throughput against recall")
    ax.grid(True, which="both", alpha=0.3)
    _save(fig, path)


def _recall_cell(b: dict, rec) -> str:
    if rec is not None:
        return f"{rec:.3f}"
    if b.get("rescored_from"):
        return f"re-scored from {b['rescored_from']}"
    return "exact (Hamming)" if b["binary"] else "exact"


def render_markdown(summary: dict) -> str:
    sc = summary["scenario"]
    pop = sc["population"]
    lines = [f"# fpscale report: {sc['name']}", "", sc.get("description", ""), "",
             f"Simulated: gallery {pop['gallery_size']:,} identities, {pop['n_submissions']:,} searches "
             f"(mated share {pop['mated_share']}), fingers searched {pop['search_fingers']}, seed {pop['seed']}. "
             f"Target: {sc['target']['gallery_size']:,} identities, {sc['target']['searches_per_year']:,.0f} "
             f"searches per year (mated share {sc['target']['mated_share']}).", "",
             "## Backends side by side", "",
             "| backend | rank-1 hit rate [95% CI] | FNIR at FPIR target | FPIR | threshold | searches/s | p50 latency ms | memory MB (est / actual) | recall@L vs exact |",
             "|---|---|---|---|---|---|---|---|---|"]
    for b in summary["backends"]:
        m = b["metrics"]
        op = m["operating_points"][0] if m["operating_points"] else {}
        rec = b.get("vs_exact", {}).get("recall_at_L")
        lines.append(
            f"| {b['key']} | {_fmt_rate(m['rank1_hit_rate'])} | {_fmt_rate(op.get('fnir'))} "
            f"(target {op.get('target_fpir')}{'' if op.get('resolved') else ', not resolved'}) | "
            f"{_fmt_rate(op.get('fpir'))} | {_num(op.get('threshold'))} | "
            f"{_num(b['timings']['throughput_searches_per_s'], 0)} | {b['timings']['latency_ms']['p50']:.2f} | "
            f"{b['memory']['estimate_bytes'] / 1e6:.1f} / {b['memory']['actual_bytes'] / 1e6:.1f} | "
            f"{_recall_cell(b, rec)} |")
    lines += ["", "Operating points (threshold chosen on the non-mated searches to reach each FPIR; "
              "'not resolved' means fewer non-mated searches than 1/FPIR):", ""]
    for b in summary["backends"]:
        for op in b["metrics"]["operating_points"]:
            lines.append(f"- {b['key']}: FPIR target {op['target_fpir']}: T = {_num(op['threshold'])}, "
                         f"FNIR {_fmt_rate(op['fnir'])}, FPIR {_fmt_rate(op['fpir'])}, SEL {_num(op['sel'])}"
                         f"{'' if op['resolved'] else ' (not resolved by the data)'}")
    lines += ["", "![DET](plots/det.png) ![CMC](plots/cmc.png)",
              "![throughput against recall](plots/throughput_recall.png)", ""]
    for fs, p in (summary.get("projection") or {}).items():
        lines += [f"## Projection: {fs}", "",
                  f"{p['impostor_pairs']:,} impostor comparisons measured; tail above T = {p['tail']['u']:.4f} "
                  f"(FMR {p['tail']['p_u']:.2e} there) modelled by a generalized Pareto fit "
                  f"({p['tail']['bootstrap']} bootstrap refits for the interval).", "",
                  "| T | FMR(T) | FPIR at largest rung (measured) | independence prediction | fitted (small rungs) prediction | fitted exponent b | FPIR at target N |",
                  "|---|---|---|---|---|---|---|"]
        for s in p["studies"]:
            last = s["measured"][-1]
            v = s["validation"]
            fp_pred = v.get("fitted_prediction")
            lines.append(
                f"| {s['threshold']:.4f} | {s['fmr']:.2e} | {last['fpir']:.4f} [{last['ci95'][0]:.4f}, {last['ci95'][1]:.4f}] "
                f"| {v['independence_prediction']:.4f} ({'inside' if v['independence_inside_ci'] else 'outside'} CI) "
                f"| {'n/a' if fp_pred is None else f'{fp_pred:.4f}'}"
                f"{'' if fp_pred is None else (' (inside CI)' if v['fitted_inside_ci'] else ' (outside CI)')} "
                f"| {'n/a' if not s['fit'] else format(s['fit']['b'], '.3f')} | {s['target_fpir_independence']:.4f} |")
        t = p["target"]
        t1 = t["threshold_under_one_per_year"]
        lines += ["", f"At the target scale the lowest threshold with under one misidentified person per year is "
                  f"{'beyond the measured range' if t1 is None else f'{t1:.4f}'}"
                  + ("" if t1 is None else f", where the simulated FNIR is {t['fnir_at_that_threshold']:.4f}") + ".",
                  "", f"![FPIR against N](plots/fpir_vs_n_{fs}.png) ![people per year](plots/people_{fs}.png)", ""]
    ind = summary.get("individuality")
    if ind:
        lines += ["## Chance correspondences: model and simulation", "",
                  f"Pankanti, Prabhakar and Jain (2002) model with M = {ind['M']} cells "
                  f"({ind['area_mm2']:.0f} mm^2 over discs of {ind['r_tol_mm']} mm), "
                  f"l = {ind['l']:.3f} ({ind['a_tol_deg']:.0f} degrees), m = {ind['m']}, n = {ind['n']}; "
                  f"simulation: {ind['pairs']:,} impostor pairs of {ind['capture']} impressions "
                  f"matched by fpscale's minutiae matcher (mean {ind['observed_mean']:.1f} paired, "
                  f"model {ind['model_mean']:.1f}: the matcher's search over alignments finds more "
                  "chance pairings than one fixed alignment).", "",
                  "| q | model P(>= q) | simulated P(>= q) |", "|---|---|---|"]
        for q in (6, 8, 10, 12, 15, 20):
            if q < len(ind["q"]):
                lines.append(f"| {q} | {ind['model_p_at_least'][q]:.2e} | {ind['observed_p_at_least'][q]:.2e} |")
        lines.append("")
    lines += ["## Run", "", f"Host: {summary['host']['cpus']} CPUs, {summary['host']['machine']}, "
              f"numba threads {summary['host']['numba_threads']}; versions {summary['host']['versions']}.",
              f"Wall time {summary['wall_s']:.1f} s (generation {summary['generation_s']:.1f} s).", ""]
    return "\n".join(lines)


def _md_to_html(md: str, title: str) -> str:
    # The report's Markdown uses headings, tables, bullets and images only:
    # a small converter keeps the HTML page free of extra dependencies.
    out, table = [], []

    def flush():
        if table:
            rows = [r.strip("|").split("|") for r in table if not set(r.replace("|", "").strip()) <= {"-"}]
            out.append("<table>" + "".join(
                "<tr>" + "".join(f"<{'th' if i == 0 else 'td'}>{html.escape(c.strip())}</{'th' if i == 0 else 'td'}>"
                                 for c in r) + "</tr>" for i, r in enumerate(rows)) + "</table>")
            table.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{html.escape(line[level:].strip())}</h{level}>")
        elif line.startswith("!["):
            for part in line.split(") "):
                alt, src = part[2:].split("](")
                out.append(f'<img alt="{html.escape(alt)}" src="{html.escape(src.rstrip(")"))}" style="max-width:48%">')
        elif line.startswith("- "):
            out.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    flush()
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(out)}</body></html>\n")


def write_report(folder: Path, summary: dict | None = None) -> Path:
    """Write report.md, report.html and plots/*.png into a results folder."""
    folder = Path(folder)
    if summary is None:
        p = folder / "summary.json"
        if not p.is_file():
            raise ResultsError(f"{folder} holds no summary.json: run a scenario into it first")
        try:
            summary = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ResultsError(f"{p} is not valid JSON ({e})") from None
    plots = folder / "plots"
    plot_det(summary, plots / "det.png")
    plot_cmc(summary, plots / "cmc.png")
    plot_throughput_recall(summary, plots / "throughput_recall.png")
    for fs, p in (summary.get("projection") or {}).items():
        plot_fpir_vs_n(p, summary["scenario"]["target"]["gallery_size"], plots / f"fpir_vs_n_{fs}.png")
        plot_people(p, plots / f"people_{fs}.png")
    md = render_markdown(summary)
    write_text(folder / "report.md", md)
    write_text(folder / "report.html", _md_to_html(md, f"fpscale: {summary['scenario']['name']}"))
    return folder / "report.md"
