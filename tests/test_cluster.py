"""Sharded runs on a real local Dask cluster: same results as one process,
whatever the workers and shards, and after a worker is killed mid-run."""

import dataclasses
import json
import os
import signal

import numpy as np
import pytest

from fpscale.bench.cli import main
from fpscale.bench.run import cluster as cluster_mod
from fpscale.bench.run.planner import PlanError, plan_shards, shard_bytes
from fpscale.bench.run.steps import run_scenario
from fpscale.bench.scenario import ClusterSpec, ScenarioError, scenario_from_dict
from fpscale.matcher.deep_lists import buffer_length
from fpscale.matcher.registry import peak_index_bytes

SMALL = {
    "name": "cluster-small",
    "population": {"seed": 7, "gallery_size": 6000, "legacy_share": 0.3, "n_submissions": 400,
                   "mated_share": 0.5, "search_fingers": [2, 7]},
    "search": {"candidates": 10, "chunk_size": 1000, "probe_batch": 150, "threads": 1,
               "rescore": True, "rescore_candidates": 3,
               "backends": [{"name": "numba-flat"}, {"name": "faiss:Flat"},
                            {"name": "faiss:IVF16,Flat", "params": "nprobe=4", "train_size": 2000},
                            {"name": "numba-hamming"}, {"name": "faiss:BFlat"}]},
    "metrics": {"target_fpir": [0.05]},
    "projection": {"ladder": [1000, 3000, 6000], "finger_sets": ["one", "two_index"]},
}


def _on_cluster(sc, workers, shards):
    return dataclasses.replace(sc, cluster=ClusterSpec("local", workers, 1, shards))


# faiss Flat scores through BLAS blocks that round differently with the size
# of the index: sharded, its scores may move in the last bit (README)
BLAS_ROUNDED = "faiss-Flat"


def _same_results(a, b):
    sa = json.loads((a / "summary.json").read_text())
    sb = json.loads((b / "summary.json").read_text())
    assert [x["key"] for x in sa["backends"]] == [x["key"] for x in sb["backends"]]
    for x, y in zip(sa["backends"], sb["backends"]):
        if x["key"].startswith(BLAS_ROUNDED):
            continue
        assert json.dumps(x["metrics"], sort_keys=True) == json.dumps(y["metrics"], sort_keys=True)
        assert x.get("vs_exact") == y.get("vs_exact")
    assert json.dumps(sa["projection"], sort_keys=True) == json.dumps(sb["projection"], sort_keys=True)
    files = sorted(p.name for p in a.glob("*.npz"))
    assert files == sorted(p.name for p in b.glob("*.npz")) and len(files) >= 12
    for f in files:
        za, zb = np.load(a / f), np.load(b / f)
        if f.startswith(f"searches_{BLAS_ROUNDED}"):
            assert np.allclose(za["cand_scores"], zb["cand_scores"], rtol=0, atol=1e-6)
            assert np.mean(za["mate_rank"] == zb["mate_rank"]) > 0.99
            continue
        for k in za.files:
            assert np.array_equal(za[k], zb[k]), (f, k)
    return sb


@pytest.fixture(scope="module")
def scenario():
    return scenario_from_dict(SMALL)


@pytest.fixture(scope="module")
def single(scenario, tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    run_scenario(scenario, out, progress=False)
    return out


# each cluster run is about 20 s on 2 cores: make test keeps one layout, one
# worker loss and the interrupted resume; make test-slow runs the rest
@pytest.mark.parametrize("workers,shards", [(2, 3), pytest.param(3, 5, marks=pytest.mark.slow)])
def test_cluster_run_equals_single_process_run(scenario, single, tmp_path, workers, shards):
    run_scenario(_on_cluster(scenario, workers, shards), tmp_path, progress=False)
    info = _same_results(single, tmp_path)["cluster"]
    assert info["workers"] == workers and info["shards"] == shards
    assert sum(info["shard_records"]) == scenario.population.gallery_size
    assert len(set(info["placement"].values())) == workers  # every worker holds a shard
    assert info["work_stealing"] is False


@pytest.mark.slow
def test_run_on_a_running_scheduler_with_work_stealing(scenario, single, tmp_path):
    # a scheduler started elsewhere, with Dask's defaults (work stealing on):
    # a search that lands on a worker without its shard rebuilds it there
    from distributed import LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=40) as cluster:
        sc = dataclasses.replace(scenario, cluster=ClusterSpec(cluster.scheduler_address, 0, 1, 3))
        run_scenario(sc, tmp_path, progress=False)
    info = _same_results(single, tmp_path)["cluster"]
    assert info["scheduler"].startswith("tcp://") and info["work_stealing"] is True
    assert info["workers"] == 2 and info["shards"] == 3


