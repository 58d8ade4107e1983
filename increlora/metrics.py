"""GLUE metrics (scikit-learn / scipy) on the 0-100 scale, and the per-task GLUE score.

=========  ==========================  ==============================
task       compute_metrics keys        glue_score
=========  ==========================  ==============================
CoLA       mcc                         mcc
MRPC, QQP  accuracy, f1                mean(f1, accuracy)
STS-B      pearson, spearman           mean(pearson, spearman)
MNLI       accuracy (per eval split)   mean over matched/mismatched
others     accuracy                    accuracy
own data   its --metric                that metric
=========  ==========================  ==============================

``task`` is a GLUE task's name or a :class:`~increlora.data.TaskSpec` (own data's comes with its data).
With two classes F1 is the F1 of class 1; own data with more classes gets the macro F1.
"""

from __future__ import annotations

from typing import Mapping, Sequence, Union

import numpy as np

from increlora.data import TaskSpec, get_task

ArrayLike = Union[Sequence[float], np.ndarray]
Task = Union[str, TaskSpec]


def main_metric_names(task: Task) -> list[str]:
    """The metrics that make up the task's GLUE score (the first is the headline one)."""
    return list(get_task(task).metric_names)


def _as_class_ids(predictions: ArrayLike) -> np.ndarray:
    """Class ids from ids (1-D) or from logits / probabilities (2-D, argmax)."""
    pred = np.asarray(predictions)
    if pred.ndim == 2:
        pred = pred.argmax(axis=-1)
    return pred.astype(np.int64).reshape(-1)


def _correlation(kind: str, a: np.ndarray, b: np.ndarray) -> float:
    """Pearson or Spearman correlation; 0.0 when undefined (constant or non-finite input)."""
    from scipy import stats  # noqa: PLC0415 - keep module import light

    if len(a) < 2 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return 0.0
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    value = stats.pearsonr(a, b)[0] if kind == "pearson" else stats.spearmanr(a, b)[0]
    value = float(value)
    return value if np.isfinite(value) else 0.0


def compute_metrics(task: Task, predictions: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """The task's metrics on the 0-100 scale (the GLUE task's, or own data's --metric).

    ``predictions`` are class ids (or 2-D logits, reduced by argmax); for regression they are scores.
    Degenerate inputs give 0.0 instead of NaN or warnings: constant predictions (MCC,
    correlations), no predicted positive (F1).
    """
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef  # noqa: PLC0415

    spec = get_task(task)
    gold = np.asarray(labels).reshape(-1)
    if spec.is_regression:
        pred = np.asarray(predictions, dtype=np.float64).reshape(-1)
    else:
        pred = _as_class_ids(predictions)
    if len(pred) != len(gold):
        raise ValueError(f"{len(pred)} predictions for {len(gold)} labels")
    if len(gold) == 0:
        raise ValueError("no predictions to score")

    names = spec.metric_names
    if spec.is_regression:
        gold = gold.astype(np.float64)
        return {m: 100.0 * _correlation(m, pred, gold) for m in ("pearson", "spearman") if m in names}
    gold = gold.astype(np.int64)
    out: dict[str, float] = {}
    if "accuracy" in names:
        out["accuracy"] = 100.0 * float(accuracy_score(gold, pred))
    if "f1" in names:
        if spec.num_labels == 2:
            out["f1"] = 100.0 * float(f1_score(gold, pred, pos_label=1, average="binary", zero_division=0))
        else:
            out["f1"] = 100.0 * float(f1_score(gold, pred, average="macro", zero_division=0))
    if "mcc" in names:
        out["mcc"] = 100.0 * float(matthews_corrcoef(gold, pred))
    return out


def _lookup(metrics: Mapping[str, float], name: str, splits: Sequence[str], prefer_splits: bool) -> float:
    """``metrics[name]``, or the mean of ``metrics[f"{split}/{name}"]`` over the splits present."""
    per_split = [float(metrics[f"{s}/{name}"]) for s in splits if f"{s}/{name}" in metrics]
    if per_split and (prefer_splits or name not in metrics):
        return float(np.mean(per_split))
    if name in metrics:
        return float(metrics[name])
    wanted = " or ".join([repr(name)] + [repr(f"{s}/{name}") for s in splits])
    raise KeyError(f"metric {wanted} missing; got {sorted(metrics)}")


def glue_score(task: Task, metrics: Mapping[str, float]) -> float:
    """The task's GLUE number (0-100) from :func:`compute_metrics` output (own data: its --metric).

    Keys may be plain (``"accuracy"``) or prefixed by the eval split (``"validation/accuracy"``).
    For MNLI the split-prefixed keys (``validation_matched/accuracy``,
    ``validation_mismatched/accuracy``) are averaged when present, else ``accuracy`` is used.
    """
    spec = get_task(task)
    prefer_splits = spec.is_glue and spec.name == "mnli"
    values = [_lookup(metrics, m, spec.eval_splits, prefer_splits) for m in main_metric_names(spec)]
    return float(np.mean(values))
