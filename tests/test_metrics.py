"""Frame-mAP: the vectorised evaluator against a slow, obviously-correct reference written
straight from the official rules, on many random cases, plus the real AVA files."""

import dataclasses
import math
import os
from collections import defaultdict

import numpy as np
import pytest

from hgrnn.data.ava import (AvaRows, LabelMap, load_label_map, read_annotations,
                            read_results, write_annotations, write_results)
from hgrnn.metrics import PROTOCOLS, average_precision, box_iou, evaluate, evaluate_csv

AVA = os.path.join(os.path.dirname(__file__), "data", "ava")   # vendored (data/README.md)
SYNTH = os.path.join(AVA, "mmaction2_eval_detection_synthetic")


# ------------------------------------------------------------------------------------------
# the slow reference: one loop per keyframe, class and result, like the official code
# ------------------------------------------------------------------------------------------

def ref_iou(a, b):
    """a, b: (x1, y1, x2, y2); official arithmetic order."""
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter = ih * iw
    area_a = (a[3] - a[1]) * (a[2] - a[0])
    area_b = (b[3] - b[1]) * (b[2] - b[0])
    return inter / (area_a + area_b - inter)


def ref_ap(tps, n_inst):
    """tps: list of bools in descending-score order."""
    prec, rec = [0.0], [0.0]
    tp = fp = 0
    for t in tps:
        tp += t
        fp += not t
        prec.append(tp / (tp + fp))
        rec.append(tp / n_inst)
    prec.append(0.0)
    rec.append(1.0)
    for i in range(len(prec) - 2, -1, -1):
        prec[i] = max(prec[i], prec[i + 1])
    return sum((rec[i] - rec[i - 1]) * prec[i] for i in range(1, len(rec)) if rec[i] != rec[i - 1])


def reference_evaluate(gt, res, class_ids, protocol, exclusions=(), empty_keys=()):
    """gt: list of (video, ts, box, action); res: list of (video, ts, box, action, score).
    Returns {action_id: AP or None}, mAP. Ties in file order (``ties="stable"``); the
    official order has its own reference in tests/test_official_order.py."""
    classes = set(class_ids)
    excl = set(exclusions) if protocol != "ava-2020" else set()
    gt_keys = {(v, t) for v, t, _, _ in gt} | set(empty_keys)
    gt_by = defaultdict(list)                          # (key, class) -> boxes in file order
    n_inst = defaultdict(int)
    for v, t, box, a in gt:
        if a in classes and (v, t) not in excl:
            gt_by[(v, t), a].append(box)
            n_inst[a] += 1
    res_by = defaultdict(list)                         # key -> [(score, index, box, class)]
    for i, (v, t, box, a, s) in enumerate(res):
        if a in classes and (v, t) not in excl:
            res_by[v, t].append((s, i, box, a))
    per_class = defaultdict(list)                      # class -> [(score, index, tp)]
    for key, items in res_by.items():
        items.sort(key=lambda x: (-x[0], x[1]))
        if protocol in ("ava-2019", "ava-2020"):
            items = items[:50]
        if protocol == "ava-2020" and key not in gt_keys:
            continue
        items = [x for x in items if x[2][2] > x[2][0] and x[2][3] > x[2][1]]
        matched = defaultdict(set)
        for s, i, box, a in items:
            boxes = gt_by.get((key, a), [])
            tp = False
            if boxes:
                ious = [ref_iou(box, g) for g in boxes]
                j = ious.index(max(ious))              # first best box, no fall-back
                if ious[j] >= 0.5 and j not in matched[a]:
                    matched[a].add(j)
                    tp = True
            per_class[a].append((s, i, tp))
    aps = {}
    for a in class_ids:
        if n_inst[a] == 0:
            aps[a] = None
            continue
        lst = sorted(per_class[a], key=lambda x: (-x[0], x[1]))
        aps[a] = ref_ap([x[2] for x in lst], n_inst[a])
    valid = [v for v in aps.values() if v is not None]
    return aps, (sum(valid) / len(valid) if valid else float("nan"))


# ------------------------------------------------------------------------------------------
# random cases
# ------------------------------------------------------------------------------------------

