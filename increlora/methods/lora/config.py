"""peft LoRA's knobs."""

from __future__ import annotations

from dataclasses import dataclass

from increlora.config import knob, need


@dataclass
class LoraBaselineConfig:
    """peft LoRA: one fixed rank everywhere."""

    r: int = knob(2, "LoRA rank of every adapted module")

    def validate(self) -> None:
        need(self.r >= 1, "r: must be >= 1")
