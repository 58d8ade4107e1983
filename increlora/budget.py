"""Shared formulas: what an adapter costs, budgets translated between methods, the chance score.

One home for arithmetic that the methods, the search and the benchmarks all need:

- adapter parameters per rank of a linear layer (d_in x d_out): LoRA ``d_in + d_out`` (A and B), the
  SVD form of IncreLoRA and AdaLoRA ``d_in + d_out + 1`` (a, b and the singular value lambda);
- the shapes of the adapted layers of a model, read from its config without loading weights;
- equal-parameter budgets across methods (LoRA's size at rank r; the SVD cost of one rank everywhere);
- the GLUE score of the majority-class predictor (the "chance" line of fronts, hypervolumes and tables).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

import numpy as np

Shapes = Mapping[str, tuple[int, int]]  # module name -> (d_in, d_out)


def lora_cost_per_rank(d_in: int, d_out: int) -> int:
    """Parameters one LoRA rank costs in a d_in x d_out linear: a row of A and a column of B."""
    return int(d_in) + int(d_out)


def svd_cost_per_rank(d_in: int, d_out: int) -> int:
    """Parameters one rank of the SVD form (IncreLoRA, AdaLoRA) costs: a, b and lambda."""
    return int(d_in) + int(d_out) + 1


def lora_params(shapes: Shapes, r: int) -> int:
    """peft LoRA's adapter size with rank ``r`` in every module."""
    return int(sum(r * lora_cost_per_rank(i, o) for i, o in shapes.values()))


def svd_params(shapes: Shapes, ranks: Mapping[str, int]) -> int:
    """Adapter size of an SVD-form allocation ``{module: rank}``."""
    return int(sum(int(ranks[n]) * svd_cost_per_rank(i, o) for n, (i, o) in shapes.items() if n in ranks))


def uniform_rank_cost(shapes: Shapes) -> int:
    """SVD-form parameters of average rank 1 in every module (the unit of ``--budget params``)."""
    return int(sum(svd_cost_per_rank(i, o) for i, o in shapes.values()))


def params_budget_range(shapes: Shapes, low_rank: float = 1.0, high_rank: float = 8.0) -> tuple[int, int]:
    """A parameter budget range equal to uniform average ranks ``low_rank``..``high_rank``."""
    unit = uniform_rank_cost(shapes)
    return int(math.floor(low_rank * unit)), int(math.ceil(high_rank * unit))


def adapted_shapes(model: Optional[str], targets: Optional[list[str]] = None) -> dict[str, tuple[int, int]]:
    """``{module name: (d_in, d_out)}`` of the linears every method adapts, from the model's config
    (the model is built on the ``meta`` device: no weights are read)."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from .adapter_method import target_linears
    from .backbone import resolve_model

    config = AutoConfig.from_pretrained(resolve_model(model), num_labels=2)
    with torch.device("meta"):
        net = AutoModelForSequenceClassification.from_config(config)
    return {n: (lin.in_features, lin.out_features) for n, lin in target_linears(net, targets)}


CHANCE_MARGIN = 1.0  # GLUE points a score must beat the majority-class score by to count as learned


def above_chance(score: float, chance: float, margin: float = CHANCE_MARGIN) -> bool:
    """Whether ``score`` beats the majority-class score ``chance`` by more than ``margin`` GLUE points
    (a search whose best trial does not has learned nothing its front could rank)."""
    return math.isfinite(float(score)) and float(score) > float(chance) + margin


def majority_score(task: Any, labels: Sequence[Any] | np.ndarray) -> float:
    """GLUE score of always predicting the most frequent label of ``labels`` (0 for regression tasks,
    whose constant predictor has no correlation). ``task``: a GLUE task's name or a TaskSpec (own data)."""
    from .data import get_task
    from .metrics import compute_metrics, glue_score

    labels = np.asarray(labels)
    if get_task(task).is_regression or len(labels) == 0:
        return 0.0
    values, counts = np.unique(labels, return_counts=True)
    preds = np.full(len(labels), values[int(np.argmax(counts))])
    score = float(glue_score(task, compute_metrics(task, preds, labels)))
    return score if math.isfinite(score) else 0.0
