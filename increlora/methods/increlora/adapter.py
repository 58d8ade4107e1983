"""IncreLoRA attached to a Hugging Face model: growth, optimizer groups, clean-up, peft export.

Step order (spec section 1.8): forward -> loss + gamma * R -> backward (modules record I_k) ->
clip -> :meth:`IncreLoRAMethod.before_optimizer_step` (EMAs, maybe a growth round that adds one
optimizer parameter group) -> LR schedule -> ``optimizer.step()``.

Growth never rebuilds the model or the optimizer: activated lambdas and new reserves go into a
new parameter group; existing parameters keep their Adam state. Quirks of the official code are
fixed by default and reproduced behind :class:`~increlora.config.IncreLoRAConfig` flags;
``reproduce_official`` gives the official code's numerics and schedule in full
(:class:`~increlora.config.OfficialBehaviour`).
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import torch
from torch import nn

from increlora.adapter_method import (
    AdapterMethod,
    head_parameters,
    no_decay,
    quiet_peft,
    replace_module,
    target_linears,
)
from increlora.config import ConfigError, TrainConfig
from increlora.methods.increlora.allocator import Allocator, GrowthPlan, ImportanceEMA, auto_top_h, ema_memory_steps
from increlora.methods.increlora.config import IncreLoRAConfig, resolve_n_add
from increlora.methods.increlora.layer import RESERVE_LAMBDA, SVDLinear
from increlora.methods.increlora.legacy_adamw import LegacyAdamW
from increlora.optim_utils import add_param_group, remove_params, replace_param
from increlora.schedule import frac_to_steps


DEFAULT_SCHEDULE_STEPS = 100  # init_warmup and incre_interval when neither steps nor a fraction is given


def resolve_schedule(m: IncreLoRAConfig, total_steps: int) -> tuple[int, int]:
    """(init_warmup, incre_interval) in steps: the fraction of the run when given (it wins over a step
    count, so a searched schedule applies on top of a profile's), else the step count, else 100 steps.
    An interval from a fraction never resolves below the score EMA's memory, ``ceil(2 / (1 - beta1))``."""
    if m.init_warmup_frac is not None:
        warmup = frac_to_steps(m.init_warmup_frac, total_steps)
    else:
        warmup = DEFAULT_SCHEDULE_STEPS if m.init_warmup is None else m.init_warmup
    if m.incre_interval_frac is not None:
        interval = frac_to_steps(m.incre_interval_frac, total_steps, minimum=ema_memory_steps(m.beta1))
    else:
        interval = DEFAULT_SCHEDULE_STEPS if m.incre_interval is None else m.incre_interval
    return max(0, warmup), max(1, interval)


def unreachable_budget(allocator: Allocator, total_steps: int) -> Optional[str]:
    """A sentence when growth cannot reach the budget within ``total_steps`` steps whatever the scores
    (too few growth rounds fit in the run), else None."""
    plan = allocator.plan
    remaining = allocator.remaining()
    if allocator.finished():
        return None
    first = (plan.init_warmup // plan.interval + 1) * plan.interval
    rounds = 0 if first > total_steps - 1 else (total_steps - 1 - first) // plan.interval + 1
    most = rounds * plan.top_h * plan.n_add * max(allocator.costs)
    if most >= remaining:
        return None
    unit = "ranks" if max(allocator.costs) == 1 else "adapter parameters"
    where = (f"no growth round fits in the run's {total_steps} steps (the first would be at step {first})" if rounds == 0
             else f"only {rounds} growth round(s) fit in the run's {total_steps} steps (from step {first}, every "
                  f"{plan.interval}), granting at most {most:,} of the {remaining:,} {unit} left")
    return (f"the budget cannot be reached: {where}; the run ends at {allocator.spent():,}"
            f"{'' if rounds == 0 else '+'} of {plan.budget:,} {unit}. Train longer, or lower init_warmup / incre_interval "
            "(or their fractions), or raise top_h or n_add")


class IncreLoRAMethod(AdapterMethod):
    """IncreLoRA on the target linear layers of ``model``."""

    name = "increlora"

    def __init__(self, model: nn.Module, train_cfg: TrainConfig, cfg: IncreLoRAConfig, *, total_steps: int, seed: int) -> None:
        self.model = model
        self.cfg = cfg
        self.behaviour = cfg.behaviour()
        self.constant_lr_new_groups = not cfg.multi_lr
        self.head_modules = list(train_cfg.head_modules)
        self.total_steps = total_steps
        self.weight_decay = train_cfg.weight_decay
        self.base_lr = train_cfg.learning_rate
        self.lora_dropout = train_cfg.lora_dropout
        self.generator = torch.Generator().manual_seed(seed)
        for p in model.parameters():
            p.requires_grad_(False)
        for p in head_parameters(model, self.head_modules):
            p.requires_grad_(True)
        targets = target_linears(model, train_cfg.target_modules)
        if not targets:
            raise ConfigError("target_modules: no linear layer of the model matches; pass --target-modules with name suffixes")
        self.names: list[str] = []
        self.modules: list[SVDLinear] = []
        for name, linear in targets:
            layer = SVDLinear(
                linear, init_rank=cfg.init_rank, alpha=train_cfg.lora_alpha, dropout=train_cfg.lora_dropout, generator=self.generator
            )
            replace_module(model, name, layer)
            self.names.append(name)
            self.modules.append(layer)
        self.n_add = resolve_n_add(cfg)
        self.init_warmup, self.interval = resolve_schedule(cfg, total_steps)
        if cfg.budget_params is not None:
            unit, costs, budget = "params", [m.cost_per_rank for m in self.modules], int(cfg.budget_params)
        else:
            unit, costs = "rank", [1] * len(self.modules)
            budget = cfg.target_total_rank if cfg.target_total_rank is not None else int(round(cfg.target_rank * len(self.modules)))
        self.budget_unit = unit
        self.top_h = cfg.top_h
        if self.top_h is None:
            spent = sum(m.rank * c for m, c in zip(self.modules, costs))
            remaining_ranks = max(0, budget - spent) / (sum(costs) / len(costs))
            self.top_h = auto_top_h(remaining_ranks, n_add=self.n_add, init_warmup=self.init_warmup, interval=self.interval,
                                    end_step=int(cfg.growth_end_frac * total_steps), n_modules=len(self.modules))
        plan = GrowthPlan(self.init_warmup, self.interval, self.top_h, self.n_add, budget, self.behaviour.official_topk)
        self.allocator = Allocator(plan, costs, [m.rank for m in self.modules])
        if self.allocator.remaining() < 0:
            raise ConfigError(
                f"budget ({budget} {unit}) is below the initial adapters ({self.allocator.spent()} {unit}); "
                "raise target_rank/budget_params or lower init_rank"
            )
        self.ema = ImportanceEMA(len(self.modules), cfg.beta1, cfg.beta2, device=self.modules[0].base_layer.weight.device)
        self.growing = not self.allocator.finished()
        self.budget_warning = unreachable_budget(self.allocator, total_steps)
        self.cleaned_up = False
        self.events: list[dict] = []
        self.growth_end_step: Optional[int] = None
        self._initial_reserve_params: list[nn.Parameter] = []
        # official: the step-0 reserves come into being after step 0's backward pass (before_optimizer_step)
        self._reserves_pending = self.growing and self.behaviour.reserves_after_first_backward
        if self.growing:
            for m in self.modules:
                m.score_enabled = True
                if not self._reserves_pending:
                    self._initial_reserve_params += self._add_reserve(m, self.n_add)
        else:
            self._finish(step=0, optimizer=None)
        self.peak_trainable = self.trainable_param_count()

    # ------------------------------------------------------------------ groups
    def _add_reserve(self, m: SVDLinear, n: int) -> list[nn.Parameter]:
        """Append ``n`` reserved components; returns the new trainable tensors (advance learning)."""
        adv = self.cfg.advance_learn
        a, b, _ = m.append_chunk(
            n,
            lam=RESERVE_LAMBDA if adv else 0.0,
            trainable_lambda=False,
            trainable_ab=adv,
            generator=self.generator,
        )
        return [a, b] if adv else []

    def param_groups(self, weight_decay: float) -> list[dict]:
        decay, nodecay = [], []
        for p_name, p in self.model.named_parameters():
            if not p.requires_grad or any(p is q for q in self._initial_reserve_params):
                continue
            (nodecay if no_decay(p_name) else decay).append(p)
        groups = [
            {"params": decay, "weight_decay": weight_decay, "start_step": 0, "name": "main"},
            {"params": nodecay, "weight_decay": 0.0, "start_step": 0, "name": "main-nodecay"},
        ]
        if self._initial_reserve_params:
            groups.append(
                {
                    "params": self._initial_reserve_params,
                    "weight_decay": weight_decay,
                    "start_step": 0,
                    "name": "reserves@0",
                    "full_lr_once": self.behaviour.full_lr_first_step,
                    "added": True,  # a group of IncreLoRA's own: constant LR under multi_lr=False
                }
            )
        return [g for g in groups if g["params"]]

    # ------------------------------------------------------------------ per step
    def instant_scores(self) -> torch.Tensor:
        """I_k of the last backward pass (0 for a module that received no gradient)."""
        dev = self.ema.sensitivity.device
        return torch.stack(
            [m.last_score.to(dev, torch.float32) if m.last_score is not None else torch.zeros((), device=dev) for m in self.modules]
        )

    def make_optimizer(self, groups: list[dict], *, lr: float) -> torch.optim.Optimizer:
        if self.behaviour.legacy_adamw:
            return LegacyAdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)
        return super().make_optimizer(groups, lr=lr)

    def _new_group_start(self, step: int) -> int:
        """The step a group added at ``step`` starts its schedule from (official: the next step, at LR 0)."""
        return step + 1 if self.behaviour.new_group_lr_from_next_step else step

    def _add_group(self, optimizer: torch.optim.Optimizer, params: list[nn.Parameter], step: int, name: str, *,
                   full_lr_once: bool) -> None:
        """The tensors a step created, as one new optimizer group on its own schedule (nothing when empty)."""
        if params:
            add_param_group(optimizer, params, lr=0.0, weight_decay=self.weight_decay, start_step=self._new_group_start(step),
                            name=name, full_lr_once=full_lr_once,
                            base_lr=optimizer.param_groups[0].get("base_lr", self.base_lr))
        self.peak_trainable = max(self.peak_trainable, self.trainable_param_count())

    def _add_pending_reserves(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        """Official: every module's first reserves, created after the first backward pass, as a new group."""
        self._reserves_pending = False
        params: list[nn.Parameter] = []
        for m in self.modules:
            params += self._add_reserve(m, self.n_add)
        self._add_group(optimizer, params, step, f"reserves@{step}", full_lr_once=False)

    @property
    def accumulate_scores(self) -> bool:
        """Score the gradient accumulated over several backward passes (gradient accumulation): each
        module sums ``g^T x`` over the passes and :meth:`before_optimizer_step` scores the sum. Off by
        default: the project's loop runs one backward pass per optimizer step."""
        return bool(self.modules) and self.modules[0].score_accumulate

    @accumulate_scores.setter
    def accumulate_scores(self, on: bool) -> None:
        for m in self.modules:
            m.score_accumulate = bool(on)
            m._score_grad = None

    def before_optimizer_step(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        if not self.growing:
            return
        if self._reserves_pending:
            self._add_pending_reserves(step, optimizer)
        for m in self.modules:
            m.finalize_score()
        self.ema.update(self.instant_scores())
        for m in self.modules:
            m.last_score = None
        if not self.allocator.is_growth_step(step):
            return
        picks = self.allocator.select(self.ema.score.tolist())
        if not picks:
            return
        self.allocator.apply(step, picks)
        finished = self.allocator.finished() or (self.behaviour.official_topk and self.allocator.remaining() <= 0)
        refill = not finished or self.behaviour.reserves_in_last_round
        new_params: list[nn.Parameter] = []
        for k, grant in picks:
            new_params += self._grow(self.modules[k], grant, optimizer, refill=refill)
            self.events.append({"step": step, "module": self.names[k], "added": grant, "rank": self.modules[k].rank})
        self._add_group(optimizer, new_params, step, f"growth@{step}", full_lr_once=self.behaviour.full_lr_first_step)
        if finished:
            self._finish(step, optimizer)

    def _grow(self, m: SVDLinear, grant: int, optimizer: torch.optim.Optimizer, *, refill: bool) -> list[nn.Parameter]:
        """Activate ``grant`` reserved components of ``m``; returns tensors for the new group."""
        new: list[nn.Parameter] = []
        need = grant
        while need > 0:
            if not m.has_reserve:  # no advance-learned reserve left: start fresh components
                m.append_chunk(need, lam=0.0, trainable_lambda=False, trainable_ab=False, generator=self.generator)
            size = m.chunk_size(m.n_active)
            if size > need:
                old, parts = m.split_reserve(need)
                for old_p, p1, p2 in zip(old, parts[:3], parts[3:]):
                    replace_param(optimizer, old_p, [p1, p2], dim=1 if old_p is old[1] else 0)
                size = need
            i = m.n_active
            a, b, e = m.lora_A[i], m.lora_B[i], m.lora_E[i]
            e.requires_grad_(True)
            new.append(e)
            if not a.requires_grad:  # advance_learn=False: a and b start training now
                a.requires_grad_(True)
                b.requires_grad_(True)
                new += [a, b]
            m.n_active += 1
            need -= size
        m.set_ranknum(m.rank, compensate=not self.behaviour.rescale_on_growth)
        if refill and m.reserve_size < self.n_add:
            new += self._add_reserve(m, self.n_add - m.reserve_size)
        return new

    def _finish(self, step: int, optimizer: Optional[torch.optim.Optimizer]) -> None:
        """End of growth: stop scoring; clean up (official: only when the budget is hit exactly)."""
        self.growing = False
        self.growth_end_step = step
        for m in self.modules:
            m.score_enabled = False
            m.last_score = None
            m._score_grad = None
        if self.behaviour.official_topk and not self.allocator.exact():
            return  # quirk 4.2: overshoot -> no clean-up, reserves keep lambda = 1e-5
        self.cleaned_up = True
        for m in self.modules:
            m.include_reserve = False
            if self.behaviour.keep_reserves_after_cleanup:
                with torch.no_grad():
                    for i in range(m.n_active, len(m.lora_E)):
                        m.lora_E[i].zero_()
            elif m.has_reserve:
                dropped = m.drop_reserve()
                if optimizer is not None:
                    remove_params(optimizer, dropped)

    @contextmanager
    def merged_for_eval(self) -> Iterator[None]:
        for m in self.modules:
            m.merge_for_eval()
        try:
            yield
        finally:
            for m in self.modules:
                m.unmerge()

    # ------------------------------------------------------------------ loss
    def extra_loss(self) -> Optional[torch.Tensor]:
        """gamma / (2M) * sum_k (||A A^T - I||_F + ||B^T B - I||_F), reserves stacked in."""
        gamma = self.cfg.orth_reg_weight
        if gamma <= 0:
            return None
        total = None
        for m in self.modules:
            a, b = m.stacked_all()
            eye = torch.eye(a.shape[0], device=a.device, dtype=a.dtype)
            term = torch.linalg.matrix_norm(a @ a.T - eye) + torch.linalg.matrix_norm(b.T @ b - eye)
            total = term if total is None else total + term
        return total * (gamma / (2 * len(self.modules)))

    # ------------------------------------------------------------------ reporting
    def allocation(self) -> dict[str, int]:
        return {n: m.rank for n, m in zip(self.names, self.modules)}

    def adapter_param_count(self) -> int:
        return sum(m.rank * m.cost_per_rank for m in self.modules)

    def growth_events(self) -> list[dict]:
        return list(self.events)

    def schedule_info(self) -> dict:
        return {
            "init_warmup": self.init_warmup,
            "incre_interval": self.interval,
            "top_h": self.top_h,
            "top_h_auto": self.cfg.top_h is None,
            "ema_memory_steps": ema_memory_steps(self.cfg.beta1),
            "n_add": self.n_add,
            "budget": self.allocator.plan.budget,
            "budget_unit": self.budget_unit,
            "initial_total_rank": len(self.modules) * self.cfg.init_rank,
            "final_total_rank": sum(m.rank for m in self.modules),
            "growth_rounds": len(self.allocator.history),
            "growth_end_step": self.growth_end_step,
            "growth_finished": not self.growing,
            "cleaned_up": self.cleaned_up,
            "n_modules": len(self.modules),
            "reproduce_official": self.cfg.reproduce_official,
            "budget_warning": self.budget_warning,
        }

    # ------------------------------------------------------------------ export
    def to_peft(self):
        """A plain peft LoRA model equal to this one: A = diag(lambda) A, B = B, alpha/r = scale."""
        from peft import LoraConfig, TaskType, get_peft_model

        export = copy.deepcopy(self.model).cpu().float()
        ranks, alphas, factors = {}, {}, {}
        for name in self.names:
            layer: SVDLinear = export.get_submodule(name)
            a, b, e = layer._stacked(layer.include_reserve)
            factors[name] = ((a * e).detach().clone(), b.detach().clone())
            ranks[name] = int(a.shape[0])
            alphas[name] = layer.scale * int(a.shape[0])
            replace_module(export, name, layer.base_layer)
        default_r = max(ranks.values())
        config = LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=default_r,
            lora_alpha=float(alphas[self.names[0]]),
            lora_dropout=self.lora_dropout,
            target_modules=list(self.names),
            rank_pattern=dict(ranks),
            alpha_pattern=dict(alphas),
            modules_to_save=list(self.head_modules),
        )
        with quiet_peft():
            peft_model = get_peft_model(export, config)
        with torch.no_grad():
            for name, (a, b) in factors.items():
                lora_layer = peft_model.base_model.model.get_submodule(name)
                lora_layer.lora_A["default"].weight.copy_(a)
                lora_layer.lora_B["default"].weight.copy_(b)
        return peft_model

    def save(self, out_dir: Path) -> Path:
        out_dir = Path(out_dir)
        self.to_peft().save_pretrained(str(out_dir))
        return out_dir

