"""hgrnn.track: linking persons across keyframes, the identity measures, `hgrnn track`."""

import itertools
import os

import numpy as np
import pytest
from click.testing import CliRunner

from hgrnn.cli import main
from hgrnn.data.ava import (
    AvaRows,
    load_label_map,
    read_annotations,
    read_results,
    write_annotations,
    write_results,
)
from hgrnn.data.store import PersonSet, StoreWriter
from hgrnn.track import (
    TrackConfig,
    box_iou,
    csv_kind,
    group_boxes,
    identity_scores,
    keyframe_step,
    link_video,
    track_rows,
    write_tracked,
)


def _iou_slow(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
    return iw * ih / union if union > 0 else 0.0


def test_box_iou_matches_slow_reference():
    rng = np.random.default_rng(0)
    a = np.sort(rng.random((7, 4)).reshape(7, 2, 2), axis=1).transpose(0, 2, 1).reshape(7, 4)
    b = np.sort(rng.random((5, 4)).reshape(5, 2, 2), axis=1).transpose(0, 2, 1).reshape(5, 4)
    b[0] = [0.3, 0.3, 0.3, 0.5]                                  # no area
    want = np.array([[_iou_slow(x, y) for y in b] for x in a])
    np.testing.assert_allclose(box_iou(a, b), want, atol=1e-12)
    assert box_iou(a, a[:0]).shape == (7, 0)


def test_keyframe_step():
    assert keyframe_step([902, 903, 904, 910]) == 1
    assert keyframe_step([0, 3, 6, 9, 10]) == 3
    assert keyframe_step([5]) == 1


def _walkers(n_frames=6):
    """Two persons walking towards each other's side (no crossing), one per row order."""
    ts, boxes, truth = [], [], []
    for t in range(n_frames):
        for pid, x in ((0, 0.1 + 0.02 * t), (1, 0.6 - 0.02 * t)):
            ts.append(100 + t)
            boxes.append([x, 0.2, x + 0.25, 0.9])
            truth.append(pid)
    return np.array(ts), np.array(boxes), np.array(truth)


def test_link_video_follows_persons_and_is_deterministic():
    ts, boxes, truth = _walkers()
    ids = link_video(ts, boxes)
    assert ids.tolist() == truth.tolist()
    # rows in another order (time reversed in the file): the same linking per person
    perm = np.random.default_rng(1).permutation(len(ts))
    ids_perm = link_video(ts[perm], boxes[perm])
    assert identity_scores(ts[perm], truth[perm], ids_perm)["idf1"] == 1.0
    assert (link_video(ts[perm], boxes[perm]) == ids_perm).all()


def test_max_gap_counts_missing_keyframes():
    ts = np.array([0, 1, 4, 5])
    boxes = np.tile([0.1, 0.1, 0.5, 0.9], (4, 1))
    # seen at 1, next at 4: 2 keyframes missed
    assert link_video(ts, boxes, cfg=TrackConfig(max_gap=1)).tolist() == [0, 0, 1, 1]
    assert link_video(ts, boxes, cfg=TrackConfig(max_gap=2)).tolist() == [0, 0, 0, 0]
    # keyframes every 3 s: the gap is counted in keyframes, not seconds
    assert link_video(ts * 3, boxes, cfg=TrackConfig(max_gap=2)).tolist() == [0, 0, 0, 0]
    assert link_video(ts * 3, boxes, cfg=TrackConfig(max_gap=1)).tolist() == [0, 0, 1, 1]


def test_features_link_a_person_who_jumped():
    ts = np.array([0, 0, 1, 1])
    boxes = np.array([[0.0, 0.0, 0.2, 0.5], [0.5, 0.5, 0.7, 1.0],
                      [0.75, 0.0, 0.95, 0.5], [0.5, 0.5, 0.7, 1.0]])
    feats = np.array([[1.0, 0.0], [0.0, 1.0], [0.98, 0.05], [0.02, 1.0]])
    assert link_video(ts, boxes).tolist() == [0, 1, 2, 1]             # IoU alone: lost
    assert link_video(ts, boxes, features=feats).tolist() == [0, 1, 0, 1]
    # appearance does not override a good box match with another appearance
    other = feats.copy()
    other[3] = [1.0, 0.0]                  # person 1's box, person 0's look: 0.5 * IoU 1 wins
    assert link_video(ts, boxes, features=other).tolist()[3] == 1


def _rows(vids, ts, boxes, actions, scores=None):
    return AvaRows.from_arrays(vids, ts, boxes, actions, scores=scores)


def test_track_rows_one_id_per_box_unique_per_keyframe():
    ts, boxes, _ = _walkers()
    # every person twice (two actions), two videos, file out of time order
    vids = np.array(["b"] * len(ts) + ["a"] * len(ts))
    t2 = np.concatenate([ts, ts])
    b2 = np.concatenate([boxes, boxes])
    rows = _rows(np.repeat(vids, 2), np.repeat(t2, 2), np.repeat(b2, 2, axis=0),
                 np.tile([12, 79], len(t2)), np.full(2 * len(t2), 0.7))
    order = np.argsort(-rows.timestamps, kind="stable")
    shuffled = rows.take(order)
    ids, notes = track_rows(shuffled)
    assert any("not in time order" in n for n in notes)
    g = group_boxes(shuffled)
    per_person = {}
    for p, i in zip(g.person_of_row, ids):
        assert per_person.setdefault(p, i) == i                    # all rows of a box
    for v in ("a", "b"):
        for t in np.unique(ts):
            m = (shuffled.video_ids == v) & (shuffled.timestamps == t)
            assert len(np.unique(ids[m])) == 2                    # two persons, two ids
        mine = shuffled.video_ids == v
        assert sorted(np.unique(ids[mine]).tolist()) == [0, 1]    # ids per video
    ids_sorted, notes_sorted = track_rows(rows)
    assert notes_sorted == []
    assert (ids_sorted[order] == ids).all()                       # same linking


def test_one_keyframe_per_video_gives_ids_and_a_note():
    rows = _rows(["v", "v", "v", "w"], [5, 5, 5, 7],
                 [[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.9, 0.9], [0.1, 0.1, 0.3, 0.3],
                  [0.1, 0.1, 0.2, 0.2]], [1, 1, 2, -1])
    ids, notes = track_rows(rows)
    assert ids.tolist() == [0, 1, 0, 0]
    assert any("one keyframe" in n for n in notes)


def _idf1_bruteforce(true_ids, pred_ids):
    """Best one-to-one map of true to predicted identities by trying every map (small
    cases): IDTP / N."""
    t_u, p_u = sorted(set(true_ids)), sorted(set(pred_ids))
    pad = p_u + [None] * len(t_u)
    best = 0
    for perm in itertools.permutations(pad, len(t_u)):
        got = sum(sum(1 for t, p in zip(true_ids, pred_ids) if t == a and p == b)
                  for a, b in zip(t_u, perm) if b is not None)
        best = max(best, got)
    return best / len(true_ids)


def _fragmented_case():
    """Three true identities over 8 keyframes; the tracking splits one, swaps two."""
    frames, true, pred = [], [], []
    for t in range(8):
        for k in range(3):
            frames.append(t)
            true.append(k)
            p = k
            if k == 0 and t >= 5:
                p = 7                                       # fragmented
            if k in (1, 2) and 3 <= t < 5:
                p = 3 - k                                   # swapped for two frames
            pred.append(p)
    return np.array(frames), np.array(true), np.array(pred)


def test_identity_scores_against_bruteforce():
    frames, true, pred = _fragmented_case()
    s = identity_scores(frames, true, pred)
    assert s["idf1"] == pytest.approx(_idf1_bruteforce(true.tolist(), pred.tolist()))
    # switches: id 0 once (0 -> 7), ids 1 and 2 twice each (into and out of the swap)
    assert s["switches"] == 5
    assert identity_scores(frames, true, true)["idf1"] == 1.0


def test_identity_scores_against_motmetrics():
    mm = pytest.importorskip("motmetrics")
    frames, true, pred = _fragmented_case()
    acc = mm.MOTAccumulator(auto_id=False)
    for t in np.unique(frames):
        m = frames == t
        gt, hyp = true[m], pred[m]
        # each box is its own truth's only possible match (distance 0), as jittered ground
        # truth boxes are
        dist = np.full((len(gt), len(hyp)), np.nan)
        np.fill_diagonal(dist, 0.0)
        acc.update(gt.tolist(), hyp.tolist(), dist, frameid=int(t))
    summary = mm.metrics.create().compute(acc, metrics=["idf1", "num_switches"])
    s = identity_scores(frames, true, pred)
    assert s["idf1"] == pytest.approx(float(summary["idf1"].iloc[0]))
    assert s["switches"] == int(summary["num_switches"].iloc[0])


def test_tracked_results_read_back_with_a_9th_column(tmp_path):
    ts, boxes, truth = _walkers(3)
    rows = _rows(np.repeat(["v"], 2 * len(ts)), np.repeat(ts, 2), np.repeat(boxes, 2, axis=0),
                 np.tile([12, 79], len(ts)), np.linspace(0.1, 0.9, 2 * len(ts)))
    src = tmp_path / "res.csv"
    write_results(src, rows)
    back = read_results(src)
    assert back.person_ids is None
    ids, _ = track_rows(back)
    out = tmp_path / "sub" / "tracked.csv"
    write_tracked(out, back, ids, ground_truth=False)
    assert os.listdir(out.parent) == ["tracked.csv"]                # no temporary left
    lines = out.read_text().splitlines()
    assert [ln.rsplit(",", 1)[0] for ln in lines] == src.read_text().splitlines()
    tracked = read_results(out)
    assert tracked.person_ids.tolist() == ids.tolist() == np.repeat(truth, 2).tolist()
    np.testing.assert_array_equal(tracked.boxes64, back.boxes64)
    np.testing.assert_array_equal(tracked.scores64, back.scores64)
    assert csv_kind(out) == "results" and csv_kind(src) == "results"


def test_ground_truth_gets_its_person_id_column(tmp_path):
    ts, boxes, truth = _walkers(3)
    rows = AvaRows.from_arrays(np.repeat(["v"], len(ts)), ts, boxes, np.full(len(ts), 12),
                               person_ids=np.full(len(ts), 99))
    src = tmp_path / "gt.csv"
    write_annotations(src, rows)
    assert csv_kind(src) == "gt"
    result = CliRunner().invoke(main, ["track", str(src), "--out", str(tmp_path / "t.csv")])
    assert result.exit_code == 0, result.output
    back = read_annotations(tmp_path / "t.csv")
    assert back.person_ids.tolist() == truth.tolist()
    assert len(back.timestamps) == len(ts)


def test_cli_tracks_a_result_file_and_refuses_bad_input(tmp_path):
    ts, boxes, truth = _walkers(4)
    rows = _rows(np.repeat(["v"], len(ts)), ts, boxes, np.full(len(ts), -1), np.full(len(ts), 0.9))
    src = tmp_path / "boxes.csv"
    write_results(src, rows)
    out = tmp_path / "tracked.csv"
    result = CliRunner().invoke(main, ["track", str(src), "--out", str(out), "--max-gap", "0"])
    assert result.exit_code == 0, result.output
    assert "2 tracks" in result.output
    assert read_results(out).person_ids.tolist() == truth.tolist()
    bad = tmp_path / "bad.csv"
    bad.write_text("v,0902,0.5,0.1,0.2,0.3,-1,0.9\n")
    result = CliRunner().invoke(main, ["track", str(bad), "--out", str(out)])
    assert result.exit_code == 1
    assert f"{bad}:1:" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["track", str(src), "--out", str(src)])
    assert result.exit_code == 1 and "input file" in result.output


