"""increlora.presets (schema, load/save) and orchestrator.records.presets (export from a search)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import yaml

from increlora.run_config import build_run_config
from increlora.presets import (
    PRESET_VERSION,
    Preset,
    PresetError,
    load_preset,
    parse_preset,
    preset_overrides,
    save_preset,
)
from increlora.naming import allocation_summary
from orchestrator.records.presets import export_presets, front_table
from orchestrator.records.trial_record import TrialRecord


def _preset(**kw) -> Preset:
    base = dict(
        preset_version=PRESET_VERSION,
        method="increlora",
        task="cola",
        config={"target_rank": 4.0, "init_warmup_frac": 0.1, "incre_interval": 50, "learning_rate": 5e-4},
        provenance={"score": 55.5, "trial": 3},
        name="knee",
    )
    base.update(kw)
    return Preset(**base)


def _write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def _one_line_error(path: Path) -> str:
    with pytest.raises(PresetError) as info:
        load_preset(path)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


GOOD = """\
preset_version: 1
method: lora
task: rte
config:
  r: 4
  learning_rate: 0.0005
"""


def test_round_trip(tmp_path):
    preset = _preset()
    path = save_preset(preset, tmp_path / "sub" / "cola-knee.yaml")
    assert path.exists()
    text = path.read_text()
    assert text.startswith("# ")
    assert load_preset(path) == preset
    assert not [f for f in os.listdir(path.parent) if f.endswith(".tmp")]


def test_a_version_1_increlora_preset_is_read_as_the_variant_it_was_found_with(tmp_path):
    """Version 1 presets predate official mode as the default: without reproduce_official they mean the variant;
    one that names it keeps its value, and a preset written today names it and is version 2."""
    old = _write(tmp_path, "preset_version: 1\nmethod: increlora\ntask: cola\nconfig: {target_rank: 2.0}\n")
    assert load_preset(old).config["reproduce_official"] is False
    assert build_run_config({**load_preset(old).config, "method": "increlora"}).method.reproduce_official is False
    named = _write(tmp_path, "preset_version: 1\nmethod: increlora\ntask: cola\nconfig: {reproduce_official: true}\n", "n.yaml")
    assert load_preset(named).config["reproduce_official"] is True
    new = _write(tmp_path, "preset_version: 2\nmethod: increlora\ntask: cola\nconfig: {target_rank: 2.0}\n", "v2.yaml")
    assert "reproduce_official" not in load_preset(new).config
    assert build_run_config({**load_preset(new).config, "method": "increlora"}).method.reproduce_official is True
    lora = _write(tmp_path, GOOD, "lora.yaml")  # other methods have no such knob
    assert "reproduce_official" not in load_preset(lora).config
    assert PRESET_VERSION == 2


def test_round_trip_without_name_and_provenance(tmp_path):
    preset = Preset(preset_version=1, method="adalora", task="mrpc", config={"init_r": 6, "target_r": 3.0})
    path = save_preset(preset, tmp_path / "a.yaml")
    assert "name:" not in path.read_text()
    assert load_preset(path) == preset


def test_save_converts_numpy_scalars(tmp_path):
    np = pytest.importorskip("numpy")
    preset = _preset(config={"target_rank": np.float64(3.0), "top_h": np.int64(2)},
                     provenance={"score": np.float32(1.5), "ok": np.bool_(True)})
    loaded = load_preset(save_preset(preset, tmp_path / "n.yaml"))
    assert loaded.config == {"target_rank": 3.0, "top_h": 2}
    assert type(loaded.config["top_h"]) is int
    assert loaded.provenance["ok"] is True


def test_save_refuses_invalid_preset(tmp_path):
    with pytest.raises(PresetError, match="config.bogus"):
        save_preset(_preset(config={"bogus": 1}), tmp_path / "bad.yaml")
    assert not list(tmp_path.iterdir())


def test_load_good_file_and_overrides(tmp_path):
    preset = load_preset(_write(tmp_path, GOOD))
    assert preset.method == "lora" and preset.task == "rte" and preset.name is None
    assert preset.provenance == {}
    overrides = preset_overrides(preset)
    assert overrides == {"r": 4, "learning_rate": 0.0005, "method": "lora"}
    cfg = build_run_config(overrides)
    assert cfg.method.r == 4 and cfg.train.method == "lora"


def test_missing_file(tmp_path):
    p = tmp_path / "nope.yaml"
    assert _one_line_error(p) == f"preset file not found: {p}"


def test_yaml_syntax_error_is_one_line(tmp_path):
    p = _write(tmp_path, "preset_version: 1\nconfig: {a: 1\nmethod: lora\n")
    msg = _one_line_error(p)
    assert msg.startswith(f"{p}: invalid YAML")
    assert "line" in msg


def test_unknown_top_level_key(tmp_path):
    msg = _one_line_error(_write(tmp_path, GOOD + "extra: 1\n"))
    assert "unknown top-level key 'extra'" in msg


def test_unknown_config_key(tmp_path):
    p = _write(tmp_path, GOOD + "  warp_speed: 9\n")
    msg = _one_line_error(p)
    assert msg.startswith(f"{p}: config.warp_speed:")


def test_config_key_of_another_method(tmp_path):
    msg = _one_line_error(_write(tmp_path, GOOD + "  target_rank: 2\n"))
    assert "config.target_rank:" in msg and "lora" in msg


def test_wrong_type_in_config(tmp_path):
    msg = _one_line_error(_write(tmp_path, GOOD.replace("r: 4", "r: four")))
    assert "config.r:" in msg and "int" in msg


def test_out_of_range_in_config(tmp_path):
    msg = _one_line_error(_write(tmp_path, GOOD.replace("r: 4", "r: 0")))
    assert "config.r:" in msg


@pytest.mark.parametrize(
    "text, key",
    [
        (GOOD.replace("preset_version: 1", "preset_version: '1'"), "preset_version"),
        (GOOD.replace("preset_version: 1", "preset_version: true"), "preset_version"),
        (GOOD.replace("preset_version: 1", "preset_version: 7"), "preset_version"),
        (GOOD.replace("method: lora", "method: [lora]"), "method"),
        (GOOD.replace("method: lora", "method: qlora"), "method"),
        (GOOD.replace("task: rte", "task: 3"), "task"),
        (GOOD + "provenance: [1, 2]\n", "provenance"),
        (GOOD + "name: 5\n", "name"),
        ("preset_version: 1\nmethod: lora\ntask: rte\nconfig: [r, 4]\n", "config"),
    ],
)
def test_wrong_types_name_the_key(tmp_path, text, key):
    msg = _one_line_error(_write(tmp_path, text))
    assert f": {key}:" in msg


def test_missing_required_key_and_bad_top_level(tmp_path):
    assert "'task'" in _one_line_error(_write(tmp_path, GOOD.replace("task: rte\n", "")))
    assert "mapping" in _one_line_error(_write(tmp_path, "- 1\n- 2\n"))
    assert "empty" in _one_line_error(_write(tmp_path, ""))


def test_config_method_must_agree():
    with pytest.raises(PresetError, match="contradicts"):
        parse_preset({"preset_version": 1, "method": "lora", "task": "rte", "config": {"method": "adalora"}})
    ok = parse_preset({"preset_version": 1, "method": "lora", "task": "rte", "config": {"method": "lora", "r": 2}})
    assert ok.config == {"r": 2}


# ---------------------------------------------------------------- export from a search


def _alloc(ranks: list[int]) -> dict[str, int]:
    names = ["attention.self.query", "attention.self.key", "attention.self.value",
             "attention.output.dense", "intermediate.dense", "output.dense"]
    return {f"bert.encoder.layer.{i // 6}.{names[i % 6]}": r for i, r in enumerate(ranks)}


def _trials() -> list[TrialRecord]:
    def t(number, score, params, state="COMPLETE", **cfg):
        config = {"method": "increlora", "target_rank": 2.0, "init_warmup_frac": 0.1,
                  "incre_interval_frac": 0.05, "learning_rate": 1e-3, "data_dir": "/data/glue",
                  "task": "cola", "device": "cpu", **cfg}
        return TrialRecord(number=number, state=state, score=score, adapter_params=params, config=config,
                           allocation=_alloc([1 + (number + k) % 4 for k in range(12)]), mlflow_run_id=f"run{number}")

    return [
        t(0, 50.0, 10_000, target_rank=1.0),
        t(1, 58.0, 20_000, target_rank=2.0),
        t(2, 59.5, 60_000, target_rank=4.0),
        t(3, 60.0, 120_000, target_rank=8.0),
        t(4, 55.0, 90_000),                         # dominated
        t(5, 99.0, 5_000, state="PRUNED"),          # would dominate everything
        t(6, 99.0, 5_000, state="FAIL"),
        TrialRecord(number=7, state="RUNNING", config={"method": "increlora"}),
        t(8, 59.5, 60_000, target_rank=4.0),        # duplicate of trial 2
    ]


def test_export_presets_writes_three_files(tmp_path):
    paths = export_presets(_trials(), tmp_path / "presets", task="cola", model="minilm",
                           search_name="s1", package_version="0.1.0", train_size=2000)
    assert [p.name for p in paths] == ["cola-best.yaml", "cola-smallest.yaml", "cola-knee.yaml"]
    best, smallest, knee = (load_preset(p) for p in paths)
    assert best.name == "best" and best.provenance["trial"] == 3
    assert smallest.provenance["trial"] == 2  # 59.5 >= 60 - 1 with half the params
    assert knee.provenance["trial"] == 1
    for preset in (best, smallest, knee):
        prov = preset.provenance
        assert preset.method == "increlora" and preset.task == "cola"
        assert {"task", "data_dir", "device", "method"}.isdisjoint(preset.config)
        assert preset.config["init_warmup_frac"] == 0.1
        assert prov["task"] == "cola" and prov["model"] == "minilm" and prov["train_size"] == 2000
        assert prov["search"] == "s1" and prov["package_version"] == "0.1.0"
        assert prov["mlflow_run_id"] == f"run{prov['trial']}"
        assert prov["date"][:2] == "20" and "T" in prov["date"]
        alloc = prov["allocation"]
        assert alloc["modules"] == 12
        assert alloc["total_rank"] == sum(alloc["rank_by_type"].values())
        assert alloc["min_rank"] <= alloc["mean_rank"] <= alloc["max_rank"]
        assert list(alloc["rank_by_type"]) == ["q", "k", "v", "o", "f1", "f2"]
        assert prov["trial"] not in (4, 5, 6, 7)


def test_export_presets_same_trial_for_several_labels(tmp_path):
    trials = [t for t in _trials() if t.number in (0, 3)]
    trials[0] = dataclasses.replace(trials[0], score=59.8)  # now trial 0 is within one point of the best
    paths = export_presets(trials, tmp_path, task="rte", model=None, search_name="s",
                           package_version="0", train_size=None)
    assert len(paths) == 3 and all(p.exists() for p in paths)
    smallest = load_preset(tmp_path / "rte-smallest.yaml")
    knee = load_preset(tmp_path / "rte-knee.yaml")
    assert smallest.provenance["trial"] == 0
    assert knee.provenance["trial"] == 3  # two-point front: knee = best
    assert load_preset(tmp_path / "rte-best.yaml").provenance["selected_as"] == ["best", "knee"]


def test_export_presets_needs_a_complete_trial(tmp_path):
    trials = [t for t in _trials() if t.state != "COMPLETE"]
    with pytest.raises(ValueError, match="COMPLETE"):
        export_presets(trials, tmp_path, task="cola", model=None, search_name="s",
                       package_version="0", train_size=None)


def test_front_table_sorted_and_deduplicated():
    rows = front_table(_trials())
    assert [r["trial"] for r in rows] == [0, 1, 2, 3]
    assert [r["adapter_params"] for r in rows] == sorted(r["adapter_params"] for r in rows)
    by_trial = {r["trial"]: r for r in rows}
    assert by_trial[2]["also_trials"] == "8"
    assert by_trial[3]["labels"] == "best"
    assert by_trial[2]["labels"] == "smallest"
    assert by_trial[1]["labels"] == "knee"
    assert all(not isinstance(v, (list, dict)) for r in rows for v in r.values())
    assert front_table([]) == []


def test_allocation_summary_short_keys():
    s = allocation_summary({"L00.q": 2, "rank.L01.q": 4, "L00.f2": 1, "classifier": 3})
    assert s["total_rank"] == 10 and s["modules"] == 4
    assert s["rank_by_type"] == {"q": 6, "f2": 1, "other": 3}
    assert allocation_summary({}) == {"modules": 0, "total_rank": 0}
    assert yaml.safe_load(yaml.safe_dump(s)) == s


def test_presets_below_chance_are_marked_and_warn_their_users(tmp_path):
    """With the majority-class score at 59.5 (+1 point margin), only trial 3 (60.0) is not 'learned'
    either: every preset is marked, carries the warning, and says so in its header."""
    from increlora.presets import learned_nothing

    paths = export_presets(_trials(), tmp_path, task="cola", model=None, search_name="s",
                           package_version="0", train_size=None, chance_score=59.5)
    for path in paths:
        preset = load_preset(path)
        assert preset.provenance["above_chance"] is False and preset.provenance["chance_score"] == 59.5
        assert "not above the majority-class score 59.50" in learned_nothing(preset)
        assert path.read_text().splitlines()[2].startswith("# WARNING: scored ")
    # a chance line the scores clear: marked as learned, no warning
    paths = export_presets(_trials(), tmp_path / "ok", task="cola", model=None, search_name="s",
                           package_version="0", train_size=None, chance_score=40.0)
    for path in paths:
        preset = load_preset(path)
        assert preset.provenance["above_chance"] is True and learned_nothing(preset) is None
        assert "WARNING" not in path.read_text()


def test_above_chance_needs_more_than_the_margin():
    from increlora.budget import above_chance

    assert above_chance(1.01, 0.0) and not above_chance(1.0, 0.0) and not above_chance(-5.0, 0.0)
    assert not above_chance(float("nan"), 0.0)
    assert above_chance(52.0, 50.92) and not above_chance(51.5, 50.92)


def test_allocation_history_rebuilds_every_growth_round():
    from increlora.naming import allocation_history

    events = [{"step": 4, "module": "a", "added": 1}, {"step": 4, "module": "b", "added": 1},
              {"step": 6, "module": "a", "added": 2}]
    assert allocation_history({"a": 4, "b": 2, "c": 1}, events) == [
        (0, {"a": 1, "b": 1, "c": 1}), (4, {"a": 2, "b": 2, "c": 1}), (6, {"a": 4, "b": 2, "c": 1})]
    assert allocation_history({"a": 1}, []) == []