def _kill_worker_holding(client, future) -> int:
    addr = sorted(client.who_has(future)[future.key])[0]
    pid = client.run(os.getpid, workers=[addr])[addr]
    os.kill(pid, signal.SIGKILL)
    return pid


def test_worker_killed_mid_search_is_rebuilt_elsewhere(scenario, single, tmp_path, monkeypatch):
    seen = {"calls": 0, "killed": None, "pids_after": None}
    original = cluster_mod.DaskExecutor.search

    def search_then_kill(self, run, probes, k):
        seen["calls"] += 1
        if seen["calls"] == 3:  # after the warm-up and the first probe batch
            seen["killed"] = _kill_worker_holding(self.client, self.tokens[0])
        result = original(self, run, probes, k)
        if seen["killed"] and seen["pids_after"] is None:
            seen["pids_after"] = {t["stats"]["pid"] for t in self.client.gather(self.tokens)}
        return result

    monkeypatch.setattr(cluster_mod.DaskExecutor, "search", search_then_kill)
    run_scenario(_on_cluster(scenario, 3, 4), tmp_path, progress=False)
    assert seen["killed"] is not None
    # the killed worker's shards were built again in a live process ...
    assert seen["killed"] not in seen["pids_after"]
    # ... and nothing in the results moved
    _same_results(single, tmp_path)


@pytest.mark.slow
def test_worker_killed_while_shards_are_built(scenario, single, tmp_path, monkeypatch):
    import distributed
    real = distributed.wait
    seen = {}

    def kill_after_first(futures, *args, **kwargs):
        res = real(futures, *args, **kwargs)
        if res.done and "killed" not in seen:
            # the first shard built: its result is lost with the worker and
            # must be built again
            fut = next(iter(res.done))
            seen["killed"] = _kill_worker_holding(fut.client, fut)
        return res

    monkeypatch.setattr(distributed, "wait", kill_after_first)
    summary = run_scenario(_on_cluster(scenario, 2, 4), tmp_path, progress=False)
    assert seen["killed"]
    assert summary.cluster.shards == 4
    _same_results(single, tmp_path)


def test_interrupted_cluster_run_resumes_with_same_results(scenario, single, tmp_path,
                                                          monkeypatch):
    original = cluster_mod.DaskExecutor.search
    calls = {"n": 0}

    def interrupt_third(self, run, probes, k):
        calls["n"] += 1
        if calls["n"] == 3:  # warm-up, first batch, then Ctrl-C
            raise KeyboardInterrupt
        return original(self, run, probes, k)

    monkeypatch.setattr(cluster_mod.DaskExecutor, "search", interrupt_third)
    with pytest.raises(KeyboardInterrupt):
        run_scenario(_on_cluster(scenario, 2, 2), tmp_path, progress=False)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert not manifest.get("complete")
    assert manifest["steps"]["search_next:numba-flat"][0] == 150  # one batch kept
    monkeypatch.setattr(cluster_mod.DaskExecutor, "search", original)
    run_scenario(_on_cluster(scenario, 2, 2), tmp_path, progress=False)
    _same_results(single, tmp_path)


