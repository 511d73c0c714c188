"""`hgrnn convert`: annotation-tool exports -> AVA ground-truth CSV (one keyframe per second).

Both converters return a `Conversion` (AVA rows + the label map + counts of what was left
out); `write_conversion` writes the CSV (`video_id,timestamp,x1,y1,x2,y2,action_id,
person_id`, one row per person AND action, timestamps in seconds from the video start, so
extract with `--time-offset 0`) and, when the label map was made here, the label map.

CVAT for video 1.1 (XML; "Export task dataset" -> "CVAT for video 1.1")
  <annotations><meta><task>... <original_size><width/><height/></original_size>
  <source>video.mp4</source>?</task></meta>
  <track id="N" label="L"><box frame="F" xtl= ytl= xbr= ybr= outside="0|1" occluded=
  keyframe=><attribute name="A">value</attribute>...</box>...</track>...</annotations>
  * a track is one person: person_id = track id;
  * frame F is the video's frame number (CVAT writes absolute frame numbers), so keyframe
    timestamp s (whole seconds) reads frame round(s * fps) (--fps: the video's rate, which
    the XML does not hold);
  * the box at a frame follows CVAT's own rules: the last <box> at or before the frame,
    linearly interpolated towards the next one (exports list every frame anyway); a box
    with outside="1" ends the track until its next box; the last box lasts to the task's
    last frame (meta stop_frame or size - 1);
  * pixel boxes are normalised by <original_size> (or --size W H);
  * actions of a box: the track's label, every checkbox attribute whose value is "true"
    (by attribute name), and every select/radio/text attribute value, each kept when it
    names a label-map class (case-insensitive); other names (e.g. the label "person") are
    counted in `ignored`. Without --label-map the classes are the attribute-derived names
    (or, when no attribute names any, the track labels), ids 1..K in alphabetical order;
  * project exports: a track's task_id picks the task's <source> (or <name>) as video id.
  Video id: --video-id, else the stem of <source>, else the task <name>, else the file stem.

VIA 3 video annotations (the VGG Image Annotator's video annotator, project JSON)
  {"file": {fid: {"fname": "video.mp4", ...}}, "view": {vid: {"fid_list": [fid]}},
   "attribute": {aid: {"aname", "type" (1 text, 2 checkbox, 3 radio, 4 select, 5 image),
   "options": {oid: name}}}, "metadata": {mid: {"vid", "z": [t], "xy": [2, x, y, w, h],
   "av": {aid: value}}}}
  * every rectangle (xy[0] == 2) at one time z = [t] (seconds) is a person box; it goes to
    keyframe round(t) when |t - round(t)| <= --snap (default 0.25 s), else it is counted in
    `off_keyframe`; of two boxes of one person at one keyframe the nearer in time is kept;
  * actions: checkbox values (comma-separated option ids) and radio/select option names,
    text values (comma-separated), kept when they name a label-map class;
  * person id: the value of an attribute named person_id / person / track_id / track / id
    (or --person-attribute), an integer; -1 when absent (VIA has no tracks);
  * temporal segments (z = [t0, t1] without a box) name no person and are counted in
    `segments_ignored`; VIA does not store the frame size: --size W H or --videos DIR.
"""

from __future__ import annotations

import json
import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PERSON_ATTRIBUTES = ("person_id", "person", "track_id", "track", "id")
_NO_VALUE = ("", "false", "none", "__undefined__")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class ConvertError(ValueError):
    """An export that cannot be converted; the message names the file."""


@dataclass
class Conversion:
    """Result of a converter. boxes: one per (video, timestamp, person) with its actions
    (names); label_map: the classes (given, or made from the names found); stats: counts
    of what was read and left out."""
    boxes: list = field(default_factory=list)   # (video_id, ts, person_id, [x1,y1,x2,y2], names)
    label_map: object = None
    label_map_made: bool = False
    stats: dict = field(default_factory=dict)


class _Names:
    """Action names -> label-map ids (case-insensitive); counts the names left out."""

    def __init__(self, label_map):
        self.label_map = label_map
        self.lookup = ({n.strip().lower(): i for i, n in zip(label_map.ids, label_map.names)}
                       if label_map is not None else None)
        self.ignored: dict = {}

    def keep(self, names) -> list[str]:
        if self.lookup is None:
            return list(names)
        kept = []
        for n in names:
            if n.strip().lower() in self.lookup:
                kept.append(n.strip())
            else:
                self.ignored[n] = self.ignored.get(n, 0) + 1
        return kept


