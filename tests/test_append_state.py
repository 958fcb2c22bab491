"""Appended checkpoints: parts exported since any record count join back to
the whole state, and the joined state searches as the original index."""

import numpy as np
import pytest

from fpscale.matcher import make_backend
from fpscale.matcher.checks import MatcherInputError


@pytest.mark.parametrize("name,d", [("numba-flat", 16), ("numba-hamming", 128)])
def test_parts_join_to_the_whole_state(name, d):
    rng = np.random.default_rng(3)
    b = make_backend(name, d)
    assert b.appendable
    rows = lambda n: (rng.integers(0, 256, (n, d // 8), dtype=np.uint8) if name == "numba-hamming"
                      else rng.standard_normal((n, d)).astype(np.float32))
    sizes, parts, start = [70, 5, 130, 1, 44], [], 0
    for cut, n in enumerate(sizes):
        b.add(np.arange(start, start + n), rows(n))
        start += n
        if cut % 2 == 1 or cut == len(sizes) - 1:  # checkpoints between some adds
            first = sum(len(p["ids"]) for p in parts)
            part = b.export_rows(first)
            assert np.array_equal(part["ids"], np.arange(first, start))
            parts.append(part)
    whole = b.export_state()
    joined = b.join_states(parts)
    assert joined.keys() == whole.keys()
    for k in whole:
        assert np.array_equal(joined[k], whole[k]), k
    assert len(b.export_rows(start)["ids"]) == 0  # nothing added since
    again = make_backend(name, d)
    again.import_state(joined)
    probes = rows(9)
    for x, y in zip(b.search(probes, 7), again.search(probes, 7)):
        assert np.array_equal(x, y)


@pytest.mark.parametrize("name,d", [("numba-flat", 16), ("numba-hamming", 128)])
def test_parts_imported_as_blocks_search_as_the_whole(name, d):
    # a resume keeps each part as a block: no joined copy of the index
    rng = np.random.default_rng(4)
    rows = lambda n: (rng.integers(0, 256, (n, d // 8), dtype=np.uint8) if name == "numba-hamming"
                      else rng.standard_normal((n, d)).astype(np.float32))
    b = make_backend(name, d)
    b.add(np.arange(300), rows(300))
    parts = [b.export_rows(0)]
    b.add(np.arange(300, 310), rows(10))
    parts.append(b.export_rows(300))
    again = make_backend(name, d)
    again.import_parts(parts)
    assert again.ntotal == 310
    # numba-hamming keeps no ids for consecutive records
    kept = [k for k in parts[0] if not (name == "numba-hamming" and k == "ids")]
    assert again.nbytes() == sum(p[k].nbytes for p in parts for k in kept)
    probes = rows(9)
    for x, y in zip(b.search(probes, 12), again.search(probes, 12)):
        assert np.array_equal(x, y)
    bad = dict(parts[1], ids=parts[1]["ids"][:5])
    other = make_backend(name, d)
    other.add(np.arange(4), rows(4))
    with pytest.raises(MatcherInputError, match="ids"):
        other.import_parts([parts[0], bad])
    assert other.ntotal == 4 and len(other.search(probes, 2)[0]) == 9  # left as it was
