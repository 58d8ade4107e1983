"""Where the bf16 trial's speed-up goes: the same default trial in fp32 and bf16, one process, one thread.

``benchmarks/throughput.py`` measures the bf16 path *beside* the fp32 path (two one-thread processes at the
same time, as a search runs two trials on 2 cores) and found 1.30x trials/h on the default CoLA trial, while
``benchmarks/step_time.py`` finds 1.5-1.8x per training step on a fixed synthetic batch. This script separates
the candidate causes, in one process and one thread, with nothing else of ours running:

1. **Sequential whole trials** (fp32, bf16, fp32, bf16 ...: ``--repeats`` pairs, alternating so drift hits both):
   the trial's wall time and its parts (training, evaluation, set-up) per precision. If the ratio here is well
   above the side-by-side one, the gap is the side-by-side measurement (the two runs share caches and memory
   bandwidth, and the faster run leaves the slower one alone for its last part).
2. **Shapes**: the trial's real length-grouped batches in trial order vs one of those batches repeated, both
   precisions, steps timed after a warm-up pass: whether changing batch shapes cost bf16 more.
3. **Two trials at once** (``--side-by-side``): two fp32 trials at the same time, then two bf16 trials at the
   same time (alternating for ``--repeats`` rounds), one process and one thread each, as a search on 2 cores
   runs them: trials per hour of each precision from the pair's wall time. This is the search's own speed-up,
   with no run ever left alone on the machine.
4. **Profile** (``--profile``): torch.profiler's self CPU time by operation category for one training pass of
   each precision, and each category's fp32 / bf16 ratio: which operations do not speed up.

    python benchmarks/bf16_gap.py [--task cola] [--rows 1000] [--repeats 2] [--profile]
    python benchmarks/bf16_gap.py --side-by-side         # + two same-precision trials at a time
    python benchmarks/bf16_gap.py --smoke --model tiny   # seconds, for the tests
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, md_table, resolve_inputs, say, write_report  # noqa: E402
from increlora import schedule  # noqa: E402
from increlora.backbone import load_model, load_tokenizer, resolve_model  # noqa: E402
from increlora.batching import batches  # noqa: E402
from increlora.data import get_task, load_task, prepare_data  # noqa: E402
from increlora.lr_schedule import GroupLinearSchedule  # noqa: E402
from increlora.precision import store_frozen_weights_in_bf16  # noqa: E402
from increlora.run_config import build_run_config  # noqa: E402
from increlora.trainer import build_method, train, train_step  # noqa: E402
from orchestrator.running.settings import DEFAULT_EVALUATIONS  # noqa: E402
import throughput  # noqa: E402

PRECISIONS = ("fp32", "bf16")
# torch.profiler operation names -> category (first match wins; the rest is "other").
CATEGORIES = (
    ("matrix products", ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "mkldnn")),
    ("casts and copies", ("aten::copy_", "aten::to", "aten::_to_copy", "aten::clone", "aten::contiguous")),
    ("dropout", ("aten::bernoulli_", "aten::dropout", "aten::native_dropout")),
    ("layer norm", ("layer_norm",)),
    ("softmax", ("softmax",)),
    ("activations", ("gelu", "tanh")),
    ("optimizer", ("_foreach", "adam", "aten::lerp", "aten::addcdiv", "aten::addcmul", "aten::sqrt")),
    ("elementwise", ("aten::mul", "aten::add", "aten::div", "aten::sub", "aten::where", "aten::masked_fill")),
    ("reductions", ("aten::sum", "aten::norm", "aten::linalg_vector_norm", "aten::mean", "aten::abs")),
)


def trial_knobs(args: argparse.Namespace) -> dict[str, Any]:
    """throughput.py's default CPU search trial on ``args.task`` (IncreLoRA), cut to ``args.rows`` training rows."""
    knobs = throughput.trial_knobs(args.task, args)
    n = min(args.rows, len(load_task(get_task(args.task).name, args.data_dir)["train"]))
    knobs["train_samples"] = n
    total = schedule.total_steps(n, knobs["batch_size"], knobs["epochs"], knobs.get("max_steps"))
    knobs["eval_steps"] = schedule.eval_steps_for(total, DEFAULT_EVALUATIONS)
    return knobs


