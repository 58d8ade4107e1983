"""Comparing allocations: the search report (``python -m orchestrator.report``), the study in
optuna-dashboard, and the MLflow UI and the report page in headless Chromium.

Everything runs over ONE small real search shared by the module: a 2-trial LoRA baseline search
and then a 4-trial IncreLoRA search in the same MLflow experiment (tiny random BERT, real SST-2
rows, a local Ray runtime, an Optuna study on disk, an MLflow sqlite store). Nothing is mocked.
Browser tests (marker ``browser``) need Chromium (Debian's ``chromium``) and the ``playwright``
package; they are skipped, with the reason, when either is missing. Their screenshots go to
``test-artifacts/`` at the repository root.

Budget: about 1.5 minutes for the searches, well under a minute for the tests themselves.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
optuna = pytest.importorskip("optuna")
mlflow = pytest.importorskip("mlflow")

from orchestrator import report, search  # noqa: E402
from orchestrator.tracking import mlflow_runs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
from conftest import ARTIFACTS, close_mlflow_assistant, stop_process_group  # noqa: E402
TASK = "sst2"


# ----------------------------------------------------------------------------------------------
# The shared search
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory, tiny_model_dir, glue_dir) -> dict:
    """A 2-trial LoRA search, then a 4-trial IncreLoRA search, in one MLflow experiment."""
    work = tmp_path_factory.mktemp("compare")
    common = [
        "--task", TASK, "--model", tiny_model_dir, "--data-dir", str(glue_dir),
        "--train-samples", "64", "--eval-samples", "64", "--max-steps", "12", "--batch-size", "16",
        "--output-dir", str(work / "searches"), "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}", "--seed", "42",
        "--confirm", "0",
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)  # the experiment's artifact root is <cwd>/mlartifacts
        for key, value in (("HF_HUB_OFFLINE", "1"), ("RAY_CHDIR_TO_TRIAL_DIR", "0"), ("RAY_AUTH_MODE", "disabled"),
                           ("RAY_AIR_NEW_OUTPUT", "0")):
            mp.setenv(key, value)
        started = not ray.is_initialized()
        if started:
            ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=False, logging_level="warning")
        try:
            t0 = time.perf_counter()
            rc_lora = search.main(common + ["--method", "lora", "--trials", "2", "--name", "base-lora"])
            rc = search.main(common + ["--trials", "4", "--name", "small"])
            seconds = time.perf_counter() - t0
        finally:
            if started:
                ray.shutdown()
    assert rc_lora == 0 and rc == 0, (rc_lora, rc)
    search_dir = work / "searches" / "small"
    summary = json.loads((search_dir / "search.json").read_text())
    return {"work": work, "dir": search_dir, "summary": summary, "seconds": seconds,
            "lora": json.loads((work / "searches" / "base-lora" / "search.json").read_text())}


def _client(summary: dict):
    return mlflow.MlflowClient(tracking_uri=summary["tracking_uri"])


def _children(summary: dict) -> list:
    return mlflow_runs.child_runs(summary["tracking_uri"], summary["experiment_id"], summary["parent_run_id"])


@pytest.fixture(scope="module")
def html_report(small, tmp_path_factory) -> dict:
    """``python -m orchestrator.report --search DIR`` (in-process), default output and MLflow logging."""
    out_dir = tmp_path_factory.mktemp("report")
    import contextlib
    import io

    stdout, stderr = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = report.main(["--search", str(small["dir"]), "--output", str(out_dir / "report.html")])
    return {"rc": rc, "path": out_dir / "report.html", "stdout": stdout.getvalue(), "stderr": stderr.getvalue(),
            "seconds": time.perf_counter() - t0}


class _Refs(HTMLParser):
    """Every tag with its attributes (script/style bodies are not parsed as tags)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))


def _tags(text: str) -> list[tuple[str, dict[str, str]]]:
    parser = _Refs()
    parser.feed(text)
    return parser.tags


# ----------------------------------------------------------------------------------------------
# The MLflow record (the views the UI shows)
# ----------------------------------------------------------------------------------------------


