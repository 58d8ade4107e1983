"""Reading rows: the original GLUE TSV folders, and the Hugging Face hub with a clear offline error.

Nothing heavy is imported at module import time: ``datasets`` is imported only for the hub.
"""

from __future__ import annotations

import csv
import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union
from urllib.parse import urlparse

import numpy as np

from .tasks import GlueError, TaskSpec, get_task, squash

log = logging.getLogger(__name__)

HUB_DATASET = "nyu-mll/glue"
HUB_UNREACHABLE = (
    "no GLUE data: pass --data-dir DIR (original GLUE TSV folders) or set GLUE_DIR; "
    "the Hugging Face hub is unreachable"
)
_PROBE_TIMEOUT_S = 3.0
# A file whose malformed rows exceed this share is taken to be in the wrong layout.
_MAX_MALFORMED_SHARE = 0.01
# MNLI rows without a gold label (no annotator consensus) carry this marker.
_NO_LABEL = "-"


@dataclass
class RawSplit:
    """One split as text columns plus labels (int64 class ids, or float32 scores for STS-B)."""

    text_a: list[str]
    text_b: Optional[list[str]]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.text_a)

    def select(self, indices: Sequence[int] | np.ndarray) -> "RawSplit":
        """The rows at ``indices``, in that order."""
        idx = [int(i) for i in indices]
        return RawSplit(
            text_a=[self.text_a[i] for i in idx],
            text_b=None if self.text_b is None else [self.text_b[i] for i in idx],
            labels=self.labels[np.asarray(idx, dtype=np.int64)],
        )


# --------------------------------------------------------------------------------------------
# GLUE TSV folders
# --------------------------------------------------------------------------------------------


def resolve_data_dir(data_dir: Union[str, os.PathLike, None] = None) -> Optional[Path]:
    """``data_dir``, else ``$GLUE_DIR``, else None (meaning: use the hub)."""
    if data_dir is None or str(data_dir) == "":
        data_dir = os.environ.get("GLUE_DIR") or None
    return None if data_dir is None else Path(data_dir).expanduser()


def _task_folder(spec: TaskSpec, root: Path) -> Path:
    """The task's folder under ``root`` (``root/CoLA``; any spelling normalize_task accepts),
    or ``root`` itself when it already is that folder."""
    exact = root / spec.folder
    if exact.is_dir():
        return exact
    if root.is_dir():
        for child in sorted(root.iterdir()):
            if child.is_dir() and squash(child.name) in (spec.name, squash(spec.folder)):
                return child
    if squash(root.name) in (spec.name, squash(spec.folder)) and (root / "train.tsv").exists():
        return root
    return exact


def _missing(spec: TaskSpec, split: str, path: Path) -> GlueError:
    return GlueError(
        f"the {split} split of {spec.folder} is missing at {path}: pass --data-dir DIR with the original "
        f"GLUE TSV folders ({spec.folder}/{spec.tsv_file(split)}) or set GLUE_DIR"
    )


def _parse_label(spec: TaskSpec, raw: str, where: str) -> Union[int, float, None]:
    """Label text -> class id / score; None for an unlabelled row (``-`` or empty)."""
    raw = raw.strip()
    if raw in ("", _NO_LABEL):
        return None
    if spec.is_regression:
        try:
            return float(raw)
        except ValueError:
            raise GlueError(f"{where}: score {raw!r} is not a number; is this the {spec.folder} file?") from None
    if raw in spec.label_names:
        return spec.label_names.index(raw)
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if 0 <= value < spec.num_labels:
        return value
    valid = ", ".join(f"{i}/{n}" for i, n in enumerate(spec.label_names))
    raise GlueError(f"{where}: label {raw!r} is not one of {valid}; is this the {spec.folder} file?")


def read_tsv_split(spec: TaskSpec, path: Path) -> RawSplit:
    """See :func:`_read_tsv_split`; a file that is not UTF-8 text is a GlueError naming it."""
    try:
        return _read_tsv_split(spec, path)
    except UnicodeDecodeError as exc:
        raise GlueError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8 or pass "
                        f"--data-dir with the original GLUE files") from None


def _read_tsv_split(spec: TaskSpec, path: Path) -> RawSplit:
    """Read one labelled split of ``spec`` in the original GLUE TSV layout.

    Quoting is off (texts hold bare ``"``), a UTF-8 BOM is ignored (MRPC), and columns are
    found by header name, so MNLI's train (12 columns) and dev (16 columns) files both work.
    Rows with too few columns, and rows without a gold label (MNLI ``-``), are skipped and
    counted in a log warning; a file where more than 1 % of rows are malformed is rejected.
    """
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        if spec.tsv_has_header:
            header = next(reader, None)
            if header is None:
                raise GlueError(f"{path} is empty; expected the {spec.folder} TSV with a header line")
            header = [h.strip() for h in header]
            try:
                cols = [header.index(c) for c in (*spec.tsv_text_columns, spec.tsv_label_column)]
            except ValueError:
                wanted = ", ".join(map(str, (*spec.tsv_text_columns, spec.tsv_label_column)))
                raise GlueError(
                    f"{path}: header {header} lacks the columns {wanted}; pass --data-dir with the original "
                    f"GLUE TSV files of {spec.folder}"
                ) from None
        else:
            cols = [int(c) for c in (*spec.tsv_text_columns, spec.tsv_label_column)]
        need = max(cols) + 1
        *text_cols, label_col = cols
        texts: list[list[str]] = [[] for _ in text_cols]
        labels: list[Union[int, float]] = []
        malformed = unlabelled = 0
        for row in reader:
            if not row:
                continue
            if len(row) < need:
                malformed += 1
                continue
            label = _parse_label(spec, row[label_col], f"{path}:{reader.line_num}")
            if label is None:
                unlabelled += 1
                continue
            for out, c in zip(texts, text_cols):
                out.append(row[c])
            labels.append(label)
    total = len(labels) + malformed + unlabelled
    if malformed > _MAX_MALFORMED_SHARE * max(total, 1):
        raise GlueError(
            f"{path}: {malformed} of {total} rows have fewer than {need} tab-separated columns; "
            f"is this the original GLUE TSV file of {spec.folder}?"
        )
    if malformed or unlabelled:
        log.warning("%s: skipped %d malformed and %d unlabelled rows", path, malformed, unlabelled)
    if not labels:
        raise GlueError(f"{path} has no labelled rows; pass --data-dir with the original GLUE TSV files")
    dtype = np.float32 if spec.is_regression else np.int64
    return RawSplit(texts[0], texts[1] if len(texts) > 1 else None, np.asarray(labels, dtype=dtype))


