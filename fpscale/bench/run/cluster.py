"""Running on Dask: the gallery in shards on the workers, searched as one.

``DaskExecutor`` is the executor of a run with a scheduler ("local", or an
address): the gallery's chunks are dealt out to shards, the shards placed
on workers against their memory limits before anything is built
(``plan_cluster``), built there by ``fpscale.bench.run.cluster_tasks``, and each
probe batch searched on every shard and merged here with the exact merge of
``fpscale.matcher.topk.merge_lists``. docs/cluster.md explains the design, what is
identical to a single-process run and how lost workers are recovered.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
import uuid
from collections.abc import Iterator

import numpy as np

from fpscale.bench.run.checkpoints import Checkpoints
from fpscale.bench.run.executor import RescoredSegment
from fpscale.bench.run.cluster_tasks import build_shard, forget_run, rescore_task, search_shard
from fpscale.bench.run.gallery import (GALLERY_STAGE, BackendRun, Gallery, ladder_scans, new_backend,
                               scan_lists, train_backend)
from fpscale.bench.run.planner import PlanError, plan_shards
from fpscale.bench.run.progress import say, stage
from fpscale.bench.run.submissions import Submissions
from fpscale.bench.scenario import ClusterSpec, Rescoring, Scenario
from fpscale.bench.store.summary import ClusterInfo
from fpscale.matcher.topk import merge_lists
from fpscale.synth.population import PopulationSpec, chunks

CONNECT_TIMEOUT_S = 20  # seconds to reach a scheduler before giving up
DASK_PORT = 8786        # Dask's default scheduler port
HANDSHAKE_MAX = 1 << 20  # bytes: a Dask handshake is a few hundred
# a shard of a national gallery takes tens of minutes to build: its worker
# reports the records built at most this often, and the client reads the
# reports (Dask's event log) whenever it has waited this long for a shard
REPORT_EVERY_S = 5.0
POLL_S = 2.0


class ClusterError(RuntimeError):
    """The cluster could not finish a task (workers lost again and again)."""


def _gather(client, futures: list, what: str) -> list:
    # Dask retries a task whose worker died (distributed.scheduler.allowed-failures
    # times); past that, say what failed instead of showing Dask's traceback
    from distributed import KilledWorker
    try:
        return client.gather(futures)
    except KilledWorker as e:
        raise ClusterError(
            f"{what}: the workers running it died again and again ({e}); the usual cause is "
            "memory: give workers more memory or use more shards ([cluster] shards)") from None


class DaskExecutor:
    """Builds, searches and re-scores on the workers of a Dask client."""

    def __init__(self, client, layout: dict, threads: int, progress: bool = True) -> None:
        """layout: from ``plan_cluster``; threads: what the client trains with."""
        self.client = client
        self.layout = layout
        self.threads = threads
        self.progress = progress
        self.tokens: list = []
        self._nbytes: list[int] = []
        self._info: ClusterInfo | None = None

    def build(self, sc: Scenario, subs: Submissions, ck: Checkpoints) -> Gallery:
        """Build and keep the gallery's shards on the workers, as the layout
        places them; the ladder scans hold every shard's accumulators merged.
        (Shards live in the workers' memory: a resumed run rebuilds them from
        the seed, so ck is not used here.)"""
        client, pop = self.client, sc.population
        workers, ranges = self.layout["workers"], self.layout["ranges"]
        placement = self.layout["placement"]
        # [search] threads, where set, is what each task uses, as in one process
        threads = sc.search.threads or min(w["nthreads"] for w in workers.values())
        stealing = client.run_on_scheduler(
            lambda dask_scheduler: "stealing" in dask_scheduler.extensions)

        # train once, here, on the sample a single-process run trains on
        trained, train_s = {}, {}
        for b in sc.search.backends:
            idx = new_backend(pop, b, self.threads)
            needs = idx.needs_training
            train_s[b.key] = train_backend(pop, b, idx, self.progress)
            if needs:
                trained[b.key] = idx.export_state()

        run = f"{sc.fingerprint()}-{uuid.uuid4().hex[:8]}"
        sc_dict = sc.to_dict()
        topic = f"fpscale-build-{run}"
        self.tokens = []
        for s, r in enumerate(ranges):
            job = {"run": run, "scenario": sc_dict, "shard": s, "chunks": r, "trained": trained,
                   "threads": threads, "ladder": bool(sc.projection.ladder),
                   "progress": [topic, REPORT_EVERY_S]}
            self.tokens.append(client.submit(build_shard, job, key=f"fpscale-shard-{s}-{run}",
                                             workers=[placement[s]], allow_other_workers=True))
        t0 = time.perf_counter()
        say(f"{GALLERY_STAGE}: {len(ranges)} shards on {len(workers)} workers", self.progress)
        with stage(GALLERY_STAGE, pop.gallery_size, "records", self.progress) as bar:
            stats = _follow_builds(client, self.tokens, topic, bar)
        build_wall_s = time.perf_counter() - t0

        runs = [BackendRun(b, i, None, train_s=train_s[b.key],
                           build_s=sum(st["build_s"][i] for st in stats))
                for i, b in enumerate(sc.search.backends)]
        self._nbytes = [sum(st["nbytes"][i] for st in stats) for i in range(len(runs))]
        scans, _ = ladder_scans(pop, sc.projection, subs, scan_lists(sc.search, sc.projection))
        for fs, scan in scans.items():
            scan.import_state(scan.merge_states([st["ladder"][fs] for st in stats]))
        records = self.layout["records"]
        self._info = ClusterInfo(
            sc.cluster.scheduler, len(workers), threads, len(ranges), records,
            {str(s): placement[s] for s in range(len(ranges))}, bool(stealing), build_wall_s, run)
        # seconds summed over the workers, as a one-process run would spend them
        return Gallery(runs, scans, sum(st["generation_s"] for st in stats),
                       sum(st["ladder_s"] for st in stats))

    def search(self, run: BackendRun, probes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Every shard's top k for the batch, merged exactly."""
        # prefer the worker holding each shard; after a loss, wherever Dask
        # has rebuilt it (a loose restriction falls back to the token's place).
        # A shard lost a moment ago is held nowhere yet: no restriction then
        # (Dask refuses allow_other_workers without workers)
        client = self.client
        held = client.who_has(self.tokens)
        futures = []
        for tok in self.tokens:
            where = list(held.get(tok.key, ()))
            place = {"workers": where, "allow_other_workers": True} if where else {}
            futures.append(client.submit(search_shard, tok, run.slot, probes, k, pure=False,
                                         **place))
        return merge_lists(_gather(client, futures, f"searching {run.spec.name}"), k)

    def rescore(self, pop: PopulationSpec, ids: np.ndarray, rescoring: Rescoring,
                segments: list[tuple[int, int]]) -> Iterator[RescoredSegment]:
        """All segments submitted at once (they are independent), yielded in
        order so that the caller can checkpoint a growing prefix."""
        futures = [self.client.submit(rescore_task, pop, ids[a:b], rescoring, a, pure=False)
                   for a, b in segments]
        try:
            for (a, b), fut in zip(segments, futures):
                yield _gather(self.client, [fut], f"re-scoring searches {a}-{b}")[0]
        finally:
            self.client.cancel(futures)  # what an interruption left running

    def rescore_seconds(self, info: dict) -> float:
        # the workers compare side by side: the wall-clock time of the stage
        return info["wall_s"]

    def index_nbytes(self, run: BackendRun) -> int:
        return self._nbytes[run.slot]

    def cluster_info(self) -> ClusterInfo | None:
        return self._info

    def release(self) -> None:
        """Free the run's shards on every worker."""
        if self._info is not None:
            with contextlib.suppress(Exception):
                self.client.run(forget_run, self._info.run)


