"""The Ray Tune trainable: one trial = one ``increlora.trainer.train`` run with MLflow logging.

:func:`run_trial` is a module-level function; the search binds the tokenised data (put into
Ray's object store once, by ``tune.with_parameters``) and a picklable :class:`TrialContext`.

Every evaluation is reported with ``tune.report``; each report carries both searcher metrics
(``glue_score``, ``adapter_params``), the evaluation index (ASHA's time attribute, capped at
``max_evaluations``), the MLflow run id and the allocation so far. After training, the trial logs
its final record and ends its MLflow run, and only *then* sends a closing report with
``final: True`` and ``evaluation = max_evaluations + 1`` (ASHA's ``max_t``): a scheduler that
stops a trial kills it inside ``tune.report``, so nothing important may follow a report.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from increlora.naming import allocation_history, allocation_summary
from orchestrator.tracking.mlflow_runs import NOTE_TAG, TrackingInfo, allocation_metrics
from orchestrator.tracking.trial_run import MLFLOW_RETRY_ENV, ChildRun
from increlora.atomic import write_text_atomic
from orchestrator.records.trial_files import ERROR_FILE, one_line, trial_dir, trial_label, write_error
from orchestrator.running.trial_report import TRIAL_NUMBER_KEY, TrialReport
from orchestrator.records.seed_runs import CONFIRM_OF_KEY, SEED_INDEX_KEY, confirm_dir
from increlora.data import score_label
from increlora.naming import MODULE_TYPE_LABELS, allocation_markdown
from increlora.registry import budget_label
from increlora.run_config import build_run_config
from increlora.trainer import train
from orchestrator.reporting.console import plural
from orchestrator.running.preparation import prepare_data


@dataclass(frozen=True)
class TrialContext:
    """Everything a trial needs besides its sampled config and the data (picklable)."""

    task: str
    method: str
    search_name: str
    search_dir: str
    base: dict[str, Any] = field(default_factory=dict)
    tracking: Optional[TrackingInfo] = None
    objective: str = "final"
    max_evaluations: int = 4
    threads: Optional[int] = None
    device: str = "auto"
    save_adapter: bool = True
    log_adapter: bool = True


def run_name(task: str, method: str, number: int, knobs: dict[str, Any]) -> str:
    """``t003-r2.50-cola-increlora``: trial number and budget first, so the MLflow runs table
    (which cuts long names) still shows them."""
    return f"{trial_label(number)}-{budget_label(method, knobs)}-{task}-{method}"


def trial_dirname(trial: Any) -> str:
    """Ray's ``trial_dirname_creator``: ``t003_<ray trial id>``."""
    number = (trial.config or {}).get(TRIAL_NUMBER_KEY)
    label = trial_label(int(number)) if number is not None else "t"
    return f"{label}_{trial.trial_id}"


JOB_KEYS = (TRIAL_NUMBER_KEY, CONFIRM_OF_KEY, SEED_INDEX_KEY)


