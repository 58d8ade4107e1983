"""The evidence benchmarks (benchmarks/*.py) run end to end on the tiny model and real GLUE rows.

Their full runs take hours on the packaged encoder; here each runs its ``--smoke`` size on a tiny
random BERT so that a broken benchmark fails CI, and the budget arithmetic is checked by hand.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def load(name: str):
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


def run(script: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(BENCH / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


# ----------------------------------------------------------------------------------------------
# Budget arithmetic
# ----------------------------------------------------------------------------------------------


def test_equal_parameter_budgets_follow_the_module_shapes():
    fid = load("fidelity")
    shapes = {"q": (384, 384), "f1": (384, 1536)}
    assert fid.lora_params(shapes, 2) == 2 * (768 + 1920)
    assert fid.svd_cost_per_rank(shapes) == 769 + 1921


def test_paper_schedule_is_scaled_to_fractions_of_the_papers_run():
    fid = load("fidelity")
    from increlora.task_defaults import task_defaults

    p = task_defaults("cola", "increlora", "paper", 8.0)
    total = math.ceil(8551 / 32) * p["epochs"]
    knobs, info = fid.paper_knobs("cola", 8, "method")
    assert info["paper_total_steps"] == total
    assert knobs["init_warmup_frac"] == pytest.approx(p["init_warmup"] / total)
    assert knobs["incre_interval_frac"] == pytest.approx(p["incre_interval"] / total)
    assert knobs["beta1"] == knobs["beta2"] == 0.85
    assert "learning_rate" not in knobs
    full, _ = fid.paper_knobs("cola", 8, "full")
    assert full["learning_rate"] == p["learning_rate"]


def test_search_efficiency_reference_params_bound_every_adapter_of_the_space():
    se = load("search_efficiency")
    shapes = {"a": (10, 10), "b": (10, 40)}
    summary = {"space": {"params": {"target_rank": {"high": 3.0}}}, "base": {"init_rank": 1}}
    value, _ = se.space_max_params(summary, shapes)
    # total rank 6 over 2 modules: rank 1 each (21 + 51) plus 4 more ranks in the costlier module.
    assert value == 21 + 51 + 4 * 51
    curve = se.hv_curve([None, (60.0, 50.0), (55.0, 80.0), (70.0, 40.0)], (50.0, 100.0))
    assert curve[0] == 0.0 and curve == sorted(curve)
    assert curve[-1] == pytest.approx((70 - 50) * (100 - 40))


# ----------------------------------------------------------------------------------------------
# The scripts, end to end
# ----------------------------------------------------------------------------------------------


def test_fidelity_smoke_runs_every_method_at_equal_parameters_and_resumes(tiny_model_dir, glue_dir, tmp_path):
    out = tmp_path / "fid"
    args = ["--smoke", "--model", tiny_model_dir, "--data-dir", str(glue_dir), "--tasks", "sst2",
            "--results-dir", str(out), "--threads", "1"]
    first = run("fidelity.py", *args)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    records = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    methods = {"lora", "adalora", "increlora", "increlora-paper", "increlora-preset"}
    assert {(r["method"], r["budget"]) for r in records} == {(m, b) for m in methods for b in (2, 8)}
    for r in records:
        assert "error" not in r
        assert r["eval_size"] == 32 and r["steps"] == 4
        if r["method"] == "lora":
            assert r["adapter_params"] == r["target_params"]
        if r["method"].startswith("increlora"):
            assert r["adapter_params"] <= r["target_params"]
    preset = next(r for r in records if r["method"] == "increlora-preset")
    assert preset["knobs"]["beta1"] == pytest.approx(0.6081055656757394)  # from benchmarks/presets/sst2-32-best.yaml
    report = (tmp_path / "fid.md").read_text()
    for m in methods:
        assert f"| r2 | {m} |" in report and f"| r8 | {m} |" in report
    again = run("fidelity.py", *args)
    assert again.returncode == 0
    assert "10 cached" in again.stdout and "0 to run" in again.stdout


def test_fidelity_rejects_a_missing_preset_file_with_one_line(tmp_path):
    res = run("fidelity.py", "--preset-file", str(tmp_path / "nope.yaml"), "--results-dir", str(tmp_path / "f"))
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "does not exist" in res.stderr
    assert not list((tmp_path / "f").glob("*.json"))


def test_overhead_smoke_accounts_for_the_whole_wall_time(tiny_model_dir, glue_dir, tmp_path):
    out = tmp_path / "oh"
    res = run("overhead.py", "--smoke", "--model", tiny_model_dir, "--data-dir", str(glue_dir),
              "--output-dir", str(out), "--name", "smoke")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    report = (tmp_path / "oh.md").read_text()
    assert "Overhead = (W - U/c) / W" in report
    wall = json.loads((out / "smoke" / "overhead_launch.json").read_text())["wall_s"]
    total = next(line for line in report.splitlines() if line.startswith("| **total"))
    accounted = float(total.split("components sum to ")[1].split(")")[0])
    assert accounted == pytest.approx(wall, rel=0.02)
    trials = [line for line in report.splitlines() if line.startswith("| t0")]
    assert len(trials) == 2


def test_search_efficiency_smoke_reports_hypervolume_per_sampler(tiny_model_dir, glue_dir, tmp_path):
    out = tmp_path / "se"
    plot = tmp_path / "hv.png"
    res = run("search_efficiency.py", "--smoke", "--model", tiny_model_dir, "--data-dir", str(glue_dir),
              "--samplers", "random,tpe", "--output-dir", str(out), "--plot", str(plot))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    report = (tmp_path / "se.md").read_text()
    for sampler in ("random", "tpe"):
        assert (out / f"sst2-{sampler}-s0" / "search.json").is_file()
        row = next(line for line in report.splitlines() if line.startswith(f"| {sampler} |"))
        assert row.rstrip().endswith("| 1/1 |")
    assert plot.stat().st_size > 5000
