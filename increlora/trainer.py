"""The training loop shared by IncreLoRA, LoRA and AdaLoRA: train, evaluate, report, save.

``train(cfg)`` runs one fine-tuning run and returns a :class:`TrainResult`. An ``on_evaluate``
callback receives every evaluation (the orchestrator forwards them to Ray Tune).
"""

from __future__ import annotations

import dataclasses
import math
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from . import __version__
from .adapter_method import AdapterMethod
from .atomic import write_json_atomic
from .backbone import display_name, load_model, load_tokenizer, resolve_model
from . import schedule
from .registry import method_spec
from .run_config import RunConfig
from .batching import batch_indices, batches, collate
from .data import PreparedData, Split, data_source, prepare_data
from .lr_schedule import GroupLinearSchedule
from .metrics import compute_metrics, glue_score
from .precision import autocast, resolve_precision, store_frozen_weights_in_bf16


NONFINITE_LOSS_STEPS = 3  # a run stops when the loss is NaN or infinite this many steps in a row


class TrainingDiverged(RuntimeError):
    """The loss stopped being finite; the message gives the step and what to change."""


@dataclass
class EvalEvent:
    """One evaluation during training."""

    step: int
    epoch: float
    metrics: dict[str, float]
    glue_score: float
    best_glue_score: float
    adapter_params: int
    trainable_params: int
    train_loss: float
    allocation: dict[str, int]
    is_final: bool


@dataclass
class TrainResult:
    """Everything a run produced (written as result.json)."""

    task: str
    method: str
    model: str
    config: dict[str, Any]
    metrics: dict[str, float]
    best_metrics: dict[str, float]
    glue_score: float
    best_glue_score: float
    best_step: int
    adapter_params: int
    peak_trainable_params: int
    head_params: int
    allocation: dict[str, int]
    growth_events: list[dict]
    schedule: dict[str, Any]
    steps: int
    epochs: float
    train_size: int
    eval_size: int
    wall_time_s: float
    train_time_s: float
    eval_time_s: float
    setup_time_s: float
    train_tokens: int = 0  # real (non-padding) tokens in the training batches
    train_padded_tokens: int = 0  # tokens computed, padding included
    eval_rows: int = 0  # rows evaluated, summed over the evaluations
    history: list[dict] = field(default_factory=list)
    adapter_dir: Optional[str] = None
    device: str = "cpu"
    precision: str = "fp32"  # the resolved training precision (bf16 or fp32)
    version: str = __version__
    data: dict[str, Any] = field(default_factory=dict)  # the data's fingerprint, labels and metrics


    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        from .config import ConfigError

        raise ConfigError(f"device: {name} requested but CUDA is not available; use --device cpu")
    return torch.device(name)


def default_eval_batch_size(device: torch.device) -> int:
    """64 rows on CPU (measured on 2 cores: 64 rows a batch beat 128, 256 and 512, as larger batches
    fall out of cache), 256 on a GPU."""
    return 256 if device.type == "cuda" else 64


def total_steps_for(cfg: RunConfig, train_size: int) -> int:
    """The run's optimizer steps (:func:`increlora.schedule.total_steps`)."""
    t = cfg.train
    return schedule.total_steps(train_size, t.batch_size, t.epochs, t.max_steps)


def build_method(cfg: RunConfig, model: torch.nn.Module, total_steps: int) -> AdapterMethod:
    """Attach ``cfg``'s method to ``model`` (looked up in the method registry)."""
    return method_spec(cfg.train.method).build(model, cfg.train, cfg.method, total_steps=total_steps, seed=cfg.train.seed)


def predict_logits(model: torch.nn.Module, split: Split, *, batch_size: int, pad_id: int, device: torch.device,
                   sort_by_length: bool, precision: str = "auto") -> np.ndarray:
    """The model's outputs (n_rows x n_labels, float32) for every row of ``split``, in row order."""
    out: Optional[np.ndarray] = None
    resolved = resolve_precision(precision, device)
    for idx in batch_indices(split.lengths(), batch_size, shuffle=False, group_by_length=sort_by_length):
        batch = {k: v.to(device) for k, v in collate(split, idx, pad_id=pad_id).items() if k != "labels"}
        with autocast(device, resolved):
            logits = model(**batch).logits.float().cpu().numpy()
        if out is None:
            out = np.empty((len(split), logits.shape[-1]), dtype=np.float32)
        out[idx] = logits
    return out if out is not None else np.empty((0, 1), dtype=np.float32)