def whole_trials(knobs: dict[str, Any], repeats: int) -> dict[str, list[dict[str, float]]]:
    """``repeats`` alternating fp32 / bf16 trials; each run's wall, training, evaluation and set-up seconds."""
    runs: dict[str, list[dict[str, float]]] = {p: [] for p in PRECISIONS}
    for i in range(repeats):
        for precision in PRECISIONS if i % 2 == 0 else PRECISIONS[::-1]:
            t0 = time.perf_counter()
            res = train(build_run_config({**knobs, "precision": precision}))
            wall = time.perf_counter() - t0
            runs[precision].append({"wall": wall, "train": res.train_time_s, "eval": res.eval_time_s,
                                    "setup": res.setup_time_s, "steps": res.steps, "score": res.glue_score})
            say(f"  {precision} trial {len(runs[precision])}: {wall:.1f} s (train {res.train_time_s:.1f}, "
                f"eval {res.eval_time_s:.1f}, setup {res.setup_time_s:.1f}), score {res.glue_score:.2f}")
    return runs


def run_one(knobs: dict[str, Any], out: Path) -> None:
    """Worker: train once with ``knobs`` and write its wall time and score to ``out``."""
    t0 = time.perf_counter()
    res = train(build_run_config(knobs))
    out.write_text(json.dumps({"wall": time.perf_counter() - t0, "train": res.train_time_s, "score": res.glue_score}))


def side_by_side(knobs: dict[str, Any], repeats: int, tmp: Path) -> dict[str, list[float]]:
    """``repeats`` rounds of two fp32 trials at once and two bf16 trials at once (seeds s and s+1): the pair's time,
    the longer of its two trials' ``train()`` walls (process start-up and imports left out: a search's workers
    import once, before their first trial)."""
    walls: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for i in range(repeats):
        for precision in PRECISIONS if i % 2 == 0 else PRECISIONS[::-1]:
            procs, outs = [], []
            for j in range(2):
                out = tmp / f"{precision}-{i}-{j}.json"
                outs.append(out)
                run = {**knobs, "precision": precision, "seed": knobs["seed"] + j}
                procs.append(subprocess.Popen([sys.executable, __file__, "--run-one", json.dumps(run), "--out", str(out)],
                                              env={**os.environ, "OMP_NUM_THREADS": "1"}))
            if any(proc.wait() != 0 for proc in procs):
                raise SystemExit(f"error: a side-by-side {precision} trial failed")
            walls[precision].append(max(json.loads(o.read_text())["wall"] for o in outs))
            say(f"  two {precision} trials at once: {walls[precision][-1]:.1f} s")
    return walls


class StepRunner:
    """One precision's model and optimizer; ``step(batch)`` times one training step on ``batch``."""

    def __init__(self, knobs: dict[str, Any], precision: str, total_steps: int) -> None:
        cfg = build_run_config({**knobs, "precision": precision})
        torch.manual_seed(knobs["seed"])
        model = load_model(resolve_model(knobs["model"]), num_labels=2, is_regression=False)
        self.method = build_method(cfg, model, total_steps)
        if precision == "bf16":
            store_frozen_weights_in_bf16(self.method.model)
        groups = self.method.param_groups(0.0)
        for g in groups:
            g["base_lr"] = cfg.train.learning_rate
        self.opt = torch.optim.AdamW(groups, lr=cfg.train.learning_rate)
        self.schedule = GroupLinearSchedule(warmup_steps=10, total_steps=total_steps)
        self.precision = precision
        self.n = 0
        self.method.model.train()

    def step(self, batch: dict) -> float:
        t0 = time.perf_counter()
        train_step(self.method, self.opt, self.schedule, batch, self.n, max_grad_norm=1.0,
                   device=torch.device("cpu"), precision=self.precision)
        self.n += 1
        return time.perf_counter() - t0


def trial_batches(knobs: dict[str, Any]) -> list[dict]:
    """The trial's first epoch of length-grouped training batches, in trial order."""
    tokenizer = load_tokenizer(resolve_model(knobs["model"]))
    data = prepare_data(knobs["task"], tokenizer, data_dir=knobs["data_dir"], train_samples=knobs["train_samples"],
                        eval_samples=knobs.get("eval_samples"), max_length=knobs.get("max_length", 128), seed=knobs["seed"])
    return list(batches(data.train, knobs["batch_size"], pad_id=tokenizer.pad_token_id, shuffle=True,
                        seed=knobs["seed"], group_by_length=True))