def built_records(finished: dict[int, int], reported: dict[int, int]) -> int:
    """Records built so far: a finished shard's count, else the most its
    worker has reported (a shard rebuilt after a lost worker reports from 0
    again; its earlier count stands until the rebuild passes it)."""
    return sum({**reported, **finished}.values())


def _read_reports(client, topic: str, reported: dict[int, int]) -> None:
    # the workers' reports so far, (time, {"shard", "records"}) events
    for _, msg in client.get_events(topic):
        s = int(msg["shard"])
        reported[s] = max(reported.get(s, 0), int(msg["records"]))


def _follow_builds(client, tokens: list, topic: str, bar) -> list[dict]:
    """Wait for every shard's build token, moving bar (a progress Stage) as
    the workers report records built; returns each shard's statistics, in
    shard order. The final count of a shard comes with its token."""
    from distributed import wait

    index_of = {t.key: i for i, t in enumerate(tokens)}
    stats: list[dict] = [{}] * len(tokens)
    finished: dict[int, int] = {}
    reported: dict[int, int] = {}
    pending, shown = list(tokens), 0
    while pending:
        try:
            done, not_done = wait(pending, timeout=POLL_S, return_when="FIRST_COMPLETED")
        except TimeoutError:
            done, not_done = (), pending
        for fut in done:
            s = index_of[fut.key]
            stats[s] = _gather(client, [fut], f"building shard {s}")[0]["stats"]
            finished[s] = stats[s]["records"]
        pending = list(not_done)
        if pending:
            _read_reports(client, topic, reported)
        now = built_records(finished, reported)
        if now > shown:
            bar.update(now - shown)
            shown = now
    return stats


