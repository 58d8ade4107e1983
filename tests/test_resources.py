"""Fitting trials to a Ray cluster's resources: fractional GPUs pack several trials per GPU, and a request
the cluster can never meet is a one-line error at once (Ray itself would leave the trials pending).

Ray is started with a *logical* GPU (``ray.init(num_gpus=1)``, stack notes section 2): the arithmetic of
the packing is checked here; ``benchmarks/gpu_packing.py`` measures it on a real GPU.
"""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")

from orchestrator.running.cluster import resolve_resources  # noqa: E402
from orchestrator.running.settings import SearchError  # noqa: E402


@pytest.fixture(scope="module")
def one_gpu_cluster(local_ray):
    with local_ray(num_cpus=8, num_gpus=1):
        yield


@pytest.mark.parametrize("gpus_per_trial,at_once", [(1.0, 1), (0.5, 2), (0.25, 4), (0.125, 8), (0.3, 3)])
def test_fractional_gpus_pack_trials_per_gpu(one_gpu_cluster, gpus_per_trial, at_once):
    res = resolve_resources(1, gpus_per_trial, 0, trials=64)
    assert res.gpus_per_trial == gpus_per_trial and res.max_concurrent == at_once


def test_auto_gpus_and_cpu_limits(one_gpu_cluster):
    assert resolve_resources(1, None, 4, trials=64).gpus_per_trial == 0.25  # auto: the GPU shared by 4 at once
    assert resolve_resources(4, 0.25, 0, trials=64).max_concurrent == 2  # 8 CPUs / 4 per trial
    assert resolve_resources(1, 0.25, 0, trials=3).max_concurrent == 3  # never more than the trials


@pytest.mark.parametrize("cpus,gpus,needle", [(1, 2.0, "--gpus-per-trial 2 but the Ray cluster has 1 GPUs"),
                                              (16, 0.25, "--cpus-per-trial 16 exceeds")])
def test_impossible_requests_fail_at_once(one_gpu_cluster, cpus, gpus, needle):
    with pytest.raises(SearchError, match=needle):
        resolve_resources(cpus, gpus, 0, trials=8)


def test_local_runtime_ignores_a_stale_ray_start_file():
    """A `ray start --head` that was killed leaves /tmp/ray/ray_current_cluster behind; a local search
    must still start its own runtime instead of failing to join the dead address."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="r", dir="/tmp") as tmp:  # short: Ray's socket paths have a limit
        (Path(tmp) / "ray").mkdir()
        (Path(tmp) / "ray" / "ray_current_cluster").write_text("192.0.2.2:1\n")  # TEST-NET address, nothing answers
        code = ("import ray; from orchestrator.running.cluster import init_ray; assert init_ray(None, 1); "
                "print('cpus', ray.cluster_resources()['CPU']); ray.shutdown()")
        env = {**__import__("os").environ, "RAY_TMPDIR": tmp, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": ""}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180,
                             cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0 and "cpus 1.0" in out.stdout, out.stderr[-1500:]
