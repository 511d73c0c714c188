"""Ties the official way: the evaluator (``ties="official"``) against a slow reference that
follows ActivityNet's data flow step by step (reader dict / heap, per keyframe and class
arrays, np.argsort, np.argmax, per-class concatenation), on tie-heavy random cases; and
against the official evaluator's own numbers (the shared case, and cases generated here
whose official numbers are stored in tests/data/official_ties.json)."""

import dataclasses
import heapq
import json
import math
import os
from collections import defaultdict

import numpy as np
import pytest

from hgrnn.data.ava import AvaRows, LabelMap, write_annotations, write_results
from hgrnn.metrics import PROTOCOLS, evaluate, evaluate_csv
from hgrnn.metrics.official_order import (first_appearance_rank, grouped_descending, heap_order)

AVA = os.path.join(os.path.dirname(__file__), "data", "ava")   # vendored (data/README.md)
OFFICIAL = os.path.join(AVA, "official")
DATA = os.path.join(os.path.dirname(__file__), "data", "official_ties.json")
REVISION = {"ava-2018": "2018", "ava-2019": "2019", "ava-2020": "2020"}


# ------------------------------------------------------------------------------------------
# the slow reference: the official data flow, one step at a time
# ------------------------------------------------------------------------------------------

def official_read(rows, classes, capacity, heap):
    """rows: (video, ts, (x1, y1, x2, y2), action, score) in file order. Returns
    {key: [(score, action, y1, x1, y2, x2), ...]} in the reader's dict and list order."""
    entries = {}
    for v, t, (x1, y1, x2, y2), a, s in rows:
        if a not in classes:
            continue
        item = (s, a, y1, x1, y2, x2)
        e = entries.setdefault((v, t), [])
        if not heap:                                       # 2018: a list in file order
            e.append(item)
        elif capacity < 1 or len(e) < capacity:
            heapq.heappush(e, item)
        elif s > e[0][0]:
            heapq.heapreplace(e, item)
    if heap:
        entries = {k: sorted(e, key=lambda tup: -tup[0]) for k, e in entries.items()}
    return entries


def official_iou(d, g):
    """d (N, 4), g (M, 4) as [y1, x1, y2, x2] -> (N, M), the official arithmetic."""
    ih = np.maximum(0.0, np.minimum(d[:, None, 2], g[None, :, 2])
                    - np.maximum(d[:, None, 0], g[None, :, 0]))
    iw = np.maximum(0.0, np.minimum(d[:, None, 3], g[None, :, 3])
                    - np.maximum(d[:, None, 1], g[None, :, 1]))
    inter = ih * iw
    ad = (d[:, 2] - d[:, 0]) * (d[:, 3] - d[:, 1])
    ag = (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1])
    return inter / (ad[:, None] + ag[None, :] - inter)


def official_ap(scores, tp, n_gt):
    order = np.argsort(scores)[::-1]
    t = tp[order].astype(int)
    ctp, cfp = np.cumsum(t), np.cumsum(1 - t)
    precision = ctp.astype(float) / (ctp + cfp)
    recall = ctp.astype(float) / n_gt
    recall = np.concatenate([[0], recall, [1]])
    precision = np.concatenate([[0], precision, [0]])
    for i in range(len(precision) - 2, -1, -1):
        precision[i] = np.maximum(precision[i], precision[i + 1])
    idx = np.where(recall[1:] != recall[:-1])[0] + 1
    return float(np.sum((recall[idx] - recall[idx - 1]) * precision[idx]))


