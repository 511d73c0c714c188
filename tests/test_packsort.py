"""The packed value sorts equal the plain (slow, obviously correct) index sorts."""

import numpy as np

from hgrnn.metrics.packsort import (argsort_descending, argsort_descending_in_runs, dense_keys,
                                    rank_inverse, segments, sort_pairs)


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


def test_argsort_descending_in_runs_matches_lexsort():
    """Each run sorted by descending value, ties in index order, runs in place: the packed
    sort and its fallbacks (values closer than the packed bits; too many bits) against
    lexsort."""
    rng = np.random.default_rng(3)
    near = 0.5 + np.arange(40) * 1e-13                  # one run's values share top bits
    cases = [(np.round(rng.random(20000), 3), rng.integers(1, 300, 400)),   # many ties
             (rng.random(1000), np.array([1000])),
             (np.r_[rng.random(60), near, -rng.random(30), [0.0, -0.0, 1e-300, -1e-300]],
              np.array([50, 10, 40, 34])),
             (np.r_[near, rng.random(5)], np.array([45])),
             (rng.random(3000), np.ones(3000, np.int64)),       # one-row runs
             (rng.random(70000).round(2), np.array([1, 60000, 9999])),
             # 2^16 runs, one of 2^16 rows: 31 bits of the value, `near` collides
             (np.r_[near, rng.random(2 ** 17 - 40)], np.r_[2 ** 16, np.ones(2 ** 16, int)]),
             (np.zeros(0), np.zeros(0, np.int64))]
    for x, lengths in cases:
        ends = np.minimum(np.cumsum(lengths), len(x))
        starts = np.unique(np.r_[0, ends[ends < len(x)]]).astype(np.int64)   # runs of x
        run = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(x))))
        expected = np.lexsort((np.arange(len(x)), -x, run))
        np.testing.assert_array_equal(argsort_descending_in_runs(x, starts), expected)


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
