"""The report's text: a Markdown page built from a run's summary."""

from __future__ import annotations

from fpscale.bench.measure.metrics import Rate
from fpscale.bench.measure.projection import ENVELOPE, HEADLINE, SAME_RUNG, FingerSetProjection, HeldOut
from fpscale.bench.measure.rescored_ladder import PIPELINE_SUFFIX
from fpscale.bench.report.calibration import profile_lines
from fpscale.bench.store.summary import BackendResult, Summary


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


def _operating_points(summary: Summary) -> list[str]:
    lines = ["", "Operating points (threshold chosen on the non-mated searches to reach each FPIR; "
             "'not resolved' means fewer non-mated searches than 1/FPIR):", ""]
    for b in summary.backends:
        for op in b.metrics.operating_points:
            lines.append(f"- {b.key}: FPIR target {op.target_fpir}: T = {_num(op.threshold)}, "
                         f"FNIR {_fmt_rate(op.fnir)}, FPIR {_fmt_rate(op.fpir)}, SEL {_num(op.sel)}"
                         f"{'' if op.resolved else ' (not resolved by the data)'}")
    return lines


def _refined(summary: Summary) -> list[str]:
    # what the refinement did, per re-scored row that had one
    said = []
    for b in summary.backends:
        r = b.timings.refine
        if r is None:
            continue
        secs = f"{r.wall_s:.1f}" if r.wall_s is not None else f"{r.refine_s:.1f}"
        first = (f"{b.rescored_from}'s top {r.reranked_from:,} a search were re-ranked by "
                 f"asymmetric scores (the search's float projection against each record's "
                 f"code bits, search.rerank_candidates), and their top {r.searched:,} "
                 if r.reranked_from else f"{b.rescored_from}'s top {r.searched:,} a search were ")
        said.append(first + "re-ranked by the "
                    f"records' float vectors (inner product, as numba-flat scores them; the "
                    f"records regenerated from the seed) and the best {r.kept:,} handed to "
                    f"the re-scoring: {r.pairs:,} pairs in {secs} s")
    if not said:
        return []
    return ["", "Refined before re-scoring (search.refine_candidates): " + "; ".join(said) +
            ". The backend's own row reports its unrefined list."]


def _poor_depth(summary: Summary) -> str:
    # the re-scoring depth of poor searches, where it differs
    srch = summary.scenario.search
    k = min(srch.rescore_candidates, srch.candidates)
    if srch.rescore_poor_candidates <= k:
        return ""
    return (f" A search whose best booking finger is at quality {srch.rescore_poor_quality} or "
            f"worse had its top {srch.rescore_poor_candidates:,} re-scored, the others their top "
            f"{k:,}; listed means in the best {k:,} after re-scoring. The vectors retrieved "
            f"{srch.retrieved:,} a search; their own row reports its top {srch.candidates:,}.")


