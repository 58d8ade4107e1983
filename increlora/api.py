"""The public API: attach IncreLoRA (or LoRA / AdaLoRA) to a Hugging Face model, load a search's preset.

``from increlora import IncreLoRAConfig, attach, load_preset_config`` is all a training script needs;
for ``transformers.Trainer`` see :mod:`increlora.hf_trainer` (``IncreLoRATrainer``, ``IncreLoRACallback``).
The handle :func:`attach` returns is the method object the project's own loop drives
(:class:`~increlora.adapter_method.AdapterMethod`): ``handle.model`` is the model to train,
``handle.param_groups(weight_decay)`` the optimizer's groups, ``handle.extra_loss()`` the
orthogonal regulariser to add to the loss, ``handle.before_optimizer_step(step, optimizer)`` the
per-step hook (score EMAs and growth; it adds parameter groups to ``optimizer``),
``handle.allocation()`` the rank of every adapted module and ``handle.save(folder)`` a plain peft
LoRA adapter.

Example (a tiny random BERT; any model with ``nn.Linear`` layers in numbered blocks works)::

    >>> import torch
    >>> from transformers import BertConfig, BertForSequenceClassification
    >>> from increlora import IncreLoRAConfig, attach
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = BertForSequenceClassification(BertConfig(
    ...     vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32))
    >>> handle = attach(model, IncreLoRAConfig(target_rank=2, init_warmup=2, incre_interval=2, top_h=3),
    ...                 total_steps=20, target_modules=["query", "value"], learning_rate=1e-2)
    >>> sum(handle.allocation().values())  # 4 modules at rank 1
    4
    >>> optimizer = handle.make_optimizer(handle.param_groups(0.0), lr=1e-2)
    >>> for step in range(10):
    ...     batch = {"input_ids": torch.randint(1, 100, (8, 12)), "labels": torch.randint(0, 2, (8,))}
    ...     loss = handle.model(**batch).loss + handle.extra_loss()
    ...     loss.backward()
    ...     handle.before_optimizer_step(step, optimizer)  # may grow, adding a parameter group
    ...     optimizer.step()
    ...     optimizer.zero_grad()
    >>> sum(handle.allocation().values())  # grown to the budget: 2 per module on average
    8

(a real loop also clips the gradients before ``before_optimizer_step`` and sets every group's
learning rate, as :func:`increlora.trainer.train_step` does; ``IncreLoRATrainer`` does all of it.)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

from .config import TrainConfig
from .methods.increlora.config import IncreLoRAConfig
from .registry import REGISTRY, MethodConfig, method_spec
from .run_config import build_run_config

if TYPE_CHECKING:  # pragma: no cover
    import os

    from torch import nn

    from .adapter_method import AdapterMethod

__all__ = ["IncreLoRAConfig", "PresetConfig", "attach", "load_preset_config"]

_DEFAULTS = TrainConfig()


def _method_name(config: Any, method: Optional[str]) -> str:
    if method is not None:
        method_spec(method)  # ConfigError naming the choices
        return method
    for name, spec in REGISTRY.items():
        if isinstance(config, spec.config_cls):
            return name
    return "increlora"


def attach(
    model: "nn.Module",
    config: Union[MethodConfig, dict[str, Any], None] = None,
    *,
    total_steps: int,
    method: Optional[str] = None,
    target_modules: Optional[Sequence[str]] = None,
    head_modules: Sequence[str] = tuple(_DEFAULTS.head_modules),
    lora_alpha: float = _DEFAULTS.lora_alpha,
    lora_dropout: float = _DEFAULTS.lora_dropout,
    learning_rate: float = _DEFAULTS.learning_rate,
    weight_decay: float = _DEFAULTS.weight_decay,
    seed: int = 0,
) -> "AdapterMethod":
    """Attach an adapter method to ``model`` and return its handle (see the module docstring).

    Args:
        model: a Hugging Face (or any ``nn.Module``) model. IncreLoRA replaces its target ``nn.Linear``
            layers in place; LoRA and AdaLoRA wrap it in a peft model (``handle.model``).
        config: the method's knobs: an :class:`IncreLoRAConfig` (or ``LoraBaselineConfig`` /
            ``AdaLoraBaselineConfig`` from :mod:`increlora.config`), a dict of knob -> value, or None
            for the defaults. Validated; a bad knob raises ``ConfigError`` naming it.
        total_steps: optimizer steps of the whole run. IncreLoRA's growth schedule (fractions of the run,
            ``top_h=None``) and AdaLoRA's are resolved from it: give the Trainer's ``max_steps``.
        method: ``"increlora"``, ``"lora"`` or ``"adalora"``; default: the one ``config``'s class belongs
            to, else IncreLoRA.
        target_modules: name suffixes of the linear layers to adapt (as peft's ``target_modules``), e.g.
            ``["query", "value"]`` or ``["q_proj", "v_proj"]``; only layers inside numbered blocks
            (``...layer.3...``, ``...layers.3...``) match. Default: BERT/RoBERTa/DeBERTa's six per block.
        head_modules: modules trained in full next to the adapters (and saved with the peft adapter).
        lora_alpha: the adapter scale alpha (IncreLoRA and AdaLoRA scale by alpha / rank).
        lora_dropout: dropout on the adapter input.
        learning_rate: peak learning rate that the parameter groups added by growth start from
            (``IncreLoRACallback`` replaces it with the Trainer's ``learning_rate``).
        weight_decay: weight decay of the groups growth adds (the Trainer's replaces it likewise).
        seed: seeds the adapters' random initialisation (the initial components and every later one).
    """
    name = _method_name(config, method)
    spec = method_spec(name)
    if config is None:
        method_cfg = spec.config_cls()
    elif isinstance(config, dict):
        method_cfg = build_run_config({**config, "method": name}).method
    elif isinstance(config, spec.config_cls):
        method_cfg = config
    else:
        raise TypeError(f"config: expected {spec.config_cls.__name__} (method {name!r}), a dict or None; "
                        f"got {type(config).__name__}")
    method_cfg.validate()
    if int(total_steps) < 1:
        raise ValueError(f"total_steps: must be >= 1 (got {total_steps})")
    train_cfg = TrainConfig(
        method=name,
        target_modules=list(target_modules) if target_modules else None,
        head_modules=list(head_modules),
        lora_alpha=float(lora_alpha),
        lora_dropout=float(lora_dropout),
        learning_rate=float(learning_rate),
        weight_decay=float(weight_decay),
        seed=int(seed),
    )
    train_cfg.validate()
    return spec.build(model, train_cfg, method_cfg, total_steps=int(total_steps), seed=int(seed))


# TrainConfig knobs of a preset -> the transformers.TrainingArguments field that means the same
_TRAINING_ARGUMENTS = {"learning_rate": "learning_rate", "weight_decay": "weight_decay", "max_grad_norm": "max_grad_norm",
                       "warmup_steps": "warmup_steps"}
_ATTACH_KNOBS = ("lora_alpha", "lora_dropout", "learning_rate", "weight_decay")


@dataclass(frozen=True)
class PresetConfig:
    """A preset loaded for use outside the search: the method, its config and the training recipe.

    ``train`` holds the preset's training-recipe knobs of :class:`~increlora.config.TrainConfig`
    (``learning_rate``, ``lora_alpha``, ``warmup_ratio``, ...; the run's size and setup, such as epochs,
    batch size, sequence length and seed, are not part of a preset). ``attach_kwargs()`` and
    ``training_arguments()`` map them onto :func:`attach` and ``transformers.TrainingArguments``.
    """

    method: str
    config: MethodConfig
    train: dict[str, Any]
    name: Optional[str] = None
    task: Optional[str] = None

    def attach_kwargs(self) -> dict[str, Any]:
        """``attach(model, preset.config, total_steps=..., **preset.attach_kwargs())``."""
        return {"method": self.method, **{k: self.train[k] for k in _ATTACH_KNOBS if k in self.train}}

    def training_arguments(self) -> dict[str, Any]:
        """Keyword arguments for ``transformers.TrainingArguments`` (linear schedule; warm-up as the preset says:
        ``warmup_steps``, else ``warmup_ratio`` given as transformers' fractional ``warmup_steps``)."""
        out: dict[str, Any] = {"lr_scheduler_type": "linear"}
        for knob, arg in _TRAINING_ARGUMENTS.items():
            if self.train.get(knob) is not None:
                out[arg] = self.train[knob]
        if "warmup_steps" not in out and self.train.get("warmup_ratio") is not None:
            out["warmup_steps"] = float(self.train["warmup_ratio"])  # transformers 5: a value < 1 is a ratio
        return out


def load_preset_config(path: Union[str, "os.PathLike[str]"]) -> PresetConfig:
    """Load a search's preset YAML (:mod:`increlora.presets`) as a :class:`PresetConfig`.

    The file is validated as the CLIs validate it (``PresetError``, one line naming the file and key);
    the run's size and setup knobs an older preset may hold are dropped, as when a CLI applies it.
    """
    from .presets import load_preset, preset_overrides

    preset = load_preset(path)
    overrides = preset_overrides(preset)
    cfg = build_run_config(overrides)
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"method"}
    train = {k: getattr(cfg.train, k) for k in overrides if k in train_fields}
    return PresetConfig(method=preset.method, config=cfg.method, train=train, name=preset.name, task=preset.task)
