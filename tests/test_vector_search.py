"""``fpscale search``: vector files in, the results of ``fpscale evaluate`` out.

Files are written here with numpy alone (the big-ann-benchmarks layout: two
little-endian uint32, then the values) and read back; malformed files are
refused with one line and exit code 2, nothing written. The search itself
runs on random unit vectors with planted mates (probe = gallery row + small
noise): every backend that searches exhaustively finds every mate at rank 1,
and ``fpscale evaluate`` on the lists it wrote gives the same metrics.
"""

import csv
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from fpscale.bench.cli import main
from fpscale.bench.store.summary import read_summary
from fpscale.bench.tools.vector_files import read_vectors

L = 10


def write_bin(path: Path, a: np.ndarray, header=None) -> Path:
    """a in the big-ann-benchmarks layout (header (n, d) unless given)."""
    n, d = a.shape if header is None else header
    with open(path, "wb") as f:
        f.write(np.array([n, d], dtype="<u4").tobytes())
        f.write(np.ascontiguousarray(a).tobytes())
    return path


def write_truth(path: Path, mate: np.ndarray) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["probe_id", "mate_id"])
        w.writerows((q, "" if m < 0 else int(m)) for q, m in enumerate(mate))
    return path


class Planted:
    """A gallery of unit vectors, mated probes (a gallery row plus noise a
    tenth of the distance to any other row) and non-mated unit probes."""

    def __init__(self, seed=5, n=2000, d=24, mated=120, non=180):
        rng = np.random.default_rng(seed)
        unit = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
        self.gallery = unit(rng.normal(size=(n, d)))
        mates = rng.choice(n, mated, replace=False)
        noisy = unit(self.gallery[mates] + 0.05 * rng.normal(size=(mated, d)) / np.sqrt(d))
        probes = np.vstack([noisy, unit(rng.normal(size=(non, d)))])
        order = rng.permutation(len(probes))
        self.probes = probes[order]
        self.mate = np.r_[mates, np.full(non, -1)][order]


@pytest.fixture(scope="module")
def planted():
    return Planted()


