"""GLUE tasks: registry, loaders (original TSV folders or the Hugging Face hub), subsampling
and tokenisation (batching is :mod:`increlora.batching`).

Nothing heavy is imported at module import time: ``datasets`` is imported only for the hub
fallback.

Typical use::

    data = prepare_data("cola", tokenizer, data_dir="glue_data", train_samples=2000)
    for batch in batches(data.train, 32, pad_id=tokenizer.pad_token_id, shuffle=True, epoch=0):
        ...
"""

from __future__ import annotations

import csv
import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union
from urllib.parse import urlparse

import numpy as np

log = logging.getLogger(__name__)

HUB_DATASET = "nyu-mll/glue"
HUB_UNREACHABLE = (
    "no GLUE data: pass --data-dir DIR (original GLUE TSV folders) or set GLUE_DIR; "
    "the Hugging Face hub is unreachable"
)
_PROBE_TIMEOUT_S = 3.0
_TOKENIZE_CHUNK = 8192
# A file whose malformed rows exceed this share is taken to be in the wrong layout.
_MAX_MALFORMED_SHARE = 0.01
# MNLI rows without a gold label (no annotator consensus) carry this marker.
_NO_LABEL = "-"


class GlueError(ValueError):
    """GLUE data cannot be found, read or prepared; the message says what to fix."""


@dataclass(frozen=True)
class TaskSpec:
    """Static description of one GLUE task.

    ``text_columns`` are the Hugging Face ``nyu-mll/glue`` column names; the ``tsv_*`` fields
    describe the original GLUE TSV files (a column name, or a 0-based position for CoLA,
    whose files have no header).
    """

    name: str
    folder: str
    text_columns: tuple[str, ...]
    num_labels: int
    is_regression: bool
    label_names: tuple[str, ...]
    eval_splits: tuple[str, ...]
    main_metric: str
    metric_names: tuple[str, ...]
    tsv_text_columns: tuple[Union[str, int], ...]
    tsv_label_column: Union[str, int]
    tsv_has_header: bool = True
    tsv_eval_files: tuple[str, ...] = ("dev.tsv",)

    @property
    def is_pair(self) -> bool:
        """True when each example is a sentence pair."""
        return len(self.text_columns) == 2

    def tsv_file(self, split: str) -> str:
        """The TSV file name of ``split`` (``train`` or one of :attr:`eval_splits`)."""
        if split == "train":
            return "train.tsv"
        try:
            return self.tsv_eval_files[self.eval_splits.index(split)]
        except ValueError:
            valid = ", ".join(("train",) + self.eval_splits)
            raise GlueError(f"unknown split {split!r} for {self.folder}: use one of {valid}") from None


def _spec(name: str, folder: str, text: tuple[str, ...], labels: tuple[str, ...], metrics: tuple[str, ...],
          tsv_text: tuple[Union[str, int], ...], tsv_label: Union[str, int], **kw: Any) -> TaskSpec:
    regression = not labels
    return TaskSpec(
        name=name, folder=folder, text_columns=text, num_labels=1 if regression else len(labels),
        is_regression=regression, label_names=labels, eval_splits=kw.pop("eval_splits", ("validation",)),
        main_metric=metrics[0], metric_names=metrics, tsv_text_columns=tsv_text, tsv_label_column=tsv_label, **kw,
    )


_BINARY_NLI = ("entailment", "not_entailment")
TASKS: dict[str, TaskSpec] = {
    s.name: s
    for s in (
        _spec("cola", "CoLA", ("sentence",), ("unacceptable", "acceptable"), ("mcc",), (3,), 1, tsv_has_header=False),
        _spec("sst2", "SST-2", ("sentence",), ("negative", "positive"), ("accuracy",), ("sentence",), "label"),
        _spec("mrpc", "MRPC", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), ("f1", "accuracy"),
              ("#1 String", "#2 String"), "Quality"),
        _spec("qqp", "QQP", ("question1", "question2"), ("not_duplicate", "duplicate"), ("f1", "accuracy"),
              ("question1", "question2"), "is_duplicate"),
        _spec("stsb", "STS-B", ("sentence1", "sentence2"), (), ("pearson", "spearman"),
              ("sentence1", "sentence2"), "score"),
        _spec("mnli", "MNLI", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), ("accuracy",),
              ("sentence1", "sentence2"), "gold_label",
              eval_splits=("validation_matched", "validation_mismatched"),
              tsv_eval_files=("dev_matched.tsv", "dev_mismatched.tsv")),
        _spec("qnli", "QNLI", ("question", "sentence"), _BINARY_NLI, ("accuracy",), ("question", "sentence"), "label"),
        _spec("rte", "RTE", ("sentence1", "sentence2"), _BINARY_NLI, ("accuracy",), ("sentence1", "sentence2"), "label"),
        _spec("wnli", "WNLI", ("sentence1", "sentence2"), ("not_entailment", "entailment"), ("accuracy",),
              ("sentence1", "sentence2"), "label"),
    )
}


