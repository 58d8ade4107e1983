"""``python -m orchestrator.search``: a multi-objective budget search over IncreLoRA (or a baseline).

Ray Tune schedules the trials; Ray's OptunaSearch (subclassed in :mod:`orchestrator.searcher`)
suggests configurations maximising the GLUE score and minimising the adapter parameters; MLflow
records one parent run per search with one nested run per trial; at the end the Pareto front,
plots and presets are written (:mod:`orchestrator.export`).

Order of work, so that bad input fails fast and leaves nothing behind: parse and check the
arguments, the space, the presets, the tracking URI and the storage -> start (or join) Ray and
check the requested resources against the cluster -> tokenise the data once -> only then create
the search folder, the MLflow parent run and the Tuner. Every usage error is one line on stderr
and exit code 2.

Search folder ``<output-dir>/<name>``: ``search.json`` (settings and results), ``optuna.db``
(the study, unless ``--storage``), ``space.yaml``, ``ray/<name>/`` (Tune's experiment, used by
``--resume``), ``trials/tNNN/`` (each trial's ``result.json`` and adapter), ``pareto_front.csv``,
``pareto.png``, ``hypervolume.png`` and ``presets/``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import math
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from ray import tune

from orchestrator.searcher import FINAL_KEY, PARAMS, SAMPLERS, SCORE, TRIAL_NUMBER_KEY

SEARCH_VERSION = 1
DEFAULT_TRIALS = 64
DEFAULT_EVALUATIONS = 4
# CPU profile of a search: 64 trials of CoLA finish in about an hour on 2 cores (2 trials at once).
CPU_SEARCH_DEFAULTS = {"train_samples": 1000, "eval_samples": 500, "epochs": 2.0}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class SearchError(Exception):
    """Bad input or an unusable environment: printed as one line, exit code 2."""


class PhaseTimer:
    """Wall time of the driver's consecutive phases, kept in ``search.json`` as ``timings``
    (``started_unix``, ``checks_s``, ``ray_start_s``, ``data_prep_s``, ``setup_s``, ``tuner_fit_s``,
    ``finalize_s``, ``finished_unix``; a resumed search records its last session). Read by
    ``benchmarks/overhead.py``."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {"started_unix": time.time()}
        self._last = time.perf_counter()

    def mark(self, phase: str) -> None:
        """End ``phase`` now: the time since the previous mark is added to ``<phase>_s``."""
        now = time.perf_counter()
        key = f"{phase}_s"
        self.timings[key] = round(self.timings.get(key, 0.0) + now - self._last, 4)
        self._last = now


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _gpus(text: str) -> Optional[float]:
    return None if text == "auto" else _non_negative_float(text)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``error: ...``) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        _err(f"{message} (see --help)")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The CLI; every flag's help ends with its default."""
    from increlora.config import METHODS

    p = _Parser(
        prog="python -m orchestrator.search",
        description=(
            "Multi-objective search (GLUE score up, adapter parameters down) over IncreLoRA's budget, growth "
            "schedule and EMA knobs - or a LoRA/AdaLoRA baseline - with Ray Tune, Optuna and MLflow."
        ),
        epilog=(
            "Without a GPU and without flags a search trains on CPU with the packaged all-MiniLM-L6-v2 on a "
            "1000-example subset for 2 epochs (sequence length 64 for single-sentence tasks), 2 trials at a time "
            "on a 2-core machine. Example: python -m orchestrator.search --task cola --trials 64"
        ),
    )
    g = p.add_argument_group("search")
    g.add_argument("--task", default="cola", help="GLUE task: cola sst2 mrpc qqp stsb mnli qnli rte wnli (default: %(default)s)")
    g.add_argument("--method", default="increlora", choices=METHODS, help="adapter method searched (default: %(default)s)")
    g.add_argument("--trials", type=_positive_int, default=DEFAULT_TRIALS, help="number of trials (default: %(default)s)")
    g.add_argument("--sampler", default="tpe", choices=SAMPLERS,
                   help="Optuna multi-objective sampler, seeded with --seed (default: %(default)s)")
    g.add_argument("--population-size", type=_positive_int, default=16, help="NSGA-II population size (default: %(default)s)")
    g.add_argument("--seed", type=int, default=42, help="seed of the sampler and of every trial's training (default: %(default)s)")
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
    g.add_argument("--asha-grace", type=_positive_int, default=1, help="ASHA grace period in evaluations (default: %(default)s)")
    g.add_argument("--asha-reduction-factor", type=float, default=2.0, help="ASHA reduction factor (default: %(default)s)")
    g.add_argument("--preset", action="append", default=[], metavar="FILE",
                   help="evaluate this preset's configuration first (repeatable; default: none)")
    g.add_argument("--tolerance", type=_non_negative_float, default=1.0,
                   help="the 'smallest' preset: fewest parameters within this many GLUE points of the best (default: %(default)s)")
    g.add_argument("--name", default=None, help="search name (default: <task>-<method>-<date>-<time>)")
    g.add_argument("--output-dir", default="searches", help="parent folder of search folders (default: %(default)s)")
    g.add_argument("--resume", action="store_true",
                   help="continue the search --name from its folder (its saved settings apply; default: off)")

    t = p.add_argument_group("training (every trial)")
    t.add_argument("--model", default=None, help="HF model name or local folder (default: the packaged all-MiniLM-L6-v2)")
    t.add_argument("--data-dir", default=None, help="folder with the GLUE TSV folders (default: $GLUE_DIR, else the HF hub)")
    t.add_argument("--profile", choices=("auto", "cpu", "paper"), default="auto",
                   help="training defaults: cpu (short runs), paper (the official scripts' settings); auto = paper when "
                        "trials get a GPU, else cpu (default: %(default)s)")
    t.add_argument("--train-samples", type=_positive_int, default=None,
                   help="seeded, stratified training subset (default: 1000 with the cpu profile, all with paper)")
    t.add_argument("--eval-samples", type=_positive_int, default=None,
                   help="seeded dev subset (default: 500 with the cpu profile, the full dev set with paper)")
    t.add_argument("--epochs", type=float, default=None, help="epochs per trial (default: 2 with the cpu profile, the script's with paper)")
    t.add_argument("--max-steps", type=_positive_int, default=None, help="optimizer steps per trial, overrides --epochs (default: unset)")
    t.add_argument("--batch-size", type=_positive_int, default=None, help="training batch size (default: 32)")
    t.add_argument("--max-length", type=_positive_int, default=None,
                   help="max tokens (default: cpu profile 64 single-sentence / 128 pairs; paper: the script's)")
    t.add_argument("--learning-rate", type=float, default=None,
                   help="base learning rate, the centre of its range when searched (default: the profile's per-task value)")
    t.add_argument("--evaluations", type=_positive_int, default=DEFAULT_EVALUATIONS,
                   help="evaluations per trial, the last at the end; every one is reported to Tune (default: %(default)s)")
    t.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE",
                   help="fix any increlora.config knob for every trial, e.g. --set lora_alpha=16 (repeatable; default: none)")
    t.add_argument("--save-adapters", action=argparse.BooleanOptionalAction, default=True,
                   help="save each trial's adapter in its folder and log it to its MLflow run (default: on)")

    r = p.add_argument_group("resources")
    r.add_argument("--max-concurrent", type=int, default=0,
                   help="trials at once; 0 = cluster CPUs / --cpus-per-trial (and GPUs / --gpus-per-trial) (default: %(default)s)")
    r.add_argument("--cpus-per-trial", type=_positive_int, default=1, help="CPUs (torch threads) per trial (default: %(default)s)")
    r.add_argument("--gpus-per-trial", type=_gpus, default=None, metavar="N|auto",
                   help="GPUs per trial, fractional allowed (0.5 = two trials per GPU); auto = 0 without GPUs, else "
                        "GPUs / concurrent trials (default: auto)")
    r.add_argument("--num-cpus", type=_positive_int, default=None, help="CPUs of the local Ray runtime (default: all cores)")
    r.add_argument("--address", default=None, help="address of an existing Ray cluster (default: start a local Ray runtime)")

    k = p.add_argument_group("tracking")
    k.add_argument("--storage", default=None,
                   help="Optuna storage, any SQLAlchemy URL (default: sqlite:///<search folder>/optuna.db)")
    k.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: sqlite:///<cwd>/mlflow.db, artifacts in <cwd>/mlartifacts)")
    k.add_argument("--experiment", default=None, help="MLflow experiment (default: increlora-<task>)")
    return p


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _err(message: Any) -> None:
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)


