"""orchestrator.reporting.plots: PNGs are written, readable and non-trivial."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.records.pareto import hypervolume_curve, pareto_front, select_presets
from orchestrator.reporting.allocation_plots import allocation_heatmap, allocation_matrix
from orchestrator.reporting.plots import format_count, hypervolume_plot, pareto_plot

_TYPES = ["attention.self.query", "attention.self.key", "attention.self.value",
          "attention.output.dense", "intermediate.dense", "output.dense"]


def _alloc(layers: int, scale: int) -> dict[str, int]:
    return {f"bert.encoder.layer.{i}.{name}": 1 + (i * 7 + j * scale) % 6
            for i in range(layers) for j, name in enumerate(_TYPES)}


def _read(path):
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    return img


def test_import_loads_no_matplotlib():
    code = ("import sys, orchestrator.reporting.plots, orchestrator.reporting.allocation_plots; "
            "sys.exit('matplotlib' in sys.modules)")
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, timeout=60).returncode == 0


def test_allocation_matrix_accepts_short_keys():
    layers, types, grid = allocation_matrix({"L01.q": 2, "rank.L00.f2": 3, "classifier": 1})
    assert layers == [0, 1] and types == ["q", "f2"]
    assert grid == [[None, 3], [2, None]]


def test_heatmaps_share_a_scale(tmp_path):
    import numpy as np

    a = _alloc(6, 1)  # ranks 1..6
    b = {k: 2 + v % 3 for k, v in a.items()}  # ranks 2..4
    vmin = min(min(a.values()), min(b.values()))
    vmax = max(max(a.values()), max(b.values()))
    pa = allocation_heatmap(a, tmp_path / "a.png", title="trial", vmin=vmin, vmax=vmax)
    pb = allocation_heatmap(b, tmp_path / "b.png", title="trial", vmin=vmin, vmax=vmax)
    pc = allocation_heatmap(b, tmp_path / "c.png", title="trial")  # own scale: 2..4
    for p in (pa, pb, pc):
        assert p.exists() and p.stat().st_size > 5_000
    ia, ib, ic = _read(pa), _read(pb), _read(pc)
    assert ia.shape == ib.shape == ic.shape
    assert ia.shape[0] > 200 and ia.shape[1] > 400
    strip = slice(int(ia.shape[1] * 0.82), None)  # the colorbar and its tick labels
    assert np.array_equal(ia[:, strip], ib[:, strip])  # shared scale: identical colorbars
    assert not np.array_equal(ib[:, strip], ic[:, strip])
    # the cells themselves differ between a and b
    assert not np.array_equal(ia, ib)
    # missing cells are allowed
    partial = {k: v for k, v in a.items() if "layer.0." not in k or "query" in k}
    p = allocation_heatmap(partial, tmp_path / "d" / "partial.png", title="partial")
    assert _read(p).shape[0] > 100
    assert not [f for f in tmp_path.rglob("*.tmp")]


def test_heatmap_without_layers_raises(tmp_path):
    with pytest.raises(ValueError):
        allocation_heatmap({"classifier": 3}, tmp_path / "x.png", title="x")


def test_pareto_plot(tmp_path):
    pts = [(40.0 + i * 1.5 - (i % 3) * 4, 1_000.0 * 1.6**i) for i in range(16)]
    front = pareto_front(pts)
    picks = select_presets(pts, front)
    path = pareto_plot(
        pts,
        front,
        tmp_path / "front.png",
        title="CoLA",
        highlight=picks,
        reference={"lora": [(45.0, 20_000.0), (50.0, 80_000.0)], "adalora": [(52.0, 60_000.0)]},
        pruned=[(30.0, 5_000.0), (35.0, 200_000.0)],
    )
    assert path.stat().st_size > 10_000
    img = _read(path)
    assert img.shape[0] > 200 and img.shape[1] > 300


def test_pareto_plot_linear_axis_and_minimal_input(tmp_path):
    pts = [(50.0, 1_000.0), (55.0, 2_000.0), (float("nan"), 3_000.0)]
    path = pareto_plot(pts, [0, 1], tmp_path / "lin.png", title="narrow", highlight=None)
    assert path.stat().st_size > 5_000
    _read(path)


def test_hypervolume_plot(tmp_path):
    pts = [(40.0 + (i * 13) % 30, 1_000.0 * (1 + (i * 7) % 20)) for i in range(30)]
    curves = {
        "tpe seed 0": hypervolume_curve(pts, (0.0, 25_000.0)),
        "nsga2 seed 0": hypervolume_curve(pts[::-1], (0.0, 25_000.0)),
    }
    path = hypervolume_plot(curves, tmp_path / "hv.png", title="hypervolume")
    assert path.stat().st_size > 5_000
    _read(path)


def test_format_count():
    assert format_count(1_500) == "1.5K"
    assert format_count(2_000_000) == "2M"
    assert format_count(300) == "300"
