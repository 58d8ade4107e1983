"""The confirmation stage: the front's configurations trained again on new seeds, so the front, its
presets and the closing lines rank means with intervals instead of single runs.

After the search's trials (:func:`run_confirmation`, called by the search before it finalises):

1. **Stage 1, the front.** The configurations on the front of the single runs - the best, knee and
   smallest picks first, then the others by score - are each brought to ``1 + K`` seeds
   (``--confirm K``; seed index ``j`` trains with ``seed + 1000 j``: a new training subset, batch order
   and initialisation; the dev rows stay the search's), as long as the stage's cost cap allows.
2. **Stage 2, within the noise.** The seed standard deviation pooled over stage 1 is the search's
   measured noise. Every other configuration whose single score lies within two such standard deviations of
   the front's score at its size or smaller gets the same seeds, closest first, within what is left of the cap.

The cap, ``--confirm-share`` x the requested trials (0.25 x 64 = 16 runs), keeps the stage's cost a fixed
share of the search. Seeds a configuration already has (a replicate the sampler proposed, see
:mod:`orchestrator.running.searcher`) count. Each run is a Ray trial like the search's (same resources and
concurrency), writes ``trials/tNNN/seed-J/result.json``, and is an MLflow run nested under the search's
parent with the tags ``confirms`` (the trial) and ``seed_index``. Results are mirrored into the Optuna study
as user attributes ``confirm:tNNN:sJ``. Which runs are left is recomputed from the result files, so a kill
during the stage is resumed by ``--resume`` like a kill during the search. The plan depends only on the
search's trials and stage 1's results, so a resumed stage plans the same runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from orchestrator.records.record import SearchRecord
from orchestrator.records.seed_runs import CONFIRM_OF_KEY, SEED_INDEX_KEY, STUDY_ATTR_PREFIX, read_confirmations
from orchestrator.records.seed_stats import SeedStats, pooled_sd, seed_for
from orchestrator.records.trial_record import ConfigurationRecord
from orchestrator.reporting.console import say
from orchestrator.records.results import configuration_pool, front_and_picks, load_results, load_study
from orchestrator.records.trial_files import one_line
from orchestrator.running.trial_report import TRIAL_NUMBER_KEY
from orchestrator.tracking import mlflow_runs

NOISE_SDS = 2.0  # stage 2: within this many pooled seed sds of the front


# ----------------------------------------------------------------------------------------------
# The plan
# ----------------------------------------------------------------------------------------------


@dataclass
class Plan:
    """Which configurations get which seed indices (jobs: (trial number, seed index))."""

    k: int
    cap: int  # at most this many confirmation runs in all
    stage1: list[int] = field(default_factory=list)  # trial numbers
    stage2: list[int] = field(default_factory=list)
    noise_sd: Optional[float] = None  # pooled seed sd of stage 1 (None until it finished)
    jobs: list[tuple[int, int]] = field(default_factory=list)


def run_cap(record: SearchRecord) -> int:
    """The most confirmation runs a search pays for: ``--confirm-share`` x the requested trials (at least K)."""
    k = int(record.confirm)
    return max(k, int(math.ceil(float(record.confirm_share) * int(record.trials))))


def _single_pool(results: Any) -> list[ConfigurationRecord]:
    """The configurations with their seeds from the search itself (replicates merged), no confirmation runs."""
    pool, _ = configuration_pool(results.record, results.complete, {})
    return pool


def _missing(rec: ConfigurationRecord, k: int) -> list[int]:
    have = {int(i) for i in rec.seed_scores}
    return [j for j in range(1, k + 1) if j not in have]


def plan_stage1(results: Any, k: int, cap: int) -> tuple[list[int], list[tuple[int, int]]]:
    """Stage 1: the single-run front, picks first (best, knee, smallest), then by score; within ``cap`` runs."""
    pool = _single_pool(results)
    front, picks = front_and_picks(pool, float(results.record.tolerance))
    order: list[int] = []
    for label in ("best", "knee", "smallest"):
        if label in picks and picks[label] not in order:
            order.append(picks[label])
    order += sorted((i for i in front if i not in order), key=lambda i: (-float(pool[i].score), int(pool[i].number)))
    chosen, jobs = [], []
    for i in order:
        need = _missing(pool[i], k)
        if len(jobs) + len(need) > cap:
            continue
        chosen.append(int(pool[i].number))
        jobs += [(int(pool[i].number), j) for j in need]
    return chosen, jobs


def plan_stage2(results: Any, k: int, cap: int, stage1: list[int], used: int,
                confirmations: dict[int, dict[int, dict[str, Any]]]) -> tuple[Optional[float], list[int], list[tuple[int, int]]]:
    """Stage 2: the noise (pooled seed sd of the stage-1 configurations) and the configurations within
    :data:`NOISE_SDS` of it below the single-run front, closest first, within ``cap - used`` runs."""
    pool = _single_pool(results)
    by_number = {int(r.number): r for r in pool}
    stats = []
    for n in stage1:
        scores = dict(by_number[n].seed_scores)
        scores.update({j: run["score"] for j, run in confirmations.get(n, {}).items() if j <= k})
        stats.append(SeedStats(scores))
    sd = pooled_sd(stats)
    if sd is None:
        return None, [], []
    front, _ = front_and_picks(pool, float(results.record.tolerance))
    front_pts = [(float(pool[i].adapter_params), float(pool[i].score)) for i in front]
    gaps = []
    for rec in pool:
        n = int(rec.number)
        if n in stage1 or any(pool[i].number == n for i in front):
            continue
        at_or_below = [s for p, s in front_pts if p <= float(rec.adapter_params)]
        if not at_or_below:
            continue
        gap = max(at_or_below) - float(rec.score)
        if gap <= NOISE_SDS * sd:
            gaps.append((gap, n))
    chosen, jobs = [], []
    for _, n in sorted(gaps):
        need = _missing(by_number[n], k)
        if used + len(jobs) + len(need) > cap:
            continue
        chosen.append(n)
        jobs += [(n, j) for j in need]
    return sd, chosen, jobs


# ----------------------------------------------------------------------------------------------
# Running it
# ----------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What :func:`run_confirmation` did."""

    plan: Plan
    ran: int = 0  # runs trained in this session
    missing: list[tuple[int, int]] = field(default_factory=list)  # planned runs without a result

    @property
    def complete(self) -> bool:
        return not self.missing