def _miss_sources(summary: Summary) -> list[str]:
    rows = [(b.key, ms) for b in summary.backends for ms in b.miss_sources or []]
    if not rows:
        return []
    lines = ["", "Where the misses come from: a re-scored backend misses a mate the candidate stage "
             "did not list, or one it listed that the 1:1 matcher scores below T (or past rank R). "
             "Unlisted mates were scored 1:1 as if listed; FNIR had every mate been listed is the "
             "floor the 1:1 stage sets (docs/calibration.md)." + _poor_depth(summary), "",
             "| backend | FPIR target | misses / mated | not listed, 1:1 reaches T | not listed, below T "
             "| listed, missed | FNIR had every mate been listed | misses / mated by best booking quality 1..5 |",
             "|---|---|---|---|---|---|---|---|"]
    for key, ms in rows:
        by_q = ", ".join(f"{m:,}/{n:,}" for m, n in zip(ms.misses_by_quality, ms.mated_by_quality))
        lines.append(f"| {key} | {ms.target_fpir:g} | {ms.misses:,} / {ms.mated:,} | "
                     f"{ms.not_listed_above:,} | {ms.not_listed_below:,} | {ms.listed_missed:,} | "
                     f"{_fmt_rate(ms.fnir_all_listed)} | {by_q} |")
    deeper = [f"{key} at FPIR {ms.target_fpir:g}: {ms.not_listed_above_retrieved:,} of "
              f"{ms.not_listed_above:,} in its top {ms.retrieved:,}" + (
                  "" if ms.not_listed_above_refinable is None else
                  f", and of the {ms.not_listed_above - ms.not_listed_above_retrieved:,} it did "
                  f"not retrieve, {ms.not_listed_above_refinable:,} the refinement would have "
                  f"handed on")
              for key, ms in rows if ms.retrieved is not None]
    if deeper:
        lines += ["", "Of the mates not listed though the 1:1 matcher reaches T, those the backend "
                  "did retrieve in its deeper list (before refinement, or the part kept for poor "
                  "searches), where a longer re-scored list or a better refinement would reach "
                  "them; the others it did not retrieve at all. Where the lists were refined, of "
                  "those not retrieved, the ones whose float score is above the last the refined "
                  "list handed on, which the refinement would have handed on had the codes "
                  "retrieved them: " + "; ".join(deeper) + "."]
    told = [f"{key} at FPIR {ms.target_fpir:g}: {ms.unmatchable:,} of {ms.misses:,}"
            for key, ms in rows if ms.unmatchable is not None]
    if told:
        lines += ["", "Unmatchable bookings among the misses (captures of another person's "
                  "fingers, `population.unmatchable_share`: missed by construction, at any "
                  "threshold and gallery size; counted in the columns above as not listed or "
                  "listed and missed): " + "; ".join(told) + "."]
    return lines


def _rate_cells(b: BackendResult) -> str:
    # the first cells of a row of either table: rank-1, FNIR and FPIR at the
    # first FPIR target, and its threshold
    m = b.metrics
    op = m.operating_points[0] if m.operating_points else None
    return (f"| {b.key} | {_fmt_rate(m.rank1_hit_rate)} | {_fmt_rate(op.fnir if op else None)} "
            f"(target {op.target_fpir if op else None}{'' if op and op.resolved else ', not resolved'}) | "
            f"{_fmt_rate(op.fpir if op else None)} | {_num(op.threshold if op else None)} |")


def _backends(summary: Summary) -> list[str]:
    lines = ["## Backends side by side", "",
             "| backend | rank-1 hit rate [95% CI] | FNIR at FPIR target | FPIR | threshold | searches/s | p50 latency ms | memory MB (est / actual) | recall@L vs exact |",
             "|---|---|---|---|---|---|---|---|---|"]
    for b in summary.backends:
        t = b.timings
        lat = f"{t.latency_ms.p50:.2f}" if t.latency_ms.samples else "n/a"
        lines.append(
            f"{_rate_cells(b)} "
            f"{_num(t.throughput_searches_per_s, 0)} | {lat} | "
            f"{b.memory.estimate_bytes / 1e6:.1f} / {b.memory.actual_bytes / 1e6:.1f} | "
            f"{_recall_cell(b)} |")
    if summary.scenario.search.streamed:
        lines += ["", "The search was streamed (search.streamed): the ladder's scan kept every "
                  "search's top candidates as the gallery was generated, the lists an exact "
                  "Hamming search returns; no index was held, and the search's time is inside "
                  "the ladder scan's seconds (below), so it has no searches/s or latency of its own."]
    lines += _refined(summary) + _operating_points(summary) + _miss_sources(summary)
    lines += ["", "![DET](plots/det.png) ![CMC](plots/cmc.png)",
              "![throughput against recall](plots/throughput_recall.png)", ""]
    return lines


def _ladder_scores(summary: Summary, fs: str) -> str:
    # what the ladder's scores, and so the thresholds T, are
    first = ("binary codes, bits minus Hamming distance, as numba-hamming"
             if summary.scenario.projection.scores == "codes" else
             "float vectors, inner product, as numba-flat")
    if not fs.endswith(PIPELINE_SUFFIX):
        return "scores: " + first
    srch = summary.scenario.search
    return (f"scores: the re-scored pipeline's, {srch.rescore_matcher} 1:1 scores fused by "
            f"{srch.rescore_fusion} over the searched fingers, of each rung's top "
            f"{min(srch.rescore_candidates, srch.candidates)} by the {first}")


