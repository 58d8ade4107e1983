"""The small interface every method (IncreLoRA, peft LoRA, peft AdaLoRA) offers the training loop.

One loop for all methods: a method differs by the adapter it attaches and the hooks it runs
around ``optimizer.step()``, not by a copied loop.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Optional

import torch
from torch import nn

from .naming import matches_target


class AdapterMethod(ABC):
    """A model with adapters attached, plus the per-step hooks of its method."""

    name: str
    model: nn.Module
    head_modules: list[str]
    # Parameter groups added during training keep the full learning rate instead of their own
    # warm-up/decay (IncreLoRA's official multi_lr=False).
    constant_lr_new_groups: bool = False

    @abstractmethod
    def param_groups(self, weight_decay: float) -> list[dict]:
        """Optimizer parameter groups at the start of training (each with ``start_step``)."""

    def make_optimizer(self, groups: list[dict], *, lr: float) -> torch.optim.Optimizer:
        """The optimizer over ``groups`` (AdamW, betas 0.9/0.999, eps 1e-8, as the official scripts)."""
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)

    def extra_loss(self) -> Optional[torch.Tensor]:
        """A regulariser added to the task loss (None when the method adds none here)."""
        return None

    def before_optimizer_step(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        """After backward and clipping, before ``optimizer.step()`` (IncreLoRA grows here)."""

    def after_optimizer_step(self, step: int) -> None:
        """After ``optimizer.step()``, before ``zero_grad()`` (AdaLoRA allocates here)."""

    @abstractmethod
    def allocation(self) -> dict[str, int]:
        """Active rank of every adapted module, by full module name."""

    @abstractmethod
    def adapter_param_count(self) -> int:
        """Active adapter parameters (the search's cost objective)."""

    def head_param_count(self) -> int:
        """Trainable head parameters (peft keeps a frozen copy of saved modules: not counted)."""
        return sum(p.numel() for p in head_parameters(self.model, self.head_modules) if p.requires_grad)

    def trainable_param_count(self) -> int:
        """Parameters trainable right now (reserves and head included)."""
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def growth_events(self) -> list[dict]:
        return []

    @contextmanager
    def merged_for_eval(self) -> Iterator[None]:
        """Within the block, eval-mode forwards use ``W0 + dW`` as one weight per adapted layer
        (the training weights are unchanged afterwards, bit for bit). Default: no merging."""
        yield

    def schedule_info(self) -> dict:
        return {}

    @abstractmethod
    def save(self, out_dir: Path) -> Path:
        """Save the adapter in peft format; returns the folder."""


def target_linears(model: nn.Module, targets: Optional[list[str]] = None) -> list[tuple[str, nn.Linear]]:
    """The ``nn.Linear`` layers to adapt, in model order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and matches_target(n, targets)]


def head_parameters(model: nn.Module, head_modules: Iterable[str]) -> list[nn.Parameter]:
    """Parameters of the head modules (matched by the last component(s) of their names)."""
    heads = list(head_modules)
    seen: set[int] = set()
    out: list[nn.Parameter] = []
    for name, module in model.named_modules():
        if any(name == h or name.endswith("." + h) for h in heads):
            for p in module.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
    return out


def no_decay(name: str) -> bool:
    """Biases and LayerNorm weights take no weight decay (the usual transformers convention)."""
    return name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


@contextmanager
def quiet_peft() -> Iterator[None]:
    """Silence transformers' deprecation warning that peft triggers when wrapping a model."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield
