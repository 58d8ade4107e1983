"""Resumable IncreLoRA state: the grown structure, the score EMAs, the allocator and the optimizer's groups.

A checkpoint of the model's weights and of the optimizer's state is not enough to resume IncreLoRA:
growth changes the *structure* (chunks per module, which tensors train, the reserves, clean-up) and
adds optimizer groups, so both must be rebuilt as they were before the weights and the optimizer
state can be loaded into them. :func:`method_state` captures what that needs (plain tensors, numbers,
strings and lists: ``torch.load(..., weights_only=True)`` reads it back); :func:`restore_structure`
rebuilds a freshly attached method to match, after which the model's weights can be loaded, and
:func:`optimizer_groups` gives the optimizer's parameter groups in the saved order, ready for
``optimizer.load_state_dict``. The adapter *values* are not in this state: they are in the model's
own checkpoint (the Trainer's ``model.safetensors``).

Only IncreLoRA needs this: LoRA keeps one structure throughout, and peft's AdaLoRA keeps its
allocator's state inside peft (resuming AdaLoRA is not supported here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from increlora.methods.increlora.adapter import IncreLoRAMethod

STATE_VERSION = 1
_GROUP_KEYS_SKIPPED = ("params",)


def _param_names(model: nn.Module) -> dict[int, str]:
    return {id(p): n for n, p in model.named_parameters(remove_duplicate=False)}


def optimizer_layout(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """Every optimizer group as ``{"param_names": [...], <its settings>}`` (tensor-valued settings left out)."""
    names = _param_names(model)
    layout = []
    for group in optimizer.param_groups:
        missing = [p for p in group["params"] if id(p) not in names]
        if missing:
            raise ValueError(f"optimizer group {group.get('name', '?')!r} holds {len(missing)} tensor(s) that are not "
                             "parameters of the model; cannot record it for resuming")
        entry = {k: v for k, v in group.items() if k not in _GROUP_KEYS_SKIPPED and not torch.is_tensor(v)}
        entry["param_names"] = [names[id(p)] for p in group["params"]]
        layout.append(entry)
    return layout


def method_state(method: "IncreLoRAMethod", optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    """What :func:`restore_structure` needs to rebuild ``method`` as it is now (see the module docstring)."""
    modules = []
    for m in method.modules:
        modules.append({
            "chunks": [[int(m.lora_E[i].shape[0]), bool(m.lora_A[i].requires_grad), bool(m.lora_B[i].requires_grad),
                        bool(m.lora_E[i].requires_grad)] for i in range(len(m.lora_E))],
            "n_active": int(m.n_active),
            "include_reserve": bool(m.include_reserve),
            "score_enabled": bool(m.score_enabled),
            "ranknum": float(m._ranknum),
        })
    state: dict[str, Any] = {
        "version": STATE_VERSION,
        "names": list(method.names),
        "modules": modules,
        "ema": {"sensitivity": method.ema.sensitivity.detach().cpu().clone(),
                "uncertainty": method.ema.uncertainty.detach().cpu().clone(), "updates": int(method.ema.updates)},
        "allocator": {"ranks": [int(r) for r in method.allocator.ranks],
                      "history": [{"step": int(h["step"]), "picks": [[int(k), int(g)] for k, g in h["picks"]]}
                                  for h in method.allocator.history]},
        "growing": bool(method.growing),
        "cleaned_up": bool(method.cleaned_up),
        "events": [dict(e) for e in method.events],
        "growth_end_step": method.growth_end_step,
        "reserves_pending": bool(method._reserves_pending),
        "peak_trainable": int(method.peak_trainable),
        "top_h": int(method.top_h),
        "init_warmup": int(method.init_warmup),
        "interval": int(method.interval),
        "total_steps": int(method.total_steps),
        "generator": method.generator.get_state(),
    }
    if optimizer is not None:
        state["optimizer_layout"] = optimizer_layout(method.model, optimizer)
    return state


def restore_structure(method: "IncreLoRAMethod", state: dict[str, Any]) -> None:
    """Rebuild a freshly attached ``method`` (same model, config and ``total_steps``) to the saved structure
    and restore its EMAs, allocator and flags. The adapter tensors are re-created with the saved shapes
    and trainable flags but *zero values*: load the model's checkpoint afterwards."""
    from increlora.methods.increlora.layer import SVDLinear

    if state.get("version") != STATE_VERSION:
        raise ValueError(f"IncreLoRA state version {state.get('version')!r} is not supported (this code reads {STATE_VERSION})")
    if list(state["names"]) != list(method.names):
        raise ValueError("the checkpoint's IncreLoRA modules differ from this model's: attach with the same "
                         "target_modules as the run that wrote it")
    for key in ("total_steps", "init_warmup", "interval", "top_h"):
        saved, now = int(state[key]), int(getattr(method, key))
        if saved != now:
            raise ValueError(f"the checkpoint was written by a run with {key} = {saved}, this one has {now}: attach with "
                             "the same IncreLoRA config and total_steps as the run that wrote it")
    for m, saved in zip(method.modules, state["modules"]):
        m: SVDLinear
        w = m.base_layer.weight
        a_list, b_list, e_list = [], [], []
        for size, a_req, b_req, e_req in saved["chunks"]:
            a_list.append(nn.Parameter(torch.zeros(size, m.in_features, dtype=m.param_dtype, device=w.device), requires_grad=a_req))
            b_list.append(nn.Parameter(torch.zeros(m.out_features, size, dtype=m.param_dtype, device=w.device), requires_grad=b_req))
            e_list.append(nn.Parameter(torch.zeros(size, 1, dtype=m.param_dtype, device=w.device), requires_grad=e_req))
        m.lora_A, m.lora_B, m.lora_E = nn.ParameterList(a_list), nn.ParameterList(b_list), nn.ParameterList(e_list)
        m.n_active = int(saved["n_active"])
        m.include_reserve = bool(saved["include_reserve"])
        m.score_enabled = bool(saved["score_enabled"])
        m.last_score = None
        m._score_grad = None
        m.set_ranknum(int(round(saved["ranknum"])), compensate=False)
    ema = state["ema"]
    dev = method.ema.sensitivity.device
    method.ema.sensitivity = ema["sensitivity"].to(dev, torch.float32).clone()
    method.ema.uncertainty = ema["uncertainty"].to(dev, torch.float32).clone()
    method.ema.updates = int(ema["updates"])
    method.allocator.ranks = [int(r) for r in state["allocator"]["ranks"]]
    method.allocator.history = [{"step": int(h["step"]), "picks": [(int(k), int(g)) for k, g in h["picks"]]}
                                for h in state["allocator"]["history"]]
    method.growing = bool(state["growing"])
    method.cleaned_up = bool(state["cleaned_up"])
    method.events = [dict(e) for e in state["events"]]
    method.growth_end_step = state["growth_end_step"]
    method._reserves_pending = bool(state["reserves_pending"])
    method.peak_trainable = int(state["peak_trainable"])
    method._initial_reserve_params = []
    method.generator.set_state(state["generator"])
    if [m.rank for m in method.modules] != method.allocator.ranks:
        raise ValueError("the checkpoint's IncreLoRA state is inconsistent: module ranks differ from the allocator's")


def optimizer_groups(model: nn.Module, layout: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Parameter groups for a new optimizer, in the saved order (:func:`optimizer_layout`), over ``model``'s
    parameters as rebuilt by :func:`restore_structure`."""
    params = dict(model.named_parameters(remove_duplicate=False))
    groups = []
    for entry in layout:
        missing = [n for n in entry["param_names"] if n not in params]
        if missing:
            raise ValueError(f"the checkpoint's optimizer group {entry.get('name', '?')!r} names parameters this model "
                             f"lacks (e.g. {missing[0]}): restore the IncreLoRA structure first")
        group = {k: v for k, v in entry.items() if k != "param_names"}
        group["params"] = [params[n] for n in entry["param_names"]]
        groups.append(group)
    return groups
