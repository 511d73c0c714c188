"""Stage 3 of :func:`hgrnn.metrics.evaluate`, match: which results are true positives.

Per keyframe and class, results are taken in matching order (``cat``, from
:mod:`hgrnn.metrics.order`); each takes the ground-truth box of its keyframe and class with
the highest IoU (on an exact tie the first in file order; with official ties and
ava-2019/2020 the first in the reader heap's order) and is a true positive iff that IoU is
>= 0.5 and no earlier result took the box (no fall-back to the second-best box).

Ground-truth rows are sorted by (keyframe, class) into blocks; each result finds its block
with one binary search per run of equal keyframes and a table lookup. IoUs are computed
for all (result, candidate box) pairs slot by slot: a loop over the at most few dozen boxes
of one keyframe and class, never over keyframes or results.
"""

from __future__ import annotations

import numpy as np

from hgrnn.metrics.official_order import heap_order
from hgrnn.metrics.select import Results, Truth

IOU_THRESHOLD = 0.5


def box_iou(a, b) -> np.ndarray:
    """IoU of every pair: a (N, 4), b (M, 4) x1, y1, x2, y2 -> (N, M) float64.

    No +1 on widths (normalised coordinates); same arithmetic as the official code."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ih = np.maximum(0.0, np.minimum(a[:, None, 3], b[None, :, 3])
                    - np.maximum(a[:, None, 1], b[None, :, 1]))
    iw = np.maximum(0.0, np.minimum(a[:, None, 2], b[None, :, 2])
                    - np.maximum(a[:, None, 0], b[None, :, 0]))
    inter = ih * iw
    area_a = (a[:, 3] - a[:, 1]) * (a[:, 2] - a[:, 0])
    area_b = (b[:, 3] - b[:, 1]) * (b[:, 2] - b[:, 0])
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def pair_iou(a, b):
    """Elementwise IoU of rows a[i], b[i] ((P, 4) each) -> (P,), official arithmetic."""
    ih = np.maximum(0.0, np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]))
    iw = np.maximum(0.0, np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]))
    inter = ih * iw
    area_a = (a[:, 3] - a[:, 1]) * (a[:, 2] - a[:, 0])
    area_b = (b[:, 3] - b[:, 1]) * (b[:, 2] - b[:, 0])
    return inter / (area_a + area_b - inter)


def match(truth: Truth, res: Results, cat, ids, protocol, ties) -> np.ndarray:
    """-> tp (R,) bool. truth is sorted here by (keyframe, class, file row)."""
    K = len(ids)
    t = np.lexsort((truth.rows, truth.cls, truth.keys))
    gkeys, gcls, gboxes, grows = truth.keys[t], truth.cls[t], truth.boxes[t], truth.rows[t]
    has, lo, ncand = candidate_blocks(gkeys, gcls, res.keys, res.cls, K)
    best_iou, best_gt = np.empty(len(has)), np.empty(len(has), np.int64)
    for a in range(0, len(has), _MATCH_ROWS):   # a part at a time: boxes and IoU temporaries
        part = slice(a, a + _MATCH_ROWS)
        hboxes = res.boxes(has[part])                              # (A, 4)
        best_iou[part], best_gt[part], n_best = best_boxes(hboxes, gboxes, lo[part],
                                                           ncand[part])
        if ties == "official" and protocol != "ava-2018":
            # 2019/2020 read the ground truth through the heap: among boxes at the same
            # best IoU, argmax takes the first in heap order, not in file order
            amb = np.flatnonzero((n_best > 1) & (best_iou[part] >= IOU_THRESHOLD))
            if len(amb):
                best_gt[a + amb] = first_in_heap_order(amb, lo[part], ncand[part], hboxes,
                                                       best_iou[part], grows, gkeys, gboxes,
                                                       ids, gcls)
    return first_takers(len(res), cat, has, best_iou, best_gt)


_MATCH_ROWS = 1 << 20           # results matched at a time (bounds the temporaries)


def candidate_blocks(gkeys, gcls, rkeys, rcls, K):
    """Ground truth sorted by (keyframe, class) -> (has, lo, ncand): the results with
    candidate boxes (indices, ascending), their block's first gt row and its size."""
    ukeys, gkey_dense = np.unique(gkeys, return_inverse=True)
    if not len(ukeys):
        return (np.zeros(0, np.int64),) * 3
    gcode = gkey_dense.ravel().astype(np.int64) * K + gcls          # sorted ascending
    block_len = np.bincount(gcode, minlength=len(ukeys) * K)        # (U*K,)
    block_start = np.cumsum(block_len) - block_len
    # each result's keyframe among the ground truth's, one search per run of equal keys
    start = np.flatnonzero(np.r_[True, rkeys[1:] != rkeys[:-1]]) if len(rkeys) else \
        np.zeros(0, np.int64)
    at = np.minimum(np.searchsorted(ukeys, rkeys[start]), len(ukeys) - 1)
    at[ukeys[at] != rkeys[start]] = -1                              # keyframe without gt
    if len(ukeys) * K < 1 << 31:                  # int32 codes: half the memory of (R,)
        at = at.astype(np.int32)
    kf = np.repeat(at, np.diff(np.append(start, len(rkeys))))       # (R,)
    has = np.flatnonzero(kf >= 0)
    code = kf[has] * K + rcls[has]
    del kf
    ncand = block_len[code]
    with_boxes = np.flatnonzero(ncand)
    return has[with_boxes], block_start[code[with_boxes]], ncand[with_boxes]


