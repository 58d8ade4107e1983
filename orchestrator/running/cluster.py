"""Ray for the search: start a local runtime or join a cluster, and fit trials to its resources.

A local runtime listens on 127.0.0.1 only (its GCS, raylet, object manager, workers and agents) and
keeps Ray's token authentication (Ray >= 2.5x turns it on for a local ``ray.init``, with a token in
``~/.ray/auth_token``); only ``--address`` joins a cluster, whose network and authentication are its
own. A resource request the cluster can never meet is an error at once (Ray itself would leave the
trials PENDING forever, stack notes section 2).
"""

from __future__ import annotations

import logging
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

from orchestrator.running.settings import SearchError
from orchestrator.running.warm import SETUP_HOOK
from orchestrator.running import reaper
from orchestrator.tracking.probes import ProbeError, check_ray


@dataclass(frozen=True)
class Resources:
    """What each trial gets and how many run at once, resolved against the cluster."""

    cpus_per_trial: int
    gpus_per_trial: float
    max_concurrent: int
    cluster: dict[str, float]


def init_ray(address: Optional[str], num_cpus: Optional[int]) -> bool:
    """Start a local Ray runtime (or join ``address``); False if Ray was already running here."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    if address:
        check_ray_address(address)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            # Trials run in a fresh thread each; with glibc's default one malloc arena per thread the
            # workers' memory grows by ~1 GB a trial. Two arenas keep it flat (measured: RSS stable).
            env = {"MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2")}
            # "local": always a fresh runtime of our own; without it Ray joins whatever
            # /tmp/ray/ray_current_cluster names (a `ray start` left running, or a stale file).
            # Workers import what a trial needs as they start (orchestrator.running.warm), while the driver prepares.
            runtime_env: dict[str, Any] = {"env_vars": env}
            if not os.environ.get("INCRELORA_COLD_START"):  # the overhead benchmark's cold baseline leaves it out
                runtime_env["worker_process_setup_hook"] = SETUP_HOOK
            with _loopback_only():
                ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, runtime_env=runtime_env,
                         _node_ip_address=LOOPBACK, **kwargs)
    except Exception as exc:
        where = f"--address {address}" if address else "a local Ray runtime"
        raise SearchError(f"cannot start {where}: {type(exc).__name__}: {exc}") from None
    return True


LOOPBACK = "127.0.0.1"


@contextmanager
def _loopback_only() -> Iterator[None]:
    """While a local runtime starts: its node address is 127.0.0.1, and Ray binds every server to the
    node address when that is loopback (measured with Ray 2.60: ``ss -ltnp`` shows only 127.0.0.1).

    Ray turns ``_node_ip_address="127.0.0.1"`` into the machine's routable address unless its own
    single-machine switch (``ray_constants.ENABLE_RAY_CLUSTER``, false on Windows and macOS) is off, so
    it is switched off for the start only. Ray's warning that token authentication is on (its default
    for a local start, kept) is left out of the search's output."""
    import ray._private.ray_constants as ray_constants

    token_log = logging.getLogger("ray._private.authentication.authentication_token_setup")
    saved, saved_level = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None), token_log.level
    if saved is not None:
        ray_constants.ENABLE_RAY_CLUSTER = False
    token_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        if saved is not None:
            ray_constants.ENABLE_RAY_CLUSTER = saved
        token_log.setLevel(saved_level)


def node_address() -> Optional[str]:
    """The address this process's Ray node listens on (127.0.0.1 for a local runtime), if Ray runs here."""
    try:
        import ray

        return ray._private.worker._global_node.node_ip_address if ray.is_initialized() else None
    except Exception:  # pragma: no cover - a Ray without that attribute
        return None


