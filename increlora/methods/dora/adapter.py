"""peft DoRA (``LoraConfig(use_dora=True)``) behind the project's AdapterMethod interface."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn

from increlora.budget import lora_params
from increlora.config import TrainConfig
from increlora.methods.dora.config import DoraBaselineConfig
from increlora.methods.peft_base import PeftMethod


class DoraMethod(PeftMethod):
    """peft DoRA with one rank everywhere; its adapter = LoRA's A and B plus one magnitude per output."""

    name = "dora"

    def __init__(self, model: nn.Module, train_cfg: TrainConfig, cfg: DoraBaselineConfig) -> None:
        from peft import LoraConfig

        super().__init__(model, train_cfg)
        self.r = cfg.r
        self.attach(model, LoraConfig(r=cfg.r, use_dora=True, **self.peft_kwargs(train_cfg)))

    def allocation(self) -> dict[str, int]:
        return {n: self.r for n in self.names}

    def adapter_param_count(self) -> int:
        return lora_params(self.shapes, self.r) + sum(d_out for _, d_out in self.shapes.values())

    @contextmanager
    def merged_for_eval(self) -> Iterator[None]:
        """No merging: DoRA's weight is W0 + dW renormalised by its magnitude, not W0 + get_delta_weight."""
        yield
