"""The links a finished search prints, opened in headless Chromium as the user would open them.

One real ``mlflow server`` (sqlite backend, artifacts served by the server) on 127.0.0.1, one small search
run as the user runs it (``python -m orchestrator.search ... --tracking-uri http://127.0.0.1:PORT``: a tiny
random BERT on a generated review CSV, a local Ray runtime, an Optuna study on disk); the ``Search:``,
``Front:`` and ``Compare:`` links are taken from its closing lines, as printed, and each is opened once:

- ``Search:`` opens the parent run in MLflow's model-training view;
- ``Front:`` opens the experiment's runs table showing the front's trials only, best first, with their
  ``glue_score``, ``adapter_params`` and rank per module type on the first screen (no click, no column
  picking, no scroll: the issue's "one click" to compare the front's allocations);
- ``Compare:`` opens MLflow's compare view of the same trials: run names, the parallel-coordinates plot on
  ``glue_score``, and every metric (the scores among them) side by side.

Screenshots go to ``test-artifacts/`` (``links-*.png``). The browser tests are skipped, with the reason, without
Chromium (``apt-get install -y chromium``) or the ``playwright`` package. Budget: about 1.5 minutes.
"""

from __future__ import annotations

import csv
import os
import random
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("ray")
mlflow = pytest.importorskip("mlflow")

REPO = Path(__file__).resolve().parents[1]
from conftest import ARTIFACTS, close_mlflow_assistant, stop_process_group  # noqa: E402
WORDS = "plot actors music scenes ending story pace camera script dialogue".split()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



def _reviews(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["text", "label"])
        w.writeheader()
        for _ in range(n):
            label = rng.choice(["pos", "neg"])
            w.writerow({"text": f"the {rng.choice(WORDS)} was {'wonderful' if label == 'pos' else 'terrible'} "
                                f"and the {rng.choice(WORDS)} too", "label": label})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``mlflow server`` on 127.0.0.1 over a sqlite store; the search logs to it over HTTP."""
    work = tmp_path_factory.mktemp("links-server")
    port = _free_port()
    log = open(work / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}",
         "--artifacts-destination", str(work / "mlartifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=work,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no job-runner processes
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"mlflow server exited with {proc.returncode}: {(work / 'server.log').read_text()[-2000:]}"
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2.0):  # noqa: S310 - localhost
                    break
            except (urllib.error.URLError, OSError):
                assert time.monotonic() < deadline, "mlflow server did not answer within 120 s"
                time.sleep(0.5)
        yield url
    finally:
        stop_process_group(proc)
        log.close()


def _seeded_tiny_bert(folder: Path, tokenizer_path: str, seed: int) -> str:
    """conftest's tiny random BERT, initialised from ``seed``: the same search every time (with seed 3 its
    front holds three trials, 54.7 / 59.4 / 90.6 % on 1.0k / 1.9k / 4.6k parameters, on the 2-core machine)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    torch.manual_seed(seed)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        vocab_size=tokenizer.vocab_size, max_position_embeddings=512)
    BertForSequenceClassification(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return str(folder)


@pytest.fixture(scope="module")
def finished(server, packaged_model_path, tmp_path_factory) -> dict:
    """A 6-trial search on a review CSV, run as a user runs it; its stdout and the links it printed."""
    work = tmp_path_factory.mktemp("links-search")
    tiny_model_dir = _seeded_tiny_bert(work / "tiny-bert", packaged_model_path, seed=3)
    _reviews(work / "reviews.csv", 160, seed=1)
    _reviews(work / "reviews-dev.csv", 64, seed=2)
    argv = [sys.executable, "-m", "orchestrator.search", "--train-file", "reviews.csv", "--validation-file",
            "reviews-dev.csv", "--text-columns", "text", "--model", tiny_model_dir, "--max-steps", "30",
            "--batch-size", "16", "--set", "learning_rate=0.05", "--trials", "6", "--seed", "42", "--num-cpus", "2",
            "--name", "links", "--output-dir", str(work / "searches"), "--tracking-uri", server]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "RAY_CHDIR_TO_TRIAL_DIR": "0",
           "RAY_AIR_NEW_OUTPUT": "0", "COLUMNS": "200"}
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    links = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"^(Search|Front|Compare):\s+(\S+)", line)
        if m:
            links[m.group(1).lower()] = m.group(2)
    import json

    record = json.loads((work / "searches" / "links" / "search.json").read_text())
    client = mlflow.MlflowClient(tracking_uri=server)
    front = [client.get_run(r["mlflow_run_id"]) for r in record["front"]]
    return {"stdout": proc.stdout, "links": links, "record": record, "front": front,
            "seconds": time.perf_counter() - t0}


