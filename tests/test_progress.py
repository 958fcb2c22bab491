"""Progress and logs: one named stage per step of a run; plain lines, not
tqdm frames, when stderr is not a terminal; throttled; silent with --quiet;
faiss's k-means warnings turned into one note; one numba cache folder."""

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fpscale.bench
from fpscale.bench.cli import main
from fpscale.bench.run import progress, segments
from fpscale.bench.run.progress import LOG_EVERY_S, LOG_QUIET_S, Sink, Stage, say, stage
from fpscale.bench.scenario import training_advice
from fpscale.matcher import make_backend

ROOT = Path(__file__).resolve().parent.parent


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _log_stage(total, initial=0):
    out, clock = io.StringIO(), FakeClock()
    st = Stage("re-score numba-flat (mcc)", total, "searches", initial, Sink(out, False, clock))
    return st, out, clock


def _lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def _stamps(st, out, clock, every: float) -> list[tuple[float, int]]:
    # one search every `every` seconds to the end: (time, done) of each progress line
    stamps = []
    for _ in range(st.total):
        clock.t += every
        before = len(_lines(out))
        st.update(1)
        if len(_lines(out)) > before:
            stamps.append((clock.t, st.done))
    st.close()
    return stamps


def test_a_short_stage_logs_its_start_and_end_only():
    st, out, clock = _log_stage(1000)
    for _ in range(10):
        clock.t += 1.0  # 10 s in all: every tenth crossed, but well under LOG_EVERY_S
        st.update(100)
    st.close()
    lines = _lines(out)
    assert lines == ["fpscale: re-score numba-flat (mcc): start, 1,000 searches",
                     "fpscale: re-score numba-flat (mcc): done, 1,000 searches in 10.0 s "
                     "(100 searches/s)"]


def test_a_stage_of_hours_logs_every_few_minutes_between_tenths():
    st, out, clock = _log_stage(1000)
    stamps = _stamps(st, out, clock, 12.0)  # a tenth every 20 minutes
    gaps = np.diff([100.0] + [t for t, _ in stamps])
    assert max(gaps) <= LOG_QUIET_S + 12 and min(gaps) >= LOG_EVERY_S
    # every tenth still gets its line (or one within a minute of it)
    for k in range(1, 10):
        assert any(0 <= d - 100 * k <= 25 for _, d in stamps), k
    assert len(stamps) < 45


