"""Helpers shared by the benchmark scripts (fidelity, search_efficiency, overhead).

Not a benchmark itself: paths, the GLUE folder, a tiny random BERT for smoke runs, the chance
level of a task, adapted-module shapes, and markdown formatting of median [min-max] cells.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs"
TINY = "tiny"


def default_data_dir() -> Optional[str]:
    """``$GLUE_DIR``, else ``../shared/data/glue`` next to the checkout (as the tests do), else None (hub)."""
    env = os.environ.get("GLUE_DIR")
    if env:
        return str(Path(env).resolve())
    path = ROOT.parent / "shared" / "data" / "glue"
    return str(path) if path.is_dir() else None


def resolve_model_arg(model: Optional[str]) -> Optional[str]:
    """``None`` = the packaged MiniLM; ``tiny`` = a tiny random BERT built once under
    benchmarks/.cache/tiny-bert (for smoke runs only, not a result); anything else is passed through."""
    if model != TINY:
        return model
    return str(tiny_model_dir(ROOT / "benchmarks" / ".cache" / "tiny-bert"))


def resolve_inputs(args: Any, *, model: bool = True) -> None:
    """Fill ``args.data_dir`` (absolute; ``default_data_dir()`` when unset) and, with ``model``,
    ``args.model_path`` (absolute when a folder; ``tiny`` built on demand). A local or packaged
    model never needs the hub, so HF_HUB_OFFLINE is set for it (the benchmarks' subprocesses inherit it)."""
    args.data_dir = args.data_dir or default_data_dir()
    if args.data_dir:
        args.data_dir = str(Path(args.data_dir).resolve())
    if args.model is None or Path(str(args.model)).is_dir():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if model:
        args.model_path = resolve_model_arg(args.model)
        if args.model_path and Path(args.model_path).is_dir():
            args.model_path = str(Path(args.model_path).resolve())


def tiny_model_dir(out: Path) -> Path:
    """A tiny random BERT (hidden 32, 2 layers, 2 heads, FFN 64) with the packaged tokenizer,
    saved to ``out`` (the same model as the tests' ``tiny_model_dir`` fixture). Built once."""
    out = Path(out)
    if (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        return out
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from increlora.backbone import default_model_path

    tokenizer = AutoTokenizer.from_pretrained(default_model_path())
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        vocab_size=tokenizer.vocab_size, max_position_embeddings=512)
    torch.manual_seed(0)
    out.mkdir(parents=True, exist_ok=True)
    BertForSequenceClassification(config).save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


def module_shapes(model: Optional[str], targets: Optional[list] = None) -> dict[str, tuple[int, int]]:
    """``{module name: (d_in, d_out)}`` of the linear layers every method adapts (from the model's config)."""
    from increlora.budget import adapted_shapes

    return adapted_shapes(model, targets)


def chance_level(task: str, data_dir: Optional[str]) -> tuple[float, str]:
    """GLUE score of the majority-class predictor on the full dev set (0 for CoLA's MCC and for
    regression); for accuracy tasks that is the majority-class accuracy, for MRPC/QQP the mean of
    its F1 and accuracy (the GLUE score's unit). Returns (score, description)."""
    import numpy as np

    from increlora.budget import majority_score
    from increlora.data import get_task, load_task

    spec = get_task(task)
    if spec.is_regression:
        return 0.0, "0 (correlation of a constant predictor)"
    labels = np.asarray(load_task(spec.name, data_dir)[spec.eval_splits[0]].labels)
    values, counts = np.unique(labels, return_counts=True)
    major = values[int(np.argmax(counts))]
    share = 100.0 * counts.max() / len(labels)
    name = spec.label_names[int(major)] if spec.label_names else major
    return majority_score(spec.name, labels), f"majority class ({name}, {share:.1f}% of {len(labels)} dev rows)"


# ----------------------------------------------------------------------------------------------
# Formatting
# ----------------------------------------------------------------------------------------------


def finite(values: Iterable[Any]) -> list[float]:
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return out


def med_range(values: Sequence[Any], fmt: str = "{:.2f}") -> str:
    """``median [min–max]`` (just the value for one run, ``–`` for none)."""
    vals = finite(values)
    if not vals:
        return "–"
    med = statistics.median(vals)
    if len(vals) == 1 or min(vals) == max(vals):
        return fmt.format(med)
    return f"{fmt.format(med)} [{fmt.format(min(vals))}–{fmt.format(max(vals))}]"


def int_range(values: Sequence[Any]) -> str:
    vals = finite(values)
    if not vals:
        return "–"
    med = statistics.median(vals)
    if min(vals) == max(vals):
        return f"{int(med):,}"
    return f"{int(round(med)):,} [{int(min(vals)):,}–{int(max(vals)):,}]"


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: Optional[Sequence[str]] = None) -> str:
    align = align or ["l"] + ["r"] * (len(header) - 1)
    sep = ["---:" if a == "r" else ":---:" if a == "c" else "---" for a in align]
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(path: Path, text: str) -> Path:
    """Print ``text`` and write it to ``path`` (a benchmark writes ``<its results folder>.md``,
    e.g. benchmarks/results/fidelity.md next to benchmarks/results/fidelity/)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text.rstrip() + "\n")
    os.replace(tmp, path)
    print(text)
    print(f"\n(written to {path})")
    return path


def read_json(path: Path) -> Optional[dict]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, payload: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def csv_list(text: str) -> list[str]:
    return [x.strip() for x in str(text).split(",") if x.strip()]


def say(msg: str) -> None:
    print(msg, flush=True)
    sys.stdout.flush()
