"""A gallery split over several indexes, searched as one.

Each shard answers its own top-L; ``fpscale.matcher.topk.merge_lists`` merges them
exactly, ties to the lower id, so the result equals one index over the union
of the shards whatever their number or sizes.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from fpscale.matcher.checks import MatcherInputError
from fpscale.matcher.interface import Backend
from fpscale.matcher.topk import merge_lists


class ShardedIndex(Backend):
    """Route records to shards by position: shard s holds records whose
    running count falls in [s * shard_size, (s + 1) * shard_size)."""

    def __init__(self, make_shard: Callable[[], Backend], shard_size: int) -> None:
        first = make_shard()
        self.binary = first.binary
        super().__init__(first.d, first.threads)
        if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
            raise MatcherInputError(f"shard_size must be a positive integer, got {shard_size!r}")
        self.name = f"sharded({first.name})"
        self.shard_size = shard_size
        self.shards: list[Backend] = [first]
        self._make = make_shard

    @property
    def needs_training(self) -> bool:
        return self.shards[0].needs_training

    def train(self, sample: np.ndarray) -> None:
        self.shards[0].train(sample)
        self._trained_sample = sample  # later shards learn the same

    def _new_shard(self) -> Backend:
        shard = self._make()
        if shard.needs_training:
            shard.train(self._trained_sample)
        if getattr(self, "_params", ""):
            shard.set_search_params(self._params)
        return shard

    def set_search_params(self, params: str) -> None:
        for s in self.shards:
            s.set_search_params(params)
        self._params = params

    def _add(self, ids: np.ndarray, data: np.ndarray) -> None:
        pos = 0
        while pos < len(ids):
            last = self.shards[-1]
            room = self.shard_size - last.ntotal
            if room == 0:
                self.shards.append(self._new_shard())
                continue
            take = min(room, len(ids) - pos)
            last.add(ids[pos:pos + take], data[pos:pos + take])
            pos += take

    def _search(self, probes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        parts = [s.search(probes, k) for s in self.shards if s.ntotal]
        return merge_lists(parts, k)

    def nbytes(self) -> int:
        return sum(s.nbytes() for s in self.shards)
