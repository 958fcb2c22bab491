"""The national-scale scenario end to end at 10 million records (make
test-slow): the same scenario file as the 130M run, with its gallery and
ladder scaled down; FPIR at the largest rung measured on the codes, every
stage timed, the peak memory within the plan."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fpscale.bench.store.files import read_npz

ROOT = Path(__file__).resolve().parent.parent
N = 10_000_000
LADDER = [10_000, 32_000, 100_000, 320_000, 1_000_000, 3_200_000, N]


def _run_at_ten_million(out: Path, *sets: str) -> dict:
    cmd = [sys.executable, "-m", "fpscale", "run", "scomm-130m", "--out", str(out), "--quiet",
           "--set", f"population.gallery_size={N}",
           "--set", f"projection.ladder=[{', '.join(map(str, LADDER))}]"]
    for item in sets:
        cmd += ["--set", item]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3 * 3600)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_scomm_130m_scenario_runs_at_ten_million(tmp_path):
    out = tmp_path / "scomm-10m"
    s = _run_at_ten_million(out)
    assert s["scenario"]["projection"]["scores"] == "codes"
    assert s["scenario"]["search"]["streamed"] and s["memory_plan"]["indexes"] == {}
    assert s["generation_s"] > 0 and s["ladder_s"] > 0
    m = s["memory_plan"]
    assert m["peak_rss_bytes"] <= m["total_bytes"], "the run outgrew its memory plan"
    # FPIR measured at 10M on the ladder is what the Hamming search's own
    # lists give: the best non-mate of every non-mated search
    lad = read_npz(out / "ladder_two_index.npz")
    srch = read_npz(out / "searches_numba-hamming.npz")
    nm = srch["mate"] < 0
    best = srch["cand_scores"][nm, 0]
    assert np.array_equal(lad["top_nonmate"][nm, -1], best)
    proj = s["projection"]["two_index"]
    for a in proj["at_target"]:
        measured = a["measured"][-1]
        assert measured["n"] == N
        assert measured["value"] == pytest.approx(float((best >= a["threshold"]).mean()))
    rows = {b["key"]: b for b in s["backends"]}
    assert rows["numba-hamming+minutiae"]["timings"]["rescore"]["comparisons"] > 0

    # the streamed search lists what an exact search of a built index lists,
    # candidate for candidate, and so does everything measured from them
    indexed = tmp_path / "scomm-10m-indexed"
    t = _run_at_ten_million(indexed, "search.streamed=false")
    assert t["memory_plan"]["indexes"]["numba-hamming"] == N * 64
    for name in ("searches_numba-hamming.npz", "searches_numba-hamming+minutiae.npz",
                 "ladder_two_index.npz"):
        a, b = read_npz(out / name), read_npz(indexed / name)
        for k in b:
            assert np.array_equal(a[k], b[k]), (name, k)
    assert [r["metrics"] for r in s["backends"]] == [r["metrics"] for r in t["backends"]]
    assert s["projection"] == t["projection"]
