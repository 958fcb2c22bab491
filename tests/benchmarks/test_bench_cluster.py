"""Throughput of a sharded run against the number of Dask workers on this machine.

Each round builds the gallery's shards on a local cluster (the workers
generate their own records) and searches every submission through them;
building and searching are timed apart. The cluster is started outside the
timing. The ratios against one worker are printed at the end of the session.
"""

import time

import numpy as np
import pytest

from fpscale.bench.run.cluster import DaskExecutor, open_cluster, plan_cluster
from fpscale.bench.run.submissions import make_submissions
from fpscale.bench.scenario import ClusterSpec, scenario_from_dict
from fpscale.synth.population import chunks

from .conftest import MEDIANS, ROUNDS, scaled

WORKERS = (1, 2)


def _scenario(workers: int):
    return scenario_from_dict({
        "name": "cluster-bench",
        "population": {"seed": 3, "gallery_size": scaled(50_000), "legacy_share": 1.0,
                       "n_submissions": 2000, "mated_share": 0.5, "search_fingers": [2, 7]},
        "search": {"candidates": 20, "chunk_size": 5000, "probe_batch": 500,
                   "backends": [{"name": "numba-flat"}]},
        "cluster": {"scheduler": "local", "workers": workers, "shards": 2 * workers},
    })


@pytest.mark.parametrize("workers", WORKERS)
def test_cluster_build_and_search(benchmark, workers):
    sc = _scenario(workers)
    subs = make_submissions(sc.population, sc.search.chunk_size, progress=False)
    build_s, search_s = [], []
    with open_cluster(sc.cluster, progress=False) as client:
        layout = plan_cluster(sc, client)

        def build_and_search():
            t0 = time.perf_counter()
            ex = DaskExecutor(client, layout, threads=1, progress=False)
            gallery = ex.build(sc, subs, None)  # shards live on the workers: no checkpoints
            t1 = time.perf_counter()
            for a, b in chunks(len(subs.mate), sc.search.probe_batch):
                ex.search(gallery.runs[0], subs.vectors[a:b], sc.search.candidates)
            search_s.append(time.perf_counter() - t1)
            build_s.append(t1 - t0)
            ex.release()

        benchmark.pedantic(build_and_search, rounds=max(3, ROUNDS // 2), warmup_rounds=1)
    n, q = sc.population.gallery_size, len(subs.mate)
    b, s = float(np.median(build_s[1:])), float(np.median(search_s[1:]))
    MEDIANS[f"cluster-build-{workers}"] = b
    MEDIANS[f"cluster-search-{workers}"] = s
    benchmark.extra_info.update({"workers": workers, "records_per_s": n / b,
                                 "searches_per_s": q / s, "gallery": n, "searches": q})
