"""The LoRA baseline's search space: one rank ``r`` for every adapted module (1..16, log).

``extra`` may add ``learning_rate`` (log range around the search's base rate), so the baseline is
searched the same way as IncreLoRA.
"""

from __future__ import annotations

from typing import Any, Sequence

from increlora.methods.space import Param, Space, SpaceContext, SpaceError, learning_rate_param, sample_params

METHOD = "lora"
# The learning rate's range in the default space (log): the fidelity benchmark's held-out choices 3e-4 (CoLA, SST-2) and 1e-3 (MRPC)
# (benchmarks/results/fidelity.md), with a factor of about 3 either side.
LEARNING_RATE_RANGE = (1e-4, 3e-3)
OPTIONAL_KNOBS = ("learning_rate",)


def default_space(task: str = "cola", *, extra: Sequence[str] = (), learning_rate: float = 1e-3) -> Space:
    """The built-in LoRA space for ``task`` (normalised name), plus the ``extra`` knobs (``learning_rate``: the base rate)."""
    return rank_space(METHOD, task, extra=extra, learning_rate=learning_rate)


def rank_space(method: str, task: str, *, extra: Sequence[str] = (), learning_rate: float = 1e-3) -> Space:
    """One rank ``r`` everywhere (1..16, log), plus the ``extra`` knobs: LoRA's space, and any method's alike."""
    params = [Param("r", "int", 1, 16, log=True)]
    for name in extra:
        if name not in OPTIONAL_KNOBS:
            raise SpaceError(f"{name}: not an optional knob of the {method} space; choose from {', '.join(OPTIONAL_KNOBS)}")
        params.append(learning_rate_param(learning_rate))
    return Space(method, tuple(params), {}, source=f"builtin:{task}")


def sample(trial: Any, space: Space, context: SpaceContext) -> dict[str, Any]:
    """Suggest every knob of ``space`` (no constraints between LoRA knobs)."""
    return sample_params(trial, space.params)