def _say(message: str) -> None:
    print(message, flush=True)


def package_version() -> str:
    """Installed version of increlora-search, else the source tree's."""
    from importlib import metadata

    try:
        return metadata.version("increlora-search")
    except metadata.PackageNotFoundError:
        from increlora import __version__

        return f"{__version__}+src"


def git_commit() -> Optional[str]:
    """``git rev-parse HEAD`` of the source tree, if it is a git checkout with a commit."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``["lora_alpha=16", "advance_learn=false"]`` -> ``{"lora_alpha": 16, "advance_learn": False}`` (YAML values)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise SearchError(f"--set {item!r}: expected KNOB=VALUE")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except Exception:
            out[key.strip()] = raw
    return out


def _split_list(items: Sequence[str]) -> list[str]:
    return [x.strip() for item in items for x in item.split(",") if x.strip()]


def uniform_rank_cost(model: Optional[str]) -> int:
    """Adapter parameters of average rank 1 on all six linear types of every layer (IncreLoRA's count)."""
    from transformers import AutoConfig

    from increlora.backbone import resolve_model

    cfg = AutoConfig.from_pretrained(resolve_model(model))
    h, i, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    return int(layers * (4 * (2 * h + 1) + 2 * (h + i + 1)))


def chance_score(data: Any) -> float:
    """GLUE score of a constant predictor on the first eval split (the hypervolume reference)."""
    import numpy as np

    from increlora.metrics import compute_metrics, glue_score

    split = next(iter(data.evals.values()))
    labels = np.asarray(split.labels)
    if data.is_regression or len(labels) == 0:
        return 0.0
    values, counts = np.unique(labels, return_counts=True)
    preds = np.full(len(labels), values[int(np.argmax(counts))])
    try:
        score = float(glue_score(data.task, compute_metrics(data.task, preds, labels)))
    except Exception:
        return 0.0
    return score if math.isfinite(score) else 0.0


# ----------------------------------------------------------------------------------------------
# Progress callback
# ----------------------------------------------------------------------------------------------


class ProgressPrinter(tune.Callback):
    """One line per finished trial: state, score, adapter parameters, budget, wall time."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.started = time.time()

    def _line(self, trial: Any, state: str) -> None:
        self.done += 1
        r = trial.last_result or {}
        number = r.get(TRIAL_NUMBER_KEY, (trial.config or {}).get(TRIAL_NUMBER_KEY, "?"))
        score = r.get(SCORE)
        params = r.get(PARAMS)
        score_text = f"{score:6.2f}" if isinstance(score, (int, float)) else "     -"
        params_text = f"{int(params):>10,}" if isinstance(params, (int, float)) else "         -"
        elapsed = time.time() - self.started
        _say(
            f"[{self.done:>3}/{self.total}] trial {number!s:>3} {state:<8} score {score_text}  params {params_text}  "
            f"{r.get('run_name', '')}  ({elapsed / 60:.1f} min)"
        )

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trial, "COMPLETE" if (trial.last_result or {}).get(FINAL_KEY) else "PRUNED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trial, "FAILED")


# ----------------------------------------------------------------------------------------------
# The search
# ----------------------------------------------------------------------------------------------


def _check_new(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """Everything that can be checked before Ray starts; returns the partial summary."""
    from increlora.backbone import BackboneError, resolve_model
    from increlora.glue import GlueError, normalize_task
    from increlora.presets import PresetError, load_preset
    from orchestrator import tracking
    from search_spaces import SpaceError
    from search_spaces.from_yaml import load_space

    try:
        task = normalize_task(args.task)
    except GlueError as exc:
        raise SearchError(f"--task: {exc}") from None
    method = args.method
    name = args.name or f"{task}-{method}-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    if not _NAME_RE.match(name):
        raise SearchError(f"--name {name!r}: use letters, digits, '.', '_' and '-' only")
    output_dir = Path(args.output_dir).expanduser().resolve()
    search_dir = output_dir / name
    if search_dir.exists():
        raise SearchError(f"search folder {search_dir} exists: pass --resume to continue it, or choose another --name")
    if args.asha_reduction_factor <= 1:
        raise SearchError(f"--asha-reduction-factor must be > 1, got {args.asha_reduction_factor}")
    if args.max_concurrent < 0:
        raise SearchError(f"--max-concurrent must be >= 0, got {args.max_concurrent}")
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

    space = None
    if args.space:
        try:
            space = load_space(args.space, method=method)
        except SpaceError as exc:
            raise SearchError(f"--space: {exc}") from None
    presets = []
    for path in args.preset:
        try:
            preset = load_preset(path)
        except PresetError as exc:
            raise SearchError(f"--preset: {exc}") from None
        if preset.method != method:
            raise SearchError(f"--preset {path}: a {preset.method} preset cannot seed a {method} search (--method)")
        presets.append((str(Path(path).resolve()), preset))

    uri = tracking.absolute_uri(args.tracking_uri or tracking.default_tracking_uri(Path.cwd()), Path.cwd())
    try:
        tracking.check_tracking_uri(uri, timeout=5.0)
    except tracking.TrackingError as exc:
        raise SearchError(str(exc)) from None
    storage = tracking.absolute_uri(args.storage, Path.cwd()) if args.storage else f"sqlite:///{search_dir / 'optuna.db'}"
    if args.storage:
        try:
            import optuna

            from orchestrator.searcher import make_storage

            if name in optuna.get_all_study_names(storage=make_storage(storage)):
                raise SearchError(f"Optuna study {name!r} already exists in {storage}: choose another --name or --resume")
        except SearchError:
            raise
        except Exception as exc:
            raise SearchError(f"--storage {storage}: cannot open it ({type(exc).__name__}: {exc})") from None
    return {
        "version": SEARCH_VERSION,
        "name": name,
        "search_dir": str(search_dir),
        "status": "created",
        "task": task,
        "method": method,
        "model": model,
        "data_dir": data_dir,
        "trials": args.trials,
        "sampler": args.sampler,
        "population_size": args.population_size,
        "seed": args.seed,
        "scheduler": args.scheduler,
        "asha_grace": args.asha_grace,
        "asha_reduction_factor": args.asha_reduction_factor,
        "objective": args.objective,
        "evaluations": args.evaluations,
        "tolerance": args.tolerance,
        "storage": storage,
        "study_name": name,
        "tracking_uri": uri,
        "artifact_root": tracking.default_artifact_root(uri, Path.cwd()),
        "experiment_name": args.experiment or f"increlora-{task}",
        "ray_path": str(search_dir / "ray" / name),
        "save_adapters": args.save_adapters,
        "cpus_per_trial": args.cpus_per_trial,
        "argv": argv,
        "_space": space,
        "_presets": presets,
    }


def _init_ray(args: argparse.Namespace) -> bool:
    """Start a local Ray runtime (or join ``--address``); False if Ray was already running here."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    if args.address:
        check_ray_address(args.address)
    try:
        if args.address:
            ray.init(address=args.address, **kwargs)
        else:
            # Trials run in a fresh thread each; with glibc's default one malloc arena per thread the
            # workers' memory grows by ~1 GB a trial. Two arenas keep it flat (measured: RSS stable).
            env = {"MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2")}
            ray.init(num_cpus=args.num_cpus or os.cpu_count() or 1, runtime_env={"env_vars": env}, **kwargs)
    except Exception as exc:
        where = f"--address {args.address}" if args.address else "a local Ray runtime"
        raise SearchError(f"cannot start {where}: {type(exc).__name__}: {exc}") from None
    return True


