"""The AdaLoRA baseline's search space, parallel to IncreLoRA's.

Searched: the budget ``target_r`` (average final rank, 1..8, log), the starting rank ``init_r``
(kept >= target_r), the schedule as fractions of the run - ``tinit_frac``, ``tfinal_frac``,
``delta_t_frac`` (the trainer turns them into steps) - and ``beta1``, ``beta2``. Optional: ``learning_rate``,
``orth_reg_weight``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from increlora.methods.space import Param, Space, SpaceContext, SpaceError, learning_rate_param, sample_params

METHOD = "adalora"
# The learning rate's range in the default space (log): the fidelity benchmark's held-out choices 3e-3 (CoLA, MRPC) and 5e-3 (SST-2)
# (benchmarks/results/fidelity.md), with a factor of about 3 either side.
LEARNING_RATE_RANGE = (1e-3, 1.5e-2)
OPTIONAL_KNOBS = ("learning_rate", "orth_reg_weight")
# tinit + tfinal stay below this fraction of the run, leaving AdaLoRA a budgeting phase.
MAX_FIXED_SHARE = 0.9


def default_space(task: str = "cola", *, extra: Sequence[str] = (), learning_rate: float = 1e-3) -> Space:
    """The built-in AdaLoRA space for ``task`` (normalised name), plus the ``extra`` knobs (``learning_rate``: the base rate)."""
    params = [
        Param("target_r", "float", 1.0, 8.0, log=True),
        Param("init_r", "int", 2, 16, log=True),
        Param("tfinal_frac", "float", 0.0, 0.4),
        Param("tinit_frac", "float", 0.0, 0.3),
        Param("delta_t_frac", "float", 0.0005, 0.02, log=True),
        Param("beta1", "float", 0.6, 0.95),
        Param("beta2", "float", 0.6, 0.95),
    ]
    for name in extra:
        if name == "learning_rate":
            params.append(learning_rate_param(learning_rate))
        elif name == "orth_reg_weight":
            params.append(Param("orth_reg_weight", "float", 0.0, 0.5))
        else:
            raise SpaceError(f"{name}: not an optional knob of the {METHOD} space; choose from {', '.join(OPTIONAL_KNOBS)}")
    return Space(METHOD, tuple(params), {}, source=f"builtin:{task}")


def _numeric(space: Space, name: str) -> bool:
    p = space.param(name)
    return p is not None and p.type != "categorical"


def sample(trial: Any, space: Space, context: SpaceContext) -> dict[str, Any]:
    """Suggest the knobs in order, keeping ``target_r <= init_r`` and ``tinit + tfinal`` below 90 %.

    ``target_r`` is drawn first (capped by the largest ``init_r``), then ``init_r`` from
    ``ceil(target_r)`` up; ``tfinal_frac`` before ``tinit_frac``, which is capped accordingly.
    """
    out: dict[str, Any] = {}
    rest = list(space.params)

    def take(name: str) -> Param:
        p = space.param(name)
        rest.remove(p)
        return p

    init_r_param = space.param("init_r")
    init_r_max = init_r_param.high if _numeric(space, "init_r") else space.constants.get("init_r")
    if _numeric(space, "target_r"):
        p = take("target_r")
        hi = p.high if init_r_max is None else min(float(p.high), float(init_r_max))
        out["target_r"] = p.suggest(trial, high=max(float(p.low), hi))
    if _numeric(space, "init_r"):
        p = take("init_r")
        target = out.get("target_r", space.constants.get("target_r"))
        lo = int(p.low) if target is None else max(int(p.low), math.ceil(float(target)))
        out["init_r"] = p.suggest(trial, low=lo, high=max(lo, int(p.high)))
    if _numeric(space, "tfinal_frac"):
        out["tfinal_frac"] = take("tfinal_frac").suggest(trial)
    if _numeric(space, "tinit_frac"):
        p = take("tinit_frac")
        tfinal = out.get("tfinal_frac", space.constants.get("tfinal_frac", 0.0))
        hi = min(float(p.high), MAX_FIXED_SHARE - float(tfinal))
        out["tinit_frac"] = p.suggest(trial, high=max(float(p.low), hi))
    out.update(sample_params(trial, rest))
    return out
