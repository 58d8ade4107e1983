"""The method registry: each adapter method is registered once, the way peft registers its tuners.

A :class:`MethodSpec` says everything the rest of the project needs to know about a method: its
config dataclass (which validates itself), how to attach it to a model, which knob is its budget
and how a budget given on the command line translates into its knobs, how its run names show the
budget, its per-task defaults and its search space. The trainer, the CLIs, the search spaces and
the orchestrator look methods up here instead of branching on their names.

Adding a method = one config dataclass, one :class:`~increlora.adapter_method.AdapterMethod`
subclass, one ``search_spaces/<name>.py`` and one :func:`register` call below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

from .config import AdaLoraBaselineConfig, ConfigError, IncreLoRAConfig, LoraBaselineConfig
from .task_defaults import adalora_defaults, increlora_defaults, lora_defaults

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from .adapter_method import AdapterMethod
    from .config import TrainConfig


@dataclass(frozen=True)
class MethodSpec:
    """One adapter method (see the module docstring)."""

    name: str
    config_cls: type
    build: Callable[..., "AdapterMethod"]  # (model, train_cfg, cfg, *, total_steps, seed) -> AdapterMethod
    budget_knob: str  # the knob an average-rank budget sets
    budget_label: Callable[[dict[str, Any]], Optional[str]]  # run-name part for the budget, None if unset
    budget_knobs: Callable[[float, dict[str, Any]], dict[str, Any]]  # knobs implied by an average-rank budget
    space_module: str  # the built-in search space
    task_defaults: Callable[[str, str, float], dict[str, Any]]  # (task, profile, average rank) -> the method's defaults
    searches_param_budget: bool = False  # the space can search a budget in parameters (--budget params)


REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    REGISTRY[spec.name] = spec
    return spec


def method_spec(name: str) -> MethodSpec:
    """The spec of method ``name``; ConfigError naming the choices for an unknown one."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"method: unknown method {name!r}; choose one of {', '.join(REGISTRY)}") from None


# ----------------------------------------------------------------------------------------------
# IncreLoRA
# ----------------------------------------------------------------------------------------------


def _build_increlora(model: "nn.Module", train_cfg: "TrainConfig", cfg: IncreLoRAConfig, *, total_steps: int,
                     seed: int) -> "AdapterMethod":
    from .method import IncreLoRAMethod

    return IncreLoRAMethod(model, train_cfg, cfg, total_steps=total_steps, seed=seed)


def _increlora_label(knobs: dict[str, Any]) -> Optional[str]:
    if knobs.get("budget_params") is not None:
        return f"p{int(knobs['budget_params']) / 1000:.0f}k"
    if knobs.get("target_total_rank") is not None:
        return f"R{int(knobs['target_total_rank'])}"
    if knobs.get("target_rank") is not None:
        return f"r{float(knobs['target_rank']):.2f}"
    return None


# ----------------------------------------------------------------------------------------------
# peft LoRA and AdaLoRA
# ----------------------------------------------------------------------------------------------


def _build_lora(model: "nn.Module", train_cfg: "TrainConfig", cfg: LoraBaselineConfig, *, total_steps: int,
                seed: int) -> "AdapterMethod":
    from .baselines import LoraMethod

    return LoraMethod(model, train_cfg, cfg)


def _build_adalora(model: "nn.Module", train_cfg: "TrainConfig", cfg: AdaLoraBaselineConfig, *, total_steps: int,
                   seed: int) -> "AdapterMethod":
    from .baselines import AdaLoraMethod

    return AdaLoraMethod(model, train_cfg, cfg, total_steps=total_steps)


def _lora_budget(budget: float, given: dict[str, Any]) -> dict[str, Any]:
    return {} if "r" in given else {"r": max(1, int(round(budget)))}


def _adalora_budget(budget: float, given: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "target_r" not in given:
        out["target_r"] = float(budget)
        if "init_r" not in given:
            out["init_r"] = max(2, int(round(budget * 1.5)))
    return out


register(MethodSpec(
    name="increlora", config_cls=IncreLoRAConfig, build=_build_increlora, budget_knob="target_rank",
    budget_label=_increlora_label, budget_knobs=lambda budget, given: {}, space_module="search_spaces.increlora",
    task_defaults=increlora_defaults, searches_param_budget=True,
))
register(MethodSpec(
    name="lora", config_cls=LoraBaselineConfig, build=_build_lora, budget_knob="r",
    budget_label=lambda k: f"r{int(k['r'])}" if k.get("r") is not None else None, budget_knobs=_lora_budget,
    space_module="search_spaces.lora", task_defaults=lora_defaults,
))
register(MethodSpec(
    name="adalora", config_cls=AdaLoraBaselineConfig, build=_build_adalora, budget_knob="target_r",
    budget_label=lambda k: f"r{float(k['target_r']):.2f}" if k.get("target_r") is not None else None,
    budget_knobs=_adalora_budget, space_module="search_spaces.adalora", task_defaults=adalora_defaults,
))

METHODS: tuple[str, ...] = tuple(REGISTRY)


def budget_label(method: str, knobs: dict[str, Any]) -> str:
    """The budget part of a run name: ``r2.50`` (average rank), ``p120k`` (parameters), ``r4`` (LoRA)."""
    return method_spec(method).budget_label(knobs) or "default"


def average_rank(method: str, knobs: dict[str, Any]) -> float:
    """The average rank a method's knobs ask for (the CLI's ``--target-rank`` or ``--r``), default 2."""
    value = knobs.get(method_spec(method).budget_knob)
    return float(value) if value is not None and math.isfinite(float(value)) else 2.0
