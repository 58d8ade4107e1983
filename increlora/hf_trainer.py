"""``transformers.Trainer`` support: IncreLoRA (or LoRA / AdaLoRA) trained by the Hugging Face Trainer.

Use :class:`IncreLoRATrainer` in place of ``Trainer``; it needs nothing else::

    handle = attach(model, IncreLoRAConfig(target_rank=2), total_steps=args.max_steps)
    trainer = IncreLoRATrainer(method=handle, args=args, train_dataset=ds)   # model = handle.model
    trainer.train()                                # or train(resume_from_checkpoint=True)
    handle.save("adapter")                         # a plain peft LoRA folder

What it does, step by step (the project's own step order, :func:`increlora.trainer.train_step`):

- the loss: ``compute_loss`` adds the orthogonal regulariser (``handle.extra_loss()``) in training,
  counted once per optimizer step under gradient accumulation (:func:`add_extra_loss`);
- the optimizer: the method's parameter groups (``handle.param_groups``) under the optimizer
  ``args.optim`` names (``adamw_torch``, ``adamw_torch_fused``, ...; the official code's AdamW
  under ``reproduce_official``);
- once per optimizer step, after gradient clipping and before ``optimizer.step()``
  (``on_pre_optimizer_step``), :class:`IncreLoRACallback` runs the method's hook: score EMAs and,
  at a growth step, growth, which adds a parameter group to the optimizer. With
  ``gradient_accumulation_steps > 1`` every module sums its dense gradient ``g^T x`` over the
  micro-batches and the score is taken from the sum, i.e. from the accumulated gradient;
- the learning rate: :class:`IncreLoRAScheduler` (``lr_scheduler_type="linear"`` only) gives every
  group a linear warm-up from the step it was added (``args`` warm-up length) and a linear decay to
  the end of training, so the groups growth adds restart their warm-up;
- logging: the allocation (total rank, adapter parameters, growth rounds, every module's rank) goes
  through ``Trainer.log`` at the start and after every growth round, so TensorBoard, W&B, MLflow...
  show it (keys ``increlora/...``);
- checkpoints: next to the Trainer's files each checkpoint gets ``increlora_adapter/`` (a plain peft
  LoRA adapter) and ``increlora_state.pt`` (the grown structure, the EMAs, the allocator's history,
  the growth flags and the optimizer's group layout). ``train(resume_from_checkpoint=...)`` rebuilds
  the grown structure and the optimizer's groups *before* the Trainer loads the weights and the
  optimizer state, so a resumed run continues exactly where the checkpoint was written (attach
  with the same config and ``total_steps`` to a freshly loaded model first).

With a Trainer of your own instead: add ``IncreLoRACallback(handle, trainer=trainer)``, add the
regulariser in your ``compute_loss`` with :func:`add_extra_loss`, give the optimizer the groups the
Trainer builds (the callback adopts the groups growth adds into a ``LambdaLR`` schedule, the kind
every ``lr_scheduler_type`` of transformers builds, with their own restart warm-up; the step-0
reserves sit in the Trainer's own groups there, so under ``multi_lr=False`` they follow the Trainer's
schedule instead of a constant LR). Resuming needs :meth:`IncreLoRATrainer.train`'s restore step;
use :class:`IncreLoRATrainer` (it can be subclassed) for that.

Not supported: ``load_best_model_at_end`` (the structure changes during training; load the best
checkpoint's ``increlora_adapter/`` instead); several processes (DDP: growth adds parameters, which
``DistributedDataParallel`` does not allow), DeepSpeed and FSDP; fp16 with a gradient scaler (a
step the scaler skips still updates the score EMAs; bf16 is fine); resuming AdaLoRA (peft keeps its
allocator's state).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any, Optional, Union

import torch
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from .adapter_method import AdapterMethod
from .checkpoint import method_state, optimizer_groups, restore_structure
from .lr_schedule import GroupLinearSchedule, linear_factor
from .naming import short_key

__all__ = ["IncreLoRACallback", "IncreLoRAScheduler", "IncreLoRATrainer", "add_extra_loss", "allocation_log"]

logger = logging.getLogger(__name__)

STATE_FILE = "increlora_state.pt"  # in each checkpoint folder: the state resuming needs
ADAPTER_DIR = "increlora_adapter"  # in each checkpoint folder: the adapter as a plain peft LoRA folder


def _is_increlora(method: AdapterMethod) -> bool:
    return hasattr(method, "allocator") and hasattr(method, "ema")


def allocation_log(method: AdapterMethod) -> dict[str, float]:
    """The allocation as scalar log entries: ``increlora/total_rank``, ``increlora/adapter_params``,
    ``increlora/growth_rounds`` (IncreLoRA) and ``increlora/rank/<module>`` for every module (short names such
    as ``L03.q`` where they are unique, else full module names)."""
    alloc = method.allocation()
    keys = {n: short_key(n) for n in alloc}
    if len(set(keys.values())) < len(keys):
        keys = {n: n for n in alloc}
    out: dict[str, float] = {"increlora/total_rank": sum(alloc.values()), "increlora/adapter_params": method.adapter_param_count()}
    if _is_increlora(method):
        out["increlora/growth_rounds"] = len(method.allocator.history)
    out.update({f"increlora/rank/{keys[n]}": r for n, r in alloc.items()})
    return out


def add_extra_loss(trainer: Trainer, method: AdapterMethod, loss: torch.Tensor,
                   num_items_in_batch: Union[torch.Tensor, int, None] = None) -> torch.Tensor:
    """``loss`` plus the method's regulariser, for a ``compute_loss`` of your own (in training only).

    The regulariser counts once per optimizer step: where the Trainer will divide the loss by the
    accumulation steps (``loss_is_scaled_for_ga`` false) it is added as is, otherwise divided by the
    micro-batches of the step (``trainer.current_gradient_accumulation_steps``).
    """
    extra = method.extra_loss()
    if extra is None:
        return loss
    scaled = trainer.loss_is_scaled_for_ga
    if scaled is None:  # the Trainer's own rule (Trainer.training_step)
        scaled = (trainer.model_accepts_loss_kwargs and num_items_in_batch is not None) or trainer.compute_loss_func is not None
    if scaled:
        extra = extra / max(1, int(getattr(trainer, "current_gradient_accumulation_steps", 1) or 1))
    return loss + extra.to(loss.dtype)


class IncreLoRAScheduler(torch.optim.lr_scheduler.LRScheduler):
    """Linear warm-up and decay *per parameter group*, over the groups the optimizer has at each step.

    A group's factor at step ``t`` is ``(t - s) / w`` during its warm-up (``s`` = its ``start_step``, 0 for
    the groups there at the start) and then falls linearly to 0 at ``total_steps``
    (:class:`~increlora.lr_schedule.GroupLinearSchedule`): the groups IncreLoRA adds restart their
    warm-up. Each group's peak is its ``base_lr`` (set from its initial ``lr`` when missing).
    :class:`IncreLoRACallback` sets the learning rates of the step itself, after growth; ``step()`` (the
    Trainer calls it after ``optimizer.step()``) sets the next step's, which the Trainer logs.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, warmup_steps: int, total_steps: int,
                 constant_new_groups: bool = False, last_epoch: int = -1) -> None:
        self.schedule = GroupLinearSchedule(warmup_steps=int(warmup_steps), total_steps=int(total_steps),
                                            constant_new_groups=bool(constant_new_groups))
        for group in optimizer.param_groups:
            group.setdefault("base_lr", group.get("initial_lr", group["lr"]))
            group.setdefault("start_step", 0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        # a group whose first update runs at the full LR (quirk 4.5) is left to apply(), which clears the mark
        return [g["lr"] if g.get("full_lr_once") else g["base_lr"] * self.schedule.factor(g, self.last_epoch)
                for g in self.optimizer.param_groups]

    def apply(self, step: int) -> None:
        """Set every group's learning rate for ``step`` (the project's ``schedule.apply``)."""
        self.schedule.apply(self.optimizer, step)
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"last_epoch": self.last_epoch, "_step_count": self._step_count, "_last_lr": [float(x) for x in self._last_lr],
                "warmup_steps": self.schedule.warmup_steps, "total_steps": self.schedule.total_steps,
                "constant_new_groups": self.schedule.constant_new_groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict["_step_count"])
        self._last_lr = list(state_dict["_last_lr"])
        self.schedule = GroupLinearSchedule(warmup_steps=int(state_dict["warmup_steps"]),
                                            total_steps=int(state_dict["total_steps"]),
                                            constant_new_groups=bool(state_dict["constant_new_groups"]))