def random_case(seed):
    """A small random AVA-like case with the hard parts: multi-action boxes, keyframes
    without ground truth, classes without results or instances, touching boxes (IoU exactly
    0.5 on a 1/8 grid), invalid result boxes, keyframes over the 50 cap, distinct scores."""
    rng = np.random.default_rng(seed)
    class_ids = [1, 3, 5, 8, 11]
    lm = LabelMap(tuple(class_ids), tuple(f"c{a}" for a in class_ids))
    extra_ids = [2, 4]                                  # AVA ids outside the label map
    gt, res = [], []
    videos = [f"vid{v}" for v in range(rng.integers(1, 4))]
    grid = rng.random() < 0.5                           # coordinates on a 1/8 grid
    for v in videos:
        for t in range(902, 902 + int(rng.integers(2, 7))):
            n_person = int(rng.integers(0, 5))
            for _ in range(n_person):
                if grid:
                    x1, y1 = rng.integers(0, 5, 2) / 8
                    x2, y2 = x1 + rng.integers(1, 4) / 8, y1 + rng.integers(1, 4) / 8
                else:
                    x1, y1 = np.round(rng.random(2) * 0.6, 3)
                    x2, y2 = np.round([x1 + 0.05 + rng.random() * 0.35,
                                       y1 + 0.05 + rng.random() * 0.35], 3)
                box = (float(x1), float(y1), float(x2), float(y2))
                acts = rng.choice(class_ids[:-1] + extra_ids, size=int(rng.integers(1, 4)),
                                  replace=False)                 # class 11: never in gt
                for a in acts:
                    gt.append((v, t, box, int(a)))
                # results near this person, for random classes
                for _ in range(int(rng.integers(0, 6))):
                    if grid:
                        j = rng.integers(-1, 2, 4) / 8
                    else:
                        j = np.round(rng.uniform(-0.08, 0.08, 4), 3)
                    rb = np.clip(np.array(box) + j, 0, 1)
                    if rng.random() < 0.05:
                        rb[2] = rb[0]                   # invalid box (zero width)
                    rb[2], rb[3] = max(rb[2], rb[0]), max(rb[3], rb[1])
                    a = int(rng.choice(class_ids[1:] + extra_ids))  # class 1: no results
                    res.append((v, t, tuple(float(c) for c in rb), a))
            # a crowded keyframe: over the 50 cap
            if rng.random() < 0.15 and n_person:
                base = gt[-1][2]
                for _ in range(int(rng.integers(40, 70))):
                    rb = np.clip(np.array(base) + np.round(rng.uniform(-0.05, 0.05, 4), 3),
                                 0, 1)
                    rb[2], rb[3] = max(rb[2], rb[0] + 0.01), max(rb[3], rb[1] + 0.01)
                    res.append((v, t, tuple(float(c) for c in np.minimum(rb, 1)),
                                int(rng.choice(class_ids))))
    # results on keyframes without any ground truth
    for _ in range(int(rng.integers(0, 6))):
        x1, y1 = np.round(rng.random(2) * 0.5, 3)
        res.append((str(rng.choice(videos + ["novid"])), int(rng.integers(950, 960)),
                    (float(x1), float(y1), float(x1) + 0.3, float(y1) + 0.3),
                    int(rng.choice(class_ids))))
    # distinct scores (ties are resolved arbitrarily by the official code)
    scores = rng.permutation(len(res) * 7 + 10)[:len(res)] / (len(res) * 7 + 10) + 1e-4
    res = [r + (float(np.round(s, 6)),) for r, s in zip(res, scores)]
    rng.shuffle(res)
    # some keyframes annotated but empty (only used by ava-2020)
    empty = [(videos[0], 990)] if rng.random() < 0.5 else []
    # exclusions: one keyframe that has ground truth
    excl = [(gt[0][0], gt[0][1])] if gt and rng.random() < 0.5 else []
    return lm, gt, [tuple(r) for r in res], empty, excl


def to_rows(gt, res, empty=()):
    g = AvaRows.from_arrays([x[0] for x in gt], [x[1] for x in gt],
                            [x[2] for x in gt] or np.zeros((0, 4)), [x[3] for x in gt],
                            person_ids=np.arange(len(gt)))
    g = AvaRows(g.video_ids, g.timestamps, g.boxes, g.action_ids, g.person_ids, None, {},
                boxes64=np.array([x[2] for x in gt], np.float64).reshape(-1, 4),
                empty_video_ids=np.array([e[0] for e in empty], str) if empty else None,
                empty_timestamps=np.array([e[1] for e in empty], np.int64) if empty else None)
    r = AvaRows.from_arrays([x[0] for x in res], [x[1] for x in res],
                            [x[2] for x in res] or np.zeros((0, 4)), [x[3] for x in res],
                            scores=[x[4] for x in res])
    r = AvaRows(r.video_ids, r.timestamps, r.boxes, r.action_ids, None, r.scores, {},
                boxes64=np.array([x[2] for x in res], np.float64).reshape(-1, 4),
                scores64=np.array([x[4] for x in res], np.float64))
    return g, r


