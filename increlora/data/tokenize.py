"""Tokenisation: a task's rows (a GLUE task or your own data), loaded and subsampled, tokenised once into
:class:`PreparedData`.

Typical use::

    data = prepare_data("cola", tokenizer, data_dir="glue_data", train_samples=2000)
    for batch in batches(data.train, 32, pad_id=tokenizer.pad_token_id, shuffle=True, epoch=0):
        ...
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np

from .own import OwnData
from .readers import RawSplit
from .sampling import split_training_rows, subsample_indices
from .sources import Source, load_source
from .tasks import GlueError, TaskSpec, get_task

_TOKENIZE_CHUNK = 8192


@dataclass
class Split:
    """A tokenised split: unpadded token ids per row and the labels."""

    input_ids: list[list[int]]
    token_type_ids: Optional[list[list[int]]]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def is_regression(self) -> bool:
        """True when the labels are float scores."""
        return self.labels.dtype.kind == "f"

    def lengths(self) -> np.ndarray:
        """Token count of each row."""
        return np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64, count=len(self.input_ids))


@dataclass
class PreparedData:
    """A task ready for training: tokenised train and eval splits plus what the trainer needs.

    ``train_size`` is the number of training rows; ``eval_size`` the number of eval rows summed
    over the eval splits; ``source`` the TSV folder, the hub dataset or the files the rows came from;
    ``spec`` the task (own data's is built from its rows); ``fingerprint`` identifies the data
    (:meth:`increlora.data.sources.LoadedData.fingerprint`).
    """

    task: str
    train: Split
    evals: dict[str, Split]
    num_labels: int
    is_regression: bool
    max_length: int
    tokenizer_name: str
    train_size: int
    eval_size: int
    label_names: tuple[str, ...] = ()
    source: str = ""
    spec: Optional[TaskSpec] = None
    fingerprint: dict[str, Any] = field(default_factory=dict)

    @property
    def task_spec(self) -> TaskSpec:
        """The task's spec (a GLUE task's from the registry when ``spec`` is unset)."""
        return self.spec if self.spec is not None else get_task(self.task)


def tokenize_split(raw: RawSplit, tokenizer: Any, max_length: int) -> Split:
    """Tokenise ``raw`` once, in batches, with truncation to ``max_length`` and no padding."""
    ids: list[list[int]] = []
    types: Optional[list[list[int]]] = []
    for start in range(0, len(raw), _TOKENIZE_CHUNK):
        stop = start + _TOKENIZE_CHUNK
        args: list[list[str]] = [raw.text_a[start:stop]]
        if raw.text_b is not None:
            args.append(raw.text_b[start:stop])
        enc = tokenizer(*args, truncation=True, max_length=max_length, padding=False)
        ids.extend(list(x) for x in enc["input_ids"])
        chunk_types = enc.get("token_type_ids")
        if chunk_types is None:
            types = None
        elif types is not None:
            types.extend(list(x) for x in chunk_types)
    return Split(input_ids=ids, token_type_ids=types, labels=np.asarray(raw.labels).copy())


def _check_max_length(tokenizer: Any, max_length: int, pair: bool) -> None:
    if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)) or max_length <= 0:
        raise GlueError(f"max_length must be a positive integer, got {max_length!r}")
    special = int(tokenizer.num_special_tokens_to_add(pair=pair)) if hasattr(tokenizer, "num_special_tokens_to_add") else 0
    if max_length <= special + (1 if pair else 0):
        raise GlueError(f"max_length {max_length} leaves no room for text next to {special} special tokens; raise --max-length")
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and model_max < 1_000_000 and max_length > model_max:
        raise GlueError(f"max_length {max_length} exceeds the model's limit of {model_max} tokens; lower --max-length")


def prepare_data(
    task: Source,
    tokenizer: Any,
    *,
    data_dir: Union[str, os.PathLike, None] = None,
    train_samples: Optional[int] = None,
    eval_samples: Optional[int] = None,
    max_length: int = 128,
    seed: int = 42,
    holdout_samples: Optional[int] = None,
    eval_seed: Optional[int] = None,
) -> PreparedData:
    """Load, subsample and tokenise a task: a GLUE task's name, or your own data (:class:`OwnData`, e.g.
    from :func:`increlora.data.data_source`; ``data_dir`` is for GLUE only).

    ``train_samples`` / ``eval_samples`` take seeded random subsets (stratified by label for
    classification; the eval limit applies to each eval split). Texts are tokenised once with
    ``tokenizer`` (a Hugging Face tokenizer), truncated to ``max_length``, unpadded.

    ``holdout_samples``: evaluate on that many *training-file* rows instead of the dev set - a seeded,
    stratified draw from the rows the training subset left out (the training subset itself is the
    same as without it), so knobs can be chosen without ever looking at dev (eval split ``holdout``).

    ``eval_seed``: the seed of the dev subset (default ``seed``), so runs on several training seeds can be
    scored on the same dev rows.
    """
    own = isinstance(task, OwnData)
    if not own:
        _check_max_length(tokenizer, max_length, get_task(task).is_pair)
    loaded = load_source(task, data_dir, need_eval=holdout_samples is None)
    spec = loaded.spec
    if own:
        _check_max_length(tokenizer, max_length, spec.is_pair)
    raw = loaded.splits
    stratify = not spec.is_regression

    full_train = raw["train"]
    train_idx, holdout_idx = split_training_rows(spec, full_train.labels, train_samples, holdout_samples, seed)
    train_raw = full_train.select(train_idx)
    evals: dict[str, Split] = {}
    if holdout_idx is not None:
        evals["holdout"] = tokenize_split(full_train.select(holdout_idx), tokenizer, max_length)
    else:
        for split in spec.eval_splits:
            part = raw[split]
            part = part.select(subsample_indices(part.labels, eval_samples, seed if eval_seed is None else eval_seed,
                                                  stratify))
            evals[split] = tokenize_split(part, tokenizer, max_length)
    train = tokenize_split(train_raw, tokenizer, max_length)
    return PreparedData(
        task=spec.name,
        train=train,
        evals=evals,
        num_labels=spec.num_labels,
        is_regression=spec.is_regression,
        max_length=int(max_length),
        tokenizer_name=str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__),
        train_size=len(train),
        eval_size=sum(len(s) for s in evals.values()),
        label_names=spec.label_names,
        source=loaded.source,
        spec=spec,
        fingerprint=loaded.fingerprint(),
    )
