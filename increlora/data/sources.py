"""Where a run's rows come from: a GLUE task (TSV folder or hub) or your own data, with its fingerprint.

:func:`data_source` turns a run's knobs into a GLUE task name or an :class:`~increlora.data.own.OwnData`;
:func:`load_source` loads either as a :class:`LoadedData` (the task's spec, its raw splits, a line saying
where they came from) whose :meth:`LoadedData.fingerprint` identifies the data: the sha256 of each file
(or the dataset's name, config and split sizes), and for own data the columns and the metric, combined
into one sha256. Presets record it in their provenance.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from .own import OwnData, OwnLoaded, load_own
from .readers import HUB_DATASET, RawSplit, load_task, resolve_data_dir, task_files
from .tasks import GlueError, TaskSpec, get_task, normalize_task

Source = Union[str, OwnData]


def data_source(knobs: Mapping[str, Any]) -> Source:
    """The data a run's knobs name: :class:`OwnData` when ``train_file`` or ``dataset`` is set, else the
    GLUE task's registry key."""
    own = OwnData.from_knobs(knobs)
    return own if own is not None else normalize_task(str(knobs.get("task") or "cola"))


def task_name(knobs: Mapping[str, Any]) -> str:
    """The name a run's task goes by: the GLUE task's key, or own data's name."""
    source = data_source(knobs)
    return source.name if isinstance(source, OwnData) else source


def file_sha256(path: Union[str, os.PathLike]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _combined(content: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class LoadedData:
    """A task's rows before subsetting: its spec, ``train`` and eval splits, and where they came from."""

    spec: TaskSpec
    splits: dict[str, RawSplit]
    source: str
    own: Optional[OwnLoaded] = None
    root: Optional[Path] = None  # the GLUE TSV folder (None: the hub or own data)
    _fingerprint: Optional[dict[str, Any]] = field(default=None, repr=False)

    def fingerprint(self) -> dict[str, Any]:
        """``{"sha256": ..., "source": ..., "splits": {split: {file, sha256, rows} or {rows}}, ...}``; the
        ``sha256`` covers the data's content (not its paths) and, for own data, the task's definition."""
        if self._fingerprint is None:
            self._fingerprint = self._own_fingerprint() if self.own is not None else self._glue_fingerprint()
        return dict(self._fingerprint)

    def _glue_fingerprint(self) -> dict[str, Any]:
        rows = {split: len(raw) for split, raw in self.splits.items()}
        if self.root is not None:
            files = task_files(self.spec.name, self.root)
            splits = {s: {"file": files[s].name, "sha256": file_sha256(files[s]), "rows": rows[s]} for s in rows}
            content: dict[str, Any] = {"task": self.spec.name, "files": {s: v["sha256"] for s, v in splits.items()}}
        else:
            splits = {s: {"rows": n} for s, n in rows.items()}
            content = {"task": self.spec.name, "dataset": HUB_DATASET, "config": self.spec.name, "rows": rows}
        return {"sha256": _combined(content), "source": self.source, "task": self.spec.name, "splits": splits}

    def _own_fingerprint(self) -> dict[str, Any]:
        assert self.own is not None
        own, tables = self.own.request, self.own.tables
        definition = {"text_columns": list(self.spec.text_columns), "label_column": self.own.label_column,
                      "metric": self.own.metric, "regression": self.spec.is_regression,
                      "labels": list(self.spec.label_names)}
        if own.train_file:
            files = {"train": own.train_file, "validation": own.validation_file}
            splits = {s: {"file": Path(p).name, "sha256": file_sha256(Path(p).expanduser()), "rows": tables.splits[s]}
                      for s, p in files.items() if p}
            content: dict[str, Any] = {"files": {s: v["sha256"] for s, v in splits.items()}}
        else:
            splits = {s: {"rows": n} for s, n in tables.splits.items()}
            content = {"dataset": own.dataset, "config": own.dataset_config, "rows": tables.splits}
        return {"sha256": _combined({**content, **definition}), "source": self.source, "task": self.spec.name,
                "splits": splits, **definition}


_CACHE: dict[Any, OwnLoaded] = {}


def _stat_key(own: OwnData) -> tuple:
    stats = []
    for path in (own.train_file, own.validation_file):
        if path:
            try:
                st = Path(path).expanduser().stat()
                stats.append((str(Path(path).expanduser().resolve()), st.st_size, st.st_mtime_ns))
            except OSError:
                return ()
    return tuple(stats)


def load_own_cached(own: OwnData) -> OwnLoaded:
    """:func:`load_own`, remembered for the last own data of this process (the train CLI and the search read
    it once to check it and to choose defaults, then again to tokenise)."""
    key = (own, _stat_key(own))
    if key[1] == () and own.train_file:
        return load_own(own)  # a file that cannot be stat'ed: load_own names the problem
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = load_own(own)
    return _CACHE[key]


def load_source(source: Source, data_dir: Union[str, os.PathLike, None] = None, *,
                need_eval: bool = True) -> LoadedData:
    """Load a GLUE task (``data_dir``, else ``$GLUE_DIR``, else the hub) or own data. ``need_eval``: the eval
    split(s) must exist (False when the run is scored on held-out training rows)."""
    if isinstance(source, OwnData):
        loaded = load_own_cached(source)
        if need_eval and "validation" not in loaded.splits:
            where = (f"--dataset {source.dataset!r} has no 'validation' split (splits: {', '.join(loaded.tables.splits)})"
                     if source.dataset else "no --validation-file")
            raise GlueError(f"{where}: pass --validation-file, or --holdout-samples N to score on held-out training rows")
        return LoadedData(spec=loaded.spec, splits=loaded.splits, source=source.describe(), own=loaded)
    spec = get_task(source)
    root = resolve_data_dir(data_dir)
    raw = load_task(spec.name, root)
    return LoadedData(spec=spec, splits=raw, source=str(root) if root is not None else HUB_DATASET, root=root)
