"""End-to-end searches against the real components: a local Ray runtime (shared by the module),
an Optuna study on disk, an MLflow sqlite store, and real torch training of a tiny random BERT on
real GLUE rows. Nothing is mocked.

Budget: about 2-3 minutes on 2 cores (two searches of 4 and 8 trials, a resume, quick failures).
"""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
optuna = pytest.importorskip("optuna")
mlflow = pytest.importorskip("mlflow")

from increlora.run_config import build_run_config  # noqa: E402
from increlora.presets import load_preset, preset_overrides  # noqa: E402
from orchestrator import search  # noqa: E402
from orchestrator.export import main as export_main  # noqa: E402
from orchestrator.reporting.finalize import read_front_csv  # noqa: E402
from orchestrator.records.presets import EXCLUDED_KNOBS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TASK = "sst2"  # accuracy varies between trials even for a tiny model (CoLA's MCC stays 0)


@pytest.fixture(scope="module")
def ray_runtime(local_ray):
    """One local Ray runtime for the whole module (2 CPUs, no GPU)."""
    env = {"HF_HUB_OFFLINE": "1", "RAY_CHDIR_TO_TRIAL_DIR": "0", "RAY_AIR_NEW_OUTPUT": "0"}
    with local_ray(num_cpus=2, env=env):
        yield


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("searches")


def _common(tiny_model_dir: str, glue_dir: Path, workdir: Path) -> list[str]:
    return [
        "--task", TASK,
        "--model", tiny_model_dir,
        "--data-dir", str(glue_dir),
        "--train-samples", "64",
        "--eval-samples", "64",
        "--max-steps", "12",
        "--batch-size", "16",
        "--output-dir", str(workdir / "searches"),
        "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}",
        "--seed", "42",
        "--confirm", "0",  # the confirmation stage has its own tests (tests/test_confirmation.py)
    ]


def _run(args: list[str], capsys) -> tuple[int, str, str, float]:
    t0 = time.perf_counter()
    rc = search.main(args)
    out, err = capsys.readouterr()
    return rc, out, err, time.perf_counter() - t0


@pytest.fixture(scope="module")
def plain_search(ray_runtime, tiny_model_dir, glue_dir, workdir) -> dict:
    """A finished 4-trial IncreLoRA search (no scheduler)."""
    args = _common(tiny_model_dir, glue_dir, workdir) + ["--trials", "4", "--name", "plain"]
    t0 = time.perf_counter()
    rc = search.main(args)
    search_dir = workdir / "searches" / "plain"
    return {"rc": rc, "dir": search_dir, "seconds": time.perf_counter() - t0,
            "summary": json.loads((search_dir / "search.json").read_text()) if search_dir.is_dir() else {}}


def _study(summary: dict):
    return optuna.load_study(study_name=summary["study_name"], storage=summary["storage"])


def _client(summary: dict):
    return mlflow.MlflowClient(tracking_uri=summary["tracking_uri"])


