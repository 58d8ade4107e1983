"""Pareto front, hypervolume and knee of a (score, params) search; pure logic, numpy only.

Every point is a pair ``(score, params)``: the score (a GLUE number on the 0-100 scale) is
**maximized**, the adapter parameter count is **minimized**. Functions take plain sequences of
pairs and return indices into them, so callers keep their own trial records.

Points whose score or params is NaN or infinite are never on the front (a failed trial that
still produced a record must not win).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np


def _as_array(points: Sequence[Sequence[float]]) -> np.ndarray:
    arr = np.asarray([(float(p[0]), float(p[1])) for p in points], dtype=float)
    return arr.reshape(-1, 2)


def _best_order_key(points: np.ndarray, i: int) -> tuple[float, float, int]:
    """Sort key for "best score": higher score first, then fewer params, then lower index."""
    return (-points[i, 0], points[i, 1], i)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points (score maximized, params minimized).

    A point is dominated when another point is at least as good in both objectives and
    strictly better in one. Identical points do not dominate each other, so duplicates are
    all kept. The result is sorted by params ascending (ties: higher score, then index).
    Non-finite points are skipped.
    """
    arr = _as_array(points)
    if arr.size == 0:
        return []
    finite = np.isfinite(arr).all(axis=1)
    idx = np.flatnonzero(finite)
    if idx.size == 0:
        return []
    # Sweep by params ascending, score descending: a point is on the front iff its score is
    # strictly above every score seen at strictly fewer params, and it equals the best score at
    # its own params (anything below that is dominated by a point with the same params).
    order = sorted(idx.tolist(), key=lambda i: (arr[i, 1], -arr[i, 0], i))
    front: list[int] = []
    best_before = -math.inf  # best score among points with strictly fewer params
    k = 0
    while k < len(order):
        p = arr[order[k], 1]
        group = [i for i in order[k:] if arr[i, 1] == p]
        k += len(group)
        top = arr[group[0], 0]  # group is sorted by score descending
        if top > best_before:
            front.extend(i for i in group if arr[i, 0] == top)
            best_before = top
    return front


def default_reference(task_chance_score: float, max_params: float) -> tuple[float, float]:
    """The reference point used for hypervolumes: ``(chance score, 1.1 * max_params)``.

    ``task_chance_score`` is what a trivial predictor gets on the task's metric (0 for MCC or
    correlation, the majority-class accuracy for accuracy tasks); ``max_params`` is the largest
    adapter size the search space can produce (or observed). The 10 % margin lets the largest
    model still contribute a sliver of area.
    """
    return (float(task_chance_score), 1.1 * float(max_params))


def hypervolume(points: Sequence[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Area dominated by the front of ``points`` and bounded by the reference point.

    Reference-point convention: ``ref = (ref_score, ref_params)`` is the *worst* corner, a
    score lower bound and a params upper bound. The measured region is the union over points
    of the rectangles ``[params, ref_params] x [ref_score, score]``; points that are not
    strictly better than ``ref`` in both objectives add nothing. Units are score points times
    parameters, so hypervolumes are only comparable under the same reference point (see
    :func:`default_reference`).
    """
    ref_score, ref_params = float(ref[0]), float(ref[1])
    arr = _as_array(points)
    front = [i for i in pareto_front(points) if arr[i, 0] > ref_score and arr[i, 1] < ref_params]
    if not front:
        return 0.0
    # On the front sorted by params ascending, scores strictly increase (duplicates aside).
    xs = [arr[i, 1] for i in front] + [ref_params]
    area = 0.0
    for j, i in enumerate(front):
        area += (xs[j + 1] - xs[j]) * (arr[i, 0] - ref_score)
    return float(area)


def hypervolume_curve(points: Sequence[tuple[float, float]], ref: tuple[float, float]) -> list[float]:
    """Hypervolume after each point in order (points in trial order give the search's progress)."""
    return [hypervolume(points[: k + 1], ref) for k in range(len(points))]


def _best_index(arr: np.ndarray, candidates: Sequence[int]) -> int:
    return min(candidates, key=lambda i: _best_order_key(arr, i))


def knee_point(points: Sequence[tuple[float, float]], front_idx: Sequence[int]) -> int:
    """The front point that bulges furthest beyond the chord between the front's extremes.

    Both objectives are min-max normalised over the front (params ascending on x, score on y);
    the extremes are the smallest and the largest front points. Among points lying above the
    chord (better than the straight trade-off), the one at the largest perpendicular distance is
    the knee; ties go to fewer params. A front of one or two distinct points, or one with no point
    above the chord (straight or concave), returns the best-score point.
    """
    if not front_idx:
        raise ValueError("knee_point: the front is empty")
    arr = _as_array(points)
    front = sorted(front_idx, key=lambda i: (arr[i, 1], -arr[i, 0], i))
    best = _best_index(arr, front)
    distinct = {(arr[i, 0], arr[i, 1]) for i in front}
    if len(distinct) < 3:
        return best
    sub = arr[front]
    lo, hi = sub.min(axis=0), sub.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    norm = (sub - lo) / span  # columns: score, params
    x, y = norm[:, 1], norm[:, 0]
    first = int(np.argmin(x))
    last = int(np.argmax(x))
    x0, y0, x1, y1 = x[first], y[first], x[last], y[last]
    length = math.hypot(x1 - x0, y1 - y0)
    if length == 0.0:
        return best
    # Signed distance, positive above the chord (towards higher score / fewer params).
    dist = ((x1 - x0) * (y - y0) - (y1 - y0) * (x - x0)) / length
    j = int(np.argmax(dist))  # first maximum = fewest params among ties
    if dist[j] <= 1e-12:
        return best
    return front[j]


def select_presets(
    points: Sequence[tuple[float, float]], front_idx: Sequence[int], tolerance: float = 1.0
) -> dict[str, int]:
    """Pick the presets a search exports: ``{"best", "smallest", "knee"}`` -> index into points.

    - ``best``: highest score on the front (ties: fewer params, then lower index);
    - ``smallest``: fewest params among front points scoring at least ``best - tolerance``
      (the score is on the 0-100 scale, so the default tolerance is "one point");
    - ``knee``: :func:`knee_point`.

    Labels may name the same index.
    """
    if not front_idx:
        raise ValueError("select_presets: the front is empty")
    if tolerance < 0:
        raise ValueError(f"select_presets: tolerance must be >= 0, got {tolerance}")
    arr = _as_array(points)
    best = _best_index(arr, front_idx)
    floor = arr[best, 0] - tolerance
    near = [i for i in front_idx if arr[i, 0] >= floor]
    smallest = min(near, key=lambda i: (arr[i, 1], -arr[i, 0], i))
    return {"best": best, "smallest": smallest, "knee": knee_point(points, front_idx)}


def hypervolume_text(hv: Optional[float], ref: Optional[Sequence[float]], *, best_score: float = 100.0) -> str:
    """A hypervolume for people: ``4.66e+06 score·params (28.9 % of the box)``. The box runs from the
    reference point to ``best_score`` (100 on the GLUE scale) at zero parameters; ``-`` without a value."""
    if hv is None or not math.isfinite(float(hv)):
        return "-"
    text = f"{float(hv):.3g} score·params"
    if ref is not None:
        box = (best_score - float(ref[0])) * float(ref[1])
        if box > 0:
            text += f" ({100.0 * float(hv) / box:.1f} % of the box from the reference point to score {best_score:g} at 0 params)"
    return text
