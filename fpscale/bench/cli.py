"""The ``fpscale`` command line.

A user's mistake (a bad scenario, a missing file, an unwritable folder)
prints one line, ``fpscale: error: ...``, and exits with code 2; never a
traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
from pathlib import Path

import fpscale.bench  # noqa: F401  (numba cache location, before numba loads)


class UserError(Exception):
    """Raised for mistakes the user can fix; printed as one line."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in fpscale's one-line form."""

    def error(self, message: str):
        message = " ".join(message.split())
        self.exit(2, f"fpscale: error: {self.prog}: {message} (see {self.prog} --help)\n")


def _version() -> str:
    from fpscale.bench.run.host import fpscale_version
    return fpscale_version()


def _print_table(summary, out: Path) -> None:
    rows = [("backend", "rank-1", "FPIR target", "T", "FNIR", "FPIR", "searches/s")]
    for b in summary.backends:
        m = b.metrics
        r1 = m.rank1_hit_rate.value
        for op in m.operating_points[:2]:
            qps = b.timings.throughput_searches_per_s
            rows.append((b.key, f"{r1:.3f}", f"{op.target_fpir:g}" + ("" if op.resolved else "*"),
                         f"{op.threshold:.4f}", f"{op.fnir.value:.4f}", f"{op.fpir.value:.4f}",
                         "n/a" if qps is None else f"{qps:,.0f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print()
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    if any(not op.resolved for b in summary.backends for op in b.metrics.operating_points[:2]):
        print("* fewer non-mated searches than 1/FPIR: the threshold is an upper bound")
    from fpscale.bench.report.console import miss_source_line
    for b in summary.backends:
        for ms in (b.miss_sources or [])[-1:]:  # the strictest target
            print(miss_source_line(b.key, ms))
    cal = summary.scenario.calibration
    if cal.profile:
        fits = ", ".join(f"target {f.target} at N = {f.gallery_size:,}: FNIR {f.fnir:.2g} "
                         f"[{f.fnir_low:.2g}, {f.fnir_high:.2g}]" for f in cal.fit) or "not fitted yet"
        print(f"Matcher profile {cal.profile} ({fits}); see the report's profile section")
    elif summary.evaluation is None and getattr(summary, "vector_search", None) is None:
        print("Matcher: fpscale's own settings, not calibrated to a published system "
              "(profiles and how far they reach: docs/calibration.md)")
    if summary.projection:
        from fpscale.bench.report.console import projection_lines
        print()
        print("\n".join(projection_lines(summary.scenario.target, summary.projection)))
    print(f"\nReport: {out / 'report.md'} (and report.html); raw results: {out}")


def cmd_run(args) -> int:
    from fpscale.bench.run.steps import run_scenario
    from fpscale.bench.scenario import load_scenario, safe_name
    from fpscale.bench.store.manifest import DamagedError
    max_memory = _parse_size(args.max_memory)
    if args.out is not None:
        out = _out_path(args.out)
    sc = load_scenario(args.scenario, args.set or ())
    sc = _with_cluster_options(sc, args)
    if args.out is None:  # the name is checked; safe_name keeps it a plain folder name anyway
        out = Path("results") / safe_name(sc.name)
    try:
        summary = run_scenario(sc, out, overwrite=args.overwrite, progress=not args.quiet,
                               max_memory=max_memory)
    except DamagedError as e:
        raise UserError(f"{e}; start afresh with: {_afresh(args, out)}") from None
    _print_table(summary, out)
    return 0


def _out_path(text: str, what: str = "--out") -> Path:
    """A folder name the system can hold (no NUL, no over-long name)."""
    if not text or "\0" in text:
        raise UserError(f"{what} must be a folder name without NUL characters")
    parts = Path(text).parts
    if len(os.fsencode(text)) > 3000 or any(len(os.fsencode(p)) > 255 for p in parts):
        raise UserError(f"{what} is too long ({len(text)} characters; at most 255 per folder name)")
    return Path(text)


def _afresh(args, out: Path) -> str:
    """The command that runs the same scenario into a new folder."""
    n = 2
    while Path(f"{out}-{n}").exists():
        n += 1
    cmd = ["fpscale", "run", args.scenario, "--out", f"{out}-{n}"]
    for opt in ("max_memory", "scheduler", "workers", "shards"):
        v = getattr(args, opt, None)
        if v is not None:
            cmd += [f"--{opt.replace('_', '-')}", str(v)]
    if args.quiet:
        cmd.append("--quiet")
    return shlex.join(cmd)


def _with_cluster_options(sc, args):
    """The scenario with --scheduler, --workers and --shards applied."""
    import dataclasses
    from fpscale.bench.scenario import MAX_SHARDS, MAX_WORKERS, scheduler_problem
    changes = {}
    for opt, hi in (("workers", MAX_WORKERS), ("shards", MAX_SHARDS)):
        v = getattr(args, opt, None)
        if v is not None:
            if not 1 <= v <= hi:
                raise UserError(f"--{opt} must be a positive integer up to {hi:,}, got {v}")
            changes[opt] = v
    if args.scheduler is not None:
        if not args.scheduler.strip() or scheduler_problem(args.scheduler.strip()):
            raise UserError('--scheduler must be "local" or a scheduler address such as tcp://10.0.0.5:8786')
        changes["scheduler"] = args.scheduler.strip()
    scheduler = changes.get("scheduler", sc.cluster.scheduler)
    if changes and not scheduler:
        raise UserError("--workers and --shards need --scheduler (or [cluster] scheduler in the scenario)")
    if "workers" in changes and scheduler != "local":
        raise UserError("--workers sets the size of a local cluster (--scheduler local); "
                        "a running scheduler has the workers that were started for it")
    return dataclasses.replace(sc, cluster=dataclasses.replace(sc.cluster, **changes)) if changes else sc


MAX_MEMORY = 1 << 60  # 1 EiB: more than any machine holds


def _parse_size(text: str | None) -> int | None:
    if text is None:
        return None
    units = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    num, unit = (t[:-1], t[-1]) if t and t[-1] in "kmgt" else (t, "")
    shown = repr(text) if len(text) <= 40 else repr(text[:37] + "...")
    try:
        value = float(num) * units[unit]
    except (ValueError, OverflowError):
        raise UserError(f"--max-memory {shown}: give a size such as 8G or 512M") from None
    if not math.isfinite(value) or not 0 < value <= MAX_MEMORY:
        raise UserError(f"--max-memory {shown}: give a positive size up to 1 EiB, such as 8G")
    return int(value)


def cmd_report(args) -> int:
    from fpscale.bench.report.write import write_report
    path = write_report(_out_path(args.results, "the results folder"))
    print(f"wrote {path} and {path.with_suffix('.html')}")
    return 0


SYNTH_STATS_MAX = 50_000  # identities: about 20 KB each, all ten fingers twice


def cmd_synth_stats(args) -> int:
    from fpscale.bench.tools.synth_stats import print_stats, synth_stats
    from fpscale.bench.scenario import load_scenario
    if not 10 <= args.n <= SYNTH_STATS_MAX:
        raise UserError(f"-n {args.n}: give a number of identities in [10, {SYNTH_STATS_MAX:,}]")
    if not 0 <= args.seed < 2**63:
        raise UserError(f"--seed {args.seed}: give a seed in [0, 2**63)")
    seed = args.seed
    if args.scenario:
        seed = load_scenario(args.scenario).population.seed
    print_stats(synth_stats(seed=seed, n=args.n))
    return 0


def cmd_project(args) -> int:
    import json

    from fpscale.bench.report.console import projection_lines
    from fpscale.bench.store.files import jsonable
    from fpscale.bench.store.summary import to_json_dict
    from fpscale.bench.tools.project import reproject, write_projection
    thresholds = None
    if args.thresholds:
        try:
            thresholds = tuple(float(x) for x in args.thresholds.split(","))
        except ValueError:
            raise UserError(f"--thresholds {args.thresholds!r}: give scores such as 0.9,1.0") from None
        if not all(math.isfinite(t) for t in thresholds) or len(thresholds) > 100:
            raise UserError(f"--thresholds {args.thresholds!r}: at most 100 finite thresholds")
    folder = _out_path(args.results, "the results folder")
    target, proj = reproject(folder, {
        "gallery_size": args.gallery_size, "searches_per_year": args.searches_per_year,
        "mated_share": args.mated_share, "bookings_per_person": args.bookings_per_person},
        thresholds)
    out = write_projection(folder, target, proj)
    if args.json:
        import dataclasses
        print(json.dumps(jsonable({"target": dataclasses.asdict(target),
                                   "projection": to_json_dict(proj)}), indent=1, allow_nan=False))
        return 0
    print("\n".join(projection_lines(target, proj)))
    print(f"wrote {out}")
    return 0


def cmd_coverage(args) -> int:
    import dataclasses
    import json

    from fpscale.bench.tools.coverage import coverage, coverage_lines
    cov = coverage([_out_path(r, "the results folder") for r in args.results])
    if args.json:
        print(json.dumps(dataclasses.asdict(cov), indent=1))
        return 0
    print("\n".join(coverage_lines(cov)))
    return 0


def cmd_evaluate(args) -> int:
    from fpscale.bench.tools.evaluate import EvaluateOptions
    from fpscale.bench.tools.evaluation import run_evaluation
    sizes = []
    for text in args.gallery_size:
        try:
            sizes.append(int(text))
        except ValueError:
            raise UserError(f"--gallery-size {text!r}: give the number of records searched, "
                            "such as 20000") from None
    out = Path(args.out)
    opts = EvaluateOptions(tuple(Path(c) for c in args.candidates), Path(args.truth), tuple(sizes),
                           out, args.matcher,
                           {"gallery_size": args.target_gallery_size,
                            "searches_per_year": args.searches_per_year,
                            "mated_share": args.mated_share,
                            "bookings_per_person": args.bookings_per_person},
                           Path(args.scenario) if args.scenario else None, args.overwrite)
    summary = run_evaluation(opts)
    if not summary.projection:
        print(f"\n{summary.evaluation.projection_note}.")
    _print_table(summary, out)
    return 0


def _recorded_args(argv: list[str]) -> list[str]:
    # what a fit row keeps of the command: where its files went, and whether
    # it printed progress or wrote the profile, do not change what it measured
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--out":
            skip = True
        elif not (a.startswith("--out=") or a in ("--write", "--quiet")):
            out.append(a)
    return out


def cmd_calibrate(args) -> int:
    from fpscale.bench.profile import profile_path
    from fpscale.bench.tools.calibrate import CalibrationRequest, calibrate, write_profile
    out = _out_path(args.out) if args.out else Path("results") / f"calibrate-{args.profile}"
    for name, v, lo in (("--gallery-size", args.gallery_size, 100), ("--searches", args.searches, 100),
                        ("--steps", args.steps, 1)):
        if v is not None and not lo <= v <= 10**9:
            raise UserError(f"{name} {v}: give a number from {lo} to 1,000,000,000")
    req = CalibrationRequest(args.profile, args.target, args.gallery_size, args.searches, out,
                             args.steps, args.rescore_candidates, args.parameter)
    command = "fpscale " + " ".join(shlex.quote(a) for a in _recorded_args(sys.argv[1:]))
    new, text = calibrate(req, command, progress=not args.quiet, confirm=args.confirm)
    if args.write:
        write_profile(profile_path(args.profile), new)
    print(text.split("\n## ")[0].strip())
    print(f"\nReport: {out / 'calibration.md'}; fitted profile: "
          f"{profile_path(args.profile) if args.write else out / (args.profile + '.toml')}")
    return 0


def cmd_search(args) -> int:
    from fpscale.bench.tools.vector_search import SearchOptions, run_search
    out = _out_path(args.out)
    opts = SearchOptions(Path(args.gallery), Path(args.probes), Path(args.truth), tuple(args.backend),
                         args.candidates, out, args.train_size, args.threads, args.overwrite,
                         progress=not args.quiet)
    summary = run_search(opts)
    _print_table(summary, out)
    return 0


def cmd_sweep(args) -> int:
    from fpscale.bench.scenario import safe_name
    if (args.key is None) == (args.param is None):
        raise UserError("sweep: give either --key with --values (a scenario key, one run per "
                        "value) or --param (a backend's search parameter over one built index)")
    if args.param is not None:
        return _sweep_param(args)
    if args.values is None or args.backend is not None:
        raise UserError("sweep --key takes --values (and no --backend, which goes with --param)")
    from fpscale.bench.tools.sweep import parse_values, sweep
    out = _out_path(args.out) if args.out else \
        Path("results") / f"sweep-{safe_name(Path(args.scenario).stem)}"
    rows = sweep(args.scenario, args.key, parse_values(args.values), out, args.overwrite,
                 progress=not args.quiet)
    def iv(r, k, d):
        if r[k] is None:
            return "n/a"
        lo, hi = r[k + "_low"], r[k + "_high"]
        return f"{r[k]:.{d}f} [{lo:.{d}f}, {hi:.{d}f}]" if lo is not None and hi is not None else f"{r[k]:.{d}f}"
    print(f"\n{args.key:>24s}  {'backend':36s}  {'rank-1 [95%]':22s}  {'FNIR [95%]':25s}  "
          f"{'FPIR':7s} searches/s")
    for r in rows:
        qps = "n/a" if r["searches_per_s"] is None else f"{r['searches_per_s']:,.0f}"
        fpir = "n/a" if r["fpir"] is None else f"{r['fpir']:.4f}"
        print(f"{str(r['value']):>24s}  {r['backend']:36s}  {iv(r, 'rank1', 3):22s}  "
              f"{iv(r, 'fnir', 4):25s}  {fpir:7s} {qps}")
    print(f"\nwrote {out / 'sweep.json'}, sweep.csv, sweep.png and one results folder per value")
    return 0


def _sweep_param(args) -> int:
    from fpscale.bench.scenario import safe_name
    from fpscale.bench.tools.param_sweep import parse_param, plan_param_sweep, run_param_sweep
    if args.values is not None:
        raise UserError("sweep --param takes its values itself, as in --param nprobe=1,4,16,64 "
                        "(--values goes with --key)")
    name, _ = parse_param(args.param)
    out = _out_path(args.out) if args.out else \
        Path("results") / f"sweep-{safe_name(Path(args.scenario).stem)}-{name}"
    ps = plan_param_sweep(args.scenario, args.backend, args.param)
    rows = run_param_sweep(ps, out, args.overwrite, progress=not args.quiet)
    print(f"\n{ps.backend.name}, {ps.param} swept over one built index "
          f"(recall@{ps.scenario.search.candidates} against {rows[0]['backend']}):")
    print(f"{'setting':>20s}  {'recall [95% CI]':26s}  {'searches/s':>11s}  rank-1 hit rate")
    for r in rows:
        setting = f"{r['param']}={r['value']}" if r["param"] else f"exact ({r['backend']})"
        print(f"{setting:>20s}  {r['recall']:.4f} [{r['recall_lo']:.4f}, {r['recall_hi']:.4f}]"
              f"  {r['searches_per_s']:11,.0f}  {r['rank1_hit_rate']:.3f}"
              f"{'  (frontier)' if r['pareto'] else ''}")
    print(f"\nwrote {out / 'frontier.csv'}, {out / 'frontier.png'} and {out / 'sweep.json'}")
    return 0


def cmd_compare(args) -> int:
    from fpscale.bench.tools.compare import compare
    out = _out_path(args.out)
    folders = [_out_path(r, "a results folder") for r in args.results]
    path = compare(folders, out, overwrite=args.overwrite)
    print(f"wrote {path}, {path.with_suffix('.html')} and {out / 'operating_points.csv'}")
    return 0


SCALING_MAX = 1e8  # records: the largest gallery `fpscale bench scaling` generates


def cmd_bench(args) -> int:
    if args.what != "scaling":
        raise UserError(f"unknown benchmark {args.what!r}; allowed: scaling "
                        "(the pytest-benchmark suites run with `make bench`)")
    from fpscale.bench.tools.scaling import DEFAULT_BACKENDS, check_scaling, scaling, write_scaling
    out = _out_path(args.out)
    shown = args.sizes if len(args.sizes) <= 60 else args.sizes[:57] + "..."
    try:
        values = [float(x) for x in args.sizes.split(",")]
    except ValueError:
        raise UserError(f"--sizes {shown!r}: give gallery sizes such as 1e4,3e4,1e5") from None
    if not all(math.isfinite(v) and v == int(v) and 1 <= v <= SCALING_MAX for v in values) \
            or len(set(values)) < 2 or len(values) > 20:
        raise UserError(f"--sizes {shown!r}: give 2 to 20 different whole sizes in "
                        f"[1, {SCALING_MAX:,.0f}]")
    sizes = [int(v) for v in values]
    backends = args.backends.split(",") if args.backends else list(DEFAULT_BACKENDS)
    check_scaling(sizes, backends, args.dim, args.probes)  # named errors before any work
    res = scaling(sizes, backends, dim=args.dim, probes=args.probes, progress=not args.quiet)
    write_scaling(res, out)
    print(f"{'backend':22s} {'N':>10s} {'build s':>9s} {'searches/s':>11s} {'memory MB':>10s}")
    for r in res["rows"]:
        print(f"{r['backend']:22s} {r['n']:>10,d} {r['build_s']:9.2f} {r['searches_per_s']:11,.0f} "
              f"{r['memory_bytes'] / 1e6:10.1f}")
    for b, f in res["fits"].items():
        print(f"{b:22s} growth exponents: search {f['search_exponent']:.2f}, build {f['build_exponent']:.2f}, "
              f"memory {f['memory_exponent']:.2f}")
    print(f"wrote {out / 'scaling.json'} and {out / 'scaling.png'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="fpscale", description=(
        "Benchmark harness for fingerprint identification (1:N search) at national scale: "
        "synthetic minutiae-level populations, numba and faiss search, NIST 1:N metrics, "
        "and projections of misidentified people per year."))
    p.add_argument("--version", action="version", version=f"fpscale {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="run a scenario end to end and write its results folder")
    shipped = ", ".join(sorted(f.stem for f in (Path(__file__).parent / "scenarios").glob("*.toml")))
    r.add_argument("scenario", help=f"a scenario TOML file, or the name of a shipped one ({shipped})")
    r.add_argument("--out", help="results folder (default: results/<scenario name>)")
    r.add_argument("--overwrite", action="store_true", help="replace results of another scenario or version in --out")
    r.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override one scenario key, e.g. --set population.gallery_size=50000 or "
                        "--set calibration.profile=median-2012 (repeatable; values read as TOML)")
    r.add_argument("--quiet", action="store_true",
                   help="no progress or notes on stderr (errors and repair warnings only)")
    r.add_argument("--max-memory", help="refuse plans above this size, e.g. 8G (default: available memory)")
    r.add_argument("--scheduler", help='run on Dask: "local" (a cluster of worker processes on this '
                   'machine) or a scheduler address such as tcp://10.0.0.5:8786 (default: this process)')
    r.add_argument("--workers", type=int, help="worker processes of a local cluster (default: one per core)")
    r.add_argument("--shards", type=int, help="gallery shards on the cluster (default: two per worker)")
    r.set_defaults(func=cmd_run)

    rep = sub.add_parser("report", help="write report.md, report.html and plots from a results folder")
    rep.add_argument("results", help="a results folder written by `fpscale run`")
    rep.set_defaults(func=cmd_report)

    pr = sub.add_parser("project", help="project a finished run to another national target")
    pr.add_argument("results", help="a results folder whose scenario has a [projection] ladder")
    pr.add_argument("--gallery-size", type=int, help="enrolled identities at the target")
    pr.add_argument("--searches-per-year", type=float, help="searches a year at the target")
    pr.add_argument("--mated-share", type=float, help="share of searches whose person is enrolled")
    pr.add_argument("--bookings-per-person", type=float,
                    help="searches a year of a person searched at least once that year")
    pr.add_argument("--thresholds", help="comma-separated thresholds (default: where the largest "
                    "rung measures the scenario's study FPIRs)")
    pr.add_argument("--json", action="store_true", help="print the projection as JSON")
    pr.set_defaults(func=cmd_project)

    cv = sub.add_parser("coverage", help="how often each projection model held its held-out "
                        "rungs, over several results folders")
    cv.add_argument("results", nargs="+", help="results folders whose scenario has a [projection] ladder")
    cv.add_argument("--json", action="store_true", help="print the counts as JSON")
    cv.set_defaults(func=cmd_coverage)

    ev = sub.add_parser("evaluate", help="NIST metrics, report and projection of another "
                        "matcher's candidate lists (CSV or Parquet)")
    ev.add_argument("candidates", nargs="+", help="candidate lists: CSV or Parquet with columns "
                    "probe_id, rank, candidate_id, score; one file per gallery size")
    ev.add_argument("--truth", required=True, help="CSV or Parquet with columns probe_id, mate_id "
                    "(mate_id empty for a non-mated search)")
    ev.add_argument("--gallery-size", action="append", required=True, metavar="N",
                    help="records in the gallery searched; once per candidates file, same order")
    ev.add_argument("--out", required=True, help="results folder")
    ev.add_argument("--matcher", default="matcher", help="the matcher's name in the results (default: matcher)")
    ev.add_argument("--scenario", help="take [target], [metrics] and the projection's study "
                    "settings from this scenario file (or shipped scenario name)")
    ev.add_argument("--target-gallery-size", type=int, help="enrolled identities at the target")
    ev.add_argument("--searches-per-year", type=float, help="searches a year at the target")
    ev.add_argument("--mated-share", type=float, help="share of searches whose person is enrolled")
    ev.add_argument("--bookings-per-person", type=float,
                    help="searches a year of a person searched at least once that year")
    ev.add_argument("--overwrite", action="store_true", help="replace other results in --out")
    ev.set_defaults(func=cmd_evaluate)

    ca = sub.add_parser("calibrate", help="fit a matcher profile's extraction (or capture) noise "
                        "to its published operating point (profiles/<name>.toml)")
    ca.add_argument("profile", help="a shipped profile: best-2012, median-2012, ident-2004")
    ca.add_argument("--target", help="which of the profile's targets (default: its first)")
    ca.add_argument("--gallery-size", type=int, default=50_000,
                    help="gallery of each trial run (default 50,000)")
    ca.add_argument("--searches", type=int, default=6_000,
                    help="searches of each trial run (default 6,000)")
    ca.add_argument("--steps", type=int, default=6,
                    help="trials: the range's low end, then bisection steps (default 6)")
    ca.add_argument("--parameter", default="population.extraction_noise",
                    choices=("population.extraction_noise", "population.capture_noise",
                             "population.unmatchable_share"),
                    help="what to fit (default population.extraction_noise); the capture noise "
                    "is searched from the floor set by the cited placement consistency of "
                    "cooperative users up, the unmatchable share from 0 (docs/calibration.md)")
    ca.add_argument("--rescore-candidates", type=int,
                    help="re-score only this many of each list (default: the scenario's)")
    ca.add_argument("--confirm", action="store_true",
                    help="measure the profile as it stands at the target's published gallery size")
    ca.add_argument("--write", action="store_true",
                    help="write the fitted value and its [[fit]] row into the shipped profile file")
    ca.add_argument("--out", help="folder for the trial runs and the report "
                    "(default: results/calibrate-<profile>)")
    ca.add_argument("--quiet", action="store_true")
    ca.set_defaults(func=cmd_calibrate)

    se = sub.add_parser("search", help="run backends on gallery and probe vectors from files "
                        "(.npy, .fbin, .u8bin, .i8bin) and measure them against a truth file")
    se.add_argument("gallery", help="gallery vectors or packed codes; row r is the record with id r")
    se.add_argument("probes", help="probe vectors or codes of the same type and dimension; row q is search q")
    se.add_argument("--truth", required=True, help="CSV or Parquet with columns probe_id, mate_id: probe "
                    "and gallery row numbers (mate_id empty for a non-mated search)")
    se.add_argument("--backend", action="append", required=True, metavar="NAME",
                    help="numba-flat, numba-hamming, faiss:<index_factory string> or a plugin's "
                    "name[:spec]; once per backend")
    se.add_argument("--candidates", type=int, default=20, metavar="L", help="candidate list length (default 20)")
    se.add_argument("--out", required=True, help="results folder")
    se.add_argument("--train-size", type=int, default=20_000,
                    help="gallery rows (the first ones) that indexes which train learn from (default 20000)")
    se.add_argument("--threads", type=int, help="threads per backend (default: each library's default)")
    se.add_argument("--overwrite", action="store_true", help="replace other results in --out")
    se.add_argument("--quiet", action="store_true", help="no progress bars")
    se.set_defaults(func=cmd_search)

    cp = sub.add_parser("compare", help="several finished results folders side by side in one "
                        "report (DET, CMC, FPIR against N, throughput against recall)")
    cp.add_argument("results", nargs="+", metavar="RESULTS",
                    help="two or more results folders written by `fpscale run` or `fpscale evaluate`")
    cp.add_argument("--out", required=True, help="folder for the comparison (report.md, report.html, "
                    "plots, operating_points.csv)")
    cp.add_argument("--overwrite", action="store_true",
                    help="replace another comparison's or run's results in --out")
    cp.set_defaults(func=cmd_compare)

    sw = sub.add_parser("sweep", help="run a scenario over several values of one key, or sweep "
                        "a backend's search parameter over one built index")
    sw.add_argument("scenario")
    sw.add_argument("--key", help="table.name, e.g. population.gallery_size: one run per value")
    sw.add_argument("--values", help="comma-separated values of --key, e.g. 20000,40000")
    sw.add_argument("--param", help="a search parameter and its values, e.g. nprobe=1,4,16,64 "
                    "(IVF) or efSearch=16,32,64,128 (HNSW): the index is built once and "
                    "searched once per value; writes the recall/throughput frontier")
    sw.add_argument("--backend", help="the backend --param sweeps, e.g. faiss:IVF256,Flat "
                    "(default: the scenario's first approximate faiss backend)")
    sw.add_argument("--out", help="output folder (default: results/sweep-<scenario>, "
                    "or results/sweep-<scenario>-<param>)")
    sw.add_argument("--overwrite", action="store_true", help="replace other results in --out")
    sw.add_argument("--quiet", action="store_true", help="no progress or notes on stderr")
    sw.set_defaults(func=cmd_sweep)

    bn = sub.add_parser("bench", help="scaling of the backends with gallery size (log-log plot)")
    bn.add_argument("what", choices=["scaling"], help="scaling: throughput, build time and memory against N")
    bn.add_argument("--sizes", default="1e4,3e4,1e5,3e5,1e6", help="gallery sizes (default 1e4..1e6)")
    bn.add_argument("--backends", help="comma-separated backend specs (default: numba and faiss exact, IVF, HNSW, binary)")
    bn.add_argument("--dim", type=int, default=128)
    bn.add_argument("--probes", type=int, default=1000)
    bn.add_argument("--out", default="results/scaling")
    bn.add_argument("--quiet", action="store_true", help="no progress on stderr")
    bn.set_defaults(func=cmd_bench)

    s = sub.add_parser("synth-stats", help="statistics of the synthetic population")
    s.add_argument("--scenario", help="take the seed from this scenario")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("-n", type=int, default=2000, help="identities sampled (default 2000)")
    s.set_defaults(func=cmd_synth_stats)
    return p


def main(argv: list[str] | None = None) -> int:
    from fpscale.bench.run.cluster import ClusterError
    from fpscale.bench.run.planner import PlanError
    from fpscale.bench.store.files import ResultsError
    from fpscale.bench.scenario import ScenarioError
    from fpscale.bench.profile import ProfileError
    from fpscale.bench.tools.evaluate import InputError
    from fpscale.matcher.checks import MatcherInputError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a malformed command line
        return e.code if isinstance(e.code, int) else 2
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (UserError, ScenarioError, ResultsError, MatcherInputError, PlanError,
            ClusterError, InputError, ProfileError) as e:
        print(f"fpscale: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except (RecursionError, MemoryError) as e:  # last resort: inputs are checked before use
        print(f"fpscale: error: an input was too large or too deeply nested to read "
              f"({type(e).__name__})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fpscale: interrupted; run the same command again to resume from the last checkpoint",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
