"""`hgrnn convert cvat-video` / `convert via` on small hand-written exports that follow each
tool's published format (CVAT's XML annotation format 1.1, "interpolation" part; VIA 3's
project JSON of _via_metadata / _via_attribute), rows checked against hand-computed ones."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from hgrnn.cli import main
from hgrnn.data.ava import load_label_map, read_annotations
from hgrnn.data.convert import ConvertError, cvat_video, rows_of, via_video

LABELS = "1 walk\n2 stand\n3 carry\n"

# 200 x 100 pixels, 50 frames at 10 fps. Track 0 ("person" + attributes): keyframes at
# frames 0 and 20 (interpolated between), outside from frame 30, back at 40 to the end.
# Track 1 (its label is the action): two keyframes, interpolated. Track 2: a polygon.
CVAT = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task>
      <id>5</id>
      <name>interpolation</name>
      <size>50</size>
      <mode>interpolation</mode>
      <overlap>5</overlap>
      <flipped>False</flipped>
      <labels>
        <label><name>person</name><attributes>
          <attribute><name>action</name><mutable>True</mutable><input_type>select</input_type>
            <default_value>walk</default_value><values>walk
stand</values></attribute>
          <attribute><name>carry</name><mutable>True</mutable><input_type>checkbox</input_type>
            <default_value>false</default_value><values>false</values></attribute>
        </attributes></label>
        <label><name>stand</name><attributes></attributes></label>
      </labels>
      <original_size><width>200</width><height>100</height></original_size>
      <source>room.mp4</source>
    </task>
  </meta>
  <track id="0" label="person" source="manual">
    <box frame="0" outside="0" occluded="0" keyframe="1" xtl="20.00" ytl="10.00" xbr="60.00" ybr="90.00" z_order="0">
      <attribute name="action">walk</attribute>
      <attribute name="carry">false</attribute>
    </box>
    <box frame="20" outside="0" occluded="1" keyframe="1" xtl="60.00" ytl="10.00" xbr="100.00" ybr="90.00" z_order="0">
      <attribute name="action">walk</attribute>
      <attribute name="carry">true</attribute>
    </box>
    <box frame="30" outside="1" occluded="0" keyframe="1" xtl="60.00" ytl="10.00" xbr="100.00" ybr="90.00" z_order="0">
      <attribute name="action">walk</attribute>
      <attribute name="carry">true</attribute>
    </box>
    <box frame="40" outside="0" occluded="0" keyframe="1" xtl="100.00" ytl="20.00" xbr="140.00" ybr="100.00" z_order="0">
      <attribute name="action">stand</attribute>
      <attribute name="carry">false</attribute>
    </box>
  </track>
  <track id="1" label="stand" source="manual">
    <box frame="0" outside="0" occluded="0" keyframe="1" xtl="0.00" ytl="0.00" xbr="20.00" ybr="50.00" z_order="0">
    </box>
    <box frame="49" outside="0" occluded="0" keyframe="1" xtl="98.00" ytl="0.00" xbr="118.00" ybr="50.00" z_order="0">
    </box>
  </track>
  <track id="2" label="person" source="manual">
    <polygon frame="0" points="1.00,2.00;3.00,4.00;5.00,1.00" outside="0" occluded="0" keyframe="1">
    </polygon>
  </track>
</annotations>
"""

CVAT_EXPECTED = [  # video, ts, box, action, person
    ("room", 0, (0.1, 0.1, 0.3, 0.9), 1, 0),
    ("room", 0, (0.0, 0.0, 0.1, 0.5), 2, 1),
    ("room", 1, (0.2, 0.1, 0.4, 0.9), 1, 0),              # halfway between frames 0 and 20
    ("room", 1, (0.1, 0.0, 0.2, 0.5), 2, 1),              # 10/49 of the way to frame 49
    ("room", 2, (0.3, 0.1, 0.5, 0.9), 1, 0),
    ("room", 2, (0.3, 0.1, 0.5, 0.9), 3, 0),              # carry = true
    ("room", 2, (0.2, 0.0, 0.3, 0.5), 2, 1),
    ("room", 3, (0.3, 0.0, 0.4, 0.5), 2, 1),              # track 0 is outside at frame 30
    ("room", 4, (0.5, 0.2, 0.7, 1.0), 2, 0),
    ("room", 4, (0.4, 0.0, 0.5, 0.5), 2, 1),
]


