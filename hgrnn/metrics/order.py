"""Stage 2 of :func:`hgrnn.metrics.evaluate`, order: the order results are matched and
ranked in.

The official code concatenates, per class, each keyframe's results (keyframes in its
reader's order, inside a keyframe in the order they are matched), then ranks each class's
array with ``np.argsort(scores)[::-1]``. This stage returns that concatenation as one
permutation ``cat`` of the results (class-major); :mod:`hgrnn.metrics.ap` ranks it. With
``ties="stable"`` it is class, then descending score, ties in file order (already the
ranking). ava-2018 with official ties also drops results beyond the 2018 NMS's
``max_output_size`` (10,000 per keyframe and class), counted.
"""

from __future__ import annotations

import numpy as np

from hgrnn.metrics.official_order import (MAX_PER_KEYFRAME_AND_CLASS_2018, official_concat,
                                          position_in_group)
from hgrnn.metrics.packsort import argsort_descending, sort_pairs
from hgrnn.metrics.select import Results


def order(res: Results, protocol, ties, counts):
    """-> (results, cat (R,) int64, scores[cat] or None): result indices class by class in
    the order above, and (official ties) their scores in that order (for the ranking);
    results are fewer only where the 2018 per-keyframe-and-class limit drops some."""
    if ties != "official":
        return res, stable_concat(res.cls, res.scores), None
    cat, largest, cat_scores = official_concat(res.cls, res.img_rank, res.scores, res.hpos,
                                               protocol)
    if protocol == "ava-2018" and largest > MAX_PER_KEYFRAME_AND_CLASS_2018:
        over = position_in_group(res.cls, res.img_rank, cat) >= MAX_PER_KEYFRAME_AND_CLASS_2018
        counts["results_dropped_over_10000_per_keyframe_and_class"] = int(over.sum())
        if over.any():
            res = res.take(np.flatnonzero(~over))
            # the same order without the dropped (not a new sort of fewer values)
            new_index = np.cumsum(~over) - 1
            in_cat = ~over[cat]
            cat, cat_scores = new_index[cat[in_cat]], cat_scores[in_cat]
    return res, cat, cat_scores


def stable_concat(cls, scores) -> np.ndarray:
    """Results by class, then descending score, ties in file order."""
    if len(cls) == 0:
        return np.zeros(0, np.int64)
    by_class = sort_pairs(cls, np.arange(len(cls)))                # file order inside
    cstart = np.searchsorted(cls[by_class], np.arange(int(cls.max()) + 2))
    for a, b in zip(cstart[:-1].tolist(), cstart[1:].tolist()):
        if b - a > 1:
            seg = by_class[a:b]
            by_class[a:b] = seg[argsort_descending(scores[seg])]
    return by_class
