"""The confirmation stage, replicates of repeated configurations, the seed statistics and knob importance.

Unit tests check the numbers against scipy and the plans against hand-made fronts; the end-to-end test runs a
real search (local Ray, Optuna sqlite study, MLflow sqlite store, a tiny random BERT on real SST-2 rows) with
the confirmation on, then resumes it after one confirmation run is lost. Nothing is mocked.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from scipy import stats

from orchestrator.running.confirmation import NOISE_SDS, plan_stage1, plan_stage2
from orchestrator.records.seed_runs import read_confirmations
from orchestrator.records.results import SearchResults, configuration_pool, front_and_picks
from orchestrator.records.trial_record import TrialRecord
from orchestrator.records.seed_stats import SeedStats, paired_difference, pooled_sd, seed_for


# ----------------------------------------------------------------------------------------------
# Seed statistics
# ----------------------------------------------------------------------------------------------


def test_seed_stats_match_scipy():
    s = SeedStats({0: 10.0, 1: 12.0, 2: 14.0, 3: 11.0})
    values = [10.0, 12.0, 14.0, 11.0]
    assert s.n == 4 and s.mean == pytest.approx(11.75)
    assert s.sd == pytest.approx(stats.tstd(values))
    lo, hi = stats.t.interval(0.95, 3, loc=11.75, scale=stats.sem(values))
    assert s.interval == pytest.approx((lo, hi))
    assert SeedStats({0: 5.0}).interval is None and SeedStats({0: 5.0}).sd is None
    assert "± " in s.text() and "(n 4)" in s.text()


def test_paired_difference_uses_common_seeds_only():
    a = SeedStats({0: 10.0, 1: 12.0, 2: 14.0, 3: 11.0})
    b = SeedStats({0: 9.0, 1: 11.0, 2: 13.5, 3: 10.2, 7: 99.0})
    d = paired_difference(a, b)
    diffs = [1.0, 1.0, 0.5, 0.8]
    assert d.n == 4 and d.mean == pytest.approx(sum(diffs) / 4)
    assert d.interval == pytest.approx(stats.t.interval(0.95, 3, loc=sum(diffs) / 4, scale=stats.sem(diffs)))
    assert d.separable  # every seed says a > b
    noisy = paired_difference(SeedStats({0: 10.0, 1: 5.0, 2: 12.0}), SeedStats({0: 9.0, 1: 8.0, 2: 10.0}))
    assert not noisy.separable
    assert paired_difference(SeedStats({0: 1.0}), SeedStats({1: 1.0})) is None


def test_pooled_sd_weights_by_degrees_of_freedom():
    g1, g2 = SeedStats({0: 1.0, 1: 3.0}), SeedStats({0: 0.0, 1: 2.0, 2: 4.0})
    expected = math.sqrt((1 * g1.sd ** 2 + 2 * g2.sd ** 2) / 3)
    assert pooled_sd([g1, g2, SeedStats({0: 7.0})]) == pytest.approx(expected)
    assert pooled_sd([SeedStats({0: 7.0})]) is None
    assert seed_for(42, 0) == 42 and seed_for(42, 2) == 2042


# ----------------------------------------------------------------------------------------------
# Configurations: replicates and confirmation runs
# ----------------------------------------------------------------------------------------------


def _trial(number, score, params, **extra):
    return TrialRecord(number=number, state="COMPLETE", score=score, adapter_params=params, params={"x": number},
                       config={"method": "increlora"}, run_name=f"t{number:03d}", **extra)


def test_pool_merges_replicates_and_confirmations():
    record = SimpleNamespace(tolerance=1.0)
    complete = [_trial(0, 50.0, 100), _trial(1, 60.0, 200), _trial(2, 58.0, 200, replicate_of=1, seed_index=1)]
    pool, confirmed = configuration_pool(record, complete, {})
    assert not confirmed and [r.number for r in pool] == [0, 1]
    one = pool[1]
    assert one.n == 2 and one.score == pytest.approx(59.0) and one.single_score == 60.0
    assert one.members == (1, 2) and one.seed_scores == {0: 60.0, 1: 58.0}
    assert one.run_name == "t001" and one.params == {"x": 1}  # the representative trial's record
    # a confirmation run of trial 1 on seed index 2; trial 0 has none, so the confirmed pool leaves it out
    pool, confirmed = configuration_pool(record, complete, {1: {2: {"score": 62.0, "adapter_params": 200.0}},
                                                             9: {1: {"score": 1.0, "adapter_params": 1.0}}})
    assert confirmed and [r.number for r in pool] == [1]
    assert pool[0].n == 3 and pool[0].score == pytest.approx(60.0)
    lo, hi = stats.t.interval(0.95, 2, loc=60.0, scale=stats.sem([60.0, 58.0, 62.0]))
    assert (pool[0].ci_low, pool[0].ci_high) == pytest.approx((lo, hi))


def _results(complete, tolerance=1.0):
    record = SimpleNamespace(tolerance=tolerance)
    front, picks = front_and_picks(complete, tolerance)
    return SearchResults(record=record, trials=list(complete), complete=list(complete), front=front, picks=picks)


def test_plans_confirm_the_front_then_what_lies_within_the_noise():
    complete = [_trial(0, 50.0, 100), _trial(1, 60.0, 200), _trial(2, 70.0, 400),
                _trial(3, 69.0, 500),  # 1 point below the front at its size: within the noise
                _trial(4, 40.0, 300)]  # 20 points below: not
    results = _results(complete)
    stage1, jobs1 = plan_stage1(results, k=2, cap=8)
    assert sorted(stage1) == [0, 1, 2] and stage1[0] == 2  # the best first
    assert sorted(jobs1) == [(n, j) for n in (0, 1, 2) for j in (1, 2)]
    confirmations = {n: {j: {"score": s + d, "adapter_params": p}
                         for j, d in ((1, -1.0), (2, 1.0))} for n, s, p in ((0, 50.0, 100.0), (1, 60.0, 200.0),
                                                                           (2, 70.0, 400.0))}
    sd, stage2, jobs2 = plan_stage2(results, 2, 8, stage1, len(jobs1), confirmations)
    assert sd == pytest.approx(1.0) and 1.0 <= NOISE_SDS * sd
    assert stage2 == [3] and jobs2 == [(3, 1), (3, 2)]
    # the cap bounds both stages: 4 runs confirm two front configurations and leave nothing for stage 2
    stage1, jobs1 = plan_stage1(results, k=2, cap=4)
    assert len(jobs1) == 4 and len(stage1) == 2
    assert plan_stage2(results, 2, 4, stage1, 4, confirmations)[2] == []


def test_picks_name_the_configurations_of_the_pool():
    """``picks`` index the pool, which differs from the COMPLETE trials once replicates merge or the
    confirmation stage leaves out single-seed configurations: search.json's picks read the pool."""
    record = SimpleNamespace(tolerance=1.0)
    complete = [_trial(0, 50.0, 100), _trial(1, 40.0, 50), _trial(2, 60.0, 200),
                _trial(3, 61.0, 200, replicate_of=2, seed_index=1)]
    pool, confirmed = configuration_pool(record, complete, {0: {1: {"score": 51.0, "adapter_params": 100.0}},
                                                             2: {2: {"score": 59.0, "adapter_params": 200.0}}})
    assert confirmed and [c.number for c in pool] == [0, 2]  # trial 1 has one seed: left out
    front, picks = front_and_picks(pool, 1.0)
    assert picks == {"best": 1, "smallest": 1, "knee": 1}
    results = SearchResults(record=record, trials=complete, complete=complete, front=front, picks=picks, pool=pool,
                            confirmed=confirmed)
    assert results.pick_numbers() == {"best": 2, "smallest": 2, "knee": 2}  # not complete[1], trial 1


