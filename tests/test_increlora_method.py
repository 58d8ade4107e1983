"""IncreLoRA mechanics on a tiny random BERT: schedule, scores, reserves, LR restarts, orth term, export."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from increlora.methods.increlora.allocator import Allocator, GrowthPlan, ImportanceEMA
from increlora.methods.increlora.config import IncreLoRAConfig
from increlora.config import TrainConfig
from increlora.run_config import build_run_config
from increlora.methods.increlora.layer import RESERVE_LAMBDA, SVDLinear
from increlora.lr_schedule import GroupLinearSchedule, linear_factor
from increlora.methods.increlora.adapter import IncreLoRAMethod


def tiny_bert(num_labels: int = 2, seed: int = 0):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=100,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        num_labels=num_labels,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BertForSequenceClassification(cfg)


def make_method(total_steps: int = 40, **kw) -> IncreLoRAMethod:
    knobs = {"init_warmup": 2, "incre_interval": 2, "top_h": 3, "target_rank": 2.0, "orth_reg_weight": 0.1,
             "reproduce_official": False, **kw}  # this project's variant; tests/test_official_mode.py tests the official one
    cfg = build_run_config({"method": "increlora", "lora_alpha": 8.0, **knobs})
    return IncreLoRAMethod(tiny_bert(), cfg.train, cfg.method, total_steps=total_steps, seed=0)


def make_optimizer(method: IncreLoRAMethod, lr: float = 1e-2) -> torch.optim.Optimizer:
    groups = method.param_groups(0.0)
    for g in groups:
        g["base_lr"] = lr
    return torch.optim.AdamW(groups, lr=lr)


def batch(seed: int, n: int = 8, length: int = 10) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "input_ids": torch.randint(1, 100, (n, length), generator=g),
        "attention_mask": torch.ones(n, length, dtype=torch.long),
        "labels": torch.randint(0, 2, (n,), generator=g),
    }


def run_steps(method, optimizer, steps, *, schedule=None, start=0, on_step=None):
    method.model.train()
    for step in range(start, start + steps):
        out = method.model(**batch(step))
        loss = out.loss + (method.extra_loss() or 0.0)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1.0)
        method.before_optimizer_step(step, optimizer)
        if schedule is not None:
            schedule.apply(optimizer, step)
        if on_step:
            on_step(step)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


# ---------------------------------------------------------------- schedule and budget
def test_growth_happens_at_scheduled_steps_and_stops_at_budget():
    method = make_method()
    opt = make_optimizer(method)
    assert len(method.modules) == 12  # 2 layers x 6 module types
    run_steps(method, opt, 20)
    steps = [h["step"] for h in method.allocator.history]
    # budget 24 ranks, 12 initial, 3 per round -> 4 rounds at the multiples of 2 above init_warmup = 2
    assert steps == [4, 6, 8, 10]
    assert sum(method.allocation().values()) == 24
    assert method.adapter_param_count() == sum(m.rank * (m.in_features + m.out_features + 1) for m in method.modules)
    assert method.growth_end_step == 10 and method.cleaned_up
    assert all(not m.has_reserve for m in method.modules)


def test_parameter_budget_never_overshoots():
    method = make_method(budget_params=3000, n_add=2, top_h=4)
    opt = make_optimizer(method)
    run_steps(method, opt, 30)
    spent = method.adapter_param_count()
    assert spent <= 3000
    assert 3000 - spent < min(m.cost_per_rank for m in method.modules)  # nothing more fits


def test_official_topk_quirk_can_overshoot():
    alloc = Allocator(GrowthPlan(0, 1, top_h=2, n_add=4, budget=10, official_topk=True), [1] * 4, [1, 1, 1, 1])
    picks = alloc.select([3.0, 3.0, 3.0, 1.0])  # ties at the 2nd score select three modules
    alloc.apply(1, picks)
    assert [k for k, _ in picks] == [0, 1, 2] and alloc.spent() == 16 > 10
    fixed = Allocator(GrowthPlan(0, 1, top_h=2, n_add=4, budget=10), [1] * 4, [1, 1, 1, 1])
    picks = fixed.select([3.0, 3.0, 3.0, 1.0])
    fixed.apply(1, picks)
    assert picks == [(0, 4), (1, 2)] and fixed.spent() == 10


def test_top_h_picks_highest_scores():
    alloc = Allocator(GrowthPlan(0, 1, top_h=3, n_add=1, budget=100), [1] * 6, [1] * 6)
    picks = alloc.select([0.1, 0.9, 0.3, 0.8, 0.05, 0.7])
    assert [k for k, _ in picks] == [1, 3, 5]
    assert alloc.is_growth_step(2) and not alloc.is_growth_step(0)


# ---------------------------------------------------------------- score and EMA
def test_score_and_ema_match_hand_computation():
    torch.manual_seed(0)
    base = nn.Linear(5, 4)
    layer = SVDLinear(base, init_rank=2, alpha=4.0, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        layer.lora_E[0].copy_(torch.tensor([[0.5], [-1.5]]))
    layer.append_chunk(1, lam=RESERVE_LAMBDA, trainable_lambda=False, trainable_ab=True)
    layer.score_enabled = True
    layer.score_dtype = torch.float32  # the exact formula; the bf16 product is checked in test_eval_and_precision
    layer.train()
    x = torch.randn(3, 5)
    g_out = torch.randn(3, 4)  # fixed gradient of the loss w.r.t. the output
    ema = ImportanceEMA(1, beta1=0.85, beta2=0.7)
    expected_sens, expected_unc = 0.0, 0.0
    for _ in range(2):
        layer.zero_grad()
        (layer(x) * g_out).sum().backward()
        a = torch.cat([layer.lora_A[0], layer.lora_A[1]])
        b = torch.cat([layer.lora_B[0], layer.lora_B[1]], dim=1)
        e = torch.cat([layer.lora_E[0], layer.lora_E[1]])
        dw = (b @ (a * e)) * (4.0 / (2 + 1e-5))
        grad = g_out.T @ x  # dL/d(dW)
        instant = (dw * grad).abs().sum().item() / math.sqrt(4 * 5)
        assert layer.last_score.item() == pytest.approx(instant, rel=1e-5)
        ema.update(layer.last_score.reshape(1))
        expected_sens = 0.85 * expected_sens + 0.15 * instant
        expected_unc = 0.7 * expected_unc + 0.3 * abs(instant - expected_sens)
        with torch.no_grad():
            layer.lora_E[0].add_(0.1)
    assert ema.sensitivity.item() == pytest.approx(expected_sens, rel=1e-5)
    assert ema.uncertainty.item() == pytest.approx(expected_unc, rel=1e-5)
    assert ema.score.item() == pytest.approx(expected_sens * expected_unc, rel=1e-5)


def test_scoring_and_merging_leave_the_output_unchanged():
    torch.manual_seed(0)
    layer = SVDLinear(nn.Linear(6, 5), init_rank=3, alpha=8.0, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        layer.lora_E[0].normal_()
    x = torch.randn(4, 6)
    layer.train()
    low = layer(x)
    layer.score_enabled = True
    scored = layer(x)
    torch.testing.assert_close(low, scored, rtol=0, atol=0)
    expected = x @ (layer.base_layer.weight + layer.delta_weight()).T + layer.base_layer.bias
    torch.testing.assert_close(low, expected, rtol=1e-5, atol=1e-6)
    layer.eval()
    w0 = layer.base_layer.weight.detach().clone()
    layer.merge_for_eval()
    torch.testing.assert_close(layer(x), low, rtol=1e-5, atol=1e-6)
    layer.unmerge()
    assert torch.equal(layer.base_layer.weight, w0)


# ---------------------------------------------------------------- reserves
def test_activating_reserves_does_not_change_output():
    method = make_method(init_warmup=0, incre_interval=3)
    opt = make_optimizer(method)
    run_steps(method, opt, 3)  # steps 0..2: trains, no growth yet (first round at step 3)
    method.model.eval()
    probe = batch(99)
    probe.pop("labels")
    with torch.no_grad():
        before = method.model(**probe).logits
    ranks_before = sum(method.allocation().values())
    # one growth round at step 3 without an optimizer step
    method.model.train()
    method.model(**batch(3)).loss.backward()
    method.before_optimizer_step(3, opt)
    opt.zero_grad(set_to_none=True)
    assert sum(method.allocation().values()) == ranks_before + 3
    method.model.eval()
    with torch.no_grad():
        after = method.model(**probe).logits
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5)


def test_rescale_quirk_changes_output_at_growth():
    method = make_method(init_warmup=0, incre_interval=3, rescale_on_growth=True, lora_dropout=0.0)
    opt = make_optimizer(method, lr=5e-2)
    run_steps(method, opt, 3)
    method.model.eval()
    probe = batch(99)
    probe.pop("labels")
    with torch.no_grad():
        before = method.model(**probe).logits
    method.model.train()
    method.model(**batch(3)).loss.backward()
    method.before_optimizer_step(3, opt)
    opt.zero_grad(set_to_none=True)
    method.model.eval()
    with torch.no_grad():
        after = method.model(**probe).logits
    assert (after - before).abs().max() > 1e-5


def test_old_parameters_keep_optimizer_state_across_growth():
    method = make_method(init_warmup=0, incre_interval=3)
    opt = make_optimizer(method)
    run_steps(method, opt, 3)
    tracked = [p for g in opt.param_groups for p in g["params"]]
    snapshot = {id(p): (p, {k: v.clone() for k, v in opt.state[p].items()}) for p in tracked if opt.state[p]}
    n_groups = len(opt.param_groups)
    method.model(**batch(3)).loss.backward()
    method.before_optimizer_step(3, opt)
    assert len(opt.param_groups) == n_groups + 1  # one new group for the round
    now = {id(p) for g in opt.param_groups for p in g["params"]}
    for pid, (p, state) in snapshot.items():
        assert pid in now, "an existing parameter left the optimizer"
        for key, value in state.items():
            torch.testing.assert_close(opt.state[p][key], value)
    new_group = opt.param_groups[-1]
    assert new_group["start_step"] == 3 and all(not opt.state[p] for p in new_group["params"])


# ---------------------------------------------------------------- LR restarts
def test_restart_warmup_learning_rates_follow_schedule():
    total, warmup = 30, 4
    method = make_method(total_steps=total, init_warmup=2, incre_interval=6)
    opt = make_optimizer(method, lr=1e-2)
    schedule = GroupLinearSchedule(warmup_steps=warmup, total_steps=total)
    seen: dict[int, dict[str, float]] = {}

    def record(step):
        seen[step] = {g["name"]: g["lr"] for g in opt.param_groups}

    run_steps(method, opt, 20, schedule=schedule, on_step=record)
    assert seen[0]["main"] == 0.0
    assert seen[2]["main"] == pytest.approx(1e-2 * 2 / 4)
    assert seen[10]["main"] == pytest.approx(1e-2 * (30 - 10) / (30 - 4))
    # growth rounds at 6 and 12: each new group starts at LR 0 and restarts its own warm-up
    assert seen[6]["growth@6"] == 0.0
    assert seen[8]["growth@6"] == pytest.approx(1e-2 * 2 / 4)
    assert seen[12]["growth@6"] == pytest.approx(1e-2 * (30 - 12) / (30 - 6 - 4))
    assert seen[13]["growth@12"] == pytest.approx(1e-2 * 1 / 4)
    assert linear_factor(30, start=6, warmup=4, total=30) == 0.0


def test_full_lr_first_step_quirk():
    method = make_method(init_warmup=0, incre_interval=3, full_lr_first_step=True)
    opt = make_optimizer(method, lr=1e-2)
    schedule = GroupLinearSchedule(warmup_steps=4, total_steps=40)
    seen = {}
    run_steps(method, opt, 5, schedule=schedule, on_step=lambda s: seen.setdefault(s, {g["name"]: g["lr"] for g in opt.param_groups}))
    assert seen[3]["growth@3"] == 1e-2  # the official code's first update at full LR
    assert seen[4]["growth@3"] == pytest.approx(1e-2 * 1 / 4)


# ---------------------------------------------------------------- orthogonal term
def test_orthogonal_regulariser_equals_formula():
    method = make_method(orth_reg_weight=0.3)
    expected = 0.0
    for m in method.modules:
        a = torch.cat(list(m.lora_A), dim=0)
        b = torch.cat(list(m.lora_B), dim=1)
        ia, ib = torch.eye(a.shape[0]), torch.eye(b.shape[1])
        expected += torch.sqrt(((a @ a.T - ia) ** 2).sum()) + torch.sqrt(((b.T @ b - ib) ** 2).sum())
    expected = expected * 0.3 / (2 * len(method.modules))
    assert method.extra_loss().item() == pytest.approx(expected.item(), rel=1e-5)
    assert all(m.reserve_size == 1 for m in method.modules)  # reserves are stacked in


# ---------------------------------------------------------------- export
def test_peft_export_round_trip(tmp_path):
    from peft import PeftModel

    base_dir = tmp_path / "base"
    tiny_bert(seed=3).save_pretrained(base_dir)
    from transformers import BertForSequenceClassification

    cfg = build_run_config({"method": "increlora", "lora_alpha": 8.0, "init_warmup": 1, "incre_interval": 2, "top_h": 4})
    model = BertForSequenceClassification.from_pretrained(base_dir)
    method = IncreLoRAMethod(model, cfg.train, cfg.method, total_steps=20, seed=0)
    opt = make_optimizer(method, lr=3e-2)
    run_steps(method, opt, 12)
    assert method.cleaned_up and len(set(method.allocation().values())) > 1
    method.save(tmp_path / "adapter")
    loaded = PeftModel.from_pretrained(BertForSequenceClassification.from_pretrained(base_dir), tmp_path / "adapter")
    loaded.eval()
    method.model.eval()
    probe = batch(123)
    probe.pop("labels")
    with torch.no_grad():
        ours = method.model(**probe).logits
        theirs = loaded(**probe).logits
    assert (ours - theirs).abs().max().item() <= 1e-4
    ranks = loaded.peft_config["default"].rank_pattern
    assert {k: v for k, v in ranks.items()} == method.allocation()


def test_config_rejects_bad_knobs():
    from increlora.config import ConfigError

    with pytest.raises(ConfigError, match="top_h"):
        build_run_config({"top_h": 0})
    with pytest.raises(ConfigError, match="unknown knob"):
        build_run_config({"nonsense": 1})
    with pytest.raises(ConfigError, match="r: is not a knob"):
        build_run_config({"method": "increlora", "r": 4})
    assert isinstance(build_run_config({"method": "increlora"}).method, IncreLoRAConfig)
    assert isinstance(build_run_config({}).train, TrainConfig)


def test_a_budget_the_schedule_cannot_reach_is_named_before_training():
    from increlora.methods.increlora.adapter import unreachable_budget

    # 12 modules at rank 1, budget 24: 12 ranks to grant, 3 a round from step 4 every 2 steps
    assert make_method(total_steps=40).budget_warning is None
    short = make_method(total_steps=8)  # rounds at 4 and 6 only: at most 6 ranks
    assert "only 2 growth round(s) fit in the run's 8 steps (from step 4, every 2), granting at most 6 of the 12 ranks" in short.budget_warning
    assert short.schedule_info()["budget_warning"] == short.budget_warning
    none = make_method(total_steps=4)
    assert "no growth round fits in the run's 4 steps (the first would be at step 4)" in none.budget_warning
    assert unreachable_budget(none.allocator, 100) is None