def assert_same(got, ref_aps, ref_map, lm):
    for aid, name in zip(lm.ids, lm.names):
        want, have = ref_aps[aid], got.per_class[name]
        if want is None:
            assert have is None, (name, have)
        else:
            assert have is not None and abs(have - want) < 1e-9, (name, have, want)
    if math.isnan(ref_map):
        assert math.isnan(got.mAP)
    else:
        assert abs(got.mAP - ref_map) < 1e-9


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_random_cases_match_reference(protocol):
    checked_cap = checked_half = 0
    for seed in range(60):
        lm, gt, res, empty, excl = random_case(seed)
        g, r = to_rows(gt, res, empty)
        ex = None if protocol == "ava-2020" else set(excl)
        got = evaluate(g, r, lm, protocol=protocol, exclusions=ex, ties="stable")
        ref_aps, ref_map = reference_evaluate(gt, res, lm.ids, protocol, excl, empty)
        assert_same(got, ref_aps, ref_map, lm)
        checked_cap += got.counts.get("results_dropped_over_50_per_keyframe", 0) > 0
        checked_half += any(ref_iou(x[2], y[2]) == 0.5 for x in gt[:20] for y in res[:40])
    if protocol != "ava-2018":
        assert checked_cap >= 3          # the random cases do reach the 50 cap
    assert checked_half >= 1             # ... and IoU exactly 0.5


def test_random_cases_through_csv_files(tmp_path):
    """Written by the real writers, read back, evaluated: same as the reference."""
    for seed in range(100, 108):
        lm, gt, res, empty, excl = random_case(seed)
        g, r = to_rows(gt, res, empty)
        write_annotations(tmp_path / "gt.csv", g)
        write_results(tmp_path / "res.csv", r)
        for protocol in PROTOCOLS:
            ex = None if protocol == "ava-2020" else set(excl)
            got = evaluate_csv(tmp_path / "gt.csv", tmp_path / "res.csv", lm, ex, protocol,
                               ties="stable")
            ref_aps, ref_map = reference_evaluate(gt, res, lm.ids, protocol, excl, empty)
            assert_same(got, ref_aps, ref_map, lm)


def test_csv_path_equals_evaluate_on_the_rows(tmp_path):
    """evaluate_csv, which lets go of the rows once they are selected, gives evaluate()'s
    result on the same rows, counts and their order included."""
    lm, gt, res, empty, excl = random_case(3)
    g, r = to_rows(gt, res, empty)
    write_annotations(tmp_path / "gt.csv", g)
    write_results(tmp_path / "res.csv", r)
    for protocol in PROTOCOLS:
        ex = None if protocol == "ava-2020" else set(excl)
        for ties in ("official", "stable"):
            got = evaluate_csv(tmp_path / "gt.csv", tmp_path / "res.csv", lm, ex, protocol,
                               progress=False, ties=ties)
            rows = (read_annotations(tmp_path / "gt.csv", lm, ex, progress=False),
                    read_results(tmp_path / "res.csv", lm, ex, progress=False))
            want = evaluate(*rows, lm, protocol=protocol, ties=ties)
            assert got.to_json() == want.to_json()
            # the readers' video codes and float64 columns are all it looked at
            assert all(r.__dict__[f] is None for r in rows
                       for f in ("video_ids", "boxes", "scores"))
            # ... and the same rows without codes (strings compared) give the same
            plain = [dataclasses.replace(r, video_ids=r.video_ids, video_codes=None)
                     for r in rows]
            assert evaluate(*plain, lm, protocol=protocol, ties=ties).to_json() == \
                want.to_json()


def test_reference_and_evaluator_can_disagree():
    """Guard against a vacuous comparison: a wrong rule (fall-back to the second-best box)
    changes the number."""
    lm = LabelMap((1,), ("a",))
    gt = [("v", 1, (0.0, 0.0, 0.5, 0.5), 1), ("v", 1, (0.0, 0.0, 0.4, 0.5), 1)]
    res = [("v", 1, (0.0, 0.0, 0.5, 0.5), 1, 0.9), ("v", 1, (0.0, 0.0, 0.46, 0.5), 1, 0.8)]
    g, r = to_rows(gt, res)
    got = evaluate(g, r, lm)
    # second result's best box is the first (taken) one: a false positive, AP = 0.5
    assert got.per_class["a"] == pytest.approx(0.5)
    assert got.counts["true_positives"]["a"] == 1


