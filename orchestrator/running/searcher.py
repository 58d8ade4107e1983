"""The multi-objective Optuna searcher: GLUE score up, adapter parameters down.

:class:`MultiObjectiveOptunaSearch` is Ray Tune's ``OptunaSearch`` with three changes:

- a trial is told COMPLETE only when its last result carries ``final: True`` (the trainable's
  closing report after training and logging finished). A trial the scheduler stopped earlier is
  told PRUNED - plain OptunaSearch would tell Optuna COMPLETE with the truncated values, so a
  cheap, cut-short trial could sit on the Pareto front (stack notes, section 2). An errored trial,
  or one with a non-finite objective, is told FAIL, with the one-line reason the trainable wrote
  (``trials/tNNN/error.txt``) as the user attribute ``fail_reason``. A trial that stopped for any
  other reason - the search was interrupted - is left RUNNING: ``--resume`` recovers it
  (:mod:`orchestrator.running.recovery`);
- each suggestion carries the Optuna trial number (``trial_number``), used for folder and run
  names, and the trial's knobs are stored as the Optuna user attribute ``config``; the MLflow
  run id, the final allocation and the objectives are stored as user attributes at the end, so
  the study alone is enough to export presets;
- presets can be enqueued with user attributes (their full knob set), see
  :func:`search_spaces.preset_point`;
- a configuration the sampler proposes again (the same searched values as a trial that did not fail) is
  not trained twice on one seed: it becomes a *replicate* (user attributes ``replicate_of`` and
  ``seed_index``) trained on the next seed of that configuration (:func:`orchestrator.records.seed_stats.seed_for`),
  and the results count it as one more seed of it (:func:`orchestrator.records.results.configuration_pool`).
"""

from __future__ import annotations

import json
import logging
import math
import threading
from typing import Any, Optional, Sequence

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from increlora.naming import compact_allocation
from orchestrator.records.seed_runs import SEED_INDEX_KEY
from search_spaces.common import PRESET_CONFIG_ATTR
from orchestrator.records.seed_stats import seed_for
from orchestrator.records.trial_files import read_error
from orchestrator.running.trial_report import METRICS, MODES, PARAMS, SCORE, TRIAL_NUMBER_KEY, TrialReport

log = logging.getLogger(__name__)

SAMPLERS = ("tpe", "nsga2", "random")


