"""1:1 minutiae comparisons: the paired-count matcher against MCC.

Both matchers compare the same plain (quality 2) impressions against the
same rolled (quality 2) ones, finger 2: 400 of each, every template in 50
pairs, prepared once per batch (as ``fpscale.bench.run.rescore_segment`` calls them). The
ratio is printed at the end with the other same-session ratios; with
NUMBA_NUM_THREADS=1 the rates are per core. MCC's cost is also split into
cylinder preparation (templates per second) and scoring of prepared
templates, since a gallery whose cylinders are stored (as deployed systems
store their templates) pays only the second.
"""

import numba
import numpy as np
import pytest

from fpscale.matcher import mcc
from fpscale.matcher.minutiae import match_many as old_match_many
from fpscale.synth.impressions import PLAIN, ROLLED, impression_batch

from .conftest import MEDIANS, ROUNDS, ratio, record

N = 400
PER = 50


@pytest.fixture(scope="module")
def pairs():
    ids = np.arange(N)
    pt, pn = impression_batch(3, ids, np.full(N, 2), np.ones(N, np.int64), np.full(N, PLAIN),
                              np.full(N, 2), 1.0)
    gt, gn = impression_batch(3, ids, np.full(N, 2), np.zeros(N, np.int64), np.full(N, ROLLED),
                              np.full(N, 2), 1.0)
    ia = np.repeat(ids, PER)
    ib = (ia * 7 + np.tile(np.arange(PER), N)) % N
    return pt, pn, gt, gn, ia, ib


def _per_core(benchmark, count):
    rate = count / benchmark.stats.stats.median
    benchmark.extra_info["per_s"] = rate
    benchmark.extra_info["per_s_per_core"] = rate / numba.get_num_threads()


@pytest.mark.parametrize("name,fn", [("paired-count", old_match_many), ("mcc", mcc.match_many)])
def test_plain_vs_rolled_comparisons(benchmark, pairs, name, fn):
    pt, pn, gt, gn, ia, ib = pairs
    fn(pt, pn, gt, gn, ia[:10], ib[:10])  # compile or load
    benchmark.pedantic(fn, args=(pt, pn, gt, gn, ia, ib), rounds=ROUNDS, warmup_rounds=1)
    record(benchmark, f"1to1-{name}")
    MEDIANS["1to1_n"] = len(ia)
    _per_core(benchmark, len(ia))


def test_mcc_scoring_prepared(benchmark, pairs):
    pt, pn, gt, gn, ia, ib = pairs
    pa, pb = mcc.prepare(pt, pn), mcc.prepare(gt, gn)
    mcc.score_many(pa, pb, ia[:10], ib[:10])
    benchmark.pedantic(mcc.score_many, args=(pa, pb, ia, ib), rounds=ROUNDS, warmup_rounds=1)
    record(benchmark, "1to1-mcc-prepared")
    _per_core(benchmark, len(ia))


@pytest.mark.parametrize("side", ["plain", "rolled"])
def test_mcc_cylinders(benchmark, pairs, side):
    pt, pn, gt, gn, _, _ = pairs
    t, n = (pt, pn) if side == "plain" else (gt, gn)
    mcc.prepare(t[:2], n[:2])
    benchmark.pedantic(mcc.prepare, args=(t, n), rounds=ROUNDS, warmup_rounds=1)
    record(benchmark, f"mcc-cylinders-{side}")
    _per_core(benchmark, len(n))


def test_ratio_mcc_vs_paired_count():
    r = ratio("1to1-mcc", "1to1-paired-count")
    n = MEDIANS["1to1_n"]
    print(f"MCC / paired count, plain vs rolled: {r:.2f}x "
          f"({n / MEDIANS['1to1-mcc']:,.0f} against {n / MEDIANS['1to1-paired-count']:,.0f} comparisons/s, "
          f"{numba.get_num_threads()} threads)")
    # a floor far under the measured ratio: it fails only if a kernel lost
    # its vectorisation or its per-template preparation
    assert r >= 0.25
