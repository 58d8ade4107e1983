"""The driver's story of a search (``python -m orchestrator.search``, new or ``--resume``): a multi-objective
budget search over IncreLoRA (or a baseline).

Ray Tune schedules the trials; Ray's OptunaSearch (subclassed in :mod:`orchestrator.running.searcher`)
suggests configurations maximising the GLUE score and minimising the adapter parameters; MLflow
records one parent run per search with one nested run per trial; at the end the Pareto front,
plots and presets are written (:mod:`orchestrator.reporting.finalize`).

A search, as :func:`run_search` tells it: check the settings (before anything starts, so bad input
costs one line and exit code 2) -> start or join Ray and fit the trials to its resources -> fix the
trial protocol and tokenise the data once -> build the space -> create the record, the MLflow parent
run and the search folder -> run the Tuner -> finalise. ``--resume`` replays the same story from the
saved record.

Search folder ``<output-dir>/<name>``: ``search.json`` (:mod:`orchestrator.records.record`), ``optuna.db``
(the study, unless ``--storage``), ``space.yaml``, ``ray/<name>/`` (Tune's experiment, used by
``--resume``), ``trials/tNNN/`` (each trial's ``result.json`` and adapter), ``pareto_front.csv``,
``pareto.png``, ``hypervolume.png`` and ``presets/``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import logging
import os
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from orchestrator.reporting.console import err, print_summary, resume_command, say
from orchestrator.running.pause import pause_point
from orchestrator.records.record import SCHEMA_VERSION, SearchRecord
from orchestrator.running.settings import SearchError, SearchSettings
from increlora import __version__
from orchestrator.running import cluster
from orchestrator.tracking import mlflow_runs
from orchestrator.reporting.finalize import finalize, parent_run_status, sync_command
from orchestrator.tracking.lock import SearchLock, SearchLocked
from orchestrator.running.preparation import build_space, prepare_data, run_facts, trial_protocol
from orchestrator.tracking.probes import ProbeError, check_database
from orchestrator.records.record import RecordError, abandoned_start
from orchestrator.records.results import check_study_exists, load_results
from orchestrator.running.settings import _load_presets, check_name, check_output_dir
from orchestrator.tracking.mlflow_runs import absolute_uri, redact, sqlite_path
from orchestrator.records.trial_files import one_line
from orchestrator.tracking.trial_run import MLFLOW_RETRY_ENV
from orchestrator.running.confirmation import run_confirmation
from orchestrator.running.recovery import recover
from search_spaces.from_yaml import dump_space, parse_space

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


def package_version() -> str:
    """Installed version of increlora-search, else the source tree's."""
    from importlib import metadata

    try:
        return metadata.version("increlora-search")
    except metadata.PackageNotFoundError:
        return f"{__version__}+src"


def git_commit() -> Optional[str]:
    """``git rev-parse HEAD`` of the source tree, if it is a git checkout with a commit."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


COLD_START_ENV = "INCRELORA_COLD_START"  # set: no data thread, no worker warm-up (the overhead benchmark's baseline)


class EarlyData:
    """The search's data, prepared in a thread while Ray starts (tokenising overlaps Ray's start-up).

    The trial protocol depends on the GPUs a trial gets, known only once Ray is up; the thread prepares the data
    for the protocol of ``--gpus-per-trial`` (0 when unset: a CPU search), and :meth:`take` hands it over only when
    the real protocol is the same (otherwise the search prepares it again: a GPU search pays the old cost)."""

    def __init__(self, protocol: Any, thread: Any, box: dict[str, Any]) -> None:
        self.protocol = protocol
        self.thread = thread
        self.box = box

    @classmethod
    def start(cls, settings: SearchSettings) -> "EarlyData":
        import threading


        box: dict[str, Any] = {}
        if os.environ.get(COLD_START_ENV):  # benchmarks/overhead.py --cold: the baseline without the warm start
            return cls(None, None, box)
        try:
            protocol = trial_protocol(settings, float(settings.gpus_per_trial or 0.0))
        except SearchError:  # the real call after Ray's start says it
            return cls(None, None, box)

        def work() -> None:
            try:
                box["data"] = prepare_data(settings.task, dict(protocol.base))
            except BaseException as exc:  # handed to the driver by take()
                box["error"] = exc

        thread = threading.Thread(target=work, name="increlora-data", daemon=True)
        thread.start()
        return cls(protocol, thread, box)

    def take(self, protocol: Any) -> Any:
        """The data when it was prepared for ``protocol``'s knobs (its error, raised, if that failed); else None."""
        if self.thread is None:
            return None
        self.thread.join()
        if self.protocol.base != protocol.base:
            return None
        if "error" in self.box:
            raise self.box["error"]
        return self.box.get("data")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------------------------
