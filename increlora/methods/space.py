"""What a search space is made of: knob ranges (:class:`Param`), a method's space (:class:`Space`), the run
facts a space needs (:class:`SpaceContext`), and sampling them on an Optuna trial.

Plain, picklable data (frozen dataclasses, tuples, dicts) with no dependency on any method or on the
search: each method's folder defines its space with these, and :mod:`search_spaces` turns a space into
the define-by-run function Optuna calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

PARAM_TYPES = ("float", "int", "categorical")
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


def sample_params(trial: Any, params: Sequence[Param], bounds: Optional[dict[str, tuple]] = None) -> dict[str, Any]:
    """Suggest each param in order; ``bounds`` narrows some of them: ``name -> (low, high)``."""
    bounds = bounds or {}
    out: dict[str, Any] = {}
    for p in params:
        lo, hi = bounds.get(p.name, (None, None))
        out[p.name] = p.suggest(trial, low=lo, high=hi)
    return out


def learning_rate_param(center: float) -> Param:
    """The learning rate on a log range from a quarter to four times ``center`` (the base rate)."""
    if not center > 0:
        raise SpaceError(f"learning_rate: the centre of the range must be > 0, got {center}")
    return Param("learning_rate", "float", center / 4, center * 4, log=True)
