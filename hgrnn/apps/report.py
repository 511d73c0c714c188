"""`hgrnn report`: an error-analysis page for any AVA result file.

Writes ``DIR/index.html`` (one static page: no server, no network, plain JavaScript for the
sortable class table, sections that fold) and ``DIR/report.json`` (every number on the
page); with videos, thumbnails in ``DIR/thumbs/``.

What is on the page, and where each number comes from:

* the frame-mAP, per-class APs, counts and coverage: :func:`hgrnn.metrics.evaluate`, on the
  rows read exactly as ``eval-csv`` reads them (same readers, label map, exclusions,
  protocol and tie order), so every AP equals ``eval-csv --json``'s; mAP per AVA action
  group: :mod:`hgrnn.metrics.groups`;
* per class, what the APs are made of: :func:`match_results` redoes the protocol's matching
  and keeps, per result row, true / false positive, its rank in the class's ranking and the
  ground-truth box it took (equal scores in file order, i.e. ``ties="stable"``: its APs
  equal ``evaluate(..., ties="stable")`` exactly, and the official tie order's wherever no
  two results of a class share a score). From it: the precision-recall curve; the class's
  errors at its "operating point" N = its number of ground-truth instances (Hoiem et al.'s
  convention for diagnosing detectors: the N highest-scored results of the class, where
  precision and recall are equal when all are found), that is the false positives among
  the top N, each put in one of four kinds by the ground-truth person it overlaps most
  (any class):

  - *wrong label*: a person at IoU >= 0.5 who does not have this class (the person's real
    classes are counted as the class's confusions),
  - *duplicate*: a person at IoU >= 0.5 who has it (their box went to a higher-scored
    result, or the result's best box of the class is another person's),
  - *localisation*: the best person at 0.1 <= IoU < 0.5,
  - *background*: no person at IoU >= 0.1;

  and the ground-truth boxes the top N did not find (*missed*: no result of the class on
  the box at IoU >= 0.5, or one ranked below N);
* with videos: per class, thumbnails of the top-scored false positives (result box in
  orange, the person it overlaps most in green) and of missed boxes (green), cut from the
  keyframe's frame, decoded as `hgrnn visualize` decodes (:mod:`hgrnn.data.video`, one
  sequential pass per video, the keyframe's centre frame);
* with compare files: their mAP, group mAPs and per-class APs side by side, and the
  per-class differences to the first result file, sorted.
"""

from __future__ import annotations

import html
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hgrnn.data.ava import (AvaRows, LabelMap, keyframe_index, load_label_map, read_annotations,
                            read_exclusions, read_results)
from hgrnn.metrics import (MAX_RESULTS_PER_KEYFRAME, EvalResult, average_precision,
                           check_evaluable, evaluate, format_percent)
from hgrnn.data.video import VideoError, find_videos, iter_clips
from hgrnn.metrics.groups import GROUPS, group_map, mean_ap_by_group
from hgrnn.pipeline.visualize import GT_COLOR, PRED_COLORS, box_pixels

__all__ = ["ReportInputs", "Matching", "load_inputs", "match_results", "analyse",
           "write_report", "report_files", "ERROR_KINDS"]

IOU_THRESHOLD = 0.5            # the metric's
LOCALISATION_IOU = 0.1         # below it a false positive is "background"
GALLERY_SIZE = 6               # thumbnails per class and kind
CONFUSIONS_SHOWN = 5           # confusions listed per class
CURVE_POINTS = 300             # precision-recall points kept per class (JSON and plot)
THUMB_HEIGHT = 128             # thumbnail height in pixels
ERROR_KINDS = ("wrong label", "duplicate", "localisation", "background")
KIND_ABBREVIATIONS = ("label", "dup", "loc", "bg")   # the class table's column headers
MAX_FILES_WITH_KINDS = 4       # more files: the class table leaves the kinds to the sections
RESULT_COLOR = PRED_COLORS[0]


# ----------------------------------------------------------------------------- inputs

@dataclass
class ReportInputs:
    """What the page is made of: ground truth, result files (name, rows), label map, and
    the exclusions `evaluate` itself applies (a store's ground truth; None when the
    readers dropped them already, as eval-csv does)."""
    gt: AvaRows
    gt_name: str
    results: list[tuple[str, AvaRows]]
    label_map: LabelMap
    eval_exclusions: set | None
    exclusions_name: str | None = None


def load_inputs(gt_path, results_paths, label_map=None, exclusions=None, protocol="ava-2018",
                progress=False) -> ReportInputs:
    """Read the ground truth (an AVA CSV or a feature store, as `eval-csv` takes it) and
    result CSVs the way `eval-csv` reads them. Raises AvaFormatError / ValueError / OSError
    naming the file (the same one-line errors as eval-csv), and ValueError for a result
    file over another label space than the first one."""
    if exclusions is not None and protocol == "ava-2020":
        raise ValueError("ava-2020 has no excluded timestamps; drop --exclusions or pick "
                         "ava-2018/ava-2019")
    exclusions_name = None
    if isinstance(exclusions, (str, os.PathLike)):
        exclusions_name = os.fspath(exclusions)
        exclusions = read_exclusions(exclusions)
    gt_path = os.fspath(gt_path)
    if _is_hdf5(gt_path):
        from hgrnn.data.windows import FeatureStore
        from hgrnn.hgrnn_head.infer import store_ground_truth

        fs = FeatureStore(gt_path, box_source="gt", lazy=True)
        lm = fs.label_map if label_map is None else _label_map(label_map)
        if tuple(lm.ids) != tuple(fs.label_map.ids):
            raise ValueError(f"--label-map {label_map} ({len(lm)} classes) is not the label "
                             f"map of {gt_path} ({len(fs.label_map)} classes); leave "
                             "--label-map out to use the store's")
        gt = store_ground_truth(fs)
        eval_exclusions = exclusions
    else:
        lm = _label_map(label_map or "ava-v2.1")
        gt = read_annotations(gt_path, lm, exclusions, progress=progress)
        eval_exclusions = None
    results = []
    for path in results_paths:
        rows = read_results(path, lm, exclusions, progress=progress)
        results.append((os.fspath(path), rows))
    _check_label_spaces(results, lm)
    return ReportInputs(gt, gt_path, results, lm, eval_exclusions, exclusions_name)


