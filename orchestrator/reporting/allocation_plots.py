"""PNG plots of rank allocations: the per-trial heatmap (layers x module types), heatmap grids on one
colour scale, the growth timeline of a trial and the rank per module type / per layer of several
trials. Same conventions as :mod:`orchestrator.reporting.plots` (Agg canvas per figure, atomic writes).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Sequence

from increlora.naming import MODULE_TYPE_LABELS, MODULE_TYPES, parse_key
from orchestrator.reporting.plots import PathLike, new_figure, save_figure


def allocation_matrix(allocation: dict[str, int]) -> tuple[list[int], list[str], list[list[Optional[int]]]]:
    """``{module: rank}`` -> (layers, module types, grid[layer][type]); accepts full module names
    (``bert.encoder.layer.3.attention.self.query``) and short keys (``L03.q``, ``rank/L03.1q``).
    Modules that are neither are ignored; a missing cell is None."""
    cells: dict[tuple[int, str], int] = {}
    for name, rank in allocation.items():
        layer, mtype = parse_key(name)
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
    """Heatmap of final ranks: layers (rows ``L00``...) x module types (columns), annotated cells, on the
    square-root colour scale of :func:`rank_norm`.

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
    fig = new_figure(1.2 * len(types) + 2.4, 0.42 * len(layers) + 1.6)
    ax = fig.add_subplot(1, 1, 1)
    cmap = _cmap_with_bad("viridis")
    norm = rank_norm(lo, hi)
    im = ax.imshow(data, cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(types)), [MODULE_TYPE_LABELS.get(t, t) for t in types])
    ax.set_yticks(range(len(layers)), [f"L{layer:02d}" for layer in layers])
    ax.set_xlabel("module type")
    ax.set_ylabel("layer")
    ax.set_title(title)
    for r, row in enumerate(grid):
        for c, value in enumerate(row):
            if value is None:
                continue
            ax.text(c, r, str(value), ha="center", va="center", fontsize=9, color=_text_color(norm, value))
    cbar = fig.colorbar(im, ax=ax)
    cbar.set_label("rank")
    cbar.locator = MaxNLocator(integer=True)
    cbar.update_ticks()
    return save_figure(fig, path)


def rank_norm(lo: float, hi: float) -> Any:
    """The colour scale of rank heatmaps: a square-root scale from ``lo`` to ``hi``, so that a search whose
    largest module reached rank 37 still shows ranks 1, 2 and 3 in clearly different colours."""
    from matplotlib.colors import PowerNorm

    return PowerNorm(gamma=0.5, vmin=lo, vmax=hi)


def _text_color(norm: Any, value: float) -> str:
    return "black" if float(norm(value)) > 0.6 else "white"


def _cmap_with_bad(name: str) -> Any:
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad="#dddddd")



_TYPE_COLORS = {"q": "C0", "k": "C1", "v": "C2", "o": "C3", "f1": "C4", "f2": "C5"}


def _place(name: str) -> tuple[Optional[int], Optional[str]]:
    return parse_key(name)


def _module_order(names: Sequence[str]) -> list[str]:
    """Module names by layer, then q k v o f1 f2; names without a layer/type last, by name."""
    def key(name: str) -> tuple:
        layer, mtype = _place(name)
        if layer is None or mtype is None:
            return (1, 0, 0, name)
        return (0, layer, MODULE_TYPES.index(mtype), name)

    return sorted(set(names), key=key)


def _short(name: str) -> str:
    layer, mtype = _place(name)
    return name if layer is None or mtype is None else f"L{layer:02d}.{mtype}"


