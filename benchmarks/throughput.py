"""Throughput: the original training and evaluation path, today's fp32 path and the bf16 path, side by side.

For each task the trial is the one a CPU search runs by default (``orchestrator.search``'s CPU
defaults on top of the ``cpu`` profile, packaged MiniLM, one thread, the search's evaluations). The
two paths run *at the same time*, one process each with one thread (as a search runs two trials on
2 cores), with the same seed, rows and knobs:

- ``before``: plain random batches (``--no-group-by-length``), the plain evaluation
  (``--no-fast-eval``: rows in file order, adapter as a separate branch, ``no_grad``) and the old
  evaluation batch of 128 rows;
- ``after``: the defaults - length-grouped training batches, length-sorted evaluation with the
  adapter merged and ``inference_mode``, evaluation batches of 64 rows on CPU - in fp32;
- ``bf16``: the same with ``--precision bf16`` (frozen base weights in bf16, bf16 autocast).

Paths are compared two at a time (``--pairs``, default ``before:after,after:bf16``), each pair side by
side in the same run, so every ratio is against a baseline measured beside it; ``bf16 / before`` is the
product of the two measured ratios (printed as such).

Printed per task and path: training tokens/s (real tokens, padding excluded), evaluation rows/s,
the padding share of the training batches, evaluation's share of the trial's useful time (training
plus evaluation), the trial's wall time, and its final GLUE score; then the ratio after/before.

``--seeds 0,1,2`` repeats the pairs with those seeds and adds a table of the final scores of both paths
and their paired differences: whether the length-grouped batches change results beyond seed noise.

``--parallelism`` also times real searches (``python -m orchestrator.search``, 4 CoLA trials each)
with two one-thread trials at a time vs one two-thread trial, and prints trials per hour (from the
search's own ``tuner_fit`` time). Run it alone: it measures the machine.

    python benchmarks/throughput.py                       # cola, sst2, mrpc
    python benchmarks/throughput.py --parallelism         # + the search-level comparison
    python benchmarks/throughput.py --smoke --model tiny  # seconds, for the tests
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, ROOT, csv_list, md_table, read_json, resolve_inputs, say, write_report  # noqa: E402

BEFORE = {"group_by_length": False, "fast_eval": False, "eval_batch_size": 128, "precision": "fp32"}
AFTER: dict[str, Any] = {"precision": "fp32"}
BF16: dict[str, Any] = {"precision": "bf16"}
PATHS = {"before": BEFORE, "after": AFTER, "bf16": BF16}
DEFAULT_PAIRS = "before:after,after:bf16"
SMOKE = {"train_samples": 256, "eval_samples": 48, "epochs": 1.0, "max_steps": None, "eval_steps": 4}


def trial_knobs(task: str, args: argparse.Namespace) -> dict[str, Any]:
    """The knobs of a default CPU search trial on ``task`` (IncreLoRA with the search's defaults)."""
    from increlora.task_defaults import task_defaults
    from orchestrator.running.settings import CPU_SEARCH_DEFAULTS, DEFAULT_EVALUATIONS
    from increlora import schedule

    knobs = task_defaults(task, "increlora", "cpu")
    knobs.update(CPU_SEARCH_DEFAULTS)
    knobs.update(task=task, method="increlora", model=args.model_path, data_dir=args.data_dir, seed=args.seed,
                 threads=args.threads, device="cpu", progress=False, save_adapter=False)
    if args.smoke:
        knobs.update(SMOKE)
    else:
        from increlora.data import get_task, load_task

        n = min(knobs["train_samples"], len(load_task(get_task(task).name, args.data_dir)["train"]))
        total = schedule.total_steps(n, knobs["batch_size"], knobs["epochs"], knobs.get("max_steps"))
        knobs["eval_steps"] = schedule.eval_steps_for(total, DEFAULT_EVALUATIONS)
    return knobs


def run_one(knobs: dict[str, Any], out: Path) -> None:
    """Worker: train once with ``knobs`` and write the figures the table needs to ``out``."""
    from increlora.run_config import build_run_config
    from increlora.trainer import train

    t0 = time.perf_counter()
    res = train(build_run_config(knobs))
    wall = time.perf_counter() - t0
    out.write_text(json.dumps({
        "task": res.task, "glue_score": res.glue_score, "steps": res.steps, "wall_s": wall,
        "train_s": res.train_time_s, "eval_s": res.eval_time_s, "setup_s": res.setup_time_s,
        "train_tokens": res.train_tokens, "train_padded_tokens": res.train_padded_tokens, "eval_rows": res.eval_rows,
        "knobs": {k: v for k, v in knobs.items() if k not in ("model", "data_dir")},
    }))


def run_pair(task: str, args: argparse.Namespace, out_dir: Path, seed: Optional[int] = None,
             pair: tuple[str, str] = ("before", "after")) -> dict[str, dict[str, Any]]:
    """The two paths of ``pair`` on one task at the same time, one process each."""
    base = trial_knobs(task, args)
    if seed is not None:
        base["seed"] = seed
    procs = {}
    for name in pair:
        flags = PATHS[name]
        out = out_dir / f"{task}-{name}-s{base['seed']}.json"
        knobs = {**base, **flags}
        procs[name] = (out, subprocess.Popen([sys.executable, __file__, "--run-one", json.dumps(knobs), "--out", str(out)],
                                             cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)}))
    results = {}
    for name, (out, proc) in procs.items():
        if proc.wait() != 0:
            raise SystemExit(f"error: the {name} run of {task} failed (exit {proc.returncode})")
        results[name] = json.loads(out.read_text())
    return results