def _finish(boxes: list, label_map, stats: dict) -> Conversion:
    """Attach ids: with a label map, names -> its ids; without, classes from the names."""
    from hgrnn.data.ava import LabelMap

    made = label_map is None
    if made:
        names = sorted({n for *_, ns in boxes for n in ns}, key=str.lower)
        if not names:
            raise ConvertError("no action names found (no track labels or attributes); "
                               "pass --label-map FILE")
        label_map = LabelMap(tuple(range(1, len(names) + 1)), tuple(names))
    without = sum(1 for *_, ns in boxes if not ns)
    stats["persons_without_action"] = without
    stats["boxes"] = len(boxes) - without
    return Conversion([b for b in boxes if b[4]], label_map, made, stats)


def rows_of(conv: Conversion):
    """AvaRows (one per box and action, sorted by video, timestamp, person, action)."""
    from hgrnn.data.ava import AvaRows

    lookup = {n.strip().lower(): i for i, n in zip(conv.label_map.ids, conv.label_map.names)}
    out = []
    for vid, ts, pid, box, names in conv.boxes:
        for a in sorted({lookup[n.lower()] for n in names}):
            out.append((vid, ts, pid, a, box))
    out.sort(key=lambda r: r[:4])
    if not out:
        raise ConvertError("no person box with an action of the label map at any keyframe")
    return AvaRows.from_arrays([r[0] for r in out], [r[1] for r in out],
                               [r[4] for r in out], [r[3] for r in out],
                               person_ids=[r[2] for r in out])


def write_conversion(conv: Conversion, out_csv, label_map_out=None) -> dict:
    """Write the ground-truth CSV (and the label map as 'id name' lines when
    `label_map_out` is given). Returns {"csv", "rows", "label_map"}."""
    from hgrnn.data.ava import write_annotations

    rows = rows_of(conv)
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    write_annotations(out_csv, rows)
    if label_map_out is not None:
        Path(label_map_out).write_text("".join(
            f"{i} {n}\n" for i, n in zip(conv.label_map.ids, conv.label_map.names)))
    return {"csv": str(out_csv), "rows": len(rows), "label_map": label_map_out}


# ----------------------------------------------------------------------------- CVAT

def _text(el, path, default=None):
    if el is None:
        return default
    node = el.find(path)
    return node.text.strip() if node is not None and node.text else default


def _cvat_tasks(meta, xml_path, video_id, size) -> tuple[dict, tuple | None]:
    """task id (or None) -> (video id, (W, H) or None, last frame or None)."""
    def one(task):
        w, h = _text(task, "original_size/width"), _text(task, "original_size/height")
        wh = size or ((float(w), float(h)) if w and h else None)
        stop = _text(task, "stop_frame")
        n = _text(task, "size")
        last = int(stop) if stop else (int(n) - 1 if n else None)
        src = _text(task, "source")
        vid = video_id or (Path(src).stem if src else None) or _text(task, "name") \
            or Path(xml_path).stem
        return vid, wh, last

    tasks = {}
    if meta is not None:
        task = meta.find("task")
        if task is not None:
            tasks[None] = one(task)
        for t in meta.findall("project/tasks/task"):
            tasks[_text(t, "id")] = one(t)
        job = meta.find("job")
        if job is not None and None not in tasks:
            tasks[None] = one(job)
    if None not in tasks:
        tasks[None] = (video_id or Path(xml_path).stem, size, None)
    return tasks


def _box_at(records, frame: int, last_frame):
    """CVAT's track semantics: (box, attributes) at `frame`, or None when absent."""
    prev = nxt = None
    for r in records:                       # records sorted by frame
        if r["frame"] <= frame:
            prev = r
        else:
            nxt = r
            break
    if prev is None or prev["outside"]:
        return None
    if nxt is None:
        if last_frame is not None and frame > last_frame:
            return None
        return prev["box"], prev["attrs"]
    if nxt["outside"]:
        return prev["box"], prev["attrs"]
    a = (frame - prev["frame"]) / (nxt["frame"] - prev["frame"])
    box = [p + a * (q - p) for p, q in zip(prev["box"], nxt["box"])]
    return box, prev["attrs"]


