"""The evaluator's entry points: :func:`evaluate` (rows in memory), :func:`evaluate_csv`
(files) and :func:`evaluate_persons` (the detector's class-agnostic person AP).

:func:`evaluate` runs the stages in order over one results bundle: select
(:mod:`hgrnn.metrics.select`) -> order (:mod:`hgrnn.metrics.order`) -> match
(:mod:`hgrnn.metrics.match`) -> AP (:mod:`hgrnn.metrics.ap`)."""

from __future__ import annotations

import os

import numpy as np

from hgrnn.data.ava import (AvaRows, LabelMap, keyframe_index, load_label_map,
                            read_annotations, read_exclusions, read_results)
from hgrnn.metrics.ap import class_aps, mean_ap, ranked_true_positives
from hgrnn.metrics.match import match
from hgrnn.metrics.order import order
from hgrnn.metrics.result import EvalResult, check_evaluable
from hgrnn.metrics.select import f64, select

PROTOCOLS = ("ava-2018", "ava-2019", "ava-2020")
TIES = ("official", "stable")
PERSON_LABEL_MAP = LabelMap((1,), ("person",))


def evaluate(gt: AvaRows, results: AvaRows, label_map: LabelMap, protocol="ava-2018",
             exclusions=None, ties="official") -> EvalResult:
    """Official AVA frame-mAP of `results` against `gt` (see :mod:`hgrnn.metrics`).

    gt: ground-truth rows (one per box and action); results: rows with scores;
    label_map: the evaluated classes; protocol: "ava-2018" | "ava-2019" | "ava-2020";
    exclusions: set of (video_id, timestamp) or a CSV path (not with ava-2020);
    ties: "official" (the official code's order of equal scores and equal IoUs, see
    :mod:`hgrnn.metrics.official_order`) or "stable" (file order, the same on every machine)."""
    truth, res, counts = _select(gt, results, label_map, protocol, exclusions, ties)
    return _order_match_ap(truth, res, counts, label_map, protocol, ties)


def _select(gt, results, label_map, protocol, exclusions, ties):
    """The select stage -> (truth, results bundle, counts); after it the rows themselves
    are no longer needed."""
    _check_arguments(results, protocol, ties, exclusions)
    if isinstance(exclusions, (str, os.PathLike)):
        exclusions = read_exclusions(exclusions)
    counts = {f"{side}_skipped_{k.replace(' ', '_')}": v
              for side, rows in (("gt", gt), ("results", results))
              for k, v in (rows.skipped or {}).items()}
    truth, res = select(gt, results, np.asarray(label_map.ids, np.int64), protocol,
                        exclusions, ties, counts)
    return truth, res, counts


def _order_match_ap(truth, res, counts, label_map, protocol, ties) -> EvalResult:
    """The stages after select: order -> match -> AP."""
    ids = np.asarray(label_map.ids, np.int64)
    res, cat, cat_scores = order(res, protocol, ties, counts)
    tp = match(truth, res, cat, ids, protocol, ties)
    tp_ranked, cstart = ranked_true_positives(tp, cat, res.cls, cat_scores, len(ids))
    n_inst = np.bincount(truth.cls, minlength=len(ids))
    return _result(class_aps(tp_ranked, cstart, n_inst, ids), n_inst, label_map, counts,
                   protocol, ties)