def _runs(summary: dict) -> tuple[list, list]:
    """(parent runs of this search, child runs of this search)."""
    c = _client(summary)
    exp = c.get_experiment_by_name(summary["experiment_name"])
    runs = c.search_runs([exp.experiment_id], filter_string=f"tags.search = '{summary['name']}'", max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def test_four_trial_search_completes(plain_search):
    assert plain_search["rc"] == 0
    summary = plain_search["summary"]
    assert summary["status"] == "finished"
    assert summary["counts"] == {"COMPLETE": 4}
    assert summary["front"], "the front is empty"
    for name in ("pareto_front.csv", "pareto.png", "hypervolume.png", "optuna.db", "space.yaml"):
        assert (plain_search["dir"] / name).is_file(), name
    assert len(list((plain_search["dir"] / "presets").glob("*.yaml"))) == 3


def test_mlflow_holds_one_parent_and_four_finished_children(plain_search):
    summary = plain_search["summary"]
    parents, children = _runs(summary)
    assert len(parents) == 1 and parents[0].info.run_id == summary["parent_run_id"]
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert len(children) == 4
    c = _client(summary)
    modules = 2 * 6  # tiny BERT: 2 layers x q, k, v, o, f1, f2
    for run in children:
        assert run.info.status == "FINISHED", run.info.run_name
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert re.fullmatch(rf"t\d{{3}}-r\d+\.\d\d-{TASK}-increlora", run.info.run_name), run.info.run_name
        rank_metrics = [k for k in run.data.metrics if k.startswith("rank/L")]
        assert len(rank_metrics) == modules
        assert {"glue_score", "final_glue_score", "adapter_params", "peak_trainable_params", "head_params",
                "wall_time_s"} <= set(run.data.metrics)
        history = c.get_metric_history(run.info.run_id, "glue_score")
        assert len(history) == summary["max_evaluations"] and len({m.step for m in history}) == len(history)
        artifacts = {a.path for a in c.list_artifacts(run.info.run_id)}
        assert {"allocation.json", "allocation_heatmap.png", "result.json"} <= artifacts
        rounds = int(run.data.metrics["growth_rounds"])
        total = c.get_metric_history(run.info.run_id, "alloc/total")  # the growth as a chart: one point a round
        steps = sorted({m.step for m in total})
        assert len(steps) >= min(rounds, 1) + 1 and (steps[0] == 0 or rounds == 0)  # no growth: the final point only
        values = [max(m.value for m in total if m.step == s) for s in steps]
        assert values == sorted(values) and values[0] == modules and values[-1] == run.data.metrics["alloc/total"]
        assert float(run.data.tags["heatmap_vmax"]) == summary["heatmap_vmax"]
        assert "target_rank" in run.data.params and "resolved.incre_interval" in run.data.params
        assert "incre_interval" not in run.data.params  # one value per knob: the searched fraction, and the resolved steps
        assert "| layer |" in run.data.tags["mlflow.note.content"]  # the allocation table in the description
    # the parent's record of the search
    assert {"command", "sampler", "seed", "model", "train_size", "package_version", "space"} <= set(parent.data.params)
    m = parent.data.metrics  # the search's summary, never named like a trial's metric
    assert {"search/hypervolume", "search/hypervolume_pct", "search/front_size", "search/pick_best_glue_score",
            "search/trials_complete"} <= set(m) and 0 <= m["search/hypervolume_pct"] <= 100
    assert not {"best_glue_score", "hypervolume", "front_size"} & set(m)
    assert summary["name"] in parent.data.tags["mlflow.note.content"]
    note = parent.data.tags["mlflow.note.content"]  # one click to the search and to the front's trials side by side
    assert f"#/experiments/{summary['experiment_id']}/runs/{parent.info.run_id}?workflowType=machine_learning" in note
    front_ids = [r["mlflow_run_id"] for r in summary["front"] if r.get("mlflow_run_id")]
    assert front_ids and "#/compare-runs?runs=" in note and all(i in note for i in front_ids)
    artifacts = {a.path for a in c.list_artifacts(parent.info.run_id)}
    assert {"pareto_front.csv", "pareto.png", "presets", "search.json"} <= artifacts
    assert len(c.list_artifacts(parent.info.run_id, "presets")) == 3


def test_pareto_csv_equals_optunas_front(plain_search):
    summary = plain_search["summary"]
    rows = read_front_csv(plain_search["dir"] / "pareto_front.csv")
    front = _study(summary).best_trials
    assert sorted(int(r["trial"]) for r in rows) == sorted(t.number for t in front)
    values = {t.number: t.values for t in front}
    for r in rows:
        assert float(r["glue_score"]) == pytest.approx(values[int(r["trial"])][0])
        assert int(r["adapter_params"]) == int(values[int(r["trial"])][1])


def test_presets_reproduce_the_trial_configuration(plain_search):
    summary = plain_search["summary"]
    c = _client(summary)
    presets = sorted((plain_search["dir"] / "presets").glob("*.yaml"))
    assert {p.stem.split("-")[-1] for p in presets} == {"best", "smallest", "knee"}
    for path in presets:
        preset = load_preset(path)
        assert preset.method == "increlora" and preset.task == TASK
        assert not set(preset.config) & EXCLUDED_KNOBS  # no trial size, no runtime knobs: they come from the task
        cfg = build_run_config({**preset_overrides(preset), "task": preset.task}).flat()
        run = c.get_run(preset.provenance["mlflow_run_id"])
        assert run.data.params["trial_number"] == str(preset.provenance["trial"])
        for knob in preset.config:  # every knob the preset carries is the trial's value
            value = cfg[knob]
            expected = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
            assert run.data.params[knob] == expected, (path.name, knob, run.data.params[knob], expected)


def test_the_end_says_whether_the_front_beat_chance(plain_search, tmp_path, capsys):
    """search.json, the presets and the closing summary agree on whether the best trial beat the
    majority class by more than a point; both verdicts are forced on a copy of the search by moving
    its chance line (finalize re-reads the real Optuna study)."""
    import dataclasses
    import shutil

    from orchestrator.reporting.console import print_summary
    from orchestrator.reporting.finalize import finalize
    from orchestrator.records.record import SearchRecord

    summary = plain_search["summary"]
    best = max(float(r["glue_score"]) for r in summary["front"])
    assert 40.0 < summary["chance_score"] < 60.0  # SST-2's majority class on the dev rows
    assert summary["above_chance"] == (best > summary["chance_score"] + 1.0)
    for verdict, chance in ((False, best), (True, best - 5.0)):
        copy = tmp_path / f"copy-{verdict}"
        shutil.copytree(plain_search["dir"], copy)
        record = SearchRecord.load(copy)
        record = dataclasses.replace(record, search_dir=str(copy), chance_score=chance)
        assert finalize(record, mlflow=False).above_chance is verdict
        assert json.loads((copy / "search.json").read_text())["above_chance"] is verdict
        for path in (copy / "presets").glob("*.yaml"):
            prov = load_preset(path).provenance
            assert prov["above_chance"] is (float(prov["score"]) > chance + 1.0)
        capsys.readouterr()
        print_summary(record)
        out = capsys.readouterr().out
        assert ("warning: not above chance" in out) is (not verdict), out
        if not verdict:
            assert f"not above the majority-class score {chance:.2f}" in " ".join(out.split())


def test_export_cli_writes_the_presets(plain_search, tmp_path):
    rc = export_main(["--search", str(plain_search["dir"]), "--out", str(tmp_path / "out")])
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("*.yaml")) == [f"{TASK}-best.yaml", f"{TASK}-knee.yaml", f"{TASK}-smallest.yaml"]
    for label in ("best", "knee", "smallest"):  # each preset's trained adapter next to it, loadable with plain peft
        adapter = tmp_path / "out" / f"{TASK}-{label}-adapter"
        trial = load_preset(tmp_path / "out" / f"{TASK}-{label}.yaml").provenance["trial"]
        assert (adapter / "adapter_config.json").is_file() and (adapter / "README.md").is_file()
        assert (adapter / "adapter_model.safetensors").read_bytes() == (
            plain_search["dir"] / "trials" / f"t{trial:03d}" / "adapter" / "adapter_model.safetensors").read_bytes()
    assert export_main(["--search", "no-such-search", "--out", str(tmp_path / "x")]) == 2