def test_trial_runs_are_readable_and_heatmaps_share_one_scale(small):
    summary = small["summary"]
    children = _children(summary)
    assert len(children) == 4
    names = sorted(r.info.run_name for r in children)
    for run in children:  # task, method, trial number, budget
        assert re.fullmatch(rf"t\d{{3}}-r\d+\.\d\d-{TASK}-increlora", run.info.run_name), run.info.run_name
        assert float(run.data.tags[mlflow_runs.HEATMAP_VMAX_TAG]) == summary["heatmap_vmax"]
        rank_names = sorted(k for k in run.data.metrics if k.startswith("rank/L"))
        assert rank_names and all(re.fullmatch(r"rank/L\d\d\.[1-6](q|k|v|o|f1|f2)", k) for k in rank_names)
        layer0 = [k.split(".")[-1][1:] for k in rank_names if k.startswith("rank/L00.")]
        assert layer0 == ["q", "k", "v", "o", "f1", "f2"]  # MLflow's alphabetical sort keeps module order
    assert len(set(names)) == 4
    parent = _client(summary).get_run(summary["parent_run_id"])
    note = parent.data.tags[mlflow_runs.NOTE_TAG]
    assert summary["name"] in note and "Pareto front" in note and "best" in note


def test_pareto_plot_gets_the_lora_reference_points(small):
    summary = small["summary"]
    # the LoRA search's two finished trials, read back from MLflow
    ref = mlflow_runs.reference_points(summary["tracking_uri"], summary["experiment_id"], exclude_parent=summary["parent_run_id"])
    assert set(ref) == {"LoRA"} and len(ref["LoRA"]) == 2
    lora = optuna.load_study(study_name=small["lora"]["study_name"], storage=small["lora"]["storage"])
    assert sorted(ref["LoRA"], key=lambda p: p[1]) == sorted(((t.values[0], t.values[1]) for t in lora.trials),
                                                             key=lambda p: p[1])
    assert summary["outputs"]["reference_points"] == {"LoRA": 2}
    # the baseline search itself (method lora) draws no LoRA reference of its own
    assert "reference_points" not in small["lora"]["outputs"]


def test_study_names_its_objectives(small):
    study = optuna.load_study(study_name=small["summary"]["study_name"], storage=small["summary"]["storage"])
    assert study.metric_names == ["glue_score", "adapter_params"]


# ----------------------------------------------------------------------------------------------
# The report CLI
# ----------------------------------------------------------------------------------------------


def test_html_report_is_one_self_contained_page(small, html_report):
    assert html_report["rc"] == 0, html_report["stderr"]
    path = html_report["path"]
    assert html_report["stdout"].splitlines()[0] == str(path.resolve())
    text = path.read_text(encoding="utf-8")
    tags = _tags(text)
    for tag, attrs in tags:  # nothing is fetched: no external src/href, no linked stylesheet or script
        for key in ("src", "href"):
            value = attrs.get(key, "")
            assert not re.match(r"(?i)\s*(https?:)?//", value), (tag, key, value[:80])
        if tag == "script":
            assert "src" not in attrs
        if tag == "link":
            assert attrs.get("rel") != "stylesheet"
    images = {attrs.get("id") or attrs.get("alt"): attrs["src"] for tag, attrs in tags if tag == "img"}
    assert all(src.startswith("data:image/png;base64,") for src in images.values())
    assert {"pareto-static", "front-heatmaps", "profile"} <= set(images)
    timelines = [attrs for tag, attrs in tags if tag == "img" and "timeline" in attrs.get("class", "")]
    assert timelines, "no growth timeline"
    summary = small["summary"]
    # the table of trials lists every trial with its knobs; the front is there too
    assert text.count('<tr class="front">') == len(summary["front"])
    for rec_number in range(4):
        assert re.search(rf"t{rec_number:03d}-r\d+\.\d\d-{TASK}-increlora", text)
    assert "target_rank" in text and "other searches of the experiment: LoRA (2 trials)" in text
    try:
        import plotly  # noqa: F401
    except ImportError:
        assert "pareto-interactive" not in text
    else:
        assert 'id="pareto-interactive"' in text and "Plotly.newPlot" in text
    # ... and it is on the parent run
    assert "logged to MLflow run" in html_report["stdout"]
    names = {a.path for a in _client(summary).list_artifacts(summary["parent_run_id"])}
    assert report.REPORT_HTML in names


