"""Search spaces from YAML files (``--space FILE``), validated with one-line errors.

Format (see ``search_spaces/example_increlora.yaml``)::

    method: increlora              # increlora | lora | adalora
    params:                        # searched knobs (names of increlora.config fields)
      target_rank: {type: float, low: 1.0, high: 8.0, log: true}
      incre_interval_frac: {type: float, low: 0.01, high: 0.1, log: true}
      top_h: {type: int, low: 1, high: 8}
      lora_alpha: {type: categorical, choices: [16, 32]}
    constants:                     # optional: fixed knobs every trial gets
      orth_reg_weight: 0.1

Checks: the file parses to a mapping with known keys; the method exists; every knob is a knob of
the method (its config dataclasses) and not one the search fixes (task, model, epochs ...); ``type`` is float, int
or categorical; ranges have numeric ``low < high``, ``log`` needs ``low > 0`` and excludes
``step``; an integer knob needs ``type: int``; ``choices`` is a non-empty list of values of the
knob's type; fraction knobs (``*_frac``) lie in [0, 1); both ends of a range, every choice and every
constant lie in the knob's domain (:mod:`increlora.domains`: ``beta1`` in [0, 1), ``target_rank`` in
(0, 1024] ...), so no trial is sampled only to fail. The space is then sampled by the method's
define-by-run function (:func:`search_spaces.common.define_by_run`).
"""

from __future__ import annotations

import difflib
import math
import os
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from increlora.config import ConfigError
from increlora.run_config import check_knob, knob_domain
from search_spaces.common import (
    PARAM_TYPES,
    PROTOCOL_KNOBS,
    Param,
    Space,
    SpaceError,
    check_method,
    is_fraction_knob,
    knob_type,
    known_knobs,
)

