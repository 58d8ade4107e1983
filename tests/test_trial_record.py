"""orchestrator.records.trial_record: what a trial left behind, and a configuration (a trial with its seeds)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from orchestrator.records.results import complete_trials, front_and_picks, front_rows
from orchestrator.records.trial_record import ConfigurationRecord, TrialRecord


def test_complete_means_complete_with_finite_objectives():
    assert TrialRecord(number=0, state="COMPLETE", score=50.0, adapter_params=10).is_complete
    for rec in (TrialRecord(number=1, state="PRUNED", score=50.0, adapter_params=10),
                TrialRecord(number=2, state="COMPLETE", score=None, adapter_params=10),
                TrialRecord(number=3, state="COMPLETE", score=math.nan, adapter_params=10),
                TrialRecord(number=4, state="COMPLETE", score=50.0, adapter_params=math.inf),
                TrialRecord(number=5, state="RUNNING")):
        assert not rec.is_complete, rec
    trials = [TrialRecord(number=n, state="COMPLETE", score=1.0, adapter_params=1.0) for n in (3, 1, 2)]
    assert [t.number for t in complete_trials(trials)] == [1, 2, 3]


def test_failure_leaves_out_interrupted_trials():
    assert TrialRecord(number=0, state="FAIL", state_reason="fail").is_failure
    assert not TrialRecord(number=0, state="FAIL", state_reason="interrupted").is_failure
    assert not TrialRecord(number=0, state="COMPLETE").is_failure


def test_record_is_frozen_and_derives_rank_and_method():
    rec = TrialRecord(number=4, state="COMPLETE", score=60.0, adapter_params=1000.0,
                      config={"method": "increlora", "target_rank": 2.0}, allocation={"L00.q": 3, "L01.v": 2})
    assert rec.total_rank == 5 and rec.method == "increlora" and rec.point == (60.0, 1000.0)
    assert TrialRecord(number=5, state="RUNNING").total_rank == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.score = 1.0  # type: ignore[misc]


def test_a_trial_alone_is_a_configuration_with_one_seed():
    rec = TrialRecord(number=4, state="COMPLETE", score=60.0, adapter_params=1000.0, run_name="t004", seed_index=0,
                      mlflow_run_id="abc")
    conf = rec.as_configuration()
    assert isinstance(conf, ConfigurationRecord) and conf.as_configuration() is conf
    assert (conf.number, conf.score, conf.adapter_params, conf.run_name, conf.mlflow_run_id) == (4, 60.0, 1000.0, "t004", "abc")
    assert conf.n == 1 and conf.seed_scores == {0: 60.0} and conf.single_score == 60.0 and conf.members == (4,)
    assert not conf.has_interval and conf.sd is None


def test_configuration_keeps_its_representative_trial_and_replaces_the_scores():
    rep = TrialRecord(number=2, state="COMPLETE", score=58.0, adapter_params=200.0, params={"x": 1},
                      allocation={"L00.q": 4}, node="n1")
    conf = ConfigurationRecord.of(rep, score=59.0, adapter_params=200, seed_scores={0: 58.0, 1: 60.0}, single_score=58.0,
                                  n=2, sd=1.41, ci_low=46.3, ci_high=71.7, members=(2, 5))
    assert conf.score == 59.0 and conf.has_interval and conf.members == (2, 5)
    assert (conf.params, conf.allocation, conf.node, conf.state) == ({"x": 1}, {"L00.q": 4}, "n1", "COMPLETE")
    rows = front_rows([conf], *front_and_picks([conf], 1.0))
    assert rows == [{"trial": 2, "score": 59.0, "n": 2, "sd": 1.41, "ci_low": 46.3, "ci_high": 71.7,
                     "adapter_params": 200, "total_rank": 4, "method": None, "mlflow_run_id": None,
                     "labels": "best,smallest,knee", "also_trials": ""}]