def figures(r: dict[str, Any]) -> dict[str, float]:
    useful = r["train_s"] + r["eval_s"]
    return {
        "train_tok_s": r["train_tokens"] / r["train_s"],
        "eval_rows_s": r["eval_rows"] / r["eval_s"] if r["eval_s"] > 0 else float("nan"),
        "pad": 1 - r["train_tokens"] / max(1, r["train_padded_tokens"]),
        "eval_share": r["eval_s"] / useful,
        "wall": r["wall_s"],
        "score": r["glue_score"],
    }


def pair_table(pairs: dict[str, dict[str, dict[str, Any]]], pair: tuple[str, str] = ("before", "after")) -> str:
    """Rows of both paths of ``pair`` per task and the ratio second / first (measured side by side)."""
    first, second = pair
    rows = []
    for task, res in pairs.items():
        fig = {name: figures(r) for name, r in res.items()}
        for name in pair:
            f = fig[name]
            rows.append([task, name, f"{f['train_tok_s']:,.0f}", f"{f['eval_rows_s']:,.0f}", f"{100 * f['pad']:.1f} %",
                         f"{100 * f['eval_share']:.1f} %", f"{f['wall']:.1f}", f"{f['score']:.2f}"])
        b, a = fig[first], fig[second]
        rows.append([task, f"**{second} / {first}**", f"**{a['train_tok_s'] / b['train_tok_s']:.2f}x**",
                     f"**{a['eval_rows_s'] / b['eval_rows_s']:.2f}x**", "", "",
                     f"**{b['wall'] / a['wall']:.2f}x trials/h**", f"{a['score'] - b['score']:+.2f}"])
    steps = {task: res[second]["steps"] for task, res in pairs.items()}
    header = ["task", "path", "train tokens/s", "eval rows/s", "padding", "eval share of useful time",
              "trial wall s", "final score"]
    note = ("Steps per trial: " + ", ".join(f"{t} {s}" for t, s in steps.items())
            + f". 'trials/h' = wall({first}) / wall({second}); the score row gives {second} − {first} (same seed, rows, knobs).")
    return md_table(header, rows) + "\n\n" + note


def chained_ratios(by_pair: dict[str, dict[str, dict[str, dict[str, Any]]]]) -> list[str]:
    """``bf16 / before`` per task as the product of the measured ``after / before`` and ``bf16 / after``."""
    a, b = by_pair.get("before:after", {}), by_pair.get("after:bf16", {})
    lines = []
    for task in [t for t in a if t in b]:
        r1 = a[task]["before"]["wall_s"] / a[task]["after"]["wall_s"]
        r2 = b[task]["after"]["wall_s"] / b[task]["bf16"]["wall_s"]
        lines.append(f"- {task}: bf16 / before = {r1:.2f}x (after / before) x {r2:.2f}x (bf16 / after) = **{r1 * r2:.2f}x trials/h**")
    return lines


def noise_table(by_seed: dict[str, dict[int, dict[str, dict[str, Any]]]]) -> str:
    """Final scores of both paths over seeds, and the paired difference after − before."""
    import statistics

    rows = []
    for task, seeds in by_seed.items():
        before = [seeds[s]["before"]["glue_score"] for s in sorted(seeds)]
        after = [seeds[s]["after"]["glue_score"] for s in sorted(seeds)]
        diffs = [a - b for a, b in zip(after, before)]

        def cell(values: list[float]) -> str:
            sd = statistics.stdev(values) if len(values) > 1 else float("nan")
            return f"{statistics.mean(values):.2f} ± {sd:.2f}"

        rows.append([task, ", ".join(map(str, sorted(seeds))), cell(before), cell(after), cell(diffs),
                     " ".join(f"{d:+.2f}" for d in diffs)])
    return md_table(["task", "seeds", "before: mean ± sd", "after: mean ± sd", "after − before", "per seed"], rows)