def as_tuples(rows):
    return sorted((str(v), int(t), tuple(round(float(c), 4) for c in b), int(a), int(p))
                  for v, t, b, a, p in zip(rows.video_ids, rows.timestamps, rows.boxes,
                                           rows.action_ids, rows.person_ids))


def expected(items):
    return sorted((v, t, tuple(round(c, 4) for c in b), a, p) for v, t, b, a, p in items)


@pytest.fixture
def files(tmp_path):
    (tmp_path / "lm.txt").write_text(LABELS)
    (tmp_path / "task.xml").write_text(CVAT)
    return tmp_path


def test_cvat_tracks_follow_cvats_interpolation_and_outside_rules(files):
    lm = load_label_map(str(files / "lm.txt"))
    conv = cvat_video(files / "task.xml", 10, label_map=lm)
    assert as_tuples(rows_of(conv)) == expected(CVAT_EXPECTED)
    assert conv.stats["tracks"] == 3 and conv.stats["other_shapes"] == 1
    assert conv.stats["ignored"] == {"person": 4}


def test_cvat_cli_writes_a_csv_the_reader_takes(files):
    out = files / "gt.csv"
    result = CliRunner().invoke(main, ["convert", "cvat-video", str(files / "task.xml"),
                                       "--fps", "10", "--out", str(out),
                                       "--label-map", str(files / "lm.txt")])
    assert result.exit_code == 0, result.output
    assert "10 rows" in result.output and "'person' (4)" in result.output
    rows = read_annotations(out, load_label_map(str(files / "lm.txt")), progress=False)
    assert as_tuples(rows) == expected(CVAT_EXPECTED)


def test_cvat_without_label_map_makes_one_from_the_attributes(files):
    out = files / "gt.csv"
    result = CliRunner().invoke(main, ["convert", "cvat-video", str(files / "task.xml"),
                                       "--fps", "10", "--out", str(out), "--video-id", "v9"])
    assert result.exit_code == 0, result.output
    made = load_label_map(str(files / "gt_label_map.txt"))
    # ids 101.. (not 1..K): read without this label map they cannot pass for AVA classes
    assert made.names == ("carry", "stand", "walk") and made.ids == (101, 102, 103)
    rows = read_annotations(out, made, progress=False)
    # names come from attributes; track 1's label-only boxes carry no attribute action
    assert set(rows.video_ids) == {"v9"} and set(rows.person_ids.tolist()) == {0}
    assert "5 boxes without a label-map action left out" in result.output


def test_cvat_errors_name_the_fix(files):
    images = CVAT.replace("<track id=\"0\"", "<image id=\"0\" name=\"a.jpg\"></image><track id=\"9\"")
    images = images.split("<track id=\"9\"")[0] + "</annotations>\n"
    (files / "images.xml").write_text(images)
    with pytest.raises(ConvertError, match="CVAT for video 1.1"):
        cvat_video(files / "images.xml", 10)
    (files / "nosize.xml").write_text(CVAT.replace("<original_size><width>200</width>"
                                                   "<height>100</height></original_size>", ""))
    with pytest.raises(ConvertError, match="--size"):
        cvat_video(files / "nosize.xml", 10)
    conv = cvat_video(files / "nosize.xml", 10, size=(200, 100),
                      label_map=load_label_map(str(files / "lm.txt")))
    assert as_tuples(rows_of(conv)) == expected(CVAT_EXPECTED)


