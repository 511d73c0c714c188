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

Implementation: vectorised numpy. All results are sorted once by score (a packed-integer
value sort, see :mod:`hgrnn.metrics.packsort`); the 50-cap ranks them within keyframes by a
second packed sort. Ground-truth rows are sorted by (keyframe, class) into blocks, and each
result finds its block (same keyframe and class) with one binary search for the keyframe
and a table lookup. IoUs are computed for all (result, candidate box) pairs slot by slot (a
loop over the at most a few dozen boxes of one keyframe and class, never over keyframes or
results); "the first result, in score order, among those whose best box is this box at
IoU >= 0.5" is a lexsort; precision / recall / AP is a loop over the classes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from hgrnn.data.ava import AvaRows, LabelMap, keyframe_index, load_label_map
from hgrnn.metrics.official_order import (MAX_PER_KEYFRAME_AND_CLASS_2018, SCORE_FLOOR_2018,
                                  descending, first_appearance_rank, heap_keyframes,
                                  heap_order, official_concat, position_in_group,
                                  simulate_heaps)
from hgrnn.metrics.packsort import argsort_descending, dense_keys, rank_inverse, sort_pairs

__all__ = ["PROTOCOLS", "TIES", "EvalResult", "evaluate", "evaluate_csv", "evaluate_persons",
           "box_iou", "average_precision", "MAX_RESULTS_PER_KEYFRAME", "PERSON_LABEL_MAP"]

PROTOCOLS = ("ava-2018", "ava-2019", "ava-2020")
TIES = ("official", "stable")
OFFICIAL_MAP_KEY = "PascalBoxes_Precision/mAP@0.5IOU"
OFFICIAL_CLASS_KEY = "PascalBoxes_PerformanceByCategory/AP@0.5IOU/"
MAX_RESULTS_PER_KEYFRAME = 50        # ava-2019 / ava-2020 cap (official ``capacity``)
IOU_THRESHOLD = 0.5


