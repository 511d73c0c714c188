"""Frame-mAP by the official AVA protocol (ActivityNet ``get_ava_performance.py``).

The official evaluator is a PASCAL VOC evaluation (TF object-detection API) over keyframes:

* rows of classes outside the label map are dropped from ground truth and results;
* each ground-truth ROW is one instance of its class (a box with 3 actions is one instance
  in each of 3 classes);
* result boxes with x2 <= x1 or y2 <= y1 are discarded;
* IoU = inter / (areaA + areaB - inter), no +1;
* per keyframe and class, results are taken in descending score; each takes the
  ground-truth box of that class with the highest IoU (the first such box in file order on
  an exact tie) and is a true positive iff that IoU >= 0.5 and the box is still unmatched,
  else a false positive (no fall-back to the second-best box);
* per class, all results sorted by score: precision = TP / (TP + FP), recall = TP / #inst,
  AP = all-point VOC AP (recall 0 prepended, recall 1 with precision 0 appended, precision
  made non-increasing from the right, summed over recall steps);
* a class with instances but no results scores 0; a class without instances is None
  (NaN in the official code) and left out of the mAP.

Protocols (the official code changed between challenge years; published numbers depend on
the revision, so pick the one your baseline used):

* ``ava-2018`` (default; AVA v2.1 / 2018 challenge code): excluded keyframes are dropped
  from both files; results on keyframes without ground truth are false positives; no cap.
* ``ava-2019``: as 2018, but only the 50 highest-scored results of each keyframe, across
  classes (after dropping classes outside the label map, before dropping invalid boxes),
  are kept.
* ``ava-2020``: as 2019 without exclusions; results on keyframes absent from the
  ground-truth file are ignored; 2-column ground-truth rows ``video_id,timestamp`` mark
  annotated keyframes without persons (results there are false positives).

Ties (``ties=``): "official" (default) takes equal scores and equal IoUs in the order the
official code's data flow leaves them (its numpy sorts on the same arrays, its reader's
heap), see :mod:`hgrnn.metrics.official_order`; the numbers then equal the official ones whenever
both run with the same numpy on the same kind of CPU. "stable" breaks every tie by file
order (the earlier row first): within a keyframe for matching, at the 50-cap boundary, in
the per-class ranking and among equal-IoU boxes; the same number on every machine.

Numbers are reproduced bit for bit when boxes and scores come as parsed float64
(``AvaRows.boxes64`` / ``scores64``, what the readers fill in), because every arithmetic
step is the official one in the same order.

Layout: :func:`evaluate` (``evaluator.py``) runs four stages over one results bundle
(:class:`hgrnn.metrics.select.Results`, parallel per-result arrays): ``select.py`` (which
rows take part: label map, exclusions, score floor, per-keyframe caps, 2020's unknown
keyframes, invalid boxes) -> ``order.py`` (the order results are matched and ranked in,
with :mod:`hgrnn.metrics.official_order` for the official ties) -> ``match.py`` (true
positives) -> ``ap.py`` (per-class AP, mAP). ``result.py`` holds :class:`EvalResult`;
``packsort.py`` the packed-integer sorts the stages use. Everything is vectorised numpy:
no loop over keyframes or results (only over classes, and over the few dozen boxes of one
keyframe and class when matching).
"""

from hgrnn.metrics.ap import average_precision
from hgrnn.metrics.evaluator import (PERSON_LABEL_MAP, PROTOCOLS, TIES, evaluate,
                                     evaluate_csv, evaluate_persons)
from hgrnn.metrics.match import IOU_THRESHOLD, box_iou
from hgrnn.metrics.result import (OFFICIAL_CLASS_KEY, OFFICIAL_MAP_KEY, EvalResult,
                                  check_evaluable, format_percent)
from hgrnn.metrics.select import MAX_RESULTS_PER_KEYFRAME

__all__ = ["PROTOCOLS", "TIES", "EvalResult", "evaluate", "evaluate_csv", "evaluate_persons",
           "check_evaluable", "format_percent", "box_iou", "average_precision",
           "MAX_RESULTS_PER_KEYFRAME", "PERSON_LABEL_MAP", "IOU_THRESHOLD",
           "OFFICIAL_MAP_KEY", "OFFICIAL_CLASS_KEY"]
