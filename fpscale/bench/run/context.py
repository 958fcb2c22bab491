"""What every step of a run holds: the scenario, the results folder's
checkpoints, the executor and whether to show progress."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fpscale.bench.run.checkpoints import Checkpoints
from fpscale.bench.run.executor import Executor
from fpscale.bench.run.progress import Stage, stage
from fpscale.bench.scenario import Scenario
from fpscale.bench.store.manifest import ResultsFolder


@dataclass
class RunContext:
    """One run in progress."""

    scenario: Scenario
    checkpoints: Checkpoints
    executor: Executor
    progress: bool = True

    @property
    def out(self) -> Path:
        """The results folder."""
        return self.checkpoints.out

    @property
    def folder(self) -> ResultsFolder:
        """The results folder, through which every file is written."""
        return self.checkpoints.folder

    def stage(self, name: str, total: int, unit: str, initial: int = 0) -> Stage:
        """The progress of one stage (``fpscale.bench.run.progress``; silent when
        progress is off)."""
        return stage(name, total, unit, self.progress, initial)
