"""Choose presets from a finished search and write them as preset YAML files.

The presets are chosen among trial records (:class:`~orchestrator.records.trial_record.TrialRecord`) or
configuration records (:class:`~orchestrator.records.trial_record.ConfigurationRecord`: a trial with its seeds).
Only COMPLETE trials with a finite score and a parameter count take part. The front and the
picks come from :func:`orchestrator.records.results.front_and_picks`; the files are written by
:func:`increlora.presets.save_preset` (validated, atomic).
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from increlora.budget import above_chance
from increlora.config import PROTOCOL, RUNTIME, knobs_with_role
from increlora.naming import allocation_summary
from increlora.presets import PRESET_VERSION, Preset, not_learned_warning, save_preset
from orchestrator.records.results import LABELS, complete_trials, front_and_picks, front_rows
from orchestrator.records.trial_record import ConfigurationRecord, TrialRecord

# Knobs a preset leaves out: how the search measured its trials and where they ran (the protocol and
# runtime knobs: the target task's own defaults apply when a preset is reused), and the task itself.
EXCLUDED_KNOBS = knobs_with_role(PROTOCOL, RUNTIME) | {"task"}


PathLike = Union[str, "os.PathLike[str]"]


def _preset_config(config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if "method" not in config:
        raise ValueError("trial config has no 'method' knob")
    method = str(config["method"])
    knobs = {k: v for k, v in config.items() if k != "method" and k not in EXCLUDED_KNOBS and v is not None}
    return method, knobs


def export_presets(
    trials: Sequence[TrialRecord],
    out_dir: PathLike,
    *,
    task: str,
    model: Optional[str],
    search_name: str,
    package_version: str,
    train_size: Optional[int],
    tolerance: float = 1.0,
    chance_score: Optional[float] = None,
    evaluated_on: str = "dev",
    eval_rows: Optional[int] = None,
    data: Optional[dict[str, Any]] = None,
) -> list[Path]:
    """Write ``<out_dir>/<task>-<label>.yaml`` for the best, smallest and knee trials.

    With ``chance_score`` (the majority-class GLUE score of the search's dev rows) each preset records
    it and whether its own score was above it (:func:`increlora.budget.above_chance`); a preset that
    was not gets ``above_chance: false`` and a ``warning`` in its provenance, and a warning header.

    The front is computed over the COMPLETE trials only; each label gets its own file even when
    two labels pick the same trial (``provenance.selected_as`` lists all labels of that trial).
    ``evaluated_on`` (``dev`` or ``holdout``: held-out training rows) and ``eval_rows`` say where the
    scores that chose the preset come from; a comparison on the dev set needs a ``holdout`` preset.
    ``trials`` may be configuration records (:attr:`orchestrator.records.results.SearchResults.pool`; a trial record
    counts as a configuration with one seed): then ``score`` is the mean over the configuration's seeds, and
    the provenance records ``seeds`` (n), ``score_sd``, ``score_interval`` (95 %), ``single_score`` (the first
    run's) and ``seed_scores``.
    ``data``: the data's fingerprint (:meth:`increlora.data.sources.LoadedData.fingerprint`: its ``sha256``,
    the files' hashes or the dataset's name and split sizes, own data's columns and metric), kept as
    ``provenance.data`` so a preset says which data it was found on.
    Raises ValueError when no trial is COMPLETE. Returns the written paths in label order.
    """
    done = _configurations(trials)
    if not done:
        raise ValueError("export_presets: no COMPLETE trial with a score and adapter_params")
    front, picks = front_and_picks(done, tolerance)
    date = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    out = Path(out_dir)
    paths: list[Path] = []
    for label in LABELS:
        idx = picks[label]
        trial = done[idx]
        method, knobs = _preset_config(dict(trial.config))
        provenance = {
            "task": task,
            "model": model,
            "train_size": train_size,
            "score": round(float(trial.score), 4),
            "evaluated_on": evaluated_on,
            "eval_rows": eval_rows,
            "adapter_params": int(trial.adapter_params),
            "allocation": allocation_summary(trial.allocation),
            "search": search_name,
            "trial": int(trial.number),
            "mlflow_run_id": trial.mlflow_run_id,
            "date": date,
            "package_version": package_version,
            "selected_as": [lab for lab in LABELS if picks[lab] == idx],
            "front_size": len(front),
            "tolerance": float(tolerance),
            "seeds": int(trial.n or 1),
        }
        if trial.has_interval:  # a configuration trained on several seeds: its mean, sd and interval
            provenance["score_sd"] = round(float(trial.sd), 4)
            provenance["score_interval"] = [round(float(trial.ci_low), 4), round(float(trial.ci_high), 4)]
            provenance["single_score"] = round(float(trial.single_score), 4)
            provenance["seed_scores"] = {int(k): round(float(v), 4) for k, v in trial.seed_scores.items()}
        if data:
            provenance["data"] = dict(data)
        if chance_score is not None:
            learned = above_chance(float(trial.score), float(chance_score))
            provenance["chance_score"] = round(float(chance_score), 4)
            provenance["above_chance"] = learned
            if not learned:
                provenance["warning"] = not_learned_warning(float(trial.score), float(chance_score))
        preset = Preset(preset_version=PRESET_VERSION, method=method, task=task, config=knobs, provenance=provenance,
                        name=label)
        paths.append(save_preset(preset, out / f"{task}-{label}.yaml"))
    return paths


def front_table(trials: Sequence[TrialRecord], *, tolerance: float = 1.0) -> list[dict[str, Any]]:
    """The Pareto front of the COMPLETE trials as flat rows sorted by adapter params (duplicates of a
    (score, params) pair collapse into one row; see :func:`orchestrator.records.results.front_rows`)."""
    done = _configurations(trials)
    if not done:
        return []
    front, picks = front_and_picks(done, tolerance)
    return front_rows(done, front, picks)


def _configurations(trials: Sequence[TrialRecord]) -> list[ConfigurationRecord]:
    """The COMPLETE records of ``trials`` by number, each as a configuration (a trial record: one seed)."""
    return [t.as_configuration() for t in complete_trials(trials)]
