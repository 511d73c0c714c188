"""AVA formats: label maps, readers, errors, writers, group_persons (the CSV parser under
the readers: test_csvparse.py)."""

import math
import os
import re

import numpy as np
import pytest

from hgrnn.data.ava import (AvaFormatError, AvaRows, LabelMap, group_persons, keyframe_index,
                            load_label_map, read_annotations, read_exclusions, read_results,
                            write_annotations, write_results)

AVA = os.path.join(os.path.dirname(__file__), "data", "ava")   # vendored (data/README.md)
# the larger real files: the shared AVA folder beside the repository
SHARED_AVA = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "shared", "ava")
needs_shared_ava = pytest.mark.skipif(not os.path.isdir(SHARED_AVA),
                                      reason="../shared/ava (real AVA files) not present")


def write(tmp_path, text, name="f.csv"):
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return p


# ------------------------------------------------------------------------------------------
# label maps
# ------------------------------------------------------------------------------------------

def test_packaged_label_maps():
    v21 = load_label_map("ava-v2.1")
    assert len(v21) == 60 and v21.ids[:3] == (1, 3, 4)
    assert v21.names[0] == "bend/bow (at the waist)"
    assert len(load_label_map("ava-v2.2")) == 80
    assert len(load_label_map("ava-v2.2-2019")) == 60
    assert v21.column()[3] == 1
    assert LabelMap.from_json(v21.to_json()) == v21
    assert load_label_map() == v21


def test_label_map_files(tmp_path):
    p = write(tmp_path, 'item {\n  name: "walk"\n  id: 14\n}\nitem { name: "stand" id: 12 }\n',
              "m.pbtxt")
    lm = load_label_map(str(p))
    assert lm.ids == (14, 12) and lm.names == ("walk", "stand")
    p = write(tmp_path, 'label {\n  name: "a b"\n  label_id: 3\n  label_type: X\n}\n', "l.pbtxt")
    assert load_label_map(str(p)) == LabelMap((3,), ("a b",))
    p = write(tmp_path, "1: bend/bow (at the waist)\n\n3 crouch/kneel\r\n", "m.txt")
    assert load_label_map(str(p)) == LabelMap((1, 3), ("bend/bow (at the waist)", "crouch/kneel"))
    p = write(tmp_path, "1: a\nxx\n", "bad.txt")
    with pytest.raises(AvaFormatError, match=r"bad.txt:2: "):
        load_label_map(str(p))
    p = write(tmp_path, "1: a\n1: b\n", "dup.txt")
    with pytest.raises(AvaFormatError, match="twice"):
        load_label_map(str(p))


def test_label_map_ids_beyond_64_bits_and_repeated_names_are_refused(tmp_path):
    """An id that no int64 column holds, or two classes of one name: FILE:LINE errors."""
    p = write(tmp_path, "1 a\n9223372036854775807 b\n", "ok.txt")
    assert load_label_map(str(p)).ids == (1, 2 ** 63 - 1)
    for text, name in (("1 a\n9223372036854775808 b\n", "big.txt"),
                       ('item { name: "a" id: 1 }\nitem { name: "b" id: -9223372036854775809 }\n',
                        "big.pbtxt")):
        with pytest.raises(AvaFormatError, match=rf"{name}:2: action id -?9223372036854775\d+ "
                                                 "is out of range"):
            load_label_map(str(write(tmp_path, text, name)))
    p = write(tmp_path, "1 walk\n\n2 walk\n", "names.txt")    # kept apart by id: a warning
    with pytest.warns(UserWarning, match=r"names.txt:3: class name 'walk' appears twice "
                                         r"\(ids 1 and 2\)"):
        assert load_label_map(str(p)).ids == (1, 2)
    # ids far apart are looked up without a table spanning them
    lm = load_label_map(str(write(tmp_path, "1 a\n1000000000000 b\n", "wide.txt")))
    p = write(tmp_path, "v,902,0.1,0.2,0.3,0.4,1000000000000,0.5\nv,902,0.1,0.2,0.3,0.4,"
                        "2000000000000,0.5\n")
    with pytest.raises(AvaFormatError, match=r"f.csv:2: unknown action id 2000000000000"):
        read_results(p, lm)
    with pytest.raises(FileNotFoundError, match="packaged"):
        load_label_map("ava-v9")


