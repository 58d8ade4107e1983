"""Single training runs for the evidence benchmarks (fidelity, regime): knobs, cache, execution.

A run is one ``increlora.trainer.train`` call. Its knobs come from the ``cpu`` profile, a *trial size*
(training rows, epochs or steps, batch, sequence length), a learning rate, a budget made equal across
methods (:func:`method_knobs`) and a seed. Every finished run is one small JSON file
``<results>/runs/<task>-<label>-r<budget>-s<seed>-<hash>.json`` whose hash is taken over the knobs
that change the result, so runs of different sizes or learning rates live side by side, a re-run
skips what is cached, and a fresh clone reprints the tables from the committed files.

Runs execute in-process (``--workers 1``) or in worker processes with one thread each
(``--workers 2`` gets more out of 2 cores than one two-thread run); workers start niced
(``--nice``, default 19) so that tests and searches keep the CPU when they need it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from _common import read_json, say, write_json

from increlora.budget import lora_params, uniform_rank_cost
from increlora.config import RUNTIME, knobs_with_role

VERSION = 2
# Revisions of a method's implementation that change its numbers at float level (same maths, other
# rounding): part of a run's signature, so a cached run is reused only with the code it was made with.
# increlora "2": the score's dense product in bf16 on bf16-native hardware, the adapter added by addmm
# (2026-12-02); runs of revision 1 are in runs-superseded/.
IMPLEMENTATION = {"increlora": "2"}
# The learning-rate grid every method's rate is chosen from, on held-out training rows (fidelity.py):
# 1e-4 ... 1e-2 since 2026-12-06 (issue #22: the SVD-form methods chose the old grid's top, 3e-3, on every task).
LR_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 5e-3, 1e-2)
# The grid of the first learning-rate choice (2026-12-02), which the regime table's sizes were judged with.
LR_GRID_V1 = (3e-4, 1e-3, 3e-3)
# Full GLUE training-set sizes (spec section 2.3): the paper's run length T = ceil(N / 32) * epochs.
PAPER_TRAIN_SIZE = {"cola": 8551, "sst2": 67349, "mrpc": 3668, "qqp": 363846, "stsb": 5749, "mnli": 392702,
                    "qnli": 104743, "rte": 2490, "wnli": 635}
PAPER_BATCH = 32
# Knobs that do not change a run's result (and the model's path, which differs between machines):
# left out of its signature.
RUNTIME_KNOBS = knobs_with_role(RUNTIME) | {"model"}
# Knobs a preset may bring into a run (IncreLoRA's own knobs); the budget, data, run length, learning
# rate and targets stay the benchmark's so that runs are comparable.
PRESET_EXCLUDE = {"target_rank", "target_total_rank", "budget_params"}


@dataclass(frozen=True)
class Size:
    """A trial size: training rows, run length, batch and sequence length (None = the profile's)."""

    train_samples: Optional[int]
    epochs: float = 3.0
    max_steps: Optional[int] = None
    batch_size: int = 32
    max_length: Optional[int] = None

    def label(self) -> str:
        rows = "all" if self.train_samples is None else f"{self.train_samples}"
        length = f"{self.max_steps} steps" if self.max_steps else f"{self.epochs:g} ep"
        extra = f", len {self.max_length}" if self.max_length else ""
        return f"{rows} rows, {length}, batch {self.batch_size}{extra}"

    def knobs(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if v is not None}
        out.setdefault("max_steps", None)
        return out

    @classmethod
    def parse(cls, text: str) -> "Size":
        """``4000x3`` (rows x epochs), ``allx2``, ``1000s400`` (rows, 400 steps); ``/b16`` batch, ``/l96`` length."""
        head, *mods = text.split("/")
        kw: dict[str, Any] = {}
        for mod in mods:
            if mod.startswith("b"):
                kw["batch_size"] = int(mod[1:])
            elif mod.startswith("l"):
                kw["max_length"] = int(mod[1:])
            else:
                raise ValueError(f"size {text!r}: unknown modifier {mod!r} (use /bN or /lN)")
        if "s" in head:
            rows, steps = head.split("s", 1)
            kw["max_steps"] = int(steps)
        else:
            rows, epochs = head.split("x", 1)
            kw["epochs"] = float(epochs)
        return cls(train_samples=None if rows == "all" else int(rows), **kw)

    def text(self) -> str:
        rows = "all" if self.train_samples is None else str(self.train_samples)
        head = f"{rows}s{self.max_steps}" if self.max_steps else f"{rows}x{self.epochs:g}"
        mods = ([f"b{self.batch_size}"] if self.batch_size != 32 else []) + ([f"l{self.max_length}"] if self.max_length else [])
        return "/".join([head, *mods])


# ----------------------------------------------------------------------------------------------
# Budgets and knobs
# ----------------------------------------------------------------------------------------------


def paper_total_steps(task: str, budget: int) -> int:
    from increlora.task_defaults import task_defaults

    epochs = task_defaults(task, "increlora", "paper", float(budget))["epochs"]
    return int(math.ceil(PAPER_TRAIN_SIZE[task] / PAPER_BATCH) * epochs)


def paper_knobs(task: str, budget: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The paper's hand-set IncreLoRA knobs (spec 2.2: top_h, n_add, gamma, beta1 = beta2 = 0.85) with
    its warm-up and interval as fractions of the paper's own run; (knobs, info)."""
    from increlora.task_defaults import task_defaults

    p = task_defaults(task, "increlora", "paper", float(budget))
    total = paper_total_steps(task, budget)
    knobs: dict[str, Any] = {
        "init_warmup_frac": p["init_warmup"] / total,
        "incre_interval_frac": p["incre_interval"] / total,
        "top_h": p["top_h"],
        "n_add": p.get("n_add"),
        "orth_reg_weight": p["orth_reg_weight"],
        "beta1": 0.85,
        "beta2": 0.85,
    }
    info = {"paper_total_steps": total, "paper_init_warmup": p["init_warmup"], "paper_incre_interval": p["incre_interval"]}
    return knobs, info


def preset_knobs(preset: Any) -> dict[str, Any]:
    """The IncreLoRA knobs of a preset (its budget and learning rate excluded)."""
    from increlora.methods.increlora.config import IncreLoRAConfig
    from increlora.config import field_names

    allowed = set(field_names(IncreLoRAConfig)) - PRESET_EXCLUDE
    return {k: v for k, v in preset.config.items() if k in allowed}


def method_knobs(label: str, task: str, budget: int, shapes: dict[str, tuple[int, int]],
                 preset: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Knobs of method ``label`` at equal final adapter parameters B = LoRA's size at rank ``budget``.

    ``lora``: r = budget. ``adalora``: target_r = B / sum(d_in+d_out+1), init_r = max(ceil(1.5 r),
    ceil(target_r)). ``increlora`` (the cpu profile's knobs), ``increlora-paper`` (the paper's knobs)
    and ``increlora-preset`` (a searched preset's knobs): budget_params = B, never exceeded.
    ``increlora-official``: the cpu profile's knobs with ``reproduce_official`` (the official code's
    numerics, schedule and top-k, which may overshoot B by less than one round's grant; the trainer's default
    since the paired runs of issue #22). ``increlora-official-paper`` and ``increlora-official-preset``: the
    paper's and a preset's knobs in official mode. The other IncreLoRA labels run this project's variant
    (``reproduce_official`` false, whatever a preset says), as every run did before official mode became the
    default.
    """
    from increlora.task_defaults import task_defaults

    method = "increlora" if label.startswith("increlora") else label
    knobs = task_defaults(task, method, "cpu", float(budget))
    target = lora_params(shapes, budget)
    info: dict[str, Any] = {"target_params": target}
    if label in ("lora", "dora"):  # DoRA: LoRA's rank, plus a magnitude per output (B + sum(d_out) params)
        knobs["r"] = int(budget)
    elif label == "adalora":
        target_r = target / uniform_rank_cost(shapes)
        knobs.update(init_r=max(int(math.ceil(1.5 * budget)), int(math.ceil(target_r))), target_r=target_r)
        info["adalora_target_r"] = target_r
    else:
        official = label.startswith("increlora-official")
        knobs.update(budget_params=target, target_rank=float(budget), reproduce_official=official)
        if label in ("increlora-paper", "increlora-official-paper"):
            for k in ("init_warmup_frac", "incre_interval_frac", "top_h", "orth_reg_weight"):
                knobs.pop(k, None)
            extra, pinfo = paper_knobs(task, budget)
            knobs.update(extra)
            info.update(pinfo)
        elif label in ("increlora-preset", "increlora-official-preset"):
            if preset is None:
                raise ValueError(f"{label} needs a preset")
            knobs.update(preset_knobs(preset), reproduce_official=official)
    knobs["method"] = method
    return knobs, info


def run_knobs(label: str, task: str, budget: int, seed: int, size: Size, shapes: dict[str, tuple[int, int]], *,
              learning_rate: Optional[float] = None, holdout_samples: Optional[int] = None,
              eval_samples: Optional[int] = None, model: Optional[str] = None, data_dir: Optional[str] = None,
              preset: Any = None, evaluations: int = 4, precision: str = "fp32") -> tuple[dict[str, Any], dict[str, Any]]:
    """Flat knobs for ``build_run_config`` and an info dict for the record. ``precision`` is always explicit
    (``bf16`` or ``fp32``, never ``auto``): a run's numbers never depend on what ``auto`` resolves to."""
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"precision: bf16 or fp32 for a benchmark run, got {precision!r}")
    from increlora.data import get_task, load_task
    from increlora import schedule

    knobs, info = method_knobs(label, task, budget, shapes, preset)
    knobs.update(size.knobs())
    if learning_rate is not None:
        knobs["learning_rate"] = float(learning_rate)
    n_rows = len(load_task(get_task(task).name, data_dir)["train"])
    n_train = n_rows if size.train_samples is None else min(size.train_samples, n_rows)
    total = schedule.total_steps(n_train, size.batch_size, size.epochs, size.max_steps)
    knobs.update(task=task, model=model, data_dir=data_dir, train_samples=size.train_samples,
                 eval_samples=eval_samples, holdout_samples=holdout_samples, seed=int(seed),
                 eval_steps=schedule.eval_steps_for(total, evaluations), device="cpu", progress=False,
                 output_dir=None, save_adapter=False, precision=precision)
    info.update(size=size.text(), eval_on="holdout" if holdout_samples else "dev", total_steps=total, precision=precision)
    return knobs, info


# Values every run had before the knob existed or changed its default: left out of the signature, so those
# runs keep their files (fp32 before bf16 existed; the variant before official mode became the default).
LEGACY_VALUES = {"precision": "fp32", "reproduce_official": False}


def signature(knobs: dict[str, Any]) -> dict[str, Any]:
    """The knobs that change a run's result, less :data:`LEGACY_VALUES` (a bf16 run's signature and file name
    carry its precision, an official run's its ``reproduce_official``)."""
    return {k: v for k, v in sorted(knobs.items())
            if k not in RUNTIME_KNOBS and not (k in LEGACY_VALUES and v == LEGACY_VALUES[k])}


def implementation(knobs: dict[str, Any]) -> Optional[str]:
    """The implementation revision of the run's method (None: unversioned)."""
    return IMPLEMENTATION.get(str(knobs.get("method")))


def knob_hash(knobs: dict[str, Any]) -> str:
    sig = signature(knobs)
    if implementation(knobs) is not None:
        sig["implementation"] = implementation(knobs)
    text = json.dumps(sig, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def run_path(results: Path, label: str, budget: int, knobs: dict[str, Any]) -> Path:
    """``runs/<task>-<label>-r<budget>-s<seed>[-bf16]-<hash>.json``: a bf16 run's file names its precision."""
    tag = "" if knobs.get("precision", "fp32") == "fp32" else f"-{knobs['precision']}"
    return Path(results) / "runs" / f"{knobs['task']}-{label}-r{budget}-s{knobs['seed']}{tag}-{knob_hash(knobs)}.json"


def record_precision(record: dict[str, Any]) -> str:
    """A record's training precision (records from before bf16 existed were fp32)."""
    return str(record.get("precision") or "fp32")


def chosen_rates(records: Sequence[dict[str, Any]], grid: Sequence[float] = LR_GRID, *,
                 widen: bool = False) -> dict[tuple[str, str], float]:
    """(task, method) -> the rate of ``grid`` with the best held-out score (ties: the lower rate).

    Only held-out (``eval_on == "holdout"``) runs of the current implementation count, and only a
    (task, method) with a held-out run at every rate of ``grid`` has a choice (a half-run selection
    chooses nothing): the fidelity benchmark's learning-rate choice, which the regime table reuses.
    ``widen``: a choice at the grid's edge also needs the rates beyond it (:func:`edge_rates`) and is
    made over the widened grid; until those runs exist the (task, method) has no choice."""
    extra = edge_rates(records, grid) if widen else {}
    best: dict[tuple[str, str], tuple[float, float]] = {}
    seen: dict[tuple[str, str], set[float]] = {}
    for r in records:
        if r.get("eval_on") == "holdout" and not r.get("superseded"):
            key, cand = (r["task"], r["method"]), (float(r["glue_score"]), -float(r["learning_rate"]))
            rates = {float(x) for x in grid} | set(extra.get(key, ()))
            if float(r["learning_rate"]) not in rates:
                continue
            seen.setdefault(key, set()).add(float(r["learning_rate"]))
            if key not in best or cand > best[key]:
                best[key] = cand
    return {k: -v[1] for k, v in best.items()
            if seen[k] == {float(x) for x in grid} | set(extra.get(k, ()))}


# A choice at the edge of the grid has not found the best rate: the next rate beyond that edge joins the
# (task, method)'s grid (x2 above the top, /3 below the bottom), until the best is inside or these limits.
EDGE_LIMITS = (1e-5, 1e-1)


def edge_rates(records: Sequence[dict[str, Any]], grid: Sequence[float] = LR_GRID) -> dict[tuple[str, str], list[float]]:
    """(task, method) -> the rates beyond ``grid`` its held-out choice asks for (see :data:`EDGE_LIMITS`).

    For each (task, method) with a held-out run at every rate of ``grid`` (two at least): while the best score
    (ties: the lower rate) sits at the highest (lowest) rate run so far and beats its neighbour, the next rate
    up (down) is added; the list stops at the first added rate not run yet (it is the one to run next) or at
    the limits."""
    wanted = {float(x) for x in grid}
    scores: dict[tuple[str, str], dict[float, float]] = {}
    for r in records:
        if r.get("eval_on") == "holdout" and not r.get("superseded"):
            scores.setdefault((r["task"], r["method"]), {})[float(r["learning_rate"])] = float(r["glue_score"])
    out: dict[tuple[str, str], list[float]] = {}
    for key, by_rate in scores.items():
        if len(wanted) < 2 or not wanted <= set(by_rate):
            continue
        rates, extra = sorted(wanted), []
        while True:
            best = max(rates, key=lambda lr: (by_rate[lr], -lr))
            # an edge counts only when it beats its neighbour (a flat end, e.g. every rate at the majority class, is no edge)
            if best == rates[-1] and by_rate[best] > by_rate[rates[-2]] and best * 2 <= EDGE_LIMITS[1] * (1 + 1e-9):
                nxt = _rate(best * 2)
            elif best == rates[0] and by_rate[best] > by_rate[rates[1]] and best / 3 >= EDGE_LIMITS[0] * (1 - 1e-9):
                nxt = _rate(best / 3)
            else:
                break
            extra.append(nxt)
            if nxt not in by_rate:
                break
            rates = sorted(rates + [nxt])
        if extra:
            out[key] = extra
    return out


def _rate(x: float) -> float:
    """A learning rate rounded to 3 significant digits (so 1e-2 x 2 is 0.02, not 0.020000000000000004)."""
    return float(f"{x:.3g}")


# ----------------------------------------------------------------------------------------------
# Execution
# ----------------------------------------------------------------------------------------------


@dataclass
class Job:
    """One planned run: its method label, budget, knobs, record info and cache file."""

    label: str
    budget: int
    knobs: dict[str, Any]
    info: dict[str, Any]
    path: Path

    @property
    def tag(self) -> str:
        k = self.knobs
        lr = f" lr {k['learning_rate']:g}" if "learning_rate" in k else ""
        return f"{k['task']} {self.label} r{self.budget} s{k['seed']} [{self.info.get('size')}{lr}, {self.info.get('eval_on')}]"


_WORKER_STATE: dict[str, Any] = {}


def _worker_init(threads: Optional[int], nice: int) -> None:
    if nice:
        try:
            os.nice(nice)
        except OSError:
            pass
    import warnings

    import torch
    from transformers.utils import logging as hf_logging

    if threads:
        torch.set_num_threads(threads)
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)


def _data(knobs: dict[str, Any]) -> tuple[Any, Any]:
    from increlora.backbone import load_tokenizer
    from increlora.data import prepare_data

    if "tokenizer" not in _WORKER_STATE:
        _WORKER_STATE["tokenizer"] = load_tokenizer(knobs.get("model"))
    tok = _WORKER_STATE["tokenizer"]
    key = tuple(knobs.get(k) for k in ("task", "seed", "max_length", "train_samples", "eval_samples", "holdout_samples"))
    if _WORKER_STATE.get("data_key") != key:
        _WORKER_STATE["data"] = prepare_data(knobs["task"], tok, data_dir=knobs.get("data_dir"),
                                             train_samples=knobs.get("train_samples"), eval_samples=knobs.get("eval_samples"),
                                             holdout_samples=knobs.get("holdout_samples"),
                                             max_length=knobs["max_length"], seed=knobs["seed"])
        _WORKER_STATE["data_key"] = key
    return tok, _WORKER_STATE["data"]


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def _torch_version() -> str:
    import torch

    return str(torch.__version__)


def execute_one(job: Job) -> dict[str, Any]:
    """Train ``job`` and write its record (or its error) to ``job.path``; returns the record."""
    from increlora.run_config import build_run_config
    from increlora.trainer import train

    t0 = time.perf_counter()
    try:
        cfg = build_run_config(job.knobs)
        tok, data = _data(dict(cfg.train.__dict__))
        res = train(cfg, data, tokenizer=tok)
    except Exception as exc:
        rec = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(),
               "knobs": signature(job.knobs), "task": job.knobs["task"], "method": job.label, "budget": job.budget,
               "seed": job.knobs["seed"], **job.info}
        write_json(job.path, rec)
        return rec
    rec = {
        "version": VERSION,
        "task": cfg.train.task,
        "method": job.label,
        "budget": job.budget,
        "seed": cfg.train.seed,
        "learning_rate": cfg.train.learning_rate,
        "knobs": signature(job.knobs),
        "implementation": implementation(job.knobs),
        **job.info,
        "adapter_params": res.adapter_params,
        "peak_trainable_params": res.peak_trainable_params,
        "total_rank": int(sum(res.allocation.values())) if res.allocation else None,
        "precision": res.precision,
        "allocation": res.allocation,
        "growth_events": [[int(e["step"]), e["module"], int(e["added"])] for e in (res.growth_events or [])],
        "metrics": res.metrics,
        "best_metrics": res.best_metrics,
        "glue_score": res.glue_score,
        "best_glue_score": res.best_glue_score,
        "best_step": res.best_step,
        "history": [{"step": h["step"], "glue_score": h["glue_score"], "train_loss": h["train_loss"]} for h in res.history],
        "steps": res.steps,
        "train_size": res.train_size,
        "eval_size": res.eval_size,
        "schedule": res.schedule,
        "growth_rounds": len({e.get("step") for e in (res.growth_events or [])}),
        "wall_time_s": time.perf_counter() - t0,
        "train_time_s": res.train_time_s,
        "eval_time_s": res.eval_time_s,
        "pad_fraction": 1 - res.train_tokens / max(1, res.train_padded_tokens),
        "model": res.model,
        # what can make a re-run differ in the last bits: the thread count (reduction order) and the torch build
        "torch_threads": _torch_threads(),
        "torch_version": _torch_version(),
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(job.path, rec)
    return rec


def cached(job: Job) -> Optional[dict[str, Any]]:
    rec = read_json(job.path)
    return rec if rec and "error" not in rec else None


def run_jobs(jobs: Sequence[Job], *, workers: int = 1, threads: Optional[int] = None, nice: int = 19,
             dry_run: bool = False, on_record: Optional[Callable[[Job, dict], None]] = None) -> list[dict[str, Any]]:
    """Every job's record: cached ones as they are, the others trained (``dry_run``: skipped)."""
    records: list[dict[str, Any]] = []
    todo = []
    for job in jobs:
        rec = cached(job)
        if rec is not None:
            records.append(rec)
        else:
            todo.append(job)
    say(f"{len(jobs)} runs: {len(jobs) - len(todo)} cached, {len(todo)} to run" + (" (not run: --report-only)" if dry_run and todo else ""))
    if dry_run or not todo:
        return records
    t_all = time.perf_counter()
    done = 0

    def finished(job: Job, rec: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        if "error" in rec:
            say(f"[{done}/{len(todo)}] {job.tag}: FAILED {rec['error']}")
            return
        records.append(rec)
        score = ", ".join(f"{n} {v:.2f}" for n, v in rec["metrics"].items())
        say(f"[{done}/{len(todo)}] {job.tag}: {score} (best {rec['best_glue_score']:.2f}), {rec['adapter_params']:,} params, "
            f"{rec['wall_time_s']:.0f} s  [{(time.perf_counter() - t_all) / 60:.1f} min]")
        if on_record:
            on_record(job, rec)

    if workers <= 1:
        _worker_init(threads, nice)
        for job in todo:
            finished(job, execute_one(job))
        return records
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(threads or 1, nice)) as pool:
        pending = {pool.submit(execute_one, job): job for job in todo}
        while pending:
            ready, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in ready:
                job = pending.pop(fut)
                try:
                    rec = fut.result()
                except Exception as exc:  # the worker died
                    rec = {"error": f"{type(exc).__name__}: {exc}"}
                finished(job, rec)
    return records