def check_ray_address(address: str, timeout: float = 5.0) -> None:
    """A TCP connect to ``host:port`` of ``--address`` (``ray://`` too), so a wrong address fails in
    seconds instead of Ray's long retries; ``auto`` is left to Ray."""
    if address == "auto":
        return
    target = address.split("://", 1)[-1].rstrip("/")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise SearchError(f"--address {address}: expected HOST:PORT (or ray://HOST:PORT, or auto)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return
    except OSError as exc:
        raise SearchError(f"--address {address}: no Ray cluster answers there ({exc})") from None


def _resources(summary: dict[str, Any], args: argparse.Namespace) -> None:
    """Check CPUs/GPUs per trial against the cluster; resolve ``auto`` GPUs and the concurrency."""
    import ray

    res = ray.cluster_resources()
    cpus, gpus = float(res.get("CPU", 0)), float(res.get("GPU", 0))
    cpt = float(summary["cpus_per_trial"])
    if cpt > cpus:
        raise SearchError(
            f"--cpus-per-trial {cpt:g} exceeds the Ray cluster's {cpus:g} CPUs; trials would wait forever (lower it or add --num-cpus)"
        )
    gpt = summary.get("gpus_per_trial")
    concurrency = int(summary.get("max_concurrent") or 0) or max(1, int(cpus // cpt))
    if gpt is None:
        gpt = 0.0 if gpus == 0 else min(1.0, gpus / concurrency)
    if gpt > gpus:
        raise SearchError(
            f"--gpus-per-trial {gpt:g} but the Ray cluster has {gpus:g} GPUs; trials would wait forever. "
            "Pass --gpus-per-trial 0 to train on CPU (or join a GPU cluster with --address)"
        )
    if gpt > 0:
        concurrency = min(concurrency, max(1, int(math.floor(gpus / gpt + 1e-9))))
    summary["gpus_per_trial"] = float(gpt)
    summary["max_concurrent"] = int(min(concurrency, summary["trials"]))
    summary["cluster"] = {"CPU": cpus, "GPU": gpus}


def _base_config(summary: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Knobs every trial shares: profile defaults < the search's CPU defaults < flags < --set."""
    from increlora.config import ConfigError, build_run_config
    from increlora.task_defaults import resolve_profile, task_defaults

    profile = resolve_profile(args.profile, summary["gpus_per_trial"] > 0)
    base = task_defaults(summary["task"], summary["method"], profile)
    if profile == "cpu":
        base.update(CPU_SEARCH_DEFAULTS)
    flags = {
        "model": summary["model"],
        "data_dir": summary["data_dir"],
        "train_samples": args.train_samples,
        "eval_samples": args.eval_samples,
        "epochs": args.epochs,
        "max_steps": args.max_steps,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "learning_rate": args.learning_rate,
    }
    base.update({k: v for k, v in flags.items() if v is not None})
    base.pop("eval_steps", None)
    extra = parse_set(args.set)
    base.update(extra)
    base.update(task=summary["task"], method=summary["method"], seed=summary["seed"])
    try:
        base = {k: v for k, v in build_run_config(base).flat().items() if k in base or k in ("model", "data_dir")}
    except ConfigError as exc:
        raise SearchError(f"training settings: {exc}") from None
    summary["profile"] = profile
    summary["eval_steps_fixed"] = "eval_steps" in extra
    return base


def _prepare_data(summary: dict[str, Any]) -> Any:
    """Tokenise the task once (in the driver); the trials share it through Ray's object store."""
    from increlora.backbone import BackboneError, load_tokenizer
    from increlora.glue import GlueError, prepare_data

    base = summary["base"]
    try:
        tokenizer = load_tokenizer(base.get("model"))
        return prepare_data(
            summary["task"],
            tokenizer,
            data_dir=base.get("data_dir"),
            train_samples=base.get("train_samples"),
            eval_samples=base.get("eval_samples"),
            max_length=base["max_length"],
            seed=base["seed"],
            holdout_samples=base.get("holdout_samples"),
        )
    except (GlueError, BackboneError) as exc:
        raise SearchError(str(exc)) from None
    except OSError as exc:
        raise SearchError(f"cannot load the tokenizer or data: {exc}") from None


def _schedule(summary: dict[str, Any], data: Any) -> None:
    from search_spaces import schedule

    base = summary["base"]
    total = schedule.total_steps(data.train_size, base["batch_size"], base["epochs"], base.get("max_steps"))
    if not summary.get("eval_steps_fixed") or not base.get("eval_steps"):
        base["eval_steps"] = schedule.eval_steps_for(total, summary["evaluations"])
    summary["total_steps"] = total
    summary["max_evaluations"] = schedule.evaluation_count(total, base["eval_steps"])
    summary["train_size"] = data.train_size
    summary["eval_size"] = data.eval_size
    summary["chance_score"] = chance_score(data)


def _build_space(summary: dict[str, Any], args: argparse.Namespace) -> Any:
    from search_spaces import SpaceError, default_space
    from search_spaces.increlora import budget_range_from_rank

    space = summary.pop("_space")
    try:
        if space is None:
            budget = None
            if args.budget == "params":
                if summary["method"] != "increlora":
                    raise SpaceError("--budget params applies to the increlora space only")
                budget = budget_range_from_rank(uniform_rank_cost(summary["base"].get("model")))
            space = default_space(
                summary["method"],
                summary["task"],
                extra=_split_list(args.search_extra),
                learning_rate=float(summary["base"]["learning_rate"]),
                budget_params=budget,
            )
        elif args.search_extra or args.budget != "rank":
            raise SpaceError("--search-extra and --budget shape the built-in space; put those knobs in the --space file")
    except SpaceError as exc:
        raise SearchError(str(exc)) from None
    return space


def _parent_params(summary: dict[str, Any]) -> dict[str, Any]:
    keys = ("task", "method", "model", "data_dir", "trials", "sampler", "seed", "scheduler", "objective", "evaluations",
            "max_evaluations", "total_steps", "train_size", "eval_size", "profile", "storage", "study_name",
            "max_concurrent", "cpus_per_trial", "gpus_per_trial", "package_version", "git_commit", "space_source")
    params = {k: summary.get(k) for k in keys}
    if summary["sampler"] == "nsga2":
        params["population_size"] = summary["population_size"]
    if summary["scheduler"] == "asha":
        params.update(asha_grace=summary["asha_grace"], asha_reduction_factor=summary["asha_reduction_factor"])
    params["command"] = "python -m orchestrator.search " + " ".join(shlex.quote(a) for a in summary["argv"])
    params["space"] = summary["space_text"]
    params["presets"] = ", ".join(summary.get("presets") or []) or "none"
    params.update({f"base.{k}": v for k, v in summary["base"].items()})
    return params


def _context(summary: dict[str, Any]) -> Any:
    from orchestrator.tracking import TrackingInfo
    from orchestrator.trainable import TrialContext

    return TrialContext(
        task=summary["task"],
        method=summary["method"],
        search_name=summary["name"],
        search_dir=summary["search_dir"],
        base=dict(summary["base"]),
        tracking=TrackingInfo(summary["tracking_uri"], summary["experiment_id"], summary["experiment_name"], summary["parent_run_id"]),
        objective=summary["objective"],
        max_evaluations=int(summary["max_evaluations"]),
        threads=int(summary["cpus_per_trial"]),
        device="cpu" if summary["gpus_per_trial"] == 0 else "auto",
        save_adapter=bool(summary["save_adapters"]),
        log_adapter=bool(summary["save_adapters"]),
    )


def _trainable(summary: dict[str, Any], data: Any) -> Any:
    from orchestrator.trainable import run_trial

    resources = {"cpu": float(summary["cpus_per_trial"]), "gpu": float(summary["gpus_per_trial"])}
    return tune.with_resources(tune.with_parameters(run_trial, data=data, context=_context(summary)), resources)


def _new_tuner(summary: dict[str, Any], space: Any, data: Any) -> tune.Tuner:
    from ray.tune.schedulers import ASHAScheduler

    from orchestrator.searcher import MultiObjectiveOptunaSearch, make_sampler, make_storage
    from orchestrator.tracking import TrialRunCloser
    from orchestrator.trainable import TIME_ATTR, trial_dirname
    from search_spaces import PRESET_NAME_ATTR, SpaceContext, make_space_fn, preset_point

    ctx = SpaceContext(task=summary["task"], total_steps=int(summary["total_steps"]))
    enqueue = []
    for path, preset in summary.pop("_presets"):
        params, attrs = preset_point(space, ctx, preset.config)
        attrs[PRESET_NAME_ATTR] = path
        enqueue.append((params, attrs))
    searcher = MultiObjectiveOptunaSearch(
        make_space_fn(space, ctx),
        sampler=make_sampler(summary["sampler"], summary["seed"], population_size=summary["population_size"]),
        storage=make_storage(summary["storage"]),
        study_name=summary["study_name"],
        enqueue=enqueue,
    )
    _name_objectives(searcher.study)
    scheduler = None
    if summary["scheduler"] == "asha":
        max_t = int(summary["max_evaluations"]) + 1
        scheduler = ASHAScheduler(
            time_attr=TIME_ATTR,
            metric=SCORE,
            mode="max",
            max_t=max_t,
            grace_period=min(int(summary["asha_grace"]), max_t),
            reduction_factor=float(summary["asha_reduction_factor"]),
        )
    return tune.Tuner(
        _trainable(summary, data),
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=int(summary["trials"]),
            max_concurrent_trials=int(summary["max_concurrent"]),
            reuse_actors=True,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=summary["name"],
            storage_path=str(Path(summary["ray_path"]).parent),
            callbacks=[TrialRunCloser(summary["tracking_uri"]), ProgressPrinter(int(summary["trials"]))],
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
        ),
    )


def _name_objectives(study: Any) -> None:
    """Name the two objectives in the study (optuna-dashboard shows ``glue_score`` and
    ``adapter_params`` instead of "Objective 0/1"); best effort, the API is experimental."""
    import warnings

    import optuna

    from orchestrator.searcher import METRICS

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(METRICS))
    except Exception:  # pragma: no cover - an older/newer Optuna without it
        pass


def _start_tracking(summary: dict[str, Any]) -> None:
    from orchestrator import tracking

    try:
        summary["experiment_id"] = tracking.ensure_experiment(
            summary["tracking_uri"], summary["experiment_name"], summary["artifact_root"]
        )
        summary["parent_run_id"] = tracking.start_parent_run(
            summary["tracking_uri"],
            summary["experiment_id"],
            name=summary["name"],
            tags={"task": summary["task"], "method": summary["method"], "search_dir": summary["search_dir"]},
        )
    except tracking.TrackingError as exc:
        raise SearchError(str(exc)) from None
    except Exception as exc:
        raise SearchError(f"MLflow ({summary['tracking_uri']}): {type(exc).__name__}: {exc}") from None
    tracking.log_params(tracking.client(summary["tracking_uri"]), summary["parent_run_id"], _parent_params(summary))


def _print_summary(summary: dict[str, Any]) -> None:
    """The Pareto front as a table and where to look next."""
    from rich.console import Console
    from rich.table import Table

    from orchestrator import tracking

    console = Console(highlight=False, width=max(100, shutil.get_terminal_size((140, 24)).columns))
    counts = summary.get("counts", {})
    table = Table(title=f"Pareto front of {summary['name']} ({', '.join(f'{v} {k.lower()}' for k, v in sorted(counts.items()))})")
    for col in ("trial", "GLUE score", "adapter params", "total rank", "preset", "run"):
        table.add_column(col, justify="right" if col in ("trial", "GLUE score", "adapter params", "total rank") else "left")
    for row in summary.get("front", []):
        table.add_row(str(row["trial"]), f"{float(row['glue_score']):.2f}", f"{int(row['adapter_params']):,}",
                      str(row["total_rank"]), row["labels"], row["run_name"])
    console.print(table)
    uri = summary["tracking_uri"]
    ui = f"open {uri}" if tracking.is_remote(uri) else f"mlflow ui --backend-store-uri {uri}"
    outputs = summary.get("outputs", {})
    console.print(f"MLflow:   {ui}   (experiment {summary['experiment_name']}, parent run {summary['parent_run_id']})")
    console.print(f"Optuna:   optuna-dashboard {summary['storage']}   (study {summary['study_name']})")
    for path in outputs.get("presets", []):
        console.print(f"Preset:   {path}")
    for key in ("front_csv", "pareto_png", "hypervolume_png"):
        if outputs.get(key):
            console.print(f"Output:   {outputs[key]}")
    console.print(f"Summary:  {Path(summary['search_dir']) / 'search.json'}")
    console.print(f"Export:   python -m orchestrator.export --search {summary['search_dir']} --out presets/")
    console.print(f"Report:   python -m orchestrator.report --search {summary['search_dir']}")


def _finish(summary: dict[str, Any], search_dir: Path, timer: Optional[PhaseTimer] = None) -> int:
    from orchestrator import tracking
    from orchestrator.export import finalize, write_summary

    uri, parent = summary["tracking_uri"], summary["parent_run_id"]
    tracking.close_dangling_runs(uri, summary["experiment_id"], parent, "KILLED")
    finished_states = ("COMPLETE", "PRUNED", "FAIL")
    summary["status"] = "finalizing"
    summary = finalize(summary, search_dir=search_dir)
    done = sum(v for k, v in summary.get("counts", {}).items() if k in finished_states)
    complete = summary.get("counts", {}).get("COMPLETE", 0)
    summary["status"] = "finished" if done >= summary["trials"] else "interrupted"
    summary["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    if timer is not None:
        timer.mark("finalize")
        summary["timings"] = dict(timer.timings, finished_unix=time.time())
    write_summary(search_dir, summary)
    tracking.client(uri).set_terminated(parent, "FINISHED" if summary["status"] == "finished" else "KILLED")
    _print_summary(summary)
    if summary["status"] == "interrupted":
        _say(f"Interrupted after {done}/{summary['trials']} trials; continue with: python -m orchestrator.search "
             f"--resume --name {summary['name']} --output-dir {search_dir.parent}")
        return 130
    if complete == 0:
        _err(f"no trial of {summary['name']} completed; see the trial errors in {summary['ray_path']}")
        return 1
    return 0


def run_search(args: argparse.Namespace, argv: list[str]) -> int:
    """Run (or resume) a search; raises SearchError for bad input."""
    timer = PhaseTimer()
    import optuna

    from orchestrator import tracking
    from orchestrator.export import read_summary, write_summary
    from search_spaces.from_yaml import dump_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no Tune tables, our own lines only

    if args.resume:
        if not args.name:
            raise SearchError("--resume needs --name (the search to continue)")
        search_dir = Path(args.output_dir).expanduser().resolve() / args.name
        if not (search_dir / "search.json").is_file():
            raise SearchError(f"--resume: no search {args.name!r} in {search_dir.parent} (no search.json)")
        summary = read_summary(search_dir)
        if not tune.Tuner.can_restore(summary["ray_path"]):
            raise SearchError(f"--resume: no restorable Ray Tune experiment at {summary['ray_path']}")
        _check_offline(summary.get("model"))
        timer.mark("checks")
        started = _init_ray(args)
        timer.mark("ray_start")
        try:
            _resources(summary, args)
            data = _prepare_data(summary)
            timer.mark("data_prep")
            tracking.reopen_run(summary["tracking_uri"], summary["parent_run_id"])
            summary["status"] = "running"
            write_summary(search_dir, summary)
            _say(f"Resuming search {summary['name']} ({summary['trials']} trials; its saved settings apply)")
            tuner = tune.Tuner.restore(summary["ray_path"], trainable=_trainable(summary, data),
                                       resume_unfinished=True, resume_errored=False)
            timer.mark("setup")
            return _fit_and_finish(tuner, summary, search_dir, timer)
        finally:
            if started:
                _shutdown_ray()
                _sweep_runs(summary)

    summary = _check_new(args, argv)
    _check_offline(summary.get("model"))
    timer.mark("checks")
    started = _init_ray(args)
    timer.mark("ray_start")
    try:
        summary["gpus_per_trial"] = args.gpus_per_trial
        summary["max_concurrent"] = args.max_concurrent
        _resources(summary, args)
        summary["base"] = _base_config(summary, args)
        data = _prepare_data(summary)
        _schedule(summary, data)
        timer.mark("data_prep")
        space = _build_space(summary, args)
        summary["space"] = space.to_dict()
        summary["space_source"] = space.source
        summary["space_text"] = space.describe()
        summary["presets"] = [path for path, _ in summary["_presets"]]
        summary["package_version"] = package_version()
        summary["git_commit"] = git_commit()
        summary["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        _start_tracking(summary)
        search_dir = Path(summary["search_dir"])
        try:
            search_dir.mkdir(parents=True)
            (search_dir / "space.yaml").write_text(dump_space(space))
            tuner = _new_tuner(summary, space, data)
        except BaseException:
            tracking.client(summary["tracking_uri"]).set_terminated(summary["parent_run_id"], "FAILED")
            raise
        summary["status"] = "running"
        write_summary(search_dir, {k: v for k, v in summary.items() if not k.startswith("_")})
        _say(
            f"Search {summary['name']}: {summary['method']} on {summary['task']}, {summary['trials']} trials, "
            f"{summary['max_concurrent']} at a time ({summary['cpus_per_trial']} CPU, {summary['gpus_per_trial']:g} GPU each), "
            f"{summary['train_size']} training rows, {summary['total_steps']} steps and {summary['max_evaluations']} "
            f"evaluations per trial\n  folder {search_dir}\n  space  {summary['space_text']}"
        )
        timer.mark("setup")
        return _fit_and_finish(tuner, {k: v for k, v in summary.items() if not k.startswith("_")}, search_dir, timer)
    finally:
        if started:
            _shutdown_ray()
            _sweep_runs(summary)


def _sweep_runs(summary: dict[str, Any]) -> None:
    """After Ray is gone no trial can still be logging: end whatever child run is left RUNNING."""
    from orchestrator import tracking

    if summary.get("parent_run_id") and summary.get("experiment_id"):
        try:
            tracking.close_dangling_runs(summary["tracking_uri"], summary["experiment_id"], summary["parent_run_id"], "KILLED")
        except Exception:  # pragma: no cover - best effort on the way out
            pass


def _fit_and_finish(tuner: tune.Tuner, summary: dict[str, Any], search_dir: Path, timer: Optional[PhaseTimer] = None) -> int:
    from orchestrator import tracking

    try:
        tuner.fit()
    except BaseException:
        tracking.close_dangling_runs(summary["tracking_uri"], summary["experiment_id"], summary["parent_run_id"], "KILLED")
        tracking.client(summary["tracking_uri"]).set_terminated(summary["parent_run_id"], "FAILED")
        raise
    if timer is not None:
        timer.mark("tuner_fit")
    return _finish(summary, search_dir, timer)


def _check_offline(model: Optional[str]) -> None:
    """A local model (or the packaged one) never needs the hub: keep transformers offline."""
    if model is None or Path(model).is_dir():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _shutdown_ray() -> None:
    import ray

    try:
        ray.shutdown()
    except Exception:  # pragma: no cover
        pass


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m orchestrator.search``; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed)
        return int(exc.code or 0)
    argv_list = list(sys.argv[1:] if argv is None else argv)
    try:
        return run_search(args, argv_list)
    except SearchError as exc:
        _err(exc)
        return 2
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
