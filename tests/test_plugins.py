"""Backend plugins: packages that offer a backend through the
``fpscale.backends`` entry points.

Each test installs a package the way pip leaves one: a module and a
``*.dist-info`` folder with ``METADATA`` and ``entry_points.txt`` in a folder
on sys.path, where importlib.metadata finds it. The plugin backend here is
an independent numpy brute force (inner products, ties to the lower id); it
gives numba-flat's lists on the same data, through make_backend and through
``fpscale search``. A broken plugin is refused with one line naming it.
"""

import itertools
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fpscale.bench.cli import main
from fpscale.bench.store.summary import read_summary
from fpscale.matcher.checks import MatcherInputError
from fpscale.matcher.registry import final_index_bytes, is_binary, make_backend
from tests.test_vector_search import Planted, write_bin, write_truth

BRUTE = '''
import numpy as np


class Brute:
    """Exhaustive inner product in numpy; spec "scale=S" multiplies scores by S."""

    binary = False
    needs_training = False

    def __init__(self, spec, d, threads, seed):
        self.scale = float(spec.split("=")[1]) if spec else 1.0
        self.d, self.ids, self.rows = d, [], []

    def train(self, sample):
        pass

    def add(self, ids, data):
        self.ids.append(np.asarray(ids))
        self.rows.append(np.array(data))

    def search(self, probes, k):
        g, ids = np.vstack(self.rows), np.concatenate(self.ids)
        s = (probes @ g.T) * self.scale
        top = np.lexsort((np.broadcast_to(ids, s.shape), -s), axis=1)[:, :k]
        return ids[top], np.take_along_axis(s, top, axis=1).astype(np.float32)

    def set_search_params(self, params):
        if params:
            raise ValueError(f"no parameters, got {params!r}")

    def nbytes(self):
        return sum(r.nbytes for r in self.rows) + 8 * sum(len(i) for i in self.ids)


def make(spec, d, threads, seed):
    return Brute(spec, d, threads, seed)


def not_a_backend(spec, d, threads, seed):
    return {"search": None}


def unsorted(spec, d, threads, seed):
    b = Brute(spec, d, threads, seed)
    search = b.search
    b.search = lambda p, k: tuple(a[:, ::-1] for a in search(p, k))
    return b


def hamming(spec, d, threads, seed):
    b = Brute(spec, d, threads, seed)
    b.binary = True
    return b


hamming.binary = True
NOT_CALLABLE = 42
'''

_counter = itertools.count()


@pytest.fixture
def install(tmp_path, monkeypatch):
    """install({"name": "module:attr", ...}) makes a package offering those
    entry points importable, as an installed distribution would be."""

    def _install(entries: dict[str, str], source: str = BRUTE) -> str:
        n = next(_counter)
        module = f"fpscale_testplugin_{n}"
        site = tmp_path / f"site{n}"
        dist = site / f"{module}-1.0.dist-info"
        dist.mkdir(parents=True)
        (site / f"{module}.py").write_text(source)
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
        lines = [f"{name} = {value.replace('MOD', module)}" for name, value in entries.items()]
        (dist / "entry_points.txt").write_text("[fpscale.backends]\n" + "\n".join(lines) + "\n")
        monkeypatch.syspath_prepend(str(site))
        monkeypatch.delitem(sys.modules, module, raising=False)
        return module

    return _install


def _data(seed=0, n=500, q=40, d=16):
    rng = np.random.default_rng(seed)
    # small integers: every inner product is exact in float32 whatever the
    # order of the additions (BLAS or numba), so ties are ties everywhere
    g = rng.integers(-9, 10, size=(n, d)).astype(np.float32)
    g[100] = g[7]  # a tie: both lists must put the lower id first
    return g, rng.integers(-9, 10, size=(q, d)).astype(np.float32)


def test_a_plugin_backend_gives_numba_flats_lists(install):
    install({"brute": "MOD:make"})
    g, p = _data()
    ours, theirs = make_backend("numba-flat", 16), make_backend("brute", 16)
    assert theirs.name == "brute" and not is_binary("brute") and not theirs.needs_training
    for a in range(0, len(g), 128):  # streamed in chunks, as fpscale adds galleries
        ours.add(np.arange(a, min(a + 128, len(g))), g[a:a + 128])
        theirs.add(np.arange(a, min(a + 128, len(g))), g[a:a + 128])
    i1, s1 = ours.search(p, 12)
    i2, s2 = theirs.search(p, 12)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, rtol=1e-5, atol=1e-5)
    assert theirs.nbytes() == g.nbytes + 8 * len(g)
    # the spec after the colon reaches the factory
    scaled = make_backend("brute:scale=2", 16)
    scaled.add(np.arange(len(g)), g)
    np.testing.assert_allclose(scaled.search(p, 12)[1], 2 * s2, rtol=1e-6)
    # without its own estimate, a plugin is planned at the size of the raw records
    assert final_index_bytes("brute", 1000, 16) == 1000 * (16 * 4 + 8)


def test_builtin_names_come_first(install):
    install({"numba-flat": "MOD:not_a_backend", "faiss": "MOD:not_a_backend"})
    assert type(make_backend("numba-flat", 8)).__name__ == "NumbaFlatIP"
    assert make_backend("faiss:Flat", 8).name == "faiss:Flat"


