"""Which knobs matter: Optuna's parameter importance for each objective, next to the seed's noise.

:func:`knob_importance` runs Optuna's fANOVA (``optuna.importance.FanovaImportanceEvaluator``) on the
search's COMPLETE trials, once per objective, un-normalised: each knob's value is the share of the
objective's variance that knob explains alone (fANOVA's main effect), so it can stand beside the share
the seed explains, measured by the confirmation stage (the pooled seed variance over the variance of all
single runs). ``benchmarks/importance_choice.py`` measured fANOVA against PED-ANOVA on studies of this
size with a known answer; see its results for why fANOVA is the default.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

EVALUATORS = ("fanova", "ped-anova")
MIN_TRIALS = 8  # fewer COMPLETE trials: no importance (a forest on 7 points says nothing)
OBJECTIVES = ("score", "params")


def make_evaluator(name: str, seed: int = 0) -> Any:
    """Optuna's importance evaluator ``fanova`` or ``ped-anova``."""
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator

    if name == "fanova":
        return FanovaImportanceEvaluator(seed=seed)
    if name == "ped-anova":
        return PedAnovaImportanceEvaluator()
    raise ValueError(f"unknown importance evaluator {name!r}; choose one of {', '.join(EVALUATORS)}")


def importances(study: Any, objective: int, *, evaluator: str = "fanova", seed: int = 0,
                trials: Optional[Sequence[Any]] = None) -> dict[str, float]:
    """Importance of each searched knob for objective ``objective`` (0: score, 1: parameters), un-normalised;
    ``trials`` (FrozenTrials) restricts the study to those. PED-ANOVA ranks knobs by how they separate the best
    trials (it assumes lower is better, so the score is negated)."""
    import optuna
    from optuna.importance import get_param_importances

    if trials is not None:  # a copy of the study holding only these trials
        sub = optuna.create_study(directions=study.directions)
        sub.add_trials(list(trials))
        study = sub
    sign = -1.0 if (objective == 0 and evaluator == "ped-anova") else 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = get_param_importances(study, evaluator=make_evaluator(evaluator, seed), normalize=False,
                                       target=lambda t: sign * float(t.values[objective]))
    return {k: float(v) for k, v in values.items()}


@dataclass
class Importance:
    """Knob importance per objective and the seed's share of the score variance."""

    evaluator: str
    trials: int  # COMPLETE trials it was computed on
    score: dict[str, float] = field(default_factory=dict)  # knob -> share of the score variance it explains
    params: dict[str, float] = field(default_factory=dict)
    seed_share: Optional[float] = None  # pooled seed variance / variance of the single-run scores
    seed_sd: Optional[float] = None
    note: Optional[str] = None  # why it was not computed

    def to_dict(self) -> dict[str, Any]:
        return {"evaluator": self.evaluator, "trials": self.trials, "score": self.score, "params": self.params,
                "seed_share": self.seed_share, "seed_sd": self.seed_sd,
                "note": self.note}

    def sentence(self) -> str:
        """``learning_rate explains 41 % of the score variance, beta2 3 %; the seed 18 % (sd 1.9), more than beta2``."""
        if not self.score:
            return f"not computed ({self.note or f'fewer than {MIN_TRIALS} complete trials'})"
        ranked = sorted(self.score.items(), key=lambda kv: -kv[1])
        parts = [f"{k} {100 * v:.0f} %" for k, v in ranked]
        text = f"share of the score variance each knob explains ({self.evaluator}, {self.trials} trials): " + ", ".join(parts)
        if self.seed_share is not None:
            below = [k for k, v in ranked if v < self.seed_share]
            text += f"; the seed alone {100 * self.seed_share:.0f} % (seed sd {self.seed_sd:.2f})"
            if below:
                text += f", more than {', '.join(below)}" if len(below) < len(ranked) else ", more than every knob"
        return text


def knob_importance(study: Any, *, seed_sd: Optional[float] = None, evaluator: str = "fanova") -> Importance:
    """:class:`Importance` of a search's study: both objectives over its COMPLETE trials with finite values;
    ``seed_sd``: the pooled seed standard deviation of the confirmation stage (the seed's share)."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.values is not None and all(math.isfinite(float(v)) for v in t.values) and t.params]
    out = Importance(evaluator=evaluator, trials=len(done), seed_sd=seed_sd)
    if len(done) < MIN_TRIALS:
        return out
    scores = [float(t.values[0]) for t in done]
    mean = sum(scores) / len(scores)
    var = sum((s - mean) ** 2 for s in scores) / (len(scores) - 1)
    if var <= 0:
        out.note = "every trial scored the same"
        return out
    out.score = importances(study, 0, evaluator=evaluator, trials=done)
    if len({float(t.values[1]) for t in done}) > 1:
        out.params = importances(study, 1, evaluator=evaluator, trials=done)
    if seed_sd is not None:
        out.seed_share = min(1.0, float(seed_sd) ** 2 / var)
    return out
