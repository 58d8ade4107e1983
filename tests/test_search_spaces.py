"""Search spaces: schedule conversions, YAML validation, and real Optuna studies sampling every
method's space into configurations that ``build_run_config`` accepts."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import optuna
import pytest

from increlora import schedule
from increlora.run_config import build_run_config
from orchestrator.running.searcher import SAMPLERS, make_sampler
from search_spaces import (
    PRESET_CONFIG_ATTR,
    SpaceContext,
    SpaceError,
    default_space,
    make_space_fn,
    optional_knobs,
    preset_point,
)
from search_spaces.from_yaml import dump_space, load_space, parse_space

EXAMPLE = Path(__file__).resolve().parents[1] / "search_spaces" / "example_increlora.yaml"
TOTAL = 64


@pytest.fixture(autouse=True)
def _quiet_optuna():
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(level)


# --------------------------------------------------------------------------------------------
# schedule
# --------------------------------------------------------------------------------------------


def test_total_steps_epochs_and_max_steps():
    assert schedule.steps_per_epoch(1000, 32) == 32
    assert schedule.total_steps(1000, 32, 2.0) == 64
    assert schedule.total_steps(1000, 32, 0.5) == 16
    assert schedule.total_steps(1000, 32, 2.0, max_steps=10) == 10
    assert schedule.total_steps(10, 32, 1.0) == 1
    with pytest.raises(ValueError):
        schedule.total_steps(0, 32, 1.0)


def test_total_steps_matches_trainer():
    from increlora.trainer import total_steps_for

    for train_size, batch, epochs, max_steps in [(1000, 32, 2.0, None), (64, 16, 1.5, None), (8551, 32, 3.0, None), (100, 8, 2.0, 7)]:
        cfg = build_run_config({"batch_size": batch, "epochs": epochs, "max_steps": max_steps})
        assert schedule.total_steps(train_size, batch, epochs, max_steps) == total_steps_for(cfg, train_size)


@pytest.mark.parametrize(
    "frac,total,minimum,expected",
    [(0.0, 64, 0, 0), (0.05, 64, 0, 3), (0.03, 64, 1, 2), (0.005, 64, 1, 1), (0.25, 6700, 0, 1675), (0.015, 100, 0, 2)],
)
def test_frac_to_steps(frac, total, minimum, expected):
    assert schedule.frac_to_steps(frac, total, minimum=minimum) == expected


def test_frac_to_steps_agrees_with_the_method():
    """The method resolves fractions the same way, and never below the EMA's memory 2/(1-beta1)."""
    from increlora.methods.increlora.config import IncreLoRAConfig
    from increlora.methods.increlora.adapter import resolve_schedule

    for warm, interval, total, beta1 in [(0.05, 0.03, 64, 0.85), (0.2, 0.011, 189, 0.5), (0.0, 0.005, 64, 0.0),
                                         (0.123, 0.0456, 6700, 0.85), (0.1, 0.05, 400, 0.95)]:
        m = IncreLoRAConfig(init_warmup_frac=warm, incre_interval_frac=interval, beta1=beta1)
        floor = math.ceil(2 / (1 - beta1) - 1e-9)
        assert resolve_schedule(m, total) == (
            schedule.frac_to_steps(warm, total),
            schedule.frac_to_steps(interval, total, minimum=max(1, floor)),
        )
    assert resolve_schedule(IncreLoRAConfig(incre_interval=3, beta1=0.85), 100)[1] == 3  # step counts are kept


def test_frac_round_trip_and_errors():
    for steps in (0, 1, 7, 63):
        assert schedule.frac_to_steps(schedule.steps_to_frac(steps, 64), 64) == steps
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError):
            schedule.frac_to_steps(bad, 64)
    with pytest.raises(ValueError):
        schedule.steps_to_frac(3, 0)


def test_evaluation_count_matches_the_trainer_loop():
    for total in (1, 7, 8, 64, 65, 189):
        for evaluations in (1, 3, 4, 5):
            every = schedule.eval_steps_for(total, evaluations)
            evals = sum(1 for step in range(1, total + 1) if step % every == 0 or step == total)
            assert schedule.evaluation_count(total, every) == evals
            assert evals <= evaluations + 1


# --------------------------------------------------------------------------------------------
# define-by-run spaces in real Optuna studies
# --------------------------------------------------------------------------------------------


def _study(sampler: str) -> optuna.Study:
    samplers = {
        "tpe": optuna.samplers.TPESampler(seed=0, n_startup_trials=3),
        "nsga2": optuna.samplers.NSGAIISampler(seed=0, population_size=4),
        "random": optuna.samplers.RandomSampler(seed=0),
    }
    return optuna.create_study(directions=["maximize", "minimize"], sampler=samplers[sampler])


