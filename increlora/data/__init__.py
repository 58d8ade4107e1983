"""The data a run trains and is scored on: GLUE tasks (and your own data), read, subsampled and tokenised.

One job per module:

- :mod:`.tasks`: the GLUE task registry (names, folders, columns, labels, metrics);
- :mod:`.readers`: reading rows (GLUE TSV folders, CSV / TSV / JSON / JSON Lines files, the Hugging Face
  hub with a clear offline error);
- :mod:`.own`: your own data (``--train-file`` / ``--dataset``, columns, metric): checked, as a task;
- :mod:`.sources`: a run's data (GLUE task or own data) loaded, and its fingerprint;
- :mod:`.sampling`: seeded stratified subsets and held-out training rows;
- :mod:`.tokenize`: tokenisation once into :class:`PreparedData` / :class:`Split` (batching is
  :mod:`increlora.batching`).

Nothing heavy is imported here: ``datasets`` only for the hub path.
"""

from .readers import (
    HUB_DATASET,
    HUB_UNREACHABLE,
    RawSplit,
    hub_offline_requested,
    hub_reachable,
    load_task,
    load_task_hub,
    load_task_tsv,
    read_tsv_split,
    resolve_data_dir,
)
from .own import METRIC_LABELS, OWN_DATA_KNOBS, OwnData, load_own, own_data_name, score_label
from .sampling import holdout_labels, split_training_rows, subsample_indices
from .sources import LoadedData, data_source, load_source, task_name
from .tasks import TASKS, GlueError, TaskSpec, get_task, is_glue_task, normalize_task
from .tokenize import PreparedData, Split, prepare_data, tokenize_split

__all__ = [
    "HUB_DATASET", "HUB_UNREACHABLE", "METRIC_LABELS", "OWN_DATA_KNOBS", "TASKS", "GlueError", "LoadedData", "OwnData", "PreparedData",
    "RawSplit", "Split", "TaskSpec", "data_source", "get_task", "holdout_labels", "is_glue_task", "load_own",
    "load_source", "own_data_name", "task_name", "hub_offline_requested", "hub_reachable", "load_task", "load_task_hub",
    "load_task_tsv", "normalize_task", "prepare_data", "read_tsv_split", "resolve_data_dir", "score_label", "split_training_rows",
    "subsample_indices", "tokenize_split",
]