def run_confirmation(record: SearchRecord, *, session: int = 0) -> Outcome:
    """Plan and run the confirmation stage (both stages; see the module docstring); records each run in the
    study and on its trial's MLflow run."""
    k, cap = int(record.confirm), run_cap(record)
    results = load_results(record)
    stage1, jobs1 = plan_stage1(results, k, cap)
    plan = Plan(k=k, cap=cap, stage1=stage1, jobs=list(jobs1))
    out = Outcome(plan=plan)
    say(f"Confirmation: {len(stage1)} front configuration(s) on {k} new seed(s) each "
        f"({len(jobs1)} runs; at most {cap}, --confirm-share {float(record.confirm_share):g} of {record.trials} trials)")
    out.ran += _run_jobs(record, _pending(record, jobs1), session=session, stage=1)
    done = read_confirmations(record)
    missing = [job for job in jobs1 if job[1] not in done.get(job[0], {})]
    if missing:
        out.missing = missing
        return out
    sd, stage2, jobs2 = plan_stage2(results, k, cap, stage1, len(jobs1), done)
    plan.noise_sd, plan.stage2 = sd, stage2
    plan.jobs += jobs2
    if jobs2:
        say(f"Confirmation: {len(stage2)} more configuration(s) within {NOISE_SDS:g} seed sd ({sd:.2f}) of the front "
            f"({len(jobs2)} runs)")
        out.ran += _run_jobs(record, _pending(record, jobs2), session=session, stage=2)
    done = read_confirmations(record)
    out.missing = [job for job in plan.jobs if job[1] not in done.get(job[0], {})]
    record_confirmations(record)
    return out


