"""Reading rows: the original GLUE TSV folders, your own CSV / TSV / JSON / JSON Lines files, and the
Hugging Face hub (GLUE or any dataset) with a clear error offline.

Nothing heavy is imported at module import time: ``datasets`` is imported only for the hub.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union
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


def task_files(task: str, data_dir: Union[str, os.PathLike]) -> dict[str, Path]:
    """The TSV file of ``train`` and of each eval split of ``task`` under ``data_dir``, as
    :func:`load_task_tsv` finds them (existing files only)."""
    spec = get_task(task)
    folder = _task_folder(spec, Path(data_dir).expanduser())
    paths = {split: folder / spec.tsv_file(split) for split in ("train",) + spec.eval_splits}
    return {split: path for split, path in paths.items() if path.is_file()}


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
# Your own files: CSV, TSV, JSON, JSON Lines
# --------------------------------------------------------------------------------------------

TABLE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl"}


@dataclass
class Table:
    """Rows of one file (or one split of a dataset), by column: ``data[column][row]``.

    ``columns`` lists every column the source has (``data`` may hold only those asked for);
    ``class_names`` the names of a dataset's class-label columns (value i is ``class_names[col][i]``).
    """

    where: str
    columns: list[str]
    data: dict[str, list[Any]]
    n_rows: int
    class_names: dict[str, list[str]] = field(default_factory=dict)


def read_table(path: Union[str, os.PathLike], flag: str) -> Table:
    """Read a CSV / TSV file (a header line, then rows) or a JSON / JSON Lines file (objects, one per row) by
    its extension. Every problem is one GlueError that starts with ``flag`` and the path: no such file,
    a folder, unreadable, not UTF-8, invalid JSON, ragged rows, empty."""
    p = Path(path).expanduser()
    where = f"{flag} {p}"
    kind = TABLE_FORMATS.get(p.suffix.lower())
    if not p.exists():
        raise GlueError(f"{where}: no such file")
    if p.is_dir():
        raise GlueError(f"{where}: is a folder, not a file")
    if kind is None:
        raise GlueError(f"{where}: unknown format {p.suffix or '(no extension)'!r}; use a .csv, .tsv, .json or .jsonl file")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise GlueError(f"{where}: is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise GlueError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    if not text.strip():
        raise GlueError(f"{where}: is empty")
    if kind in ("csv", "tsv"):
        table = _read_delimited(text, "," if kind == "csv" else "\t", where)
    else:
        table = _read_json(text, kind, where)
    if table.n_rows == 0:
        raise GlueError(f"{where}: is empty ({'a header line but no rows' if kind in ('csv', 'tsv') else 'no rows'})")
    return table


def _read_delimited(text: str, delimiter: str, where: str) -> Table:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
        rows = [row for row in reader if row]
    except csv.Error as exc:
        raise GlueError(f"{where}: not readable as {'CSV' if delimiter == ',' else 'TSV'} ({exc})") from None
    if len(set(header)) != len(header) or not all(header):
        raise GlueError(f"{where}: the header line {header} needs distinct, non-empty column names")
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise GlueError(f"{where}: row {number - 1} has {len(row)} fields, the header {len(header)}; quote texts "
                            f"that hold {'commas' if delimiter == ',' else 'tabs'}")
    data = {name: [row[i] for row in rows] for i, name in enumerate(header)}
    return Table(where=where, columns=header, data=data, n_rows=len(rows))


def _read_json(text: str, kind: str, where: str) -> Table:
    records: Any
    if kind == "json":
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg != "Extra data":
                raise GlueError(f"{where}: is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
            kind = "jsonl"  # JSON Lines in a .json file, as the datasets library reads them
        else:
            if isinstance(records, dict):  # {"data": [...]}: the one list of objects it holds
                lists = [v for v in records.values() if isinstance(v, list)]
                if len(lists) != 1:
                    raise GlueError(f"{where}: expected a list of objects (one per row), or an object holding one")
                records = lists[0]
            if not isinstance(records, list):
                raise GlueError(f"{where}: expected a list of objects (one per row), got {type(records).__name__}")
    if kind == "jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise GlueError(f"{where}: line {number} is not valid JSON ({exc.msg} at column {exc.colno})") from None
    columns: dict[str, None] = {}
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise GlueError(f"{where}: row {number} is {type(record).__name__}, not an object with the columns as keys")
        columns.update(dict.fromkeys(record))
    data = {name: [record.get(name) for record in records] for name in columns}
    return Table(where=where, columns=list(columns), data=data, n_rows=len(records))


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


def dataset_label(name: str, config: Optional[str]) -> str:
    """``name`` or ``name (config c)``, for messages."""
    return f"{name!r}" + (f" (config {config!r})" if config else "")


def load_hub_dataset(name: str, config: Optional[str], columns: Sequence[str]) -> dict[str, Table]:
    """Every split of the Hugging Face dataset ``name`` (a hub name, or a local folder ``datasets`` can load),
    as :class:`Table` s holding ``columns`` (those the split has). Offline, a dataset that is not in the
    local ``datasets`` cache fails at once with one line naming the fix."""
    label = dataset_label(name, config)
    unreachable = (f"--dataset {label}: cannot load it: the Hugging Face hub is unreachable and it is not in the "
                   f"local datasets cache; pass --train-file / --validation-file with local CSV or JSON files")
    local = Path(name).expanduser().exists()
    offline = hub_offline_requested()
    if not local and not offline and not hub_reachable():
        raise GlueError(unreachable)
    try:
        import datasets  # noqa: PLC0415 - heavy, only for the hub path

        if not local and offline and not datasets.config.HF_HUB_OFFLINE and not hub_reachable():
            raise GlueError(unreachable)
        ds = datasets.load_dataset(str(Path(name).expanduser()) if local else name, config)
    except GlueError:
        raise
    except (ConnectionError, OSError) as exc:
        if local:
            raise GlueError(f"--dataset {label}: cannot load it ({' '.join(str(exc).split())})") from None
        raise GlueError(unreachable) from exc
    except Exception as exc:  # DatasetNotFoundError, a missing or needed config, a broken folder, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise GlueError(f"--dataset {label}: cannot load it ({type(exc).__name__}: {first})") from None
    out: dict[str, Table] = {}
    for split in ds:
        part = ds[split]
        present = [c for c in columns if c in part.column_names]
        names = {c: list(part.features[c].names) for c in present if hasattr(part.features[c], "names")}
        out[str(split)] = Table(where=f"--dataset {label} split {split!r}", columns=list(part.column_names),
                                data={c: list(part[c]) for c in present}, n_rows=len(part), class_names=names)
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
