"""Your own data (docs/own-data.md): files and datasets read as a task, the regression rule, subsets and
held-out rows as for GLUE, the fingerprint, the train CLI, and a search on a CSV end to end (real Ray,
Optuna, MLflow, a tiny random BERT)."""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from increlora.data import GlueError, OwnData, load_source, prepare_data
from increlora.data.sources import data_source, task_name

WORDS = ("fine", "dull", "grand", "weak", "bright", "flat")


def _rows(n: int, seed: int = 0, labels=("neg", "pos"), weights=None) -> list[dict]:
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(labels), size=n, p=weights)
    return [{"id": i, "text": f"a {WORDS[i % 6]} film number {i}", "other": f"seen on day {i % 7}",
             "label": labels[k]} for i, k in enumerate(picks)]


def _csv(path: Path, rows: list[dict]) -> str:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return str(path)


def _own(**kw) -> OwnData:
    own = OwnData.from_knobs(kw)
    assert own is not None
    return own


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from increlora.backbone import load_tokenizer

    return load_tokenizer(tiny_model_dir)


# --- reading ----------------------------------------------------------------------------------


def test_csv_tsv_json_jsonl_read_the_same(tmp_path: Path) -> None:
    rows = _rows(20)
    paths = {"csv": _csv(tmp_path / "r.csv", rows)}
    (tmp_path / "r.tsv").write_text("id\ttext\tother\tlabel\n" + "".join(
        f"{r['id']}\t{r['text']}\t{r['other']}\t{r['label']}\n" for r in rows))
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "r.json").write_text(json.dumps({"data": rows}))
    paths.update(tsv=str(tmp_path / "r.tsv"), jsonl=str(tmp_path / "r.jsonl"), json=str(tmp_path / "r.json"))
    got = {}
    for kind, path in paths.items():
        loaded = load_source(_own(train_file=path, text_columns=["text", "other"]), need_eval=False)
        raw = loaded.splits["train"]
        got[kind] = (raw.text_a, raw.text_b, raw.labels.tolist(), loaded.spec.label_names)
    assert all(v == got["csv"] for v in got.values())
    assert got["csv"][3] == ("neg", "pos") and len(got["csv"][0]) == 20


def test_regression_rule_and_class_order(tmp_path: Path) -> None:
    scores = [{"text": f"t{i}", "label": v} for i, v in enumerate([0.5, 3.25, 4, 1, 2.75, 5])]
    whole = [{"text": f"t{i}", "label": v} for i, v in enumerate([10, 2, 10, 2, 1, 1])]
    spec = load_source(_own(train_file=_csv(tmp_path / "s.csv", scores)), need_eval=False).spec
    assert spec.is_regression and spec.metric_names == ("pearson",) and spec.num_labels == 1
    assert spec.defaults_task == "stsb"
    spec = load_source(_own(train_file=_csv(tmp_path / "w.csv", whole)), need_eval=False).spec
    assert not spec.is_regression and spec.label_names == ("1", "2", "10")  # numeric order
    assert spec.metric_names == ("accuracy",) and spec.defaults_task == "sst2"
    spec = load_source(_own(train_file=str(tmp_path / "w.csv"), metric="spearman"), need_eval=False).spec
    assert spec.is_regression and spec.metric_names == ("spearman",)  # the metric decides
    spec = load_source(_own(train_file=str(tmp_path / "s.csv"), metric="matthews"), need_eval=False).spec
    assert not spec.is_regression and spec.metric_names == ("mcc",) and spec.num_labels == 6


def test_unlabelled_rows_are_skipped_and_defaults_follow_the_shape(tmp_path: Path) -> None:
    from increlora.task_defaults import task_defaults

    rows = _rows(10) + [{"id": 99, "text": "no label", "other": "x", "label": ""}]
    loaded = load_source(_own(train_file=_csv(tmp_path / "u.csv", rows), text_columns=["text", "other"]),
                         need_eval=False)
    assert len(loaded.splits["train"]) == 10 and loaded.spec.is_pair and loaded.spec.defaults_task == "mrpc"
    assert task_defaults(loaded.spec, "increlora", "cpu")["max_length"] == 128  # pairs, as for GLUE pairs


def test_names_of_own_data(tmp_path: Path) -> None:
    assert task_name({"train_file": "/x/My Reviews.csv"}) == "My-Reviews"
    assert task_name({"train_file": "/x/cola.csv", "task": "cola"}) == "own-cola"  # never a GLUE task's name
    assert task_name({"train_file": "/x/a.csv", "task": "mine"}) == "mine"
    assert task_name({"dataset": "user/imdb", "dataset_config": "plain"}) == "imdb-plain"
    assert data_source({"task": "SST-2"}) == "sst2"
    with pytest.raises(GlueError, match="letters, digits"):
        task_name({"train_file": "/x/a.csv", "task": "my data"})