def cvat_video(xml_path, fps: float, *, label_map=None, video_id=None, size=None) -> Conversion:
    """Convert a CVAT for video 1.1 XML export (see the module docstring)."""
    if not fps or fps <= 0:
        raise ConvertError("--fps must be the video's frame rate (> 0)")
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as err:
        raise ConvertError(f"{xml_path}: not a readable XML file ({err})") from None
    if root.tag != "annotations":
        raise ConvertError(f"{xml_path}: root element <{root.tag}>, expected <annotations> "
                           "(a CVAT for video 1.1 export)")
    if root.find("image") is not None and root.find("track") is None:
        raise ConvertError(f"{xml_path}: a 'CVAT for images' export (<image> elements); "
                           "export the task as 'CVAT for video 1.1'")
    tasks = _cvat_tasks(root.find("meta"), xml_path, video_id, size)
    names = _Names(label_map)
    stats = {"tracks": 0, "other_shapes": 0, "keyframes": 0}
    raw = []            # (video, ts, track id, box, label, attrs)
    attr_names_used = False
    for track in root.findall("track"):
        stats["tracks"] += 1
        tid = int(track.get("id", stats["tracks"] - 1))
        vid, wh, last = tasks.get(track.get("task_id"), tasks[None])
        if wh is None:
            raise ConvertError(f"{xml_path}: no <original_size> in the meta data; pass "
                               "--size WIDTH HEIGHT (pixels)")
        records = []
        for box in track.findall("box"):
            try:
                xyxy = [float(box.get(k)) for k in ("xtl", "ytl", "xbr", "ybr")]
                frame = int(box.get("frame"))
            except (TypeError, ValueError):
                raise ConvertError(f"{xml_path}: track {tid}: a <box> without numeric frame, "
                                   "xtl, ytl, xbr, ybr") from None
            attrs = {a.get("name", ""): (a.text or "").strip() for a in box.findall("attribute")}
            records.append({"frame": frame, "outside": box.get("outside") == "1",
                            "box": xyxy, "attrs": attrs})
        stats["other_shapes"] += sum(1 for c in track if c.tag != "box")
        if not records:
            continue
        records.sort(key=lambda r: r["frame"])
        end = last if last is not None else records[-1]["frame"]
        first_s = math.ceil((records[0]["frame"] - 0.5) / fps)
        s = max(first_s, 0)
        while round(s * fps) <= end:
            got = _box_at(records, int(round(s * fps)), end)
            if got is not None:
                box, attrs = got
                w, h = wh
                norm = [min(max(v / d, 0.0), 1.0) for v, d in zip(box, (w, h, w, h))]
                raw.append((vid, s, tid, norm, track.get("label", ""), attrs))
                attr_names_used |= bool(_attribute_names(attrs))
            s += 1
    boxes = []
    for vid, s, tid, box, label, attrs in raw:
        found = _attribute_names(attrs)
        if label_map is not None:
            found = [label] + found
        elif not attr_names_used:
            found = [label]
        boxes.append((vid, s, tid, box, names.keep(found)))
    stats["keyframes"] = len({(b[0], b[1]) for b in boxes})
    stats["ignored"] = names.ignored
    return _finish(boxes, label_map, stats)


def _attribute_names(attrs: dict) -> list[str]:
    """Names an attribute set gives: checkbox name when "true", else the value(s)."""
    out = []
    for name, value in attrs.items():
        v = value.strip()
        if v.lower() == "true":
            out.append(name)
        elif v.lower() not in _NO_VALUE and not _NUMBER.fullmatch(v):    # numbers name nothing
            out.append(v)
    return out


# ----------------------------------------------------------------------------- VIA

def _via_size(fname, size, videos):
    if size is not None:
        return size
    if videos is not None:
        from hgrnn.data.video import VideoError, find_videos, probe

        found = find_videos(videos)
        stem = Path(fname).stem
        if stem in found:
            try:
                info = probe(found[stem])
            except VideoError as err:
                raise ConvertError(str(err)) from None
            return float(info["width"]), float(info["height"])
        raise ConvertError(f"video {fname!r} not found in {videos}; pass --size WIDTH HEIGHT")
    raise ConvertError("VIA does not store the frame size: pass --size WIDTH HEIGHT or "
                       "--videos DIR")