def test_rules_by_hand():
    lm = LabelMap((1, 2, 3), ("a", "b", "c"))
    gt = [("v", 902, (0.1, 0.1, 0.5, 0.5), 1), ("v", 902, (0.1, 0.1, 0.5, 0.5), 2),
          ("v", 903, (0.2, 0.2, 0.6, 0.6), 1)]
    res = [("v", 902, (0.1, 0.1, 0.5, 0.5), 1, 0.9),     # TP a
           ("v", 902, (0.1, 0.1, 0.5, 0.5), 1, 0.8),     # duplicate: FP a
           ("v", 904, (0.1, 0.1, 0.5, 0.5), 1, 0.95),    # no gt keyframe: FP (2018)
           ("v", 903, (0.2, 0.2, 0.2, 0.6), 1, 0.99)]    # invalid box: discarded
    g, r = to_rows(gt, res)
    e = evaluate(g, r, lm)
    # class a: order 0.95 FP, 0.9 TP, 0.8 FP, 2 instances -> AP = 0.5 * 0.5
    assert e.per_class["a"] == pytest.approx(0.25)
    assert e.per_class["b"] == 0.0                       # instances, no results
    assert e.per_class["c"] is None                      # no instances: left out
    assert e.mAP == pytest.approx(0.125)
    assert e.counts["instances"] == {"a": 2, "b": 1, "c": 0}
    assert e.counts["results_dropped_invalid_box"] == 1
    e20 = evaluate(g, r, lm, protocol="ava-2020")        # 904 not in gt: ignored
    assert e20.per_class["a"] == pytest.approx(0.5)
    assert e20.counts["results_dropped_keyframe_not_in_gt"] == 1
    ex = evaluate(g, r, lm, exclusions={("v", 902)})     # 902 dropped from both
    assert ex.counts["instances"]["a"] == 1 and ex.per_class["b"] is None
    with pytest.raises(ValueError, match="ava-2020"):
        evaluate(g, r, lm, protocol="ava-2020", exclusions={("v", 902)})
    with pytest.raises(ValueError, match="protocol"):
        evaluate(g, r, lm, protocol="ava-2017")


def test_cap_is_across_classes():
    lm = LabelMap((1, 2), ("a", "b"))
    gt = [("v", 1, (0.0, 0.0, 0.5, 0.5), 2)]
    res = [("v", 1, (0.5, 0.5, 0.9, 0.9), 1, 0.5 + i / 1000) for i in range(50)]
    res.append(("v", 1, (0.0, 0.0, 0.5, 0.5), 2, 0.4))   # 51st by score: cut in 2019
    g, r = to_rows(gt, res)
    assert evaluate(g, r, lm, protocol="ava-2018").per_class["b"] == 1.0
    assert evaluate(g, r, lm, protocol="ava-2019").per_class["b"] == 0.0


def test_box_iou_and_ap():
    a = np.array([[0, 0, 1, 1], [0, 0, 0.5, 1]], float)
    b = np.array([[0, 0, 1, 1], [2, 2, 3, 3]], float)
    np.testing.assert_allclose(box_iou(a, b), [[1, 0], [0.5, 0]])
    assert box_iou(a, b).shape == (2, 2)
    assert average_precision([True, False, True], 2) == pytest.approx(1 * 0.5 + 2 / 3 * 0.5)
    assert average_precision([], 3) == 0.0


# ------------------------------------------------------------------------------------------
# real files
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_official_synthetic_number(protocol):
    r = evaluate_csv(os.path.join(SYNTH, "gt.csv"), os.path.join(SYNTH, "pred.csv"),
                     os.path.join(SYNTH, "action_list.txt"), protocol=protocol)
    assert round(r.mAP, 8) == 0.09385522          # the official evaluator's number