def _search(*args) -> int:
    return main(["search", *map(str, args), "--quiet"])


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("fpscale: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# ---------------------------------------------------------------- formats

@pytest.mark.parametrize("suffix,dtype", [(".fbin", np.float32), (".u8bin", np.uint8),
                                          (".i8bin", np.int8), (".npy", np.float32),
                                          (".npy", np.float64), (".npy", np.uint8), (".npy", np.int8)])
def test_each_format_reads_back_what_numpy_wrote(tmp_path, suffix, dtype):
    rng = np.random.default_rng(1)
    a = (rng.normal(size=(37, 16)) * 50).astype(dtype)
    path = tmp_path / f"x{suffix}"
    if suffix == ".npy":
        np.save(path, a)
    else:
        write_bin(path, a)
    vf = read_vectors(path)
    assert vf.data.dtype == np.dtype(dtype) and vf.data.shape == (37, 16)
    np.testing.assert_array_equal(np.asarray(vf.data), a)
    assert isinstance(vf.data, np.memmap) or isinstance(vf.data.base, np.memmap)  # not read whole


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    g = np.random.default_rng(2).normal(size=(20, 8)).astype(np.float32)
    nan = g.copy()
    nan[7, 3] = np.nan
    inf = g.copy()
    inf[2, 0] = np.inf
    (tmp_path / "short.fbin").write_bytes(b"\x01\x00")
    trunc = write_bin(tmp_path / "trunc.fbin", g)
    trunc.write_bytes(trunc.read_bytes()[:-5])
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.save(tmp_path / "c64.npy", g.astype(np.complex64))
    np.save(tmp_path / "oned.npy", g[0])
    np.save(tmp_path / "trunc.npy", g)
    (tmp_path / "trunc.npy").write_bytes((tmp_path / "trunc.npy").read_bytes()[:-40])
    np.save(tmp_path / "nan.npy", nan)
    return {
        "shorter than the header": (tmp_path / "short.fbin", "8-byte header"),
        "truncated": (trunc, "has 643 bytes"),
        "header lies about n": (write_bin(tmp_path / "lies.fbin", g, header=(21, 8)), "header says 21 x 8"),
        "float values named u8bin": (write_bin(tmp_path / "float.u8bin", g), "fits a .fbin"),
        "empty": (write_bin(tmp_path / "empty.fbin", g[:0]), "no vectors"),
        "NaN in fbin": (write_bin(tmp_path / "nan.fbin", nan), "row 7, column 3 holds nan"),
        "inf in fbin": (write_bin(tmp_path / "inf.fbin", inf), "row 2, column 0 holds inf"),
        "NaN in npy": (tmp_path / "nan.npy", "row 7, column 3"),
        "float64 beyond float32": (_save(tmp_path / "big.npy", np.full((3, 8), 1e300)), "finite float32"),
        "pickled npy": (tmp_path / "obj.npy", "not a readable .npy"),
        "complex npy": (tmp_path / "c64.npy", "dtype complex64"),
        "1-D npy": (tmp_path / "oned.npy", "2-D array"),
        "truncated npy": (tmp_path / "trunc.npy", "not a readable .npy"),
        "unknown suffix": (tmp_path / "g.txt", "unknown format"),
        "missing file": (tmp_path / "none.fbin", "no such file"),
    }


def _save(path: Path, a: np.ndarray) -> Path:
    np.save(path, a)
    return path


BAD_FILES = ["shorter than the header", "truncated", "header lies about n", "float values named u8bin",
             "empty", "NaN in fbin", "inf in fbin", "NaN in npy", "float64 beyond float32", "pickled npy",
             "complex npy", "1-D npy", "truncated npy", "unknown suffix", "missing file"]


@pytest.mark.parametrize("case", BAD_FILES)
@pytest.mark.parametrize("role", ["gallery", "probes"])
def test_a_malformed_file_is_refused_with_one_line(tmp_path, capsys, case, role):
    path, words = _bad_files(tmp_path)[case]
    good = write_bin(tmp_path / "good.fbin", np.eye(8, dtype=np.float32))
    truth = write_truth(tmp_path / "t.csv", np.full(8, -1))
    g, p = (path, good) if role == "gallery" else (good, path)
    out = tmp_path / "out"
    assert _search(g, p, "--truth", truth, "--backend", "numba-flat", "--candidates", 2, "--out", out) == 2
    err = _one_error_line(capsys)
    assert words in err and str(path) in err, err
    assert not out.exists()


def test_mismatched_or_unsuitable_inputs_are_refused(tmp_path, capsys, planted):
    g = write_bin(tmp_path / "g.fbin", planted.gallery)
    p = write_bin(tmp_path / "p.fbin", planted.probes)
    t = write_truth(tmp_path / "t.csv", planted.mate)
    out = tmp_path / "out"
    cases = [
        ([g, write_bin(tmp_path / "p8.u8bin", np.zeros((3, 24), np.uint8)), "--truth", t], "holds float32"),
        ([g, write_bin(tmp_path / "p12.fbin", planted.probes[:, :12]), "--truth", t], "dimension 12"),
        ([g, p, "--truth", write_truth(tmp_path / "short.csv", planted.mate[:-1])], "has no line"),
        ([g, p, "--truth", write_truth(tmp_path / "past.csv", np.r_[planted.mate[:-1], 2000])],
         "past the last row"),
        ([g, p, "--truth", t, "--backend", "numba-hamming"], "must hold uint8"),
        ([g, p, "--truth", t, "--backend", "annoy"], "unknown backend 'annoy'"),
        ([g, p, "--truth", t, "--backend", "faiss:IVF4096,Flat"], "training points"),
        ([g, p, "--truth", t, "--candidates", 0], "--candidates 0"),
        ([g, p, "--truth", t, "--candidates", 2001], "at most the gallery's rows"),
    ]
    for args, words in cases:
        if "--backend" not in args:
            args = args + ["--backend", "numba-flat"]
        assert _search(*args, "--out", out) == 2, words
        err = _one_error_line(capsys)
        assert words in err, (words, err)
        assert not out.exists()
    with open(tmp_path / "words.csv", "w") as f:
        f.write("probe_id,mate_id\nfirst,3\n")
    assert _search(g, p, "--truth", tmp_path / "words.csv", "--backend", "numba-flat", "--out", out) == 2
    assert "'first' is not a row number" in _one_error_line(capsys)


# ---------------------------------------------------------------- searching

@pytest.fixture(scope="module")
def searched(tmp_path_factory, planted):
    tmp = tmp_path_factory.mktemp("search")
    np.save(tmp / "g.npy", planted.gallery)
    p = write_bin(tmp / "p.fbin", planted.probes)
    t = write_truth(tmp / "t.csv", planted.mate)
    out = tmp / "out"
    assert _search(tmp / "g.npy", p, "--truth", t, "--backend", "numba-flat", "--backend", "faiss:Flat",
                   "--backend", "faiss:IVF8,Flat", "--candidates", L, "--out", out,
                   "--train-size", 1000) == 0
    return tmp, out


def test_exhaustive_backends_find_every_planted_mate_at_rank_1(searched, planted):
    _, out = searched
    s = read_summary(out)
    assert [b.key for b in s.backends] == ["numba-flat", "faiss-Flat", "faiss-IVF8-Flat"]
    mated = planted.mate >= 0
    for key in ("numba-flat", "faiss-Flat"):
        b = s.backend(key)
        assert b.metrics.rank1_hit_rate.value == 1.0 and b.metrics.rank1_hit_rate.of == mated.sum()
        z = np.load(out / f"searches_{key}.npz")
        np.testing.assert_array_equal(z["cand_ids"][mated, 0], planted.mate[mated])
        # the lists are exact: brute force in float64 here
        s64 = planted.probes.astype(np.float64) @ planted.gallery.T.astype(np.float64)
        top = np.argsort(-s64, axis=1, kind="stable")[:, :L]
        np.testing.assert_allclose(z["cand_scores"], np.take_along_axis(s64, top, axis=1), atol=1e-5)
    ivf = s.backend("faiss-IVF8-Flat")
    assert ivf.vs_exact is not None and 0 < ivf.vs_exact.recall_at_L <= 1
    assert s.vector_search.gallery.format == ".npy" and s.vector_search.probes.format == ".fbin"
    assert (s.vector_search.searches, s.vector_search.mated) == (len(planted.mate), mated.sum())
    for b in s.backends:  # timed and measured as a run's backends are
        t = b.timings
        assert t.build_s > 0 and t.search_s > 0 and t.throughput_searches_per_s > 0
        assert t.latency_ms.samples == 50 and 0 < t.latency_ms.p50 <= t.latency_ms.p99
        assert b.memory.actual_bytes > 0 and b.memory.estimate_bytes > 0
    assert ivf.timings.train_s > 0
    report = (out / "report.md").read_text()
    assert "Searched: gallery and probe vectors" in report and "| faiss-IVF8-Flat |" in report


def test_metrics_equal_fpscale_evaluate_on_the_lists_written(searched, planted):
    tmp, out = searched
    s = read_summary(out)
    for b in s.backends:
        table = pq.read_table(out / f"searches_{b.key}.parquet").to_pylist()
        cands = tmp / f"lists_{b.key}.csv"
        with open(cands, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["probe_id", "rank", "candidate_id", "score"])
            w.writerows((r["probe"], r["rank"], r["candidate_id"], repr(float(r["score"])))
                        for r in table if r["rank"] is not None)
        ev = tmp / f"ev_{b.key}"
        assert main(["evaluate", str(cands), "--truth", str(tmp / "t.csv"), "--gallery-size",
                     str(len(planted.gallery)), "--out", str(ev)]) == 0
        e = read_summary(ev).backends[0].metrics
        assert e.rank1_hit_rate.value == b.metrics.rank1_hit_rate.value
        assert e == b.metrics  # every rate, interval, the CMC, the DET and the operating points


def test_binary_codes_search_with_hamming_backends(tmp_path, planted):
    # SimHash-like codes: 256 sign bits of random projections, packed
    rng = np.random.default_rng(3)
    planes = rng.normal(size=(24, 256)).astype(np.float32)
    codes = lambda x: np.packbits(x @ planes > 0, axis=1)  # noqa: E731
    g = write_bin(tmp_path / "g.u8bin", codes(planted.gallery))
    p = write_bin(tmp_path / "p.u8bin", codes(planted.probes))
    t = write_truth(tmp_path / "t.csv", planted.mate)
    out = tmp_path / "out"
    assert _search(g, p, "--truth", t, "--backend", "numba-hamming", "--backend", "faiss:BFlat",
                   "--candidates", 5, "--out", out) == 0
    s = read_summary(out)
    a, b = (np.load(out / f"searches_{k}.npz") for k in ("numba-hamming", "faiss-BFlat"))
    np.testing.assert_array_equal(a["cand_scores"], b["cand_scores"])
    assert all(r.binary for r in s.backends)
    # bits - Hamming distance of each probe's best candidate, recomputed here
    pc, gc = codes(planted.probes), codes(planted.gallery)
    best = (256 - np.bitwise_count(pc[:, None, :] ^ gc[None, :, :]).sum(axis=2, dtype=np.int64)).max(axis=1)
    np.testing.assert_array_equal(a["cand_scores"][:, 0], best)
    assert s.backends[0].metrics.rank1_hit_rate.value > 0.9


def test_uint8_vectors_search_as_floats(tmp_path, planted):
    # big-ann's uint8 vectors (SIFT-like): a float backend scores them as float32
    q8 = lambda x: np.clip(np.round(x * 100 + 128), 0, 255).astype(np.uint8)  # noqa: E731
    g = write_bin(tmp_path / "g.u8bin", q8(planted.gallery))
    p = write_bin(tmp_path / "p.u8bin", q8(planted.probes))
    t = write_truth(tmp_path / "t.csv", planted.mate)
    assert _search(g, p, "--truth", t, "--backend", "numba-flat", "--out", tmp_path / "out") == 0
    z = np.load(tmp_path / "out" / "searches_numba-flat.npz")
    s = q8(planted.probes).astype(np.float64) @ q8(planted.gallery).astype(np.float64).T
    np.testing.assert_array_equal(z["cand_scores"][:, 0], s.max(axis=1))


# ---------------------------------------------------------------- fuzz

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def damaged_file(draw):
    """A .fbin/.u8bin/.i8bin/.npy file: a good one cut, extended or with
    bytes overwritten, or its header replaced."""
    suffix = draw(st.sampled_from([".fbin", ".u8bin", ".i8bin", ".npy"]))
    a = np.arange(48, dtype=np.float32).reshape(6, 8) / 7
    if suffix == ".u8bin":
        a = a.astype(np.uint8)
    elif suffix == ".i8bin":
        a = a.astype(np.int8)
    head = np.array(a.shape, "<u4").tobytes()
    if suffix == ".npy":
        import io
        buf = io.BytesIO()
        np.save(buf, a)
        data = buf.getvalue()
    else:
        data = head + a.tobytes()
    data = bytearray(data)
    cut = draw(st.integers(0, len(data)))
    how = draw(st.sampled_from(["cut", "extend", "poke", "header"]))
    if how == "cut":
        data = data[:cut]
    elif how == "extend":
        data += draw(st.binary(max_size=40))
    elif how == "poke":
        for _ in range(draw(st.integers(1, 6))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    else:
        data[:8] = np.array(draw(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))),
                            "<u4").tobytes()
    return suffix, bytes(data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damaged_file())