def test_own_metrics() -> None:
    from increlora.data import TaskSpec
    from increlora.metrics import compute_metrics, glue_score

    spec = TaskSpec(name="three", folder="three", text_columns=("text",), num_labels=3, is_regression=False,
                    label_names=("a", "b", "c"), eval_splits=("validation",), main_metric="f1", metric_names=("f1",),
                    tsv_text_columns=(), tsv_label_column="")
    gold, pred = np.array([0, 1, 2, 2, 1, 0]), np.array([0, 1, 2, 1, 1, 2])
    from sklearn.metrics import f1_score

    m = compute_metrics(spec, pred, gold)
    assert m == {"f1": pytest.approx(100 * f1_score(gold, pred, average="macro"))}
    assert glue_score(spec, m) == m["f1"]


# --- subsets, held-out rows, fingerprint ----------------------------------------------------------


def test_stratified_subsets_and_held_out_rows_as_for_glue(tmp_path: Path, tokenizer) -> None:
    train = _csv(tmp_path / "train.csv", _rows(400, seed=1, weights=[0.8, 0.2]))
    dev = _csv(tmp_path / "dev.csv", _rows(100, seed=2))
    own = _own(train_file=train, validation_file=dev, text_columns=["text"])
    with_dev = prepare_data(own, tokenizer, train_samples=100, eval_samples=50, max_length=32, seed=3)
    held = prepare_data(own, tokenizer, train_samples=100, holdout_samples=60, max_length=32, seed=3)
    assert with_dev.task == "train" and list(with_dev.evals) == ["validation"] and with_dev.eval_size == 50
    assert list(held.evals) == ["holdout"] and held.eval_size == 60
    assert with_dev.train.input_ids == held.train.input_ids  # the training subset ignores the hold-out
    labels = load_source(own).splits["train"].labels
    share = labels.mean()
    assert abs(with_dev.train.labels.mean() - share) <= 0.01 + 1 / 100  # stratified: within a row of the share
    assert abs(held.evals["holdout"].labels.mean() - share) <= 0.01 + 1 / 60
    rows = {tuple(x) for x in held.train.input_ids}
    assert not rows & {tuple(x) for x in held.evals["holdout"].input_ids}  # held-out rows are not trained on
    again = prepare_data(own, tokenizer, train_samples=100, holdout_samples=60, max_length=32, seed=3)
    assert again.train.input_ids == held.train.input_ids and again.fingerprint == held.fingerprint


def test_fingerprint_follows_content_not_path(tmp_path: Path) -> None:
    train = _csv(tmp_path / "a.csv", _rows(30))
    first = load_source(_own(train_file=train), need_eval=False).fingerprint()
    moved = tmp_path / "elsewhere" / "a.csv"
    moved.parent.mkdir()
    shutil.copy(train, moved)
    assert load_source(_own(train_file=str(moved)), need_eval=False).fingerprint()["sha256"] == first["sha256"]
    assert load_source(_own(train_file=train, metric="f1"), need_eval=False).fingerprint()["sha256"] != first["sha256"]
    time.sleep(0.01)
    _csv(Path(train), _rows(30, seed=5))
    changed = load_source(_own(train_file=train), need_eval=False).fingerprint()
    assert changed["sha256"] != first["sha256"] and changed["splits"]["train"]["rows"] == 30