@dataclass
class EvalResult:
    """Frame-mAP and per-class APs.

    mAP: mean AP over classes with instances (NaN if no class has any);
    per_class: class name -> AP, label-map order, None for classes without instances (a
    name that several ids share gets " (id N)" appended);
    counts: {"instances", "results", "true_positives": {name: int} and totals
    ("total_instances", ...), plus what was dropped and why};
    protocol: one of :data:`PROTOCOLS`."""

    mAP: float
    per_class: dict
    counts: dict
    protocol: str
    ids: dict = field(default_factory=dict)      # class name -> action id
    ties: str = "official"

    def to_dict(self) -> dict:
        """JSON-ready dict (fractions, not percents): {"mAP", "per_class" {name: AP or
        None}, "classes" [{"id", "name", "AP", "instances", "results", "true_positives"}],
        "counts", "protocol", "ties"} plus the official evaluator's keys
        ("PascalBoxes_Precision/mAP@0.5IOU" and
        "PascalBoxes_PerformanceByCategory/AP@0.5IOU/<name>"), so scripts written for the
        official output keep working."""
        def f(v):
            return None if v is None or np.isnan(v) else float(v)
        inst = self.counts.get("instances", {})
        res = self.counts.get("results", {})
        tps = self.counts.get("true_positives", {})
        d = {"mAP": f(self.mAP),
             "per_class": {k: f(v) for k, v in self.per_class.items()},
             "classes": [{"id": self.ids.get(k), "name": k, "AP": f(v),
                          "instances": inst.get(k, 0), "results": res.get(k, 0),
                          "true_positives": tps.get(k, 0)} for k, v in self.per_class.items()],
             "counts": self.counts, "protocol": self.protocol, "ties": self.ties,
             OFFICIAL_MAP_KEY: f(self.mAP)}
        for k, v in self.per_class.items():
            d[OFFICIAL_CLASS_KEY + k] = f(v)
        return d

    def to_json(self, indent=2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def coverage_line(self) -> str:
        """Videos / keyframes in the ground truth, the results and both (one line)."""
        c = self.counts.get("coverage")
        if not c:
            return ""
        return (f"coverage: ground truth {c['gt_videos']:,} videos / {c['gt_keyframes']:,} "
                f"keyframes; results {c['results_videos']:,} / {c['results_keyframes']:,}; "
                f"in both {c['common_videos']:,} / {c['common_keyframes']:,}")

    def coverage_warning(self) -> str | None:
        """A warning when the results cover only part of the ground truth, else None."""
        c = self.counts.get("coverage")
        if not c or c["common_keyframes"] >= c["gt_keyframes"] or not c["common_keyframes"]:
            return None
        return (f"warning: the results cover {c['common_videos']:,} of {c['gt_videos']:,} "
                f"ground-truth videos ({c['common_keyframes']:,} of {c['gt_keyframes']:,} "
                "keyframes); every uncovered box is a miss, so this mAP is not comparable "
                "to AVA numbers (evaluate against the ground truth of the covered videos)")

    def format_table(self) -> str:
        """Coverage line, per-class AP table and mAP, for humans; APs in percent (as AVA
        papers quote them; --json and to_dict() hold fractions)."""
        inst = self.counts.get("instances", {})
        res = self.counts.get("results", {})
        tps = self.counts.get("true_positives", {})
        width = max([len(n) for n in self.per_class] + [10])
        lines = [line for line in (self.coverage_line(),) if line]
        lines.append(f"{'id':>4}  {'class':<{width}}  {'AP %':>7}  {'inst':>7}  "
                     f"{'results':>9}  {'TP':>7}")
        for name, ap in self.per_class.items():
            aps = "    n/a" if ap is None else f"{100 * ap:7.2f}"
            lines.append(f"{self.ids.get(name, ''):>4}  {name:<{width}}  {aps}  "
                         f"{inst.get(name, 0):>7}  {res.get(name, 0):>9}  "
                         f"{tps.get(name, 0):>7}")
        n_eval = sum(v is not None for v in self.per_class.values())
        lines.append(f"mAP ({self.protocol}, ties {self.ties}, {n_eval} classes with "
                     f"instances): {format_percent(self.mAP)} %")
        dropped = {k: v for k, v in self.counts.items()
                   if k.startswith(("gt_", "results_")) and v}
        if dropped:
            lines.append("dropped: " + ", ".join(f"{k}={v}" for k, v in dropped.items()))
        return "\n".join(lines)


def format_percent(x) -> str:
    """A fraction as percent with 4 decimals ("6.4128"), "nan" for NaN/None: how every
    command prints an AP or mAP for humans."""
    return "nan" if x is None or np.isnan(x) else f"{100 * x:.4f}"


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


def _pair_iou(a, b):
    """Elementwise IoU of rows a[i], b[i] ((P, 4) each) -> (P,), official arithmetic."""
    ih = np.maximum(0.0, np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]))
    iw = np.maximum(0.0, np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]))
    inter = ih * iw
    area_a = (a[:, 3] - a[:, 1]) * (a[:, 2] - a[:, 0])
    area_b = (b[:, 3] - b[:, 1]) * (b[:, 2] - b[:, 0])
    return inter / (area_a + area_b - inter)


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


def _f64(rows, name):
    exact = getattr(rows, name + "64", None)
    if exact is not None:
        return exact
    arr = getattr(rows, name)
    return None if arr is None else np.asarray(arr, np.float64)