def official_reference(gt, res, class_ids, protocol, exclusions=(), empty_keys=()):
    """gt: (video, ts, box, action); res: (video, ts, box, action, score); boxes x1, y1,
    x2, y2. Returns ({action_id: AP or None}, mAP)."""
    classes = set(class_ids)
    heap = protocol != "ava-2018"
    excluded = set(exclusions) if protocol != "ava-2020" else set()
    included = {(v, t) for v, t, *_ in gt} | set(empty_keys)
    g = official_read([r + (1.0,) for r in gt], classes, 0, heap)
    d = official_read(res, classes, 50 if heap else 0, heap)
    n_class = max(class_ids)
    gt_boxes, gt_labels = {}, {}
    n_gt = np.zeros(n_class, int)
    for key, items in g.items():
        if key in excluded:
            continue
        gt_boxes[key] = np.array([it[2:] for it in items], float)
        gt_labels[key] = np.array([it[1] - 1 for it in items], int)
        for c in gt_labels[key]:
            n_gt[c] += 1
    per_scores, per_tp = defaultdict(list), defaultdict(list)
    for key, items in d.items():
        if key in excluded or (protocol == "ava-2020" and key not in included):
            continue
        boxes = np.array([it[2:] for it in items], float)
        scores = np.array([it[0] for it in items], float)
        labels = np.array([it[1] - 1 for it in items], int)
        ok = (boxes[:, 0] < boxes[:, 2]) & (boxes[:, 1] < boxes[:, 3])
        boxes, scores, labels = boxes[ok], scores[ok], labels[ok]
        gb = gt_boxes.get(key, np.zeros((0, 4)))
        gl = gt_labels.get(key, np.zeros(0, int))
        for c in range(n_class):
            db, ds = boxes[labels == c], scores[labels == c]
            if protocol == "ava-2018":                      # NMS at IoU 1.0: a sort
                keep = ds > -10.0
                db, ds = db[keep], ds[keep]
                order = np.argsort(ds)[::-1][:10000]
                db, ds = db[order], ds[order]
            if len(ds) == 0:
                continue
            cg = gb[gl == c]
            tp = np.zeros(len(ds), bool)
            if len(cg):
                iou = official_iou(db, cg)
                best = np.argmax(iou, axis=1)
                taken = np.zeros(len(cg), bool)
                for i in range(len(ds)):
                    if iou[i, best[i]] >= 0.5 and not taken[best[i]]:
                        tp[i] = taken[best[i]] = True
            per_scores[c].append(ds)
            per_tp[c].append(tp)
    aps = np.full(n_class, np.nan)
    for c in range(n_class):
        if n_gt[c] == 0:
            continue
        if per_scores[c]:
            aps[c] = official_ap(np.concatenate(per_scores[c]), np.concatenate(per_tp[c]),
                                 n_gt[c])
        else:
            aps[c] = official_ap(np.zeros(0), np.zeros(0, bool), n_gt[c])
    out = {a: (None if math.isnan(aps[a - 1]) else float(aps[a - 1])) for a in class_ids}
    return out, (float(np.nanmean(aps)) if (n_gt > 0).any() else float("nan"))


# ------------------------------------------------------------------------------------------
# tie-heavy random cases
# ------------------------------------------------------------------------------------------

def tie_case(seed):
    """Scores from a handful of values, boxes on a 1/8 grid (equal IoUs), duplicated and
    shared ground-truth boxes, crowded keyframes whose 50-cap boundary falls in a tie,
    files not grouped by keyframe, a few scores at and below -10."""
    rng = np.random.default_rng(seed)
    class_ids = [1, 2, 4, 7]
    lm = LabelMap(tuple(class_ids), tuple(f"c{a}" for a in class_ids))
    levels = np.array([0.1, 0.25, 0.5, 0.75, 0.9])
    gt, res = [], []
    videos = [f"v{i}" for i in range(int(rng.integers(1, 3)))]

    def grid_box():
        x1, y1 = rng.integers(0, 5, 2) / 8
        return (float(x1), float(y1), float(x1 + rng.integers(1, 4) / 8),
                float(y1 + rng.integers(1, 4) / 8))

    for v in videos:
        for t in range(900, 900 + int(rng.integers(2, 6))):
            persons = [grid_box() for _ in range(int(rng.integers(1, 5)))]
            if rng.random() < 0.3:
                persons.append(persons[0])                      # a duplicated person
            for box in persons:
                for a in rng.choice(class_ids + [3], size=int(rng.integers(1, 3)),
                                    replace=False):
                    gt.append((v, t, box, int(a)))
            n_res = int(rng.integers(3, 25)) if rng.random() < 0.8 else int(rng.integers(45, 80))
            for _ in range(n_res):
                base = persons[int(rng.integers(len(persons)))]
                j = rng.integers(-1, 2, 4) / 8 if rng.random() < 0.5 else np.zeros(4)
                b = np.clip(np.array(base) + j, 0, 1)
                b[2], b[3] = max(b[2], b[0]), max(b[3], b[1])      # x2 == x1: invalid box
                res.append((v, t, tuple(float(c) for c in b), int(rng.choice(class_ids + [3])),
                            float(rng.choice(levels))))
    for i in range(len(res)):
        if rng.random() < 0.02:
            res[i] = res[i][:4] + (float(rng.choice([-10.0, -11.0, -9.5])),)
    if rng.random() < 0.5:                                   # not grouped by keyframe
        rng.shuffle(res)
    excl = [(gt[0][0], gt[0][1])] if rng.random() < 0.3 else []
    empty = [(videos[0], 990)] if rng.random() < 0.3 else []
    res.append((videos[0], 990, (0.0, 0.0, 0.5, 0.5), class_ids[0], 0.5))
    return lm, gt, res, empty, excl


