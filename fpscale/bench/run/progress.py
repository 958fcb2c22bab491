"""Progress of the stages of a run, for a person at a terminal or for a log.

Every stage of work (building the gallery, searching one backend, re-scoring
one backend's lists, writing the report, ...) goes through one ``Stage``:

- stderr a terminal: a tqdm bar named after the stage, with count, rate and
  time left;
- stderr not a terminal (``make run > log.txt 2>&1``, a CI job): plain lines,
  never tqdm's carriage-return frames: one when the stage starts, one when it
  ends (count, seconds, rate), and in between at most one per tenth of the
  work and per ``LOG_EVERY_S`` seconds, so that a short stage prints two
  lines and a long one a dozen, and at least one per ``LOG_QUIET_S`` (a
  stage of an hour or more says every few minutes how far it is);
- progress off (``--quiet``): nothing.

``say`` prints one other line (a note the user should read) the same way.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from tqdm import tqdm

LOG_EVERY_S = 30.0  # seconds at least between two progress lines of a stage
LOG_STEP = 0.1      # share of a stage's work at least between two progress lines...
LOG_QUIET_S = 300.0  # ...unless this long has passed without one
PREFIX = "fpscale: "


@dataclass(frozen=True)
class Sink:
    """Where stage output goes: stream None is silent; terminal picks tqdm
    bars over log lines; clock gives seconds (monotonic)."""

    stream: TextIO | None
    terminal: bool = False
    clock: Callable[[], float] = field(default=time.monotonic)


def sink(show: bool) -> Sink:
    """stderr, as bars when it is a terminal and lines otherwise; silent
    when show is False."""
    if not show:
        return Sink(None)
    err = sys.stderr
    isatty = getattr(err, "isatty", None)
    return Sink(err, bool(isatty and isatty()))


def say(message: str, show: bool = True, out: Sink | None = None) -> None:
    """One line ``fpscale: message`` on stderr (above any bar on a terminal)."""
    out = out or sink(show)
    if out.stream is None:
        return
    if out.terminal:
        tqdm.write(PREFIX + message, file=out.stream)
    else:
        out.stream.write(PREFIX + message + "\n")
        out.stream.flush()


def _num(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 or x == int(x) else f"{x:,.3g}"


def _seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    m, s = divmod(int(round(s)), 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


class Stage:
    """One named stage of total units of work, initial of them done before
    (a resumed run). Use as a context manager, or call close()."""

    def __init__(self, name: str, total: int, unit: str, initial: int = 0,
                 out: Sink | None = None) -> None:
        self.name, self.total, self.unit = name, max(int(total), 0), unit
        self.done = self.initial = min(max(int(initial), 0), self.total)
        self.out = out if out is not None else sink(True)
        self._bar = None
        self._closed = False
        self._t0 = self._last_t = self.out.clock()
        self._last_step = self._step(self.done)
        if self.out.stream is None:
            return
        if self.out.terminal:
            self._bar = tqdm(total=self.total, initial=self.initial, desc=name, unit=unit,
                             file=self.out.stream, dynamic_ncols=True)
            return
        before = f" ({_num(self.initial)} done before)" if self.initial else ""
        self._line(f"start, {_num(self.total)} {unit}{before}")

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, kind, value, tb) -> None:
        self.close(failed=kind is not None)

    def _step(self, done: int) -> int:
        # which tenth of the work has been reached
        return math.floor(done / self.total / LOG_STEP) if self.total else 0

    def _line(self, text: str) -> None:
        self.out.stream.write(f"{PREFIX}{self.name}: {text}\n")
        self.out.stream.flush()

    def _rate(self, elapsed: float) -> float | None:
        work = self.done - self.initial
        return work / elapsed if elapsed > 0 and work > 0 else None

    def update(self, n: int = 1) -> None:
        """n more units done."""
        self.done = min(self.done + int(n), self.total)
        if self._bar is not None:
            self._bar.update(n)
            return
        if self.out.stream is None or self._closed or self.done >= self.total:
            return
        now = self.out.clock()
        step = self._step(self.done)
        quiet = now - self._last_t
        if quiet < LOG_QUIET_S and (step <= self._last_step or quiet < LOG_EVERY_S):
            return
        self._last_step, self._last_t = max(step, self._last_step), now
        elapsed = now - self._t0
        rate = self._rate(elapsed)
        text = (f"{_num(self.done)}/{_num(self.total)} {self.unit} "
                f"({100 * self.done / self.total:.0f}%), {_seconds(elapsed)}")
        if rate:
            text += f", {_num(rate)} {self.unit}/s, about {_seconds((self.total - self.done) / rate)} left"
        self._line(text)

    def close(self, failed: bool = False) -> None:
        """End the stage: its last line (done, or stopped when failed)."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
            return
        if self.out.stream is None:
            return
        elapsed = self.out.clock() - self._t0
        if failed:
            self._line(f"stopped at {_num(self.done)}/{_num(self.total)} {self.unit} "
                       f"after {_seconds(elapsed)}")
            return
        rate = self._rate(elapsed)
        per = f" ({_num(rate)} {self.unit}/s)" if rate else ""
        self._line(f"done, {_num(self.done - self.initial)} {self.unit} in {_seconds(elapsed)}{per}")


def stage(name: str, total: int, unit: str, show: bool = True, initial: int = 0) -> Stage:
    """A Stage on stderr (bars on a terminal, lines otherwise; silent when
    show is False)."""
    return Stage(name, total, unit, initial, sink(show))