VIA = {
    "project": {"pid": "__VIA_PROJECT_ID__", "rev": "__VIA_PROJECT_REV_ID__",
                "rev_timestamp": "__VIA_PROJECT_REV_TIMESTAMP__", "pname": "t",
                "creator": "VGG Image Annotator", "created": 1, "vid_list": ["1"]},
    "config": {"file": {"loc_prefix": {"1": "", "2": "", "3": "", "4": ""}}, "ui": {}},
    "attribute": {
        "1": {"aname": "person_id", "anchor_id": "FILE1_Z1_XY1", "type": 1, "desc": "",
              "options": {}, "default_option_id": ""},
        "2": {"aname": "activity", "anchor_id": "FILE1_Z1_XY1", "type": 2, "desc": "",
              "options": {"0": "walk", "1": "carry", "2": "stand"}, "default_option_id": ""},
        "3": {"aname": "note", "anchor_id": "FILE1_Z1_XY1", "type": 1, "desc": "",
              "options": {}, "default_option_id": ""}},
    "file": {"1": {"fid": "1", "fname": "room.mp4", "type": 4, "loc": 1, "src": ""}},
    "view": {"1": {"fid_list": ["1"]}},
    "metadata": {
        "1_a": {"vid": "1", "flg": 0, "z": [1.02], "xy": [2, 20, 10, 40, 80],
                "av": {"1": "7", "2": "0,1"}},
        "1_b": {"vid": "1", "flg": 0, "z": [1.1], "xy": [2, 24, 10, 40, 80],     # same person,
                "av": {"1": "7", "2": "0"}},                                  # farther from 1 s
        "1_c": {"vid": "1", "flg": 0, "z": [2.4], "xy": [2, 20, 10, 40, 80],     # off keyframe
                "av": {"1": "7", "2": "0"}},
        "1_d": {"vid": "1", "flg": 0, "z": [3.0], "xy": [2, 0, 0, 20, 50], "av": {"2": "2"}},
        "1_e": {"vid": "1", "flg": 0, "z": [1.0, 3.0], "xy": [], "av": {"2": "0"}},
        "1_f": {"vid": "1", "flg": 0, "z": [1.0], "xy": [1, 5, 5], "av": {}},
        "1_g": {"vid": "1", "flg": 0, "z": [2.0], "xy": [2, 100, 0, 20, 50],
                "av": {"3": "dance"}},
    },
}


def test_via_regions_snap_to_whole_seconds(files):
    (files / "via.json").write_text(json.dumps(VIA))
    conv = via_video(files / "via.json", label_map=load_label_map(str(files / "lm.txt")),
                     size=(200, 100))
    assert as_tuples(rows_of(conv)) == expected([
        ("room", 1, (0.1, 0.1, 0.3, 0.9), 1, 7), ("room", 1, (0.1, 0.1, 0.3, 0.9), 3, 7),
        ("room", 3, (0.0, 0.0, 0.1, 0.5), 2, -1)])
    s = conv.stats
    assert (s["regions"], s["off_keyframe"], s["merged"], s["segments_ignored"],
            s["other_shapes"], s["persons_without_action"]) == (5, 1, 1, 1, 1, 1)
    assert s["ignored"] == {"dance": 1}


def test_via_needs_a_frame_size_and_reads_it_from_the_video(files):
    from hgrnn.pipeline.render import render_video

    (files / "via.json").write_text(json.dumps(VIA))
    with pytest.raises(ConvertError, match="--size"):
        via_video(files / "via.json")
    render_video(files / "videos" / "room.mp4", seconds=1, fps=10, size=(200, 100))
    result = CliRunner().invoke(main, ["convert", "via", str(files / "via.json"), "--videos",
                                       str(files / "videos"), "--out", str(files / "v.csv"),
                                       "--label-map", str(files / "lm.txt")])
    assert result.exit_code == 0, result.output
    rows = read_annotations(files / "v.csv", load_label_map(str(files / "lm.txt")),
                            progress=False)
    assert len(rows) == 3
    bad = CliRunner().invoke(main, ["convert", "via", str(files / "lm.txt"), "--size", "1", "1",
                                    "--out", str(files / "x.csv")])
    assert bad.exit_code == 1 and "not a readable JSON file" in bad.output


# ---------------------------------------------------------------- hostile exports (issue 29)

def _convert_cli(*args):
    return CliRunner().invoke(main, ["convert", *map(str, args)])


def _one_line(result, *words):
    """A clean refusal: exit 1, one 'Error: ' line holding `words`, no traceback."""
    assert result.exit_code == 1, (result.exit_code, result.output, result.exc_info)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception,
                                                                     SystemExit), result.exc_info
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def test_cvat_huge_stop_frame_is_refused_at_once(files):
    # the audit: a 300-byte task with stop_frame 1e11 wrote 1.2 GB in 15 s and went on
    xml = CVAT.replace("<size>50</size>", "<size>50</size><stop_frame>100000000000"
                       "</stop_frame>")
    (files / "huge.xml").write_text(xml)
    out = files / "gt.csv"
    result = _convert_cli("cvat-video", files / "huge.xml", "--fps", 10, "--out", out)
    _one_line(result, "huge.xml", "<stop_frame> 100000000000", "24 h")
    assert not out.exists()