def test_resume_of_a_finished_search_runs_nothing_new(plain_search, tiny_model_dir, glue_dir, workdir, capsys):
    summary = plain_search["summary"]
    before = len(_study(summary).trials)
    _, children_before = _runs(summary)
    rc, out, err, _ = _run(["--resume", "--name", "plain", "--output-dir", str(workdir / "searches")], capsys)
    assert rc == 0, err
    assert len(_study(summary).trials) == before == 4
    parents, children = _runs(summary)
    assert len(children) == len(children_before) == 4
    assert parents[0].info.status == "FINISHED"
    assert json.loads((plain_search["dir"] / "search.json").read_text())["status"] == "finished"


def test_asha_search_prunes_and_keeps_pruned_trials_off_the_front(plain_search, tiny_model_dir, glue_dir, workdir, capsys):
    preset_path = plain_search["dir"] / "presets" / f"{TASK}-knee.yaml"
    args = _common(tiny_model_dir, glue_dir, workdir) + [
        "--trials", "8", "--name", "asha", "--scheduler", "asha", "--max-concurrent", "1",
        "--learning-rate", "0.02", "--search-extra", "learning_rate", "--preset", str(preset_path),
        "--holdout-samples", "32",
    ]
    rc, out, err, _ = _run(args, capsys)
    assert rc == 0, err
    summary = json.loads((workdir / "searches" / "asha" / "search.json").read_text())
    # scored on 32 held-out training rows, and its presets say so (the plain search's say dev)
    assert summary["base"]["holdout_samples"] == 32 and summary["eval_size"] == 32
    for path in (workdir / "searches" / "asha" / "presets").glob("*.yaml"):
        assert load_preset(path).provenance["evaluated_on"] == "holdout" and load_preset(path).provenance["eval_rows"] == 32
    assert load_preset(preset_path).provenance["evaluated_on"] == "dev"
    assert "scored on 32 held-out training rows" in out + err
    study = _study(summary)
    # the preset was evaluated first, with its own knobs
    first = study.trials[0]
    preset = load_preset(preset_path)
    assert first.user_attrs["preset"] == str(preset_path.resolve())
    for knob in ("target_rank", "init_warmup_frac", "incre_interval_frac", "beta1", "beta2", "learning_rate"):
        assert first.user_attrs["config"][knob] == preset.config[knob], knob
    states = {t.number: t.state.name for t in study.trials}
    pruned = {n for n, s in states.items() if s == "PRUNED"}
    assert len(states) == 8 and pruned, f"ASHA stopped no trial: {states}"
    front = {t.number for t in study.best_trials}
    assert front and not front & pruned
    rows = read_front_csv(workdir / "searches" / "asha" / "pareto_front.csv")
    assert {int(r["trial"]) for r in rows} == front
    parents, children = _runs(summary)
    assert len(children) == 8
    statuses = {int(r.data.params["trial_number"]): r.info.status for r in children}
    assert "RUNNING" not in statuses.values() and parents[0].info.status == "FINISHED"
    assert {n for n, s in statuses.items() if s == "KILLED"} == pruned
    for run in children:  # stopped trials keep their last allocation, too
        assert any(k.startswith("rank/L") for k in run.data.metrics)
    assert "PRUNED" in out


