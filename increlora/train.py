"""``python -m increlora.train``: fine-tune one model on one GLUE task (or your own data) with IncreLoRA,
LoRA or AdaLoRA.

Precedence of settings: the task's profile defaults < a ``--preset`` file < flags on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import sys
from pathlib import Path
from typing import Any, Optional, Sequence, get_type_hints

from .cli import OneLineParser, UsageError, check_writable_dir, parse_args, prog_name
from .config import ConfigError, TrainConfig
from .run_config import build_run_config
from .methods import METHODS
from .registry import REGISTRY, budget_label
from .task_defaults import PROFILES, resolve_profile, task_defaults

EPILOG = """\
profiles (--profile): 'paper' = the official DeBERTaV3-base GLUE scripts (spec 2.2) for full runs on
a GPU; 'cpu' = a 2,000-example stratified subset, 3 epochs, max length 64 (128 for pairs), lr 2e-3,
growth schedule as fractions of the run; 'auto' (default) = paper on CUDA, cpu otherwise.
The defaults shown are the dataclass defaults; the profile, then --preset, then flags override them.

examples:
  python -m increlora.train --task cola
  python -m increlora.train --task rte --method lora --r 8 --data-dir ../shared/data/glue
  python -m increlora.train --task cola --preset presets/cola-knee.yaml --output-dir runs/cola
  python -m increlora.train --train-file reviews.csv --validation-file reviews-dev.csv --text-columns text
      --label-column stars --metric f1     (your own data: docs/own-data.md)
"""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _arg_type(hint: Any):
    text = str(hint)
    if "bool" in text:
        return None
    if "list" in text:
        return lambda s: [v.strip() for v in s.split(",") if v.strip()]
    if "float" in text:
        return float
    if "int" in text:
        return int
    return str


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=prog_name("increlora.train", "increlora-train"),
        description="Fine-tune a Hugging Face encoder on a GLUE task or your own data with IncreLoRA (or the "
                    "LoRA/AdaLoRA baselines).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    p.add_argument("--profile", choices=PROFILES, default=argparse.SUPPRESS, help="per-task default settings (default: auto)")
    p.add_argument("--preset", default=argparse.SUPPRESS, help="a preset YAML file (from orchestrator.search/export)")
    p.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bar, only the summary")
    seen: set[str] = set()
    sections = [("training", TrainConfig)] + [(f"{m} knobs", spec.config_cls) for m, spec in REGISTRY.items()]
    for title, cls in sections:
        group = p.add_argument_group(title)
        hints = get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in seen:
                continue
            seen.add(f.name)
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            shared = [m for m, spec in REGISTRY.items() if f.name in {x.name for x in dataclasses.fields(spec.config_cls)}]
            note = f" [{'/'.join(shared)}]" if cls is not TrainConfig and len(shared) > 1 else ""
            text = f.metadata.get("help", "")
            shown = "" if "(default:" in text else f" (default: {default})"  # some knobs' help names their default
            help_text = f"{text}{note}{shown}".replace("%", "%%")
            if f.name == "method":
                group.add_argument(_flag(f.name), choices=METHODS, default=argparse.SUPPRESS, help=help_text)
                continue
            typ = _arg_type(hints[f.name])
            if f.metadata.get("choices"):
                group.add_argument(_flag(f.name), choices=f.metadata["choices"], default=argparse.SUPPRESS, help=help_text)
            elif typ is None:
                group.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
            else:
                group.add_argument(_flag(f.name), type=typ, default=argparse.SUPPRESS, metavar=f.name.upper(), help=help_text)
    return p


def resolve_overrides(args: dict[str, Any], *, cuda_available: bool) -> dict[str, Any]:
    """Merge profile defaults, the preset and explicit flags into flat overrides. With your own data
    (``--train-file`` / ``--dataset``) the data are read here once: their shape picks the defaults."""
    from .data import OwnData, is_glue_task, load_source, normalize_task
    from .presets import learned_nothing, load_preset, preset_overrides

    preset_path = args.pop("preset", None)
    preset = load_preset(preset_path) if preset_path is not None else None
    if preset is not None and learned_nothing(preset):
        print(f"warning: preset {preset_path}: {learned_nothing(preset)}", file=sys.stderr)
    pre = preset_overrides(preset) if preset else {}
    method = args.get("method") or pre.get("method") or "increlora"
    profile = resolve_profile(args.pop("profile", "auto"), cuda_available)
    own = OwnData.from_knobs(args) if "task" not in args or not is_glue_task(args["task"]) else None
    if own is None and (args.get("train_file") or args.get("dataset")):
        raise UsageError(f"--task {args['task']}: is a GLUE task; with --train-file or --dataset, --task only names "
                         f"your data: leave it out or choose another name")
    if own is not None:
        cfg = dict(args)  # the config's own checks first (e.g. no validation file and no --holdout-samples)
        cfg.update(task=own.name, method=method)
        build_run_config(cfg)
        task, defaults_for = own.name, load_source(own, need_eval=args.get("holdout_samples") is None).spec
    else:
        task = defaults_for = normalize_task(args.get("task") or pre.get("task") or TrainConfig.task)
    budget = args.get("target_rank") or pre.get("target_rank") or args.get("r") or 2.0
    merged: dict[str, Any] = {**task_defaults(defaults_for, method, profile, float(budget))}
    merged.update({k: v for k, v in pre.items() if k != "task"})
    merged.update(args)
    merged["task"], merged["method"] = task, method
    merged.update(REGISTRY[method].budget_knobs(float(budget), {**pre, **args}))
    return merged


def default_output_dir(cfg: Any) -> Path:
    """``runs/<task>-<method>-<budget>-s<seed>-<UTC time>`` under the current folder."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    knobs = cfg.flat()
    return Path("runs") / f"{cfg.train.task}-{cfg.train.method}-{budget_label(cfg.train.method, knobs)}-s{cfg.train.seed}-{stamp}"