def test_damaged_files_never_traceback(tmp_path_factory, capsys, case):
    suffix, data = case
    d = tmp_path_factory.mktemp("fz")
    path = d / f"g{suffix}"
    path.write_bytes(data)
    truth = write_truth(d / "t.csv", np.full(6, -1))
    out = d / "out"
    code = _search(path, path, "--truth", truth, "--backend", "numba-flat", "--candidates", 1, "--out", out)
    err = capsys.readouterr().err
    assert code in (0, 2)
    if code == 2:
        assert err.startswith("fpscale: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
        assert not out.exists()
    else:
        assert (out / "summary.json").is_file()
    assert sorted(p.name for p in d.iterdir()) == sorted(["g" + suffix, "t.csv"] + (["out"] if code == 0 else []))


def test_a_damaged_npy_header_is_one_line_in_a_real_process(tmp_path):
    # numpy parses the header with ast, whose SyntaxWarning would print a second
    # line outside pytest's warning capture: run the command as a user would
    import subprocess
    import sys
    path = tmp_path / "g.npy"
    np.save(path, np.zeros((6, 8), np.float32))
    data = path.read_bytes()
    i, j = data.index(b"(6, 8), }"), data.index(b"\n")
    # "8and" makes ast warn (invalid decimal literal) before it refuses the header
    path.write_bytes(data[:i] + b"(6, 8and 1)}".ljust(j - i) + data[j:])
    truth = write_truth(tmp_path / "t.csv", np.full(6, -1))
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, "-m", "fpscale.bench.cli", "search", str(path), str(path), "--truth",
                        str(truth), "--backend", "numba-flat", "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, cwd=root, timeout=120,
                       env={**__import__("os").environ, "PYTHONPATH": str(root)})
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("fpscale: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "not a readable .npy array" in r.stderr and not (tmp_path / "out").exists()