def test_a_replicate_counts_towards_the_seeds_it_needs():
    complete = [_trial(0, 50.0, 100), _trial(1, 49.0, 100, replicate_of=0, seed_index=1)]
    stage1, jobs = plan_stage1(_results(complete), k=2, cap=10)
    assert stage1 == [0] and jobs == [(0, 2)]


# ----------------------------------------------------------------------------------------------
# The searcher: a repeated configuration becomes a replicate on the next seed
# ----------------------------------------------------------------------------------------------


def test_repeated_configuration_becomes_a_replicate(tmp_path):
    optuna = pytest.importorskip("optuna")
    from orchestrator.running.searcher import MultiObjectiveOptunaSearch
    from orchestrator.running.trial_report import TRIAL_NUMBER_KEY
    from search_spaces import SpaceContext, default_space, make_space_fn

    space = default_space("lora", "sst2")  # one knob: r
    searcher = MultiObjectiveOptunaSearch(
        make_space_fn(space, SpaceContext(task="sst2", total_steps=10)), sampler=optuna.samplers.RandomSampler(seed=0),
        storage=optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o.db'}"), study_name="dup",
        enqueue=[({"r": 4}, {}), ({"r": 4}, {}), ({"r": 4}, {}), ({"r": 8}, {})], base_seed=42)
    configs = [searcher.suggest(f"t{i}") for i in range(4)]
    assert [c[TRIAL_NUMBER_KEY] for c in configs] == [0, 1, 2, 3]
    assert "seed" not in configs[0] and "seed" not in configs[3]
    assert (configs[1]["seed"], configs[1]["seed_index"]) == (1042, 1)
    assert (configs[2]["seed"], configs[2]["seed_index"]) == (2042, 2)
    trials = searcher.study.get_trials(deepcopy=False)
    assert trials[1].user_attrs["replicate_of"] == 0 and trials[2].user_attrs["replicate_of"] == 0
    assert "replicate_of" not in trials[3].user_attrs
    without = MultiObjectiveOptunaSearch(
        make_space_fn(space, SpaceContext(task="sst2", total_steps=10)), sampler=optuna.samplers.RandomSampler(seed=0),
        storage=optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o2.db'}"), study_name="dup2",
        enqueue=[({"r": 4}, {}), ({"r": 4}, {})])
    assert "seed" not in without.suggest("a") and "seed" not in without.suggest("b")