def test_html_report_default_location_static_only(small, capsys):
    rc = report.main(["--search", "small", "--output-dir", str(small["dir"].parent), "--no-interactive", "--no-mlflow",
                      "--trial", "0"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    path = small["dir"] / report.REPORT_HTML
    assert out.strip() == str(path) and path.is_file()
    text = path.read_text()
    assert "<script" not in text and 'id="pareto-static"' in text
    assert len(text) < 2_000_000
    assert "growth timeline of trial 0" in text


def test_markdown_report_prints_the_front_trials_and_ranks(small, capsys):
    rc = report.main(["--search", str(small["dir"]), "--format", "markdown", "--no-mlflow"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.startswith("# Search small")
    assert "## Pareto front" in out and "## Trials" in out and "## Rank per module type" in out
    assert "| trial | GLUE score | adapter params | total rank | presets |" in out
    front = small["summary"]["front"][0]
    assert re.search(rf"^\| {front['trial']} \| {float(front['glue_score']):.2f} \| {int(front['adapter_params']):,} \|",
                     out, re.M)
    trial_rows = [line for line in out.splitlines() if re.match(r"^\| \d+ \| COMPLETE \|", line)]
    assert len(trial_rows) == 4
    assert "| query | key | value | attn out | FFN in | FFN out | total rank |" in out
    assert "<img" not in out and "base64" not in out


def test_report_errors_are_one_line_exit_2(small, tmp_path, capsys):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "orchestrator.report", "--search", "no-such-search",
                           "--output-dir", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "no-such-search" in lines[0]

    # a search folder whose study file is gone: one line, and no empty study is created
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(small["dir"] / "search.json", broken / "search.json")
    summary = json.loads((broken / "search.json").read_text())
    summary["storage"] = f"sqlite:///{broken / 'optuna.db'}"
    (broken / "search.json").write_text(json.dumps(summary))
    cases = [
        (["--search", str(broken), "--no-mlflow"], "optuna.db"),
        (["--search", str(small["dir"]), "--format", "pdf"], "--format"),
        (["--search", str(small["dir"]), "--trial", "99", "--no-mlflow"], "99"),
    ]
    for args, needle in cases:
        rc = report.main(args)
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], (args, err)
    assert not (broken / "optuna.db").exists()
    (broken / "search.json").write_text("{not json")
    rc = report.main(["--search", str(broken)])
    assert rc == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1


def test_growth_timeline_and_heatmap_grid(tmp_path):
    from orchestrator.reporting import allocation_plots as plots

    names = [f"bert.encoder.layer.{i}.{m}" for i in range(2) for m in
             ("attention.self.query", "attention.self.value", "intermediate.dense", "output.dense")]
    events = [{"step": 4, "module": names[0], "added": 1, "rank": 2}, {"step": 4, "module": names[3], "added": 2, "rank": 3},
              {"step": 6, "module": names[0], "added": 1, "rank": 3}]
    alloc = {n: 1 for n in names} | {names[0]: 3, names[3]: 3}
    a = plots.growth_timeline(events, alloc, tmp_path / "g.png", title="growth", total_steps=10)
    b = plots.growth_timeline([], alloc, tmp_path / "none.png", title="no growth")
    grid = plots.heatmap_grid([("small", alloc), ("large", {n: 4 for n in names})], tmp_path / "grid.png", vmax=6)
    for p in (a, b, grid):
        assert p.stat().st_size > 5_000
    with pytest.raises(ValueError):
        plots.heatmap_grid([("x", {"classifier": 1})], tmp_path / "bad.png")


# ----------------------------------------------------------------------------------------------
# optuna-dashboard
# ----------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - localhost
        return json.loads(resp.read().decode())


def _wait_for(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2.0):  # noqa: S310 - localhost
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout:.0f} s")



def _console_script(name: str) -> str:
    path = Path(sys.executable).parent / name
    return str(path) if path.is_file() else (shutil.which(name) or "")


def test_optuna_dashboard_serves_the_study(small, tmp_path):
    exe = _console_script("optuna-dashboard")
    if not exe:
        pytest.skip("optuna-dashboard is not installed (pip install -e '.[test]')")
    summary = small["summary"]
    port = _free_port()
    log = open(tmp_path / "dashboard.log", "wb")
    proc = subprocess.Popen([exe, summary["storage"], "--host", "127.0.0.1", "--port", str(port)], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for(f"{base}/api/studies", proc, timeout=30)
        studies = _get_json(f"{base}/api/studies")["study_summaries"]
        ours = [s for s in studies if s["study_name"] == summary["study_name"]]
        assert len(ours) == 1 and ours[0]["directions"] == ["maximize", "minimize"]
        detail = _get_json(f"{base}/api/studies/{ours[0]['study_id']}")
        assert detail["name"] == summary["study_name"]
        assert detail.get("objective_names") == ["glue_score", "adapter_params"]
        trials = detail["trials"]
        assert sorted(t["number"] for t in trials) == [0, 1, 2, 3]
        assert {t["state"] for t in trials} == {"Complete"}
        study = optuna.load_study(study_name=summary["study_name"], storage=summary["storage"])
        assert sorted(t["number"] for t in detail["best_trials"]) == sorted(t.number for t in study.best_trials)
        by_number = {t.number: t for t in study.trials}
        for t in trials:
            assert t["values"] == pytest.approx(by_number[t["number"]].values)
            assert {p["name"] for p in t["params"]} == set(by_number[t["number"]].params)
            assert "mlflow_run_id" in {a["key"] for a in t["user_attrs"]}
    finally:
        stop_process_group(proc)
        log.close()
    assert proc.returncode is not None


# ----------------------------------------------------------------------------------------------
# Headless Chromium: the MLflow UI and the report page
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlflow_server(small, tmp_path_factory):
    """``mlflow server`` over the search's sqlite store; the experiment's artifacts are local
    folders, which the server reads and serves itself (``/get-artifact``)."""
    summary = small["summary"]
    db = mlflow_runs.sqlite_path(summary["tracking_uri"])
    port = _free_port()
    log_path = tmp_path_factory.mktemp("mlflow-server") / "server.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{db}",
         "--artifacts-destination", str(small["work"] / "mlartifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=small["work"],
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no job-runner processes
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/health", proc, timeout=90)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process_group(proc)
        log.close()


def _page(browser, requests: list | None = None):
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.set_default_timeout(30_000)
    if requests is not None:
        page.on("request", lambda r: requests.append(r.url))
    return page



def _wait_image(page, selector_js: str) -> list:
    """Wait until an <img> matching the JS predicate has loaded; returns [src prefix, width, height]."""
    page.wait_for_function(f"() => [...document.images].some(i => ({selector_js}) && i.complete && i.naturalWidth > 0)")
    return page.evaluate(f"() => [...document.images].filter(i => ({selector_js}) && i.naturalWidth > 0)"
                         ".map(i => [i.src.slice(0, 40), i.naturalWidth, i.naturalHeight])")


def _open(browser, url: str, requests: list | None = None):
    """A fresh page on ``url``: every MLflow view is loaded from scratch, since the UI's cache can
    show a run visited earlier in the same page without its artifacts."""
    page = _page(browser, requests)
    page.goto(url)
    return page


@pytest.mark.browser
def test_mlflow_ui_shows_nested_trials_and_their_heatmaps(small, mlflow_server, chromium_browser):
    summary = small["summary"]
    exp = summary["experiment_id"]
    children = sorted(_children(summary), key=lambda r: r.info.run_name)
    ui = f"{mlflow_server}/#/experiments/{exp}"
    # the runs table (the "Model training" view): the parent, expanded, lists its trials
    page = _open(chromium_browser, f"{ui}/runs?workflowType=machine_learning")
    row = page.locator("div.ag-row", has=page.get_by_text("small", exact=True)).first
    row.wait_for()
    close_mlflow_assistant(page)
    assert page.get_by_text("base-lora", exact=True).count() == 1
    for run in children:
        assert page.get_by_text(run.info.run_name, exact=True).count() == 0  # collapsed
    row.locator("button[data-component-id*='runnamecellrenderer']").first.click()
    for run in children:
        page.get_by_text(run.info.run_name, exact=True).first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "mlflow-runs-nested.png"))
    page.close()

    # the parent run: its description and the list of its child runs
    page = _open(chromium_browser, f"{ui}/runs/{summary['parent_run_id']}?workflowType=machine_learning")
    page.get_by_text("Child runs", exact=True).first.wait_for()
    close_mlflow_assistant(page)
    for run in children:
        page.get_by_role("link", name=run.info.run_name).first.wait_for()
    page.get_by_text("Pareto front:", exact=False).first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "mlflow-parent-run.png"), full_page=True)
    page.close()

    # a trial's heatmap artifact renders (the server reads the experiment's local artifact folder)
    trial = next(r for r in children if r.info.run_id == summary["front"][0]["mlflow_run_id"])
    page = _page(chromium_browser)
    responses: list = []
    page.on("response", lambda r: responses.append((r.url, r.status)) if "get-artifact" in r.url else None)
    page.goto(f"{ui}/runs/{trial.info.run_id}/artifacts?workflowType=machine_learning")
    page.get_by_text(mlflow_runs.HEATMAP_ARTIFACT, exact=True).first.click()
    shown = _wait_image(page, "i.src.startsWith('blob:')")
    close_mlflow_assistant(page)
    assert shown and shown[0][1] > 300, shown
    assert any(mlflow_runs.HEATMAP_ARTIFACT in url and status == 200 for url, status in responses), responses
    page.get_by_text(trial.info.run_name).first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "mlflow-trial-heatmap.png"))
    page.close()

    # the parent's Pareto plot (presets starred, LoRA reference points) among its artifacts
    page = _open(chromium_browser, f"{ui}/runs/{summary['parent_run_id']}/artifacts?workflowType=machine_learning")
    page.get_by_text("pareto.png", exact=True).first.click()
    shown = _wait_image(page, "i.src.startsWith('blob:')")
    close_mlflow_assistant(page)
    assert shown and shown[0][1] > 300
    page.screenshot(path=str(ARTIFACTS / "mlflow-parent-pareto.png"))
    page.close()


