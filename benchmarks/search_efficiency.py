"""Search efficiency: Pareto hypervolume against trials for multi-objective TPE, NSGA-II and random.

The same IncreLoRA search (``python -m orchestrator.search``, built-in space: target_rank 1-8 log,
init_warmup_frac, incre_interval_frac, beta1, beta2; objectives GLUE score up, adapter parameters
down) is run with each sampler and three seeds, 32 trials each, on the fidelity benchmark's data:
a seeded, stratified 1,000-row training subset, the full dev set, 3 epochs (96 steps), the
packaged MiniLM on CPU, 2 trials at a time on 2 cores, adapters not saved. The search's ``--seed``
seeds both the sampler and the trials' training (data subset included), so for one seed the three
samplers see the same data: the comparison is paired by seed.

Default task SST-2: at 96 steps MiniLM stays at the majority class on CoLA (MCC 0, see README), so
every CoLA trial would score the reference and every hypervolume would be 0.

Hypervolume (``orchestrator.records.pareto.hypervolume``) of the COMPLETE trials among the first k trials
(trial order = Optuna trial number; failed trials count against the budget and add nothing).
Reference point = (chance score, 1.1 x the largest adapter size the space can produce):
- chance score: the GLUE score of the majority-class predictor on the full dev set (0 for CoLA's
  MCC, the majority-class accuracy for SST-2/RTE/QNLI, mean(F1, accuracy) of that predictor for MRPC);
- the largest adapter size: the space's largest budget (target_rank 8 -> total rank R = 8 M over the
  M adapted modules), every rank above the initial rank 1 per module placed in the costliest module:
  sum_k (d_in+d_out+1) + (R - M) * max_k (d_in+d_out+1) (MiniLM: 525,600; with ``--budget params``
  the range's upper end).
The table reports the hypervolume normalised by the box between the reference point and (score 100,
0 params), in percent: HV / ((100 - chance) * ref_params) * 100, after 8/16/24/32 trials, median
[min-max] over seeds per sampler, plus the raw box area for converting back. Plot: the median curve
per sampler, ``docs/search_efficiency.png`` (``orchestrator.reporting.plots.hypervolume_plot``).
The goal it is judged against (issue #9), paired by seed: TPE's HV after 16 trials >= random's after
32; the report has one row per seed and counts the seeds that meet it (``goal_check``).

Each search lives in ``benchmarks/results/search_efficiency/<task>-<sampler>-s<seed>/`` (search.json,
optuna.db, trials/, presets/; MLflow in ``benchmarks/results/search_efficiency/mlflow.db``; the
search's own output in ``<name>.log``); only each search's ``search.json`` and ``points.json`` (every trial's
score and adapter size, read from the study once) are committed: the table and ``--report-only`` read nothing
else, so finished searches carry over to a fresh clone. Resumable: a search whose search.json says ``finished`` is
skipped; one with a search.json but not finished is continued with ``--resume``. The table goes to
stdout and to ``benchmarks/results/search_efficiency.md``. The TPE seed-0 search's
``presets/<task>-best.yaml`` is the natural ``--preset-file`` of ``benchmarks/fidelity.py``.

Full run (9 searches x 32 trials = 288 trials of 96 steps, one evaluation each, as in the README; measured
2026-12-06: 14-17 min a search on 2 idle cores, about 2.2 h in all; seeds 1-2, 6 searches: 85 min):

    python benchmarks/search_efficiency.py --evaluations 1

Smoke test (1 seed per sampler, 3 trials, 2 steps, 64 training / 32 dev rows, one trial at a time,
under benchmarks/results/search_efficiency-smoke/):

    python benchmarks/search_efficiency.py --smoke [--model tiny]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    DOCS,
    RESULTS,
    ROOT,
    chance_level,
    csv_list,
    md_table,
    med_range,
    module_shapes,
    read_json,
    resolve_inputs,
    say,
    write_json,
    write_report,
)

SAMPLERS = ("tpe", "nsga2", "random")
FULL_DEV = 10**9  # --eval-samples larger than any dev set = the full dev set


def search_name(task: str, sampler: str, seed: int) -> str:
    return f"{task}-{sampler}-s{seed}"


def search_command(args: argparse.Namespace, name: str, sampler: str, seed: int, out_dir: Path) -> list[str]:
    cmd = [sys.executable, "-m", "orchestrator.search", "--task", args.task, "--method", "increlora",
           "--trials", str(args.trials), "--sampler", sampler, "--seed", str(seed), "--name", name,
           "--output-dir", str(out_dir), "--tracking-uri", f"sqlite:///{out_dir / 'mlflow.db'}",
           "--train-samples", str(args.train_samples),
           "--eval-samples", str(args.eval_samples if args.eval_samples else FULL_DEV),
           "--epochs", str(args.epochs), "--population-size", str(args.population_size), "--budget", args.budget,
           "--no-save-adapters", "--confirm", str(args.confirm)]
    if args.space == "knobs":
        cmd.append("--knobs-only")
    if args.max_steps:
        cmd += ["--max-steps", str(args.max_steps)]
    if args.evaluations:
        cmd += ["--evaluations", str(args.evaluations)]
    if args.model_path:
        cmd += ["--model", args.model_path]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    if args.max_concurrent:
        cmd += ["--max-concurrent", str(args.max_concurrent)]
    if args.num_cpus:
        cmd += ["--num-cpus", str(args.num_cpus)]
    return cmd


SETTING_FLAGS = ("--trials", "--sampler", "--seed", "--train-samples", "--eval-samples", "--epochs", "--max-steps",
                 "--evaluations", "--population-size", "--budget")


def settings(argv: list[str]) -> dict[str, str]:
    """The flags of a search command that change its trials (paths left out)."""
    return {flag: argv[i + 1] for i, flag in enumerate(argv[:-1]) if flag in SETTING_FLAGS}


def run_search(args: argparse.Namespace, sampler: str, seed: int, out_dir: Path) -> tuple[str, Optional[dict]]:
    """Run, resume or skip one search; returns (what happened, its search.json)."""
    name = search_name(args.task, sampler, seed)
    sdir = out_dir / name
    summary = read_json(sdir / "search.json")
    if summary:
        want, have = settings(search_command(args, name, sampler, seed, out_dir)), settings(summary.get("argv") or [])
        if want != have:
            diff = ", ".join(f"{k} {have.get(k, 'unset')} (now {want.get(k, 'unset')})" for k in sorted(set(want) | set(have))
                             if want.get(k) != have.get(k))
            raise SystemExit(f"error: {sdir} holds a search with other settings: {diff}; pass another --output-dir "
                             "(or the same flags to reuse it)")
    if summary and summary.get("status") == "finished":
        return "cached", summary
    if summary and not (sdir / "optuna.db").exists():  # only search.json travels (a fresh clone): nothing to resume
        say(f"  {name}: its record says {summary.get('status')!r} but its Optuna study is not here; starting it over")
        summary = None
    if summary:
        cmd = [sys.executable, "-m", "orchestrator.search", "--resume", "--name", name, "--output-dir", str(out_dir)]
        what = "resumed"
    else:
        if sdir.exists():  # no record, or a record without its study: nothing worth keeping
            shutil.rmtree(sdir)
        cmd = search_command(args, name, sampler, seed, out_dir)
        what = "ran"
    log = out_dir / f"{name}.log"
    say(f"  {name}: {what} ... (output in {log})")
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(log, "a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        rc = subprocess.run(cmd, cwd=out_dir, stdout=fh, stderr=subprocess.STDOUT, env=env).returncode
    summary = read_json(sdir / "search.json")
    status = summary.get("status") if summary else "missing"
    say(f"  {name}: exit {rc}, status {status}, {(time.perf_counter() - t0) / 60:.1f} min")
    return what if status == "finished" else f"{what}, not finished (exit {rc})", summary


# ----------------------------------------------------------------------------------------------
# Hypervolume
# ----------------------------------------------------------------------------------------------


def space_max_params(summary: dict[str, Any], shapes: dict[str, tuple[int, int]]) -> tuple[float, str]:
    """Largest adapter size the search's IncreLoRA space can produce; (params, how it was computed)."""
    space = summary.get("space") or {}
    params = space.get("params") or {}
    constants = {**(summary.get("base") or {}), **(space.get("constants") or {})}
    from increlora.budget import svd_cost_per_rank

    costs = [svd_cost_per_rank(i, o) for i, o in shapes.values()]
    m = len(costs)
    init_rank = int(constants.get("init_rank") or 1)
    initial = init_rank * sum(costs)
    if "budget_params" in params:
        hi = float(params["budget_params"]["high"])
        return hi, f"budget_params range upper end {hi:,.0f}"
    if "target_total_rank" in params:
        total = int(params["target_total_rank"]["high"])
    else:
        hi = params.get("target_rank", {}).get("high", constants.get("target_rank", 2.0))
        total = int(round(float(hi) * m))
    value = initial + max(0, total - init_rank * m) * max(costs)
    return float(value), (f"total rank {total} = {total / m:g} x {m} modules; initial rank {init_rank} everywhere "
                          f"({initial:,} params) plus {total - init_rank * m} ranks in the costliest module "
                          f"({max(costs):,} each) = {value:,}")


