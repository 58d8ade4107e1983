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

from typing import Any, Optional

from increlora.methods import METHODS  # noqa: F401  (imported for its registrations)
from increlora.paper_scripts import PAIR_TASKS, paper_rank8, paper_row
from increlora.registry import method_spec

PROFILES = ("auto", "paper", "cpu")


def resolve_profile(profile: str, cuda_available: bool) -> str:
    if profile not in PROFILES:
        raise ValueError(f"profile: choose one of {', '.join(PROFILES)}")
    if profile == "auto":
        return "paper" if cuda_available else "cpu"
    return profile


def task_defaults(task: Any, method: str, profile: str, target_rank: float = 2.0) -> dict[str, Any]:
    """Flat knob defaults for ``task``/``method`` under ``profile`` (``paper`` or ``cpu``): the training
    recipe every method shares, plus the method's own defaults (its registered hook).

    ``task``: a GLUE task's key, or own data's TaskSpec, which takes the defaults of the GLUE task of its
    shape (``spec.defaults_task``: STS-B for regression, MRPC for pairs, SST-2 for single texts)."""
    pair: Optional[bool] = None
    if not isinstance(task, str):  # own data's TaskSpec
        pair, task = task.is_pair, task.defaults_task or task.name
    if pair is None:
        pair = task in PAIR_TASKS
    row = paper_row(task)
    if profile == "paper":
        out: dict[str, Any] = {
            "learning_rate": row.learning_rate,
            "epochs": float(row.epochs),
            "max_length": row.max_length,
            "lora_alpha": float(row.lora_alpha),
            "lora_dropout": row.lora_dropout,
            "warmup_steps": row.warmup_steps,
            "classifier_dropout": row.classifier_dropout,
            "weight_decay": row.weight_decay,
            "eval_steps": row.eval_steps,
            "batch_size": 32,
        }
        r8 = paper_rank8(task, target_rank)
        if r8 is not None:
            out.update(learning_rate=r8.learning_rate, epochs=float(r8.epochs))
            if r8.lora_dropout is not None:
                out["lora_dropout"] = r8.lora_dropout
    else:
        out = {
            "train_samples": 4000,
            "epochs": 3.0,
            "max_length": 128 if pair else 64,
            "learning_rate": 3e-3,
            "lora_alpha": 32.0,
            "lora_dropout": 0.0,
            "warmup_ratio": 0.06,
            "classifier_dropout": row.classifier_dropout,
            "weight_decay": row.weight_decay,
            "batch_size": 32,
        }
    out.update(method_spec(method).task_defaults(task, profile, target_rank))
    return out
