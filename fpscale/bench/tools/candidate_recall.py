"""How often the candidate stage lists the mate, measured directly.

``python -m fpscale.bench.tools.candidate_recall`` builds the gallery record vectors
of a scenario (with its matcher profile) in chunks, the probe vectors of
mated searches, and reports the share of mated searches whose mate is among
the top K of an exact inner-product search over the whole gallery (the
record score is the inner product of the concatenated per-finger vectors,
as the numba-flat and faiss flat backends compute it), with a Wilson 95%
interval. Nothing is written and nothing but the encoding is run: no 1:1
re-scoring, no backend, so a change of the encoding (docs/encoding.md) can
be measured at a gallery size that ``fpscale run`` would take much longer
over. Every search is mated: the submission stream of the scenario's seed
with ``mated_share = 1``.

Example (docs/encoding.md quotes its numbers):

    python -m fpscale.bench.tools.candidate_recall frif-class-a --profile best-2012 \\
        --gallery-size 50000 --searches 2000 -k 100 1000

``--by-overlap`` also counts the misses by how much of each finger a
search shares with its mate's record (the placement that
``population.capture_noise`` scales; docs/calibration.md), and
``--by-quality`` by the quality of the search's best booking finger.
``--each-finger`` also ranks each mate by each searched finger's own
cosine (the probe's other fingers left out) and counts the mates that
the record's list or any one finger's list of the same length would
hand on: whether lists per finger would find mates the fused score
misses (docs/calibration.md).

``--codes`` ranks by the binary codes instead (Hamming scores, as
numba-hamming), for a scenario that searches codes:

    python -m fpscale.bench.tools.candidate_recall scomm-130m --codes \\
        --gallery-size 200000 --searches 4000 --set population.code=\"simhash\"
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import time
from dataclasses import dataclass

import numpy as np

from fpscale.bench.measure.code_ladder import CodeLadderScan, hamming_scores
from fpscale.bench.measure.metrics import binomial_ci
from fpscale.bench.scenario import ScenarioError, load_scenario
from fpscale.bench.tools.population_facts import search_overlap
from fpscale.matcher.exact import inner_products, paired_inner_products, thread_count
from fpscale.synth.population import (PopulationSpec, booking_best_quality, gallery_chunk,
                                     gallery_records, submission_chunk, submission_truth)

CHUNK = 50_000


@dataclass(frozen=True)
class Recall:
    """Mate-in-top-K share of the mated searches, with what it took."""

    gallery_size: int
    searches: int
    k: int
    listed: int
    low: float
    high: float
    rank1: int
    encode_us: float  # gallery encoding time per impression, microseconds
    search_s: float

    @property
    def rate(self) -> float:
        return self.listed / self.searches

    def line(self) -> str:
        return (f"N={self.gallery_size:,} searches={self.searches:,}: mate in top {self.k} "
                f"{self.rate:.4f} [{self.low:.4f}, {self.high:.4f}] ({self.searches - self.listed} "
                f"missed), rank 1 {self.rank1 / self.searches:.4f}; gallery encoding "
                f"{self.encode_us:.1f} us per impression, search {self.search_s:.0f} s")


def spec_for(scenario: str, profile: str | None, gallery_size: int, searches: int,
             sets: tuple[str, ...] = ()) -> PopulationSpec:
    """The scenario's population (with the profile applied), resized, every
    search mated and none of them unmatchable (an unmatchable booking is no
    candidate stage's miss: ``fpscale.synth.population``)."""
    over = [f"population.gallery_size={gallery_size}", f"population.n_submissions={searches}",
            "population.mated_share=1.0", "projection.ladder=[]", "search.streamed=false"]
    if profile:
        over.insert(0, f"calibration.profile={profile}")
    return dataclasses.replace(load_scenario(scenario, over + list(sets)).population,
                               unmatchable_share=0.0)


@dataclass(frozen=True)
class MateRanks:
    """How many other gallery records score strictly above each search's
    mate (n,) (its rank - 1), with what the pass over the gallery took."""

    gallery_size: int
    above: np.ndarray
    encode_us: float  # gallery encoding time per impression, microseconds
    search_s: float
    # (fingers, n): records above the mate by each searched finger's own
    # cosine, when ranked so (``mate_ranks(each_finger=True)``)
    finger_above: np.ndarray | None = None

    def recall(self, k: int) -> Recall:
        """The share of searches whose mate ranks in the top k."""
        n = len(self.above)
        listed = int((self.above < k).sum())
        lo, hi = binomial_ci(listed, n)
        return Recall(self.gallery_size, n, k, listed, float(lo), float(hi),
                      int((self.above == 0).sum()), self.encode_us, self.search_s)


def candidate_recall(spec: PopulationSpec, k: int = 100, chunk: int = CHUNK,
                     progress: bool = False, codes: bool = False) -> Recall:
    """Share of the spec's (mated) searches whose mate ranks in the top k of
    the whole gallery. Rank = 1 + the other gallery records scoring strictly
    above the mate. codes: rank by the binary codes' Hamming scores (as
    numba-hamming) instead of the float vectors' inner products."""
    return mate_ranks(spec, chunk, progress, codes).recall(k)


def mate_ranks(spec: PopulationSpec, chunk: int = CHUNK, progress: bool = False,
               codes: bool = False, each_finger: bool = False) -> MateRanks:
    """Every (mated) search's count of gallery records above its mate, in one
    pass over the gallery; codes as in ``candidate_recall``; each_finger
    also counts them by each searched finger's own cosine (float vectors
    only)."""
    n = spec.n_submissions
    _, mate = submission_truth(spec, 0, n)
    if (mate < 0).any():
        raise ValueError("every search must be mated (mated_share = 1)")
    if codes:
        if each_finger:
            raise ValueError("each_finger ranks the float vectors, not the codes")
        return _code_ranks(spec, mate, chunk)
    probes = submission_chunk(spec, 0, n).vectors
    mates = gallery_records(spec, mate).vectors
    mate_score = paired_inner_products(probes, mates)  # the bits the search gives the pair
    above = np.zeros(n, dtype=np.int64)
    fingers = _FingerRanks(probes, mates, len(spec.search_fingers)) if each_finger else None
    enc = srch = 0.0
    impressions = 0
    for a in range(0, spec.gallery_size, chunk):
        b = min(spec.gallery_size, a + chunk)
        t0 = time.perf_counter()
        g = gallery_chunk(spec, a, b).vectors
        t1 = time.perf_counter()
        impressions += int((np.abs(g.reshape(b - a, len(spec.search_fingers), -1)).sum(2) > 0).sum())
        s = inner_products(probes, g)
        own = np.flatnonzero((mate >= a) & (mate < b))
        s[own, mate[own] - a] = -np.inf  # the mate itself is not "another record above" it
        above += (s > mate_score[:, None]).sum(1)
        if fingers is not None:
            fingers.add(g, own, mate[own] - a)
        enc += t1 - t0
        srch += time.perf_counter() - t1
        if progress:
            print(f"  {b:,} / {spec.gallery_size:,}", file=sys.stderr, flush=True)
    return MateRanks(spec.gallery_size, above, enc / max(impressions, 1) * 1e6, srch,
                     None if fingers is None else fingers.above)


class _FingerRanks:
    """Records above each mate by each finger's own cosine, chunk by chunk:
    a finger's slice of the record vectors scored alone, as a search with
    the probe's other fingers left out would score it."""

    def __init__(self, probes: np.ndarray, mates: np.ndarray, n_fingers: int):
        d = probes.shape[1] // n_fingers
        self.slices = [slice(f * d, (f + 1) * d) for f in range(n_fingers)]
        self.probes = [np.ascontiguousarray(probes[:, sl]) for sl in self.slices]
        self.mate_score = [paired_inner_products(p, np.ascontiguousarray(mates[:, sl]))
                           for p, sl in zip(self.probes, self.slices)]
        self.above = np.zeros((n_fingers, len(probes)), dtype=np.int64)

    def add(self, g: np.ndarray, own: np.ndarray, own_col: np.ndarray) -> None:
        for f, sl in enumerate(self.slices):
            s = inner_products(self.probes[f], np.ascontiguousarray(g[:, sl]))
            s[own, own_col] = -np.inf
            self.above[f] += (s > self.mate_score[f][:, None]).sum(1)


def _code_ranks(spec: PopulationSpec, mate: np.ndarray, chunk: int) -> MateRanks:
    # a one-rung code ladder over the whole gallery: its count of non-mates
    # above the mate is the mate's rank - 1
    n = spec.n_submissions
    probes = submission_chunk(spec, 0, n).codes
    scan = CodeLadderScan(np.array([spec.gallery_size]), probes, mate,
                          hamming_scores(probes, gallery_records(spec, mate).codes))
    enc = srch = 0.0
    for a in range(0, spec.gallery_size, chunk):
        b = min(spec.gallery_size, a + chunk)
        t0 = time.perf_counter()
        g = gallery_chunk(spec, a, b).codes
        t1 = time.perf_counter()
        scan.add(a, g)
        enc += t1 - t0
        srch += time.perf_counter() - t1
    impressions = spec.gallery_size * len(spec.search_fingers)  # an upper bound: legacy records hold fewer
    return MateRanks(spec.gallery_size, scan.seg_better[:, 0].copy(), enc / impressions * 1e6, srch)


OVERLAP_BINS = (0.0, 0.6, 0.7, 0.8, 0.9, 1.0)


def _missed_line(what: str, w: np.ndarray, above: np.ndarray, k: int) -> str | None:
    # one group's searches and its mates outside the top k (above: records
    # above each mate), Wilson 95%
    n, missed = int(w.sum()), int((above[w] >= k).sum())
    if not n:
        return None
    a, b = binomial_ci(missed, n)
    return (f"  {what}: {n:,} searches, {missed} outside the top {k}, "
            f"{missed / n:.4f} [{float(a):.4f}, {float(b):.4f}]")


def overlap_lines(ranks: MateRanks, overlap: np.ndarray, k: int) -> list[str]:
    """Mates outside the top k by how much of the finger a search shares
    with its mate's record (``population_facts.search_overlap``, (n,)),
    one line a bin of OVERLAP_BINS, with Wilson 95% intervals."""
    out = []
    for i, (lo, hi) in enumerate(zip(OVERLAP_BINS[:-1], OVERLAP_BINS[1:])):
        last = i == len(OVERLAP_BINS) - 2
        w = (overlap >= lo) & ((overlap <= hi) if last else (overlap < hi))
        out.append(_missed_line(f"sharing {lo:.1f}-{hi:.1f} of the booking's minutiae", w, ranks.above, k))
    return [line for line in out if line]


def quality_lines(ranks: MateRanks, best_quality: np.ndarray, k: int) -> list[str]:
    """Mates outside the top k by the quality (1 best .. 5) of the search's
    best booking finger (``population.booking_best_quality``, (n,)), one
    line a quality, with Wilson 95% intervals."""
    out = [_missed_line(f"best booking finger at quality {q}", best_quality == q, ranks.above, k)
           for q in np.unique(best_quality)]
    return [line for line in out if line]


def finger_lines(ranks: MateRanks, fingers: tuple[int, ...], k: int) -> list[str]:
    """Mates outside the top k of each finger's own list, and outside the
    record's top k and every finger's top k together (what a search that
    merged those lists would miss), with Wilson 95% intervals."""
    everyone = np.ones(len(ranks.above), dtype=bool)
    out = [_missed_line(f"finger {f} alone", everyone, a, k)
           for f, a in zip(fingers, ranks.finger_above)]
    merged = np.minimum(ranks.above, ranks.finger_above.min(axis=0))
    out.append(_missed_line("the record's list and every finger's merged", everyone, merged, k))
    return out


def _encoder(path: str) -> None:
    # module:function with fpscale.synth.embedding.encode's signature, used by the
    # population in its place (to measure a prototype encoding)
    import fpscale.synth.population
    mod, _, fn = path.partition(":")
    fpscale.synth.population.encode = getattr(importlib.import_module(mod), fn)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fpscale.bench.tools.candidate_recall",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("scenario", help="scenario name or file (e.g. frif-class-a)")
    ap.add_argument("--profile", default=None, help="matcher profile (default: the scenario's)")
    ap.add_argument("--gallery-size", type=int, nargs="+", default=[50_000])
    ap.add_argument("--searches", type=int, default=2000)
    ap.add_argument("-k", type=int, nargs="+", default=[100],
                    help="candidate list lengths (one pass over the gallery for all)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="scenario override, as fpscale run --set")
    ap.add_argument("--encoder", default=None, metavar="MODULE:FUNCTION",
                    help="an encode() to use instead of fpscale.synth.embedding.encode")
    ap.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    ap.add_argument("--codes", action="store_true",
                    help="rank by the binary codes' Hamming scores instead of the float vectors")
    ap.add_argument("--by-overlap", action="store_true",
                    help="also count the misses by how much of each finger the booking shares "
                         "with the enrolment (the placement the capture noise sets)")
    ap.add_argument("--by-quality", action="store_true",
                    help="also count the misses by the quality of the search's best booking finger")
    ap.add_argument("--each-finger", action="store_true",
                    help="also rank each mate by each finger's own cosine, and count what lists "
                         "per finger merged with the record's would miss (float vectors only)")
    args = ap.parse_args(argv)
    if args.each_finger and args.codes:
        print("candidate_recall: --each-finger ranks the float vectors; leave out --codes",
              file=sys.stderr)
        return 2
    if args.encoder:
        _encoder(args.encoder)
    for size in args.gallery_size:
        try:
            spec = spec_for(args.scenario, args.profile, size, args.searches, tuple(args.set))
        except ScenarioError as e:  # a bad scenario or --set: one line, as fpscale run says it
            print(f"candidate_recall: {e}", file=sys.stderr)
            return 2
        with thread_count(args.threads):
            ranks = mate_ranks(spec, codes=args.codes, each_finger=args.each_finger)
        overlap = search_overlap(spec, spec.n_submissions) if args.by_overlap else None
        quality = booking_best_quality(spec, spec.n_submissions) if args.by_quality else None
        for k in args.k:
            print(ranks.recall(k).line(), flush=True)
            if overlap is not None:
                print("\n".join(overlap_lines(ranks, overlap, k)), flush=True)
            if quality is not None:
                print("\n".join(quality_lines(ranks, quality, k)), flush=True)
            if args.each_finger:
                print("\n".join(finger_lines(ranks, spec.search_fingers, k)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