def test_cvat_frames_are_checked_against_the_video(files):
    from hgrnn.pipeline.render import render_video

    render_video(files / "videos" / "room.mp4", seconds=3, fps=10, size=(200, 100))
    args = ("cvat-video", files / "task.xml", "--out", files / "gt.csv", "--label-map",
            files / "lm.txt", "--videos", files / "videos")
    # the task has 50 frames, the video 30: a wrong video or a wrong --fps
    _one_line(_convert_cli(*args, "--fps", 10), "room", "last frame 49", "30 frames", "--fps")
    render_video(files / "videos" / "room.mp4", seconds=5, fps=10, size=(200, 100))
    result = _convert_cli(*args, "--fps", 10)
    assert result.exit_code == 0, result.output


# (name, change to the CVAT text) -> words of the one-line error
CVAT_HOSTILE = {
    "zero width": (("<width>200</width>", "<width>0</width>"), "frame size"),
    "word width": (("<width>200</width>", "<width>wide</width>"), "not a number"),
    "word size": (("<size>50</size>", "<size>many</size>"), "<size> 'many'"),
    "word track id": (('<track id="1"', '<track id="one"'), "track id 'one'"),
    "negative track id": (('<track id="1"', '<track id="-4"'), "track id '-4'"),
    "same track id": (('<track id="1"', '<track id="0"'), 'track id="0"', "second track"),
    "NaN coordinate": (('xtl="0.00"', 'xtl="nan"'), "xtl 'nan'"),
    "inverted box": (('xtl="0.00" ytl="0.00" xbr="20.00"', 'xtl="30.00" ytl="0.00" xbr="20.00"'),
                     "inverted box"),
    "negative frame": (('frame="49"', 'frame="-49"'), "frame '-49'"),
    "id with comma": (("<source>room.mp4</source>", "<source>ro,om.mp4</source>"), "'ro,om'"),
    "id with space": (("<source>room.mp4</source>", "<source>my room.mp4</source>"),
                      "'my room'"),
    "label with a newline": (('<attribute name="action">walk</attribute>',
                              '<attribute name="action">walk&#10;101 evil</attribute>'),
                             "action name 'walk\\n101 evil'"),
}


@pytest.mark.parametrize("case", sorted(CVAT_HOSTILE))
def test_hostile_cvat_is_refused_naming_the_element(files, case):
    (old, new), *words = CVAT_HOSTILE[case]
    assert old in CVAT
    (files / "bad.xml").write_text(CVAT.replace(old, new, 1))
    out = files / "gt.csv"
    # without --label-map for the label case (the made map would get a class line "101 evil")
    lm = [] if case == "label with a newline" else ["--label-map", files / "lm.txt"]
    _one_line(_convert_cli("cvat-video", files / "bad.xml", "--fps", 10, "--out", out, *lm),
              "bad.xml", *words)
    assert not out.exists()


@pytest.mark.parametrize("args, words", [
    (["--fps", "nan"], ["--fps nan"]), (["--fps", "inf"], ["--fps inf"]),
    (["--fps", 10, "--size", 0, 0], ["--size", "frame size"]),
    (["--fps", 10, "--video-id", "a/b"], ["--video-id", "'a/b'"]),
    (["--fps", 10, "--video-id", "a,b"], ["--video-id", "','"]),
    (["--fps", 10, "--video-id", "a b"], ["--video-id", "' '"]),
    (["--fps", 10, "--video-id", ".."], ["--video-id", "'..'"]),
])
def test_bad_cvat_options_are_one_line(files, args, words):
    _one_line(_convert_cli("cvat-video", files / "task.xml", "--out", files / "gt.csv", *args),
              *words)


def _via_with(edit):
    data = json.loads(json.dumps(VIA))
    edit(data)
    return data


