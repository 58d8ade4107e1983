"""Evaluation fast path (length-sorted, merged, inference mode) and the bf16-safe growth path.

- the fast evaluation gives the same outputs and metrics as the plain path for every method, and
  leaves the weights training continues from unchanged, bit for bit;
- under bf16 autocast (CPU here, CUDA in real runs) a growing IncreLoRA layer computes the adapter's
  effect at the adapter's own scale: as precisely as a plain low-rank layer, and far more precisely
  than the merged form ``(W0 + dW) x`` the growth path used before, whose sum is rounded at the
  scale of W0;
- the importance score computed under bf16 autocast matches the fp32 score within bf16 tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from increlora.run_config import build_run_config
from increlora.methods.increlora.layer import SVDLinear
from increlora.trainer import build_method, evaluate, predict_logits


@pytest.fixture(scope="module")
def cola(tiny_model_dir, glue_dir):
    from increlora.backbone import load_tokenizer
    from increlora.data import prepare_data

    tok = load_tokenizer(tiny_model_dir)
    return prepare_data("cola", tok, data_dir=glue_dir, train_samples=64, eval_samples=300, max_length=64, seed=0)


METHODS = [
    ("increlora", {"init_warmup": 0, "incre_interval": 1}),  # still growing: score hooks on
    ("increlora", {"target_rank": 1.0}),  # budget = initial rank: low-rank path, reserves dropped
    ("lora", {"r": 4}),
    ("adalora", {"init_r": 4, "target_r": 2.0}),
    ("dora", {"r": 2}),
]


@pytest.mark.parametrize("method,knobs", METHODS, ids=["increlora-growing", "increlora-grown", "lora", "adalora", "dora"])
def test_fast_evaluation_matches_the_plain_path(method, knobs, cola, tiny_model_dir):
    from increlora.backbone import load_model

    cfg = build_run_config({"task": "cola", "method": method, "model": tiny_model_dir, "max_steps": 10, **knobs})
    torch.manual_seed(0)
    model = load_model(tiny_model_dir, num_labels=2, is_regression=False)
    m = build_method(cfg, model, 10)
    with torch.no_grad():  # non-trivial adapters and head: random values for every trainable tensor
        for p in m.model.parameters():
            if p.requires_grad:
                p.normal_(0.0, 0.1)
    before = {k: v.detach().clone() for k, v in m.model.state_dict().items()}
    split = cola.evals["validation"]
    cpu = torch.device("cpu")
    m.model.eval()
    with torch.no_grad():
        plain = predict_logits(m.model, split, batch_size=128, pad_id=0, device=cpu, sort_by_length=False)
    with m.merged_for_eval(), torch.inference_mode():
        fast = predict_logits(m.model, split, batch_size=64, pad_id=0, device=cpu, sort_by_length=True)
    assert plain.std(axis=0).max() > 1e-4  # the outputs vary between rows
    np.testing.assert_allclose(fast, plain, rtol=1e-4, atol=1e-5 * np.abs(plain).max())
    m.model.train()
    slow_metrics = evaluate(m, cola, batch_size=128, pad_id=0, device=cpu, fast=False)
    fast_metrics = evaluate(m, cola, batch_size=64, pad_id=0, device=cpu, fast=True)
    assert fast_metrics == pytest.approx(slow_metrics, abs=1e-9)
    assert m.model.training
    after = m.model.state_dict()
    assert set(after) == set(before)
    for k, v in before.items():
        assert torch.equal(after[k], v), k


def _layer(max_dw: float, seed: int = 0) -> tuple[SVDLinear, torch.Tensor]:
    """A 768x768 layer with |W0| std 0.04 and an adapter whose largest update entry is ``max_dw``."""
    g = torch.Generator().manual_seed(seed)
    base = nn.Linear(768, 768)
    with torch.no_grad():
        base.weight.copy_(torch.randn(768, 768, generator=g) * 0.04)
        base.bias.zero_()
    layer = SVDLinear(base, init_rank=4, alpha=8.0, generator=g)
    with torch.no_grad():
        layer.lora_E[0].copy_(torch.randn(4, 1, generator=g))
        dw = layer.delta_weight()
        layer.lora_E[0].mul_(max_dw / dw.abs().max())
    x = torch.randn(8, 16, 768, generator=g)
    return layer, x


def _rel_err(effect: torch.Tensor, reference: torch.Tensor) -> float:
    return float((effect.detach().float() - reference).norm() / reference.norm())


@pytest.mark.parametrize("max_dw", [4e-5, 4e-4, 4e-3])
def test_bf16_growth_path_is_as_precise_as_the_low_rank_path(max_dw):
    layer, x = _layer(max_dw)
    layer.train()
    with torch.no_grad():
        reference = F.linear(x, layer.delta_weight())  # the adapter's effect in fp32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        base_out = F.linear(x, layer.base_layer.weight, layer.base_layer.bias)
        layer.score_enabled = False
        low_rank = layer(x)
        layer.score_enabled = True
        growing = layer(x)
        merged = F.linear(x, layer.base_layer.weight + layer.delta_weight(), layer.base_layer.bias)  # the old growth path
    err_growing = _rel_err(growing.float() - base_out.float(), reference)
    err_low_rank = _rel_err(low_rank.float() - base_out.float(), reference)
    err_merged = _rel_err(merged.float() - base_out.float(), reference)
    assert err_growing == pytest.approx(err_low_rank, rel=1e-6)
    assert err_growing < err_merged / 2, (err_growing, err_merged)


def test_bf16_score_matches_the_fp32_score():
    layer, x = _layer(4e-3, seed=1)
    layer.train()
    layer.score_enabled = True
    layer.score_dtype = torch.float32  # the exact reference; "auto" may pick bf16 on this CPU
    g_out = torch.randn(8, 16, 768, generator=torch.Generator().manual_seed(2))
    (layer(x) * g_out).sum().backward()
    fp32 = layer.last_score.item()
    expected = (layer.delta_weight() * (g_out.reshape(-1, 768).T @ x.reshape(-1, 768))).abs().sum().item() / 768
    assert fp32 == pytest.approx(expected, rel=1e-4)
    layer.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    assert out.dtype == torch.bfloat16
    (out.float() * g_out).sum().backward()
    bf16 = layer.last_score.item()
    assert math.isfinite(bf16) and bf16 == pytest.approx(fp32, rel=2e-2)


def test_bf16_score_product_in_an_fp32_run_matches_the_fp32_score():
    """The score's dense product in bf16 (what "auto" picks on AMX CPUs and CUDA) vs fp32, same layer and gradient."""
    scores = {}
    for dtype in (torch.float32, torch.bfloat16):
        layer, x = _layer(4e-3, seed=3)
        layer.train()
        layer.score_enabled = True
        layer.score_dtype = dtype
        g_out = torch.randn(8, 16, 768, generator=torch.Generator().manual_seed(4))
        (layer(x) * g_out).sum().backward()
        scores[dtype] = layer.last_score.item()
    assert scores[torch.float32] > 0
    assert scores[torch.bfloat16] == pytest.approx(scores[torch.float32], rel=1e-3)


def test_auto_score_dtype_resolves_per_device():
    from increlora.methods.increlora.layer import score_product_dtype

    assert score_product_dtype(torch.device("cuda")) == torch.bfloat16
    assert score_product_dtype(torch.device("cpu")) in (None, torch.bfloat16)
    layer, x = _layer(4e-3)
    layer.train()
    layer.score_enabled = True
    assert layer.score_dtype == "auto"
    layer(x).sum().backward()
    assert layer.score_dtype == score_product_dtype(torch.device("cpu"))
    assert math.isfinite(layer.last_score.item())


def test_scale_folded_into_the_factor_gives_the_same_output():
    layer, x = _layer(4e-3, seed=5)
    a, b, e = layer._stacked(True)
    with torch.no_grad():
        unfolded = F.linear(x, layer.base_layer.weight, layer.base_layer.bias) + F.linear(F.linear(x, a * e), b) * layer.scale
        folded = layer(x)
    torch.testing.assert_close(folded, unfolded, rtol=1e-5, atol=1e-6)
