"""peft DoRA's knobs (weight-decomposed LoRA: LoRA's direction update plus a trained magnitude per output)."""

from __future__ import annotations

from dataclasses import dataclass

from increlora.config import knob, need


@dataclass
class DoraBaselineConfig:
    """peft LoRA with ``use_dora``: one fixed rank everywhere plus a magnitude vector per adapted module."""

    r: int = knob(2, "DoRA rank of every adapted module")

    def validate(self) -> None:
        need(self.r >= 1, "r: must be >= 1")
