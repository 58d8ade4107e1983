"""peft LoRA and peft AdaLoRA behind the same :class:`AdapterMethod` interface as IncreLoRA.

Both use the same target modules, head modules, data, loop, schedule and parameter accounting,
so a comparison at equal final adapter parameters is apples to apples.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from .adapter_method import AdapterMethod, no_decay, quiet_peft, target_linears
from .budget import lora_params, svd_params
from .config import AdaLoraBaselineConfig, ConfigError, LoraBaselineConfig, TrainConfig


def _module_name(param_name: str, marker: str) -> str:
    name = param_name.split(marker)[0].rstrip(".")
    for prefix in ("base_model.model.", "model."):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


class _PeftMethod(AdapterMethod):
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


class LoraMethod(_PeftMethod):
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


class AdaLoraMethod(_PeftMethod):
    """peft AdaLoRA; ``update_and_allocate`` runs after ``optimizer.step()`` as peft documents."""

    name = "adalora"

    def __init__(self, model: nn.Module, train_cfg: TrainConfig, cfg: AdaLoraBaselineConfig, *, total_steps: int) -> None:
        from peft import AdaLoraConfig

        super().__init__(model, train_cfg)
        tinit = cfg.tinit if cfg.tinit is not None else int(round(cfg.tinit_frac * total_steps))
        tfinal = cfg.tfinal if cfg.tfinal is not None else int(round(cfg.tfinal_frac * total_steps))
        tfinal = max(1, tfinal)  # the final mask is only forced at step total - tfinal
        delta_t = cfg.delta_t if cfg.delta_t is not None else max(1, int(round(cfg.delta_t_frac * total_steps)))
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
            out[_module_name(key, ".lora_E")] = int(sum(bool(v) for v in mask))
        return {n: out.get(n, self.init_r) for n in self.names}

    def adapter_param_count(self) -> int:
        return svd_params(self.shapes, self.allocation())

    def schedule_info(self) -> dict:
        return {"tinit": self.tinit, "tfinal": self.tfinal, "delta_t": self.delta_t, "total_step": self.total_steps,
                "init_r": self.init_r}

