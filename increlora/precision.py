"""Training precision: fp32, or bf16 where the hardware multiplies bf16 natively.

``bf16`` stores the *frozen* base weights (every ``nn.Linear`` and ``nn.Embedding`` parameter that is not
trained) in bf16 and runs forward and backward under bf16 autocast. The trained tensors (adapters, head),
their gradients, the optimizer state and IncreLoRA's score EMAs stay fp32; the adapter's effect is still
computed on its own low-rank path (never folded into a bf16 weight, where it would be rounded at the scale
of W0), and evaluation under bf16 keeps that path too instead of merging.

``auto`` resolves per device: bf16 on CUDA (what this project always did there); on a CPU, bf16 only where
it multiplies bf16 natively (AMX / AVX512-BF16) *and* :data:`AUTO_BF16_ON_CPU` is set, which follows the
measured equivalence of bf16 and fp32 trials (``benchmarks/precision.py``); fp32 elsewhere.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import ContextManager

import torch
from torch import nn

PRECISIONS = ("auto", "bf16", "fp32")
# Whether ``auto`` picks bf16 on CPUs with native bf16: set by the equivalence study (benchmarks/precision.py,
# 5 paired seeds x CoLA, SST-2, MRPC x LoRA, IncreLoRA); until it shows bf16 within seed noise, fp32.
AUTO_BF16_ON_CPU = False


def cpu_has_native_bf16() -> bool:
    """True where oneDNN multiplies bf16 natively on this CPU (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``bf16`` or ``fp32`` for ``precision`` (``auto``, ``bf16``, ``fp32``) on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: choose one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16"
    if device.type == "cpu" and AUTO_BF16_ON_CPU and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def autocast(device: torch.device, precision: str) -> ContextManager:
    """bf16 autocast on ``device`` for a resolved ``bf16``; nothing for ``fp32``."""
    if precision == "bf16" and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def store_frozen_weights_in_bf16(model: nn.Module) -> int:
    """Cast the frozen parameters of every Linear and Embedding to bf16 in place; returns how many.

    Trained parameters (``requires_grad``) are left in fp32, and so are LayerNorms (their statistics stay
    fp32 under autocast). Call after the adapters are attached, so the adapters' own tensors, created fp32,
    are already trainable and are skipped."""
    n = 0
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            for p in module.parameters(recurse=False):
                if not p.requires_grad and p.dtype == torch.float32:
                    p.data = p.data.to(torch.bfloat16)
                    n += 1
    return n