@pytest.mark.browser
def test_report_page_renders_offline_in_chromium(small, html_report, chromium_browser):
    assert html_report["rc"] == 0
    requests: list[str] = []
    page = _page(chromium_browser, requests)
    page.goto(html_report["path"].resolve().as_uri())
    page.wait_for_load_state("load")
    images = page.evaluate("() => [...document.images].map(i => [i.id || i.alt, i.complete, i.naturalWidth])")
    assert images and all(ok and width > 0 for _, ok, width in images), images
    ids = {name for name, _, _ in images}
    assert {"pareto-static", "front-heatmaps", "profile"} <= ids
    if page.locator("#pareto-interactive").count():
        page.wait_for_selector("#pareto-interactive .main-svg")  # plotly drew the plot, offline
        assert page.locator("#pareto-interactive .scatterlayer .point").count() >= 4
    page.screenshot(path=str(ARTIFACTS / "report-top.png"))
    page.locator("#other-trials summary").click()
    _wait_image(page, "i.id === 'other-heatmaps'")
    page.screenshot(path=str(ARTIFACTS / "report-full.png"), full_page=True)
    page.evaluate("() => document.getElementById('allocations').scrollIntoView()")
    page.screenshot(path=str(ARTIFACTS / "report-allocations.png"))
    page.close()
    external = [u for u in requests if not u.startswith(("file://", "data:", "blob:"))]
    assert not external, external