def _summary(result, out_dir: Optional[str]) -> str:
    from .data import TASKS

    alloc = list(result.allocation.values())
    lines = [
        f"task {result.task}  method {result.method}  model {result.model}",
        f"{'GLUE score' if result.task in TASKS else 'score'}: last {result.glue_score:.2f}  best {result.best_glue_score:.2f} (step {result.best_step})  "
        + "  ".join(f"{k}={v:.2f}" for k, v in result.metrics.items()),
        f"adapter params {result.adapter_params:,} (active)  peak trainable {result.peak_trainable_params:,}  "
        f"head {result.head_params:,}",
        f"ranks: total {sum(alloc)} over {len(alloc)} modules, min {min(alloc)}, max {max(alloc)}",
        f"steps {result.steps}  train {result.train_time_s:.1f}s  eval {result.eval_time_s:.1f}s  wall {result.wall_time_s:.1f}s",
    ]
    schedule = result.schedule or {}
    if schedule.get("budget") is not None and not schedule.get("growth_finished", True):
        lines.append(f"warning: growth did not reach the budget: total rank {sum(alloc)} after "
                     f"{schedule.get('growth_rounds', 0)} round(s); {schedule.get('budget_warning') or 'the run ended first'}")
    if out_dir:
        lines.append(f"wrote {out_dir}/result.json" + (f" and {result.adapter_dir}" if result.adapter_dir else ""))
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parsed = parse_args(build_parser(), argv)
    if isinstance(parsed, int):
        return parsed
    args = vars(parsed)
    quiet = args.pop("quiet", False)
    try:
        import torch

        from .backbone import BackboneError  # noqa: F401  (subclass of ConfigError)
        from .data import GlueError
        from .presets import PresetError
        from .trainer import TrainingDiverged, train

        try:
            overrides = resolve_overrides(args, cuda_available=torch.cuda.is_available())
            if quiet:
                overrides["progress"] = False
            cfg = build_run_config(overrides)
            if not cfg.train.output_dir:  # the CLI always keeps its result: runs/<run name> by default
                cfg.train.output_dir = str(default_output_dir(cfg))
            check_writable_dir(cfg.train.output_dir, "--output-dir")
            result = train(cfg)
        except TrainingDiverged as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except (ConfigError, GlueError, PresetError, UsageError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(_summary(result, cfg.train.output_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())

