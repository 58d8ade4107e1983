"""Regime: at which trial size does every method learn every task on 2 CPU cores?

For each task and each candidate trial size (training rows, epochs or steps, batch, sequence length,
learning rate) this runs LoRA, AdaLoRA and IncreLoRA at equal final adapter parameters (average rank
2, as in ``benchmarks/fidelity.py``) over several seeds, evaluates on the full dev set, and reports
for each method the mean and standard deviation of the final GLUE score against the majority-class
score. A size *works* for a task when every method beats the majority class by more than three times
its own seed standard deviation. The table lists every size tried, so the choice of the fidelity
benchmark's regime (``fidelity.REGIME``) is a measurement, not a guess.

Runs are shared with ``fidelity.py`` (same cache, ``benchmarks/results/fidelity/runs/``): a size that
works and its seeds are reused by the fidelity grid.

    python benchmarks/regime.py --tasks cola --sizes 4000x3,allx2 --seeds 0,1,2 --workers 2
    python benchmarks/regime.py --report-only          # the table from the committed runs

Sizes: ``ROWSxEPOCHS`` or ``ROWSsSTEPS`` (``all`` = every training row), ``/bN`` batch, ``/lN`` max length,
e.g. ``4000x3``, ``alls400``, ``2000x3/b16``. ``--lrs`` lists learning rates (default: the cpu profile's).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, chance_level, csv_list, md_table, module_shapes, read_json, resolve_inputs, write_report  # noqa: E402
from _runs import LR_GRID_V1, Job, Size, chosen_rates, run_jobs, run_knobs, run_path  # noqa: E402

METHODS = ("lora", "adalora", "increlora")
BUDGET = 2
# Candidate sizes tried by default, per task.
CANDIDATES = {
    "cola": ["4000x3"],
    "sst2": ["1000x3"],
    "mrpc": ["allx3"],
    "rte": ["allx3"],
}


def learns(values: list[float], chance: float) -> tuple[float, float, bool]:
    """(mean, seed sd, mean - chance > 3 sd); one seed never counts as learning."""
    mean = statistics.mean(values)
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return mean, sd, len(values) > 1 and mean - chance > 3 * sd


def report(records: list[dict[str, Any]], tasks: list[str], data_dir: Optional[str]) -> str:
    from increlora.data import get_task

    lines = ["# Regime: where every method learns (final GLUE score on the full dev set, average rank 2)", "",
             "A size *works* when LoRA, AdaLoRA and IncreLoRA each beat the majority class by more than three times "
             "their own seed standard deviation (mean − chance > 3 sd); one seed never counts. Each method is judged "
             "at its own learning rate: the one chosen on held-out training rows (`benchmarks/fidelity.py`, marked "
             "*chosen*) once that choice exists, else any rate it ran at. A method marked *(rev 1)* has no runs of its "
             "current implementation at that size and rate yet; its row is from the previous one (same maths, other "
             "float rounding; runs-superseded/).", ""]
    chosen = chosen_rates(records, LR_GRID_V1)  # the grid these sizes were judged with
    rows = []
    verdicts = []
    for task in tasks:
        chance, _ = chance_level(task, data_dir)
        by_size: dict[tuple, dict[tuple[str, float], list[dict]]] = {}
        for r in records:
            if r["task"] == task and r.get("eval_on") == "dev" and r["method"] in METHODS and int(r["budget"]) == BUDGET:
                key = (r["size"], r.get("steps"))
                by_size.setdefault(key, {}).setdefault((r["method"], float(r["learning_rate"])), []).append(r)
        for (size, steps), per_run in sorted(by_size.items(), key=lambda kv: kv[0][1] or 0):
            learned: dict[str, list[str]] = {}
            for m in METHODS:
                rates = sorted(lr for (mm, lr) in per_run if mm == m)
                if not rates:
                    rows.append([get_task(task).folder, size, steps, "–", m, 0, "–", "–", f"{chance:.2f}", "–", "not run"])
                    continue
                for lr in rates:
                    rs = [r for r in per_run[(m, lr)] if not r.get("superseded")]
                    label = m
                    if not rs:
                        rs, label = per_run[(m, lr)], f"{m} (rev 1)"
                    values = [float(r["glue_score"]) for r in rs]
                    mean, sd, ok = learns(values, chance)
                    is_chosen = chosen.get((task, m)) == lr
                    if ok and (is_chosen or (task, m) not in chosen):
                        learned.setdefault(m, []).append(f"{lr:g}")
                    wall = statistics.median(float(r["wall_time_s"]) for r in rs)
                    ratio = (mean - chance) / sd if sd and sd == sd and sd > 0 else float("nan")
                    rows.append([get_task(task).folder, size, steps, f"{lr:g}" + (" (chosen)" if is_chosen else ""), label,
                                 len(values), f"{mean:.2f}", f"{sd:.2f}" if sd == sd else "–", f"{chance:.2f}",
                                 f"{ratio:.1f}" if ratio == ratio else "–", ("learns" if ok else "no") + f" ({wall:.0f} s/run)"])
            works = all(m in learned for m in METHODS)
            at = ", ".join(f"{m} at {'/'.join(learned[m])}" for m in METHODS if m in learned)
            missing = [m for m in METHODS if m not in learned]
            verdicts.append(f"- {get_task(task).folder}, {size} ({steps} steps): "
                            + ("**every method learns**" if works else f"not (yet) shown for {', '.join(missing)}")
                            + (f" ({at})." if at else "."))
    header = ["task", "size", "steps", "lr", "method", "seeds", "mean", "sd", "chance", "(mean − chance) / sd", "verdict"]
    lines += [md_table(header, rows, ["l", "l", "r", "r", "l", "r", "r", "r", "r", "r", "l"]), "", "## Per size", ""] + verdicts
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default=",".join(CANDIDATES), help="comma-separated tasks (default: %(default)s)")
    p.add_argument("--methods", default=",".join(METHODS), help="methods to run (default: %(default)s)")
    p.add_argument("--sizes", default=None, help="sizes to run for every task (default: CANDIDATES per task)")
    p.add_argument("--lrs", default=None, help="learning rates (default: the cpu profile's)")
    p.add_argument("--seeds", default="0,1,2", help="seeds (default: %(default)s)")
    p.add_argument("--workers", type=int, default=1, help="parallel one-thread worker processes (default: %(default)s)")
    p.add_argument("--nice", type=int, default=19, help="niceness of the workers (default: %(default)s)")
    p.add_argument("--model", default=None, help="model folder; 'tiny' for smoke runs (default: the packaged MiniLM)")
    p.add_argument("--data-dir", default=None, help="GLUE TSV folder (default: $GLUE_DIR or ../shared/data/glue)")
    p.add_argument("--results-dir", default=None, help="run cache (default: benchmarks/results/fidelity)")
    p.add_argument("--report-only", action="store_true", help="print the table from cached runs, train nothing")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    resolve_inputs(args)
    from increlora.data import normalize_task

    tasks = [normalize_task(t) for t in csv_list(args.tasks)]
    results = Path(args.results_dir) if args.results_dir else RESULTS / "fidelity"
    shapes = module_shapes(args.model_path)
    jobs = []
    if not args.report_only:
        lrs = [float(x) for x in csv_list(args.lrs)] if args.lrs else [None]
        for task in tasks:
            sizes = csv_list(args.sizes) if args.sizes else CANDIDATES.get(task, [])
            for text in sizes:
                size = Size.parse(text)
                for lr in lrs:
                    for seed in [int(s) for s in csv_list(args.seeds)]:
                        for m in csv_list(args.methods):
                            knobs, info = run_knobs(m, task, BUDGET, seed, size, shapes, learning_rate=lr,
                                                    model=args.model_path, data_dir=args.data_dir)
                            jobs.append(Job(m, BUDGET, knobs, info, run_path(results, m, BUDGET, knobs)))
        run_jobs(jobs, workers=args.workers, threads=1 if args.workers > 1 else None, nice=args.nice)
    records = [r for r in (read_json(p) for p in sorted((results / "runs").glob("*.json"))) if r and "error" not in r]
    records += [{**r, "superseded": True} for r in (read_json(p) for p in sorted((results / "runs-superseded").glob("*.json")))
                if r and "error" not in r]
    write_report(results.parent / "regime.md", report(records, tasks, args.data_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