def evaluate(gt: AvaRows, results: AvaRows, label_map: LabelMap, protocol="ava-2018",
             exclusions=None, ties="official") -> EvalResult:
    """Official AVA frame-mAP of `results` against `gt` (see the module docstring).

    gt: ground-truth rows (one per box and action); results: rows with scores;
    label_map: the evaluated classes; protocol: "ava-2018" | "ava-2019" | "ava-2020";
    exclusions: set of (video_id, timestamp) or a CSV path (not with ava-2020);
    ties: "official" (the official code's order of equal scores and equal IoUs, see
    :mod:`hgrnn.metrics.official_order`) or "stable" (file order, the same on every machine)."""
    if ties not in TIES:
        raise ValueError(f"unknown ties {ties!r}; choose one of {', '.join(TIES)}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if results.scores is None and getattr(results, "scores64", None) is None:
        raise ValueError("results have no scores (is this a ground-truth file?)")
    if exclusions is not None and protocol == "ava-2020":
        raise ValueError("ava-2020 has no excluded timestamps (its ground truth marks "
                         "annotated keyframes instead); drop --exclusions or pick ava-2018/2019")
    if isinstance(exclusions, (str, os.PathLike)):
        from hgrnn.data.ava import read_exclusions
        exclusions = read_exclusions(exclusions)
    K = len(label_map)
    ids = np.asarray(label_map.ids, np.int64)
    counts = {}
    for k, v in (gt.skipped or {}).items():
        counts[f"gt_skipped_{k.replace(' ', '_')}"] = v
    for k, v in (results.skipped or {}).items():
        counts[f"results_skipped_{k.replace(' ', '_')}"] = v

    # ---- keys in one space: (video, timestamp) -> int64
    parts = [gt.video_ids, results.video_ids]
    if gt.empty_video_ids is not None:
        parts.append(gt.empty_video_ids)
    vocab = np.unique(np.concatenate([_vocabulary(np.asarray(p, str)) for p in parts]))
    gkeys, _ = keyframe_index(gt.video_ids, gt.timestamps, vocab)
    rkeys, _ = keyframe_index(results.video_ids, results.timestamps, vocab)

    # ---- class columns; rows outside the label map dropped (counted)
    gcls = _columns(gt.action_ids, ids)
    rcls = _columns(results.action_ids, ids)
    counts["gt_dropped_not_in_label_map"] = int((gcls < 0).sum())
    counts["results_dropped_not_in_label_map"] = int((rcls < 0).sum())
    gt_all_keys = gkeys                                 # ava-2020: every key of the file
    if gt.empty_video_ids is not None and len(gt.empty_video_ids):
        ek, _ = keyframe_index(gt.empty_video_ids, gt.empty_timestamps, vocab)
        gt_all_keys = np.concatenate([gkeys, ek])
    gsel = gcls >= 0
    rsel = rcls >= 0

    # ---- exclusions (2018/2019)
    if exclusions:
        ex = list(exclusions)
        exk, _ = keyframe_index(np.array([v for v, _ in ex], str),
                                np.array([t for _, t in ex], np.int64), vocab)
        gx = np.isin(gkeys, exk) & gsel
        rx = np.isin(rkeys, exk) & rsel
        counts["gt_dropped_excluded"] = int(gx.sum())
        counts["results_dropped_excluded"] = int(rx.sum())
        gsel &= ~gx
        rsel &= ~rx

    counts["coverage"] = _coverage(np.concatenate([gkeys[gsel], gt_all_keys[len(gkeys):]]),
                                   rkeys[rsel])
    gidx = np.flatnonzero(gsel)
    gkeys, gcls = gkeys[gidx], gcls[gidx]
    gboxes = _f64(gt, "boxes").take(gidx, axis=0)       # (G, 4)
    rscores = _f64(results, "scores")
    ridx = None                                         # None: all result rows, in order
    if not rsel.all():
        ridx = np.flatnonzero(rsel)
        rkeys, rcls, rscores = rkeys[ridx], rcls[ridx], rscores[ridx]

    img_rank = None                                     # official: reader's keyframe order
    if ties == "official":
        img_rank = first_appearance_rank(rkeys)
    # ---- one sort of all results by descending score (ties: file order); srank = position
    if ties == "official" and protocol == "ava-2018":  # the 2018 NMS keeps scores > -10
        low = rscores <= SCORE_FLOOR_2018
        counts["results_dropped_score_not_above_-10"] = int(low.sum())
        if low.any():
            ok = np.flatnonzero(~low)
            rkeys, rcls, rscores, img_rank = _select(ok, rkeys, rcls, rscores, img_rank)
            ridx = ok if ridx is None else ridx[ok]
    order_s = argsort_descending(rscores)
    srank = np.empty(len(order_s), np.int64)
    srank[order_s] = np.arange(len(order_s))
    del order_s
    rboxes_all = _f64(results, "boxes")
    hpos = None                                         # official: heap position, simulated
    keep = None
    if protocol in ("ava-2019", "ava-2020"):            # top 50 per keyframe across classes
        by_key = rank_inverse(srank)[sort_pairs(dense_keys(rkeys), srank)]  # kf, score
        ks = rkeys[by_key]
        start = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
        rank = np.arange(len(ks)) - np.repeat(start, np.diff(np.r_[start, len(ks)]))
        keep = np.zeros(len(ks), bool)
        keep[by_key[rank < MAX_RESULTS_PER_KEYFRAME]] = True
        if ties == "official":
            sim = heap_keyframes(by_key, ks, start, rank, rscores, rcls, K,
                                 MAX_RESULTS_PER_KEYFRAME)
            if len(sim):
                hpos, sim_rows, kept_rows = simulate_heaps(
                    sim, rkeys, rscores, ids[rcls], rboxes_all, ridx, MAX_RESULTS_PER_KEYFRAME)
                keep[sim_rows] = False
                keep[kept_rows] = True
        counts["results_dropped_over_50_per_keyframe"] = int((~keep).sum())
        del by_key, ks, start, rank
    if protocol == "ava-2020":                          # keyframes absent from gt: ignored
        uall = np.unique(gt_all_keys)
        at = np.minimum(np.searchsorted(uall, rkeys), max(len(uall) - 1, 0))
        known = (uall[at] == rkeys) if len(uall) else np.zeros(len(rkeys), bool)
        counts["results_dropped_keyframe_not_in_gt"] = int((keep & ~known).sum())
        keep &= known
    if keep is not None:
        keep = np.flatnonzero(keep)
        rkeys, rcls, srank, rscores, img_rank, hpos = _select(
            keep, rkeys, rcls, srank, rscores, img_rank, hpos)
        ridx = keep if ridx is None else ridx[keep]
    rboxes = rboxes_all if ridx is None else rboxes_all.take(ridx, axis=0)   # (R, 4)
    del rboxes_all
    valid = (rboxes[:, 2] > rboxes[:, 0]) & (rboxes[:, 3] > rboxes[:, 1])
    counts["results_dropped_invalid_box"] = int((~valid).sum())
    if not valid.all():
        v = np.flatnonzero(valid)
        rkeys, rcls, srank, rscores, img_rank, hpos = _select(
            v, rkeys, rcls, srank, rscores, img_rank, hpos)
        rboxes = rboxes.take(v, axis=0)

    # ---- the order results are matched and ranked in: cpos = position of each result in
    # the per-class concatenation (class, then keyframe, then the order inside a keyframe)
    if ties == "official":
        cat, largest = official_concat(rcls, img_rank, srank, rscores, hpos, protocol, K)
        if protocol == "ava-2018" and largest > MAX_PER_KEYFRAME_AND_CLASS_2018:
            # the 2018 NMS's max_output_size
            over = position_in_group(rcls, img_rank, cat) >= MAX_PER_KEYFRAME_AND_CLASS_2018
            counts["results_dropped_over_10000_per_keyframe_and_class"] = int(over.sum())
            if over.any():
                v = np.flatnonzero(~over)
                rkeys, rcls, srank, rscores, img_rank = _select(
                    v, rkeys, rcls, srank, rscores, img_rank)
                rboxes = rboxes.take(v, axis=0)
                # the same order without the dropped (not a new argsort of fewer values)
                new_index = np.cumsum(~over) - 1
                cat = new_index[cat[~over[cat]]]
        del img_rank
    else:
        cat = rank_inverse(srank)[sort_pairs(rcls, srank)]      # (class, score rank)
    cpos = rank_inverse(cat) if len(cat) else np.zeros(0, np.int64)

    # ---- ground truth sorted by (keyframe, class), file order inside; block table
    gorder = np.lexsort((gidx, gcls, gkeys))
    gkeys, gcls, gboxes, gfile = gkeys[gorder], gcls[gorder], gboxes[gorder], gidx[gorder]
    ukeys, gkey_dense = np.unique(gkeys, return_inverse=True)
    gcode = gkey_dense.ravel().astype(np.int64) * K + gcls          # sorted ascending
    block_len = np.bincount(gcode, minlength=len(ukeys) * K)         # (U*K,)
    block_start = np.cumsum(block_len) - block_len
    # each result's block of candidate gt rows (same keyframe and class)
    n_res = len(rkeys)
    if len(ukeys):
        code = np.searchsorted(ukeys, rkeys)                       # (R,) in place below
        np.minimum(code, len(ukeys) - 1, out=code)
        off_gt = ukeys[code] != rkeys
        np.multiply(code, K, out=code)
        np.add(code, rcls, out=code)
        code[off_gt] = 0
        ncand = block_len[code]
        ncand[off_gt] = 0
        has = np.flatnonzero(ncand)                                # results with candidates
        lo, ncand = block_start[code[has]], ncand[has]
        del code, off_gt
    else:
        has = lo = ncand = np.zeros(0, np.int64)
    del rkeys

    # best candidate per result: highest IoU, first in file order on ties (strict >)
    hboxes = rboxes.take(has, axis=0)                              # (A, 4)
    best_iou = np.full(len(has), -1.0)
    best_gt = np.full(len(has), -1, np.int64)
    n_best = np.zeros(len(has), np.int64)                         # candidates at best IoU
    active = np.arange(len(has))
    slot = 0
    while len(active):
        g = lo[active] + slot
        iou = _pair_iou(hboxes.take(active, axis=0), gboxes.take(g, axis=0))
        b = best_iou[active]
        better = iou > b
        n_best[active] = np.where(better, 1, n_best[active] + (iou == b))
        best_iou[active[better]] = iou[better]
        best_gt[active[better]] = g[better]
        slot += 1
        active = active[ncand[active] > slot]
    if ties == "official" and protocol != "ava-2018":
        # 2019/2020 read the ground truth through the heap: among boxes at the same best
        # IoU, argmax takes the first in heap order, not in file order
        amb = np.flatnonzero((n_best > 1) & (best_iou >= IOU_THRESHOLD))
        if len(amb):
            best_gt[amb] = _first_in_heap_order(amb, lo, ncand, hboxes, best_iou, gt, gfile,
                                                gkeys, gboxes, ids, gcls)

    # true positive: IoU >= 0.5 and the first such result (in matching order) of its box
    cand = np.flatnonzero(best_iou >= IOU_THRESHOLD)              # into `has`
    tp = np.zeros(n_res, bool)
    if len(cand):
        o = cand[np.lexsort((cpos[has[cand]], best_gt[cand]))]
        first = np.r_[True, best_gt[o][1:] != best_gt[o][:-1]]
        tp[has[o[first]]] = True

    # ---- per class AP over the class's results in ranking order
    rcls_s, tp_s = rcls[cat], tp[cat]
    cstart = np.searchsorted(rcls_s, np.arange(K + 1))
    if ties == "official":
        sc_s = rscores[cat]
        for c in range(K):                 # the official ranking: np.argsort(...)[::-1]
            a, b = cstart[c], cstart[c + 1]
            if b - a > 1:
                tp_s[a:b] = tp_s[a:b][descending(sc_s[a:b])]
        del sc_s
    n_inst = np.bincount(gcls, minlength=K)
    per_class, inst_c, res_c, tp_c, name_ids = {}, {}, {}, {}, {}
    aps = []
    for c, (aid, name) in enumerate(zip(label_map.ids, _class_keys(label_map))):
        seg = tp_s[cstart[c]:cstart[c + 1]]
        inst_c[name], res_c[name], tp_c[name] = int(n_inst[c]), len(seg), int(seg.sum())
        name_ids[name] = aid
        if n_inst[c] == 0:
            per_class[name] = None
            continue
        ap = average_precision(seg, int(n_inst[c]))
        per_class[name] = ap
        aps.append(ap)
    mAP = _mean_ap(aps, [a for a, v in zip(label_map.ids, per_class.values()) if v is not None])
    counts = {"instances": inst_c, "results": res_c, "true_positives": tp_c,
              "total_instances": int(n_inst.sum()), "total_results": int(len(tp)),
              "total_true_positives": int(tp.sum()), **counts}
    return EvalResult(mAP=mAP, per_class=per_class, counts=counts, protocol=protocol,
                      ids=name_ids, ties=ties)


PERSON_LABEL_MAP = LabelMap((1,), ("person",))


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
    if results.scores is None and getattr(results, "scores64", None) is None:
        raise ValueError("results have no scores (is this a ground-truth file?)")
    return evaluate(_person_boxes(gt, None), _person_boxes(results, _f64(results, "scores")),
                    PERSON_LABEL_MAP, protocol=protocol, exclusions=exclusions, ties=ties)


def _person_boxes(rows, scores):
    """Rows -> one row per (keyframe, box), action id 1, at the first row of each box;
    scores: (N,) float64 or None (ground truth), the highest of a box's rows is kept."""
    n = len(rows)
    boxes = _f64(rows, "boxes").reshape(-1, 4)
    keys, _ = keyframe_index(rows.video_ids, rows.timestamps)
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
        video_ids=rows.video_ids[sel], timestamps=rows.timestamps[sel],
        boxes=boxes[sel].astype(np.float32), action_ids=np.ones(len(sel), np.int64),
        person_ids=None, scores=None if s64 is None else s64.astype(np.float32),
        skipped=dict(rows.skipped or {}), boxes64=boxes[sel], scores64=s64,
        empty_video_ids=rows.empty_video_ids, empty_timestamps=rows.empty_timestamps,
        source=rows.source)


