"""Gallery records and submission streams, generated in chunks.

A gallery record is the enrolment (encounter 0) of one identity: either a
legacy two-index-finger flat record (IDENT captured two flat index fingers
until 2007-2008, docs/sources.md) or a ten-print record. A submission is a later
booking (encounter 1 + submission index) of either an enrolled identity (a
mated search) or of a person who was never enrolled (identities from
``NON_ENROLLED_BASE`` up, disjoint from every gallery). A share
``unmatchable_share`` of mated bookings cannot be matched at all: their
captures show the fingers of a person never enrolled (identities from
``UNMATCHABLE_BASE`` up) while the truth still names the enrolled mate. They
stand for what no matcher recovers at any threshold or gallery size
(captures too poor to extract, fingers swapped or mislabelled): the flat
tail of real DET curves (docs/calibration.md).

The record vector concatenates the per-finger vectors of the searched finger
positions (``search_fingers``), so one inner product is the sum of per-finger
cosine similarities over the fingers both sides have (``fusion = "sum"``), or
that sum divided by the number of probe fingers (``"mean"``: the probe side
is scaled by 1/F), or that sum divided by sqrt(k), k the fingers the gallery
record holds (``"znorm"``: the gallery side is scaled by 1/sqrt(k)). Under
"sum", a two-finger legacy record competes against ten-finger records whose
impostor sums spread sqrt(5) times wider, so legacy mates lose; "znorm"
gives every record the same impostor spread (per-finger cosines of unrelated
fingers are about independent with equal variance), which is what a mixed
gallery needs. A finger the record lacks is a zero vector (it adds
nothing) and, in binary codes, the fixed half-ones pattern 0x55 (it adds
about bits/2, the chance level, to the Hamming distance).

Ground truth (the mated identity or -1) comes from ``submission_truth`` and
is kept apart from what the matcher sees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np
from numba import njit, prange

from fpscale.synth.embedding import CODES, ITQ_SHIPPED, check_dims, encode
from fpscale.synth.impressions import CAPTURE_TYPES, LEGACY_FLAT, QUALITY_LEVELS, capture_index
from fpscale.synth.rng import (STREAM_QUALITY, STREAM_RECORD, STREAM_SUBMISSION,
                       categorical, normal, open_stream, uniform)

LEGACY_FINGERS = (2, 7)        # right and left index
NON_ENROLLED_BASE = 1 << 40    # identities of people never enrolled
UNMATCHABLE_BASE = 1 << 41     # whose fingers an unmatchable mated booking shows
ABSENT_CODE_BYTE = 0x55
FUSIONS = ("sum", "mean", "znorm")


@dataclass(frozen=True)
class PopulationSpec:
    """What to generate. Sizes are counts; shares are in [0, 1]."""

    seed: int = 0
    gallery_size: int = 10_000
    legacy_share: float = 0.3
    gallery_capture: str = "rolled"
    gallery_quality: tuple[float, ...] = (0.35, 0.35, 0.18, 0.09, 0.03)
    n_submissions: int = 2_000
    mated_share: float = 0.063
    booking_capture: str = "plain"
    booking_quality: tuple[float, ...] = (0.25, 0.35, 0.22, 0.12, 0.06)
    search_fingers: tuple[int, ...] = LEGACY_FINGERS
    dim: int = 64
    bits: int = 128
    fusion: str = "sum"
    # scale of every extraction error of a capture's quality level
    # (fpscale.synth.impressions): 1 is the table there, a better extractor below 1
    extraction_noise: float = 1.0
    # correlation of capture quality within a person (Gaussian copula): a
    # person with worn fingers has them on every finger and every encounter;
    # 0 draws each capture's quality independently. The shares stay exact.
    quality_correlation: float = 0.0
    # the binary code: "simhash" (a fixed random projection) or "itq" (a
    # learned one, fpscale.synth.itq_basis; shipped for dim 256, bits 256 or 512)
    code: str = field(default="simhash", metadata={"omit_if_default": True})
    # scale of how differently a finger lies on each capture (window centre,
    # rotation, translation, skin distortion; fpscale.synth.impressions): 1
    # is the table there, 0 places every capture of a finger alike
    capture_noise: float = field(default=1.0, metadata={"omit_if_default": True})
    # share of mated bookings whose captures cannot be matched to the mate at
    # all (the module docstring); 0 makes every mated booking the mate's fingers
    unmatchable_share: float = field(default=0.0, metadata={"omit_if_default": True})
    # weight each LDA direction by the finger signal it keeps at the
    # capture's quality (fpscale.synth.embedding.quality_weights): what an
    # encoder that knows each capture's quality can do; off keeps the
    # vectors of every earlier measurement
    quality_weighting: bool = field(default=False, metadata={"omit_if_default": True})

    def __post_init__(self) -> None:
        validate(self)

    @property
    def record_dim(self) -> int:
        """Float record vector length: dim per searched finger."""
        return self.dim * len(self.search_fingers)

    @property
    def record_bits(self) -> int:
        """Binary record code length in bits."""
        return self.bits * len(self.search_fingers)

    def record_width(self, binary: bool) -> int:
        """Width of a record as a search backend sees it: bits of its binary
        code, or dimensions of its float vector."""
        return self.record_bits if binary else self.record_dim


def _fail(name: str, value, allowed: str) -> None:
    raise ValueError(f"population.{name} = {value!r} is invalid: {allowed}")


def validate(spec: PopulationSpec) -> None:
    """Raise ValueError naming the first bad field, its value and what is allowed."""
    for f in ("seed", "gallery_size", "n_submissions", "dim", "bits"):
        v = getattr(spec, f)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            _fail(f, v, "must be an integer")
    if not 0 <= spec.seed < 2**63:
        _fail("seed", spec.seed, "must be in [0, 2**63)")
    if spec.gallery_size < 1:
        _fail("gallery_size", spec.gallery_size, "must be at least 1")
    if spec.n_submissions < 1:
        _fail("n_submissions", spec.n_submissions, "must be at least 1")
    for f in ("legacy_share", "mated_share"):
        v = getattr(spec, f)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            _fail(f, v, "must be a number in [0, 1]")
    v = spec.extraction_noise
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.05 <= v <= 3.0:
        _fail("extraction_noise", v, "must be a number in [0.05, 3]")
    v = spec.capture_noise
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 3.0:
        _fail("capture_noise", v, "must be a number in [0, 3]")
    v = spec.quality_correlation
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
        _fail("quality_correlation", v, "must be a number in [0, 1)")
    v = spec.unmatchable_share
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
        _fail("unmatchable_share", v, "must be a number in [0, 1)")
    if not isinstance(spec.quality_weighting, bool):
        _fail("quality_weighting", spec.quality_weighting, "must be true or false")
    for f in ("gallery_capture", "booking_capture"):
        v = getattr(spec, f)
        if v not in CAPTURE_TYPES:
            _fail(f, v, "allowed: " + ", ".join(CAPTURE_TYPES))
    for f in ("gallery_quality", "booking_quality"):
        v = getattr(spec, f)
        ok = (isinstance(v, (tuple, list)) and len(v) == 5
              and all(isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0 for x in v)
              and abs(sum(v) - 1.0) < 1e-6)
        if not ok:
            _fail(f, v, "must be 5 non-negative shares for quality 1..5 summing to 1")
    sf = spec.search_fingers
    if (not isinstance(sf, (tuple, list)) or not sf or len(set(sf)) != len(sf)
            or not all(isinstance(x, int) and 1 <= x <= 10 for x in sf)):
        _fail("search_fingers", sf, "must be distinct finger positions 1..10")
    try:
        check_dims(spec.dim, spec.bits)
    except ValueError as e:
        raise ValueError(f"population.{e}") from None
    if spec.fusion not in FUSIONS:
        _fail("fusion", spec.fusion, "allowed: " + ", ".join(FUSIONS))
    if spec.code not in CODES:
        _fail("code", spec.code, "allowed: " + ", ".join(CODES))
    if spec.code == "itq":
        if (spec.dim, spec.bits) not in ITQ_SHIPPED:
            _fail("code", spec.code, "an ITQ code is shipped only for (dim, bits) "
                  + ", ".join(f"({d}, {b})" for d, b in ITQ_SHIPPED))


def spec_from_dict(d: dict) -> PopulationSpec:
    """Build a spec from plain values (TOML), naming unknown keys."""
    known = {f.name for f in fields(PopulationSpec)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"population: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(known))}")
    vals = dict(d)
    for k in ("gallery_quality", "booking_quality", "search_fingers"):
        if k in vals and isinstance(vals[k], list):
            vals[k] = tuple(vals[k])
    return PopulationSpec(**vals)


@njit(cache=True, parallel=True)
def _legacy_flags(seed: int, identities: np.ndarray, share: float) -> np.ndarray:
    out = np.empty(identities.shape[0], dtype=np.bool_)
    for t in prange(identities.shape[0]):
        st = open_stream(seed, identities[t], 0, 0, STREAM_RECORD)
        out[t] = uniform(st) < share
    return out


@njit(cache=True, parallel=True)
def _qualities(seed: int, identities: np.ndarray, fingers: np.ndarray,
               encounters: np.ndarray, cdf: np.ndarray, corr: float) -> np.ndarray:
    out = np.empty(identities.shape[0], dtype=np.int64)
    a = math.sqrt(corr)
    b = math.sqrt(1.0 - corr)
    for t in prange(identities.shape[0]):
        st = open_stream(seed, identities[t], fingers[t], encounters[t], STREAM_QUALITY)
        if corr == 0.0:  # the independent draw, as before the copula existed
            out[t] = 1 + categorical(st, cdf)
            continue
        # the person's latent (finger 0, encounter 0: no capture has those
        # keys) plus the capture's own, mapped back to a uniform
        z = a * normal(open_stream(seed, identities[t], 0, 0, STREAM_QUALITY)) + b * normal(st)
        u = 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))
        q = cdf.shape[0] - 1
        for i in range(cdf.shape[0]):
            if u < cdf[i]:
                q = i
                break
        out[t] = 1 + q
    return out


def capture_qualities(spec: PopulationSpec, identities: np.ndarray, fingers: np.ndarray,
                      encounters: np.ndarray, gallery: bool) -> np.ndarray:
    """Quality level 1..5 (n,) int64 of each capture (identity, finger,
    encounter), drawn from the gallery or booking shares with the spec's
    within-person correlation."""
    shares = spec.gallery_quality if gallery else spec.booking_quality
    return _qualities(spec.seed, np.asarray(identities, dtype=np.int64),
                      np.asarray(fingers, dtype=np.int64), np.asarray(encounters, dtype=np.int64),
                      _cdf(shares), float(spec.quality_correlation))


@njit(cache=True, parallel=True)
def _submissions(seed: int, start: int, stop: int, mated_share: float,
                 gallery_size: int, unmatchable_share: float) -> tuple:
    n = stop - start
    identity = np.empty(n, dtype=np.int64)
    mate = np.empty(n, dtype=np.int64)
    for t in prange(n):
        s = start + t
        st = open_stream(seed, s, 0, 0, STREAM_SUBMISSION)
        if uniform(st) < mated_share:
            m = min(int(uniform(st) * gallery_size), gallery_size - 1)
            identity[t] = m
            mate[t] = m
            # drawn only when asked for, so that a share of 0 leaves every
            # other draw of the stream, and every earlier result, as it was
            if unmatchable_share > 0.0 and uniform(st) < unmatchable_share:
                identity[t] = UNMATCHABLE_BASE + s
        else:
            identity[t] = NON_ENROLLED_BASE + s
            mate[t] = -1
    return identity, mate


def legacy_records(spec: PopulationSpec, identities: np.ndarray) -> np.ndarray:
    """Which gallery identities hold a legacy two-index-finger record, (n,) bool."""
    return _legacy_flags(spec.seed, np.asarray(identities, dtype=np.int64), float(spec.legacy_share))


def submission_truth(spec: PopulationSpec, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """(identity (n,), mate (n,)) for submissions start..stop-1; identity is
    whose fingers the booking captures, mate the enrolled gallery identity
    or -1 for a person never enrolled (the two differ for an unmatchable
    mated booking: ``unmatchable_bookings``)."""
    return _submissions(spec.seed, start, stop, float(spec.mated_share), spec.gallery_size,
                        float(spec.unmatchable_share))


def unmatchable_bookings(spec: PopulationSpec, start: int, stop: int) -> np.ndarray:
    """Which of submissions start..stop-1 are mated bookings whose captures
    show another person's fingers, (n,) bool."""
    identity, mate = submission_truth(spec, start, stop)
    return (mate >= 0) & (identity != mate)


