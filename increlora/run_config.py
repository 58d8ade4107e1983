"""One run's whole configuration: the training knobs and the chosen method's knobs, built from flat overrides.

Sits above the methods (:mod:`increlora.methods` registers them all when imported), so every method's
config class is known here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from increlora.config import ConfigError, TrainConfig, check_type, field_names
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
