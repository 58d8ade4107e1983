"""The method registry: each adapter method registers itself once, the way peft registers its tuners.

A :class:`MethodSpec` says everything the rest of the project needs to know about a method: its
config dataclass (which validates itself), how to attach it to a model, which knob is its budget
and how a budget given on the command line translates into its knobs, how its run names show the
budget, its per-task defaults and its search space. The trainer, the CLIs, the search spaces and
the orchestrator look methods up here instead of branching on their names.

This module sits at the bottom: it imports no method. Each method is a folder of
:mod:`increlora.methods` whose ``__init__`` calls :func:`register`; importing
:mod:`increlora.methods` registers them all. Adding a method = one folder + one line there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

from .config import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from .adapter_method import AdapterMethod


class MethodConfig(Protocol):
    """A method's config dataclass (``MethodSpec.config_cls``): its knobs, and a check of their values."""

    def validate(self) -> None: ...


@dataclass(frozen=True)
class MethodSpec:
    """One adapter method (see the module docstring)."""

    name: str
    label: str  # how tables and plots name it (``IncreLoRA``, ``LoRA``)
    config_cls: type
    build: Callable[..., "AdapterMethod"]  # (model, train_cfg, cfg, *, total_steps, seed) -> AdapterMethod
    budget_knob: str  # the knob an average-rank budget sets
    budget_label: Callable[[dict[str, Any]], Optional[str]]  # run-name part for the budget, None if unset
    budget_knobs: Callable[[float, dict[str, Any]], dict[str, Any]]  # knobs implied by an average-rank budget
    space: ModuleType  # the built-in search space: OPTIONAL_KNOBS, default_space(task, ...), sample(trial, space, ctx)
    task_defaults: Callable[[str, str, float], dict[str, Any]]  # (task, profile, average rank) -> the method's defaults
    searches_param_budget: bool = False  # the space can search a budget in parameters (--budget params)
    baseline: bool = True  # a reference method the search's plots draw next to the searched one


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


def budget_label(method: str, knobs: dict[str, Any]) -> str:
    """The budget part of a run name: ``r2.50`` (average rank), ``p120k`` (parameters), ``r4`` (LoRA)."""
    return method_spec(method).budget_label(knobs) or "default"


def average_rank(method: str, knobs: dict[str, Any]) -> float:
    """The average rank a method's knobs ask for (the CLI's ``--target-rank`` or ``--r``), default 2."""
    value = knobs.get(method_spec(method).budget_knob)
    return float(value) if value is not None and math.isfinite(float(value)) else 2.0