def test_the_closing_lines_link_to_the_search_the_front_and_the_compare_view(finished, server):
    links, record = finished["links"], finished["record"]
    exp, parent = record["experiment_id"], record["parent_run_id"]
    assert links["search"] == f"{server}/#/experiments/{exp}/runs/{parent}?workflowType=machine_learning"
    assert links["front"] == (f"{server}/#/experiments/{exp}/runs?viewStateShareKey=increlora-front-{parent}"
                              "&workflowType=machine_learning")
    assert links["compare"].startswith(f"{server}/#/compare-runs?runs=")
    assert all(run.info.run_id in links["compare"] for run in finished["front"]) and finished["front"]
    # the front's shared view lives in the experiment, and the parent's description links to all three
    client = mlflow.MlflowClient(tracking_uri=server)
    assert f"mlflow.sharedViewState.increlora-front-{parent}" in client.get_experiment(exp).tags
    note = client.get_run(parent).data.tags["mlflow.note.content"]
    assert all(f"({url})" in note for url in links.values()), note
    # own data: the closing table names the score by its metric
    header = next(ln for ln in finished["stdout"].splitlines() if "adapter params" in ln)
    assert "accuracy" in header and "GLUE" not in header


# ----------------------------------------------------------------------------------------------
# Headless Chromium
# ----------------------------------------------------------------------------------------------


