"""peft AdaLoRA: starts at a higher rank and prunes singular values down to a budget (a baseline)."""

from __future__ import annotations

from typing import Any

from increlora.methods.adalora import space
from increlora.methods.adalora.config import AdaLoraBaselineConfig
from increlora.methods.adalora.defaults import adalora_defaults
from increlora.registry import MethodSpec, register

__all__ = ["AdaLoraBaselineConfig"]


def _budget_knobs(budget: float, given: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "target_r" not in given:
        out["target_r"] = float(budget)
        if "init_r" not in given:
            out["init_r"] = max(2, int(round(budget * 1.5)))
    return out


def _build(model: Any, train_cfg: Any, cfg: Any, *, total_steps: int, seed: int) -> Any:
    """Attach the method to ``model`` (the adapter module, and with it torch and peft, is loaded here, on first use)."""
    from increlora.methods.adalora.adapter import AdaLoraMethod

    return AdaLoraMethod(model, train_cfg, cfg, total_steps=total_steps)


register(MethodSpec(
    name="adalora", label="AdaLoRA", config_cls=AdaLoraBaselineConfig,
    build=_build,
    budget_knob="target_r",
    budget_label=lambda k: f"r{float(k['target_r']):.2f}" if k.get("target_r") is not None else None,
    budget_knobs=_budget_knobs, space=space, task_defaults=adalora_defaults,
))