def test_label_map_plain_text_equals_pbtxt():
    txt = load_label_map(os.path.join(AVA, "ava_label_map_60_mmaction2.txt"))
    assert txt == load_label_map("ava-v2.1")
    assert load_label_map(os.path.join(AVA, "ava_action_list_v2.2.pbtxt")) == \
        load_label_map("ava-v2.2")


# ------------------------------------------------------------------------------------------
# readers: values
# ------------------------------------------------------------------------------------------

def test_seven_column_ground_truth_and_empty_keyframes(tmp_path):
    p = write(tmp_path, "a,0903\nv,902,0.1,0.2,0.3,0.4,12\nv,0902,0.1,0.2,0.3,0.4,14\n")
    r = read_annotations(p)
    assert r.person_ids.tolist() == [-1, -1]
    assert r.empty_video_ids.tolist() == ["a"] and r.empty_timestamps.tolist() == [903]
    # one width per file: a row of 7 columns in a file of 8 is missing one (here x1),
    # which read as a 7-column row would give a box (0.2, 0.3, 0.4, 12)
    p = write(tmp_path, "v,0902,0.1,0.2,0.3,0.4,14,3\nv,902,0.2,0.3,0.4,12,3\n")
    with pytest.raises(AvaFormatError, match=r"f.csv:2: expected 8 \(as the file's first row\) "
                                             r"columns, got 7: a column seems missing"):
        read_annotations(p)
    p = write(tmp_path, "v,902,0.1,0.2,0.3,0.4,12,\n")         # empty person_id: unknown
    assert read_annotations(p).person_ids.tolist() == [-1]


def test_person_box_files(tmp_path):
    p = write(tmp_path, "v,902,0.1,0.2,0.3,0.4,,0.9\nv,902,0.2,0.2,0.3,0.4,-1,0.8\n")
    r = read_results(p)
    assert r.action_ids.tolist() == [-1, -1]
    assert r.scores64.tolist() == [0.9, 0.8]


def test_label_map_and_exclusions_skip_and_count(tmp_path):
    lm = LabelMap((12, 14), ("stand", "walk"))
    p = write(tmp_path, "v,902,0.1,0.2,0.3,0.4,12,0\nv,902,0.1,0.2,0.3,0.4,80,0\n"
                        "v,903,0.1,0.2,0.3,0.4,14,0\nw,904,0.1,0.2,0.3,0.4,79,1\n")
    ex = write(tmp_path, "v,0903\n", "ex.csv")
    assert read_exclusions(ex) == {("v", 903)}
    r = read_annotations(p, lm, exclusions=str(ex))
    assert r.action_ids.tolist() == [12]
    assert r.skipped == {"action not in label map": 2, "excluded timestamp": 1}
    # w,904 had only unevaluated classes: still a known (annotated) keyframe
    assert r.empty_video_ids.tolist() == ["w"] and r.empty_timestamps.tolist() == [904]


def test_video_codes_are_the_video_ids_and_give_the_same_keys(tmp_path):
    """The readers' integer video codes stay in step with video_ids through label-map and
    exclusion drops and take(); keyframe_index gives the same keys from them as from the
    strings, also in another rows' vocabulary."""
    rng = np.random.default_rng(4)
    vids = np.array(["b", "a", "c", "a", "b", "d"])[rng.integers(0, 6, 300)]
    vids.sort(kind="stable")
    vids[::7] = "zz"                                  # not grouped: runs come back
    ts = rng.integers(900, 905, 300)
    rows = AvaRows.from_arrays(vids, ts, np.tile([0.1, 0.2, 0.3, 0.4], (300, 1)),
                               rng.choice([12, 14, 80], 300), scores=rng.random(300))
    write_results(tmp_path / "r.csv", rows)
    write(tmp_path, "a,0902\nzz,0903\n", "ex.csv")
    lm = LabelMap((12, 14), ("stand", "walk"))
    r = read_results(tmp_path / "r.csv", lm, exclusions=str(tmp_path / "ex.csv"))
    assert r.skipped and r.video_codes is not None
    for part in (r, r.take(np.arange(len(r))[::3]), r.take(r.action_ids == 12)):
        codes, vocab = part.video_codes
        np.testing.assert_array_equal(vocab[codes], part.video_ids)
        keys, voc = keyframe_index(part.video_ids, part.timestamps)
        keys_c, voc_c = keyframe_index(part.video_ids, part.timestamps, codes=part.video_codes)
        np.testing.assert_array_equal(keys_c, keys)
        np.testing.assert_array_equal(voc_c, voc)
        other = np.array(["a", "c", "zz"])                # a vocabulary missing some ids
        np.testing.assert_array_equal(
            keyframe_index(part.video_ids, part.timestamps, other, part.video_codes)[0],
            keyframe_index(part.video_ids, part.timestamps, other)[0])


