"""Checkpoints of a run, kept in ``<out>/state`` and named in the manifest.

State files carry the progress count in their name and the manifest names
the count to resume from, so a kill between two writes leaves the previous
consistent set in place; older sets are removed once the manifest has moved
on.

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
from pathlib import Path
from typing import Any

from bench.store.files import read_npz, write_npz
from bench.store.manifest import mark_step

# seconds between checkpoints of the gallery pass (0: after every chunk)
CHECKPOINT_S = float(os.environ.get("FPSCALE_CHECKPOINT_S", "30"))


class Checkpoints:
    """The manifest of a results folder and the state files beside it."""

    def __init__(self, out: Path, manifest: dict) -> None:
        self.out = Path(out)
        self.manifest = manifest
        self.dir = self.out / "state"
        self.last = time.monotonic()
        self._crash = _crash_point(os.environ.get("FPSCALE_CRASH_AT", ""))
        self._seen = 0

    def get(self, step: str, default: Any = None) -> Any:
        """What the manifest recorded for a step (default when nothing)."""
        return self.manifest["steps"].get(step, default)

    def mark(self, step: str, info: Any = True) -> None:
        """Record a finished step in the manifest."""
        mark_step(self.out, self.manifest, step, info)

    def due(self, final: bool = False) -> bool:
        """Whether the gallery pass should checkpoint now."""
        return final or time.monotonic() - self.last >= CHECKPOINT_S

    def save(self, name: str, count: int, arrays: dict) -> None:
        """Write one state file of the set for progress count."""
        write_npz(self.dir / f"{name}@{count}.npz", **arrays)

    def load(self, name: str, count: int) -> dict:
        """Read one state file of the set for progress count."""
        return read_npz(self.dir / f"{name}@{count}.npz")

    def commit(self, step: str, info: Any, names: list[str], count: int) -> None:
        """Move the manifest on to the set for count, then drop older sets."""
        self._maybe_crash(step, before=True)
        self.mark(step, info)
        self.last = time.monotonic()
        for name in names:  # the sets before this one are no longer needed
            for f in self.dir.glob(f"{name}@*.npz"):
                if f.name != f"{name}@{count}.npz":
                    f.unlink(missing_ok=True)
        self._maybe_crash(step, before=False)

    def clear(self) -> None:
        """Remove every state file (a complete folder needs none)."""
        for f in self.dir.glob("*.npz"):
            f.unlink()

    def _maybe_crash(self, step: str, before: bool) -> None:
        if self._crash is None:
            return
        prefix, n, crash_before = self._crash
        if not step.startswith(prefix) or before != crash_before:
            return
        self._seen += 1
        if self._seen == n:
            os.kill(os.getpid(), signal.SIGKILL)


def _crash_point(text: str) -> tuple[str, int, bool] | None:
    # "STEP/N" or "STEP/N/before"; anything else: no crash point
    parts = text.split("/")
    if len(parts) not in (2, 3) or not parts[1].isdigit() or int(parts[1]) < 1:
        return None
    if len(parts) == 3 and parts[2] != "before":
        return None
    return parts[0], int(parts[1]), len(parts) == 3
