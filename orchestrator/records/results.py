"""A finished (or interrupted) search, read back: trial records, the front, the preset picks.

Everything that looks at a search's results - the finalisation, ``orchestrator.export``, the
report, the benchmarks - reads it through :func:`load_results`, so there is one front algorithm
(:func:`front_and_picks`, over the COMPLETE trials with finite objectives) and one notion of a
trial record. Nothing here imports Ray; MLflow is not needed either (the Optuna study holds the
objectives, the searched knobs and, as user attributes, each trial's allocation and MLflow run).

A trial record is a :class:`~orchestrator.records.trial_record.TrialRecord` (number, state, score, adapter params,
config, searched params, allocation, MLflow run, why it ended, which trial it replicates or re-runs, its seed
index, its node).

**Configurations, not trials, are what the front ranks.** A trial and its replicates are one configuration,
and the confirmation stage (:mod:`orchestrator.running.confirmation`) adds seeds to the front's configurations
(``trials/tNNN/seed-J/result.json``). :attr:`SearchResults.pool` holds one
:class:`~orchestrator.records.trial_record.ConfigurationRecord` per configuration, scored by its mean over its seeds
(``n``, ``sd``, ``ci_low``/``ci_high``, ``seed_scores``, ``single_score``: the first run's); once the
confirmation stage has run, the pool holds the configurations trained on at least two seeds only, so the
front, the picks and the presets are confirmed ones. ``front`` and ``picks`` index the pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, TypeVar

from orchestrator.records.pareto import default_reference, hypervolume, hypervolume_curve, pareto_front, select_presets
from orchestrator.records.record import RecordError, SearchRecord
from orchestrator.records.seed_runs import read_confirmations
from orchestrator.records.seed_stats import SeedStats, paired_difference
from orchestrator.records.trial_record import ConfigurationRecord, TrialRecord
from increlora.budget import above_chance
from increlora.config import ConfigError
from increlora.naming import expand_allocation
from increlora.run_config import build_run_config
from orchestrator.tracking.probes import ProbeError, check_database
from orchestrator.tracking.mlflow_runs import sqlite_path
from orchestrator.records.trial_files import trial_dir
from orchestrator.tracking.trial_run import read_run_id

LABELS = ("best", "smallest", "knee")

TrialT = TypeVar("TrialT", bound=TrialRecord)  # a TrialRecord or a ConfigurationRecord


def complete_trials(trials: Sequence[TrialT]) -> list[TrialT]:
    """The COMPLETE trials (see :attr:`TrialRecord.is_complete`), in trial-number order."""
    return sorted((t for t in trials if t.is_complete), key=lambda t: t.number)


def points(trials: Sequence[TrialRecord]) -> list[tuple[float, float]]:
    return [t.point for t in trials]


def front_and_picks(complete: Sequence[TrialRecord], tolerance: float) -> tuple[list[int], dict[str, int]]:
    """The Pareto front (indices into ``complete``) and the preset picks (label -> index): best,
    smallest within ``tolerance`` points of the best, knee."""
    pts = points(complete)
    front = pareto_front(pts)
    return front, (select_presets(pts, front, tolerance=tolerance) if front else {})


def rank_vmax(trials: Sequence[TrialRecord]) -> float:
    """The heatmap colour scale's top: the largest module rank of any trial (1 without allocations)."""
    return float(max([max(t.allocation.values()) for t in trials if t.allocation] or [1]))


