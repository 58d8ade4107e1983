"""Orchestration overhead: what an 8-trial search spends besides training and evaluating.

Runs ``python -m orchestrator.search --trials 8`` (CoLA, the search's CPU defaults: 1,000 training
rows, 500 dev rows, 2 epochs = 64 steps, 4 evaluations, 2 one-CPU trials at a time on 2 cores,
adapters saved and logged) as a subprocess, timing it from launch to exit (W). The MLflow store
is created before the clock starts (a first-ever search also pays MLflow's table creation, a
one-off of a few seconds that a steady-state search does not).

Useful work U = sum over trials of the trainer's ``train_time_s + eval_time_s`` (from each
trial's ``trials/tNNN/result.json``, written by ``increlora.trainer.train``). With c trials at a
time (search.json ``max_concurrent``), U / c is the wall time c slots would need doing nothing but
training and evaluating back to back, so

    overhead = (W - U / c) / W        target: <= 5 % of W

Where the rest goes (wall seconds; slot-seconds of the trials are divided by c):
- Python start and imports: launch -> ``run_search`` starts (search.json ``timings.started_unix``);
- driver phases from ``timings`` (``orchestrator.running.driver.PhaseTimer``): checks (arguments, space,
  presets, tracking URI, storage), Ray start, data preparation (load, subsample, tokenise once),
  setup (space, MLflow parent run, Tuner, data into the object store), tuner.fit, finalize (front,
  plots, presets, MLflow parent logging);
- inside tuner.fit, per trial: model and tokenizer loading and adapter setup (trainer ``setup_time_s``), adapter
  save and result.json (trainer wall - setup - train - eval), trial-side MLflow logging (the MLflow
  child run's span from creation to termination - trainer wall: params, final metrics, allocation,
  result.json and adapter artifacts), the rest of the trial function (imports in a fresh worker,
  MLflow client set-up and run creation, the closing Tune report: Ray's ``time_total_s`` at the
  closing report - the child run's span; one-off per worker, as actors are reused); the remainder of
  tuner.fit is Tune scheduling, actor start and idle slots;
- Ray shutdown and exit: ``timings.finished_unix`` -> process exit.
The per-evaluation MLflow metrics and ``tune.report`` calls happen inside the training loop and are
counted in ``train_time_s`` by the trainer's clock, so U includes them (the overhead is understated
by that much: a few sqlite writes per evaluation).

Full run (about 5-8 min on 2 idle cores; a new search folder each time under
``benchmarks/results/overhead/``; the table goes to stdout and ``benchmarks/results/overhead.md``):

    python benchmarks/overhead.py

Re-analyse a finished run without re-running: ``--analyze benchmarks/results/overhead/<name>``.
Smoke test (2 trials, 2 steps, 64 training / 32 dev rows; benchmarks/results/overhead-smoke/):

    python benchmarks/overhead.py --smoke [--model tiny]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    RESULTS,
    ROOT,
    md_table,
    read_json,
    resolve_inputs,
    say,
    write_json,
    write_report,
)

LAUNCH_FILE = "overhead_launch.json"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=8, help="trials of the search (default: %(default)s)")
    p.add_argument("--cold", action="store_true",
                   help="the baseline without the warm start (INCRELORA_COLD_START=1: data tokenised after Ray's start, "
                        "workers import on their first trial)")
    p.add_argument("--confirm", type=int, default=0,
                   help="the search's --confirm (default: %(default)s: the overhead of the trials themselves; a confirmation "
                        "stage shows as its own row and counts as overhead in the ratio)")
    p.add_argument("--task", default="cola", help="GLUE task (default: %(default)s)")
    p.add_argument("--train-samples", type=int, default=None, help="training rows (default: the search's, 1000 on CPU)")
    p.add_argument("--eval-samples", type=int, default=None, help="dev rows (default: the search's, 500 on CPU)")
    p.add_argument("--epochs", type=float, default=None, help="epochs per trial (default: the search's, 2 on CPU)")
    p.add_argument("--max-steps", type=int, default=None, help="steps per trial (default: unset)")
    p.add_argument("--model", default=None, help="model folder; 'tiny' = tiny random BERT for smoke runs (default: packaged MiniLM)")
    p.add_argument("--data-dir", default=None, help="GLUE TSV folder (default: $GLUE_DIR, else ../shared/data/glue)")
    p.add_argument("--max-concurrent", type=int, default=0, help="trials at once (default: the search's: CPUs / 1)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray runtime (default: all cores)")
    p.add_argument("--output-dir", default=None, help="searches folder (default: benchmarks/results/overhead[-smoke])")
    p.add_argument("--name", default=None, help="search name (default: overhead-<trials>t-<date>-<time>)")
    p.add_argument("--target", type=float, default=5.0, help="overhead target in %% of wall time (default: %(default)s)")
    p.add_argument("--analyze", default=None, metavar="SEARCH_DIR", help="analyse this finished overhead run, run nothing")
    p.add_argument("--smoke", action="store_true", help="2 trials, --max-steps 2 --train-samples 64 --eval-samples 32")
    return p


# ----------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------


def warm_tracking(uri: str, task: str, artifact_root: str) -> None:
    """Create the MLflow store and the search's experiment before the clock starts."""
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    from orchestrator.tracking import mlflow_runs

    mlflow_runs.ensure_experiment(uri, f"increlora-{task}", artifact_root)