# The story
# ----------------------------------------------------------------------------------------------


def run_search(args: argparse.Namespace, argv: list[str]) -> int:
    """Run (or resume) a search; raises SearchError for bad input."""
    _quiet_environment()
    if args.resume:
        return resume_search(args)

    timer = PhaseTimer()
    settings = SearchSettings.from_args(args, argv)
    _keep_offline(settings.model)
    timer.mark("checks")
    record: Optional[SearchRecord] = None
    early = EarlyData.start(settings)  # tokenise while Ray starts
    with contextlib.ExitStack() as owned, \
            cluster.ray_session(settings.address, settings.num_cpus, on_exit=lambda: _sweep_runs(record)):
        # (the folder's lock, taken below, is let go after Ray is shut down: no trial of ours is left then)
        timer.mark("ray_start")
        resources = cluster.resolve_resources(settings.cpus_per_trial, settings.gpus_per_trial,
                                              settings.max_concurrent, settings.trials)
        protocol = trial_protocol(settings, resources.gpus_per_trial)
        data = early.take(protocol)
        if data is None:
            data = prepare_data(settings.task, protocol.base)
        facts = run_facts(protocol, data, settings.evaluations)
        timer.mark("data_prep")
        space = build_space(settings, protocol.base)
        record = new_record(settings, resources, protocol, facts, space)
        owned.enter_context(_create_and_lock(record.dir, record.name))
        pause_point("folder")
        tuner = start_up(record, space, data, settings.presets)
        say(f"Search {record.name}: {record.method} on {record.task}, {record.trials} trials, {record.max_concurrent} at a "
            f"time ({record.cpus_per_trial} CPU, {record.gpus_per_trial:g} GPU each), {record.train_size} training rows, "
            f"{record.total_steps} steps and {record.max_evaluations} evaluations per trial, scored on {record.scored_on}\n"
            f"  folder {record.search_dir}\n  space  {record.space_text}")
        timer.mark("setup")
        return fit_and_finish(tuner, record, timer)


