"""One run's whole configuration: the training knobs and the chosen method's knobs, built from flat overrides.

Sits above the methods (:mod:`increlora.methods` registers them all when imported), so every method's
config class is known here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from increlora.config import TRAIN_DOMAINS, ConfigError, TrainConfig, check_type, field_names
from increlora.domains import Domain
from increlora.methods import METHODS  # noqa: F401  (imported for its registrations)
from increlora.registry import REGISTRY, method_spec


@dataclass
class RunConfig:
    """Everything one training run needs."""

    train: TrainConfig
    method: Any  # the chosen method's config dataclass (registry: MethodSpec.config_cls)

    def to_dict(self) -> dict[str, Any]:
        return {"train": dataclasses.asdict(self.train), "method": dataclasses.asdict(self.method)}

    def flat(self) -> dict[str, Any]:
        """All knobs in one flat dict (names are unique across train and method knobs)."""
        return {**dataclasses.asdict(self.train), **dataclasses.asdict(self.method)}


def build_run_config(overrides: Optional[dict[str, Any]] = None, *, base: Optional[RunConfig] = None) -> RunConfig:
    """Build a validated RunConfig from flat ``knob -> value`` overrides.

    Each key goes to whichever dataclass declares it (TrainConfig or the chosen method's config);
    an unknown key or a value of the wrong type raises ConfigError naming the key.
    """
    overrides = dict(overrides or {})
    train_kw = dataclasses.asdict(base.train) if base else {}
    method_kw = dataclasses.asdict(base.method) if base else {}
    method = overrides.get("method", train_kw.get("method", "increlora"))
    mcls = method_spec(method).config_cls
    if base is not None and method != base.train.method:
        method_kw = {}
    tnames, mnames = set(field_names(TrainConfig)), set(field_names(mcls))
    all_method_fields = set().union(*(field_names(spec.config_cls) for spec in REGISTRY.values()))
    for key, value in overrides.items():
        if key in tnames:
            train_kw[key] = check_type(TrainConfig, key, value)
        elif key in mnames:
            method_kw[key] = check_type(mcls, key, value)
        elif key in all_method_fields:
            raise ConfigError(f"{key}: is not a knob of method {method!r}")
        else:
            raise ConfigError(f"{key}: unknown knob (see --help for the list)")
    train_kw["method"] = method
    cfg = RunConfig(train=TrainConfig(**train_kw), method=mcls(**method_kw))
    cfg.train.validate()
    cfg.method.validate()
    return cfg


def knob_domains(method: str) -> dict[str, Domain]:
    """The domain table of a run of ``method``: every training knob's and every knob of the method."""
    return {**TRAIN_DOMAINS, **method_spec(method).config_cls.DOMAINS}


def knob_domain(method: str, name: str) -> Domain:
    """The domain of knob ``name`` in a run of ``method``; ConfigError when it is no knob of it."""
    domains = knob_domains(method)
    if name not in domains:
        others = set().union(*(field_names(spec.config_cls) for spec in REGISTRY.values()))
        if name in others:
            raise ConfigError(f"{name}: is not a knob of method {method!r}")
        raise ConfigError(f"{name}: unknown knob (see --help for the list)")
    return domains[name]


def check_knob(method: str, name: str, value: Any) -> Any:
    """One knob's value for a run of ``method``, checked on its own (the knob exists, the type fits, the
    value lies in its domain; ``None`` where the knob is optional), as it will be used: ConfigError
    ``<knob>: ...`` otherwise. Checks that involve two knobs are left to :func:`build_run_config`."""
    domain = knob_domain(method, name)
    cls = TrainConfig if name in TRAIN_DOMAINS else method_spec(method).config_cls
    value = check_type(cls, name, value)
    problem = None if value is None else domain.problem(value)
    if problem:
        raise ConfigError(f"{name}: {problem}")
    return value
