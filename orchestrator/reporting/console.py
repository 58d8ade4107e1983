"""What a search prints: one-line messages and errors, and the closing summary (front, where to look).

Text that comes from the user or the disk (folders, names, URIs, run names) is never read as rich
markup (an output folder ``runs[/old]`` is printed as it is), and the commands printed for the user
to copy are shell-quoted.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from increlora.budget import CHANCE_MARGIN
from orchestrator.tracking.probes import redact
from orchestrator.records.seed_stats import distinguishable_text
from increlora.naming import MODULE_TYPES, type_key
from orchestrator.tracking import mlflow_runs
from orchestrator.records.importance import Importance

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.records.record import SearchRecord


def not_learned_text(best: float, chance: float) -> str:
    """What a search whose best trial did not beat the majority class says (console, MLflow note)."""
    return (f"the best trial scored {best:.2f}, not above the majority-class score {chance:.2f} by more than "
            f"{CHANCE_MARGIN:g} point: no configuration learned the task, so this front ranks noise and its presets "
            "are marked `above_chance: false`. Give the trials more training (--train-samples, --epochs; "
            "see the README's CPU defaults) before reading the front.")


def plural(n: int, word: str) -> str:
    """``1 trial``, ``2 trials``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def say(message: str) -> None:
    print(message, flush=True)


def err(message: Any) -> None:
    """``error: <message>`` on one line of stderr."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)


def command(*words: Any) -> str:
    """A command line to copy: every word shell-quoted (``runs[/old]`` -> ``'runs[/old]'``)."""
    return " ".join(shlex.quote(str(w)) for w in words)


def mlflow_ui_command(uri: str) -> str:
    """How to look at a search's MLflow records (the README's command): the server URL, or an
    ``mlflow server`` over the local store."""
    if mlflow_runs.is_remote(uri):
        return f"open {shlex.quote(uri)}"
    return ("MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false " +
            command("mlflow", "server", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", "5000", "--workers", "1"))


LOCAL_MLFLOW_UI = "http://127.0.0.1:5000"  # where mlflow_ui_command's server listens


def mlflow_ui_base(uri: str) -> str:
    """The MLflow UI's address for a tracking URI: the server itself, or the local server of :func:`mlflow_ui_command`."""
    return redact(uri).rstrip("/") if mlflow_runs.is_remote(uri) else LOCAL_MLFLOW_UI


def run_link(uri: str, experiment_id: str, run_id: str) -> str:
    """A run in MLflow's model-training view (MLflow 3 opens its GenAI view otherwise)."""
    return f"{mlflow_ui_base(uri)}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def compare_link(uri: str, experiment_id: str, run_ids: Sequence[str]) -> str:
    """MLflow's compare view of ``run_ids`` (their metrics, params and allocation charts side by side)."""
    from urllib.parse import quote

    runs = quote(json.dumps(list(run_ids), separators=(",", ":")), safe="")
    experiments = quote(json.dumps([str(experiment_id)], separators=(",", ":")), safe="")
    return f"{mlflow_ui_base(uri)}/#/compare-runs?runs={runs}&experiments={experiments}"


# MLflow's UI keeps a shared view of an experiment's runs table (the "Share" button) as an experiment tag with
# this prefix; ``#/experiments/<id>/runs?viewStateShareKey=<key>`` opens it: its filter, sort and columns.
SHARED_VIEW_PREFIX = "mlflow.sharedViewState."


def front_view_key(parent_run_id: str) -> str:
    """The shared view of a search's front (one per search: its parent run's id)."""
    return f"increlora-front-{parent_run_id}"


def front_view_columns() -> list[str]:
    """The metrics the front's view shows, in this order: the score, the size, the total rank and the rank
    per module type (``alloc/1q`` ... ``alloc/6f2``, :func:`orchestrator.tracking.mlflow_runs.allocation_metrics`)."""
    return ["glue_score", "adapter_params", "alloc/total", *(f"alloc/{type_key(t)}" for t in MODULE_TYPES)]


def front_view_state(run_ids: Sequence[str]) -> dict[str, Any]:
    """The runs table of MLflow's model-training view showing only ``run_ids`` (the front's trials), best
    score first, with :func:`front_view_columns` right after the run name: the state MLflow's "Share" button
    stores (its search facets and the table's columns)."""
    columns = [f"metrics.`{m}`" for m in front_view_columns()]
    return {
        "searchFilter": "attributes.run_id IN (" + ", ".join(f"'{i}'" for i in run_ids) + ")",
        "orderByKey": "metrics.`glue_score`",
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "selectedColumns": columns,
        # every shown column, or the grid interleaves the unnamed ones (creation time, duration) with ours
        "columnOrder": ["attributes.`Run Name`", *columns, "runDateAndNestInfo", "duration"],
        # narrow columns: the score, the size and all six types fit a 1400-pixel-wide window
        "columnWidths": {"runDateAndNestInfo": 130, **{c: (105 if i < 2 else 80 if i == 2 else 68)
                                                          for i, c in enumerate(columns)}},
        "runsHiddenMode": "SHOW_ALL",
    }


