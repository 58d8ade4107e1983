"""``search.json``: the record of one search, owned by :class:`SearchRecord`.

The record is written when the search starts (settings, resources, the trial protocol, the
space, provenance and the MLflow ids), rewritten at every status change, and completed by the
finalisation (:class:`FrontSummary`: counts, front, presets, hypervolume, outputs) and at the end
(``finished``, ``timings``). It is the source of truth for ``--resume``, ``orchestrator.export``,
``orchestrator.report`` and the benchmarks. Writes are atomic; ``version`` is the schema version.

On disk the record is one flat JSON object; :meth:`SearchRecord.to_dict` and
:meth:`SearchRecord.from_dict` are the only places that know its layout.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from increlora.atomic import write_json_atomic
from increlora.data import score_label
from orchestrator.tracking.mlflow_runs import redact

SEARCH_FILE = "search.json"
SCHEMA_VERSION = 1


class RecordError(RuntimeError):
    """A search record cannot be found or read; the one-line message says why."""


@dataclass
class FrontSummary:
    """What the finalisation found: trial counts by state, the front rows, the preset picks."""

    counts: dict[str, int]
    front: list[dict[str, Any]]
    picks: dict[str, int]  # label -> trial number
    hypervolume: Optional[float]
    heatmap_vmax: float
    outputs: dict[str, Any]
    updated: str
    nodes: dict[str, str] = field(default_factory=dict)  # trial number -> the Ray node it ran on
    chance_score: Optional[float] = None  # the majority-class GLUE score of the dev rows
    above_chance: Optional[bool] = None  # the best trial beat it by > 1 point (None: no COMPLETE trial)
    confirmed: bool = False  # the front ranks means over seeds (the confirmation stage ran)
    confirmed_hypervolume: Optional[float] = None  # hypervolume of the confirmed front (means)
    confirmed_configurations: int = 0  # configurations trained on >= 2 seeds
    noise_sd: Optional[float] = None  # seed standard deviation pooled over the configurations with >= 2 seeds
    distinguishable: list[dict[str, Any]] = field(default_factory=list)  # neighbouring front points, paired
    importance: dict[str, Any] = field(default_factory=dict)  # orchestrator.records.importance.Importance.to_dict()


@dataclass(frozen=True)
class SearchChoices:
    """What the user chose for a search (from the command line), as the record keeps it."""

    task: str
    method: str
    model: Optional[str]
    data_dir: Optional[str]
    trials: int
    sampler: str
    population_size: int
    seed: int
    scheduler: str
    asha_grace: int
    asha_reduction_factor: float
    objective: str
    evaluations: int
    tolerance: float
    storage: str
    tracking_uri: str
    artifact_root: Optional[str]
    experiment_name: str
    save_adapters: bool
    cpus_per_trial: int
    argv: list[str]
    max_failures: Optional[int] = None  # stop the search after this many failed trials
    confirm: int = 0  # new seeds per confirmed configuration (orchestrator.running.confirmation); 0: no confirmation
    confirm_share: float = 0.25  # the confirmation trains at most this share of the trials
    dedupe: bool = False  # a configuration proposed again trains on the next seed (orchestrator.running.searcher)


@dataclass
class SearchRecord:
    """One search (see the module docstring). The user's :class:`SearchChoices` are stored flat in the
    file and read as attributes of the record (``record.task``); field order is the file's key order."""

    version: int
    name: str
    search_dir: str
    status: str  # created | running | finalizing | finished | interrupted
    choices: SearchChoices
    study_name: str
    ray_path: str
    sessions: int = 0  # --resume sessions so far
    # resources, resolved against the cluster
    gpus_per_trial: float = 0.0
    max_concurrent: int = 1
    cluster: dict[str, float] = field(default_factory=dict)
    # the trial protocol every trial shares
    profile: str = "cpu"
    eval_steps_fixed: bool = False
    base: dict[str, Any] = field(default_factory=dict)
    total_steps: int = 0
    max_evaluations: int = 0
    train_size: int = 0
    eval_size: int = 0
    chance_score: float = 0.0
    data_fingerprint: dict[str, Any] = field(default_factory=dict)  # sha256 of the data, its files or dataset
    # the space and its seeds
    space: dict[str, Any] = field(default_factory=dict)
    space_source: str = ""
    space_text: str = ""
    presets: list[str] = field(default_factory=list)
    # provenance
    package_version: str = ""
    git_commit: Optional[str] = None
    created: str = ""
    # MLflow
    experiment_id: str = ""
    parent_run_id: str = ""
    # results
    results: Optional[FrontSummary] = None
    finished: Optional[str] = None
    timings: Optional[dict[str, float]] = None

    def __getattr__(self, name: str) -> Any:
        if name != "choices" and "choices" in self.__dict__:
            return getattr(self.__dict__["choices"], name)
        raise AttributeError(name)

    @property
    def dir(self) -> Path:
        return Path(self.search_dir)

    @property
    def evaluated_on(self) -> str:
        """``holdout`` when the trials were scored on held-out training rows (``--holdout-samples``), else ``dev``."""
        return "holdout" if self.base.get("holdout_samples") else "dev"

    @property
    def own_data(self) -> bool:
        """True when the trials train on your own data (``--train-file`` / ``--dataset``), not a GLUE task."""
        return bool(self.base.get("train_file") or self.base.get("dataset"))

    @property
    def score_name(self) -> str:
        """What the trials' score is called in tables, plots and notes: ``GLUE score`` on a GLUE task, the
        metric's name on your own data (``accuracy``, ``F1``, ``MCC``...; the data's fingerprint holds the
        metric in effect, chosen by the rule when ``--metric`` was not given)."""
        metric = self.data_fingerprint.get("metric") or self.base.get("metric")
        return score_label(metric, own_data=self.own_data)

    @property
    def scored_on(self) -> str:
        """Where the trials' scores come from, in words: ``500 dev rows`` / ``400 held-out training rows``."""
        return f"{self.eval_size} " + ("held-out training rows" if self.evaluated_on == "holdout" else "dev rows")

    # ------------------------------------------------------------------ file
    def to_dict(self) -> dict[str, Any]:
        """The file's content; URIs and the command line lose their passwords (:func:`tracking.redact`)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("results", "choices"):
                if value is not None:
                    out.update(dataclasses.asdict(value))
            elif f.name in ("finished", "timings") and value is None:
                continue
            else:
                out[f.name] = value
        for key in ("storage", "tracking_uri"):
            out[key] = redact(out[key])
        out["argv"] = [redact(a) for a in out["argv"]]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SearchRecord":
        names = {f.name for f in dataclasses.fields(cls)}
        result_fields = dataclasses.fields(FrontSummary)
        kwargs = {k: v for k, v in data.items() if k in names}
        if all(f.name in data for f in result_fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING):
            kwargs["results"] = FrontSummary(**{f.name: data[f.name] for f in result_fields if f.name in data})
        try:
            kwargs["choices"] = SearchChoices(**{f.name: data[f.name] for f in dataclasses.fields(SearchChoices)
                                                 if f.name in data or f.default is dataclasses.MISSING})
            return cls(**kwargs)
        except KeyError as exc:
            raise RecordError(f"not a search record (no {exc})") from None
        except TypeError as exc:
            raise RecordError(f"not a search record ({exc})") from None

    def save(self) -> Path:
        """Write ``search.json`` atomically."""
        return write_json_atomic(self.dir / SEARCH_FILE, self.to_dict())

    @classmethod
    def load(cls, search_dir: Path) -> "SearchRecord":
        path = Path(search_dir) / SEARCH_FILE
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise RecordError(f"cannot read {path}: {exc}") from None
        if not isinstance(data, dict):
            raise RecordError(f"{path} is not a search record")
        if int(data.get("version", 0)) > SCHEMA_VERSION:
            raise RecordError(f"{path} has schema version {data['version']}; this increlora-search reads up to "
                              f"{SCHEMA_VERSION}: upgrade it")
        try:
            return cls.from_dict(data)
        except RecordError as exc:
            raise RecordError(f"{path}: {exc}") from None

    # ------------------------------------------------------------------ views
    def counts(self) -> dict[str, int]:
        return dict(self.results.counts) if self.results else {}


ABANDONED_START_FILES = {"search.lock", "space.yaml"}  # what a search writes before its search.json


def abandoned_start(search_dir: Path) -> bool:
    """A search folder that a search was stopped in before writing its ``search.json`` (a kill in the
    first milliseconds of its start-up): it holds nothing but the lock file and ``space.yaml``. Its name
    is free: a new search of that name takes the folder (once it holds the folder's lock)."""
    folder = Path(search_dir)
    try:
        names = {p.name for p in folder.iterdir()}
    except OSError:
        return False
    return SEARCH_FILE not in names and names <= ABANDONED_START_FILES


def find_search(name_or_dir: str, output_dir: str = "searches") -> Path:
    """The folder of a search: ``name_or_dir`` itself, or ``<output_dir>/<name_or_dir>``."""
    for candidate in (Path(name_or_dir), Path(output_dir) / name_or_dir):
        if (candidate / SEARCH_FILE).is_file():
            return candidate.resolve()
    raise RecordError(f"no search {name_or_dir!r}: neither {name_or_dir}/ nor {output_dir}/{name_or_dir}/ holds {SEARCH_FILE}")
