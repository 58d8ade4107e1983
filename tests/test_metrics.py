"""increlora.metrics against scikit-learn / scipy, and the GLUE score per task."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from increlora.data import GlueError
from increlora.metrics import compute_metrics, glue_score, main_metric_names


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def _noisy_copy(rng: np.random.Generator, labels: np.ndarray, k: int, p: float = 0.3) -> np.ndarray:
    flip = rng.random(len(labels)) < p
    return np.where(flip, rng.integers(0, k, len(labels)), labels)


def test_cola_mcc(rng: np.random.Generator) -> None:
    y = rng.integers(0, 2, 500)
    p = _noisy_copy(rng, y, 2)
    assert compute_metrics("cola", p, y) == {"mcc": pytest.approx(100 * matthews_corrcoef(y, p))}


@pytest.mark.parametrize("task", ["sst2", "qnli", "rte", "wnli", "SST-2"])
def test_accuracy_tasks(rng: np.random.Generator, task: str) -> None:
    y = rng.integers(0, 2, 300)
    p = _noisy_copy(rng, y, 2)
    assert compute_metrics(task, p, y) == {"accuracy": pytest.approx(100 * accuracy_score(y, p))}


def test_mnli_accuracy_three_classes(rng: np.random.Generator) -> None:
    y = rng.integers(0, 3, 300)
    p = _noisy_copy(rng, y, 3)
    assert compute_metrics("mnli", p, y) == {"accuracy": pytest.approx(100 * accuracy_score(y, p))}


@pytest.mark.parametrize("task", ["mrpc", "qqp"])
def test_accuracy_and_f1(rng: np.random.Generator, task: str) -> None:
    y = rng.integers(0, 2, 400)
    p = _noisy_copy(rng, y, 2)
    m = compute_metrics(task, p, y)
    assert m == {"accuracy": pytest.approx(100 * accuracy_score(y, p)), "f1": pytest.approx(100 * f1_score(y, p))}
    assert glue_score(task, m) == pytest.approx((m["accuracy"] + m["f1"]) / 2)


def test_stsb_correlations(rng: np.random.Generator) -> None:
    y = rng.uniform(0, 5, 200)
    p = y + rng.normal(0, 1, 200)
    m = compute_metrics("sts-b", p, y)
    assert m["pearson"] == pytest.approx(100 * stats.pearsonr(p, y)[0])
    assert m["spearman"] == pytest.approx(100 * stats.spearmanr(p, y)[0])
    assert glue_score("stsb", m) == pytest.approx((m["pearson"] + m["spearman"]) / 2)
    assert compute_metrics("stsb", p.reshape(-1, 1), y)["pearson"] == pytest.approx(m["pearson"])


def test_logits_are_argmaxed(rng: np.random.Generator) -> None:
    logits = rng.normal(size=(100, 2))
    y = rng.integers(0, 2, 100)
    assert compute_metrics("rte", logits, y) == compute_metrics("rte", logits.argmax(-1), y)


def test_degenerate_inputs_no_warnings() -> None:
    y = np.array([0, 1, 1, 0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compute_metrics("cola", np.ones(5, dtype=int), y) == {"mcc": 0.0}
        assert compute_metrics("mrpc", np.zeros(5, dtype=int), y)["f1"] == 0.0
        assert compute_metrics("stsb", np.full(5, 2.5), y.astype(float)) == {"pearson": 0.0, "spearman": 0.0}
        assert compute_metrics("stsb", np.array([1.0, np.nan, 2, 3, 4]), y.astype(float))["pearson"] == 0.0


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        compute_metrics("rte", [0, 1, 1], [0, 1])
    with pytest.raises(GlueError):
        compute_metrics("imdb", [0], [0])


def test_glue_score_per_task() -> None:
    assert glue_score("cola", {"mcc": 42.0}) == 42.0
    assert glue_score("mrpc", {"accuracy": 80.0, "f1": 90.0}) == 85.0
    assert glue_score("qqp", {"accuracy": 70.0, "f1": 60.0}) == 65.0
    assert glue_score("stsb", {"pearson": 88.0, "spearman": 86.0}) == 87.0
    for task in ("sst2", "qnli", "rte", "wnli"):
        assert glue_score(task, {"accuracy": 77.5}) == 77.5
    assert glue_score("rte", {"validation/accuracy": 66.0}) == 66.0
    assert glue_score("mnli", {"accuracy": 70.0}) == 70.0
    split_metrics = {"validation_matched/accuracy": 80.0, "validation_mismatched/accuracy": 82.0, "accuracy": 1.0}
    assert glue_score("mnli", split_metrics) == 81.0
    with pytest.raises(KeyError, match="mcc"):
        glue_score("cola", {"accuracy": 50.0})


def test_main_metric_names() -> None:
    assert main_metric_names("CoLA") == ["mcc"]
    assert main_metric_names("mrpc") == ["f1", "accuracy"]
    assert main_metric_names("stsb") == ["pearson", "spearman"]
    assert main_metric_names("mnli") == ["accuracy"]
