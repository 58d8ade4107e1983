"""increlora.data: task registry, TSV loading, subsampling, tokenisation and batching."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from increlora.batching import batches, num_batches
from increlora.data import (
    TASKS,
    GlueError,
    RawSplit,
    Split,
    get_task,
    load_task,
    normalize_task,
    prepare_data,
    read_tsv_split,
    subsample_indices,
)

# (train rows, dev rows) from the data README
SHIPPED = {"cola": (8551, 1043), "sst2": (67349, 872), "mrpc": (3668, 408), "rte": (2490, 277), "wnli": (635, 71)}


# --- registry ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, key",
    [("SST-2", "sst2"), ("sst-2", "sst2"), ("sst2", "sst2"), ("STS-B", "stsb"), ("sts-b", "stsb"),
     ("CoLA", "cola"), ("COLA", "cola"), ("MNLI", "mnli"), ("qnli", "qnli"), ("Rte", "rte")],
)
def test_normalize_task(name: str, key: str) -> None:
    assert normalize_task(name) == key


def test_unknown_task_lists_valid_names() -> None:
    with pytest.raises(GlueError, match="unknown GLUE task 'imdb'.*cola.*sst2.*wnli"):
        normalize_task("imdb")


def test_registry() -> None:
    assert list(TASKS) == ["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"]
    assert TASKS["stsb"].num_labels == 1 and TASKS["stsb"].is_regression
    assert TASKS["mnli"].eval_splits == ("validation_matched", "validation_mismatched")
    assert TASKS["mnli"].label_names == ("entailment", "neutral", "contradiction")
    assert TASKS["rte"].label_names[0] == "entailment"
    assert all(s.eval_splits == ("validation",) for k, s in TASKS.items() if k != "mnli")
    assert not TASKS["sst2"].is_pair and TASKS["mrpc"].is_pair
    with pytest.raises(Exception):
        TASKS["cola"].num_labels = 3  # type: ignore[misc]  # frozen


# --- the shipped TSV folder -------------------------------------------------------------------


@pytest.mark.parametrize("task", sorted(SHIPPED))
def test_shipped_row_counts(glue_dir: Path, task: str) -> None:
    data = load_task(task, glue_dir)
    assert (len(data["train"]), len(data["validation"])) == SHIPPED[task]
    for part in data.values():
        assert part.labels.dtype == np.int64
        assert set(np.unique(part.labels)) == {0, 1}
        assert (part.text_b is None) == (task in ("cola", "sst2"))
        assert all(isinstance(t, str) and t for t in part.text_a[:50])


def test_label_balance(glue_dir: Path) -> None:
    cola = load_task("CoLA", glue_dir)
    assert int(cola["train"].labels.sum()) == 6023
    assert np.bincount(cola["validation"].labels).tolist() == [322, 721]
    rte = load_task("rte", glue_dir)
    assert int((rte["validation"].labels == 0).sum()) == 146  # entailment = 0, as in HF glue
    assert int((rte["train"].labels == 0).sum()) == 1249
    mrpc = load_task("mrpc", glue_dir)
    assert int(mrpc["train"].labels.sum()) == 2474
    assert mrpc["validation"].text_b is not None and mrpc["validation"].text_b[0].startswith('" The foodservice')


def test_qnli_dev_and_missing_train(glue_dir: Path) -> None:
    dev = read_tsv_split(get_task("qnli"), glue_dir / "QNLI" / "dev.tsv")
    assert len(dev) == 5463
    assert np.bincount(dev.labels).tolist() == [2702, 2761]
    with pytest.raises(GlueError, match=r"train split of QNLI is missing at .*QNLI.train\.tsv.*--data-dir"):
        load_task("qnli", glue_dir)


def test_glue_dir_env(glue_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLUE_DIR", str(glue_dir))
    assert len(load_task("wnli")["validation"]) == 71


def test_missing_data_dir(tmp_path: Path) -> None:
    with pytest.raises(GlueError, match="does not exist.*--data-dir"):
        load_task("rte", tmp_path / "nowhere")


# --- layouts not shipped: small fixtures ------------------------------------------------------


def _write(path: Path, lines: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\t".join(row) + "\n" for row in lines), encoding="utf-8")


STSB_HEADER = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score"]


def _stsb_rows(n: int) -> list[list[str]]:
    return [[str(i), "main-captions", "MSRvid", "2012test", f"{i:04d}", "none", "none",
             f'A "man" is playing {i}.', f"A person plays {i}.", f"{(i * 0.37) % 5:.3f}"] for i in range(n)]


def test_stsb_layout(tmp_path: Path) -> None:
    _write(tmp_path / "STS-B" / "train.tsv", [STSB_HEADER] + _stsb_rows(12))
    _write(tmp_path / "STS-B" / "dev.tsv", [STSB_HEADER] + _stsb_rows(5))
    data = load_task("sts-b", tmp_path)
    assert len(data["train"]) == 12 and len(data["validation"]) == 5
    assert data["train"].labels.dtype == np.float32
    assert data["train"].labels[3] == pytest.approx(1.11)
    assert data["train"].text_a[0] == 'A "man" is playing 0.'  # quotes kept (QUOTE_NONE)
    assert data["train"].text_b == [f"A person plays {i}." for i in range(12)]


MNLI_DEV_HEADER = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
                   "sentence1_parse", "sentence2_parse", "sentence1", "sentence2",
                   "label1", "label2", "label3", "label4", "label5", "gold_label"]
MNLI_TRAIN_HEADER = MNLI_DEV_HEADER[:11] + ["gold_label"]
NLI = ["entailment", "neutral", "contradiction"]


def _mnli_rows(n: int, width: int, tag: str) -> list[list[str]]:
    rows = []
    for i in range(n):
        label = NLI[i % 3]
        rows.append([str(i), "1", f"{i}e", "fiction", "( a )", "( b )", "(ROOT a)", "(ROOT b)",
                     f"{tag} premise {i}", f"{tag} hypothesis {i}"] + [label] * (width - 10))
    return rows


def test_mnli_layout(tmp_path: Path) -> None:
    folder = tmp_path / "MNLI"
    _write(folder / "train.tsv", [MNLI_TRAIN_HEADER] + _mnli_rows(9, 12, "t"))
    _write(folder / "dev_matched.tsv", [MNLI_DEV_HEADER] + _mnli_rows(6, 16, "m"))
    mismatched = _mnli_rows(4, 16, "mm")
    mismatched[1][-1] = "-"  # no gold label: skipped
    _write(folder / "dev_mismatched.tsv", [MNLI_DEV_HEADER] + mismatched)
    data = load_task("MNLI", tmp_path)
    assert set(data) == {"train", "validation_matched", "validation_mismatched"}
    assert data["train"].labels.tolist() == [0, 1, 2] * 3
    assert len(data["validation_matched"]) == 6
    assert data["validation_matched"].text_a[2] == "m premise 2"
    assert data["validation_mismatched"].labels.tolist() == [0, 2, 0]


def test_bad_label_names_file(tmp_path: Path) -> None:
    _write(tmp_path / "RTE" / "train.tsv", [["index", "sentence1", "sentence2", "label"], ["0", "a", "b", "maybe"]])
    _write(tmp_path / "RTE" / "dev.tsv", [["index", "sentence1", "sentence2", "label"], ["0", "a", "b", "entailment"]])
    with pytest.raises(GlueError, match=r"train\.tsv:2: label 'maybe'"):
        load_task("rte", tmp_path)


def test_offline_without_data_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.delenv("GLUE_DIR", raising=False)
    start = time.monotonic()
    with pytest.raises(GlueError, match="--data-dir"):
        load_task("rte")
    assert time.monotonic() - start < 10


# --- subsampling ------------------------------------------------------------------------------


def test_stratified_subsample_keeps_proportions() -> None:
    rng = np.random.default_rng(0)
    labels = rng.choice(3, size=1000, p=[0.6, 0.3, 0.1])
    idx = subsample_indices(labels, 137, seed=1, stratify=True)
    assert len(idx) == 137 == len(np.unique(idx))
    assert np.all(np.diff(idx) > 0)
    got = np.bincount(labels[idx], minlength=3)
    expected = 137 * np.bincount(labels, minlength=3) / len(labels)
    assert np.all(np.abs(got - expected) < 1)


def test_subsample_seeded_and_not_prefix(glue_dir: Path) -> None:
    labels = load_task("cola", glue_dir)["train"].labels
    a = subsample_indices(labels, 200, seed=7, stratify=True)
    assert np.array_equal(a, subsample_indices(labels, 200, seed=7, stratify=True))
    assert not np.array_equal(a, subsample_indices(labels, 200, seed=8, stratify=True))
    assert not np.array_equal(a, np.arange(200))
    assert abs(int(labels[a].sum()) - 200 * 6023 / 8551) < 1


def test_subsample_regression_and_all() -> None:
    scores = np.linspace(0, 5, 50)
    idx = subsample_indices(scores, 10, seed=3, stratify=False)
    assert len(idx) == 10 and np.array_equal(idx, subsample_indices(scores, 10, seed=3, stratify=False))
    assert not np.array_equal(idx, np.arange(10))
    assert np.array_equal(subsample_indices(scores, None, seed=3, stratify=False), np.arange(50))
    assert np.array_equal(subsample_indices(scores, 500, seed=3, stratify=False), np.arange(50))
    with pytest.raises(GlueError, match="positive integer"):
        subsample_indices(scores, 0, seed=3, stratify=False)


def test_raw_split_select() -> None:
    raw = RawSplit(["a", "b", "c"], None, np.array([0, 1, 0]))
    part = raw.select([2, 0])
    assert part.text_a == ["c", "a"] and part.labels.tolist() == [0, 0] and len(part) == 2


# --- tokenisation and batching ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(packaged_model_path: str):  # noqa: ANN201
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(packaged_model_path)


def test_prepare_data_cola(glue_dir: Path, tokenizer) -> None:  # noqa: ANN001
    data = prepare_data("CoLA", tokenizer, data_dir=glue_dir, train_samples=200, eval_samples=100, max_length=16, seed=3)
    assert data.task == "cola" and data.num_labels == 2 and not data.is_regression
    assert (len(data.train), data.train_size) == (200, 200)
    assert list(data.evals) == ["validation"] and len(data.evals["validation"]) == data.eval_size == 100
    assert data.max_length == 16 and data.tokenizer_name
    lengths = np.concatenate([data.train.lengths(), data.evals["validation"].lengths()])
    assert lengths.max() == 16 and lengths.min() >= 3
    assert all(ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id for ids in data.train.input_ids)
    assert data.train.token_type_ids is not None
    assert abs(int(data.train.labels.sum()) - 200 * 6023 / 8551) < 1
    again = prepare_data("cola", tokenizer, data_dir=glue_dir, train_samples=200, eval_samples=100, max_length=16, seed=3)
    assert again.train.input_ids == data.train.input_ids


def test_prepare_data_pairs(glue_dir: Path, tokenizer) -> None:  # noqa: ANN001
    data = prepare_data("rte", tokenizer, data_dir=glue_dir, train_samples=40, eval_samples=30, max_length=32)
    assert data.train.lengths().max() <= 32
    assert all(1 in tt for tt in data.train.token_type_ids)  # type: ignore[union-attr]
    with pytest.raises(GlueError, match="max_length"):
        prepare_data("rte", tokenizer, data_dir=glue_dir, max_length=100_000)


def test_batches_dynamic_padding() -> None:
    split = Split(
        input_ids=[[5, 6, 7], [5], [5, 6, 7, 8, 9], [5, 6]],
        token_type_ids=[[0, 0, 1], [0], [0, 0, 0, 1, 1], [0, 1]],
        labels=np.array([1, 0, 1, 0]),
    )
    out = list(batches(split, 2, pad_id=0, shuffle=False))
    assert [b["input_ids"].shape[1] for b in out] == [3, 5]
    assert out[0]["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert out[0]["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert out[1]["token_type_ids"].tolist() == [[0, 0, 0, 1, 1], [0, 1, 0, 0, 0]]
    assert out[1]["labels"].dtype.is_floating_point is False and out[1]["labels"].tolist() == [1, 0]
    assert num_batches(4, 3) == 2 == len(list(batches(split, 3, pad_id=0, shuffle=False)))
    assert num_batches(4, 3, drop_last=True) == 1 == len(list(batches(split, 3, pad_id=0, shuffle=False, drop_last=True)))


def test_batches_shuffle_seeded_and_regression() -> None:
    split = Split(input_ids=[[i + 1] * (i % 4 + 1) for i in range(20)], token_type_ids=None,
                  labels=np.linspace(0, 5, 20).astype(np.float32))

    def order(seed: int, epoch: int) -> list[int]:
        return [int(x) for b in batches(split, 6, pad_id=0, shuffle=True, seed=seed, epoch=epoch)
                for x in b["input_ids"][:, 0]]

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1) and order(0, 0) != order(1, 0)
    assert sorted(order(0, 1)) == list(range(1, 21))
    first = next(iter(batches(split, 6, pad_id=0, shuffle=False)))
    assert "token_type_ids" not in first and first["labels"].dtype.is_floating_point


def test_unreachable_hub_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    import increlora.data.readers as readers

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "GLUE_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(readers, "hub_reachable", lambda timeout_s=3.0: False)
    with pytest.raises(GlueError, match="pass --data-dir DIR .* or set GLUE_DIR; the Hugging Face hub is unreachable"):
        load_task("sst2")
