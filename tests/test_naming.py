"""Module names -> layer and type, metric names that sort in module order."""

from increlora.naming import allocation_grid, matches_target, parse_key, rank_metric_name, short_key


def test_bert_and_deberta_names():
    assert short_key("bert.encoder.layer.3.attention.self.query") == "L03.q"
    assert short_key("deberta.encoder.layer.11.attention.self.value_proj") == "L11.v"
    assert short_key("roberta.encoder.layer.0.attention.output.dense") == "L00.o"
    assert short_key("bert.encoder.layer.0.output.dense") == "L00.f2"
    assert matches_target("bert.encoder.layer.0.intermediate.dense")
    assert not matches_target("bert.pooler.dense") and not matches_target("classifier")


def test_rank_metric_names_sort_in_module_order():
    names = [f"bert.encoder.layer.2.{s}" for s in ("output.dense", "attention.self.key", "intermediate.dense",
                                                   "attention.self.query", "attention.output.dense", "attention.self.value")]
    metrics = sorted(rank_metric_name(n) for n in names)
    assert metrics == ["rank/L02.1q", "rank/L02.2k", "rank/L02.3v", "rank/L02.4o", "rank/L02.5f1", "rank/L02.6f2"]
    assert [parse_key(m) for m in metrics][0] == (2, "q") and parse_key("L01.f2") == (1, "f2")
    assert parse_key("rank.L03.4o") == (3, "o")  # the names older searches logged


def test_allocation_grid():
    layers, types, grid = allocation_grid({"bert.encoder.layer.1.attention.self.query": 3, "bert.encoder.layer.0.output.dense": 2})
    assert layers == [0, 1] and types == ["q", "f2"] and grid == [[None, 2], [3, None]]
