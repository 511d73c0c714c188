"""Stage 4 of :func:`hgrnn.metrics.evaluate`, AP: per class, the results ranked by score
(the official ``np.argsort(scores)[::-1]`` of the class's concatenation with official
ties, the stable order as it is otherwise), all-point VOC AP, and the mean over classes
with instances as the official code takes it."""

from __future__ import annotations

import numpy as np

from hgrnn.metrics.official_order import descending


def average_precision(tp_sorted, num_instances) -> float:
    """All-point VOC AP of results sorted by descending score.

    tp_sorted: (R,) bool, True for a true positive; num_instances > 0."""
    tp = np.asarray(tp_sorted, bool)
    cum_tp = np.cumsum(tp)
    cum_fp = np.cumsum((~tp).astype(float))
    precision = cum_tp.astype(float) / (cum_tp + cum_fp)
    recall = cum_tp.astype(float) / num_instances
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.concatenate([[0.0], precision, [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def ranked_true_positives(tp, cat, cls, cat_scores, K):
    """-> (tp of each class's results in ranking order, concatenated class by class;
    cstart (K + 1,): where each class's segment starts). cat: the class-major order of
    :func:`hgrnn.metrics.order.order`; cat_scores: the scores in that order, to rank each
    class the official way, or None when `cat` is the ranking already (stable ties)."""
    cstart = np.r_[0, np.cumsum(np.bincount(cls, minlength=K))]
    tp_s = tp[cat]
    if cat_scores is not None:
        sc_s = cat_scores
        for c in range(K):                 # the official ranking: np.argsort(...)[::-1]
            a, b = cstart[c], cstart[c + 1]
            if b - a > 1:
                tp_s[a:b] = tp_s[a:b][descending(sc_s[a:b])]
    return tp_s, cstart


def class_aps(tp_s, cstart, n_inst, class_ids):
    """Per class (label-map order): (AP or None without instances, results, TPs)."""
    out = []
    for c in range(len(class_ids)):
        seg = tp_s[cstart[c]:cstart[c + 1]]
        ap = None if n_inst[c] == 0 else average_precision(seg, int(n_inst[c]))
        out.append((ap, len(seg), int(seg.sum())))
    return out


def mean_ap(aps, class_ids):
    """Mean of the APs as the official code takes it: np.nanmean over an array indexed by
    action id - 1 (NaN for ids without instances), so the summation order is the same."""
    if not aps:
        return float("nan")
    ids = np.asarray(class_ids, np.int64)
    if ids.min() < 1 or ids.max() > 100000:
        return float(np.mean(aps))
    full = np.full(int(ids.max()), np.nan)
    full[ids - 1] = aps
    return float(np.nanmean(full))