# ------------------------------------------------------------------------------------------
# readers: errors name file and line, and the FIRST bad line
# ------------------------------------------------------------------------------------------

GOOD = "v,902,0.1,0.2,0.3,0.4,12,0.5\n"


@pytest.mark.parametrize("bad, message", [
    ("v,902,0.1,0.2,0.3,0.4,12\n", "expected 8 .* columns, got 7"),
    ("v,902,0.1,0.2,0.3,0.4,12,0.5,9,9\n", "got 10"),
    ("v,902,0.1,abc,0.3,0.4,12,0.5\n", "y1 must be a number, got 'abc'"),
    ("v,9o2,0.1,0.2,0.3,0.4,12,0.5\n", "timestamp must be an integer, got '9o2'"),
    ("v,902.5,0.1,0.2,0.3,0.4,12,0.5\n", "timestamp must be an integer"),
    ("v,902,0.1,0.2,0.3,0.4,1.5,0.5\n", "action_id must be an integer"),
    ("v,902,0.3,0.2,0.1,0.4,12,0.5\n", "x2 < x1"),
    ("v,902,0.1,0.5,0.3,0.4,12,0.5\n", "y2 < y1"),
    ("v,902,0.1,0.2,0.3,1.2,12,0.5\n", "outside \\[0, 1\\]"),
    ("v,902,-0.01,0.2,0.3,0.4,12,0.5\n", "outside \\[0, 1\\]"),
    ("v,902,0.1,0.2,0.3,nan,12,0.5\n", "outside \\[0, 1\\]"),
    ("v,902,0.1,0.2,0.3,0.4,12,nan\n", "score is not a finite number"),
    ("v,902,0.1,0.2,0.3,0.4,12,\n", "score must be a number, got ''"),
    (",902,0.1,0.2,0.3,0.4,12,0.5\n", "empty video_id"),
    ("v,902,0.1,0.2,0.3,0.4,0,0.5\n", "not an AVA action id"),
])
def test_errors_name_file_and_first_bad_line(tmp_path, bad, message):
    later_bad = "v,902,0.1,0.2,0.3,0.4\n"           # a different error, further down
    p = write(tmp_path, GOOD + "\n" + GOOD + bad + GOOD + later_bad)
    with pytest.raises(AvaFormatError, match=rf"^{re.escape(str(p))}:4: .*{message}"):
        read_results(p)


def test_tolerance_and_unknown_action(tmp_path):
    p = write(tmp_path, "v,902,-0.0005,0.2,0.3,1.0009,12,0.5\n")
    r = read_results(p)
    assert r.boxes64[0].tolist() == [-0.0005, 0.2, 0.3, 1.0009]
    lm = load_label_map("ava-v2.1")
    p = write(tmp_path, GOOD + "v,902,0.1,0.2,0.3,0.4,99,0.5\n")
    with pytest.raises(AvaFormatError, match=r":2: unknown action id 99"):
        read_results(p, lm)
    assert len(read_results(p)) == 2                # without a label map: fine
    p = write(tmp_path, "v,902,0.1,0.2,0.3,0.4,12\n")
    with pytest.raises(AvaFormatError, match=":1: expected 8 .* columns, got 7"):
        read_results(p)


def test_annotation_error_lists_accepted_widths(tmp_path):
    p = write(tmp_path, "v,902,0.1,0.2\n")
    with pytest.raises(AvaFormatError, match=r":1: expected .*8.*7.*2.*got 4"):
        read_annotations(p)


# ------------------------------------------------------------------------------------------
# writers
# ------------------------------------------------------------------------------------------