def run_search(cpus: int, trials: int, args: argparse.Namespace, out_dir: Path, name: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "orchestrator.search", "--task", "cola", "--trials", str(trials), "--name", name,
           "--output-dir", str(out_dir), "--cpus-per-trial", str(cpus), "--tracking-uri", f"sqlite:///{out_dir / 'mlflow.db'}",
           "--no-save-adapters", "--seed", str(args.seed)]
    if args.model_path:
        cmd += ["--model", args.model_path]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    if args.smoke:
        cmd += ["--train-samples", "64", "--eval-samples", "48", "--max-steps", "6"]
    say(f"search: {trials} CoLA trials, {cpus} CPU(s) per trial ...")
    proc = subprocess.run(cmd, cwd=out_dir, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: the search with --cpus-per-trial {cpus} failed: {proc.stderr.strip().splitlines()[-1:]}")
    summary = read_json(out_dir / name / "search.json") or {}
    fit = float(summary["timings"]["tuner_fit_s"])
    return {"cpus_per_trial": cpus, "concurrent": summary["max_concurrent"], "trials": trials, "tuner_fit_s": fit,
            "trials_per_hour": 3600.0 * trials / fit}


def parallelism_table(rows: list[dict[str, Any]]) -> str:
    base = rows[0]["trials_per_hour"]
    body = [[f"{r['concurrent']} x {r['cpus_per_trial']}-thread", r["trials"], f"{r['tuner_fit_s']:.1f}",
             f"{r['trials_per_hour']:.1f}", f"{r['trials_per_hour'] / base:.2f}x"] for r in rows]
    return md_table(["trials at a time", "trials", "tuner.fit s", "trials/hour", "vs 2 x 1-thread"], body)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Writes benchmarks/results/throughput.md (and .json).")
    p.add_argument("--tasks", default="cola,sst2,mrpc", help="comma-separated tasks (default: %(default)s)")
    p.add_argument("--seed", type=int, default=42, help="seed of both paths (default: %(default)s)")
    p.add_argument("--pairs", default=DEFAULT_PAIRS,
                   help=f"path pairs run side by side, FIRST:SECOND, from {', '.join(PATHS)} (default: %(default)s)")
    p.add_argument("--seeds", default=None, help="also repeat the pairs with these seeds and compare the scores (e.g. 0,1,2)")
    p.add_argument("--noise-tasks", default="cola,sst2", help="tasks of the --seeds comparison (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="threads per run, as a search trial has (default: %(default)s)")
    p.add_argument("--model", default=None, help="model folder, or 'tiny' (default: the packaged MiniLM)")
    p.add_argument("--data-dir", default=None, help="GLUE TSV folder (default: $GLUE_DIR or ../shared/data/glue)")
    p.add_argument("--parallelism", action="store_true", help="also time 2 x 1-thread vs 1 x 2-thread searches")
    p.add_argument("--search-trials", type=int, default=4, help="trials per timed search (default: %(default)s)")
    p.add_argument("--smoke", action="store_true", help="tiny trials (one epoch of 256 rows) for the tests")
    p.add_argument("--output", default=None, help="report file (default: benchmarks/results/throughput.md)")
    p.add_argument("--run-one", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.run_one:
        run_one(json.loads(args.run_one), Path(args.out))
        return 0
    pair_list = [tuple(p.split(":", 1)) for p in csv_list(args.pairs)]
    bad = [p for p in pair_list if len(p) != 2 or p[0] not in PATHS or p[1] not in PATHS or p[0] == p[1]]
    if bad:
        print(f"error: --pairs {args.pairs}: each pair is FIRST:SECOND of two different paths from {', '.join(PATHS)}",
              file=sys.stderr)
        return 2
    resolve_inputs(args)
    output = Path(args.output) if args.output else RESULTS / ("throughput-smoke.md" if args.smoke else "throughput.md")
    with tempfile.TemporaryDirectory(prefix="throughput-") as tmp:
        by_pair: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
        for pair in pair_list:
            for task in csv_list(args.tasks):
                say(f"{task}: {pair[0]} and {pair[1]} side by side ...")
                by_pair.setdefault(":".join(pair), {})[task] = run_pair(task, args, Path(tmp), pair=pair)
        pairs = by_pair.get(":".join(pair_list[0]), {})
        text = "# Throughput: " + ", ".join(f"{a} vs {b}" for a, b in pair_list) + " (one-thread trials, each pair run side by side)"
        for pair in pair_list:
            text += f"\n\n## {pair[1]} vs {pair[0]}\n\n" + pair_table(by_pair[":".join(pair)], pair)
        chained = chained_ratios(by_pair)
        if chained:
            text += "\n\n## bf16 vs the original path (product of the two measured ratios)\n\n" + "\n".join(chained)
        by_seed: dict[str, dict[int, dict[str, dict[str, Any]]]] = {}
        for task in (csv_list(args.noise_tasks) if args.seeds else []):
            for seed in [int(x) for x in csv_list(args.seeds)]:
                say(f"{task} seed {seed}: before and after side by side ...")
                by_seed.setdefault(task, {})[seed] = run_pair(task, args, Path(tmp), seed)
        if by_seed:
            text += ("\n\n## Scores over seeds (final GLUE score, same rows and knobs per seed)\n\n" + noise_table(by_seed))
        searches = []
        if args.parallelism:
            searches = [run_search(1, args.search_trials, args, Path(tmp), "p1"),
                        run_search(2, args.search_trials, args, Path(tmp), "p2")]
            text += "\n\n## Trials at a time (real CoLA searches, run one after the other)\n\n" + parallelism_table(searches)
    write_report(output, text)
    output.with_suffix(".json").write_text(json.dumps({"pairs": pairs, "by_pair": by_pair, "seeds": by_seed, "searches": searches},
                                                      indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
