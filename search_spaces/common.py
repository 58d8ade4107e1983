"""The pieces every search space is made of: knob ranges (:class:`Param`), a method's space
(:class:`Space`), the run facts a space needs (:class:`SpaceContext`) and the define-by-run
entry point Optuna calls (:func:`define_by_run`).

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
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

from increlora.config import RUNTIME, PROTOCOL, TrainConfig, knobs_with_role
from increlora.methods import METHODS, method_spec
from search_spaces import schedule

PARAM_TYPES = ("float", "int", "categorical")
# Optuna user attribute of an enqueued trial holding a preset's knobs (applied on top of the sample).
PRESET_CONFIG_ATTR = "preset_config"
PRESET_NAME_ATTR = "preset"
# Knobs that define a search's evaluation protocol: a preset evaluated inside a search keeps the
# search's values for these, so every trial of the search is measured the same way.
PROTOCOL_KNOBS = knobs_with_role(PROTOCOL, RUNTIME)
Number = Union[int, float]


class SpaceError(ValueError):
    """A search space is invalid; the one-line message names the file and the knob."""


@dataclass(frozen=True)
class Param:
    """One searched knob: a float or int range (optionally log-scaled or stepped) or a choice list."""

    name: str
    type: str
    low: Optional[Number] = None
    high: Optional[Number] = None
    log: bool = False
    step: Optional[Number] = None
    choices: tuple = ()

    def suggest(self, trial: Any, *, low: Optional[Number] = None, high: Optional[Number] = None) -> Any:
        """Ask ``trial`` for a value; ``low``/``high`` narrow the range for this trial only."""
        lo = self.low if low is None else low
        hi = self.high if high is None else high
        if self.type == "float":
            return trial.suggest_float(self.name, float(lo), float(hi), log=self.log, step=self.step)
        if self.type == "int":
            return trial.suggest_int(self.name, int(lo), int(hi), log=self.log, step=int(self.step or 1))
        return trial.suggest_categorical(self.name, list(self.choices))

    def contains(self, value: Any) -> bool:
        """True if ``value`` lies in the range (or is one of the choices)."""
        if self.type == "categorical":
            return value in self.choices
        try:
            return float(self.low) <= float(value) <= float(self.high)
        except (TypeError, ValueError):
            return False

    def to_dict(self) -> dict[str, Any]:
        """The YAML form (see :mod:`search_spaces.from_yaml`)."""
        if self.type == "categorical":
            return {"type": "categorical", "choices": list(self.choices)}
        out: dict[str, Any] = {"type": self.type, "low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out

    def describe(self) -> str:
        if self.type == "categorical":
            return f"{self.name}: one of {list(self.choices)}"
        extra = ", log" if self.log else ""
        extra += f", step {self.step}" if self.step is not None else ""
        return f"{self.name}: {self.type} [{self.low}, {self.high}]{extra}"


@dataclass(frozen=True)
class SpaceContext:
    """Run facts a space needs: the task, and the run length for fraction -> step conversion."""

    task: str = "cola"
    total_steps: Optional[int] = None


@dataclass(frozen=True)
class Space:
    """A method's search space: the searched knobs and the constants every trial gets."""

    method: str
    params: tuple[Param, ...]
    constants: dict[str, Any] = field(default_factory=dict)
    source: str = "builtin"

    def param(self, name: str) -> Optional[Param]:
        for p in self.params:
            if p.name == name:
                return p
        return None

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def to_dict(self) -> dict[str, Any]:
        """The YAML form, loadable with ``--space``."""
        return {
            "method": self.method,
            "params": {p.name: p.to_dict() for p in self.params},
            "constants": dict(self.constants),
        }

    def describe(self) -> str:
        """One line: ``increlora: target_rank: float [1, 8], log; beta1: ...``."""
        parts = [p.describe() for p in self.params]
        parts += [f"{k} = {v!r}" for k, v in self.constants.items()]
        return f"{self.method} ({self.source}): " + "; ".join(parts)


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


def sample_params(trial: Any, params: Sequence[Param], bounds: Optional[dict[str, tuple]] = None) -> dict[str, Any]:
    """Suggest each param in order; ``bounds`` narrows some of them: ``name -> (low, high)``."""
    bounds = bounds or {}
    out: dict[str, Any] = {}
    for p in params:
        lo, hi = bounds.get(p.name, (None, None))
        out[p.name] = p.suggest(trial, low=lo, high=hi)
    return out


def define_by_run(trial: Any, *, space: Space, context: SpaceContext) -> dict[str, Any]:
    """Optuna define-by-run function: sample ``space`` on ``trial`` and return the trial's knobs.

    The returned dict holds the sampled knobs, the space's constants, the ``method``, and - for a
    trial enqueued from a preset - the preset's other knobs (from the trial's ``preset_config`` user
    attribute, protocol knobs excluded). Ray's OptunaSearch merges it over the captured
    suggestions, so it is the trial's config.
    """
    from search_spaces import method_module

    sampled = method_module(space.method).sample(trial, space, context)
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