def evaluate(
    method: AdapterMethod, data: PreparedData, *, batch_size: int, pad_id: int, device: torch.device, fast: bool = True,
    precision: str = "auto",
) -> dict[str, float]:
    """Metrics on every eval split; MNLI-style multi-split keys are prefixed with the split.

    ``fast``: rows sorted by length into batches (metrics still in row order), the adapter merged
    into the weights for the pass and ``torch.inference_mode``; otherwise rows in file order, the
    adapter as a separate branch and ``torch.no_grad``. Both give the same metrics within float
    tolerance, and the weights training continues from are unchanged either way. Under bf16 the adapter
    is never merged (a bf16 weight would round it at the scale of W0): it keeps its low-rank path.
    """
    model = method.model
    resolved = resolve_precision(precision, device)
    merge = fast and resolved == "fp32"
    was_training = model.training
    model.eval()
    out: dict[str, float] = {}
    try:
        with (method.merged_for_eval() if merge else nullcontext()), (torch.inference_mode() if fast else torch.no_grad()):
            for split_name, split in data.evals.items():
                logits = predict_logits(model, split, batch_size=batch_size, pad_id=pad_id, device=device, sort_by_length=fast,
                                        precision=resolved)
                pred = logits[:, 0] if data.is_regression else logits.argmax(-1)
                metrics = compute_metrics(data.task_spec, pred, np.asarray(split.labels))
                prefix = f"{split_name}/" if len(data.evals) > 1 else ""
                out.update({prefix + k: v for k, v in metrics.items()})
    finally:
        model.train(was_training)
    return out


def train_step(
    method: AdapterMethod,
    optimizer: torch.optim.Optimizer,
    schedule: GroupLinearSchedule,
    batch: dict[str, torch.Tensor],
    step: int,
    *,
    max_grad_norm: float,
    device: torch.device,
    precision: str = "auto",
) -> torch.Tensor:
    """One optimizer step in the official order (spec 1.8); returns the loss. The model runs under the
    precision's autocast; the method's regulariser is computed in fp32 outside it."""
    with autocast(device, resolve_precision(precision, device)):
        loss = method.model(**batch).loss
    extra = method.extra_loss()
    if extra is not None:
        loss = loss + extra
    loss.backward()
    if max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], max_grad_norm)
    method.before_optimizer_step(step, optimizer)
    schedule.apply(optimizer, step)
    optimizer.step()
    method.after_optimizer_step(step)
    optimizer.zero_grad(set_to_none=True)
    return loss


