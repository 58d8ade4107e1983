"""Importance EMAs and the growth schedule of IncreLoRA (spec sections 1.3-1.4): pure logic.

The allocator knows modules only by index, their current rank and what one rank costs in the
budget's unit (1 for rank budgets, d_in + d_out + 1 for parameter budgets). It decides *when* a
growth round happens and *which* modules gain how many ranks; the method applies the decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch


class ImportanceEMA:
    """Sensitivity and uncertainty EMAs of one scalar score per module (no bias correction).

    ``sens = b1 * sens + (1 - b1) * I``; ``unc = b2 * unc + (1 - b2) * |I - sens|`` (with the
    updated ``sens``); ``score = sens * unc``. Kept as tensors on the scores' device so the
    per-step update needs no host synchronisation.
    """

    def __init__(self, n_modules: int, beta1: float, beta2: float, device: torch.device | str = "cpu") -> None:
        self.beta1 = float(beta1)
        self.beta2 = float(beta2)
        self.sensitivity = torch.zeros(n_modules, dtype=torch.float32, device=device)
        self.uncertainty = torch.zeros(n_modules, dtype=torch.float32, device=device)
        self.updates = 0

    def update(self, instant: torch.Tensor) -> None:
        """Fold in one step's instantaneous scores ``I_k`` (shape: n_modules)."""
        instant = instant.to(self.sensitivity.device, torch.float32)
        self.sensitivity.mul_(self.beta1).add_(instant, alpha=1.0 - self.beta1)
        self.uncertainty.mul_(self.beta2).add_((instant - self.sensitivity).abs(), alpha=1.0 - self.beta2)
        self.updates += 1

    @property
    def score(self) -> torch.Tensor:
        return self.sensitivity * self.uncertainty


def ema_memory_steps(beta: float) -> int:
    """Steps an EMA with coefficient ``beta`` needs to replace most of its memory: ``ceil(2 / (1 - beta))``
    (after that many steps the weight left on older values is about e^-2)."""
    return max(1, math.ceil(2.0 / (1.0 - float(beta)) - 1e-9))


def auto_top_h(remaining_ranks: float, *, n_add: int, init_warmup: int, interval: int, end_step: int, n_modules: int) -> int:
    """Modules per round so that ``remaining_ranks`` are granted by ``end_step``: the rounds at
    ``step > init_warmup`` and ``step % interval == 0`` up to ``end_step``, ``n_add`` ranks a module."""
    first = (init_warmup // interval + 1) * interval
    rounds = max(1, (end_step - first) // interval + 1)
    return int(min(max(1, n_modules), max(1, math.ceil(remaining_ranks / (rounds * n_add)))))


@dataclass
class GrowthPlan:
    """Static description of the growth schedule."""

    init_warmup: int
    interval: int
    top_h: int
    n_add: int
    budget: int  # in units of ``costs``
    official_topk: bool = False


@dataclass
class Allocator:
    """Decides growth rounds under a budget; never overshoots unless ``official_topk`` is set."""

    plan: GrowthPlan
    costs: Sequence[int]  # budget units one rank of module k costs
    ranks: list[int]  # current active rank of each module
    history: list[dict] = field(default_factory=list)

    def spent(self) -> int:
        return sum(r * c for r, c in zip(self.ranks, self.costs))

    def remaining(self) -> int:
        return self.plan.budget - self.spent()

    def finished(self) -> bool:
        """Growth is over: the budget is reached or no module's rank fits into what is left."""
        return self.remaining() < min(self.costs)

    def exact(self) -> bool:
        """The budget is used up without overshoot: exactly for rank budgets (the official clean-up
        condition); for parameter budgets, when no further rank fits and none was granted beyond it."""
        return 0 <= self.remaining() < min(self.costs)

    def is_growth_step(self, step: int) -> bool:
        """Official rule: ``step > init_warmup and step % interval == 0`` (0-based steps)."""
        return step > self.plan.init_warmup and step % self.plan.interval == 0

    def select(self, scores: Sequence[float]) -> list[tuple[int, int]]:
        """Modules to grow and by how many ranks, for one round, given module scores."""
        if self.finished():
            return []
        if self.plan.official_topk:
            return self._select_official(scores)
        order = sorted(range(len(scores)), key=lambda k: (-float(scores[k]), k))
        remaining = self.remaining()
        picks: list[tuple[int, int]] = []
        for k in order:
            if len(picks) == self.plan.top_h:
                break
            grant = min(self.plan.n_add, remaining // self.costs[k])
            if grant <= 0:
                continue
            picks.append((k, grant))
            remaining -= grant * self.costs[k]
        return picks

    def _select_official(self, scores: Sequence[float]) -> list[tuple[int, int]]:
        # Quirk 4.2: k compares a module count with remaining *ranks*; ties select extra modules.
        remaining_ranks = max(1, self.remaining() // min(self.costs))
        k = min(self.plan.top_h, remaining_ranks)
        tau = sorted((float(s) for s in scores), reverse=True)[k - 1]
        return [(i, self.plan.n_add) for i, s in enumerate(scores) if float(s) >= tau]

    def apply(self, step: int, picks: list[tuple[int, int]]) -> None:
        for k, grant in picks:
            self.ranks[k] += grant
        self.history.append({"step": step, "picks": [(int(k), int(g)) for k, g in picks]})

