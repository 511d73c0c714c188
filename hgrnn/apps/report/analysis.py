"""Step 4 of `hgrnn report`: every number of the page, as one JSON-ready dict.

Per result file the evaluator's numbers (:func:`hgrnn.metrics.evaluate`, as eval-csv gives
them) and mAP per AVA action group; per class of the first file what its AP is made of
(from the per-row matching, :mod:`hgrnn.apps.report.match`, and its errors at N,
:mod:`hgrnn.apps.report.errors`): precision-recall curve, errors by kind, confusions,
missed boxes, and the rows the galleries show; with compare files, per-class differences."""

from __future__ import annotations

import numpy as np

from hgrnn.apps.report.errors import (ERROR_KINDS, LOCALISATION_IOU, FalsePositives, Persons,
                                      false_positives_at_n, ground_truth_persons, missed_at_n,
                                      wrong_label_persons)
from hgrnn.apps.report.inputs import ReportInputs
from hgrnn.apps.report.match import Matching, f64, match_results
from hgrnn.metrics import (IOU_THRESHOLD, EvalResult, average_precision, check_evaluable,
                           evaluate)
from hgrnn.metrics.groups import group_map, mean_ap_by_group

GALLERY_SIZE = 6               # thumbnails per class and kind
CONFUSIONS_SHOWN = 5           # confusions listed per class
CURVE_POINTS = 300             # precision-recall points kept per class (JSON and plot)


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
    runs, results = _evaluate_runs(inputs, protocol, ties)
    main: EvalResult = results[0]
    rows = inputs.results[0][1]
    m = match_results(inputs.gt, rows, lm, protocol, inputs.eval_exclusions)
    persons = ground_truth_persons(inputs.gt, m, K)
    false_positives = false_positives_at_n(m, rows, persons)
    names = list(main.per_class)
    groups = group_map(main.ids)
    scores = f64(rows, "scores")
    classes, gallery = [], []
    for c, (aid, name) in enumerate(zip(lm.ids, names)):
        fp, missed = false_positives[c], missed_at_n(m, c)
        classes.append(_class_entry(c, aid, name, m, fp, missed, persons, names,
                                    group=groups.get(name), ap=_num(main.per_class[name])))
        gallery.append(_gallery_picks(fp, missed, m, scores, persons))
    return {"files": {"gt": inputs.gt_name, "results": [r["name"] for r in runs],
                      "exclusions": inputs.exclusions_name},
            "label_map": {"classes": K}, "protocol": protocol, "ties": ties,
            "matching": {"ties": "stable", "iou": IOU_THRESHOLD,
                         "localisation_iou": LOCALISATION_IOU},
            "runs": runs, "classes": classes, "comparison": _comparison(results, names, lm),
            "_gallery": {"rows": rows, "gt": inputs.gt, "persons": persons,
                         "picks": gallery, "names": names}}


def _evaluate_runs(inputs: ReportInputs, protocol, ties):
    """Each result file evaluated as eval-csv does (its refusals included): the runs'
    JSON entries and the EvalResults."""
    runs, results = [], []
    for name, rows in inputs.results:
        result = evaluate(inputs.gt, rows, inputs.label_map, protocol=protocol,
                          exclusions=inputs.eval_exclusions, ties=ties)
        check_evaluable(result, inputs.gt_name, name)
        results.append(result)
        runs.append({"name": name, "metrics": result.to_dict(),
                     "action_groups": mean_ap_by_group(result.per_class, result.ids),
                     "coverage_line": result.coverage_line(),
                     "coverage_warning": result.coverage_warning()})
    return runs, results


def _class_entry(c, aid, name, m: Matching, fp: FalsePositives, missed, persons: Persons,
                 names, group, ap) -> dict:
    """One class's entry of "classes": the evaluator's AP, and from the matching its
    counts, errors at N by kind, confusions, missed boxes and precision-recall curve."""
    n_inst = int(m.instances[c])
    seg = m.order[m.start[c]:m.start[c + 1]]
    errors = {k: int((fp.kind == i).sum()) for i, k in enumerate(ERROR_KINDS)}
    no_box = np.isnan(m.gt_best_score[missed])
    rec, prec = _curve(m.tp[seg], n_inst)
    return {
        "id": aid, "name": name, "group": group, "AP": ap,
        "AP_of_curve": None if n_inst == 0 else average_precision(m.tp[seg], n_inst),
        "instances": n_inst, "results": len(seg),
        "operating_point": n_inst, "tp_at_n": int(m.tp[seg[:n_inst]].sum()),
        "fp_at_n": len(fp.rows), "errors": errors,
        "confusions": _confusions(wrong_label_persons(fp), persons.labels, names),
        "missed": {"total": len(missed), "no_result_on_box": int(no_box.sum()),
                   "ranked_below_n": int((~no_box).sum())},
        "pr_curve": {"recall": rec, "precision": prec}}


def _confusions(wrong, labels, names) -> list:
    """The classes the persons of wrong-label false positives really have: [[name, count]],
    most frequent first (label-map order on ties), at most CONFUSIONS_SHOWN."""
    conf = labels[wrong].sum(axis=0) if len(wrong) else np.zeros(labels.shape[1], np.int64)
    conf_order = [j for j in np.argsort(-conf, kind="stable") if conf[j] > 0]
    return [[names[j], int(conf[j])] for j in conf_order[:CONFUSIONS_SHOWN]]


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


def _gallery_picks(fp: FalsePositives, missed, m: Matching, scores, persons: Persons) -> dict:
    """The rows a class's galleries show: the first false positives of the ranking; the
    worst misses (no result on the box first, then by the lowest best score)."""
    fp_pick = [{"row": r, "score": float(scores[r]), "rank": int(m.rank[r]),
                "kind": ERROR_KINDS[kind], "person": pp, "person_iou": ii}
               for r, kind, pp, ii in zip(fp.rows[:GALLERY_SIZE].tolist(), fp.kind.tolist(),
                                          fp.person.tolist(), fp.iou.tolist())]
    miss_order = np.lexsort((missed, np.nan_to_num(m.gt_best_score[missed], nan=-np.inf)))
    miss_pick = []
    for g in missed[miss_order][:GALLERY_SIZE].tolist():
        s = m.gt_best_score[g]
        miss_pick.append({"gt_row": g, "person": int(persons.of_row[g]),
                          "best_score": None if np.isnan(s) else float(s)})
    return {"fp": fp_pick, "missed": miss_pick}


def _comparison(results: list, names, lm) -> list:
    """With compare files: per class with an AP in the first file, the APs of all files
    and their differences to the first, the largest first difference first."""
    comparison = []
    if len(results) > 1:
        for k, name in enumerate(names):
            aps = [_num(r.per_class.get(name)) for r in results]
            if aps[0] is None:
                continue
            comparison.append({"name": name, "id": lm.ids[k], "AP": aps,
                               "diff": [None if a is None else a - aps[0] for a in aps[1:]]})
        comparison.sort(key=lambda d: -abs(d["diff"][0] if d["diff"][0] is not None else 0))
    return comparison


def _num(v):
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)
