"""What the peft-backed methods (LoRA, AdaLoRA, DoRA) share behind the :class:`AdapterMethod` interface.

Both use the same target modules, head modules, data, loop, schedule and parameter accounting,
so a comparison at equal final adapter parameters is apples to apples.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from increlora.adapter_method import AdapterMethod, no_decay, quiet_peft, target_linears
from increlora.config import ConfigError, TrainConfig


def module_name(param_name: str, marker: str) -> str:
    name = param_name.split(marker)[0].rstrip(".")
    for prefix in ("base_model.model.", "model."):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


class PeftMethod(AdapterMethod):
    """Shared parts of the peft-backed baselines."""

    def __init__(self, model: nn.Module, train_cfg: TrainConfig) -> None:
        targets = target_linears(model, train_cfg.target_modules)
        if not targets:
            raise ConfigError("target_modules: no linear layer of the model matches; pass --target-modules with name suffixes")
        self.names = [n for n, _ in targets]
        self.shapes = {n: (m.in_features, m.out_features) for n, m in targets}
        self.head_modules = list(train_cfg.head_modules)
        self.model = model  # replaced by the peft model in subclasses

    def peft_kwargs(self, train_cfg: TrainConfig) -> dict:
        """What every peft config of a baseline shares: the task type, alpha, dropout, targets and head."""
        from peft import TaskType

        return {"task_type": TaskType.SEQ_CLS, "lora_alpha": train_cfg.lora_alpha, "lora_dropout": train_cfg.lora_dropout,
                "target_modules": list(self.names), "modules_to_save": list(self.head_modules)}

    def attach(self, model: nn.Module, config: object) -> None:
        from peft import get_peft_model

        with quiet_peft():
            self.model = get_peft_model(model, config)

    def param_groups(self, weight_decay: float) -> list[dict]:
        decay, nodecay = [], []
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                (nodecay if no_decay(name) else decay).append(p)
        groups = [
            {"params": decay, "weight_decay": weight_decay, "start_step": 0, "name": "main"},
            {"params": nodecay, "weight_decay": 0.0, "start_step": 0, "name": "main-nodecay"},
        ]
        return [g for g in groups if g["params"]]

    def save(self, out_dir: Path) -> Path:
        self.model.save_pretrained(str(out_dir))
        return Path(out_dir)

    @contextmanager
    def merged_for_eval(self) -> Iterator[None]:
        """peft's own merge adds dW into W0 in place and subtracts it again (not bit-exact): here each
        adapted layer's weight *tensor* is swapped for ``W0 + dW`` and swapped back afterwards, and the
        layer is marked merged meanwhile so that peft's forward skips the low-rank branch."""
        swapped = []
        try:
            with torch.no_grad():
                for module in self.model.modules():
                    if not hasattr(module, "get_delta_weight") or not hasattr(module, "lora_A") or module.merged:
                        continue
                    adapters = [a for a in module.active_adapters if a in module.lora_A]
                    if not adapters:
                        continue
                    weight = module.get_base_layer().weight
                    original = weight.data
                    merged = original.clone()
                    for a in adapters:
                        merged += module.get_delta_weight(a).to(original.dtype)
                    weight.data = merged
                    module.merged_adapters = list(adapters)
                    swapped.append((module, weight, original))
            yield
        finally:
            for module, weight, original in swapped:
                weight.data = original
                module.merged_adapters = []
