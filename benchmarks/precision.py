"""Precision: are bf16 trials equivalent to fp32 trials? Paired seeds, both intervals, IncreLoRA's decisions.

Protocol: the fidelity benchmark's runs at average rank 2 (its trial size per task, each method at the
learning rate chosen for it on held-out training rows from the first grid, 3e-4 / 1e-3 / 3e-3, in fp32),
trained again with ``--precision bf16`` and nothing else changed: the same seeds (training rows, their
order, the initialisation), the same knobs. The fp32 runs are the fidelity cache's own
(``benchmarks/results/fidelity/runs``); an fp32 IncreLoRA run cached before records kept their growth
decisions is trained again, and the report says whether the re-run reproduced the cached score exactly.

Reported per task and method: fp32 and bf16 mean ± seed sd, the paired difference bf16 − fp32 with its 95 %
bootstrap interval (resampling seeds) and 95 % paired t interval; for IncreLoRA, per seed, how many growth
rounds picked exactly the same modules and whether the final allocation is the same. The verdict: bf16 is
*within seed noise* in a cell when both intervals contain 0 and the mean difference is smaller than the fp32
seed standard deviation; ``auto`` may pick bf16 on CPUs with native bf16 only when every cell is.

    python benchmarks/precision.py --report-only      # reprint from the committed runs
    python benchmarks/precision.py --workers 2        # train what is missing (niced)
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, csv_list, md_table, module_shapes, read_json, resolve_inputs, write_json, write_report  # noqa: E402
from _runs import LR_GRID_V1, Job, Size, chosen_rates, run_jobs, run_knobs, run_path  # noqa: E402
from fidelity import HOLDOUT, REGIME, SELECT_SEED, paired_ci, paired_t_ci, selection_size  # noqa: E402

METHODS = ("lora", "increlora")
TASKS = ("cola", "sst2", "mrpc")
PRECISIONS = ("fp32", "bf16")
BUDGET = 2


def job(label: str, task: str, seed: int, size: Size, shapes: dict, args: argparse.Namespace, precision: str, **kw: Any) -> Job:
    knobs, info = run_knobs(label, task, BUDGET, seed, size, shapes, model=args.model_path, data_dir=args.data_dir,
                            evaluations=4, precision=precision, eval_samples=args.eval_samples, **kw)
    return Job(label, BUDGET, knobs, info, run_path(Path(args.results_dir), label, BUDGET, knobs))


def trial_size(task: str, args: argparse.Namespace) -> Size:
    return Size.parse(args.size or REGIME[task])


def selection_jobs(args: argparse.Namespace, shapes: dict) -> list[Job]:
    """The fidelity benchmark's fp32 learning-rate selection runs on the first grid (read from its cache)."""
    from increlora.data import get_task, load_task

    jobs = []
    for task in args.tasks:
        n = len(load_task(get_task(task).name, args.data_dir)["train"])
        size = selection_size(trial_size(task, args), n, args.holdout)
        for m in args.methods:
            for lr in args.lrs:
                jobs.append(job(m, task, SELECT_SEED, size, shapes, args, "fp32", learning_rate=lr, holdout_samples=args.holdout))
    return jobs


def grid_jobs(args: argparse.Namespace, shapes: dict, lrs: dict[tuple[str, str], float]) -> list[Job]:
    jobs = []
    for seed in args.seeds:
        for task in args.tasks:
            for m in args.methods:
                if (task, m) not in lrs:
                    continue
                for p in PRECISIONS:
                    jobs.append(job(m, task, seed, trial_size(task, args), shapes, args, p, learning_rate=lrs[(task, m)]))
    return jobs


def needs_decisions(job: Job) -> bool:
    """An IncreLoRA run whose cached record predates the growth decisions in records."""
    rec = read_json(job.path)
    return bool(rec) and "error" not in rec and job.label == "increlora" and "growth_events" not in rec


def rounds(record: dict[str, Any]) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for step, module, _ in record.get("growth_events") or []:
        out.setdefault(int(step), set()).add(module)
    return out