def test_a_long_stage_logs_at_most_once_per_tenth_and_per_interval():
    st, out, clock = _log_stage(1000)
    stamps = _stamps(st, out, clock, 2.0)  # 2,000 s in all
    lines = _lines(out)
    body = lines[1:-1]
    assert len(body) == len(stamps) == 9  # at 10%, 20%, ... 90%; none at 100% (the end line)
    times = [t for t, _ in stamps]
    assert min(np.diff(times)) >= LOG_EVERY_S
    assert [d // 100 for _, d in stamps] == list(range(1, 10))
    first = body[0]
    assert first.startswith("fpscale: re-score numba-flat (mcc): 100/1,000 searches (10%), ")
    assert "0.5 searches/s" in first and "about 30 min 00 s left" in first
    assert lines[-1].endswith("done, 1,000 searches in 33 min 20 s (0.5 searches/s)")


def test_a_fast_stage_of_many_tenths_waits_for_the_interval():
    st, out, clock = _log_stage(100)
    clock.t += 29.0
    st.update(50)           # half done but only 29 s in: no line yet
    assert len(_lines(out)) == 1
    clock.t += 2.0
    st.update(1)            # 31 s, a new tenth: one line
    assert len(_lines(out)) == 2 and "51/100 searches (51%)" in _lines(out)[-1]
    clock.t += 40.0
    st.update(1)            # 40 s later but the same tenth: none
    assert len(_lines(out)) == 2


def test_a_resumed_stage_counts_only_this_runs_work_and_a_failed_one_says_so():
    st, out, clock = _log_stage(1500, initial=1000)
    assert _lines(out)[0].endswith("start, 1,500 searches (1,000 done before)")
    clock.t += 5.0
    st.update(500)
    st.close()
    assert _lines(out)[-1].endswith("done, 500 searches in 5.0 s (100 searches/s)")
    st2, out2, clock2 = _log_stage(10)
    with pytest.raises(KeyboardInterrupt):
        with st2:
            clock2.t += 3.0
            st2.update(4)
            raise KeyboardInterrupt
    assert _lines(out2)[-1].endswith("stopped at 4/10 searches after 3.0 s")


def test_a_terminal_gets_a_named_tqdm_bar_and_off_gets_nothing(capsys):
    out = io.StringIO()
    with Stage("search numba-flat", 300, "searches", 0, Sink(out, True)) as st:
        st.update(300)
    text = out.getvalue()
    assert "\r" in text and "search numba-flat" in text and "300/300" in text
    with stage("search numba-flat", 300, "searches", show=False) as st:
        st.update(300)
    say("note: nothing", show=False)
    assert capsys.readouterr().err == ""


def test_captured_stderr_is_not_a_terminal(capsys):
    assert progress.sink(True).terminal is False
    say("note: something to read")
    assert capsys.readouterr().err == "fpscale: note: something to read\n"


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory, tiny, write_toml):
    """A tiny run with re-scoring in three segments and a faiss IVF trained on
    fewer points than faiss's k-means asks for; stderr and fd 2 captured."""
    tmp = tmp_path_factory.mktemp("logs")
    d = tiny(search__rescore=True, search__rescore_candidates=3)
    d["search"]["backends"] = [{"name": "numba-flat"}, {"name": "faiss:IVF16,Flat",
                                                         "train_size": 300}]
    scen = write_toml(tmp / "s.toml", d)
    mp = pytest.MonkeyPatch()
    mp.setattr(segments, "SEGMENT", 100)  # 240 searches: three segments per backend
    err = io.StringIO()
    mp.setattr(sys, "stderr", err)
    saved = os.dup(2)
    with open(tmp / "fd2.txt", "w+") as fd2:
        os.dup2(fd2.fileno(), 2)  # faiss writes from C++ to fd 2, past sys.stderr
        try:
            code = main(["run", str(scen), "--out", str(tmp / "o")])
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            mp.undo()
        fd2.seek(0)
        return code, err.getvalue(), fd2.read()


def test_a_logged_run_has_plain_lines_naming_every_stage(logged_run):
    code, err, fd2 = logged_run
    assert code == 0
    assert "\r" not in err and "\x1b" not in err
    lines = err.splitlines()
    assert all(line.startswith("fpscale: ") for line in lines), lines
    stages = [m.group(1) for line in lines if (m := re.match(r"fpscale: (.+): start, ", line))]
    assert stages == ["compile", "submissions", "train faiss-IVF16-Flat", "build gallery",
                      "search numba-flat", "re-score numba-flat (paired)",
                      "search faiss-IVF16-Flat", "re-score faiss-IVF16-Flat (paired)",
                      "projection", "individuality", "report"]
    for name in stages:  # every stage that starts ends, once
        assert sum(line.startswith(f"fpscale: {name}: done, ") for line in lines) == 1, name
    # the re-scoring of all three segments of a backend is one stage
    for key in ("numba-flat", "faiss-IVF16-Flat"):
        assert [line for line in lines if line.startswith(f"fpscale: re-score {key} ")] == [
            f"fpscale: re-score {key} (paired): start, 240 searches",
            next(x for x in lines if x.startswith(f"fpscale: re-score {key} (paired): done, 240 "))]


def test_faiss_clustering_warning_becomes_one_note(logged_run):
    _, err, fd2 = logged_run
    assert "WARNING" not in fd2 and "WARNING" not in err
    notes = [line for line in err.splitlines() if "note:" in line]
    assert len(notes) == 1
    assert "faiss:IVF16,Flat trains on 300 points for 16 inverted lists" in notes[0]
    assert "624" in notes[0]