def _pending(record: SearchRecord, jobs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    done = read_confirmations(record)
    return [job for job in jobs if job[1] not in done.get(job[0], {})]


def job_config(record: SearchRecord, number: int, knobs: dict[str, Any], index: int) -> dict[str, Any]:
    """The Ray config of one confirmation run: trial ``number``'s knobs (its ``config`` user attribute), the
    seed of ``index`` and the job's keys."""
    config = {k: v for k, v in knobs.items() if k not in (TRIAL_NUMBER_KEY, SEED_INDEX_KEY)}
    config["seed"] = seed_for(int(record.base.get("seed", 42)), index)
    config[TRIAL_NUMBER_KEY] = int(number)
    config[CONFIRM_OF_KEY] = int(number)
    config[SEED_INDEX_KEY] = int(index)
    return config


def _run_jobs(record: SearchRecord, jobs: list[tuple[int, int]], *, session: int, stage: int) -> int:
    """Train ``jobs`` as Ray trials (the search's resources and concurrency); returns how many ran."""
    if not jobs:
        return 0
    from ray import tune

    from orchestrator.running.callbacks import TrialRunCloser
    from orchestrator.running.progress import ConfirmProgress
    from orchestrator.running.tuner import trial_context

    study = load_study(record)
    knobs = {t.number: dict(t.user_attrs.get("config") or {}) for t in study.get_trials(deepcopy=False)}
    configs = [job_config(record, n, knobs.get(n, {}), j) for n, j in jobs]
    resources = {"cpu": float(record.cpus_per_trial), "gpu": float(record.gpus_per_trial)}
    trainable = tune.with_resources(tune.with_parameters(run_job, configs=configs, context=trial_context(record)),
                                    resources)
    tuner = tune.Tuner(
        trainable,
        param_space={"job": tune.grid_search(list(range(len(configs))))},
        tune_config=tune.TuneConfig(max_concurrent_trials=int(min(record.max_concurrent, len(configs))),
                                    reuse_actors=True, trial_dirname_creator=_job_dirname),
        run_config=tune.RunConfig(name=f"{record.name}-confirm{stage}-s{session}",
                                  storage_path=str(Path(record.ray_path).parent),
                                  callbacks=[TrialRunCloser(record.tracking_uri), ConfirmProgress(len(configs), configs)],
                                  verbose=0, failure_config=tune.FailureConfig(max_failures=0, fail_fast=False)),
    )
    tuner.fit()
    return len(configs)


def _job_dirname(trial: Any) -> str:
    return f"confirm{(trial.config or {}).get('job', 'x')}_{trial.trial_id}"


def run_job(config: dict[str, Any], configs: Optional[list[dict[str, Any]]] = None, context: Any = None) -> None:
    """The Ray trainable of a confirmation run: job ``config["job"]`` of ``configs`` through the search's
    trainable (:func:`orchestrator.running.trainable.run_trial`), which prepares the seed's data itself."""
    from orchestrator.running.trainable import run_trial

    if configs is None:
        raise ValueError("run_job needs the job configs (bind them with tune.with_parameters)")
    run_trial(dict(configs[int(config["job"])]), data=None, context=context)


def record_confirmations(record: SearchRecord) -> None:
    """Mirror the confirmation runs into the study (user attributes ``confirm:tNNN:sJ``) and put each confirmed
    configuration's seed statistics on its trial's MLflow run (``confirmed/mean`` ...); best effort for MLflow."""
    study = load_study(record)
    for number, runs in read_confirmations(record).items():
        for index, run in runs.items():
            key = f"{STUDY_ATTR_PREFIX}t{number:03d}:s{index}"
            if key not in study.user_attrs:
                study.set_user_attr(key, {k: v for k, v in run.items() if v is not None})
    if not (record.parent_run_id and record.tracking_uri):
        return
    try:
        c = mlflow_runs.client(record.tracking_uri)
        for rec in load_results(record).pool:
            if rec.mlflow_run_id and int(rec.n or 1) >= 2:
                metrics = {"confirmed/mean": rec.score, "confirmed/sd": rec.sd, "confirmed/n": rec.n,
                           "confirmed/ci_low": rec.ci_low, "confirmed/ci_high": rec.ci_high}
                mlflow_runs.log_metrics(c, rec.mlflow_run_id, metrics)
    except Exception as exc:  # the study and the files hold the record; sync/finalize report MLflow trouble

        print(f"warning: MLflow: could not log the confirmed statistics ({one_line(exc)})")