def split_config(method: str, config: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(Optuna trial number, the knobs ``build_run_config`` accepts) from a Ray trial config."""
    number = int(config.get(TRIAL_NUMBER_KEY, -1))
    return number, {k: v for k, v in config.items() if k not in JOB_KEYS}


def data_for_seed(data: Any, ctx: TrialContext, seed: Optional[int]) -> Any:
    """The trial's data: the search's (tokenised once, in the driver) on the search's seed; on another seed
    (a replicate or a confirmation run) a new training subset drawn and tokenised here, scored on the search's
    dev rows (the eval subset keeps the search's seed)."""
    base_seed = int(ctx.base.get("seed", 42))
    if data is not None and (seed is None or int(seed) == base_seed):
        return data

    return prepare_data(ctx.task, {**ctx.base, "seed": int(base_seed if seed is None else seed)}, eval_seed=base_seed)


def _finite_or_none(value: Any) -> Optional[float]:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def run_trial(config: dict[str, Any], data: Any = None, context: Optional[TrialContext] = None) -> None:
    """Train one configuration and report to Ray Tune (see the module docstring)."""
    from ray import tune


    if context is None:
        raise ValueError("run_trial needs a TrialContext (bind it with tune.with_parameters)")
    ctx = context
    _quiet_worker()
    t0 = time.perf_counter()
    number, knobs = split_config(ctx.method, config)
    confirm_of = config.get(CONFIRM_OF_KEY)  # a confirmation run of trial ``number`` (orchestrator.running.confirmation)
    seed_index = int(config.get(SEED_INDEX_KEY) or 0)
    name = run_name(ctx.task, ctx.method, number, knobs) + (f"-seed{seed_index}" if seed_index else "")
    out_dir = trial_dir(ctx.search_dir, number) if confirm_of is None else confirm_dir(ctx.search_dir, number, seed_index)
    tags = ({"trial": str(number)} if confirm_of is None else {"confirms": str(number)})
    if seed_index:
        tags["seed_index"] = str(seed_index)
    overrides = {
        **ctx.base,
        **knobs,
        "output_dir": str(out_dir),
        "progress": False,
        "threads": ctx.threads,
        "device": ctx.device,
        "save_adapter": ctx.save_adapter,
    }
    node = _node_id()
    run = (ChildRun.start(ctx.tracking, run_name=name, tags={**tags, "search": ctx.search_name, "node": node},
                          folder=out_dir) if ctx.tracking else None)
    run_id = run.run_id if run else None
    try:
        cfg = build_run_config(overrides)
        data = data_for_seed(data, ctx, cfg.train.seed)
        if run:
            params = {k: v for k, v in cfg.flat().items() if v is not None}  # one value per knob: unset ones left out
            params.update({k: v for k, v in config.items() if k not in params and k != TRIAL_NUMBER_KEY and v is not None})
            params["trial_number"] = number
            run.log_params(params)
        evaluations = 0

        def on_evaluate(event: Any) -> None:
            nonlocal evaluations
            evaluations += 1
            split_metrics = {f"eval/{k}": v for k, v in event.metrics.items()}
            if run:
                run.log_metrics(
                    {
                        "glue_score": event.glue_score,
                        "best_glue_score": event.best_glue_score,
                        "adapter_params": event.adapter_params,
                        "trainable_params": event.trainable_params,
                        "train_loss": event.train_loss,
                        "epoch": event.epoch,
                        **split_metrics,
                    },
                    step=event.step,
                )
            score = event.glue_score if ctx.objective == "final" else event.best_glue_score
            report = TrialReport(
                glue_score=float(score), adapter_params=int(event.adapter_params),
                evaluation=min(evaluations, ctx.max_evaluations), step=int(event.step), epoch=float(event.epoch),
                best_glue_score=float(event.best_glue_score), trainable_params=int(event.trainable_params),
                train_loss=float(event.train_loss), allocation=dict(event.allocation), mlflow_run_id=run_id,
                run_name=name, trial_number=number, node=node,
            )
            tune.report(report.to_result())

        result = train(cfg, data, on_evaluate=on_evaluate)
        wall = time.perf_counter() - t0
        if run:
            log_result(run, result.to_dict(), wall)
            if ctx.log_adapter and result.adapter_dir and Path(result.adapter_dir).is_dir():
                run.log_artifacts(result.adapter_dir, "adapter")
            run.finish("FINISHED")
    except Exception as exc:
        reason = one_line(exc)
        if confirm_of is None:
            write_error(ctx.search_dir, number, reason)  # read by the searcher (Optuna) and the console
        else:
            write_text_atomic(out_dir / ERROR_FILE, reason + "\n")
        if run:
            try:
                run.set_tags({"error": reason})
                run.finish("FAILED")
            except Exception:
                pass
        raise
    score = result.glue_score if ctx.objective == "final" else result.best_glue_score
    _release_memory()
    tune.report(TrialReport(
        glue_score=float(score), adapter_params=int(result.adapter_params), evaluation=ctx.max_evaluations + 1,
        step=int(result.steps), epoch=float(result.epochs), best_glue_score=float(result.best_glue_score),
        trainable_params=int(result.peak_trainable_params), peak_trainable_params=int(result.peak_trainable_params),
        head_params=int(result.head_params), wall_time_s=float(wall), allocation=dict(result.allocation),
        mlflow_run_id=run_id, run_name=name, trial_number=number, final=True, node=node,
    ).to_result())


def _node_id() -> str:
    """The Ray node this trial runs on (recorded on its MLflow run, in Optuna and in search.json)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # outside Ray (a plain call in a test)
        import socket

        return socket.gethostname()


def _release_memory() -> None:
    """Return freed heap memory to the OS between trials (reused actors run many trials)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc
        pass


def _quiet_worker() -> None:
    """Keep the driver's console readable: no weight-loading bars or deprecation chatter from
    the worker (Ray forwards worker output to the driver). Affects only this worker process."""
    import os
    import warnings

    from transformers.utils import logging as hf_logging

    for key, value in MLFLOW_RETRY_ENV.items():
        os.environ.setdefault(key, value)

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def log_result(run: ChildRun, result: dict[str, Any], wall: float) -> None:
    """The trial's final record on its MLflow run (from the trainer's result, as ``result.json`` holds
    it): metrics, the schedule in steps as the trainer resolved it (params ``resolved.*``: a searched
    fraction of the run and the steps it became), allocation, result.json, the run's description."""
    steps = int(result["steps"])
    final = {
        "final_glue_score": _finite_or_none(result["glue_score"]),
        "best_glue_score": _finite_or_none(result["best_glue_score"]),
        "best_step": result["best_step"],
        "adapter_params": result["adapter_params"],
        "peak_trainable_params": result["peak_trainable_params"],
        "head_params": result["head_params"],
        "wall_time_s": wall,
        "train_time_s": result["train_time_s"],
        "eval_time_s": result["eval_time_s"],
        "steps": steps,
        "growth_rounds": len(result.get("growth_events") or []),
        **{f"final/{k}": v for k, v in (result.get("metrics") or {}).items()},
    }
    run.log_metrics({k: v for k, v in final.items() if v is not None}, step=steps)
    run.log_params({f"resolved.{k}": v for k, v in (result.get("schedule") or {}).items()})
    # the growth as metric history: the allocation after every growth round, at that round's training step, so
    # a trial's rank charts show the growth (the final allocation follows at the last step)
    for step, allocation in allocation_history(result.get("allocation") or {}, result.get("growth_events") or []):
        run.log_metrics(allocation_metrics(allocation), step=step)
    run.log_allocation(result.get("allocation") or {}, step=steps)
    run.log_json({**result, "wall_time_s": wall}, "result.json")
    run.set_tags({"glue_score": f"{result['glue_score']:.4f}", "adapter_params": result["adapter_params"],
                  NOTE_TAG: trial_note(result)})


def trial_note(result: dict[str, Any]) -> str:
    """A trial run's description (Markdown, shown on its MLflow page): score, size and the allocation
    as a layers x module types table."""
    allocation = result.get("allocation") or {}
    schedule = result.get("schedule") or {}
    score = score_label((result.get("data") or {}).get("metric"))  # own data's fingerprint names its metric
    head = (f"{score} **{result['glue_score']:.2f}** (best {result['best_glue_score']:.2f} at step {result['best_step']}), "
            f"**{int(result['adapter_params']):,}** adapter parameters, total rank {sum(allocation.values())} over "
            f"{len(allocation)} modules, {result['steps']} steps")
    if schedule.get("growth_rounds") is not None:
        head += f", {plural(int(schedule['growth_rounds']), 'growth round')} ending at step {schedule.get('growth_end_step')}"

    by_type = allocation_summary(allocation).get("rank_by_type", {})
    types = " · ".join(f"{MODULE_TYPE_LABELS.get(t, t)} {r}" for t, r in by_type.items())
    return head + f".\n\nRank per module type: {types}.\n\nFinal rank per module:\n\n" + allocation_markdown(allocation)
