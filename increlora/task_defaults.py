"""Per-task default knobs: the paper's GLUE scripts (spec section 2.2) and a CPU profile.

``paper``: DeBERTaV3-base settings of the official scripts, for full runs on a GPU.
``cpu``: settings that finish in about four minutes on 2 CPU cores with the packaged MiniLM and
still learn: a seeded 4,000-example stratified training subset, 3 epochs (375 steps), sequence length
64 (128 for sentence pairs), learning rate 3e-3 (LoRA: 3e-4) and alpha 32 for the short run, and the growth
schedule scaled to the run (warm-up 5 %, one round every 3 % of the steps but never more often than
the score EMA's memory 2/(1-beta1), and as many modules a round as growth needs to end at 40 % of
training, as in the paper's scripts). Measured on CoLA: MCC ~13 (the majority-class baseline is 0);
with fewer than ~250 steps this encoder stays at the majority class on CoLA.
``auto`` picks ``paper`` on CUDA and ``cpu`` otherwise.
"""

from __future__ import annotations

from typing import Any

PROFILES = ("auto", "paper", "cpu")

# task: lr, epochs, max_len, init_warmup (= incre_interval), top_h, alpha, lora_dropout, orth, warmup, cls_dropout, wd, eval_steps
_PAPER_R2: dict[str, tuple] = {
    "cola": (8e-4, 25, 64, 100, 3, 32, 0.0, 0.1, 100, 0.10, 0.0, 100),
    "sst2": (8e-4, 24, 128, 1000, 5, 16, 0.1, 0.1, 1000, 0.0, 0.01, 1000),
    "mrpc": (1e-3, 30, 320, 100, 6, 32, 0.3, 0.1, 100, 0.0, 0.01, 100),
    "qqp": (4e-4, 7, 320, 1000, 3, 16, 0.0, 0.1, 1000, 0.15, 0.01, 1000),
    "stsb": (2.2e-3, 25, 128, 100, 4, 32, 0.0, 0.3, 100, 0.2, 0.1, 100),
    "mnli": (3.5e-4, 9, 256, 1000, 2, 16, 0.2, 0.1, 1000, 0.15, 0.0, 1000),
    "qnli": (7e-4, 5, 512, 500, 12, 32, 0.0, 0.1, 500, 0.1, 0.01, 500),
    "rte": (1.2e-3, 50, 320, 100, 5, 32, 0.0, 0.3, 100, 0.20, 0.01, 100),
    # WNLI is not in the official scripts; RTE's settings are the closest task.
    "wnli": (1.2e-3, 50, 128, 100, 5, 32, 0.0, 0.3, 100, 0.20, 0.01, 100),
}
# Average target rank 8: the differences (lr, epochs, top_h, n_add, lora_dropout or None).
_PAPER_R8: dict[str, tuple] = {
    "cola": (1e-3, 25, 3, 4, None),
    "sst2": (8e-4, 24, 6, 4, 0.3),
    "mrpc": (1e-3, 30, 10, 4, None),
    "qqp": (6e-4, 7, 3, 4, None),
    "mnli": (5e-4, 7, 18, 1, 0.0),
    "qnli": (9e-4, 5, 22, 4, None),
    "rte": (1.2e-3, 50, 9, 4, None),
}

_PAIR_TASKS = {"mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}


def resolve_profile(profile: str, cuda_available: bool) -> str:
    if profile not in PROFILES:
        raise ValueError(f"profile: choose one of {', '.join(PROFILES)}")
    if profile == "auto":
        return "paper" if cuda_available else "cpu"
    return profile


def _paper_row(task: str) -> tuple:
    return _PAPER_R2[task]


def task_defaults(task: str, method: str, profile: str, target_rank: float = 2.0) -> dict[str, Any]:
    """Flat knob defaults for ``task``/``method`` under ``profile`` (``paper`` or ``cpu``): the training
    recipe every method shares, plus the method's own defaults (its registered hook)."""
    from .methods import method_spec

    lr, epochs, max_len, warm, top_h, alpha, ldrop, orth, warmup, cdrop, wd, eval_steps = _paper_row(task)
    if profile == "paper":
        out: dict[str, Any] = {
            "learning_rate": lr,
            "epochs": float(epochs),
            "max_length": max_len,
            "lora_alpha": float(alpha),
            "lora_dropout": ldrop,
            "warmup_steps": warmup,
            "classifier_dropout": cdrop,
            "weight_decay": wd,
            "eval_steps": eval_steps,
            "batch_size": 32,
        }
        if target_rank >= 8 and task in _PAPER_R8:
            lr8, ep8, _, _, drop8 = _PAPER_R8[task]
            out.update(learning_rate=lr8, epochs=float(ep8))
            if drop8 is not None:
                out["lora_dropout"] = drop8
    else:
        out = {
            "train_samples": 4000,
            "epochs": 3.0,
            "max_length": 128 if task in _PAIR_TASKS else 64,
            "learning_rate": 3e-3,
            "lora_alpha": 32.0,
            "lora_dropout": 0.0,
            "warmup_ratio": 0.06,
            "classifier_dropout": cdrop,
            "weight_decay": wd,
            "batch_size": 32,
        }
    out.update(method_spec(method).task_defaults(task, profile, target_rank))
    return out


def increlora_defaults(task: str, profile: str, target_rank: float) -> dict[str, Any]:
    """IncreLoRA's knobs: the paper's scripts (warm-up = interval, top_h, n_add at rank 8, gamma), or the
    cpu profile's schedule as fractions of the run with top_h chosen so growth ends at 40 %."""
    _, _, _, warm, top_h, _, _, orth, _, _, _, _ = _paper_row(task)
    if profile == "paper":
        inc: dict[str, Any] = {"init_warmup": warm, "incre_interval": warm, "top_h": top_h, "orth_reg_weight": orth}
        if target_rank >= 8 and task in _PAPER_R8:
            _, _, top_h8, n_add8, _ = _PAPER_R8[task]
            inc.update(top_h=top_h8, n_add=n_add8)
        return inc
    return {
        "init_warmup_frac": 0.05,
        "incre_interval_frac": 0.03,
        "top_h": None,  # as many modules a round as growth needs to end at 40 % of the run
        "orth_reg_weight": orth,
    }


def adalora_defaults(task: str, profile: str, target_rank: float) -> dict[str, Any]:
    """AdaLoRA's orthogonal weight: the task's gamma, as in the official scripts."""
    return {"orth_reg_weight": _paper_row(task)[7]}


# LoRA's cpu-profile learning rate, chosen on 400 held-out training rows (benchmarks/fidelity.py's lr choice,
# seed 0, rank 2): 3e-4 beat 1e-3 and 3e-3 on SST-2 (84.50 / 83.25 / 81.25 %) and on CoLA (MCC 14.48 / 9.93 / 0.00);
# at 3e-3 LoRA stayed at the majority class on CoLA and MRPC's dev sets (benchmarks/results/regime.md).
LORA_CPU_LEARNING_RATE = 3e-4


def lora_defaults(task: str, profile: str, target_rank: float) -> dict[str, Any]:
    """LoRA's own learning rate on the cpu profile (its scale alpha / r is larger than the SVD forms')."""
    return {"learning_rate": LORA_CPU_LEARNING_RATE} if profile == "cpu" else {}