class _RestartFactor:
    """A ``LambdaLR`` factor for a group added at ``start``: :func:`~increlora.lr_schedule.linear_factor`
    (a callable object, so ``LambdaLR.state_dict`` keeps its numbers)."""

    def __init__(self, start: int, warmup: int, total: int, constant: bool) -> None:
        self.start, self.warmup, self.total, self.constant = int(start), int(warmup), int(total), bool(constant)

    def __call__(self, step: int) -> float:
        if self.constant:
            return 1.0
        return linear_factor(step, start=self.start, warmup=self.warmup, total=self.total)


class IncreLoRACallback(TrainerCallback):
    """Runs an adapter method's per-step hooks inside ``transformers.Trainer`` (see the module docstring).

    Args:
        method: the handle :func:`increlora.attach` returned.
        trainer: the Trainer, for logging the allocation through ``Trainer.log`` (reaching TensorBoard,
            W&B, MLflow...); without it the entries only go to ``state.log_history``.
            :class:`IncreLoRATrainer` binds itself.
        save_adapter: write ``increlora_adapter/`` (plain peft) into every checkpoint.
    """

    def __init__(self, method: AdapterMethod, *, trainer: Optional[Trainer] = None, save_adapter: bool = True) -> None:
        self.method = method
        self.trainer = trainer
        self.save_adapter = save_adapter
        self._pending_log = False
        self._fallback: Optional[GroupLinearSchedule] = None

    # ------------------------------------------------------------------ begin
    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       optimizer: Optional[torch.optim.Optimizer] = None, lr_scheduler: Any = None, **kwargs: Any) -> None:
        m = self.method
        if hasattr(m, "base_lr"):
            m.base_lr = float(args.learning_rate)  # the peak LR of the groups growth adds
        if hasattr(m, "weight_decay"):
            m.weight_decay = float(args.weight_decay)
        if optimizer is not None:
            for group in optimizer.param_groups:
                group.setdefault("base_lr", group.get("initial_lr", float(args.learning_rate)))
        total = getattr(m, "total_steps", None)
        if total is not None and state.max_steps and int(total) != int(state.max_steps):
            warnings.warn(f"the adapter was attached with total_steps={total} but the Trainer runs {state.max_steps} "
                          "steps: the growth schedule is resolved from total_steps; attach with the Trainer's max_steps",
                          stacklevel=2)
        if hasattr(m, "accumulate_scores"):
            m.accumulate_scores = args.gradient_accumulation_steps > 1
        self._fallback = GroupLinearSchedule(warmup_steps=args.get_warmup_steps(state.max_steps), total_steps=state.max_steps,
                                             constant_new_groups=m.constant_lr_new_groups)
        if not isinstance(lr_scheduler, IncreLoRAScheduler) and str(getattr(args.lr_scheduler_type, "value",
                                                                             args.lr_scheduler_type)) != "linear":
            warnings.warn(f"lr_scheduler_type={args.lr_scheduler_type}: the parameter groups growth adds follow a linear "
                          "warm-up and decay from the step they are added, not this schedule", stacklevel=2)
        self._log(state)

    # ------------------------------------------------------------------ per optimizer step
    def on_pre_optimizer_step(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                              optimizer: Optional[torch.optim.Optimizer] = None, lr_scheduler: Any = None,
                              **kwargs: Any) -> None:
        if optimizer is None:
            raise RuntimeError("IncreLoRACallback: the Trainer passed no optimizer to on_pre_optimizer_step")
        step = int(state.global_step)
        rounds = len(self.method.allocator.history) if _is_increlora(self.method) else 0
        before = list(optimizer.param_groups)
        self.method.before_optimizer_step(step, optimizer)
        self._set_lrs(optimizer, lr_scheduler, step, before)
        if _is_increlora(self.method) and len(self.method.allocator.history) != rounds:
            self._pending_log = True

    def on_optimizer_step(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.method.after_optimizer_step(int(state.global_step))  # AdaLoRA allocates here

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self._pending_log:
            self._pending_log = False
            self._log(state)

    def _set_lrs(self, optimizer: torch.optim.Optimizer, lr_scheduler: Any, step: int, before: list[dict]) -> None:
        """This step's learning rates after growth: every group's under :class:`IncreLoRAScheduler`; otherwise the
        groups IncreLoRA added (restart warm-up), which are adopted into a ``LambdaLR`` so its ``step()`` keeps working."""
        if isinstance(lr_scheduler, IncreLoRAScheduler):
            lr_scheduler.apply(step)
            return
        assert self._fallback is not None, "on_train_begin has not run"
        for group in optimizer.param_groups:
            if group.get("added"):
                self._fallback.apply_group(group, step)
        if lr_scheduler is None or [id(g) for g in before] == [id(g) for g in optimizer.param_groups]:
            return
        if not isinstance(lr_scheduler, torch.optim.lr_scheduler.LambdaLR) or len(lr_scheduler.lr_lambdas) != len(before):
            raise RuntimeError(
                f"IncreLoRA changed the optimizer's parameter groups, which the learning-rate scheduler "
                f"{type(lr_scheduler).__name__} cannot follow; use IncreLoRATrainer (or IncreLoRAScheduler)")
        old = {id(g): i for i, g in enumerate(before)}
        lambdas, base_lrs = [], []
        s = self._fallback
        for group in optimizer.param_groups:
            i = old.get(id(group))
            if i is not None:
                lambdas.append(lr_scheduler.lr_lambdas[i])
                base_lrs.append(lr_scheduler.base_lrs[i])
            else:
                group.setdefault("initial_lr", group["base_lr"])
                constant = s.constant_new_groups
                lambdas.append(_RestartFactor(int(group.get("start_step", step)), s.warmup_steps, s.total_steps, constant))
                base_lrs.append(group["base_lr"])
        lr_scheduler.lr_lambdas = lambdas
        lr_scheduler.base_lrs = base_lrs
        lr_scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]

    # ------------------------------------------------------------------ logging
    def _log(self, state: TrainerState) -> None:
        entries = allocation_log(self.method)
        if self.trainer is not None:
            self.trainer.log(dict(entries))
        else:
            state.log_history.append({**entries, "step": state.global_step})
        logger.info("IncreLoRA allocation at step %d: total rank %d", state.global_step, entries["increlora/total_rank"])

    # ------------------------------------------------------------------ checkpoints
    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                optimizer: Optional[torch.optim.Optimizer] = None, **kwargs: Any) -> None:
        if not args.should_save:
            return
        folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if not folder.is_dir():
            warnings.warn(f"IncreLoRACallback: no checkpoint folder {folder}; IncreLoRA state not saved", stacklevel=2)
            return
        if _is_increlora(self.method):
            state_dict = method_state(self.method, optimizer)
            tmp = folder / (STATE_FILE + ".tmp")
            torch.save(state_dict, tmp)
            os.replace(tmp, folder / STATE_FILE)
            if self.save_adapter:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=".*tensor\\(s\\) have invalid shape.*")
                    self.method.save(folder / ADAPTER_DIR)
        # LoRA / AdaLoRA: the model is a peft model and the Trainer saves its adapter itself


