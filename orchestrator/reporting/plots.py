"""PNG plots of a search's results: the Pareto front and hypervolume progress, plus the canvas helpers
every plot module shares (allocation figures are in :mod:`orchestrator.reporting.allocation_plots`).

Figures are built with the object-oriented API on an Agg canvas created inside each function
(``matplotlib.figure.Figure`` + ``FigureCanvasAgg``), so importing this module loads nothing,
no global backend or pyplot state is touched, and figures are released when the function
returns. Every function writes its PNG atomically and returns the path.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from increlora.atomic import atomic_path

PathLike = Union[str, "os.PathLike[str]"]
DPI = 120
_REFERENCE_MARKERS = ("s", "^", "D", "v", "P", "X", "h")


def new_figure(width: float, height: float) -> Any:
    """A Figure attached to its own Agg canvas (no pyplot, no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: PathLike, *, tight: bool = True) -> Path:
    """Tight layout (unless the caller laid the figure out), write the PNG atomically, release the figure."""
    try:
        if tight:
            fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI)
    finally:
        fig.clear()
    return Path(path)


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
    intervals: Optional[Sequence[Optional[tuple[float, float]]]] = None,
    single_runs: Optional[list[tuple[float, float]]] = None,
    ylabel: str = "GLUE score",
) -> Path:
    """Score vs adapter parameters with the Pareto front as a step line.

    ``intervals`` (one per point, or None) draws each point's 95 % interval as an error bar (a confirmed
    front: the points are means over seeds); ``single_runs`` draws every trial's own run as small grey dots
    behind them.

    ``points`` are ``(score, params)``; ``front_idx`` indexes them (e.g. from
    :func:`orchestrator.records.pareto.pareto_front`). ``highlight`` marks chosen points with stars and
    labels (label -> index), ``reference`` draws baseline points per method with other markers,
    ``pruned`` draws early-stopped trials as grey crosses, ``ylabel`` names the score (own data's metric).
    The x axis is logarithmic when the parameter counts span more than 10x, and ticks read as K/M.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig = new_figure(7.0, 4.6)
    ax = fig.add_subplot(1, 1, 1)
    xs_all: list[float] = []

    pr = _finite(pruned)
    if pr:
        ax.scatter([p[1] for p in pr], [p[0] for p in pr], marker="x", color="#b0b0b0", s=22,
                   label="pruned", zorder=1)
        xs_all += [p[1] for p in pr]

    sr = _finite(single_runs)
    if sr:
        ax.scatter([p[1] for p in sr], [p[0] for p in sr], color="#c8c8c8", s=12, label="single runs", zorder=1)
        xs_all += [p[1] for p in sr]

    valid = [i for i, p in enumerate(points) if math.isfinite(float(p[0])) and math.isfinite(float(p[1]))]
    if intervals is not None:
        bars = [i for i in valid if i < len(intervals) and intervals[i] is not None]
        if bars:
            ys = [float(points[i][0]) for i in bars]
            ax.errorbar([float(points[i][1]) for i in bars], ys, fmt="none", ecolor="#5b7fa8", elinewidth=1.0, capsize=3,
                        yerr=[[y - float(intervals[i][0]) for y, i in zip(ys, bars)],
                              [float(intervals[i][1]) - y for y, i in zip(ys, bars)]],
                        label="95 % interval (seeds)", zorder=2)
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
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    handles, _labels = ax.get_legend_handles_labels()
    if handles:  # below the axes: a legend inside them can hide a point
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=min(4, len(handles)), fontsize=8, frameon=False)
    return save_figure(fig, path)


def hypervolume_plot(curves: dict[str, list[float]], path: PathLike, *, title: str,
                     numbers: Optional[dict[str, list[int]]] = None, unit: str = "score points × adapter parameters") -> Path:
    """Hypervolume as trials finish, one line per sampler / seed. ``numbers`` gives each value's trial
    number (the numbers of the search's trials table, from 0); without it the x axis counts trials."""
    from matplotlib.ticker import MaxNLocator

    fig = new_figure(6.4, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    drawn = 0
    for name, values in curves.items():
        ys = [float(v) for v in values]
        if ys:
            xs = (numbers or {}).get(name) or list(range(1, len(ys) + 1))
            ax.plot(xs, ys, label=name, linewidth=1.5, marker="o" if numbers else None, markersize=3)
            drawn += 1
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial number (completed trials)" if numbers else "trials")
    ax.set_ylabel(f"hypervolume ({unit})")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def importance_plot(score: dict[str, float], params: dict[str, float], path: PathLike, *, title: str,
                    seed_share: Optional[float] = None) -> Path:
    """Each knob's share of the variance of the two objectives (fANOVA), as horizontal bars, with the seed's
    share of the score variance as a dashed line."""
    knobs = sorted(set(score) | set(params), key=lambda k: score.get(k, 0.0))
    fig = new_figure(7.0, 0.5 * len(knobs) + 1.8)
    ax = fig.add_subplot(1, 1, 1)
    ys = list(range(len(knobs)))
    ax.barh([y + 0.2 for y in ys], [100 * score.get(k, 0.0) for k in knobs], height=0.4, color="#1f4e8c",
            label="score")
    ax.barh([y - 0.2 for y in ys], [100 * params.get(k, 0.0) for k in knobs], height=0.4, color="#e8a100",
            label="adapter parameters")
    if seed_share is not None:
        ax.axvline(100 * seed_share, color="#b22222", linestyle="--", linewidth=1.2,
                   label=f"seed (score): {100 * seed_share:.0f} %")
    ax.set_yticks(ys)
    ax.set_yticklabels(knobs)
    ax.set_xlabel("share of the objective's variance explained (%)")
    ax.set_title(title)
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, path)