@dataclass
class SearchResults:
    """A search's record and trials, with the front and picks computed once."""

    record: SearchRecord
    trials: list[TrialRecord]  # every Optuna trial, by number
    complete: list[TrialRecord]  # the COMPLETE ones, by number
    front: list[int]  # indices into pool, by params ascending
    picks: dict[str, int]  # label -> index into pool
    pool: list[ConfigurationRecord] = None  # type: ignore[assignment]  # one record per configuration (see the module docstring)
    confirmed: bool = False  # the confirmation stage has run: the pool holds configurations with >= 2 seeds

    def __post_init__(self) -> None:
        if self.pool is None:
            self.pool = [t.as_configuration() for t in self.complete]

    def trial(self, number: int) -> TrialRecord:
        return next(t for t in self.trials if t.number == number)

    @property
    def vmax(self) -> float:
        return rank_vmax(self.trials)

    def labels(self) -> dict[int, list[str]]:
        """Trial number -> the preset labels it holds."""
        out: dict[int, list[str]] = {}
        for label in LABELS:
            if label in self.picks:
                out.setdefault(self.pool[self.picks[label]].number, []).append(label)
        return out

    def pick_records(self) -> dict[str, ConfigurationRecord]:
        return {label: self.pool[i] for label, i in self.picks.items()}

    def pick_numbers(self) -> dict[str, int]:
        """Label -> the trial number of the configuration it picks (``search.json``'s ``picks``)."""
        return {label: rec.number for label, rec in self.pick_records().items()}

    def front_numbers(self) -> set[int]:
        return {self.pool[i].number for i in self.front}

    def points(self) -> list[tuple[float, float]]:
        """(score, params) of the pool (the configurations; ``front`` and ``picks`` index these)."""
        return points(self.pool)

    def single_points(self) -> list[tuple[float, float]]:
        """(score, params) of every COMPLETE trial, one run each."""
        return points(self.complete)

    def seed_stats(self, record: ConfigurationRecord) -> SeedStats:
        """The seeds of a pool record (one seed for a record without ``seed_scores``)."""
        scores = record.seed_scores or {0: float(record.score)}
        return SeedStats({int(k): float(v) for k, v in scores.items()})

    def distinguishable(self) -> list[dict[str, Any]]:
        """Neighbouring front configurations (small to large) and whether their paired score difference is
        separable: ``{"smaller", "larger", "difference": Difference or None}``."""
        rows = [self.pool[i] for i in sorted(self.front, key=lambda i: (float(self.pool[i].adapter_params),
                                                                        int(self.pool[i].number)))]
        out = []
        for small, large in zip(rows, rows[1:]):
            out.append({"smaller": small.number, "larger": large.number,
                        "difference": paired_difference(self.seed_stats(large), self.seed_stats(small))})
        return out

    def pruned_points(self) -> list[tuple[float, float]]:
        return [t.point for t in self.trials
                if t.state == "PRUNED" and t.score is not None and t.adapter_params is not None]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t.state] = out.get(t.state, 0) + 1
        return out

    def finished(self) -> int:
        """Trials that count towards the requested number: COMPLETE, PRUNED, and FAIL except the
        interrupted ones (their re-runs count instead)."""
        return sum(1 for t in self.trials if t.state in ("COMPLETE", "PRUNED") or t.is_failure)

    def failures(self) -> list[TrialRecord]:
        """The trials that failed (not the interrupted ones), by number."""
        return [t for t in self.trials if t.is_failure]

    def reference_point(self) -> Optional[tuple[float, float]]:
        """The hypervolume's reference: (chance score, 1.1 x the largest adapter of the search)."""
        if not self.complete:
            return None
        return default_reference(float(self.record.chance_score), max(p[1] for p in self.points()))

    def best_score(self) -> Optional[float]:
        return max((float(t.score) for t in self.complete), default=None)

    def above_chance(self) -> Optional[bool]:
        """Whether the best COMPLETE trial beat the majority-class score by more than
        :data:`increlora.budget.CHANCE_MARGIN` points (None without a COMPLETE trial): when it did not,
        the front ranks noise and its presets are marked so."""
        best = self.best_score()
        return None if best is None else above_chance(best, float(self.record.chance_score))

    def hypervolume(self) -> Optional[float]:
        """Hypervolume of the single runs (every COMPLETE trial's first score), comparable across searches."""
        ref = self.reference_point()
        return None if ref is None else hypervolume(self.single_points(), ref)

    def confirmed_hypervolume(self) -> Optional[float]:
        """Hypervolume of the confirmed front (the pool's means); None before the confirmation stage ran."""
        ref = self.reference_point()
        return None if ref is None or not self.confirmed or not self.pool else hypervolume(self.points(), ref)

    def hypervolume_curve(self) -> list[float]:
        ref = self.reference_point()
        return [] if ref is None else hypervolume_curve(self.single_points(), ref)

    def front_rows(self) -> list[dict[str, Any]]:
        """The front as rows, one per distinct (score, params) (see :func:`front_rows`)."""
        return front_rows(self.pool, self.front, self.picks)