def _fig(f, digits: int = 4) -> str:
    """A projected figure: value [interval], or why it is not given."""
    if f is None:
        return "n/a"
    if f.value is None:
        far = [x for x in (f.decades_n, f.decades_fpir) if x is not None]
        if len(far) < 2:
            return "not resolved (no data reach it)"
        d = max(far)
        return f"not resolved ({d:.1f} decades past the data)" if d > 0 else "not resolved"
    lo, hi = f.ci95
    fmt = (lambda x: f"{x:.{digits}g}") if abs(f.value) < 1e-3 or abs(f.value) >= 1e4 else \
        (lambda x: f"{x:.{digits}f}")
    return f"{fmt(f.value)} [{fmt(lo)}, {fmt(hi)}]"


def _measured(m) -> str:
    if m.value is None:
        return "n/a"
    return f"{m.value:.4f} [{m.ci95[0]:.4f}, {m.ci95[1]:.4f}] ({m.count} of {m.of})"


_CHECK_COLUMNS = {"shift-normal": "shift, normal growth", "shift": "shift, log growth",
                  "frailty": "gamma frailty", ENVELOPE: "envelope of the three",
                  "independence": "independence (fitted)"}


def _check_table(held: list[HeldOut], models: tuple[str, ...]) -> list[str]:
    lines = ["| T | measured FPIR [95% CI] | " + " | ".join(_CHECK_COLUMNS[m] for m in models) + " |",
             "|---|---|" + "---|" * len(models)]
    for h in held:
        cells = {c.model: f"{_fig(c.predicted)} {'inside' if c.inside else 'OUTSIDE'}"
                 if c.predicted.value is not None else c.predicted.note for c in h.checks}
        lines.append(f"| {h.threshold:.4f} | {_measured(h.measured)} | "
                     + " | ".join(cells.get(m, "n/a") for m in models) + " |")
    return lines + [""]


def held_out_lines(p: FingerSetProjection) -> list[str]:
    """Markdown lines of a projection's held-out checks: the one that chose
    the headline model, then the one that validated it (one check doing
    both, labelled optimistic, where the ladder is too short for two)."""
    if not p.held_out:
        return []
    h0, ch = p.held_out[0], p.choice
    models = tuple(_CHECK_COLUMNS)
    if not p.selection:
        how = (f", {SAME_RUNG}" if ch is not None and ch.scheme == "same-rung" else "")
        return ([f"### Held out{how}: fitted on rungs up to {h0.n_fit:,}, predicting {h0.n_test:,}", ""]
                + _check_table(p.held_out, models))
    s0 = p.selection[0]
    verdict = ("" if ch is None or ch.chosen == "none" else
               f" The {ch.chosen} model held {ch.inside} of {ch.of} inside: "
               + ("validated." if ch.validated else "not validated, so no figure is given at the target."))
    return ([f"### Chosen on: fitted on rungs up to {s0.n_fit:,}, predicting {s0.n_test:,}", "",
             "The headline model is the one that passes most of these checks; the check below "
             "played no part in the choice.", ""]
            + _check_table(p.selection, tuple(m for m in models if m in HEADLINE))
            + [f"### Validated on: fitted on rungs up to {h0.n_fit:,}, predicting {h0.n_test:,}", "",
               "The chosen model's column is its credential; the others are shown for comparison "
               "only." + verdict, ""]
            + _check_table(p.held_out, models))