def train(
    cfg: RunConfig,
    data: Optional[PreparedData] = None,
    on_evaluate: Optional[Callable[[EvalEvent], None]] = None,
    tokenizer: Any = None,
) -> TrainResult:
    """Fine-tune ``cfg.train.model`` on ``cfg.train.task`` (or on your own data: ``train_file`` /
    ``dataset``) with ``cfg.method``; see module doc."""
    t_start = time.perf_counter()
    t = cfg.train
    source = data_source(vars(t))
    task = source if isinstance(source, str) else source.name
    if t.threads:
        torch.set_num_threads(t.threads)
    device = pick_device(t.device)
    precision = resolve_precision(t.precision, device)
    model_path = resolve_model(t.model)
    if tokenizer is None:
        tokenizer = load_tokenizer(model_path)
    if data is None:
        data = prepare_data(
            source,
            tokenizer,
            data_dir=t.data_dir,
            train_samples=t.train_samples,
            eval_samples=t.eval_samples,
            max_length=t.max_length,
            seed=t.seed,
            holdout_samples=t.holdout_samples,
        )
    spec = data.task_spec
    seed_everything(t.seed)
    model = load_model(model_path, num_labels=data.num_labels, is_regression=data.is_regression, classifier_dropout=t.classifier_dropout)
    total = total_steps_for(cfg, data.train_size)
    method = build_method(cfg, model, total)
    budget_warning = getattr(method, "budget_warning", None)
    if budget_warning:
        print(f"warning: {budget_warning}", file=sys.stderr, flush=True)
    method.model.to(device)
    if precision == "bf16":
        store_frozen_weights_in_bf16(method.model)
    groups = method.param_groups(t.weight_decay)
    for g in groups:
        g.setdefault("base_lr", t.learning_rate)
        g["lr"] = 0.0
    optimizer = method.make_optimizer(groups, lr=t.learning_rate)
    warmup = t.warmup_steps if t.warmup_steps is not None else int(round(t.warmup_ratio * total))
    schedule = GroupLinearSchedule(warmup_steps=warmup, total_steps=total, constant_new_groups=method.constant_lr_new_groups)
    eval_every = t.eval_steps or max(1, total // 4)
    eval_batch = t.eval_batch_size or default_eval_batch_size(device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    steps_per_epoch = max(1, math.ceil(data.train_size / t.batch_size))
    peak_trainable = method.trainable_param_count()
    peak_trainable = max(peak_trainable, getattr(method, "peak_trainable", 0))
    history: list[dict] = []
    best_score, best_metrics, best_step = -math.inf, {}, 0
    eval_time, loss_sum, loss_n = 0.0, 0.0, 0
    train_tokens = train_padded_tokens = eval_rows = nonfinite = 0
    setup_time = time.perf_counter() - t_start
    t_train = time.perf_counter()
    progress = _progress(total, f"{task} {method.name}", enabled=t.progress)
    method.model.train()
    step, epoch = 0, 0
    last_metrics: dict[str, float] = {}
    last_score = float("nan")
    while step < total:
        for batch in batches(data.train, t.batch_size, pad_id=pad_id, shuffle=True, seed=t.seed, epoch=epoch,
                             group_by_length=t.group_by_length):
            train_tokens += int(batch["attention_mask"].sum())
            train_padded_tokens += batch["attention_mask"].numel()
            batch = {k: v.to(device) for k, v in batch.items()}
            loss = train_step(method, optimizer, schedule, batch, step, max_grad_norm=t.max_grad_norm, device=device,
                              precision=precision)
            peak_trainable = max(peak_trainable, getattr(method, "peak_trainable", 0))
            loss_value = float(loss.detach())
            nonfinite = 0 if math.isfinite(loss_value) else nonfinite + 1
            if nonfinite >= NONFINITE_LOSS_STEPS:
                progress.close()
                raise TrainingDiverged(
                    f"training diverged: the loss was {loss_value} for {nonfinite} steps in a row (steps "
                    f"{step - nonfinite + 1}-{step}, learning rate {t.learning_rate:g}); lower the learning rate"
                )
            loss_sum += loss_value
            loss_n += 1
            step += 1
            progress.update(1)
            if step % eval_every == 0 or step == total:
                t_eval = time.perf_counter()
                last_metrics = evaluate(method, data, batch_size=eval_batch, pad_id=pad_id, device=device,
                                        fast=t.fast_eval, precision=precision)
                eval_rows += data.eval_size
                eval_time += time.perf_counter() - t_eval
                last_score = glue_score(spec, last_metrics)
                if last_score > best_score:
                    best_score, best_metrics, best_step = last_score, dict(last_metrics), step
                event = EvalEvent(
                    step=step,
                    epoch=step / steps_per_epoch,
                    metrics=dict(last_metrics),
                    glue_score=last_score,
                    best_glue_score=best_score,
                    adapter_params=method.adapter_param_count(),
                    trainable_params=method.trainable_param_count(),
                    train_loss=loss_sum / max(1, loss_n),
                    allocation=method.allocation(),
                    is_final=step == total,
                )
                loss_sum, loss_n = 0.0, 0
                history.append({k: v for k, v in dataclasses.asdict(event).items() if k != "allocation"})
                progress.set_postfix(score=f"{last_score:.2f}", best=f"{best_score:.2f}")
                if on_evaluate is not None:
                    on_evaluate(event)
            if step >= total:
                break
        epoch += 1
    progress.close()
    train_time = time.perf_counter() - t_train - eval_time
    result = TrainResult(
        task=task,
        method=method.name,
        model=display_name(t.model),
        config=cfg.flat(),
        metrics=last_metrics,
        best_metrics=best_metrics,
        glue_score=last_score,
        best_glue_score=best_score,
        best_step=best_step,
        adapter_params=method.adapter_param_count(),
        peak_trainable_params=peak_trainable,
        head_params=method.head_param_count(),
        allocation=method.allocation(),
        growth_events=method.growth_events(),
        schedule={"total_steps": total, "warmup_steps": warmup, "eval_steps": eval_every, **method.schedule_info()},
        steps=step,
        epochs=step / steps_per_epoch,
        train_size=data.train_size,
        eval_size=sum(len(s) for s in data.evals.values()),
        wall_time_s=0.0,
        train_time_s=train_time,
        eval_time_s=eval_time,
        setup_time_s=setup_time,
        train_tokens=train_tokens,
        train_padded_tokens=train_padded_tokens,
        eval_rows=eval_rows,
        history=history,
        device=str(device),
        precision=precision,
        data={**data.fingerprint, "num_labels": data.num_labels, "labels": list(data.label_names),
              "metrics": list(spec.metric_names)},
    )
    if t.output_dir:
        out = Path(t.output_dir).expanduser().resolve()
        out.mkdir(parents=True, exist_ok=True)
        if t.save_adapter:
            from .export import export_adapter

            result.adapter_dir = str(export_adapter(method, out / "adapter", cfg, result))
        result.wall_time_s = time.perf_counter() - t_start
        write_json_atomic(out / "result.json", result.to_dict())
    result.wall_time_s = time.perf_counter() - t_start
    return result


class _NoProgress:
    def update(self, n: int) -> None: ...
    def set_postfix(self, **kw: Any) -> None: ...
    def close(self) -> None: ...


def _progress(total: int, desc: str, *, enabled: bool):
    if not enabled:
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True, leave=True)