def growth_timeline(
    events: Sequence[dict[str, Any]],
    allocation: dict[str, int],
    path: PathLike,
    *,
    title: str,
    total_steps: Optional[int] = None,
) -> Path:
    """Which module gained rank at which step.

    ``events`` are the trainer's ``growth_events`` (``{step, module, added, rank}``), ``allocation``
    the final ranks. Top: the total rank against the step. Bottom: one row per module (layer, then
    q k v o f1 f2), a marker at every growth step sized by the ranks added and coloured by module
    type, the final rank at the right. A trial without growth events gets a note instead.
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    evs = [e for e in events or [] if "step" in e and "module" in e]
    modules = _module_order([*allocation.keys(), *(str(e["module"]) for e in evs)])
    if not modules:
        raise ValueError("growth_timeline: no modules")
    final = {m: int(allocation.get(m, 0)) for m in modules}
    for e in evs:  # a module missing from the allocation: its last recorded rank
        if str(e["module"]) not in allocation and "rank" in e:
            final[str(e["module"])] = int(e["rank"])
    added_total = sum(int(e.get("added", 0)) for e in evs)
    end = int(total_steps) if total_steps else max([int(e["step"]) for e in evs] or [1])

    fig = new_figure(8.0, 2.2 + max(1.6, 0.17 * len(modules)) + 0.9)
    gs = fig.add_gridspec(2, 1, height_ratios=[1.6, max(1.6, 0.17 * len(modules))])
    top = fig.add_subplot(gs[0])
    ax = fig.add_subplot(gs[1], sharex=top)

    steps = sorted({int(e["step"]) for e in evs})
    total = sum(final.values()) - added_total
    xs, ys = [0], [total]
    for s in steps:
        total += sum(int(e.get("added", 0)) for e in evs if int(e["step"]) == s)
        xs.append(s)
        ys.append(total)
    xs.append(max(end, xs[-1]))
    ys.append(ys[-1])
    top.step(xs, ys, where="post", color="#1f4e8c", linewidth=1.6)
    top.set_ylabel("total rank")
    top.yaxis.set_major_locator(MaxNLocator(integer=True))
    top.set_title(title)
    top.grid(True, alpha=0.3)
    top.tick_params(labelbottom=False)

    row = {m: i for i, m in enumerate(modules)}
    for mtype in MODULE_TYPES:
        sel = [e for e in evs if _place(str(e["module"]))[1] == mtype]
        if sel:
            ax.scatter([int(e["step"]) for e in sel], [row[str(e["module"])] for e in sel],
                       s=[18 + 22 * int(e.get("added", 1)) for e in sel], color=_TYPE_COLORS[mtype],
                       alpha=0.85, edgecolors="black", linewidths=0.3, zorder=3)
    other = [e for e in evs if _place(str(e["module"]))[1] is None]
    if other:
        ax.scatter([int(e["step"]) for e in other], [row[str(e["module"])] for e in other], color="grey", s=24)
    ax.set_yticks(range(len(modules)), [_short(m) for m in modules], fontsize=7)
    ax.set_ylim(len(modules) - 0.5, -0.5)
    ax.set_xlim(-0.02 * max(end, 1), max(end, 1) * 1.02)
    ax.set_xlabel("training step")
    ax.set_ylabel("module")
    ax.grid(True, axis="x", alpha=0.3)
    for m in modules:  # the final rank, right of the plot
        ax.annotate(f"r={final[m]}", (1.01, row[m]), xycoords=("axes fraction", "data"), va="center", fontsize=7,
                    annotation_clip=False)
    if not evs:
        ax.text(0.5, 0.5, "no growth events in this trial", transform=ax.transAxes, ha="center", va="center",
                fontsize=11, color="#555555")
    present = [t for t in MODULE_TYPES if any(_place(m)[1] == t for m in modules)]
    handles = [Line2D([], [], marker="o", linestyle="", color=_TYPE_COLORS[t], label=MODULE_TYPE_LABELS.get(t, t))
               for t in present]
    if handles:
        top.legend(handles=handles, loc="lower right", fontsize=7, ncol=min(3, len(handles)),
                   title="module type (marker size = ranks added)", title_fontsize=7)
    return save_figure(fig, path)


def allocation_profile(
    allocations: Sequence[tuple[str, dict[str, int]]],
    path: PathLike,
    *,
    title: str,
) -> Path:
    """Where the rank went, trial by trial (e.g. the Pareto front from small to large budget):
    left, the total rank per module type; right, per layer; one stacked bar per trial.
    ``allocations`` are ``(bar label, {module: rank})`` in the order to draw."""
    import numpy as np

    items = [(label, alloc) for label, alloc in allocations if alloc]
    if not items:
        raise ValueError("allocation_profile: no allocations")
    by_type = []
    by_layer = []
    layers: set[int] = set()
    for _label, alloc in items:
        t_sum: dict[str, int] = {}
        l_sum: dict[int, int] = {}
        for name, rank in alloc.items():
            layer, mtype = _place(name)
            if layer is None or mtype is None:
                continue
            t_sum[mtype] = t_sum.get(mtype, 0) + int(rank)
            l_sum[layer] = l_sum.get(layer, 0) + int(rank)
            layers.add(layer)
        by_type.append(t_sum)
        by_layer.append(l_sum)
    types = [t for t in MODULE_TYPES if any(t in d for d in by_type)]
    layer_list = sorted(layers)
    if not types:
        raise ValueError("allocation_profile: no module names with a layer and a module type")
    x = np.arange(len(items))
    fig = new_figure(max(7.0, 2.0 + 1.1 * len(items)), 4.2)
    ax_t = fig.add_subplot(1, 2, 1)
    ax_l = fig.add_subplot(1, 2, 2, sharey=ax_t)
    bottom = np.zeros(len(items))
    for t in types:
        vals = np.array([d.get(t, 0) for d in by_type], dtype=float)
        ax_t.bar(x, vals, bottom=bottom, color=_TYPE_COLORS[t], label=MODULE_TYPE_LABELS.get(t, t), width=0.7)
        bottom += vals
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    bottom = np.zeros(len(items))
    for k, layer in enumerate(layer_list):
        vals = np.array([d.get(layer, 0) for d in by_layer], dtype=float)
        color = cmap(k / max(1, len(layer_list) - 1))
        ax_l.bar(x, vals, bottom=bottom, color=color, label=f"L{layer:02d}", width=0.7)
        bottom += vals
    labels = [label for label, _ in items]
    for ax, name in ((ax_t, "by module type"), (ax_l, "by layer")):
        ax.set_xticks(x, labels, fontsize=7, rotation=0)
        ax.set_title(name, fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
    ax_t.set_ylabel("total rank")
    ax_t.legend(fontsize=7, loc="upper left")
    ax_l.legend(fontsize=7, loc="upper left", ncol=2 if len(layer_list) > 6 else 1)
    fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)


def heatmap_grid(
    items: Sequence[tuple[str, dict[str, int]]],
    path: PathLike,
    *,
    vmin: float = 0.0,
    vmax: Optional[float] = None,
    ncols: int = 4,
    title: Optional[str] = None,
) -> Path:
    """Several allocation heatmaps side by side on ONE colour scale with one colour bar.

    ``items`` are ``(panel title, {module: rank})`` in reading order; ``vmax`` defaults to the
    largest rank drawn. Panels wrap after ``ncols``. Raises ValueError when nothing can be placed.
    """
    import numpy as np

    panels = []
    for name, alloc in items:
        layers, types, grid = allocation_matrix(alloc or {})
        if layers:
            panels.append((name, layers, types, grid))
    if not panels:
        raise ValueError("heatmap_grid: no allocation with a layer and a module type")
    hi = float(vmax) if vmax is not None else float(max(v for p in panels for row in p[3] for v in row if v is not None))
    lo = float(vmin)
    if hi <= lo:
        hi = lo + 1.0
    ncols = max(1, min(int(ncols), len(panels)))
    nrows = math.ceil(len(panels) / ncols)
    n_types = max(len(p[2]) for p in panels)
    n_layers = max(len(p[1]) for p in panels)
    cell_w, cell_h = 0.5, 0.34
    fig = new_figure(ncols * (cell_w * n_types + 0.9) + 1.0, nrows * (cell_h * n_layers + 1.25) + (0.4 if title else 0.0))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    cmap = _cmap_with_bad("viridis")
    im = None
    for k, ax in enumerate(axes.flat):
        if k >= len(panels):
            ax.set_axis_off()
            continue
        name, layers, types, grid = panels[k]
        data = np.ma.masked_invalid(np.array([[np.nan if v is None else v for v in row] for row in grid], dtype=float))
        norm = rank_norm(lo, hi)
        im = ax.imshow(data, cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
        ax.set_xticks(range(len(types)), [t for t in types], fontsize=8)
        ax.set_yticks(range(len(layers)), [f"L{layer:02d}" for layer in layers], fontsize=8)
        ax.set_title(name, fontsize=9)
        for r, row in enumerate(grid):
            for c, value in enumerate(row):
                if value is not None:
                    ax.text(c, r, str(value), ha="center", va="center", fontsize=8, color=_text_color(norm, value))
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.subplots_adjust(right=0.86)
    cax = fig.add_axes((0.89, 0.15, 0.018, 0.7))
    from matplotlib.ticker import MaxNLocator

    cbar = fig.colorbar(im, cax=cax)
    cbar.set_label("rank")
    cbar.locator = MaxNLocator(integer=True)
    cbar.update_ticks()
    return save_figure(fig, path, tight=False)
