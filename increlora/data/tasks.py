"""The GLUE task registry: names, folders, columns, labels and metrics of the nine tasks.

``TASKS`` maps a task's key (``cola``, ``sst2``, ...) to its :class:`TaskSpec`; :func:`normalize_task`
accepts any spelling (``SST-2``, ``sst-2``, ``sst2``) and :func:`get_task` returns the spec. Your own
data gets a :class:`TaskSpec` of its own, built from its rows (:mod:`increlora.data.own`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union


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
    # Own data only: the GLUE task whose per-task default knobs it takes ("" for a GLUE task: itself).
    defaults_task: str = ""

    @property
    def is_glue(self) -> bool:
        """True for the nine GLUE tasks, False for your own data."""
        return TASKS.get(self.name) is self

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


def squash(name: str) -> str:
    """``name`` lower-cased, letters and digits only (``"SST-2"`` -> ``"sst2"``)."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


def normalize_task(name: str) -> str:
    """Return the registry key of a task name: ``"SST-2"``, ``"sst-2"``, ``"sst2"`` -> ``"sst2"``.

    Case, hyphens, underscores and spaces are ignored. Unknown names raise :class:`GlueError`.
    """
    key = squash(str(name))
    for spec in TASKS.values():
        if key in (spec.name, squash(spec.folder)):
            return spec.name
    raise GlueError(f"unknown GLUE task {name!r}: use one of {', '.join(TASKS)}")


def get_task(name: Union[str, TaskSpec]) -> TaskSpec:
    """The :class:`TaskSpec` of a task, under any spelling :func:`normalize_task` accepts (a spec is returned
    as it is: own data's spec comes with its data)."""
    if isinstance(name, TaskSpec):
        return name
    return TASKS[normalize_task(name)]


def is_glue_task(name: str) -> bool:
    """Whether ``name`` is a GLUE task under any spelling :func:`normalize_task` accepts."""
    try:
        normalize_task(name)
    except GlueError:
        return False
    return True


# Your own data's metrics (increlora.data.own): pearson and spearman make the task a regression.
OWN_DATA_METRICS = ("accuracy", "f1", "matthews", "pearson", "spearman")
REGRESSION_METRICS = ("pearson", "spearman")