def front_view_link(uri: str, experiment_id: str, key: str) -> str:
    """The shared view ``key`` of the experiment's runs table (written by :func:`front_view_state`'s caller)."""
    from urllib.parse import quote

    return (f"{mlflow_ui_base(uri)}/#/experiments/{experiment_id}/runs?viewStateShareKey={quote(key, safe='')}"
            "&workflowType=machine_learning")


def front_run_ids(record: "SearchRecord") -> list[str]:
    """The MLflow run ids of the front's trials."""
    front = record.results.front if record.results else []
    return [str(r["mlflow_run_id"]) for r in front if r.get("mlflow_run_id")]


def search_links(record: "SearchRecord") -> dict[str, str]:
    """The parent run's link (``parent``), the front's trials as a table of score, size and rank per module type
    (``front``: where the finalisation wrote its shared view, ``outputs["front_view"]``) and side by side in
    MLflow's compare view (``compare``); empty where MLflow holds none."""
    out: dict[str, str] = {}
    if not (record.experiment_id and record.parent_run_id):
        return out
    out["parent"] = run_link(record.tracking_uri, record.experiment_id, record.parent_run_id)
    ids = front_run_ids(record)
    key = (record.results.outputs or {}).get("front_view") if record.results else None
    if ids and key:
        out["front"] = front_view_link(record.tracking_uri, record.experiment_id, str(key))
    if ids:
        out["compare"] = compare_link(record.tracking_uri, record.experiment_id, ids)
    return out


def resume_command(record: "SearchRecord") -> str:
    return command("python", "-m", "orchestrator.search", "--resume", "--name", record.name,
                   "--output-dir", Path(record.search_dir).parent)


def print_summary(record: "SearchRecord") -> None:
    """The Pareto front as a table and where to look next."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table


    console = Console(highlight=False, width=max(100, shutil.get_terminal_size((140, 24)).columns))
    results = record.results
    counts = results.counts if results else {}
    confirmed = bool(results and results.confirmed)
    kind = "Confirmed Pareto front" if confirmed else "Pareto front"
    table = Table(title=escape(f"{kind} of {record.name} "
                               f"({', '.join(f'{v} {k.lower()}' for k, v in sorted(counts.items()))})"))
    score = record.score_name  # "GLUE score", or own data's metric ("accuracy", "F1"...)
    score_cols = (f"mean {score}", "95 % interval", "seeds", "first run") if confirmed else (score,)
    for col in ("trial", *score_cols, "adapter params", "total rank", "preset", "run"):
        table.add_column(col, justify="left" if col in ("preset", "run") else "right")
    for row in results.front if results else []:
        scores = [f"{float(row['glue_score']):.2f}"]
        if confirmed:
            ci = (f"[{float(row['ci_low']):.2f}, {float(row['ci_high']):.2f}]"
                  if row.get("ci_low") not in (None, "") else "-")
            scores += [ci, str(row.get("n", 1)), f"{float(row.get('single_score', row['glue_score'])):.2f}"]
        table.add_row(str(row["trial"]), *scores, f"{int(row['adapter_params']):,}",
                      str(row["total_rank"]), escape(str(row["labels"])), escape(str(row["run_name"])))
    console.print(table)
    if results is not None and results.front:
        console.print(distinguishable_text(results.distinguishable, results.confirmed), markup=False, soft_wrap=True)
    if results is not None and results.importance:
        console.print("Which knobs matter: " + Importance(**results.importance).sentence(), markup=False, soft_wrap=True)
    if results and results.above_chance is False and results.front:
        best = max(float(r["glue_score"]) for r in results.front)
        console.print(f"[bold red]warning: not above chance[/]: {escape(not_learned_text(best, float(results.chance_score or 0.0)))}")
    outputs = results.outputs if results else {}

    def line(text: str) -> None:  # plain text: a folder named runs[/old] is no markup,
        console.print(text, markup=False, soft_wrap=True)  # and never broken: the commands are copied

    line(f"MLflow:   {redact(mlflow_ui_command(record.tracking_uri))}   "
         f"(experiment {record.experiment_name}, parent run {record.parent_run_id})")
    links = search_links(record)
    if links.get("parent"):
        line(f"Search:   {links['parent']}")
    if links.get("front"):
        line(f"Front:    {links['front']}   (the front's trials in a table, best first: glue_score, adapter_params, "
             "alloc/... the rank per module type)")
    if links.get("compare"):
        line(f"Compare:  {links['compare']}   (the front's trials side by side: every parameter and metric)")
    line(f"Optuna:   optuna-dashboard {shlex.quote(redact(record.storage))} --host 127.0.0.1 --port 8080   "
         f"(study {record.study_name})")
    for path in outputs.get("presets", []):
        line(f"Preset:   {path}")
    for key in ("front_csv", "pareto_png", "hypervolume_png"):
        if outputs.get(key):
            line(f"Output:   {outputs[key]}")
    line(f"Summary:  {Path(record.search_dir) / 'search.json'}")
    line(f"Export:   {command('python', '-m', 'orchestrator.export', '--search', record.search_dir, '--out', 'presets/')}")
    line(f"Report:   {command('python', '-m', 'orchestrator.report', '--search', record.search_dir)}")