def _squash(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def normalize_task(name: str) -> str:
    """Return the registry key of a task name: ``"SST-2"``, ``"sst-2"``, ``"sst2"`` -> ``"sst2"``.

    Case, hyphens, underscores and spaces are ignored. Unknown names raise :class:`GlueError`.
    """
    key = _squash(str(name))
    for spec in TASKS.values():
        if key in (spec.name, _squash(spec.folder)):
            return spec.name
    raise GlueError(f"unknown GLUE task {name!r}: use one of {', '.join(TASKS)}")


def get_task(name: str) -> TaskSpec:
    """The :class:`TaskSpec` of a task, under any spelling :func:`normalize_task` accepts."""
    return TASKS[normalize_task(name)]


# --------------------------------------------------------------------------------------------
# Raw rows
# --------------------------------------------------------------------------------------------


@dataclass
class RawSplit:
    """One split as text columns plus labels (int64 class ids, or float32 scores for STS-B)."""

    text_a: list[str]
    text_b: Optional[list[str]]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.text_a)

    def select(self, indices: Sequence[int] | np.ndarray) -> "RawSplit":
        """The rows at ``indices``, in that order."""
        idx = [int(i) for i in indices]
        return RawSplit(
            text_a=[self.text_a[i] for i in idx],
            text_b=None if self.text_b is None else [self.text_b[i] for i in idx],
            labels=self.labels[np.asarray(idx, dtype=np.int64)],
        )


def resolve_data_dir(data_dir: Union[str, os.PathLike, None] = None) -> Optional[Path]:
    """``data_dir``, else ``$GLUE_DIR``, else None (meaning: use the hub)."""
    if data_dir is None or str(data_dir) == "":
        data_dir = os.environ.get("GLUE_DIR") or None
    return None if data_dir is None else Path(data_dir).expanduser()


def _task_folder(spec: TaskSpec, root: Path) -> Path:
    """The task's folder under ``root`` (``root/CoLA``; any spelling normalize_task accepts),
    or ``root`` itself when it already is that folder."""
    exact = root / spec.folder
    if exact.is_dir():
        return exact
    if root.is_dir():
        for child in sorted(root.iterdir()):
            if child.is_dir() and _squash(child.name) in (spec.name, _squash(spec.folder)):
                return child
    if _squash(root.name) in (spec.name, _squash(spec.folder)) and (root / "train.tsv").exists():
        return root
    return exact


def _missing(spec: TaskSpec, split: str, path: Path) -> GlueError:
    return GlueError(
        f"the {split} split of {spec.folder} is missing at {path}: pass --data-dir DIR with the original "
        f"GLUE TSV folders ({spec.folder}/{spec.tsv_file(split)}) or set GLUE_DIR"
    )


def _parse_label(spec: TaskSpec, raw: str, where: str) -> Union[int, float, None]:
    """Label text -> class id / score; None for an unlabelled row (``-`` or empty)."""
    raw = raw.strip()
    if raw in ("", _NO_LABEL):
        return None
    if spec.is_regression:
        try:
            return float(raw)
        except ValueError:
            raise GlueError(f"{where}: score {raw!r} is not a number; is this the {spec.folder} file?") from None
    if raw in spec.label_names:
        return spec.label_names.index(raw)
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if 0 <= value < spec.num_labels:
        return value
    valid = ", ".join(f"{i}/{n}" for i, n in enumerate(spec.label_names))
    raise GlueError(f"{where}: label {raw!r} is not one of {valid}; is this the {spec.folder} file?")


def read_tsv_split(spec: TaskSpec, path: Path) -> RawSplit:
    """See :func:`_read_tsv_split`; a file that is not UTF-8 text is a GlueError naming it."""
    try:
        return _read_tsv_split(spec, path)
    except UnicodeDecodeError as exc:
        raise GlueError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8 or pass "
                        f"--data-dir with the original GLUE files") from None


