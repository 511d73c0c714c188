"""`hgrnn render-example`: a small, ready-to-use "own data" example dataset.

What a user with their own videos starts from (and what docs/own-data.md and its test run
on): rendered videos of moving, labelled "persons" plus every file the commands read, in
the formats they expect.

  OUT/videos/<id>.mp4   rendered videos (hgrnn.pipeline.render): on the usual gradient
                        background, each person is a tall coloured rectangle; a walking
                        person moves sideways at constant speed, a standing one stays put, a
                        person who carries something has a small disc at its side
  OUT/annotations.csv   ground truth, AVA format video_id,timestamp,x1,y1,x2,y2,action_id,
                        person_id: one row per person AND action at every whole second
                        1 .. seconds-1 (seconds from the video start: --time-offset 0)
  OUT/persons.csv       person boxes with scores, as a detector would give them:
                        video_id,timestamp,x1,y1,x2,y2,,score (empty action column); the true
                        boxes jittered by a few percent, scored REAL_SCORES (above the
                        default --det-threshold), plus false positives scored FALSE_SCORES
                        (below it), so the default threshold keeps exactly the persons
  OUT/label_map.txt     the three classes with custom ids ("101 stand", "102 walk",
                        "103 carry"): any positive ids work, they need not lie in AVA's 1..80
  OUT/README.txt        one line per file

Boxes are the persons' rectangles exactly (normalised x1, y1, x2, y2): a rendered rectangle
covers pixels [x, x + w), so its box is x / W .. (x + w) / W. Persons never leave the frame
(speeds are chosen so), so no box wraps around an edge. Everything is a pure function of
the seed.
"""

from __future__ import annotations

import json
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from hgrnn.pipeline.defaults import DEFAULT_DET_THRESHOLD
from hgrnn.pipeline.example_config import ExampleConfig
from hgrnn.pipeline.render import Shape, render_video

#: score ranges of persons.csv: the true persons above the default --det-threshold (with a
#: margin, so that a user's slightly higher threshold keeps them too) ...
REAL_SCORES = (DEFAULT_DET_THRESHOLD + 0.05, 0.99)
#: ... and the false positives well below it
FALSE_SCORES = (0.05, 0.4)

#: The example's classes: (id, name). Custom ids, outside AVA's 1..80 on purpose.
EXAMPLE_CLASSES = ((101, "stand"), (102, "walk"), (103, "carry"))
STAND, WALK, CARRY = (c[0] for c in EXAMPLE_CLASSES)

_COLORS = ((230, 40, 40), (40, 200, 60), (250, 220, 40), (200, 60, 220), (40, 220, 230))


def _persons(rng, width: int, height: int, seconds: float, count: int) -> list[dict]:
    """`count` persons side by side: box size, start position, velocity, actions."""
    w, h = 0.12 * width, 0.45 * height
    slots = np.linspace(0.05 * width, 0.95 * width - w, count)
    persons = []
    for k in range(count):
        walking = bool(rng.random() < 0.5)
        carrying = bool(rng.random() < 0.4)
        x = float(slots[k])
        y = float(rng.uniform(0.1, 0.45) * height)
        vx = 0.0
        if walking:
            # fast enough to see in a clip, slow enough to stay inside [0, W - w]
            right, left = width - w - x, -x
            if min(right, -left) >= 0.3 * width:     # room both ways: either
                room = right if rng.random() < 0.5 else left
            else:                                    # else the way with room
                room = right if right > -left else left
            vx = 0.9 * room / seconds
        actions = [WALK if walking else STAND] + ([CARRY] if carrying else [])
        persons.append({"x": x, "y": y, "w": w, "h": h, "vx": vx,
                        "color": _COLORS[k % len(_COLORS)], "actions": actions})
    return persons


def _shapes(persons, height: int) -> tuple[Shape, ...]:
    shapes = []
    for p in persons:
        shapes.append(Shape("rect", p["color"], p["x"], p["y"], p["w"], p["h"], vx=p["vx"]))
        if CARRY in p["actions"]:   # a small grey disc at the person's hand, moving along
            d = 0.12 * height
            shapes.append(Shape("disc", (90, 90, 90), p["x"] + p["w"] - d / 2,
                                p["y"] + 0.6 * p["h"], d, d, vx=p["vx"]))
    return tuple(shapes)


def _box(p, t: float, width: int, height: int) -> list[float]:
    x = p["x"] + p["vx"] * t
    return [x / width, p["y"] / height, (x + p["w"]) / width, (p["y"] + p["h"]) / height]


