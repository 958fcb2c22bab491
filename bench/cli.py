"""The ``fpscale`` command line.

A user's mistake (a bad scenario, a missing file, an unwritable folder)
prints one line, ``fpscale: error: ...``, and exits with code 2; never a
traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import bench  # noqa: F401  (numba cache location, before numba loads)


class UserError(Exception):
    """Raised for mistakes the user can fix; printed as one line."""


def _version() -> str:
    from bench.runner import fpscale_version
    return fpscale_version()


def _print_table(summary: dict, out: Path) -> None:
    rows = [("backend", "rank-1", "FPIR target", "T", "FNIR", "FPIR", "searches/s")]
    for b in summary["backends"]:
        m = b["metrics"]
        r1 = m["rank1_hit_rate"]["value"]
        for op in m["operating_points"][:2]:
            fn = op["fnir"]["value"]
            fp = op["fpir"]["value"]
            rows.append((b["key"], f"{r1:.3f}", f"{op['target_fpir']:g}" + ("" if op["resolved"] else "*"),
                         f"{op['threshold']:.4f}", f"{fn:.4f}", f"{fp:.4f}",
                         f"{b['timings']['throughput_searches_per_s']:,.0f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print()
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    if any(not op["resolved"] for b in summary["backends"] for op in b["metrics"]["operating_points"][:2]):
        print("* fewer non-mated searches than 1/FPIR: the threshold is an upper bound")
    proj = summary.get("projection") or {}
    tgt = summary["scenario"]["target"]
    if proj:
        print(f"\nProjected to {tgt['gallery_size']:,} enrolled and {tgt['searches_per_year']:,.0f} searches/year "
              f"(mated share {tgt['mated_share']}):")
        for fs, p in proj.items():
            s = p["studies"][-1] if p["studies"] else None
            if s is None:
                continue
            people = tgt["searches_per_year"] * (1 - tgt["mated_share"]) * s["target_fpir_independence"]
            last = s["measured"][-1]
            t1 = p["target"]["threshold_under_one_per_year"]
            print(f"  {fs:10s} at T = {s['threshold']:.4f} (FPIR {last['fpir']:.3f} at N = {last['n']:,}): "
                  f"FPIR {s['target_fpir_independence']:.3f} at target, about {people:,.0f} people/year falsely matched; "
                  + ("under 1/year needs T beyond the measured range" if t1 is None else
                     f"under 1/year needs T >= {t1:.4f} (FNIR there {p['target']['fnir_at_that_threshold']:.3f})"))
    print(f"\nReport: {out / 'report.md'} (and report.html); raw results: {out}")


def cmd_run(args) -> int:
    from bench.runner import run_scenario
    from bench.scenario import load_scenario
    sc = load_scenario(args.scenario)
    out = Path(args.out) if args.out else Path("results") / sc.name
    summary = run_scenario(sc, out, overwrite=args.overwrite, progress=not args.quiet)
    _print_table(summary, out)
    return 0


def cmd_report(args) -> int:
    from bench.report import write_report
    path = write_report(Path(args.results))
    print(f"wrote {path} and {path.with_suffix('.html')}")
    return 0


def cmd_synth_stats(args) -> int:
    from bench.synth_stats import print_stats, synth_stats
    from bench.scenario import load_scenario
    seed = args.seed
    if args.scenario:
        seed = load_scenario(args.scenario).population.seed
    print_stats(synth_stats(seed=seed, n=args.n))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fpscale", description=(
        "Benchmark harness for fingerprint identification (1:N search) at national scale: "
        "synthetic minutiae-level populations, numba and faiss search, NIST 1:N metrics, "
        "and projections of misidentified people per year."))
    p.add_argument("--version", action="version", version=f"fpscale {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="run a scenario end to end and write its results folder")
    r.add_argument("scenario", help="a scenario TOML file, or the name of a shipped one (default, scomm-fy2011, ident-2024)")
    r.add_argument("--out", help="results folder (default: results/<scenario name>)")
    r.add_argument("--overwrite", action="store_true", help="replace results of another scenario or version in --out")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=cmd_run)

    rep = sub.add_parser("report", help="write report.md, report.html and plots from a results folder")
    rep.add_argument("results", help="a results folder written by `fpscale run`")
    rep.set_defaults(func=cmd_report)

    s = sub.add_parser("synth-stats", help="statistics of the synthetic population")
    s.add_argument("--scenario", help="take the seed from this scenario")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("-n", type=int, default=2000, help="identities sampled (default 2000)")
    s.set_defaults(func=cmd_synth_stats)
    return p


def main(argv: list[str] | None = None) -> int:
    from bench.results import ResultsError
    from bench.scenario import ScenarioError
    from matcher.checks import MatcherInputError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (UserError, ScenarioError, ResultsError, MatcherInputError) as e:
        print(f"fpscale: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fpscale: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
