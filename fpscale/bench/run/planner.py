"""Memory plan of a scenario, made before anything is built.

A run that would not fit is refused with a plan that does (smaller simulated
gallery, binary codes, PQ compression), instead of being killed by the
kernel half-way. The parts, in bytes:

- each backend's index: its own estimate (``memory_estimate`` /
  ``factory_memory_estimate``) at the full gallery size, times
  ``fpscale.matcher.registry.FAISS_GROWTH`` for faiss indexes at the moment they last grow;
- submissions: float vectors and binary codes of every search, every
  backend's candidate lists (ids and scores), and writing their Parquet
  tables (``TABLE_BYTES``: pyarrow and one slice of a table, which the
  allocators keep once written, so it is held to the end);
- the largest transient: one gallery chunk (vectors, codes, impression
  keys) with the float ladder's score tile (searches x chunk), a probe batch's
  search (probes, lists, each thread's score tile), the training sample of
  an index that trains, a re-scoring batch of minutiae templates, or the
  metrics' DET sweep, whichever is largest;
- the interpreter with numpy, numba, faiss, scipy and matplotlib loaded and
  the report's figures (``BASELINE``, measured on Linux x86-64), plus numba's
  compilation when its on-disk cache is empty (``COMPILE``);
- after the searches, once every index is released: the re-scored ladder's
  batches of templates (``after_search``). The peak is the larger of the
  indexes with the largest transient and that.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numba

from fpscale.bench.measure.ladder import block_records
from fpscale.bench.run.checkpoints import PART_CHUNKS
from fpscale.bench.run.gallery import ScanLists, rung_list_length, scan_lists
from fpscale.bench.run.refine import BATCH_PAIRS
from fpscale.bench.run.rescore_segment import batch_searches
from fpscale.bench.scenario import BackendSpec, Scenario, ScenarioError, check_streamed
from fpscale.bench.store.tables import TABLE_SLICE
from fpscale.matcher.deep_lists import buffer_length
from fpscale.matcher.exact import NumbaFlatIP
from fpscale.matcher.registry import appends_checkpoints, final_index_bytes, peak_index_bytes
from fpscale.matcher.mcc import CYL_WORDS, WORDS
from fpscale.matcher.topk import SORT_ROWS
from fpscale.synth.impressions import LEGACY_FLAT, MAX_IMPRESSION, capture_index, expected_minutiae
from fpscale.synth.population import LEGACY_FINGERS, PopulationSpec

# bytes: python + numpy + numba + faiss + scipy + matplotlib imported (200
# MiB peak RSS after `import fpscale.bench.run.steps` and the libraries,
# Linux x86-64), the scenario's kernels loaded from numba's cache (about 90
# MiB more: frif-class-a's compile stage peaked at 288 MiB with a warm
# cache), and the report's figures rendered (29 MiB more while plotting)
BASELINE = 320 << 20
# numba's first compilation of fpscale's kernels, when its on-disk cache
# lacks them: the compile stage of a 1,000-record version of each scenario
# with an empty cache peaked at 530 MiB (default), 564 (frif-class-a) and
# 567 (scomm-130m), December 2026; the MCC kernels alone about 150 MiB
COMPILE = 270 << 20
# Resident bytes per template while a batch of searches is re-scored (the
# padded buffers are zero pages until written, so what counts is the
# minutiae present). Paired matcher: RSS growth of one batch of 100
# searches x 100 candidates x 2 fingers over the number of templates,
# measured with rescore_segment in a fresh process: 22.4 KiB (rolled
# gallery), rounded up and scaled by the extraction noise above 1 (more
# spurious minutiae). MCC: the minutiae buffer's written pages and one
# cylinder column (bits, valid cells, point, counts) for each of K minutiae,
# K the largest count in the batch (``fpscale.matcher.mcc.prepare`` pads
# every template to it), taken as PAD_FACTOR times the largest expected
# count of the gallery's fingers and captures: 20,000 impressions of one
# finger and capture had their largest count at 1.49-1.75 times the
# expected one (thumb, index and little finger; rolled, plain and legacy
# flat; noise 0.5355-2). Against the RSS growth of a run's batches over
# their templates (best-2012, December 2026): 30.0 KiB planned against
# 28.3 measured (ident-2004, flats), 58.1 against 54.4 (scomm-130m, 60%
# legacy flats), 76.9 against 68.7 (frif-class-c, ten rolled fingers).
PAIRED_TEMPLATE_BYTES = 25 << 10
MCC_TEMPLATE_BYTES = 8 << 10
MCC_CYLINDER_BYTES = 8 * (CYL_WORDS + WORDS + 5 + 2)
PAD_FACTOR = 1.8
FULL_TEMPLATE_BYTES = {"paired": 256 * 4 * 8 + 6 * 256 * 8, "mcc": 256 * (4 * 8 + 2 * 24 * 8 + 64)}
# Writing a searches table (fpscale.bench.store.tables, TABLE_SLICE searches
# at a time): pyarrow.parquet imported and its first table built, 80 MiB, and
# about 700 bytes a row of a slice (searches x candidates): RSS growth over
# the write of 10 to 60,000 searches x 100 candidates in a fresh process,
# 77-109 MiB, kept after it (Linux x86-64, December 2026). Built whole, the
# table took 159, 318 and 568 MiB for 4,500, 20,000 and 60,000 searches.
TABLE_BYTES, TABLE_ROW_BYTES = 80 << 20, 700
DET_POINT_BYTES = 3 * 8 * 8  # threshold, FNIR, FPIR: arrays, Python floats and their JSON


class PlanError(ValueError):
    """The scenario does not fit the memory it may use."""


@dataclass(frozen=True)
class Plan:
    indexes: dict
    submissions: int
    transient: int
    baseline: int
    after_search: int = 0

    @property
    def total(self) -> int:
        return self.submissions + self.baseline + max(sum(self.indexes.values()) + self.transient,
                                                      self.after_search)


def union_width(ladder, k: int) -> float:
    """Expected distinct records in a search's top-k lists over the rungs
    (sizes ascending): a record in rung r's top k that lies in rung r-1 is
    in rung r-1's top k too, so only the rung's new records add, a share
    1 - N_{r-1}/N_r of its k for a search with no mate in it."""
    n = sorted(ladder)
    return k * (1 + sum(1 - a / b for a, b in zip(n, n[1:])))


def _index_sizes(sc: Scenario, n: int) -> dict[str, int]:
    """Peak bytes of each backend's index over n records, by backend."""
    pop = sc.population
    return {f"{b.name} {b.params}".strip(): peak_index_bytes(b.name, n, pop.record_width(b.binary))
            for b in sc.search.backends}