def render_example(out_dir, *, videos: int = ExampleConfig.videos,
                   seconds: int = ExampleConfig.seconds, fps: float = ExampleConfig.fps,
                   size=ExampleConfig.size, persons: int = ExampleConfig.persons,
                   seed: int = ExampleConfig.seed, overwrite: bool = False) -> dict:
    """Write the example dataset into `out_dir` (see the module docstring).

    videos, seconds, fps, size, persons, seed: as `ExampleConfig` (whose fields are the
    defaults). Refuses a folder that already holds the files unless `overwrite`.
    Returns {"out", "videos", "keyframes", "persons", "files": {name: description}}.
    """
    out = Path(out_dir)
    if videos < 1 or seconds < 2 or persons < 1:
        raise ValueError("render-example needs --videos >= 1, --seconds >= 2 and "
                         "--persons >= 1")
    width, height = int(size[0]), int(size[1])
    names = ("annotations.csv", "persons.csv", "label_map.txt", "README.txt", "exports")
    if not overwrite and any((out / n).exists() for n in names):
        raise FileExistsError(f"{out}: already holds an example dataset; pass --overwrite "
                              f"to replace it, or choose another folder")
    rng = np.random.default_rng(seed)
    gt_lines, det_lines = [], []
    n_keyframes = n_persons = 0
    for v in range(1, videos + 1):
        vid = f"clip{v}"
        people = _persons(rng, width, height, seconds, persons)
        render_video(out / "videos" / f"{vid}.mp4", seconds=seconds, fps=fps,
                     size=(width, height), shapes=_shapes(people, height), gop=int(fps))
        for ts in range(1, seconds):
            n_keyframes += 1
            for pid, p in enumerate(people):
                box = _box(p, ts, width, height)
                n_persons += 1
                for action in p["actions"]:
                    gt_lines.append(f"{vid},{ts},{_fmt(box)},{action},{pid}")
                jitter = rng.normal(0, 0.02, 4)
                det = np.clip(np.asarray(box) + jitter, 0, 1)
                det[2:] = np.maximum(det[2:], det[:2] + 0.01)
                det_lines.append(f"{vid},{ts},{_fmt(det)},,{rng.uniform(*REAL_SCORES):.3f}")
            if rng.random() < 0.5:            # a false positive the threshold should drop
                x, y = rng.uniform(0, 0.7), rng.uniform(0, 0.5)
                det_lines.append(f"{vid},{ts},{_fmt([x, y, x + 0.2, y + 0.4])},,"
                                 f"{rng.uniform(*FALSE_SCORES):.3f}")
        if v == 1:                # the first video's annotations as two tools export them
            _write_cvat(out / "exports" / f"{vid}_cvat.xml", vid, people, seconds, fps,
                        width, height)
            _write_via(out / "exports" / f"{vid}_via.json", vid, people, seconds, width,
                       height)
    (out / "annotations.csv").write_text("\n".join(gt_lines) + "\n")
    (out / "persons.csv").write_text("\n".join(det_lines) + "\n")
    (out / "label_map.txt").write_text("".join(f"{i} {n}\n" for i, n in EXAMPLE_CLASSES))
    files = {
        "videos/": f"{videos} rendered videos <id>.mp4, {seconds} s at {fps:g} fps, "
                   f"{width}x{height}, {persons} moving persons each",
        "annotations.csv": "ground truth: video_id,timestamp,x1,y1,x2,y2,action_id,person_id "
                           "(one row per person and action; timestamps are seconds from the "
                           "video start, so --time-offset 0)",
        "persons.csv": "person boxes with scores, as from a detector: "
                       "video_id,timestamp,x1,y1,x2,y2,,score (action column empty)",
        "label_map.txt": "the classes, one 'id name' per line (custom ids 101-103)",
        "exports/": "clip1's annotations as CVAT for video 1.1 XML (clip1_cvat.xml, every "
                    "frame, track per person) and VIA 3 project JSON (clip1_via.json, a box "
                    "per person near every second): inputs for `hgrnn convert`",
        "README.txt": "this file",
    }
    (out / "README.txt").write_text(
        "hgrnn example dataset (hgrnn render-example); see docs/own-data.md\n"
        + "".join(f"{name:16s} {text}\n" for name, text in files.items()))
    return {"out": str(out), "videos": videos, "keyframes": n_keyframes,
            "persons": n_persons, "files": files}


