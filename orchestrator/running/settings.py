"""The search's command line and :class:`SearchSettings`, everything checked before any work starts.

:func:`build_parser` declares the flags; the per-trial training flags are generated from
:class:`increlora.config.TrainConfig` (their help text is the knob's own), as ``increlora.train``
does. :meth:`SearchSettings.from_args` turns the parsed flags into a frozen, validated value: the
task, method, space, presets, names, paths and the MLflow/Optuna stores are checked here, before
Ray starts, so bad input costs one line on stderr and exit code 2, and leaves nothing behind.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union, get_type_hints

from increlora.cli import OneLineParser, prog_name
from increlora.domains import SEED, Domain, real, whole
from orchestrator.records.record import SearchChoices, abandoned_start
from increlora.backbone import BackboneError, resolve_model
from increlora.cli import UsageError, check_writable_dir
from increlora.config import ConfigError, TRAIN_DOMAINS, TrainConfig
from increlora.data import GlueError, OwnData, is_glue_task, load_source, normalize_task
from increlora.methods import METHODS
from increlora.presets import PresetError, load_preset
from increlora.run_config import check_knob
from orchestrator.tracking import mlflow_runs
from orchestrator.tracking.probes import ProbeError, check_database
from search_spaces import SpaceError
from search_spaces.from_yaml import load_space

DEFAULT_TRIALS = 64
DEFAULT_EVALUATIONS = 4
# CPU profile of a search: the cpu profile's trial (4,000 rows, 3 epochs: where MiniLM learns CoLA, see
# benchmarks/results/regime.md) evaluated on a 500-row dev subset, 2 trials at a time on 2 cores.
CPU_SEARCH_DEFAULTS = {"train_samples": 4000, "eval_samples": 500, "epochs": 3.0}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_NAME = 100
# TrainConfig knobs that get a flag of their own, with the search's default as its help shows it.
TRIAL_FLAGS = {
    "model": "the packaged all-MiniLM-L6-v2",
    "data_dir": "$GLUE_DIR, else the HF hub",
    "train_samples": "4000 with the cpu profile, all with paper",
    "eval_samples": "500 with the cpu profile, the full dev set with paper",
    "holdout_samples": "unset: trials are scored on the dev set; presets record which",
    "epochs": "3 with the cpu profile, the script's with paper",
    "max_steps": "unset",
    "batch_size": "32",
    "max_length": "cpu profile 64 single-sentence / 128 pairs; paper: the script's",
    "learning_rate": "the profile's per-task value; the centre of its range when searched",
}
# The domains of the search's own numeric flags (increlora.domains); the training flags take their
# knob's (increlora.config.TRAIN_DOMAINS). tests/test_domains_fuzz.py feeds values outside each to the CLI.
FLAG_DOMAINS: dict[str, Domain] = {
    "trials": whole(ge=1),
    "population_size": whole(ge=2),
    "seed": SEED,
    "asha_grace": whole(ge=1),
    "asha_reduction_factor": real(gt=1),
    "max_failures": whole(ge=1),
    "tolerance": real(ge=0),
    "evaluations": whole(ge=1),
    "max_concurrent": whole(ge=0),
    "cpus_per_trial": whole(ge=1),
    "gpus_per_trial": real(ge=0),
    "num_cpus": whole(ge=1),
    "confirm": whole(ge=0),
    "confirm_share": real(gt=0, le=1),
}
DEFAULT_CONFIRM = 3  # new seeds per confirmed configuration (the cpu profile's K; orchestrator.running.confirmation)
DEFAULT_CONFIRM_SHARE = 0.25
# Knobs with a flag of their own: --set would bypass the flag's checks (or be overridden by it).
OWN_FLAG_KNOBS = ("task", "method", "seed", "model", "data_dir")
# Your own data instead of a GLUE --task (TrainConfig knobs too; docs/own-data.md).
OWN_DATA_FLAGS = {
    "train_file": "none: a GLUE --task",
    "validation_file": "none",
    "dataset": "none",
    "dataset_config": "none",
    "text_columns": "sentence1,sentence2, else text, else sentence",
    "label_column": "label",
    "metric": "by the labels",
}


class SearchError(Exception):
    """Bad input or an unusable environment: printed as one line, exit code 2."""


def _gpus(text: str) -> Optional[float]:
    return None if text == "auto" else FLAG_DOMAINS["gpus_per_trial"].parser()(text)


_gpus.domain = FLAG_DOMAINS["gpus_per_trial"]  # type: ignore[attr-defined]  ("auto" besides)


def _typed(name: str) -> Any:
    """The argparse type of the search flag ``--<name>``: its text checked against its domain."""
    return FLAG_DOMAINS[name].parser()


def _trial_flag(group: argparse._ArgumentGroup, name: str, default_text: str) -> None:
    f = next(f for f in dataclasses.fields(TrainConfig) if f.name == name)
    hint = str(get_type_hints(TrainConfig)[name])
    typ = split_list if "list" in hint else TRAIN_DOMAINS[name].parser() if "int" in hint or "float" in hint else str
    text = f.metadata["help"]
    if "default" not in text:  # some knobs' help already names their default
        text += f" (default: {default_text})"
    group.add_argument("--" + name.replace("_", "-"), type=typ, default=None, help=text.replace("%", "%%"),
                       choices=f.metadata.get("choices"))


def build_parser() -> argparse.ArgumentParser:
    """The CLI; every flag's help ends with its default."""
    from orchestrator.running.searcher import SAMPLERS

    p = OneLineParser(
        prog=prog_name("orchestrator.search", "increlora-search"),
        description=(
            "Multi-objective search (GLUE score up, adapter parameters down) over IncreLoRA's budget, growth "
            "schedule and EMA knobs - or a LoRA/AdaLoRA baseline - with Ray Tune, Optuna and MLflow."
        ),
        epilog=(
            "Without a GPU and without flags a search trains on CPU with the packaged all-MiniLM-L6-v2 on a "
            "4000-example subset for 3 epochs (sequence length 64 for single-sentence tasks), 2 trials at a time "
            "on a 2-core machine. Example: python -m orchestrator.search --task cola --trials 64"
        ),
    )
    g = p.add_argument_group("search")
    g.add_argument("--task", default=None, help="GLUE task: cola sst2 mrpc qqp stsb mnli qnli rte wnli; with your own data "
                                                 "(--train-file or --dataset) a name for it (default: cola; own data: the "
                                                 "file's stem or the dataset's name)")
    g.add_argument("--method", default="increlora", choices=METHODS, help="adapter method searched (default: %(default)s)")
    g.add_argument("--trials", type=_typed("trials"), default=DEFAULT_TRIALS, help="number of trials (default: %(default)s)")
    g.add_argument("--sampler", default="tpe", choices=SAMPLERS,
                   help="Optuna multi-objective sampler, seeded with --seed (default: %(default)s)")
    g.add_argument("--population-size", type=_typed("population_size"), default=16, help="NSGA-II population size (default: %(default)s)")
    g.add_argument("--seed", type=_typed("seed"), default=42, help="seed of the sampler and of every trial's training (default: %(default)s)")
    g.add_argument("--space", default=None, help="YAML search space file (default: the method's built-in space)")
    g.add_argument("--search-extra", action="append", default=[], metavar="KNOB",
                   help="add an optional knob to the built-in space: learning_rate, top_h, n_add, orth_reg_weight "
                        "(repeatable or comma-separated; default: none)")
    g.add_argument("--budget", choices=("rank", "params"), default="rank",
                   help="IncreLoRA budget knob searched: target_rank (average rank 1-8) or budget_params (same range in "
                        "parameters) (default: %(default)s)")
    g.add_argument("--objective", choices=("final", "best"), default="final",
                   help="score objective: the final evaluation's GLUE score, or the best over the run (default: %(default)s)")
    g.add_argument("--scheduler", choices=("none", "asha"), default="none",
                   help="early stopping: none, or ASHA on the GLUE score; stopped trials are PRUNED (default: %(default)s)")
    g.add_argument("--asha-grace", type=_typed("asha_grace"), default=1, help="ASHA grace period in evaluations (default: %(default)s)")
    g.add_argument("--asha-reduction-factor", type=_typed("asha_reduction_factor"), default=2.0, help="ASHA reduction factor (default: %(default)s)")
    g.add_argument("--preset", action="append", default=[], metavar="FILE",
                   help="evaluate this preset's configuration first (repeatable; default: none)")
    g.add_argument("--max-failures", type=_typed("max_failures"), default=None, metavar="K",
                   help="stop the search after K failed trials (default: never; a failed trial's reason is shown)")
    g.add_argument("--knobs-only", action="store_true",
                   help="search the method's own knobs only (IncreLoRA: budget, growth interval, warm-up, beta1, beta2), "
                        "with the learning rate fixed at the profile's; the default space also searches the learning rate "
                        "on the method's range (default: off)")
    g.add_argument("--confirm", type=_typed("confirm"), default=DEFAULT_CONFIRM, metavar="K",
                   help="after the trials, train the front's configurations, and those within the measured seed noise "
                        "of it, on K new seeds each; the front, presets and summary then rank means with 95%% intervals; "
                        "0 turns it off (default: %(default)s)")
    g.add_argument("--confirm-share", type=_typed("confirm_share"), default=DEFAULT_CONFIRM_SHARE, metavar="F",
                   help="the confirmation trains at most F x --trials runs (default: %(default)s)")
    g.add_argument("--tolerance", type=_typed("tolerance"), default=1.0,
                   help="the 'smallest' preset: fewest parameters within this many GLUE points of the best (default: %(default)s)")
    g.add_argument("--name", default=None, help="search name (default: <task>-<method>-<date>-<time>)")
    g.add_argument("--output-dir", default="searches", help="parent folder of search folders (default: %(default)s)")
    g.add_argument("--resume", action="store_true",
                   help="continue the search --name from its folder (its saved settings apply; default: off)")

    t = p.add_argument_group("training (every trial)")
    for name in ("model", "data_dir"):
        _trial_flag(t, name, TRIAL_FLAGS[name])
    t.add_argument("--profile", choices=("auto", "cpu", "paper"), default="auto",
                   help="training defaults: cpu (short runs), paper (the official scripts' settings); auto = paper when "
                        "trials get a GPU, else cpu (default: %(default)s)")
    for name in list(TRIAL_FLAGS)[2:]:
        _trial_flag(t, name, TRIAL_FLAGS[name])
    t.add_argument("--evaluations", type=_typed("evaluations"), default=DEFAULT_EVALUATIONS,
                   help="evaluations per trial, the last at the end; every one is reported to Tune (default: %(default)s)")
    t.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE",
                   help="fix any increlora.config knob for every trial, e.g. --set lora_alpha=16 (repeatable; default: none)")
    t.add_argument("--save-adapters", action=argparse.BooleanOptionalAction, default=True,
                   help="save each trial's adapter in its folder and log it to its MLflow run (default: on)")

    d = p.add_argument_group("your own data instead of a GLUE --task (docs/own-data.md)")
    for name, default_text in OWN_DATA_FLAGS.items():
        _trial_flag(d, name, default_text)

    r = p.add_argument_group("resources")
    r.add_argument("--max-concurrent", type=_typed("max_concurrent"), default=0,
                   help="trials at once; 0 = cluster CPUs / --cpus-per-trial (and GPUs / --gpus-per-trial) (default: %(default)s)")
    r.add_argument("--cpus-per-trial", type=_typed("cpus_per_trial"), default=1, help="CPUs (torch threads) per trial (default: %(default)s)")
    r.add_argument("--gpus-per-trial", type=_gpus, default=None, metavar="N|auto",
                   help="GPUs per trial, fractional allowed (0.5 = two trials per GPU); auto = 0 without GPUs, else "
                        "GPUs / concurrent trials (default: auto)")
    r.add_argument("--num-cpus", type=_typed("num_cpus"), default=None, help="CPUs of the local Ray runtime (default: all cores)")
    r.add_argument("--address", default=None, help="address of an existing Ray cluster (default: start a local Ray runtime)")

    k = p.add_argument_group("tracking")
    k.add_argument("--storage", default=None,
                   help="Optuna storage, any SQLAlchemy URL (default: sqlite:///<search folder>/optuna.db)")
    k.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: sqlite:///<cwd>/mlflow.db, artifacts in <cwd>/mlartifacts)")
    k.add_argument("--experiment", default=None, help="MLflow experiment (default: increlora-<task>)")
    return p


