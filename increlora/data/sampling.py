"""Which rows a run sees: seeded (stratified) subsets, and held-out training rows for choosing knobs."""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Union

import numpy as np

from .sources import Source, load_source
from .tasks import GlueError, TaskSpec


def subsample_indices(labels: Sequence[Any] | np.ndarray, n: Optional[int], seed: int, stratify: bool = True) -> np.ndarray:
    """Sorted indices of a seeded random subset of ``n`` rows (all rows when ``n`` is None or >= len).

    With ``stratify`` every label keeps its share: class quotas are ``n * count / total``
    rounded by largest remainder (ties broken by the seed), so each class is within one row
    of its exact proportion. Without it (regression) the subset is plain seeded random.
    """
    labels = np.asarray(labels)
    total = len(labels)
    if n is not None and (isinstance(n, bool) or int(n) != n or n <= 0):
        raise GlueError(f"subset size must be a positive integer, got {n!r}")
    if n is None or n >= total:
        return np.arange(total, dtype=np.int64)
    n = int(n)
    rng = np.random.default_rng(seed)
    if not stratify:
        return np.sort(rng.choice(total, size=n, replace=False)).astype(np.int64)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    exact = n * counts / total
    quotas = np.floor(exact).astype(np.int64)
    remainder = exact - quotas
    short = n - int(quotas.sum())
    if short:
        tiebreak = rng.random(len(classes))
        order = np.lexsort((tiebreak, -remainder))  # largest remainder first, seeded ties
        quotas[order[:short]] += 1
    picked = [
        rng.choice(np.flatnonzero(inverse == k), size=int(q), replace=False)
        for k, q in enumerate(quotas)
        if q > 0
    ]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def split_training_rows(
    spec: TaskSpec,
    labels: np.ndarray,
    train_samples: Optional[int],
    holdout_samples: Optional[int],
    seed: int,
) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Indices of the training subset and (with ``holdout_samples``) of the held-out rows drawn, seeded
    and stratified, from the training-file rows the subset left out; ``None`` for no hold-out."""
    stratify = not spec.is_regression
    labels = np.asarray(labels)
    train_idx = subsample_indices(labels, train_samples, seed, stratify)
    if holdout_samples is None:
        return train_idx, None
    rest = np.setdiff1d(np.arange(len(labels)), train_idx)
    if len(rest) < holdout_samples:
        raise GlueError(
            f"--holdout-samples {holdout_samples}: only {len(rest)} of the {len(labels)} training rows of "
            f"{spec.folder} are left outside the training subset; lower --holdout-samples or --train-samples"
        )
    return train_idx, rest[subsample_indices(labels[rest], holdout_samples, seed + 1, stratify)]


def holdout_labels(
    task: Source,
    data_dir: Union[str, os.PathLike, None],
    *,
    train_samples: Optional[int],
    holdout_samples: int,
    seed: int,
) -> np.ndarray:
    """The labels of the held-out rows a run with these settings is scored on (no tokenising), e.g. for
    the majority-class score of that evaluation set. ``task``: a GLUE task or :class:`OwnData`."""
    loaded = load_source(task, data_dir, need_eval=False)
    labels = loaded.splits["train"].labels
    _, holdout_idx = split_training_rows(loaded.spec, labels, train_samples, holdout_samples, seed)
    assert holdout_idx is not None
    return np.asarray(labels)[holdout_idx]
