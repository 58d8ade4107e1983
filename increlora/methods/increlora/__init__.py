"""IncreLoRA (Zhang et al., 2023): adapters start small and gain rank where the importance score is highest.

Config (:mod:`.config`), the adapter and its growth (:mod:`.adapter`, :mod:`.layer`, :mod:`.allocator`),
the official code's optimizer (:mod:`.legacy_adamw`), the search space (:mod:`.space`) and per-task
defaults (:mod:`.defaults`); registered below.
"""

from __future__ import annotations

from typing import Any, Optional

from increlora.methods.increlora import space
from increlora.methods.increlora.config import IncreLoRAConfig, OfficialBehaviour, resolve_n_add
from increlora.methods.increlora.defaults import increlora_defaults
from increlora.registry import MethodSpec, register

__all__ = ["IncreLoRAConfig", "OfficialBehaviour", "resolve_n_add"]


def _budget_label(knobs: dict[str, Any]) -> Optional[str]:
    if knobs.get("budget_params") is not None:
        return f"p{int(knobs['budget_params']) / 1000:.0f}k"
    if knobs.get("target_total_rank") is not None:
        return f"R{int(knobs['target_total_rank'])}"
    if knobs.get("target_rank") is not None:
        return f"r{float(knobs['target_rank']):.2f}"
    return None


def _build(model: Any, train_cfg: Any, cfg: Any, *, total_steps: int, seed: int) -> Any:
    """Attach the method to ``model`` (the adapter module, and with it torch and peft, is loaded here, on first use)."""
    from increlora.methods.increlora.adapter import IncreLoRAMethod

    return IncreLoRAMethod(model, train_cfg, cfg, total_steps=total_steps, seed=seed)


register(MethodSpec(
    name="increlora", label="IncreLoRA", config_cls=IncreLoRAConfig, build=_build, budget_knob="target_rank",
    budget_label=_budget_label, budget_knobs=lambda budget, given: {}, space=space, task_defaults=increlora_defaults,
    searches_param_budget=True, baseline=False,
))