def kernel_modules(sc: Scenario) -> set[str]:
    """The modules whose numba kernels a run of sc compiles or loads."""
    mods = {"features", "fingers", "impressions", "embedding", "population", "rng"}
    if any(b.name.startswith("numba") for b in sc.search.backends):
        mods |= {"exact", "topk"}
    if sc.projection.ladder:
        mods.add("code_ladder" if sc.projection.scores == "codes" else "ladder")
    if sc.search.rescore:
        mods.add("mcc" if sc.search.rescore_matcher == "mcc" else "minutiae")
    if sc.search.refine_candidates:
        mods.add("exact")
    return mods


def numba_cache_is_warm(modules: set[str]) -> bool:
    """Whether numba's on-disk cache holds kernels of every one of these
    modules (its index files are named <module>.<function>-<line>....nbi)."""
    d = os.environ.get("NUMBA_CACHE_DIR")
    if not d:
        return False
    try:
        cached = {p.name.split(".", 1)[0] for p in Path(d).rglob("*.nbi")}
    except OSError:
        return False
    return modules <= cached


def plan(sc: Scenario, indexes: bool = True) -> Plan:
    """The memory plan of a run in this process; indexes=False for the
    client of a cluster run, whose indexes live on the workers."""
    pop, srch = sc.population, sc.search
    F = len(pop.search_fingers)
    vec = 4 * pop.record_dim
    code = pop.record_bits // 8
    # a streamed search holds no index: the ladder scan keeps its lists
    indexes = indexes and not srch.streamed
    sizes = _index_sizes(sc, pop.gallery_size) if indexes else {}
    Q = pop.n_submissions
    L, deep_L = srch.candidates, srch.searched
    refined = srch.retrieved if srch.refine_candidates else 0
    rows = len(srch.backends) * (2 if srch.rescore else 1)
    k = min(srch.rescore_candidates, L)
    # each backend's lists (Q, L) and its re-scored lists (Q, k), ids and
    # scores, and the one backend's deeper lists being refined or re-scored
    lists = Q * 12 * (len(srch.backends) * (L + (k if srch.rescore else 0)) + deep_L - L + refined)
    after_search = 0
    per = _template_bytes(sc) if srch.rescore else 0
    kept = scan_lists(srch, sc.projection) if sc.projection.ladder else ScanLists()
    merge = 0
    if kept.rung:
        # every rung's top lists kept by the scan (heaps) and the whole
        # gallery's, and the rung lists written with the ladder (and
        # re-scored), rung_list_length long, twice; the streamed search's
        # list is merged from the heaps two lists at a time (ids, scores,
        # sort keys and order)
        R = len(sc.projection.ladder)
        lists += Q * 12 * (R * kept.rung + kept.whole) + 2 * Q * R * 12 * rung_list_length(srch)
        lists += deep_list_bytes(sc, kept)
        # (a whole-gallery list is ordered SORT_ROWS searches at a time)
        merge = (min(Q, SORT_ROWS) * kept.whole if kept.whole else Q * kept.rung) * (2 * 36 + 12) \
            if srch.streamed else 0
    if sc.projection.rescored and sc.projection.ladder:
        # the rung lists' union re-scored in batches: each batch sized for
        # R x k candidates a search, holding the distinct ones
        R = len(sc.projection.ladder)
        S = batch_searches(R * k)
        union = distinct_candidates(pop.gallery_size, S, union_width(sc.projection.ladder, k))
        after_search = int((union + S) * F * per)
    tables = TABLE_BYTES + min(TABLE_SLICE, Q) * L * TABLE_ROW_BYTES
    submissions = Q * (vec + code) + lists + tables
    chunk = min(srch.chunk_size, pop.gallery_size)
    chunk_bytes = chunk * (vec + code) + chunk * F * 8 * 7 * 2
    ladder = 0
    if sc.projection.ladder:
        # a float ladder writes a (searches x block) score block and reads
        # it back; a code ladder scores and updates a tile of codes at a time
        tile = Q * block_records(pop.dim) * 4 if sc.projection.scores == "vectors" else 0
        # and each finger set's columns of the chunk are copied (codes: then
        # turned into word planes, a second copy)
        cols = 2 * code if sc.projection.scores == "codes" else vec
        ladder = tile + chunk * cols + len(sc.projection.finger_sets) * Q * len(sc.projection.ladder) * 12
    batch = min(srch.probe_batch, Q)
    threads = min(srch.threads or numba.config.NUMBA_NUM_THREADS, numba.config.NUMBA_NUM_THREADS)
    search = 0 if srch.streamed else batch * (vec + code) + 3 * batch * deep_L * 12 \
        + threads * NumbaFlatIP.PROBE_BLOCK * NumbaFlatIP.GALLERY_BLOCK * 4
    train = 0
    for b in srch.backends:
        if b.name.startswith("faiss:") and ("IVF" in b.name or "PQ" in b.name):
            n = min(b.train_size, pop.gallery_size)
            train = max(train, n * (vec + code) * 3)  # the sample, its chunk and k-means' copy
    deep = srch.rescoring.longest(srch.retrieved)
    S = batch_searches(deep)
    rescore = int((distinct_candidates(pop.gallery_size, S, deep) + S) * F * per)
    # the metrics of one row: ranks, scores and masks of every search, and the DET sweep
    metrics = Q * (L * 2 + 40) + sc.metrics.thresholds * DET_POINT_BYTES * rows
    # a checkpoint of the gallery pass exports one index at a time: a copy
    # of the largest beside the indexes, or for an appended one the records
    # since the last checkpoint (at most PART_CHUNKS chunks)
    part = min(pop.gallery_size, PART_CHUNKS * chunk)
    checkpoint = max((final_index_bytes(b.name, part if appends_checkpoints(b.name) else pop.gallery_size,
                                        pop.record_width(b.binary))
                      for b in srch.backends), default=0) if indexes else 0
    # refinement: a batch's listed records regenerated (as a gallery chunk
    # is) and its pairs' scores, indexes and sort order
    refine = 0
    if refined:
        n = BATCH_PAIRS
        refine = n * (vec + code) + n * F * 8 * 7 * 2 + n * 40
    transient = max(chunk_bytes + ladder, search, train, rescore, metrics, checkpoint, refine,
                    merge)
    baseline = BASELINE + (0 if numba_cache_is_warm(kernel_modules(sc)) else COMPILE)
    return Plan(sizes, submissions, transient, baseline, after_search)