def decisions(fp32: dict[str, Any], bf16: dict[str, Any]) -> tuple[int, int, bool]:
    """(rounds with the same modules, rounds in all, same final allocation) of a paired IncreLoRA run."""
    a, b = rounds(fp32), rounds(bf16)
    steps = sorted(set(a) | set(b))
    same = sum(1 for s in steps if a.get(s) == b.get(s))
    return same, len(steps), fp32.get("allocation") == bf16.get("allocation")


def report(records: list[dict[str, Any]], args: argparse.Namespace, lrs: dict, rerun_checks: list[str]) -> tuple[str, bool]:
    from increlora.data import get_task

    by: dict[tuple[str, str, str], dict[int, dict]] = {}
    for r in records:
        by.setdefault((r["task"], r["method"], str(r.get("precision") or "fp32")), {})[int(r["seed"])] = r
    lines = ["# Precision: bf16 vs fp32 trials, paired by seed", "",
             "The fidelity benchmark's average-rank-2 runs (packaged MiniLM, CPU, one thread a run; trial size per task "
             "as in fidelity.py; each method at its held-out-chosen rate from the grid 3e-4 / 1e-3 / 3e-3), trained in "
             "fp32 and in bf16 with the same seeds and knobs. Cells: final dev GLUE score, mean ± seed sd (n); bf16 − fp32: "
             "mean of the per-seed differences, 95 % bootstrap interval, 95 % paired t interval. *Within seed noise*: both "
             "intervals contain 0 and |mean difference| < the fp32 seed sd.", ""]
    rows, dec_rows, verdicts = [], [], []
    all_within, complete = True, True
    for task in args.tasks:
        for m in args.methods:
            f32, b16 = by.get((task, m, "fp32"), {}), by.get((task, m, "bf16"), {})
            seeds = sorted(set(f32) & set(b16))
            lr = lrs.get((task, m))
            if len(seeds) < len(args.seeds):
                complete = False
            if len(seeds) < 2:
                rows.append([get_task(task).folder, m, f"{lr:g}" if lr else "–", f"{len(seeds)} paired", "", "", "", ""])
                continue
            a = [float(f32[s]["glue_score"]) for s in seeds]
            b = [float(b16[s]["glue_score"]) for s in seeds]
            mean, lo, hi = paired_ci(b, a)
            t_lo, t_hi = paired_t_ci(b, a)
            sd = statistics.stdev(a)
            within = lo <= 0 <= hi and t_lo <= 0 <= t_hi and abs(mean) < sd
            all_within &= within
            speed = statistics.median(float(f32[s]["wall_time_s"]) for s in seeds) / statistics.median(
                float(b16[s]["wall_time_s"]) for s in seeds)
            rows.append([get_task(task).folder, m, f"{lr:g}", f"{statistics.mean(a):.2f} ± {sd:.2f} ({len(a)})",
                         f"{statistics.mean(b):.2f} ± {statistics.stdev(b):.2f} ({len(b)})",
                         f"{mean:+.2f} [{lo:+.2f}, {hi:+.2f}], t [{t_lo:+.2f}, {t_hi:+.2f}]",
                         "yes" if within else "**no**", f"{speed:.2f}x"])
            if m == "increlora":
                for s in seeds:
                    same, n, alloc = decisions(f32[s], b16[s])
                    if n:
                        dec_rows.append([get_task(task).folder, s, f"{same} of {n}", "yes" if alloc else "no"])
            verdicts.append(f"{get_task(task).folder} {m}: " + ("within seed noise" if within else "NOT within seed noise")
                            + f" ({mean:+.2f}, seed sd {sd:.2f})")
    lines += [md_table(["task", "method", "lr", "fp32", "bf16", "bf16 − fp32", "within seed noise", "wall fp32 / bf16"], rows), ""]
    lines += ["'wall fp32 / bf16' is the median wall time of the runs, which ran beside other work: "
              "`benchmarks/throughput.py` measures speed side by side.", ""]
    if dec_rows:
        lines += ["## IncreLoRA's growth decisions, bf16 vs fp32 (same seed)", "",
                  md_table(["task", "seed", "rounds that picked the same modules", "same final allocation"], dec_rows), ""]
    if rerun_checks:
        lines += ["## fp32 runs trained again to record their growth decisions", ""] + rerun_checks + [""]
    ok = complete and all_within
    lines += ["## Verdict", ""]
    if not complete:
        lines.append(f"Not every cell has {len(args.seeds)} paired seeds yet: no verdict on the default.")
    elif ok:
        lines.append("bf16 is within seed noise in every cell: `--precision auto` may pick bf16 on CPUs that multiply bf16 natively.")
    else:
        lines.append("bf16 is not within seed noise in every cell (" + "; ".join(v for v in verdicts if "NOT" in v)
                     + "): `auto` stays fp32 on CPUs.")
    lines += [""] + [f"- {v}" for v in verdicts]
    return "\n".join(lines), ok


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default=",".join(TASKS), help="tasks (default: %(default)s)")
    p.add_argument("--methods", default=",".join(METHODS), help="methods (default: %(default)s)")
    p.add_argument("--seeds", default="0,1,2,3,4", help="paired seeds (default: %(default)s)")
    p.add_argument("--model", default=None, help="model folder; 'tiny' for smoke runs (default: the packaged MiniLM)")
    p.add_argument("--data-dir", default=None, help="GLUE TSV folder (default: $GLUE_DIR or ../shared/data/glue)")
    p.add_argument("--workers", type=int, default=1, help="parallel one-thread worker processes (default: %(default)s)")
    p.add_argument("--nice", type=int, default=19, help="niceness of the runs (default: %(default)s)")
    p.add_argument("--results-dir", default=None, help="run cache (default: the fidelity benchmark's, benchmarks/results/fidelity)")
    p.add_argument("--output", default=None, help="report (default: benchmarks/results/precision.md)")
    p.add_argument("--report-only", action="store_true", help="print the tables from cached runs, train nothing")
    p.add_argument("--smoke", action="store_true", help="1 task, 2 seeds, 32 steps on 96 rows, 2 learning rates, for the tests")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from increlora.data import normalize_task

    args.tasks = [normalize_task(t) for t in csv_list(args.tasks)]
    args.methods = csv_list(args.methods)
    bad = [m for m in args.methods if m not in METHODS]
    if bad:
        print(f"error: unknown method(s) {', '.join(bad)}; choose from {', '.join(METHODS)}", file=sys.stderr)
        return 2
    args.seeds = [int(s) for s in csv_list(args.seeds)]
    args.size, args.holdout, args.eval_samples, args.lrs = None, HOLDOUT, None, LR_GRID_V1
    if args.smoke:
        args.tasks, args.seeds, args.size, args.holdout, args.eval_samples = args.tasks[:1], args.seeds[:2], "96s32", 32, 32
        args.lrs = LR_GRID_V1[:2]
    args.results_dir = args.results_dir or str(RESULTS / ("precision-smoke" if args.smoke else "fidelity"))
    resolve_inputs(args)
    shapes = module_shapes(args.model_path)
    run = dict(workers=args.workers, threads=1 if args.workers > 1 else None, nice=args.nice, dry_run=args.report_only)
    selection = run_jobs(selection_jobs(args, shapes), **run)
    lrs = chosen_rates(selection, args.lrs)
    jobs = grid_jobs(args, shapes, lrs)
    stale = {} if args.report_only else {j.path: read_json(j.path) for j in jobs if needs_decisions(j)}
    for path in stale:
        path.unlink()  # trained again below, with its growth decisions recorded
    records = run_jobs(jobs, **run)
    for path, old in stale.items():
        new = read_json(path)
        if new and "error" not in new:  # the re-run must reproduce the cached score exactly
            new["reproduces_cached"] = {"cached_glue_score": old.get("glue_score"),
                                        "identical": new.get("glue_score") == old.get("glue_score")}
            write_json(path, new)
        elif old:
            write_json(path, old)  # the re-run failed: the cached record is put back
    if stale:
        records = run_jobs(jobs, **{**run, "dry_run": True})
    checks = [f"- {r['task']} {r['method']} seed {r['seed']}: cached {r['reproduces_cached']['cached_glue_score']:.4f}, "
              f"trained again {r['glue_score']:.4f}: " + ("identical" if r["reproduces_cached"]["identical"] else "**differs**")
              for r in records if r.get("reproduces_cached")]
    text, _ = report(records, args, lrs, checks)
    write_report(Path(args.output) if args.output else RESULTS / ("precision-smoke.md" if args.smoke else "precision.md"), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