def test_gpu_request_on_a_machine_without_gpu_fails_at_once(ray_runtime, tiny_model_dir, glue_dir, workdir, capsys):
    assert ray.cluster_resources().get("GPU", 0) == 0
    args = _common(tiny_model_dir, glue_dir, workdir) + ["--trials", "2", "--name", "gpu", "--gpus-per-trial", "1"]
    rc, out, err, seconds = _run(args, capsys)
    assert rc == 2 and seconds < 60
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--gpus-per-trial" in lines[0] and lines[0].startswith("error:")
    assert not (workdir / "searches" / "gpu").exists()


def test_wrong_task_exits_2_with_one_line_and_no_folder(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.search", "--task", "colaa", "--output-dir", str(tmp_path / "s"),
         "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "colaa" in lines[0] and "--task" in lines[0]
    assert not (tmp_path / "s").exists() and not (tmp_path / "mlflow.db").exists()


def test_missing_data_exits_2_before_creating_anything(ray_runtime, tiny_model_dir, workdir, tmp_path, capsys):
    empty = tmp_path / "glue"
    (empty / "SST-2").mkdir(parents=True)
    args = _common(tiny_model_dir, empty, workdir) + ["--trials", "2", "--name", "nodata"]
    rc, out, err, _ = _run(args, capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "SST-2" in err
    assert not (workdir / "searches" / "nodata").exists()


def test_unreachable_tracking_server_exits_2(tmp_path, capsys):
    rc, out, err, seconds = _run(["--task", TASK, "--output-dir", str(tmp_path / "s"),
                                  "--tracking-uri", "http://127.0.0.1:9"], capsys)
    assert rc == 2 and seconds < 30 and "unreachable" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_a_dora_search_is_searched_and_tracked_like_the_others(ray_runtime, tiny_model_dir, glue_dir, workdir, capsys):
    """DoRA (one folder in increlora/methods, one registration line): a real 2-trial search, its trials in
    MLflow under the parent run with their method and rank, its front and a preset."""
    rc, out, err, _ = _run(_common(tiny_model_dir, glue_dir, workdir) + ["--method", "dora", "--trials", "2", "--name", "dora"],
                           capsys)
    assert rc == 0, err[-2000:]
    summary = json.loads((workdir / "searches" / "dora" / "search.json").read_text())
    assert summary["method"] == "dora" and summary["status"] == "finished"
    trials = [t for t in optuna.load_study(study_name=summary["study_name"], storage=summary["storage"]).trials
              if t.state.name == "COMPLETE"]
    assert len(trials) == 2 and all(1 <= t.params["r"] <= 16 for t in trials)
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_ids=[summary["experiment_id"]],
                              filter_string=f"tags.mlflow.parentRunId = '{summary['parent_run_id']}'", output_format="list")
    assert len(runs) == 2 and all(r.data.params.get("method") == "dora" for r in runs)
    from increlora.budget import adapted_shapes, lora_params

    shapes = adapted_shapes(tiny_model_dir)
    for t in trials:  # the cost objective: LoRA's A and B plus DoRA's magnitude, per module
        assert t.values[1] == lora_params(shapes, t.params["r"]) + sum(d_out for _, d_out in shapes.values())
    assert summary["outputs"]["presets"]


def test_usage_errors_are_one_line(capsys):
    rc, out, err, _ = _run(["--method", "vera"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--method" in err
    rc, out, err, _ = _run(["--task", TASK, "--preset", "/no/such/preset.yaml"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "preset file not found" in err


def test_help_lists_every_flag_with_its_default():
    parser = search.build_parser()  # orchestrator.running.settings.build_parser
    text = parser.format_help()
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.option_strings[-1] in text
            assert "default" in (action.help or ""), action.option_strings


def test_budget_params_range_matches_the_trainers_count(tiny_model_dir, glue_dir):
    """``--budget params`` derives its range from the model; average rank 1 must cost what the trainer counts."""
    from increlora.backbone import load_tokenizer
    from increlora.data import prepare_data
    from increlora.trainer import train

    from increlora.budget import adapted_shapes, uniform_rank_cost

    cost = uniform_rank_cost(adapted_shapes(tiny_model_dir))
    assert cost == 2 * (4 * (2 * 32 + 1) + 2 * (32 + 64 + 1))
    data = prepare_data(TASK, load_tokenizer(tiny_model_dir), data_dir=glue_dir, train_samples=16, eval_samples=16,
                        max_length=32, seed=0)
    cfg = build_run_config({"task": TASK, "model": tiny_model_dir, "target_rank": 1.0, "max_steps": 1, "batch_size": 8,
                            "progress": False, "device": "cpu"})
    assert train(cfg, data).adapter_params == cost
