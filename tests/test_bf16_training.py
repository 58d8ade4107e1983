"""bf16 training (``--precision``): what is stored in bf16, what stays fp32, and that it is recorded.

Frozen base weights in bf16; adapters, head, gradients, optimizer state and IncreLoRA's score EMAs in
fp32; the adapter never merged into a bf16 weight for evaluation; the resolved precision in every result.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from increlora.config import ConfigError

from increlora.run_config import build_run_config
from increlora.precision import autocast, resolve_precision, store_frozen_weights_in_bf16
from increlora.trainer import build_method, evaluate, train

KNOBS = {"task": "cola", "train_samples": 64, "eval_samples": 64, "max_steps": 6, "batch_size": 16, "eval_steps": 3,
         "max_length": 32, "progress": False}


def test_precision_resolves_per_device_and_rejects_other_values(monkeypatch):
    import increlora.precision as precision

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("fp32", cuda) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    assert resolve_precision("auto", cuda) == "bf16"  # what the project always did on a GPU
    monkeypatch.setattr(precision, "AUTO_BF16_ON_CPU", False)
    assert resolve_precision("auto", cpu) == "fp32"
    monkeypatch.setattr(precision, "AUTO_BF16_ON_CPU", True)
    assert resolve_precision("auto", cpu) == ("bf16" if precision.cpu_has_native_bf16() else "fp32")
    with pytest.raises(ConfigError, match="precision"):
        build_run_config({"precision": "fp16"})
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("half", cpu)


@pytest.mark.parametrize("method,knobs", [
    ("increlora", {"init_warmup": 0, "incre_interval": 2, "top_h": 6}),
    ("increlora", {"init_warmup": 0, "incre_interval": 2, "top_h": 6, "reproduce_official": True}),
    ("lora", {"r": 2}),
    ("adalora", {"init_r": 3, "target_r": 2.0}),
], ids=["increlora", "increlora-official", "lora", "adalora"])
def test_bf16_keeps_trained_tensors_and_optimizer_state_in_fp32(method, knobs, tiny_model_dir):
    from increlora.backbone import load_model
    from increlora.lr_schedule import GroupLinearSchedule
    from increlora.trainer import train_step

    cfg = build_run_config({**KNOBS, "method": method, "model": tiny_model_dir, **knobs})
    torch.manual_seed(0)
    model = load_model(tiny_model_dir, num_labels=2, is_regression=False)
    m = build_method(cfg, model, total_steps=20)
    assert store_frozen_weights_in_bf16(m.model) > 0
    groups = m.param_groups(0.01)
    for g in groups:
        g["base_lr"], g["lr"] = 1e-3, 0.0
    opt = m.make_optimizer(groups, lr=1e-3)
    schedule = GroupLinearSchedule(warmup_steps=1, total_steps=20)
    g = torch.Generator().manual_seed(0)
    for step in range(4):
        batch = {"input_ids": torch.randint(1, 1000, (8, 12), generator=g), "attention_mask": torch.ones(8, 12, dtype=torch.long),
                 "labels": torch.randint(0, 2, (8,), generator=g)}
        loss = train_step(m, opt, schedule, batch, step, max_grad_norm=1.0, device=torch.device("cpu"), precision="bf16")
        assert math.isfinite(float(loss.detach()))
    trained = [p for p in m.model.parameters() if p.requires_grad]
    frozen_linear = [mod.weight for mod in m.model.modules() if isinstance(mod, torch.nn.Linear) and not mod.weight.requires_grad]
    assert trained and all(p.dtype == torch.float32 for p in trained)
    assert frozen_linear and all(w.dtype == torch.bfloat16 for w in frozen_linear)
    for group in opt.param_groups:
        for p in group["params"]:
            for value in opt.state[p].values():
                if torch.is_tensor(value) and value.numel() > 1:
                    assert value.dtype == torch.float32
    if method == "increlora":
        assert m.ema.sensitivity.dtype == torch.float32 and m.ema.updates == 4
        assert all(t.dtype == torch.float32 for layer in m.modules for t in (*layer.lora_A, *layer.lora_B, *layer.lora_E))


def test_bf16_evaluation_keeps_the_adapter_on_its_own_path(tiny_model_dir, glue_dir):
    """Under bf16 evaluation does not merge: the fast and plain evaluations agree, and no weight changes."""
    from increlora.backbone import load_model, load_tokenizer
    from increlora.data import prepare_data

    tok = load_tokenizer(tiny_model_dir)
    data = prepare_data("cola", tok, data_dir=glue_dir, train_samples=64, eval_samples=200, max_length=32, seed=0)
    cfg = build_run_config({**KNOBS, "method": "increlora", "model": tiny_model_dir, "target_rank": 1.0})
    torch.manual_seed(0)
    m = build_method(cfg, load_model(tiny_model_dir, num_labels=2, is_regression=False), total_steps=10)
    with torch.no_grad():
        for layer in m.modules:
            layer.lora_E[0].normal_(0.0, 5.0)  # an adapter whose effect shows
    store_frozen_weights_in_bf16(m.model)
    before = {n: p.detach().clone() for n, p in m.model.named_parameters()}
    cpu = torch.device("cpu")
    fast = evaluate(m, data, batch_size=64, pad_id=0, device=cpu, fast=True, precision="bf16")
    plain = evaluate(m, data, batch_size=64, pad_id=0, device=cpu, fast=False, precision="bf16")
    assert fast == pytest.approx(plain, abs=1e-6)
    assert all(layer._merged is None for layer in m.modules)
    assert all(torch.equal(p, before[n]) for n, p in m.model.named_parameters())


def test_bf16_logits_stay_close_to_fp32(tiny_model_dir):
    from increlora.backbone import load_model

    cfg = build_run_config({**KNOBS, "method": "lora", "model": tiny_model_dir, "r": 2})
    torch.manual_seed(0)
    m = build_method(cfg, load_model(tiny_model_dir, num_labels=2, is_regression=False), total_steps=10)
    m.model.eval()
    ids = torch.randint(1, 1000, (4, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = m.model(input_ids=ids).logits
        store_frozen_weights_in_bf16(m.model)
        with autocast(torch.device("cpu"), "bf16"):
            low = m.model(input_ids=ids).logits.float()
    assert (low - ref).abs().max().item() < 0.05 * ref.abs().max().item() + 1e-2


def test_a_bf16_run_records_its_precision(tiny_model_dir, glue_dir, tmp_path):
    cfg = build_run_config({**KNOBS, "method": "increlora", "model": tiny_model_dir, "data_dir": str(glue_dir),
                            "init_warmup": 0, "incre_interval": 1, "top_h": 12, "precision": "bf16",
                            "output_dir": str(tmp_path), "save_adapter": True})
    res = train(cfg)
    assert res.precision == "bf16" and math.isfinite(res.glue_score)
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["precision"] == "bf16" and saved["config"]["precision"] == "bf16"
    assert sum(res.allocation.values()) == 24 and res.schedule["cleaned_up"]
    fp32 = train(build_run_config({**cfg.flat(), "precision": "fp32", "output_dir": None}))
    assert fp32.precision == "fp32"


def test_dora_counts_its_magnitude_vectors(tiny_model_dir):
    """DoRA's adapter = LoRA's A and B plus one trained magnitude per output of every adapted module."""
    from increlora.backbone import load_model

    cfg = build_run_config({**KNOBS, "method": "dora", "model": tiny_model_dir, "r": 3})
    torch.manual_seed(0)
    m = build_method(cfg, load_model(tiny_model_dir, num_labels=2, is_regression=False), total_steps=10)
    trained = sum(p.numel() for n, p in m.model.named_parameters()
                  if p.requires_grad and ("lora_A" in n or "lora_B" in n or "lora_magnitude_vector" in n))
    assert trained == m.adapter_param_count() > 0
    assert set(m.allocation().values()) == {3}
