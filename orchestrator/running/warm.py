"""A warm start for the search's Ray workers: the modules a trial imports, imported when the worker process starts.

Ray starts (and prestarts) the local runtime's worker processes while the driver is still preparing the data and
the search; :func:`import_trial_modules` is their ``worker_process_setup_hook``, so a trial's first
``import torch / transformers / peft / mlflow`` (seconds per worker) is paid then, not inside the first trial.
It never fails a worker: a module that cannot be imported here is imported (and reported) by the trial itself.
"""

from __future__ import annotations

import importlib

TRIAL_MODULES = ("torch", "transformers", "peft", "mlflow", "increlora.trainer", "orchestrator.running.trainable")
SETUP_HOOK = "orchestrator.running.warm.import_trial_modules"


def import_trial_modules() -> None:
    """Import :data:`TRIAL_MODULES` (best effort)."""
    for name in TRIAL_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # the trial imports it again and says what is wrong
            pass