def shard_ranges(pop: PopulationSpec, chunk_size: int, n_shards: int) -> list[list[tuple[int, int]]]:
    """The gallery's chunks dealt to at most n_shards contiguous shards
    (fewer when there are fewer chunks), as evenly as whole chunks allow."""
    all_chunks = list(chunks(pop.gallery_size, chunk_size))
    s = max(1, min(n_shards, len(all_chunks)))
    bounds = np.linspace(0, len(all_chunks), s + 1).round().astype(int)
    return [all_chunks[bounds[i]:bounds[i + 1]] for i in range(s)]


@contextlib.contextmanager
def open_cluster(spec: ClusterSpec, progress: bool = True):
    """A Dask client: to the scheduler at spec.scheduler, or to a local
    cluster of spec.workers processes started (and stopped) here."""
    import dask
    from distributed import Client, LocalCluster

    if spec.scheduler == "local":
        workers = spec.workers or max(1, (os.cpu_count() or 1) // spec.threads_per_worker)
        # work stealing moves queued searches to idle workers, which would
        # then rebuild shards they do not hold: correct, but slow
        with dask.config.set({"distributed.scheduler.work-stealing": False}):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=spec.threads_per_worker,
                                   processes=True, dashboard_address=None,
                                   silence_logs=40)  # logging.ERROR
        try:
            with Client(cluster) as client:
                yield client
        finally:
            cluster.close()
    else:
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        probe_scheduler(spec.scheduler, deadline)
        left = max(1.0, deadline - time.monotonic())
        try:
            client = Client(spec.scheduler, timeout=f"{left:.1f}s")
        except (OSError, TimeoutError, ValueError) as e:
            raise PlanError(f"cannot reach the Dask scheduler at {spec.scheduler!r}: {e}") from None
        except Exception as e:  # noqa: BLE001 - anything else Dask raises while connecting
            raise ClusterError(f"the Dask scheduler at {spec.scheduler!r} could not be used: "
                               f"{type(e).__name__}: {str(e)[:200]}") from None
        with client:
            yield client


def _recv(sock: socket.socket, n: int, deadline: float) -> bytes:
    data = b""
    while len(data) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        part = sock.recv(min(n - len(data), 1 << 16))
        if not part:
            raise ConnectionResetError("the connection was closed")
        data += part
    return data


def probe_scheduler(address: str, deadline: float) -> None:
    """Check, before Dask connects, that a tcp:// address answers as a Dask
    scheduler does: on a new connection it sends its handshake at once, a
    message of a few hundred bytes behind an 8-byte length. Something else
    (a web server waits for a request, a silent listener sends nothing, or
    a length no handshake has) is refused with one line by the deadline,
    before Dask could wait past its timeout or allocate what a stray length
    asks for. Other transports (tls://, ucx://) are left to Dask."""
    scheme, sep, rest = address.rpartition("://")
    if sep and scheme != "tcp":
        return
    host, colon, port = rest.rpartition(":")
    if not colon or not port.isdigit():
        host, port = rest, str(DASK_PORT)
    host = host.strip("[]")
    what = f"the Dask scheduler at {address!r}"
    try:
        with socket.create_connection((host, int(port)),
                                      timeout=max(0.1, deadline - time.monotonic())) as sock:
            (n,) = struct.unpack("<Q", _recv(sock, 8, deadline))
            if not 0 < n <= HANDSHAKE_MAX:
                raise ClusterError(f"{address!r} is not a Dask scheduler: it answered with "
                                   "something other than a Dask handshake")
            _recv(sock, n, deadline)
    except (TimeoutError, socket.timeout):
        raise ClusterError(f"{address!r} is not answering as a Dask scheduler: no handshake "
                           f"within {CONNECT_TIMEOUT_S} s (is it a Dask scheduler's address?)") from None
    except OSError as e:
        raise PlanError(f"cannot reach {what}: {e.strerror or e}") from None


def _workers(client) -> dict[str, dict]:
    info = client.scheduler_info(n_workers=-1)["workers"]
    return {a: {"memory_limit": w.get("memory_limit") or 0, "nthreads": w.get("nthreads", 1)}
            for a, w in info.items()}


def plan_cluster(sc: Scenario, client) -> dict:
    """Shards and their placement on the client's workers, planned against
    each worker's memory limit before anything is built (PlanError when
    they do not fit)."""
    workers = _workers(client)
    ranges = shard_ranges(sc.population, sc.search.chunk_size,
                          sc.cluster.shards or 2 * max(len(workers), 1))
    records = [sum(b - a for a, b in r) for r in ranges]
    return {"workers": workers, "ranges": ranges, "records": records,
            "placement": plan_shards(sc, records, workers)}


__all__ = ["ClusterError", "DaskExecutor", "PlanError", "open_cluster", "plan_cluster",
           "shard_ranges"]