def _sample_configs(space, ctx, sampler: str, n: int = 8) -> list[dict]:
    fn = make_space_fn(space, ctx)
    study = _study(sampler)
    configs = []
    for i in range(n):
        trial = study.ask()
        config = fn(trial)
        cfg = build_run_config(config)  # raises on an invalid sample
        configs.append(config)
        study.tell(trial, [float(i % 3), float(cfg.flat().get("target_rank") or cfg.flat().get("r") or cfg.flat()["target_r"])])
    return configs


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random"])
@pytest.mark.parametrize("method", ["increlora", "lora", "adalora"])
def test_each_method_space_samples_valid_configs(method, sampler):
    space = default_space(method, "cola", extra=optional_knobs(method), learning_rate=2e-3)
    ctx = SpaceContext("cola", TOTAL)
    for config in _sample_configs(space, ctx, sampler):
        assert config["method"] == method
        for p in space.params:
            value = config[p.name]
            assert p.low <= value <= p.high, (p.name, value)
        if method == "increlora":
            assert 0 <= config["init_warmup_frac"] < 1 and 0 < config["incre_interval_frac"] < 1
        if method == "adalora":
            assert config["target_r"] <= config["init_r"]
            assert config["tinit_frac"] + config["tfinal_frac"] < 0.9
            assert 0 < config["delta_t_frac"] <= 0.02
        if "learning_rate" in config:
            assert 2e-3 / 4 <= config["learning_rate"] <= 2e-3 * 4


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_survives_ray_pickling(name):
    """Ray Tune pickles the searcher, sampler included, when it builds a Tuner (Optuna 5.1's NSGA-II holds a
    thread lock that plain pickling refuses); the copy must keep sampling as the original would."""
    import ray.cloudpickle

    def asked(sampler, n=10):
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
        out = []
        for i in range(n):  # past the first generation of a 4-trial NSGA-II population
            trial = study.ask()
            x = trial.suggest_float("x", 0.0, 1.0)
            study.tell(trial, [x, float(i % 4)])
            out.append(x)
        return out

    copy = ray.cloudpickle.loads(ray.cloudpickle.dumps(make_sampler(name, 0, population_size=4)))
    assert asked(copy) == asked(make_sampler(name, 0, population_size=4))


def test_space_fn_pickles_and_keeps_working():
    space = default_space("adalora", "rte")
    fn = pickle.loads(pickle.dumps(make_space_fn(space, SpaceContext("rte", 100))))
    study = _study("random")
    config = fn(study.ask())
    assert {"tinit_frac", "tfinal_frac", "delta_t_frac", "target_r", "init_r"} <= set(config)


def test_budget_params_space():
    space = default_space("increlora", "cola", budget_params=(1000, 8000))
    assert space.names[0] == "budget_params"
    for config in _sample_configs(space, SpaceContext("cola", TOTAL), "random", n=4):
        assert 1000 <= config["budget_params"] <= 8000
    with pytest.raises(SpaceError):
        default_space("lora", "cola", budget_params=(1000, 8000))


def test_unknown_optional_knob_is_rejected():
    with pytest.raises(SpaceError, match="top_h"):
        default_space("lora", "cola", extra=["top_h"])


def test_preset_enqueue_reproduces_the_preset_knobs():
    space = default_space("adalora", "cola")
    ctx = SpaceContext("cola", TOTAL)
    preset = {"target_r": 3.0, "init_r": 6, "tinit": 5, "tfinal": 10, "delta_t": 2, "beta1": 0.8, "beta2": 0.9,
              "learning_rate": 1e-3, "lora_alpha": 8.0, "epochs": 99.0}
    params, attrs = preset_point(space, ctx, preset)
    assert params["tinit_frac"] == pytest.approx(5 / TOTAL)
    assert "epochs" not in attrs[PRESET_CONFIG_ATTR]  # the search's protocol wins
    study = _study("tpe")
    study.enqueue_trial(params, user_attrs=attrs)
    config = make_space_fn(space, ctx)(study.ask())
    for key in ("target_r", "init_r", "tinit", "tfinal", "delta_t", "beta1", "beta2", "learning_rate", "lora_alpha"):
        assert config[key] == preset[key], key
    assert "epochs" not in config
    build_run_config(config)


# --------------------------------------------------------------------------------------------
# YAML spaces
# --------------------------------------------------------------------------------------------


def test_example_yaml_loads_and_samples():
    space = load_space(EXAMPLE, method="increlora")
    assert "top_h" in space.names and space.constants == {"orth_reg_weight": 0.1}
    configs = _sample_configs(space, SpaceContext("cola", TOTAL), "tpe", n=4)
    assert all(c["orth_reg_weight"] == 0.1 and 1 <= c["top_h"] <= 8 for c in configs)


def test_dumped_builtin_space_round_trips(tmp_path):
    for method in ("increlora", "lora", "adalora"):
        space = default_space(method, "mrpc", extra=optional_knobs(method))
        path = tmp_path / f"{method}.yaml"
        path.write_text(dump_space(space))
        again = load_space(path)
        assert again.params == space.params and again.method == method


