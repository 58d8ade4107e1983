"""IncreLoRA's knobs (spec section 2.1) and where its behaviour follows the official code (spec section 4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from increlora.config import check_domains, knob, need
from increlora.domains import FLAG, FRACTION, MAX_BUDGET_PARAMS, MAX_RANK, MAX_TOTAL_RANK, RANK, Domain, real, whole


@dataclass
class IncreLoRAConfig:
    """IncreLoRA's knobs (spec section 2.1). By default it runs as the official code does (``reproduce_official``,
    chosen by the paired fidelity benchmark: docs/fidelity.md); ``reproduce_official=False`` gives this project's
    variant, whose quirk flags below then pick the official behaviours one by one (spec section 4)."""

    target_rank: float = knob(2.0, "budget as the average final rank per adapted module (paper unit)")
    target_total_rank: Optional[int] = knob(None, "budget as the total final rank over all modules (overrides target_rank)")
    budget_params: Optional[int] = knob(None, "budget as total adapter parameters, active only (overrides the rank budgets)")
    init_rank: int = knob(1, "initial rank of every module (lora_r)")
    init_warmup: Optional[int] = knob(None, "steps before the first growth round (default: 100, unless init_warmup_frac is set)")
    incre_interval: Optional[int] = knob(None, "steps between growth rounds, delta T (default: 100, unless incre_interval_frac is set)")
    init_warmup_frac: Optional[float] = knob(None, "init_warmup as a fraction of the run's steps (overrides init_warmup)")
    incre_interval_frac: Optional[float] = knob(
        None,
        "incre_interval as a fraction of the run's steps (overrides it); never resolves below 2/(1-beta1) steps, "
        "the memory of the score's EMA, so every round ranks modules by scores measured since the last one",
    )
    top_h: Optional[int] = knob(
        3,
        "modules that gain rank per growth round; null = as many as growth needs to end at growth_end_frac of the run",
    )
    growth_end_frac: float = knob(0.4, "with top_h null: the fraction of the run by which growth should end (paper's scripts: 20-45%)")
    n_add: Optional[int] = knob(None, "ranks added per selected module (default: max(1, round(target_rank / 2)))")
    beta1: float = knob(0.85, "EMA coefficient of the sensitivity")
    beta2: float = knob(0.85, "EMA coefficient of the uncertainty")
    orth_reg_weight: float = knob(0.1, "weight of the orthogonal regularisation (gamma)")
    advance_learn: bool = knob(True, "train the reserved components' a, b before they are activated")
    multi_lr: bool = knob(True, "give every new parameter group its own warm-up/decay schedule (restart warm-up)")
    # Quirks of the official code, one by one, for the variant (reproduce_official=False; spec section 4).
    official_topk: bool = knob(False, "quirk 4.2: k = min(top_h, remaining ranks), ties select extra modules (may overshoot)")
    rescale_on_growth: bool = knob(False, "quirk 4.1: let alpha/rank shrink existing updates at growth (default: compensate)")
    full_lr_first_step: bool = knob(
        False,
        "a new group's first update at the full LR (spec 4.5 as first read; it has no effect in the official code, "
        "where a group has no gradient in the step it is added: not part of --reproduce-official)",
    )
    keep_reserves_after_cleanup: bool = knob(False, "official: keep training the switched-off reserves after growth")
    reproduce_official: bool = knob(
        True,
        "the default: the official code step for step (--no-reproduce-official: this project's variant): its AdamW (transformers 4.4), reserves created after step 0's backward, a new "
        "group's LR 0 at the step after it is added, fresh reserves in the last round too, and the quirks of "
        "--official-topk, --rescale-on-growth and --keep-reserves-after-cleanup (those flags are implied)",
    )

    # Every knob's domain (increlora.domains): checked by validate(), the CLIs, presets, --set and spaces.
    DOMAINS: ClassVar[dict[str, Domain]] = {
        "target_rank": real(gt=0, le=MAX_RANK, why="an average rank above any adapted encoder's hidden size"),
        "target_total_rank": whole(ge=1, le=MAX_TOTAL_RANK),
        "budget_params": whole(ge=1, le=MAX_BUDGET_PARAMS, why="4 GB of fp32 adapters"),
        "init_rank": RANK,
        "init_warmup": whole(ge=0),
        "incre_interval": whole(ge=1),
        "init_warmup_frac": FRACTION,
        "incre_interval_frac": FRACTION,
        "top_h": whole(ge=1),
        "growth_end_frac": real(gt=0, le=1),
        "n_add": RANK,
        "beta1": FRACTION,
        "beta2": FRACTION,
        "orth_reg_weight": real(ge=0),
        "advance_learn": FLAG,
        "multi_lr": FLAG,
        "official_topk": FLAG,
        "rescale_on_growth": FLAG,
        "full_lr_first_step": FLAG,
        "keep_reserves_after_cleanup": FLAG,
        "reproduce_official": FLAG,
    }

    def validate(self) -> None:
        check_domains(self, self.DOMAINS)
        need(
            not (self.reproduce_official and self.full_lr_first_step),
            "full_lr_first_step: the official code has no such step (a new group has no gradient in the step it is "
            "added), so it cannot be combined with reproduce_official; drop one of the two",
        )

    def behaviour(self) -> "OfficialBehaviour":
        """What the method does where the official code and this project differ (spec section 4)."""
        off = self.reproduce_official
        return OfficialBehaviour(
            official_topk=self.official_topk or off,
            rescale_on_growth=self.rescale_on_growth or off,
            keep_reserves_after_cleanup=self.keep_reserves_after_cleanup or off,
            full_lr_first_step=self.full_lr_first_step and not off,
            legacy_adamw=off,
            reserves_after_first_backward=off,
            new_group_lr_from_next_step=off,
            reserves_in_last_round=off,
        )


@dataclass(frozen=True)
class OfficialBehaviour:
    """IncreLoRA's behaviour where the official code and this project's defaults differ (all False = ours).

    ``legacy_adamw``: the transformers-4.4 AdamW (epsilon before bias correction, decay after the update);
    ``reserves_after_first_backward``: the step-0 reserves come into being after step 0's backward pass
    (not in its forward, orthogonal term or clipping; no gradient, so no update, at step 0);
    ``new_group_lr_from_next_step``: a group added at step s has LR 0 at s + 1 and 1/w of the peak at
    s + 2, then decays over T - s - 1 - w steps; ``reserves_in_last_round``: the last growth round
    appends fresh reserves too. The other four are the quirk flags of :class:`IncreLoRAConfig`.
    """

    official_topk: bool = False
    rescale_on_growth: bool = False
    keep_reserves_after_cleanup: bool = False
    full_lr_first_step: bool = False
    legacy_adamw: bool = False
    reserves_after_first_backward: bool = False
    new_group_lr_from_next_step: bool = False
    reserves_in_last_round: bool = False


def resolve_n_add(m: IncreLoRAConfig) -> int:
    """Ranks per growth: the official table {2:1, 4:2, 6:3, 8:4} extended to any target (quirk 4.4 fixed)."""
    if m.n_add is not None:
        return m.n_add
    return max(1, int(round(m.target_rank / 2)))
