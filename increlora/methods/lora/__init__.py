"""peft LoRA: one fixed rank in every adapted module (a baseline)."""

from __future__ import annotations

from typing import Any

from increlora.methods.lora import space
from increlora.methods.lora.config import LoraBaselineConfig
from increlora.methods.lora.defaults import lora_defaults
from increlora.registry import MethodSpec, register

__all__ = ["LoraBaselineConfig"]


def _budget_knobs(budget: float, given: dict[str, Any]) -> dict[str, Any]:
    return {} if "r" in given else {"r": max(1, int(round(budget)))}


def _build(model: Any, train_cfg: Any, cfg: Any, *, total_steps: int, seed: int) -> Any:
    """Attach the method to ``model`` (the adapter module, and with it torch and peft, is loaded here, on first use)."""
    from increlora.methods.lora.adapter import LoraMethod

    return LoraMethod(model, train_cfg, cfg)


register(MethodSpec(
    name="lora", label="LoRA", config_cls=LoraBaselineConfig,
    build=_build, budget_knob="r",
    budget_label=lambda k: f"r{int(k['r'])}" if k.get("r") is not None else None, budget_knobs=_budget_knobs,
    space=space, task_defaults=lora_defaults,
))
