"""peft AdaLoRA behind the project's AdapterMethod interface."""

from __future__ import annotations

import math

from torch import nn

from increlora.budget import svd_params
from increlora.config import ConfigError, TrainConfig
from increlora.methods.adalora.config import AdaLoraBaselineConfig
from increlora.methods.peft_base import PeftMethod, module_name
from increlora.schedule import frac_to_steps


class AdaLoraMethod(PeftMethod):
    """peft AdaLoRA; ``update_and_allocate`` runs after ``optimizer.step()`` as peft documents."""

    name = "adalora"

    def __init__(self, model: nn.Module, train_cfg: TrainConfig, cfg: AdaLoraBaselineConfig, *, total_steps: int) -> None:
        from peft import AdaLoraConfig

        super().__init__(model, train_cfg)
        tinit = cfg.tinit if cfg.tinit is not None else frac_to_steps(cfg.tinit_frac, total_steps)
        tfinal = cfg.tfinal if cfg.tfinal is not None else frac_to_steps(cfg.tfinal_frac, total_steps)
        tfinal = max(1, tfinal)  # the final mask is only forced at step total - tfinal
        delta_t = cfg.delta_t if cfg.delta_t is not None else frac_to_steps(cfg.delta_t_frac, total_steps, minimum=1)
        if tinit >= total_steps - tfinal:
            tinit = max(0, total_steps - tfinal - 1)
            if tinit >= total_steps - tfinal:
                raise ConfigError(f"adalora needs more steps: tinit + tfinal must be < the run's {total_steps} steps")
        self.init_r = cfg.init_r
        self.tinit, self.tfinal, self.delta_t, self.total_steps = tinit, tfinal, delta_t, total_steps
        self.attach(model, AdaLoraConfig(
            init_r=cfg.init_r, target_r=max(1, int(math.ceil(cfg.target_r))), tinit=tinit, tfinal=tfinal, deltaT=delta_t,
            beta1=cfg.beta1, beta2=cfg.beta2, orth_reg_weight=cfg.orth_reg_weight, total_step=total_steps,
            **self.peft_kwargs(train_cfg),
        ))
        # A fractional average target rank: set the total budget directly.
        self.model.base_model.rankallocator.target_bgt = int(round(cfg.target_r * len(self.names)))

    def after_optimizer_step(self, step: int) -> None:
        self.model.base_model.update_and_allocate(step)

    def allocation(self) -> dict[str, int]:
        pattern = self.model.peft_config["default"].rank_pattern
        if not pattern:
            return {n: self.init_r for n in self.names}
        out = {}
        for key, mask in pattern.items():
            out[module_name(key, ".lora_E")] = int(sum(bool(v) for v in mask))
        return {n: out.get(n, self.init_r) for n in self.names}

    def adapter_param_count(self) -> int:
        return svd_params(self.shapes, self.allocation())

    def schedule_info(self) -> dict:
        return {"tinit": self.tinit, "tfinal": self.tfinal, "delta_t": self.delta_t, "total_step": self.total_steps,
                "init_r": self.init_r}
