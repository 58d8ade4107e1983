"""Compare two finished searches field by field: the search folder, the Optuna study and the MLflow records.

Used to show that a refactoring changed nothing a user sees: run the same search (same flags and
seed, ``--max-concurrent 1``) with the old and the new code, then

    python .ci/compare_searches.py OLD_SEARCH_DIR NEW_SEARCH_DIR

Values that legitimately differ between two runs are masked: ids, timestamps, durations, absolute
paths (each search's own root is replaced by ``<root>``), the git commit and the command line. Every
other field - knobs, scores, parameter counts, allocations, the front, the presets, metric histories,
run names, tags, artifact lists, file contents (PNG files byte for byte) - must be equal. Prints one
line per compared item and exits 1 on the first kind of difference it finds (after listing them all).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

VOLATILE = {
    "created", "updated", "finished", "timings", "git_commit", "argv", "command", "date", "mlflow_run_id", "run_id",
    "parent_run_id", "experiment_id", "ray_trial_id", "wall_time_s", "train_time_s", "eval_time_s", "setup_time_s",
    "started", "package_version", "finished_unix", "started_unix",
}
TIME_METRICS = {"wall_time_s", "train_time_s", "eval_time_s", "setup_time_s"}


UNORDERED = {"target_modules", "modules_to_save"}  # peft writes these from a set: any order


def mask(value: Any, roots: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: ("<masked>" if k in VOLATILE else sorted(mask(v, roots)) if k in UNORDERED and isinstance(v, list)
                    else mask(v, roots)) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [mask(v, roots) for v in value]
    if isinstance(value, str):
        for root in roots:
            value = value.replace(root, "<root>")
        return value
    return value


def folder(search_dir: Path) -> dict[str, Any]:
    root = str(search_dir.parent.parent)
    out: dict[str, Any] = {}
    for path in sorted(search_dir.rglob("*")):
        rel = path.relative_to(search_dir).as_posix()
        if rel.startswith("ray/") or path.is_dir() or rel.endswith(".db"):
            continue
        if path.suffix == ".json":
            out[rel] = mask(json.loads(path.read_text()), [root])
        elif path.suffix == ".csv":
            rows = list(csv.DictReader(io.StringIO(path.read_text())))
            out[rel] = mask(rows, [root])
        elif path.suffix in (".yaml", ".yml", ".md", ".txt"):
            import yaml

            text = path.read_text()
            out[rel] = mask(yaml.safe_load(text) if path.suffix != ".md" else text, [root])
        else:
            out[rel] = path.read_bytes()
    return out


def study(summary: dict[str, Any]) -> list[dict[str, Any]]:
    import optuna

    s = optuna.load_study(study_name=summary["study_name"], storage=summary["storage"])
    return [{"number": t.number, "state": t.state.name, "values": t.values, "params": t.params,
             "user_attrs": mask(dict(t.user_attrs), [])} for t in s.get_trials(deepcopy=False)]


def mlflow_runs(summary: dict[str, Any], root: str) -> dict[str, Any]:
    from mlflow import MlflowClient

    c = MlflowClient(tracking_uri=summary["tracking_uri"])
    exp = c.get_experiment_by_name(summary["experiment_name"])
    runs = c.search_runs([exp.experiment_id], filter_string=f"tags.search = '{summary['name']}'", max_results=1000)
    out: dict[str, Any] = {}
    for run in runs:
        child = "mlflow.parentRunId" in run.data.tags
        key = f"child {run.data.params.get('trial_number')}" if child else "parent"
        metrics = {}
        for name in sorted(run.data.metrics):
            if name in TIME_METRICS:
                continue
            metrics[name] = [(m.step, m.value) for m in c.get_metric_history(run.info.run_id, name)]
        tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.") or k == "mlflow.note.content"}
        out[key] = mask({
            "name": run.info.run_name, "status": run.info.status, "params": dict(run.data.params), "metrics": metrics,
            "tags": tags, "artifacts": sorted(a.path for a in c.list_artifacts(run.info.run_id)),
        }, [root])
    return out


def describe(a: Any, b: Any, where: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                out.append(f"{where}.{k}: only in {'new' if k in b else 'old'}")
            else:
                describe(a[k], b[k], f"{where}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            describe(x, y, f"{where}[{i}]", out)
    elif a != b:
        shown = (repr(a)[:120], repr(b)[:120]) if not isinstance(a, bytes) else (f"{len(a)} bytes", f"{len(b)} bytes")
        out.append(f"{where}: {shown[0]} != {shown[1]}")


def main(argv: list[str]) -> int:
    old_dir, new_dir = (Path(p).resolve() for p in argv[:2])
    old_s = json.loads((old_dir / "search.json").read_text())
    new_s = json.loads((new_dir / "search.json").read_text())
    diffs: list[str] = []
    parts = {
        "search folder": (folder(old_dir), folder(new_dir)),
        "optuna study": (study(old_s), study(new_s)),
        "mlflow runs": (mlflow_runs(old_s, str(old_dir.parent.parent)), mlflow_runs(new_s, str(new_dir.parent.parent))),
    }
    for name, (a, b) in parts.items():
        found: list[str] = []
        describe(a, b, name, found)
        count = len(a) if hasattr(a, "__len__") else 1
        print(f"{name}: {count} items compared, {len(found)} differences")
        for line in found:
            print(f"  {line}")
        diffs += found
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