def _read_tsv_split(spec: TaskSpec, path: Path) -> RawSplit:
    """Read one labelled split of ``spec`` in the original GLUE TSV layout.

    Quoting is off (texts hold bare ``"``), a UTF-8 BOM is ignored (MRPC), and columns are
    found by header name, so MNLI's train (12 columns) and dev (16 columns) files both work.
    Rows with too few columns, and rows without a gold label (MNLI ``-``), are skipped and
    counted in a log warning; a file where more than 1 % of rows are malformed is rejected.
    """
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        if spec.tsv_has_header:
            header = next(reader, None)
            if header is None:
                raise GlueError(f"{path} is empty; expected the {spec.folder} TSV with a header line")
            header = [h.strip() for h in header]
            try:
                cols = [header.index(c) for c in (*spec.tsv_text_columns, spec.tsv_label_column)]
            except ValueError:
                wanted = ", ".join(map(str, (*spec.tsv_text_columns, spec.tsv_label_column)))
                raise GlueError(
                    f"{path}: header {header} lacks the columns {wanted}; pass --data-dir with the original "
                    f"GLUE TSV files of {spec.folder}"
                ) from None
        else:
            cols = [int(c) for c in (*spec.tsv_text_columns, spec.tsv_label_column)]
        need = max(cols) + 1
        *text_cols, label_col = cols
        texts: list[list[str]] = [[] for _ in text_cols]
        labels: list[Union[int, float]] = []
        malformed = unlabelled = 0
        for row in reader:
            if not row:
                continue
            if len(row) < need:
                malformed += 1
                continue
            label = _parse_label(spec, row[label_col], f"{path}:{reader.line_num}")
            if label is None:
                unlabelled += 1
                continue
            for out, c in zip(texts, text_cols):
                out.append(row[c])
            labels.append(label)
    total = len(labels) + malformed + unlabelled
    if malformed > _MAX_MALFORMED_SHARE * max(total, 1):
        raise GlueError(
            f"{path}: {malformed} of {total} rows have fewer than {need} tab-separated columns; "
            f"is this the original GLUE TSV file of {spec.folder}?"
        )
    if malformed or unlabelled:
        log.warning("%s: skipped %d malformed and %d unlabelled rows", path, malformed, unlabelled)
    if not labels:
        raise GlueError(f"{path} has no labelled rows; pass --data-dir with the original GLUE TSV files")
    dtype = np.float32 if spec.is_regression else np.int64
    return RawSplit(texts[0], texts[1] if len(texts) > 1 else None, np.asarray(labels, dtype=dtype))


def load_task_tsv(task: str, data_dir: Union[str, os.PathLike]) -> dict[str, RawSplit]:
    """Load ``train`` and the eval splits of ``task`` from a folder holding the GLUE TSV folders."""
    spec = get_task(task)
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise GlueError(f"GLUE data folder {root} does not exist: pass --data-dir DIR holding CoLA/, SST-2/, ...")
    folder = _task_folder(spec, root)
    out: dict[str, RawSplit] = {}
    for split in ("train",) + spec.eval_splits:
        path = folder / spec.tsv_file(split)
        if not path.is_file():
            raise _missing(spec, split, path)
        out[split] = read_tsv_split(spec, path)
    return out


# --------------------------------------------------------------------------------------------
# Hub fallback
# --------------------------------------------------------------------------------------------


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def hub_offline_requested() -> bool:
    """True when HF_HUB_OFFLINE or HF_DATASETS_OFFLINE asks for offline mode."""
    return _env_true("HF_HUB_OFFLINE") or _env_true("HF_DATASETS_OFFLINE")


