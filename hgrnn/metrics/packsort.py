"""Sorting millions of rows with numpy's value sort instead of an index sort.

``np.argsort`` / ``np.lexsort`` of 5.6 million rows (the full AVA validation results) take
seconds; ``ndarray.sort`` of int64 values is several times faster (vectorised). So wherever
an order of rows is needed, a key and the row index are packed into one int64, sorted by
value, and the index is unpacked from the low bits. Every function here is exact: where a
key does not fit, it falls back to the plain stable index sort. Used by
:mod:`hgrnn.metrics` and :mod:`hgrnn.metrics.official_order`; tested against the plain sorts in
``tests/test_packsort.py``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["argsort_descending", "argsort_descending_in_runs", "run_of_rows", "sort_pairs",
           "rank_inverse", "dense_keys", "segments"]


def argsort_descending(x):
    """Indices sorting float64 x (N,) by descending value, ties in index order; the same
    as np.argsort(-x, kind="stable"), several times faster for millions of values.

    An order-preserving integer key's top bits and the index are packed into one int64
    and sorted by value (numpy's vectorised sort), in place. That order is exact unless
    two different values share those top bits (closer than ~1e-9 relative), which a sort
    of the values themselves detects; then the plain stable argsort is used."""
    n = len(x)
    rbits = max(int(n - 1).bit_length(), 1)
    if n < 2 or rbits > 40:
        return np.argsort(-np.asarray(x, np.float64), kind="stable")
    hbits = 63 - rbits
    xs = np.sort(np.asarray(x, np.float64)) + 0.0    # ascending; -0.0 -> 0.0
    same_top = _descending_top_bits(xs.copy(), hbits)
    collide = (same_top[1:] == same_top[:-1]) & (xs[1:] != xs[:-1])
    del same_top
    if collide.any():
        return np.argsort(-np.asarray(x, np.float64), kind="stable")
    packed = _descending_top_bits(np.asarray(x, np.float64) + 0.0, hbits)
    np.left_shift(packed, rbits, out=packed)
    np.bitwise_or(packed, np.arange(n, dtype=np.int64), out=packed)
    packed.sort()
    np.bitwise_and(packed, (1 << rbits) - 1, out=packed)
    return packed


def _descending_top_bits(values, hbits):
    """float64 values (a copy: overwritten) -> int64, the top `hbits` bits of a key that
    ascends as the value descends (-0.0 must have been made 0.0)."""
    key = values.view(np.uint64)
    pos = ~np.signbit(values)
    np.invert(key, out=key, where=pos)               # x >= 0: ~bits with sign bit cleared
    np.bitwise_and(key, np.uint64((1 << 63) - 1), out=key, where=pos)
    np.right_shift(key, np.uint64(64 - hbits), out=key)       # x < 0: bits (sign set)
    return key.view(np.int64)


def argsort_descending_in_runs(x, starts):
    """Indices sorting each run of float64 x (N,) by descending value, ties in index
    order, the runs kept in place: runs are [starts[i], starts[i + 1]) (starts[0] == 0,
    increasing). The same as np.lexsort((np.arange(N), -x, run)), in one value sort.

    The run, the top bits of the descending key and the position in the run are packed
    into one int64 (the runs of AVA results are keyframes: ~50k runs of ~100 rows leave
    ~39 bits of the value). Where two different values of one run share those top bits,
    which a look at the sorted neighbours detects, the plain lexsort is used."""
    x = np.asarray(x, np.float64)
    n = len(x)
    starts = np.asarray(starts, np.int64)
    if n == 0:
        return np.zeros(0, np.int64)
    lengths = np.diff(np.append(starts, n))
    lbits = max(int(lengths.max() - 1).bit_length(), 1)
    sbits = max(int(len(starts) - 1).bit_length(), 1)
    hbits = 63 - lbits - sbits
    run = run_of_rows(starts, n)
    if hbits >= 24:
        base = starts[run]                                       # (N,) first row of its run
        packed = _descending_top_bits(x + 0.0, hbits)            # -0.0 -> 0.0
        np.left_shift(run, hbits, out=run)
        packed |= run
        del run
        np.left_shift(packed, lbits, out=packed)
        packed += np.arange(n, dtype=np.int64)
        packed -= base                                           # position in the run
        packed.sort()
        same = (packed[1:] >> lbits) == (packed[:-1] >> lbits)    # same run and top bits
        np.bitwise_and(packed, (1 << lbits) - 1, out=packed)
        packed += base                           # the runs keep their places: -> index
        v = x[packed]
        if not (same & (v[1:] != v[:-1])).any():
            return packed
        run = run_of_rows(starts, n)
    return np.lexsort((np.arange(n), -x, run))


def run_of_rows(starts, n):
    """(N,) int64: the run of each of `n` rows, runs starting at `starts` (starts[0] ==
    0, increasing); a cumulative sum, faster than np.repeat of many short runs."""
    run = np.zeros(n, np.int64)
    run[starts[1:]] = 1
    return np.cumsum(run, out=run)


def sort_pairs(major, rank, with_major=False):
    """Rows sorted by (major, rank): rank (N,) unique non-negative ints, major (N,)
    non-negative ints. Returns the ranks in that order (with_major: and the majors in
    that order, (ranks, majors)).

    Both are packed into one int64 and sorted by value (numpy's vectorised sort), which is
    several times faster than an index sort (argsort/lexsort) of 5.6 million rows."""
    n = len(rank)
    if n == 0:
        empty = np.zeros(0, np.int64)
        return (empty, empty.copy()) if with_major else empty
    rbits = max(int(rank.max()).bit_length(), 1)
    if int(major.max()).bit_length() + rbits <= 62:
        packed = major.astype(np.int64)
        np.left_shift(packed, rbits, out=packed)
        np.bitwise_or(packed, rank, out=packed)
        packed.sort()
        majors = np.right_shift(packed, rbits) if with_major else None
        np.bitwise_and(packed, (1 << rbits) - 1, out=packed)
        return (packed, majors) if with_major else packed
    order = np.lexsort((rank, major))
    return (rank[order], major[order]) if with_major else rank[order]


def rank_inverse(rank):
    """rank (N,) distinct non-negative ints -> inv with inv[rank[i]] = i."""
    inv = np.empty(int(rank.max()) + 1 if len(rank) else 0, np.int64)
    inv[rank] = np.arange(len(rank))
    return inv


def dense_keys(keys):
    """Keyframe keys (video code << 32 | timestamp) -> small non-negative ints, same order
    (video code * timestamp span + timestamp offset), so they pack with a rank."""
    if len(keys) == 0:
        return keys
    vcode, ts = keys >> 32, keys & 0xFFFFFFFF
    ts = ts - ts.min()
    return (vcode - vcode.min()) * (int(ts.max()) + 1) + ts


def segments(starts, lengths):
    """Concatenated aranges [s, s + l) for each (s, l)."""
    total = int(lengths.sum())
    base = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return base + np.arange(total)