def test_write_read_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(1)
    n = 1000
    xs, ys = np.sort(rng.random((n, 2)), axis=1), np.sort(rng.random((n, 2)), axis=1)
    b = np.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], axis=1)      # (n, 4) x1 y1 x2 y2
    rows = AvaRows.from_arrays(rng.choice(["a", "bb", "-x_Y"], n), rng.integers(0, 2000, n), b,
                               rng.integers(1, 81, n), scores=rng.random(n))
    write_results(tmp_path / "r.csv", rows)
    back = read_results(tmp_path / "r.csv")
    assert np.array_equal(back.video_ids, rows.video_ids)
    assert np.array_equal(back.timestamps, rows.timestamps)
    assert np.array_equal(back.boxes, rows.boxes)            # float32 values preserved
    assert np.array_equal(back.scores, rows.scores)
    assert np.array_equal(back.action_ids, rows.action_ids)
    text = (tmp_path / "r.csv").read_text().splitlines()[0].split(",")
    assert len(text[1]) >= 4                                   # zero-padded timestamp
    again = read_results(tmp_path / "r.csv")                   # written from its video codes
    write_results(tmp_path / "r2.csv", again)
    assert again.__dict__["video_ids"] is None
    assert (tmp_path / "r2.csv").read_bytes() == (tmp_path / "r.csv").read_bytes()
    gt = AvaRows.from_arrays(rows.video_ids, rows.timestamps, b, rows.action_ids,
                             person_ids=np.arange(n))
    write_annotations(tmp_path / "g.csv", gt)
    g = read_annotations(tmp_path / "g.csv")
    assert np.array_equal(g.person_ids, np.arange(n)) and np.array_equal(g.boxes, gt.boxes)


# ------------------------------------------------------------------------------------------
# group_persons
# ------------------------------------------------------------------------------------------

def test_group_persons():
    lm = LabelMap((12, 14, 79), ("stand", "walk", "talk"))
    rows = AvaRows.from_arrays(
        ["b", "a", "a", "a", "a", "a"], [902, 903, 902, 902, 902, 902],
        [[0, 0, 1, 1], [0, 0, .5, .5], [.1, .1, .5, .5], [0, 0, .5, .5], [.1, .1, .5, .5],
         [.1, .1, .5, .5]],
        [12, 14, 79, 12, 12, 80], person_ids=[5, 2, 7, -1, 7, 7])
    p = group_persons(rows, lm)
    assert len(p) == 4
    assert p.video_ids.tolist() == ["a", "a", "a", "b"]
    assert p.timestamps.tolist() == [902, 902, 903, 902]
    np.testing.assert_array_equal(
        p.boxes, np.float32([[.1, .1, .5, .5], [0, 0, .5, .5], [0, 0, .5, .5], [0, 0, 1, 1]]))
    assert p.labels.tolist() == [[1, 0, 1], [1, 0, 0], [0, 1, 0], [1, 0, 0]]
    assert p.labels.dtype == np.uint8
    assert p.person_ids.tolist() == [7, -1, 2, 5]
    assert p.scores.tolist() == [1, 1, 1, 1]


@needs_shared_ava
def test_real_files_read():
    lm = load_label_map("ava-v2.1")
    gt = read_annotations(os.path.join(SHARED_AVA, "ava_val_v2.1_first8videos.csv"), lm)
    assert len(gt) + gt.skipped["action not in label map"] == 27163
    pose = read_annotations(os.path.join(SHARED_AVA, "ava_val_v2.1_pose_classes_only.csv"))
    assert len(pose) == 93400 and (pose.person_ids == -1).all()
    assert len(np.unique(pose.video_ids)) == 64
    ex = read_exclusions(os.path.join(AVA, "ava_val_excluded_timestamps_v2.1.csv"))
    assert len(ex) == 37 and ("5BDj0ow5hnA", 1038) in ex
    p = group_persons(gt, lm)
    assert p.labels.sum() == len(gt)


def test_exclusions_file_errors_and_blank_lines(tmp_path):
    p = write(tmp_path, "\nv,0902\r\nw,903\n\n", "ex.csv")
    assert read_exclusions(p) == {("v", 902), ("w", 903)}
    p = write(tmp_path, "v,0902\nv,0903,1\n", "bad.csv")
    with pytest.raises(AvaFormatError, match=r"bad.csv:2: expected 2 .*got 3"):
        read_exclusions(p)