def best_boxes(hboxes, gboxes, lo, ncand):
    """Best candidate per result: highest IoU, first in file order on ties (strict >).
    -> (best_iou (A,), best_gt (A,) index into the sorted gt, n_best (A,): how many
    candidates share the best IoU)."""
    best_iou = np.full(len(lo), -1.0)
    best_gt = np.full(len(lo), -1, np.int64)
    n_best = np.zeros(len(lo), np.int64)
    active = np.arange(len(lo))
    slot = 0
    while len(active):
        g = lo[active] + slot
        iou = pair_iou(hboxes.take(active, axis=0), gboxes.take(g, axis=0))
        b = best_iou[active]
        better = iou > b
        n_best[active] = np.where(better, 1, n_best[active] + (iou == b))
        best_iou[active[better]] = iou[better]
        best_gt[active[better]] = g[better]
        slot += 1
        active = active[ncand[active] > slot]
    return best_iou, best_gt, n_best


def first_takers(n_res, cat, has, best_iou, best_gt) -> np.ndarray:
    """tp (R,) bool: IoU >= 0.5 and the first such result, in matching order (`cat`), of
    its box."""
    tp = np.zeros(n_res, bool)
    cand = np.flatnonzero(best_iou >= IOU_THRESHOLD)               # into `has`
    if not len(cand):
        return tp
    rows = has[cand]                                               # ascending
    mark = np.zeros(n_res, bool)
    mark[rows] = True
    in_order = cat[np.flatnonzero(mark[cat])]             # the candidates in matching order
    box = best_gt[cand[np.searchsorted(rows, in_order)]]
    o = np.argsort(box, kind="stable")
    first = np.r_[True, box[o][1:] != box[o][:-1]]
    tp[in_order[o[first]]] = True
    return tp


def first_in_heap_order(amb, lo, ncand, hboxes, best_iou, gfile, gkeys, gboxes, ids, gcls):
    """For results whose best IoU (>= 0.5) is shared by several ground-truth boxes, the box
    the 2019/2020 code's argmax takes: the first in its reader's heap order.

    amb: indices into the `has` arrays; lo/ncand: candidate block start and size; gt rows
    sorted by (keyframe, class, file) with gfile their original row index. Returns (A,)
    the chosen gt index (into the sorted gt arrays)."""
    keys = np.unique(gkeys[lo[amb]])
    rows = np.flatnonzero(np.isin(gkeys, keys))                  # sorted by keyframe
    heap_rank = np.full(len(gkeys), -1, np.int64)
    kr = gkeys[rows]
    st = np.flatnonzero(np.r_[True, kr[1:] != kr[:-1]])
    en = np.r_[st[1:], len(rows)]
    for a, b in zip(st.tolist(), en.tolist()):
        idx = rows[a:b]
        idx = idx[np.argsort(gfile[idx], kind="stable")]         # file order
        order = heap_order(np.ones(len(idx)), ids[gcls[idx]], gboxes[idx], 0)
        heap_rank[idx[order]] = np.arange(len(order))
    out = np.empty(len(amb), np.int64)
    for j, i in enumerate(amb.tolist()):
        g = np.arange(lo[i], lo[i] + ncand[i])
        iou = pair_iou(np.repeat(hboxes[i:i + 1], len(g), axis=0), gboxes[g])
        at_best = g[iou == best_iou[i]]
        out[j] = at_best[np.argmin(heap_rank[at_best])]
    return out
