"""Checkpoints of a run, kept in ``<out>/state`` and named in the manifest.

State files carry the progress count in their name and the manifest names
the count to resume from, so a kill between two writes leaves the previous
consistent set in place; older sets are removed once the manifest has moved
on. Indexes that can (numba-flat, numba-hamming) are appended instead: each
checkpoint writes the records added since the last one as a part named by
its chunk interval ("@a-b"), never rewritten, and the manifest lists the
boundaries ("build_parts"). Every state file is listed in the manifest with its checksum
(``fpscale.bench.store.manifest``); ``fpscale.bench.run.resume`` checks them before a
resumed run trusts them.

For tests of resuming, ``FPSCALE_CRASH_AT=STEP/N`` kills the process
(SIGKILL, as the kernel's out-of-memory killer would) at the N-th checkpoint
of a step whose name starts with STEP, right after the manifest records it;
``STEP/N/before`` kills it after the state files are written but before the
manifest moves on.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from fpscale.bench.store.files import read_npz
from fpscale.bench.store.manifest import ResultsFolder

# seconds between checkpoints of the gallery pass (0: after every chunk)
CHECKPOINT_S = float(os.environ.get("FPSCALE_CHECKPOINT_S", "30"))
# ...or longer, so that checkpoints take at most this share of the pass: a
# streamed 300M run's lists (38 MB, written and synced in 0.13 s) every
# 30 s cost 26 s of its two hours; at this share they cost about 7 s and a
# kill loses at most about two minutes...
CHECKPOINT_SHARE = 0.001
# ...but never more than this many seconds apart (a whole faiss index that
# takes 10 s to save would otherwise wait almost three hours)
CHECKPOINT_MAX_S = 600.0
# and after at most this many gallery chunks: an appended checkpoint then
# copies at most these chunks' records, whatever the generation rate, which
# is what the memory plan counts for it
PART_CHUNKS = 8
# the manifest's record of the run's starts: [starts, wall seconds up to the
# last manifest write of the latest], so that a resumed run can say what
# its earlier starts did
RUN_TIME = "run_time"


class Checkpoints:
    """The manifest of a results folder and the state files beside it."""

    def __init__(self, folder: ResultsFolder) -> None:
        self.folder = folder
        self.out = folder.path
        self.manifest = folder.manifest
        self.last = time.monotonic()
        self._t0 = self.last
        self.cost = 0.0  # seconds the last gallery checkpoint took
        self._began: float | None = None
        self._earlier: tuple[int, float] | None = None
        self._crash = _crash_point(os.environ.get("FPSCALE_CRASH_AT", ""))
        self._seen = 0
        self._verified: dict[str, dict] = {}  # state files checked on resume, by name

    def get(self, step: str, default: Any = None) -> Any:
        """What the manifest recorded for a step (default when nothing)."""
        return self.manifest["steps"].get(step, default)

    def earlier(self) -> tuple[int, float]:
        """(starts, wall seconds) of this run's earlier starts, up to the last
        manifest write of each, as the manifest held them when first asked
        (ask after ``fpscale.bench.run.resume`` has checked it)."""
        if self._earlier is None:
            n, s = self.get(RUN_TIME, [0, 0.0])
            self._earlier = (int(n), float(s))
        return self._earlier

    def mark(self, step: str, info: Any = True) -> None:
        """Record a finished step in the manifest, with the run's time so far."""
        n, s = self.earlier()
        self.note(RUN_TIME, [n + 1, s + time.monotonic() - self._t0])
        self.folder.mark(step, info)

    def forget(self, step: str) -> None:
        """Drop a step's record (its work is done again)."""
        self.manifest["steps"].pop(step, None)

    def due(self, final: bool = False, chunks_since: int = 0) -> bool:
        """Whether the gallery pass should checkpoint now, chunks_since
        chunks after the last checkpoint: every CHECKPOINT_S seconds, or
        less often (up to CHECKPOINT_MAX_S) when the last checkpoint took
        more than CHECKPOINT_SHARE of that; always after PART_CHUNKS chunks
        and at the end (``FPSCALE_CHECKPOINT_S=0``: after every chunk)."""
        if final or chunks_since >= PART_CHUNKS:
            return True
        wait = max(CHECKPOINT_S, min(self.cost / CHECKPOINT_SHARE, CHECKPOINT_MAX_S))
        return time.monotonic() - self.last >= (wait if CHECKPOINT_S > 0 else 0.0)

    def save(self, name: str, count: int | str, arrays: dict) -> None:
        """Write one state file of the set for progress count (or a part,
        "a-b", of an appended state)."""
        self.folder.write_npz(state_file(name, count), **arrays)

    def note(self, step: str, info: Any) -> None:
        """Record a step's info with the manifest's next save (commit), so
        that it moves on together with the step it belongs to."""
        self.manifest["steps"][step] = info

    def load(self, name: str, count: int | str) -> dict:
        """Read one state file of the set for progress count (as checked
        when the run resumed)."""
        rel = state_file(name, count)
        if rel in self._verified:
            return self._verified.pop(rel)
        return read_npz(self.folder.file(rel))

    def keep_verified(self, rel: str, arrays: dict) -> None:
        """Arrays of a state file already read and checked, for load."""
        self._verified[rel] = arrays

    def drop_verified(self, rel: str) -> None:
        """Forget arrays kept by keep_verified."""
        self._verified.pop(rel, None)

    def begin(self) -> None:
        """Mark the start of a gallery checkpoint: its cost runs to the commit."""
        self._began = time.monotonic()

    def commit(self, step: str, info: Any, names: list[str], count: int,
               parts: dict[str, list[str]] | None = None) -> None:
        """Move the manifest on to the set for count, then drop older sets;
        parts names the files an appended state keeps instead."""
        self._maybe_crash(step, before=True)
        self.mark(step, info)
        self.last = time.monotonic()
        if self._began is not None:
            self.cost = self.last - self._began
            self._began = None
        for name in names:  # the sets before this one are no longer needed
            keep = set((parts or {}).get(name, [state_file(name, count)]))
            for rel in [r for r in self.folder.files if r.startswith(f"state/{name}@")]:
                if rel not in keep:
                    self.folder.remove(rel)
        self._maybe_crash(step, before=False)

    def clear(self) -> None:
        """Remove every state file (a complete folder needs none)."""
        self.folder.remove_all("state/")

    def _maybe_crash(self, step: str, before: bool) -> None:
        if self._crash is None:
            return
        prefix, n, crash_before = self._crash
        if not step.startswith(prefix) or before != crash_before:
            return
        self._seen += 1
        if self._seen == n:
            os.kill(os.getpid(), signal.SIGKILL)


def state_file(name: str, count: int | str) -> str:
    """The name of a state file in the results folder."""
    return f"state/{name}@{count}.npz"


def part_counts(bounds: list[int]) -> list[str]:
    """The parts of an appended state, as the counts state_file takes: one
    per interval of chunks [0, b1), [b1, b2), ... between checkpoints."""
    edges = [0, *bounds]
    return [f"{a}-{b}" for a, b in zip(edges, edges[1:])]


def part_files(name: str, bounds: list[int]) -> list[str]:
    """The files of an appended state's parts."""
    return [state_file(name, c) for c in part_counts(bounds)]


def _crash_point(text: str) -> tuple[str, int, bool] | None:
    # "STEP/N" or "STEP/N/before"; anything else: no crash point
    parts = text.split("/")
    if len(parts) not in (2, 3) or not parts[1].isdigit() or int(parts[1]) < 1:
        return None
    if len(parts) == 3 and parts[2] != "before":
        return None
    return parts[0], int(parts[1]), len(parts) == 3
