"""The in-process executor: the gallery built and searched here, resumable.

The gallery pass checkpoints every backend's index (none for a streamed
search) and the ladder accumulators every ``CHECKPOINT_S`` seconds, or less
often when checkpoints are slow (``fpscale.bench.run.checkpoints``), so a
killed run goes on from the last checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from fpscale.bench.run.checkpoints import Checkpoints, part_counts, part_files
from fpscale.bench.run.executor import RescoredSegment
from fpscale.bench.run.gallery import (GALLERY_STAGE, BackendRun, Gallery, GalleryBuilder, ladder_scans,
                               new_backend, scan_lists, train_backend)
from fpscale.bench.run.progress import stage
from fpscale.bench.run.rescore_segment import rescore_segment
from fpscale.bench.run.submissions import Submissions
from fpscale.bench.scenario import Rescoring, Scenario
from fpscale.bench.store.manifest import DamagedError
from fpscale.bench.store.summary import ClusterInfo
from fpscale.matcher.exact import thread_count
from fpscale.synth.population import PopulationSpec, chunks


class LocalExecutor:
    """Runs everything in this process on ``threads`` threads."""

    def __init__(self, threads: int, progress: bool = True) -> None:
        self.threads = threads
        self.progress = progress

    def build(self, sc: Scenario, subs: Submissions, ck: Checkpoints) -> Gallery:
        """Stream the gallery once into every backend and the ladder scans,
        checkpointing as it goes; resumes from the last checkpoint in ck."""
        pop = sc.population
        done = ck.get("build_next", 0)
        timing = ck.get("build_timing", {})
        runs = []
        for slot, b in enumerate(sc.search.backends):
            if sc.search.streamed:  # the ladder scan searches; no index is held
                runs.append(BackendRun(b, slot, None))
                continue
            idx = new_backend(pop, b, self.threads)
            run = BackendRun(b, slot, idx)
            if done:
                idx.set_search_params(b.params)
                _load_index(ck, idx, f"index_{b.key}", done)
                if idx.ntotal != min(done * sc.search.chunk_size, pop.gallery_size):
                    raise DamagedError(f"the checkpoint of {b.key} holds {idx.ntotal} records "
                                       f"where the manifest says {done} chunks")
                run.train_s, run.build_s = timing.get(b.key, (0.0, 0.0))
            else:
                run.train_s = train_backend(pop, b, idx, self.progress)
                idx.set_search_params(b.params)
            runs.append(run)
        scans, cols = ladder_scans(pop, sc.projection, subs, scan_lists(sc.search, sc.projection))
        if done:
            for fs, scan in scans.items():
                scan.import_state(ck.load(f"ladder_{fs}", done))
        builder = GalleryBuilder(pop, runs, scans, cols)
        builder.generation_s = timing.get("generation_s", 0.0)
        builder.ladder_s = timing.get("ladder_s", 0.0)
        all_chunks = list(chunks(pop.gallery_size, sc.search.chunk_size))
        appends = any(r.index is not None and r.index.appendable for r in runs)
        before = sum(b - a for a, b in all_chunks[:done])
        with thread_count(self.threads), \
                stage(GALLERY_STAGE, pop.gallery_size, "records", self.progress, before) as st:
            for ci, (a, b) in enumerate(all_chunks[done:], start=done):
                builder.add_chunk(a, b)
                st.update(b - a)
                # appended parts stay at most PART_CHUNKS chunks long;
                # whole-index checkpoints go by time alone
                since = ci + 1 - (ck.get("build_parts") or [done])[-1] if appends else 0
                if ck.due(final=ci + 1 == len(all_chunks), chunks_since=since):
                    _checkpoint(ck, builder, ci + 1, sc.search.chunk_size)
        return builder.gallery()

    def search(self, run: BackendRun, probes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return run.index.search(probes, k)

    def rescore(self, pop: PopulationSpec, ids: np.ndarray, rescoring: Rescoring,
                segments: list[tuple[int, int]]) -> Iterator[RescoredSegment]:
        for a, b in segments:
            yield rescore_segment(pop, ids[a:b], rescoring, offset=a)

    def rescore_seconds(self, info: dict) -> float:
        # in this process: the time spent comparing
        return info["compare_s"]

    def index_nbytes(self, run: BackendRun) -> int:
        return 0 if run.index is None else run.index.nbytes()

    def cluster_info(self) -> ClusterInfo | None:
        return None

    def release(self) -> None:
        pass


def _load_index(ck: Checkpoints, idx, name: str, done: int) -> None:
    # an appended index from its parts (kept as blocks: no second copy of
    # the index while resuming), any other from its one file
    if not idx.appendable:
        idx.import_state(ck.load(name, done))
    else:
        idx.import_parts([ck.load(name, c) for c in part_counts(ck.get("build_parts", [done]))])


def _checkpoint(ck: Checkpoints, builder: GalleryBuilder, next_chunk: int, chunk_size: int) -> None:
    # every index (appended: only the records added since the last
    # checkpoint) and ladder accumulator, then the manifest moves on
    ck.begin()
    before = ck.get("build_parts", [])
    prev = before[-1] if before else 0
    bounds = [*before, next_chunk]
    names, parts = [], {}
    for run in builder.runs:
        if run.index is None:
            continue
        name = f"index_{run.spec.key}"
        if run.index.appendable:
            ck.save(name, f"{prev}-{next_chunk}", run.index.export_rows(prev * chunk_size))
            parts[name] = part_files(name, bounds)
        else:
            ck.save(name, next_chunk, run.index.export_state())
        names.append(name)
    for fs, scan in builder.scans.items():
        ck.save(f"ladder_{fs}", next_chunk, scan.export_state())
        names.append(f"ladder_{fs}")
    ck.mark("build_timing", {"generation_s": builder.generation_s, "ladder_s": builder.ladder_s,
                             **{r.spec.key: (r.train_s, r.build_s) for r in builder.runs}})
    ck.note("build_parts", bounds)
    ck.commit("build_next", next_chunk, names, next_chunk, parts)