def _label_map(label_map):
    return label_map if isinstance(label_map, LabelMap) else load_label_map(label_map)


def _is_hdf5(path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"\x89HDF\r\n\x1a\n"


def _check_label_spaces(results, lm):
    """Refuse a result file whose classes are not those of the first file: it has rows of
    action ids outside the label map where the first has none (or the other way round),
    or no row of the label map at all."""
    def outside(rows):
        return (rows.skipped or {}).get("action not in label map", 0)

    first_name, first = results[0]
    for name, rows in results[1:]:
        a, b = outside(first), outside(rows)
        if len(rows) == 0:
            raise ValueError(f"{name}: no result row of the label map's {len(lm)} classes: "
                             f"another label space than {first_name}")
        if bool(a) != bool(b):
            which = (f"{b:,} rows of action ids outside the label map ({len(lm)} classes), "
                     f"{first_name} none" if b else
                     f"no row outside the label map, {first_name} {a:,}")
            raise ValueError(f"{name}: results over another label space than {first_name} "
                             f"({which}); compare results of the same classes")


# ----------------------------------------------------------------------------- matching

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
    ids = np.asarray(label_map.ids, np.int64)
    _, vocab_r = keyframe_index(results.video_ids, results.timestamps)
    _, vocab_g = keyframe_index(gt.video_ids, gt.timestamps)
    vocab = np.union1d(vocab_r, vocab_g)
    if gt.empty_video_ids is not None and len(gt.empty_video_ids):
        vocab = np.union1d(vocab, np.unique(gt.empty_video_ids))
    rkeys, _ = keyframe_index(results.video_ids, results.timestamps, vocab)
    gkeys, _ = keyframe_index(gt.video_ids, gt.timestamps, vocab)
    rcls = _columns(results.action_ids, ids)
    gcls = _columns(gt.action_ids, ids)
    if exclusions:
        ex = list(exclusions)
        exk, _ = keyframe_index(np.array([v for v, _ in ex], str),
                                np.array([t for _, t in ex], np.int64), vocab)
        rcls[np.isin(rkeys, exk)] = -1
        gcls[np.isin(gkeys, exk)] = -1
    scores = _f64(results, "scores")
    rboxes = _f64(results, "boxes").reshape(-1, 4)
    gboxes = _f64(gt, "boxes").reshape(-1, 4)

    by_score = np.argsort(-scores, kind="stable")          # (R,) descending, file order
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

    # ---- candidates: ground truth sorted by (keyframe, class), file order inside
    gsel = np.flatnonzero(gcls >= 0)
    ukeys = np.unique(gkeys[gsel])
    gcode = np.searchsorted(ukeys, gkeys[gsel]) * K + gcls[gsel]
    gorder = gsel[np.argsort(gcode, kind="stable")]        # gt rows by (keyframe, class)
    block_len = np.bincount(gcode, minlength=len(ukeys) * K)
    block_start = np.cumsum(block_len) - block_len
    # each result's best box, in file order (results come grouped by keyframe, so the
    # look-ups walk memory in order; which box is best does not depend on the scores)
    live = np.flatnonzero(rcls >= 0)
    lo = np.zeros(len(live), np.int64)
    n_cand = np.zeros(len(live), np.int64)
    if len(ukeys):
        at = np.minimum(np.searchsorted(ukeys, rkeys[live]), len(ukeys) - 1)
        on_gt = np.flatnonzero(ukeys[at] == rkeys[live])
        code = at[on_gt] * K + rcls[live[on_gt]]
        lo[on_gt], n_cand[on_gt] = block_start[code], block_len[code]
    best_iou_f = np.zeros(len(live))
    best_gt_f = np.full(len(live), -1, np.int64)
    gt_best_score = np.full(len(gt), np.nan)
    active = np.flatnonzero(n_cand)
    slot = 0
    while len(active):
        g = gorder[lo[active] + slot]
        iou = _pair_iou(rboxes[live[active]], gboxes[g])
        better = iou > best_iou_f[active]
        if slot == 0:
            better = np.ones(len(active), bool)            # the first box is the best so far
        best_iou_f[active[better]] = iou[better]
        best_gt_f[active[better]] = g[better]
        hit = iou >= IOU_THRESHOLD                         # scores of results on the box
        np.fmax.at(gt_best_score, g[hit], scores[live[active[hit]]])
        slot += 1
        active = active[n_cand[active] > slot]
    n = len(results)
    gt_of = np.full(n, -1, np.int64)
    gt_of[live] = best_gt_f
    iou_of = np.zeros(n)
    iou_of[live] = best_iou_f
    ranked = by_score[rcls[by_score] >= 0]                 # evaluated results, score order
    best_iou, best_gt = iou_of[ranked], gt_of[ranked]

    # a box goes to the first result (in score order) whose best box it is at IoU >= 0.5
    cand = np.flatnonzero(best_iou >= IOU_THRESHOLD)
    _, first = np.unique(best_gt[cand], return_index=True)
    tp_ranked = np.zeros(len(ranked), bool)
    tp_ranked[cand[first]] = True

    tp = np.zeros(n, bool)
    tp[ranked] = tp_ranked
    gt_found = np.full(len(gt), -1, np.int64)
    gt_found[best_gt[tp_ranked]] = ranked[tp_ranked]
    # per class, in ranking order: a stable sort of the score-ordered rows by class
    order = ranked[np.argsort(rcls[ranked].astype(np.int16 if K < 32000 else np.int64),
                              kind="stable")]
    start = np.searchsorted(rcls[order], np.arange(K + 1))
    rank = np.full(n, -1, np.int64)
    for c in range(K):
        rank[order[start[c]:start[c + 1]]] = np.arange(start[c + 1] - start[c])
    instances = np.bincount(gcls[gsel], minlength=K)
    return Matching(cls=rcls, tp=tp, gt=gt_of, iou=iou_of, rank=rank, order=order,
                    start=start, gt_cls=gcls, gt_found=gt_found, gt_best_score=gt_best_score,
                    result_keys=rkeys, gt_keys=gkeys, instances=instances)


def _columns(action_ids, ids):
    """action ids (N,) -> label-map column (N,) int64, -1 where not in the map."""
    a = np.asarray(action_ids, np.int64)
    srt = np.argsort(ids)
    pos = np.minimum(np.searchsorted(ids[srt], a), len(ids) - 1)
    return np.where(ids[srt][pos] == a, srt[pos], -1).astype(np.int64)


def _f64(rows, name):
    exact = getattr(rows, name + "64", None)
    return exact if exact is not None else np.asarray(getattr(rows, name), np.float64)


def _pair_iou(a, b):
    """Elementwise IoU of rows a[i], b[i] ((P, 4) each) -> (P,): the official arithmetic
    (inter / (areaA + areaB - inter), no +1)."""
    ih = np.maximum(0.0, np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]))
    iw = np.maximum(0.0, np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]))
    inter = ih * iw
    area_a = (a[:, 3] - a[:, 1]) * (a[:, 2] - a[:, 0])
    area_b = (b[:, 3] - b[:, 1]) * (b[:, 2] - b[:, 0])
    return inter / (area_a + area_b - inter)