def shapes_table(knobs: dict[str, Any], train_batches: list[dict]) -> tuple[list[list[str]], dict[str, StepRunner]]:
    """Median step on the trial's varying batches vs one batch repeated, fp32 and bf16, interleaved per step."""
    n = len(train_batches)
    runners = {p: StepRunner(knobs, p, 10 * n) for p in PRECISIONS}
    fixed = sorted(train_batches, key=lambda b: b["input_ids"].shape[1])[n // 2]
    times: dict[tuple[str, str], list[float]] = defaultdict(list)
    for rep in range(3):  # pass 0 visits every shape once (warm-up); passes 1-2 are measured
        for b in train_batches:
            for p, runner in runners.items():
                t_var = runner.step(b)
                t_fix = runner.step(fixed)
                if rep:
                    times[(p, "varying")].append(t_var / b["attention_mask"].sum().item())
                    times[(p, "fixed")].append(t_fix / fixed["attention_mask"].sum().item())
    rows = []
    for kind in ("varying", "fixed"):
        f32 = statistics.median(times[("fp32", kind)]) * 1e6
        b16 = statistics.median(times[("bf16", kind)]) * 1e6
        rows.append([kind, f"{f32:.1f}", f"{b16:.1f}", f"{f32 / b16:.2f}x"])
    lengths = sorted({b["input_ids"].shape[1] for b in train_batches})
    say(f"  {n} batches, {len(lengths)} distinct lengths ({lengths[0]}-{lengths[-1]}); fixed batch: "
        f"{fixed['input_ids'].shape[1]} tokens")
    return rows, runners


def category(name: str) -> str:
    low = name.lower()
    for label, keys in CATEGORIES:
        if any(k.lower() in low for k in keys):
            return label
    return "other"


def profile_table(runners: dict[str, StepRunner], train_batches: list[dict]) -> list[list[str]]:
    """Self CPU time by operation category over one pass of the trial's batches, per precision."""
    from torch.profiler import ProfilerActivity, profile

    totals: dict[str, dict[str, float]] = {}
    others: dict[str, float] = defaultdict(float)
    for p, runner in runners.items():
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for b in train_batches:
                runner.step(b)
        cats: dict[str, float] = defaultdict(float)
        for ev in prof.key_averages():
            cats[category(ev.key)] += ev.self_cpu_time_total / 1e6
            if p == "bf16" and category(ev.key) == "other":
                others[ev.key] += ev.self_cpu_time_total / 1e6
        totals[p] = cats
    top = sorted(others.items(), key=lambda kv: -kv[1])[:6]
    say("  largest 'other' operations (bf16): " + ", ".join(f"{k} {v:.2f} s" for k, v in top))
    all_f32 = sum(totals["fp32"].values())
    all_b16 = sum(totals["bf16"].values())
    names = sorted(set(totals["fp32"]) | set(totals["bf16"]), key=lambda c: -totals["fp32"].get(c, 0.0))
    rows = []
    for c in names:
        f32, b16 = totals["fp32"].get(c, 0.0), totals["bf16"].get(c, 0.0)
        ratio = f"{f32 / b16:.2f}x" if b16 > 0 else "–"
        rows.append([c, f"{f32:.2f}", f"{100 * f32 / all_f32:.1f} %", f"{b16:.2f}", f"{100 * b16 / all_b16:.1f} %", ratio])
    rows.append(["**all**", f"{all_f32:.2f}", "100 %", f"{all_b16:.2f}", "100 %", f"**{all_f32 / all_b16:.2f}x**"])
    return rows


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="cola", help="GLUE task (default: %(default)s)")
    p.add_argument("--rows", type=int, default=1000, help="training rows of each trial (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=2, help="fp32/bf16 pairs of whole trials (default: %(default)s)")
    p.add_argument("--seed", type=int, default=42, help="seed of every run (default: %(default)s)")
    p.add_argument("--profile", action="store_true", help="also profile one pass per precision by operation category")
    p.add_argument("--model", default=None, help="model folder, or 'tiny' (default: the packaged MiniLM)")
    p.add_argument("--data-dir", default=None, help="GLUE TSV folder (default: $GLUE_DIR or ../shared/data/glue)")
    p.add_argument("--side-by-side", action="store_true", help="also time two same-precision trials at a time")
    p.add_argument("--skip-sequential", action="store_true", help="only the side-by-side rounds (with --side-by-side)")
    p.add_argument("--smoke", action="store_true", help="one epoch of a few rows, for the tests")
    p.add_argument("--run-one", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    p.add_argument("--output", default=None, help="report file (default: benchmarks/results/bf16-gap.md)")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.run_one:
        torch.set_num_threads(1)
        run_one(json.loads(args.run_one), Path(args.out))
        return 0
    resolve_inputs(args)
    args.threads = 1
    torch.set_num_threads(1)
    knobs = trial_knobs(args)
    say(f"bf16 gap: {args.task}, {knobs['train_samples']} rows x {knobs['epochs']:g} epochs, one thread a trial")
    flags = "".join(f" --{f}" for f in ("profile", "side-by-side", "skip-sequential") if getattr(args, f.replace("-", "_")))
    lines = [
        "# bf16 gap: the default trial in fp32 and bf16, one thread a trial",
        "",
        f"`python benchmarks/bf16_gap.py --task {args.task} --rows {args.rows} --repeats {args.repeats}{flags}`; "
        f"torch {torch.__version__}; {knobs['train_samples']} rows x {knobs['epochs']:g} epochs; seed {args.seed}.",
    ]
    if not (args.side_by_side and args.skip_sequential):
        lines += sequential_sections(args, knobs)
    if args.side_by_side:
        with tempfile.TemporaryDirectory() as tmp:
            walls = side_by_side(knobs, args.repeats, Path(tmp))
        f32, b16 = statistics.median(walls["fp32"]), statistics.median(walls["bf16"])
        rows = [["fp32", f"{f32:.1f}", f"{2 * 3600 / f32:.0f}", ""],
                ["bf16", f"{b16:.1f}", f"{2 * 3600 / b16:.0f}", f"**{f32 / b16:.2f}x**"]]
        lines += ["", f"## Two trials at once, same precision (median of {args.repeats} rounds, alternating)", "",
                  md_table(["precision", "pair wall s", "trials/h", "bf16 / fp32 trials/h"], rows)]
    output = Path(args.output) if args.output else RESULTS / ("bf16-gap-smoke.md" if args.smoke else f"bf16-gap-{args.task}.md")
    write_report(output, "\n".join(lines))
    return 0


def sequential_sections(args: argparse.Namespace, knobs: dict[str, Any]) -> list[str]:
    """Whole trials one after another, the step loop on varying vs fixed batches, and the optional profile."""
    runs = whole_trials(knobs, args.repeats)
    med = {p: {k: statistics.median(r[k] for r in runs[p]) for k in ("wall", "train", "eval", "setup")} for p in PRECISIONS}
    whole_rows = [[part, f"{med['fp32'][part]:.1f}", f"{med['bf16'][part]:.1f}",
                   f"{med['fp32'][part] / med['bf16'][part]:.2f}x" if med["bf16"][part] > 0 else "–"]
                  for part in ("wall", "train", "eval", "setup")]
    train_batches = trial_batches(knobs)
    shape_rows, runners = shapes_table(knobs, train_batches)
    lines = [
        "",
        f"## Whole trials one after another, one process (median of {args.repeats} each, alternating)",
        "",
        md_table(["part", "fp32 s", "bf16 s", "fp32 / bf16"], whole_rows),
        "",
        "## Training step per real token: the trial's varying batches vs one batch repeated",
        "",
        md_table(["batches", "fp32 µs/token", "bf16 µs/token", "fp32 / bf16"], shape_rows),
    ]
    if args.profile:
        lines += ["", "## Self CPU time by operation category, one pass of the trial's batches", "",
                  md_table(["category", "fp32 s", "fp32 share", "bf16 s", "bf16 share", "fp32 / bf16"],
                           profile_table(runners, train_batches))]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