# ----------------------------------------------------------------------------------------------
# Knob importance
# ----------------------------------------------------------------------------------------------


def test_importance_finds_the_knob_that_moves_the_score():
    optuna = pytest.importorskip("optuna")
    import numpy as np

    from orchestrator.records.importance import knob_importance

    rng = np.random.default_rng(0)
    study = optuna.create_study(directions=["maximize", "minimize"])
    for _ in range(40):
        lr, beta2, r = 10 ** rng.uniform(-4, -2), rng.uniform(0.6, 0.95), int(rng.integers(1, 17))
        score = 20.0 * (math.log10(lr) + 4) + rng.normal(0, 1.0)
        study.add_trial(optuna.trial.create_trial(
            params={"learning_rate": lr, "beta2": beta2, "r": r},
            distributions={"learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
                           "beta2": optuna.distributions.FloatDistribution(0.6, 0.95),
                           "r": optuna.distributions.IntDistribution(1, 16)},
            values=[score, 1000.0 * r]))
    imp = knob_importance(study, seed_sd=1.0)
    assert imp.trials == 40
    assert max(imp.score, key=imp.score.get) == "learning_rate" and imp.score["learning_rate"] > 0.6
    assert imp.score["beta2"] < 0.1 and max(imp.params, key=imp.params.get) == "r"
    assert imp.seed_share is not None and 0 < imp.seed_share < 0.1
    text = imp.sentence()
    assert text.startswith("share of the score variance") and "learning_rate" in text and "the seed alone" in text
    small = optuna.create_study(directions=["maximize", "minimize"])
    assert knob_importance(small).score == {} and "fewer than" in knob_importance(small).sentence()


# ----------------------------------------------------------------------------------------------
# End to end: a search with the confirmation stage, then a resume that trains a lost run again
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def confirmed_search(local_ray, tiny_model_dir, glue_dir, tmp_path_factory):
    from orchestrator import search

    work = tmp_path_factory.mktemp("confirm")
    args = ["--task", "sst2", "--model", tiny_model_dir, "--data-dir", str(glue_dir), "--train-samples", "64",
            "--eval-samples", "64", "--max-steps", "12", "--batch-size", "16", "--output-dir", str(work / "searches"),
            "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}", "--seed", "42", "--trials", "6", "--name", "conf",
            "--confirm", "2", "--confirm-share", "0.7", "--max-concurrent", "2"]
    env = {"HF_HUB_OFFLINE": "1", "RAY_CHDIR_TO_TRIAL_DIR": "0", "RAY_AIR_NEW_OUTPUT": "0"}
    with local_ray(num_cpus=2, env=env):
        rc = search.main(args)
        folder = work / "searches" / "conf"
        first = json.loads((folder / "search.json").read_text())
        # lose one confirmation run (as a kill before it finished would) and resume
        lost = sorted(folder.glob("trials/t*/seed-2"))[0]
        shutil.rmtree(lost)
        first_dump = dict(first, status="interrupted")
        (folder / "search.json").write_text(json.dumps(first_dump))
        rc_resume = search.main(["--resume", "--name", "conf", "--output-dir", str(work / "searches")])
    return {"rc": rc, "rc_resume": rc_resume, "dir": folder, "first": first, "lost": lost,
            "tracking": f"sqlite:///{work / 'mlflow.db'}"}


