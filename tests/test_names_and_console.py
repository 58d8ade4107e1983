"""Names that become paths are path components, and what a search prints survives odd folders: the
closing summary of a search under ``runs[/old]`` (rich markup to a naive print) prints that folder as it
is, and the commands it prints for copying are shell-quoted. No Ray: a real record and a real summary."""

from __future__ import annotations

import shlex

import pytest

from orchestrator.reporting.console import command, print_summary, resume_command
from orchestrator.records.record import SCHEMA_VERSION, FrontSummary, SearchChoices, SearchRecord
from orchestrator.running.settings import SearchError, check_experiment, check_name


def _record(search_dir: str) -> SearchRecord:
    choices = SearchChoices(task="sst2", method="increlora", model=None, data_dir=None, trials=1, sampler="tpe",
                            population_size=16, seed=0, scheduler="none", asha_grace=1, asha_reduction_factor=2.0,
                            objective="final", evaluations=1, tolerance=1.0, storage=f"sqlite:///{search_dir}/optuna.db",
                            tracking_uri=f"sqlite:///{search_dir}/../mlflow db [x].db", artifact_root=None,
                            experiment_name="increlora-sst2", save_adapters=False, cpus_per_trial=1, argv=[])
    record = SearchRecord(version=SCHEMA_VERSION, name="s1", search_dir=search_dir, status="finished", choices=choices,
                          study_name="s1", ray_path=f"{search_dir}/ray/s1")
    front = [{"trial": 0, "glue_score": 61.5, "adapter_params": 1234, "total_rank": 12, "labels": "best [knee]",
              "run_name": "t000 [/bold] r=2"}]
    record.results = FrontSummary(counts={"COMPLETE": 1}, front=front, picks={"best": 0}, hypervolume=None,
                                  heatmap_vmax=4.0, outputs={"presets": [f"{search_dir}/presets/best.yaml"]},
                                  updated="now", above_chance=False, chance_score=70.0)
    return record


def test_the_summary_of_a_search_under_an_odd_folder_prints_it_as_it_is(tmp_path, capsys):
    folder = str(tmp_path / "runs[/old]" / "it's here" / "s1")
    print_summary(_record(folder))
    out = capsys.readouterr().out
    assert f"{folder}/presets/best.yaml" in out and "t000 [/bold] r=2" in out and "best [knee]" in out
    export = next(ln for ln in out.splitlines() if ln.startswith("Export:"))
    report = next(ln for ln in out.splitlines() if ln.startswith("Report:"))
    assert shlex.split(export.split(":", 1)[1]) == ["python", "-m", "orchestrator.export", "--search", folder,
                                                     "--out", "presets/"]
    assert shlex.split(report.split(":", 1)[1])[-1] == folder
    mlflow = next(ln for ln in out.splitlines() if ln.startswith("MLflow:"))
    assert f"sqlite:///{folder}/../mlflow db [x].db" in shlex.split(mlflow.split(":", 1)[1].split("   (")[0])
    assert "not above chance" in out


def test_the_resume_command_is_shell_quoted(tmp_path):
    folder = tmp_path / "a b;rm -rf x" / "s1"
    words = shlex.split(resume_command(_record(str(folder))))
    assert words == ["python", "-m", "orchestrator.search", "--resume", "--name", "s1", "--output-dir", str(folder.parent)]
    assert shlex.split(command("x", "$(y)", "[/z]")) == ["x", "$(y)", "[/z]"]


@pytest.mark.parametrize("name", ["x\n", "../x", "a/b", "..", ".", "-x", "a b", "é"])
def test_search_names_are_path_components(name):
    with pytest.raises(SearchError, match="use letters, digits"):
        check_name(name)


@pytest.mark.parametrize("name", ["a\nb", "../x", "a/b", "..", ".", "a\\b", " x", "x ", "a\tb", "x" * 201, ""])
def test_experiment_names_are_path_components(name):
    with pytest.raises(SearchError, match="--experiment"):
        check_experiment(name)
    assert check_experiment("increlora-sst2 (old runs)") == "increlora-sst2 (old runs)"


