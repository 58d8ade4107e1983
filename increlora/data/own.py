"""Your own data: CSV / TSV / JSON / JSON Lines files or a Hugging Face dataset, as a task of its own.

:class:`OwnData` is what the flags say (``--train-file`` / ``--validation-file`` or ``--dataset`` /
``--dataset-config``, ``--text-columns``, ``--label-column``, ``--metric``); :func:`load_own` reads the
rows, checks them and builds the task's :class:`~increlora.data.tasks.TaskSpec` and raw splits.
The rules (docs/own-data.md):

- text columns: ``--text-columns``, else ``sentence1,sentence2``, else ``text``, else ``sentence``
  (whichever the training data has); label column: ``--label-column``, else ``label``;
- regression or classification: ``--metric pearson`` or ``spearman`` make it regression, another metric
  classification; without ``--metric`` it is regression (scored by pearson) when every training label is
  a number and at least one is not a whole number (``3.5``), else classification (scored by accuracy);
- classes: the training labels as text, in numeric order when all are whole numbers, else in
  alphabetical order (a dataset's class-label column keeps its own order); class id = position. F1 is
  the F1 of class id 1 with two classes (``1``, ``pos``, ``true``, ``yes``: the second in that order),
  else the macro F1;
- rows whose label is empty (or null) are skipped and counted in a log warning;
- bad data is one :class:`~increlora.data.tasks.GlueError` line: a missing column, an empty file, a
  validation label never seen in training, a non-numeric regression target, an unreadable file;
- default knobs (the ``cpu`` / ``paper`` profiles) are those of the GLUE task of the same shape: STS-B
  for regression, MRPC for sentence pairs, SST-2 for single texts.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from increlora.data.tasks import REGRESSION_METRICS

from .readers import RawSplit, Table, dataset_label, load_hub_dataset, read_table
from .tasks import GlueError, TaskSpec, is_glue_task

log = logging.getLogger(__name__)

OWN_DATA_KNOBS = ("train_file", "validation_file", "dataset", "dataset_config", "text_columns", "label_column", "metric")
DEFAULT_LABEL_COLUMN = "label"
# --text-columns when not given: the first of these the training data has.
TEXT_COLUMN_GUESSES = (("sentence1", "sentence2"), ("text",), ("sentence",))
# The key a metric has in a run's metrics (GLUE's name for the Matthews correlation is mcc).
METRIC_KEYS = {"accuracy": "accuracy", "f1": "f1", "matthews": "mcc", "pearson": "pearson", "spearman": "spearman"}
# What a score of own data is called in tables and notes (a GLUE task's is its "GLUE score").
METRIC_LABELS = {"accuracy": "accuracy", "f1": "F1", "matthews": "MCC", "pearson": "Pearson", "spearman": "Spearman"}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class OwnData:
    """Your own data as the flags describe it (paths as given; ``name`` names the task in run names)."""

    name: str
    train_file: Optional[str] = None
    validation_file: Optional[str] = None
    dataset: Optional[str] = None
    dataset_config: Optional[str] = None
    text_columns: tuple[str, ...] = ()
    label_column: Optional[str] = None
    metric: Optional[str] = None

    @classmethod
    def from_knobs(cls, knobs: Mapping[str, Any]) -> Optional["OwnData"]:
        """The own data a run's flat knobs (or a TrainConfig's fields) describe; None for a GLUE task."""
        if not (knobs.get("train_file") or knobs.get("dataset")):
            return None
        return cls(
            name=own_data_name(knobs), train_file=knobs.get("train_file") or None,
            validation_file=knobs.get("validation_file") or None, dataset=knobs.get("dataset") or None,
            dataset_config=knobs.get("dataset_config") or None, text_columns=tuple(knobs.get("text_columns") or ()),
            label_column=knobs.get("label_column") or None, metric=knobs.get("metric") or None,
        )

    def describe(self) -> str:
        """Where the rows come from, in words."""
        if self.dataset:
            return f"dataset {dataset_label(self.dataset, self.dataset_config)}"
        return str(self.train_file) + (f" + {self.validation_file}" if self.validation_file else "")


def own_data_name(knobs: Mapping[str, Any]) -> str:
    """The name of own data: ``task`` when it is given and not a GLUE task's name (the knob's default is
    ``cola``), else the training file's stem or the dataset's name (and config), cleaned to letters, digits,
    ``.``, ``_`` and ``-`` (``own-<name>`` when that would be a GLUE task's name)."""
    task = knobs.get("task")
    if task and not is_glue_task(str(task)):
        if not NAME_RE.match(str(task)):
            raise GlueError(f"--task {task!r}: a name for your data uses letters, digits, '.', '_' and '-' "
                            f"(at most 100 characters)")
        return str(task)
    if knobs.get("train_file"):
        base = Path(str(knobs["train_file"])).stem
    else:
        base = str(knobs.get("dataset") or "").rstrip("/").split("/")[-1]
        if knobs.get("dataset_config"):
            base += f"-{knobs['dataset_config']}"
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-._")[:90]
    if not clean:
        return "custom"
    return f"own-{clean}" if is_glue_task(clean) else clean


def metric_key(metric: str) -> str:
    """The key of ``--metric`` in a run's metrics (``matthews`` -> ``mcc``)."""
    return METRIC_KEYS[metric]


def score_label(metric: Optional[str] = None, *, own_data: Optional[bool] = None) -> str:
    """What a run's score is called in tables, plots and notes: ``GLUE score`` on a GLUE task, the metric's
    name on your own data (``accuracy``, ``F1``, ``MCC``, ``Pearson``, ``Spearman``; ``score`` when the metric
    is unknown). ``own_data`` defaults to whether a metric is given."""
    if not (metric is not None if own_data is None else own_data):
        return "GLUE score"
    return METRIC_LABELS.get(str(metric), "score")


def defaults_task(is_regression: bool, is_pair: bool) -> str:
    """The GLUE task whose default knobs own data of this shape takes."""
    return "stsb" if is_regression else "mrpc" if is_pair else "sst2"


# --------------------------------------------------------------------------------------------
# Loading and checking
# --------------------------------------------------------------------------------------------


@dataclass
class OwnTables:
    """The tables of own data before any check: training rows and (when there are) validation rows."""

    train: Table
    validation: Optional[Table]
    splits: dict[str, int]  # every split the source has -> rows (a dataset may have more than two)


def read_own_tables(own: OwnData) -> OwnTables:
    """Read the files, or load the dataset (its ``train`` split, and ``validation`` when it has one)."""
    if own.train_file:
        train = read_table(own.train_file, "--train-file")
        validation = read_table(own.validation_file, "--validation-file") if own.validation_file else None
        splits = {"train": train.n_rows, **({"validation": validation.n_rows} if validation else {})}
        return OwnTables(train, validation, splits)
    assert own.dataset
    wanted = list(own.text_columns) + [c for guess in TEXT_COLUMN_GUESSES for c in guess]
    wanted.append(own.label_column or DEFAULT_LABEL_COLUMN)
    tables = load_hub_dataset(own.dataset, own.dataset_config, list(dict.fromkeys(wanted)))
    label = dataset_label(own.dataset, own.dataset_config)
    if "train" not in tables:
        raise GlueError(f"--dataset {label}: has no 'train' split (splits: {', '.join(tables) or 'none'})")
    for name, table in tables.items():
        if table.n_rows == 0 and name in ("train", "validation"):
            raise GlueError(f"{table.where}: is empty (no rows)")
    return OwnTables(tables["train"], tables.get("validation"), {k: v.n_rows for k, v in tables.items()})


def _text_columns(own: OwnData, train: Table) -> tuple[str, ...]:
    if own.text_columns:
        return tuple(own.text_columns)
    for guess in TEXT_COLUMN_GUESSES:
        if all(c in train.columns for c in guess):
            return guess
    raise GlueError(f"{train.where}: no text column named sentence1/sentence2, text or sentence (columns: "
                    f"{', '.join(train.columns)}); pass --text-columns A or A,B")


def _check_columns(table: Table, text_columns: tuple[str, ...], label_column: str) -> None:
    for column, flag in [(c, "--text-columns") for c in text_columns] + [(label_column, "--label-column")]:
        if column not in table.columns:
            raise GlueError(f"{table.where}: has no column {column!r} (columns: {', '.join(table.columns)}); "
                            f"pass {flag} with the data's own column names")


def _label_values(table: Table, label_column: str) -> list[Any]:
    """The label column's values, a class-label column's ids as their names; None for no label."""
    values = table.data[label_column]
    names = table.class_names.get(label_column)
    out: list[Any] = []
    for v in values:
        if isinstance(v, str):
            v = v.strip()
        if v is None or v == "":
            out.append(None)
        elif names is not None and isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            out.append(names[int(v)] if 0 <= int(v) < len(names) else None)  # -1: an unlabelled (test-style) row
        else:
            out.append(v)
    return out


def _number(value: Any) -> Optional[float]:
    """``value`` as a finite float, or None (booleans are not numbers here)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        x = float(value)
    else:
        try:
            x = float(str(value).strip())
        except ValueError:
            return None
    return x if math.isfinite(x) else None


def _class_name(value: Any) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _class_order(names: set[str]) -> list[str]:
    try:
        return sorted(names, key=lambda n: int(n))
    except ValueError:
        return sorted(names)


def _texts(table: Table, column: str, keep: list[int]) -> list[str]:
    values = table.data[column]
    return ["" if values[i] is None else str(values[i]) for i in keep]


@dataclass
class OwnLoaded:
    """Own data read and checked: the task's spec and its raw ``train`` (and ``validation``) splits."""

    request: OwnData
    spec: TaskSpec
    splits: dict[str, RawSplit]
    tables: OwnTables
    label_column: str
    metric: str  # the --metric in effect (given, or chosen by the rule)


def load_own(own: OwnData) -> OwnLoaded:
    """Read, check and convert own data (see the module docstring for the rules); GlueError on bad data."""
    tables = read_own_tables(own)
    text_columns = _text_columns(own, tables.train)
    label_column = own.label_column or DEFAULT_LABEL_COLUMN
    named = [t for t in (tables.train, tables.validation) if t is not None]
    for table in named:
        _check_columns(table, text_columns, label_column)
    labels = {id(t): _label_values(t, label_column) for t in named}
    kept = {id(t): [i for i, v in enumerate(labels[id(t)]) if v is not None] for t in named}
    for table in named:
        if not kept[id(table)]:
            raise GlueError(f"{table.where}: has no labelled rows (column {label_column!r} is empty everywhere)")
        skipped = table.n_rows - len(kept[id(table)])
        if skipped:
            log.warning("%s: skipped %d rows without a label", table.where, skipped)
    train_labels = [labels[id(tables.train)][i] for i in kept[id(tables.train)]]
    metric = own.metric
    if metric is None:
        numbers = [_number(v) for v in train_labels]
        floats = tables.train.class_names.get(label_column) is None and all(x is not None for x in numbers) \
            and any(not float(x).is_integer() for x in numbers if x is not None)
        metric = "pearson" if floats else "accuracy"
    regression = metric in REGRESSION_METRICS

    classes: list[str] = []
    seen: set[str] = set()
    if not regression:
        seen = {_class_name(v) for v in train_labels}
        class_names = tables.train.class_names.get(label_column)
        classes = list(class_names) if class_names is not None else _class_order(seen)
        if len(seen) < 2:
            raise GlueError(f"{tables.train.where}: every row has the label {next(iter(seen))!r}; classification needs "
                            f"two or more labels (for scores, pass --metric pearson)")
    splits: dict[str, RawSplit] = {}
    for split, table in (("train", tables.train), ("validation", tables.validation)):
        if table is None:
            continue
        keep = kept[id(table)]
        values = [labels[id(table)][i] for i in keep]
        if regression:
            targets = []
            for i, v in zip(keep, values):
                x = _number(v)
                if x is None:
                    raise GlueError(f"{table.where}: row {i + 1}: label {v!r} in column {label_column!r} is not a "
                                    f"finite number; --metric {metric} (regression) needs numeric targets")
                targets.append(x)
            label_array = np.asarray(targets, dtype=np.float32)
        else:
            names = [_class_name(v) for v in values]
            unseen = sorted(set(names) - seen)
            if unseen:
                count = sum(n in unseen for n in names)
                raise GlueError(f"{table.where}: label {', '.join(map(repr, unseen[:5]))} ({count} row{'' if count == 1 else 's'}) never appears "
                                f"in the training data (labels: {', '.join(_class_order(seen))})")
            index = {n: k for k, n in enumerate(classes)}
            label_array = np.asarray([index[n] for n in names], dtype=np.int64)
        splits[split] = RawSplit(
            text_a=_texts(table, text_columns[0], keep),
            text_b=_texts(table, text_columns[1], keep) if len(text_columns) > 1 else None,
            labels=label_array,
        )
    key = metric_key(metric)
    spec = TaskSpec(
        name=own.name, folder=own.name, text_columns=text_columns, num_labels=1 if regression else len(classes),
        is_regression=regression, label_names=tuple(classes), eval_splits=("validation",), main_metric=key,
        metric_names=(key,), tsv_text_columns=(), tsv_label_column="",
        defaults_task=defaults_task(regression, len(text_columns) == 2),
    )
    return OwnLoaded(request=own, spec=spec, splits=splits, tables=tables, label_column=label_column, metric=metric)

