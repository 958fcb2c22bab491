"""The report's text: a Markdown page built from a run's summary."""

from __future__ import annotations

from bench.measure.metrics import Rate
from bench.store.summary import BackendResult, Summary


def _fmt_rate(r: Rate | None) -> str:
    if not r or r.value is None:
        return "n/a"
    lo, hi = r.ci95
    return f"{r.value:.4f} [{lo:.4f}, {hi:.4f}]"


def _num(x, digits=3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float) and (abs(x) >= 1e5 or (0 < abs(x) < 1e-3)):
        return f"{x:.{digits}g}"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return f"{x:,}"


def _recall_cell(b: BackendResult) -> str:
    if b.vs_exact is not None:
        return f"{b.vs_exact.recall_at_L:.3f}"
    if b.rescored_from:
        return f"re-scored from {b.rescored_from}"
    return "exact (Hamming)" if b.binary else "exact"


def _backends(summary: Summary) -> list[str]:
    lines = ["## Backends side by side", "",
             "| backend | rank-1 hit rate [95% CI] | FNIR at FPIR target | FPIR | threshold | searches/s | p50 latency ms | memory MB (est / actual) | recall@L vs exact |",
             "|---|---|---|---|---|---|---|---|---|"]
    for b in summary.backends:
        m = b.metrics
        op = m.operating_points[0] if m.operating_points else None
        t = b.timings
        lines.append(
            f"| {b.key} | {_fmt_rate(m.rank1_hit_rate)} | {_fmt_rate(op.fnir if op else None)} "
            f"(target {op.target_fpir if op else None}{'' if op and op.resolved else ', not resolved'}) | "
            f"{_fmt_rate(op.fpir if op else None)} | {_num(op.threshold if op else None)} | "
            f"{_num(t.throughput_searches_per_s, 0)} | {t.latency_ms.p50:.2f} | "
            f"{b.memory.estimate_bytes / 1e6:.1f} / {b.memory.actual_bytes / 1e6:.1f} | "
            f"{_recall_cell(b)} |")
    lines += ["", "Operating points (threshold chosen on the non-mated searches to reach each FPIR; "
              "'not resolved' means fewer non-mated searches than 1/FPIR):", ""]
    for b in summary.backends:
        for op in b.metrics.operating_points:
            lines.append(f"- {b.key}: FPIR target {op.target_fpir}: T = {_num(op.threshold)}, "
                         f"FNIR {_fmt_rate(op.fnir)}, FPIR {_fmt_rate(op.fpir)}, SEL {_num(op.sel)}"
                         f"{'' if op.resolved else ' (not resolved by the data)'}")
    lines += ["", "![DET](plots/det.png) ![CMC](plots/cmc.png)",
              "![throughput against recall](plots/throughput_recall.png)", ""]
    return lines


def _projection(summary: Summary) -> list[str]:
    lines = []
    for fs, p in (summary.projection or {}).items():
        lines += [f"## Projection: {fs}", "",
                  f"{p.impostor_pairs:,} impostor comparisons measured; tail above T = {p.tail.u:.4f} "
                  f"(FMR {p.tail.p_u:.2e} there) modelled by a generalized Pareto fit "
                  f"({p.tail.bootstrap} bootstrap refits for the interval).", "",
                  "| T | FMR(T) | FPIR at largest rung (measured) | independence prediction | fitted (small rungs) prediction | fitted exponent b | FPIR at target N |",
                  "|---|---|---|---|---|---|---|"]
        for s in p.studies:
            last = s.measured[-1]
            v = s.validation
            fp_pred = v.fitted_prediction
            lines.append(
                f"| {s.threshold:.4f} | {s.fmr:.2e} | {last.fpir:.4f} [{last.ci95[0]:.4f}, {last.ci95[1]:.4f}] "
                f"| {v.independence_prediction:.4f} ({'inside' if v.independence_inside_ci else 'outside'} CI) "
                f"| {'n/a' if fp_pred is None else f'{fp_pred:.4f}'}"
                f"{'' if fp_pred is None else (' (inside CI)' if v.fitted_inside_ci else ' (outside CI)')} "
                f"| {'n/a' if not s.fit else format(s.fit.b, '.3f')} | {s.target_fpir_independence:.4f} |")
        t = p.target
        t1 = t.threshold_under_one_per_year
        lines += ["", f"At the target scale the lowest threshold with under one misidentified person per year is "
                  f"{'beyond the measured range' if t1 is None else f'{t1:.4f}'}"
                  + ("" if t1 is None or t.fnir_at_that_threshold is None
                     else f", where the simulated FNIR is {t.fnir_at_that_threshold:.4f}") + ".",
                  "", f"![FPIR against N](plots/fpir_vs_n_{fs}.png) ![people per year](plots/people_{fs}.png)", ""]
    return lines


def _individuality(summary: Summary) -> list[str]:
    ind = summary.individuality
    if not ind:
        return []
    lines = ["## Chance correspondences: model and simulation", "",
             f"Pankanti, Prabhakar and Jain (2002) model with M = {ind.M} cells "
             f"({ind.area_mm2:.0f} mm^2 over discs of {ind.r_tol_mm} mm), "
             f"l = {ind.l:.3f} ({ind.a_tol_deg:.0f} degrees), m = {ind.m}, n = {ind.n}; "
             f"simulation: {ind.pairs:,} impostor pairs of {ind.capture} impressions "
             f"matched by fpscale's minutiae matcher (mean {ind.observed_mean:.1f} paired, "
             f"model {ind.model_mean:.1f}: the matcher's search over alignments finds more "
             "chance pairings than one fixed alignment).", "",
             "| q | model P(>= q) | simulated P(>= q) |", "|---|---|---|"]
    for q in (6, 8, 10, 12, 15, 20):
        if q < len(ind.q):
            lines.append(f"| {q} | {ind.model_p_at_least[q]:.2e} | {ind.observed_p_at_least[q]:.2e} |")
    lines.append("")
    return lines


def _text(text: str) -> list[str]:
    """Free text from the scenario as plain paragraphs: a line that Markdown
    would read as a heading, table, list or image gets a backslash escape."""
    out = []
    for line in text.splitlines():
        if line.lstrip().startswith(("#", "|", "!", "-", "*", "+", ">", "\\")):
            line = "\\" + line.lstrip()
        out.append(line)
    return out


def render_markdown(summary: Summary) -> str:
    """The whole report page."""
    sc = summary.scenario
    pop, tgt = sc.population, sc.target
    lines = [f"# fpscale report: {sc.name}", "", *_text(sc.description), "",
             f"Simulated: gallery {pop.gallery_size:,} identities, {pop.n_submissions:,} searches "
             f"(mated share {pop.mated_share}), fingers searched {list(pop.search_fingers)}, seed {pop.seed}. "
             f"Target: {tgt.gallery_size:,} identities, {tgt.searches_per_year:,.0f} "
             f"searches per year (mated share {tgt.mated_share}).", ""]
    lines += _backends(summary) + _projection(summary) + _individuality(summary)
    h = summary.host
    lines += ["## Run", "", f"Host: {h.cpus} CPUs, {h.machine}, "
              f"numba threads {h.numba_threads}; versions {h.versions}.",
              f"Wall time {summary.wall_s:.1f} s (generation {summary.generation_s:.1f} s).", ""]
    return "\n".join(lines)