# ----------------------------------------------------------------------------- analysis

def _persons(gt: AvaRows, m: Matching, K: int):
    """Ground-truth persons: evaluated rows with the same keyframe and box are one person.
    Returns (person of each gt row (G,) -1 when not evaluated, person keys (P,), boxes
    (P, 4), labels (P, K) bool, first gt row of each person (P,))."""
    sel = np.flatnonzero(m.gt_cls >= 0)
    boxes = _f64(gt, "boxes").reshape(-1, 4)
    keys = m.gt_keys[sel]
    b = boxes[sel]
    o = np.lexsort((sel, b[:, 3], b[:, 2], b[:, 1], b[:, 0], keys))
    ks, bs = keys[o], b[o]
    new = np.r_[True, (ks[1:] != ks[:-1]) | (bs[1:] != bs[:-1]).any(axis=1)] if len(o) \
        else np.zeros(0, bool)
    pid_sorted = np.cumsum(new) - 1
    person = np.full(len(gt), -1, np.int64)
    person[sel[o]] = pid_sorted
    first_row = sel[o][new]
    labels = np.zeros((len(first_row), K), bool)
    labels[person[sel], m.gt_cls[sel]] = True
    # persons ordered by first row so that ties of IoU go to the earlier person
    reorder = np.argsort(first_row, kind="stable")
    inverse = np.empty_like(reorder)
    inverse[reorder] = np.arange(len(reorder))
    person[sel] = inverse[person[sel]]
    return person, m.gt_keys[first_row[reorder]], boxes[first_row[reorder]], \
        labels[reorder], first_row[reorder]


def _best_person(rows, rkeys, rboxes, pkeys, pboxes):
    """For result rows: the ground-truth person of the same keyframe with the highest IoU
    (the first on ties) and that IoU; -1 / 0 when the keyframe has no person."""
    po = np.argsort(pkeys, kind="stable")
    spk = pkeys[po]
    k = rkeys[rows]
    lo = np.searchsorted(spk, k, "left")
    n = np.searchsorted(spk, k, "right") - lo
    best = np.full(len(rows), -1, np.int64)
    best_iou = np.zeros(len(rows))
    active = np.flatnonzero(n)
    slot = 0
    while len(active):
        p = po[lo[active] + slot]
        iou = _pair_iou(rboxes[rows[active]], pboxes[p])
        better = (iou > best_iou[active]) | (best[active] < 0)
        best[active[better]] = p[better]
        best_iou[active[better]] = iou[better]
        slot += 1
        active = active[n[active] > slot]
    return best, best_iou


def _curve(tp_seg, n_inst):
    """Precision and recall after each result of a class's ranking, thinned to at most
    CURVE_POINTS points (the last one kept)."""
    if len(tp_seg) == 0 or n_inst == 0:
        return [], []
    cum = np.cumsum(tp_seg)
    precision = cum / np.arange(1, len(tp_seg) + 1)
    recall = cum / n_inst
    keep = np.unique(np.r_[np.linspace(0, len(tp_seg) - 1, CURVE_POINTS).astype(np.int64),
                           len(tp_seg) - 1])
    return [round(float(x), 6) for x in recall[keep]], [round(float(x), 6) for x in precision[keep]]