def _set(path, value):
    def edit(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


# name -> (the project JSON text, words of the one-line error)
VIA_HOSTILE = {
    "top-level list": ("[1, 2]", ["a JSON list"]),
    "metadata not an object": (_via_with(_set(["metadata", "1_a"], 7)), ["metadata '1_a'"]),
    "attribute not an object": (_via_with(_set(["attribute", "3"], [])), ["attribute '3'"]),
    "av not an object": (_via_with(_set(["metadata", "1_a", "av"], "x")), ["'av'"]),
    "file entry missing": (_via_with(lambda d: d["file"].pop("1")), ["file '1'", "fname"]),
    "fname not a string": (_via_with(_set(["file", "1", "fname"], 5)), ["fname"]),
    "fname with a comma": (_via_with(_set(["file", "1", "fname"], "ro,om.mp4")), ["'ro,om'"]),
    "fname dot dot": (_via_with(_set(["file", "1", "fname"], "...mp4")), ["'..'"]),
    "NaN time": (_via_with(_set(["metadata", "1_a", "z"], [float("nan")])), ["time z"]),
    "huge time": (json.dumps(_via_with(_set(["metadata", "1_a", "z"], [12345.5])))
                  .replace("12345.5", "1e400"), ["metadata '1_a'", "time z"]),
    "negative time": (_via_with(_set(["metadata", "1_a", "z"], [-3])), ["time z -3"]),
    "huge person id": (_via_with(_set(["metadata", "1_a", "av", "1"], "1" + "0" * 20)),
                       ["person id"]),
    "negative person id": (_via_with(_set(["metadata", "1_a", "av", "1"], "-5")),
                           ["person id '-5'"]),
    "word person id": (_via_with(_set(["metadata", "1_a", "av", "1"], "bob")),
                       ["person id 'bob'"]),
    "5000 digits": ('{"file": {}, "view": {}, "attribute": {}, "metadata": {"m": {"z": [' +
                    "9" * 5000 + "]}}}", ["not a readable JSON"]),
    "deep nesting": ("[" * 100000 + "]" * 100000, ["not a readable JSON"]),
    "not UTF-8": (b'{"file": {"\xff": 1}}', ["not UTF-8"]),
    "NaN box": (_via_with(_set(["metadata", "1_a", "xy"], [2, float("nan"), 1, 2, 2])),
                ["box value"]),
    "negative width": (_via_with(_set(["metadata", "1_a", "xy"], [2, 30, 10, -20, 80])),
                       ["negative width"]),
    "word in box": (_via_with(_set(["metadata", "1_a", "xy"], [2, "x", 10, 20, 80])),
                    ["box value 'x'"]),
    "xy not a list": (_via_with(_set(["metadata", "1_a", "xy"], {"a": 1})), ["'xy'"]),
}


@pytest.mark.parametrize("case", sorted(VIA_HOSTILE))
def test_hostile_via_is_refused_naming_the_element(files, case):
    content, words = VIA_HOSTILE[case]
    path = files / "bad.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    out = files / "gt.csv"
    _one_line(_convert_cli("via", path, "--size", 200, 100, "--out", out, "--label-map",
                           files / "lm.txt"), "bad.json", *words)
    assert not out.exists()


def test_made_label_map_ids_cannot_pass_for_ava_classes(files):
    # issue 28: classes numbered 1..K read as AVA's "bend/bow", "crouch/kneel"... when the
    # user forgot --label-map; ids from 101 on are refused instead
    from hgrnn.data.check import check_data

    out = files / "gt.csv"
    assert _convert_cli("cvat-video", files / "task.xml", "--fps", 10, "--out", out
                        ).exit_code == 0
    forgot = check_data(out)
    assert not forgot["ok"] and {f["code"] for f in forgot["findings"]
                                 if f["level"] == "error"} == {"unknown-id"}
    assert check_data(out, label_map=str(files / "gt_label_map.txt"))["ok"]


# ---------------------------------------------------------------- fuzz: one line or a valid CSV

HOSTILE_TEXT = ["", " ", "0", "-1", "1", "2.5", "-0", "nan", "inf", "-inf", "1e400", "abc",
                "100000000000", "863990", "9" * 30, "a/b", "a,b", "x y", "..", ".", "/abs",
                "walk", "stand\n101 evil", "true", "false", "\u202e", "1" * 5000]
HOSTILE_JSON = [None, True, 0, -3, 2.5, -1e9, 1e20, 10 ** 20, float("nan"), float("inf"), "",
                "0", "-5", "a,b.mp4", "../x.mp4", "x y.mp4", "walk\n101 evil", [], {}, [2],
                [2, 1, 1, -5, 2], [2, "a", 1, 1, 1], [-3], [1.0, 3.0], {"1": "0"}, [[[[]]]],
                "1" * 300]


def _fuzz_case(convert, out, label_map):
    """Run one conversion: a ConvertError of one line, or a CSV (and made label map) that
    check-data accepts; anything else fails the test. Returns "refused" / "written"."""
    from hgrnn.data.check import check_data
    from hgrnn.data.convert import default_label_map_path, write_conversion

    try:
        conv = convert()
        lm_out = default_label_map_path(out) if conv.label_map_made else None
        written = write_conversion(conv, out, lm_out)
    except ConvertError as err:
        assert "\n" not in str(err) and "\r" not in str(err), repr(str(err))
        return "refused"
    report = check_data(out, label_map=lm_out or label_map)
    assert report["ok"], [f for f in report["findings"] if f["level"] == "error"]
    assert written["rows"] <= 3 * 3 * (24 * 3600 + 1)      # tracks x classes x seconds
    return "written"


def _mutate_xml(rng, text):
    import xml.etree.ElementTree as ET

    root = ET.fromstring(text)
    for _ in range(int(rng.integers(1, 4))):
        nodes = list(root.iter())
        node = nodes[int(rng.integers(len(nodes)))]
        what = int(rng.integers(5))
        value = HOSTILE_TEXT[int(rng.integers(len(HOSTILE_TEXT)))]
        if what == 0 and node.attrib:
            key = sorted(node.attrib)[int(rng.integers(len(node.attrib)))]
            node.set(key, value)
        elif what == 1:
            node.text = value
        elif what == 2 and len(node):
            node.remove(node[int(rng.integers(len(node)))])
        elif what == 3 and node.tag == "track":
            root.append(ET.fromstring(ET.tostring(node)))
        else:
            for key in node.attrib:
                if rng.random() < 0.3:
                    node.set(key, value)
    out = ET.tostring(root, encoding="unicode")
    if rng.random() < 0.1:                                  # a torn file
        out = out[: int(rng.integers(len(out)))]
    return out


def test_fuzz_cvat_gives_one_line_or_a_valid_csv(files):
    rng = np.random.default_rng(29)
    lm = str(files / "lm.txt")
    seen = {"refused": 0, "written": 0}
    for case in range(80):
        (files / "f.xml").write_text(_mutate_xml(rng, CVAT))
        use_map = case % 2 == 0
        seen[_fuzz_case(lambda use_map=use_map: cvat_video(files / "f.xml", 10, label_map=(
            load_label_map(lm) if use_map else None)), files / f"out{case}.csv", lm)] += 1
    assert seen["refused"] and seen["written"], seen          # both kinds were reached


def _mutate_json(rng, node, depth=0):
    """A copy of `node` with one random value replaced by a hostile one."""
    if isinstance(node, dict) and node and rng.random() < 0.8:
        key = sorted(node)[int(rng.integers(len(node)))]
        copy = dict(node)
        if rng.random() < 0.1:
            del copy[key]
        else:
            copy[key] = _mutate_json(rng, node[key], depth + 1)
        return copy
    if isinstance(node, list) and node and rng.random() < 0.8:
        i = int(rng.integers(len(node)))
        return node[:i] + [_mutate_json(rng, node[i], depth + 1)] + node[i + 1:]
    return HOSTILE_JSON[int(rng.integers(len(HOSTILE_JSON)))]


def test_fuzz_via_gives_one_line_or_a_valid_csv(files):
    rng = np.random.default_rng(29)
    lm = str(files / "lm.txt")
    seen = {"refused": 0, "written": 0}
    for case in range(120):
        data = VIA
        for _ in range(int(rng.integers(1, 4))):
            data = _mutate_json(rng, data)
        text = json.dumps(data)
        if rng.random() < 0.1:
            text = text[: int(rng.integers(len(text)))]
        (files / "f.json").write_text(text)
        use_map = case % 2 == 0
        seen[_fuzz_case(lambda use_map=use_map: via_video(files / "f.json", size=(200, 100),
                                                          label_map=(
            load_label_map(lm) if use_map else None)), files / f"out{case}.csv", lm)] += 1
    assert seen["refused"] and seen["written"], seen
