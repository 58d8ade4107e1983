"""Values outside every domain, fed to every CLI: one ``error:`` line, exit code 2, nothing written, in seconds.

Nothing here lists knobs or flags: the cases are generated from the domain tables
(:mod:`increlora.domains`; ``TRAIN_DOMAINS``, each method config's ``DOMAINS``) and from the CLIs' own
parsers (every flag whose argparse type was made by :meth:`Domain.parser`, and every training flag,
whose knob has a domain). A flag or knob added tomorrow is fuzzed here without anyone remembering to;
one added without a domain fails :func:`test_every_knob_and_numeric_flag_has_a_domain`.

Each bad value (below / above the bounds, the open bound itself, NaN and infinities, a fraction for a
whole number, a word for a number, a word outside a choice) goes in through every door a user has:
the training CLI's flag, the search CLI's flag, ``--set KNOB=VALUE``, a preset file's ``config`` and a
YAML search space (a range reaching outside, a choice outside). The CLIs run in-process through their
``main(argv)`` (a few also as real subprocesses) in an empty working folder.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from increlora import domains as D
from increlora.config import TRAIN_DOMAINS, TrainConfig
from increlora.registry import REGISTRY
from increlora.run_config import knob_domains
from search_spaces import PROTOCOL_KNOBS

REPO = Path(__file__).resolve().parents[1]
SECONDS = 10.0  # each bad value must be refused within this


# ------------------------------------------------------------------------------------------------
# The doors
# ------------------------------------------------------------------------------------------------


def _mains() -> dict[str, Callable[[list[str]], int]]:
    from increlora.train import main as train
    from orchestrator.export import main as export
    from orchestrator.report import main as report
    from orchestrator.search import main as search
    from orchestrator.sync import main as sync

    return {"train": train, "search": search, "export": export, "report": report, "sync": sync}


def _parsers() -> dict[str, Any]:
    from increlora.train import build_parser as train
    from orchestrator.export import build_parser as export
    from orchestrator.report import build_parser as report
    from orchestrator.search import build_parser as search
    from orchestrator.sync import build_parser as sync

    return {"train": train(), "search": search(), "export": export(), "report": report(), "sync": sync()}


def _all_knob_domains() -> dict[str, D.Domain]:
    out = dict(TRAIN_DOMAINS)
    for spec in REGISTRY.values():
        out.update(spec.config_cls.DOMAINS)
    return out


def _method_of(knob: str) -> str:
    """A method that has ``knob`` (the default one for training knobs)."""
    if knob in TRAIN_DOMAINS:
        return "increlora"
    return next(m for m, spec in REGISTRY.items() if knob in spec.config_cls.DOMAINS)


def checked_flags(cli: str) -> list[tuple[str, str, D.Domain]]:
    """(flag, dest, domain) of every flag of ``cli`` whose value has a domain."""
    knobs = _all_knob_domains()
    out = []
    for action in _parsers()[cli]._actions:
        if not action.option_strings or action.dest == "help":
            continue
        domain = getattr(action.type, "domain", None)
        if domain is None and action.dest in knobs and knobs[action.dest].kind != D.TEXT:
            domain = knobs[action.dest]  # the training CLI checks its flags through the knob's domain
        if domain is not None:
            out.append((action.option_strings[0], action.dest, domain))
    return out


def cli_text(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"
    return str(value)


def yaml_text(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else ".inf" if value > 0 else "-.inf"
    return "''" if value == "" else str(value)


def inside(domain: D.Domain) -> float:
    """A number strictly inside a numeric domain."""
    low, high = domain.low, domain.high
    if low is not None and high is not None:
        value = (low + high) / 2
    elif low is not None:
        value = low + 1
    elif high is not None:
        value = high - 1
    else:
        value = 1
    return int(value) if domain.kind == D.INT else float(value)


# ------------------------------------------------------------------------------------------------
# The cases
# ------------------------------------------------------------------------------------------------


def flag_cases() -> list[tuple[str, str, list[list[str]]]]:
    """(cli, flag, [argv per bad value]) for every checked flag of the five CLIs."""
    out = []
    for cli in ("train", "search", "export", "report", "sync"):
        for flag, dest, domain in checked_flags(cli):
            if domain.kind == D.NAMES:
                continue  # any text is a list of names on a command line
            if domain.kind == D.BOOL:
                argvs = [[f"{flag}=maybe"]]
            else:
                argvs = [[flag, cli_text(v)] for v in domain.bad_values()]
            if cli == "train" and dest not in TRAIN_DOMAINS and dest != "method":
                argvs = [["--method", _method_of(dest), *a] for a in argvs]
            out.append((cli, flag, argvs))
    return out


def knob_cases() -> list[tuple[str, str, D.Domain]]:
    """(method, knob, domain) for every knob: the training knobs once, each method's knobs with it."""
    out = [("increlora", k, d) for k, d in TRAIN_DOMAINS.items()]
    for method, spec in REGISTRY.items():
        out += [(method, k, d) for k, d in spec.config_cls.DOMAINS.items()]
    return out


