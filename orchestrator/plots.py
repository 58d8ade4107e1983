"""PNG plots of a search: rank-allocation heatmaps, the Pareto front, hypervolume progress.

Figures are built with the object-oriented API on an Agg canvas created inside each function
(``matplotlib.figure.Figure`` + ``FigureCanvasAgg``), so importing this module loads nothing,
no global backend or pyplot state is touched, and figures are released when the function
returns. Every function writes its PNG atomically and returns the path.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from increlora.naming import MODULE_TYPE_LABELS, MODULE_TYPES, layer_index, module_type

PathLike = Union[str, "os.PathLike[str]"]
DPI = 120
_SHORT_KEY_RE = re.compile(r"^(?:rank\.)?L(\d+)\.(q|k|v|o|f1|f2)$")
_REFERENCE_MARKERS = ("s", "^", "D", "v", "P", "X", "h")


def _new_figure(width: float, height: float) -> Any:
    """A Figure attached to its own Agg canvas (no pyplot, no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: PathLike) -> Path:
    """Tight layout, write the PNG atomically, release the figure."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    os.close(fd)
    try:
        fig.tight_layout()
        fig.savefig(tmp, format="png", dpi=DPI)
        os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    finally:
        fig.clear()
    return p


def allocation_matrix(allocation: dict[str, int]) -> tuple[list[int], list[str], list[list[Optional[int]]]]:
    """``{module: rank}`` -> (layers, module types, grid[layer][type]); accepts full module names
    (``bert.encoder.layer.3.attention.self.query``) and short keys (``L03.q``, ``rank.L03.q``).
    Modules that are neither are ignored; a missing cell is None."""
    cells: dict[tuple[int, str], int] = {}
    for name, rank in allocation.items():
        m = _SHORT_KEY_RE.match(name)
        layer, mtype = (int(m.group(1)), m.group(2)) if m else (layer_index(name), module_type(name))
        if layer is None or mtype is None:
            continue
        cells[(layer, mtype)] = int(rank)
    layers = sorted({k[0] for k in cells})
    types = [t for t in MODULE_TYPES if any(k[1] == t for k in cells)]
    grid = [[cells.get((layer, t)) for t in types] for layer in layers]
    return layers, types, grid


def allocation_heatmap(
    allocation: dict[str, int],
    path: PathLike,
    *,
    title: str,
    vmin: Optional[float] = None,
    vmax: Optional[float] = None,
) -> Path:
    """Heatmap of final ranks: layers (rows ``L00``...) x module types (columns), annotated cells.

    Pass the same ``vmin``/``vmax`` for every heatmap of a search so their colours compare.
    Raises ValueError when no module name can be placed on the grid.
    """
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    layers, types, grid = allocation_matrix(allocation)
    if not layers:
        raise ValueError("allocation_heatmap: no module names with a layer and a module type")
    data = np.ma.masked_invalid(np.array([[np.nan if v is None else v for v in row] for row in grid], dtype=float))
    lo = float(data.min()) if vmin is None else float(vmin)
    hi = float(data.max()) if vmax is None else float(vmax)
    if hi <= lo:
        hi = lo + 1.0
    fig = _new_figure(1.2 * len(types) + 2.4, 0.42 * len(layers) + 1.6)
    ax = fig.add_subplot(1, 1, 1)
    cmap = _cmap_with_bad("viridis")
    im = ax.imshow(data, cmap=cmap, vmin=lo, vmax=hi, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(types)), [MODULE_TYPE_LABELS.get(t, t) for t in types])
    ax.set_yticks(range(len(layers)), [f"L{layer:02d}" for layer in layers])
    ax.set_xlabel("module type")
    ax.set_ylabel("layer")
    ax.set_title(title)
    for r, row in enumerate(grid):
        for c, value in enumerate(row):
            if value is None:
                continue
            frac = (value - lo) / (hi - lo)
            ax.text(c, r, str(value), ha="center", va="center", fontsize=9,
                    color="black" if frac > 0.6 else "white")
    cbar = fig.colorbar(im, ax=ax)
    cbar.set_label("rank")
    cbar.locator = MaxNLocator(integer=True)
    cbar.update_ticks()
    return _save(fig, path)


def _cmap_with_bad(name: str) -> Any:
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad="#dddddd")


def format_count(value: float, _pos: Any = None) -> str:
    """1500 -> ``1.5K``, 2_000_000 -> ``2M``, 300 -> ``300``."""
    v = float(value)
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def _finite(points: Optional[Sequence[Sequence[float]]]) -> list[tuple[float, float]]:
    out = []
    for p in points or []:
        s, n = float(p[0]), float(p[1])
        if math.isfinite(s) and math.isfinite(n):
            out.append((s, n))
    return out


def pareto_plot(
    points: list[tuple[float, float]],
    front_idx: Sequence[int],
    path: PathLike,
    *,
    title: str,
    highlight: Optional[dict[str, int]] = None,
    reference: Optional[dict[str, list[tuple[float, float]]]] = None,
    pruned: Optional[list[tuple[float, float]]] = None,
) -> Path:
    """Score vs adapter parameters with the Pareto front as a step line.

    ``points`` are ``(score, params)``; ``front_idx`` indexes them (e.g. from
    :func:`orchestrator.pareto.pareto_front`). ``highlight`` marks chosen points with stars and
    labels (label -> index), ``reference`` draws baseline points per method with other markers,
    ``pruned`` draws early-stopped trials as grey crosses. The x axis is logarithmic when the
    parameter counts span more than 10x, and ticks read as K/M.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig = _new_figure(7.0, 4.6)
    ax = fig.add_subplot(1, 1, 1)
    xs_all: list[float] = []

    pr = _finite(pruned)
    if pr:
        ax.scatter([p[1] for p in pr], [p[0] for p in pr], marker="x", color="#b0b0b0", s=22,
                   label="pruned", zorder=1)
        xs_all += [p[1] for p in pr]

    valid = [i for i, p in enumerate(points) if math.isfinite(float(p[0])) and math.isfinite(float(p[1]))]
    front_set = set(front_idx)
    others = [i for i in valid if i not in front_set]
    if others:
        ax.scatter([points[i][1] for i in others], [points[i][0] for i in others], color="#8fb3d9",
                   s=20, alpha=0.8, label="trials", zorder=2)
    xs_all += [float(points[i][1]) for i in valid]

    valid_set = set(valid)
    front = sorted((i for i in front_idx if i in valid_set), key=lambda i: (points[i][1], -points[i][0]))
    if front:
        fx = [float(points[i][1]) for i in front]
        fy = [float(points[i][0]) for i in front]
        ax.step(fx, fy, where="post", color="#1f4e8c", linewidth=1.6, zorder=3)
        ax.scatter(fx, fy, color="#1f4e8c", s=28, label="Pareto front", zorder=4)

    for k, (name, ref_points) in enumerate(sorted((reference or {}).items())):
        rp = _finite(ref_points)
        if not rp:
            continue
        ax.scatter([p[1] for p in rp], [p[0] for p in rp], marker=_REFERENCE_MARKERS[k % len(_REFERENCE_MARKERS)],
                   s=36, facecolors="none", edgecolors=f"C{(k + 1) % 10}", linewidths=1.4, label=name, zorder=5)
        xs_all += [p[1] for p in rp]

    marked: dict[int, list[str]] = {}
    for label, i in (highlight or {}).items():
        if 0 <= i < len(points) and i in valid_set:
            marked.setdefault(i, []).append(label)  # labels picking the same point share one star
    for n_star, (i, labels) in enumerate(marked.items()):
        s, n = float(points[i][0]), float(points[i][1])
        ax.scatter([n], [s], marker="*", s=170, color="#e8a100", edgecolors="black", linewidths=0.6,
                   label="presets" if n_star == 0 else None, zorder=6)
        ax.annotate(" / ".join(labels), (n, s), xytext=(6, 6), textcoords="offset points", fontsize=9, zorder=7)

    positive = [x for x in xs_all if x > 0]
    if positive and max(positive) / min(positive) > 10:
        ax.set_xscale("log")
        span = math.log10(max(positive) / min(positive))
        ax.xaxis.set_major_locator(LogLocator(base=10))
        ax.xaxis.set_major_formatter(FuncFormatter(format_count))
        if span <= 2:
            ax.xaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
            ax.xaxis.set_minor_formatter(FuncFormatter(format_count))
        else:
            ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.xaxis.set_major_formatter(FuncFormatter(format_count))
    ax.set_xlabel("adapter parameters")
    ax.set_ylabel("GLUE score")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    handles, _labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def hypervolume_plot(curves: dict[str, list[float]], path: PathLike, *, title: str) -> Path:
    """Hypervolume against trial number (1-based), one line per sampler / seed."""
    from matplotlib.ticker import MaxNLocator

    fig = _new_figure(6.4, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    drawn = 0
    for name, values in curves.items():
        ys = [float(v) for v in values]
        if ys:
            ax.plot(range(1, len(ys) + 1), ys, label=name, linewidth=1.5)
            drawn += 1
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel("hypervolume")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.legend(fontsize=8)
    return _save(fig, path)
