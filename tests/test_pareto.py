"""orchestrator.records.pareto: front, hypervolume, knee, preset picks; cross-checked against Optuna."""

from __future__ import annotations

import math
import random

import pytest

from orchestrator.records.pareto import (
    default_reference,
    hypervolume,
    hypervolume_curve,
    knee_point,
    pareto_front,
    select_presets,
)


def test_front_simple():
    pts = [(50.0, 100.0), (60.0, 200.0), (55.0, 300.0), (70.0, 400.0), (40.0, 50.0)]
    # (55, 300) is dominated by (60, 200).
    assert pareto_front(pts) == [4, 0, 1, 3]


def test_front_empty_and_single():
    assert pareto_front([]) == []
    assert pareto_front([(1.0, 2.0)]) == [0]


def test_front_duplicates_all_kept_and_sorted_by_params():
    pts = [(60.0, 200.0), (50.0, 100.0), (60.0, 200.0), (50.0, 100.0), (45.0, 100.0)]
    assert pareto_front(pts) == [1, 3, 0, 2]


def test_front_ties_in_one_objective_are_dominated():
    # Same score, more params: dominated. Same params, lower score: dominated.
    pts = [(60.0, 100.0), (60.0, 150.0), (55.0, 100.0), (65.0, 150.0)]
    assert pareto_front(pts) == [0, 3]


def test_front_skips_non_finite():
    pts = [(math.nan, 10.0), (50.0, 100.0), (math.inf, 5.0), (40.0, math.nan)]
    assert pareto_front(pts) == [1]


def test_hypervolume_hand_computed():
    pts = [(50.0, 100.0), (60.0, 200.0), (70.0, 400.0), (55.0, 300.0)]
    ref = (40.0, 500.0)
    # Strips by params: [100,200) at 50-40=10, [200,400) at 60-40=20, [400,500) at 70-40=30.
    expected = 100 * 10 + 200 * 20 + 100 * 30
    assert hypervolume(pts, ref) == pytest.approx(expected)


def test_hypervolume_ignores_points_outside_reference():
    ref = (40.0, 500.0)
    assert hypervolume([(30.0, 100.0), (50.0, 600.0), (40.0, 100.0)], ref) == 0.0
    assert hypervolume([], ref) == 0.0
    # A point beyond ref does not change the area of the others.
    base = [(50.0, 100.0)]
    assert hypervolume(base + [(90.0, 700.0)], ref) == pytest.approx(hypervolume(base, ref)) == 4000.0


def test_hypervolume_duplicates_do_not_double_count():
    ref = (0.0, 10.0)
    assert hypervolume([(5.0, 2.0), (5.0, 2.0)], ref) == pytest.approx(40.0)


def test_hypervolume_curve_is_monotone():
    rng = random.Random(3)
    pts = [(rng.uniform(0, 100), rng.uniform(1, 1000)) for _ in range(40)]
    curve = hypervolume_curve(pts, (0.0, 1100.0))
    assert len(curve) == 40
    assert all(b >= a for a, b in zip(curve, curve[1:]))
    assert curve[-1] == pytest.approx(hypervolume(pts, (0.0, 1100.0)))


def test_default_reference():
    assert default_reference(0.0, 1000) == (0.0, pytest.approx(1100.0))


def test_knee_on_l_shaped_front():
    # Score jumps steeply up to the corner at 200 params, then flattens out.
    pts = [(10.0, 100.0), (80.0, 200.0), (82.0, 400.0), (84.0, 800.0), (85.0, 1600.0)]
    front = pareto_front(pts)
    assert front == [0, 1, 2, 3, 4]
    assert knee_point(pts, front) == 1


def test_knee_small_fronts_return_best_score():
    pts = [(10.0, 100.0), (80.0, 200.0)]
    assert knee_point(pts, [0]) == 0
    assert knee_point(pts, [0, 1]) == 1
    # Three entries but only two distinct points.
    pts3 = [(10.0, 100.0), (10.0, 100.0), (80.0, 200.0)]
    assert knee_point(pts3, pareto_front(pts3)) == 2


def test_knee_straight_front_returns_best_score():
    pts = [(10.0, 100.0), (20.0, 200.0), (30.0, 300.0)]
    assert knee_point(pts, pareto_front(pts)) == 2


def test_knee_empty_front_raises():
    with pytest.raises(ValueError):
        knee_point([(1.0, 1.0)], [])


def test_select_presets_tolerance():
    pts = [(70.0, 1000.0), (69.5, 400.0), (68.9, 200.0), (50.0, 100.0), (60.0, 1200.0)]
    front = pareto_front(pts)
    assert front == [3, 2, 1, 0]
    picks = select_presets(pts, front)
    assert picks["best"] == 0
    assert picks["smallest"] == 1  # 69.5 >= 70 - 1; 68.9 is not
    assert select_presets(pts, front, tolerance=1.2)["smallest"] == 2
    assert select_presets(pts, front, tolerance=0.0)["smallest"] == 0
    assert picks["knee"] in front


def test_select_presets_best_tie_prefers_fewer_params():
    pts = [(70.0, 1000.0), (70.0, 500.0), (60.0, 100.0)]
    front = pareto_front(pts)
    assert front == [2, 1]
    picks = select_presets(pts, front)
    assert picks["best"] == 1
    assert picks["smallest"] == 1
    assert picks["knee"] == 1


def test_select_presets_rejects_empty_front_and_negative_tolerance():
    with pytest.raises(ValueError):
        select_presets([(1.0, 1.0)], [])
    with pytest.raises(ValueError):
        select_presets([(1.0, 1.0)], [0], tolerance=-1)


def test_front_matches_optuna_best_trials():
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = random.Random(0)
    pts: list[tuple[float, float]] = []
    for _ in range(150):
        pts.append((round(rng.uniform(0, 100), 1), float(rng.randrange(1_000, 200_000, 1_000))))
    pts += [pts[5], pts[17], (100.0, 1000.0), (100.0, 1000.0)]  # exact duplicates, a dominant corner twice
    pts += [(p[0], p[1] + 500.0) for p in pts[:10]]  # same score, more params
    study = optuna.create_study(directions=["maximize", "minimize"])
    dist = optuna.distributions.IntDistribution(0, len(pts))
    for i, (s, p) in enumerate(pts):
        study.add_trial(optuna.trial.create_trial(values=[s, p], params={"i": i}, distributions={"i": dist}))
    expected = sorted(t.params["i"] for t in study.best_trials)
    assert sorted(pareto_front(pts)) == expected


def test_front_matches_optuna_on_random_small_sets():
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = random.Random(11)
    for _ in range(5):
        pts = [(float(rng.randint(0, 5)), float(rng.randint(1, 6))) for _ in range(25)]
        study = optuna.create_study(directions=["maximize", "minimize"])
        dist = optuna.distributions.IntDistribution(0, len(pts))
        for i, (s, p) in enumerate(pts):
            study.add_trial(optuna.trial.create_trial(values=[s, p], params={"i": i}, distributions={"i": dist}))
        assert sorted(pareto_front(pts)) == sorted(t.params["i"] for t in study.best_trials)
