"""Preset YAML files: a search's chosen configuration, validated strictly.

A preset is::

    preset_version: 1
    name: knee            # optional label (best / smallest / knee / anything)
    method: increlora
    task: cola            # the task it was found on (it may be applied to others)
    config: {...}         # flat knob -> value, knobs of increlora.config (unknown keys are errors)
    provenance: {...}     # free-form record of where it came from

Both CLIs load presets with :func:`load_preset` and apply :func:`preset_overrides` before their
own command-line overrides. Every error is a one-line :class:`PresetError` naming the file and
the offending key.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from increlora.atomic import write_text_atomic
from increlora.config import PROTOCOL, RUNTIME, ConfigError, knobs_with_role
from increlora.domains import GLUE_TASK
from increlora.run_config import build_run_config
from increlora.methods import METHODS

PRESET_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
# Version 1 presets were written while IncreLoRA's default was this project's variant (reproduce_official false);
# one that does not name reproduce_official is read as the variant it was found with.
V1_INCRELORA_DEFAULTS = {"reproduce_official": False}
_REQUIRED_KEYS = ("preset_version", "method", "task", "config")
_OPTIONAL_KEYS = ("name", "provenance")
_KEY_ORDER = ("preset_version", "name", "method", "task", "config", "provenance")

PathLike = Union[str, "os.PathLike[str]"]


class PresetError(ValueError):
    """A preset file is missing, unreadable or invalid; the one-line message says where."""


@dataclass
class Preset:
    """One preset: a method, the task it was found on, its knobs and where it came from."""

    preset_version: int
    method: str
    task: str
    config: dict[str, Any]
    provenance: dict[str, Any] = field(default_factory=dict)
    name: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        """The YAML document as a plain dict, keys in file order (``name`` only when set)."""
        raw = dataclasses.asdict(self)
        return {k: raw[k] for k in _KEY_ORDER if not (k == "name" and raw[k] is None)}


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def parse_preset(data: Any, source: str = "<preset>") -> Preset:
    """Validate a loaded YAML document and build a :class:`Preset` (``source`` names it in errors)."""

    def fail(msg: str) -> PresetError:
        return PresetError(_one_line(f"{source}: {msg}"))

    if data is None:
        raise fail("the file is empty; expected a mapping with keys " + ", ".join(_REQUIRED_KEYS))
    if not isinstance(data, dict):
        raise fail(f"expected a mapping at the top level, got {_type_name(data)}")
    for key in data:
        if not isinstance(key, str):
            raise fail(f"top-level key {key!r} is not a string")
    unknown = [k for k in data if k not in _REQUIRED_KEYS + _OPTIONAL_KEYS]
    if unknown:
        allowed = ", ".join(_KEY_ORDER)
        raise fail(f"unknown top-level key {unknown[0]!r} (allowed: {allowed})")
    missing = [k for k in _REQUIRED_KEYS if k not in data]
    if missing:
        raise fail(f"missing required key {missing[0]!r}")

    version = data["preset_version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise fail(f"preset_version: expected int, got {_type_name(version)} {version!r}")
    if version not in SUPPORTED_VERSIONS:
        raise fail(f"preset_version: unsupported version {version} (this version reads {SUPPORTED_VERSIONS[-1]})")
    method = data["method"]
    if not isinstance(method, str):
        raise fail(f"method: expected str, got {_type_name(method)} {method!r}")
    if method not in METHODS:
        raise fail(f"method: unknown method {method!r}; choose one of {', '.join(METHODS)}")
    task = data["task"]
    if not isinstance(task, str) or not task:
        raise fail(f"task: expected a non-empty str, got {_type_name(task)} {task!r}")
    own_data = isinstance(data.get("provenance"), dict) and isinstance(data["provenance"].get("data"), dict) \
        and "text_columns" in data["provenance"]["data"]  # found on your own data: its task is that data's name
    unknown_task = None if own_data else GLUE_TASK.problem(task)
    if unknown_task:
        raise fail(f"task: {unknown_task}")
    name = data.get("name")
    if name is not None and not isinstance(name, str):
        raise fail(f"name: expected str, got {_type_name(name)} {name!r}")
    provenance = data.get("provenance")
    if provenance is None:
        provenance = {}
    if not isinstance(provenance, dict):
        raise fail(f"provenance: expected a mapping, got {_type_name(provenance)}")
    config = data["config"]
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise fail(f"config: expected a mapping, got {_type_name(config)}")
    for key in config:
        if not isinstance(key, str):
            raise fail(f"config: key {key!r} is not a string")
    if "method" in config and config["method"] != method:
        raise fail(f"config.method: {config['method']!r} contradicts method: {method!r}")
    config = {k: v for k, v in config.items() if k != "method"}
    if version == 1 and method == "increlora":
        config = {**V1_INCRELORA_DEFAULTS, **config}
    try:
        build_run_config({**config, "method": method})
    except ConfigError as exc:
        raise fail(f"config.{exc}") from None
    return Preset(
        preset_version=version,
        method=method,
        task=task,
        config=dict(config),
        provenance=dict(provenance),
        name=name,
    )


def load_preset(path: PathLike) -> Preset:
    """Read and validate a preset YAML file; any problem raises a one-line :class:`PresetError`."""
    p = Path(path)
    if not p.exists():
        raise PresetError(f"preset file not found: {p}")
    if p.is_dir():
        raise PresetError(f"preset path is a folder, not a file: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PresetError(_one_line(f"{p}: cannot read the preset: {exc}")) from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        where = ""
        if exc.problem_mark is not None:
            where = f" at line {exc.problem_mark.line + 1}, column {exc.problem_mark.column + 1}"
        problem = exc.problem or exc.context or "syntax error"
        raise PresetError(_one_line(f"{p}: invalid YAML{where}: {problem}")) from None
    except yaml.YAMLError as exc:
        raise PresetError(_one_line(f"{p}: invalid YAML: {exc}")) from None
    return parse_preset(data, str(p))


def preset_overrides(preset: Preset) -> dict[str, Any]:
    """The preset as flat ``knob -> value`` overrides for ``build_run_config`` (method included).

    A preset carries the method's knobs and the training recipe; the trial size and the run's setup
    (the *protocol* and *runtime* knobs: rows, epochs, steps, sequence length, evaluation, seed, model,
    targets, device...) come from the task it is applied to, so those are left out even when an older
    preset file holds them."""
    skip = knobs_with_role(PROTOCOL, RUNTIME)
    return {**{k: v for k, v in preset.config.items() if k not in skip}, "method": preset.method}


def _plain(value: Any) -> Any:
    """Convert numpy scalars, tuples and other containers to YAML-safe builtins."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):  # numpy bool_ and other 0-d scalars
        return _plain(value.item())
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def not_learned_warning(score: float, chance: float) -> str:
    """The provenance ``warning`` of a preset whose trial did not beat the majority-class score."""
    return (f"scored {score:.2f}, not above the majority-class score {chance:.2f} (+1 point): the search's "
            "trials learned nothing, so these knobs are not a tuned configuration")


def learned_nothing(preset: Preset) -> Optional[str]:
    """The preset's warning when its search marked it as not above chance, else None."""
    if preset.provenance.get("above_chance") is False:
        return str(preset.provenance.get("warning") or "its trial did not score above the majority class")
    return None


def _header(preset: Preset) -> str:
    label = f" '{preset.name}'" if preset.name else ""
    text = (
        f"# IncreLoRA preset{label}: method {preset.method}, found on task {preset.task}.\n"
        "# config: knobs of increlora.config (validated on load); provenance: where it came from.\n"
    )
    warning = learned_nothing(preset)
    if warning:
        text += f"# WARNING: {warning}.\n"
    return text


def save_preset(preset: Preset, path: PathLike) -> Path:
    """Validate ``preset`` and write it as YAML atomically (temp file + ``os.replace``); returns the path."""
    p = Path(path)
    doc = _plain(preset.to_dict())
    parse_preset(doc, str(p))  # never write a preset that would not load
    body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return write_text_atomic(p, _header(preset) + body)
