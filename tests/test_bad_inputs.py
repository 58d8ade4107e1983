"""Bad input across the five CLIs: one line on stderr, exit code 2, within seconds, nothing written.

The cases are the table in ``docs/bad-inputs.md`` (read here, so the documentation and the tests
cannot drift apart). Each command runs in-process through its ``main(argv)`` in an empty working
folder; the placeholders of the table are prepared below with real files (a real Optuna study for
the search folders) and real sockets (an HTTP server, a server that accepts and never answers, a
port nothing listens on).
"""

from __future__ import annotations

import http.server
import re
import shlex
import socket
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "docs" / "bad-inputs.md"
NOWHERE = "/proc/increlora-nowhere"  # nothing can be created under /proc, not even by root


def cases() -> list[tuple[int, str, str, str]]:
    rows = []
    for line in TABLE.read_text().splitlines():
        m = re.match(r"^\| (\d+) \| (\w+) \| `([^`]*)` \| (.+?) \|$", line.strip())
        if m:
            rows.append((int(m.group(1)), m.group(2), m.group(3), m.group(4)))
    return rows


def test_the_table_has_at_least_40_cases_over_the_four_clis():
    rows = cases()
    assert len(rows) >= 40 and [r[0] for r in rows] == list(range(1, len(rows) + 1))
    assert {r[1] for r in rows} == {"train", "search", "export", "report", "sync"}