def analyse(inputs: ReportInputs, protocol="ava-2018", ties="official") -> dict:
    """Everything the page shows, as a JSON-ready dict (fractions, not percents):
    {"files", "protocol", "ties", "runs": [per result file: {"name", "metrics"
    (EvalResult.to_dict()), "action_groups", "coverage_line", "coverage_warning"}],
    "classes": [per class of the first file: id, name, group, AP, instances, results,
    operating point N, tp_at_n, errors {kind: count}, missed {...}, confusions [[name,
    count]], pr_curve {recall, precision}], "comparison": [...]} plus, under "_gallery",
    the rows that thumbnails are cut for (not JSON; removed before writing)."""
    lm = inputs.label_map
    K = len(lm)
    runs, results = [], []
    for name, rows in inputs.results:
        result = evaluate(inputs.gt, rows, lm, protocol=protocol,
                          exclusions=inputs.eval_exclusions, ties=ties)
        check_evaluable(result, inputs.gt_name, name)
        results.append(result)
        runs.append({"name": name, "metrics": result.to_dict(),
                     "action_groups": mean_ap_by_group(result.per_class, result.ids),
                     "coverage_line": result.coverage_line(),
                     "coverage_warning": result.coverage_warning()})
    main: EvalResult = results[0]
    rows = inputs.results[0][1]
    m = match_results(inputs.gt, rows, lm, protocol, inputs.eval_exclusions)
    scores = _f64(rows, "scores")
    rboxes = _f64(rows, "boxes").reshape(-1, 4)
    person, pkeys, pboxes, plabels, _ = _persons(inputs.gt, m, K)
    names = list(main.per_class)
    groups = group_map(main.ids)

    # false positives among each class's top N (N = its instances)
    top_fp = []
    for c in range(K):
        seg = m.order[m.start[c]:m.start[c + 1]][: int(m.instances[c])]
        top_fp.append(seg[~m.tp[seg]])
    all_fp = np.concatenate(top_fp) if top_fp else np.zeros(0, np.int64)
    bp, biou = _best_person(all_fp, m.result_keys, rboxes, pkeys, pboxes)

    classes, gallery = [], []
    offset = 0
    for c, (aid, name) in enumerate(zip(lm.ids, names)):
        n_inst = int(m.instances[c])
        seg = m.order[m.start[c]:m.start[c + 1]]
        fps = top_fp[c]
        p, piou = bp[offset:offset + len(fps)], biou[offset:offset + len(fps)]
        offset += len(fps)
        has_person = (p >= 0) & (piou >= IOU_THRESHOLD)
        own = np.zeros(len(fps), bool)
        own[has_person] = plabels[p[has_person], c]
        kinds = np.where(has_person, np.where(own, 1, 0),
                         np.where(piou >= LOCALISATION_IOU, 2, 3))
        errors = {k: int((kinds == i).sum()) for i, k in enumerate(ERROR_KINDS)}
        wrong = p[has_person & ~own]
        conf = plabels[wrong].sum(axis=0) if len(wrong) else np.zeros(K, np.int64)
        conf_order = [j for j in np.argsort(-conf, kind="stable") if conf[j] > 0]
        confusions = [[names[j], int(conf[j])] for j in conf_order[:CONFUSIONS_SHOWN]]
        top_n = seg[:n_inst]
        tp_at_n = int(m.tp[top_n].sum())
        gsel = np.flatnonzero(m.gt_cls == c)
        found_rank = np.where(m.gt_found[gsel] >= 0,
                              m.rank[np.maximum(m.gt_found[gsel], 0)], -1)
        missed = gsel[(found_rank < 0) | (found_rank >= n_inst)]
        no_box = np.isnan(m.gt_best_score[missed])
        rec, prec = _curve(m.tp[seg], n_inst)
        ap_stable = None if n_inst == 0 else average_precision(m.tp[seg], n_inst)
        classes.append({
            "id": aid, "name": name, "group": groups.get(name), "AP": _num(main.per_class[name]),
            "AP_of_curve": ap_stable, "instances": n_inst, "results": int(len(seg)),
            "operating_point": n_inst, "tp_at_n": tp_at_n, "fp_at_n": int(len(fps)),
            "errors": errors, "confusions": confusions,
            "missed": {"total": int(len(missed)), "no_result_on_box": int(no_box.sum()),
                       "ranked_below_n": int((~no_box).sum())},
            "pr_curve": {"recall": rec, "precision": prec}})
        # gallery picks: the first FPs of the ranking; the worst misses (no box, then by
        # the lowest best score)
        fp_pick = [{"row": r, "score": float(scores[r]), "rank": int(m.rank[r]),
                    "kind": ERROR_KINDS[kind], "person": pp, "person_iou": ii}
                   for r, kind, pp, ii in zip(fps[:GALLERY_SIZE].tolist(), kinds.tolist(),
                                              p.tolist(), piou.tolist())]
        miss_order = np.lexsort((missed, np.nan_to_num(m.gt_best_score[missed], nan=-np.inf)))
        miss_pick = []
        for g in missed[miss_order][:GALLERY_SIZE].tolist():
            s = m.gt_best_score[g]
            miss_pick.append({"gt_row": g, "person": int(person[g]),
                              "best_score": None if np.isnan(s) else float(s)})
        gallery.append({"fp": fp_pick, "missed": miss_pick})

    comparison = []
    if len(results) > 1:
        for k, name in enumerate(names):
            aps = [_num(r.per_class.get(name)) for r in results]
            if aps[0] is None:
                continue
            comparison.append({"name": name, "id": lm.ids[k], "AP": aps,
                               "diff": [None if a is None else a - aps[0] for a in aps[1:]]})
        comparison.sort(key=lambda d: -abs(d["diff"][0] if d["diff"][0] is not None else 0))
    return {"files": {"gt": inputs.gt_name, "results": [r["name"] for r in runs],
                      "exclusions": inputs.exclusions_name},
            "label_map": {"classes": K}, "protocol": protocol, "ties": ties,
            "matching": {"ties": "stable", "iou": IOU_THRESHOLD,
                         "localisation_iou": LOCALISATION_IOU},
            "runs": runs, "classes": classes, "comparison": comparison,
            "_gallery": {"rows": rows, "gt": inputs.gt, "persons": (person, pkeys, pboxes,
                                                                      plabels),
                         "picks": gallery, "names": names}}


def _num(v):
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)


# ----------------------------------------------------------------------------- thumbnails