@pytest.mark.browser
def test_mlflow_compares_three_allocations_on_one_screen(small, mlflow_server, chromium_browser):
    summary = small["summary"]
    exp = summary["experiment_id"]
    children = sorted(_children(summary), key=lambda r: r.data.metrics.get("adapter_params", 0))[:3]
    ids = ",".join(f'"{r.info.run_id}"' for r in children)
    # the compare view of three trials: per-type and per-layer rank totals next to score and size
    page = _open(chromium_browser, f"{mlflow_server}/#/compare-runs?runs=[{ids}]&experiments=[\"{exp}\"]")
    page.get_by_text("alloc/1q").first.wait_for()
    close_mlflow_assistant(page)
    for run in children:
        assert page.get_by_text(run.info.run_name).count() >= 1, run.info.run_name
    for name in ("alloc/6f2", "alloc/total", "adapter_params"):
        assert page.get_by_text(name, exact=True).count() >= 1, name
    page.get_by_text("alloc/1q").first.scroll_into_view_if_needed()
    assert page.get_by_text("alloc/1q").first.is_visible()  # on screen, not buried in the scroll box
    page.screenshot(path=str(ARTIFACTS / "mlflow-compare-three.png"))
    page.close()

    # a trial's page: the description holds its allocation as a layers x types table
    trial = children[0]
    page = _open(chromium_browser, f"{mlflow_server}/#/experiments/{exp}/runs/{trial.info.run_id}?workflowType=machine_learning")
    page.get_by_text("Rank per module type", exact=False).first.wait_for()
    close_mlflow_assistant(page)
    more = page.get_by_text("Show more", exact=True)
    if more.count():
        more.first.click()  # the description's full text: the layers x types table
    for text in ("FFN in", "FFN out", "L00", "adapter parameters", "Rank per module type"):
        assert page.get_by_text(text, exact=False).first.is_visible(), text
    page.screenshot(path=str(ARTIFACTS / "mlflow-trial-page.png"), full_page=True)
    page.close()

    # the parent's allocations.png: every trial's heatmap side by side on one colour scale
    page = _open(chromium_browser, f"{mlflow_server}/#/experiments/{exp}/runs/{summary['parent_run_id']}/artifacts"
                           "?workflowType=machine_learning")
    page.get_by_text("allocations.png", exact=True).first.click()
    shown = _wait_image(page, "i.src.startsWith('blob:')")
    close_mlflow_assistant(page)
    assert shown and shown[0][1] > 600, shown
    page.screenshot(path=str(ARTIFACTS / "mlflow-parent-allocations.png"))
    page.close()
