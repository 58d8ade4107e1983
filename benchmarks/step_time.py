"""Median training-step time of IncreLoRA vs peft LoRA, peft AdaLoRA and full fine-tuning.

CPU, the packaged MiniLM encoder, batch 32, sequence length 64, all six module types, the same
final adapter parameters (IncreLoRA's budget is set in parameters to LoRA r=2's count). Every
variant runs through the trainer's own ``train_step`` and is measured in the same process, so
the printed ratios against peft LoRA are what matters (absolute times drift between machines).

    python benchmarks/step_time.py [--steps 12] [--warmup 3] [--threads 2]
    python benchmarks/step_time.py --precision both --threads 1   # bf16 vs fp32 per variant, interleaved

``--precision both`` times every variant in fp32 and in bf16 (frozen base weights in bf16, bf16 autocast:
``increlora.precision``) in the same interleaved rounds and prints the fp32 / bf16 step-time ratio per variant.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from increlora.adapter_method import AdapterMethod, head_parameters
from increlora.backbone import default_model_path, load_model
from increlora.run_config import build_run_config
from increlora.lr_schedule import GroupLinearSchedule
from increlora.precision import store_frozen_weights_in_bf16
from increlora.trainer import build_method, train_step


class FullFineTune(AdapterMethod):
    """Every parameter trainable: the reference cost of a dense weight gradient everywhere."""

    name = "full"

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.head_modules = ["classifier", "pooler"]
        for p in model.parameters():
            p.requires_grad_(True)

    def param_groups(self, weight_decay: float) -> list[dict]:
        return [{"params": [p for p in self.model.parameters()], "weight_decay": weight_decay, "start_step": 0}]

    def allocation(self) -> dict[str, int]:
        return {}

    def adapter_param_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters()) - sum(p.numel() for p in head_parameters(self.model, self.head_modules))

    def save(self, out_dir):  # pragma: no cover - not used
        raise NotImplementedError


def make(kind: str, total_steps: int, budget_params: int) -> AdapterMethod:
    model = load_model(default_model_path(), num_labels=2, is_regression=False)
    if kind == "full":
        return FullFineTune(model)
    knobs: dict = {"method": kind, "learning_rate": 1e-3}
    if kind == "lora":
        knobs["r"] = 2
    elif kind == "adalora":
        knobs.update(init_r=3, target_r=2.0)
    elif kind == "increlora-growing":  # growth never ends within the measured steps
        knobs.update(method="increlora", budget_params=budget_params, init_warmup=10_000, incre_interval=10_000)
    elif kind in ("increlora-grown", "increlora-run"):
        warm = 0 if kind == "increlora-grown" else int(0.05 * total_steps)
        interval = 1 if kind == "increlora-grown" else max(1, int(round(0.03 * total_steps)))
        top_h = 36 if kind == "increlora-grown" else 3
        knobs.update(method="increlora", budget_params=budget_params, init_warmup=warm, incre_interval=interval, top_h=top_h)
    cfg = build_run_config(knobs)
    return build_method(cfg, model, total_steps)


class Runner:
    """One variant's model, optimizer and step counter; ``step()`` times one training step."""

    def __init__(self, method: AdapterMethod, total_steps: int, batch: dict, precision: str = "fp32") -> None:
        self.method = method
        self.precision = precision
        if precision == "bf16":
            store_frozen_weights_in_bf16(method.model)
        groups = method.param_groups(0.0)
        for g in groups:
            g["base_lr"] = 1e-3
        self.opt = torch.optim.AdamW(groups, lr=1e-3)
        self.schedule = GroupLinearSchedule(warmup_steps=2, total_steps=total_steps)
        self.batch = batch
        self.n = 0
        method.model.train()

    def step(self) -> float:
        t0 = time.perf_counter()
        train_step(self.method, self.opt, self.schedule, self.batch, self.n, max_grad_norm=1.0, device=torch.device("cpu"),
                   precision=self.precision)
        self.n += 1
        return time.perf_counter() - t0