def check_output_dir(path: str) -> Path:
    """``--output-dir`` as an absolute folder that can be written to (probed before any work)."""
    try:
        return check_writable_dir(path, "--output-dir")
    except UsageError as exc:
        raise SearchError(str(exc)) from None


def check_name(name: str) -> str:
    """A search name: letters, digits, '.', '_' and '-' (no path), at most 100 characters."""
    if len(name) > MAX_NAME:
        raise SearchError(f"--name: {len(name)} characters; use at most {MAX_NAME}")
    if not NAME_RE.fullmatch(name) or name in (".", ".."):  # fullmatch: "x\n" is no name either
        raise SearchError(f"--name {name!r}: use letters, digits, '.', '_' and '-' only")
    return name


def check_experiment(name: str) -> str:
    """An MLflow experiment name, which is also a folder of the artifact root: a path component (no '/',
    no '\\', not '.' or '..', no control characters such as a newline, no space at either end), at most 200 characters."""
    if not name or len(name) > 200:
        raise SearchError(f"--experiment: {len(name)} characters; use 1 to 200")
    if "/" in name or "\\" in name or name in (".", "..") or any(ord(c) < 32 or ord(c) == 127 for c in name) \
            or name != name.strip():
        raise SearchError(f"--experiment {name!r}: it names a folder of the artifact root; use no '/', '\\', "
                          "control characters, leading or trailing spaces, and not '.' or '..'")
    return name


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``["lora_alpha=16", "advance_learn=false"]`` -> ``{"lora_alpha": 16, "advance_learn": False}`` (YAML values).
    A value YAML's safe loader refuses (``!!python/...`` tags, an unclosed bracket) is an error, not a string."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, _, raw = item.partition("=")
        if not _ or not key.strip():
            raise SearchError(f"--set {item!r}: expected KNOB=VALUE")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            why = " ".join(str(getattr(exc, "problem", None) or exc).split())
            raise SearchError(f"--set {item!r}: not a plain YAML value ({why}); quote it to pass a string") from None
    return out


