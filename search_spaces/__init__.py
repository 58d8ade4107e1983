"""Search spaces of the budget search: one module per method, schedule helpers, YAML spaces.

- each method's built-in space (``default_space(task, extra=...)`` and its sampler) lives in the
  method's folder, ``increlora/methods/<name>/space.py``, and is found through the registry;
- :mod:`search_spaces.common`: knob types, the define-by-run function, presets as enqueued points;
- :mod:`search_spaces.from_yaml`: ``--space FILE`` spaces, validated.

Optuna (through Ray Tune's OptunaSearch) calls :func:`make_space_fn`'s result with a trial; it is
a ``functools.partial`` of a module-level function over plain data, so it pickles.
"""

from __future__ import annotations

import dataclasses
import functools
from types import ModuleType
from typing import Any, Callable, Optional, Sequence

from increlora.registry import method_spec
from search_spaces.common import (
    PRESET_CONFIG_ATTR,
    PRESET_NAME_ATTR,
    PROTOCOL_KNOBS,
    Param,
    Space,
    SpaceContext,
    SpaceError,
    check_method,
    define_by_run,
    preset_point,
)

__all__ = [
    "PRESET_CONFIG_ATTR",
    "PRESET_NAME_ATTR",
    "PROTOCOL_KNOBS",
    "Param",
    "Space",
    "SpaceContext",
    "SpaceError",
    "default_space",
    "define_by_run",
    "make_space_fn",
    "method_module",
    "optional_knobs",
    "preset_point",
]

SpaceFn = Callable[[Any], dict]


def method_module(method: str) -> ModuleType:
    """The space module of ``method`` (``increlora.methods.increlora.space`` ...), from the registry."""
    check_method(method)
    return method_spec(method).space


def optional_knobs(method: str) -> tuple[str, ...]:
    """Knobs the built-in space of ``method`` can add on request (``--search-extra``)."""
    return tuple(method_module(method).OPTIONAL_KNOBS)


def default_space(
    method: str,
    task: str,
    *,
    extra: Sequence[str] = (),
    learning_rate: float = 1e-3,
    budget_params: Optional[tuple[int, int]] = None,
    knobs_only: bool = True,
) -> Space:
    """The built-in space of ``method`` for a normalised ``task`` name.

    ``extra`` adds optional knobs (:func:`optional_knobs`); ``learning_rate`` is the search's base
    rate (the centre of its range when ``extra`` names it); ``budget_params`` makes the IncreLoRA space
    search a parameter budget in that range instead of ``target_rank``. ``knobs_only=False`` (the search's
    default) also searches the learning rate on the method's ``LEARNING_RATE_RANGE`` (log), chosen from the
    fidelity benchmark's held-out learning-rate choices.
    """
    module = method_module(method)
    unknown = [k for k in extra if k not in module.OPTIONAL_KNOBS]
    if unknown:
        raise SpaceError(
            f"{unknown[0]}: not an optional knob of the {method} space; choose from {', '.join(module.OPTIONAL_KNOBS)}"
        )
    if budget_params is not None:
        if method != "increlora":
            raise SpaceError("budget_params: only the increlora space searches a parameter budget")
        space = module.default_space(task, extra=extra, learning_rate=learning_rate, budget_params=budget_params)
    else:
        space = module.default_space(task, extra=extra, learning_rate=learning_rate)
    if knobs_only or space.param("learning_rate") is not None:
        return space
    low, high = module.LEARNING_RATE_RANGE
    return dataclasses.replace(space, params=space.params + (Param("learning_rate", "float", low, high, log=True),))


def make_space_fn(space: Space, context: SpaceContext) -> SpaceFn:
    """The define-by-run function for OptunaSearch: ``define_by_run`` bound to ``space`` and ``context``."""
    return functools.partial(define_by_run, space=space, context=context)
