"""IncreLoRA: incremental rank allocation for LoRA, with LoRA/AdaLoRA baselines, on GLUE.

The public API (imported on first use: ``import increlora`` loads neither torch nor transformers):

- :class:`IncreLoRAConfig`: IncreLoRA's knobs;
- :func:`attach`: attach IncreLoRA (or LoRA / AdaLoRA) to a Hugging Face model; returns the handle
  (``handle.model``, ``handle.extra_loss()``, ``handle.before_optimizer_step(step, optimizer)``,
  ``handle.allocation()``, ``handle.save(folder)``: a plain peft LoRA adapter);
- :func:`load_preset_config`: a search's preset YAML as the method's config plus its training recipe;
- :class:`IncreLoRATrainer` and :class:`IncreLoRACallback`: ``transformers.Trainer`` support
  (growth once per optimizer step, restart warm-up of the new groups, the regulariser, allocation
  logging, peft adapters and resumable state at checkpoints).

See :mod:`increlora.api` and :mod:`increlora.hf_trainer`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["IncreLoRACallback", "IncreLoRAConfig", "IncreLoRATrainer", "PresetConfig", "attach", "load_preset_config"]

_LAZY = {
    "IncreLoRAConfig": "increlora.methods.increlora.config",
    "attach": "increlora.api",
    "load_preset_config": "increlora.api",
    "PresetConfig": "increlora.api",
    "IncreLoRACallback": "increlora.hf_trainer",
    "IncreLoRATrainer": "increlora.hf_trainer",
}

if TYPE_CHECKING:  # pragma: no cover
    from .api import PresetConfig, attach, load_preset_config
    from .methods.increlora.config import IncreLoRAConfig
    from .hf_trainer import IncreLoRACallback, IncreLoRATrainer


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'increlora' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
