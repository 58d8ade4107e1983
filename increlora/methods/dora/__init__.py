"""peft DoRA (Liu et al., 2024): LoRA's low-rank direction update plus a trained magnitude per output (a baseline)."""

from __future__ import annotations

from typing import Any

from increlora.methods.dora import space
from increlora.methods.dora.config import DoraBaselineConfig
from increlora.methods.lora.defaults import lora_defaults
from increlora.registry import MethodSpec, register

__all__ = ["DoraBaselineConfig"]


def _budget_knobs(budget: float, given: dict[str, Any]) -> dict[str, Any]:
    return {} if "r" in given else {"r": max(1, int(round(budget)))}


def _build(model: Any, train_cfg: Any, cfg: Any, *, total_steps: int, seed: int) -> Any:
    """Attach the method to ``model`` (the adapter module, and with it torch and peft, is loaded here, on first use)."""
    from increlora.methods.dora.adapter import DoraMethod

    return DoraMethod(model, train_cfg, cfg)


register(MethodSpec(
    name="dora", label="DoRA", config_cls=DoraBaselineConfig,
    build=_build, budget_knob="r",
    budget_label=lambda k: f"r{int(k['r'])}" if k.get("r") is not None else None, budget_knobs=_budget_knobs,
    space=space, task_defaults=lora_defaults,  # LoRA's learning rate until DoRA's own is chosen (benchmarks/fidelity.py)
))