def test_shards_are_chunk_aligned_and_cover_the_gallery(scenario):
    for n in (1, 2, 3, 4, 6, 50):
        ranges = cluster_mod.shard_ranges(scenario.population, scenario.search.chunk_size, n)
        flat = [c for r in ranges for c in r]
        assert len(ranges) == min(n, 6) and all(ranges)
        assert flat == [(a, a + 1000) for a in range(0, 6000, 1000)]


def test_placement_is_planned_against_worker_memory(scenario):
    need = shard_bytes(scenario, 2000)
    big = {"tcp://a:1": {"memory_limit": 8 << 30, "nthreads": 1},
           "tcp://b:1": {"memory_limit": 8 << 30, "nthreads": 1}}
    placement = plan_shards(scenario, [2000, 2000, 2000, 2000], big)
    assert sorted(placement.values()).count("tcp://a:1") == 2  # balanced
    tiny = {"tcp://a:1": {"memory_limit": 300 << 20, "nthreads": 1}}
    with pytest.raises(PlanError, match=r"shard \d .* more shards"):
        plan_shards(scenario, [2000] * 3, tiny)
    # a shard's bytes grow linearly with its records: the indexes, plus a
    # ladder part that does not depend on them
    step_a, step_b = shard_bytes(scenario, 4000) - need, need - shard_bytes(scenario, 0)
    assert step_b > 0 and abs(step_a - step_b) <= 8  # bytes of rounding
    assert need >= 2000 * scenario.population.record_dim * 4  # at least the float vectors
    unlimited = {"tcp://a:1": {"memory_limit": 0, "nthreads": 1}}
    assert set(plan_shards(scenario, [2000] * 3, unlimited).values()) == {"tcp://a:1"}


def test_cluster_table_is_validated_and_left_out_of_the_fingerprint(scenario):
    d = dict(SMALL, cluster={"scheduler": "local", "workers": 2})
    assert scenario_from_dict(d).fingerprint() == scenario.fingerprint()
    with pytest.raises(ScenarioError, match=r"\[cluster\] unknown key 'nodes'"):
        scenario_from_dict(dict(SMALL, cluster={"nodes": 3}))
    with pytest.raises(ScenarioError, match=r"\[cluster\] workers"):
        scenario_from_dict(dict(SMALL, cluster={"workers": -1}))


