"""A run killed with SIGKILL and started again with the same command ends
with the results of an uninterrupted run: at chosen checkpoints (the crash
hook FPSCALE_CRASH_AT, see fpscale/bench/run/checkpoints.py) and at random moments."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fpscale.bench.store.files import ResultsError, read_npz
from fpscale.bench.store.summary import summary_from_dict

ROOT = Path(__file__).resolve().parent.parent

# each run resumes the previous one's folder and is killed further on: in the
# gallery pass, between a checkpoint's files and its manifest entry, between
# probe batches, in re-scoring, and in re-scoring the rungs' lists
CRASH_CHAIN = ["build_next/3", "build_next/2/before", "search_next/4", "search_next/3/before",
               "rescore_next/1", "rescore_next/2/before", "rescore_next:ladder/1/before"]


def _run(scen, out, env, timeout=None):
    p = subprocess.Popen([sys.executable, "-m", "fpscale.bench.cli", "run", str(scen), "--out", str(out),
                          "--quiet"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    try:
        _, err = p.communicate(timeout=timeout)
        return p.returncode, err
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.communicate()
        return None, b""


@pytest.fixture(scope="module")
def resumable(tmp_path_factory, tiny, write_toml):
    """A scenario with many checkpoints, its uninterrupted results and the
    seconds that run took."""
    d = tiny(population__gallery_size=6000, population__n_submissions=600,
             search__chunk_size=400, search__probe_batch=50, search__rescore=True,
             search__rescore_candidates=5, projection__ladder=[500, 1500, 3000, 6000],
             projection__rescored=True,
             # poor searches re-scored deeper than the list of 10 reported:
             # the search checkpoints lists of 15
             search__rescore_poor_candidates=15, search__rescore_poor_quality=3)
    tmp = tmp_path_factory.mktemp("resume")
    scen = write_toml(tmp / "r.toml", d)
    env = dict(os.environ, FPSCALE_CHECKPOINT_S="0")
    env.pop("FPSCALE_CRASH_AT", None)
    started = time.monotonic()
    code, err = _run(scen, tmp / "ref", env)
    assert code == 0, err.decode()[-2000:]
    # how long an uninterrupted run takes on this host, so that a test of
    # many killed starts can say "never finished" on a slow host too
    return scen, env, tmp / "ref", time.monotonic() - started


def _same_as_reference(ref: Path, out: Path) -> None:
    man = json.loads((out / "manifest.json").read_text())
    assert man["complete"] and not list((out / "state").glob("*.npz"))
    a = json.loads((ref / "summary.json").read_text())
    b = json.loads((out / "summary.json").read_text())
    assert [x["metrics"] for x in a["backends"]] == [x["metrics"] for x in b["backends"]]
    assert a["projection"] == b["projection"]
    files = sorted(f.name for f in ref.glob("*.npz"))
    assert files == sorted(f.name for f in out.glob("*.npz")) and len(files) >= 10
    assert "ladder_two_index+minutiae.npz" in files
    for name in files:
        x, y = read_npz(ref / name), read_npz(out / name)
        for k in x:
            assert np.array_equal(x[k], y[k]), (name, k)


def test_killed_at_chosen_checkpoints_resumes_to_identical_results(resumable, tmp_path):
    scen, env, ref, _ = resumable
    out = tmp_path / "killed"
    for point in CRASH_CHAIN:
        code, err = _run(scen, out, dict(env, FPSCALE_CRASH_AT=point))
        assert code == -signal.SIGKILL, (point, code, err.decode()[-2000:])
        # every start resumes from what the last one checkpointed: none
        # refuses a record it wrote (a poor search's deeper re-scoring
        # counts more comparisons than the lists it keeps)
        assert b"is not valid" not in err, (point, err.decode()[-2000:])
        man = json.loads((out / "manifest.json").read_text())
        assert not man["complete"], point
    code, err = _run(scen, out, env)
    assert code == 0 and b"is not valid" not in err, err.decode()[-2000:]
    _same_as_reference(ref, out)
    # the summary says the run was resumed, and what its earlier starts did;
    # an uninterrupted run says nothing of it
    assert "resumed" not in json.loads((ref / "summary.json").read_text())
    r = json.loads((out / "summary.json").read_text())["resumed"]
    assert r["starts"] == len(CRASH_CHAIN) + 1 and r["earlier_s"] > 0
    assert r["gallery_records_before"] == 6000  # the last start began after the gallery pass
    assert f"Resumed: {len(CRASH_CHAIN) + 1} starts." in (out / "report.md").read_text()
    for k, v in (("starts", 1), ("earlier_s", -1.0), ("gallery_records_before", 6001)):
        d = json.loads((out / "summary.json").read_text())
        d["resumed"][k] = v
        with pytest.raises(ResultsError, match="earlier starts"):
            summary_from_dict(d)


@pytest.mark.slow  # the chosen checkpoints above are the deterministic check
def test_sigkill_at_random_moments_resumes_to_identical_results(resumable, tmp_path):
    scen, env, ref, reference_s = resumable
    out = tmp_path / "random"
    rng = random.Random(7)
    kills, started = 0, time.monotonic()
    while True:
        code, err = _run(scen, out, env, timeout=rng.uniform(4.0, 9.0))
        if code is None:
            kills += 1
            # every start repeats the interpreter's and numba's start-up, so
            # the killed run takes several times the uninterrupted one's
            budget = max(400.0, 10 * reference_s)
            assert time.monotonic() - started < budget, "the run never finished"
            continue
        assert code == 0, err.decode()[-2000:]
        break
    assert kills >= 1
    _same_as_reference(ref, out)


def test_a_killed_streamed_search_resumes_to_identical_results(tiny, write_toml, tmp_path):
    # the streamed search's lists live in the ladder scan's checkpoints: no
    # index is written, and a resumed run lists what an uninterrupted one
    # does; its lists are refined before re-scoring
    d = tiny(population__gallery_size=3000, population__n_submissions=300,
             search__chunk_size=400, search__rescore=True, search__rescore_candidates=5,
             search__backends=[{"name": "numba-hamming"}], search__streamed=True,
             search__rescore_poor_candidates=15, search__rescore_poor_quality=3,
             search__refine_candidates=40,
             projection__ladder=[500, 1500, 3000], projection__scores="codes",
             projection__finger_sets=["two_index"])
    scen = write_toml(tmp_path / "s.toml", d)
    env = dict(os.environ, FPSCALE_CHECKPOINT_S="0")
    env.pop("FPSCALE_CRASH_AT", None)
    code, err = _run(scen, tmp_path / "ref", env)
    assert code == 0, err.decode()[-2000:]
    out = tmp_path / "killed"
    for point in ("build_next/3", "build_next/2/before", "refine_next/1/before", "refine_next/1",
                  "rescore_next/1"):
        code, err = _run(scen, out, dict(env, FPSCALE_CRASH_AT=point))
        assert code == -signal.SIGKILL, (point, code, err.decode()[-2000:])
        assert not any(p.name.startswith("index_") for p in (out / "state").iterdir())
    code, err = _run(scen, out, env)
    assert code == 0, err.decode()[-2000:]
    files = sorted(f.name for f in (tmp_path / "ref").glob("*.npz"))
    assert "searches_numba-hamming+minutiae.npz" in files
    assert files == sorted(f.name for f in out.glob("*.npz"))
    for name in files:
        x, y = read_npz(tmp_path / "ref" / name), read_npz(out / name)
        for k in x:
            assert np.array_equal(x[k], y[k]), (name, k)


def test_checkpoints_space_out_when_they_are_slow(monkeypatch):
    """The gallery pass checkpoints every CHECKPOINT_S seconds, or every
    cost / CHECKPOINT_SHARE seconds (at most CHECKPOINT_MAX_S) when the last
    checkpoint took longer than CHECKPOINT_SHARE of that; CHECKPOINT_S = 0
    still means every chunk, and a part never waits past PART_CHUNKS chunks."""
    from types import SimpleNamespace

    from fpscale.bench.run import checkpoints as ck_mod
    clock = [1000.0]
    monkeypatch.setattr(ck_mod, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr(ck_mod, "CHECKPOINT_S", 30.0)
    monkeypatch.setattr(ck_mod, "_crash_point", lambda text: None)
    folder = SimpleNamespace(path=Path("."), manifest={"steps": {}}, mark=lambda step, info: None,
                             files={}, remove=lambda rel: None)
    ck = ck_mod.Checkpoints(folder)

    def checkpoint(seconds):
        ck.begin()
        clock[0] += seconds
        ck.commit("build_next", 1, [], 1)

    checkpoint(0.01)  # cheap: the 30 s interval stands
    clock[0] += 29.9
    assert not ck.due()
    clock[0] += 0.2
    assert ck.due()
    checkpoint(0.13)  # 0.13 s is more than 0.1% of 30 s: 130 s apart
    clock[0] += 100.0
    assert not ck.due()
    assert ck.due(chunks_since=ck_mod.PART_CHUNKS) and ck.due(final=True)
    clock[0] += 30.1
    assert ck.due()
    checkpoint(5.0)  # a slow save: 5,000 s by the share, capped at 600 s
    clock[0] += ck_mod.CHECKPOINT_MAX_S - 0.1
    assert not ck.due()
    clock[0] += 0.2
    assert ck.due()
    monkeypatch.setattr(ck_mod, "CHECKPOINT_S", 0.0)
    checkpoint(5.0)
    assert ck.due()