def test_cli_store_features_link_a_person_who_jumped(tmp_path):
    """Person A jumps between keyframes 1 and 2 (its new box does not overlap its last);
    the det RoI features of a store, written by the real writer, link it."""
    boxes = np.array([[0.0, 0.1, 0.2, 0.9], [0.7, 0.1, 0.9, 0.9],     # keyframe 1: A, B
                      [0.35, 0.1, 0.55, 0.9], [0.7, 0.1, 0.9, 0.9]],  # keyframe 2: A, B
                     np.float32)
    look = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0.9, 0.1, 0, 0], [0.1, 0.9, 0, 0]])
    store = tmp_path / "s.h5"
    with StoreWriter(store, feature_dim=4, label_map=load_label_map("ava-v2.1")) as w:
        w.add_video("v", [1, 2], np.zeros((2, 4)),
                    det=PersonSet(np.array([0, 2, 4]), boxes, look.astype(np.float16),
                                  np.ones(4, np.float32)))
    src = tmp_path / "boxes.csv"
    write_results(src, _rows(["v"] * 4, [1, 1, 2, 2], boxes, [-1] * 4, [0.9] * 4))
    out = tmp_path / "t.csv"
    result = CliRunner().invoke(main, ["track", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert read_results(out).person_ids.tolist() == [0, 1, 2, 1]          # IoU: A lost
    result = CliRunner().invoke(main, ["track", str(src), "--out", str(out), "--store",
                                       str(store), "--min-iou", "0.4"])
    assert result.exit_code == 0, result.output
    assert "features of 4 of 4 persons" in result.output
    assert read_results(out).person_ids.tolist() == [0, 1, 0, 1]