def largest_expected_minutiae(pop: PopulationSpec) -> float:
    """The largest expected minutiae count of a gallery template of pop
    over its searched fingers and captures (legacy records: the index
    fingers, flat)."""
    cap, legacy = capture_index(pop.gallery_capture), pop.legacy_share
    counts = [expected_minutiae(f, c, pop.gallery_quality, pop.extraction_noise)
              for f in pop.search_fingers
              for c, share in ((cap, 1 - legacy), (LEGACY_FLAT, legacy if f in LEGACY_FINGERS else 0))
              if share > 0]
    return max(counts, default=0.0)


def _template_bytes(sc: Scenario) -> float:
    """Resident bytes of one re-scoring template of sc's gallery."""
    pop, m = sc.population, sc.search.rescore_matcher
    if m == "mcc":
        k = min(MAX_IMPRESSION, PAD_FACTOR * largest_expected_minutiae(pop))
        per = MCC_TEMPLATE_BYTES + MCC_CYLINDER_BYTES * k
    else:
        per = PAIRED_TEMPLATE_BYTES * max(1.0, pop.extraction_noise)
    return min(per, FULL_TEMPLATE_BYTES[m])


def distinct_candidates(n: int, searches: int, per_search: float) -> float:
    """Expected distinct records in the lists of a batch of searches, each
    listing per_search records of a gallery of n: at most searches x
    per_search, and, as lists drawn uniformly would hold (lists that share
    records hold fewer), n (1 - (1 - per_search / n) ** searches)."""
    if per_search >= n:  # every list holds the whole gallery
        return float(max(n, 0))
    uniform = n * -math.expm1(searches * math.log1p(-per_search / n))
    return min(searches * per_search, uniform)


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo, in bytes (None where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _fmt(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def check(sc: Scenario, limit: int | None = None, indexes: bool = True) -> Plan:
    """The plan, or PlanError naming the parts and a scenario change that fits."""
    p = plan(sc, indexes)
    avail = available_memory()
    budget = min(x for x in (limit, avail) if x is not None) if (limit or avail) else None
    if budget is None or p.total <= budget:
        return p
    if not p.indexes:
        raise PlanError(f"the client of this cluster run needs about {_fmt(p.total)} (searches, "
                        f"candidate lists, working set) but {_fmt(budget)} may be used; run "
                        f"fewer submissions (population.n_submissions)")
    parts = ", ".join(f"{k}: {_fmt(v)}" for k, v in p.indexes.items())
    raise PlanError(
        f"the scenario needs about {_fmt(p.total)} but {_fmt(budget)} may be used "
        f"({parts}; searches and lists {_fmt(p.submissions)}; working set {_fmt(p.transient)}). "
        f"To fit: {'; or '.join(_ways_to_fit(sc, p, budget))}")


def _with(sc: Scenario, n: int | None = None, backends: tuple | None = None) -> Scenario:
    pop = sc.population if n is None else replace(sc.population, gallery_size=n)
    srch = sc.search if backends is None else replace(sc.search, backends=backends)
    return replace(sc, population=pop, search=srch)


def _largest_gallery(sc: Scenario, budget: int) -> int:
    """The largest gallery size (at most the scenario's) whose plan fits:
    bisection, as every part of the plan grows with the gallery."""
    lo, hi = 0, sc.population.gallery_size
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if plan(_with(sc, n=mid)).total <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _cluster_workers(sc: Scenario, budget: int, usable: float = 0.7) -> int | None:
    """The fewest one-thread workers of ``budget`` bytes each that hold the
    gallery in equal shards (as ``plan_shards`` places them), or None."""
    fixed = worker_fixed_bytes(sc, 1)
    n = sc.population.gallery_size
    if fixed + shard_bytes(sc, 1) > usable * budget:
        return None
    lo, hi = 1, 1
    while fixed + shard_bytes(sc, -(-n // hi)) > usable * budget:
        lo, hi = hi, hi * 2
    while lo < hi:
        mid = (lo + hi) // 2
        if fixed + shard_bytes(sc, -(-n // mid)) <= usable * budget:
            hi = mid
        else:
            lo = mid + 1
    return hi


def _ways_to_fit(sc: Scenario, p: Plan, budget: int) -> list[str]:
    """Scenario changes that fit the budget, each checked against the plan:
    a smaller gallery, binary codes instead of the largest float index, a
    cluster, or fewer searches when nothing else fits."""
    ways = []
    fits_n = _largest_gallery(sc, budget)
    if fits_n >= 1000:
        ways.append(f"set population.gallery_size to at most {fits_n:,}")
    if not sc.search.streamed and _can_stream(sc):
        ps = plan(replace(sc, search=replace(sc.search, streamed=True)))
        if ps.total <= budget:
            ways.append(f"set search.streamed = true (the ladder's scan does the search and no "
                        f"index is held; the plan is then {_fmt(ps.total)})")
    largest = max(p.indexes, key=p.indexes.get, default="numba-hamming")
    if largest != "numba-hamming":
        codes = _with(sc, backends=tuple(
            BackendSpec("numba-hamming") if f"{b.name} {b.params}".strip() == largest else b
            for b in sc.search.backends))
        pc = plan(codes)
        if pc.total <= budget:
            ways.append(f"replace {largest} with numba-hamming (binary codes of "
                        f"{sc.population.record_bits} bits a record; the plan is then "
                        f"{_fmt(pc.total)})")
        elif (m := _largest_gallery(codes, budget)) >= 1000:
            ways.append(f"replace {largest} with numba-hamming and set "
                        f"population.gallery_size to at most {m:,}")
    workers = _cluster_workers(sc, budget)
    if workers is not None and workers > 1:
        ways.append(f"run on a Dask cluster of at least {workers} one-thread workers with "
                    f"{_fmt(budget)} each ([cluster] shards = {workers} or more; docs/cluster.md)")
    if not ways:
        ways.append("set population.n_submissions, search.candidates or search.chunk_size "
                    "smaller: the searches, candidate lists and working set alone do not fit")
    return ways


def _can_stream(sc: Scenario) -> bool:
    """Whether sc's search could be streamed as it stands (``search.streamed``)."""
    try:
        check_streamed(sc.population, replace(sc.search, streamed=True), sc.projection)
    except ScenarioError:
        return False
    return True


# a Dask worker process: the interpreter and libraries above plus dask,
# distributed and tornado (measured on Linux x86-64)
WORKER_BASELINE = BASELINE + (60 << 20)


def shard_bytes(sc: Scenario, n: int) -> int:
    """Peak bytes of one gallery shard of n records on a worker: every
    backend's index (none for a streamed search) and the shard's ladder
    accumulators, with the rungs' lists its scan keeps (and their copy
    sent to the client)."""
    pop = sc.population
    total = 0 if sc.search.streamed else sum(_index_sizes(sc, n).values())
    if sc.projection.ladder:
        R = len(sc.projection.ladder)
        total += len(sc.projection.finger_sets) * pop.n_submissions * R * 12
        kept = scan_lists(sc.search, sc.projection)
        total += 2 * pop.n_submissions * (R * kept.rung + kept.whole) * 12
        # the buffers and score tables stay on the worker; the carried
        # scores go to the client with the lists
        total += deep_list_bytes(sc, kept) + (pop.n_submissions * kept.whole * 4 if kept.scored else 0)
    return total


def deep_list_bytes(sc: Scenario, kept: ScanLists) -> int:
    """What a code scan keeping whole-gallery lists holds beyond them: each
    search's buffer (``fpscale.matcher.deep_lists``: a score and an id an
    entry) and its counts by score; where the lists carry asymmetric
    scores, a float32 a listed or buffered record and each search's score
    table (a float32 per code byte and byte value)."""
    if not kept.whole or sc.projection.scores != "codes":
        return 0
    Q = sc.population.n_submissions
    B = buffer_length(kept.whole)
    total = Q * (B * 12 + (sc.population.record_bits + 4) * 8)
    if kept.scored:
        total += Q * 4 * (kept.whole + B) + Q * (sc.population.record_bits // 8) * 256 * 4
    return total


def worker_fixed_bytes(sc: Scenario, threads: int, transient: int | None = None) -> int:
    """Bytes a worker holds whatever its shards: the libraries, the
    submissions the ladder scans need, and one build's working set per
    thread (``transient``, from ``plan``, when already computed)."""
    pop = sc.population
    if transient is None:
        transient = plan(sc, indexes=False).transient
    subs = pop.n_submissions * (4 * pop.record_dim + pop.record_bits // 8)
    return WORKER_BASELINE + subs + threads * transient


def plan_shards(sc: Scenario, shard_records: list[int], workers: dict[str, dict],
                usable: float = 0.7) -> dict[int, str]:
    """Place shards on workers before anything is built: the largest shard
    first, each on the worker with the most room left, where a worker may
    use ``usable`` of its memory limit (Dask starts spilling at 0.7, pauses
    at 0.8). Returns {shard: worker address}; PlanError when they do not fit.
    workers: {address: {"memory_limit": bytes or 0 (none), "nthreads": n}}."""
    if not workers:
        raise PlanError("the cluster has no workers; start some (dask worker <scheduler address>)")
    transient = plan(sc, indexes=False).transient
    room = {}
    for addr, w in sorted(workers.items()):
        limit = w.get("memory_limit") or 0
        room[addr] = (usable * limit - worker_fixed_bytes(sc, w.get("nthreads", 1), transient)
                      if limit else float("inf"))
    placement = {}
    order = sorted(range(len(shard_records)), key=lambda s: (-shard_records[s], s))
    for s in order:
        need = shard_bytes(sc, shard_records[s])
        addr = max(room, key=lambda a: (room[a], a))
        if room[addr] < need:
            total = sum(shard_bytes(sc, n) for n in shard_records)
            free = sum(max(r, 0) for r in room.values())
            raise PlanError(
                f"shard {s} ({shard_records[s]:,} records) needs about {_fmt(need)} but the "
                f"roomiest worker ({addr}) has {_fmt(max(room[addr], 0))} left of the "
                f"{usable:.0%} of its memory limit fpscale plans to use; the shards need "
                f"{_fmt(total)} in all against {_fmt(free)} free. To fit: more shards "
                f"([cluster] shards), more workers, or workers with more memory")
        room[addr] -= need
        placement[s] = addr
    return placement
