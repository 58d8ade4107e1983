"""increlora.batching: length-grouped training batches and length-sorted evaluation batches."""

from __future__ import annotations

import numpy as np
import pytest

from increlora.batching import batch_indices, megabatch_size


def lengths(n: int = 1000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(3, 60, size=n)


def padded(lens: np.ndarray, order: list[np.ndarray]) -> int:
    return int(sum(lens[b].max() * len(b) for b in order))


@pytest.mark.parametrize("group", [False, True])
def test_every_epoch_is_a_seeded_permutation(group):
    lens = lengths()
    a = batch_indices(lens, 32, shuffle=True, seed=3, epoch=1, group_by_length=group)
    b = batch_indices(lens, 32, shuffle=True, seed=3, epoch=1, group_by_length=group)
    assert [x.tolist() for x in a] == [x.tolist() for x in b]
    assert sorted(np.concatenate(a).tolist()) == list(range(len(lens)))
    other_epoch = batch_indices(lens, 32, shuffle=True, seed=3, epoch=2, group_by_length=group)
    other_seed = batch_indices(lens, 32, shuffle=True, seed=4, epoch=1, group_by_length=group)
    assert np.concatenate(a).tolist() != np.concatenate(other_epoch).tolist()
    assert np.concatenate(a).tolist() != np.concatenate(other_seed).tolist()


def test_plain_shuffle_is_todays_permutation():
    lens = lengths(100)
    order = np.random.default_rng([7, 2]).permutation(100)
    got = batch_indices(lens, 32, shuffle=True, seed=7, epoch=2)
    assert np.concatenate(got).tolist() == order.tolist()
    assert [len(b) for b in got] == [32, 32, 32, 4]


def test_grouping_cuts_padding_and_mixes_batches():
    lens = lengths(4000)
    plain = batch_indices(lens, 32, shuffle=True, seed=0, group_by_length=False)
    grouped = batch_indices(lens, 32, shuffle=True, seed=0, group_by_length=True)
    real = int(lens.sum())
    pad_plain = 1 - real / padded(lens, plain)
    pad_grouped = 1 - real / padded(lens, grouped)
    assert pad_grouped < pad_plain / 4
    # batches come in a shuffled order, not longest to shortest
    maxima = [int(lens[b].max()) for b in grouped]
    assert maxima != sorted(maxima, reverse=True) and maxima != sorted(maxima)
    assert megabatch_size(4000, 32) == 32 * 31 and megabatch_size(100, 32) == 32


def test_sorted_evaluation_covers_every_row_longest_first():
    lens = lengths(300)
    got = batch_indices(lens, 64, shuffle=False, group_by_length=True)
    flat = np.concatenate(got)
    assert sorted(flat.tolist()) == list(range(300))
    assert (np.diff(lens[flat]) <= 0).all()
    in_order = batch_indices(lens, 64, shuffle=False)
    assert np.concatenate(in_order).tolist() == list(range(300))


def test_drop_last_keeps_only_full_batches():
    lens = lengths(100)
    got = batch_indices(lens, 32, shuffle=True, seed=1, group_by_length=True, drop_last=True)
    assert [len(b) for b in got] == [32, 32, 32]