def rows_of(gt, res, empty=()):
    g = AvaRows.from_arrays([x[0] for x in gt], [x[1] for x in gt], [x[2] for x in gt],
                            [x[3] for x in gt], person_ids=np.arange(len(gt)))
    g = dataclasses.replace(
        g, boxes64=np.array([x[2] for x in gt], np.float64).reshape(-1, 4),
        empty_video_ids=np.array([e[0] for e in empty], str) if empty else None,
        empty_timestamps=np.array([e[1] for e in empty], np.int64) if empty else None)
    r = AvaRows.from_arrays([x[0] for x in res], [x[1] for x in res], [x[2] for x in res],
                            [x[3] for x in res], scores=[x[4] for x in res])
    r = dataclasses.replace(r, boxes64=np.array([x[2] for x in res], np.float64).reshape(-1, 4),
                            scores64=np.array([x[4] for x in res], np.float64))
    return g, r


def same(got, want_aps, want_map, lm):
    for aid, name in zip(lm.ids, lm.names):
        w, h = want_aps[aid], got.per_class[name]
        assert (w is None) == (h is None), (name, h, w)
        assert w is None or abs(w - h) < 1e-9, (name, h, w)
    assert (math.isnan(want_map) and math.isnan(got.mAP)) or abs(got.mAP - want_map) < 1e-9


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tie_heavy_cases_match_the_official_flow(protocol):
    differs = 0
    for seed in range(25):
        lm, gt, res, empty, excl = tie_case(seed)
        g, r = rows_of(gt, res, empty)
        ex = None if protocol == "ava-2020" else set(excl)
        got = evaluate(g, r, lm, protocol=protocol, exclusions=ex)
        want_aps, want_map = official_reference(gt, res, lm.ids, protocol, excl, empty)
        same(got, want_aps, want_map, lm)
        stable = evaluate(g, r, lm, protocol=protocol, exclusions=ex, ties="stable")
        differs += any(stable.per_class[n] != got.per_class[n] for n in lm.names)
    assert differs >= 5               # the cases do reach orders where the two disagree


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_official_order_in_parts_is_the_same(protocol, monkeypatch):
    """The concatenation reorders its groups, and the matching takes the results, a part
    at a time (bounded memory): parts of a few results give the numbers of one part and of
    the official flow."""
    import hgrnn.metrics.match as mm
    import hgrnn.metrics.official_order as oo

    for seed in range(8):
        lm, gt, res, empty, excl = tie_case(seed)
        g, r = rows_of(gt, res, empty)
        ex = None if protocol == "ava-2020" else set(excl)
        whole = evaluate(g, r, lm, protocol=protocol, exclusions=ex)
        with monkeypatch.context() as m:
            m.setattr(oo, "_REORDER_ROWS", 3)
            m.setattr(mm, "_MATCH_ROWS", 3)
            parts = evaluate(g, r, lm, protocol=protocol, exclusions=ex)
        assert parts.to_json() == whole.to_json()
        same(parts, *official_reference(gt, res, lm.ids, protocol, excl, empty), lm)


def test_equal_iou_in_heap_order_2019():
    """2019/2020 read the ground truth through a heap: with two boxes at the same IoU the
    argmax takes the smaller tuple (y1 first) first, not the first line of the file."""
    lm = LabelMap((1,), ("a",))
    gt = [("v", 1, (0.0, 0.25, 0.5, 0.75), 1), ("v", 1, (0.0, 0.0, 0.5, 0.5), 1)]
    res = [("v", 1, (0.0, 0.125, 0.5, 0.625), 1, 0.9),   # IoU 0.6 with both
           ("v", 1, (0.0, 0.0, 0.5, 0.5), 1, 0.8)]       # IoU 1 with the 2nd gt line
    g, r = rows_of(gt, res)
    for protocol in PROTOCOLS:
        want, _ = official_reference(gt, res, lm.ids, protocol)
        assert evaluate(g, r, lm, protocol=protocol).per_class["a"] == want[1]
    assert evaluate(g, r, lm, protocol="ava-2018").per_class["a"] == 1.0   # file order
    assert evaluate(g, r, lm, protocol="ava-2019").per_class["a"] == 0.5   # heap order
    assert evaluate(g, r, lm, protocol="ava-2019", ties="stable").per_class["a"] == 1.0


