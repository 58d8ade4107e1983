"""Pause points: named instants of a search where a test can stop it (or do something beside it) for sure.

A real kill lands wherever the process happens to be; the instants that matter most - the tens of
milliseconds between creating a search's folder, its record, its MLflow parent run and its Optuna study,
or the moment between the last trial and the end - are too short to hit from outside. With
``INCRELORA_PAUSE_AT=<point>[,<point>...]`` in its environment a search stops at those points: it prints
``pause point <point> (process <pid>)`` on stderr and waits - until the file named by
``INCRELORA_PAUSE_UNTIL`` exists, if that is set, else until it is killed. Nothing else changes: the
test then kills the process (SIGKILL, as a user or the machine would) or changes the world around it
(stops the tracking server) and lets it go on. Without the variable a pause point costs one lookup.

Points of a search (:mod:`orchestrator.running.driver`): ``folder`` (the new search's folder exists and is locked,
nothing is in it), ``record`` (``search.json`` says ``created``; no MLflow parent run yet), ``tracking`` (the parent
run exists, ``search.json`` does not name it yet), ``parent`` (``search.json`` names the parent run, which
is RUNNING; no Optuna study yet), ``study`` (the study exists; no trial has started), ``finish``
(every trial has ended; nothing is finalised yet).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

PAUSE_AT_ENV = "INCRELORA_PAUSE_AT"
PAUSE_UNTIL_ENV = "INCRELORA_PAUSE_UNTIL"
MAX_PAUSE_S = 3600.0


def pause_point(name: str) -> None:
    """Wait here if ``INCRELORA_PAUSE_AT`` names ``name`` (see the module docstring)."""
    wanted = os.environ.get(PAUSE_AT_ENV)
    if not wanted or name not in {w.strip() for w in wanted.split(",")}:
        return
    until = os.environ.get(PAUSE_UNTIL_ENV)
    print(f"pause point {name} (process {os.getpid()})", file=sys.stderr, flush=True)
    deadline = time.monotonic() + MAX_PAUSE_S
    while time.monotonic() < deadline:
        if until and Path(until).exists():
            return
        time.sleep(0.1)