def launch(args: argparse.Namespace, out_dir: Path) -> Path:
    name = args.name or f"overhead-{args.trials}t-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    sdir = out_dir / name
    if sdir.exists():
        raise SystemExit(f"error: {sdir} exists; pass another --name or --analyze {sdir}")
    uri = f"sqlite:///{out_dir / 'mlflow.db'}"
    warm_tracking(uri, args.task, str(out_dir / "mlartifacts"))
    cmd = [sys.executable, "-m", "orchestrator.search", "--task", args.task, "--trials", str(args.trials),
           "--name", name, "--output-dir", str(out_dir), "--tracking-uri", uri, "--confirm", str(args.confirm)]
    for flag, value in (("--train-samples", args.train_samples), ("--eval-samples", args.eval_samples),
                        ("--epochs", args.epochs), ("--max-steps", args.max_steps), ("--model", args.model_path),
                        ("--data-dir", args.data_dir), ("--num-cpus", args.num_cpus),
                        ("--max-concurrent", args.max_concurrent or None)):
        if value is not None:
            cmd += [flag, str(value)]
    log = out_dir / f"{name}.log"
    say(f"overhead: running an {args.trials}-trial search {name} (output in {log})")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if args.cold:
        env["INCRELORA_COLD_START"] = "1"
    with open(log, "w") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        launch_unix = time.time()
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, cwd=out_dir, stdout=fh, stderr=subprocess.STDOUT, env=env).returncode
        wall = time.perf_counter() - t0
    say(f"overhead: search exited with {rc} after {wall:.1f} s")
    if not sdir.is_dir():
        raise SystemExit(f"error: the search left no folder {sdir}; see {log}")
    write_json(sdir / LAUNCH_FILE, {"launch_unix": launch_unix, "wall_s": wall, "returncode": rc, "command": cmd,
                                    "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None})
    return sdir


# ----------------------------------------------------------------------------------------------
# Analysis
# ----------------------------------------------------------------------------------------------


def ray_totals(ray_path: Path) -> dict[int, float]:
    """Trial number -> Ray's ``time_total_s`` at the trial's closing (``final``) report."""
    out: dict[int, float] = {}
    for path in Path(ray_path).glob("*/result.json"):
        last = None
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if row.get("final"):
                last = row
        if last is not None and last.get("trial_number") is not None:
            out[int(last["trial_number"])] = float(last["time_total_s"])
    return out


def mlflow_spans(summary: dict[str, Any]) -> dict[int, float]:
    """Trial number -> seconds from its MLflow child run's creation to its termination (client clock)."""
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    from orchestrator.tracking import mlflow_runs

    out: dict[int, float] = {}
    try:
        runs = mlflow_runs.child_runs(summary["tracking_uri"], summary["experiment_id"], summary["parent_run_id"])
    except Exception as exc:  # the table still stands without the split
        say(f"overhead: cannot read the MLflow child runs ({type(exc).__name__}: {exc})")
        return out
    for run in runs:
        number = run.data.tags.get("trial")
        if number is not None and number.lstrip("-").isdigit() and run.info.end_time and run.info.start_time:
            out[int(number)] = (run.info.end_time - run.info.start_time) / 1000.0
    return out


def analyze(sdir: Path, target: float) -> tuple[str, bool]:
    summary = read_json(sdir / "search.json")
    launch_rec = read_json(sdir / LAUNCH_FILE)
    if not summary or not launch_rec:
        raise SystemExit(f"error: {sdir} lacks search.json or {LAUNCH_FILE} (not an overhead run?)")
    timings = summary.get("timings")
    if not timings:
        raise SystemExit(f"error: {sdir}/search.json has no 'timings' (run with an orchestrator.search that records them)")
    W = float(launch_rec["wall_s"])
    launch_unix = float(launch_rec["launch_unix"])
    c = int(summary.get("max_concurrent") or 1)
    totals = ray_totals(Path(summary["ray_path"]))
    spans = mlflow_spans(summary)
    trials = []
    for path in sorted((sdir / "trials").glob("t*/result.json")):
        r = read_json(path) or {}
        number = int(path.parent.name[1:]) if path.parent.name[1:].isdigit() else None
        tr, ev, su, tw = (float(r.get(k, 0.0)) for k in ("train_time_s", "eval_time_s", "setup_time_s", "wall_time_s"))
        ray_total = totals.get(number) if number is not None else None
        span = spans.get(number) if number is not None else None
        # MLflow: the child run's span minus the training inside it; the rest of Ray's time for the
        # trial (outside the span) is the trial function's imports and the closing Tune report.
        mlflow = max(0.0, span - tw) if span is not None else None
        rest = None
        if ray_total is not None:
            rest = max(0.0, ray_total - (span if span is not None else tw))
        trials.append({"trial": path.parent.name, "train": tr, "eval": ev, "setup": su, "save": max(0.0, tw - su - tr - ev),
                       "trainer_wall": tw, "ray_total": ray_total, "mlflow": mlflow, "rest": rest,
                       "score": r.get("glue_score"), "steps": r.get("steps")})
    U = sum(t["train"] + t["eval"] for t in trials)
    S_setup = sum(t["setup"] for t in trials)
    S_save = sum(t["save"] for t in trials)
    S_mlflow = sum(t["mlflow"] or 0.0 for t in trials)
    S_rest = sum(t["rest"] or 0.0 for t in trials)
    missing_ray = [t["trial"] for t in trials if t["ray_total"] is None]
    missing_span = [t["trial"] for t in trials if t["mlflow"] is None]
    pre = float(timings["started_unix"]) - launch_unix
    post = launch_unix + W - float(timings.get("finished_unix", launch_unix + W))
    fit = float(timings.get("tuner_fit_s", 0.0))
    idle = fit - (U + S_setup + S_save + S_mlflow + S_rest) / c
    overhead = (W - U / c) / W if W > 0 else float("nan")
    passed = 100.0 * overhead <= target

    def row(label: str, seconds: float, how: str) -> list[str]:
        return [label, f"{seconds:.1f}", f"{100.0 * seconds / W:.1f}%", how]

    rows = [
        row("Python start and imports", pre, "launch -> timings.started_unix"),
        row("checks (arguments, space, tracking URI, storage)", float(timings.get("checks_s", 0.0)), "timings.checks_s"),
        row("Ray start", float(timings.get("ray_start_s", 0.0)), "timings.ray_start_s"),
        row("data preparation (load, subsample, tokenise once)", float(timings.get("data_prep_s", 0.0)), "timings.data_prep_s"),
        row("search setup (space, MLflow parent run, Tuner, object store)", float(timings.get("setup_s", 0.0)), "timings.setup_s"),
        row("tuner.fit: training + evaluation (useful work U/c)", U / c, f"sum(train_time_s + eval_time_s) / {c}"),
        row("tuner.fit: model + tokenizer loading, adapter setup", S_setup / c, f"sum(setup_time_s) / {c}"),
        row("tuner.fit: adapter save + result.json", S_save / c, f"sum(trainer wall - setup - train - eval) / {c}"),
        row("tuner.fit: MLflow calls within the trial's child run", S_mlflow / c, f"sum(MLflow child run span - trainer wall) / {c}"),
        row("tuner.fit: trial function outside its child run (worker imports, MLflow client + run creation, closing report)", S_rest / c, f"sum(Ray time_total_s - child run span) / {c}"),
        row("tuner.fit: Tune scheduling, actor start, idle slots", idle, "timings.tuner_fit_s - the five lines above"),
        row("confirmation stage (its runs counted whole, not split)", float(timings.get("confirm_s", 0.0)), "timings.confirm_s"),
        row("finalize (front, plots, presets, MLflow parent logging)", float(timings.get("finalize_s", 0.0)), "timings.finalize_s"),
        row("search.json, summary print, Ray shutdown, exit", post, "timings.finished_unix -> process exit"),
    ]
    accounted = sum(float(r[1]) for r in rows)
    # A projection, not a measurement: a trial costs u (training + evaluation) plus q, the median
    # of its own orchestration (model load, save, MLflow, report; the median leaves out each worker's
    # one-off imports); everything else in W is paid once per search (F).
    import statistics

    n = max(1, len(trials))
    u = U / n
    q = statistics.median([t["setup"] + t["save"] + (t["mlflow"] or 0.0) + (t["rest"] or 0.0) for t in trials]) if trials else 0.0
    fixed = max(0.0, W - n * (u + q) / c)

    def projected(trials_n: int) -> float:
        return 100.0 * (fixed + trials_n * q / c) / (fixed + trials_n * (u + q) / c)
    rows.append(["**total = search wall time W**", f"**{W:.1f}**", "100%", f"benchmark clock (components sum to {accounted:.1f})"])
    per_trial = [[t["trial"], f"{t['train']:.1f}", f"{t['eval']:.1f}", f"{t['setup']:.1f}", f"{t['save']:.1f}",
                  "–" if t["mlflow"] is None else f"{t['mlflow']:.1f}", "–" if t["rest"] is None else f"{t['rest']:.1f}",
                  "–" if t["ray_total"] is None else f"{t['ray_total']:.1f}",
                  "–" if t["score"] is None else f"{float(t['score']):.2f}"] for t in trials]
    counts = summary.get("counts", {})
    lines = [
        f"# Orchestration overhead of a {summary.get('trials')}-trial search ({summary.get('name')})",
        "",
        f"{summary.get('task')} {summary.get('method')}, {summary.get('train_size')} training rows, {summary.get('eval_size')} dev rows, "
        f"{summary.get('total_steps')} steps and {summary.get('max_evaluations')} evaluations per trial, c = {c} trial(s) at a time "
        f"({summary.get('cpus_per_trial')} CPU each, cluster {summary.get('cluster')}); trials: "
        + ", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items()))
        + f"; load average at the end {launch_rec.get('load_average')}.",
        "",
        f"**Overhead = (W - U/c) / W = ({W:.1f} - {U:.1f}/{c}) / {W:.1f} = {100.0 * overhead:.1f}% of wall time** "
        f"(target <= {target:g}%: {'PASS' if passed else 'FAIL'}).",
        "",
        f"W = the search's wall time, launch to exit of `python -m orchestrator.search` ({W:.1f} s). "
        f"U = sum over the {len(trials)} trials of the trainer's train_time_s + eval_time_s ({U:.1f} s): the time spent in "
        f"optimizer steps and dev-set evaluations. U/c ({U / c:.1f} s) is the wall time {c} slot(s) would need doing only that, "
        "back to back; everything else in W is orchestration (startup, Ray, data, model loading, logging, scheduling, "
        "idle slots, finalising). Per-evaluation MLflow metrics and tune.report calls run inside the training loop and are "
        "counted in train_time_s (so in U), which understates the overhead by those few sqlite writes.",
        "",
        md_table(["component", "seconds", "share of W", "measured as"], rows, ["l", "r", "r", "l"]),
        "",
        f"Where it comes from: a trial's own orchestration (model load, save, MLflow, report; median over trials) is "
        f"{q:.1f} s against {u:.1f} s of training and evaluation; the rest, F = W - n(u+q)/c = {fixed:.1f} s, is paid once "
        "per search (start-up, Ray, data, each worker's first imports, idle slots, finalising). "
        "Projected overhead (F + N q/c) / (F + N (u+q)/c) with trials like these (same c), a projection, not a measurement: "
        + ", ".join(f"{k} trials {projected(k):.1f}%" for k in (8, 32, 64, 256))
        + f"; with trials 4x longer, 8 trials: {100.0 * (fixed + 8 * q / c) / (fixed + 8 * (4 * u + q) / c):.1f}%.",
        "",
        "Per trial (seconds; trainer clock, except Ray total):",
        "",
        md_table(["trial", "train", "eval", "model load", "save", "MLflow", "imports + report", "Ray total", "score"], per_trial),
    ]
    if missing_ray:
        lines += ["", f"Ray's result.json lacked a closing report for {', '.join(missing_ray)}: their imports/report time is not counted."]
    if missing_span:
        lines += ["", f"No finished MLflow child run for {', '.join(missing_span)}: their MLflow time falls under imports + report."]
    return "\n".join(lines), passed


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.smoke:
        args.trials = 2
        args.max_steps, args.train_samples, args.eval_samples = 2, 64, 32
    resolve_inputs(args, model=not args.analyze)
    if args.analyze:
        sdir = Path(args.analyze).resolve()
    else:
        out_dir = (Path(args.output_dir) if args.output_dir else RESULTS / ("overhead-smoke" if args.smoke else "overhead")).resolve()
        out_dir.mkdir(parents=True, exist_ok=True)
        sdir = launch(args, out_dir)
    text, passed = analyze(sdir, args.target)
    write_report(sdir.parent.with_suffix(".md"), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