def test_equal_iou_in_heap_order_in_a_later_part_of_the_matching(monkeypatch):
    """The heap-order argmax of a result matched in a later part (one result a part)."""
    import hgrnn.metrics.match as mm

    lm = LabelMap((1,), ("a",))
    gt = [("v", 1, (0.0, 0.25, 0.5, 0.75), 1), ("v", 1, (0.0, 0.0, 0.5, 0.5), 1)]
    res = [("v", 1, (0.0, 0.0, 0.5, 0.5), 1, 0.8),        # IoU 1 with the 2nd gt line
           ("v", 1, (0.0, 0.125, 0.5, 0.625), 1, 0.9)]   # IoU 0.6 with both: 2nd part
    g, r = rows_of(gt, res)
    monkeypatch.setattr(mm, "_MATCH_ROWS", 1)
    for protocol in PROTOCOLS:
        want, _ = official_reference(gt, res, lm.ids, protocol)
        assert evaluate(g, r, lm, protocol=protocol).per_class["a"] == want[1]
    assert evaluate(g, r, lm, protocol="ava-2019").per_class["a"] == 0.5   # heap order


def test_cap_boundary_tie_follows_the_heap():
    """51 results with one score: the heap keeps the first 50 pushed and never lets an
    equal score in; with a lower 51st the smallest tuple is replaced."""
    lm = LabelMap((1, 2), ("a", "b"))
    gt = [("v", 1, (0.0, 0.0, 0.5, 0.5), 2)]
    res = [("v", 1, (0.5, 0.5, 0.9, 0.9), 1, 0.5) for _ in range(50)]
    res.append(("v", 1, (0.0, 0.0, 0.5, 0.5), 2, 0.5))
    g, r = rows_of(gt, res)
    for protocol in ("ava-2019", "ava-2020"):
        want, _ = official_reference(gt, res, lm.ids, protocol)
        assert evaluate(g, r, lm, protocol=protocol).per_class["b"] == want[2] == 0.0
    res2 = [res[-1]] + res[:-1]                          # now the 'b' row is pushed first
    g, r = rows_of(gt, res2)
    want, _ = official_reference(gt, res2, lm.ids, "ava-2019")
    assert evaluate(g, r, lm, protocol="ava-2019").per_class["b"] == want[2]


def test_heap_order_and_helpers():
    rng = np.random.default_rng(1)
    s = rng.choice([0.1, 0.2, 0.3], 80)
    a = rng.choice([1, 2], 80)
    b = rng.integers(0, 4, (80, 4)) / 8
    heap = []
    for x in zip(s.tolist(), a.tolist(), b[:, 1].tolist(), b[:, 0].tolist(),
                 b[:, 3].tolist(), b[:, 2].tolist()):
        if len(heap) < 50:
            heapq.heappush(heap, x)
        elif x[0] > heap[0][0]:
            heapq.heapreplace(heap, x)
    want = sorted(heap, key=lambda t: -t[0])
    got = heap_order(s, a, b, 50)
    assert [(s[i], a[i], b[i, 1], b[i, 0], b[i, 3], b[i, 2]) for i in got] == want
    assert len(set(got.tolist())) == 50
    np.testing.assert_array_equal(first_appearance_rank(np.array([5, 5, 3, 5, 9, 3, 1])),
                                  [0, 0, 1, 0, 2, 1, 3])
    # groups of equal size sorted as rows of a 2-D array = one np.argsort call per group
    lengths = rng.integers(1, 40, 300)
    values = rng.choice([0.1, 0.2, 0.3, 0.4], int(lengths.sum()))
    got = grouped_descending(values, lengths)
    start = 0
    for n in lengths.tolist():
        np.testing.assert_array_equal(got[start:start + n],
                                      start + np.argsort(values[start:start + n])[::-1])
        start += n


# ------------------------------------------------------------------------------------------
# against the official evaluator's own output
# ------------------------------------------------------------------------------------------