def test_search_confirms_its_front(confirmed_search, capsys):
    s = confirmed_search
    assert s["rc"] == 0, s
    summary = s["first"]
    assert summary["confirm"] == 2 and summary["confirmed"] is True
    assert summary["timings"]["confirm_s"] > 0
    cap = math.ceil(0.7 * 6)
    folders = sorted(s["dir"].glob("trials/t*/seed-*/result.json"))
    assert 2 <= len(folders) <= cap
    for row in summary["front"]:
        assert row["n"] == 3 and row["ci_low"] <= row["glue_score"] <= row["ci_high"]
        assert len(row["seed_scores"].split(";")) == 3
    # every confirmed configuration's runs trained on seeds 1042 and 2042, scored on the search's dev rows
    for path in folders:
        result = json.loads(path.read_text())
        assert result["config"]["seed"] == 42 + 1000 * int(path.parent.name.split("-")[1])
        assert result["eval_size"] == 64
    # the preset carries its interval
    import yaml

    best = yaml.safe_load((s["dir"] / "presets" / "sst2-best.yaml").read_text())["provenance"]
    assert best["seeds"] == 3 and len(best["score_interval"]) == 2 and "seed_scores" in best
    for label, number in summary["picks"].items():  # search.json's picks are the presets' configurations
        assert yaml.safe_load((s["dir"] / "presets" / f"sst2-{label}.yaml").read_text())["provenance"]["trial"] == number
    assert summary["distinguishable"] is not None


def test_confirmation_is_recorded_in_optuna_and_mlflow(confirmed_search):
    import optuna

    from orchestrator.tracking import mlflow_runs
    from orchestrator.records.record import SearchRecord

    s = confirmed_search
    record = SearchRecord.load(s["dir"])
    study = optuna.load_study(study_name="conf", storage=f"sqlite:///{s['dir'] / 'optuna.db'}")
    keys = [k for k in study.user_attrs if k.startswith("confirm:")]
    files = read_confirmations(record)
    assert len(keys) == sum(len(v) for v in files.values()) >= 2
    runs = mlflow_runs.child_runs(record.tracking_uri, record.experiment_id, record.parent_run_id)
    confirms = [r for r in runs if r.data.tags.get("confirms")]
    assert {(int(r.data.tags["confirms"]), int(r.data.tags["seed_index"])) for r in confirms} == \
        {(n, j) for n, runs_ in files.items() for j in runs_}
    assert all("trial" not in r.data.tags for r in confirms)  # recovery keys trial runs by that tag
    latest = {}
    for r in sorted(confirms, key=lambda r: r.info.start_time):
        latest[(r.data.tags["confirms"], r.data.tags["seed_index"])] = r
    assert all(r.info.status == "FINISHED" for r in latest.values())
    originals = {r.data.tags.get("trial"): r for r in runs if r.data.tags.get("trial")}
    confirmed_numbers = {str(n) for n in files}
    assert all("confirmed/mean" in originals[n].data.metrics for n in confirmed_numbers)


def test_resume_trains_only_the_lost_confirmation_run(confirmed_search):
    s = confirmed_search
    assert s["rc_resume"] == 0
    assert (s["lost"] / "result.json").is_file()
    final = json.loads((s["dir"] / "search.json").read_text())
    assert final["status"] == "finished"
    assert [r["n"] for r in final["front"]] == [3] * len(final["front"])
    # the resume (session 1) trained exactly the lost run, as one Ray trial
    resumed = [p for p in s["dir"].glob("ray/conf-confirm*-s1/confirm*") if p.is_dir()]
    assert len(resumed) == 1, resumed
    assert len(list(s["dir"].glob("trials/t*/seed-*/result.json"))) == \
        len(list(s["dir"].glob("trials/t*/seed-*")))