class IncreLoRATrainer(Trainer):
    """``transformers.Trainer`` for a model :func:`increlora.attach` prepared (see the module docstring).

    ``IncreLoRATrainer(method=handle, args=..., train_dataset=..., ...)``: every other argument is the
    Trainer's; ``model`` defaults to ``handle.model``. ``args.max_steps`` should equal the
    ``total_steps`` given to :func:`increlora.attach` (a warning says when it does not).
    """

    def __init__(self, *args: Any, method: AdapterMethod, save_adapter: bool = True, **kwargs: Any) -> None:
        if not args and "model" not in kwargs:
            kwargs["model"] = method.model
        super().__init__(*args, **kwargs)
        if self.model is not method.model:
            raise ValueError("IncreLoRATrainer: model must be the handle's model (handle.model)")
        if self.args.load_best_model_at_end and _is_increlora(method):
            raise ValueError("load_best_model_at_end is not supported with IncreLoRA: the adapter's structure changes "
                             "during training; load the best checkpoint's increlora_adapter/ folder (plain peft) instead")
        self.increlora = method
        self.increlora_callback = IncreLoRACallback(method, trainer=self, save_adapter=save_adapter)
        self.add_callback(self.increlora_callback)
        self._increlora_layout: Optional[list[dict]] = None

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Union[torch.Tensor, int, None] = None) -> Any:
        """The Trainer's loss plus the method's regulariser (in training)."""
        result = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        if not model.training:
            return result
        if return_outputs:
            loss, outputs = result
            return add_extra_loss(self, self.increlora, loss, num_items_in_batch), outputs
        return add_extra_loss(self, self.increlora, result, num_items_in_batch)

    def create_optimizer(self, model: Optional[torch.nn.Module] = None) -> torch.optim.Optimizer:
        """The method's parameter groups (or, when resuming, the checkpoint's) under ``args.optim``'s optimizer."""
        if self.optimizer is not None:
            return self.optimizer
        m = self.increlora
        lr = float(self.args.learning_rate)
        if self._increlora_layout is not None:
            groups = optimizer_groups(m.model, self._increlora_layout)
        else:
            groups = m.param_groups(float(self.args.weight_decay))
            for group in groups:
                group.setdefault("base_lr", lr)
        if type(m).make_optimizer is not AdapterMethod.make_optimizer and getattr(m, "behaviour", None) is not None \
                and m.behaviour.legacy_adamw:
            self.optimizer = m.make_optimizer(groups, lr=lr)  # reproduce_official: the official code's AdamW
            return self.optimizer
        from transformers.trainer_optimizer import is_optimizer_factory

        if self.optimizer_cls_and_kwargs is not None:
            cls, kw = self.optimizer_cls_and_kwargs
        else:
            cls, kw = self.get_optimizer_cls_and_kwargs(self.args, model if model is not None else self.model)
        if is_optimizer_factory(cls) or any(k in kw for k in ("params", "model", "optimizer_dict")):
            raise ValueError(f"optim={self.args.optim}: IncreLoRATrainer needs an optimizer over parameter groups "
                             "(adamw_torch, adamw_torch_fused, sgd, ...)")
        self.optimizer = cls(groups, **kw)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int,
                         optimizer: Optional[torch.optim.Optimizer] = None) -> torch.optim.lr_scheduler.LRScheduler:
        """:class:`IncreLoRAScheduler` (the groups growth adds restart their warm-up)."""
        if self.lr_scheduler is None:
            kind = str(getattr(self.args.lr_scheduler_type, "value", self.args.lr_scheduler_type))
            if kind != "linear":
                raise ValueError(f"lr_scheduler_type={kind}: IncreLoRATrainer schedules every parameter group linearly "
                                 "(warm-up from the step the group was added, decay to the end); use 'linear'")
            self.lr_scheduler = IncreLoRAScheduler(
                optimizer if optimizer is not None else self.optimizer,
                warmup_steps=self.args.get_warmup_steps(num_training_steps), total_steps=num_training_steps,
                constant_new_groups=self.increlora.constant_lr_new_groups)
            self._created_lr_scheduler = True
        return self.lr_scheduler

    def train(self, resume_from_checkpoint: Union[str, bool, None] = None, trial: Any = None,
              ignore_keys_for_eval: Optional[list[str]] = None, **kwargs: Any) -> Any:
        """``Trainer.train``; when resuming, IncreLoRA's grown structure and optimizer groups are rebuilt first."""
        checkpoint = resume_from_checkpoint
        if isinstance(checkpoint, bool):
            checkpoint = get_last_checkpoint(self.args.output_dir) if checkpoint else None
        if checkpoint is not None:
            self._restore_increlora(str(checkpoint))
            resume_from_checkpoint = str(checkpoint)
        return super().train(resume_from_checkpoint=resume_from_checkpoint, trial=trial,
                             ignore_keys_for_eval=ignore_keys_for_eval, **kwargs)

    def _restore_increlora(self, checkpoint: str) -> None:
        m = self.increlora
        if m.name == "adalora":
            raise NotImplementedError("resuming AdaLoRA from a checkpoint is not supported: peft's rank allocator "
                                      "state is not part of the checkpoint")
        if not _is_increlora(m):
            return  # LoRA: one fixed structure, the Trainer's own resume is complete
        path = Path(checkpoint) / STATE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the checkpoint has no IncreLoRA state (was it written by IncreLoRATrainer "
                                    "or IncreLoRACallback?); without it the grown adapter cannot be rebuilt")
        if self.optimizer is not None:
            raise ValueError("resuming IncreLoRA needs the trainer to build the optimizer (do not pass optimizers=...)")
        state = torch.load(path, map_location="cpu", weights_only=True)
        restore_structure(m, state)
        self._increlora_layout = state.get("optimizer_layout")
        if self._increlora_layout is None:
            raise ValueError(f"{path}: no optimizer layout in the IncreLoRA state; cannot resume the optimizer")
