"""transformers.Trainer support (increlora.hf_trainer) on a tiny random BERT, CPU, dropout 0.

Each comparison runs under the same conditions on both sides (same initial weights, same adapter
seed, the same batches in the same order, same knobs, optimizer and LR schedule), so it can fail.
"""

from __future__ import annotations

import os

import pytest
import torch

from increlora import IncreLoRAConfig, IncreLoRATrainer, attach
from increlora.methods.increlora.layer import SVDLinear
from increlora.lr_schedule import GroupLinearSchedule
from increlora.trainer import train_step

from test_increlora_method import tiny_bert

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LR = 1e-2
WARMUP = 2
N_ROWS = 64
LENGTH = 12


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny matrices: one thread is fastest (and steadiest next to other jobs on a small machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def knobs(**kw) -> IncreLoRAConfig:
    return IncreLoRAConfig(**{"init_warmup": 2, "incre_interval": 2, "top_h": 3, "target_rank": 2.0, **kw})


class Rows(torch.utils.data.Dataset):
    """Synthetic sequence classification: the label says whether token 7 occurs in the row."""

    def __init__(self, n: int = N_ROWS, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, 100, (n, LENGTH), generator=g)
        self.labels = (self.ids == 7).any(dim=1).long() | (self.ids[:, 0] > 50).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(LENGTH, dtype=torch.long), "labels": self.labels[i]}


class LRRecorder:
    """A Trainer callback that keeps every step's learning rates, as the optimizer step used them."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        outer = self
        self.lrs: list[list[float]] = []

        self.logs: list[dict] = []

        class _CB(TrainerCallback):
            def on_optimizer_step(self, args, state, control, optimizer=None, **kw):
                outer.lrs.append([g["lr"] for g in optimizer.param_groups])

            def on_log(self, args, state, control, logs=None, **kw):  # what TensorBoard, W&B, MLflow... receive
                outer.logs.append(dict(logs))

        self.callback = _CB()


class Recorder:
    """A data collator that keeps every batch it hands to the Trainer, in order."""

    def __init__(self) -> None:
        self.batches: list[dict[str, torch.Tensor]] = []

    def __call__(self, features: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        batch = {k: torch.stack([f[k] for f in features]) for k in features[0]}
        self.batches.append({k: v.clone() for k, v in batch.items()})
        return batch


def training_args(out, *, steps: int, batch: int = 8, accumulation: int = 1, **kw):
    from transformers import TrainingArguments

    settings = dict(
        output_dir=str(out), per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
        max_steps=steps, learning_rate=LR, warmup_steps=WARMUP, weight_decay=0.0, max_grad_norm=1.0,
        lr_scheduler_type="linear", optim="adamw_torch", logging_strategy="no", save_strategy="no", report_to="none",
        use_cpu=True, seed=0, disable_tqdm=True, dataloader_num_workers=0)
    return TrainingArguments(**{**settings, **kw})


def run_trainer(out, *, steps: int, cfg: IncreLoRAConfig, batch: int = 8, accumulation: int = 1, dataset=None,
                resume=None, loss_is_scaled_for_ga=None, **kw):
    handle = attach(tiny_bert(seed=0), cfg, total_steps=steps, lora_alpha=8.0, learning_rate=LR, seed=0)
    recorder, lrs = Recorder(), LRRecorder()
    trainer = IncreLoRATrainer(method=handle, args=training_args(out, steps=steps, batch=batch, accumulation=accumulation, **kw),
                               train_dataset=dataset if dataset is not None else Rows(), data_collator=recorder,
                               callbacks=[lrs.callback])
    trainer.loss_is_scaled_for_ga = loss_is_scaled_for_ga
    trainer.train(resume_from_checkpoint=resume)
    recorder.lrs, recorder.logs = lrs.lrs, lrs.logs
    return handle, trainer, recorder


def run_own_loop(batches, *, steps: int, cfg: IncreLoRAConfig):
    """The project's own loop (increlora.trainer.train_step), set up as increlora.trainer.train sets it up."""
    handle = attach(tiny_bert(seed=0), cfg, total_steps=steps, lora_alpha=8.0, learning_rate=LR, seed=0)
    groups = handle.param_groups(0.0)
    for g in groups:
        g.setdefault("base_lr", LR)
        g["lr"] = 0.0
    optimizer = handle.make_optimizer(groups, lr=LR)
    schedule = GroupLinearSchedule(warmup_steps=WARMUP, total_steps=steps, constant_new_groups=handle.constant_lr_new_groups)
    handle.model.train()
    lrs = []
    for step, batch in enumerate(batches[:steps]):
        train_step(handle, optimizer, schedule, batch, step, max_grad_norm=1.0, device=torch.device("cpu"), precision="fp32")
        lrs.append([g["lr"] for g in optimizer.param_groups])
    return handle, lrs


