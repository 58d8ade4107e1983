"""Does the bf16 score product change IncreLoRA's decisions? The same run with the product in bf16 and in fp32.

IncreLoRA's importance score needs the dense product g^T x per adapted module. Where the hardware
multiplies bf16 natively (CUDA, CPUs with AMX / AVX512-BF16) the layer computes it in bf16 with fp32
accumulation (``increlora.methods.increlora.layer.score_product_dtype``); elsewhere in fp32. This script trains the same
IncreLoRA run (same seed, rows, order, knobs: the fidelity regime's SST-2 size by default) twice, once
with each product, and prints per seed: the final score, whether every growth round picked the same
modules, and where the final allocations differ.

    python benchmarks/score_precision.py [--task sst2] [--train-samples 1000] [--epochs 3] [--seeds 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import csv_list, md_table, resolve_inputs, say  # noqa: E402


def run_once(knobs: dict[str, Any], data: Any, tok: Any, product: str) -> Any:
    """One training run with the score product forced to ``product`` (``bf16`` or ``fp32``)."""
    import torch

    import increlora.methods.increlora.layer as layer
    from increlora.run_config import build_run_config
    from increlora.trainer import train

    forced = torch.bfloat16 if product == "bf16" else None
    saved = layer.score_product_dtype
    layer.score_product_dtype = lambda device: forced  # what "auto" resolves to in every layer of this run
    try:
        return train(build_run_config(knobs), data, tokenizer=tok)
    finally:
        layer.score_product_dtype = saved


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--train-samples", type=int, default=1000)
    ap.add_argument("--eval-samples", type=int, default=None, help="dev rows (default: all)")
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--learning-rate", type=float, default=3e-3)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=None)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args(argv)
    resolve_inputs(args)
    import torch

    from increlora.backbone import load_tokenizer
    from increlora.data import prepare_data
    from increlora.run_config import build_run_config
    from increlora.methods.increlora.layer import score_product_dtype
    from increlora.task_defaults import task_defaults

    torch.set_num_threads(args.threads)
    native = score_product_dtype(torch.device("cpu"))
    say(f"this CPU: the score product runs in {'bf16' if native else 'fp32'} by default")
    tok = load_tokenizer(args.model_path)
    rows = []
    for seed in [int(s) for s in csv_list(args.seeds)]:
        knobs = task_defaults(args.task, "increlora", "cpu")  # the cpu profile: fair schedule as fractions of the run
        knobs.update(task=args.task, method="increlora", model=args.model_path, data_dir=args.data_dir,
                     train_samples=args.train_samples, eval_samples=args.eval_samples, epochs=args.epochs,
                     max_steps=args.max_steps, learning_rate=args.learning_rate, target_rank=2, seed=seed,
                     device="cpu", progress=False, save_adapter=False, output_dir=None)

        max_length = build_run_config(knobs).train.max_length
        data = prepare_data(args.task, tok, data_dir=args.data_dir, train_samples=args.train_samples,
                            eval_samples=args.eval_samples, max_length=max_length, seed=seed)
        res = {p: run_once(knobs, data, tok, p) for p in ("bf16", "fp32")}
        events = {p: [(e.get("step"), e.get("module"), e.get("added")) for e in r.growth_events] for p, r in res.items()}
        rounds = len({e[0] for e in events["fp32"]})
        differ = {k: (res["bf16"].allocation[k], v) for k, v in res["fp32"].allocation.items() if res["bf16"].allocation.get(k) != v}
        rows.append([seed, res["bf16"].steps, rounds, "yes" if events["bf16"] == events["fp32"] else "no",
                     f"{res['bf16'].glue_score:.2f}", f"{res['fp32'].glue_score:.2f}",
                     ", ".join(f"{k} {a}/{b}" for k, (a, b) in differ.items()) or "none"])
        say(f"seed {seed} done")
    print(md_table(["seed", "steps", "growth rounds", "same decisions", "score bf16 product", "score fp32 product",
                    "allocation differences (bf16/fp32)"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