GOOD = "method: increlora\nparams:\n  target_rank: {type: float, low: 1, high: 8}\n"

BAD_SPACES = [
    ("params:\n  target_rank: {type: float, low: 1, high: 8}\n", "missing 'method'"),
    ("method: vera\nparams:\n  r: {type: int, low: 1, high: 8}\n", "unknown method"),
    ("method: increlora\nparams: {}\n", "non-empty mapping"),
    ("method: increlora\nparams:\n  target_rnk: {type: float, low: 1, high: 8}\n", "did you mean 'target_rank'"),
    ("method: increlora\nparams:\n  r: {type: int, low: 1, high: 8}\n", "unknown knob"),
    ("method: increlora\nparams:\n  target_rank: {type: float, low: 8, high: 1}\n", "low must be < high"),
    ("method: increlora\nparams:\n  target_rank: {type: float, low: 2, high: 2}\n", "low must be < high"),
    ("method: increlora\nparams:\n  orth_reg_weight: {type: float, low: 0, high: 1, log: true}\n", "log: true needs low > 0"),
    ("method: increlora\nparams:\n  lora_alpha: {type: categorical, choices: []}\n", "non-empty list"),
    ("method: increlora\nparams:\n  lora_alpha: {type: categorical}\n", "non-empty list"),
    ("method: increlora\nparams:\n  init_warmup_frac: {type: float, low: 0.1, high: 1.0}\n", "[0, 1)"),
    ("method: increlora\nparams:\n  incre_interval_frac: {type: float, low: -0.1, high: 0.5}\n", "[0, 1)"),
    ("method: increlora\nparams:\n  init_warmup_frac: {type: categorical, choices: [0.1, 1.5]}\n", "[0, 1)"),
    ("method: adalora\nparams:\n  tinit_frac: {type: float, low: 0.0, high: 1.2}\n", "[0, 1)"),
    ("method: increlora\nparams:\n  top_h: {type: float, low: 1, high: 8}\n", "use type: int"),
    ("method: increlora\nparams:\n  top_h: {type: int, low: 1.5, high: 8}\n", "integer low and high"),
    ("method: increlora\nparams:\n  target_rank: {type: uniform, low: 1, high: 8}\n", "not one of"),
    ("method: increlora\nparams:\n  target_rank: {low: 1, high: 8}\n", "missing 'type'"),
    ("method: increlora\nparams:\n  target_rank: {type: float, low: 1}\n", "missing 'high'"),
    ("method: increlora\nparams:\n  target_rank: {type: float, low: a, high: 8}\n", "must be a number"),
    ("method: increlora\nparams:\n  target_rank: {type: float, low: 1, high: 8, log: true, step: 1}\n", "cannot be combined"),
    ("method: increlora\nparams:\n  target_rank: {type: float, low: 1, high: 8, choices: [1]}\n", "does not apply"),
    ("method: increlora\nparams:\n  advance_learn: {type: int, low: 0, high: 1}\n", "type: categorical"),
    ("method: increlora\nparams:\n  advance_learn: {type: categorical, choices: [true, 3]}\n", "not a valid bool"),
    ("method: increlora\nparams:\n  epochs: {type: float, low: 1, high: 3}\n", "fixed by the search"),
    ("method: increlora\nparams:\n  target_rank: {type: float, low: 1, high: 8}\nconstants:\n  top_k: 3\n", "did you mean 'top_h'"),
    ("method: increlora\nparams:\n  target_rank: {type: float, low: 1, high: 8}\nconstants:\n  top_h: many\n", "not a valid int"),
    ("method: increlora\nparams:\n  target_rank: {type: float, low: 1, high: 8}\nconstants:\n  target_rank: 2\n", "also listed"),
    ("method: increlora\nparams:\n  target_rank: {type: float, low: 1, high: 8}\nsearch: {}\n", "unknown top-level key"),
    ("- just\n- a list\n", "expected a mapping"),
    ("method: increlora\nparams:\n  target_rank: {type: float, low: 1, high: [8\n", "invalid YAML"),
]


@pytest.mark.parametrize("text,expected", BAD_SPACES)
def test_yaml_validation_errors_are_one_line(tmp_path, text, expected):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError) as info:
        load_space(path)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message and str(path) in message


def test_yaml_method_must_match_the_search(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(GOOD)
    assert load_space(path, method="increlora").names == ["target_rank"]
    with pytest.raises(SpaceError, match="--method"):
        load_space(path, method="lora")
    with pytest.raises(SpaceError, match="not found"):
        load_space(tmp_path / "missing.yaml")


def test_yaml_method_may_come_from_the_search():
    space = parse_space({"params": {"r": {"type": "int", "low": 1, "high": 4}}}, method="lora")
    assert space.method == "lora"
