"""Optuna storage for a search's study (no Ray needed: the export and the report read it too)."""

from __future__ import annotations

from typing import Any

import optuna
from orchestrator.tracking.lock import store_lock
from orchestrator.tracking.mlflow_runs import sqlite_path


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna RDB storage for any SQLAlchemy URL (sqlite gets a 60 s lock timeout). A SQLite file is
    opened under its store lock (:func:`orchestrator.tracking.lock.store_lock`): opening a new one creates its tables,
    which two processes sharing a ``--storage`` must not do at once."""
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    path = sqlite_path(url)
    if path is None:
        return optuna.storages.RDBStorage(url, **kwargs)
    with store_lock(path):
        return optuna.storages.RDBStorage(url, **kwargs)
