"""``reproduce_official``: each behaviour of the official IncreLoRA code, stated in numbers.

The four behaviours (spec section 4, "behaviours ... a faithful reimplementation must match"): the
transformers-4.4 AdamW, reserves that come into being after step 0's backward pass, a new group's
learning rate (0 at s + 1, 1/w at s + 2), fresh reserves in the last round; plus the quirks the switch
implies and the ``multi_lr=False`` fix.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from increlora.config import ConfigError

from increlora.run_config import build_run_config
from increlora.methods.increlora.layer import RESERVE_LAMBDA
from increlora.methods.increlora.legacy_adamw import LegacyAdamW
from increlora.lr_schedule import GroupLinearSchedule
from increlora.methods.increlora.adapter import IncreLoRAMethod

from test_increlora_method import batch, tiny_bert


def official_method(total_steps: int = 40, **kw) -> IncreLoRAMethod:
    knobs = {"init_warmup": 2, "incre_interval": 2, "top_h": 3, "target_rank": 2.0, "orth_reg_weight": 0.1,
             "reproduce_official": True, **kw}
    cfg = build_run_config({"method": "increlora", "lora_alpha": 8.0, **knobs})
    return IncreLoRAMethod(tiny_bert(), cfg.train, cfg.method, total_steps=total_steps, seed=0)


def optimizer_for(method: IncreLoRAMethod, lr: float = 1e-2, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    groups = method.param_groups(weight_decay)
    for g in groups:
        g["base_lr"] = lr
        g["lr"] = 0.0
    return method.make_optimizer(groups, lr=lr)


def one_step(method, opt, step, schedule, *, record=None):
    """One step in the official order: forward, loss + orth, backward, clip, grow, schedule, update."""
    method.model.train()
    loss = method.model(**batch(step)).loss + (method.extra_loss() or 0.0)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
    method.before_optimizer_step(step, opt)
    schedule.apply(opt, step)
    if record is not None:
        record[step] = {g["name"]: g["lr"] for g in opt.param_groups}
    opt.step()
    opt.zero_grad(set_to_none=True)


# ---------------------------------------------------------------- 1. the optimizer
def test_legacy_adamw_is_the_transformers_4_4_update_in_closed_form():
    lr, wd, eps, b1, b2 = 0.1, 0.05, 1e-8, 0.9, 0.999
    grads = [0.3, -1e-7, 2.0]
    p = nn.Parameter(torch.tensor([1.5], dtype=torch.float64))
    opt = LegacyAdamW([p], lr=lr, weight_decay=wd, eps=eps)
    value, m, v = 1.5, 0.0, 0.0
    for t, g in enumerate(grads, start=1):
        p.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        step_size = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        value = value - step_size * m / (math.sqrt(v) + eps)  # eps before bias correction
        value = value - lr * wd * value  # decay after the update, on the updated value
        assert p.item() == pytest.approx(value, rel=1e-12, abs=0)
    assert opt.state[p]["step"] == 3


def test_legacy_adamw_keeps_each_parameters_own_step_count():
    """Parameters of one group at different step counts (one skipped a step) each follow the closed form."""
    lr, b1, b2, eps = 0.05, 0.9, 0.999, 1e-8
    p, q = (nn.Parameter(torch.tensor([v], dtype=torch.float64)) for v in (1.0, -2.0))
    opt = LegacyAdamW([p, q], lr=lr)
    expected = {"p": [1.0, 0.0, 0.0, 0], "q": [-2.0, 0.0, 0.0, 0]}
    plan = [{"p": 0.5, "q": None}, {"p": -0.2, "q": 0.7}, {"p": 0.1, "q": 0.3}]
    for grads in plan:
        for name, param in (("p", p), ("q", q)):
            g = grads[name]
            param.grad = None if g is None else torch.tensor([g], dtype=torch.float64)
        opt.step()
        for name, g in grads.items():
            if g is None:
                continue
            e = expected[name]
            e[3] += 1
            e[1] = b1 * e[1] + (1 - b1) * g
            e[2] = b2 * e[2] + (1 - b2) * g * g
            e[0] -= lr * math.sqrt(1 - b2 ** e[3]) / (1 - b1 ** e[3]) * e[1] / (math.sqrt(e[2]) + eps)
    assert p.item() == pytest.approx(expected["p"][0], rel=1e-12) and q.item() == pytest.approx(expected["q"][0], rel=1e-12)
    assert (opt.state[p]["step"], opt.state[q]["step"]) == (3, 2)


def test_official_clean_up_condition_in_parameter_budgets():
    """Official top-k under a parameter budget: clean-up when nothing more fits and nothing overshot."""
    from increlora.methods.increlora.allocator import Allocator, GrowthPlan

    exact = Allocator(GrowthPlan(0, 1, top_h=2, n_add=1, budget=10, official_topk=True), [3, 4], [1, 1])
    exact.apply(1, exact.select([1.0, 2.0]))  # both: 3 + 4 + 3 + 4 = 14 > 10
    assert exact.remaining() < 0 and not exact.exact()
    fits = Allocator(GrowthPlan(0, 1, top_h=1, n_add=1, budget=12, official_topk=True), [3, 4], [1, 1])
    fits.apply(1, fits.select([1.0, 2.0]))  # 3 + 8 = 11: 1 left, less than any rank costs
    assert fits.remaining() == 1 and fits.finished() and fits.exact()


def test_legacy_adamw_differs_from_torch_adamw_where_gradients_are_tiny():
    """On a gradient of 1e-7 (a lambda's, early on) epsilon's place changes the first step by ~10 %."""
    a = nn.Parameter(torch.tensor([0.0], dtype=torch.float64))
    b = nn.Parameter(torch.tensor([0.0], dtype=torch.float64))
    legacy, plain = LegacyAdamW([a], lr=1.0), torch.optim.AdamW([b], lr=1.0, eps=1e-8, weight_decay=0.0)
    for p in (a, b):
        p.grad = torch.tensor([1e-7], dtype=torch.float64)
    legacy.step()
    plain.step()
    # legacy: sqrt(1-b2) * 0.1g / (sqrt(0.001) g + 1e-8) / 0.1; torch: 0.1g/0.1 / (g + 1e-8)
    assert a.item() == pytest.approx(-math.sqrt(1e-3) * 1e-7 / (math.sqrt(1e-3) * 1e-7 + 1e-8), rel=1e-9)
    assert b.item() == pytest.approx(-1e-7 / (1e-7 + 1e-8), rel=1e-9)
    assert abs(a.item() - b.item()) / abs(b.item()) > 0.1


def test_legacy_adamw_skips_a_parameter_without_gradient():
    p = nn.Parameter(torch.ones(2))
    opt = LegacyAdamW([p], lr=0.1, weight_decay=0.5)
    opt.step()
    assert torch.equal(p.detach(), torch.ones(2)) and not opt.state[p]


def test_official_mode_steps_with_the_legacy_optimizer_and_the_default_with_torchs():
    assert isinstance(optimizer_for(official_method()), LegacyAdamW)
    cfg = build_run_config({"method": "increlora", "reproduce_official": False})
    default = IncreLoRAMethod(tiny_bert(), cfg.train, cfg.method, total_steps=20, seed=0)
    assert type(optimizer_for(default)) is torch.optim.AdamW


# ---------------------------------------------------------------- 2. the first reserves
def test_first_reserves_come_into_being_after_step_0s_backward():
    method = official_method(total_steps=40)
    opt = optimizer_for(method)
    assert all(not m.has_reserve for m in method.modules)  # not in step 0's forward or orthogonal term
    assert all(g["name"] != "reserves@0" for g in opt.param_groups)  # nor in its clipping
    schedule = GroupLinearSchedule(warmup_steps=4, total_steps=40)
    record: dict[int, dict[str, float]] = {}
    one_step(method, opt, 0, schedule, record=record)
    assert all(m.reserve_size == 1 for m in method.modules)
    group = next(g for g in opt.param_groups if g["name"] == "reserves@0")
    assert group["start_step"] == 1 and record[0]["reserves@0"] == 0.0
    # no gradient at step 0: AdamW skipped them (no state), values as drawn
    assert all(not opt.state[p] for p in group["params"])
    snapshot = [p.detach().clone() for p in group["params"]]
    one_step(method, opt, 1, schedule, record=record)  # gradient now, but LR 0 at s + 1
    assert record[1]["reserves@0"] == 0.0 and all(opt.state[p]["step"] == 1 for p in group["params"])
    assert all(torch.equal(p.detach(), s) for p, s in zip(group["params"], snapshot))
    one_step(method, opt, 2, schedule, record=record)  # 1/w of the peak at s + 2: they move
    assert record[2]["reserves@0"] == pytest.approx(1e-2 / 4)
    assert any(not torch.equal(p.detach(), s) for p, s in zip(group["params"], snapshot))
    for m in method.modules:
        assert m.lora_E[m.n_active].item() == pytest.approx(RESERVE_LAMBDA) and not m.lora_E[m.n_active].requires_grad


def test_default_mode_keeps_its_reserves_from_the_start():
    cfg = build_run_config({"method": "increlora", "init_warmup": 2, "incre_interval": 2, "reproduce_official": False})
    method = IncreLoRAMethod(tiny_bert(), cfg.train, cfg.method, total_steps=20, seed=0)
    assert all(m.reserve_size == 1 for m in method.modules)
    assert any(g["name"] == "reserves@0" and g["start_step"] == 0 for g in method.param_groups(0.0))


def test_late_reserves_are_drawn_as_the_default_modes_are():
    """Same generator, same order: the official reserves have the default mode's initial values."""
    official = official_method()
    cfg = build_run_config({"method": "increlora", "lora_alpha": 8.0, "init_warmup": 2, "incre_interval": 2,
                            "top_h": 3, "target_rank": 2.0, "reproduce_official": False})
    default = IncreLoRAMethod(tiny_bert(), cfg.train, cfg.method, total_steps=40, seed=0)
    opt = optimizer_for(official)
    official.model(**batch(0)).loss.backward()
    official.before_optimizer_step(0, opt)
    for mo, md in zip(official.modules, default.modules):
        assert torch.equal(mo.lora_A[1], md.lora_A[1]) and torch.equal(mo.lora_B[1], md.lora_B[1])


# ---------------------------------------------------------------- 3. a new group's learning rate
def test_a_new_groups_lr_is_0_at_s_plus_1_then_one_over_w_then_decays_over_t_minus_s_minus_1_minus_w():
    total, warmup, lr = 30, 4, 1e-2
    method = official_method(total_steps=total, init_warmup=2, incre_interval=6)
    opt = optimizer_for(method, lr=lr)
    schedule = GroupLinearSchedule(warmup_steps=warmup, total_steps=total)
    record: dict[int, dict[str, float]] = {}
    for step in range(20):
        one_step(method, opt, step, schedule, record=record)
    s = 6
    assert record[s]["growth@6"] == 0.0
    assert record[s + 1]["growth@6"] == 0.0
    assert record[s + 2]["growth@6"] == pytest.approx(lr / warmup)
    t = 15  # decay: (T - t) / (T - s - 1 - w)
    assert record[t]["growth@6"] == pytest.approx(lr * (total - t) / (total - s - 1 - warmup))
    assert record[t]["main"] == pytest.approx(lr * (total - t) / (total - warmup))  # main groups as before
    assert next(g for g in opt.param_groups if g["name"] == "growth@6")["start_step"] == s + 1


# ---------------------------------------------------------------- 4. the last round
def test_the_last_round_appends_fresh_reserves_that_stay_in_the_orthogonal_term():
    method = official_method(total_steps=40)  # budget 24 ranks, 12 initial, 3 a round: rounds 4, 6, 8, 10
    opt = optimizer_for(method)
    schedule = GroupLinearSchedule(warmup_steps=4, total_steps=40)
    for step in range(12):
        one_step(method, opt, step, schedule)
    assert [h["step"] for h in method.allocator.history] == [4, 6, 8, 10]
    assert method.cleaned_up and sum(method.allocation().values()) == 24
    last = {method.names.index(e["module"]) for e in method.events if e["step"] == 10}
    assert len(last) == 3
    in_optimizer = {id(p) for g in opt.param_groups for p in g["params"]}
    for k in last:
        m = method.modules[k]
        assert m.reserve_size == 1  # appended in the last round, not skipped
        assert m.lora_E[m.n_active].item() == 0.0  # switched off by the clean-up
        assert id(m.lora_A[m.n_active]) in in_optimizer and m.lora_A[m.n_active].requires_grad
    expected = 0.0
    for m in method.modules:  # the orthogonal term still stacks every reserve in
        a, b = torch.cat(list(m.lora_A), 0), torch.cat(list(m.lora_B), 1)
        expected += torch.linalg.matrix_norm(a @ a.T - torch.eye(a.shape[0])) + torch.linalg.matrix_norm(b.T @ b - torch.eye(b.shape[1]))
    assert method.extra_loss().item() == pytest.approx((expected * 0.1 / (2 * len(method.modules))).item(), rel=1e-5)


def test_default_mode_skips_the_last_rounds_reserves_and_drops_them():
    cfg = build_run_config({"method": "increlora", "lora_alpha": 8.0, "init_warmup": 2, "incre_interval": 2,
                            "top_h": 3, "target_rank": 2.0, "reproduce_official": False})
    method = IncreLoRAMethod(tiny_bert(), cfg.train, cfg.method, total_steps=40, seed=0)
    opt = optimizer_for(method)
    schedule = GroupLinearSchedule(warmup_steps=4, total_steps=40)
    for step in range(12):
        one_step(method, opt, step, schedule)
    assert method.cleaned_up and all(not m.has_reserve for m in method.modules)


def test_official_overshoot_keeps_the_reserves_on_and_skips_the_clean_up():
    """Budget 26 total rank, n_add 2, top_h 3: 12 -> 18 -> 24 -> 28 (k = min(3, 2 remaining) = 2 modules)."""
    method = official_method(total_steps=40, target_total_rank=26, n_add=2)
    opt = optimizer_for(method)
    schedule = GroupLinearSchedule(warmup_steps=4, total_steps=40)
    for step in range(12):
        one_step(method, opt, step, schedule)
    assert sum(method.allocation().values()) == 28 and not method.growing and not method.cleaned_up
    assert all(torch.allclose(m.lora_E[m.n_active], torch.full((2, 1), RESERVE_LAMBDA)) for m in method.modules)


# ---------------------------------------------------------------- the switch and the quirks it implies
def test_reproduce_official_implies_the_official_quirks():
    cfg = build_run_config({"method": "increlora", "reproduce_official": True}).method
    b = cfg.behaviour()
    assert b.official_topk and b.rescale_on_growth and b.keep_reserves_after_cleanup
    assert b.legacy_adamw and b.reserves_after_first_backward and b.new_group_lr_from_next_step and b.reserves_in_last_round
    assert not b.full_lr_first_step and cfg.multi_lr
    variant = build_run_config({"method": "increlora", "reproduce_official": False}).method.behaviour()
    assert not any(vars(variant).values())
    with pytest.raises(ConfigError, match="full_lr_first_step"):
        build_run_config({"method": "increlora", "reproduce_official": True, "full_lr_first_step": True})


def test_official_growth_shrinks_existing_updates_by_r_over_r_plus_n_add():
    method = official_method(init_warmup=0, incre_interval=3)
    opt = optimizer_for(method, lr=5e-2)
    schedule = GroupLinearSchedule(warmup_steps=1, total_steps=40)
    for step in range(3):
        one_step(method, opt, step, schedule)
    before = [m.delta_weight(with_reserve=False).detach().clone() for m in method.modules]
    method.model(**batch(3)).loss.backward()
    method.before_optimizer_step(3, opt)
    grown = {method.names.index(e["module"]) for e in method.events}
    for k, m in enumerate(method.modules):
        if k in grown:  # rank 1 -> 2: the old component's update is halved (the new one starts at lambda 1e-5)
            old_part = m.lora_B[0] @ (m.lora_A[0] * m.lora_E[0]) * m.scale
            torch.testing.assert_close(old_part, before[k] * (1 + 1e-5) / (2 + 1e-5), rtol=1e-5, atol=1e-9)


# ---------------------------------------------------------------- the multi_lr=False fix
@pytest.mark.parametrize("official", [False, True])
def test_without_multi_lr_every_added_group_keeps_the_full_lr_for_the_whole_run(official):
    total, warmup, lr = 30, 4, 1e-2
    knobs = {"init_warmup": 2, "incre_interval": 6, "multi_lr": False}
    if official:
        method = official_method(total_steps=total, **knobs)
    else:
        cfg = build_run_config({"method": "increlora", "lora_alpha": 8.0, "top_h": 3, "target_rank": 2.0,
                                "reproduce_official": False, **knobs})
        method = IncreLoRAMethod(tiny_bert(), cfg.train, cfg.method, total_steps=total, seed=0)
    opt = optimizer_for(method, lr=lr)
    schedule = GroupLinearSchedule(warmup_steps=warmup, total_steps=total, constant_new_groups=method.constant_lr_new_groups)
    record: dict[int, dict[str, float]] = {}
    for step in range(total):
        one_step(method, opt, step, schedule, record=record)
    first = 1 if official else 0
    assert all(record[t]["reserves@0"] == lr for t in range(first, total))
    assert all(record[t]["growth@6"] == lr for t in range(7, total))
    assert record[0]["main"] == 0.0 and record[2]["main"] == pytest.approx(lr * 2 / warmup)
    assert record[20]["main"] == pytest.approx(lr * (total - 20) / (total - warmup))


def test_reproduce_official_trains_end_to_end_and_is_recorded(tiny_model_dir, glue_dir):
    from increlora.trainer import train

    cfg = build_run_config({"task": "cola", "model": tiny_model_dir, "data_dir": str(glue_dir), "train_samples": 64,
                            "eval_samples": 32, "max_steps": 8, "batch_size": 16, "max_length": 32, "progress": False,
                            "method": "increlora", "init_warmup": 1, "incre_interval": 2, "top_h": 12,
                            "reproduce_official": True, "weight_decay": 0.01})
    result = train(cfg)
    assert result.steps == 8 and math.isfinite(result.glue_score)
    assert result.schedule["reproduce_official"] is True and result.config["reproduce_official"] is True
    assert sum(result.allocation.values()) == 24 and result.schedule["cleaned_up"]  # 12 modules at rank 2


def test_a_preset_carries_the_official_switch_into_a_run(tmp_path):
    from increlora.presets import Preset, load_preset, preset_overrides, save_preset

    path = save_preset(Preset(preset_version=1, method="increlora", task="cola", name="official",
                              config={"reproduce_official": True, "top_h": 4}, provenance={}), tmp_path / "p.yaml")
    cfg = build_run_config({"method": "increlora", **preset_overrides(load_preset(path))})
    assert cfg.method.reproduce_official and cfg.method.behaviour().legacy_adamw
