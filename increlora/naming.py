"""Names of adapted modules: which layer and which module type a linear layer is.

Covers BERT/RoBERTa (``attention.self.query``, ``attention.output.dense``, ``intermediate.dense``,
``output.dense``) and DeBERTa-v2/v3 (``attention.self.query_proj`` ...). Module types are ordered
q, k, v, o (attention output), f1 (FFN in), f2 (FFN out); metric names carry that order as a digit.
"""

from __future__ import annotations

import re
from typing import Any, Optional

MODULE_TYPES = ("q", "k", "v", "o", "f1", "f2")
MODULE_TYPE_LABELS = {
    "q": "query",
    "k": "key",
    "v": "value",
    "o": "attn out",
    "f1": "FFN in",
    "f2": "FFN out",
}

# Suffix -> short type; the longest matching suffix wins (attention.output.dense before output.dense).
_SUFFIX_TYPES = (
    ("attention.self.query_proj", "q"),
    ("attention.self.key_proj", "k"),
    ("attention.self.value_proj", "v"),
    ("attention.self.query", "q"),
    ("attention.self.key", "k"),
    ("attention.self.value", "v"),
    ("attention.output.dense", "o"),
    ("intermediate.dense", "f1"),
    ("output.dense", "f2"),
)

DEFAULT_TARGET_SUFFIXES = tuple(s for s, _ in _SUFFIX_TYPES)

_LAYER_RE = re.compile(r"\.layers?\.(\d+)\.")


def layer_index(name: str) -> Optional[int]:
    m = _LAYER_RE.search("." + name + ".")
    return int(m.group(1)) if m else None


def module_type(name: str) -> Optional[str]:
    for suffix, short in _SUFFIX_TYPES:
        if name == suffix or name.endswith("." + suffix):
            return short
    return None


def short_key(name: str) -> str:
    """``bert.encoder.layer.3.attention.self.query`` -> ``L03.q`` (falls back to the full name)."""
    layer, mtype = layer_index(name), module_type(name)
    if layer is None or mtype is None:
        return name
    return f"L{layer:02d}.{mtype}"


_SHORT_KEY_RE = re.compile(r"^(?:rank[./])?L(\d+)\.(?:[1-6])?(q|k|v|o|f1|f2)$")


def type_key(mtype: str) -> str:
    """``q`` -> ``1q`` ... ``f2`` -> ``6f2``: the digit keeps MLflow's alphabetical sort in module order."""
    return f"{MODULE_TYPES.index(mtype) + 1}{mtype}"


def rank_metric_name(name: str) -> str:
    """MLflow metric name of a module's final rank: ``rank/L03.1q`` ... ``rank/L03.6f2``.

    MLflow groups charts by the part before ``/`` (one "rank" section), and the digit before the
    type keeps its alphabetical sort in q, k, v, o, f1, f2 order.
    """
    layer, mtype = layer_index(name), module_type(name)
    if layer is None or mtype is None:
        return "rank/" + name
    return f"rank/L{layer:02d}.{type_key(mtype)}"


def parse_key(name: str) -> tuple[Optional[int], Optional[str]]:
    """(layer, module type) of a full module name or a short key (``L03.q``, ``rank/L03.1q``)."""
    m = _SHORT_KEY_RE.match(name)
    if m:
        return int(m.group(1)), m.group(2)
    return layer_index(name), module_type(name)


def matches_target(name: str, targets: Optional[list[str]] = None) -> bool:
    """True if ``name`` ends with one of the target suffixes (default: the six encoder linear types)."""
    suffixes = tuple(targets) if targets else DEFAULT_TARGET_SUFFIXES
    if layer_index(name) is None:
        return False
    return any(name == s or name.endswith("." + s) for s in suffixes)


def allocation_grid(allocation: dict[str, int]) -> tuple[list[int], list[str], list[list[Optional[int]]]]:
    """Arrange ``{module name: rank}`` as (layers, types, grid[layer][type]) for heatmaps and tables."""
    cells: dict[tuple[int, str], int] = {}
    for name, rank in allocation.items():
        layer, mtype = layer_index(name), module_type(name)
        if layer is None or mtype is None:
            continue
        cells[(layer, mtype)] = rank
    layers = sorted({k[0] for k in cells})
    types = [t for t in MODULE_TYPES if any(k[1] == t for k in cells)]
    grid = [[cells.get((layer, t)) for t in types] for layer in layers]
    return layers, types, grid


