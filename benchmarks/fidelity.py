"""Fidelity: does IncreLoRA beat LoRA and AdaLoRA here, at equal final adapter parameters?

Low-resource GLUE on CPU with the packaged encoder (all-MiniLM-L6-v2): CoLA, SST-2, MRPC and RTE,
each trained on a seeded, label-stratified random subset of 1,000 training rows (the subset changes
with the seed; within a seed every method sees the same rows in the same order) and evaluated on
the task's full dev set. Methods, all through the same trainer (``increlora.trainer.train``):

- ``lora``: peft LoRA, rank r = budget on all six linear types of every layer. Its adapter size
  B = r * sum(d_in + d_out) over the adapted linears (computed from the model's shapes) is the
  budget of every other method at that budget;
- ``adalora``: peft AdaLoRA, init_r = ceil(1.5 r) (the AdaLoRA paper's ratio), target_r chosen so
  that a uniform allocation would end at B: target_r = B / sum(d_in + d_out + 1). Its final size
  depends on where AdaLoRA puts the ranks, so the table reports what it actually reached;
- ``increlora``: this package's defaults (the ``cpu`` profile) with ``budget_params = B``;
- ``increlora-paper``: the paper's hand-set IncreLoRA knobs (spec section 2.2, ``task_defaults(task,
  "increlora", "paper", r)``: top_h, n_add, orthogonal weight gamma, beta1 = beta2 = 0.85) with its
  growth schedule scaled to this run: init_warmup and incre_interval become fractions of the
  paper's run, T = ceil(N_train / 32) * epochs (spec section 2.3: CoLA 6,700, SST-2 50,520, MRPC
  3,450, RTE 3,900 steps), applied as init_warmup_frac / incre_interval_frac. The training recipe is
  the cpu profile's (``--paper-recipe method``, default) or also the paper's learning rate, alpha,
  dropouts, weight decay and warm-up fraction (``--paper-recipe full``);
- ``increlora-preset``: the IncreLoRA knobs of the best preset a 32-trial search found
  (``--preset-file``; default ``benchmarks/presets/sst2-32-best.yaml``, the ``best`` preset of the
  README's ``python -m orchestrator.search --task sst2 --trials 32`` run, kept in the repository so
  this row is reproducible; any preset exported by ``orchestrator.search`` works): its schedule,
  beta1/beta2, top_h, n_add, gamma and learning rate; the budget is replaced by
  ``budget_params = B``. ``--preset-file none`` skips the row.

Training knobs: the ``cpu`` profile (``task_defaults(task, method, "cpu", r)``: lr 3e-3, alpha 32,
max length 64 / 128 for pairs, batch 32, warm-up 6 %) with 1,000 training rows and 3 epochs =
ceil(1000 / 32) * 3 = 96 optimizer steps, evaluated 4 times (every 24 steps) on the full dev set.
Caveat measured elsewhere (README): with fewer than ~250 steps MiniLM stays at the majority class
on CoLA (MCC 0) whatever the method, so the CoLA rows at 96 steps mostly test that nothing breaks;
pass ``--epochs 8`` (256 steps) for a CoLA signal at ~2.7x the cost.

Budgets: average rank 2 and 8 (the paper's two budgets); seeds 0, 1, 2. Reported: for each
task / budget / method the median and [min-max] over seeds of every metric of the task at the
final evaluation, the best GLUE score seen during the run (what the paper reports), the adapter
parameters actually reached, and the trainer's wall time per run.

Every run is cached as JSON in ``benchmarks/results/fidelity/<task>-<method>-r<budget>-s<seed>.json``
together with the exact knobs it ran with; re-running skips a run whose cached knobs equal the
knobs it would use now (changing a flag re-runs only the affected runs). The table goes to stdout
and to ``benchmarks/results/fidelity.md``.

Full run (4 tasks x 2 budgets x 3 seeds x 5 methods = 120 runs of 96 steps; roughly 3-5 h on 2 idle
cores: CoLA/SST-2 (short sentences) ~1 min a run, MRPC ~2-3 min, RTE (pairs near the 128-token cap)
~3-4 min; IncreLoRA's growth steps cost more than LoRA's. Estimated from the README's CoLA timing,
not yet measured):

    python benchmarks/fidelity.py

Smaller: ``--tasks sst2 --budgets 2 --seeds 0``; smoke test (1 task, 1 seed, 4 steps, 64 training
and 32 dev rows, results under benchmarks/results/fidelity-smoke/):

    python benchmarks/fidelity.py --smoke [--model tiny]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    RESULTS,
    ROOT,
    chance_level,
    csv_list,
    finite,
    int_range,
    md_table,
    med_range,
    module_shapes,
    read_json,
    resolve_inputs,
    say,
    write_json,
    write_report,
)

METHODS = ("lora", "adalora", "increlora", "increlora-paper", "increlora-preset")
DEFAULT_TASKS = ("cola", "sst2", "mrpc", "rte")
# Full GLUE training-set sizes (spec section 2.3): the paper's run length T = ceil(N / 32) * epochs.
PAPER_TRAIN_SIZE = {"cola": 8551, "sst2": 67349, "mrpc": 3668, "qqp": 363846, "stsb": 5749, "mnli": 392702,
                    "qnli": 104743, "rte": 2490, "wnli": 635}
PAPER_BATCH = 32
# Knobs a preset may bring (IncreLoRA's own knobs and the learning rate); the budget, data,
# run length, sequence length and targets stay the benchmark's so that runs are comparable.
PRESET_EXCLUDE = {"target_rank", "target_total_rank", "budget_params"}
# Knobs that do not change a run's result: ignored when comparing a cached run's knobs.
RUNTIME_KNOBS = {"threads", "progress", "device", "data_dir", "output_dir", "save_adapter"}
VERSION = 1
DEFAULT_PRESET = ROOT / "benchmarks" / "presets" / "sst2-32-best.yaml"


# ----------------------------------------------------------------------------------------------
# Budgets and knobs
# ----------------------------------------------------------------------------------------------


def lora_params(shapes: dict[str, tuple[int, int]], r: int) -> int:
    """peft LoRA's adapter size at rank r: r * (d_in + d_out) per adapted linear."""
    return int(sum(r * (i + o) for i, o in shapes.values()))