POINTS_FILE = "points.json"  # beside search.json: what the table needs from the Optuna study, committed


def trial_points(summary: dict[str, Any], trials: int, sdir: Path) -> list[Optional[tuple[float, float]]]:
    """Per trial number 0..trials-1: (score, params) of a COMPLETE trial, else None.

    Read from the Optuna study the first time and kept in ``sdir/points.json`` (the study, a binary
    file with machine-specific paths in search.json, is not committed; this small file is)."""
    cached = read_json(sdir / POINTS_FILE)
    if cached is None:
        import optuna

        from orchestrator.records.record import SearchRecord
        from orchestrator.records.results import load_results

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        results = load_results(SearchRecord.from_dict(summary))
        cached = {"trials_seen": max((t.number for t in results.trials), default=-1) + 1,
                  "complete": [[t.number, *t.point] for t in results.complete]}
        write_json(sdir / POINTS_FILE, cached)
    out: list[Optional[tuple[float, float]]] = [None] * trials
    for number, score, params in cached["complete"]:
        if number < trials:
            out[number] = (score, params)
    return out[: min(trials, cached["trials_seen"])]


def hv_curve(points: list[Optional[tuple[float, float]]], ref: tuple[float, float]) -> list[float]:
    from orchestrator.records.pareto import hypervolume

    curve, done = [], []
    for p in points:
        if p is not None:
            done.append(p)
        curve.append(hypervolume(done, ref) if done else 0.0)
    return curve


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def goal_check(curves: dict[tuple[str, int], list[float]], seeds: list[int], trials: int,
               fast: str = "tpe", slow: str = "random") -> tuple[list[str], list[list[str]], str]:
    """The issue's goal, paired by seed: ``fast``'s HV % after trials/2 >= ``slow``'s after all trials.

    Returns the table header, one row per seed where both searches finished (seed, fast@half, slow@all,
    difference, met) and a one-sentence verdict ("" when no seed has both)."""
    half = max(1, trials // 2)
    header = ["seed", f"{fast} HV % after {half}", f"{slow} HV % after {trials}", "difference", "met"]
    rows, diffs = [], []
    for seed in seeds:
        a, b = curves.get((fast, seed)), curves.get((slow, seed))
        if not a or not b or len(a) < half or len(b) < trials:
            continue
        diff = a[half - 1] - b[trials - 1]
        diffs.append(diff)
        rows.append([f"s{seed}", f"{a[half - 1]:.2f}", f"{b[trials - 1]:.2f}", f"{diff:+.2f}", "yes" if diff >= 0 else "no"])
    if not diffs:
        return header, rows, ""
    met = sum(d >= 0 for d in diffs)
    verdict = (f"Goal ({fast} HV after {half} trials >= {slow} HV after {trials}): met on {met} of {len(diffs)} "
               f"seed(s); paired difference median {statistics.median(diffs):+.2f} "
               f"[{min(diffs):+.2f}, {max(diffs):+.2f}] HV %.")
    return header, rows, verdict


def paired_vs(curves: dict[tuple[str, int], list[float]], samplers: list[str], seeds: list[int], at: int,
              base: str = "random", what: str = "") -> list[list[str]]:
    """Per sampler other than ``base``: its HV % after ``at`` trials minus ``base``'s, one cell per seed
    ("–" where either search is missing or shorter); ``what`` is appended to the row's label."""
    rows = []
    for sampler in samplers:
        if sampler == base:
            continue
        cells = []
        for seed in seeds:
            a, b = curves.get((sampler, seed), []), curves.get((base, seed), [])
            cells.append(f"{a[at - 1] - b[at - 1]:+.2f}" if len(a) >= at and len(b) >= at else "–")
        rows.append([f"{sampler} − {base}{what}", *cells])
    return rows


def confirmed_hv(summary: dict[str, Any], ref: tuple[float, float], box: float) -> Optional[float]:
    """HV % of a search's confirmed front (its configurations' means, search.json's ``front``); None without one."""
    from orchestrator.records.pareto import hypervolume

    front = [(float(r["glue_score"]), float(r["adapter_params"])) for r in summary.get("front") or []]
    return 100 * hypervolume(front, ref) / box if summary.get("confirmed") and front else None


def top_knob(summary: dict[str, Any]) -> str:
    """The knob with the largest share of the score variance in the search's own importance (fANOVA), e.g.
    "learning_rate 94 %"; "–" without an importance."""
    shares = ((summary.get("importance") or {}).get("score") or {})
    if not shares:
        return "–"
    name, share = max(shares.items(), key=lambda kv: float(kv[1]))
    return f"{name} {100 * float(share):.0f} %"


def confirmation_rows(summaries: dict[tuple[str, int], dict], seeds: list[int], samplers: list[str],
                      ref: tuple[float, float], box: float) -> list[list[str]]:
    """Per search that ran the confirmation stage: the single-run and the confirmed front's HV % (:func:`confirmed_hv`),
    how many configurations it confirmed, the pooled seed sd, the stage's cost (``timings.confirm_s`` /
    ``timings.tuner_fit_s``) and the knob that explains most of the score (:func:`top_knob`)."""
    from orchestrator.records.pareto import hypervolume

    rows = []
    for seed in seeds:
        for sampler in samplers:
            summary = summaries.get((sampler, seed))
            conf = confirmed_hv(summary, ref, box) if summary else None
            if conf is None:
                continue
            points = read_json(Path(summary["search_dir"]) / POINTS_FILE) or {}
            single = [(float(s_), float(p_)) for _, s_, p_ in points.get("complete", [])]
            t = summary.get("timings") or {}
            share = (f"{100 * float(t['confirm_s']) / float(t['tuner_fit_s']):.0f} %"
                     if t.get("confirm_s") and t.get("tuner_fit_s") else "–")
            sd = summary.get("noise_sd")
            n_conf = summary.get("confirmed_configurations", "–")
            rows.append([f"{sampler} s{seed}", f"{100 * hypervolume(single, ref) / box:.2f}" if single else "–",
                         f"{conf:.2f}", str(n_conf), f"{float(sd):.2f}" if sd is not None else "–", share,
                         top_knob(summary)])
    return rows


def shared_start(points: list[list[Optional[tuple[float, float]]]]) -> int:
    """How many leading trials the given searches (one seed, several samplers) have in common."""
    n = 0
    while all(len(p) > n for p in points) and all(p[n] == points[0][n] for p in points):
        n += 1
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="sst2", help="GLUE task (default: %(default)s)")
    p.add_argument("--samplers", default=",".join(SAMPLERS), help="comma-separated samplers (default: %(default)s)")
    p.add_argument("--seeds", default="0,1,2", help="search seeds (sampler and training) (default: %(default)s)")
    p.add_argument("--trials", type=int, default=32, help="trials per search (default: %(default)s)")
    p.add_argument("--checkpoints", default="8,16,24,32", help="trial counts reported in the table (default: %(default)s)")
    p.add_argument("--train-samples", type=int, default=1000, help="stratified training rows (default: %(default)s)")
    p.add_argument("--eval-samples", type=int, default=None, help="dev rows (default: the full dev set)")
    p.add_argument("--epochs", type=float, default=3.0, help="epochs per trial (default: %(default)s = 96 steps)")
    p.add_argument("--max-steps", type=int, default=None, help="steps per trial, overrides --epochs (default: unset)")
    p.add_argument("--evaluations", type=int, default=None, help="evaluations per trial (default: the search's, 4)")
    p.add_argument("--population-size", type=int, default=16, help="NSGA-II population (default: %(default)s)")
    p.add_argument("--budget", choices=("rank", "params"), default="rank", help="IncreLoRA budget knob searched (default: %(default)s)")
    p.add_argument("--space", choices=("default", "knobs"), default="default",
                   help="default: the search's default space (the method's knobs and the learning rate), results in "
                        "search_efficiency_lr/; knobs: the method's knobs alone (--knobs-only), results in search_efficiency/ "
                        "(default: %(default)s)")
    p.add_argument("--confirm", type=int, default=None,
                   help="the searches' --confirm (default: 3 with --space default, 0 with knobs, as those results were run)")
    p.add_argument("--model", default=None, help="model folder; 'tiny' = tiny random BERT for smoke runs (default: packaged MiniLM)")
    p.add_argument("--data-dir", default=None, help="GLUE TSV folder (default: $GLUE_DIR, else ../shared/data/glue)")
    p.add_argument("--max-concurrent", type=int, default=0, help="trials at once (default: the search's: CPUs / 1)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray runtime (default: all cores)")
    p.add_argument("--output-dir", default=None, help="searches folder (default: benchmarks/results/search_efficiency[-smoke])")
    p.add_argument("--plot", default=None, help="plot file (default: docs/search_efficiency.png; smoke: in the results folder)")
    p.add_argument("--report-only", action="store_true", help="table and plot from finished searches, run nothing")
    p.add_argument("--smoke", action="store_true",
                   help="1 seed per sampler, 3 trials, --max-steps 2 --train-samples 64 --eval-samples 32, 1 trial at a time")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from increlora.data import get_task, normalize_task

    args.task = normalize_task(args.task)
    samplers = csv_list(args.samplers)
    bad = [s for s in samplers if s not in SAMPLERS]
    if bad:
        print(f"error: unknown sampler(s) {', '.join(bad)}; choose from {', '.join(SAMPLERS)}", file=sys.stderr)
        return 2
    seeds = [int(s) for s in csv_list(args.seeds)]
    checkpoints = [int(c) for c in csv_list(args.checkpoints)]
    if args.smoke:
        seeds = seeds[:1]
        args.trials, args.max_steps, args.train_samples, args.eval_samples = 3, 2, 64, 32
        args.max_concurrent = args.max_concurrent or 2
        checkpoints = [1, 2, 3]
    checkpoints = [c for c in checkpoints if 1 <= c <= args.trials] or [args.trials]
    if args.confirm is None:
        args.confirm = (1 if args.smoke else 3) if args.space == "default" else 0
    resolve_inputs(args)
    stem = "search_efficiency" + ("_lr" if args.space == "default" else "")
    out_dir = (Path(args.output_dir) if args.output_dir else RESULTS / (stem + ("-smoke" if args.smoke else ""))).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_path = Path(args.plot) if args.plot else (out_dir.with_suffix(".png") if args.smoke else DOCS / f"{stem}.png")

    plan = [(s, seed) for seed in seeds for s in samplers]
    say(f"search efficiency: {args.task}, {len(plan)} searches x {args.trials} trials in {out_dir}")
    summaries: dict[tuple[str, int], dict] = {}
    notes: list[str] = []
    t_all = time.perf_counter()
    for sampler, seed in plan:
        if args.report_only:
            summary = read_json(out_dir / search_name(args.task, sampler, seed) / "search.json")
            what = "cached" if summary and summary.get("status") == "finished" else "not finished"
        else:
            what, summary = run_search(args, sampler, seed, out_dir)
        if summary and summary.get("status") == "finished":
            summaries[(sampler, seed)] = summary
        else:
            notes.append(f"{search_name(args.task, sampler, seed)}: {what}; left out of the table")
    say(f"searches done in {(time.perf_counter() - t_all) / 60:.1f} min")

    spec = get_task(args.task)
    chance, chance_text = chance_level(args.task, args.data_dir)
    shapes = module_shapes(args.model_path)
    if summaries:
        first = next(iter(summaries.values()))
        max_params, max_text = space_max_params(first, shapes)
        recorded = sorted({round(float(s.get("chance_score", chance)), 6) for s in summaries.values()})
        if args.eval_samples is not None:  # a dev subset (changes with the seed): its own chance level, the lowest one
            chance = float(recorded[0])
            chance_text = f"majority-class score on the searches' {args.eval_samples}-row dev subsets (lowest of {recorded})"
        elif recorded != [round(chance, 6)]:
            notes.append(f"the searches recorded chance score(s) {recorded} (their eval split) vs {chance:.4f} computed here")
    else:
        max_params, max_text = float("nan"), "no finished search"
    from orchestrator.records.pareto import default_reference

    ref = default_reference(chance, max_params)
    box = (100.0 - ref[0]) * ref[1]
    curves: dict[tuple[str, int], list[float]] = {}
    bests: dict[tuple[str, int], tuple[float, int]] = {}
    all_points: dict[tuple[str, int], list[Optional[tuple[float, float]]]] = {}
    for key, summary in summaries.items():
        points = all_points[key] = trial_points(summary, args.trials, out_dir / search_name(args.task, *key))
        curves[key] = [100.0 * v / box for v in hv_curve(points, ref)]
        done = [p for p in points if p is not None]
        bests[key] = (max((p[0] for p in done), default=float("nan")), len(done))
        over = [p for p in done if p[1] >= ref[1]]
        if over:
            notes.append(f"{search_name(args.task, *key)}: {len(over)} trial(s) at or above the reference params (add nothing)")

    header = ["sampler", *[f"HV % after {c}" for c in checkpoints], "best score", "complete trials", "seeds"]
    rows = []
    plot_curves: dict[str, list[float]] = {}
    for sampler in samplers:
        keys = [(sampler, s) for s in seeds if (sampler, s) in curves]
        cells = []
        for c in checkpoints:
            vals = [curves[k][c - 1] for k in keys if len(curves[k]) >= c]
            cells.append(med_range(vals) if len(vals) == len(keys) and vals else "–")
        rows.append([sampler, *cells, med_range([bests[k][0] for k in keys]),
                     med_range([bests[k][1] for k in keys], "{:.0f}"), f"{len(keys)}/{len(seeds)}"])
        if keys:
            n = min(len(curves[k]) for k in keys)
            plot_curves[f"{sampler} (median of {len(keys)})"] = [statistics.median(curves[k][i] for k in keys) for i in range(n)]
    def search_row(key: tuple[str, int]) -> list[str]:
        done = [p for p in all_points[key] if p is not None]
        scores = [p[0] for p in done]
        return [f"{key[0]} s{key[1]}", *[f"{curves[key][c - 1]:.2f}" if len(curves[key]) >= c else "–" for c in checkpoints],
                f"{min(scores):.2f}–{max(scores):.2f}" if scores else "–",
                f"{min(p[1] for p in done):,.0f}" if done else "–"]

    per_seed = [search_row((s, seed)) for seed in seeds for s in samplers if (s, seed) in curves]
    starts = [(seed, shared_start([all_points[(s, seed)] for s in samplers if (s, seed) in all_points]))
              for seed in seeds if sum((s, seed) in all_points for s in samplers) > 1]
    any_summary = next(iter(summaries.values()), {})
    lines = [
        f"# Search efficiency: hypervolume against trials ({spec.folder}, IncreLoRA "
        f"{'default space: knobs and learning rate' if args.space == 'default' else 'knobs-only space'})",
        "",
        f"{len(samplers)} samplers x {len(seeds)} seeds, {args.trials} trials each; "
        f"{any_summary.get('train_size', args.train_samples)} training rows, {any_summary.get('eval_size', '?')} dev rows, "
        f"{any_summary.get('total_steps', '?')} steps per trial, at most {any_summary.get('max_concurrent', '?')} trial(s) at a time; "
        f"model {args.model or 'packaged all-MiniLM-L6-v2'}. Space: {any_summary.get('space_text', '?')}.",
        "",
        f"Reference point: score {ref[0]:.4f} = chance level, {chance_text}; params {ref[1]:,.0f} = 1.1 x the space's "
        f"largest adapter ({max_text}). HV % = hypervolume / ((100 - {ref[0]:.2f}) x {ref[1]:,.0f}) x 100 "
        f"(box area {box:.6g} score-points x params). Cells: median [min–max] over seeds; COMPLETE trials among the "
        f"first k trial numbers; 'best score' = best GLUE score over all {args.trials} trials.",
        "",
        md_table(header, rows),
        "",
        "Per search:",
        "",
        md_table(["search", *[f"HV % after {c}" for c in checkpoints], "score range", "smallest adapter"], per_seed),
        "",
    ]
    if starts:
        lines += ["Trials the samplers' searches of a seed share at the start (same seeded start-up): "
                  + ", ".join(f"s{seed}: {n}" for seed, n in starts) + ".", ""]
    confirmed = confirmation_rows(summaries, seeds, samplers, ref, box)
    if confirmed:
        lines += [f"Confirmed fronts (each search's front configurations and those within its measured noise on "
                  f"{args.confirm} more seeds; means): hypervolume under the same reference point, the stage's "
                  "wall time as a share of the trials', and the knob that explains most of the score variance (fANOVA):", "",
                  md_table(["search", f"HV % single runs (all {args.trials})", "HV % confirmed front",
                            "confirmed configurations", "seed sd", "confirmation time / trials' time",
                            "largest share of the score variance"], confirmed), ""]
    vs = paired_vs(curves, samplers, seeds, args.trials, what=f", after {args.trials} trials")
    confirmed_curves = {k: [hv] for k, v in summaries.items() if (hv := confirmed_hv(v, ref, box)) is not None}
    vs += paired_vs(confirmed_curves, samplers, seeds, 1, what=", confirmed front") if confirmed_curves else []
    if vs and "random" in samplers:
        lines += ["Paired by seed, HV % minus random's:", "",
                  md_table(["", *[f"s{seed}" for seed in seeds]], vs), ""]
    goal_header, goal_rows, verdict = goal_check(curves, seeds, args.trials)
    if verdict:
        lines += ["Goal, paired by seed:", "", md_table(goal_header, goal_rows), "", verdict, ""]
    if plot_curves:
        from orchestrator.reporting.plots import hypervolume_plot

        hypervolume_plot(plot_curves, plot_path, title=f"{spec.folder}: hypervolume, median over seeds",
                         unit="% of the reference box")
        shown = plot_path.resolve()
        lines.append(f"Plot: {shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else shown}")
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    write_report(out_dir.with_suffix(".md"), "\n".join(lines))
    return 0 if len(summaries) == len(plan) else 1


if __name__ == "__main__":
    sys.exit(main())