def start_up(record: SearchRecord, space: Any, data: Any, presets: Sequence[tuple[str, Any]], *,
             session: int = 0) -> Any:
    """The start-up window of a new search (or of one stopped inside it): ``search.json`` (status
    ``created``), the MLflow parent run, the Optuna study (in the Tuner's searcher), then status
    ``running``; returns the Tuner. Each step is written before the next starts, so a kill at any
    instant leaves a record that ``--resume`` continues (:func:`resume_created`); no trial starts
    before the status says ``running``."""
    from orchestrator.running.tuner import new_tuner

    _write_space(record, space)
    record.save()  # from here on the search can be resumed
    pause_point("record")
    try:
        _start_tracking(record)
        record.save()
        pause_point("parent")
        tuner = new_tuner(record, space, data, presets, session=session, seed_session=0)
        pause_point("study")
    except BaseException as exc:
        if record.parent_run_id:
            with contextlib.suppress(Exception):
                _tracking_client(record).set_terminated(record.parent_run_id,
                                                        "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    record.status = "running"
    record.save()
    return tuner


def resume_created(record: SearchRecord, data: Any, timer: PhaseTimer) -> int:
    """``--resume`` of a search stopped in its start-up window (status ``created``: no trial has started).
    Its start-up runs again from its record: the parent run it may have got is used (found by its tags when
    the stop came before ``search.json`` named it), a study it may have got is made anew, its presets are
    enqueued; then the trials run as in an uninterrupted search (same sampler seed)."""
    presets = _load_presets(record.presets, record.method)
    space = parse_space(record.space, source=record.space_source, method=record.method)
    _discard_unstarted_study(record)
    record.sessions += 1
    say(f"Resuming search {record.name} ({record.trials} trials; its saved settings apply): it was stopped while "
        "starting, before any trial; starting it again")
    tuner = start_up(record, space, data, presets, session=record.sessions)
    timer.mark("setup")
    return fit_and_finish(tuner, record, timer)


def _discard_unstarted_study(record: SearchRecord) -> None:
    """Remove the study of a search whose status is ``created`` (none of its trials can have started):
    the search's own ``optuna.db`` goes (it may be half-made by a kill while Optuna created its tables);
    in a shared ``--storage`` the study of that name goes if no trial of it ever ran."""
    import optuna

    from orchestrator.records.storage import make_storage

    path = sqlite_path(record.storage)
    if path is not None and path.parent == record.dir:
        for extra in ("", "-journal", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(str(path) + extra).unlink()
        return
    storage = make_storage(record.storage)
    try:
        study = optuna.load_study(study_name=record.study_name, storage=storage)
    except KeyError:
        return
    if any(t.state != optuna.trial.TrialState.WAITING for t in study.get_trials(deepcopy=False)):
        raise SearchError(f"--resume: search {record.name} says it never started a trial (status created), but its "
                          f"study {record.study_name!r} in {record.storage} has trials that ran; it is not this "
                          "search's study: choose another --name")
    optuna.delete_study(study_name=record.study_name, storage=storage)


def resume_search(args: argparse.Namespace) -> int:
    """Continue the search ``--name``: settle its records (:mod:`orchestrator.running.recovery`), then run the
    trials it still needs, with its saved settings."""
    from orchestrator.running.tuner import new_tuner

    timer = PhaseTimer()
    record = load_for_resume(args)
    _keep_offline(record.model)
    timer.mark("checks")
    with _lock(record.dir, record.name, "--resume: "), \
            cluster.ray_session(args.address, args.num_cpus, on_exit=lambda: _sweep_runs(record)):
        timer.mark("ray_start")
        cluster.resolve_resources(record.cpus_per_trial, record.gpus_per_trial, record.max_concurrent, record.trials)
        data = prepare_data(record.task, record.base)
        timer.mark("data_prep")
        if record.status == "created":
            return resume_created(record, data, timer)
        try:
            settled = recover(record)
        except RecordError as exc:
            raise SearchError(f"--resume: {exc}") from None
        mlflow_runs.reopen_run(record.tracking_uri, record.parent_run_id)
        record.sessions += 1
        record.status = "running"
        record.save()
        say(f"Resuming search {record.name} ({record.trials} trials; its saved settings apply): {settled.describe()}")
        timer.mark("setup")
        if settled.remaining == 0:
            timer.mark("tuner_fit")
            return finish(record, timer)
        space = parse_space(record.space, source=record.space_source, method=record.method)
        tuner = new_tuner(record, space, data, (), num_samples=settled.remaining, session=record.sessions)
        return fit_and_finish(tuner, record, timer)


def load_for_resume(args: argparse.Namespace) -> SearchRecord:
    """The record of the search to continue; SearchError (one line) when there is none."""
    if not args.name:
        raise SearchError("--resume needs --name (the search to continue)")
    check_name(args.name)
    search_dir = check_output_dir(args.output_dir) / args.name
    if not (search_dir / "search.json").is_file():
        raise SearchError(f"--resume: no search {args.name!r} in {search_dir.parent} (no search.json)")
    try:
        record = SearchRecord.load(search_dir)
    except RecordError as exc:
        raise SearchError(f"--resume: {exc}") from None
    record = with_credentials(record, storage=args.storage, tracking_uri=args.tracking_uri)
    check_stores(record)
    return record


def check_stores(record: SearchRecord) -> None:
    """Before Ray starts: the study is there (a missing or empty sqlite file is not created) and the
    study storage and the MLflow store answer within seconds."""
    try:
        if record.status == "created":  # stopped before its study existed: --resume makes it
            check_new_study_storage(record)
        else:
            check_study_exists(record)
        mlflow_runs.check_tracking_uri(record.tracking_uri, timeout=5.0)
    except (RecordError, mlflow_runs.TrackingError) as exc:
        raise SearchError(f"--resume: {exc}") from None


def check_new_study_storage(record: SearchRecord) -> None:
    """The storage of a search stopped in its start-up window can hold a new study: a SQLite file's folder
    is there and writable (the file itself may be missing, empty or half-made: the search's own is made
    anew), a database server answers and lets us in."""
    path = mlflow_runs.sqlite_path(record.storage)
    try:
        if path is not None:
            mlflow_runs.check_sqlite_file(path, "the Optuna storage of the search")
        else:
            check_database(record.storage, "the Optuna storage of the search")
    except (ProbeError, mlflow_runs.TrackingError) as exc:
        raise RecordError(str(exc)) from None


def with_credentials(record: SearchRecord, *, storage: Optional[str], tracking_uri: Optional[str]) -> SearchRecord:
    """The record with the storage / tracking URIs given again on the command line: search.json keeps
    them without passwords, so ``--resume`` takes them back from the flags (or from ``PGPASSWORD`` /
    ``MLFLOW_TRACKING_PASSWORD``); a URI that points elsewhere than the search's is refused."""
    import dataclasses


    changes = {}
    for flag, key, given in (("--storage", "storage", storage), ("--tracking-uri", "tracking_uri", tracking_uri)):
        if given:
            uri = absolute_uri(given, Path.cwd())
            if redact(uri) != redact(getattr(record, key)):
                raise SearchError(f"--resume {flag} {redact(uri)}: the search {record.name} uses {redact(getattr(record, key))}")
            changes[key] = uri
    if changes:
        record.choices = dataclasses.replace(record.choices, **changes)
    return record


def new_record(settings: SearchSettings, resources: Any, protocol: Any, facts: Any, space: Any) -> SearchRecord:
    """The record of a new search, before its MLflow ids exist."""
    return SearchRecord(
        version=SCHEMA_VERSION, name=settings.name, search_dir=str(settings.search_dir), status="created",
        choices=settings.choices, study_name=settings.name, ray_path=str(settings.search_dir / "ray" / settings.name),
        gpus_per_trial=resources.gpus_per_trial, max_concurrent=resources.max_concurrent, cluster=resources.cluster,
        profile=protocol.profile, eval_steps_fixed=protocol.eval_steps_fixed, base=protocol.base,
        total_steps=facts.total_steps, max_evaluations=facts.max_evaluations, train_size=facts.train_size,
        eval_size=facts.eval_size, chance_score=facts.chance_score, data_fingerprint=facts.data_fingerprint,
        space=space.to_dict(), space_source=space.source, space_text=space.describe(),
        presets=[path for path, _ in settings.presets], package_version=package_version(), git_commit=git_commit(),
        created=_now(),
    )


def fit_and_finish(tuner: Any, record: SearchRecord, timer: PhaseTimer) -> int:
    try:
        tuner.fit()
    except BaseException as exc:
        record.status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        record.save()
        with contextlib.suppress(Exception):  # MLflow may be what failed: the exception that ended the search is the news
            mlflow_runs.close_dangling_runs(record.tracking_uri, record.experiment_id, record.parent_run_id, "KILLED")
            _tracking_client(record).set_terminated(record.parent_run_id,
                                                    "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    timer.mark("tuner_fit")
    return finish(record, timer)


def finish(record: SearchRecord, timer: PhaseTimer) -> int:
    """Finalise, record the outcome, close the parent run, print the summary; the exit code.

    The front, plots, presets and ``search.json`` are written whatever MLflow does. When the tracking
    server cannot be reached at the end, the records it misses stay in the search folder, the search
    says so in its last line (one ``error:`` line naming ``python -m orchestrator.sync``, which sends
    them and closes the parent run once the server is back) and exits 1 (or 130 if interrupted)."""
    pause_point("finish")
    confirmation = confirm_front(record, timer)
    record.status = "finalizing"
    record.save()
    problem: Optional[BaseException] = None
    try:
        mlflow_runs.close_dangling_runs(record.tracking_uri, record.experiment_id, record.parent_run_id, "KILLED")
    except Exception as exc:
        problem = exc
    finalize(record, mlflow_problem=problem, quiet=True)
    results = load_results(record)
    done, failures = results.finished(), results.failures()
    complete = len(results.complete)
    stopped = record.max_failures is not None and len(failures) >= record.max_failures and done < record.trials
    record.status = ("finished" if done >= record.trials else "stopped" if stopped else "interrupted")
    if complete == 0 and record.status == "finished":
        record.status = "failed"
    record.finished = _now()
    timer.mark("finalize")
    record.timings = dict(timer.timings, finished_unix=time.time())
    record.save()
    outputs = record.results.outputs if record.results else {}
    if "mlflow" not in outputs:
        try:
            _tracking_client(record).set_terminated(record.parent_run_id, parent_run_status(record, complete))
        except Exception as exc:
            outputs["mlflow"] = (f"parent run not closed ({one_line(exc)}); when the tracking server is back: "
                                 f"{sync_command(record)}")
            record.save()
    print_summary(record)
    first = next((t.fail_reason for t in failures if t.fail_reason), None)
    why = f"; first reason (trial {failures[0].number}): {first}" if failures and first else ""
    if record.status == "interrupted":
        say(f"Interrupted after {done}/{record.trials} trials; continue with: {resume_command(record)}")
        code = 130
    elif record.status == "stopped":
        err(f"{record.name} stopped after {len(failures)} failed trials (--max-failures {record.max_failures}), "
            f"{complete} completed{why}")
        code = 1
    elif complete == 0:
        err(f"no trial of {record.name} completed: {len(failures)} of {done} failed{why}")
        code = 1
    else:
        if failures:
            say(f"{len(failures)} of {done} trials failed{why}")
        if confirmation is not None and confirmation.missing:
            say(f"{len(confirmation.missing)} confirmation run(s) failed ("
                + ", ".join(f"t{n:03d} seed {j}" for n, j in confirmation.missing)
                + "): their configurations are confirmed on fewer seeds; --resume trains them again")
        code = 0
    if "mlflow" in outputs:  # the last line, after Ray's shutdown (whose late worker output would bury it)
        LAST_WORDS.append(
            f"MLflow at {mlflow_runs.redact(record.tracking_uri)} could not be reached at the end of search {record.name} "
            f"({_reason(outputs['mlflow'])}): its front, plots and presets are written in {record.search_dir} and "
            f"search.json says {record.status}; the MLflow records wait there. Once the tracking server is back, "
            f"run: {sync_command(record)}")
        code = code or 1
    return code


LAST_WORDS: list[str] = []  # error lines printed once everything else is done (:func:`orchestrator.search.main`)


def _reason(note: str) -> str:
    """``not logged (<why>); when ...`` -> ``<why>``."""
    start, end = note.find("("), note.rfind("); when")
    why = note[start + 1:end] if 0 <= start < end else note
    return why if len(why) <= 200 else why[:197] + "..."


def confirm_front(record: SearchRecord, timer: PhaseTimer) -> Any:
    """The confirmation stage (:mod:`orchestrator.running.confirmation`) once every requested trial has finished and
    ``--confirm`` is on; its :class:`~orchestrator.running.confirmation.Outcome`, or None when it does not apply. A stop
    during the stage leaves the search ``interrupted`` (``--resume`` trains the runs still missing)."""
    if not int(record.confirm):
        return None
    results = load_results(record)
    if not results.complete or results.finished() < int(record.trials):
        return None
    record.status = "confirming"
    record.save()
    try:
        outcome = run_confirmation(record, session=int(record.sessions))
    except BaseException as exc:
        mlflow_runs.close_dangling_runs(record.tracking_uri, record.experiment_id, record.parent_run_id, "KILLED")
        _tracking_client(record).set_terminated(record.parent_run_id, "KILLED")
        record.status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        record.save()
        raise
    timer.mark("confirm")
    return outcome


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _lock(search_dir: Path, name: str, prefix: str = "") -> Any:
    """The search folder's lock (:mod:`orchestrator.tracking.lock`), held by this process; SearchError when another
    holds it."""
    try:
        return SearchLock.acquire(search_dir, name)
    except SearchLocked as exc:
        raise SearchError(f"{prefix}{exc}") from None


def _create_and_lock(search_dir: Path, name: str) -> Any:
    """Create a new search's folder (or take one a stopped start left,
    :func:`orchestrator.records.record.abandoned_start`) and lock it; SearchError when another search of that name
    created it meanwhile."""
    meanwhile = SearchError(f"search folder {search_dir} was created meanwhile by another search named {name}; "
                            "choose another --name")
    try:
        search_dir.mkdir(parents=True)
    except FileExistsError:
        if not abandoned_start(search_dir):
            raise meanwhile from None
    lock = _lock(search_dir, name)
    if not abandoned_start(search_dir):  # another search wrote its record before this one held the lock
        lock.release()
        raise meanwhile
    for leftover in ("space.yaml",):
        with contextlib.suppress(FileNotFoundError):
            (search_dir / leftover).unlink()
    return lock


def _start_tracking(record: SearchRecord) -> None:
    """The MLflow experiment and the parent run (RUNNING), with the search's settings as params. A search
    resumed from its start-up window keeps the parent run it got: the one its record names, else the one
    made for its folder after the record was written (a stop came before the record named it)."""
    try:
        record.experiment_id = mlflow_runs.ensure_experiment(record.tracking_uri, record.experiment_name, record.artifact_root)
        if not record.parent_run_id:
            record.parent_run_id = mlflow_runs.find_parent_run(record.tracking_uri, record.experiment_id, name=record.name,
                                                               search_dir=record.search_dir,
                                                               since=_created_unix(record))
        if record.parent_run_id:
            mlflow_runs.reopen_run(record.tracking_uri, record.parent_run_id)
        else:
            record.parent_run_id = mlflow_runs.start_parent_run(
                record.tracking_uri, record.experiment_id, name=record.name,
                tags={"task": record.task, "method": record.method, "search_dir": record.search_dir},
            )
            pause_point("tracking")
        mlflow_runs.log_params(_tracking_client(record), record.parent_run_id, _parent_params(record))
    except mlflow_runs.TrackingError as exc:
        raise SearchError(str(exc)) from None
    except Exception as exc:
        raise SearchError(f"MLflow ({record.tracking_uri}): {type(exc).__name__}: {exc}") from None


def _created_unix(record: SearchRecord) -> float:
    try:
        return _dt.datetime.fromisoformat(record.created).timestamp()
    except (TypeError, ValueError):
        return 0.0


def _parent_params(record: SearchRecord) -> dict[str, Any]:
    """The parent run's params: the settings a reader compares searches by, and the base knobs
    (URIs without their passwords)."""
    keys = ("task", "method", "model", "data_dir", "trials", "sampler", "seed", "scheduler", "objective", "evaluations",
            "max_evaluations", "total_steps", "train_size", "eval_size", "profile", "storage", "study_name",
            "max_concurrent", "cpus_per_trial", "gpus_per_trial", "package_version", "git_commit", "space_source")
    params = {k: getattr(record, k) for k in keys}
    params["storage"] = redact(record.storage)
    if record.sampler == "nsga2":
        params["population_size"] = record.population_size
    if record.scheduler == "asha":
        params.update(asha_grace=record.asha_grace, asha_reduction_factor=record.asha_reduction_factor)
    params["command"] = "python -m orchestrator.search " + " ".join(shlex.quote(redact(a)) for a in record.argv)
    params["space"] = record.space_text
    params["presets"] = ", ".join(record.presets) or "none"
    params.update({f"base.{k}": v for k, v in record.base.items()})
    return params


def _write_space(record: SearchRecord, space: Any) -> None:
    (record.dir / "space.yaml").write_text(dump_space(space))


def _tracking_client(record: SearchRecord) -> Any:
    return mlflow_runs.client(record.tracking_uri)


def _sweep_runs(record: Optional[SearchRecord]) -> None:
    """After Ray is gone no trial can still be logging: end whatever child run is left RUNNING."""
    if record is not None and record.results is not None and "mlflow" in record.results.outputs:
        return  # MLflow was unreachable at the end: sync closes the runs
    if record is not None and record.parent_run_id and record.experiment_id:
        try:
            mlflow_runs.close_dangling_runs(record.tracking_uri, record.experiment_id, record.parent_run_id, "KILLED")
        except Exception:  # pragma: no cover - best effort on the way out
            pass


def _quiet_environment() -> None:
    import optuna


    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("mlflow.store.db.utils", "alembic"):  # "Creating initial MLflow database tables..." on a new store
        logging.getLogger(name).setLevel(logging.WARNING)
    for key, value in MLFLOW_RETRY_ENV.items():  # a tracking outage costs seconds, not minutes of retries
        os.environ.setdefault(key, value)
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no Tune tables, our own lines only


def _keep_offline(model: Optional[str]) -> None:
    """A local model (or the packaged one) never needs the hub: keep transformers offline."""
    if model is None or Path(model).is_dir():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")