def svd_cost_per_rank(shapes: dict[str, tuple[int, int]]) -> int:
    """Parameters of one rank in every module in SVD form (IncreLoRA/AdaLoRA): sum(d_in + d_out + 1)."""
    return int(sum(i + o + 1 for i, o in shapes.values()))


def paper_total_steps(task: str, budget: int) -> int:
    from increlora.task_defaults import task_defaults

    epochs = task_defaults(task, "increlora", "paper", float(budget))["epochs"]
    return int(math.ceil(PAPER_TRAIN_SIZE[task] / PAPER_BATCH) * epochs)


def paper_knobs(task: str, budget: int, recipe: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The paper's IncreLoRA knobs with its schedule as fractions of its own run; (knobs, info)."""
    from increlora.task_defaults import task_defaults

    p = task_defaults(task, "increlora", "paper", float(budget))
    total = paper_total_steps(task, budget)
    knobs: dict[str, Any] = {
        "init_warmup_frac": p["init_warmup"] / total,
        "incre_interval_frac": p["incre_interval"] / total,
        "top_h": p["top_h"],
        "n_add": p.get("n_add"),
        "orth_reg_weight": p["orth_reg_weight"],
        "beta1": 0.85,
        "beta2": 0.85,
    }
    if recipe == "full":
        knobs.update(
            learning_rate=p["learning_rate"],
            lora_alpha=p["lora_alpha"],
            lora_dropout=p["lora_dropout"],
            classifier_dropout=p["classifier_dropout"],
            weight_decay=p["weight_decay"],
            warmup_ratio=p["warmup_steps"] / total,
            warmup_steps=None,
        )
    info = {"paper_total_steps": total, "paper_init_warmup": p["init_warmup"], "paper_incre_interval": p["incre_interval"]}
    return knobs, info


def preset_knobs(preset: Any) -> dict[str, Any]:
    from increlora.config import IncreLoRAConfig, field_names

    allowed = (set(field_names(IncreLoRAConfig)) - PRESET_EXCLUDE) | {"learning_rate"}
    return {k: v for k, v in preset.config.items() if k in allowed}


def run_knobs(method: str, task: str, budget: int, seed: int, args: argparse.Namespace,
              shapes: dict[str, tuple[int, int]], preset: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Flat knobs for ``build_run_config`` and an info dict for the record."""
    from increlora.task_defaults import task_defaults

    base_method = "increlora" if method.startswith("increlora") else method
    knobs = task_defaults(task, base_method, "cpu", float(budget))
    target = lora_params(shapes, budget)
    info: dict[str, Any] = {"target_params": target}
    if method == "lora":
        knobs["r"] = int(budget)
    elif method == "adalora":
        target_r = target / svd_cost_per_rank(shapes)
        knobs.update(init_r=max(int(math.ceil(1.5 * budget)), int(math.ceil(target_r))), target_r=target_r)
        info["adalora_target_r"] = target_r
    else:
        knobs.update(budget_params=target, target_rank=float(budget))
        if method == "increlora-paper":
            for k in ("init_warmup_frac", "incre_interval_frac", "top_h", "orth_reg_weight"):
                knobs.pop(k, None)
            extra, pinfo = paper_knobs(task, budget, args.paper_recipe)
            knobs.update(extra)
            info.update(pinfo, paper_recipe=args.paper_recipe)
        elif method == "increlora-preset":
            knobs.update(preset_knobs(preset))
            info["preset_file"] = str(args.preset_file)
    knobs.update(
        task=task,
        method=base_method,
        model=args.model_path,
        data_dir=args.data_dir,
        train_samples=args.train_samples,
        eval_samples=args.eval_samples,
        epochs=float(args.epochs),
        max_steps=args.max_steps,
        seed=int(seed),
        device="cpu",
        threads=args.threads,
        progress=False,
        output_dir=None,
        save_adapter=False,
    )
    return knobs, info


def signature(knobs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in sorted(knobs.items()) if k not in RUNTIME_KNOBS}


def same_knobs(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal after a JSON round trip (floats compared to 1e-12)."""
    if set(a) != set(b):
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, float) or isinstance(y, float):
            try:
                if not math.isclose(float(x), float(y), rel_tol=1e-12, abs_tol=1e-15):
                    return False
            except (TypeError, ValueError):
                return False
        elif x != y:
            return False
    return True


# ----------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------


class Runner:
    """Tokenizer loaded once, data prepared once per (task, seed, length), runs cached as JSON."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._tokenizer = None
        self._data: dict[tuple, Any] = {}

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from increlora.backbone import load_tokenizer

            self._tokenizer = load_tokenizer(self.args.model_path)
        return self._tokenizer

    def data(self, task: str, seed: int, max_length: int) -> Any:
        from increlora.glue import prepare_data

        key = (task, seed, max_length)
        if key not in self._data:
            self._data.clear()  # keep one task's data in memory at a time
            self._data[key] = prepare_data(task, self.tokenizer, data_dir=self.args.data_dir,
                                           train_samples=self.args.train_samples, eval_samples=self.args.eval_samples,
                                           max_length=max_length, seed=seed)
        return self._data[key]

    def run(self, knobs: dict[str, Any], info: dict[str, Any], label: str, budget: int) -> dict[str, Any]:
        from increlora.config import build_run_config
        from increlora.trainer import train

        cfg = build_run_config(knobs)
        data = self.data(cfg.train.task, cfg.train.seed, cfg.train.max_length)
        res = train(cfg, data, tokenizer=self.tokenizer)
        return {
            "version": VERSION,
            "task": cfg.train.task,
            "method": label,
            "budget": budget,
            "seed": cfg.train.seed,
            "knobs": signature(knobs),
            **info,
            "adapter_params": res.adapter_params,
            "peak_trainable_params": res.peak_trainable_params,
            "head_params": res.head_params,
            "total_rank": int(sum(res.allocation.values())) if res.allocation else None,
            "metrics": res.metrics,
            "best_metrics": res.best_metrics,
            "glue_score": res.glue_score,
            "best_glue_score": res.best_glue_score,
            "best_step": res.best_step,
            "steps": res.steps,
            "train_size": res.train_size,
            "eval_size": res.eval_size,
            "schedule": res.schedule,
            "growth_rounds": len({e.get("step") for e in (res.growth_events or [])}),
            "wall_time_s": res.wall_time_s,
            "train_time_s": res.train_time_s,
            "eval_time_s": res.eval_time_s,
            "setup_time_s": res.setup_time_s,
            "model": res.model,
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }


def result_path(out_dir: Path, task: str, method: str, budget: int, seed: int) -> Path:
    return out_dir / f"{task}-{method}-r{budget}-s{seed}.json"


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def report(records: list[dict[str, Any]], args: argparse.Namespace, shapes: dict[str, tuple[int, int]],
           preset: Any, notes: list[str]) -> str:
    from increlora.glue import get_task

    model = "packaged all-MiniLM-L6-v2" if args.model is None else args.model
    steps = sorted({r["steps"] for r in records}) or ["?"]
    lines = [
        "# Fidelity: IncreLoRA vs LoRA and AdaLoRA at equal final adapter parameters",
        "",
        f"Model {model} on CPU; {args.train_samples or 'all'} stratified training rows per seed "
        f"(seeds {', '.join(map(str, args.seeds))}), {'the full dev set' if args.eval_samples is None else f'{args.eval_samples} dev rows'}, "
        f"{'max_steps ' + str(args.max_steps) if args.max_steps else f'{args.epochs:g} epochs'} "
        f"({'/'.join(map(str, steps))} optimizer steps), cpu-profile training knobs. Cells: median [min–max] over seeds; "
        "task metrics at the final evaluation; 'best' = the best GLUE score over the run's evaluations; "
        "'params' = adapter parameters reached at the end (LoRA: r(d_in+d_out), IncreLoRA/AdaLoRA: r_k(d_in+d_out+1)); "
        "'vs budget' = params / B where B is LoRA's size at r = budget; 'wall' = trainer wall time per run (s).",
        "",
    ]
    budgets = sorted({int(b) for b in args.budgets})
    lines.append("Budgets: " + "; ".join(
        f"r={b}: B = {lora_params(shapes, b):,} params (AdaLoRA target_r {lora_params(shapes, b) / svd_cost_per_rank(shapes):.3f}, "
        f"init_r {max(int(math.ceil(1.5 * b)), int(math.ceil(lora_params(shapes, b) / svd_cost_per_rank(shapes))))})"
        for b in budgets) + f"; {len(shapes)} adapted linears.")
    lines.append("")
    by_key: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        by_key.setdefault((r["task"], int(r["budget"]), r["method"]), []).append(r)
    methods = [m for m in args.methods]
    summary_rows = []
    # The majority-class predictor's score on each task's dev set (only meaningful on the full dev set).
    chances: dict[str, Optional[float]] = {}
    chance_text: dict[str, str] = {}
    for task in args.tasks:
        chances[task] = None
        if args.eval_samples is None:
            try:
                chances[task], what = chance_level(task, args.data_dir)
                chance_text[task] = f"Chance: GLUE score {chances[task]:.2f} for the {what}."
            except Exception as exc:  # the tables stand without it
                chance_text[task] = f"Chance level not computed ({type(exc).__name__}: {exc})."
    task_lines: list[str] = []
    for task in args.tasks:
        spec = get_task(task)
        metric_names = list(spec.metric_names)
        task_lines += [f"## {spec.folder}", ""]
        if task in chance_text:
            task_lines += [chance_text[task], ""]
        header = ["budget", "method", *[f"{m} (final)" for m in metric_names], "GLUE best", "params", "vs budget",
                  "wall s", "runs"]
        rows = []
        for b in budgets:
            target = lora_params(shapes, b)
            for m in methods:
                rs = by_key.get((task, b, m), [])
                if not rs:
                    rows.append([f"r{b}", m, *["–"] * len(metric_names), "–", "–", "–", "–", "0"])
                    continue
                cells = [med_range([r["metrics"].get(name) for r in rs]) for name in metric_names]
                ratio = [100.0 * r["adapter_params"] / target for r in rs]
                rows.append([f"r{b}", m, *cells, med_range([r["best_glue_score"] for r in rs]),
                             int_range([r["adapter_params"] for r in rs]), med_range(ratio, "{:.1f}%"),
                             med_range([r["wall_time_s"] for r in rs], "{:.1f}"), str(len(rs))])
        task_lines += [md_table(header, rows, ["l", "l"] + ["r"] * (len(header) - 2)), ""]
    # One line per task and budget: the GLUE score of every method side by side, with chance.
    pivot_rows = []
    for task in args.tasks:
        spec = get_task(task)
        chance = "–" if chances[task] is None else f"{chances[task]:.2f}"
        for b in budgets:
            cells = []
            for m in methods:
                rs = by_key.get((task, b, m), [])
                if not rs:
                    cells.append("–")
                    continue
                final = med_range([r["glue_score"] for r in rs])
                best = statistics.median(finite(r["best_glue_score"] for r in rs) or [float("nan")])
                cells.append(f"{final} (best {best:.2f}; n={len(rs)})")
            pivot_rows.append([spec.folder, f"r{b}", chance, *cells])
    summary_header = ["task", "budget", "chance", *methods]
    lines += [
        "## Summary: GLUE score at the final evaluation, median [min–max] over seeds (best evaluation; seeds run)", "",
        md_table(summary_header, pivot_rows, ["l", "l", "r"] + ["r"] * len(methods)), ""] + task_lines
    # Average over tasks of the per-task median final GLUE score (only where every task has runs).
    header = ["budget", "method", "mean over tasks of median final GLUE score", "mean of median best GLUE score", "tasks"]
    for b in budgets:
        for m in methods:
            finals, bests = [], []
            for task in args.tasks:
                rs = by_key.get((task, b, m), [])
                f, bb = finite(r["glue_score"] for r in rs), finite(r["best_glue_score"] for r in rs)
                if f:
                    finals.append(statistics.median(f))
                if bb:
                    bests.append(statistics.median(bb))
            complete = len(finals) == len(args.tasks)
            summary_rows.append([f"r{b}", m, f"{statistics.mean(finals):.2f}" if complete else "–",
                                 f"{statistics.mean(bests):.2f}" if complete and len(bests) == len(finals) else "–",
                                 f"{len(finals)}/{len(args.tasks)}"])
    lines += ["## Average over tasks", "", md_table(header, summary_rows, ["l", "l", "r", "r", "r"]), ""]
    lines += ["## Notes", ""]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines)


def describe_paper(tasks: list[str], budgets: list[int], recipe: str) -> str:
    parts = []
    for t in tasks:
        for b in budgets:
            try:
                knobs, info = paper_knobs(t, b, recipe)
            except KeyError:
                continue
            parts.append(f"{t} r{b}: T={info['paper_total_steps']:,}, warm-up {info['paper_init_warmup']} -> "
                         f"{knobs['init_warmup_frac']:.4f}, interval {info['paper_incre_interval']} -> "
                         f"{knobs['incre_interval_frac']:.4f}, top_h {knobs['top_h']}, n_add {knobs['n_add'] or 'auto'}")
    return ("increlora-paper: the paper's knobs (spec 2.2), schedule as fractions of the paper's run "
            f"(recipe '{recipe}'): " + "; ".join(parts))


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="comma-separated GLUE tasks (default: %(default)s)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods (default: %(default)s)")
    p.add_argument("--budgets", default="2,8", help="average ranks (default: %(default)s)")
    p.add_argument("--seeds", default="0,1,2", help="seeds: data subset, initialisation, batch order (default: %(default)s)")
    p.add_argument("--train-samples", type=int, default=1000, help="stratified training rows (default: %(default)s)")
    p.add_argument("--eval-samples", type=int, default=None, help="dev rows (default: the full dev set)")
    p.add_argument("--epochs", type=float, default=3.0, help="epochs (default: %(default)s = 96 steps on 1,000 rows)")
    p.add_argument("--max-steps", type=int, default=None, help="optimizer steps, overrides --epochs (default: unset)")
    p.add_argument("--preset-file", default=str(DEFAULT_PRESET.relative_to(ROOT)),
                   help="best preset of a 32-trial search for the increlora-preset row; 'none' skips the row (default: %(default)s)")
    p.add_argument("--paper-recipe", choices=("method", "full"), default="method",
                   help="increlora-paper: only the paper's IncreLoRA knobs, or also its lr/alpha/dropouts/wd/warm-up (default: %(default)s)")
    p.add_argument("--model", default=None, help="model folder or hub name; 'tiny' = a tiny random BERT for smoke runs (default: packaged MiniLM)")
    p.add_argument("--data-dir", default=None, help="GLUE TSV folder (default: $GLUE_DIR, else ../shared/data/glue)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--results-dir", default=None, help="run cache folder (default: benchmarks/results/fidelity[-smoke])")
    p.add_argument("--report-only", action="store_true", help="print the table from cached runs, train nothing")
    p.add_argument("--smoke", action="store_true",
                   help="1 task, 1 seed, max_steps 4, 64 training and 32 dev rows, cache in fidelity-smoke/")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from increlora.glue import normalize_task

    args.tasks = [normalize_task(t) for t in csv_list(args.tasks)]
    args.methods = csv_list(args.methods)
    bad = [m for m in args.methods if m not in METHODS]
    if bad:
        print(f"error: unknown method(s) {', '.join(bad)}; choose from {', '.join(METHODS)}", file=sys.stderr)
        return 2
    args.budgets = [int(b) for b in csv_list(args.budgets)]
    args.seeds = [int(s) for s in csv_list(args.seeds)]
    if args.smoke:
        args.tasks, args.seeds = args.tasks[:1], args.seeds[:1]
        args.max_steps, args.eval_samples, args.train_samples = 4, 32, 64
    resolve_inputs(args)
    out_dir = Path(args.results_dir) if args.results_dir else RESULTS / ("fidelity-smoke" if args.smoke else "fidelity")
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)

    notes: list[str] = []
    preset = None
    methods = list(args.methods)
    if "increlora-preset" in methods:
        if args.preset_file and args.preset_file.lower() == "none":
            args.preset_file = None
        if args.preset_file and not Path(args.preset_file).is_file() and (ROOT / args.preset_file).is_file():
            args.preset_file = str(ROOT / args.preset_file)
        if args.preset_file and not Path(args.preset_file).is_file():
            print(f"error: --preset-file {args.preset_file} does not exist; pass a preset exported by "
                  "orchestrator.search (its presets/ folder) or --preset-file none to skip that row", file=sys.stderr)
            return 2
        if args.preset_file:
            from increlora.presets import PresetError, load_preset

            try:
                preset = load_preset(args.preset_file)
            except PresetError as exc:
                print(f"error: --preset-file {args.preset_file}: {exc}", file=sys.stderr)
                return 2
            if preset.method != "increlora":
                print(f"error: --preset-file {args.preset_file} is a {preset.method} preset; need an increlora one", file=sys.stderr)
                return 2
            prov = preset.provenance or {}
            notes.append(f"increlora-preset: {args.preset_file} (found on {preset.task}, search {prov.get('search')}, "
                         f"trial {prov.get('trial')}, score {prov.get('score')}, {prov.get('adapter_params')} params); knobs applied: "
                         + ", ".join(f"{k}={v}" for k, v in sorted(preset_knobs(preset).items())) + "; budget replaced by B.")
        else:
            notes.append("increlora-preset: row skipped (--preset-file none); pass the best preset of a 32-trial search, e.g. "
                         f"--preset-file {DEFAULT_PRESET.relative_to(ROOT)}")
            methods.remove("increlora-preset")
    args.methods = methods
    shapes = module_shapes(args.model_path)
    if "increlora-paper" in methods:
        notes.append(describe_paper(args.tasks, args.budgets, args.paper_recipe))
    notes.append("adalora: target_r = B / sum(d_in+d_out+1) (equal parameters if its allocation were uniform), "
                 "init_r = max(ceil(1.5 r), ceil(target_r)); tinit/tfinal 10 %/30 % of the run.")
    notes.append("increlora rows: budget_params = B (never exceeded); target_rank = r only sets n_add's default "
                 "(round(r/2)) and the cpu profile's top_h.")

    runner = Runner(args)
    plan = [(seed, task, b, m) for seed in args.seeds for task in args.tasks for b in args.budgets for m in methods]
    records: list[dict[str, Any]] = []
    todo = []
    for seed, task, b, m in plan:
        knobs, info = run_knobs(m, task, b, seed, args, shapes, preset)
        path = result_path(out_dir, task, m, b, seed)
        cached = read_json(path)
        if cached and "error" not in cached and same_knobs(cached.get("knobs", {}), signature(knobs)):
            records.append(cached)
        else:
            todo.append((seed, task, b, m, knobs, info, path, cached is not None))
    say(f"fidelity: {len(plan)} runs, {len(plan) - len(todo)} cached in {out_dir}, {len(todo)} to run")
    if args.report_only:
        todo = []
    failures = 0
    t_all = time.perf_counter()
    for k, (seed, task, b, m, knobs, info, path, stale) in enumerate(todo, 1):
        tag = f"{task} {m} r{b} s{seed}"
        if stale:
            say(f"  {tag}: cached result has other knobs (or failed); re-running")
        t0 = time.perf_counter()
        try:
            rec = runner.run(knobs, info, m, b)
        except Exception as exc:  # keep going; the error is cached and retried next time
            failures += 1
            write_json(path, {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(),
                              "knobs": signature(knobs)})
            say(f"[{k}/{len(todo)}] {tag}: FAILED {type(exc).__name__}: {exc}")
            continue
        write_json(path, rec)
        records.append(rec)
        score = ", ".join(f"{n} {v:.2f}" for n, v in rec["metrics"].items())
        say(f"[{k}/{len(todo)}] {tag}: {score} (best GLUE {rec['best_glue_score']:.2f}), "
            f"{rec['adapter_params']:,} params ({100.0 * rec['adapter_params'] / rec['target_params']:.1f}% of B), "
            f"{time.perf_counter() - t0:.0f} s  [total {(time.perf_counter() - t_all) / 60:.1f} min]")
    if failures:
        notes.append(f"{failures} run(s) failed in this invocation; their errors are in {out_dir} and they are retried next time.")
    wanted = {(t, b, m, s) for s, t, b, m in plan}
    records = [r for r in records if (r["task"], int(r["budget"]), r["method"], int(r["seed"])) in wanted]
    write_report(out_dir.with_suffix(".md"), report(records, args, shapes, preset, notes))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