def space_docs(method: str, knob: str, domain: D.Domain) -> list[dict]:
    """Space files whose range or choice for ``knob`` reaches outside its domain."""
    docs = []
    for bad in domain.bad_values():
        if domain.kind in (D.INT, D.FLOAT) and isinstance(bad, (int, float)):
            kind = "int" if domain.kind == D.INT else "float"
            good = inside(domain)
            below = domain.low is not None and math.isfinite(bad) and bad <= domain.low
            spec = {"type": kind, "low": bad, "high": good} if below else {"type": kind, "low": good, "high": bad}
            docs.append({"method": method, "params": {knob: spec}})
        docs.append({"method": method, "params": {knob: {"type": "categorical", "choices": [bad]}}})
    return docs


FLAGS = flag_cases()
KNOBS = knob_cases()
SEARCHABLE = [(m, k, d) for m, k, d in KNOBS if k not in PROTOCOL_KNOBS]


def count_cases() -> dict[str, int]:
    return {
        "flags": len(FLAGS), "flag values": sum(len(a) for _, _, a in FLAGS),
        "knobs": len({(m if k not in TRAIN_DOMAINS else "", k) for m, k, _ in KNOBS}),
        "--set values": sum(len(d.bad_values()) for _, _, d in KNOBS),
        "preset values": sum(len(d.bad_values()) for _, _, d in KNOBS),
        "space files": sum(len(space_docs(m, k, d)) for m, k, d in SEARCHABLE),
    }


