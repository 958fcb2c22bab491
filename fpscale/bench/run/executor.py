"""Where a run's work executes: the operations the step order asks for.

Two implementations: ``fpscale.bench.run.local.LocalExecutor`` (this process) and
``fpscale.bench.run.cluster.DaskExecutor`` (gallery shards on Dask workers). The
step order (``fpscale.bench.run.steps``) calls them without knowing which it has;
what differs between them, timing rules included, lives in them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np

from fpscale.bench.run.checkpoints import Checkpoints
from fpscale.bench.run.gallery import BackendRun, Gallery
from fpscale.bench.run.submissions import Submissions
from fpscale.bench.scenario import Rescoring, Scenario
from fpscale.bench.store.summary import ClusterInfo
from fpscale.synth.population import PopulationSpec

# what re-scoring one segment returns: ids (n, k), scores (n, k), info
RescoredSegment = tuple[np.ndarray, np.ndarray, dict]


class Executor(Protocol):
    """The operations a run needs, wherever they execute."""

    def build(self, sc: Scenario, subs: Submissions, ck: Checkpoints) -> Gallery:
        """Build every backend's index and the ladder scans over the gallery."""

    def search(self, run: BackendRun, probes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """One probe batch's top k: (ids (q, k) int64, scores (q, k) float32)."""

    def rescore(self, pop: PopulationSpec, ids: np.ndarray, rescoring: Rescoring,
                segments: list[tuple[int, int]]) -> Iterator[RescoredSegment]:
        """Minutiae re-scoring of the lists ids (Q, L), segment by segment, in order."""

    def rescore_seconds(self, info: dict) -> float:
        """The seconds of re-scoring that count against a backend's throughput."""

    def index_nbytes(self, run: BackendRun) -> int:
        """Bytes a backend's index holds once built."""

    def cluster_info(self) -> ClusterInfo | None:
        """Where the work went (None in this process)."""

    def release(self) -> None:
        """Free what the build holds outside this process."""
