"""The text of a comparison (``fpscale compare``): the Markdown page and the
operating-point table of several results side by side.

A run is given as (label, folder shown, summary); every row is named
``label/backend``. Numbers are printed rounded in the page and with every
digit in ``operating_points.csv`` (``OP_HEADER``, ``operating_point_rows``).
"""

from __future__ import annotations

from fpscale.bench.measure.metrics import Rate
from fpscale.bench.report.compare_plots import ladder_sets
from fpscale.bench.report.plots import list_recall
from fpscale.bench.store.summary import Summary

Run = tuple[str, str, Summary]  # label, the folder as given, summary

OP_HEADER = ["run", "backend", "target_fpir", "threshold", "resolved",
             "fnir", "fnir_lo", "fnir_hi", "fnir_count", "fnir_of",
             "fpir", "fpir_lo", "fpir_hi", "fpir_count", "fpir_of", "sel"]


def _rate_cells(r: Rate | None) -> list:
    if r is None:
        return [None] * 5
    return [r.value, r.ci95[0], r.ci95[1], r.count, r.of]


def operating_point_rows(runs: list[Run]) -> list[list]:
    """One row per run, backend and FPIR target, columns OP_HEADER, with the
    values of each run's summary as they are."""
    return [[label, b.key, op.target_fpir, op.threshold, op.resolved, *_rate_cells(op.fnir),
             *_rate_cells(op.fpir), op.sel]
            for label, _, s in runs for b in s.backends for op in b.metrics.operating_points]


def fmt_rate(r: Rate | None) -> str:
    """value [lo, hi] with four decimals, or n/a."""
    if r is None or r.value is None:
        return "n/a"
    lo, hi = r.ci95
    return f"{r.value:.4f} [{lo:.4f}, {hi:.4f}]"


def _num(x: float | None, fmt: str = ".4f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _printable(text: str) -> str:
    # a folder name is the user's: keep it on one line and out of the markup
    return "".join(c if c.isprintable() and c not in "|`" else "?" for c in text)


def _runs(runs: list[Run]) -> list[str]:
    lines = ["## Runs", ""]
    for label, folder, s in runs:
        pop, h = s.scenario.population, s.host
        if s.evaluation is not None:
            what = (f"candidate lists of {s.evaluation.matcher} (fpscale evaluate), "
                    f"{s.evaluation.searches:,} searches of which {s.evaluation.mated:,} mated, "
                    f"largest gallery {pop.gallery_size:,}")
        else:
            what = (f"scenario {s.scenario.name}, gallery {pop.gallery_size:,}, "
                    f"{pop.n_submissions:,} searches (mated share {pop.mated_share}), seed {pop.seed}")
        lines.append(f"- {label}: folder `{_printable(folder)}`; {what}; rank R = "
                     f"{s.scenario.metrics.rank}, lists of {s.scenario.search.candidates}; host "
                     f"{_printable(h.cpu_model or h.machine)} ({h.cpus} CPUs, numba threads "
                     f"{h.numba_threads}); git commit {_printable(h.git_commit or 'unknown')}; "
                     f"written {_printable(h.timestamp or 'n/a')}")
    hosts = {(s.host.cpu_model, s.host.cpus, s.host.numba_threads) for _, _, s in runs}
    if len(hosts) > 1:
        lines += ["", "The runs were measured on different hosts or thread counts: compare "
                  "their throughput only within one host."]
    return lines + [""]


def _backends(runs: list[Run]) -> list[str]:
    lines = ["## Backends side by side", "",
             "| run/backend | searches | rank-1 hit rate [95% CI] | FNIR at rank R, no threshold "
             "[95% CI] | searches/s | recall@L vs exact | p50 latency ms |",
             "|---|---|---|---|---|---|---|"]
    for label, _, s in runs:
        for b in s.backends:
            m, t = b.metrics, b.timings
            rec = list_recall(b)
            qps = t.throughput_searches_per_s
            lat = f"{t.latency_ms.p50:.2f}" if t.latency_ms.samples else "n/a"
            lines.append(f"| {label}/{b.key} | {m.searches:,} ({m.mated:,} mated) | "
                         f"{fmt_rate(m.rank1_hit_rate)} | {fmt_rate(m.fnir_no_threshold)} | "
                         f"{'n/a' if qps is None else f'{qps:,.0f}'} | {_num(rec, '.3f')} | {lat} |")
    return lines + [""]


def _operating_points(runs: list[Run]) -> list[str]:
    lines = ["## Operating points", "",
             "Each run's threshold is chosen on its own non-mated searches to reach each FPIR "
             "target; FNIR is at rank R; 95% intervals (Wilson). 'no' under resolved: fewer "
             "non-mated searches than 1/FPIR, so the threshold is an upper bound. Every digit: "
             "operating_points.csv.", "",
             "| run/backend | FPIR target | threshold | FNIR [95% CI] | FPIR [95% CI] | SEL | resolved |",
             "|---|---|---|---|---|---|---|"]
    for label, _, s in runs:
        for b in s.backends:
            for op in b.metrics.operating_points:
                lines.append(f"| {label}/{b.key} | {op.target_fpir:g} | {_num(op.threshold)} | "
                             f"{fmt_rate(op.fnir)} | {fmt_rate(op.fpir)} | {_num(op.sel, '.3f')} | "
                             f"{'yes' if op.resolved else 'no'} |")
    return lines + [""]


def render_compare(runs: list[Run], plots: dict[str, str]) -> str:
    """The comparison page; plots maps what a plot shows (det, cmc,
    fpir_vs_n, throughput_recall) to its file name, for those drawn."""
    labels = [label for label, _, _ in runs]
    lines = [f"# fpscale comparison: {', '.join(labels)}", "",
             "Every backend of every run side by side, named run/backend. Each run's numbers "
             "are those of its own summary.json; runs of different gallery sizes, searches or "
             "seeds measure different things, and the list below says which each is.", ""]
    lines += _runs(runs) + _backends(runs) + _operating_points(runs)
    lines += ["## DET and CMC", "",
              "DET: FNIR with the mate anywhere in the list against FPIR as the threshold "
              "sweeps. Markers: the operating points above (FNIR at rank R, so at or above the "
              "curve when R is shorter than the list), with their 95% intervals as error bars; "
              "hollow where not resolved.", "",
              f"![DET]({plots['det']}) ![CMC]({plots['cmc']})", "",
              "## FPIR against gallery size N", ""]
    if "fpir_vs_n" in plots:
        sets = ladder_sets([(label, s) for label, _, s in runs])
        lines += [f"FPIR measured at every rung of each run's ladder ({', '.join(sets)}), at the "
                  "thresholds where each run's largest rung measures its study FPIRs; 95% "
                  "intervals. A run without a ladder has no curve here.", "",
                  f"![FPIR against N]({plots['fpir_vs_n']})", ""]
    else:
        lines += ["No run measured a ladder of gallery sizes ([projection] ladder, or "
                  "`fpscale evaluate` with lists at several gallery sizes).", ""]
    lines += ["## Throughput against recall", "",
              "recall@L: the share of exact float search's candidates that a backend's lists "
              "hold (1 for exact search itself); rows without timings or without a defined "
              "recall (binary codes, re-scored lists, another matcher's lists) have no point.", "",
              f"![throughput against recall]({plots['throughput_recall']})", ""]
    return "\n".join(lines)
