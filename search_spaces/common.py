"""What the search does with a method's space: knob types for validation, the define-by-run entry point
Optuna calls (:func:`define_by_run`) and presets as enqueued points. The space primitives
(:class:`Param`, :class:`Space`, :class:`SpaceContext`) live with the methods
(:mod:`increlora.methods.space`) and are re-exported here.

A space is plain, picklable data (frozen dataclasses, tuples, dicts); the define-by-run function
is a module-level function bound to a space with ``functools.partial`` (see
:func:`search_spaces.make_space_fn`), so Ray Tune can checkpoint and restore the searcher.

Knob names are the keys of :mod:`increlora.config` dataclasses. Schedule knobs are searched as
fractions of the run (``init_warmup_frac``, ``tinit_frac``, ...), which the trainer resolves to
steps, so a setting found on a short run means the same on a long one.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Optional, Union

from increlora import schedule
from increlora.config import PROTOCOL, RUNTIME, TrainConfig, knobs_with_role
from increlora.methods import METHODS
from increlora.methods.space import (  # noqa: F401  (re-exported: the search's vocabulary)
    PARAM_TYPES,
    Number,
    Param,
    Space,
    SpaceContext,
    SpaceError,
    sample_params,
)
from increlora.registry import method_spec

# Optuna user attribute of an enqueued trial holding a preset's knobs (applied on top of the sample).
PRESET_CONFIG_ATTR = "preset_config"
PRESET_NAME_ATTR = "preset"
# Knobs that define a search's evaluation protocol: a preset evaluated inside a search keeps the
# search's values for these, so every trial of the search is measured the same way.
PROTOCOL_KNOBS = knobs_with_role(PROTOCOL, RUNTIME)


# ----------------------------------------------------------------------------------------------
# Knob types (validation of YAML spaces and presets)
# ----------------------------------------------------------------------------------------------


def _base_type(hint: Any) -> type:
    origin = typing.get_origin(hint)
    if origin is Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if args else type(None)
    return typing.get_origin(hint) or hint


def knob_type(method: str, name: str) -> Optional[type]:
    """The Python type of knob ``name`` for ``method`` (float, int, bool, str, list), or None if unknown."""
    for cls in (TrainConfig, method_spec(method).config_cls):
        hints = typing.get_type_hints(cls)
        if name in hints:
            return _base_type(hints[name])
    return None


def known_knobs(method: str) -> list[str]:
    """Every knob a space for ``method`` may name (the fields of its config dataclasses)."""
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    names += [f.name for f in dataclasses.fields(method_spec(method).config_cls)]
    return names


def is_fraction_knob(name: str) -> bool:
    """Knobs named ``*_frac`` are fractions of the run and must lie in [0, 1)."""
    return name.endswith("_frac")


def check_method(method: str) -> str:
    if method not in METHODS:
        raise SpaceError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return method


# ----------------------------------------------------------------------------------------------
# Define-by-run
# ----------------------------------------------------------------------------------------------


def define_by_run(trial: Any, *, space: Space, context: SpaceContext) -> dict[str, Any]:
    """Optuna define-by-run function: sample ``space`` on ``trial`` and return the trial's knobs.

    The returned dict holds the sampled knobs, the space's constants, the ``method``, and - for a
    trial enqueued from a preset - the preset's other knobs (from the trial's ``preset_config`` user
    attribute, protocol knobs excluded). Ray's OptunaSearch merges it over the captured
    suggestions, so it is the trial's config.
    """
    sampled = method_spec(space.method).space.sample(trial, space, context)
    values = {**space.constants, **sampled}
    preset = trial.user_attrs.get(PRESET_CONFIG_ATTR) if hasattr(trial, "user_attrs") else None
    if preset:  # the preset's own values win
        values.update({k: v for k, v in preset.items() if k not in PROTOCOL_KNOBS})
    values["method"] = space.method
    return values


def preset_point(space: Space, context: SpaceContext, config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A preset's knobs as an Optuna enqueue: (fixed params, user attributes).

    Fixed params cover the searched knobs the preset sets (a searched fraction ``X_frac`` the preset
    gives only as a step count ``X`` is computed from it); categorical values that are not among
    the choices are left to the user attribute, which carries every knob of the preset.
    """
    params: dict[str, Any] = {}
    for p in space.params:
        value: Any = config.get(p.name)
        steps = config.get(p.name[: -len("_frac")]) if is_fraction_knob(p.name) else None
        if value is None and steps is not None and context.total_steps:
            value = min(schedule.steps_to_frac(int(steps), context.total_steps), math.nextafter(1.0, 0.0))
        if value is None:
            continue
        if p.type == "categorical" and value not in p.choices:
            continue
        params[p.name] = value
    user_attrs = {PRESET_CONFIG_ATTR: {k: v for k, v in config.items() if k not in PROTOCOL_KNOBS}}
    return params, user_attrs
