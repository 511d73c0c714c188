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

from hgrnn.metrics.packsort import segments, sort_pairs

__all__ = ["heap_order", "first_appearance_rank", "descending", "grouped_descending",
           "heap_keyframes", "simulate_heaps", "official_concat", "position_in_group",
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


# ---- the official order, vectorised: used by :func:`hgrnn.metrics.evaluate`

def heap_keyframes(by_key, ks, start, rank, scores, cls, K, capacity):
    """Keyframes (keys) whose rows the 2019/2020 heap must be simulated for: a tie at the
    50-cap boundary, or two kept results of one class with equal scores.

    by_key: row indices sorted by (keyframe, descending score); ks: their keys; start:
    first position of each keyframe; rank: position inside the keyframe; capacity:
    the reader's cap (50)."""
    sc = scores[by_key]
    n = np.diff(np.r_[start, len(ks)])
    big = start[n > capacity]
    boundary = big[sc[big + capacity - 1] == sc[big + capacity]]
    kept = rank < capacity
    same = np.flatnonzero(kept[1:] & kept[:-1] & (ks[1:] == ks[:-1]) & (sc[1:] == sc[:-1]))
    tied = np.zeros(0, np.int64)
    if len(same):
        # rows in runs of equal (keyframe, score): a class seen twice in a run is a tie
        in_run = np.zeros(len(ks), bool)
        in_run[same] = in_run[same + 1] = True
        pos = np.flatnonzero(in_run)
        run = np.cumsum(np.r_[True, ~((pos[1:] == pos[:-1] + 1)
                                      & (ks[pos[1:]] == ks[pos[:-1]])
                                      & (sc[pos[1:]] == sc[pos[:-1]]))]) - 1
        code = run * K + cls[by_key[pos]]
        u, c = np.unique(code, return_counts=True)
        dup_runs = np.unique(u[c > 1] // K)
        first_pos = pos[np.searchsorted(run, dup_runs)]
        tied = ks[first_pos]
    return np.unique(np.concatenate([ks[boundary], tied]))


def simulate_heaps(keys_to_sim, keys, scores, action_ids, boxes, rows_in_boxes, capacity):
    """Run the 2019/2020 reader's heap for the given keyframes.

    keys (R,) etc.: the results before the cap, in file order; boxes: (N, 4) of all result
    rows, rows_in_boxes: (R,) their rows there (None: the same rows). Returns (hpos (R,) int64:
    position in the keyframe's output order, -1 where not simulated or not kept;
    sim_rows: all rows of the simulated keyframes; kept_rows: those the heap keeps)."""
    sim_rows = np.flatnonzero(np.isin(keys, keys_to_sim))
    o = sim_rows[np.argsort(keys[sim_rows], kind="stable")]        # by key, file order
    ko = keys[o]
    st = np.flatnonzero(np.r_[True, ko[1:] != ko[:-1]])
    en = np.r_[st[1:], len(o)]
    hpos = np.full(len(keys), -1, np.int64)
    kept = []
    for a, b in zip(st.tolist(), en.tolist()):
        idx = o[a:b]
        b4 = boxes[idx if rows_in_boxes is None else rows_in_boxes[idx]]
        order = idx[heap_order(scores[idx], action_ids[idx], b4, capacity)]
        hpos[order] = np.arange(len(order))
        kept.append(order)
    kept_rows = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    return hpos, sim_rows, kept_rows


def official_concat(rcls, img_rank, rscores, hpos, protocol):
    """Result indices in the official per-class concatenation: class, then keyframe in
    reader order, then inside a keyframe the order results are matched in (2018:
    np.argsort of the keyframe's scores in file order, reversed; 2019/2020: descending
    score, equal scores in heap order). Returns (cat (R,), the largest group's size,
    rscores[cat]).

    One packed sort puts each (class, keyframe) group's results together in file order;
    only the groups not already strictly descending in score are reordered."""
    n = len(rcls)
    if n == 0:
        return np.zeros(0, np.int64), 0, np.zeros(0)
    n_img = int(img_rank.max()) + 1
    gkey = rcls.astype(np.int64) * n_img + img_rank
    cat, g = sort_pairs(gkey, np.arange(n), with_major=True)   # groups contiguous, file order
    del gkey
    s = rscores[cat]
    same_group = g[1:] == g[:-1]
    gstart = np.flatnonzero(np.r_[True, ~same_group])
    glen = np.diff(np.r_[gstart, n])
    unsorted = np.flatnonzero(same_group & (s[1:] >= s[:-1]))
    del g, same_group
    if not len(unsorted):
        return cat, int(glen.max()), s
    fix = np.searchsorted(gstart, unsorted, side="right") - 1            # ascending
    fix = fix[np.r_[True, fix[1:] != fix[:-1]]]
    del unsorted
    # the groups to reorder, a part at a time (groups are reordered each on its own, so
    # the parts only bound the temporaries: 11M results held ~0.6 GB more at once)
    ends = np.cumsum(glen[fix])
    cuts = np.searchsorted(ends, np.arange(_REORDER_ROWS, int(ends[-1]), _REORDER_ROWS))
    for part in np.split(fix, np.unique(cuts[(cuts > 0) & (cuts < len(fix))])):
        pos = segments(gstart[part], glen[part])
        rows = cat[pos]                    # the part's groups, each in file order
        if protocol == "ava-2018":
            rows = rows[grouped_descending(rscores[rows], glen[part])]
        else:
            rows = _heap_ordered(rows, rscores, hpos, glen[part])
        cat[pos] = rows
        s[pos] = rscores[rows]
    return cat, int(glen.max()), s


_REORDER_ROWS = 1 << 20         # results reordered at a time by official_concat


def _heap_ordered(rows, rscores, hpos, lengths):
    """2019/2020: each group of `rows` (groups of `lengths`, concatenated) by descending
    score, equal scores in the simulated reader heap's order (hpos)."""
    grp = np.repeat(np.arange(len(lengths)), lengths)
    sc = rscores[rows]
    h = np.zeros(len(rows), np.int64) if hpos is None else hpos[rows]
    o = np.lexsort((h, -sc, grp))
    rows, sc, h, grp = rows[o], sc[o], h[o], grp[o]
    tie = (grp[1:] == grp[:-1]) & (sc[1:] == sc[:-1])
    if (tie & ((h[1:] < 0) | (h[:-1] < 0) | (hpos is None))).any():
        raise AssertionError("internal: tied results on a keyframe whose reader heap "
                             "was not simulated")
    return rows


def position_in_group(rcls, img_rank, cat):
    """Each result's position inside its (class, keyframe) group of the concatenation."""
    g = rcls[cat].astype(np.int64) * (int(img_rank.max()) + 1) + img_rank[cat]
    gstart = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    within = np.arange(len(g)) - np.repeat(gstart, np.diff(np.r_[gstart, len(g)]))
    out = np.empty(len(g), np.int64)
    out[cat] = within
    return out
