"""The packed value sorts equal the plain (slow, obviously correct) index sorts."""

import numpy as np

from hgrnn.metrics.packsort import argsort_descending, dense_keys, rank_inverse, segments, sort_pairs


def test_argsort_descending_matches_stable_argsort():
    rng = np.random.default_rng(0)
    cases = [np.round(rng.random(20000), 3),                       # many exact ties
             rng.random(1000),
             np.r_[rng.random(200), 0.5 + np.arange(300) * 1e-13,   # near ties below 1e-9
                   -rng.random(50), [0.0, -0.0, 1e-300, -1e-300, 0.0]],
             np.ones(7), np.zeros(0), np.array([3.0])]
    for x in cases:
        rng.shuffle(x)
        np.testing.assert_array_equal(argsort_descending(x), np.argsort(-x, kind="stable"))


def test_sort_pairs_is_the_ranks_sorted_by_major_then_rank():
    rng = np.random.default_rng(1)
    for n, major_max in [(5000, 30), (300, 2**40), (1, 0)]:     # 2**40: the lexsort fallback
        rank = rng.permutation(n).astype(np.int64)
        major = rng.integers(0, major_max + 1, n).astype(np.int64)
        expected = rank[np.lexsort((rank, major))]
        np.testing.assert_array_equal(sort_pairs(major, rank), expected)
        ranks, majors = sort_pairs(major, rank, with_major=True)
        np.testing.assert_array_equal(ranks, expected)
        np.testing.assert_array_equal(majors, major[np.lexsort((rank, major))])
    assert len(sort_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64))) == 0


def test_rank_inverse_and_segments():
    rank = np.array([3, 0, 2, 1])
    inv = rank_inverse(rank)
    np.testing.assert_array_equal(inv[rank], np.arange(4))
    starts, lengths = np.array([5, 0, 10]), np.array([2, 3, 0])
    np.testing.assert_array_equal(segments(starts, lengths),
                                  np.concatenate([np.arange(s, s + n)
                                                  for s, n in zip(starts, lengths)]))


def test_dense_keys_keep_the_order_of_keyframe_keys():
    rng = np.random.default_rng(2)
    keys = (rng.integers(3, 9, 500).astype(np.int64) << 32) | rng.integers(900, 1800, 500)
    dense = dense_keys(keys)
    assert dense.min() >= 0
    np.testing.assert_array_equal(np.argsort(dense, kind="stable"),
                                  np.argsort(keys, kind="stable"))
    np.testing.assert_array_equal(np.unique(dense, return_inverse=True)[1],
                                  np.unique(keys, return_inverse=True)[1])