def test_outside_label_map_rule_and_kept_rows(tmp_path):
    lm = load_label_map("ava-v2.1")
    p = write(tmp_path, GOOD + "v,902,0.1,0.2,0.3,0.4,2,0.5\n")         # 2: AVA, not v2.1
    assert read_results(p, lm).skipped == {"action not in label map": 1}
    kept = read_results(p, lm, keep_outside_map=True)
    assert len(kept) == 2 and kept.skipped == {"action not in label map (kept)": 1}
    p = write(tmp_path, GOOD + "v,902,0.1,0.2,0.3,0.4,99,0.5\nv,9,0.1,0.2,0.3,0.4,120,0.5\n")
    for keep in (False, True):
        with pytest.raises(AvaFormatError, match=r":2: unknown action id 99: .* a custom "
                                                 r"dataset needs --label-map .* 2 such "
                                                 r"id\(s\): 99, 120$"):
            read_results(p, lm, keep_outside_map=keep)


def _first_broken_value_rule(row, kind, label_map):
    """Obviously-correct reference: the value rules of hgrnn.data.csvrules, in order."""
    ts, box, action = row[1], row[2:6], row[6]
    if not all(-1e-3 <= v <= 1 + 1e-3 for v in box):
        return "box-range"
    if box[2] < box[0] or box[3] < box[1]:
        return "box-order"
    if action < -1 or action == 0:
        return "action-id"
    if not 0 <= ts <= 2 ** 32 - 1:
        return "timestamp-range"
    if kind == "results" and not math.isfinite(row[7]):
        return "score-finite"
    if kind == "results" and abs(row[7]) > float(np.finfo(np.float32).max):
        return "score-float32"
    if label_map is not None and action > 80 and action not in label_map.ids:
        return "unknown-id"
    return None


def test_row_verdicts_name_the_first_broken_value_rule():
    """The vectorised value rules (row_verdicts, used by every reader and check-data) give
    each row its first broken rule: random rows with random defects at the edges of every
    rule, with and without a label map, against a row-by-row reference."""
    from hgrnn.data.ava import VALUE_RULES, row_verdicts
    rng = np.random.default_rng(7)
    lm = load_label_map("ava-v2.1")
    edges = {1: [-1, 0, 4294967295, 4294967296],
             2: [-0.0011, -0.001, 0.0, 0.05, 0.35, 1.001, 1.0011, float("nan"), float("inf")],
             6: [-2, -1, 0, 1, 2, 80, 81, 99],
             7: [float("nan"), float("inf"), -float("inf"), 1e39, -1e39, 3.4e38, 0.0]}
    outcomes = set()
    for trial in range(600):
        rows = [["v", 902, 0.1, 0.2, 0.3, 0.4, 12, 0.5] for _ in range(4)]
        for _ in range(int(rng.integers(0, 3))):
            c = int(rng.integers(1, 8))
            rows[int(rng.integers(4))][c] = edges[min(c, 2) if c < 6 else c][
                int(rng.integers(len(edges[min(c, 2) if c < 6 else c])))]
        for kind in ("gt", "results"):
            label_map = lm if trial % 2 else None
            t = {name: np.array([r[c] for r in rows]) for c, name in enumerate(
                ["video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id",
                 "score" if kind == "results" else "person_id"])}
            want = [_first_broken_value_rule(r, kind, label_map) for r in rows]
            got = [VALUE_RULES[v - 1] if v else None
                   for v in row_verdicts(t, kind, label_map).tolist()]
            assert got == want, (rows, kind, trial)
            outcomes.update(want)
    assert outcomes == set(VALUE_RULES) | {None}


def test_eval_csv_names_a_bad_label_map_in_one_line(tmp_path):
    """eval-csv with a label map holding an id beyond 64 bits (an OverflowError before):
    one line naming the file and line, exit 1."""
    from click.testing import CliRunner

    from hgrnn.cli import main
    gt = write(tmp_path, "v,902,0.1,0.2,0.3,0.4,12,0\n", "gt.csv")
    res = write(tmp_path, GOOD, "res.csv")
    lm = write(tmp_path, "12 stand\n18446744073709551616 x\n", "lm.txt")
    r = CliRunner().invoke(main, ["eval-csv", str(gt), str(res), "--label-map", str(lm)])
    assert r.exit_code == 1 and r.output.startswith("Error: ")
    assert "lm.txt:2: action id 18446744073709551616 is out of range" in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
