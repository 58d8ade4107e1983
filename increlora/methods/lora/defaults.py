"""LoRA's per-task defaults."""

from __future__ import annotations

from typing import Any


# LoRA's cpu-profile learning rate, chosen on 400 held-out training rows (benchmarks/fidelity.py's lr choice,
# seed 0, rank 2): 3e-4 beat 1e-3 and 3e-3 on SST-2 (84.50 / 83.25 / 81.25 %) and on CoLA (MCC 14.48 / 9.93 / 0.00);
# at 3e-3 LoRA stayed at the majority class on CoLA and MRPC's dev sets (benchmarks/results/regime.md).
LORA_CPU_LEARNING_RATE = 3e-4


def lora_defaults(task: str, profile: str, target_rank: float) -> dict[str, Any]:
    """LoRA's own learning rate on the cpu profile (its scale alpha / r is larger than the SVD forms')."""
    return {"learning_rate": LORA_CPU_LEARNING_RATE} if profile == "cpu" else {}
