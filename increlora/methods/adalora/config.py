"""peft AdaLoRA's knobs (spec section 5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from increlora.config import is_fraction, knob, need


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

    def validate(self) -> None:
        need(self.init_r >= 1, "init_r: must be >= 1")
        need(0 < self.target_r <= self.init_r, "target_r: must be in (0, init_r]")
        need(self.delta_t is None or self.delta_t >= 1, "delta_t: must be >= 1")
        need(all(is_fraction(v) for v in (self.tinit_frac, self.tfinal_frac, self.delta_t_frac)),
             "tinit_frac/tfinal_frac/delta_t_frac: must be in [0, 1)")
        need(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "beta1/beta2: must be in [0, 1)")
