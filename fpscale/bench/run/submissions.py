"""The booking submissions of a run: vectors, codes and ground truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fpscale.bench.run.progress import stage
from fpscale.synth.population import PopulationSpec, chunks, submission_chunk, submission_truth


@dataclass
class Submissions:
    """Every search of a run. mate is ground truth, never given to a matcher."""

    vectors: np.ndarray   # (Q, record_dim) float32
    codes: np.ndarray     # (Q, record_bits / 8) uint8
    mate: np.ndarray      # (Q,) gallery id or -1
    person: np.ndarray    # (Q,) identity searched (a person may be searched twice)

    def probes(self, binary: bool) -> np.ndarray:
        """What a backend searches with: codes (binary) or vectors."""
        return self.codes if binary else self.vectors


def make_submissions(pop: PopulationSpec, chunk_size: int, progress: bool = True) -> Submissions:
    """Generate all pop.n_submissions searches, chunk_size at a time."""
    vs, cs = [], []
    with stage("submissions", pop.n_submissions, "searches", progress) as st:
        for a, b in chunks(pop.n_submissions, chunk_size):
            ch = submission_chunk(pop, a, b)
            vs.append(ch.vectors)
            cs.append(ch.codes)
            st.update(b - a)
    person, mate = submission_truth(pop, 0, pop.n_submissions)
    return Submissions(np.vstack(vs), np.vstack(cs), mate, person)
