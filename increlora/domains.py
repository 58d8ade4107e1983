"""Domains: the values a knob or a flag may take, declared once and checked everywhere before work.

A :class:`Domain` says what a number must be (``> 0``, ``in [0, 1)``, a whole number ``>= 1``, finite),
or which words a string may be (``auto | cpu | cuda | cuda:N``). The domain tables are

- ``increlora.config.TRAIN_DOMAINS``: every training knob (:class:`increlora.config.TrainConfig`);
- ``DOMAINS`` of each method's config class (``IncreLoRAConfig.DOMAINS`` ...): the method's knobs;
- ``orchestrator.running.settings.FLAG_DOMAINS``: the search's own numeric flags (``--trials``, ``--seed`` ...).

:func:`increlora.run_config.knob_domain` finds a knob's domain; the configs' ``validate()``, the
training CLI, presets, the search's ``--set`` and its training flags, and YAML search spaces (ranges
and choices) all check values against it, so a value outside is refused with one line naming the
knob before anything starts. ``tests/test_domains_fuzz.py`` generates values outside every domain
(:meth:`Domain.bad_values`) and feeds them to every CLI: a knob or flag added with a domain is
covered by that test without anyone listing it there, and one added without a domain fails it.

Upper bounds are sanity bounds: a rank above :data:`MAX_RANK` is larger than the hidden size of any
encoder this project adapts, and would only make the trainer try to allocate gigabytes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

SEED_MAX = 2**32 - 1  # numpy's seeds
MAX_RANK = 1024  # ranks per module: above the hidden size of every encoder adapted here
MAX_TOTAL_RANK = MAX_RANK * 1024  # summed over at most 1024 adapted modules
MAX_BUDGET_PARAMS = 10**9  # adapter parameters: 4 GB in fp32

INT, FLOAT, CHOICE, BOOL, TEXT, NAMES, TASK, METHOD = "int", "float", "choice", "bool", "text", "names", "task", "method"


class DomainError(ValueError):
    """A value outside its domain; the message is ``<name>: must be ..., got ...``."""


def _num(x: float) -> str:
    """``1`` / ``0.5`` / ``4294967295``: how a bound is written in messages."""
    if float(x).is_integer() and abs(x) < 1e16:
        return str(int(x))
    return repr(float(x))


def _shown(value: Any) -> str:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    return repr(value) if isinstance(value, str) else str(value)


@dataclass(frozen=True)
class Domain:
    """What a knob's (or flag's) value must be. Numbers (``int``/``float``) are always finite; bounds
    are inclusive unless ``low_open``/``high_open``. ``choice``: one of ``choices``, or a match of
    ``pattern`` (written ``shown`` in messages). ``task`` and ``method`` defer to the GLUE registry and
    the method registry. ``None`` (unset) is the type's business (``Optional`` knobs), not the domain's."""

    kind: str
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    pattern: Optional[str] = None
    shown: Optional[str] = None
    why: str = ""  # where an upper bound comes from, for the documentation

    # ------------------------------------------------------------------ words
    def describe(self) -> str:
        """``> 0``, ``in [0, 1)``, ``a whole number >= 1``, ``one of auto | cpu | cuda | cuda:N``."""
        if self.kind in (INT, FLOAT):
            whole = "a whole number " if self.kind == INT else ""
            if self.low is not None and self.high is not None:
                left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
                return f"{whole}in {left}{_num(self.low)}, {_num(self.high)}{right}"
            if self.low is not None:
                return f"{whole}{'>' if self.low_open else '>='} {_num(self.low)}"
            if self.high is not None:
                return f"{whole}{'<' if self.high_open else '<='} {_num(self.high)}"
            return "a whole number" if self.kind == INT else "a finite number"
        if self.kind == CHOICE:
            return "one of " + (self.shown or " | ".join(self.choices))
        return {BOOL: "true or false", TEXT: "a string", NAMES: "a list of names", TASK: "a GLUE task",
                METHOD: "a registered method"}[self.kind]

    # ------------------------------------------------------------------ checks
    def problem(self, value: Any) -> Optional[str]:
        """Why ``value`` is outside the domain (``must be > 0, got 0``), or None when it is inside."""
        if self.kind in (INT, FLOAT):
            return self._number_problem(value)
        if self.kind == CHOICE:
            ok = isinstance(value, str) and (value in self.choices or bool(self.pattern and re.fullmatch(self.pattern, value)))
            return None if ok else f"must be {self.describe()}, got {_shown(value)}"
        if self.kind == BOOL:
            return None if isinstance(value, bool) else f"must be true or false, got {_shown(value)}"
        if self.kind == TEXT:
            return None if isinstance(value, str) else f"must be a string, got {_shown(value)}"
        if self.kind == NAMES:
            ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) and v.strip() for v in value)
            return None if ok else f"must be a list of names, got {_shown(value)}"
        if self.kind == TASK:
            from increlora.data import GlueError, normalize_task

            try:
                normalize_task(value)
            except GlueError as exc:
                return str(exc)
            return None
        raise ValueError(f"unknown domain kind {self.kind!r}")

    def _number_problem(self, value: Any) -> Optional[str]:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be {'a whole number' if self.kind == INT else 'a number'}, got {_shown(value)}"
        if not math.isfinite(value):
            return f"must be a finite number, got {_shown(value)}"
        if self.kind == INT and not float(value).is_integer():
            return f"must be a whole number, got {_shown(value)}"
        low_bad = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        high_bad = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if low_bad or high_bad:
            return f"must be {self.describe().removeprefix('a whole number ')}, got {_num(value)}"
        return None

    def check(self, name: str, value: Any) -> Any:
        """``value`` when inside the domain, else DomainError ``<name>: must be ..., got ...``."""
        problem = self.problem(value)
        if problem:
            raise DomainError(f"{name}: {problem}")
        return value

    # ------------------------------------------------------------------ command lines
    def parser(self) -> Callable[[str], Any]:
        """An argparse ``type``: the text as a number checked against the domain (one-line usage error)."""
        import argparse

        def parse(text: str) -> Any:
            try:
                value: Any = int(text) if self.kind == INT else float(text) if self.kind == FLOAT else text
            except ValueError:
                kind = "a whole number" if self.kind == INT else "a number"
                raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
            problem = self.problem(value)
            if problem:
                raise argparse.ArgumentTypeError(problem)
            return value

        parse.__name__ = self.kind  # argparse names the type in some messages
        parse.domain = self  # type: ignore[attr-defined]  (how the fuzz test finds every checked flag)
        return parse

    # ------------------------------------------------------------------ tests
    def bad_values(self) -> list[Any]:
        """Values outside the domain, as a user could type them: below/above the bounds, the open
        bound itself, non-finite numbers, a fraction for a whole number, a word for a number."""
        out: list[Any] = []
        if self.kind in (INT, FLOAT):
            if self.low is not None:
                out.append(self.low if self.low_open else self.low - 1)
            if self.high is not None:
                out.append(self.high if self.high_open else self.high + 1)
            if self.kind == FLOAT:
                out += [math.nan, math.inf, -math.inf]
            else:
                out.append((self.low if self.low is not None else 0) + 1.5)
            out.append("many")
            return [_int_if_whole(v, self.kind) for v in out]
        if self.kind == CHOICE:
            return ["banana", ""]
        if self.kind == BOOL:
            return ["maybe", 2]
        if self.kind == TASK:
            return ["banana"]
        if self.kind == METHOD:
            return ["vera"]
        if self.kind == NAMES:
            return [7]
        return [7]  # TEXT


def _int_if_whole(value: Any, kind: str) -> Any:
    if kind == INT and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# ---------------------------------------------------------------------------------------------------
# Constructors
# ---------------------------------------------------------------------------------------------------


def whole(ge: Optional[int] = None, le: Optional[int] = None, why: str = "") -> Domain:
    """A whole number in ``[ge, le]``."""
    return Domain(INT, low=ge, high=le, why=why)


def real(*, gt: Optional[float] = None, ge: Optional[float] = None, lt: Optional[float] = None,
         le: Optional[float] = None, why: str = "") -> Domain:
    """A finite number with these bounds (``gt``/``lt`` exclude the bound)."""
    return Domain(FLOAT, low=gt if gt is not None else ge, high=lt if lt is not None else le,
                  low_open=gt is not None, high_open=lt is not None, why=why)


def one_of(*choices: str, pattern: Optional[str] = None, shown: Optional[str] = None) -> Domain:
    return Domain(CHOICE, choices=tuple(choices), pattern=pattern, shown=shown)


FRACTION = real(ge=0, lt=1)  # a fraction of the run, a dropout, an EMA coefficient
FLAG = Domain(BOOL)
ANY_TEXT = Domain(TEXT)
MODULE_NAMES = Domain(NAMES)
GLUE_TASK = Domain(TASK)
SEED = whole(ge=0, le=SEED_MAX, why="numpy seeds are 32-bit")
RANK = whole(ge=1, le=MAX_RANK, why="larger than any adapted encoder's hidden size")