def via_video(json_path, *, label_map=None, size=None, videos=None, snap: float = 0.25,
              person_attribute=None) -> Conversion:
    """Convert a VIA 3 video-annotation project JSON (see the module docstring)."""
    try:
        with open(json_path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise ConvertError(f"{json_path}: not a readable JSON file ({err})") from None
    for key in ("file", "view", "attribute", "metadata"):
        if not isinstance(data.get(key), dict):
            raise ConvertError(f"{json_path}: no {key!r} object: not a VIA 3 project JSON "
                               "(save the project from the VIA video annotator)")
    files, views, attributes = data["file"], data["view"], data["attribute"]
    wanted = {person_attribute.lower()} if person_attribute else set(PERSON_ATTRIBUTES)
    person_aid = next((aid for aid, a in attributes.items()
                       if str(a.get("aname", "")).strip().lower() in wanted), None)
    names = _Names(label_map)
    stats = {"regions": 0, "off_keyframe": 0, "segments_ignored": 0, "other_shapes": 0,
             "merged": 0}
    best: dict = {}           # (video, ts, person or region id) -> (distance, box, names)
    sizes: dict = {}
    for mid, m in data["metadata"].items():
        z, xy = m.get("z") or [], m.get("xy") or []
        if not xy:
            if len(z) == 2:
                stats["segments_ignored"] += 1
            continue
        if xy[0] != 2 or len(xy) != 5 or len(z) != 1:
            stats["other_shapes"] += 1
            continue
        stats["regions"] += 1
        view = views.get(str(m.get("vid")))
        if not view or not view.get("fid_list"):
            raise ConvertError(f"{json_path}: metadata {mid}: view {m.get('vid')!r} unknown")
        fname = files[str(view["fid_list"][0])]["fname"]
        vid = Path(fname).stem
        if vid not in sizes:
            sizes[vid] = _via_size(fname, size, videos)
        w, h = sizes[vid]
        t = float(z[0])
        ts = int(round(t))
        if abs(t - ts) > snap:
            stats["off_keyframe"] += 1
            continue
        x, y, bw, bh = (float(v) for v in xy[1:])
        box = [min(max(v, 0.0), 1.0) for v in (x / w, y / h, (x + bw) / w, (y + bh) / h)]
        found, person = [], -1
        for aid, value in (m.get("av") or {}).items():
            a = attributes.get(str(aid), {})
            if aid == person_aid:
                try:
                    person = int(str(a.get("options", {}).get(value, value)).strip())
                except ValueError:
                    person = -1
                continue
            kind, options = a.get("type"), a.get("options") or {}
            if kind == 2:
                found += [options.get(o, o) for o in str(value).split(",") if o != ""]
            elif kind in (3, 4):
                found.append(options.get(str(value), str(value)))
            elif kind == 1:
                found += [v for v in str(value).split(",") if v.strip()]
        found = [n for n in found if n.strip().lower() not in _NO_VALUE]
        key = (vid, ts, person if person >= 0 else f"region {mid}")
        if key in best:
            stats["merged"] += 1
            if best[key][0] <= abs(t - ts):
                continue
        best[key] = (abs(t - ts), box, found, person)
    boxes = [(vid, ts, person, box, names.keep(found))
             for (vid, ts, _), (_, box, found, person) in sorted(best.items(), key=str)]
    stats["keyframes"] = len({(b[0], b[1]) for b in boxes})
    stats["ignored"] = names.ignored
    return _finish(boxes, label_map, stats)


def format_stats(conv: Conversion, written: dict) -> str:
    """One summary line (plus one for names left out)."""
    s = conv.stats
    parts = [f"{written['rows']} rows ({s['boxes']} person boxes on {s['keyframes']} "
             f"keyframes) -> {written['csv']}"]
    for key, text in (("tracks", "tracks"), ("regions", "regions"),
                      ("persons_without_action", "boxes without a label-map action left out"),
                      ("off_keyframe", "boxes further than --snap from a whole second left out"),
                      ("merged", "boxes of a person already at that keyframe left out"),
                      ("segments_ignored", "temporal segments (no box) ignored"),
                      ("other_shapes", "shapes other than boxes ignored")):
        if s.get(key):
            parts.append(f"{s[key]} {text}")
    lines = ["convert: " + "; ".join(parts)]
    if s.get("ignored"):
        shown = ", ".join(f"{n!r} ({c})" for n, c in sorted(s["ignored"].items())[:8])
        lines.append(f"  names not in the label map, left out: {shown}")
    if conv.label_map_made:
        lines.append(f"  label map ({len(conv.label_map)} classes, made from the names found)"
                     + (f" -> {written['label_map']}" if written.get("label_map") else ""))
    return "\n".join(lines)


def default_label_map_path(out_csv) -> str:
    """Where a made label map goes: <csv stem>_label_map.txt next to the CSV."""
    p = Path(out_csv)
    return os.fspath(p.with_name(p.stem + "_label_map.txt"))
