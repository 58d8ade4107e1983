"""Configuration dataclasses: the training loop's knobs and each method's knobs.

Every field carries its help text (``metadata["help"]``); the CLI, presets and search
spaces are all built from these dataclasses, so a knob is declared exactly once. Each class
validates itself (``validate()``); the method registry (:mod:`increlora.methods`) maps method
names to their config classes.

Training knobs also carry a *role* (``metadata["role"]``):

- ``protocol``: how a run is measured (data, run length, sequence length, evaluation); a preset
  evaluated inside a search keeps the search's values, and a preset applied to another task takes
  that task's defaults;
- ``runtime``: where and how a run executes (device, threads, output folder); never part of a
  preset and never part of what makes two runs the same;
- ``recipe`` (the rest): how the model is trained; carried by presets.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional, Union, get_args, get_origin, get_type_hints

class ConfigError(ValueError):
    """A configuration value or key is invalid; the message says what to fix."""


def need(ok: bool, message: str) -> None:
    """Raise ConfigError(message) unless ``ok``."""
    if not ok:
        raise ConfigError(message)


def _fraction(value: Optional[float]) -> bool:
    return value is None or 0 <= value < 1


PROTOCOL, RUNTIME, RECIPE = "protocol", "runtime", "recipe"


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    """Knobs of the training loop, shared by every method."""

    task: str = _f("cola", "GLUE task: cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli", role=PROTOCOL)
    method: str = _f("increlora", "adapter method: increlora | lora | adalora", role=PROTOCOL)
    model: Optional[str] = _f(None, "Hugging Face model name or local folder (default: the packaged all-MiniLM-L6-v2)", role=PROTOCOL)
    data_dir: Optional[str] = _f(None, "folder with the GLUE TSV folders (CoLA/, SST-2/, ...); default $GLUE_DIR, else the HF hub", role=RUNTIME)
    train_samples: Optional[int] = _f(None, "seeded random training subset of this size, stratified by label (default: all)", role=PROTOCOL)
    eval_samples: Optional[int] = _f(None, "seeded random subset of the dev set (default: the full dev set)", role=PROTOCOL)
    holdout_samples: Optional[int] = _f(
        None,
        "evaluate on this many training-file rows left out of the training subset (seeded, stratified) instead of "
        "the dev set: for choosing knobs without touching dev",
        role=PROTOCOL,
    )
    epochs: float = _f(3.0, "training epochs", role=PROTOCOL)
    max_steps: Optional[int] = _f(None, "stop after this many optimizer steps (overrides epochs)", role=PROTOCOL)
    batch_size: int = _f(32, "training batch size", role=PROTOCOL)
    eval_batch_size: Optional[int] = _f(None, "evaluation batch size (default: 64 on CPU, 256 on a GPU)", role=RUNTIME)
    group_by_length: bool = _f(
        True,
        "batch training rows of similar length (seeded: shuffle, sort within mega-batches of up to 50 batches, "
        "shuffle the batches): less padding; --no-group-by-length for plain random batches",
    )
    fast_eval: bool = _f(
        True,
        "evaluate with rows sorted by length, the adapter merged into the weights and torch.inference_mode "
        "(same metrics within float tolerance); --no-fast-eval for the plain path",
        role=RUNTIME,
    )
    max_length: int = _f(64, "maximum sequence length (tokens)", role=PROTOCOL)
    learning_rate: float = _f(1e-3, "peak learning rate (AdamW)")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    warmup_steps: Optional[int] = _f(None, "linear LR warm-up steps (default: warmup_ratio of the total)")
    warmup_ratio: float = _f(0.06, "LR warm-up as a fraction of the total steps, used when warmup_steps is unset")
    max_grad_norm: float = _f(1.0, "gradient clipping norm")
    eval_steps: Optional[int] = _f(None, "evaluate every N steps (default: about 4 times per run) and at the end", role=PROTOCOL)
    seed: int = _f(42, "random seed (data subset, initialisation, dropout, batch order)", role=PROTOCOL)
    classifier_dropout: Optional[float] = _f(None, "dropout before the classifier (default: the model's)")
    lora_alpha: float = _f(16.0, "adapter scale alpha (IncreLoRA/AdaLoRA scale = alpha / rank)")
    lora_dropout: float = _f(0.0, "dropout on the adapter input")
    target_modules: Optional[list] = _f(
        None,
        "adapted linear layers, as name suffixes (default: all six per layer: q, k, v, attention output, FFN in, FFN out)",
        role=PROTOCOL,
    )
    head_modules: list = _f(["classifier", "pooler"], "modules trained in full next to the adapters (the head)", role=PROTOCOL)
    device: str = _f("auto", "auto | cpu | cuda | cuda:N", role=RUNTIME)
    precision: str = _f(
        "auto",
        "auto | bf16 | fp32: bf16 keeps the frozen base weights in bf16 and trains under bf16 autocast (adapters, head, "
        "optimizer state and score EMAs stay fp32); auto = bf16 on CUDA, and on CPUs that multiply bf16 natively once "
        "measured equivalent (increlora.precision.AUTO_BF16_ON_CPU), else fp32; the resolved one is in result.json",
        role=PROTOCOL,
    )
    threads: Optional[int] = _f(None, "torch CPU threads (default: torch's choice)", role=RUNTIME)
    progress: bool = _f(True, "show a progress bar", role=RUNTIME)
    output_dir: Optional[str] = _f(None, "write result.json and the adapter here", role=RUNTIME)
    save_adapter: bool = _f(True, "save the trained adapter (peft format) under output_dir", role=RUNTIME)

    def validate(self) -> None:
        """Range checks; ConfigError names the knob."""
        need(self.epochs > 0, "epochs: must be > 0")
        need(self.max_steps is None or self.max_steps > 0, "max_steps: must be > 0")
        need(self.batch_size > 0 and (self.eval_batch_size is None or self.eval_batch_size > 0), "batch_size: must be > 0")
        need(self.max_length >= 8, "max_length: must be >= 8")
        need(self.learning_rate > 0, "learning_rate: must be > 0")
        need(self.weight_decay >= 0, "weight_decay: must be >= 0")
        need(0 <= self.warmup_ratio < 1, "warmup_ratio: must be in [0, 1)")
        need(self.train_samples is None or self.train_samples > 0, "train_samples: must be > 0")
        need(self.eval_samples is None or self.eval_samples > 0, "eval_samples: must be > 0")
        need(self.holdout_samples is None or self.holdout_samples > 0, "holdout_samples: must be > 0")
        need(self.eval_steps is None or self.eval_steps > 0, "eval_steps: must be > 0")
        need(0 <= self.lora_dropout < 1, "lora_dropout: must be in [0, 1)")
        need(self.lora_alpha > 0, "lora_alpha: must be > 0")
        need(self.precision in ("auto", "bf16", "fp32"), f"precision: choose auto, bf16 or fp32 (got {self.precision!r})")


@dataclass
class IncreLoRAConfig:
    """IncreLoRA's knobs (spec section 2.1); defaults fix the official code's quirks (spec section 4)."""

    target_rank: float = _f(2.0, "budget as the average final rank per adapted module (paper unit)")
    target_total_rank: Optional[int] = _f(None, "budget as the total final rank over all modules (overrides target_rank)")
    budget_params: Optional[int] = _f(None, "budget as total adapter parameters, active only (overrides the rank budgets)")
    init_rank: int = _f(1, "initial rank of every module (lora_r)")
    init_warmup: Optional[int] = _f(None, "steps before the first growth round (default: 100, unless init_warmup_frac is set)")
    incre_interval: Optional[int] = _f(None, "steps between growth rounds, delta T (default: 100, unless incre_interval_frac is set)")
    init_warmup_frac: Optional[float] = _f(None, "init_warmup as a fraction of the run's steps (overrides init_warmup)")
    incre_interval_frac: Optional[float] = _f(
        None,
        "incre_interval as a fraction of the run's steps (overrides it); never resolves below 2/(1-beta1) steps, "
        "the memory of the score's EMA, so every round ranks modules by scores measured since the last one",
    )
    top_h: Optional[int] = _f(
        3,
        "modules that gain rank per growth round; null = as many as growth needs to end at growth_end_frac of the run",
    )
    growth_end_frac: float = _f(0.4, "with top_h null: the fraction of the run by which growth should end (paper's scripts: 20-45%)")
    n_add: Optional[int] = _f(None, "ranks added per selected module (default: max(1, round(target_rank / 2)))")
    beta1: float = _f(0.85, "EMA coefficient of the sensitivity")
    beta2: float = _f(0.85, "EMA coefficient of the uncertainty")
    orth_reg_weight: float = _f(0.1, "weight of the orthogonal regularisation (gamma)")
    advance_learn: bool = _f(True, "train the reserved components' a, b before they are activated")
    multi_lr: bool = _f(True, "give every new parameter group its own warm-up/decay schedule (restart warm-up)")
    # Quirks of the official code, reproduced only when asked for (spec section 4).
    official_topk: bool = _f(False, "quirk 4.2: k = min(top_h, remaining ranks), ties select extra modules (may overshoot)")
    rescale_on_growth: bool = _f(False, "quirk 4.1: let alpha/rank shrink existing updates at growth (default: compensate)")
    full_lr_first_step: bool = _f(
        False,
        "a new group's first update at the full LR (spec 4.5 as first read; it has no effect in the official code, "
        "where a group has no gradient in the step it is added: not part of --reproduce-official)",
    )
    keep_reserves_after_cleanup: bool = _f(False, "official: keep training the switched-off reserves after growth")
    reproduce_official: bool = _f(
        False,
        "the official code step for step: its AdamW (transformers 4.4), reserves created after step 0's backward, a new "
        "group's LR 0 at the step after it is added, fresh reserves in the last round too, and the quirks of "
        "--official-topk, --rescale-on-growth and --keep-reserves-after-cleanup (those flags are implied)",
    )

    def validate(self) -> None:
        need(self.target_rank > 0, "target_rank: must be > 0")
        need(self.init_rank >= 1, "init_rank: must be >= 1")
        need(self.init_warmup is None or self.init_warmup >= 0, "init_warmup: must be >= 0")
        need(self.incre_interval is None or self.incre_interval >= 1, "incre_interval: must be >= 1")
        need(self.top_h is None or self.top_h >= 1, "top_h: must be >= 1")
        need(0 < self.growth_end_frac <= 1, "growth_end_frac: must be in (0, 1]")
        need(self.n_add is None or self.n_add >= 1, "n_add: must be >= 1")
        need(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "beta1/beta2: must be in [0, 1)")
        need(self.orth_reg_weight >= 0, "orth_reg_weight: must be >= 0")
        for name in ("init_warmup_frac", "incre_interval_frac"):
            need(_fraction(getattr(self, name)), f"{name}: must be in [0, 1)")
        need(self.target_total_rank is None or self.target_total_rank >= 1, "target_total_rank: must be >= 1")
        need(self.budget_params is None or self.budget_params >= 1, "budget_params: must be >= 1")
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


@dataclass
class LoraBaselineConfig:
    """peft LoRA: one fixed rank everywhere."""

    r: int = _f(2, "LoRA rank of every adapted module")

    def validate(self) -> None:
        need(self.r >= 1, "r: must be >= 1")


@dataclass
class AdaLoraBaselineConfig:
    """peft AdaLoRA (spec section 5)."""

    init_r: int = _f(3, "initial rank of every module (AdaLoRA prunes down from it)")
    target_r: float = _f(2.0, "average final rank per module")
    tinit: Optional[int] = _f(None, "steps before pruning starts (default: tinit_frac of the run)")
    tfinal: Optional[int] = _f(None, "steps of fine-tuning after the budget is final (default: tfinal_frac of the run)")
    delta_t: Optional[int] = _f(None, "steps between budget allocations (default: delta_t_frac of the run, at least 1)")
    tinit_frac: float = _f(0.12, "tinit as a fraction of the run (official GLUE scripts: 12-17%)")
    tfinal_frac: float = _f(0.48, "tfinal as a fraction of the run (official GLUE scripts: 44-52%)")
    delta_t_frac: float = _f(0.002, "delta_t as a fraction of the run (official GLUE scripts: 0.03-0.2%; peft's default is 1 step)")
    beta1: float = _f(0.85, "EMA coefficient of the sensitivity")
    beta2: float = _f(0.85, "EMA coefficient of the uncertainty")
    orth_reg_weight: float = _f(0.1, "weight of the orthogonal regularisation")

    def validate(self) -> None:
        need(self.init_r >= 1, "init_r: must be >= 1")
        need(0 < self.target_r <= self.init_r, "target_r: must be in (0, init_r]")
        need(self.delta_t is None or self.delta_t >= 1, "delta_t: must be >= 1")
        need(all(_fraction(v) for v in (self.tinit_frac, self.tfinal_frac, self.delta_t_frac)),
             "tinit_frac/tfinal_frac/delta_t_frac: must be in [0, 1)")
        need(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "beta1/beta2: must be in [0, 1)")


MethodConfig = Union[IncreLoRAConfig, LoraBaselineConfig, AdaLoraBaselineConfig]


@dataclass
class RunConfig:
    """Everything one training run needs."""

    train: TrainConfig
    method: MethodConfig

    def to_dict(self) -> dict[str, Any]:
        return {"train": dataclasses.asdict(self.train), "method": dataclasses.asdict(self.method)}

    def flat(self) -> dict[str, Any]:
        """All knobs in one flat dict (names are unique across train and method knobs)."""
        return {**dataclasses.asdict(self.train), **dataclasses.asdict(self.method)}


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def knobs_with_role(*roles: str) -> frozenset[str]:
    """The training knobs whose role is one of ``roles`` (``protocol``, ``runtime``, ``recipe``)."""
    return frozenset(f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("role", RECIPE) in roles)


def _check_type(cls: type, name: str, value: Any) -> Any:
    hint = get_type_hints(cls)[name]
    origin = get_origin(hint)
    allowed = get_args(hint) if origin is Union else (hint,)
    if value is None:
        if type(None) in allowed:
            return None
        raise ConfigError(f"{name}: null is not allowed")
    for t in allowed:
        if t is type(None):
            continue
        base = get_origin(t) or t
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if base is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if base is bool and isinstance(value, bool):
            return value
        if base is str and isinstance(value, str):
            return value
        if base is list and isinstance(value, (list, tuple)):
            return list(value)
        if base is list and isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
    names = " or ".join("null" if t is type(None) else getattr(t, "__name__", str(t)) for t in allowed)
    raise ConfigError(f"{name}: expected {names}, got {type(value).__name__} {value!r}")


def build_run_config(overrides: Optional[dict[str, Any]] = None, *, base: Optional[RunConfig] = None) -> RunConfig:
    """Build a validated RunConfig from flat ``knob -> value`` overrides.

    Each key goes to whichever dataclass declares it (TrainConfig or the chosen method's config);
    an unknown key or a value of the wrong type raises ConfigError naming the key.
    """
    from .methods import REGISTRY, method_spec

    overrides = dict(overrides or {})
    train_kw = dataclasses.asdict(base.train) if base else {}
    method_kw = dataclasses.asdict(base.method) if base else {}
    method = overrides.get("method", train_kw.get("method", "increlora"))
    mcls = method_spec(method).config_cls
    if base is not None and method != base.train.method:
        method_kw = {}
    tnames, mnames = set(field_names(TrainConfig)), set(field_names(mcls))
    all_method_fields = set().union(*(field_names(spec.config_cls) for spec in REGISTRY.values()))
    for key, value in overrides.items():
        if key in tnames:
            train_kw[key] = _check_type(TrainConfig, key, value)
        elif key in mnames:
            method_kw[key] = _check_type(mcls, key, value)
        elif key in all_method_fields:
            raise ConfigError(f"{key}: is not a knob of method {method!r}")
        else:
            raise ConfigError(f"{key}: unknown knob (see --help for the list)")
    train_kw["method"] = method
    cfg = RunConfig(train=TrainConfig(**train_kw), method=mcls(**method_kw))
    cfg.train.validate()
    cfg.method.validate()
    return cfg


def resolve_n_add(m: IncreLoRAConfig) -> int:
    """Ranks per growth: the official table {2:1, 4:2, 6:3, 8:4} extended to any target (quirk 4.4 fixed)."""
    if m.n_add is not None:
        return m.n_add
    return max(1, int(round(m.target_rank / 2)))
