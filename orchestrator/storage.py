"""Optuna storage for a search's study (no Ray needed: the export and the report read it too)."""

from __future__ import annotations

from typing import Any

import optuna


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna RDB storage for any SQLAlchemy URL (sqlite gets a 60 s lock timeout)."""
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    return optuna.storages.RDBStorage(url, **kwargs)
