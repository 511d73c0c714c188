"""`hgrnn convert cvat-video` / `convert via` on small hand-written exports that follow each
tool's published format (CVAT's XML annotation format 1.1, "interpolation" part; VIA 3's
project JSON of _via_metadata / _via_attribute), rows checked against hand-computed ones."""

import json

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
    assert made.names == ("carry", "stand", "walk") and made.ids == (1, 2, 3)
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
