"""peft LoRA's knobs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from increlora.config import check_domains, knob
from increlora.domains import RANK, Domain


@dataclass
class LoraBaselineConfig:
    """peft LoRA: one fixed rank everywhere."""

    r: int = knob(2, "LoRA rank of every adapted module")

    DOMAINS: ClassVar[dict[str, Domain]] = {"r": RANK}  # increlora.domains

    def validate(self) -> None:
        check_domains(self, self.DOMAINS)