def test_a_name_with_a_newline_is_one_line_exit_2_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from orchestrator.search import main

    monkeypatch.chdir(tmp_path)
    for argv in (["--name", "x\n"], ["--experiment", "a\nb"], ["--resume", "--name", "x\n"]):
        rc = main([*argv, "--output-dir", str(tmp_path / "searches"), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
        lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("error:"), (argv, lines)
    assert list(tmp_path.iterdir()) == []


def test_links_open_mlflows_model_training_view_and_compare_view():
    import json
    from urllib.parse import unquote

    from orchestrator.reporting.console import compare_link, run_link

    assert run_link("sqlite:////tmp/m.db", "3", "abc") == (
        "http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning")
    assert run_link("http://u:secret@host:5001/", "3", "abc").startswith("http://u@host:5001/#/experiments/3/runs/abc")
    link = compare_link("http://127.0.0.1:5001", "7", ["r1", "r2"])
    head, query = link.split("#/compare-runs?")
    runs, experiments = (part.split("=", 1)[1] for part in query.split("&"))
    assert head == "http://127.0.0.1:5001/" and json.loads(unquote(runs)) == ["r1", "r2"]
    assert json.loads(unquote(experiments)) == ["7"]


def test_own_data_scores_are_named_by_their_metric_not_glue(tmp_path, capsys):
    """A search on your own data calls its score by the metric's name in the closing table and the parent
    run's description; a GLUE task's stays the GLUE score."""
    import dataclasses

    from increlora.data import score_label
    from orchestrator.reporting.finalize import note_text

    assert score_label(None) == "GLUE score" and score_label("f1") == "F1" and score_label("matthews") == "MCC"
    assert score_label(None, own_data=True) == "score" and score_label("accuracy") == "accuracy"
    glue = _record(str(tmp_path / "s1"))
    assert glue.score_name == "GLUE score"
    cases = [({"train_file": "/d/tickets.csv", "metric": "f1"}, {"metric": "f1"}, "F1"),
             ({"train_file": "/d/tickets.csv"}, {"metric": "accuracy"}, "accuracy"),  # chosen by the rule
             ({"dataset": "user/reviews"}, {"metric": "spearman"}, "Spearman"),
             ({"train_file": "/d/tickets.csv"}, {}, "score")]  # an older record: no metric in the fingerprint
    for base, fingerprint, name in cases:
        record = dataclasses.replace(glue, base=base, data_fingerprint=fingerprint)
        assert record.own_data and record.score_name == name
        print_summary(record)
        out = capsys.readouterr().out
        assert "GLUE" not in out and f" {name} " in next(ln for ln in out.splitlines() if "adapter params" in ln), out
        note = note_text(record, {"COMPLETE": 1}, record.results.front, None, {})
        assert "GLUE" not in note and f"objectives: {name} (final evaluation, max)" in note
    print_summary(glue)
    assert "GLUE score" in capsys.readouterr().out


def test_the_front_link_opens_a_shared_view_of_the_fronts_trials(tmp_path, capsys):
    """``Front:``: MLflow's runs table as its "Share" button stores it (an experiment tag), showing only the
    front's trials, best score first, score, size and rank per module type first (tests/test_search_links_browser.py
    opens it in Chromium)."""
    import dataclasses
    import json

    from orchestrator.reporting.console import front_view_key, front_view_link, front_view_state, search_links

    state = front_view_state(["r1", "r2"])
    assert state["searchFilter"] == "attributes.run_id IN ('r1', 'r2')"
    assert state["orderByKey"] == "metrics.`glue_score`" and state["orderByAsc"] is False
    assert state["selectedColumns"][:3] == ["metrics.`glue_score`", "metrics.`adapter_params`", "metrics.`alloc/total`"]
    assert state["selectedColumns"][3:] == [f"metrics.`alloc/{t}`" for t in ("1q", "2k", "3v", "4o", "5f1", "6f2")]
    assert state["columnOrder"][1:10] == state["selectedColumns"]
    assert len(json.dumps(front_view_state([f"{i:032x}" for i in range(300)]))) < 20_000  # MLflow's tag limit
    assert front_view_link("http://127.0.0.1:5001/", "4", front_view_key("p1")) == (
        "http://127.0.0.1:5001/#/experiments/4/runs?viewStateShareKey=increlora-front-p1&workflowType=machine_learning")
    record = _record(str(tmp_path / "s1"))
    record = dataclasses.replace(record, choices=dataclasses.replace(record.choices, tracking_uri="http://127.0.0.1:5001"),
                                 experiment_id="4", parent_run_id="p1")
    record.results.front[0]["mlflow_run_id"] = "r1"
    assert set(search_links(record)) == {"parent", "compare"}  # no shared view written: no front link
    record.results.outputs["front_view"] = front_view_key("p1")
    links = search_links(record)
    assert links["front"].endswith("viewStateShareKey=increlora-front-p1&workflowType=machine_learning")
    print_summary(record)
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines if ln.startswith(("Search:", "Front:", "Compare:"))] == ["Search:", "Front:", "Compare:"]
