"""Configuration dataclasses: the training loop's knobs and each method's knobs.

Every field carries its help text (``metadata["help"]``); the CLI, presets and search
spaces are all built from these dataclasses, so a knob is declared exactly once. Each class
validates itself (``validate()``); the method registry (:mod:`increlora.registry`) maps method
names to their config classes.

Training knobs also carry a *role* (``metadata["role"]``):

- ``protocol``: how a run is measured (data, run length, sequence length, evaluation); a preset
  evaluated inside a search keeps the search's values, and a preset applied to another task takes
  that task's defaults;
- ``runtime``: where and how a run executes (device, threads, output folder); never part of a
  preset and never part of what makes two runs the same;
- ``recipe`` (the rest): how the model is trained; carried by presets.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional, Union, get_args, get_origin, get_type_hints

from increlora.data.tasks import OWN_DATA_METRICS
from increlora.domains import (
    ANY_TEXT,
    FLAG,
    FRACTION,
    GLUE_TASK,
    MODULE_NAMES,
    SEED,
    Domain,
    one_of,
    real,
    whole,
)


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message says what to fix."""


def need(ok: bool, message: str) -> None:
    """Raise ConfigError(message) unless ``ok``."""
    if not ok:
        raise ConfigError(message)


def is_fraction(value: Optional[float]) -> bool:
    """Unset, or a fraction of the run in [0, 1)."""
    return value is None or 0 <= value < 1


PROTOCOL, RUNTIME, RECIPE = "protocol", "runtime", "recipe"

# --metric of your own data (docs/own-data.md): pearson and spearman make it a regression task.


