"""Allocation heatmaps on the trial runs, drawn on one colour scale per search.

Every heatmap of a search uses ``vmin = 0`` and ``vmax`` = the largest module rank over the whole
search. While the search runs, a trial's heatmap is drawn with the largest rank seen so far; at
the end :func:`rerender_heatmaps` redraws those whose scale differs from the final maximum (the
scale used is kept in the run's ``heatmap_vmax`` tag).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from orchestrator.tracking.mlflow_runs import HEATMAP_ARTIFACT, HEATMAP_VMAX_TAG, client
from orchestrator.reporting.allocation_plots import allocation_heatmap

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient


def log_heatmap(
    c: "MlflowClient", run_id: str, allocation: dict[str, int], *, title: str, vmax: float, vmin: float = 0.0
) -> bool:
    """Draw the allocation heatmap (``plots.allocation_heatmap``) and log it; False if it cannot be drawn."""
    with tempfile.TemporaryDirectory(prefix="increlora-heatmap-") as tmp:
        path = Path(tmp) / HEATMAP_ARTIFACT
        try:
            allocation_heatmap(allocation, path, title=title, vmin=vmin, vmax=vmax)
        except ValueError:
            return False
        c.log_artifact(run_id, str(path))
    c.set_tag(run_id, HEATMAP_VMAX_TAG, str(float(vmax)))
    return True


def rerender_heatmaps(uri: str, items: Iterable[tuple[str, dict[str, int], str]], vmax: float) -> int:
    """Redraw the heatmaps whose ``heatmap_vmax`` tag differs from ``vmax``: items are
    ``(run_id, allocation, title)``. Returns the number redrawn."""
    c = client(uri)
    n = 0
    for run_id, allocation, title in items:
        if not allocation:
            continue
        try:
            tag = c.get_run(run_id).data.tags.get(HEATMAP_VMAX_TAG)
        except Exception:
            continue
        if tag is not None and float(tag) == float(vmax):
            continue
        if log_heatmap(c, run_id, allocation, title=title, vmax=vmax):
            n += 1
    return n