def _coverage(gkeys, rkeys) -> dict:
    """Videos and keyframes in the ground truth, in the results and in both."""
    gk, rk = _unique_keys(gkeys), _unique_keys(rkeys)
    both = np.intersect1d(gk, rk, assume_unique=True)
    gv, rv = np.unique(gk >> 32), np.unique(rk >> 32)
    return {"gt_videos": len(gv), "gt_keyframes": len(gk),
            "results_videos": len(rv), "results_keyframes": len(rk),
            "common_videos": len(np.intersect1d(gv, rv, assume_unique=True)),
            "common_keyframes": len(both)}


def _unique_keys(keys):
    """Sorted unique int64 keys, fast for files grouped by keyframe (runs sorted only)."""
    if len(keys) == 0:
        return keys
    return np.unique(keys[np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])])


def check_evaluable(result: "EvalResult", gt_name, results_name) -> None:
    """Raise ValueError (naming the files) where the result is no AVA number at all: an
    empty ground truth, no class with instances, no keyframe in common."""
    cov = result.counts.get("coverage", {})
    if cov.get("gt_keyframes", 0) == 0:
        raise ValueError(f"{gt_name}: the ground truth is empty (no annotated keyframe "
                         "left after the label map and exclusions): nothing to evaluate")
    if result.counts.get("total_instances", 0) == 0:
        skipped = result.counts.get("gt_skipped_action_not_in_label_map", 0)
        why = (f" ({skipped} rows have actions outside the label map: pass --label-map "
               "with the dataset's classes)" if skipped else "")
        raise ValueError(f"{gt_name}: no ground-truth box has an action of the label map"
                         f"{why}: no class to evaluate")
    if cov.get("common_keyframes", 0) == 0:
        raise ValueError(
            f"{results_name} and {gt_name} have no keyframe in common (results: "
            f"{cov.get('results_videos', 0)} videos, {cov.get('results_keyframes', 0)} "
            f"keyframes; ground truth: {cov.get('gt_videos', 0)} videos, "
            f"{cov.get('gt_keyframes', 0)} keyframes): are they from the same videos and "
            "split?")