# ------------------------------------------------------------------------------------------------
# The contract
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def refuse(tiny_model_dir, glue_dir, tmp_path, monkeypatch, capsys):
    """``refuse(cli, argv, *names)``: the CLI exits 2 with one ``error:`` line naming one of ``names``,
    within SECONDS, and writes nothing into its working folder."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    mains = _mains()
    capsys.readouterr()

    def run(cli: str, argv: list[str], *names: str) -> str:
        full = []  # what every run needs, before the case (the last value of a flag wins)
        if cli in ("train", "search"):
            full += ["--data-dir", str(glue_dir), "--model", tiny_model_dir]
        if cli == "train":
            full += ["--max-steps", "1", "--quiet"]
        if cli == "search":
            # a value that slipped through would meet a CPU request no cluster of 1 CPU meets
            full += ["--output-dir", str(work / "searches"), "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}",
                     "--num-cpus", "1", "--cpus-per-trial", "2"]
        if cli in ("export", "report", "sync"):
            full += ["--search", "no-such-search", *(["--out", "out"] if cli == "export" else [])]
        full += argv
        t0 = time.perf_counter()
        rc = mains[cli](full)
        seconds = time.perf_counter() - t0
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        where = f"{cli} {' '.join(argv)}"
        assert rc == 2, (where, rc, err)
        assert len(lines) == 1 and lines[0].startswith("error:"), (where, err)
        assert any(n in lines[0] for n in names), (where, lines[0])
        assert seconds < SECONDS, (where, seconds)
        assert sorted(p.name for p in work.iterdir()) == [], (where, "files were written")
        return lines[0]

    return run


@pytest.mark.parametrize("cli,flag,argvs", FLAGS, ids=[f"{c}{f}" for c, f, _ in FLAGS])
def test_every_bad_flag_value_is_refused(cli, flag, argvs, refuse):
    dest = flag.lstrip("-").replace("-", "_")
    for argv in argvs:
        refuse(cli, argv, flag, dest)


@pytest.mark.parametrize("method,knob,domain", KNOBS, ids=[f"{m}.{k}" for m, k, _ in KNOBS])
def test_every_bad_knob_value_is_refused_by_set_and_by_presets(method, knob, domain, refuse, tmp_path):
    for bad in domain.bad_values():
        refuse("search", ["--method", method, "--set", f"{knob}={yaml_text(bad)}"], knob)
        preset = tmp_path / "preset.yaml"
        preset.write_text(yaml.safe_dump({"preset_version": 1, "method": method, "task": "cola", "config": {knob: bad}}))
        refuse("train", ["--preset", str(preset)], knob)


@pytest.mark.parametrize("method,knob,domain", SEARCHABLE, ids=[f"{m}.{k}" for m, k, _ in SEARCHABLE])
def test_every_space_reaching_outside_a_domain_is_refused(method, knob, domain, refuse, tmp_path):
    for i, doc in enumerate(space_docs(method, knob, domain)):
        path = tmp_path / f"space{i}.yaml"
        path.write_text(yaml.safe_dump(doc))
        refuse("search", ["--method", method, "--space", str(path)], knob)


def test_a_preset_for_an_unknown_task_is_refused(refuse, tmp_path):
    preset = tmp_path / "banana.yaml"
    preset.write_text("preset_version: 1\nmethod: increlora\ntask: banana\nconfig: {target_rank: 2}\n")
    for cli in ("train", "search"):
        assert "unknown GLUE task 'banana'" in refuse(cli, ["--preset", str(preset)], "task")


@pytest.mark.parametrize("value", ["!!python/object/apply:os.system ['true']", "!!python/name:os.system", "[unclosed"])
def test_set_refuses_what_yaml_cannot_load_instead_of_passing_a_string(value, refuse):
    refuse("search", ["--set", f"lora_alpha={value}"], "not a plain YAML value")


# ------------------------------------------------------------------------------------------------
# The tables are complete and agree with the code
# ------------------------------------------------------------------------------------------------


def _kinds_for(hint: Any) -> set[str]:
    text = str(hint)
    if "bool" in text:
        return {D.BOOL}
    if "list" in text:
        return {D.NAMES}
    if "float" in text:
        return {D.FLOAT}
    if "int" in text:
        return {D.INT}
    return {D.TEXT, D.CHOICE, D.TASK, D.METHOD}


def test_every_knob_and_numeric_flag_has_a_domain():
    import dataclasses
    from typing import get_type_hints

    for cls, table in [(TrainConfig, TRAIN_DOMAINS)] + [(s.config_cls, s.config_cls.DOMAINS) for s in REGISTRY.values()]:
        hints = get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        assert sorted(table) == sorted(names), f"{cls.__name__}: knobs without a domain: {set(names) - set(table)}"
        for name in names:
            assert table[name].kind in _kinds_for(hints[name]), (cls.__name__, name, table[name].kind, hints[name])
            default = getattr(cls(), name)
            if default is not None:
                assert table[name].problem(default) is None, f"{cls.__name__}.{name}: the default {default!r} is outside"
    for cli, parser in _parsers().items():
        checked = {dest for _, dest, _ in checked_flags(cli)}
        for action in parser._actions:
            numeric = action.type in (int, float) or getattr(action.type, "__name__", "") in ("positive_int", "non_negative_float")
            assert not (numeric and action.dest not in checked), f"{cli} {action.option_strings}: a number without a domain"


def test_every_bad_value_is_outside_and_every_domain_says_so():
    for method, knob, domain in KNOBS:
        bad = domain.bad_values()
        assert bad, knob
        for value in bad:
            problem = domain.problem(value)
            assert problem and "\n" not in problem, (knob, value)
    assert D.SEED.problem(2**32 - 1) is None and D.SEED.problem(2**32) is not None
    assert TRAIN_DOMAINS["device"].problem("cuda:3") is None and TRAIN_DOMAINS["device"].problem("cuda:x")


def test_the_built_in_spaces_lie_inside_the_domains():
    from increlora.budget import adapted_shapes, params_budget_range
    from search_spaces import default_space, optional_knobs

    spaces = [default_space(m, "mrpc", extra=optional_knobs(m)) for m in REGISTRY]
    spaces.append(default_space("increlora", "mrpc", budget_params=params_budget_range(adapted_shapes(None))))
    for space in spaces:
        domains = knob_domains(space.method)
        for p in space.params:
            values = p.choices if p.type == "categorical" else (p.low, p.high)
            for v in values:
                assert v is None or domains[p.name].problem(v) is None, (space.method, p.name, v)


def test_counts(capsys):
    """How much the fuzz covers (printed with -s; the report quotes it)."""
    counts = count_cases()
    with capsys.disabled():
        print("\nfuzz coverage:", counts)
    assert counts["flags"] >= 60 and counts["knobs"] >= 60


# ------------------------------------------------------------------------------------------------
# The real entry points, for a sample
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("module,args,needle", [
    ("orchestrator.search", ["--set", "beta1=1.5"], "beta1: must be in [0, 1), got 1.5"),
    ("increlora.train", ["--target-rank", "1e9"], "target_rank: must be in (0, 1024]"),
])
def test_a_sample_through_the_real_entry_points(module, args, needle, tiny_model_dir, glue_dir, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    extra = ["--data-dir", str(glue_dir), "--model", tiny_model_dir]
    if module == "orchestrator.search":
        extra += ["--output-dir", str(tmp_path / "searches"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", module, *args, *extra], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    seconds = time.perf_counter() - t0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], proc.stderr
    assert seconds < 30, seconds  # an interpreter start with torch on a loaded 2-core machine
    assert list(tmp_path.iterdir()) == []