def front_rows(pool: Sequence[ConfigurationRecord], front: Sequence[int], picks: dict[str, int]) -> list[dict[str, Any]]:
    """The front's configurations as flat rows (``search.json``'s ``front``) sorted by adapter params.
    Configurations with identical (score, params) - NSGA-II re-suggests configurations - collapse into one
    row (the lowest trial number) whose ``also_trials`` lists the others."""

    rows: list[dict[str, Any]] = []
    seen: dict[tuple[float, float], dict[str, Any]] = {}
    for i in sorted(front, key=lambda i: (float(pool[i].adapter_params), int(pool[i].number))):
        c = pool[i]
        key = c.point
        labels = [lab for lab in LABELS if picks.get(lab) == i]
        if key in seen:
            row = seen[key]
            row["_also"].append(int(c.number))
            row["_labels"].extend(lab for lab in labels if lab not in row["_labels"])
            continue
        row = {
            "trial": int(c.number),
            "score": float(c.score),
            "n": int(c.n or 1),
            "sd": c.sd,
            "ci_low": c.ci_low,
            "ci_high": c.ci_high,
            "adapter_params": int(c.adapter_params),
            "total_rank": c.total_rank,
            "method": c.method,
            "mlflow_run_id": c.mlflow_run_id,
            "_labels": labels,
            "_also": [],
        }
        seen[key] = row
        rows.append(row)
    for row in rows:
        labels, also = row.pop("_labels"), row.pop("_also")
        row["labels"] = ",".join(lab for lab in LABELS if lab in labels)
        row["also_trials"] = ",".join(str(n) for n in sorted(also))
    return rows


# ----------------------------------------------------------------------------------------------
# Reading the study
# ----------------------------------------------------------------------------------------------


SQLITE_HEADER = b"SQLite format 3\x00"


def check_study_exists(record: SearchRecord) -> None:
    """RecordError, before anything opens the search's study, when opening it would create or change a
    file (a sqlite file that is gone, empty or not SQLite: Optuna would write a new study into it) or
    wait minutes (a database server that does not answer within seconds)."""
    path = sqlite_path(record.storage)
    if path is not None:
        if not path.is_file():
            raise RecordError(f"the Optuna study of {record.name} is missing: {path} does not exist")
        try:
            with open(path, "rb") as f:
                head = f.read(len(SQLITE_HEADER))
        except OSError as exc:
            raise RecordError(f"the Optuna study of {record.name} cannot be read: {path}: {exc.strerror or exc}") from None
        if not head:
            raise RecordError(f"the Optuna study of {record.name} is missing: {path} is empty (0 bytes)")
        if head != SQLITE_HEADER:
            raise RecordError(f"the Optuna study of {record.name} is damaged: {path} is not a SQLite database")
        return
    try:
        check_database(record.storage, "the Optuna storage of the search")
    except ProbeError as exc:
        raise RecordError(str(exc)) from None


def load_study(record: SearchRecord) -> Any:
    import optuna

    from orchestrator.records.storage import make_storage

    try:
        return optuna.load_study(study_name=record.study_name, storage=make_storage(record.storage))
    except KeyError as exc:
        raise RecordError(f"Optuna study {record.study_name!r} not found in {record.storage}: {exc}") from None


def full_config(record: SearchRecord, knobs: dict[str, Any]) -> dict[str, Any]:
    """A trial's complete flat configuration: the search's base knobs plus the trial's."""
    merged = {**record.base, **knobs, "method": record.method}
    try:
        return build_run_config(merged).flat()
    except ConfigError:
        return merged


