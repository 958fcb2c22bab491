"""A run killed with SIGKILL at random moments and started again with the
same command ends with the results of an uninterrupted run."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.results import read_npz
from test_bench import tiny, write_toml

ROOT = Path(__file__).resolve().parent.parent


def _run(scen, out, env, timeout=None):
    p = subprocess.Popen([sys.executable, "-m", "bench.cli", "run", str(scen), "--out", str(out),
                          "--quiet"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    try:
        _, err = p.communicate(timeout=timeout)
        return p.returncode, err
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.communicate()
        return None, b""


def test_sigkill_and_resume_gives_identical_results(tmp_path):
    d = tiny(population__gallery_size=6000, population__n_submissions=600,
             search__chunk_size=400, search__probe_batch=50, search__rescore=True,
             search__rescore_candidates=5, projection__ladder=[500, 1500, 3000, 6000])
    scen = write_toml(tmp_path / "r.toml", d)
    env = dict(os.environ, FPSCALE_CHECKPOINT_S="0")
    code, err = _run(scen, tmp_path / "ref", env)
    assert code == 0, err.decode()[-2000:]

    out = tmp_path / "killed"
    rng = random.Random(7)
    kills, started = 0, time.monotonic()
    while True:
        code, err = _run(scen, out, env, timeout=rng.uniform(3.0, 9.0))
        if code is None:
            kills += 1
            assert time.monotonic() - started < 400, "the run never finished"
            continue
        assert code == 0, err.decode()[-2000:]
        break
    assert kills >= 2
    man = json.loads((out / "manifest.json").read_text())
    assert man["complete"] and not list((out / "state").glob("*.npz"))

    a = json.loads((tmp_path / "ref" / "summary.json").read_text())
    b = json.loads((out / "summary.json").read_text())
    assert [x["metrics"] for x in a["backends"]] == [x["metrics"] for x in b["backends"]]
    assert a["projection"]["two_index"]["studies"] == b["projection"]["two_index"]["studies"]
    for f in sorted((tmp_path / "ref").glob("searches_*.npz")):
        x, y = read_npz(f), read_npz(out / f.name)
        for k in x:
            assert np.array_equal(x[k], y[k]), (f.name, k)