def own_optimizer_type(extra: dict) -> type:
    from increlora.methods.increlora.legacy_adamw import LegacyAdamW

    return LegacyAdamW if extra.get("reproduce_official", True) else torch.optim.AdamW  # official mode is the default


def rounds(handle) -> list[tuple[int, list[str]]]:
    """Every growth round: its step and the modules it grew, by name."""
    return [(h["step"], [handle.names[k] for k, _ in h["picks"]]) for h in handle.allocator.history]


def max_param_diff(a, b) -> float:
    pa, pb = dict(a.model.named_parameters()), dict(b.model.named_parameters())
    assert pa.keys() == pb.keys()
    return max(float((pa[n].detach() - pb[n].detach()).abs().max()) for n in pa)


# ---------------------------------------------------------------- score accumulation (layer)
def test_accumulated_score_equals_the_full_batch_score():
    torch.manual_seed(0)
    base = torch.nn.Linear(12, 10)
    layer = SVDLinear(base, init_rank=2, alpha=4.0, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        layer.lora_E[0].fill_(0.5)
    layer.score_dtype = None  # fp32 product: the two ways differ only by float summation order
    layer.score_enabled = True
    layer.train()
    x, target = torch.randn(16, 12), torch.randn(16, 10)
    ((layer(x) - target) ** 2).mean().backward()
    full = layer.last_score.item()
    layer.zero_grad()
    layer.score_accumulate = True
    for part in (slice(0, 8), slice(8, 16)):
        (((layer(x[part]) - target[part]) ** 2).mean() / 2).backward()
    assert layer.last_score.item() == full  # untouched while accumulating
    layer.finalize_score()
    assert layer.last_score.item() == pytest.approx(full, rel=1e-5)
    assert layer._score_grad is None


# ---------------------------------------------------------------- Trainer vs the project's loop
@pytest.mark.parametrize("extra", [{}, {"reproduce_official": False}, {"multi_lr": False},
                                   {"reproduce_official": False, "multi_lr": False}],
                         ids=["defaults_official", "variant", "no_multi_lr", "variant_no_multi_lr"])
def test_trainer_grows_as_the_own_loop(tmp_path, extra):
    steps = 24
    handle, trainer, recorder = run_trainer(tmp_path, steps=steps, cfg=knobs(**extra))
    assert len(recorder.batches) == steps
    own, own_lrs = run_own_loop(recorder.batches, steps=steps, cfg=knobs(**extra))
    assert len(own.allocator.history) >= 3  # several rounds, growth to the budget
    assert rounds(handle) == rounds(own)
    assert handle.allocation() == own.allocation()
    assert sum(handle.allocation().values()) >= 24
    inner = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # accelerate wraps it
    assert type(inner) is own_optimizer_type(extra)
    assert len(recorder.lrs) == steps
    assert recorder.lrs == own_lrs  # every group's LR at every step, restart warm-ups included
    assert len(trainer.optimizer.param_groups) > 3  # growth added groups
    logged = [e for e in recorder.logs if "increlora/total_rank" in e]
    totals = [12] + [12 + sum(g for h in own.allocator.history[: i + 1] for _, g in h["picks"])
                     for i in range(len(own.allocator.history))]
    assert [e["increlora/total_rank"] for e in logged] == totals  # the start and every growth round
    assert logged[-1]["increlora/rank/L01.f2"] == handle.allocation()["bert.encoder.layer.1.output.dense"]
    diff = max_param_diff(handle, own)
    print(f"max |param difference| Trainer vs own loop after {steps} steps ({extra}): {diff:.3g}")
    assert diff < 1e-5


# ---------------------------------------------------------------- gradient accumulation
def test_batch_32_grows_as_16_times_2_accumulated(tmp_path):
    """The score comes from the accumulated gradient: 16 x 2 makes batch 32's growth decisions, in official mode
    (the default) and in the variant. The checks below run the variant: its torch AdamW is scale-invariant, so a
    doubled loss must not change a decision (the official AdamW adds eps before bias correction, which is not)."""
    rows, steps = Rows(128), 12
    official_full, _, _ = run_trainer(tmp_path / "o32", steps=steps, cfg=knobs(), batch=32, dataset=rows)
    official_acc, _, _ = run_trainer(tmp_path / "o16x2", steps=steps, cfg=knobs(), batch=16, accumulation=2, dataset=rows,
                                     loss_is_scaled_for_ga=False)
    assert len(official_full.allocator.history) == 4 and rounds(official_acc) == rounds(official_full)
    assert max_param_diff(official_acc, official_full) < 1e-6
    variant = knobs(reproduce_official=False)
    full, _, rec_full = run_trainer(tmp_path / "b32", steps=steps, cfg=variant, batch=32, dataset=rows)
    # BERT's classification loss is a per-batch mean: the Trainer must divide it by the accumulation steps
    acc, _, rec_acc = run_trainer(tmp_path / "b16x2", steps=steps, cfg=variant, batch=16, accumulation=2, dataset=rows,
                                  loss_is_scaled_for_ga=False)
    for i, batch in enumerate(rec_full.batches):  # the same rows, split in two
        assert torch.equal(batch["input_ids"], torch.cat([rec_acc.batches[2 * i]["input_ids"], rec_acc.batches[2 * i + 1]["input_ids"]]))
    assert len(full.allocator.history) == 4
    assert rounds(acc) == rounds(full)
    assert acc.allocation() == full.allocation()
    # the scores agree to the rounding of the bf16 / fp32 products of g^T x (two products summed vs one)
    rel = float((acc.ema.sensitivity - full.ema.sensitivity).abs().max() / full.ema.sensitivity.abs().max())
    print(f"score EMA max relative difference, 32 vs 16x2: {rel:.2g}; max |param difference| {max_param_diff(acc, full):.2g}")
    assert rel < 1e-3
    assert max_param_diff(acc, full) < 1e-6

    # transformers' own default for a model that takes loss kwargs: the loss is not divided (the gradient doubles);
    # scores scale uniformly, so the decisions are still batch 32's
    doubled, _, _ = run_trainer(tmp_path / "b16x2-default", steps=steps, cfg=variant, batch=16, accumulation=2, dataset=rows)
    assert rounds(doubled) == rounds(full)

    # control: scoring only the last micro-batch (no accumulation) changes a decision here, so the comparison can fail
    from increlora.hf_trainer import IncreLoRACallback

    begin = IncreLoRACallback.on_train_begin

    def last_micro_batch_only(self, *args, **kw):
        begin(self, *args, **kw)
        self.method.accumulate_scores = False

    IncreLoRACallback.on_train_begin = last_micro_batch_only
    try:
        last, _, _ = run_trainer(tmp_path / "b16x2-last", steps=steps, cfg=variant, batch=16, accumulation=2, dataset=rows,
                                 loss_is_scaled_for_ga=False)
    finally:
        IncreLoRACallback.on_train_begin = begin
    assert rounds(last) != rounds(full)


# ---------------------------------------------------------------- checkpoints and resume
@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """24 steps, a checkpoint every 7 (mid-growth at 7: rounds at 4 and 6 done; after clean-up at 14)."""
    out = tmp_path_factory.mktemp("uninterrupted")
    handle, trainer, recorder = run_trainer(out, steps=24, cfg=knobs(), save_strategy="steps", save_steps=7)
    return out, handle, trainer, recorder


def test_checkpoints_hold_a_peft_adapter_and_the_increlora_state(uninterrupted):
    import json

    out, handle, trainer, _ = uninterrupted
    ckpt = out / "checkpoint-7"
    state = torch.load(ckpt / "increlora_state.pt", weights_only=True)
    assert [h["step"] for h in state["allocator"]["history"]] == [4, 6]
    assert state["growing"] is True
    # before clean-up the exported adapter holds the reserves too (lambda = 1e-5: part of the trained function)
    config = json.loads((ckpt / "increlora_adapter" / "adapter_config.json").read_text())
    stored = {name: sum(c[0] for c in m["chunks"]) for name, m in zip(state["names"], state["modules"])}
    assert config["rank_pattern"] == stored
    assert all(r > a for r, a in zip(stored.values(), state["allocator"]["ranks"]))
    later = torch.load(out / "checkpoint-14" / "increlora_state.pt", weights_only=True)
    assert later["growing"] is False and later["cleaned_up"] is True
    config = json.loads((out / "checkpoint-14" / "increlora_adapter" / "adapter_config.json").read_text())
    assert config["rank_pattern"] == handle.allocation()  # growth ended at step 10: the final allocation
    logged = [e for e in trainer.state.log_history if "increlora/total_rank" in e]  # also in trainer_state.json
    assert [e["increlora/total_rank"] for e in logged] == [12, 15, 18, 21, 24]
    assert logged[-1]["increlora/rank/L00.q"] == handle.allocation()["bert.encoder.layer.0.attention.self.query"]


@pytest.mark.parametrize("at", [7, 14])
def test_resume_continues_as_the_uninterrupted_run(uninterrupted, tmp_path, at):
    import shutil

    out, handle, _, recorder = uninterrupted
    resumed_out = tmp_path / "resumed"
    shutil.copytree(out / f"checkpoint-{at}", resumed_out / f"checkpoint-{at}")
    resumed, _, rec = run_trainer(resumed_out, steps=24, cfg=knobs(), save_strategy="steps", save_steps=7,
                                  resume=str(resumed_out / f"checkpoint-{at}"))
    assert [b["input_ids"].tolist() for b in rec.batches] == [b["input_ids"].tolist() for b in recorder.batches[at:]]
    assert rounds(resumed) == rounds(handle)
    assert resumed.allocation() == handle.allocation()
    assert torch.equal(resumed.ema.sensitivity, handle.ema.sensitivity)
    assert rec.lrs == recorder.lrs[at:]
    diff = max_param_diff(resumed, handle)
    print(f"max |param difference| resumed at {at} vs uninterrupted: {diff:.3g}")
    assert diff == 0.0


def test_resume_without_increlora_state_is_a_clear_error(uninterrupted, tmp_path):
    import shutil

    out = uninterrupted[0]
    ckpt = tmp_path / "checkpoint-7"
    shutil.copytree(out / "checkpoint-7", ckpt)
    (ckpt / "increlora_state.pt").unlink()
    with pytest.raises(FileNotFoundError, match="no IncreLoRA state"):
        run_trainer(tmp_path, steps=24, cfg=knobs(), resume=str(ckpt))


# ---------------------------------------------------------------- a Trainer of one's own
def test_own_trainer_subclass_with_the_callback(tmp_path):
    """A plain Trainer (its own optimizer groups and LambdaLR schedule) plus the callback and add_extra_loss:
    the new groups are adopted into the LambdaLR with their own restart warm-up; same run as the project's loop."""
    from transformers import Trainer

    from increlora.hf_trainer import IncreLoRACallback, add_extra_loss

    steps = 24
    # a Trainer of your own steps with its own optimizer (torch's AdamW): what it can reproduce is the variant;
    # official mode's AdamW comes with IncreLoRATrainer (test_trainer_grows_as_the_own_loop)
    variant = knobs(reproduce_official=False)
    handle = attach(tiny_bert(seed=0), variant, total_steps=steps, lora_alpha=8.0, learning_rate=LR, seed=0)

    class MyTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = super().compute_loss(model, inputs, num_items_in_batch=num_items_in_batch)
            return add_extra_loss(self, handle, loss, num_items_in_batch) if model.training else loss

    recorder, lrs = Recorder(), LRRecorder()
    trainer = MyTrainer(model=handle.model, args=training_args(tmp_path, steps=steps), train_dataset=Rows(),
                        data_collator=recorder, callbacks=[lrs.callback])
    callback = IncreLoRACallback(handle, trainer=trainer)
    trainer.callback_handler.callbacks.insert(len(trainer.callback_handler.callbacks) - 1, callback)  # before the recorder
    trainer.train()
    own, own_lrs = run_own_loop(recorder.batches, steps=steps, cfg=variant)
    assert rounds(handle) == rounds(own) and handle.allocation() == own.allocation()
    assert len(trainer.lr_scheduler.lr_lambdas) == len(trainer.optimizer.param_groups) > 2
    # the Trainer's two groups follow its LambdaLR; each added group its own warm-up from the step it was added
    added = [g for g in trainer.optimizer.param_groups if g.get("added")]
    assert added and all(g["start_step"] > 0 for g in added)
    assert [step_lrs[:2] for step_lrs in lrs.lrs] == [[row[0], row[0]] for row in own_lrs]
    # the groups growth added (own loop: main, main-nodecay, reserves@0, then those), at every step
    assert [step_lrs[2:] for step_lrs in lrs.lrs] == [row[3:] for row in own_lrs]
    diff = max_param_diff(handle, own)
    print(f"max |param difference| own Trainer subclass vs own loop: {diff:.3g}")
    assert diff < 1e-6


def test_lora_and_adalora_run_under_the_trainer(tmp_path):
    from increlora import IncreLoRATrainer

    for method, cfg in (("lora", {"r": 2}), ("adalora", {"init_r": 3, "target_r": 1.0, "tinit": 2, "tfinal": 2, "delta_t": 1})):
        handle = attach(tiny_bert(seed=0), cfg, method=method, total_steps=8, seed=0)
        trainer = IncreLoRATrainer(method=handle, args=training_args(tmp_path / method, steps=8), train_dataset=Rows(),
                                   data_collator=Recorder())
        trainer.train()
        assert trainer.state.global_step == 8
        if method == "adalora":  # peft's allocator ran after each optimizer step: the budget came down to rank 1 on average
            assert sum(handle.allocation().values()) == len(handle.allocation())