def hub_reachable(timeout_s: float = _PROBE_TIMEOUT_S) -> bool:
    """Cheap connectivity probe: a TCP connect to the hub (or the HTTPS proxy), bounded in time.

    DNS resolution is bounded too: the probe runs in a daemon thread that is abandoned after
    ``timeout_s``.
    """
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    target = urlparse(proxy if proxy else os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = target.hostname or "huggingface.co"
    port = target.port or (80 if target.scheme == "http" else 443)
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                result.append(True)
        except OSError:
            result.append(False)

    worker = threading.Thread(target=probe, name="glue-hub-probe", daemon=True)
    worker.start()
    worker.join(timeout_s + 0.5)
    return bool(result and result[0])


def load_task_hub(task: str) -> dict[str, RawSplit]:
    """Load ``train`` and the eval splits of ``task`` from ``nyu-mll/glue`` with ``datasets``.

    Fails within seconds when the hub cannot be reached (offline mode set, or the probe fails),
    instead of waiting for ``datasets``' retries. A local ``datasets`` cache still serves an
    offline run.
    """
    spec = get_task(task)
    offline = hub_offline_requested()
    if not offline and not hub_reachable():
        raise GlueError(HUB_UNREACHABLE)
    try:
        import datasets  # noqa: PLC0415 - heavy, only for the hub path

        # datasets reads the offline variables when first imported; if they were set later it
        # would retry for a long time, so probe the hub instead.
        if offline and not datasets.config.HF_HUB_OFFLINE and not hub_reachable():
            raise GlueError(HUB_UNREACHABLE)
        ds = datasets.load_dataset(HUB_DATASET, spec.name)
    except (ConnectionError, OSError) as exc:
        raise GlueError(HUB_UNREACHABLE) from exc
    out: dict[str, RawSplit] = {}
    for split in ("train",) + spec.eval_splits:
        if split not in ds:
            raise GlueError(f"{HUB_DATASET}/{spec.name} has no {split} split; pass --data-dir with GLUE TSV folders")
        part = ds[split]
        dtype = np.float32 if spec.is_regression else np.int64
        labels = np.asarray(part["label"], dtype=dtype)
        keep = np.flatnonzero(labels >= 0)  # hub test-style rows carry label -1
        raw = RawSplit(
            text_a=list(part[spec.text_columns[0]]),
            text_b=list(part[spec.text_columns[1]]) if spec.is_pair else None,
            labels=labels,
        )
        out[split] = raw if len(keep) == len(raw) else raw.select(keep)
    return out


def load_task(task: str, data_dir: Union[str, os.PathLike, None] = None) -> dict[str, RawSplit]:
    """Load ``train`` and the eval splits of ``task``.

    The data come from ``data_dir``, else ``$GLUE_DIR`` (original GLUE TSV folders), else the
    Hugging Face hub. Eval splits are ``validation`` (MNLI: ``validation_matched`` and
    ``validation_mismatched``). Raises :class:`GlueError` with a fix when data are missing.
    """
    root = resolve_data_dir(data_dir)
    if root is not None:
        return load_task_tsv(task, root)
    return load_task_hub(task)


# --------------------------------------------------------------------------------------------
# Subsampling
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Tokenisation
# --------------------------------------------------------------------------------------------


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
    over the eval splits; ``source`` the TSV folder or the hub dataset the rows came from.
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
    task: str,
    data_dir: Union[str, os.PathLike, None],
    *,
    train_samples: Optional[int],
    holdout_samples: int,
    seed: int,
) -> np.ndarray:
    """The labels of the held-out rows a run with these settings is scored on (no tokenising), e.g. for
    the majority-class score of that evaluation set."""
    spec = get_task(task)
    labels = load_task(spec.name, resolve_data_dir(data_dir))["train"].labels
    _, holdout_idx = split_training_rows(spec, labels, train_samples, holdout_samples, seed)
    assert holdout_idx is not None
    return np.asarray(labels)[holdout_idx]


def prepare_data(
    task: str,
    tokenizer: Any,
    *,
    data_dir: Union[str, os.PathLike, None] = None,
    train_samples: Optional[int] = None,
    eval_samples: Optional[int] = None,
    max_length: int = 128,
    seed: int = 42,
    holdout_samples: Optional[int] = None,
) -> PreparedData:
    """Load, subsample and tokenise a task.

    ``train_samples`` / ``eval_samples`` take seeded random subsets (stratified by label for
    classification; the eval limit applies to each eval split). Texts are tokenised once with
    ``tokenizer`` (a Hugging Face tokenizer), truncated to ``max_length``, unpadded.

    ``holdout_samples``: evaluate on that many *training-file* rows instead of the dev set - a seeded,
    stratified draw from the rows the training subset left out (the training subset itself is the
    same as without it), so knobs can be chosen without ever looking at dev (eval split ``holdout``).
    """
    spec = get_task(task)
    _check_max_length(tokenizer, max_length, spec.is_pair)
    root = resolve_data_dir(data_dir)
    raw = load_task(spec.name, root)
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
            part = part.select(subsample_indices(part.labels, eval_samples, seed, stratify))
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
        source=str(root) if root is not None else HUB_DATASET,
    )