def _projection(summary: Summary) -> list[str]:
    lines = []
    tgt = summary.scenario.target
    for fs, p in (summary.projection or {}).items():
        title = (f"{fs.removesuffix(PIPELINE_SUFFIX)}, re-scored pipeline"
                 if fs.endswith(PIPELINE_SUFFIX) else fs)
        lines += [f"## Projection: {title}", "",
                  f"Ladder {', '.join(f'{n:,}' for n in p.rungs)} ({_ladder_scores(summary, fs)}); "
                  f"{p.searches:,} non-mated searches "
                  f"at the largest rung. Headline: {p.model_note}."
                  + (f" Shift b = {_fig(p.shift_b)}: {p.shift_b.note}." if p.shift_b else ""), ""]
        lines += held_out_lines(p)
        lines += [f"### At the target: {p.target_gallery_size:,} enrolled, "
                  f"{tgt.searches_per_year:,.0f} searches a year (mated share {tgt.mated_share}, "
                  f"{tgt.bookings_per_person:g} bookings per person a year)", "",
                  f"Figures further than {p.max_decades:g} decade(s) past the data are not given. "
                  "The independence column is an upper bound (a search's impostor scores are "
                  "positively correlated), not an estimate.", "",
                  "| T | FPIR measured | FNIR measured | FPIR at target | independence bound | "
                  "false-positive searches / year | distinct persons / year | mated, wrong top candidate / year "
                  "| mated, non-mate listed / year | correct matches to stale records / year |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for a in p.at_target:
            persons = (f"{_fig(a.persons_low, 3)} to {_fig(a.persons_high, 3)}"
                       if a.persons_low.value is not None else _fig(a.persons_low))
            lines.append(f"| {a.threshold:.4f} | {_measured(a.measured[-1])} | {_measured(a.fnir)} | "
                         f"{_fig(a.fpir)} | {a.fpir_upper_bound:.4g} | {_fig(a.fp_searches, 3)} | {persons} | "
                         f"{_fig(a.mated_wrong_top, 3)} | {_fig(a.mated_listed_nonmate, 3)} | "
                         f"{_fig(a.stale_record_matches, 3)} |")
        u = p.under_one_per_year
        lines += ["", "Under one false-positive search a year at the target: "
                  + (f"T >= {_fig(u)}." if u.value is not None else f"{u.note}."), "",
                  f"Pooled impostor comparisons: {p.pooled_tail.pairs:,}; generalized Pareto tail "
                  f"above T = {p.pooled_tail.u:.4f} (FMR {p.pooled_tail.p_u:.2e} there), used for the "
                  "independence bound.", "",
                  f"![FPIR against N](plots/fpir_vs_n_{fs}.png) ![held-out check](plots/heldout_{fs}.png)", ""]
    return lines


def _individuality(summary: Summary) -> list[str]:
    ind = summary.individuality
    if not ind:
        return []
    lines = ["## Chance correspondences: model and simulation", "",
             f"Pankanti, Prabhakar and Jain (2002) model with M = {ind.cells} cells "
             f"({ind.area_mm2:.0f} mm^2 over discs of {ind.r_tol_mm} mm), "
             f"l = {ind.direction_agreement:.3f} ({ind.a_tol_deg:.0f} degrees), m = {ind.minutiae_probe}, n = {ind.minutiae_gallery}; "
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


def _evaluated(summary: Summary) -> list[str]:
    """What an evaluation of candidate lists read, in place of the simulated population."""
    ev, tgt = summary.evaluation, summary.scenario.target
    lines = [f"Evaluated: candidate lists of {ev.matcher} (not run by fpscale; nothing was "
             f"simulated or timed), {ev.searches:,} searches of which {ev.mated:,} mated, "
             f"truth {ev.truth} (sha256 {ev.truth_sha256[:12]}). "
             f"Target: {tgt.gallery_size:,} identities, {tgt.searches_per_year:,.0f} "
             f"searches per year (mated share {tgt.mated_share}).", "",
             "| file | gallery size | rows | list length | sha256 |", "|---|---|---|---|---|"]
    lines += [f"| {f.path} | {f.gallery_size:,} | {f.rows:,} | {f.list_length} | {f.sha256[:12]} |"
              for f in ev.files]
    return lines + ["", f"Projection: {ev.projection_note}.", ""]


def _searched(summary: Summary) -> list[str]:
    """What ``fpscale search`` read, in place of the simulated population."""
    vs = summary.vector_search
    train = min(vs.train_size, vs.gallery.rows)
    lines = [f"Searched: gallery and probe vectors read from files (gallery ids are row numbers), "
             f"{vs.searches:,} searches of which {vs.mated:,} mated, lists of {vs.candidates} "
             f"candidates, truth {vs.truth} (sha256 {vs.truth_sha256[:12]}). Indexes that train "
             f"learn from the first {train:,} gallery rows; threads: "
             f"{vs.threads if vs.threads is not None else 'each library default'}.", "",
             "| file | format | values | rows | dimension | sha256 |", "|---|---|---|---|---|---|"]
    lines += [f"| {f.path} | {f.format} | {f.dtype} | {f.rows:,} | {f.dim:,} | {f.sha256[:12]} |"
              for f in (vs.gallery, vs.probes)]
    return lines + [""]


def _evaluated_rows(summary: Summary) -> list[str]:
    lines = ["## Candidate lists", "",
             "| row | rank-1 hit rate [95% CI] | FNIR at FPIR target | FPIR | threshold |",
             "|---|---|---|---|---|"]
    for b in summary.backends:
        lines.append(_rate_cells(b))
    lines += _operating_points(summary) + _miss_sources(summary)
    return lines + ["", "![DET](plots/det.png) ![CMC](plots/cmc.png)", ""]
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
    lines = [f"# fpscale report: {sc.name}", "", *_text(sc.description), ""]
    if summary.evaluation is not None:
        lines += _evaluated(summary) + _evaluated_rows(summary)
    elif summary.vector_search is not None:
        lines += _searched(summary) + _backends(summary)
    else:
        lines += [f"Simulated: gallery {pop.gallery_size:,} identities, {pop.n_submissions:,} searches "
                  f"(mated share {pop.mated_share}), fingers searched {list(pop.search_fingers)}, "
                  f"seed {pop.seed}; extraction noise {pop.extraction_noise:g}, capture noise "
                  f"{pop.capture_noise:g}. Target: {tgt.gallery_size:,} identities, "
                  f"{tgt.searches_per_year:,.0f} searches per year (mated share {tgt.mated_share}).", ""]
        lines += _backends(summary)
    lines += profile_lines(sc.calibration)
    lines += _projection(summary) + _individuality(summary)
    lines += _host(summary)
    return "\n".join(lines)


def _host(summary: Summary) -> list[str]:
    h = summary.host
    pools = "; ".join(f"{p.internal_api}{' ' + p.version if p.version else ''} "
                      f"({p.architecture or p.user_api}, {p.num_threads} threads)"
                      for p in h.thread_pools)
    return ["## Run", "",
            f"Host: {h.cpu_model or h.machine}, {h.cpus} CPUs ({h.physical_cores or '?'} cores), "
            f"{h.machine}, numba threads {h.numba_threads}; versions {h.versions}.",
            f"Thread pools: {pools or 'not recorded'}.",
            f"Source: git commit {h.git_commit or 'unknown'}; summary written {h.timestamp or 'n/a'} "
            f"(schema version {summary.schema_version}).",
            f"Wall time {summary.wall_s:.1f} s ({_gallery_pass(summary)}).", *_resumed(summary), ""]


def _resumed(summary: Summary) -> list[str]:
    r = summary.resumed
    if r is None:
        return []
    return [f"Resumed: {r.starts} starts. The wall time above is the last start's; the earlier "
            f"ones ran {r.earlier_s:,.1f} s up to their last checkpoint and built "
            f"{r.gallery_records_before:,} of the {summary.scenario.population.gallery_size:,} "
            "gallery records. The stage times (generation, ladder, search, re-scoring) add up "
            "every start's."]


def _gallery_pass(summary: Summary) -> str:
    # where the gallery pass went: generation (with its rate) and the
    # ladder; evaluations and vector searches generate nothing, and on a
    # cluster the seconds are summed over workers (a rate per worker)
    n, g = summary.scenario.population.gallery_size, summary.generation_s
    simulated = g > 0 and summary.evaluation is None and summary.vector_search is None
    per = " per worker" if summary.cluster is not None else ""
    rate = f", {n / g:,.0f} gallery records/s{per}" if simulated else ""
    streamed = " with the streamed search" if summary.scenario.search.streamed else ""
    lad = f"; ladder scan{streamed} {summary.ladder_s:.1f} s" if summary.ladder_s else ""
    lr = summary.ladder_rescore
    if lr is not None:
        lad += (f"; the rungs' lists re-scored: {lr.comparisons:,} comparisons in "
                f"{lr.compare_s:.1f} s")
    return f"generation {g:.1f} s{rate}{lad}"