def render_thumbnails(analysis: dict, videos_dir, out_dir, time_offset=0.0) -> dict:
    """Cut the gallery thumbnails of `analysis` from the videos in `videos_dir`
    (``<video_id>.<ext>``) into ``out_dir/thumbs/``; each pick gets "thumb" (the path
    relative to out_dir). One sequential decode per video (:func:`hgrnn.data.video.
    iter_clips`, the keyframe's centre frame at round((ts - time_offset) * fps)). A video
    that is missing or cannot be decoded: one warning naming it, its thumbnails left out.
    Returns {"videos": decoded, "missing": [ids], "failed": [ids], "thumbnails": n,
    "seconds": s}."""
    t0 = time.perf_counter()
    g = analysis["_gallery"]
    rows, gt, names = g["rows"], g["gt"], g["names"]
    person, _, pboxes, plabels = g["persons"]
    rboxes = _f64(rows, "boxes").reshape(-1, 4)
    gboxes = _f64(gt, "boxes").reshape(-1, 4)
    jobs: dict[str, dict[int, list]] = {}           # video -> timestamp -> [(pick, boxes)]
    for c, picks in enumerate(g["picks"]):
        for k, pick in enumerate(picks["fp"]):
            r = pick["row"]
            boxes = [(tuple(rboxes[r]), RESULT_COLOR)]
            if pick["person"] >= 0 and pick["person_iou"] > 0:
                boxes.append((tuple(pboxes[pick["person"]]), GT_COLOR))
                pick["true_labels"] = [names[j] for j in np.flatnonzero(plabels[pick["person"]])]
            else:
                pick["true_labels"] = []
            jobs.setdefault(str(rows.video_ids[r]), {}).setdefault(
                int(rows.timestamps[r]), []).append((pick, boxes, f"c{c}-fp{k}"))
        for k, pick in enumerate(picks["missed"]):
            gr = pick["gt_row"]
            pick["true_labels"] = [names[j] for j in np.flatnonzero(plabels[pick["person"]])]
            jobs.setdefault(str(gt.video_ids[gr]), {}).setdefault(
                int(gt.timestamps[gr]), []).append(
                    (pick, [(tuple(gboxes[gr]), GT_COLOR)], f"c{c}-miss{k}"))
    found = find_videos(videos_dir)
    thumbs = Path(out_dir) / "thumbs"
    thumbs.mkdir(parents=True, exist_ok=True)
    stats = {"videos": 0, "missing": [], "failed": [], "thumbnails": 0}
    for vid in sorted(jobs):
        if vid not in found:
            n = sum(len(v) for v in jobs[vid].values())
            warnings.warn(f"{videos_dir}: no video {vid!r} (<id>.mp4/.mkv/.webm/.avi): its "
                          f"{n} thumbnails are left out")
            stats["missing"].append(vid)
            continue
        wanted = {float(ts - time_offset): ts for ts in jobs[vid]}
        try:
            for t, clip in iter_clips(found[vid], list(wanted), 1, 1, None):
                frame = clip[0]                                   # (H, W, 3) uint8
                for pick, boxes, stem in jobs[vid][wanted[float(t)]]:
                    name = f"{stem}.jpg"
                    _thumbnail(frame, boxes).save(thumbs / name, quality=85)
                    pick["thumb"] = f"thumbs/{name}"
                    stats["thumbnails"] += 1
            stats["videos"] += 1
        except VideoError as exc:
            warnings.warn(f"{exc}: thumbnails of video {vid!r} left out")
            stats["failed"].append(vid)
    stats["seconds"] = time.perf_counter() - t0
    return stats


