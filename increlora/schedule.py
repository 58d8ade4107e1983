"""Run length in optimizer steps, and fractions of a run <-> step counts: the one place for both.

Search spaces express schedule knobs (IncreLoRA's warm-up and growth interval, AdaLoRA's
tinit/tfinal/deltaT) as fractions of the run so that one space fits runs of any length; the methods
resolve them with :func:`frac_to_steps` (``round(frac * total_steps)``, at least ``minimum``) and the
trainer counts a run's steps with :func:`total_steps`.
"""

from __future__ import annotations

import math
from typing import Optional


def steps_per_epoch(train_size: int, batch_size: int) -> int:
    """Optimizer steps in one epoch (the last, partial batch counts)."""
    if train_size <= 0 or batch_size <= 0:
        raise ValueError(f"train_size and batch_size must be > 0, got {train_size} and {batch_size}")
    return math.ceil(train_size / batch_size)


def total_steps(train_size: int, batch_size: int, epochs: float, max_steps: Optional[int] = None) -> int:
    """Optimizer steps of a whole run: ``max_steps`` if given, else ``ceil(epochs * steps_per_epoch)``."""
    if max_steps is not None:
        if max_steps <= 0:
            raise ValueError(f"max_steps must be > 0, got {max_steps}")
        return int(max_steps)
    if epochs <= 0:
        raise ValueError(f"epochs must be > 0, got {epochs}")
    return max(1, math.ceil(epochs * steps_per_epoch(train_size, batch_size)))


def frac_to_steps(frac: float, total: int, *, minimum: int = 0) -> int:
    """``frac`` of a ``total``-step run as a step count: ``max(minimum, round(frac * total))``."""
    if not 0.0 <= frac < 1.0:
        raise ValueError(f"a schedule fraction must be in [0, 1), got {frac}")
    if total <= 0:
        raise ValueError(f"total steps must be > 0, got {total}")
    return max(int(minimum), int(round(frac * total)))


def steps_to_frac(steps: int, total: int) -> float:
    """A step count as a fraction of a ``total``-step run (the inverse of :func:`frac_to_steps`)."""
    if total <= 0:
        raise ValueError(f"total steps must be > 0, got {total}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    return float(steps) / float(total)


def eval_steps_for(total: int, evaluations: int) -> int:
    """An ``eval_steps`` value giving about ``evaluations`` evaluations over a ``total``-step run."""
    if evaluations <= 0:
        raise ValueError(f"evaluations must be > 0, got {evaluations}")
    return max(1, math.ceil(total / evaluations))


def evaluation_count(total: int, eval_steps: int) -> int:
    """Evaluations of a run that evaluates every ``eval_steps`` steps and at its end."""
    if eval_steps <= 0:
        raise ValueError(f"eval_steps must be > 0, got {eval_steps}")
    return math.ceil(total / eval_steps)