def load_task_tsv(task: str, data_dir: Union[str, os.PathLike]) -> dict[str, RawSplit]:
    """Load ``train`` and the eval splits of ``task`` from a folder holding the GLUE TSV folders."""
    spec = get_task(task)
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise GlueError(f"GLUE data folder {root} does not exist: pass --data-dir DIR holding CoLA/, SST-2/, ...")
    folder = _task_folder(spec, root)
    out: dict[str, RawSplit] = {}
    for split in ("train",) + spec.eval_splits:
        path = folder / spec.tsv_file(split)
        if not path.is_file():
            raise _missing(spec, split, path)
        out[split] = read_tsv_split(spec, path)
    return out


# --------------------------------------------------------------------------------------------
# The Hugging Face hub
# --------------------------------------------------------------------------------------------


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def hub_offline_requested() -> bool:
    """True when HF_HUB_OFFLINE or HF_DATASETS_OFFLINE asks for offline mode."""
    return _env_true("HF_HUB_OFFLINE") or _env_true("HF_DATASETS_OFFLINE")


def hub_reachable(timeout_s: float = _PROBE_TIMEOUT_S) -> bool:
    """Cheap connectivity probe: a TCP connect to the hub (or the HTTPS proxy), bounded in time.

    DNS resolution is bounded too: the probe runs in a daemon thread that is abandoned after
    ``timeout_s``.
    """
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    target = urlparse(proxy if proxy else os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = target.hostname or "huggingface.co"
    port = target.port or (80 if target.scheme == "http" else 443)
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                result.append(True)
        except OSError:
            result.append(False)

    worker = threading.Thread(target=probe, name="glue-hub-probe", daemon=True)
    worker.start()
    worker.join(timeout_s + 0.5)
    return bool(result and result[0])


def load_task_hub(task: str) -> dict[str, RawSplit]:
    """Load ``train`` and the eval splits of ``task`` from ``nyu-mll/glue`` with ``datasets``.

    Fails within seconds when the hub cannot be reached (offline mode set, or the probe fails),
    instead of waiting for ``datasets``' retries. A local ``datasets`` cache still serves an
    offline run.
    """
    spec = get_task(task)
    offline = hub_offline_requested()
    if not offline and not hub_reachable():
        raise GlueError(HUB_UNREACHABLE)
    try:
        import datasets  # noqa: PLC0415 - heavy, only for the hub path

        # datasets reads the offline variables when first imported; if they were set later it
        # would retry for a long time, so probe the hub instead.
        if offline and not datasets.config.HF_HUB_OFFLINE and not hub_reachable():
            raise GlueError(HUB_UNREACHABLE)
        ds = datasets.load_dataset(HUB_DATASET, spec.name)
    except (ConnectionError, OSError) as exc:
        raise GlueError(HUB_UNREACHABLE) from exc
    out: dict[str, RawSplit] = {}
    for split in ("train",) + spec.eval_splits:
        if split not in ds:
            raise GlueError(f"{HUB_DATASET}/{spec.name} has no {split} split; pass --data-dir with GLUE TSV folders")
        part = ds[split]
        dtype = np.float32 if spec.is_regression else np.int64
        labels = np.asarray(part["label"], dtype=dtype)
        keep = np.flatnonzero(labels >= 0)  # hub test-style rows carry label -1
        raw = RawSplit(
            text_a=list(part[spec.text_columns[0]]),
            text_b=list(part[spec.text_columns[1]]) if spec.is_pair else None,
            labels=labels,
        )
        out[split] = raw if len(keep) == len(raw) else raw.select(keep)
    return out


def load_task(task: str, data_dir: Union[str, os.PathLike, None] = None) -> dict[str, RawSplit]:
    """Load ``train`` and the eval splits of ``task``.

    The data come from ``data_dir``, else ``$GLUE_DIR`` (original GLUE TSV folders), else the
    Hugging Face hub. Eval splits are ``validation`` (MNLI: ``validation_matched`` and
    ``validation_mismatched``). Raises :class:`GlueError` with a fix when data are missing.
    """
    root = resolve_data_dir(data_dir)
    if root is not None:
        return load_task_tsv(task, root)
    return load_task_hub(task)