def knob(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with its help text (and role) in its metadata."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    """Knobs of the training loop, shared by every method."""

    task: str = knob(
        "cola",
        "GLUE task: cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli; with your own data (--train-file or --dataset) "
        "a name for it in run names, else the file's stem or the dataset's name",
        role=PROTOCOL,
    )
    method: str = knob("increlora", "adapter method: increlora | lora | adalora", role=PROTOCOL)
    model: Optional[str] = knob(None, "Hugging Face model name or local folder (default: the packaged all-MiniLM-L6-v2)", role=PROTOCOL)
    data_dir: Optional[str] = knob(None, "folder with the GLUE TSV folders (CoLA/, SST-2/, ...); default $GLUE_DIR, else the HF hub", role=RUNTIME)
    # Your own data instead of a GLUE task (docs/own-data.md). Where the rows come from is runtime, like
    # data_dir (never in a preset or a run's signature; the data's fingerprint is recorded instead); the
    # columns and the metric define the task, so they are protocol.
    train_file: Optional[str] = knob(
        None, "your own training data instead of a GLUE task: a .csv, .tsv, .json or .jsonl file (docs/own-data.md)",
        role=RUNTIME,
    )
    validation_file: Optional[str] = knob(
        None, "your own validation data, as --train-file (default: none; then pass --holdout-samples)", role=RUNTIME,
    )
    dataset: Optional[str] = knob(
        None, "your own data from a Hugging Face dataset (hub name or local folder; its train and validation splits) "
        "instead of a GLUE task", role=RUNTIME,
    )
    dataset_config: Optional[str] = knob(None, "the --dataset's configuration (subset) name", role=RUNTIME)
    text_columns: Optional[list] = knob(
        None, "own data: the text column, or two comma-separated for sentence pairs (default: sentence1,sentence2, "
        "else text, else sentence, whichever the data has)", role=PROTOCOL,
    )
    label_column: Optional[str] = knob(None, "own data: the label column (default: label)", role=PROTOCOL)
    metric: Optional[str] = knob(
        None, "own data: " + " | ".join(OWN_DATA_METRICS) + "; pearson and spearman make it regression (default: "
        "pearson when every training label is a number and one is not whole, else accuracy)",
        role=PROTOCOL, choices=OWN_DATA_METRICS,
    )
    train_samples: Optional[int] = knob(None, "seeded random training subset of this size, stratified by label (default: all)", role=PROTOCOL)
    eval_samples: Optional[int] = knob(None, "seeded random subset of the dev set (default: the full dev set)", role=PROTOCOL)
    holdout_samples: Optional[int] = knob(
        None,
        "evaluate on this many training-file rows left out of the training subset (seeded, stratified) instead of "
        "the dev set: for choosing knobs without touching dev",
        role=PROTOCOL,
    )
    epochs: float = knob(3.0, "training epochs", role=PROTOCOL)
    max_steps: Optional[int] = knob(None, "stop after this many optimizer steps (overrides epochs)", role=PROTOCOL)
    batch_size: int = knob(32, "training batch size", role=PROTOCOL)
    eval_batch_size: Optional[int] = knob(None, "evaluation batch size (default: 64 on CPU, 256 on a GPU)", role=RUNTIME)
    group_by_length: bool = knob(
        True,
        "batch training rows of similar length (seeded: shuffle, sort within mega-batches of up to 50 batches, "
        "shuffle the batches): less padding; --no-group-by-length for plain random batches",
    )
    fast_eval: bool = knob(
        True,
        "evaluate with rows sorted by length, the adapter merged into the weights and torch.inference_mode "
        "(same metrics within float tolerance); --no-fast-eval for the plain path",
        role=RUNTIME,
    )
    max_length: int = knob(64, "maximum sequence length (tokens)", role=PROTOCOL)
    learning_rate: float = knob(1e-3, "peak learning rate (AdamW)")
    weight_decay: float = knob(0.0, "AdamW weight decay")
    warmup_steps: Optional[int] = knob(None, "linear LR warm-up steps (default: warmup_ratio of the total)")
    warmup_ratio: float = knob(0.06, "LR warm-up as a fraction of the total steps, used when warmup_steps is unset")
    max_grad_norm: float = knob(1.0, "gradient clipping norm")
    eval_steps: Optional[int] = knob(None, "evaluate every N steps (default: about 4 times per run) and at the end", role=PROTOCOL)
    seed: int = knob(42, "random seed (data subset, initialisation, dropout, batch order)", role=PROTOCOL)
    classifier_dropout: Optional[float] = knob(None, "dropout before the classifier (default: the model's)")
    lora_alpha: float = knob(16.0, "adapter scale alpha (IncreLoRA/AdaLoRA scale = alpha / rank)")
    lora_dropout: float = knob(0.0, "dropout on the adapter input")
    target_modules: Optional[list] = knob(
        None,
        "adapted linear layers, as name suffixes (default: all six per layer: q, k, v, attention output, FFN in, FFN out)",
        role=PROTOCOL,
    )
    head_modules: list = knob(["classifier", "pooler"], "modules trained in full next to the adapters (the head)", role=PROTOCOL)
    device: str = knob("auto", "auto | cpu | cuda | cuda:N", role=RUNTIME)
    precision: str = knob(
        "auto",
        "auto | bf16 | fp32: bf16 keeps the frozen base weights in bf16 and trains under bf16 autocast (adapters, head, "
        "optimizer state and score EMAs stay fp32); auto = bf16 on CUDA, and on CPUs that multiply bf16 natively once "
        "measured equivalent (increlora.precision.AUTO_BF16_ON_CPU), else fp32; the resolved one is in result.json",
        role=PROTOCOL,
    )
    threads: Optional[int] = knob(None, "torch CPU threads (default: torch's choice)", role=RUNTIME)
    progress: bool = knob(True, "show a progress bar", role=RUNTIME)
    output_dir: Optional[str] = knob(None, "write result.json and the adapter here", role=RUNTIME)
    save_adapter: bool = knob(True, "save the trained adapter (peft format) under output_dir", role=RUNTIME)

    def validate(self) -> None:
        """Every knob inside its domain (:data:`TRAIN_DOMAINS`; with your own data the task is any name), then
        own data's rules; ConfigError names the knob."""
        check_domains(self, {**TRAIN_DOMAINS, "task": ANY_TEXT} if self.own_data else TRAIN_DOMAINS)
        self._validate_own_data()

    @property
    def own_data(self) -> bool:
        """True when the run trains on your own data (train_file or dataset) instead of a GLUE task."""
        return bool(self.train_file or self.dataset)

    def _validate_own_data(self) -> None:
        need(not (self.train_file and self.dataset), "dataset: give --train-file or --dataset, not both")
        need(self.validation_file is None or bool(self.train_file),
             "validation_file: goes with --train-file (a --dataset brings its own validation split)")
        need(self.dataset_config is None or bool(self.dataset), "dataset_config: goes with --dataset")
        for name in ("text_columns", "label_column", "metric"):
            need(self.own_data or getattr(self, name) is None,
                 f"{name}: applies to your own data only (--train-file or --dataset)")
        need(self.text_columns is None or 1 <= len(self.text_columns) <= 2,
             "text_columns: one column, or two (comma-separated) for sentence pairs")
        need(self.metric is None or self.metric in OWN_DATA_METRICS,
             f"metric: choose {', '.join(OWN_DATA_METRICS)} (got {self.metric!r})")
        need(not self.train_file or bool(self.validation_file) or self.holdout_samples is not None,
             "validation_file: your own data needs --validation-file, or --holdout-samples N to score on held-out "
             "training rows")


# The domain of every TrainConfig knob (increlora.domains): validate(), the CLIs, presets, --set and
# search spaces check values against it. A new knob needs its row here (tests/test_domains_fuzz.py).
TRAIN_DOMAINS: dict[str, Domain] = {
    "task": GLUE_TASK,
    "method": ANY_TEXT,  # a registered name: run_config checks it against the method registry
    "model": ANY_TEXT,
    "data_dir": ANY_TEXT,
    "train_samples": whole(ge=1),
    "eval_samples": whole(ge=1),
    "holdout_samples": whole(ge=1),
    "epochs": real(gt=0),
    "max_steps": whole(ge=1),
    "batch_size": whole(ge=1),
    "eval_batch_size": whole(ge=1),
    "group_by_length": FLAG,
    "fast_eval": FLAG,
    "max_length": whole(ge=8),
    "learning_rate": real(gt=0),
    "weight_decay": real(ge=0),
    "warmup_steps": whole(ge=0),
    "warmup_ratio": FRACTION,
    "max_grad_norm": real(ge=0),
    "eval_steps": whole(ge=1),
    "seed": SEED,
    "classifier_dropout": FRACTION,
    "lora_alpha": real(gt=0),
    "lora_dropout": FRACTION,
    "target_modules": MODULE_NAMES,
    "head_modules": MODULE_NAMES,
    "device": one_of("auto", "cpu", "cuda", pattern=r"cuda:\d+", shown="auto | cpu | cuda | cuda:N"),
    "precision": one_of("auto", "bf16", "fp32"),
    "threads": whole(ge=1),
    "progress": FLAG,
    "output_dir": ANY_TEXT,
    "save_adapter": FLAG,
    "train_file": ANY_TEXT,
    "validation_file": ANY_TEXT,
    "dataset": ANY_TEXT,
    "dataset_config": ANY_TEXT,
    "text_columns": MODULE_NAMES,
    "label_column": ANY_TEXT,
    "metric": one_of(*OWN_DATA_METRICS),
}


def check_domains(config: Any, domains: dict[str, Domain]) -> None:
    """ConfigError ``<knob>: must be ..., got ...`` for the first field of ``config`` outside its domain
    (``None`` passes where the field is Optional)."""
    hints = get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if value is None:
            need(type(None) in get_args(hints[f.name]), f"{f.name}: null is not allowed")
            continue
        domain = domains.get(f.name)
        problem = domain.problem(value) if domain is not None else None
        need(problem is None, f"{f.name}: {problem}")


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def knobs_with_role(*roles: str) -> frozenset[str]:
    """The training knobs whose role is one of ``roles`` (``protocol``, ``runtime``, ``recipe``)."""
    return frozenset(f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("role", RECIPE) in roles)


def check_type(cls: type, name: str, value: Any) -> Any:
    hint = get_type_hints(cls)[name]
    origin = get_origin(hint)
    allowed = get_args(hint) if origin is Union else (hint,)
    if value is None:
        if type(None) in allowed:
            return None
        raise ConfigError(f"{name}: null is not allowed")
    for t in allowed:
        if t is type(None):
            continue
        base = get_origin(t) or t
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if base is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if base is bool and isinstance(value, bool):
            return value
        if base is str and isinstance(value, str):
            return value
        if base is list and isinstance(value, (list, tuple)):
            return list(value)
        if base is list and isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
    names = " or ".join("null" if t is type(None) else getattr(t, "__name__", str(t)) for t in allowed)
    raise ConfigError(f"{name}: expected {names}, got {type(value).__name__} {value!r}")
