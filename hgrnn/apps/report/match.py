"""Step 2 of `hgrnn report`: the protocol's matching once more, per result row, keeping
what :func:`hgrnn.metrics.evaluate` does not return: true / false positive, the rank in
the class's ranking and the ground-truth box each row took (equal scores in file order,
i.e. ``ties="stable"``).

:func:`match_results` in named steps: keyframe keys and label-map columns (exclusions
dropped) -> the rows the protocol drops (the 50-per-keyframe cap, ava-2020's unknown
keyframes, invalid boxes) -> each result's best box of its keyframe and class -> which
results take their box (the first in score order) -> the per-class rankings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hgrnn.data.ava import AvaRows, LabelMap, keyframe_index
from hgrnn.metrics import IOU_THRESHOLD, MAX_RESULTS_PER_KEYFRAME, average_precision
from hgrnn.metrics.match import pair_iou


@dataclass
class Matching:
    """The protocol's matching, per row, for one result file against the ground truth.

    Result rows (R, in file order): cls (R,) int label-map column, -1 for rows the
    protocol drops (outside the label map, excluded, over the 50-per-keyframe cap,
    ava-2020 keyframes absent from the ground truth, invalid boxes); tp (R,) bool; gt
    (R,) the ground-truth row of the same keyframe and class with the highest IoU (first
    in file order on ties), -1 when none; iou (R,) that IoU (0 when none); rank (R,)
    position in the class's ranking (descending score, file order on ties), -1 when
    dropped. order: per class, the result rows in ranking order (class c's are
    order[start[c]:start[c + 1]]).

    Ground-truth rows (G): gt_cls (G,) column, -1 when not evaluated; gt_found (G,) the
    result row that matched it, -1 when none; gt_best_score (G,) the highest score of a
    result of its class on its box (IoU >= 0.5), NaN when none. keys: keyframe keys of
    result and ground-truth rows (one key space); instances (K,) per class."""
    cls: np.ndarray
    tp: np.ndarray
    gt: np.ndarray
    iou: np.ndarray
    rank: np.ndarray
    order: np.ndarray
    start: np.ndarray
    gt_cls: np.ndarray
    gt_found: np.ndarray
    gt_best_score: np.ndarray
    result_keys: np.ndarray
    gt_keys: np.ndarray
    instances: np.ndarray

    def average_precisions(self) -> list:
        """(K,) AP per class from the matching (None for classes without instances)."""
        out = []
        for c in range(len(self.instances)):
            n = int(self.instances[c])
            seg = self.tp[self.order[self.start[c]:self.start[c + 1]]]
            out.append(None if n == 0 else average_precision(seg, n))
        return out


def match_results(gt: AvaRows, results: AvaRows, label_map: LabelMap, protocol="ava-2018",
                  exclusions=None) -> Matching:
    """The official matching of `results` against `gt` per row (see :class:`Matching`),
    with equal scores in file order.

    Same rules as :func:`hgrnn.metrics.evaluate` (its docstring): rows outside the label
    map and excluded keyframes dropped, the ava-2019/2020 cap of 50 results per keyframe,
    ava-2020's keyframes absent from the ground truth, invalid boxes; then per keyframe and
    class, in descending score, each result takes the same-class box with the highest IoU
    and is a true positive iff that IoU >= 0.5 and the box is still free. Vectorised:
    results in score order find their candidate boxes (same keyframe and class) by a
    binary search over the ground truth sorted by (keyframe, class); the box a result takes
    is "first in score order among the results whose best box it is"."""
    K = len(label_map)
    rkeys, gkeys, vocab = _keyframe_keys(gt, results)
    rcls, gcls = _columns_kept(gt, results, label_map, exclusions, rkeys, gkeys, vocab)
    scores = f64(results, "scores")
    rboxes = f64(results, "boxes").reshape(-1, 4)
    gboxes = f64(gt, "boxes").reshape(-1, 4)
    by_score = np.argsort(-scores, kind="stable")          # (R,) descending, file order
    _drop_as_the_protocol_does(rcls, protocol, by_score, rkeys, gkeys, rboxes, gt, vocab)
    gt_of, iou_of, gt_best_score = _best_boxes(rcls, rkeys, rboxes, gcls, gkeys, gboxes,
                                               scores, K)
    ranked = by_score[rcls[by_score] >= 0]                 # evaluated results, score order
    tp, gt_found = _take_boxes(ranked, gt_of, iou_of, len(gt))
    order, start, rank = _class_rankings(rcls, ranked, K)
    instances = np.bincount(gcls[gcls >= 0], minlength=K)
    return Matching(cls=rcls, tp=tp, gt=gt_of, iou=iou_of, rank=rank, order=order,
                    start=start, gt_cls=gcls, gt_found=gt_found, gt_best_score=gt_best_score,
                    result_keys=rkeys, gt_keys=gkeys, instances=instances)


def _keyframe_keys(gt: AvaRows, results: AvaRows):
    """Keyframe keys of result and ground-truth rows in one key space (the union of both
    files' keyframes and the ground truth's keyframes without persons): (R,), (G,), vocab."""
    _, vocab_r = keyframe_index(results.video_ids, results.timestamps)
    _, vocab_g = keyframe_index(gt.video_ids, gt.timestamps)
    vocab = np.union1d(vocab_r, vocab_g)
    if gt.empty_video_ids is not None and len(gt.empty_video_ids):
        vocab = np.union1d(vocab, np.unique(gt.empty_video_ids))
    rkeys, _ = keyframe_index(results.video_ids, results.timestamps, vocab)
    gkeys, _ = keyframe_index(gt.video_ids, gt.timestamps, vocab)
    return rkeys, gkeys, vocab


def _columns_kept(gt, results, label_map, exclusions, rkeys, gkeys, vocab):
    """Label-map columns of result and ground-truth rows, -1 outside the label map and on
    excluded keyframes."""
    ids = np.asarray(label_map.ids, np.int64)
    rcls = _columns(results.action_ids, ids)
    gcls = _columns(gt.action_ids, ids)
    if exclusions:
        ex = list(exclusions)
        exk, _ = keyframe_index(np.array([v for v, _ in ex], str),
                                np.array([t for _, t in ex], np.int64), vocab)
        rcls[np.isin(rkeys, exk)] = -1
        gcls[np.isin(gkeys, exk)] = -1
    return rcls, gcls


def _drop_as_the_protocol_does(rcls, protocol, by_score, rkeys, gkeys, rboxes, gt, vocab):
    """Set rcls to -1 (in place) for the results the protocol drops after the label map
    and the exclusions: over the 50 highest-scored of their keyframe (ava-2019/2020, all
    classes together), on keyframes absent from the ground truth (ava-2020), with an
    invalid box (x2 <= x1 or y2 <= y1)."""
    if protocol in ("ava-2019", "ava-2020"):               # top 50 per keyframe, all classes
        live = by_score[rcls[by_score] >= 0]
        grouped = live[np.argsort(rkeys[live], kind="stable")]   # keyframe, then score
        k = rkeys[grouped]
        first = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
        pos = np.arange(len(k)) - np.repeat(first, np.diff(np.r_[first, len(k)]))
        rcls[grouped[pos >= MAX_RESULTS_PER_KEYFRAME]] = -1
    if protocol == "ava-2020":                             # keyframes absent from gt: ignored
        known = gkeys
        if gt.empty_video_ids is not None and len(gt.empty_video_ids):
            ek, _ = keyframe_index(gt.empty_video_ids, gt.empty_timestamps, vocab)
            known = np.concatenate([gkeys, ek])
        rcls[~np.isin(rkeys, known)] = -1
    invalid = (rboxes[:, 2] <= rboxes[:, 0]) | (rboxes[:, 3] <= rboxes[:, 1])
    rcls[invalid] = -1


def _best_boxes(rcls, rkeys, rboxes, gcls, gkeys, gboxes, scores, K):
    """Each evaluated result's best box: the ground-truth row of its keyframe and class
    with the highest IoU (the first in file order on ties). Returns (R,) that row (-1 when
    none), (R,) its IoU (0 when none), and per ground-truth row (G,) the highest score of a
    result of its class at IoU >= 0.5 (NaN when none). Each result walks its candidate
    block slot by slot (a loop over the few boxes of one keyframe and class)."""
    live, gorder, lo, n_cand = _candidate_blocks(rcls, rkeys, gcls, gkeys, K)
    best_iou = np.zeros(len(live))
    best_gt = np.full(len(live), -1, np.int64)
    gt_best_score = np.full(len(gcls), np.nan)
    active = np.flatnonzero(n_cand)
    slot = 0
    while len(active):
        g = gorder[lo[active] + slot]
        iou = pair_iou(rboxes[live[active]], gboxes[g])
        better = iou > best_iou[active]
        if slot == 0:
            better = np.ones(len(active), bool)            # the first box is the best so far
        best_iou[active[better]] = iou[better]
        best_gt[active[better]] = g[better]
        hit = iou >= IOU_THRESHOLD                         # scores of results on the box
        np.fmax.at(gt_best_score, g[hit], scores[live[active[hit]]])
        slot += 1
        active = active[n_cand[active] > slot]
    gt_of = np.full(len(rcls), -1, np.int64)
    gt_of[live] = best_gt
    iou_of = np.zeros(len(rcls))
    iou_of[live] = best_iou
    return gt_of, iou_of, gt_best_score


def _candidate_blocks(rcls, rkeys, gcls, gkeys, K):
    """The ground truth sorted by (keyframe, class) into blocks, file order inside, and
    each evaluated result's block, found by a binary search. Returns live (the evaluated
    result rows, file order), gorder (gt rows in block order), and per live result the
    start of its block in gorder and its length (0: no candidate box)."""
    gsel = np.flatnonzero(gcls >= 0)
    ukeys = np.unique(gkeys[gsel])
    gcode = np.searchsorted(ukeys, gkeys[gsel]) * K + gcls[gsel]
    gorder = gsel[np.argsort(gcode, kind="stable")]        # gt rows by (keyframe, class)
    block_len = np.bincount(gcode, minlength=len(ukeys) * K)
    block_start = np.cumsum(block_len) - block_len
    # in file order (results come grouped by keyframe, so the look-ups walk memory in
    # order; which box is best does not depend on the scores)
    live = np.flatnonzero(rcls >= 0)
    lo = np.zeros(len(live), np.int64)
    n_cand = np.zeros(len(live), np.int64)
    if len(ukeys):
        at = np.minimum(np.searchsorted(ukeys, rkeys[live]), len(ukeys) - 1)
        on_gt = np.flatnonzero(ukeys[at] == rkeys[live])
        code = at[on_gt] * K + rcls[live[on_gt]]
        lo[on_gt], n_cand[on_gt] = block_start[code], block_len[code]
    return live, gorder, lo, n_cand


def _take_boxes(ranked, gt_of, iou_of, n_gt):
    """A box goes to the first result (in score order) whose best box it is at IoU >= 0.5.
    ranked: the evaluated results in score order. Returns tp (R,) and, per ground-truth
    row, the result row that took it (G,) (-1 when none)."""
    best_iou, best_gt = iou_of[ranked], gt_of[ranked]
    cand = np.flatnonzero(best_iou >= IOU_THRESHOLD)
    _, first = np.unique(best_gt[cand], return_index=True)
    tp_ranked = np.zeros(len(ranked), bool)
    tp_ranked[cand[first]] = True
    tp = np.zeros(len(gt_of), bool)
    tp[ranked] = tp_ranked
    gt_found = np.full(n_gt, -1, np.int64)
    gt_found[best_gt[tp_ranked]] = ranked[tp_ranked]
    return tp, gt_found


def _class_rankings(rcls, ranked, K):
    """Per class, the evaluated results in ranking order: (order, start) with class c's
    rows order[start[c]:start[c + 1]] (a stable sort of the score-ordered rows by class),
    and each row's position in its class's ranking (R,) (-1 when dropped)."""
    order = ranked[np.argsort(rcls[ranked].astype(np.int16 if K < 32000 else np.int64),
                              kind="stable")]
    start = np.searchsorted(rcls[order], np.arange(K + 1))
    rank = np.full(len(rcls), -1, np.int64)
    for c in range(K):
        rank[order[start[c]:start[c + 1]]] = np.arange(start[c + 1] - start[c])
    return order, start, rank


def _columns(action_ids, ids):
    """action ids (N,) -> label-map column (N,) int64, -1 where not in the map."""
    a = np.asarray(action_ids, np.int64)
    srt = np.argsort(ids)
    pos = np.minimum(np.searchsorted(ids[srt], a), len(ids) - 1)
    return np.where(ids[srt][pos] == a, srt[pos], -1).astype(np.int64)


def f64(rows, name):
    """`rows.<name>` as float64: the readers' exact parse (``boxes64``, ``scores64``) when
    there is one."""
    exact = getattr(rows, name + "64", None)
    return exact if exact is not None else np.asarray(getattr(rows, name), np.float64)