def check_set_knobs(knobs: dict[str, Any], method: str) -> dict[str, Any]:
    """``--set`` knobs checked one by one before any work: each is a knob of ``method``, of the right type,
    inside its domain (:mod:`increlora.domains`), and not one with a flag of its own."""
    out = {}
    for key, value in knobs.items():
        if key in OWN_FLAG_KNOBS:
            raise SearchError(f"--set {key}: use --{key.replace('_', '-')} (it has a flag of its own)")
        try:
            out[key] = check_knob(method, key, value)
        except ConfigError as exc:
            raise SearchError(f"--set {exc}") from None
    return out


def split_list(items: Union[str, Sequence[str]]) -> list[str]:
    """``"a,b"`` or ``["a,b", "c"]`` -> ``["a", "b", "c"]``."""
    if isinstance(items, str):
        items = [items]
    return [x.strip() for item in items for x in item.split(",") if x.strip()]


@dataclass(frozen=True)
class SearchSettings:
    """A new search as the user asked for it, validated (resources are resolved later, against Ray).
    The choices the search record keeps are :attr:`choices`, readable as attributes (``settings.task``)."""

    name: str
    search_dir: Path
    choices: SearchChoices
    profile: str
    budget: str
    search_extra: tuple[str, ...]
    knobs_only: bool  # --knobs-only: the built-in space without the learning rate
    space: Any  # a search_spaces.Space from --space, or None for the built-in one
    presets: tuple[tuple[str, Any], ...]  # (absolute path, Preset)
    trial_flags: dict[str, Any]  # training flags given on the command line (None = unset), own data's included
    set_knobs: dict[str, Any]  # --set KNOB=VALUE
    gpus_per_trial: Optional[float]
    max_concurrent: int
    num_cpus: Optional[int]
    address: Optional[str]
    task_spec: Any = None  # own data's TaskSpec (its shape picks the default knobs); None for a GLUE task

    def __getattr__(self, name: str) -> Any:
        if name != "choices" and "choices" in self.__dict__:
            return getattr(self.__dict__["choices"], name)
        raise AttributeError(name)

    @classmethod
    def from_args(cls, args: argparse.Namespace, argv: Sequence[str]) -> "SearchSettings":
        """Check everything that can be checked before Ray starts; SearchError on bad input."""
        own_flags = own_data_flags(args)
        task_spec = None
        if own_flags:
            task, task_spec = check_own_data(args, own_flags)
        else:
            try:
                task = normalize_task(args.task or "cola")
            except GlueError as exc:
                raise SearchError(f"--task: {exc}") from None
        set_knobs = check_set_knobs(parse_set(args.set), args.method)
        name = check_name(args.name or f"{task}-{args.method}-{_dt.datetime.now():%Y%m%d-%H%M%S}")
        search_dir = check_output_dir(args.output_dir) / name
        if search_dir.exists() and not abandoned_start(search_dir):
            raise SearchError(f"search folder {search_dir} exists: pass --resume to continue it, or choose another --name")
        if args.gpus_per_trial is not None and args.gpus_per_trial > 1 and not float(args.gpus_per_trial).is_integer():
            raise SearchError(f"--gpus-per-trial {args.gpus_per_trial}: above 1 it must be a whole number")
        model = args.model
        if model is not None:
            try:
                model = resolve_model(model)
            except BackboneError as exc:
                raise SearchError(f"--model: {exc}") from None
        data_dir = args.data_dir or os.environ.get("GLUE_DIR") or None
        if data_dir is not None:
            data_dir = str(Path(data_dir).expanduser().resolve())
            if not Path(data_dir).is_dir():
                raise SearchError(f"--data-dir {data_dir}: no such folder")
        uri = mlflow_runs.absolute_uri(args.tracking_uri or mlflow_runs.default_tracking_uri(Path.cwd()), Path.cwd())
        try:
            mlflow_runs.check_tracking_uri(uri, timeout=5.0)
        except mlflow_runs.TrackingError as exc:
            raise SearchError(str(exc)) from None
        storage = mlflow_runs.absolute_uri(args.storage, Path.cwd()) if args.storage else f"sqlite:///{search_dir / 'optuna.db'}"
        if args.storage:
            _check_storage(storage)
            _check_new_study(storage, name)
        choices = SearchChoices(
            task=task, method=args.method, model=model, data_dir=data_dir, trials=args.trials, sampler=args.sampler,
            population_size=args.population_size, seed=args.seed, scheduler=args.scheduler, asha_grace=args.asha_grace,
            asha_reduction_factor=args.asha_reduction_factor, objective=args.objective, evaluations=args.evaluations,
            tolerance=args.tolerance, storage=storage, tracking_uri=uri,
            artifact_root=mlflow_runs.default_artifact_root(uri, Path.cwd()),
            experiment_name=check_experiment(f"increlora-{task}" if args.experiment is None else args.experiment), save_adapters=args.save_adapters,
            cpus_per_trial=args.cpus_per_trial, argv=list(argv), max_failures=args.max_failures,
            confirm=args.confirm, confirm_share=args.confirm_share, dedupe=True,
        )
        return cls(
            name=name, search_dir=search_dir, choices=choices, profile=args.profile, budget=args.budget,
            search_extra=tuple(split_list(args.search_extra)), knobs_only=bool(args.knobs_only),
            space=_load_space(args.space, args.method),
            presets=_load_presets(args.preset, args.method),
            trial_flags={**{name: getattr(args, name) for name in list(TRIAL_FLAGS)[2:]}, **own_flags},
            set_knobs=set_knobs, gpus_per_trial=args.gpus_per_trial, max_concurrent=args.max_concurrent,
            num_cpus=args.num_cpus, address=args.address, task_spec=task_spec,
        )


