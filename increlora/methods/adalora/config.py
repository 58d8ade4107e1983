"""peft AdaLoRA's knobs (spec section 5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from increlora.config import check_domains, knob, need
from increlora.domains import FRACTION, MAX_RANK, RANK, Domain, real, whole


@dataclass
class AdaLoraBaselineConfig:
    """peft AdaLoRA (spec section 5)."""

    init_r: int = knob(3, "initial rank of every module (AdaLoRA prunes down from it)")
    target_r: float = knob(2.0, "average final rank per module")
    tinit: Optional[int] = knob(None, "steps before pruning starts (default: tinit_frac of the run)")
    tfinal: Optional[int] = knob(None, "steps of fine-tuning after the budget is final (default: tfinal_frac of the run)")
    delta_t: Optional[int] = knob(None, "steps between budget allocations (default: delta_t_frac of the run, at least 1)")
    tinit_frac: float = knob(0.12, "tinit as a fraction of the run (official GLUE scripts: 12-17%)")
    tfinal_frac: float = knob(0.48, "tfinal as a fraction of the run (official GLUE scripts: 44-52%)")
    delta_t_frac: float = knob(0.002, "delta_t as a fraction of the run (official GLUE scripts: 0.03-0.2%; peft's default is 1 step)")
    beta1: float = knob(0.85, "EMA coefficient of the sensitivity")
    beta2: float = knob(0.85, "EMA coefficient of the uncertainty")
    orth_reg_weight: float = knob(0.1, "weight of the orthogonal regularisation")

    # Every knob's domain (increlora.domains): checked by validate(), the CLIs, presets, --set and spaces.
    DOMAINS: ClassVar[dict[str, Domain]] = {
        "init_r": RANK,
        "target_r": real(gt=0, le=MAX_RANK),
        "tinit": whole(ge=0),
        "tfinal": whole(ge=0),
        "delta_t": whole(ge=1),
        "tinit_frac": FRACTION,
        "tfinal_frac": FRACTION,
        "delta_t_frac": FRACTION,
        "beta1": FRACTION,
        "beta2": FRACTION,
        "orth_reg_weight": real(ge=0),
    }

    def validate(self) -> None:
        check_domains(self, self.DOMAINS)
        need(self.target_r <= self.init_r, "target_r: must be in (0, init_r]")
