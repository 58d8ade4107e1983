"""Editing a live optimizer without losing state: add a group, split a tensor, drop tensors."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def add_param_group(
    optimizer: torch.optim.Optimizer,
    params: Sequence[nn.Parameter],
    *,
    lr: float,
    weight_decay: float,
    start_step: int,
    name: str,
    base_lr: float,
    full_lr_once: bool = False,
) -> None:
    """Append a parameter group; the LR schedule reads ``start_step`` and ``base_lr``."""
    optimizer.add_param_group(
        {
            "params": list(params),
            "lr": lr,
            "weight_decay": weight_decay,
            "start_step": start_step,
            "name": name,
            "base_lr": base_lr,
            "initial_lr": base_lr,
            "full_lr_once": full_lr_once,
            "added": True,  # added during training: constant LR when new groups are not scheduled
        }
    )


def _find(optimizer: torch.optim.Optimizer, p: nn.Parameter) -> tuple[dict, int] | None:
    for group in optimizer.param_groups:
        for i, q in enumerate(group["params"]):
            if q is p:
                return group, i
    return None


def replace_param(optimizer: torch.optim.Optimizer, old: nn.Parameter, parts: Sequence[nn.Parameter], dim: int) -> None:
    """Replace ``old`` by ``parts`` (``old`` split along ``dim``) in its group, slicing its state."""
    found = _find(optimizer, old)
    if found is None:
        return
    group, i = found
    group["params"][i : i + 1] = list(parts)
    state = optimizer.state.pop(old, None)
    if not state:
        return
    offset = 0
    for p in parts:
        size = p.shape[dim]
        new_state = {}
        for key, value in state.items():
            if torch.is_tensor(value) and value.shape == old.shape:
                new_state[key] = value.narrow(dim, offset, size).clone()
            else:
                new_state[key] = value.clone() if torch.is_tensor(value) else value
        optimizer.state[p] = new_state
        offset += size


def remove_params(optimizer: torch.optim.Optimizer, params: Sequence[nn.Parameter]) -> None:
    """Drop ``params`` (and their state) from the optimizer; empty groups are removed."""
    ids = {id(p) for p in params}
    for group in optimizer.param_groups:
        group["params"] = [q for q in group["params"] if id(q) not in ids]
    optimizer.param_groups[:] = [g for g in optimizer.param_groups if g["params"]]
    for p in params:
        optimizer.state.pop(p, None)
