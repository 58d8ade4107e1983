"""peft DoRA's knobs (weight-decomposed LoRA: LoRA's direction update plus a trained magnitude per output)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from increlora.config import check_domains, knob
from increlora.domains import RANK, Domain


@dataclass
class DoraBaselineConfig:
    """peft LoRA with ``use_dora``: one fixed rank everywhere plus a magnitude vector per adapted module."""

    r: int = knob(2, "DoRA rank of every adapted module")

    DOMAINS: ClassVar[dict[str, Domain]] = {"r": RANK}  # increlora.domains

    def validate(self) -> None:
        check_domains(self, self.DOMAINS)