def test_quiet_prints_no_progress(tmp_path, capfd, tiny, write_toml):
    d = tiny(search__backends=[{"name": "faiss:IVF16,Flat", "train_size": 300}])
    scen = write_toml(tmp_path / "s.toml", d)
    assert main(["run", str(scen), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    out, err = capfd.readouterr()
    assert err == ""
    assert "faiss-IVF16-Flat" in out and "Report:" in out  # the final table still prints


def test_training_advice_follows_faiss_points_per_centroid():
    assert training_advice("faiss:IVF256,Flat", 10_000) is None  # 39 x 256 = 9,984
    assert "9,984" in training_advice("faiss:IVF256,Flat", 9_983)
    assert "256 centroids per PQ sub-quantizer" in training_advice("faiss:IVF16,PQ8", 2_000)
    assert training_advice("faiss:Flat", 10) is None


@pytest.mark.parametrize("spec", ["faiss:IVF64,Flat", "faiss:IVF16,PQ4", "faiss:BIVF64",
                                  # the same path, seconds each: run by make test-slow
                                  pytest.param("faiss:OPQ4,IVF16,PQ4", marks=pytest.mark.slow),
                                  pytest.param("faiss:PQ8", marks=pytest.mark.slow)])
def test_faiss_training_on_few_points_prints_nothing(spec, capfd):
    rng = np.random.default_rng(0)
    binary = spec.startswith("faiss:B")
    d = 128 if binary else 32
    b = make_backend(spec, d, threads=1)
    x = rng.integers(0, 256, (600, d // 8), dtype=np.uint8) if binary else \
        rng.standard_normal((600, d)).astype(np.float32)
    b.train(x)  # fewer than 39 points per centroid everywhere
    b.add(np.arange(600), x)
    ids, _ = b.search(x[:5], 1)
    assert (ids[:, 0] >= 0).all()
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_hand_runs_from_the_checkout_share_makes_numba_cache(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("FPSCALE_NUMBA_CACHE", "NUMBA_CACHE_DIR")}
    env["PYTHONPATH"] = str(ROOT)
    got = subprocess.run([sys.executable, "-c",
                          "import fpscale, os; print(os.environ['NUMBA_CACHE_DIR'])"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, check=True)
    path = Path(got.stdout.strip())
    assert path.parent == ROOT / ".numba_cache"  # Makefile: FPSCALE_NUMBA_CACHE=$(CURDIR)/.numba_cache
    assert re.fullmatch(r"[0-9a-f]{16}", path.name)  # one sub-folder per version of the sources
    assert path.name == Path(os.environ["NUMBA_CACHE_DIR"]).name  # same sources, same folder


def test_outside_a_writable_checkout_the_cache_is_per_user(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    user = tmp_path / "xdg" / "fpscale" / "numba"
    assert fpscale.default_cache_base(tmp_path) == user  # no pyproject.toml: not a checkout
    (tmp_path / "pyproject.toml").write_text("")
    assert fpscale.default_cache_base(tmp_path) == tmp_path / ".numba_cache"
    if os.geteuid() != 0:  # root writes anywhere
        tmp_path.chmod(0o555)
        try:
            assert fpscale.default_cache_base(tmp_path) == user
        finally:
            tmp_path.chmod(0o755)


def test_silencing_faiss_changes_no_centroid():
    import faiss
    x = np.random.default_rng(1).standard_normal((600, 32)).astype(np.float32)
    ours = make_backend("faiss:IVF64,Flat", 32, threads=1, seed=5)
    ours.train(x)
    ref = faiss.index_factory(32, "IVF64,Flat", faiss.METRIC_INNER_PRODUCT)
    ref.cp.seed = 5
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        ref.train(x)  # faiss's defaults: 39 points per centroid asked for (and warned about)
    finally:
        faiss.omp_set_num_threads(threads)
    assert np.array_equal(ours.index.quantizer.reconstruct_n(0, 64),
                          ref.quantizer.reconstruct_n(0, 64))
