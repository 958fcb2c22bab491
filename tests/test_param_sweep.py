"""`fpscale sweep --param`: a faiss backend's search parameter swept over one
built index, written as a recall/throughput frontier with intervals."""

import csv
import json

import numpy as np
import pytest
from faiss.contrib.evaluation import knn_intersection_measure

from fpscale.bench.cli import main
from fpscale.bench.measure.recall import bootstrap_mean_ci, pareto_front, search_recall
from fpscale.bench.tools.param_sweep import parse_param, with_param

NLIST = 8


@pytest.fixture(scope="module")
def swept(tmp_path_factory, tiny, write_toml):
    root = tmp_path_factory.mktemp("psw")
    d = tiny(projection__ladder=[],
             search__backends=[{"name": "numba-flat"},
                               {"name": f"faiss:IVF{NLIST},Flat", "params": "nprobe=2",
                                "train_size": 800}])
    scen = write_toml(root / "s.toml", d)
    out = root / "sw"
    code = main(["sweep", str(scen), "--param", f"nprobe={NLIST},1,2,4", "--out", str(out),
                 "--quiet"])
    assert code == 0
    with open(out / "frontier.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return root, scen, out, rows


def test_recall_grows_with_nprobe_and_reaches_exact_search(swept):
    _, _, out, rows = swept
    exact, ivf = rows[0], rows[1:]
    assert exact["backend"] == "numba-flat" and exact["value"] == ""
    assert [int(r["value"]) for r in ivf] == [1, 2, 4, NLIST]
    assert [r["params"] for r in ivf] == [f"nprobe={v}" for v in (1, 2, 4, NLIST)]
    recall = [float(r["recall"]) for r in ivf]
    # probing more lists scores a superset of the records: recall cannot drop
    assert all(b >= a for a, b in zip(recall, recall[1:])), recall
    assert recall[0] < 1.0  # one list of eight misses candidates on this gallery
    # every list probed is exhaustive search: exact search's lists, every one
    assert recall[-1] == 1.0
    assert (float(ivf[-1]["recall_lo"]), float(ivf[-1]["recall_hi"])) == (1.0, 1.0)
    assert float(ivf[-1]["rank1_hit_rate"]) == float(exact["rank1_hit_rate"])
    for r in rows:
        lo, v, hi = float(r["recall_lo"]), float(r["recall"]), float(r["recall_hi"])
        assert 0.0 <= lo <= v <= hi <= 1.0
        assert float(r["searches_per_s"]) > 0
        lo, v, hi = (float(r[k]) for k in ("rank1_hit_rate_lo", "rank1_hit_rate", "rank1_hit_rate_hi"))
        assert lo <= v <= hi
    assert float(ivf[0]["recall_hi"]) > float(ivf[0]["recall_lo"])  # a real interval where recall varies
    assert (out / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = json.loads((out / "sweep.json").read_text())
    assert res["param"] == "nprobe" and res["values"] == [1, 2, 4, NLIST]
    assert res["reference"] == "numba-flat" and res["index_bytes"] > 0
    # the most recall for its speed: the frontier holds the setting with the best recall
    assert ivf[-1]["pareto"] == "true" or float(ivf[-2]["recall"]) == 1.0


def test_recall_against_exact_search_is_faiss_intersection_measure():
    rng = np.random.default_rng(3)
    exact = np.array([rng.permutation(500)[:20] for _ in range(300)])
    approx = exact.copy()
    approx[rng.random(exact.shape) < 0.2] += 1000  # about a fifth replaced
    approx = np.array([rng.permutation(r) for r in approx])
    per = search_recall(exact, approx)
    assert per.mean() == pytest.approx(knn_intersection_measure(approx, exact))
    assert per.mean() == pytest.approx(0.8, abs=0.03)
    lo, hi = bootstrap_mean_ci(per)
    assert lo < per.mean() < hi and hi - lo < 0.03
    # padding (-1) is not a candidate on either side
    e = np.array([[5, 6, -1, -1]])
    assert search_recall(e, np.array([[6, -1, -1, -1]]))[0] == 0.5
    assert bootstrap_mean_ci(np.ones(50)) == (1.0, 1.0)
    assert list(pareto_front([0.5, 0.7, 0.9, 0.6], [100, 80, 10, 50])) == [True, True, True, False]


def test_param_text_is_checked():
    assert parse_param("nprobe=16,1,4") == ("nprobe", (1, 4, 16))
    assert with_param("nprobe=16,ht=20", "nprobe", 4) == "ht=20,nprobe=4"
    for bad in ("nprobe", "nprobe=", "nprobe=0", "nprobe=1,1", "nprobe=a", "=4", "n p=3",
                "nprobe=" + ",".join(map(str, range(1, 200)))):
        with pytest.raises(ValueError):
            parse_param(bad)


@pytest.mark.parametrize("args,what", [
    (["--param", "nprobe=0"], "--param"),
    (["--param", "nprobe=2", "--backend", "faiss:Flat"], "faiss:Flat"),
    (["--param", "nprobe=2", "--backend", "numba-flat"], "no search parameters"),
    (["--param", "nosuch=2"], "nosuch"),
    (["--param", "nprobe=2", "--values", "1,2"], "--values goes with --key"),
    (["--key", "population.gallery_size"], "--values"),
    (["--key", "population.gallery_size", "--values", "300", "--param", "nprobe=2"], "either"),
    ([], "either"),
])
def test_bad_sweeps_are_refused_in_one_line_and_write_nothing(swept, args, what, capsys):
    root, scen, _, _ = swept
    out = root / "refused"
    assert main(["sweep", str(scen), *args, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fpscale: error: ") and what in err[0], err
    assert not out.exists()


def test_a_sweep_into_another_sweeps_folder_needs_overwrite(swept, capsys):
    _, scen, out, _ = swept
    args = ["sweep", str(scen), "--param", "nprobe=1,3", "--out", str(out), "--quiet"]
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0
    with open(out / "frontier.csv", newline="") as f:
        assert [r["value"] for r in csv.DictReader(f)] == ["", "1", "3"]
