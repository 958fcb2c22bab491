"""``fpscale coverage``: how often each projection model held its held-out rungs, over runs.

Every run checks its projection on rungs its fits never saw (the selection
check and the final one, docs/projection.md). Summed over several results
folders, the share of predictions whose 95% interval held the measured
FPIR is the coverage that docs/projection.md reports for the headline
model; this recomputes it with the installed fpscale from the folders'
ladder files (``fpscale.bench.tools.project.reproject``), so runs made by
an older version are judged by the current models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fpscale.bench.measure.projection import MODELS
from fpscale.bench.tools.project import reproject

STAGES = ("final", "selection")


@dataclass
class CoverageRow:
    """One finger set of one results folder: the headline model and, per
    check (final, selection) and model, [inside, predictions]."""

    results: str
    finger_set: str
    headline: str
    checks: dict[str, dict[str, list[int]]]


@dataclass
class Coverage:
    """Rows per finger set and totals per check and model."""

    rows: list[CoverageRow]
    totals: dict[str, dict[str, list[int]]]


def coverage(folders: list[Path]) -> Coverage:
    """Held-out coverage of every projection model over the results folders."""
    rows = []
    totals = {s: {m: [0, 0] for m in MODELS} for s in STAGES}
    for folder in folders:
        _, proj = reproject(Path(folder), {})
        for fs, p in proj.items():
            checks = {s: {m: [0, 0] for m in MODELS} for s in STAGES}
            for stage, held in (("final", p.held_out), ("selection", p.selection)):
                for h in held:
                    for c in h.checks:
                        for table in (checks, totals):
                            table[stage][c.model][0] += int(c.inside)
                            table[stage][c.model][1] += 1
            rows.append(CoverageRow(str(folder), fs, p.model, checks))
    return Coverage(rows, totals)


def coverage_lines(cov: Coverage) -> list[str]:
    """A table per finger set (final and selection checks of every model)
    and the totals, as text."""
    head = " | ".join(MODELS)
    out = [f"results | finger set | headline | check | {head}"]
    for r in cov.rows:
        for s in STAGES:
            cells = " | ".join(f"{a} of {b}" if b else "-" for a, b in r.checks[s].values())
            out.append(f"{r.results} | {r.finger_set} | {r.headline} | {s} | {cells}")
    for s in STAGES:
        cells = " | ".join(f"{a} of {b} ({a / b:.0%})" if b else "-" for a, b in cov.totals[s].values())
        out.append(f"all | | | {s} | {cells}")
    return out
