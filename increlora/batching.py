"""Batches of a tokenised split: which rows go together, and padding them into tensors.

Two orders, both seeded and repeatable:

- training (``shuffle=True``): a permutation seeded by ``(seed, epoch)``; with ``group_by_length``
  (the default of the trainer) the permutation is cut into *mega-batches* of up to 50 batches, each
  mega-batch is sorted by length (longest first), cut into batches, and the batches are shuffled
  again (seeded). This is Hugging Face's ``group_by_length`` idea: rows of similar length share a
  batch, so little padding is computed, while every epoch still sees a fresh random mix;
- evaluation (``shuffle=False``): rows in file order, or - with ``group_by_length`` - sorted by
  length (longest first). :func:`batch_indices` returns the row indices of each batch, so a caller
  that sorted can put predictions back in the original order.

``torch`` is imported only by :func:`collate`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .data import Split

# Hugging Face's LengthGroupedSampler uses mega-batches of 50 batches (fewer for small sets).
MEGABATCH_BATCHES = 50


def num_batches(n_rows: int, batch_size: int, drop_last: bool = False) -> int:
    """How many batches :func:`batch_indices` gives for ``n_rows`` rows."""
    return n_rows // batch_size if drop_last else math.ceil(n_rows / batch_size)


def _chunks(order: np.ndarray, size: int) -> list[np.ndarray]:
    return [order[i : i + size] for i in range(0, len(order), size)]


def megabatch_size(n_rows: int, batch_size: int) -> int:
    """Rows per mega-batch: ``batch_size * min(50, n_rows // (4 * batch_size))``, at least one batch."""
    return batch_size * max(1, min(MEGABATCH_BATCHES, n_rows // (4 * batch_size)))


def batch_indices(
    lengths: Sequence[int] | np.ndarray,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    epoch: int = 0,
    group_by_length: bool = False,
    drop_last: bool = False,
) -> list[np.ndarray]:
    """Row indices of every batch, in the order the batches are used (see the module docstring)."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    lengths = np.asarray(lengths, dtype=np.int64)
    n = len(lengths)
    if not shuffle:
        order = np.argsort(-lengths, kind="stable") if group_by_length else np.arange(n)
        out = _chunks(order, batch_size)
    elif not group_by_length:
        out = _chunks(np.random.default_rng([int(seed), int(epoch)]).permutation(n), batch_size)
    else:
        rng = np.random.default_rng([int(seed), int(epoch)])
        order = rng.permutation(n)
        out = []
        for mega in _chunks(order, megabatch_size(n, batch_size)):
            out += _chunks(mega[np.argsort(-lengths[mega], kind="stable")], batch_size)
        out = [out[i] for i in rng.permutation(len(out))]
    if drop_last:
        out = [b for b in out if len(b) == batch_size]
    return out


def collate(split: "Split", idx: np.ndarray, *, pad_id: int) -> dict[str, "torch.Tensor"]:
    """Rows ``idx`` of ``split`` as tensors: ``input_ids`` (padded with ``pad_id`` to the longest row),
    ``attention_mask``, ``token_type_ids`` (when the split has them, padded with 0) and ``labels``
    (int64, or float32 for regression)."""
    import torch  # noqa: PLC0415 - keep module import light

    rows = [split.input_ids[i] for i in idx]
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    types = np.zeros((len(rows), width), dtype=np.int64) if split.token_type_ids is not None else None
    for j, (i, row) in enumerate(zip(idx, rows)):
        ids[j, : len(row)] = row
        mask[j, : len(row)] = 1
        if types is not None:
            tt = split.token_type_ids[i]  # type: ignore[index]
            types[j, : len(tt)] = tt
    label_dtype = torch.float32 if split.is_regression else torch.long
    batch = {
        "input_ids": torch.from_numpy(ids),
        "attention_mask": torch.from_numpy(mask),
        "labels": torch.as_tensor(split.labels[np.asarray(idx)], dtype=label_dtype),
    }
    if types is not None:
        batch["token_type_ids"] = torch.from_numpy(types)
    return batch


def batches(split: "Split", batch_size: int, *, pad_id: int, **order: Any) -> Iterator[dict[str, "torch.Tensor"]]:
    """Yield the padded batches of ``split``: :func:`batch_indices` (``order``: shuffle, seed, epoch,
    group_by_length, drop_last) then :func:`collate`."""
    for idx in batch_indices(split.lengths(), batch_size, **order):
        yield collate(split, idx, pad_id=pad_id)