def trial_records(study: Any, record: SearchRecord) -> list[TrialRecord]:
    """Every Optuna trial as a :class:`TrialRecord`."""
    out = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        complete = t.state.name == "COMPLETE" and t.values is not None
        knobs = dict(attrs.get("config") or {})
        out.append(TrialRecord(
            number=t.number,
            state=t.state.name,
            score=t.values[0] if complete else attrs.get("last_glue_score"),
            adapter_params=t.values[1] if complete else attrs.get("last_adapter_params"),
            config=full_config(record, knobs) if knobs else {"method": record.method},
            params=dict(t.params),
            allocation=expand_allocation(attrs.get("allocation") or {}),
            mlflow_run_id=attrs.get("mlflow_run_id") or read_run_id(trial_dir(record.search_dir, t.number)),
            run_name=attrs.get("run_name"),
            preset=attrs.get("preset"),
            state_reason=attrs.get("state_reason"),
            fail_reason=attrs.get("fail_reason"),
            rerun_of=attrs.get("rerun_of"),
            replicate_of=attrs.get("replicate_of"),
            seed_index=int(attrs.get("seed_index") or 0),
            node=attrs.get("node"),
        ))
    return out


@dataclass
class _Group:
    """The runs of one configuration while the pool is built: seed index -> score and size."""

    rep: TrialRecord
    scores: dict[int, float]
    params: dict[int, float]
    members: list[int]


def configuration_pool(record: SearchRecord, complete: Sequence[TrialRecord],
                       confirmations: dict[int, dict[int, dict[str, Any]]]) -> tuple[list[ConfigurationRecord], bool]:
    """One record per configuration (a trial with its replicates and confirmation runs), scored by its mean;
    and whether the confirmation stage has run (then only configurations with >= 2 seeds are kept).
    ``confirmations``: :func:`orchestrator.running.confirmation.read_confirmations`."""
    groups: dict[int, _Group] = {}
    for t in complete:
        key = int(t.replicate_of) if t.replicate_of is not None else int(t.number)
        g = groups.setdefault(key, _Group(rep=t, scores={}, params={}, members=[]))
        if int(t.number) == key:
            g.rep = t
        index = int(t.seed_index or 0)
        g.scores.setdefault(index, float(t.score))
        g.params.setdefault(index, float(t.adapter_params))
        g.members.append(int(t.number))
    confirmed = False
    for number, runs in confirmations.items():
        if number not in groups:
            continue
        for index, run in runs.items():
            confirmed = True
            groups[number].scores.setdefault(int(index), float(run["score"]))
            groups[number].params.setdefault(int(index), float(run["adapter_params"]))
    pool = []
    for key in sorted(groups):
        g = groups[key]
        stats = SeedStats(dict(g.scores))
        if confirmed and stats.n < 2:
            continue
        ci = stats.interval
        pool.append(ConfigurationRecord.of(
            g.rep,
            number=key,
            score=stats.mean,
            adapter_params=round(sum(g.params.values()) / len(g.params)),
            seed_scores={int(k): v for k, v in sorted(g.scores.items())},
            single_score=float(g.rep.score),
            n=stats.n,
            sd=stats.sd,
            ci_low=ci[0] if ci else None,
            ci_high=ci[1] if ci else None,
            members=tuple(sorted(g.members)),
        ))
    return pool, confirmed


def load_results(record: SearchRecord) -> SearchResults:
    """Read a search's study into :class:`SearchResults`; RecordError when the study is missing."""
    check_study_exists(record)
    study = load_study(record)
    trials = trial_records(study, record)
    complete = complete_trials(trials)
    pool, confirmed = configuration_pool(record, complete, read_confirmations(record, study))
    front, picks = front_and_picks(pool, float(record.tolerance))
    return SearchResults(record=record, trials=trials, complete=complete, front=front, picks=picks, pool=pool,
                         confirmed=confirmed)