def _check_arguments(results, protocol, ties, exclusions):
    if ties not in TIES:
        raise ValueError(f"unknown ties {ties!r}; choose one of {', '.join(TIES)}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if getattr(results, "scores64", None) is None and results.scores is None:
        raise ValueError("results have no scores (is this a ground-truth file?)")
    if exclusions is not None and protocol == "ava-2020":
        raise ValueError("ava-2020 has no excluded timestamps (its ground truth marks "
                         "annotated keyframes instead); drop --exclusions or pick ava-2018/2019")


def _result(per_class_stats, n_inst, label_map, counts, protocol, ties) -> EvalResult:
    """Per-class (AP, results, TPs) in label-map order -> EvalResult with its counts."""
    per_class, inst_c, res_c, tp_c, name_ids = {}, {}, {}, {}, {}
    for (ap, n_res, n_tp), aid, name, n in zip(per_class_stats, label_map.ids,
                                               _class_keys(label_map), n_inst.tolist()):
        per_class[name], inst_c[name], res_c[name], tp_c[name] = ap, n, n_res, n_tp
        name_ids[name] = aid
    with_instances = [(aid, ap) for aid, ap in zip(label_map.ids, per_class.values())
                      if ap is not None]
    mAP = mean_ap([ap for _, ap in with_instances], [aid for aid, _ in with_instances])
    counts = {"instances": inst_c, "results": res_c, "true_positives": tp_c,
              "total_instances": int(n_inst.sum()), "total_results": sum(res_c.values()),
              "total_true_positives": sum(tp_c.values()), **counts}
    return EvalResult(mAP=mAP, per_class=per_class, counts=counts, protocol=protocol,
                      ids=name_ids, ties=ties)


def _class_keys(label_map):
    """Class names as dict keys; a name used by several ids gets " (id N)" appended."""
    names = list(label_map.names)
    return [f"{n} (id {i})" if names.count(n) > 1 else n
            for i, n in zip(label_map.ids, names)]


def evaluate_persons(gt: AvaRows, results: AvaRows, exclusions=None, protocol="ava-2018",
                     ties="official") -> EvalResult:
    """Class-agnostic AP@0.5 of person boxes: the detector's number ("89.09 AP for detecting
    the annotated bounding boxes").

    Each ground-truth box counts once per keyframe and each result box once per keyframe
    with its highest score; action columns are ignored (person-box files with an empty or
    -1 action column work). Then the official evaluation of one class "person" (id 1), so
    the number equals the official evaluator run with a one-class label map on those
    boxes (in order of first appearance). exclusions / protocol / ties as in
    :func:`evaluate`; the result has one class, "person"."""
    if getattr(results, "scores64", None) is None and results.scores is None:
        raise ValueError("results have no scores (is this a ground-truth file?)")
    return evaluate(_person_boxes(gt, None), _person_boxes(results, f64(results, "scores")),
                    PERSON_LABEL_MAP, protocol=protocol, exclusions=exclusions, ties=ties)


def _person_boxes(rows, scores):
    """Rows -> one row per (keyframe, box), action id 1, at the first row of each box;
    scores: (N,) float64 or None (ground truth), the highest of a box's rows is kept."""
    n = len(rows)
    boxes = f64(rows, "boxes").reshape(-1, 4)
    codes = rows.video_codes                    # the readers': no strings made or compared
    keys, _ = keyframe_index(None if codes is not None else rows.video_ids, rows.timestamps,
                             codes=codes)
    order = np.lexsort((np.arange(n), boxes[:, 3], boxes[:, 2], boxes[:, 1], boxes[:, 0], keys))
    k, b = keys[order], boxes[order]
    new = np.r_[True, (k[1:] != k[:-1]) | (b[1:] != b[:-1]).any(axis=1)] if n else \
        np.zeros(0, bool)
    starts = np.flatnonzero(new)
    first = order[starts]                       # lexsort puts a box's first row first
    best = np.maximum.reduceat(scores[order], starts) if scores is not None and n else None
    keep = np.argsort(first, kind="stable")
    sel = first[keep]
    s64 = None if best is None else best[keep]
    return AvaRows(
        video_ids=None if codes is not None else rows.video_ids[sel],
        video_codes=None if codes is None else (codes[0][sel], codes[1]),
        timestamps=rows.timestamps[sel],
        boxes=boxes[sel].astype(np.float32), action_ids=np.ones(len(sel), np.int64),
        person_ids=None, scores=None if s64 is None else s64.astype(np.float32),
        skipped=dict(rows.skipped or {}), boxes64=boxes[sel], scores64=s64,
        empty_video_ids=rows.empty_video_ids, empty_timestamps=rows.empty_timestamps,
        source=rows.source)


def evaluate_csv(gt_csv, results_csv, label_map="ava-v2.1", exclusions=None,
                 protocol="ava-2018", progress=True, ties="official",
                 persons=False) -> EvalResult:
    """Read an AVA ground-truth CSV and a result CSV and evaluate (see :func:`evaluate`).

    label_map: a LabelMap, a packaged name or a label-map file; exclusions: excluded
    timestamps CSV path or set (ava-2018/2019 only); persons: person-box AP instead
    (:func:`evaluate_persons`; the label map is not used). Raises ValueError naming the
    files where there is nothing to evaluate (:func:`check_evaluable`)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    lm = None
    if not persons:
        lm = label_map if isinstance(label_map, LabelMap) else load_label_map(label_map)
    if isinstance(exclusions, (str, os.PathLike)):
        exclusions = read_exclusions(exclusions)
    if exclusions is not None and protocol == "ava-2020":
        raise ValueError("ava-2020 has no excluded timestamps; drop --exclusions or pick "
                         "ava-2018/ava-2019")
    gt = read_annotations(gt_csv, lm, exclusions, progress=progress)
    res = read_results(results_csv, lm, exclusions, progress=progress)
    if persons:
        result = evaluate_persons(gt, res, protocol=protocol, ties=ties)
    else:                   # evaluate(), freeing the rows (video ids etc.) once selected
        selected = _select(gt, res, lm, protocol, None, ties)
        del gt, res
        result = _order_match_ap(*selected, lm, protocol, ties)
    check_evaluable(result, os.fspath(gt_csv), os.fspath(results_csv))
    return result