def _thumbnail(frame, boxes):
    """A crop of `frame` around `boxes` ([(normalised xyxy, RGB)], the first the subject)
    with a margin of a quarter of their extent, THUMB_HEIGHT pixels high, boxes drawn."""
    from PIL import Image, ImageDraw

    h, w = frame.shape[:2]
    rects = [box_pixels(b, w, h) for b, _ in boxes]
    x0, y0 = min(r[0] for r in rects), min(r[1] for r in rects)
    x1, y1 = max(r[2] for r in rects) + 1, max(r[3] for r in rects) + 1
    mx, my = max(8, (x1 - x0) // 4), max(8, (y1 - y0) // 4)
    x0, y0, x1, y1 = max(0, x0 - mx), max(0, y0 - my), min(w, x1 + mx), min(h, y1 + my)
    scale = THUMB_HEIGHT / (y1 - y0)
    width = max(1, min(round((x1 - x0) * scale), 3 * THUMB_HEIGHT))
    img = Image.fromarray(np.ascontiguousarray(frame[y0:y1, x0:x1])).resize(
        (width, THUMB_HEIGHT), Image.BILINEAR)
    draw = ImageDraw.Draw(img)
    sx, sy = width / (x1 - x0), THUMB_HEIGHT / (y1 - y0)
    for (left, top, right, bottom), (_, color) in reversed(list(zip(rects, boxes))):
        draw.rectangle([round((left - x0) * sx), round((top - y0) * sy),
                        round((right + 1 - x0) * sx) - 1, round((bottom + 1 - y0) * sy) - 1],
                       outline=color, width=3 if color == RESULT_COLOR else 2)
    return img


# ----------------------------------------------------------------------------- the page

def write_report(analysis: dict, out_dir, title=None) -> Path:
    """Write ``out_dir/index.html`` and ``out_dir/report.json`` from :func:`analyse`'s dict
    (after :func:`render_thumbnails`, if any). Returns the path of index.html."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = {k: v for k, v in analysis.items() if not k.startswith("_")}
    gallery = analysis.get("_gallery")
    if gallery is not None:
        data["galleries"] = [{"name": cls["name"], "false_positives": [_public(p) for p in g["fp"]],
                              "missed": [_public(p) for p in g["missed"]]}
                             for cls, g in zip(data["classes"], gallery["picks"])]
    (out / "report.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    page = _page(data, title or f"AVA error analysis: {Path(data['files']['results'][0]).name}")
    (out / "index.html").write_text(page, encoding="utf-8")
    return out / "index.html"


def _public(pick):
    """A gallery pick as written to report.json (rows as file lines)."""
    d = {k: v for k, v in pick.items() if k not in ("person",)}
    if "row" in d:
        d["results_row"] = d.pop("row")
    return d


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#222;
     background:#fafafa}
main{max-width:1240px;margin:0 auto;padding:12px 16px;box-sizing:border-box}
h1{font-size:20px;margin:4px 0 8px}
.meta{color:#555;overflow-wrap:anywhere;margin:2px 0}
.big{font-size:28px;font-weight:600;margin:8px 0}
.warn{color:#a40;font-weight:600}
details{background:#fff;border:1px solid #ddd;border-radius:4px;margin:10px 0;padding:4px 10px}
summary{cursor:pointer;font-weight:600;padding:4px 0}
details details{margin:6px 0}
table{border-collapse:collapse;width:100%;table-layout:auto}
th,td{border-bottom:1px solid #eee;padding:3px 5px;text-align:right;vertical-align:top}
td.l{overflow-wrap:anywhere}
td:not(.l){white-space:nowrap}
#classes{font-size:13px}
#classes th,#classes td{padding:3px 4px}
td.name{min-width:11em;overflow-wrap:break-word}
th{background:#f0f0f0;position:sticky;top:0;overflow-wrap:normal}
td.nw{white-space:nowrap}
tr.empty td{color:#aaa}
th.sortable{cursor:pointer;user-select:none}
th.sortable:after{content:' \\2195';color:#999}
td.l,th.l{text-align:left}
.pos{color:#070}.neg{color:#b00}
.cls{display:flex;flex-wrap:wrap;gap:16px}
.cls svg.pr{flex:none}
.gal{display:flex;flex-wrap:wrap;gap:8px;margin:4px 0 10px}
figure{margin:0;max-width:210px;font-size:12px}
figure img{display:block;height:128px;max-width:210px;object-fit:contain;background:#000}
small{color:#666}
"""

_JS = """
function sortTable(th){
  var table=th.closest('table'), body=table.tBodies[0], i=th.cellIndex;
  var asc=th.getAttribute('data-dir')!=='asc';
  Array.prototype.forEach.call(table.tHead.rows[0].cells,function(c){c.removeAttribute('data-dir');});
  th.setAttribute('data-dir',asc?'asc':'desc');
  var rows=Array.prototype.slice.call(body.rows);
  function key(r){var c=r.cells[i],v=c.getAttribute('data-v');
    if(v===null)v=c.textContent; var f=parseFloat(v);
    return (v!==''&&!isNaN(f)&&isFinite(v))?f:v.toLowerCase();}
  rows.sort(function(a,b){var x=key(a),y=key(b);
    if(typeof x!==typeof y){return (typeof x==='number')?-1:1;}
    if(x<y)return asc?-1:1; if(x>y)return asc?1:-1; return 0;});
  rows.forEach(function(r){body.appendChild(r);});
}
document.querySelectorAll('th.sortable').forEach(function(th){
  th.addEventListener('click',function(){sortTable(th);});});
function openTarget(){var id=location.hash.slice(1); var el=id&&document.getElementById(id);
  while(el){if(el.tagName==='DETAILS')el.open=true; el=el.parentElement;}}
window.addEventListener('hashchange',openTarget); openTarget();
"""


def _pct(v, digits=2):
    return "n/a" if v is None else f"{100 * v:.{digits}f}"


def _td(text, v=None, cls=None):
    attrs = "" if v is None else f' data-v="{html.escape(str(v))}"'
    attrs += "" if cls is None else f' class="{cls}"'
    return f"<td{attrs}>{text}</td>"


def _page(d: dict, title: str) -> str:
    e = html.escape
    runs = d["runs"]
    main = runs[0]
    short = [Path(r["name"]).name for r in runs]
    # compared files are columns "A", "B", ... (a legend names them): file names as column
    # headers would take the width that class names need
    tags = [chr(ord("A") + k) for k in range(len(runs))] if len(runs) > 1 else [""]
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
             f"<meta name=viewport content='width=device-width,initial-scale=1'>"
             f"<title>{e(title)}</title><style>{_CSS}</style></head><body><main>",
             f"<h1>{e(title)}</h1>",
             f"<p class=meta>results: {e(', '.join(r['name'] for r in runs))}<br>"
             f"ground truth: {e(d['files']['gt'])}"
             + (f"; exclusions: {e(d['files']['exclusions'])}" if d['files']['exclusions'] else "")
             + f"<br>protocol {e(d['protocol'])}, ties {e(d['ties'])}, "
             f"{d['label_map']['classes']} classes</p>"]
    maps = " &nbsp; ".join(
        f"<span data-file='{e(n)}' class=map data-v='{r['metrics']['mAP']!r}'>"
        f"<b>{t}</b> = {e(n)}: {format_percent(r['metrics']['mAP'])} %</span>"
        for t, n, r in zip(tags, short, runs)) if len(runs) > 1 else ""
    parts.append(f"<div class=big>frame-mAP <span id=map data-v='{main['metrics']['mAP']!r}'>"
                 f"{format_percent(main['metrics']['mAP'])}</span> %</div>")
    if maps:
        parts.append(f"<p>{maps}</p>")
    for r in runs:
        if r["coverage_line"]:
            parts.append(f"<p class=meta>{e(Path(r['name']).name)}: {e(r['coverage_line'])}</p>")
        if r["coverage_warning"]:
            parts.append(f"<p class=warn>{e(Path(r['name']).name)}: {e(r['coverage_warning'])}</p>")

    # ---- groups
    if main["action_groups"]:
        head = "".join(f"<th title='{e(n)}'>{t} mAP %</th>" for t, n in zip(tags, short))
        rows = []
        for g in GROUPS:
            if g not in main["action_groups"]:
                continue
            gd = main["action_groups"][g]
            gmaps = [r["action_groups"].get(g, {}).get("mAP") for r in runs]
            cells = "".join(_td(_pct(x, 4), "" if x is None else repr(x)) for x in gmaps)
            rows.append(f"<tr id='group-{g}'><td class=l>{g}</td>{cells}"
                        f"<td>{gd['classes_with_instances']} of {gd['classes']}</td></tr>")
        parts.append("<details open><summary>mAP per AVA action group</summary>"
                     f"<table id=groups><thead><tr><th class=l>group</th>{head}"
                     "<th>classes with instances</th></tr></thead><tbody>"
                     + "".join(rows) + "</tbody></table></details>")

    # ---- class table (with many compared files the kinds would not fit 1280 pixels)
    other = runs[1:]
    kinds = ERROR_KINDS if len(runs) <= MAX_FILES_WITH_KINDS else ()
    head = ("<th class='l sortable'>id</th><th class='l sortable'>class</th>"
            f"<th class='l sortable'>group</th><th class=sortable>AP % {tags[0]}</th>"
            + "".join(f"<th class=sortable title='{e(n)}'>AP % {t}</th>"
                      f"<th class=sortable>&Delta; {t}&minus;A</th>"
                      for t, n in zip(tags[1:], short[1:]))
            + "<th class=sortable>inst</th><th class=sortable>results</th>"
              "<th class=sortable title='true positives among the top N results, N = instances'>"
              "TP@N</th>"
            + "".join(f"<th class=sortable title='false positives among the top N: {k}'>"
                      f"{a}</th>" for k, a in zip(kinds, KIND_ABBREVIATIONS))
            + "<th class=sortable title='ground-truth boxes the top N did not find'>missed"
              "</th><th class=l>most confused with</th>")
    body = []
    for c in d["classes"]:
        anchor = f"c-{c['id']}"
        cells = [_td(str(c["id"]), c["id"], "l"),
                 _td(f"<a href='#{anchor}'>{e(c['name'])}</a>", c["name"], "l name"),
                 _td(e(c["group"] or ""), c["group"] or "", "l nw"),
                 _td(_pct(c["AP"]), "" if c["AP"] is None else repr(c["AP"]))]
        for r in other:
            ap = r["metrics"]["per_class"].get(c["name"])
            diff = None if ap is None or c["AP"] is None else ap - c["AP"]
            cells.append(_td(_pct(ap), "" if ap is None else repr(ap)))
            cells.append(_td("" if diff is None else f"{100 * diff:+.2f}",
                             "" if diff is None else repr(diff),
                             None if not diff else ("pos" if diff > 0 else "neg")))
        cells += [_td(str(c["instances"]), c["instances"]), _td(str(c["results"]), c["results"]),
                  _td(str(c["tp_at_n"]), c["tp_at_n"])]
        cells += [_td(str(c["errors"][k]), c["errors"][k]) for k in kinds]
        cells.append(_td(str(c["missed"]["total"]), c["missed"]["total"]))
        cells.append(_td(e(", ".join(f"{n} ({k})" for n, k in c["confusions"][:2])), None, "l"))
        empty = " class=empty" if c["instances"] == 0 and c["results"] == 0 else ""
        body.append(f"<tr data-class='{e(c['name'])}'{empty}>" + "".join(cells) + "</tr>")
    legend = (", ".join(f"{a} = {k}" for k, a in zip(kinds, KIND_ABBREVIATIONS))
              if kinds else "in the per-class sections")
    parts.append(f"<details open><summary>Classes ({len(d['classes'])}; click a column to "
                 "sort)</summary><p class=meta>At N = the class's number of instances (its N "
                 "highest-scored results) of A: TP@N true positives; false positives by kind, "
                 f"{legend}; missed ground-truth boxes.</p>"
                 f"<table id=classes><thead><tr>{head}</tr></thead><tbody>"
                 + "".join(body) + "</tbody></table></details>")

    # ---- comparison
    if d["comparison"]:
        for j, (t, n) in enumerate(zip(tags[1:], short[1:])):
            rows = sorted((x for x in d["comparison"] if x["diff"][j] is not None),
                          key=lambda x: x["diff"][j])
            tr = []
            for x in rows:
                diff = x["diff"][j]
                sign = "pos" if diff > 0 else "neg" if diff < 0 else None
                tr.append(f"<tr><td class=l>{e(x['name'])}</td>"
                          f"{_td(_pct(x['AP'][0]), x['AP'][0])}"
                          f"{_td(_pct(x['AP'][j + 1]), x['AP'][j + 1])}"
                          f"{_td(f'{100 * diff:+.2f}', diff, sign)}</tr>")
            tr = "".join(tr)
            parts.append(f"<details open><summary>{t} = {e(n)} against A = {e(short[0])}: "
                         "per-class difference, sorted</summary><table class=compare><thead><tr>"
                         f"<th class=l>class</th><th>A AP %</th><th>{t} AP %</th>"
                         f"<th>&Delta; AP (points)</th></tr></thead><tbody>{tr}</tbody></table>"
                         "</details>")

    # ---- per class
    galleries = d.get("galleries") or [None] * len(d["classes"])
    section = []
    for c, gal in zip(d["classes"], galleries):
        if c["instances"] == 0 and c["results"] == 0:
            continue
        conf = "".join(f"<li>{e(n)}: {k}</li>" for n, k in c["confusions"]) or "<li>none</li>"
        errs = ", ".join(f"{k} {c['errors'][k]}" for k in ERROR_KINDS)
        miss = c["missed"]
        text = (f"<div><p>AP {_pct(c['AP'])} %, {c['instances']} instances, {c['results']} "
                f"results; at N = {c['operating_point']}: {c['tp_at_n']} true positives, "
                f"{c['fp_at_n']} false positives ({errs}); {miss['total']} missed "
                f"({miss['no_result_on_box']} with no result of the class on the box, "
                f"{miss['ranked_below_n']} ranked below N)</p>"
                f"<p>False positives at IoU &ge; 0.5 with a person who has, instead:</p>"
                f"<ul>{conf}</ul></div>")
        img = _pr_svg(c)
        figs = ""
        if gal is not None:
            figs = _gallery_html(gal)
        section.append(f"<details id='c-{c['id']}'><summary>{c['id']} {e(c['name'])} &mdash; "
                       f"AP {_pct(c['AP'])} %</summary><div class=cls>{img}{text}</div>"
                       f"{figs}</details>")
    parts.append("<details open><summary>Per class: precision-recall, errors, confusions"
                 + (", thumbnails" if d.get("galleries") else "") + "</summary>"
                 + "".join(section) + "</details>")
    parts.append(f"<p class=meta>Errors and curves from the per-row matching (equal scores in "
                 f"file order); APs and mAPs from the evaluator, as eval-csv prints them. "
                 f"Numbers: report.json.</p></main><script>{_JS}</script></body></html>\n")
    return "\n".join(parts)


