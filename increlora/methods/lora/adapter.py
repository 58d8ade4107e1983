"""peft LoRA with one rank everywhere, behind the project's AdapterMethod interface."""

from __future__ import annotations

from torch import nn

from increlora.budget import lora_params
from increlora.config import TrainConfig
from increlora.methods.lora.config import LoraBaselineConfig
from increlora.methods.peft_base import PeftMethod


class LoraMethod(PeftMethod):
    """peft LoRA with one rank everywhere."""

    name = "lora"

    def __init__(self, model: nn.Module, train_cfg: TrainConfig, cfg: LoraBaselineConfig) -> None:
        from peft import LoraConfig

        super().__init__(model, train_cfg)
        self.r = cfg.r
        self.attach(model, LoraConfig(r=cfg.r, **self.peft_kwargs(train_cfg)))

    def allocation(self) -> dict[str, int]:
        return {n: self.r for n in self.names}

    def adapter_param_count(self) -> int:
        return lora_params(self.shapes, self.r)
