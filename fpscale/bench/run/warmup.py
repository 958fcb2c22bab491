"""The compile stage: numba's kernels compiled, or loaded from its on-disk
cache, before the stages that use them, so that the first run's minute or
two of compilation shows as a stage of its own instead of stalling the
submissions or the first re-scoring, and so that no stage's timing holds it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fpscale.bench.measure.code_ladder import CodeLadderScan
from fpscale.bench.measure.ladder import LadderScan
from fpscale.bench.measure.weighted_quantile import upper_quantiles, weight_at_or_above
from fpscale.bench.run.gallery import new_backend
from fpscale.bench.run.progress import stage
from fpscale.bench.run.refine import refine_segment
from fpscale.bench.run.rescore_segment import warm_matcher
from fpscale.bench.scenario import Scenario
from fpscale.matcher.asymmetric import code_projections
from fpscale.synth.embedding import projections
from fpscale.synth.population import gallery_chunk, submission_chunk


def _search_once(sc: Scenario, name: str) -> Callable[[], None]:
    def run() -> None:
        b = next(b for b in sc.search.backends if b.name == name)
        rec = gallery_chunk(sc.population, 0, 1)
        data = rec.codes if b.binary else rec.vectors
        idx = new_backend(sc.population, b, 1)
        idx.add(rec.ids, data)
        idx.search(data, 1)
    return run


def _ladder_once(sc: Scenario) -> None:
    rec = gallery_chunk(sc.population, 0, 1)
    none, no_score = np.array([-1]), np.array([-np.inf], np.float32)
    if sc.projection.scores == "codes":
        pop = sc.population
        one = rec.codes[:, : pop.bits // 8]  # one finger's code: the kernel is the same
        projected = None
        if sc.search.rerank_candidates:  # and the asymmetric scores' kernels
            w = projections(pop.dim, pop.bits, pop.code)[2]
            projected = code_projections(np.ascontiguousarray(rec.vectors[:, :pop.dim]), w, 1)
        scan = CodeLadderScan(np.array([1]), one, none, no_score, 0, int(projected is not None),
                              projected)
        scan.add(0, one)
    else:
        scan = LadderScan(np.array([1]), rec.vectors, none, no_score, 1.0)
        scan.add(0, rec.vectors)
    # the projection's resampled quantiles and tail weights, which read the ladder
    upper_quantiles(np.zeros(2), np.arange(2), np.ones((1, 2)), np.array([0.5]))
    weight_at_or_above(np.arange(2), np.ones((1, 2)), np.zeros((1, 1), np.int64))


def kernel_groups(sc: Scenario) -> list[Callable[[], None]]:
    """One call per group of numba kernels the scenario runs: generation and
    encoding (booking and gallery captures), each numba backend's search, the
    ladder scan with the projection that reads it, the minutiae matcher and
    the refinement's inner products."""
    pop = sc.population
    groups = [lambda: submission_chunk(pop, 0, 1), lambda: gallery_chunk(pop, 0, 1)]
    for name in dict.fromkeys(b.name for b in sc.search.backends if b.name.startswith("numba")):
        groups.append(_search_once(sc, name))
    if sc.projection.ladder:
        groups.append(lambda: _ladder_once(sc))
    if sc.search.rescore:
        groups.append(lambda: warm_matcher(sc.search.rescoring.matcher))
    if sc.search.refine_candidates:
        groups.append(lambda: _refine_once(sc))
    return groups


def _refine_once(sc: Scenario) -> None:
    probe = submission_chunk(sc.population, 0, 1).vectors
    refine_segment(sc.population, probe, np.zeros((1, 1), np.int64), 1)


def warm_up(sc: Scenario, show: bool = True) -> None:
    """Run every kernel group once, as the stage ``compile``."""
    groups = kernel_groups(sc)
    with stage("compile", len(groups), "kernel groups", show) as st:
        for fn in groups:
            fn()
            st.update(1)