def _cdf(shares: tuple[float, ...]) -> np.ndarray:
    c = np.cumsum(np.asarray(shares, dtype=np.float64))
    return c / c[-1]


@dataclass(frozen=True)
class Impressions:
    """Keys of a set of impressions, one row each; ``row`` and ``slot`` say
    which record and which searched-finger slot a row belongs to."""

    identity: np.ndarray
    finger: np.ndarray
    encounter: np.ndarray
    capture: np.ndarray
    quality: np.ndarray
    row: np.ndarray
    slot: np.ndarray


def gallery_impressions(spec: PopulationSpec, start: int, stop: int,
                        ids: np.ndarray | None = None) -> Impressions:
    """Keys of the enrolment impressions of gallery identities start..stop-1
    (or of the given ids) that fall on a searched finger position."""
    if ids is None:
        ids = np.arange(start, stop, dtype=np.int64)
    legacy = legacy_records(spec, ids)
    gal_cap = capture_index(spec.gallery_capture)
    rows, slots, fingers, caps = [], [], [], []
    for k, f in enumerate(spec.search_fingers):
        have = np.ones(len(ids), dtype=bool) if f in LEGACY_FINGERS else ~legacy
        r = np.flatnonzero(have)
        rows.append(r)
        slots.append(np.full(len(r), k))
        fingers.append(np.full(len(r), f))
        caps.append(np.where(legacy[r], LEGACY_FLAT, gal_cap))
    row = np.concatenate(rows)
    order = np.lexsort((np.concatenate(slots), row))  # record-major order
    row = row[order]
    finger = np.concatenate(fingers)[order].astype(np.int64)
    identity = ids[row]
    encounter = np.zeros(len(row), dtype=np.int64)
    quality = capture_qualities(spec, identity, finger, encounter, gallery=True)
    return Impressions(identity, finger, encounter, np.concatenate(caps)[order].astype(np.int64),
                       quality, row, np.concatenate(slots)[order].astype(np.int64))