class PicklableNSGAIISampler(optuna.samplers.NSGAIISampler):
    """Optuna's NSGA-II sampler, picklable again.

    Optuna 5.1 gave the genetic samplers' base a ``threading.Lock`` (``_thread_lock``), which cannot be
    pickled; Ray Tune pickles the search algorithm, sampler included, when it builds a ``Tuner``, so a
    plain ``NSGAIISampler`` stops every ``--sampler nsga2`` search before its first trial ("cannot pickle
    '_thread.lock' object"). The pickled state leaves the lock out and unpickling makes a fresh one.
    """

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if "_thread_lock" in state:
            state["_thread_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "_thread_lock" in state:
            self._thread_lock = threading.Lock()


def make_sampler(name: str, seed: Optional[int], *, population_size: int = 16) -> optuna.samplers.BaseSampler:
    """A seeded multi-objective sampler: ``tpe`` (MOTPE), ``nsga2`` or ``random``."""
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "nsga2":
        return PicklableNSGAIISampler(seed=seed, population_size=population_size)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")


class MultiObjectiveOptunaSearch(OptunaSearch):
    """OptunaSearch over (glue_score max, adapter_params min) that marks early-stopped trials PRUNED."""

    def __init__(
        self,
        space: Any,
        *,
        sampler: optuna.samplers.BaseSampler,
        storage: Optional[optuna.storages.BaseStorage],
        study_name: str,
        enqueue: Sequence[tuple[dict[str, Any], dict[str, Any]]] = (),
        search_dir: Optional[str] = None,
        stopped_by_scheduler: Optional[set[str]] = None,
        base_seed: Optional[int] = None,
    ) -> None:
        """``stopped_by_scheduler``: Ray trial ids the scheduler stopped (shared with it; those are
        PRUNED); ``search_dir``: where failed trials leave their ``error.txt``; ``base_seed``: the search's
        training seed (a replicate trains on another; None: no replicates, a repeat is trained as it is)."""
        super().__init__(
            space=space,
            metric=list(METRICS),
            mode=list(MODES),
            sampler=sampler,
            study_name=study_name,
            storage=storage,
        )
        for params, user_attrs in enqueue:
            self._ot_study.enqueue_trial(params, user_attrs=user_attrs)
        self.search_dir = search_dir
        self.stopped_by_scheduler = stopped_by_scheduler if stopped_by_scheduler is not None else set()
        self.base_seed = base_seed

    @property
    def study(self) -> optuna.Study:
        return self._ot_study

    def suggest(self, trial_id: str) -> Optional[dict]:
        config = super().suggest(trial_id)
        if config is None:
            return None
        ot_trial = self._ot_trials[trial_id]
        replicate = self._replicate(ot_trial) if self.base_seed is not None else None
        if replicate is not None:
            origin, index = replicate
            config["seed"] = seed_for(self.base_seed, index)
            config[SEED_INDEX_KEY] = index
            try:
                ot_trial.set_user_attr("replicate_of", origin)
                ot_trial.set_user_attr(SEED_INDEX_KEY, index)
            except Exception as exc:
                log.warning("could not mark Optuna trial %s as a replicate: %s", ot_trial.number, exc)
        try:
            ot_trial.set_user_attr("config", json.loads(json.dumps(config, default=str)))
            ot_trial.set_user_attr("ray_trial_id", trial_id)
        except Exception as exc:  # a storage hiccup must not lose the suggestion
            log.warning("could not store the config of Optuna trial %s: %s", ot_trial.number, exc)
        config[TRIAL_NUMBER_KEY] = ot_trial.number
        return config

    def _replicate(self, ot_trial: Any) -> Optional[tuple[int, int]]:
        """(the trial whose configuration this one repeats, the next seed index of that configuration), or
        None when no earlier trial that did not fail has the same searched values."""
        params = dict(ot_trial.params)
        if not params:
            return None
        preset = ot_trial.user_attrs.get(PRESET_CONFIG_ATTR)
        same = [t for t in self._ot_study.get_trials(deepcopy=False)
                if t.number != ot_trial.number and t.state != TrialState.FAIL and dict(t.params) == params
                and t.user_attrs.get(PRESET_CONFIG_ATTR) == preset]
        if not same:
            return None
        origin = min(int(t.user_attrs.get("replicate_of", t.number)) for t in same)
        used = [int(t.user_attrs.get(SEED_INDEX_KEY) or 0) for t in same]
        return origin, max(used) + 1

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return super().on_trial_complete(trial_id, result=result, error=error)
        ot_trial = self._ot_trials[trial_id]
        report = TrialReport.from_result(result)
        reason = None
        if error or report is None:
            state, told = TrialState.FAIL, None
            reason = (read_error(self.search_dir, ot_trial.number, trial_id) if self.search_dir else None) or "the trial raised"
        elif report.final and not report.finite():
            state, told = TrialState.FAIL, None
            reason = f"non-finite objectives {report.objectives}"
        elif report.final:
            state, told = TrialState.COMPLETE, [float(v) for v in report.objectives]
        elif trial_id in self.stopped_by_scheduler:
            state, told = TrialState.PRUNED, None
        else:  # interrupted: left RUNNING for --resume to recover (its result file, or a re-run)
            self._record(ot_trial, report, TrialState.RUNNING)
            self._completed_trials.add(trial_id)
            return
        self._record(ot_trial, report, state, reason)
        try:
            self._ot_study.tell(ot_trial, told, state=state)
        except Exception as exc:
            log.warning("Optuna did not accept the result of trial %s: %s", ot_trial.number, exc)
        self._completed_trials.add(trial_id)

    @staticmethod
    def _record(ot_trial: Any, report: Optional[TrialReport], state: TrialState, reason: Optional[str] = None) -> None:
        attrs: dict[str, Any] = {"state_reason": "final" if state == TrialState.COMPLETE else
                                 "interrupted" if state == TrialState.RUNNING else state.name.lower()}
        if reason:
            attrs["fail_reason"] = reason
        if report is not None:
            values = {"mlflow_run_id": report.mlflow_run_id, "run_name": report.run_name or None,
                      f"last_{SCORE}": report.glue_score, f"last_{PARAMS}": report.adapter_params,
                      "best_glue_score": report.best_glue_score, "evaluation": report.evaluation, "step": report.step,
                      "peak_trainable_params": report.peak_trainable_params, "head_params": report.head_params,
                      "wall_time_s": report.wall_time_s, "node": report.node}
            for key, value in values.items():
                if value is not None and not (isinstance(value, float) and not math.isfinite(value)):
                    attrs[key] = value
            if report.allocation:
                attrs["allocation"] = compact_allocation(report.allocation)
        for k, v in attrs.items():
            try:
                ot_trial.set_user_attr(k, v)
            except Exception as exc:
                log.warning("could not store %s of Optuna trial %s: %s", k, ot_trial.number, exc)
