"""Before the first trial: the knobs every trial shares, the data (tokenised once), the run's
facts (steps, evaluations, chance score) and the search space."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from orchestrator.running.settings import CPU_SEARCH_DEFAULTS, SearchError, SearchSettings
from increlora import schedule
from increlora.backbone import BackboneError, load_tokenizer
from increlora.budget import adapted_shapes, majority_score, params_budget_range
from increlora.config import ConfigError
from increlora.data import GlueError, data_source, prepare_data as prepare
from increlora.registry import method_spec
from increlora.run_config import build_run_config
from increlora.task_defaults import resolve_profile, task_defaults
from search_spaces import SpaceError, default_space


@dataclass(frozen=True)
class Protocol:
    """The trial protocol every trial shares."""

    base: dict[str, Any]  # flat knobs of every trial (the sampled ones come on top)
    profile: str
    eval_steps_fixed: bool  # --set eval_steps=N (else it follows --evaluations)


@dataclass(frozen=True)
class RunFacts:
    """What the data and the protocol make of a trial."""

    total_steps: int
    max_evaluations: int
    train_size: int
    eval_size: int
    chance_score: float
    data_fingerprint: dict[str, Any]  # the data's fingerprint (increlora.data.sources), recorded by presets


def trial_protocol(settings: SearchSettings, gpus_per_trial: float) -> Protocol:
    """Knobs every trial shares: profile defaults < the search's CPU defaults < flags < --set."""
    profile = resolve_profile(settings.profile, gpus_per_trial > 0)
    base = task_defaults(settings.task_spec or settings.task, settings.method, profile)
    if profile == "cpu":
        base.update(CPU_SEARCH_DEFAULTS)
    flags = {"model": settings.model, "data_dir": settings.data_dir, **settings.trial_flags}
    base.update({k: v for k, v in flags.items() if v is not None})
    base.pop("eval_steps", None)
    base.update(settings.set_knobs)
    base.update(task=settings.task, method=settings.method, seed=settings.seed)
    try:
        base = {k: v for k, v in build_run_config(base).flat().items() if k in base or k in ("model", "data_dir")}
    except ConfigError as exc:
        raise SearchError(f"training settings: {exc}") from None
    return Protocol(base=base, profile=profile, eval_steps_fixed="eval_steps" in settings.set_knobs)


def prepare_data(task: str, base: dict[str, Any], *, eval_seed: Optional[int] = None) -> Any:
    """Tokenise the task (a GLUE task, or own data when ``base`` names files or a dataset) once, in the
    driver; the trials share it through Ray's object store. ``eval_seed``: the seed of the dev subset
    (default ``base["seed"]``; a run on another seed keeps the search's dev rows)."""
    try:
        source = data_source({**base, "task": task})
        tokenizer = load_tokenizer(base.get("model"))
        return prepare(source, tokenizer, data_dir=base.get("data_dir"), train_samples=base.get("train_samples"),
                       eval_samples=base.get("eval_samples"), max_length=base["max_length"], seed=base["seed"],
                       holdout_samples=base.get("holdout_samples"), eval_seed=eval_seed)
    except (GlueError, BackboneError) as exc:
        raise SearchError(str(exc)) from None
    except OSError as exc:
        raise SearchError(f"cannot load the tokenizer or data: {exc}") from None


def run_facts(protocol: Protocol, data: Any, evaluations: int) -> RunFacts:
    """Steps and evaluations per trial (``base["eval_steps"]`` is set here unless fixed by --set)."""
    base = protocol.base
    total = schedule.total_steps(data.train_size, base["batch_size"], base["epochs"], base.get("max_steps"))
    if not protocol.eval_steps_fixed or not base.get("eval_steps"):
        base["eval_steps"] = schedule.eval_steps_for(total, evaluations)
    first_split = next(iter(data.evals.values()))
    return RunFacts(total_steps=total, max_evaluations=schedule.evaluation_count(total, base["eval_steps"]),
                    train_size=data.train_size, eval_size=data.eval_size,
                    chance_score=majority_score(data.task_spec, first_split.labels),
                    data_fingerprint=dict(data.fingerprint))


def build_space(settings: SearchSettings, base: dict[str, Any]) -> Any:
    """The searched space: ``--space FILE``, or the method's built-in space shaped by the flags."""
    try:
        if settings.space is not None:
            if settings.search_extra or settings.budget != "rank":
                raise SpaceError("--search-extra and --budget shape the built-in space; put those knobs in the --space file")
            return settings.space
        budget = None
        if settings.budget == "params":
            if not method_spec(settings.method).searches_param_budget:
                raise SpaceError(f"--budget params applies to the increlora space only, not {settings.method}")
            budget = params_budget_range(adapted_shapes(base.get("model")))
        return default_space(settings.method, settings.task, extra=settings.search_extra,
                             learning_rate=float(base["learning_rate"]), budget_params=budget,
                             knobs_only=settings.knobs_only)
    except SpaceError as exc:
        raise SearchError(str(exc)) from None