def _open(browser, url: str):
    """A fresh page (a new user: no saved view, no cache) on ``url``, the size of a laptop screen."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(45_000)
    page.goto(url)
    return page



def _on_screen(page, locator) -> bool:
    """Visible and inside the viewport (not below the fold or scrolled away to the right)."""
    box = locator.bounding_box()
    size = page.viewport_size
    return bool(box) and locator.is_visible() and 0 <= box["x"] and box["x"] + box["width"] <= size["width"] \
        and 0 <= box["y"] and box["y"] + box["height"] <= size["height"]


@pytest.mark.browser
def test_the_search_link_opens_the_parent_run_in_the_model_training_view(finished, chromium_browser):
    page = _open(chromium_browser, finished["links"]["search"])
    page.get_by_text("Child runs", exact=True).first.wait_for()
    for run in finished["front"]:
        page.get_by_role("link", name=run.info.run_name).first.wait_for()
    close_mlflow_assistant(page)
    assert page.get_by_text("links", exact=True).count() >= 1  # the parent run: the search's name
    page.get_by_text("Pareto front:", exact=False).first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "links-search.png"))
    page.close()


# The runs table as the user sees it: ag-grid places its cells absolutely, so columns are read in their
# on-screen order (left to right) and rows by their row index, never in DOM order.
_HEADERS_JS = """() => [...document.querySelectorAll('.ag-header-cell[col-id]')].map(h => {
    const r = h.getBoundingClientRect(); return [h.getAttribute('col-id'), r.left, r.right, r.top, r.bottom]; })
    .filter(h => h[2] > h[1]).sort((a, b) => a[1] - b[1])"""
_ROWS_JS = """() => { const rows = {};
    for (const row of document.querySelectorAll('.ag-row[row-index]')) {
        const i = Number(row.getAttribute('row-index')); rows[i] = rows[i] || {};
        for (const cell of row.querySelectorAll('[col-id]')) rows[i][cell.getAttribute('col-id')] = cell.innerText.trim(); }
    return Object.keys(rows).map(Number).sort((a, b) => a - b).map(i => rows[i]); }"""


@pytest.mark.browser
def test_the_front_link_shows_the_front_scores_and_allocations_on_the_first_screen(finished, chromium_browser):
    front = sorted(finished["front"], key=lambda r: -r.data.metrics["glue_score"])
    page = _open(chromium_browser, finished["links"]["front"])
    for run in front:
        page.get_by_text(run.info.run_name, exact=True).first.wait_for()
    page.wait_for_function(f"() => document.querySelectorAll('.ag-center-cols-container .ag-row').length === {len(front)}")
    page.locator(".ag-header-cell[col-id='metrics.`adapter_params`']").wait_for()
    width, height = page.viewport_size["width"], page.viewport_size["height"]

    def columns() -> list[str]:  # the metric columns wholly on the screen, left to right
        return [c for c, left, right, top, bottom in page.evaluate(_HEADERS_JS)
                if c.startswith("metrics.") and left >= 0 and right <= width and bottom <= height]

    # as it opens (MLflow's assistant panel still open): the score and the size come first
    assert columns()[:2] == ["metrics.`glue_score`", "metrics.`adapter_params`"], columns()
    close_mlflow_assistant(page)
    page.locator(".ag-header-cell[col-id='metrics.`alloc/6f2`']").wait_for()
    page.wait_for_timeout(500)
    types = [f"metrics.`alloc/{t}`" for t in ("1q", "2k", "3v", "4o", "5f1", "6f2")]
    assert columns() == ["metrics.`glue_score`", "metrics.`adapter_params`", "metrics.`alloc/total`", *types], columns()
    rows = page.evaluate(_ROWS_JS)
    names = [(r.get("attributes.`Run Name`") or "").splitlines()[-1:] for r in rows]  # after its colour's label
    assert names == [[r.info.run_name] for r in front], rows  # best first
    for row, run in zip(rows, front):  # the trial's score, size and allocation, as MLflow prints them
        assert float(row["metrics.`glue_score`"]) == pytest.approx(run.data.metrics["glue_score"], abs=1e-3)
        assert int(row["metrics.`adapter_params`"]) == int(run.data.metrics["adapter_params"])
        assert [int(row[t]) for t in types] == [int(run.data.metrics[t[9:-1]]) for t in types]
        assert sum(int(row[t]) for t in types) == int(row["metrics.`alloc/total`"])
    page.screenshot(path=str(ARTIFACTS / "links-front.png"))
    page.close()


@pytest.mark.browser
def test_the_compare_link_opens_the_front_side_by_side_with_its_scores(finished, chromium_browser):
    front = finished["front"]
    page = _open(chromium_browser, finished["links"]["compare"])
    page.get_by_text(f"Comparing {len(front)} Runs", exact=False).first.wait_for()
    for run in front:
        assert page.get_by_text(run.info.run_name, exact=True).count() >= 1, run.info.run_name
    close_mlflow_assistant(page)
    axis = page.get_by_text("glue_score", exact=True).first  # the parallel-coordinates plot's score axis
    axis.wait_for()
    assert _on_screen(page, axis)
    page.screenshot(path=str(ARTIFACTS / "links-compare.png"))
    # further down, each trial's score side by side (the table of the runs' tags: one row per key)
    cells = page.evaluate("() => [...document.querySelectorAll('tr')].filter(r => r.cells.length && "
                          "r.cells[0].innerText.trim() === 'glue_score').map(r => [...r.cells].map(c => c.innerText.trim()))")
    assert cells, "no glue_score row in the compare view"
    shown = sorted(float(v) for v in cells[-1][1:])
    assert shown == pytest.approx(sorted(run.data.metrics["glue_score"] for run in front), abs=1e-3), cells
    page.locator("tr", has_text="glue_score").last.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "links-compare-scores.png"))
    page.close()