def sort_fingerprint():
    """How this machine's numpy orders ties (the official numbers depend on it)."""
    probe = np.random.default_rng(7).choice([0.1, 0.2, 0.3], 300)
    return [np.argsort(probe[:n])[::-1].tolist() for n in (5, 17, 40, 300)]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_shared_case_equals_the_official_output(protocol):
    want = json.load(open(os.path.join(OFFICIAL, f"sample_results_official_"
                                                 f"{REVISION[protocol]}.json")))
    got = evaluate_csv(os.path.join(OFFICIAL, "gt_1j20qq1JyX4_122kf.csv"),
                       os.path.join(AVA, "sample_results_1j20qq1JyX4.csv"),
                       os.path.join(AVA, "ava_action_list_v2.1_for_activitynet_2018.pbtxt"),
                       None if protocol == "ava-2020" else
                       os.path.join(AVA, "ava_val_excluded_timestamps_v2.1.csv"),
                       protocol, progress=False)
    prefix = "PascalBoxes_PerformanceByCategory/AP@0.5IOU/"
    n = 0
    for key, w in want.items():
        if key.startswith(prefix):
            h = got.per_class[key[len(prefix):]]
            assert (w is None) == (h is None) and (w is None or abs(w - h) < 1e-9), key
            n += 1
    assert n == 60
    assert abs(got.mAP - want["PascalBoxes_Precision/mAP@0.5IOU"]) < 1e-12
    assert abs(got.per_class["stand"] - 0.39778651734963416) < 1e-12
    stable = evaluate_csv(os.path.join(OFFICIAL, "gt_1j20qq1JyX4_122kf.csv"),
                          os.path.join(AVA, "sample_results_1j20qq1JyX4.csv"),
                          os.path.join(AVA, "ava_action_list_v2.1_for_activitynet_2018.pbtxt"),
                          protocol=protocol, progress=False, ties="stable")
    assert abs(stable.per_class["stand"] - 0.397481) < 1e-6       # the file-order number


def write_case(tmp_path, seed, protocol):
    """The case's files; 2-column ground-truth rows only for ava-2020 (the older official
    readers refuse them)."""
    lm, gt, res, empty, excl = tie_case(seed)
    g, r = rows_of(gt, res, empty if protocol == "ava-2020" else ())
    write_annotations(tmp_path / "gt.csv", g)
    write_results(tmp_path / "res.csv", r)
    with open(tmp_path / "excl.csv", "w") as f:
        f.writelines(f"{v},{t:04d}\n" for v, t in excl)
    with open(tmp_path / "labels.pbtxt", "w") as f:
        f.writelines(f'item {{\n  name: "{n}"\n  id: {i}\n}}\n' for i, n in zip(lm.ids, lm.names))
    return lm, gt, res, empty, excl


def test_generated_cases_equal_the_official_output(tmp_path):
    """tests/data/official_ties.json: the official evaluator's output (three revisions) on
    tie_case(seed) as write_case writes it, recorded with the numpy sort fingerprint of
    the machine it ran on; where numpy orders ties differently, the comparison is skipped
    (the official number itself changes there)."""
    data = json.load(open(DATA))
    if data["sort_fingerprint"] != sort_fingerprint():
        pytest.skip("numpy orders ties differently on this machine than where the "
                    "official numbers were recorded")
    for case in data["cases"]:
        for protocol in PROTOCOLS:
            lm, gt, res, empty, excl = write_case(tmp_path, case["seed"], protocol)
            want = case[REVISION[protocol]]
            got = evaluate_csv(tmp_path / "gt.csv", tmp_path / "res.csv",
                               tmp_path / "labels.pbtxt",
                               None if protocol == "ava-2020" else tmp_path / "excl.csv",
                               protocol, progress=False)
            for name in lm.names:
                w = want[f"PascalBoxes_PerformanceByCategory/AP@0.5IOU/{name}"]
                h = got.per_class[name]
                assert (w is None) == (h is None) and (w is None or abs(w - h) < 1e-9), \
                    (case["seed"], protocol, name, h, w)


# ------------------------------------------------------------------------------------------
# person-box AP (evaluate_persons) = the official evaluator with a one-class label map
# ------------------------------------------------------------------------------------------

