"""What a trial left behind, as one typed record: :class:`TrialRecord`; and what the front ranks, a
configuration (a trial with its replicates and confirmation runs, scored by its mean over seeds):
:class:`ConfigurationRecord`.

:func:`orchestrator.records.results.trial_records` reads every Optuna trial of a search into a :class:`TrialRecord`
(the study holds the objectives, the searched knobs and, as user attributes, the rest);
:func:`orchestrator.records.results.configuration_pool` groups them into :class:`ConfigurationRecord` s. Everything
that looks at a search's results reads these attributes (``t.score``, ``t.adapter_params``, ``t.allocation``);
the files written from them (``search.json``'s front rows, ``pareto_front.csv``, the preset YAML) keep their
own keys. Nothing here imports Ray, MLflow or Optuna.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass(frozen=True)
class TrialRecord:
    """One trial of a search::

        TrialRecord(number=7, state="COMPLETE", score=61.2, adapter_params=98304.0,
                    config={...every knob of the trial...}, params={...the searched knobs...},
                    allocation={"L00.q": 3, ...}, mlflow_run_id="ab12...", run_name="t007-r2.50-cola-increlora",
                    state_reason="final", seed_index=0)

    ``score`` and ``adapter_params`` are the trial's two objectives when it is COMPLETE, else the last values it
    reported (None when it reported none). ``replicate_of`` names the trial whose configuration this one repeats
    on another seed (the sampler proposed a configuration already trained; :mod:`orchestrator.running.searcher`),
    ``seed_index`` the seed it trained on (:mod:`orchestrator.records.seed_stats`). ``state_reason`` says why the trial
    ended as it did (``final``, ``recovered`` from its result file after a kill, ``pruned``, ``fail``,
    ``interrupted``: cut off by a stop of the search and re-run by ``--resume`` as the trial ``rerun_of`` names).
    """

    number: int
    state: str  # the Optuna state's name: COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    score: Optional[float] = None  # GLUE score (0-100)
    adapter_params: Optional[float] = None  # trainable adapter parameters
    config: dict[str, Any] = field(default_factory=dict)  # every knob: the search's base, the trial's, the method
    params: dict[str, Any] = field(default_factory=dict)  # the searched knobs, as Optuna suggested them
    allocation: dict[str, int] = field(default_factory=dict)  # module (short key, ``L03.q``) -> final rank
    mlflow_run_id: Optional[str] = None
    run_name: Optional[str] = None
    preset: Optional[str] = None  # the preset file the trial started from, if any
    state_reason: Optional[str] = None
    fail_reason: Optional[str] = None
    rerun_of: Optional[int] = None  # the interrupted trial this one re-runs
    replicate_of: Optional[int] = None  # the trial whose configuration this one repeats on another seed
    seed_index: int = 0
    node: Optional[str] = None  # the Ray node it ran on

    @property
    def is_complete(self) -> bool:
        """COMPLETE, with a finite score and parameter count: the trials that take part in the front."""
        if self.state != "COMPLETE" or self.score is None or self.adapter_params is None:
            return False
        try:
            return math.isfinite(float(self.score)) and math.isfinite(float(self.adapter_params))
        except (TypeError, ValueError):
            return False

    @property
    def is_failure(self) -> bool:
        """FAIL, and not cut off by a stop of the search (an interrupted trial is re-run, not failed)."""
        return self.state == "FAIL" and self.state_reason != "interrupted"

    @property
    def method(self) -> Optional[str]:
        return self.config.get("method")

    @property
    def total_rank(self) -> int:
        """The sum of the final ranks (0 without an allocation)."""
        return sum(int(v) for v in self.allocation.values())

    @property
    def point(self) -> tuple[float, float]:
        """(score, adapter params): the trial's place in the objective plane (of a COMPLETE trial)."""
        return float(self.score), float(self.adapter_params)

    def as_configuration(self) -> "ConfigurationRecord":
        """This trial alone as a configuration: one seed, no interval."""
        score = float(self.score)
        return ConfigurationRecord.of(self, score=score, adapter_params=self.adapter_params,
                                      seed_scores={self.seed_index: score}, single_score=score, n=1,
                                      members=(self.number,))


@dataclass(frozen=True)
class ConfigurationRecord(TrialRecord):
    """One configuration: its representative trial's record (the trial the others replicate; its ``number``,
    ``config``, ``allocation``, ``mlflow_run_id``...) with the configuration's scores over its seeds in place
    of the trial's own. ``score`` is the mean over ``seed_scores`` (seed index -> score: the trial, its
    replicates, its confirmation runs), ``adapter_params`` the mean size, ``single_score`` the first run's
    score, ``n`` the seeds, ``sd`` their standard deviation and ``ci_low``/``ci_high`` the mean's 95 %
    interval (None with one seed); ``members`` are the trial numbers of the configuration."""

    seed_scores: dict[int, float] = field(default_factory=dict)
    single_score: Optional[float] = None
    n: int = 1
    sd: Optional[float] = None
    ci_low: Optional[float] = None
    ci_high: Optional[float] = None
    members: tuple[int, ...] = ()

    @classmethod
    def of(cls, trial: TrialRecord, **stats: Any) -> "ConfigurationRecord":
        """``trial``'s record with the configuration's statistics (and any trial field given in ``stats``)."""
        base = {f.name: getattr(trial, f.name) for f in dataclasses.fields(TrialRecord)}
        return cls(**{**base, **stats})

    @property
    def has_interval(self) -> bool:
        """Trained on several seeds: the score is a mean with a 95 % interval."""
        return self.ci_low is not None

    def as_configuration(self) -> "ConfigurationRecord":
        return self
