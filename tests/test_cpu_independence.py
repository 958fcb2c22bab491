"""The same numbers on every CPU: kernels compiled for this machine and for
the x86-64 baseline (SSE2, no FMA unit, 128-bit vectors) give the same bytes.

numba compiles for the host, so a sum whose order the vectoriser picks can
round differently on another machine (numba-flat's scores did, between AVX2
and AVX-512 targets, until its order was written into the kernel). A Dask
cluster of mixed machines, or a rerun elsewhere, relies on this. The
baseline build runs in a subprocess with NUMBA_CPU_NAME=x86-64 and its own
numba cache.
"""

import os
import platform
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                                reason="the baseline target is x86-64's")

SCORES = """
import numpy as np
from fpscale.matcher.exact import inner_products
for d in (64, 130, 256):
    rng = np.random.default_rng(d)
    g = rng.standard_normal((700, d)).astype(np.float32)
    p = rng.standard_normal((37, d)).astype(np.float32)
    digest(inner_products(p, g))
"""

GENERATION = """
import numpy as np
from fpscale.matcher import mcc
from fpscale.matcher.minutiae import match_many
from fpscale.synth.embedding import encode
from fpscale.synth.impressions import impression_batch
n = 1500
ids = np.arange(n, dtype=np.int64)
keys = (ids, 1 + ids % 10, ids % 3, ids % 3, 1 + (ids // 3) % 5)
t, c = impression_batch(7, *keys, 0.5355)
digest(t, c)
digest(*encode(7, *keys, dim=256, bits=256, noise=0.5355, code="itq"))
digest(*encode(7, *keys))
ia = np.arange(400) % 200
ib = (ia * 7 + np.arange(400)) % 200
digest(mcc.match_many(t[:200], c[:200], t[200:400], c[200:400], ia, ib))
digest(match_many(t[:200], c[:200], t[200:400], c[200:400], ia, ib))
"""

_PRELUDE = """
import hashlib
import numpy as np
def digest(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    print(h.hexdigest())
"""


def _digests(code: str, cache, cpu: str | None) -> list[str]:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    env.pop("NUMBA_CPU_NAME", None)
    if cpu:
        env["NUMBA_CPU_NAME"] = cpu
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(_PRELUDE + code)], env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout.split()


def _same_on_both(code: str, tmp_path) -> None:
    host = _digests(code, tmp_path / "host", None)
    base = _digests(code, tmp_path / "x86-64", "x86-64")
    assert host and host == base


def test_numba_flat_scores_are_the_same_bytes_on_the_baseline_cpu(tmp_path):
    _same_on_both(SCORES, tmp_path)


@pytest.mark.slow
def test_generation_encoding_and_minutiae_scores_are_the_same_bytes_on_the_baseline_cpu(tmp_path):
    _same_on_both(GENERATION, tmp_path)

