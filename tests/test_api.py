"""The public API (increlora.api, re-exported by the package) on a tiny random BERT."""

from __future__ import annotations

import doctest
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from increlora.methods.adalora.config import AdaLoraBaselineConfig

from increlora.config import ConfigError

from increlora.methods.lora.config import LoraBaselineConfig

from test_increlora_method import batch, tiny_bert

os.environ.setdefault("HF_HUB_OFFLINE", "1")
PUBLIC = ["IncreLoRACallback", "IncreLoRAConfig", "IncreLoRATrainer", "PresetConfig", "attach", "load_preset_config"]


def test_public_names_import_from_the_package_without_loading_torch():
    code = ("import sys, increlora\n"
            "from increlora import IncreLoRAConfig, attach, load_preset_config, PresetConfig\n"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import at import time'\n")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=root, timeout=120)


def test_public_names():
    import transformers

    import increlora
    from increlora import IncreLoRACallback, IncreLoRAConfig, IncreLoRATrainer
    from increlora.methods.increlora.config import IncreLoRAConfig as Declared

    assert sorted(increlora.__all__) == sorted(PUBLIC) and all(hasattr(increlora, n) for n in PUBLIC)
    assert IncreLoRAConfig is Declared
    assert issubclass(IncreLoRATrainer, transformers.Trainer) and issubclass(IncreLoRACallback, transformers.TrainerCallback)
    with pytest.raises(AttributeError):
        increlora.no_such_name


def test_the_api_docstring_example_runs():
    import increlora.api

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest
    try:
        result = doctest.testmod(increlora.api, optionflags=doctest.ELLIPSIS, raise_on_error=False)
    finally:
        torch.set_num_threads(threads)
    assert result.attempted >= 8 and result.failed == 0


def test_attach_increlora_by_name_suffix_and_train_a_step(tmp_path):
    from increlora import IncreLoRAConfig, attach

    model = tiny_bert()
    handle = attach(model, IncreLoRAConfig(init_rank=2, target_rank=3), total_steps=10, target_modules=["query", "value"])
    assert handle.name == "increlora" and handle.model is model
    assert handle.allocation() == {f"bert.encoder.layer.{i}.attention.self.{t}": 2 for i in (0, 1) for t in ("query", "value")}
    optimizer = handle.make_optimizer(handle.param_groups(0.0), lr=1e-3)
    loss = handle.model(**batch(0)).loss + handle.extra_loss()
    loss.backward()
    handle.before_optimizer_step(0, optimizer)
    optimizer.step()
    folder = handle.save(tmp_path / "adapter")  # the plain peft folder the project exports
    assert (folder / "adapter_config.json").is_file() and (folder / "adapter_model.safetensors").is_file()


def test_attach_lora_and_adalora_through_the_registry():
    from increlora import attach

    lora = attach(tiny_bert(), LoraBaselineConfig(r=3), total_steps=10)
    assert lora.name == "lora" and set(lora.allocation().values()) == {3}
    ada = attach(tiny_bert(), {"init_r": 3, "target_r": 1.0}, method="adalora", total_steps=50)
    assert ada.name == "adalora" and isinstance(ada.model, torch.nn.Module)
    assert attach(tiny_bert(), AdaLoraBaselineConfig(), total_steps=50).name == "adalora"


def test_attach_rejects_bad_input():
    from increlora import IncreLoRAConfig, attach

    with pytest.raises(ConfigError, match="target_rank"):
        attach(tiny_bert(), IncreLoRAConfig(target_rank=-1), total_steps=10)
    with pytest.raises(ConfigError, match="bogus"):
        attach(tiny_bert(), {"bogus": 1}, total_steps=10)
    with pytest.raises(ConfigError, match="target_modules"):
        attach(tiny_bert(), None, total_steps=10, target_modules=["no_such_layer"])
    with pytest.raises(TypeError, match="LoraBaselineConfig"):
        attach(tiny_bert(), IncreLoRAConfig(), method="lora", total_steps=10)
    with pytest.raises(ValueError, match="total_steps"):
        attach(tiny_bert(), None, total_steps=0)


def test_load_preset_config(tmp_path):
    from transformers import TrainingArguments

    from increlora import IncreLoRAConfig, attach, load_preset_config
    from increlora.presets import Preset, save_preset

    path = save_preset(Preset(preset_version=1, name="knee", method="increlora", task="cola",
                              config={"target_rank": 3.0, "init_warmup_frac": 0.1, "learning_rate": 2e-3, "lora_alpha": 8.0,
                                      "warmup_ratio": 0.1, "epochs": 5.0, "seed": 3}), tmp_path / "knee.yaml")
    preset = load_preset_config(path)
    assert preset.method == "increlora" and preset.name == "knee" and preset.task == "cola"
    assert isinstance(preset.config, IncreLoRAConfig)
    assert preset.config.target_rank == 3.0 and preset.config.init_warmup_frac == 0.1
    assert preset.train == {"learning_rate": 2e-3, "lora_alpha": 8.0, "warmup_ratio": 0.1}  # epochs, seed: not a recipe
    args = TrainingArguments(output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True, **preset.training_arguments())
    assert args.learning_rate == 2e-3 and args.get_warmup_steps(100) == 10 and str(args.lr_scheduler_type.value) == "linear"
    handle = attach(tiny_bert(), preset.config, total_steps=100, **preset.attach_kwargs())
    assert handle.modules[0].alpha == 8.0 and handle.base_lr == 2e-3
