"""What a resumed run may trust.

Before a run goes on from its checkpoints, every value the manifest records
for a step is checked against the scenario (counts within the gallery and
the searches, on a checkpoint boundary), and every state file a step needs
is checked against the size and sha256 the manifest holds for it and then
for shape, dtype and range against the scenario (ids as long as the vectors,
ids within the gallery, scores not NaN). A step whose record or files fail
is reported in one line and done again from its start: the results are a
pure function of the scenario, so they come out as an uninterrupted run's.
State files no step needs any more (left by a kill between two writes) are
removed.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from fpscale.bench.measure.ladder import HIST_BINS
from fpscale.bench.run.checkpoints import RUN_TIME, Checkpoints, part_files, state_file
from fpscale.bench.run.gallery import ScanLists, finger_set_columns, rung_list_length, scan_lists
from fpscale.bench.run.segments import SEGMENT
from fpscale.bench.scenario import Scenario, pipeline_finger_set
from fpscale.bench.store.files import ResultsError, read_npz
from fpscale.matcher.registry import appends_checkpoints
from fpscale.synth.population import chunks


def notice(msg: str) -> None:
    """One line on stderr about something fpscale repairs by itself."""
    print(f"fpscale: {msg}", file=sys.stderr, flush=True)


class _Bad(Exception):
    """A step record or state file that cannot be trusted."""


def _int(v, lo: int, hi: int, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise _Bad(f"{what} = {str(v)[:40]} is not in [{lo}, {hi}]")
    return v


def _seconds(v, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise _Bad(f"{what} = {str(v)[:40]} is not a time in seconds")
    return float(v)


def _boundary(start: int, total: int, step: int, what: str) -> None:
    if start != total and start % step:
        raise _Bad(f"{what} = {start} is not a checkpoint boundary")


def _array(arrays: dict, key: str, dtype, shape: tuple) -> np.ndarray:
    a = arrays.get(key)
    if a is None:
        raise _Bad(f"lacks {key!r}")
    if a.dtype != np.dtype(dtype) or a.shape != shape:
        raise _Bad(f"{key} is {a.dtype} {a.shape}, expected {np.dtype(dtype)} {shape}")
    return a


def _ids(a: np.ndarray, n_gallery: int, what: str) -> None:
    if a.size and (a.min() < -1 or a.max() >= n_gallery):
        raise _Bad(f"{what} holds ids outside the gallery")


def _no_nan(a: np.ndarray, what: str) -> None:
    if a.size and np.isnan(a).any():
        raise _Bad(f"{what} holds NaN")


class _Expect:
    """What the state files of one scenario must hold."""

    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        pop = sc.population
        self.N = pop.gallery_size
        self.Q = pop.n_submissions
        self.L = sc.search.searched  # the lists as searched, before the row keeps its own
        self.k = min(sc.search.rescore_candidates, self.L)
        self.n_chunks = len(list(chunks(self.N, sc.search.chunk_size)))
        self.backends = {b.key: b for b in sc.search.backends}
        # the backends whose indexes the gallery pass checkpoints: none when
        # the search is streamed (the ladder scan holds its lists)
        self.indexed = {} if sc.search.streamed else self.backends
        self.scanned = [fs for fs in sc.projection.finger_sets
                        if sc.projection.ladder and finger_set_columns(pop, fs) is not None]
        # list lengths of what is re-scored: each backend's lists and, with
        # projection.rescored, the union of the rung lists a scan keeps
        self.widths = {key: self.k for key in self.backends} if sc.search.rescore else {}
        # candidates a backend's list re-scores a search at most: a poor
        # search's list is re-scored deeper than the width every one keeps
        self.depth = sc.search.rescoring.longest(self.L)
        # lists refined before re-scoring: refine_candidates a search, kept to `retrieved`
        self.refined = {key: min(sc.search.retrieved, self.L) for key in self.backends} \
            if sc.search.rescore and sc.search.refine_candidates else {}
        self.kept = {}  # what the scan of a finger set keeps, where it keeps lists
        piped = pipeline_finger_set(pop.search_fingers, sc.projection.finger_sets)
        lists = scan_lists(sc.search, sc.projection)
        if lists.rung and piped in self.scanned:
            self.kept[piped] = lists
        if sc.projection.rescored and piped in self.scanned:
            self.widths[f"ladder_{piped}"] = len(sc.projection.ladder) * rung_list_length(sc.search)

    def records(self, done: int) -> int:
        return min(done * self.sc.search.chunk_size, self.N)

    def index(self, b, arrays: dict, n: int, first: int = 0) -> None:
        """A state of n records, the gallery's from record `first` on."""
        pop = self.sc.population
        if b.name == "numba-flat":
            _array(arrays, "vecs", np.float32, (n, pop.record_dim))
        elif b.name == "numba-hamming":
            _array(arrays, "planes", np.uint64, (pop.record_bits // 64, n))
        else:
            blob = arrays.get("faiss")
            if blob is None or blob.dtype != np.uint8 or blob.ndim != 1 or blob.size < 20:
                raise _Bad("lacks a serialized faiss index")
            d = int(blob[4:8].view("<i4")[0])
            at = 12 if b.binary else 8
            ntotal = int(blob[at:at + 8].view("<i8")[0])
            if d != pop.record_width(b.binary) or ntotal != n:
                raise _Bad(f"holds an index of {ntotal} records of width {d}, expected {n} of "
                           f"{pop.record_width(b.binary)}")
            return
        ids = _array(arrays, "ids", np.int64, (n,))
        if not np.array_equal(ids, np.arange(first, first + n)):
            raise _Bad(f"ids are not the gallery's records {first} to {first + n - 1} in order")

    def ladder(self, arrays: dict, fs: str) -> None:
        R = len(self.sc.projection.ladder)
        _no_nan(_array(arrays, "seg_max", np.float32, (self.Q, R)), "seg_max")
        lists = self.kept.get(fs, ScanLists())
        for name, shape in (("top", (self.Q, R, lists.rung)), ("whole", (self.Q, lists.whole))):
            if shape[-1]:
                _ids(_array(arrays, f"{name}_ids", np.int64, shape), self.N, f"{name}_ids")
                _no_nan(_array(arrays, f"{name}_scores", np.float32, shape), f"{name}_scores")
        if lists.scored and lists.whole:
            _no_nan(_array(arrays, "whole_asym", np.float32, (self.Q, lists.whole)), "whole_asym")
        better = _array(arrays, "seg_better", np.int64, (self.Q, R))
        hist = _array(arrays, "hist", np.int64, (HIST_BINS,))
        if better.size and (better.min() < 0 or better.max() > self.N):
            raise _Bad("seg_better holds counts outside the gallery")
        if hist.size and hist.min() < 0:
            raise _Bad("hist holds negative counts")

    def lists(self, arrays: dict, start: int, width: int) -> None:
        _ids(_array(arrays, "ids", np.int64, (start, width)), self.N, "ids")
        _no_nan(_array(arrays, "scores", np.float32, (start, width)), "scores")


def _steps(ex: _Expect, steps: dict) -> tuple[dict, list[tuple[str, str]]]:
    """Per step group, the state files it needs; and the groups whose
    records are malformed, with why."""
    needs, bad = {}, []
    keys = ex.backends
    for step, v in steps.items():
        try:
            if step == "build_next":
                n = _int(v, 1, ex.n_chunks, step)
                bounds = steps.get("build_parts")
                if not isinstance(bounds, list) or not bounds or bounds[-1] != n or any(
                        _int(b, 1, n, "build_parts") <= a for a, b in zip([0, *bounds], bounds)):
                    raise _Bad("build_parts is not the increasing chunk counts up to build_next")
                needs["build"] = [rel for k, b in ex.indexed.items()
                                  for rel in (part_files(f"index_{k}", bounds)
                                              if appends_checkpoints(b.name)
                                              else [state_file(f"index_{k}", n)])] + \
                    [state_file(f"ladder_{fs}", n) for fs in ex.scanned]
            elif step == "build_parts":
                if "build_next" not in steps:
                    raise _Bad("build_parts without build_next")
            elif step == "build_timing":
                if not isinstance(v, dict):
                    raise _Bad(f"{step} is not a table")
                for k, t in v.items():
                    if k in ("generation_s", "ladder_s"):
                        _seconds(t, k)
                    elif k in keys and isinstance(t, list) and len(t) == 2:
                        _seconds(t[0], k), _seconds(t[1], k)
                    else:
                        raise _Bad(f"{step} holds {str(k)[:40]!r}")
            elif step == RUN_TIME:
                if not isinstance(v, list) or len(v) != 2:
                    raise _Bad(f"{step} is not [starts, seconds]")
                _int(v[0], 1, 10**9, step)
                _seconds(v[1], step)
            elif step.startswith("search_next:") and step[12:] in keys:
                if not isinstance(v, list) or len(v) != 2:
                    raise _Bad(f"{step} is not [count, seconds]")
                start = _int(v[0], 1, ex.Q, step)
                _boundary(start, ex.Q, ex.sc.search.probe_batch, step)
                _seconds(v[1], step)
                needs[step] = [state_file(f"search_{step[12:]}", start)]
            elif step.startswith("rescore_next:") and step[13:] in ex.widths:
                depth = ex.depth if step[13:] in ex.backends else ex.widths[step[13:]]
                most = ex.Q * depth * len(ex.sc.population.search_fingers)
                start = _segments(step, v, ex.Q, {"comparisons": most}, "compare_s")
                needs[step] = [state_file(f"rescore_{step[13:]}", start)]
            elif step.startswith("refine_next:") and step[12:] in ex.refined:
                start = _segments(step, v, ex.Q, {"pairs": ex.Q * ex.L}, "refine_s")
                needs[step] = [state_file(f"refine_{step[12:]}", start)]
            elif step in ("build", "projection", "summary") or (
                    step.split(":", 1)[0] == "search" and step.split(":", 1)[1] in keys) or (
                    step.split(":", 1)[0] == "rescore" and step.split(":", 1)[1] in ex.widths) or (
                    step.split(":", 1)[0] == "refine" and step.split(":", 1)[1] in ex.refined):
                if v is not True:
                    raise _Bad(f"{step} = {str(v)[:40]}")
            else:
                raise _Bad(f"unknown step {step[:60]!r}")
        except _Bad as e:
            bad.append((_group(step), str(e)))
    return needs, bad


def _segments(step: str, v, Q: int, counts: dict[str, int], seconds: str) -> int:
    """The searches done by a segmented step's record [count, timings]
    (``fpscale.bench.run.segments``): timings hold each of counts (at most
    its value), seconds and, once a segment is done, wall_s."""
    if not isinstance(v, list) or len(v) != 2 or not isinstance(v[1], dict):
        raise _Bad(f"{step} is not [count, timings]")
    start = _int(v[0], 1, Q, step)
    _boundary(start, Q, SEGMENT, step)
    info = v[1]
    if set(info) - {*counts, seconds, "wall_s"} or not {*counts, seconds} <= set(info):
        raise _Bad(f"{step} holds unknown timings")
    for key, most in counts.items():
        _int(info[key], 0, most, key)
    for key in (seconds, "wall_s"):
        if key in info:
            _seconds(info[key], key)
    return start


def _group(step: str) -> str:
    if step.startswith("build"):
        return "build"
    return step


def _check_file(ck: Checkpoints, ex: _Expect, group: str, rel: str) -> None:
    why = ck.folder.problem(rel)
    if why:
        raise _Bad(f"{rel} {why}")
    try:
        arrays = read_npz(ck.folder.file(rel))
    except ResultsError:
        raise _Bad(f"{rel} is not a readable npz file") from None
    name, count = rel.removeprefix("state/").removesuffix(".npz").split("@")
    first, _, count = count.rpartition("-")  # "a-b": a part of chunks a to b
    first, count = ex.records(int(first or 0)), int(count)
    try:
        if group == "build":
            n = ex.records(count)
            if name.startswith("index_"):
                ex.index(ex.backends[name[6:]], arrays, n - first, first)
            else:
                ex.ladder(arrays, name.removeprefix("ladder_"))
        elif group.startswith("search_next:"):
            ex.lists(arrays, count, ex.L)
        elif group.startswith("refine_next:"):
            ex.lists(arrays, count, ex.refined[group.split(":", 1)[1]])
        else:
            ex.lists(arrays, count, ex.widths[group.split(":", 1)[1]])
    except _Bad as e:
        raise _Bad(f"{rel}: {e}") from None
    ck.keep_verified(rel, arrays)


_REDO = {"build": "building the gallery again from the start",
         "search_next": "searching {key} again from the first batch",
         "rescore_next": "re-scoring {key} again from the first segment",
         "refine_next": "refining {key} again from the first segment"}


def _forget(ck: Checkpoints, group: str) -> None:
    if group == "build":
        for s in ("build_next", "build_parts", "build_timing", "build"):
            ck.forget(s)
    elif group.startswith(("search_next:", "rescore_next:", "refine_next:")):
        kind, key = group.split(":", 1)
        ck.forget(group)
        ck.forget(f"{kind.removesuffix('_next')}:{key}")
    else:
        ck.forget(group)


def _say(group: str, why: str) -> None:
    kind, _, key = group.partition(":")
    notice(f"warning: {why}; {_REDO.get(kind, 'doing it again').format(key=key)}")


def verify_resume(ck: Checkpoints, sc: Scenario) -> None:
    """Check a resumed run's records and state files; steps that fail are
    reported and forgotten (done again from their start), and state files
    no step needs are removed. The manifest is saved when anything changed."""
    ex = _Expect(sc)
    before = repr(ck.manifest)
    needs, bad = _steps(ex, ck.manifest["steps"])
    for group, why in bad:
        _say(group, f"the manifest's record of {group} is not valid ({why})")
        _forget(ck, group)
        needs.pop(group, None)
    for group, rels in list(needs.items()):
        try:
            for rel in rels:
                _check_file(ck, ex, group, rel)
        except _Bad as e:
            _say(group, str(e))
            _forget(ck, group)
            for rel in rels:
                ck.drop_verified(rel)
            del needs[group]
    keep = {rel for rels in needs.values() for rel in rels}
    for rel in [r for r in ck.folder.files if r.startswith("state/") and r not in keep]:
        ck.folder.remove(rel)
    if repr(ck.manifest) != before:
        ck.folder.save()
