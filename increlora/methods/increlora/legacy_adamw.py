"""The AdamW of transformers 4.4, which the official IncreLoRA code steps with (spec section 4).

It differs from ``torch.optim.AdamW`` in two places, and both change IncreLoRA's scores measurably
(on lambdas whose gradients are ~1e-7 the epsilon placement alone moves a module's score by ~20 %):

- epsilon is added to ``sqrt(v)`` *before* bias correction: the update is
  ``p -= lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps)``;
- weight decay is applied *after* the Adam update: ``p -= lr * wd * p`` (on the updated ``p``).

A parameter without a gradient is skipped (no state, no step count, no decay), as in the original.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Optional

import torch


class LegacyAdamW(torch.optim.Optimizer):
    """transformers-4.4 ``AdamW`` (``correct_bias=True``), step for step."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        correct_bias: bool = True,
    ) -> None:
        if lr < 0:
            raise ValueError(f"invalid learning rate {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid betas {betas}")
        if eps < 0:
            raise ValueError(f"invalid epsilon {eps}")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, correct_bias=correct_bias)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            by_step: dict[int, list[tuple[torch.Tensor, ...]]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                by_step.setdefault(state["step"], []).append((p, p.grad, state["exp_avg"], state["exp_avg_sq"]))
            # the same update for every parameter of a group at the same step count, as one foreach call each
            for t, items in by_step.items():
                ps, grads, exp_avgs, exp_avg_sqs = (list(x) for x in zip(*items))
                torch._foreach_mul_(exp_avgs, beta1)
                torch._foreach_add_(exp_avgs, grads, alpha=1.0 - beta1)
                torch._foreach_mul_(exp_avg_sqs, beta2)
                torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)
                denom = torch._foreach_sqrt(exp_avg_sqs)
                torch._foreach_add_(denom, eps)
                step_size = lr
                if group["correct_bias"]:
                    step_size = lr * math.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)
                torch._foreach_addcdiv_(ps, exp_avgs, denom, value=-step_size)
                if wd > 0.0:
                    torch._foreach_add_(ps, ps, alpha=-lr * wd)
        return loss