def person_rows(rows, scored):
    """Plain-Python dedupe: one row per (keyframe, box), first appearance, highest score."""
    out = {}
    for r in rows:
        key = (r[0], r[1], r[2])
        s = r[4] if scored else 1.0
        out[key] = max(s, out.get(key, s))
    return [(v, t, b, 1) + ((s,) if scored else ()) for (v, t, b), s in out.items()]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_persons_equal_one_class_official_flow(protocol):
    from hgrnn.metrics import evaluate_persons
    for seed in range(12):
        lm, gt, res, empty, excl = tie_case(seed)
        g, r = rows_of(gt, res, empty)
        ex = None if protocol == "ava-2020" else set(excl)
        got = evaluate_persons(g, r, exclusions=ex, protocol=protocol)
        assert list(got.per_class) == ["person"]
        want, want_map = official_reference(person_rows(gt, False), person_rows(res, True),
                                            [1], protocol, excl, empty)
        assert abs(got.per_class["person"] - want[1]) < 1e-9 and got.mAP == got.per_class["person"]


def test_persons_ignore_actions_and_read_person_box_files(tmp_path):
    lm = LabelMap((1,), ("a",))
    (tmp_path / "gt.csv").write_text("v,0902,0.1,0.1,0.5,0.5,12,0\nv,0902,0.1,0.1,0.5,0.5,80,0\n"
                                     "v,0902,0.5,0.5,0.9,0.9,,1\n")
    (tmp_path / "det.csv").write_text("v,0902,0.1,0.1,0.5,0.5,-1,0.3\n"
                                      "v,0902,0.1,0.1,0.5,0.5,-1,0.9\n"
                                      "v,0902,0.5,0.5,0.9,0.9,,0.2\n"
                                      "v,0902,0.0,0.0,0.05,0.05,,0.5\n")
    r = evaluate_csv(tmp_path / "gt.csv", tmp_path / "det.csv", lm, persons=True,
                     progress=False)
    # 2 gt boxes (the first counted once); results 0.9 TP, 0.5 FP, 0.2 TP (0.3 merged)
    assert r.counts["total_instances"] == 2 and r.counts["total_results"] == 3
    assert r.per_class["person"] == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_persons_equal_the_official_output(tmp_path):
    """Official numbers with a one-class label map (tests/data/official_ties.json
    "persons": deduplicated in plain Python, then run through the official code)."""
    data = json.load(open(DATA))
    if data["sort_fingerprint"] != sort_fingerprint():
        pytest.skip("numpy orders ties differently on this machine")
    for protocol in PROTOCOLS:
        got = evaluate_csv(os.path.join(OFFICIAL, "gt_1j20qq1JyX4_122kf.csv"),
                           os.path.join(AVA, "sample_results_1j20qq1JyX4.csv"),
                           exclusions=None if protocol == "ava-2020" else
                           os.path.join(AVA, "ava_val_excluded_timestamps_v2.1.csv"),
                           protocol=protocol, persons=True, progress=False)
        assert abs(got.mAP - data["persons"]["shared"][REVISION[protocol]]) < 1e-9
    for case in data["persons"]["cases"]:
        write_case(tmp_path, case["seed"], "ava-2018")
        for protocol in PROTOCOLS:
            got = evaluate_csv(tmp_path / "gt.csv", tmp_path / "res.csv",
                               exclusions=None if protocol == "ava-2020" else
                               tmp_path / "excl.csv", protocol=protocol, persons=True,
                               progress=False)
            assert abs(got.mAP - case[REVISION[protocol]]) < 1e-9, (case["seed"], protocol)


def test_2018_keeps_10000_results_per_keyframe_and_class():
    """The 2018 code's NMS (IoU 1.0) returns at most 10,000 boxes per keyframe and class."""
    lm = LabelMap((1,), ("a",))
    gt = [("v", 1, (0.0, 0.0, 0.5, 0.5), 1), ("v", 1, (0.5, 0.5, 1.0, 1.0), 1)]
    res = [("v", 1, (0.5, 0.5, 1.0, 1.0), 1, 0.1)]                      # the 10,001st: a TP
    res += [("v", 1, (0.0, 0.5, 0.25, 1.0), 1, 0.2 + (i % 7) / 10) for i in range(10000)]
    res.append(("v", 1, (0.0, 0.0, 0.5, 0.5), 1, 0.5))
    g, r = rows_of(gt, res)
    got = evaluate(g, r, lm, protocol="ava-2018")
    want, _ = official_reference(gt, res, lm.ids, "ava-2018")
    assert got.per_class["a"] == pytest.approx(want[1], abs=1e-12)
    assert got.counts["results_dropped_over_10000_per_keyframe_and_class"] == 2
    assert evaluate(g, r, lm, protocol="ava-2018", ties="stable").counts["true_positives"]["a"] == 2