def submission_impressions(spec: PopulationSpec, start: int, stop: int) -> Impressions:
    """Keys of the booking impressions of submissions start..stop-1 (all
    searched fingers are captured at booking)."""
    identity, _ = submission_truth(spec, start, stop)
    n, F = len(identity), len(spec.search_fingers)
    row = np.repeat(np.arange(n, dtype=np.int64), F)
    slot = np.tile(np.arange(F, dtype=np.int64), n)
    finger = np.asarray(spec.search_fingers, dtype=np.int64)[slot]
    ident = identity[row]
    encounter = 1 + np.arange(start, stop, dtype=np.int64)[row]
    quality = capture_qualities(spec, ident, finger, encounter, gallery=False)
    capture = np.full(len(row), capture_index(spec.booking_capture), dtype=np.int64)
    return Impressions(ident, finger, encounter, capture, quality, row, slot)


def best_quality(imp: Impressions, n: int) -> np.ndarray:
    """The best (lowest) capture quality 1..5 among each of rows 0..n-1's
    impressions imp, (n,) int64 (the worst level for a row with none)."""
    best = np.full(n, max(QUALITY_LEVELS), dtype=np.int64)
    np.minimum.at(best, imp.row, imp.quality)
    return best


def booking_best_quality(spec: PopulationSpec, n: int) -> np.ndarray:
    """The best (lowest) capture quality 1..5 among the booking fingers of
    each of submissions 0..n-1, (n,) int64."""
    return best_quality(submission_impressions(spec, 0, n), n)