def own_data_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The own-data flags given (files as absolute paths: trials and --resume may run elsewhere); checked
    against each other and --holdout-samples as TrainConfig checks them. Empty for a GLUE task."""
    flags = {name: getattr(args, name) for name in OWN_DATA_FLAGS if getattr(args, name) is not None}
    for name in ("train_file", "validation_file"):
        if name in flags:
            flags[name] = str(Path(flags[name]).expanduser().resolve())
    try:
        TrainConfig(**flags, holdout_samples=args.holdout_samples).validate()
    except ConfigError as exc:
        raise SearchError(str(exc)) from None
    return flags


def check_own_data(args: argparse.Namespace, flags: dict[str, Any]) -> tuple[str, Any]:
    """Read and check own data before anything starts (bad data: one line, exit 2); its name and TaskSpec."""
    if args.task and is_glue_task(args.task):
        raise SearchError(f"--task {args.task}: is a GLUE task; with --train-file or --dataset, --task only names "
                          f"your data: leave it out or choose another name")
    try:
        own = OwnData.from_knobs({**flags, "task": args.task})
        assert own is not None
        return own.name, load_source(own, need_eval=args.holdout_samples is None).spec
    except GlueError as exc:
        raise SearchError(str(exc)) from None


def _load_space(path: Optional[str], method: str) -> Any:
    if not path:
        return None

    try:
        return load_space(path, method=method)
    except SpaceError as exc:
        raise SearchError(f"--space: {exc}") from None


def _load_presets(paths: Sequence[str], method: str) -> tuple[tuple[str, Any], ...]:
    presets = []
    for path in paths:
        try:
            preset = load_preset(path)
        except PresetError as exc:
            raise SearchError(f"--preset: {exc}") from None
        if preset.method != method:
            raise SearchError(f"--preset {path}: a {preset.method} preset cannot seed a {method} search (--method)")
        presets.append((str(Path(path).resolve()), preset))
    return tuple(presets)


def _check_storage(storage: str) -> None:
    """``--storage`` outlives the process (a file or a server) and can be reached, within seconds."""
    try:
        check_database(storage, "--storage")
        sqlite = mlflow_runs.sqlite_path(storage)
        if sqlite is not None:
            mlflow_runs.check_sqlite_file(sqlite, "--storage")
    except (ProbeError, mlflow_runs.TrackingError) as exc:
        raise SearchError(str(exc)) from None


def _check_new_study(storage: str, name: str) -> None:
    try:
        import optuna

        from orchestrator.records.storage import make_storage

        if name in optuna.get_all_study_names(storage=make_storage(storage)):
            raise SearchError(f"Optuna study {name!r} already exists in {storage}: choose another --name or --resume")
    except SearchError:
        raise
    except Exception as exc:
        raise SearchError(f"--storage {storage}: cannot open it ({type(exc).__name__}: {exc})") from None
