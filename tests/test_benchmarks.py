"""The evidence benchmarks (benchmarks/*.py) run end to end on the tiny model and real GLUE rows.

Their full runs take hours on the packaged encoder; here each runs its ``--smoke`` size on a tiny
random BERT so that a broken benchmark fails CI, and the budget arithmetic is checked by hand.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
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
        sys.modules[spec.name] = module  # dataclasses look their module up there
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
    from increlora.budget import lora_params, uniform_rank_cost

    runs = load("_runs")
    shapes = {"q": (384, 384), "f1": (384, 1536)}
    assert lora_params(shapes, 2) == 2 * (768 + 1920)
    assert uniform_rank_cost(shapes) == 769 + 1921
    knobs, info = runs.method_knobs("adalora", "cola", 2, shapes)
    assert knobs["target_r"] == pytest.approx(2 * (768 + 1920) / (769 + 1921)) and info["target_params"] == 2 * (768 + 1920)
    knobs, _ = runs.method_knobs("increlora", "cola", 2, shapes)
    assert knobs["budget_params"] == 2 * (768 + 1920)


def test_paper_schedule_is_scaled_to_fractions_of_the_papers_run():
    runs = load("_runs")
    from increlora.task_defaults import task_defaults

    p = task_defaults("cola", "increlora", "paper", 8.0)
    total = math.ceil(8551 / 32) * p["epochs"]
    knobs, info = runs.paper_knobs("cola", 8)
    assert info["paper_total_steps"] == total
    assert knobs["init_warmup_frac"] == pytest.approx(p["init_warmup"] / total)
    assert knobs["incre_interval_frac"] == pytest.approx(p["incre_interval"] / total)
    assert knobs["beta1"] == knobs["beta2"] == 0.85 and knobs["top_h"] == p["top_h"]
    assert "learning_rate" not in knobs


def test_sizes_parse_and_selection_keeps_rows_out():
    runs, fid = load("_runs"), load("fidelity")
    size = runs.Size.parse("4000x3/b16/l96")
    assert (size.train_samples, size.epochs, size.batch_size, size.max_length) == (4000, 3.0, 16, 96)
    assert runs.Size.parse(size.text()) == size
    assert runs.Size.parse("alls400") == runs.Size(None, 3.0, 400)
    sel = fid.selection_size(runs.Size.parse("allx3"), 2490, 400)
    assert sel.train_samples == 2090 and sel.epochs == 3.0
    assert fid.selection_size(runs.Size.parse("1000x3"), 67349, 400).train_samples == 1000


def test_paired_bootstrap_interval_and_verdicts():
    fid = load("fidelity")
    mean, lo, hi = fid.paired_ci([1.0, 2.0, 3.0, 4.0, 5.0], [0.0, 1.0, 2.0, 3.0, 4.0])
    assert (mean, lo, hi) == (1.0, 1.0, 1.0)  # the same difference for every seed
    mean, lo, hi = fid.paired_ci([3.0, -1.0, 2.0, 0.0, 1.0], [0.0] * 5)
    assert mean == 1.0 and lo < 0 < hi and lo >= -1.0 and hi <= 3.0
    assert fid.verdict_of("A", "B", 1.0, [(0.5, 1.5)]).startswith("A beats B")
    assert fid.verdict_of("A", "B", -1.0, [(-1.5, -0.5)]).startswith("B beats A")
    assert fid.verdict_of("A", "B", 0.2, [(-0.5, 0.9)]).startswith("no difference shown")
    # a comparison still missing seeds gets no verdict, whatever its intervals say
    assert fid.verdict_of("A", "B", 1.0, [(0.5, 1.5)], paired=(3, 5)) == "A vs B: 3 of 5 seeds paired, no verdict yet"
    assert fid.verdict_of("A", "B", 1.0, [(0.5, 1.5)], paired=(5, 5)).startswith("A beats B")
    # the t interval is wider with few seeds: a winner only when both intervals exclude zero
    a, b = [1.0, 1.2, 0.1, 0.9, 1.1], [0.0] * 5
    t_lo, t_hi = fid.paired_t_ci(a, b)
    _, lo, hi = fid.paired_ci(a, b)
    assert t_lo < lo and t_hi > hi and t_lo > 0
    assert fid.verdict_of("A", "B", 0.86, [(lo, hi), (t_lo, t_hi)]).startswith("A beats B")
    assert fid.verdict_of("A", "B", 0.5, [(0.1, 0.9), (-0.2, 1.2)]).startswith("no difference shown")
    row, mean, intervals = fid.difference_row(2, "increlora − lora", (a, b))
    assert row[0] == "r2" and "t [" in row[2] and "(5 pairs)" in row[2] and len(intervals) == 2


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


def test_search_efficiency_goal_is_checked_per_seed_and_only_on_complete_pairs():
    se = load("search_efficiency")
    up = [float(i) for i in range(1, 5)]  # HV % after 1..4 trials
    curves = {("tpe", 0): [2.0, 3.0, 3.0, 3.0], ("random", 0): up,   # tpe@2 = 3 < random@4 = 4
              ("tpe", 1): [4.0, 5.0, 5.0, 5.0], ("random", 1): up,   # tpe@2 = 5 >= 4
              ("tpe", 2): [9.0] * 4}                                  # random s2 missing: no pair
    header, rows, verdict = se.goal_check(curves, [0, 1, 2], trials=4)
    assert header[1:3] == ["tpe HV % after 2", "random HV % after 4"]
    assert rows == [["s0", "3.00", "4.00", "-1.00", "no"], ["s1", "5.00", "4.00", "+1.00", "yes"]]
    assert "met on 1 of 2 seed(s)" in verdict and "median +0.00 [-1.00, +1.00]" in verdict
    assert se.goal_check({("tpe", 0): up}, [0], trials=4)[1:] == ([], "")
    assert se.paired_vs(curves, ["tpe", "random"], [0, 1, 2], at=4) == [["tpe − random", "-1.00", "+1.00", "–"]]
    assert se.paired_vs(curves, ["tpe", "random"], [0], at=1, what=", first") == [["tpe − random, first", "+1.00"]]


def test_search_efficiency_confirmed_front_hypervolume_and_largest_knob_come_from_search_json():
    se = load("search_efficiency")
    summary = {"confirmed": True, "front": [{"glue_score": 70.0, "adapter_params": 40.0}],
               "importance": {"score": {"beta1": 0.04, "learning_rate": 0.936}}}
    # one front point (70, 40) under the reference (50, 100): area 20 x 60 = 1200 of a 2400 box
    assert se.confirmed_hv(summary, (50.0, 100.0), 2400.0) == pytest.approx(50.0)
    assert se.confirmed_hv({**summary, "confirmed": False}, (50.0, 100.0), 2400.0) is None
    assert se.top_knob(summary) == "learning_rate 94 %" and se.top_knob({}) == "–"


def test_search_efficiency_shared_start_counts_the_common_leading_trials():
    se = load("search_efficiency")
    a = [(70.0, 100.0), None, (71.0, 90.0), (72.0, 80.0)]
    assert se.shared_start([a, a[:3] + [(60.0, 50.0)]]) == 3
    assert se.shared_start([a, [(69.0, 100.0)] + a[1:]]) == 0
    assert se.shared_start([a, a[:2]]) == 2  # a shorter search: only what both have


# ----------------------------------------------------------------------------------------------
# The scripts, end to end
# ----------------------------------------------------------------------------------------------


def holdout_preset(tmp_path: Path, evaluated_on: str = "holdout") -> Path:
    from increlora.presets import Preset, save_preset

    preset = Preset(preset_version=1, method="increlora", task="sst2", name="best",
                    config={"beta1": 0.7, "beta2": 0.8, "init_warmup_frac": 0.1, "incre_interval_frac": 0.05,
                            "target_rank": 1.5, "learning_rate": 0.02},
                    provenance={"search": "t", "trial": 3, "evaluated_on": evaluated_on})
    return save_preset(preset, tmp_path / f"preset-{evaluated_on}.yaml")


def test_fidelity_smoke_chooses_lr_on_holdout_pairs_seeds_and_resumes(tiny_model_dir, glue_dir, tmp_path):
    out = tmp_path / "fid"
    args = ["--smoke", "--model", tiny_model_dir, "--data-dir", str(glue_dir), "--tasks", "sst2",
            "--results-dir", str(out), "--preset-file", str(holdout_preset(tmp_path)), "--workers", "2"]
    first = run("fidelity.py", *args)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    records = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    assert records and all("error" not in r for r in records)
    selection = [r for r in records if r["eval_on"] == "holdout"]
    grid = [r for r in records if r["eval_on"] == "dev"]
    # lr choice: every core method at both grid rates, seed 0, on held-out training rows only
    rates = load("fidelity").LR_GRID[:2]  # --smoke keeps the grid's first two rates
    core = ("lora", "adalora", "increlora", "increlora-official", "dora")
    assert {(r["method"], r["learning_rate"]) for r in selection} == {(m, lr) for m in core for lr in rates}
    assert all(r["seed"] == 0 and r["eval_size"] == 32 and r["knobs"]["holdout_samples"] == 32 for r in selection)
    methods = set(core)
    assert {(r["method"], r["budget"], r["seed"]) for r in grid} == (
        {(m, b, s) for m in methods for b in (2, 8) for s in (0, 1)}
        | {(m, 2, s) for m in ("increlora-paper", "increlora-preset", "increlora-official-paper", "increlora-official-preset")
           for s in (0, 1)})
    for r in grid:
        assert r["steps"] == 4 and r["eval_size"] == 32
        if r["method"] == "lora":
            assert r["adapter_params"] == r["target_params"]
        if r["method"] == "dora":  # LoRA's size plus one magnitude per output of every adapted module
            assert r["adapter_params"] > r["target_params"]
        if r["method"].startswith("increlora") and not r["method"].startswith("increlora-official"):
            assert r["adapter_params"] <= r["target_params"]
        assert r["knobs"].get("reproduce_official", False) is r["method"].startswith("increlora-official")
    by_method = {r["method"]: r for r in grid if r["seed"] == 0 and r["budget"] == 2}
    preset_run, official_preset = by_method["increlora-preset"], by_method["increlora-official-preset"]
    assert preset_run["knobs"]["beta1"] == 0.7 and preset_run["learning_rate"] != 0.02  # the variant: knobs, not the preset's lr
    assert preset_run["learning_rate"] == by_method["increlora-paper"]["learning_rate"] == by_method["increlora"]["learning_rate"]
    # official mode: the preset's knobs at its searched rate, the paper's knobs at official mode's chosen rate
    assert official_preset["knobs"]["beta1"] == 0.7 and official_preset["learning_rate"] == 0.02
    assert by_method["increlora-official-paper"]["learning_rate"] == by_method["increlora-official"]["learning_rate"]
    report = (tmp_path / "fid.md").read_text()
    assert "| r2 | increlora − lora |" in report and "| r2 | increlora-preset − increlora-paper |" in report
    assert "| r2 | increlora-official-preset − increlora-official-paper |" in report
    assert "| r2 | increlora-official-preset − lora |" in report
    assert "| r2 | increlora-official − increlora |" in report and "| r8 | increlora-official − lora |" in report
    assert "## Verdicts" in report and "**SST-2**" in report
    again = run("fidelity.py", *args)
    assert again.returncode == 0
    assert "10 runs: 10 cached, 0 to run" in again.stdout and "28 runs: 28 cached, 0 to run" in again.stdout


def test_precision_smoke_pairs_bf16_with_fp32_and_rechecks_old_fp32_runs(tiny_model_dir, glue_dir, tmp_path):
    out, report = tmp_path / "prec", tmp_path / "prec.md"
    args = ["--smoke", "--model", tiny_model_dir, "--data-dir", str(glue_dir), "--tasks", "sst2", "--results-dir", str(out),
            "--output", str(report), "--workers", "2"]
    first = run("precision.py", *args)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    grid = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    grid = [r for r in grid if r["eval_on"] == "dev"]
    assert {(r["method"], r["precision"], r["seed"]) for r in grid} == {
        (m, p, s) for m in ("lora", "increlora") for p in ("fp32", "bf16") for s in (0, 1)}
    bf16_files = sorted(p.name for p in (out / "runs").glob("*-bf16-*.json"))
    assert len(bf16_files) == 4  # a bf16 run's file names its precision; an fp32 run's keeps the old name
    # what a re-run that differs in the last bits needs to be explained: the thread count and the torch build
    assert all(r["torch_threads"] == 1 and r["torch_version"] for r in grid)  # --workers 2: one thread each
    for seed in (0, 1):  # same rows per seed in both precisions
        pair = [r for r in grid if r["method"] == "increlora" and r["seed"] == seed]
        assert pair[0]["train_size"] == pair[1]["train_size"] and pair[0]["growth_events"] and pair[1]["growth_events"]
    text = report.read_text()
    assert "| SST-2 | lora |" in text and "## IncreLoRA's growth decisions" in text and "## Verdict" in text
    # an fp32 IncreLoRA record from before decisions were recorded is trained again and must reproduce its score
    old = next(p for p in (out / "runs").glob("sst2-increlora-r2-s0-*.json") if "-bf16-" not in p.name)
    rec = json.loads(old.read_text())
    for key in ("growth_events", "allocation", "precision"):
        rec.pop(key)
    old.write_text(json.dumps(rec))
    again = run("precision.py", *args)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "sst2 increlora seed 0: cached" in report.read_text() and ": identical" in report.read_text()


def test_fidelity_chooses_the_rate_a_knob_row_trains_at_even_when_its_method_is_not_asked_for():
    fid = load("fidelity")
    # a knob row trains at the rate chosen for the IncreLoRA it runs: that choice is made even if only the knob row is asked for
    assert fid.selection_methods(["lora", "increlora-official-paper", "increlora-official-preset"]) == ["lora", "increlora-official"]
    assert fid.selection_methods(["increlora-paper", "increlora", "adalora"]) == ["increlora", "adalora"]
    assert fid.selection_methods(["increlora-preset", "increlora-official-paper"]) == ["increlora", "increlora-official"]


@pytest.mark.parametrize("which", ["missing", "dev"])
def test_fidelity_rejects_an_unusable_preset_with_one_line(which, tmp_path):
    path = tmp_path / "nope.yaml" if which == "missing" else holdout_preset(tmp_path, evaluated_on="dev")
    res = run("fidelity.py", "--preset-file", str(path), "--results-dir", str(tmp_path / "f"))
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0
    assert ("does not exist" if which == "missing" else "chosen on the dev set") in res.stderr
    assert not (tmp_path / "f").exists()


def test_regime_smoke_reports_every_method_against_chance(tiny_model_dir, glue_dir, tmp_path):
    out = tmp_path / "fid"
    res = run("regime.py", "--model", tiny_model_dir, "--data-dir", str(glue_dir), "--tasks", "mrpc",
              "--sizes", "64s4", "--seeds", "0,1", "--results-dir", str(out))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    report = (tmp_path / "regime.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| MRPC | 64s4 |")]
    assert [r.split("|")[5].strip() for r in rows] == ["lora", "adalora", "increlora"]
    assert all("| 74.80 |" in r for r in rows)  # the majority-class score of MRPC's dev set
    assert "MRPC, 64s4 (4 steps)" in report


def test_regime_judges_each_method_at_its_held_out_chosen_rate(glue_dir):
    """LoRA learns at 3e-4 (chosen on held-out rows) but not at 3e-3: the size works; a method whose only
    learning rate is not its chosen one does not count."""
    reg = load("regime")

    def rec(method, lr, seed, score, eval_on="dev"):
        return {"task": "mrpc", "method": method, "budget": 2, "seed": seed, "learning_rate": lr, "glue_score": score,
                "size": "allx3", "steps": 345, "eval_on": eval_on, "wall_time_s": 1.0}

    records = [rec("lora", 3e-4, 0, 80.0, "holdout"), rec("lora", 3e-3, 0, 75.0, "holdout")]
    assert reg.chosen_rates(records, reg.LR_GRID_V1) == {}  # 1e-3 not run yet: a half-run selection chooses nothing
    records.append(rec("lora", 1e-3, 0, 78.0, "holdout"))
    assert reg.chosen_rates(records, reg.LR_GRID_V1) == {("mrpc", "lora"): 3e-4}
    for seed, jitter in enumerate((0.0, 0.5, -0.5)):
        records += [rec("lora", 3e-4, seed, 81.0 + jitter), rec("lora", 3e-3, seed, 74.80),
                    rec("adalora", 3e-3, seed, 82.0 + jitter), rec("increlora", 3e-3, seed, 81.5 + jitter)]
    text = reg.report(records, ["mrpc"], str(glue_dir))
    assert "| MRPC | allx3 | 345 | 0.0003 (chosen) | lora | 3 |" in text
    assert "**every method learns** (lora at 0.0003, adalora at 0.003, increlora at 0.003)" in text
    only_bad = [r for r in records if not (r["method"] == "lora" and r["learning_rate"] == 3e-4 and r["eval_on"] == "dev")]
    assert "not (yet) shown for lora" in reg.report(only_bad, ["mrpc"], str(glue_dir))


def test_throughput_smoke_compares_both_paths(tiny_model_dir, glue_dir, tmp_path):
    out = tmp_path / "tp.md"
    res = run("throughput.py", "--smoke", "--model", tiny_model_dir, "--data-dir", str(glue_dir), "--tasks", "cola,mrpc",
              "--output", str(out))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    data = json.loads(out.with_suffix(".json").read_text())
    for task in ("cola", "mrpc"):
        before, after = data["pairs"][task]["before"], data["pairs"][task]["after"]
        assert before["knobs"]["group_by_length"] is False and before["knobs"]["fast_eval"] is False
        assert "group_by_length" not in after["knobs"]  # the defaults
        assert after["train_tokens"] == before["train_tokens"] > 0  # the same rows
        assert after["train_padded_tokens"] < before["train_padded_tokens"]
    text = out.read_text()
    assert "**after / before**" in text and "**bf16 / after**" in text
    for task in ("cola", "mrpc"):  # the bf16 path beside today's fp32 path, the same rows
        fp32, bf16 = data["by_pair"]["after:bf16"][task]["after"], data["by_pair"]["after:bf16"][task]["bf16"]
        assert fp32["knobs"]["precision"] == "fp32" and bf16["knobs"]["precision"] == "bf16"
        assert fp32["train_tokens"] == bf16["train_tokens"] > 0
        assert f"- {task}: bf16 / before = " in text


def test_bf16_gap_smoke_times_both_precisions_every_way(tiny_model_dir, glue_dir, tmp_path):
    out = tmp_path / "gap.md"
    res = run("bf16_gap.py", "--smoke", "--model", tiny_model_dir, "--data-dir", str(glue_dir), "--rows", "64",
              "--repeats", "1", "--profile", "--side-by-side", "--output", str(out))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    text = out.read_text()
    for section in ("## Whole trials one after another", "## Training step per real token",
                    "## Self CPU time by operation category", "## Two trials at once"):
        assert section in text
    # every table row carries a measured fp32 / bf16 ratio; the profile attributes matrix products
    ratios = [line for line in text.splitlines() if line.startswith("| ") and line.rstrip(" |").endswith("x")]
    assert len(ratios) >= 8
    assert "| matrix products |" in text and "| varying |" in text and "| fixed |" in text


def test_score_precision_smoke_runs_both_products_on_the_same_run(tiny_model_dir, glue_dir):
    res = run("score_precision.py", "--model", tiny_model_dir, "--data-dir", str(glue_dir), "--train-samples", "64",
              "--eval-samples", "32", "--max-steps", "96", "--seeds", "0", "--threads", "1")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    row = next(line for line in res.stdout.splitlines() if line.startswith("| 0 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "96" and int(cells[2]) >= 2  # 96 steps, several growth rounds compared
    assert cells[3] in ("yes", "no") and float(cells[4]) == float(cells[4]) and float(cells[5]) == float(cells[5])


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
              "--output-dir", str(out), "--plot", str(plot))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    report = (tmp_path / "se.md").read_text()
    for sampler in ("tpe", "nsga2", "random"):  # each through a real Ray Tune Tuner (which pickles the sampler)
        assert (out / f"sst2-{sampler}-s0" / "search.json").is_file()
        row = next(line for line in report.splitlines() if line.startswith(f"| {sampler} |"))
        assert row.rstrip().endswith("| 1/1 |")
    assert plot.stat().st_size > 5000
    assert "Goal, paired by seed:" in report and "met on " in report
    assert "minus random's" in report and "| tpe − random, after 3 trials |" in report and "share at the start" in report
    assert "| tpe − random, confirmed front |" in report  # the smoke confirms its fronts on 1 seed
    assert "Confirmed fronts" in report and "HV % confirmed front" in report  # the smoke confirms on 1 seed

    # A fresh clone holds only search.json and points.json: the table is reprinted from them, studies gone.
    for sampler in ("tpe", "nsga2", "random"):
        assert (out / f"sst2-{sampler}-s0" / "points.json").is_file()
        (out / f"sst2-{sampler}-s0" / "optuna.db").unlink()
    first = [line for line in report.splitlines() if line.startswith("| ")]
    res = run("search_efficiency.py", "--smoke", "--model", tiny_model_dir, "--data-dir", str(glue_dir),
              "--output-dir", str(out), "--plot", str(plot), "--report-only")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert [line for line in (tmp_path / "se.md").read_text().splitlines() if line.startswith("| ")] == first

    # An unfinished record without its Optuna study (what a clone would hold) is started over, not resumed.
    sdir = out / "sst2-tpe-s0"
    record = json.loads((sdir / "search.json").read_text())
    for path in sdir.iterdir():
        if path.name != "search.json":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    (sdir / "search.json").write_text(json.dumps({**record, "status": "running"}))
    res = run("search_efficiency.py", "--smoke", "--model", tiny_model_dir, "--data-dir", str(glue_dir),
              "--samplers", "tpe", "--output-dir", str(out), "--plot", str(plot))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "starting it over" in res.stdout + res.stderr
    assert json.loads((sdir / "search.json").read_text())["status"] == "finished"


def test_gpu_packing_refuses_to_run_without_a_gpu(tmp_path):
    res = run("gpu_packing.py", "--output", str(tmp_path / "gp.md"))
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "no CUDA GPU" in res.stderr
    assert not (tmp_path / "gp.md").exists()


def test_a_learning_rate_chosen_at_the_grids_edge_widens_the_grid():
    """A grid whose best value sits at its edge has not found the best value: the next rate beyond it joins
    the (task, method)'s grid, one at a time, and the choice waits for it."""
    runs = load("_runs")

    def rec(lr, score, method="increlora"):
        return {"task": "sst2", "method": method, "learning_rate": lr, "glue_score": score, "eval_on": "holdout"}

    grid = (1e-3, 3e-3, 1e-2)
    records = [rec(1e-3, 70.0), rec(3e-3, 80.0), rec(1e-2, 82.0), rec(1e-3, 75.0, "lora"), rec(3e-3, 74.0, "lora"),
               rec(1e-2, 50.0, "lora")]
    assert runs.edge_rates(records, grid) == {("sst2", "increlora"): [0.02], ("sst2", "lora"): [0.000333]}
    assert runs.chosen_rates(records, grid) == {("sst2", "increlora"): 1e-2, ("sst2", "lora"): 1e-3}
    assert runs.chosen_rates(records, grid, widen=True) == {}  # both wait for their rate beyond the edge
    records += [rec(0.02, 83.0), rec(0.000333, 60.0, "lora")]
    assert runs.edge_rates(records, grid) == {("sst2", "increlora"): [0.02, 0.04], ("sst2", "lora"): [0.000333]}
    assert runs.chosen_rates(records, grid, widen=True) == {("sst2", "lora"): 1e-3}
    records.append(rec(0.04, 10.0))  # past the best: the choice is inside now
    assert runs.chosen_rates(records, grid, widen=True) == {("sst2", "increlora"): 0.02, ("sst2", "lora"): 1e-3}