def test_cli_names_bad_cluster_options(tmp_path, capsys, monkeypatch):
    path = tmp_path / "s.toml"
    path.write_text('[population]\ngallery_size = 1000\nn_submissions = 50\n')
    assert main(["run", str(path), "--out", str(tmp_path / "o"), "--workers", "2"]) == 2
    assert "--workers and --shards need --scheduler" in capsys.readouterr().err
    assert main(["run", str(path), "--out", str(tmp_path / "o"), "--scheduler", "local",
                 "--shards", "0"]) == 2
    assert "--shards must be a positive integer" in capsys.readouterr().err
    assert main(["run", str(path), "--out", str(tmp_path / "o"), "--scheduler", "tcp://h:8786",
                 "--workers", "3"]) == 2
    assert "--workers sets the size of a local cluster" in capsys.readouterr().err
    monkeypatch.setattr(cluster_mod, "CONNECT_TIMEOUT_S", 2)
    assert main(["run", str(path), "--out", str(tmp_path / "o"), "--quiet",
                 "--scheduler", "tcp://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'" in err
    assert "Traceback" not in err
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_code_ladder_on_a_cluster_equals_one_process(tmp_path):
    # the national-scale scenarios' ladder: scored on codes in each shard,
    # merged exactly (maxima and sums of whole numbers, the top of the
    # rungs' lists), and the rungs' lists re-scored
    d = json.loads(json.dumps(SMALL))
    d["search"]["backends"] = [{"name": "numba-hamming"}]
    d["projection"]["scores"] = "codes"
    d["projection"]["rescored"] = True
    sc = scenario_from_dict(d)
    run_scenario(sc, tmp_path / "one", progress=False)
    run_scenario(_on_cluster(sc, 2, 3), tmp_path / "two", progress=False)
    sa = json.loads((tmp_path / "one" / "summary.json").read_text())
    sb = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert json.dumps(sa["projection"], sort_keys=True) == json.dumps(sb["projection"], sort_keys=True)
    for fs in ("one", "two_index", "two_index+minutiae"):
        za, zb = np.load(tmp_path / "one" / f"ladder_{fs}.npz"), np.load(tmp_path / "two" / f"ladder_{fs}.npz")
        for k in za.files:
            assert np.array_equal(za[k], zb[k]), (fs, k)
    assert sb["ladder_s"] > 0


def test_streamed_search_on_a_cluster_equals_one_process(tmp_path):
    # each shard's scan keeps every search's whole list, no index is built
    # anywhere, and the shards' lists merge into the one-process lists
    d = json.loads(json.dumps(SMALL))
    d["search"]["backends"] = [{"name": "numba-hamming"}]
    d["search"]["streamed"] = True
    d["projection"]["scores"] = "codes"
    d["projection"]["rescored"] = True
    sc = scenario_from_dict(d)
    sb = _streamed_on_one_and_two(sc, tmp_path, 6)
    assert sb["cluster"]["shards"] == 3 and sb["backends"][0]["memory"]["actual_bytes"] == 0
    listed = np.load(tmp_path / "two" / "searches_numba-hamming.npz")["mate_rank"]
    assert (listed >= 1).sum() > 100  # the merged lists find mates


def test_refined_streamed_search_on_a_cluster_equals_one_process(tmp_path):
    # the shards' deeper lists merge into one process's, and the client
    # refines them as one process does
    d = json.loads(json.dumps(SMALL))
    d["search"].update(backends=[{"name": "numba-hamming"}], streamed=True, refine_candidates=40)
    d["projection"]["scores"] = "codes"
    sb = _streamed_on_one_and_two(scenario_from_dict(d), tmp_path, 5)
    assert sb["backends"][1]["timings"]["refine"]["pairs"] == 400 * 40


def test_reranked_streamed_search_on_a_cluster_equals_one_process(tmp_path):
    # the shards' deep lists merge with the asymmetric scores they carry,
    # and the client re-ranks and refines them as one process does
    d = json.loads(json.dumps(SMALL))
    d["search"].update(backends=[{"name": "numba-hamming"}], streamed=True, refine_candidates=40,
                       rerank_candidates=120)
    d["projection"]["scores"] = "codes"
    sb = _streamed_on_one_and_two(scenario_from_dict(d), tmp_path, 5)
    assert sb["backends"][1]["timings"]["refine"]["reranked_from"] == 120


def _streamed_on_one_and_two(sc, tmp_path, n_files: int) -> dict:
    # sc run in one process and on two workers in three shards: the same
    # arrays, metrics and projection; the cluster run's summary
    run_scenario(sc, tmp_path / "one", progress=False)
    run_scenario(_on_cluster(sc, 2, 3), tmp_path / "two", progress=False)
    files = sorted(p.name for p in (tmp_path / "one").glob("*.npz"))
    assert files == sorted(p.name for p in (tmp_path / "two").glob("*.npz")) and len(files) == n_files
    for f in files:
        za, zb = np.load(tmp_path / "one" / f), np.load(tmp_path / "two" / f)
        for k in za.files:
            assert np.array_equal(za[k], zb[k]), (f, k)
    sa = json.loads((tmp_path / "one" / "summary.json").read_text())
    sb = json.loads((tmp_path / "two" / "summary.json").read_text())
    for x, y in zip(sa["backends"], sb["backends"], strict=True):
        assert json.dumps(x["metrics"], sort_keys=True) == json.dumps(y["metrics"], sort_keys=True)
    assert json.dumps(sa["projection"], sort_keys=True) == json.dumps(sb["projection"], sort_keys=True)
    return sb


def test_a_streamed_shard_plans_no_index(scenario):
    d = json.loads(json.dumps(SMALL))
    d["search"]["backends"] = [{"name": "numba-hamming"}]
    d["projection"]["scores"] = "codes"
    indexed = scenario_from_dict(d)
    d["search"]["streamed"] = True
    streamed = scenario_from_dict(d)
    n = 2_000_000
    index = peak_index_bytes("numba-hamming", n, indexed.population.record_width(True))
    # 400 searches' lists: the 3 re-scored on each of 3 rungs, 10 of the
    # whole gallery; and their copy; and the whole lists' buffers and
    # counts by score
    bits = indexed.population.record_bits
    lists = 2 * 400 * (3 * 3 + 10) * 12 + 400 * (buffer_length(10) * 12 + (bits + 4) * 8)
    assert index > 0
    assert shard_bytes(indexed, n) - shard_bytes(streamed, n) == index - lists
    assert shard_bytes(streamed, n) == shard_bytes(streamed, 1)


class _Bar:
    # records what a progress Stage is moved by
    def __init__(self, *args, **kwargs):
        self.updates = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n):
        self.updates.append(n)


def test_built_records_counts_finished_shards_and_the_reports_of_the_rest():
    assert cluster_mod.built_records({}, {}) == 0
    assert cluster_mod.built_records({}, {0: 500, 1: 200}) == 700
    # a finished shard counts its final records, reported or not
    assert cluster_mod.built_records({0: 1000}, {0: 500, 1: 200}) == 1200
    assert cluster_mod.built_records({0: 1000, 2: 3000}, {1: 200}) == 4200


def test_gallery_bar_moves_with_the_workers_reports(monkeypatch):
    # a fake client: two shards of 1,000 records; the first wait times out
    # with reports of 300 and 100 records, the second sees shard 0 done and
    # shard 1 at 600, the third shard 1 done
    import distributed

    class Token:
        def __init__(self, key):
            self.key = key

    tokens = [Token("s0"), Token("s1")]
    script = iter([(TimeoutError, [(0.0, {"shard": 0, "records": 300}),
                                   (0.0, {"shard": 1, "records": 100})]),
                   ([tokens[0]], [(0.0, {"shard": 1, "records": 600})]),
                   ([tokens[1]], [])])
    events = []

    def wait(pending, timeout, return_when):
        done, evs = next(script)
        events.extend(evs)
        if done is TimeoutError:
            raise TimeoutError
        return set(done), {t for t in pending if t not in done}

    class Client:
        def get_events(self, topic):
            assert topic == "fpscale-build-x"
            return tuple(events)

        def gather(self, futures):
            return [{"stats": {"records": 1000, "shard": int(f.key[1])}} for f in futures]

    monkeypatch.setattr(distributed, "wait", wait)
    bar = _Bar()
    stats = cluster_mod._follow_builds(Client(), tokens, "fpscale-build-x", bar)
    assert bar.updates == [400, 1200, 400]
    assert [st["shard"] for st in stats] == [0, 1]


def test_workers_report_the_records_of_every_chunk(scenario, monkeypatch):
    # a real cluster: each worker logs its shard's records after every
    # chunk (no minimum interval here), and the bar ends at the gallery size
    from distributed import Client, LocalCluster

    from fpscale.bench.run.submissions import make_submissions
    monkeypatch.setattr(cluster_mod, "REPORT_EVERY_S", 0.0)
    bar = _Bar()
    monkeypatch.setattr(cluster_mod, "stage", lambda *a, **k: bar)
    sc = _on_cluster(scenario, 1, 2)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=40) as cluster, Client(cluster) as client:
        ex = cluster_mod.DaskExecutor(client, cluster_mod.plan_cluster(sc, client), 1, progress=False)
        ex.build(sc, make_submissions(sc.population, sc.search.chunk_size, progress=False), None)
        events = client.get_events(f"fpscale-build-{ex.cluster_info().run}")
        ex.release()
    by_shard = {}
    for _, msg in events:
        by_shard.setdefault(msg["shard"], []).append(msg["records"])
    assert by_shard == {0: [1000, 2000, 3000], 1: [1000, 2000, 3000]}
    assert sum(bar.updates) == sc.population.gallery_size and min(bar.updates) > 0