def _gallery_html(gal) -> str:
    e = html.escape

    def fig(p, caption):
        if "thumb" not in p:
            return ""
        return (f"<figure><img loading=lazy src='{e(p['thumb'])}' alt=''><figcaption>"
                f"{caption}</figcaption></figure>")

    fps = "".join(fig(p, f"score {p['score']:.3f} (rank {p['rank'] + 1}), {p['kind']}<br>"
                          f"<small>true: {e(', '.join(p.get('true_labels', [])) or '-')}</small>")
                  for p in gal["false_positives"])
    missed = "".join(fig(p, ("no result of the class on the box" if p["best_score"] is None
                             else f"best score on the box {p['best_score']:.3f}")
                         + f"<br><small>true: {e(', '.join(p.get('true_labels', [])))}</small>")
                     for p in gal["missed"])
    out = ""
    if fps:
        out += ("<p>Top-scored false positives (orange: result, green: the person):</p>"
                f"<div class=gal>{fps}</div>")
    if missed:
        out += f"<p>Missed ground-truth boxes (green):</p><div class=gal>{missed}</div>"
    return out


def _pr_svg(c) -> str:
    """The class's precision-recall curve as a small inline SVG ("" without a curve): the
    curve, the recall at N (dashed) and the axes from 0 to 1."""
    rec, prec = c["pr_curve"]["recall"], c["pr_curve"]["precision"]
    if not rec:
        return ""
    w, h, left, bottom, top, right = 300, 210, 44, 30, 18, 10
    pw, ph = w - left - right, h - top - bottom

    def x(r):
        return f"{left + r * pw:.1f}"

    def y(p):
        return f"{top + (1 - p) * ph:.1f}"

    points = " ".join(f"{x(r)},{y(p)}" for r, p in zip(rec, prec))
    ticks = "".join(
        f"<line x1='{x(t)}' y1='{y(0)}' x2='{x(t)}' y2='{top + ph + 4}' stroke='#888'/>"
        f"<text x='{x(t)}' y='{top + ph + 15}' text-anchor='middle'>{t:g}</text>"
        f"<line x1='{left - 4}' y1='{y(t)}' x2='{x(1)}' y2='{y(t)}' stroke='#eee'/>"
        f"<text x='{left - 6}' y='{float(y(t)) + 3:.1f}' text-anchor='end'>{t:g}</text>"
        for t in (0, 0.2, 0.4, 0.6, 0.8, 1))
    n = c["operating_point"]
    at_n = (f"<line x1='{x(c['tp_at_n'] / n)}' y1='{y(0)}' x2='{x(c['tp_at_n'] / n)}' "
            f"y2='{y(1)}' stroke='#999' stroke-dasharray='4 3'/>" if n else "")
    return (f"<svg class=pr role=img aria-label='precision-recall curve' width='{w}' "
            f"height='{h}' viewBox='0 0 {w} {h}' font-size='10' font-family='sans-serif'>"
            f"<rect x='{left}' y='{top}' width='{pw}' height='{ph}' fill='#fff' "
            f"stroke='#888'/>{ticks}{at_n}<polyline fill='none' stroke='#1f77b4' "
            f"stroke-width='1.5' points='{points}'/>"
            f"<text x='{left + pw / 2}' y='12' text-anchor='middle'>precision vs recall, "
            f"AP {_pct(c['AP'])} %</text>"
            f"<text x='{w - right}' y='{h - 2}' text-anchor='end'>recall</text>"
            f"<text x='10' y='{top + ph / 2}' text-anchor='middle' "
            f"transform='rotate(-90 10 {top + ph / 2})'>precision</text></svg>")