def _mean_ap(aps, class_ids):
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


def _select(index, *arrays):
    """The same rows of several per-result arrays (None stays None)."""
    return tuple(None if a is None else a[index] for a in arrays)












def _first_in_heap_order(amb, lo, ncand, hboxes, best_iou, gt, gfile, gkeys, gboxes, ids,
                         gcls):
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
        iou = _pair_iou(np.repeat(hboxes[i:i + 1], len(g), axis=0), gboxes[g])
        at_best = g[iou == best_iou[i]]
        out[j] = at_best[np.argmin(heap_rank[at_best])]
    return out




def _class_keys(label_map):
    """Class names as dict keys; a name used by several ids gets " (id N)" appended."""
    names = list(label_map.names)
    return [f"{n} (id {i})" if names.count(n) > 1 else n
            for i, n in zip(label_map.ids, names)]






def _vocabulary(vids):
    """Sorted unique video ids, fast for arrays made of long runs of equal ids."""
    vids = np.asarray(vids)
    if len(vids) == 0:
        return vids
    run_start = np.flatnonzero(np.r_[True, vids[1:] != vids[:-1]])
    return np.unique(vids[run_start])


def _columns(action_ids, ids):
    """action ids (N,) -> label-map column (N,) int64, -1 where not in the map."""
    a = np.asarray(action_ids, np.int64)
    lo, hi = min(int(ids.min()), 0), int(ids.max())
    lut = np.full(hi - lo + 2, -1, np.int32)           # last slot: ids outside [lo, hi]
    lut[ids - lo] = np.arange(len(ids))
    idx = a - lo
    idx[(a < lo) | (a > hi)] = hi - lo + 1
    return lut[idx]


def evaluate_csv(gt_csv, results_csv, label_map="ava-v2.1", exclusions=None,
                 protocol="ava-2018", progress=True, ties="official",
                 persons=False) -> EvalResult:
    """Read an AVA ground-truth CSV and a result CSV and evaluate (see :func:`evaluate`).

    label_map: a LabelMap, a packaged name or a label-map file; exclusions: excluded
    timestamps CSV path or set (ava-2018/2019 only); persons: person-box AP instead
    (:func:`evaluate_persons`; the label map is not used). Raises ValueError naming the
    files where there is nothing to evaluate (:func:`check_evaluable`)."""
    from hgrnn.data.ava import read_annotations, read_exclusions, read_results
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
    else:
        result = evaluate(gt, res, lm, protocol=protocol, ties=ties)
    check_evaluable(result, os.fspath(gt_csv), os.fspath(results_csv))
    return result