def test_real_sample_against_reference():
    lm = load_label_map("ava-v2.1")
    # the ground truth of the keyframes the sample covers (the whole video's is 107 KB)
    gt = read_annotations(os.path.join(AVA, "official", "gt_1j20qq1JyX4_122kf.csv"), lm)
    res = read_results(os.path.join(AVA, "sample_results_1j20qq1JyX4.csv"), lm)
    g = [(v, t, tuple(b), a) for v, t, b, a in zip(gt.video_ids.tolist(), gt.timestamps.tolist(),
                                                   gt.boxes64.tolist(), gt.action_ids.tolist())]
    r = [(v, t, tuple(b), a, s) for v, t, b, a, s in zip(
        res.video_ids.tolist(), res.timestamps.tolist(), res.boxes64.tolist(),
        res.action_ids.tolist(), res.scores64.tolist())]
    for protocol in PROTOCOLS:          # 3-decimal scores: file-order ties = the reference
        got = evaluate(gt, res, lm, protocol=protocol, ties="stable")
        ref_aps, ref_map = reference_evaluate(g, r, lm.ids, protocol)
        assert_same(got, ref_aps, ref_map, lm)
    assert got.counts["total_instances"] == 296
    assert round(got.mAP, 7) == 0.0640901         # file-order ties (docs/eval.md)


def test_eval_result_dict_and_table():
    lm = LabelMap((1, 2), ("a", "b"))
    g, r = to_rows([("v", 1, (0.0, 0.0, 0.5, 0.5), 1)], [("v", 1, (0.0, 0.0, 0.5, 0.5), 1, 0.9)])
    e = evaluate(g, r, lm)
    d = e.to_dict()
    assert d["mAP"] == 1.0 and d["per_class"] == {"a": 1.0, "b": None}
    assert d["protocol"] == "ava-2018" and d["counts"]["instances"]["a"] == 1
    table = e.format_table()
    assert "mAP" in table and "n/a" in table and "100.00" in table and "AP %" in table
    assert d["PascalBoxes_Precision/mAP@0.5IOU"] == 1.0
    assert d["PascalBoxes_PerformanceByCategory/AP@0.5IOU/b"] is None
    assert d["classes"][0] == {"id": 1, "name": "a", "AP": 1.0, "instances": 1, "results": 1,
                               "true_positives": 1}


def test_equal_iou_takes_first_box_in_file_order():
    lm = LabelMap((1,), ("a",))
    gt = [("v", 1, (0.0, 0.0, 0.5, 0.5), 1), ("v", 1, (0.25, 0.0, 0.75, 0.5), 1)]
    res = [("v", 1, (0.125, 0.0, 0.625, 0.5), 1, 0.9),    # IoU 0.6 with both: takes the 1st
           ("v", 1, (0.0, 0.0, 0.5, 0.5), 1, 0.8)]        # best is the 1st, taken: FP
    g, r = to_rows(gt, res)
    assert evaluate(g, r, lm).per_class["a"] == 0.5
    ref_aps, _ = reference_evaluate(gt, res, lm.ids, "ava-2018")
    assert ref_aps[1] == 0.5
    g2, r2 = to_rows(gt[::-1], res)                        # other file order: both TP
    assert evaluate(g2, r2, lm).per_class["a"] == 1.0


def test_duplicate_class_names_stay_apart():
    d = os.path.join(AVA, "mmaction2_ava_dataset_sample")   # ids 79 and 80 both "action3"
    r = evaluate_csv(os.path.join(d, "ava_sample.csv"), os.path.join(d, "ava_sample.csv"),
                     os.path.join(d, "action_list.txt"))
    assert list(r.per_class) == ["action1", "action2", "action3 (id 79)", "action3 (id 80)"]
    assert r.per_class["action3 (id 80)"] == 1.0 and r.per_class["action3 (id 79)"] == 1.0
    assert r.counts["gt_skipped_action_not_in_label_map"] == 1          # action 74


def test_class_columns_of_ids_far_apart_need_no_table_that_wide():
    """A custom label map with ids far apart (10^12) maps ids to columns like a small one,
    without a lookup table spanning the ids (it was a MemoryError)."""
    from hgrnn.metrics.select import class_columns

    ids = np.array([7, 10**12, 3, 10**12 + 5], np.int64)
    got = class_columns(np.array([3, 10**12 + 5, 4, 10**12, 7, -2], np.int64), ids)
    assert got.tolist() == [2, 3, -1, 1, 0, -1]
    small = np.array([7, 1, 3], np.int64)
    a = np.array([3, 4, 7, 1, 0, 99], np.int64)
    assert class_columns(a, small).tolist() == [2, -1, 0, 1, -1, -1]