_TOP_KEYS = ("method", "params", "constants", "description")
_RANGE_KEYS = ("type", "low", "high", "log", "step")
_CHOICE_KEYS = ("type", "choices")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def _unknown_knob(method: str, name: str) -> str:
    close = difflib.get_close_matches(name, known_knobs(method), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{name}: unknown knob for method {method!r}{hint}"


def _check_value(method: str, name: str, value: Any) -> Optional[str]:
    """An error message if ``value`` does not fit knob ``name``'s type or domain, else None."""
    problem = _type_problem(method, name, value)
    if problem is None:
        try:
            check_knob(method, name, value)  # null where the knob is optional, a value inside its domain
        except ConfigError as exc:
            return str(exc)
    return problem


def _domain_problem(method: str, name: str, low: Any, high: Any) -> Optional[str]:
    """Why the range ``[low, high]`` reaches outside knob ``name``'s domain (every trial would fail), or None."""
    domain = knob_domain(method, name)
    for key, value in (("low", low), ("high", high)):
        if domain.problem(value):
            return f"{key}={value!r} lies outside the knob's domain: {name} must be {domain.describe()}"
    return None


def _type_problem(method: str, name: str, value: Any) -> Optional[str]:
    kind = knob_type(method, name)
    if value is None:
        return None
    if kind is float and _is_number(value):
        return None
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return None
    if kind is bool and isinstance(value, bool):
        return None
    if kind is str and isinstance(value, str):
        return None
    if kind is list and isinstance(value, (list, str)):
        return None
    return f"{name}: {value!r} is not a valid {getattr(kind, '__name__', kind)} value"


def _parse_param(method: str, name: str, spec: Any) -> Param:
    if not isinstance(spec, dict):
        raise SpaceError(f"params.{name}: expected a mapping like {{type: float, low: 0.1, high: 1.0}}")
    kind = spec.get("type")
    if kind is None:
        raise SpaceError(f"params.{name}: missing 'type' (one of {', '.join(PARAM_TYPES)})")
    if kind not in PARAM_TYPES:
        raise SpaceError(f"params.{name}: type {kind!r} is not one of {', '.join(PARAM_TYPES)}")
    knob = knob_type(method, name)
    allowed = _CHOICE_KEYS if kind == "categorical" else _RANGE_KEYS
    extra = [k for k in spec if k not in allowed]
    if extra:
        raise SpaceError(f"params.{name}: key {extra[0]!r} does not apply to type {kind} (allowed: {', '.join(allowed)})")

    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"params.{name}: 'choices' must be a non-empty list")
        for c in choices:
            if not (c is None or isinstance(c, (bool, int, float, str))):
                raise SpaceError(f"params.{name}: choice {c!r} is not a number, string, boolean or null")
            problem = _check_value(method, name, c)
            if problem:
                raise SpaceError(f"params.{problem}")
            if is_fraction_knob(name) and not (c is not None and 0 <= float(c) < 1):
                raise SpaceError(f"params.{name}: fraction choices must lie in [0, 1), got {c!r}")
        if len(set(map(repr, choices))) != len(choices):
            raise SpaceError(f"params.{name}: 'choices' has duplicates")
        return Param(name, "categorical", choices=tuple(choices))

    if knob not in (int, float):
        raise SpaceError(f"params.{name}: a {getattr(knob, '__name__', knob)} knob can only be searched with type: categorical")
    if kind == "float" and knob is int:
        raise SpaceError(f"params.{name}: an integer knob; use type: int")
    for key in ("low", "high"):
        if key not in spec:
            raise SpaceError(f"params.{name}: missing '{key}'")
        if not _is_number(spec[key]):
            raise SpaceError(f"params.{name}: '{key}' must be a number, got {spec[key]!r}")
    low, high = spec["low"], spec["high"]
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise SpaceError(f"params.{name}: type int needs integer low and high, got {low!r} and {high!r}")
    if not low < high:
        raise SpaceError(f"params.{name}: low must be < high, got low={low!r} high={high!r}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(f"params.{name}: 'log' must be true or false, got {log!r}")
    if log and low <= 0:
        raise SpaceError(f"params.{name}: log: true needs low > 0, got low={low!r}")
    step = spec.get("step")
    if step is not None:
        if not _is_number(step) or step <= 0:
            raise SpaceError(f"params.{name}: 'step' must be a positive number, got {step!r}")
        if log:
            raise SpaceError(f"params.{name}: 'step' and log: true cannot be combined")
        if kind == "int" and not float(step).is_integer():
            raise SpaceError(f"params.{name}: type int needs an integer step, got {step!r}")
    if is_fraction_knob(name) and not (0 <= low and high < 1):
        raise SpaceError(f"params.{name}: a fraction of the run must lie in [0, 1), got [{low}, {high}]")
    problem = _domain_problem(method, name, low, high)
    if problem:
        raise SpaceError(f"params.{name}: {problem}")
    if kind == "int":
        low, high = int(low), int(high)
        step = None if step is None else int(step)
    else:
        low, high = float(low), float(high)
        step = None if step is None else float(step)
    return Param(name, kind, low, high, log=log, step=step)


def parse_space(data: Any, source: str = "<space>", *, method: Optional[str] = None) -> Space:
    """Validate a loaded YAML document; ``method`` (the search's) must match the file's if both are set."""
    try:
        return _parse(data, source, method)
    except SpaceError as exc:
        raise SpaceError(_one_line(f"{source}: {exc}")) from None


def _parse(data: Any, source: str, method: Optional[str]) -> Space:
    if not isinstance(data, dict):
        raise SpaceError("expected a mapping with keys method, params[, constants]")
    unknown = [k for k in data if k not in _TOP_KEYS]
    if unknown:
        raise SpaceError(f"unknown top-level key {unknown[0]!r} (allowed: {', '.join(_TOP_KEYS)})")
    file_method = data.get("method", method)
    if file_method is None:
        raise SpaceError("missing 'method' (increlora, lora or adalora)")
    check_method(str(file_method))
    if method is not None and file_method != method:
        raise SpaceError(f"method: the file is for {file_method!r} but the search is for {method!r} (--method)")
    params = data.get("params")
    if not isinstance(params, dict) or not params:
        raise SpaceError("'params' must be a non-empty mapping of knob -> {type, low, high | choices}")
    parsed = []
    for name, spec in params.items():
        if not isinstance(name, str) or knob_type(file_method, name) is None:
            raise SpaceError(_unknown_knob(file_method, str(name)))
        if name in PROTOCOL_KNOBS:
            raise SpaceError(f"{name}: fixed by the search (use its command-line flag), not searchable")
        parsed.append(_parse_param(file_method, name, spec))
    constants = data.get("constants") or {}
    if not isinstance(constants, dict):
        raise SpaceError("'constants' must be a mapping of knob -> value")
    for name, value in constants.items():
        if not isinstance(name, str) or knob_type(file_method, name) is None:
            raise SpaceError("constants." + _unknown_knob(file_method, str(name)))
        if name in PROTOCOL_KNOBS:
            raise SpaceError(f"constants.{name}: fixed by the search (use its command-line flag)")
        if name in params:
            raise SpaceError(f"constants.{name}: also listed under params")
        problem = _check_value(file_method, name, value)
        if problem:
            raise SpaceError(f"constants.{problem}")
        if is_fraction_knob(name) and value is not None and not 0 <= float(value) < 1:
            raise SpaceError(f"constants.{name}: a fraction of the run must lie in [0, 1), got {value!r}")
    return Space(file_method, tuple(parsed), dict(constants), source=source)


def load_space(path: Union[str, "os.PathLike[str]"], *, method: Optional[str] = None) -> Space:
    """Read and validate a YAML space file; every problem raises a one-line :class:`SpaceError`."""
    p = Path(path)
    if not p.is_file():
        raise SpaceError(f"space file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise SpaceError(_one_line(f"{p}: invalid YAML{where}: {exc.problem or 'syntax error'}")) from None
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
        raise SpaceError(_one_line(f"{p}: cannot read the space: {exc}")) from None
    return parse_space(data, str(p), method=method)


def dump_space(space: Space) -> str:
    """The space as YAML text in the format :func:`load_space` reads."""
    return yaml.safe_dump(space.to_dict(), sort_keys=False, default_flow_style=None)
