"""Where a re-scored pipeline's misses come from: the candidate stage or the 1:1 matcher.

At an operating point (threshold T, rank R) a mated search of a re-scored
backend is missed when its mate is not among the re-scored candidates, or
is but ranks past R or scores below T. Given the 1:1 score of every mated
search's own (probe, mate) pair (for a listed mate, the score it was
re-ranked by; for an unlisted one, computed as if it had been listed), the
misses split into three counts that add up to FNIR's:

- not listed, though the 1:1 matcher gives the mate T or more: the
  candidate stage's own misses, which a better candidate stage would turn
  into hits;
- not listed, and below T anyway;
- listed, and below T or past rank R.

FNIR if every mate had been listed counts the last two (an unlisted mate at
T or more is counted as a hit, as if no other candidate outranked it past R):
the floor that the 1:1 stage sets. Where the backend retrieved a deeper list
than every search had re-scored (a list refined from its top
``search.refine_candidates``, or the deeper part kept for poor searches),
the first count says how many of its mates that deeper list held: the
mates a longer re-scored list, or a better refinement, would reach, apart
from those the candidate stage did not retrieve at all; and where the list
was refined, how many of those not retrieved the refinement would have
handed on had they been (their float score above the last one it handed
on): mates the codes lost that the float vectors rank well enough.

The mated searches and the misses are also counted by the best capture
quality among a search's booking fingers (1 best .. 5), which is where a population's hard searches show, and the
misses that are unmatchable bookings (``population.unmatchable_share``:
captures of another person's fingers, missed by construction) are counted
apart from the matcher's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fpscale.bench.measure.metrics import OperatingPoint, Rate, rate_of
from fpscale.synth.impressions import QUALITY_LEVELS as LEVELS

QUALITY_LEVELS = len(LEVELS)  # how many quality levels the counts by quality hold


@dataclass
class MissSources:
    """The misses of one operating point of a re-scored backend, by where they arise."""

    target_fpir: float
    threshold: float
    mated: int
    misses: int
    not_listed_above: int   # unlisted, but the 1:1 score reaches T
    not_listed_below: int   # unlisted, and below T
    listed_missed: int      # listed, below T or past rank R
    fnir_all_listed: Rate   # (not_listed_below + listed_missed) / mated
    mated_by_quality: list[int]   # mated searches by best booking quality 1..5
    misses_by_quality: list[int]  # their misses
    # misses that are unmatchable bookings; None (left out of summaries) where
    # the population has none
    unmatchable: int | None = field(default=None, metadata={"omit_if_none": True})
    # the length of the deeper list the backend retrieved, and how many of
    # the not_listed_above it held; None where no list was deeper than the
    # one re-scored for every search
    retrieved: int | None = field(default=None, metadata={"omit_if_none": True})
    not_listed_above_retrieved: int | None = field(default=None, metadata={"omit_if_none": True})
    # of the not_listed_above that the backend did not retrieve, those whose
    # float score would have put them in the refined list handed on had it
    # retrieved them: the codes' loss, not the float vectors'; None where
    # nothing is refined
    not_listed_above_refinable: int | None = field(default=None, metadata={"omit_if_none": True})


@dataclass(frozen=True)
class MateOutcomes:
    """What the split reads of each search (arrays (Q,)): rank, the mate's
    rank in the re-scored list, 1-based, 0 when not listed; pair_score, the
    1:1 score of its (probe, mate) pair (read for mated searches only);
    mated, bool; best_quality, int 1..5; unmatchable, bool, the unmatchable
    mated bookings (None: the population has none); retrieved_rank, the
    mate's rank in the deeper list the backend retrieved, 1-based, 0 when
    not in it (None: no deeper list), and that list's length; refinable,
    bool, the mated searches whose mate the backend did not retrieve but the
    refinement would have handed on (None: nothing refined)."""

    rank: np.ndarray
    pair_score: np.ndarray
    mated: np.ndarray
    best_quality: np.ndarray
    unmatchable: np.ndarray | None = None
    retrieved_rank: np.ndarray | None = None
    retrieved: int = 0
    refinable: np.ndarray | None = None


def miss_sources(searches: MateOutcomes, R: int, op: OperatingPoint) -> MissSources | None:
    """Split one operating point's misses by where they arise: searches,
    what each search's mate did (MateOutcomes); R, the rank FNIR counts to;
    op, the operating point (None where its threshold is not set or no
    search is mated)."""
    mated = searches.mated
    if op.threshold is None or not mated.any():
        return None
    T = op.threshold
    r, q = searches.rank[mated], searches.best_quality[mated]
    s = np.asarray(searches.pair_score, dtype=np.float64)[mated]
    listed = r > 0
    reaches = s >= T
    miss = ~listed | (r > R) | ~reaches
    above = ~listed & reaches
    below = int((~listed & ~reaches).sum())
    listed_missed = int((listed & miss).sum())
    levels = np.asarray(LEVELS)
    deeper = searches.retrieved_rank
    return MissSources(
        float(op.target_fpir), float(T), int(mated.sum()), int(miss.sum()), int(above.sum()), below,
        listed_missed, rate_of(below + listed_missed, int(mated.sum())),
        [int((q == v).sum()) for v in levels], [int((miss & (q == v)).sum()) for v in levels],
        None if searches.unmatchable is None else int((miss & np.asarray(searches.unmatchable)[mated]).sum()),
        None if deeper is None else int(searches.retrieved),
        None if deeper is None else int((above & (np.asarray(deeper)[mated] > 0)).sum()),
        None if searches.refinable is None or deeper is None
        else int((above & (np.asarray(deeper)[mated] == 0) & np.asarray(searches.refinable)[mated]).sum()))