@contextmanager
def ray_session(address: Optional[str], num_cpus: Optional[int], on_exit: Callable[[], None]) -> Iterator[None]:
    """Ray for the length of the block: started (or joined) on entry; on exit, if it was started
    here, shut down and then ``on_exit()`` runs (no trial can still be running by then).

    A local runtime started here gets a reaper (:mod:`orchestrator.running.reaper`), which ends whatever is left
    of it once this process lets go of it or dies, however it dies. SIGTERM stops the search as Ctrl-C
    does (Ray's own SIGTERM handler would end the process at once, leaving the search ``running``)."""
    with sigterm_as_sigint():
        started = init_ray(address, num_cpus)
        guard = reaper.start(session_dir()) if started and not address else None
        try:
            with sigterm_as_sigint():  # again: ray.init installed its own handler
                yield
        finally:
            if started:
                shutdown_ray()
                on_exit()
            if guard is not None:
                guard.release()


def session_dir() -> str:
    """The session folder of the Ray runtime this process started or joined (``/tmp/ray/session_...``)."""
    try:
        import ray

        return str(ray._private.worker._global_node.get_session_dir_path())
    except Exception:  # pragma: no cover - a Ray without that attribute
        return ""


@contextmanager
def sigterm_as_sigint() -> Iterator[None]:
    """For the block (in the main thread): SIGTERM does what SIGINT does at that moment (Tune's "stop the
    experiment" while trials run, KeyboardInterrupt elsewhere), so a ``kill`` ends the search as Ctrl-C
    would: its records settled, its parent run KILLED, its Ray shut down."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def shutdown_ray() -> None:
    import ray

    try:
        ray.shutdown()
    except Exception:  # pragma: no cover
        pass


def check_ray_address(address: str, timeout: float = 5.0) -> None:
    """Something that speaks Ray's protocol (gRPC) answers at ``--address`` (``ray://`` too), so a wrong
    address fails in seconds instead of Ray's long retries (:func:`orchestrator.tracking.probes.check_ray`);
    ``auto`` is probed at the address it stands for (``RAY_ADDRESS``, else the running cluster's file)."""
    target = _auto_address() if address == "auto" else address
    if target is None:  # Ray says "no running cluster" at once
        return
    try:
        check_ray(target, timeout)
    except ProbeError as exc:
        message = str(exc)
        if target != address:
            message = message.replace(f"--address {target}", f"--address auto ({target})", 1)
        raise SearchError(message) from None


def _auto_address() -> Optional[str]:
    """The address ``--address auto`` stands for: ``RAY_ADDRESS``, else ``<temp>/ray/ray_current_cluster``."""
    import tempfile
    from pathlib import Path

    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    path = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return text.splitlines()[0].strip() if text else None


def resolve_resources(cpus_per_trial: int, gpus_per_trial: Optional[float], max_concurrent: int, trials: int) -> Resources:
    """Check CPUs/GPUs per trial against the cluster; resolve ``auto`` GPUs and the concurrency."""
    import ray

    res = ray.cluster_resources()
    cpus, gpus = float(res.get("CPU", 0)), float(res.get("GPU", 0))
    cpt = float(cpus_per_trial)
    if cpt > cpus:
        raise SearchError(
            f"--cpus-per-trial {cpt:g} exceeds the Ray cluster's {cpus:g} CPUs; trials would wait forever (lower it or add --num-cpus)"
        )
    gpt = gpus_per_trial
    concurrency = int(max_concurrent or 0) or max(1, int(cpus // cpt))
    if gpt is None:
        gpt = 0.0 if gpus == 0 else min(1.0, gpus / concurrency)
    if gpt > gpus:
        raise SearchError(
            f"--gpus-per-trial {gpt:g} but the Ray cluster has {gpus:g} GPUs; trials would wait forever. "
            "Pass --gpus-per-trial 0 to train on CPU (or join a GPU cluster with --address)"
        )
    if gpt > 0:
        concurrency = min(concurrency, max(1, int(math.floor(gpus / gpt + 1e-9))))
    return Resources(cpus_per_trial=int(cpus_per_trial), gpus_per_trial=float(gpt),
                     max_concurrent=int(min(concurrency, trials)), cluster={"CPU": cpus, "GPU": gpus})