# ----------------------------------------------------------------------------- entry point

def report_files(gt_path, results_paths, out_dir, label_map=None, exclusions=None,
                 protocol="ava-2018", ties="official", videos=None, time_offset=0.0,
                 progress=False) -> dict:
    """`hgrnn report`: read, evaluate, analyse, optionally cut thumbnails, write the page.
    results_paths: the result file first, then the files to compare. Returns
    {"index", "json", "mAP", "thumbnails" (render_thumbnails' dict or None), "warnings"
    (eval-csv's coverage warnings), "seconds"}."""
    import time

    t0 = time.perf_counter()
    inputs = load_inputs(gt_path, results_paths, label_map, exclusions, protocol, progress)
    analysis = analyse(inputs, protocol, ties)
    thumbs = None
    if videos is not None:
        thumbs = render_thumbnails(analysis, videos, out_dir, time_offset)
    index = write_report(analysis, out_dir)
    return {"index": str(index), "json": str(Path(out_dir) / "report.json"),
            "mAP": analysis["runs"][0]["metrics"]["mAP"], "thumbnails": thumbs,
            "warnings": [w if k == 0 else f"{r['name']}: {w}"
                         for k, r in enumerate(analysis["runs"])
                         if (w := r["coverage_warning"])],
            "seconds": time.perf_counter() - t0}