def _preset(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def _data_files(root: Path) -> dict[str, str]:
    """Small own-data files (``{data:NAME}``): a good training and validation CSV, and broken ones."""
    folder = root / "own-data"
    folder.mkdir()
    rows = [f"{i},a {'fine' if i % 2 else 'dull'} film number {i},{'pos' if i % 2 else 'neg'}" for i in range(12)]
    files = {
        "train": ("train.csv", "id,text,label\n" + "\n".join(rows) + "\n"),
        "dev": ("dev.csv", "id,text,label\n" + "\n".join(rows[:6]) + "\n"),
        "empty": ("empty.csv", ""),
        "new-label": ("new-label.csv", "id,text,label\n1,a film,pos\n2,another film,maybe\n"),
        "one-label": ("one-label.csv", "text,label\n" + "".join(f"film {i},pos\n" for i in range(6))),
        "words": ("words.csv", "text,label\n" + "".join(f"film {i},{'high' if i % 2 else 'low'}\n" for i in range(8))),
        "broken-json": ("broken.json", '[{"text": "a film", "label": "pos"},\n {"text": "another film", "label": '),
    }
    out = {}
    for key, (name, text) in files.items():
        (folder / name).write_text(text, encoding="utf-8")
        out[f"data:{key}"] = str(folder / name)
    latin = folder / "latin1.csv"
    latin.write_bytes(("text,label\n" + "".join(f"caf\u00e9 {i},{'pos' if i % 2 else 'neg'}\n" for i in range(8)))
                      .encode("latin-1"))
    out["data:latin1"] = str(latin)
    return out


def _search_folder(root: Path, name: str, *, study: bool, broken: bool = False, empty_study: bool = False,
                   tracking: str = "") -> str:
    """A search folder as a finished search leaves it: search.json and a real Optuna study with one
    COMPLETE trial (or no study file at all, or a 0-byte one)."""
    import optuna

    from orchestrator.records.record import SCHEMA_VERSION, SearchChoices, SearchRecord

    folder = root / "searches" / name
    folder.mkdir(parents=True)
    if broken:
        (folder / "search.json").write_text("{not json")
        return str(folder)
    storage = f"sqlite:///{folder / 'optuna.db'}"
    choices = SearchChoices(task="sst2", method="increlora", model=None, data_dir=None, trials=1, sampler="tpe",
                            population_size=16, seed=0, scheduler="none", asha_grace=1, asha_reduction_factor=2.0,
                            objective="final", evaluations=1, tolerance=1.0, storage=storage,
                            tracking_uri=tracking or f"sqlite:///{root / 'unused-mlflow.db'}", artifact_root=None,
                            experiment_name="increlora-sst2", save_adapters=False, cpus_per_trial=1, argv=[])
    SearchRecord(version=SCHEMA_VERSION, name=name, search_dir=str(folder), status="finished", choices=choices,
                 study_name=name, ray_path=str(folder / "ray" / name)).save()
    if empty_study:
        (folder / "optuna.db").write_bytes(b"")
    if study:
        s = optuna.create_study(study_name=name, storage=storage, directions=["maximize", "minimize"])
        t = s.ask()
        t.suggest_float("target_rank", 1.0, 8.0)
        t.set_user_attr("config", {"target_rank": t.params["target_rank"], "method": "increlora"})
        s.tell(t, [60.0, 1000])
    return str(folder)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def servers():
    """An HTTP server and a server that accepts connections and never answers, on 127.0.0.1."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    httpd.RequestHandlerClass.log_message = lambda *a, **k: None
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # the kernel completes the handshakes; nobody ever reads or writes
    yield {"http-port": str(httpd.server_address[1]), "silent-port": str(silent.getsockname()[1]),
           "closed-port": str(_closed_port())}
    httpd.shutdown()
    silent.close()


@pytest.fixture(scope="module")
def placeholders(tmp_path_factory, glue_dir, servers):
    root = tmp_path_factory.mktemp("bad-inputs")
    (root / "a-file.txt").write_text("x")
    (root / "empty").mkdir()
    models = {}
    for kind, text in (("empty-config", ""), ("bad-json", "{model_type: bert"), ("no-type", '{"hidden_size": 4}')):
        folder = root / f"model-{kind}"
        folder.mkdir()
        (folder / "config.json").write_text(text)
        models[f"model:{kind}"] = str(folder)
    latin = root / "glue-latin1" / "CoLA"
    latin.mkdir(parents=True)
    for split in ("train", "dev"):
        text = (Path(glue_dir) / "CoLA" / f"{split}.tsv").read_text(encoding="utf-8")
        (latin / f"{split}.tsv").write_bytes(text.replace("a", "\u00e9", 5).encode("latin-1", errors="replace"))
    out = {
        "file": str(root / "a-file.txt"),
        "nowhere": NOWHERE,
        "empty": str(root / "empty"),
        "long-name": "x" * 300,
        "glue:latin1": str(root / "glue-latin1"),
        "preset:malformed": _preset(root / "malformed.yaml", "preset_version: 1\nmethod: [unclosed\n"),
        "preset:python-tag": _preset(root / "tag.yaml", "preset_version: 1\nmethod: !!python/object/apply:os.system ['true']\n"
                                                        "task: cola\nconfig: {}\n"),
        "preset:lora": _preset(root / "lora.yaml", "preset_version: 1\nmethod: lora\ntask: cola\nconfig: {r: 4}\n"),
        "space:bad-range": _preset(root / "space.yaml", "method: increlora\nparams:\n  target_rank: {type: float, low: 8, high: 1}\n"),
        "space:beta1-to-1.5": _preset(root / "beta1.yaml", "method: increlora\nparams:\n  beta1: {type: float, low: 0.5, high: 1.5}\n"),
        "space:rank-from--4": _preset(root / "rank.yaml", "method: increlora\nparams:\n  target_rank: {type: float, low: -4, high: 8}\n"),
        "space:alpha-choice--1": _preset(root / "alpha.yaml", "method: increlora\nparams:\n  lora_alpha: {type: categorical, choices: [16, -1]}\n"),
        "preset:banana-task": _preset(root / "banana.yaml", "preset_version: 1\nmethod: increlora\ntask: banana\nconfig: {}\n"),
        "search:ok": _search_folder(root, "ok", study=True),
        "search:no-study": _search_folder(root, "no-study", study=False),
        "search:broken-json": _search_folder(root, "broken", study=False, broken=True),
        "search:empty-study": _search_folder(root, "empty-study", study=False, empty_study=True),
        "search:mlflow-down": _search_folder(root, "mlflow-down", study=True,
                                             tracking=f"http://127.0.0.1:{servers['closed-port']}"),
        "search:in-use": _search_folder(root, "in-use", study=True),
        "searches": str(root / "searches"),
        **servers,
        **models,
        **_data_files(root),
    }
    # {search:in-use}: another process owns it (a lock on another open file description conflicts as a
    # second process's would); the lock is held for the module and let go when it ends
    from orchestrator.tracking.lock import SearchLock

    lock = SearchLock.acquire(Path(out["search:in-use"]), "in-use")
    yield out
    lock.release()


def _argv(cli: str, args: str, values: dict[str, str], tiny_model_dir: str, glue_dir: Path, work: Path) -> list[str]:
    argv = shlex.split(re.sub(r"\{([^}]+)\}", lambda m: values[m.group(1)], args))
    own_data = "--train-file" in argv or "--dataset" in argv
    if cli in ("train", "search"):
        if "--data-dir" not in argv and not own_data:
            argv += ["--data-dir", str(glue_dir)]
        if "--model" not in argv:
            argv += ["--model", tiny_model_dir]
    if cli == "search":
        if "--output-dir" not in argv:
            argv += ["--output-dir", str(work / "searches")]
        if "--tracking-uri" not in argv and "--resume" not in argv:
            argv += ["--tracking-uri", f"sqlite:///{work / 'mlflow.db'}"]
    if cli == "train":
        argv += ["--max-steps", "1", "--quiet"]
    return argv


def _main(cli: str):
    if cli == "train":
        from increlora.train import main
    elif cli == "search":
        from orchestrator.search import main
    elif cli == "export":
        from orchestrator.export import main
    elif cli == "sync":
        from orchestrator.sync import main
    else:
        from orchestrator.report import main
    return main


@pytest.mark.parametrize("number,cli,args,needle", cases(), ids=[f"{c[0]:02d}-{c[1]}" for c in cases()])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(number, cli, args, needle, placeholders, tiny_model_dir,
                                                         glue_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    argv = _argv(cli, args, placeholders, tiny_model_dir, glue_dir, tmp_path)
    before = _listing(Path(placeholders["empty"]).parent)
    t0 = time.perf_counter()
    rc = _main(cli)(argv)
    seconds = time.perf_counter() - t0
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert rc == 2, (rc, err)
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert needle in lines[0], lines[0]
    assert seconds < 30, seconds
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "files were written"
    assert _listing(Path(placeholders["empty"]).parent) == before, "a prepared file was created or changed"


def _listing(root: Path) -> list[tuple[str, int]]:
    """Every file and folder under ``root`` with its size (an empty optuna.db must stay empty)."""
    return sorted((str(p.relative_to(root)), p.stat().st_size if p.is_file() else -1) for p in root.rglob("*"))
