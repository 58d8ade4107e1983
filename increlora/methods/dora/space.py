"""DoRA's search space: LoRA's, one rank ``r`` for every adapted module (1..16, log).

``extra`` may add ``learning_rate`` (log range around the search's base rate).
"""

from __future__ import annotations

from typing import Sequence

from increlora.methods.lora.space import LEARNING_RATE_RANGE, OPTIONAL_KNOBS, rank_space, sample  # noqa: F401  (the space's interface)
from increlora.methods.space import Space

METHOD = "dora"


def default_space(task: str = "cola", *, extra: Sequence[str] = (), learning_rate: float = 1e-3) -> Space:
    """The built-in DoRA space for ``task`` (normalised name), plus the ``extra`` knobs."""
    return rank_space(METHOD, task, extra=extra, learning_rate=learning_rate)
