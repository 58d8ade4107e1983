"""Ray Tune's Tuner for a search: the trainable with its context, the Optuna searcher, ASHA, callbacks.

:func:`new_tuner` assembles one session of a search from its record: the first session, and every
``--resume`` (after :mod:`orchestrator.running.recovery` has settled the study), so a resumed search runs
exactly as the original was set up. Each session is its own Ray experiment (``ray/<name>``,
``ray/<name>-resume<k>``); the search's state lives in the Optuna study and the search folder, not
in Ray's snapshots.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

from ray import tune

from orchestrator.records.record import SearchRecord
from orchestrator.tracking.mlflow_runs import TrackingInfo
from orchestrator.running.trial_report import METRICS, SCORE, TIME_ATTR
from orchestrator.running.callbacks import FailureLimit, TrialRunCloser
from orchestrator.running.progress import SearchProgress
from search_spaces import PRESET_NAME_ATTR, SpaceContext, make_space_fn, preset_point


def trial_context(record: SearchRecord) -> Any:
    """What each trial needs besides its config and the data (picklable)."""
    from orchestrator.running.trainable import TrialContext

    return TrialContext(
        task=record.task,
        method=record.method,
        search_name=record.name,
        search_dir=record.search_dir,
        base=dict(record.base),
        tracking=TrackingInfo(record.tracking_uri, record.experiment_id, record.experiment_name, record.parent_run_id),
        objective=record.objective,
        max_evaluations=int(record.max_evaluations),
        threads=int(record.cpus_per_trial),
        device="cpu" if record.gpus_per_trial == 0 else "auto",
        save_adapter=bool(record.save_adapters),
        log_adapter=bool(record.save_adapters),
    )


def trainable(record: SearchRecord, data: Any) -> Any:
    from orchestrator.running.trainable import run_trial

    resources = {"cpu": float(record.cpus_per_trial), "gpu": float(record.gpus_per_trial)}
    return tune.with_resources(tune.with_parameters(run_trial, data=data, context=trial_context(record)), resources)


class RecordingASHA:
    """Builds an ASHA scheduler that remembers the Ray trial ids it stopped (those are PRUNED; any
    other trial that ends without its closing report was interrupted)."""

    @staticmethod
    def create(record: SearchRecord, stopped: set[str]) -> Any:
        from ray.tune.schedulers import ASHAScheduler


        class _ASHA(ASHAScheduler):
            def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
                action = super().on_trial_result(tune_controller, trial, result)
                if action == self.STOP:
                    stopped.add(trial.trial_id)
                return action

        max_t = int(record.max_evaluations) + 1
        return _ASHA(time_attr=TIME_ATTR, metric=SCORE, mode="max", max_t=max_t,
                     grace_period=min(int(record.asha_grace), max_t), reduction_factor=float(record.asha_reduction_factor))


def new_tuner(record: SearchRecord, space: Any, data: Any, presets: Sequence[tuple[str, Any]], *,
              num_samples: Optional[int] = None, session: int = 0, seed_session: Optional[int] = None) -> tune.Tuner:
    """The Tuner of one session: ``num_samples`` trials (default: all of the record's). The sampler's seed
    is the search's seed plus ``seed_session`` (default ``session``): a search whose start-up is run again
    samples as it would have the first time."""
    from orchestrator.running.searcher import MultiObjectiveOptunaSearch, make_sampler
    from orchestrator.records.storage import make_storage
    from orchestrator.running.trainable import trial_dirname

    ctx = SpaceContext(task=record.task, total_steps=int(record.total_steps))
    enqueue = []
    for path, preset in presets:
        params, attrs = preset_point(space, ctx, preset.config)
        attrs[PRESET_NAME_ATTR] = path
        enqueue.append((params, attrs))
    stopped: set[str] = set()
    searcher = MultiObjectiveOptunaSearch(
        make_space_fn(space, ctx),
        sampler=make_sampler(record.sampler, record.seed + (session if seed_session is None else seed_session),
                             population_size=record.population_size),
        storage=make_storage(record.storage),
        study_name=record.study_name,
        enqueue=enqueue,
        search_dir=record.search_dir,
        stopped_by_scheduler=stopped,
        base_seed=int(record.base.get("seed", 42)) if record.dedupe else None,
    )
    name_objectives(searcher.study)
    scheduler = RecordingASHA.create(record, stopped) if record.scheduler == "asha" else None
    total = int(record.trials if num_samples is None else num_samples)
    limit = FailureLimit(record.max_failures, record.search_dir)
    return tune.Tuner(
        trainable(record, data),
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=total,
            max_concurrent_trials=int(min(record.max_concurrent, max(1, total))),
            reuse_actors=True,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=record.name if session == 0 else f"{record.name}-resume{session}",
            storage_path=str(Path(record.ray_path).parent),
            callbacks=[TrialRunCloser(record.tracking_uri), SearchProgress(total, record.max_evaluations, record.search_dir),
                       limit],
            stop=limit.stopper(),
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
        ),
    )


def name_objectives(study: Any) -> None:
    """Name the two objectives in the study (optuna-dashboard shows ``glue_score`` and
    ``adapter_params`` instead of "Objective 0/1"); best effort, the API is experimental."""
    import optuna


    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(METRICS))
    except Exception:  # pragma: no cover - an older/newer Optuna without it
        pass