def _scattered(rows: np.ndarray, dst: np.ndarray, n: int, fill) -> np.ndarray:
    """An (n, width) array of fill with rows[i] at row dst[i]."""
    out = np.full((n, rows.shape[1]), fill, dtype=rows.dtype)
    out[dst] = rows
    return out


def _assemble(spec: PopulationSpec, imp: Impressions, n_rows: int,
              probe_side: bool, with_vectors: bool = True) -> tuple[np.ndarray, np.ndarray]:
    vec, code, _ = encode(spec.seed, imp.identity, imp.finger, imp.encounter,
                          imp.capture, imp.quality, spec.dim, spec.bits, spec.extraction_noise,
                          spec.code, with_vectors, spec.capture_noise, spec.quality_weighting)
    F = len(spec.search_fingers)
    # each impression's (record, finger slot) as one row of the (records x
    # fingers) layout: numpy copies whole rows for a 1-d index, where the
    # (row, slot) pair index went element by element (a third of the time
    # of a chunk with float vectors); where every record has every finger,
    # in order, the impressions are the layout already
    dst = imp.row * F + imp.slot
    whole = len(dst) == n_rows * F and bool((dst == np.arange(n_rows * F)).all())
    codes = code if whole else _scattered(code, dst, n_rows * F, ABSENT_CODE_BYTE)
    codes = codes.reshape(n_rows, F * (spec.bits // 8))
    if not with_vectors:  # a codes-only run: no (rows x fingers x dim) floats to scatter
        return np.zeros((n_rows, 0), dtype=np.float32), codes
    vectors = (vec if whole else _scattered(vec, dst, n_rows * F, 0)).reshape(n_rows, F, spec.dim)
    if not probe_side and spec.fusion == "znorm":
        k = np.bincount(imp.row, minlength=n_rows)
        vectors *= (1.0 / np.sqrt(np.maximum(k, 1))).astype(np.float32)[:, None, None]
    vectors = vectors.reshape(n_rows, F * spec.dim)
    if probe_side and spec.fusion == "mean":
        vectors *= np.float32(1.0 / F)
    return vectors, codes


@dataclass(frozen=True)
class Chunk:
    """Record vectors (n, record_dim) float32 ((n, 0) when left out) and
    codes (n, record_bits/8) uint8 of rows ``start``..``stop``-1, with their
    identity ids (n,)."""

    start: int
    stop: int
    ids: np.ndarray
    vectors: np.ndarray
    codes: np.ndarray


def gallery_chunk(spec: PopulationSpec, start: int, stop: int, vectors: bool = True) -> Chunk:
    """Gallery records start..stop-1 (identity ids equal row numbers);
    vectors=False leaves the float vectors out (a run that uses codes only)."""
    if not 0 <= start <= stop <= spec.gallery_size:
        raise ValueError(f"gallery chunk [{start}, {stop}) outside [0, {spec.gallery_size})")
    v, c = _assemble(spec, gallery_impressions(spec, start, stop), stop - start, False, vectors)
    return Chunk(start, stop, np.arange(start, stop, dtype=np.int64), v, c)


def gallery_records(spec: PopulationSpec, ids: np.ndarray) -> Chunk:
    """Gallery records of arbitrary identity ids (n,), in the given order;
    row t is bit-identical to that identity's row in ``gallery_chunk``."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) and (ids.min() < 0 or ids.max() >= spec.gallery_size):
        raise ValueError(f"gallery ids must lie in [0, {spec.gallery_size})")
    v, c = _assemble(spec, gallery_impressions(spec, 0, 0, ids), len(ids), False)
    return Chunk(-1, -1, ids, v, c)


def submission_chunk(spec: PopulationSpec, start: int, stop: int) -> Chunk:
    """Submissions start..stop-1; ``ids`` are submission numbers, not identities."""
    if not 0 <= start <= stop <= spec.n_submissions:
        raise ValueError(f"submission chunk [{start}, {stop}) outside [0, {spec.n_submissions})")
    v, c = _assemble(spec, submission_impressions(spec, start, stop), stop - start, True)
    return Chunk(start, stop, np.arange(start, stop, dtype=np.int64), v, c)


def chunks(total: int, size: int):
    """(start, stop) pairs covering 0..total in steps of size."""
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")
    for s in range(0, total, size):
        yield s, min(total, s + size)
