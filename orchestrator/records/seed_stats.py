"""Seeds of one configuration, and what they say: mean, seed standard deviation, a 95 % interval, and
whether two configurations are distinguishable (the paired interval of their difference excludes 0).

A search trains every configuration once, on the search's seed (seed index 0). A configuration the
sampler proposes again (:mod:`orchestrator.running.searcher`) and the confirmation stage
(:mod:`orchestrator.running.confirmation`) add further seeds, index 1, 2, ...: seed index ``j`` is the training seed
``base + SEED_STRIDE * j`` for every configuration, so the scores of two configurations pair by index (same
training subset, batch order and initialisation seed; the dev rows they are scored on stay those of
index 0). Intervals are Student-t intervals (:mod:`scipy.stats`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

SEED_STRIDE = 1000  # seed index j trains with seed base + 1000 j


def seed_for(base_seed: int, index: int) -> int:
    """The training seed of seed index ``index`` (0: the search's own seed)."""
    return int(base_seed) + SEED_STRIDE * int(index)


def t_interval(values: list[float], level: float = 0.95) -> Optional[tuple[float, float]]:
    """The two-sided Student-t interval of the mean of ``values``; None for fewer than 2 values."""
    from scipy import stats

    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return mean - half, mean + half


@dataclass(frozen=True)
class SeedStats:
    """The scores of one configuration by seed index."""

    scores: Mapping[int, float]  # seed index -> score

    @property
    def n(self) -> int:
        return len(self.scores)

    @property
    def values(self) -> list[float]:
        return [float(self.scores[k]) for k in sorted(self.scores)]

    @property
    def mean(self) -> float:
        return sum(self.values) / self.n

    @property
    def sd(self) -> Optional[float]:
        """Seed standard deviation (n - 1 in the denominator); None for one seed."""
        if self.n < 2:
            return None
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (self.n - 1))

    @property
    def interval(self) -> Optional[tuple[float, float]]:
        """95 % interval of the mean; None for one seed."""
        return t_interval(self.values)

    def text(self) -> str:
        """``12.31 ± 2.40 (n 4)``: mean ± the interval's half-width; one seed prints as ``9.67 (n 1)``."""
        ci = self.interval
        if ci is None:
            return f"{self.mean:.2f} (n 1)"
        return f"{self.mean:.2f} ± {(ci[1] - ci[0]) / 2:.2f} (n {self.n})"


@dataclass(frozen=True)
class Difference:
    """``a - b`` over the seed indices both have."""

    mean: float
    interval: Optional[tuple[float, float]]
    n: int

    @property
    def separable(self) -> bool:
        """The 95 % paired interval excludes 0."""
        return self.interval is not None and (self.interval[0] > 0 or self.interval[1] < 0)

    def text(self) -> str:
        if self.interval is None:
            return f"{self.mean:+.2f} (n {self.n}, no interval)"
        return f"{self.mean:+.2f} [{self.interval[0]:+.2f}, {self.interval[1]:+.2f}] (n {self.n})"


def paired_difference(a: SeedStats, b: SeedStats) -> Optional[Difference]:
    """The paired difference ``a - b`` over their common seed indices; None when they share none."""
    common = sorted(set(a.scores) & set(b.scores))
    if not common:
        return None
    diffs = [float(a.scores[k]) - float(b.scores[k]) for k in common]
    return Difference(mean=sum(diffs) / len(diffs), interval=t_interval(diffs), n=len(diffs))


def pooled_sd(groups: list[SeedStats]) -> Optional[float]:
    """The seed standard deviation pooled over the configurations with at least 2 seeds (None without any)."""
    num, den = 0.0, 0
    for g in groups:
        if g.n >= 2 and g.sd is not None:
            num += (g.n - 1) * g.sd ** 2
            den += g.n - 1
    return math.sqrt(num / den) if den else None


def distinguishable_text(rows: list[dict[str, Any]], confirmed: bool) -> str:
    """One plain sentence on whether the front's score differences can be told apart from seed noise; ``rows``:
    neighbouring front configurations as ``search.json``'s ``distinguishable`` holds them."""
    if not confirmed:
        return "The front is single runs (no confirmation): its score differences are not tested against seed noise."
    if not rows:
        return "The confirmed front has one configuration."
    separable = [r for r in rows if r["separable"]]
    if not separable and len(rows) == 1:
        return ("The score difference between the front's two configurations is not separable from seed noise (its "
                "paired 95 % interval includes 0): they score alike within the noise, so pick by size.")
    if not separable:
        return (f"None of the {len(rows)} score differences between neighbouring front configurations is separable from "
                "seed noise (every paired 95 % interval includes 0): the front's configurations score alike within the "
                "noise, so pick by size.")
    parts = [f"t{r['larger']:03d} vs t{r['smaller']:03d} {r['difference']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"
             for r in separable]
    return (f"{len(separable)} of {len(rows)} score differences between neighbouring front configurations are separable "
            f"(paired 95 % interval excludes 0): " + "; ".join(parts) + ".")