def allocation_markdown(allocation: dict[str, int]) -> str:
    """The allocation as a Markdown table (layers x q k v o f1 f2), with the rank per type and the
    total; empty when no module name has a layer and a type. MLflow renders it in a run's description."""
    layers, types, grid = allocation_grid(allocation)
    if not layers:
        return ""
    labels = [MODULE_TYPE_LABELS.get(t, t) for t in types]
    lines = ["| layer | " + " | ".join(labels) + " | total |", "|---|" + "---:|" * (len(types) + 1)]
    for layer, row in zip(layers, grid):
        cells = ["" if v is None else str(v) for v in row]
        lines.append(f"| L{layer:02d} | " + " | ".join(cells) + f" | {sum(v or 0 for v in row)} |")
    totals = [sum(row[i] or 0 for row in grid) for i in range(len(types))]
    lines.append("| **all** | " + " | ".join(f"**{t}**" for t in totals) + f" | **{sum(totals)}** |")
    return "\n".join(lines)


def compact_allocation(allocation: dict[str, int]) -> dict[str, Any]:
    """``{module: rank}`` as one short string per layer, ``{"L03": "q=2 k=1 v=3 o=1 f1=2 f2=1"}`` (modules
    without a layer and type keep their name), for places that show it whole (optuna-dashboard)."""
    out: dict[str, Any] = {}
    layers: dict[int, dict[str, int]] = {}
    for name, rank in allocation.items():
        layer, mtype = parse_key(name)
        if layer is None or mtype is None:
            out[name] = int(rank)
        else:
            layers.setdefault(layer, {})[mtype] = int(rank)
    for layer in sorted(layers):
        cells = layers[layer]
        out[f"L{layer:02d}"] = " ".join(f"{t}={cells[t]}" for t in MODULE_TYPES if t in cells)
    return dict(sorted(out.items()))


def expand_allocation(compact: dict[str, Any]) -> dict[str, int]:
    """The inverse of :func:`compact_allocation`, with short keys (``L03.q``); a plain ``{module: rank}``
    (older records) is returned as it is."""
    out: dict[str, int] = {}
    for key, value in compact.items():
        if isinstance(value, str) and re.fullmatch(r"L\d+", key):
            for cell in value.split():
                mtype, _, rank = cell.partition("=")
                out[f"{key}.{mtype}"] = int(rank)
        else:
            out[str(key)] = int(value)
    return out


def _layer_and_type(name: str) -> tuple[Optional[int], Optional[str]]:
    """(layer, module type) of a full module name or a short key like ``L03.q`` / ``rank/L03.1q``."""
    return parse_key(name)


def allocation_summary(allocation: Optional[dict[str, int]]) -> dict[str, Any]:
    """Totals of a rank allocation: modules, total/min/max/mean rank and total rank per module type."""
    ranks = {str(k): int(v) for k, v in (allocation or {}).items()}
    if not ranks:
        return {"modules": 0, "total_rank": 0}
    values = list(ranks.values())
    by_type: dict[str, int] = {}
    for name, rank in ranks.items():
        mtype = _layer_and_type(name)[1] or "other"
        by_type[mtype] = by_type.get(mtype, 0) + rank
    ordered = {t: by_type[t] for t in (*MODULE_TYPES, "other") if t in by_type}
    return {
        "modules": len(values),
        "total_rank": sum(values),
        "min_rank": min(values),
        "max_rank": max(values),
        "mean_rank": round(sum(values) / len(values), 3),
        "rank_by_type": ordered,
    }


def allocation_history(final: dict[str, int], events: list[dict[str, Any]]) -> list[tuple[int, dict[str, int]]]:
    """The allocation after each growth round, ``[(step, {module: rank}), ...]`` in step order, rebuilt from
    the final allocation and the growth events (``{"step", "module", "added"}``); the first entry (step 0)
    is the allocation before any growth. Empty without events."""
    if not events:
        return []
    ranks = {k: int(v) for k, v in final.items()}
    for e in events:
        ranks[e["module"]] = ranks.get(e["module"], 0) - int(e["added"])
    out = [(0, dict(ranks))]
    for step in sorted({int(e["step"]) for e in events}):
        for e in events:
            if int(e["step"]) == step:
                ranks[e["module"]] += int(e["added"])
        out.append((step, dict(ranks)))
    return out
