"""The order in which ActivityNet's AVA evaluator takes tied results (``--ties official``).

The official code (``Evaluation/get_ava_performance.py`` + ``Evaluation/ava/``, revisions
be7854e = 2018, 3fee089 = 2019, 82304fa = 2020) never breaks ties on purpose: the order of
equal scores is whatever its data flow produces. Where that flow goes through Python's
heapq or numpy's default sort, this module repeats it, calling the same numpy sort on the
same array, so the numbers agree whenever both run with the same numpy on the same kind of
CPU (numpy's default sort picks SIMD code by CPU; its order of equal keys is not specified).

The flow, per revision:

* reader: 2018 keeps each keyframe's rows in file order; 2019/2020 push each row as the
  tuple ``(score, action_id, y1, x1, y2, x2)`` on a per-keyframe heap (results: at most 50,
  a new row replacing the smallest tuple only when its score is strictly higher), then
  sort that heap's array by descending score (a stable sort: equal scores stay in heap
  order). Ground truth goes through the same heap with score 1.0 (2019/2020), so its boxes
  come in heap order. Keyframes come in the order of their first row in the label map.
* per keyframe and class: 2018 takes ``np.argsort(scores)[::-1]`` of that keyframe's results
  of the class in file order (inside a non-maximum suppression at IoU 1.0, which keeps
  every box, drops scores <= -10 and more than 10,000 boxes); 2019/2020 keep the reader's
  order. Each result takes the ground-truth box ``np.argmax`` finds first among equal IoUs.
* per class: the per-keyframe score arrays concatenated in keyframe order, ranked with
  ``np.argsort(scores)[::-1]``.

Everything here only decides orders; :func:`hgrnn.metrics.evaluate` does the arithmetic.
"""

from __future__ import annotations

import heapq
from collections import defaultdict

import numpy as np

__all__ = ["heap_order", "first_appearance_rank", "descending", "grouped_descending",
           "MAX_PER_KEYFRAME_AND_CLASS_2018", "SCORE_FLOOR_2018"]

MAX_PER_KEYFRAME_AND_CLASS_2018 = 10000   # the 2018 code's NMS max_output_size
SCORE_FLOOR_2018 = -10.0                  # ... and its score_threshold (strictly above)


def heap_order(scores, action_ids, boxes, capacity=0) -> np.ndarray:
    """One keyframe's rows, in file order, through the 2019/2020 reader.

    scores (n,) float64 (1.0 for ground truth); action_ids (n,) int; boxes (n, 4) float64
    x1, y1, x2, y2; capacity: 50 for results, 0 (no limit) for ground truth.
    Returns the indices (into the n rows) the reader keeps, in its output order."""
    heap = []
    rows = defaultdict(list)           # tuple -> its rows (equal tuples are interchangeable)
    for i, (s, a, (x1, y1, x2, y2)) in enumerate(zip(np.asarray(scores, np.float64).tolist(),
                                                     np.asarray(action_ids).tolist(),
                                                     np.asarray(boxes, np.float64).tolist())):
        item = (s, a, y1, x1, y2, x2)
        rows[item].append(i)
        if capacity < 1 or len(heap) < capacity:
            heapq.heappush(heap, item)
        elif s > heap[0][0]:
            heapq.heapreplace(heap, item)
    out = []
    used = defaultdict(int)
    for item in sorted(heap, key=lambda t: -t[0]):
        out.append(rows[item][used[item]])
        used[item] += 1
    return np.asarray(out, np.int64)


def first_appearance_rank(keys) -> np.ndarray:
    """keys (N,) int64 in file order -> (N,) int64: the rank of each row's key among the
    keys ordered by first appearance (the order of the official reader's dict)."""
    keys = np.asarray(keys)
    n = len(keys)
    if n == 0:
        return np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])      # runs of equal keys
    uniq, first_run, key_of_run = np.unique(keys[starts], return_index=True,
                                            return_inverse=True)
    rank_of_key = np.empty(len(uniq), np.int64)
    rank_of_key[np.argsort(first_run)] = np.arange(len(uniq))
    return np.repeat(rank_of_key[key_of_run.ravel()], np.diff(np.r_[starts, n]))


def descending(scores) -> np.ndarray:
    """``np.argsort(scores)[::-1]``: numpy's default sort, reversed, as the official code."""
    return np.argsort(scores)[::-1]


def grouped_descending(values, lengths) -> np.ndarray:
    """Each group's ``np.argsort(group)[::-1]``, groups concatenated in `values`.

    values (N,) float64; lengths (G,) group sizes summing to N. Returns (N,) int64 indices
    into `values` (each group's order, offset by its start). Groups of equal size are
    sorted as the rows of one 2-D array: numpy sorts each row with the 1-D routine, so the
    order is the one of a separate call per group (tested)."""
    values = np.asarray(values, np.float64)
    lengths = np.asarray(lengths, np.int64)
    starts = np.cumsum(lengths) - lengths
    out = np.empty(len(values), np.int64)
    for n in np.unique(lengths):
        n = int(n)
        s = starts[lengths == n]                                     # (g,)
        idx = s[:, None] + np.arange(n)                              # (g, n)
        order = np.argsort(values[idx], axis=1)[:, ::-1]             # (g, n)
        out[idx] = np.take_along_axis(idx, order, axis=1)
    return out