def _write_cvat(path, vid, people, seconds, fps, width, height) -> None:
    """A CVAT for video 1.1 export: one track per person (label "person"), a <box> on every
    frame, the action as a select attribute and carrying as a checkbox attribute."""
    n_frames = int(round(seconds * fps))
    lines = ['<?xml version="1.0" encoding="utf-8"?>', "<annotations>", "  <version>1.1</version>",
             "  <meta>", "    <task>", "      <id>1</id>", f"      <name>{escape(vid)}</name>",
             f"      <size>{n_frames}</size>", "      <mode>interpolation</mode>",
             "      <overlap>5</overlap>", "      <start_frame>0</start_frame>",
             f"      <stop_frame>{n_frames - 1}</stop_frame>", "      <labels>",
             "        <label>", "          <name>person</name>", "          <attributes>",
             "            <attribute>", "              <name>action</name>",
             "              <mutable>True</mutable>",
             "              <input_type>select</input_type>",
             "              <default_value>stand</default_value>",
             "              <values>stand\nwalk</values>", "            </attribute>",
             "            <attribute>", "              <name>carry</name>",
             "              <mutable>True</mutable>",
             "              <input_type>checkbox</input_type>",
             "              <default_value>false</default_value>",
             "              <values>false</values>", "            </attribute>",
             "          </attributes>", "        </label>", "      </labels>",
             "      <original_size>", f"        <width>{width}</width>",
             f"        <height>{height}</height>", "      </original_size>",
             f"      <source>{escape(vid)}.mp4</source>", "    </task>", "  </meta>"]
    for pid, p in enumerate(people):
        action = "walk" if WALK in p["actions"] else "stand"
        carry = "true" if CARRY in p["actions"] else "false"
        lines.append(f'  <track id="{pid}" label="person" source="manual">')
        for f in range(n_frames):
            x1, y1, x2, y2 = (c * d for c, d in zip(_box(p, f / fps, width, height),
                                                    (width, height, width, height)))
            lines.append(f'    <box frame="{f}" keyframe="{int(f == 0)}" outside="0" '
                         f'occluded="0" xtl="{x1:.2f}" ytl="{y1:.2f}" xbr="{x2:.2f}" '
                         f'ybr="{y2:.2f}" z_order="0">')
            lines.append(f'      <attribute name="action">{action}</attribute>')
            lines.append(f'      <attribute name="carry">{carry}</attribute>')
            lines.append("    </box>")
        lines.append("  </track>")
    lines.append("</annotations>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _write_via(path, vid, people, seconds, width, height) -> None:
    """A VIA 3 video project: a rectangle per person at 40 ms after every whole second, with
    a person_id text attribute, the action as a radio attribute and carrying as a
    checkbox attribute."""
    metadata = {}
    for pid, p in enumerate(people):
        for ts in range(1, seconds):
            t = ts + 0.04                       # annotators pause near, not at, the second
            x1, y1, x2, y2 = (c * d for c, d in zip(_box(p, t, width, height),
                                                    (width, height, width, height)))
            metadata[f"1_p{pid}t{ts}"] = {
                "vid": "1", "flg": 0, "z": [t],
                "xy": [2, round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "av": {"1": str(pid), "2": "1" if WALK in p["actions"] else "0",
                       "3": "0" if CARRY in p["actions"] else ""}}
    project = {
        "project": {"pid": "__VIA_PROJECT_ID__", "rev": "__VIA_PROJECT_REV_ID__",
                    "rev_timestamp": "__VIA_PROJECT_REV_TIMESTAMP__", "pname": vid,
                    "creator": "hgrnn render-example", "created": 0, "vid_list": ["1"]},
        "config": {"file": {"loc_prefix": {"1": "", "2": "", "3": "", "4": ""}},
                   "ui": {"file_content_align": "center"}},
        "attribute": {
            "1": {"aname": "person_id", "anchor_id": "FILE1_Z1_XY1", "type": 1, "desc": "",
                  "options": {}, "default_option_id": ""},
            "2": {"aname": "action", "anchor_id": "FILE1_Z1_XY1", "type": 3, "desc": "",
                  "options": {"0": "stand", "1": "walk"}, "default_option_id": "0"},
            "3": {"aname": "extra", "anchor_id": "FILE1_Z1_XY1", "type": 2, "desc": "",
                  "options": {"0": "carry"}, "default_option_id": ""}},
        "file": {"1": {"fid": "1", "fname": f"{vid}.mp4", "type": 4, "loc": 1,
                       "src": f"{vid}.mp4"}},
        "view": {"1": {"fid_list": ["1"]}},
        "metadata": metadata,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(project, indent=1) + "\n")


def _fmt(box) -> str:
    return ",".join(f"{float(c):.4f}" for c in box)