def interleaved(runners: dict[str, Runner], rounds: int) -> dict[str, list[float]]:
    """Round-robin one step of each variant per round, so machine noise hits all of them alike."""
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(rounds):
        for kind, runner in runners.items():
            times[kind].append(runner.step())
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=12, help="measured steps per variant (median reported)")
    ap.add_argument("--warmup", type=int, default=3, help="unmeasured steps first")
    ap.add_argument("--run-steps", type=int, default=60, help="steps of the whole-run comparison")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--profile", action="store_true",
                    help="with --precision both: also print torch.profiler's top operations of the bf16 growing IncreLoRA step")
    ap.add_argument("--batch-tokens", type=int, default=64, help="tokens per row of the synthetic batch (default: %(default)s)")
    ap.add_argument("--precision", choices=("fp32", "both"), default="fp32",
                    help="fp32 (the comparison against LoRA) or both (every variant in fp32 and bf16, interleaved)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batch = {
        "input_ids": torch.randint(1000, 30000, (32, args.batch_tokens)),
        "attention_mask": torch.ones(32, args.batch_tokens, dtype=torch.long),
        "token_type_ids": torch.zeros(32, args.batch_tokens, dtype=torch.long),
        "labels": torch.randint(0, 2, (32,)),
    }
    budget = make("lora", 1000, 0).adapter_param_count()
    print(f"MiniLM-L6, CPU, {args.threads} threads, batch 32 x {args.batch_tokens} tokens; budget {budget:,} adapter params (LoRA r=2, 6 module types)")
    if args.precision == "both":
        precision_table(args, batch, budget)
        return
    kinds = ("lora", "adalora", "full", "increlora-growing", "increlora-grown")
    runners = {k: Runner(make(k, 1000, budget), 1000, batch) for k in kinds}
    grown = runners["increlora-grown"]
    for _ in range(3):  # one growth round per step: the budget is reached before measuring
        grown.step()
    assert not grown.method.growing, "growth should be over"
    interleaved(runners, args.warmup)
    times = interleaved(runners, args.steps)
    base = statistics.median(times["lora"])
    print(f"\n{'variant':<20}{'median step s':>14}{'x LoRA':>9}{'adapter params':>16}{'trainable now':>15}")
    for kind in kinds:
        med = statistics.median(times[kind])
        m = runners[kind].method
        print(f"{kind:<20}{med:>14.3f}{med / base:>9.2f}{m.adapter_param_count():>16,}{m.trainable_param_count():>15,}")
    del runners
    whole = {
        "lora": Runner(make("lora", args.run_steps, budget), args.run_steps, batch),
        "increlora": Runner(make("increlora-run", args.run_steps, budget), args.run_steps, batch),
    }
    run_times = interleaved(whole, args.run_steps)
    t_inc, t_lora = sum(run_times["increlora"]), sum(run_times["lora"])
    inc = whole["increlora"].method
    end = inc.schedule_info()["growth_end_step"]
    print(
        f"\nwhole run of {args.run_steps} steps, interleaved (IncreLoRA growth ends at step {end}): "
        f"IncreLoRA {t_inc:.1f}s, LoRA {t_lora:.1f}s, ratio {t_inc / t_lora:.2f}x; "
        f"final IncreLoRA adapter params {inc.adapter_param_count():,}"
    )


def precision_table(args: argparse.Namespace, batch: dict, budget: int) -> None:
    """Each variant in fp32 and bf16, the same interleaved rounds: median step and the fp32 / bf16 ratio."""
    kinds = ("lora", "adalora", "increlora-growing", "increlora-grown")
    runners = {}
    for kind in kinds:
        for precision in ("fp32", "bf16"):
            torch.manual_seed(0)
            runners[(kind, precision)] = Runner(make(kind, 1000, budget), 1000, batch, precision)
    for precision in ("fp32", "bf16"):
        for _ in range(3):  # the grown variant reaches its budget before measuring
            runners[("increlora-grown", precision)].step()
    interleaved(runners, args.warmup)
    times = interleaved(runners, args.steps)
    print(f"\n{'variant':<20}{'fp32 median s':>14}{'bf16 median s':>15}{'fp32 / bf16':>13}")
    for kind in kinds:
        f32, b16 = statistics.median(times[(kind, "fp32")]), statistics.median(times[(kind, "bf16")])
        print(f"{kind:<20}{f32:>14.3f}{b16:>15.3f}{f32 / b16:>12.2f}x")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        runner = runners[("increlora-growing", "bf16")]
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                runner.step()
        print("\nbf16 increlora-growing, torch.profiler, self CPU time by operation:")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
