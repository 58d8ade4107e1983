"""GPU packing: trials per hour with 1, 2, 4 and 8 trials sharing one GPU (``--gpus-per-trial 1/0.5/0.25/0.125``).

Each setting is one real search (``python -m orchestrator.search``) with the packaged encoder on the
same task, trial size, seed and number of trials; trials per hour come from the search's own
``tuner_fit`` time (``search.json`` timings), so Ray start, data preparation and finalisation are left
out. A trial gets ``--cpus-per-trial`` CPUs (default 1); the number of trials at once is
``GPUs / gpus-per-trial`` as long as the machine has the CPUs. It prints one table and writes it to
``benchmarks/results/gpu_packing.md``.

    python benchmarks/gpu_packing.py                      # cola, 16 trials per setting
    python benchmarks/gpu_packing.py --task sst2 --trials 32 --packing 1,2,4,8

Without a CUDA GPU it refuses to run (one line, exit code 2): CPU timings say nothing about packing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, csv_list, md_table, read_json, resolve_inputs, say, write_report  # noqa: E402


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def run_setting(per_gpu: int, args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    name = f"pack{per_gpu}"
    cmd = [sys.executable, "-m", "orchestrator.search", "--task", args.task, "--trials", str(args.trials), "--name", name,
           "--output-dir", str(out_dir), "--tracking-uri", f"sqlite:///{out_dir / 'mlflow.db'}", "--no-save-adapters",
           "--gpus-per-trial", f"{1.0 / per_gpu:g}", "--cpus-per-trial", str(args.cpus_per_trial), "--seed", str(args.seed),
           "--profile", args.profile]
    if args.model_path:
        cmd += ["--model", args.model_path]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    say(f"{per_gpu} trial(s) per GPU: {args.trials} trials ...")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=out_dir, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: the search with {per_gpu} trials per GPU failed: {proc.stderr.strip().splitlines()[-1:]}")
    summary = read_json(out_dir / name / "search.json") or {}
    fit = float(summary["timings"]["tuner_fit_s"])
    scores = [row["glue_score"] for row in summary.get("front", [])]
    return {"per_gpu": per_gpu, "gpus_per_trial": 1.0 / per_gpu, "concurrent": summary["max_concurrent"],
            "trials": args.trials, "tuner_fit_s": fit, "wall_s": time.perf_counter() - t0,
            "trials_per_hour": 3600.0 * args.trials / fit, "best_score": max(scores) if scores else None}


def table(rows: list[dict[str, Any]], gpus: int, gpu_name: str) -> str:
    base = rows[0]["trials_per_hour"]
    body = [[r["per_gpu"], f"{r['gpus_per_trial']:g}", r["concurrent"], r["trials"], f"{r['tuner_fit_s']:.0f}",
             f"{r['trials_per_hour']:.0f}", f"{r['trials_per_hour'] / base:.2f}x",
             "-" if r["best_score"] is None else f"{r['best_score']:.2f}"] for r in rows]
    return (f"# GPU packing on {gpus} x {gpu_name}\n\n"
            + md_table(["trials per GPU", "--gpus-per-trial", "at once", "trials", "tuner.fit s", "trials/hour",
                        "vs 1 per GPU", "best score"], body))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--task", default="cola", help="GLUE task (default: %(default)s)")
    p.add_argument("--trials", type=int, default=16, help="trials per setting (default: %(default)s)")
    p.add_argument("--packing", default="1,2,4,8", help="trials per GPU to compare (default: %(default)s)")
    p.add_argument("--cpus-per-trial", type=int, default=1, help="CPUs per trial (default: %(default)s)")
    p.add_argument("--profile", default="cpu", choices=("cpu", "paper"),
                   help="trial size: cpu (4,000 rows, 3 epochs) or paper (the official scripts) (default: %(default)s)")
    p.add_argument("--seed", type=int, default=42, help="seed of every search (default: %(default)s)")
    p.add_argument("--model", default=None, help="model folder or hub name (default: the packaged MiniLM)")
    p.add_argument("--data-dir", default=None, help="GLUE TSV folder (default: $GLUE_DIR or ../shared/data/glue)")
    p.add_argument("--output", default=None, help="report file (default: benchmarks/results/gpu_packing.md)")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    gpus = gpu_count()
    if gpus == 0:
        print("error: no CUDA GPU here: gpu_packing.py measures trials per hour on a GPU (run it on a GPU machine)",
              file=sys.stderr)
        return 2
    import torch

    resolve_inputs(args)
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu-packing-") as tmp:
        for per_gpu in [int(x) for x in csv_list(args.packing)]:
            rows.append(run_setting(per_gpu, args, Path(tmp)))
    text = table(rows, gpus, torch.cuda.get_device_name(0))
    write_report(Path(args.output) if args.output else RESULTS / "gpu_packing.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
