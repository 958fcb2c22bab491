"""The report's plots draw what their captions say (checked on the figure
objects before they become PNG bytes)."""

import numpy as np
import pytest

from fpscale.bench.cli import main
from fpscale.bench.report import plots
from fpscale.bench.store.summary import read_summary


@pytest.fixture(scope="module")
def summary(tmp_path_factory, tiny, write_toml):
    d = tiny(projection__ladder=[], search__rescore=True, search__rescore_candidates=5)
    path = write_toml(tmp_path_factory.mktemp("s") / "s.toml", d)
    out = tmp_path_factory.mktemp("r") / "run"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    return read_summary(out)


@pytest.fixture
def figures(monkeypatch):
    kept = []
    monkeypatch.setattr(plots, "_png", lambda fig: kept.append(fig) or b"")
    return kept


def test_det_marks_every_resolved_operating_point_and_names_n_and_l(summary, figures):
    plots.plot_det(summary)
    (ax,) = figures[0].axes
    marked = {(round(x, 12), round(y, 12)) for line in ax.lines if line.get_marker() == "o"
              for x, y in zip(line.get_xdata(), line.get_ydata())}
    want = {(round(o.fpir.value, 12), round(o.fnir.value, 12)) for b in summary.backends
            for o in b.metrics.operating_points if o.fpir and o.fnir and o.fpir.value and o.fnir.value}
    assert want and want <= marked
    assert f"N = {summary.scenario.population.gallery_size:,}" in ax.get_title()
    assert f"L = {summary.scenario.search.candidates}" in ax.get_title()
    assert ax.get_legend().get_bbox_to_anchor().x0 > ax.get_window_extent().x1 - 1  # outside


def test_cmc_ticks_are_whole_ranks_and_identical_curves_stay_visible(summary, figures):
    plots.plot_cmc(summary)
    (ax,) = figures[0].axes
    ticks = [t for t in ax.get_xticks() if 1 <= t <= summary.scenario.search.candidates]
    assert ticks and all(float(t).is_integer() for t in ticks)
    by = {line.get_label(): line for line in ax.lines}
    a, b = by["numba-flat"], by["faiss-Flat"]
    assert np.allclose(a.get_ydata(), b.get_ydata())  # exact search agrees...
    assert a.get_linewidth() > b.get_linewidth()      # ...and the earlier one is drawn wider
    r = by["numba-flat+minutiae"]
    assert r.get_color() == a.get_color() and r.get_linestyle() != a.get_linestyle()


def test_throughput_against_recall_leaves_out_rows_without_a_recall(summary, figures):
    plots.plot_throughput_recall(summary)
    (ax,) = figures[0].axes
    labels = set(ax.get_legend_handles_labels()[1])
    assert "numba-flat" in labels and "faiss-Flat" in labels
    assert not any("+" in k for k in labels)  # re-scored rows re-order, they do not search
    assert "numba-hamming" not in labels      # exact on codes, not measured against floats
