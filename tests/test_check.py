"""`hgrnn check-data`: every kind of problem reported at once, with FILE:LINE, the
--time-offset that fits, the clip span, and the exit status (1 errors, 0 warnings)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from hgrnn.cli import main
from hgrnn.data.check import check_data, format_report
from hgrnn.pipeline.render import render_video

LABELS = "7 jump\n101 stand\n102 walk\n"


def codes(report, level=None):
    return {f["code"] for f in report["findings"] if level in (None, f["level"])}


def finding(report, code, contains=""):
    found = [f for f in report["findings"] if f["code"] == code and contains in f["message"]]
    assert found, (code, contains, report["findings"])
    return found[0]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    render_video(root / "a.mp4", seconds=4, fps=10, size=(64, 48))
    render_video(root / "b.mp4", seconds=6, fps=25, size=(64, 48))
    render_video(root / "unused.mp4", seconds=2, fps=10, size=(64, 48))
    return root


def test_a_clean_dataset_passes(tmp_path, videos):
    (tmp_path / "lm.txt").write_text(LABELS)
    (tmp_path / "gt.csv").write_text("a,1,0.1,0.1,0.5,0.9,101,0\na,1,0.1,0.1,0.5,0.9,102,0\n"
                                     "a,2,0.2,0.1,0.6,0.9,101,0\nb,3,0.1,0.2,0.3,0.4,7,1\n"
                                     "b,4\n")
    (tmp_path / "det.csv").write_text("a,1,0.1,0.1,0.5,0.9,,0.9\na,2,0.2,0.1,0.6,0.9,-1,0.8\n"
                                      "b,3,0.1,0.2,0.3,0.4,,0.7\nb,4,0.1,0.2,0.3,0.4,,0.7\n")
    report = check_data(tmp_path / "gt.csv", detections=tmp_path / "det.csv",
                        label_map=str(tmp_path / "lm.txt"), videos=videos, clip_frames=16)
    assert report["ok"] and report["errors"] == 0
    assert codes(report) == {"video-unused", "clip-span-mixed"}     # 10 and 25 fps
    a = report["annotations"]
    assert (a["keyframes"], a["persons"], a["min"], a["max"]) == (4, 3, 0, 1)
    assert report["instances_per_class"] == {"7 jump": 1, "101 stand": 2, "102 walk": 1}
    assert report["videos"]["a"]["fps"] == 10 and report["videos"]["b"]["fps"] == 25
    assert report["videos"]["a"]["clip_seconds"] == 1.6
    assert "0 error(s)" in format_report(report)


def test_every_row_problem_is_reported_with_its_line(tmp_path):
    (tmp_path / "lm.txt").write_text(LABELS)
    lines = ["video_id,timestamp,x1,y1,x2,y2,action,person",      # 1 header
             "a,1,0.1,0.1,0.5,0.9,101,0",                          # 2 fine
             "a,1,0.1,0.1,0.5,0.9,101,0",                          # 3 duplicate
             "a,x,0.1,0.1,0.5,0.9,101,0",                          # 4 timestamp
             "a,2,0.1,0.1,0.5",                                    # 5 columns
             "a,2,12,30,80,90,101,1",                              # 6 pixels
             "a,2,0.5,0.1,0.4,0.9,101,2",                          # 7 swapped x
             "a,2,0.5,0.1,0.5,0.9,101,3",                          # 8 zero width
             "a,3,0.1,0.1,0.5,0.9,55,0",                           # 9 a typo (own map)
             "a,3,0.1,0.1,0.5,0.9,500,0",                          # 10 unknown id
             "a,1,0.2,0.1,0.6,0.9,101,0"]                          # 11 person 0, other box
    (tmp_path / "gt.csv").write_text("\n".join(lines) + "\n")
    report = check_data(tmp_path / "gt.csv", label_map=str(tmp_path / "lm.txt"))
    assert not report["ok"]
    gt = str(tmp_path / "gt.csv")
    assert finding(report, "header", "header")["examples"] == [f"{gt}:1"]
    assert finding(report, "not-integer", "timestamp")["examples"] == [f"{gt}:4"]
    assert finding(report, "column-missing", "a column seems missing")["examples"] == [f"{gt}:5"]
    assert "pixel coordinates" in finding(report, "box-range")["message"]
    assert finding(report, "box-range")["examples"] == [f"{gt}:6"]
    assert finding(report, "box-order")["examples"] == [f"{gt}:7"]
    assert finding(report, "box-empty")["examples"] == [f"{gt}:8"]
    assert finding(report, "duplicate", "repeats")["examples"] == [f"{gt}:3"]
    assert finding(report, "duplicate", "person_id")["examples"] == [f"{gt}:11"]
    typo = finding(report, "unknown-id", "55")     # 1..80 are no AVA ids with one's own map
    assert typo["level"] == "error" and "typo" in typo["message"]
    unknown = finding(report, "unknown-id", "500")
    assert unknown["level"] == "error" and unknown["examples"] == [f"{gt}:10"]
    assert finding(report, "class-empty")["examples"] == ["7 jump", "102 walk"]
    assert report["errors"] == 7 and report["warnings"] == 5


def test_keyframes_outside_the_videos_suggest_the_offset(tmp_path, videos):
    # AVA-style timestamps counted from 900 s: a is 4 s long, b 6 s
    (tmp_path / "gt.csv").write_text("a,901,0.1,0.1,0.5,0.9,12,0\na,903,0.1,0.1,0.5,0.9,12,0\n"
                                     "b,902,0.1,0.1,0.5,0.9,12,0\nb,905,0.1,0.1,0.5,0.9,12,0\n"
                                     "ghost,901,0.1,0.1,0.5,0.9,12,0\n")
    report = check_data(tmp_path / "gt.csv", videos=videos)
    assert finding(report, "keyframe-range", "a: 2 of 2")
    hint = finding(report, "keyframe-range", "hint")
    assert "--time-offset 900 fits every video" in hint["message"]
    assert finding(report, "video-missing")["examples"] == ["ghost"]
    assert report["videos"]["b"]["out_of_range"] == 2
    # with the offset every keyframe fits; 32 frames at 10 fps span 3.2 s: a warning
    fixed = check_data(tmp_path / "gt.csv", videos=videos, time_offset=900)
    assert "keyframe-range" not in codes(fixed)
    span = finding(fixed, "clip-span")
    assert span["examples"] == ["a"] and "--clip-frames 8" in span["message"]
    # no offset fits a keyframe span longer than the video
    (tmp_path / "long.csv").write_text("a,1,0.1,0.1,0.5,0.9,12,0\na,9,0.1,0.1,0.5,0.9,12,0\n")
    report = check_data(tmp_path / "long.csv", videos=videos)
    assert finding(report, "keyframe-range", "no single --time-offset")


def test_cli_exit_status_and_json(tmp_path, videos):
    (tmp_path / "ok.csv").write_text("a,1,0.1,0.1,0.5,0.9,12,0\n")
    (tmp_path / "bad.csv").write_text("a,1,0.1,0.1,0.5,0.9,1200,0\n")
    runner = CliRunner()
    ok = runner.invoke(main, ["check-data", "--annotations", str(tmp_path / "ok.csv"),
                              "--videos", str(videos), "--json"])
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.output)
    assert report["ok"] and report["warnings"] >= 1          # unused videos, empty classes
    bad = runner.invoke(main, ["check-data", "--annotations", str(tmp_path / "bad.csv")])
    assert bad.exit_code == 1
    assert "ERROR [unknown-id] unknown action id 1200" in bad.output and "--label-map" in bad.output


# ---- the vectorised reading path against the row-by-row parse ---------------------------

def _defect_rows(rng, n=400):
    """Ground-truth and person-box lines with every finding that a clean parse leaves:
    pixel and slightly-off boxes, swapped and empty boxes, repeated rows, persons with two
    boxes, ids outside the map and unknown ids, -0.0, scores outside [0, 1], keyframes
    without person boxes, empty keyframes (2 columns)."""
    gt, det = [], []
    boxes = ["0.1,0.1,0.5,0.9", "0.2,0.1,0.6,0.9", "-0.0,0.0,0.5,0.5", "0,0,0.5,0.5",
             "12,30,80,90", "0.5,0.1,0.4,0.9", "0.3,0.2,0.3,0.9", "0.1,0.5,0.2,0.4",
             "1.0005,0.1,1.0005,0.2", "-0.002,0.1,0.4,0.5"]
    for _ in range(n):
        v, t = f"v{rng.integers(0, 4)}", int(rng.integers(900, 912))
        box = boxes[min(int(rng.geometric(0.35)) - 1, len(boxes) - 1)]
        a = [101, 102, 7, 12, 55, 500, 1200][min(int(rng.geometric(0.5)) - 1, 6)]
        gt.append(f"{v},{t},{box},{a},{rng.integers(-1, 3)}")
        if rng.random() < 0.05:
            gt.append(f"{v},{int(rng.integers(905, 915))}")
        if rng.random() < 0.6:
            score = rng.choice(["0.5", "0.25", "1.5", "-0.1", "0", "1"])
            det.append(f"{v},{t},{box},{rng.choice(['', '-1', '101'])},{score}")
    return gt, det


def _write_cases(tmp_path):
    """(name, gt lines, det lines, fast) cases; fast: the vectorised path reads them."""
    rng = np.random.default_rng(7)
    cases = []
    for k in range(3):
        gt, det = _defect_rows(rng)
        cases.append((f"values{k}", gt, det, True))
    gt, det = _defect_rows(rng)
    cases.append(("blank-lines-crlf", [s + "\r" for s in gt[:50]] + ["", "\r"] + gt[50:]
                  + [""], det[:10] + [""] + det[10:], True))
    cases.append(("seven-columns", [s.rsplit(",", 1)[0] for s in gt if s.count(",") == 7],
                  det, True))
    parse = ["video_id,timestamp,x1,y1,x2,y2,action_id,person_id", "v0,x,0.1,0.1,0.5,0.9,7,0",
             "v0,1,0.1,0.1,0.5", "v0,1,nan,0.1,0.5,0.9,7,0", ",1,0.1,0.1,0.5,0.9,7,0",
             "v0,1,0.1,0.1,0.5,0.9,,0", "v0,1,0.1,0.1,0.5,0.9,-1,0", "v0,1,0.1,0.1,0.5,0.9,0,0",
             "v0,1,0.1,0.1,0.5,0.9,7,p", "v0,1,0.1,0.1,0.5,0.9,x,0", '"v0",1,0.1,0.1,0.5,0.9,7,0',
             "v0 ,1, 0.1,0.1,0.5,0.9,7,0", "v0,1,0.1,0.1,0.5,0.9,7,0,9", "v0,2\tx"]
    values = (3, 5, 6, 7)        # a value rule (or no rule) broken: read by pyarrow
    for k, line in enumerate(parse):
        gt, det = _defect_rows(rng, 60)
        cases.append((f"parse{k}", gt[:30] + [line] + gt[30:], det, k in values))
    cases.append(("bom", ["\ufeff" + gt[0]] + gt[1:], det, True))
    cases.append(("nbsp-id", gt + ["v0\xa0,903,0.1,0.1,0.5,0.9,7,0"], det, True))
    cases.append(("nan-score", gt, det + ["v1,903,0.1,0.1,0.5,0.9,,nan"], True))
    written = []
    for name, gt, det, fast in cases:
        d = tmp_path / name
        d.mkdir()
        (d / "gt.csv").write_text("\n".join(gt) + "\n", newline="")
        (d / "det.csv").write_text("\n".join(det) + "\n", newline="")
        written.append((d, fast))
    return written


def test_the_vectorised_path_reports_what_the_row_parse_does(tmp_path, monkeypatch):
    from hgrnn.data import check

    (tmp_path / "lm.txt").write_text(LABELS)
    (tmp_path / "excl.csv").write_text("v0,901\nv1,905\nv9,1\n")
    kwargs = dict(label_map=str(tmp_path / "lm.txt"), exclusions=tmp_path / "excl.csv")
    cases = _write_cases(tmp_path)
    parsed = []
    real_parse = check._parse_csv
    monkeypatch.setattr(check, "_parse_csv",
                        lambda path, *a: parsed.append(path) or real_parse(path, *a))
    fast = {d: check_data(d / "gt.csv", detections=d / "det.csv", **kwargs) for d, _ in cases}
    for d, vectorised in cases:            # the value-only files never reach the row parse
        assert any(p.parent == d for p in parsed) != vectorised, d
    monkeypatch.setattr(check, "_read_fast", lambda path, kind: None)
    for d, _ in cases:
        slow = check_data(d / "gt.csv", detections=d / "det.csv", **kwargs)
        assert json.dumps(fast[d]) == json.dumps(slow), d        # NaN score_min: NaN != NaN
        assert format_report(fast[d]) == format_report(slow)
    report = fast[tmp_path / "values0"]
    assert codes(report) >= {"box-range", "box-order", "box-empty", "duplicate",
                             "unknown-id", "score-range", "no-detections"}
    assert len(finding(report, "duplicate", "person_id")["examples"]) == 5
    assert report["annotations"]["excluded_keyframes"] == 2


def test_a_file_without_a_single_good_row_is_reported_not_a_crash(tmp_path):
    """No row parses (or keeps the rules): the report lists the rows, nothing crashes."""
    (tmp_path / "gt.csv").write_text("video_id,timestamp\nfoo\na,1,0.1,0.1,0.5,0.9,1200,0\n")
    (tmp_path / "det.csv").write_text("a,1,0.1,0.1,0.5,0.9,,nan\n")
    report = check_data(tmp_path / "gt.csv", detections=tmp_path / "det.csv")
    assert codes(report, "error") == {"header", "column-missing", "unknown-id",
                                      "score-finite"}
    assert report["annotations"]["rows"] == 3 and report["annotations"]["parsed"] == 0
    assert report["detections"]["boxes"] == 0
    assert "check-data: 4 error(s)" in format_report(report)


def test_a_label_map_beyond_64_bits_or_with_a_repeated_name_is_an_error(tmp_path):
    (tmp_path / "gt.csv").write_text("a,1,0.1,0.1,0.5,0.9,12,0\n")
    (tmp_path / "lm.txt").write_text("1 a\n9223372036854775808 b\n")
    report = check_data(tmp_path / "gt.csv", label_map=str(tmp_path / "lm.txt"))
    assert not report["ok"] and "lm.txt:2: action id 9223372036854775808 is out of range" \
        in finding(report, "parse", "label map")["message"]
    (tmp_path / "lm.txt").write_text("1 walk\n12 stand\n2 walk\n")
    report = check_data(tmp_path / "gt.csv", label_map=str(tmp_path / "lm.txt"))
    assert not report["ok"] and report["errors"] == 1
    assert "ids 1, 2" in finding(report, "label-map", "'walk'")["message"]


def test_the_packed_sort_groups_rows_as_the_full_sort(tmp_path, monkeypatch):
    """_Groups sorts one packed key (keyframe, box hash, action) per row: the same report
    as the sort on every key, also when every box shares one hash (then it falls back)."""
    from hgrnn.data import check

    (tmp_path / "lm.txt").write_text(LABELS)
    kwargs = dict(label_map=str(tmp_path / "lm.txt"))
    cases = _write_cases(tmp_path)[:5]
    packed = {d: json.dumps(check_data(d / "gt.csv", detections=d / "det.csv", **kwargs))
              for d, _ in cases}
    used = []
    real = check._packed_order
    monkeypatch.setattr(check, "_packed_order", lambda *a: used.append(real(*a)) or None)
    for d, _ in cases:
        assert json.dumps(check_data(d / "gt.csv", detections=d / "det.csv", **kwargs)) \
            == packed[d], d
    assert all(order is not None for order in used)
    monkeypatch.setattr(check, "_HASH", np.zeros(4, np.uint64))          # all collide
    for d, _ in cases:
        assert json.dumps(check_data(d / "gt.csv", detections=d / "det.csv", **kwargs)) \
            == packed[d], d
    assert any(order is None for order in used[-10:])


def test_clip_spans_that_differ_between_videos_are_a_warning(tmp_path, videos):
    """Issue 28: videos at 10 and 25 fps give 8-frame clips of 0.80 and 0.32 s."""
    (tmp_path / "gt.csv").write_text("a,1,0.1,0.1,0.5,0.9,12,0\nb,1,0.1,0.1,0.5,0.9,12,0\n")
    report = check_data(tmp_path / "gt.csv", videos=videos, clip_frames=8)
    mixed = finding(report, "clip-span-mixed")
    assert mixed["level"] == "warning"
    assert "0.32 s in b (25 fps) but 0.80 s in a (10 fps)" in mixed["message"]
    assert "--resample-fps 30" in mixed["message"] and "0.27 s" in mixed["message"]
    # one rate, or spans within a factor 1.5: no warning
    from hgrnn.data.keyframes import mixed_span_warning

    assert mixed_span_warning({"x": (25, 0.32), "y": (30000 / 1001, 0.267)}, 8, 1) is None
    (tmp_path / "a.csv").write_text("a,1,0.1,0.1,0.5,0.9,12,0\n")
    assert "clip-span-mixed" not in codes(check_data(tmp_path / "a.csv", videos=videos,
                                                     clip_frames=8))


def test_an_ava_id_outside_an_ava_map_is_skipped_but_a_typo_in_ones_own_map_an_error(tmp_path):
    # AVA 2 (bend/bow) is not among v2.1's 60 classes: skipped with a warning; with a label
    # map of one's own, 2 is no AVA class but a typo: an error, for check-data and readers
    from hgrnn.data.ava import AvaFormatError, load_label_map, read_annotations

    (tmp_path / "gt.csv").write_text("a,1,0.1,0.1,0.5,0.9,12,0\na,1,0.1,0.1,0.5,0.9,2,0\n")
    outside = finding(check_data(tmp_path / "gt.csv", label_map="ava-v2.1"), "outside-map")
    assert outside["level"] == "warning"
    (tmp_path / "own.txt").write_text("12 stand\n101 walk\n")
    report = check_data(tmp_path / "gt.csv", label_map=str(tmp_path / "own.txt"))
    assert not report["ok"] and "typo" in finding(report, "unknown-id", "2")["message"]
    with pytest.raises(AvaFormatError, match="unknown action id 2: not in the label map"):
        read_annotations(tmp_path / "gt.csv", load_label_map(str(tmp_path / "own.txt")),
                         progress=False)