def test_a_dataset_folder_loads_and_a_hub_name_fails_offline(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "ds"
    folder.mkdir()
    _csv(folder / "train.csv", _rows(24))
    _csv(folder / "validation.csv", _rows(8, seed=3))
    loaded = load_source(_own(dataset=str(folder)))
    assert len(loaded.splits["train"]) == 24 and len(loaded.splits["validation"]) == 8
    assert loaded.fingerprint()["splits"] == {"train": {"rows": 24}, "validation": {"rows": 8}}
    t0 = time.perf_counter()
    with pytest.raises(GlueError, match="hub is unreachable and it is not in the local datasets cache"):
        load_source(_own(dataset="no-such-user/no-such-dataset"))
    assert time.perf_counter() - t0 < 10


# --- the train CLI ------------------------------------------------------------------------------


def test_train_cli_on_a_csv(tmp_path: Path, tiny_model_dir, capsys) -> None:
    from increlora.train import main

    train = _csv(tmp_path / "reviews.csv", _rows(48))
    dev = _csv(tmp_path / "reviews-dev.csv", _rows(16, seed=9))
    rc = main(["--train-file", train, "--validation-file", dev, "--text-columns", "text", "--metric", "f1",
               "--model", tiny_model_dir, "--max-steps", "2", "--batch-size", "16", "--quiet",
               "--output-dir", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert out.startswith("task reviews ") and "score: last" in out and "GLUE score" not in out
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["task"] == "reviews" and set(result["metrics"]) == {"f1"}
    assert result["data"]["splits"]["train"] == {"file": "reviews.csv", "sha256": result["data"]["splits"]["train"]["sha256"],
                                                 "rows": 48}
    assert result["data"]["labels"] == ["neg", "pos"] and len(result["data"]["sha256"]) == 64
    card = (tmp_path / "out" / "adapter" / "README.md").read_text()
    assert "own data reviews" in card and f"--train-file {train}" in card and "GLUE_DIR" not in card


# --- a search on a CSV, end to end ----------------------------------------------------------------


@pytest.mark.slow
def test_search_on_a_csv_end_to_end(local_ray, tiny_model_dir, tmp_path: Path, monkeypatch, capsys) -> None:
    import mlflow

    from increlora.presets import load_preset
    from orchestrator import search

    monkeypatch.chdir(tmp_path)
    train = str(Path(_csv(tmp_path / "tickets.csv", _rows(120, labels=("bug", "question", "idea")))).resolve())
    dev = str(Path(_csv(tmp_path / "tickets-dev.csv", _rows(30, seed=4, labels=("bug", "question", "idea")))).resolve())
    env = {"HF_HUB_OFFLINE": "1", "RAY_CHDIR_TO_TRIAL_DIR": "0", "RAY_AIR_NEW_OUTPUT": "0"}
    with local_ray(num_cpus=2, env=env):
        rc = search.main(["--train-file", "tickets.csv", "--validation-file", "tickets-dev.csv", "--text-columns", "text",
                          "--metric", "matthews", "--model", tiny_model_dir, "--train-samples", "48",
                          "--max-steps", "4", "--batch-size", "16", "--evaluations", "1", "--trials", "3",
                          "--name", "own", "--output-dir", str(tmp_path / "searches"),
                          "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    folder = tmp_path / "searches" / "own"
    record = json.loads((folder / "search.json").read_text())
    assert record["task"] == "tickets" and record["status"] == "finished" and record["counts"] == {"COMPLETE": 3}
    assert record["base"]["train_file"] == train and record["base"]["validation_file"] == dev  # absolute
    assert record["base"]["metric"] == "matthews" and record["train_size"] == 48 and record["eval_size"] == 30
    expected = load_source(_own(train_file=train, validation_file=dev, text_columns=["text"], metric="matthews"))
    assert record["data_fingerprint"]["sha256"] == expected.fingerprint()["sha256"]
    presets = sorted((folder / "presets").glob("tickets-*.yaml"))
    assert len(presets) == 3
    for path in presets:
        preset = load_preset(path)
        assert preset.task == "tickets" and preset.provenance["data"]["sha256"] == expected.fingerprint()["sha256"]
        assert not {"train_file", "validation_file", "text_columns", "metric"} & set(preset.config)
    client = mlflow.MlflowClient(tracking_uri=record["tracking_uri"])
    experiment = client.get_experiment_by_name("increlora-tickets")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.search = 'own'")
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    trials = [r for r in children if "trial" in r.data.tags]
    confirmations = [r for r in children if "confirms" in r.data.tags]  # the confirmation stage, on own data too
    assert len(trials) == 3 and all({"eval/mcc", "glue_score"} <= set(r.data.metrics) for r in children)
    assert len(confirmations) == len(children) - 3 and len(confirmations) >= 1 and record["confirmed"]
    assert all(r.data.params["train_file"] == train for r in children)
    # the score is the MCC, not a "GLUE score": in the closing table, the trials' and the parent's descriptions,
    # the report
    header = next(ln for ln in out.out.splitlines() if "adapter params" in ln)
    assert " MCC " in header and "GLUE" not in header, header
    assert all(r.data.tags["mlflow.note.content"].startswith("MCC **") for r in children)
    parent = client.get_run(record["parent_run_id"])
    assert "objectives: MCC (" in parent.data.tags["mlflow.note.content"]
    assert "GLUE" not in parent.data.tags["mlflow.note.content"]
    from orchestrator import report

    assert report.main(["--search", str(folder), "--format", "markdown", "--no-mlflow"]) == 0
    markdown = capsys.readouterr().out
    assert "| trial | mean MCC | 95 % interval | seeds | adapter params" in markdown and "GLUE" not in markdown
