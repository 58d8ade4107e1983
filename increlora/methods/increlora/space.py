"""IncreLoRA's search space: the knobs the paper leaves to the user.

Searched by default: the budget (``target_rank``, the average final rank per module, or
``budget_params``), the growth schedule as fractions of the run (``init_warmup_frac``,
``incre_interval_frac``; the trainer converts them to steps) and the EMA coefficients ``beta1``,
``beta2``. Optional (``extra``): ``learning_rate`` (log range around the search's base rate),
``top_h``, ``n_add`` and ``orth_reg_weight``.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

from increlora.methods.space import Param, Space, SpaceContext, SpaceError, learning_rate_param, sample_params

METHOD = "increlora"
# The learning rate's range in the default space (log): the fidelity benchmark's held-out choices 3e-3 (CoLA), 5e-3 (CoLA, official mode), 1e-2 at the grid's top (SST-2)
# (benchmarks/results/fidelity.md), with a factor of about 3 either side.
LEARNING_RATE_RANGE = (1e-3, 3e-2)
OPTIONAL_KNOBS = ("learning_rate", "top_h", "n_add", "orth_reg_weight")


def budget_param(budget_params: Optional[tuple[int, int]] = None) -> Param:
    """The budget knob: ``target_rank`` in [1, 8] (log), or ``budget_params`` in the given range (log)."""
    if budget_params is not None:
        lo, hi = int(budget_params[0]), int(budget_params[1])
        if not 1 <= lo < hi:
            raise SpaceError(f"budget_params: need 1 <= low < high, got [{lo}, {hi}]")
        return Param("budget_params", "int", lo, hi, log=True)
    return Param("target_rank", "float", 1.0, 8.0, log=True)


def optional_param(name: str, learning_rate: float) -> Param:
    """The range of an optional knob (one of :data:`OPTIONAL_KNOBS`)."""
    if name == "learning_rate":
        return learning_rate_param(learning_rate)
    if name == "top_h":
        return Param("top_h", "int", 1, 12)
    if name == "n_add":
        return Param("n_add", "int", 1, 4)
    if name == "orth_reg_weight":
        return Param("orth_reg_weight", "float", 0.0, 0.5)
    raise SpaceError(f"{name}: not an optional knob of the {METHOD} space; choose from {', '.join(OPTIONAL_KNOBS)}")


def default_space(
    task: str = "cola",
    *,
    extra: Sequence[str] = (),
    learning_rate: float = 1e-3,
    budget_params: Optional[tuple[int, int]] = None,
) -> Space:
    """The built-in IncreLoRA space for ``task``, plus the ``extra`` knobs.

    ``learning_rate`` is the search's base rate, the centre of the rate's range when searched.
    """
    params = [
        budget_param(budget_params),
        Param("init_warmup_frac", "float", 0.0, 0.25),
        Param("incre_interval_frac", "float", 0.005, 0.1, log=True),
        Param("beta1", "float", 0.6, 0.95),
        Param("beta2", "float", 0.6, 0.95),
    ]
    params += [optional_param(name, learning_rate) for name in extra]
    return Space(METHOD, tuple(params), {}, source=f"builtin:{task}")


def sample(trial: Any, space: Space, context: SpaceContext) -> dict[str, Any]:
    """Suggest every knob of ``space``; the rank budget never goes below the initial rank."""
    bounds = {}
    rank = space.param("target_rank")
    init_rank = space.constants.get("init_rank", 1)
    if rank is not None and rank.type != "categorical" and rank.low < init_rank:
        bounds["target_rank"] = (max(float(rank.low), float(init_rank)), max(float(rank.high), float(init_rank)))
    return sample_params(trial, space.params, bounds)


def budget_range_from_rank(cost_per_average_rank: int, low: float = 1.0, high: float = 8.0) -> tuple[int, int]:
    """A ``budget_params`` range equal to uniform average ranks ``low``..``high``."""
    return int(math.floor(low * cost_per_average_rank)), int(math.ceil(high * cost_per_average_rank))
