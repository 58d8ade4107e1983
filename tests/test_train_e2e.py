"""End-to-end: each method trains a few steps with the packaged MiniLM on real CoLA rows; the CLI."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time

import pytest

from increlora.run_config import build_run_config
from increlora.trainer import train

pytestmark = pytest.mark.slow

FAST = {
    "task": "cola",
    "train_samples": 64,
    "eval_samples": 64,
    "max_steps": 6,
    "batch_size": 16,
    "eval_steps": 3,
    "max_length": 32,
    "progress": False,
    "threads": 2,
}


@pytest.mark.parametrize(
    "method, knobs",
    [
        ("increlora", {"init_warmup": 0, "incre_interval": 1, "top_h": 12, "target_rank": 2.0}),
        ("lora", {"r": 2}),
        ("adalora", {"init_r": 3, "target_r": 2.0}),
        ("dora", {"r": 2}),
    ],
)
def test_each_method_runs_on_real_cola(method, knobs, glue_dir, tmp_path):
    cfg = build_run_config({**FAST, **knobs, "method": method, "data_dir": str(glue_dir), "output_dir": str(tmp_path)})
    events = []
    result = train(cfg, on_evaluate=events.append)
    assert result.steps == 6 and [e.step for e in events] == [3, 6] and events[-1].is_final
    assert math.isfinite(result.glue_score) and -100 <= result.glue_score <= 100
    assert result.train_size == 64 and result.eval_size == 64
    assert len(result.allocation) == 36  # 6 layers x 6 module types
    assert sum(result.allocation.values()) == 72  # average rank 2: the budget, exactly
    assert result.head_params > 0 and result.peak_trainable_params >= result.adapter_params
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["allocation"] == result.allocation and saved["method"] == method
    assert (tmp_path / "adapter" / "adapter_config.json").exists()
    if method == "increlora":
        assert [e["step"] for e in result.growth_events][:3] == [1, 1, 1]
        assert result.schedule["growth_end_step"] == 3 and result.schedule["cleaned_up"]
        assert result.peak_trainable_params > result.adapter_params + result.head_params  # reserves counted


def _cli(*args: str, env_extra: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "increlora.train", *args], capture_output=True, text=True, env=env, timeout=timeout)


def test_cli_trains_and_writes_result(glue_dir, tmp_path):
    out = tmp_path / "run"
    proc = _cli(
        "--task", "CoLA", "--data-dir", str(glue_dir), "--train-samples", "48", "--eval-samples", "48",
        "--max-steps", "3", "--batch-size", "16", "--max-length", "32", "--quiet", "--output-dir", str(out),
        "--init-warmup", "0", "--incre-interval", "1", "--top-h", "12",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "GLUE score" in proc.stdout
    result = json.loads((out / "result.json").read_text())
    assert result["task"] == "cola" and result["steps"] == 3


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--task", "colaa"], "unknown GLUE task"),
        (["--task", "qnli"], "--data-dir"),
        (["--task", "cola", "--top-h", "0"], "top_h"),
    ],
)
def test_cli_bad_input_is_one_line_error(args, needle, glue_dir, tmp_path):
    out = tmp_path / "never"
    t0 = time.perf_counter()
    proc = _cli(*args, "--data-dir", str(glue_dir), "--output-dir", str(out), "--max-steps", "1")
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], proc.stderr
    assert not out.exists()
    assert time.perf_counter() - t0 < 60


def test_cli_preset_applies_and_flags_override(glue_dir, tmp_path):
    from increlora.presets import Preset, save_preset

    preset = tmp_path / "p.yaml"
    save_preset(Preset(preset_version=1, method="lora", task="rte", config={"r": 3, "learning_rate": 0.004},
                       provenance={"above_chance": False, "warning": "scored 0.00, not above the majority-class score"}),
                preset)
    out = tmp_path / "run"
    proc = _cli(
        "--task", "cola", "--preset", str(preset), "--r", "1", "--data-dir", str(glue_dir), "--train-samples", "32",
        "--eval-samples", "32", "--max-steps", "2", "--batch-size", "16", "--max-length", "32", "--quiet",
        "--output-dir", str(out), "--no-save-adapter",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "result.json").read_text())
    assert result["method"] == "lora" and result["config"]["r"] == 1 and result["config"]["learning_rate"] == 0.004
    assert not (out / "adapter").exists()
    assert f"warning: preset {preset}: scored 0.00, not above the majority-class score" in proc.stderr  # ran, and said so


def test_a_preset_found_on_sst2_applied_to_rte_takes_rtes_trial_size(tmp_path):
    """The preset brings the method's knobs; the trial size comes from the target task's defaults."""
    from increlora.presets import Preset, save_preset
    from increlora.task_defaults import task_defaults
    from increlora.train import resolve_overrides

    knobs = {"target_rank": 1.5, "init_warmup_frac": 0.1, "incre_interval_frac": 0.02, "beta1": 0.7, "beta2": 0.8,
             "learning_rate": 0.002}
    old_style = {**knobs, "train_samples": 256, "eval_samples": 200, "max_steps": 24, "max_length": 64, "epochs": 2.0,
                 "seed": 7, "eval_steps": 6}  # a preset written before presets left the trial size out
    for config in (knobs, old_style):
        path = save_preset(Preset(preset_version=1, method="increlora", task="sst2", config=config), tmp_path / f"p{len(config)}.yaml")
        merged = resolve_overrides({"task": "rte", "preset": str(path)}, cuda_available=False)
        cfg = build_run_config(merged).flat()
        rte = task_defaults("rte", "increlora", "cpu")
        for knob in ("train_samples", "epochs", "max_length"):
            assert cfg[knob] == rte[knob], knob  # 4000 rows, 3 epochs, max length 128
        assert cfg["max_steps"] is None and cfg["eval_samples"] is None and cfg["seed"] == 42
        for knob, value in knobs.items():
            assert cfg[knob] == value, knob


def test_help_lists_every_knob():
    from increlora.config import TrainConfig, field_names
    from increlora.registry import REGISTRY

    proc = subprocess.run([sys.executable, "-m", "increlora.train", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for cls in [TrainConfig, *(spec.config_cls for spec in REGISTRY.values())]:
        for name in field_names(cls):
            assert "--" + name.replace("_", "-") in proc.stdout, name


def test_training_is_seeded_and_repeatable(tiny_model_dir, glue_dir):
    knobs = {**FAST, "model": tiny_model_dir, "data_dir": str(glue_dir), "init_warmup": 0, "incre_interval": 1, "top_h": 6}
    first = train(build_run_config(knobs))
    second = train(build_run_config(knobs))
    assert first.history == second.history
    assert first.allocation == second.allocation and first.growth_events == second.growth_events
    other = train(build_run_config({**knobs, "seed": 7}))
    assert other.history[-1]["train_loss"] != first.history[-1]["train_loss"]


def test_a_diverging_run_stops_within_a_few_steps(tiny_model_dir, glue_dir, tmp_path):
    from increlora.trainer import NONFINITE_LOSS_STEPS, TrainingDiverged

    knobs = {**FAST, "model": tiny_model_dir, "data_dir": str(glue_dir), "max_steps": 50, "learning_rate": 1e6,
             "method": "increlora", "output_dir": str(tmp_path / "out")}
    with pytest.raises(TrainingDiverged, match=r"the loss was (nan|inf)") as info:
        train(build_run_config(knobs))
    last = int(re.search(r"\(steps \d+-(\d+)", str(info.value)).group(1))
    assert last <= NONFINITE_LOSS_STEPS + 2
    assert not (tmp_path / "out" / "result.json").exists()
    proc = subprocess.run([sys.executable, "-m", "increlora.train", "--task", "cola", "--model", tiny_model_dir,
                           "--data-dir", str(glue_dir), "--train-samples", "64", "--max-steps", "50",
                           "--learning-rate", "1e6", "--quiet"], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "lower the learning rate" in proc.stderr


def test_holdout_rows_come_from_the_training_file_outside_the_training_subset(tiny_model_dir, glue_dir):
    from increlora.backbone import load_tokenizer
    from increlora.data import GlueError, holdout_labels, prepare_data

    tok = load_tokenizer(tiny_model_dir)
    with_dev = prepare_data("rte", tok, data_dir=glue_dir, train_samples=300, max_length=512, seed=3)
    held = prepare_data("rte", tok, data_dir=glue_dir, train_samples=300, max_length=512, seed=3, holdout_samples=200)
    assert list(held.evals) == ["holdout"] and len(held.evals["holdout"]) == 200
    assert held.train.input_ids == with_dev.train.input_ids  # the same training rows either way
    train_rows = {tuple(r) for r in held.train.input_ids}
    dev_rows = {tuple(r) for r in with_dev.evals["validation"].input_ids}
    hold_rows = [tuple(r) for r in held.evals["holdout"].input_ids]
    assert len(train_rows & set(hold_rows)) <= 2  # RTE's train.tsv holds two rows twice
    assert not dev_rows & set(hold_rows) and len(set(hold_rows)) == 200
    assert abs(held.evals["holdout"].labels.mean() - 0.5) < 0.05  # stratified (RTE is balanced)
    # the same held-out rows' labels without tokenising (the fidelity report's held-out majority)
    labels = holdout_labels("rte", glue_dir, train_samples=300, holdout_samples=200, seed=3)
    assert list(labels) == list(held.evals["holdout"].labels)
    assert list(holdout_labels("rte", glue_dir, train_samples=300, holdout_samples=200, seed=4)) != list(labels)
    with pytest.raises(GlueError, match="holdout-samples"):
        prepare_data("rte", tok, data_dir=glue_dir, train_samples=2400, max_length=64, holdout_samples=200)


def test_cpu_profile_learning_rate_is_the_methods_measured_one():
    """LoRA gets 3e-4 on the cpu profile (chosen on held-out rows), AdaLoRA 3e-3, IncreLoRA (official mode, the
    default) its per-task choice (CoLA, MRPC 5e-3; SST-2 1e-2; 5e-3 elsewhere); the paper profile keeps the
    official scripts' rate for every method; resolve_overrides applies it."""
    from increlora.methods.lora.defaults import LORA_CPU_LEARNING_RATE
    from increlora.task_defaults import task_defaults
    from increlora.train import resolve_overrides

    assert LORA_CPU_LEARNING_RATE == 3e-4
    for task in ("cola", "sst2", "mrpc", "rte"):
        assert task_defaults(task, "lora", "cpu")["learning_rate"] == 3e-4
        assert task_defaults(task, "increlora", "cpu")["learning_rate"] == (1e-2 if task == "sst2" else 5e-3)
        assert task_defaults(task, "adalora", "cpu")["learning_rate"] == 3e-3
        assert task_defaults(task, "lora", "paper")["learning_rate"] == task_defaults(task, "increlora", "paper")["learning_rate"]
    cfg = build_run_config(resolve_overrides({"task": "cola", "method": "lora"}, cuda_available=False)).flat()
    assert cfg["learning_rate"] == 3e-4


def test_cli_keeps_its_result_by_default_and_warns_when_the_budget_cannot_be_reached(tiny_model_dir, glue_dir, tmp_path):
    """Without --output-dir the CLI saves under runs/<run name>; a schedule that cannot reach the budget in
    the run (an SST-2 preset's 1000-step interval on a 7-step run) says so before training and in the summary."""
    proc = subprocess.run(
        [sys.executable, "-m", "increlora.train", "--task", "mrpc", "--model", tiny_model_dir, "--data-dir", str(glue_dir),
         "--train-samples", "200", "--eval-samples", "32", "--epochs", "1", "--max-length", "32", "--quiet",
         "--init-warmup", "1000", "--incre-interval", "1000", "--target-rank", "2"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("mrpc-increlora-r2.00-s42-")
    assert (runs[0] / "result.json").is_file() and (runs[0] / "adapter" / "adapter_config.json").is_file()
    assert "warning: the budget cannot be reached: no growth round fits in the run's 7 steps" in proc.stderr
    assert "warning: growth did not reach the budget: total rank 12" in proc.stdout  # 12 modules of the tiny BERT at rank 1
    assert f"wrote runs/{runs[0].name}/result.json" in proc.stdout