def test_fpscale_search_runs_a_plugin_beside_numba_flat(install, tmp_path):
    install({"brute": "MOD:make"})
    w = Planted(seed=9, n=800, mated=50, non=70)
    g = write_bin(tmp_path / "g.fbin", w.gallery)
    p = write_bin(tmp_path / "p.fbin", w.probes)
    t = write_truth(tmp_path / "t.csv", w.mate)
    out = tmp_path / "out"
    assert main(["search", str(g), str(p), "--truth", str(t), "--backend", "numba-flat",
                 "--backend", "brute", "--candidates", "8", "--out", str(out), "--quiet"]) == 0
    s = read_summary(out)
    a, b = (np.load(out / f"searches_{k}.npz") for k in ("numba-flat", "brute"))
    np.testing.assert_array_equal(a["cand_ids"], b["cand_ids"])
    assert s.backend("brute").metrics.rank1_hit_rate.value == 1.0
    # numpy's BLAS and numba-flat add a pair's products in different orders,
    # so a threshold (a score) may differ in its last bit; the rates may not
    brute, ours = (s.backend(k).metrics.operating_points for k in ("brute", "numba-flat"))
    assert len(brute) == len(ours) > 0
    for x, y in zip(brute, ours):
        assert x.threshold == pytest.approx(y.threshold, rel=1e-6, abs=1e-6)
        assert replace(x, threshold=None) == replace(y, threshold=None)
    assert s.backend("brute").timings.throughput_searches_per_s > 0


BROKEN = {
    "import error": ({"bad": "fpscale_no_such_module_xyz:make"}, "bad", "cannot be loaded: ModuleNotFoundError"),
    "missing attribute": ({"bad": "MOD:nothing_here"}, "bad", "cannot be loaded: AttributeError"),
    "not callable": ({"bad": "MOD:NOT_CALLABLE"}, "bad", "names a int, not a factory"),
    "wrong type": ({"bad": "MOD:not_a_backend"}, "bad", "returned a dict, not a backend"),
    "factory raises": ({"bad": "MOD:make"}, "bad:scale=x", "failed to build 'bad:scale=x': ValueError"),
}


@pytest.mark.parametrize("case", ["import error", "missing attribute", "not callable", "wrong type",
                                  "factory raises"])
def test_a_broken_plugin_is_one_error_naming_it(install, tmp_path, capsys, case):
    entries, name, words = BROKEN[case]
    install(entries)
    with pytest.raises(MatcherInputError) as e:
        make_backend(name, 16)
    assert "backend plugin 'bad'" in str(e.value) and words in str(e.value), str(e.value)
    g = write_bin(tmp_path / "g.fbin", _data()[0])
    t = write_truth(tmp_path / "t.csv", np.full(500, -1))
    out = tmp_path / "out"
    assert main(["search", str(g), str(g), "--truth", str(t), "--backend", name, "--out", str(out),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fpscale: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert "backend plugin 'bad'" in err and words in err, err
    assert not out.exists()


def test_plugin_lists_and_failures_are_checked(install):
    install({"unsorted": "MOD:unsorted", "brute": "MOD:make"})
    g, p = _data()
    b = make_backend("unsorted", 16)
    b.add(np.arange(len(g)), g)
    with pytest.raises(MatcherInputError, match="plugin 'unsorted'.*not best first"):
        b.search(p, 5)
    b = make_backend("brute", 16)
    with pytest.raises(MatcherInputError, match="plugin 'brute'.*ValueError: no parameters"):
        b.set_search_params("nprobe=4")
    with pytest.raises(MatcherInputError, match="probes has dimension 8"):  # checked before the plugin
        b.add(np.arange(len(g)), g)
        b.search(p[:, :8].copy(), 5)


def test_a_binary_plugin_declares_itself_on_its_factory(install):
    install({"ham": "MOD:hamming", "liar": "MOD:unsorted"})
    assert is_binary("ham") and not is_binary("liar")
    codes = np.random.default_rng(1).integers(0, 256, (50, 8), dtype=np.uint8)
    b = make_backend("ham", 64)
    b.add(np.arange(50), codes)
    assert b.binary and b.ntotal == 50
    with pytest.raises(MatcherInputError, match="must have dtype uint8"):
        b.add(np.arange(2), np.zeros((2, 8), np.float32))


def test_a_factory_that_lies_about_binary_is_refused(install):
    source = BRUTE + textwrap.dedent('''
        def secretly_binary(spec, d, threads, seed):
            b = Brute(spec, d, threads, seed)
            b.binary = True
            return b
        ''')
    install({"sly": "MOD:secretly_binary"}, source)
    with pytest.raises(MatcherInputError, match="plugin 'sly' built a binary backend but its factory "
                                                 "declares binary = False"):
        make_backend("sly", 64)


def test_unknown_names_list_the_installed_plugins(install):
    install({"brute": "MOD:make"})
    with pytest.raises(MatcherInputError, match=r"unknown backend 'annoy'.*installed plugins: .*brute"):
        make_backend("annoy", 8)


def test_the_readme_example_is_a_working_plugin(tmp_path, monkeypatch):
    # the factory the README shows, installed as README shows it
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("```python\n# mybackend.py")[1].split("```")[0]
    site = tmp_path / "site"
    dist = site / "mybackend-0.1.dist-info"
    dist.mkdir(parents=True)
    (site / "mybackend.py").write_text("# mybackend.py" + block)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mybackend\nVersion: 0.1\n")
    toml = readme.split('[project.entry-points."fpscale.backends"]\n')[1].split("\n")[0]
    entry = toml.replace('"', "")  # entry_points.txt holds the TOML entry's value unquoted
    (dist / "entry_points.txt").write_text(f"[fpscale.backends]\n{entry}\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "mybackend", raising=False)
    g, p = _data(seed=4)
    ours, theirs = make_backend("numba-flat", 16), make_backend(entry.split(" = ")[0], 16)
    ours.add(np.arange(len(g)), g)
    theirs.add(np.arange(len(g)), g)
    np.testing.assert_array_equal(ours.search(p, 10)[0], theirs.search(p, 10)[0])
