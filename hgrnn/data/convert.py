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

import bisect
import contextlib
import json
import math
import os
import re
import unicodedata
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from hgrnn.data.ava import AvaRows, LabelMap, write_annotations
from hgrnn.data.paths import video_id_problem
from hgrnn.data.video import VideoError, find_videos, probe

PERSON_ATTRIBUTES = ("person_id", "person", "track_id", "track", "id")
_NO_VALUE = ("", "false", "none", "__undefined__")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_INT = re.compile(r"[-+]?\d{1,19}")

#: ids of a label map made from the names found: 101, 102, ... (as `render-example`'s), so
#: that a CSV read without its label map cannot pass for AVA classes (1..80)
FIRST_MADE_ID = 101
#: the longest video an export may describe: frame numbers and times beyond it are refused
#: (a typo or a hostile file, which would otherwise emit a row per second up to it)
MAX_SECONDS = 24 * 3600
_INT64_MAX = (1 << 63) - 1
_CSV_ID_FORBIDDEN = (",", '"')


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


# ----------------------------------------------------------------------------- values

def _int(text, where: str, what: str, lo: int = 0, hi: int = _INT64_MAX) -> int:
    """An integer lo..hi from an export's text/JSON value, else ConvertError naming it."""
    if isinstance(text, bool) or not isinstance(text, (int, str)) or (
            isinstance(text, str) and not _INT.fullmatch(text.strip())):
        raise ConvertError(f"{where}: {what} {_short(text)} is not an integer")
    value = int(text)
    if not lo <= value <= hi:
        raise ConvertError(f"{where}: {what} {_short(text)} is outside {lo}..{hi}")
    return value


def _float(text, where: str, what: str) -> float:
    """A finite number from an export's text/JSON value, else ConvertError naming it."""
    try:
        if isinstance(text, bool) or not isinstance(text, (int, float, str)):
            raise TypeError
        value = float(text)
    except (TypeError, ValueError, OverflowError):
        raise ConvertError(f"{where}: {what} {_short(text)} is not a number") from None
    if not math.isfinite(value):
        raise ConvertError(f"{where}: {what} {_short(text)} is not a finite number")
    return value


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_fps(fps) -> float:
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) \
            or not 0 < fps <= 10000:
        raise ConvertError(f"--fps {fps}: must be the video's frame rate (a number in "
                           "(0, 10000])")
    return float(fps)


def _check_size(size, where: str):
    if size is None:
        return None
    w, h = (_float(v, where, "frame size") for v in size)
    if not (0 < w <= 1e6 and 0 < h <= 1e6):
        raise ConvertError(f"{where}: frame size {w:g} x {h:g} pixels: each side must be in "
                           "(0, 1e6]")
    return w, h


def _check_video_id(vid, where: str, fix="rename the video or pass --video-id") -> str:
    """A video id that is a file stem and a CSV field (no comma, quote or blank)."""
    problem = video_id_problem(vid)
    if problem is None:
        bad = [c for c in vid if c in _CSV_ID_FORBIDDEN or c.isspace()
               or unicodedata.category(c) in ("Cc", "Cf")]
        if bad:
            problem = f"holds {bad[0]!r}, which a CSV id may not"
    if problem is not None:
        raise ConvertError(f"{where}: video id {_short(vid)} {problem}; {fix}")
    return vid


def _check_name(name: str, where: str) -> str:
    """A class name that survives the label map file ('id name' per line) unchanged."""
    if not isinstance(name, str):
        raise ConvertError(f"{where}: action name {_short(name)} is not a string")
    bad = [c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")]
    if bad or name != name.strip() or not name or name[0] in "\"':,#" or len(name) > 200:
        raise ConvertError(f"{where}: action name {_short(name)} cannot be a label-map class "
                           "(control characters, blanks at either end, a leading quote, "
                           "':', ',' or '#', or over 200 characters); rename it or pass "
                           "--label-map")
    return name


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


def _finish(boxes: list, label_map, stats: dict, source) -> Conversion:
    """Attach ids: with a label map, names -> its ids; without, classes from the names
    (ids FIRST_MADE_ID, ...; one class per name, case-insensitively)."""
    made = label_map is None
    if made:
        spelling: dict = {}
        for *_, ns in boxes:
            for n in ns:
                spelling.setdefault(n.strip().lower(), n.strip())
        names = sorted(spelling.values(), key=str.lower)
        if not names:
            raise ConvertError(f"{source}: no action names found (no track labels or "
                               "attributes); pass --label-map FILE")
        for n in names:
            _check_name(n, source)
        label_map = LabelMap(tuple(range(FIRST_MADE_ID, FIRST_MADE_ID + len(names))),
                             tuple(names))
    without = sum(1 for *_, ns in boxes if not ns)
    stats["persons_without_action"] = without
    stats["boxes"] = len(boxes) - without
    return Conversion([b for b in boxes if b[4]], label_map, made, stats)


def rows_of(conv: Conversion):
    """AvaRows (one per box and action, sorted by video, timestamp, person, action)."""
    lookup = {n.strip().lower(): i for i, n in zip(conv.label_map.ids, conv.label_map.names)}
    out = []
    for vid, ts, pid, box, names in conv.boxes:
        for a in sorted({lookup[n.strip().lower()] for n in names}):
            out.append((vid, ts, pid, a, box))
    out.sort(key=lambda r: r[:4])
    if not out:
        raise ConvertError("no person box with an action of the label map at any keyframe")
    return AvaRows.from_arrays([r[0] for r in out], [r[1] for r in out],
                               [r[4] for r in out], [r[3] for r in out],
                               person_ids=[r[2] for r in out])


def write_conversion(conv: Conversion, out_csv, label_map_out=None) -> dict:
    """Write the ground-truth CSV (and the label map as 'id name' lines when
    `label_map_out` is given), each to a temporary name renamed at the end, so that a
    failed write leaves nothing. Returns {"csv", "rows", "label_map"}."""
    rows = rows_of(conv)
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    targets = [out_csv] + ([label_map_out] if label_map_out is not None else [])
    try:
        write_annotations(f"{out_csv}.tmp", rows)
        if label_map_out is not None:
            Path(f"{label_map_out}.tmp").write_text("".join(
                f"{i} {n}\n" for i, n in zip(conv.label_map.ids, conv.label_map.names)),
                encoding="utf-8")
        for final in targets:
            os.replace(f"{final}.tmp", final)
    except OSError as err:
        for final in targets:
            with contextlib.suppress(OSError):
                os.remove(f"{final}.tmp")
        raise ConvertError(f"{err.filename or out_csv}: {err.strerror or err}") from None
    return {"csv": str(out_csv), "rows": len(rows), "label_map": label_map_out}


# ----------------------------------------------------------------------------- CVAT

def _text(el, path, default=None):
    if el is None:
        return default
    node = el.find(path)
    return node.text.strip() if node is not None and node.text else default


def _frame_limit(fps: float) -> int:
    return int(MAX_SECONDS * fps)


def _cvat_tasks(meta, xml_path, video_id, size, fps) -> dict:
    """task id (or None) -> (video id, (W, H) or None, last frame or None)."""
    limit = _frame_limit(fps)

    def one(task, where):
        w, h = _text(task, "original_size/width"), _text(task, "original_size/height")
        wh = size or (_check_size((w, h), f"{where} <original_size>") if w and h else None)
        frames = {}
        for tag in ("start_frame", "stop_frame", "size"):
            text = _text(task, tag)
            if text is not None:
                frames[tag] = v = _int(text, where, f"<{tag}>")
                if v > limit:
                    raise ConvertError(f"{where}: <{tag}> {v} is {v / fps:.4g} s at --fps "
                                       f"{fps:g}, more than {MAX_SECONDS // 3600} h: not a "
                                       "video's frame count")
        last = frames.get("stop_frame")
        if last is None and "size" in frames:
            last = frames.get("start_frame", 0) + frames["size"] - 1
        src = _text(task, "source")
        vid = video_id or (Path(src).stem if src else None) or _text(task, "name") \
            or Path(xml_path).stem
        return _check_video_id(vid, where), wh, last

    tasks = {}
    if meta is not None:
        task = meta.find("task")
        if task is not None:
            tasks[None] = one(task, f"{xml_path}: <task>")
        for t in meta.findall("project/tasks/task"):
            tasks[_text(t, "id")] = one(t, f"{xml_path}: <task> {_text(t, 'id')}")
        job = meta.find("job")
        if job is not None and None not in tasks:
            tasks[None] = one(job, f"{xml_path}: <job>")
    if None not in tasks:
        tasks[None] = (_check_video_id(video_id or Path(xml_path).stem, str(xml_path)), size,
                       None)
    return tasks


def _box_at(records, frames, frame: int, last_frame):
    """CVAT's track semantics: (box, attributes) at `frame`, or None when absent. records
    sorted by frame, frames: their frames."""
    i = bisect.bisect_right(frames, frame)
    if i == 0:
        return None
    prev = records[i - 1]
    nxt = records[i] if i < len(records) else None
    if prev["outside"]:
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


def _video_frames(videos, vid: str, where: str):
    """(path, frame count or None) of the video `vid` in the folder `videos`."""
    try:
        found = find_videos(videos)
        if vid not in found:
            raise ConvertError(f"{where}: video {vid!r} not found in {videos}")
        info = probe(found[vid])
    except VideoError as err:
        raise ConvertError(str(err)) from None
    duration, vfps = info["duration"], info["fps"]
    if not (math.isfinite(duration) and vfps and math.isfinite(vfps)):
        return found[vid], None
    return found[vid], int(round(duration * vfps))


def cvat_video(xml_path, fps: float, *, label_map=None, video_id=None, size=None,
               videos=None) -> Conversion:
    """Convert a CVAT for video 1.1 XML export (see the module docstring). videos: the
    folder of the annotated videos: the task's frames are checked against each video's."""
    fps = _check_fps(fps)
    size = _check_size(size, "--size")
    if video_id is not None:
        _check_video_id(video_id, "--video-id")
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError, ValueError, RecursionError) as err:
        raise ConvertError(f"{xml_path}: not a readable XML file ({err})") from None
    if root.tag != "annotations":
        raise ConvertError(f"{xml_path}: root element <{root.tag}>, expected <annotations> "
                           "(a CVAT for video 1.1 export)")
    if root.find("image") is not None and root.find("track") is None:
        raise ConvertError(f"{xml_path}: a 'CVAT for images' export (<image> elements); "
                           "export the task as 'CVAT for video 1.1'")
    tasks = _cvat_tasks(root.find("meta"), xml_path, video_id, size, fps)
    limit = _frame_limit(fps)
    names = _Names(label_map)
    stats = {"tracks": 0, "other_shapes": 0, "keyframes": 0}
    raw = []            # (video, ts, track id, box, label, attrs)
    attr_names_used = False
    seen_tracks: dict = {}
    last_box_frame: dict = {}          # video -> the last frame any box names
    for track in root.findall("track"):
        stats["tracks"] += 1
        where = f"{xml_path}: <track> {stats['tracks']}"
        tid = _int(track.get("id", str(stats["tracks"] - 1)), where, "track id")
        where = f"{xml_path}: <track id=\"{tid}\">"
        vid, wh, last = tasks.get(track.get("task_id"), tasks[None])
        if (vid, tid) in seen_tracks:
            raise ConvertError(f"{where}: a second track with this id in video {vid!r}: "
                               "two persons would share one person id")
        seen_tracks[(vid, tid)] = True
        if wh is None:
            raise ConvertError(f"{xml_path}: no <original_size> in the meta data; pass "
                               "--size WIDTH HEIGHT (pixels)")
        records = []
        for box in track.findall("box"):
            frame = _int(box.get("frame"), where, "<box> frame", 0, limit)
            at = f"{where} <box frame=\"{frame}\">"
            xyxy = [_float(box.get(k), at, k) for k in ("xtl", "ytl", "xbr", "ybr")]
            if xyxy[2] < xyxy[0] or xyxy[3] < xyxy[1]:
                raise ConvertError(f"{at}: inverted box (xbr < xtl or ybr < ytl)")
            attrs = {a.get("name", ""): (a.text or "").strip() for a in box.findall("attribute")}
            records.append({"frame": frame, "outside": box.get("outside") == "1",
                            "box": xyxy, "attrs": attrs})
        stats["other_shapes"] += sum(1 for c in track if c.tag != "box")
        if not records:
            continue
        records.sort(key=lambda r: r["frame"])
        frames = [r["frame"] for r in records]
        last_box_frame[vid] = max(last_box_frame.get(vid, 0), frames[-1])
        if last is not None and frames[-1] > last:
            raise ConvertError(f"{where}: a <box> at frame {frames[-1]}, past the task's "
                               f"last frame {last}")
        end = last if last is not None else frames[-1]
        s = max(math.ceil((frames[0] - 0.5) / fps), 0)
        while round(s * fps) <= end:             # end <= limit: at most MAX_SECONDS steps
            got = _box_at(records, frames, int(round(s * fps)), end)
            if got is not None:
                box, attrs = got
                w, h = wh
                norm = [min(max(v / d, 0.0), 1.0) for v, d in zip(box, (w, h, w, h))]
                raw.append((vid, s, tid, norm, track.get("label", ""), attrs))
                attr_names_used |= bool(_attribute_names(attrs))
            s += 1
    if videos is not None:
        lasts = {t[0]: t[2] for t in tasks.values()}
        for vid in sorted(last_box_frame):                  # the videos with boxes
            end = max(lasts.get(vid) or 0, last_box_frame[vid])
            path, n = _video_frames(videos, vid, str(xml_path))
            if n is not None and end > n - 1 + max(1, round(fps / 2)):
                raise ConvertError(f"{xml_path}: video {vid!r}: the task's last frame {end} "
                                   f"is past the end of {path} ({n} frames); is --fps right "
                                   "and is this the annotated video?")
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
    return _finish(boxes, label_map, stats, xml_path)


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

def _via_size(fname, size, videos, where):
    if size is not None:
        return size
    if videos is not None:
        try:
            found = find_videos(videos)
        except VideoError as err:
            raise ConvertError(str(err)) from None
        stem = Path(fname).stem
        if stem in found:
            try:
                info = probe(found[stem])
            except VideoError as err:
                raise ConvertError(str(err)) from None
            return _check_size((info["width"], info["height"]), str(found[stem]))
        raise ConvertError(f"{where}: video {fname!r} not found in {videos}; pass --size "
                           "WIDTH HEIGHT")
    raise ConvertError("VIA does not store the frame size: pass --size WIDTH HEIGHT or "
                       "--videos DIR")


def _dict(value, where: str, what: str) -> dict:
    if not isinstance(value, dict):
        raise ConvertError(f"{where}: {what} is a {type(value).__name__}, expected an object")
    return value


def _list(value, where: str, what: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConvertError(f"{where}: {what} is a {type(value).__name__}, expected a list")
    return value


def _load_json(json_path):
    try:
        with open(json_path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConvertError(f"{json_path}: not a readable JSON file (not UTF-8: byte "
                           f"{err.start})") from None
    except (OSError, ValueError, RecursionError) as err:      # JSONDecodeError, huge ints
        text = str(err) if not isinstance(err, RecursionError) else "nested too deeply"
        raise ConvertError(f"{json_path}: not a readable JSON file ({text[:200]})") from None


def via_video(json_path, *, label_map=None, size=None, videos=None, snap: float = 0.25,
              person_attribute=None) -> Conversion:
    """Convert a VIA 3 video-annotation project JSON (see the module docstring)."""
    size = _check_size(size, "--size")
    snap = _float(snap, "--snap", "value")
    if not 0 <= snap <= 0.5:
        raise ConvertError(f"--snap {snap:g}: must be in [0, 0.5] seconds")
    data = _load_json(json_path)
    if not isinstance(data, dict):
        raise ConvertError(f"{json_path}: a JSON {type(data).__name__}, not a VIA 3 project "
                           "(an object with 'file', 'view', 'attribute', 'metadata')")
    for key in ("file", "view", "attribute", "metadata"):
        if not isinstance(data.get(key), dict):
            raise ConvertError(f"{json_path}: no {key!r} object: not a VIA 3 project JSON "
                               "(save the project from the VIA video annotator)")
    files, views, attributes = data["file"], data["view"], data["attribute"]
    for aid, a in attributes.items():
        where = f"{json_path}: attribute {_short(aid)}"
        _dict(a, where, "the attribute")
        _dict(a.get("options") or {}, where, "'options'")
    wanted = {person_attribute.lower()} if person_attribute else set(PERSON_ATTRIBUTES)
    person_aid = next((aid for aid, a in attributes.items()
                       if str(a.get("aname", "")).strip().lower() in wanted), None)
    names = _Names(label_map)
    stats = {"regions": 0, "off_keyframe": 0, "segments_ignored": 0, "other_shapes": 0,
             "merged": 0}
    best: dict = {}           # (video, ts, person or region id) -> (distance, box, names)
    sizes: dict = {}
    for mid, m in data["metadata"].items():
        where = f"{json_path}: metadata {_short(mid)}"
        m = _dict(m, where, "the entry")
        z, xy = _list(m.get("z"), where, "'z'"), _list(m.get("xy"), where, "'xy'")
        if not xy:
            if len(z) == 2:
                stats["segments_ignored"] += 1
            continue
        if xy[0] != 2 or len(xy) != 5 or len(z) != 1:
            stats["other_shapes"] += 1
            continue
        stats["regions"] += 1
        view = views.get(str(m.get("vid")))
        if not isinstance(view, dict) or not _list(view.get("fid_list"), where, "'fid_list'"):
            raise ConvertError(f"{where}: view {_short(m.get('vid'))} unknown")
        fid = view["fid_list"][0]
        entry = files.get(str(fid))
        if not isinstance(entry, dict) or not isinstance(entry.get("fname"), str):
            raise ConvertError(f"{where}: file {_short(fid)} of view {_short(m.get('vid'))} "
                               "has no 'fname' (a string)")
        fname = entry["fname"]
        vid = _check_video_id(Path(fname).stem, f"{json_path}: file {_short(fid)}",
                              "rename the video and its 'fname'")
        if vid not in sizes:
            sizes[vid] = _via_size(fname, size, videos, f"{json_path}: file {_short(fid)}")
        w, h = sizes[vid]
        t = _float(z[0], where, "time z")
        if not 0 <= t <= MAX_SECONDS:
            raise ConvertError(f"{where}: time z {t:g} s is outside 0..{MAX_SECONDS} s")
        ts = int(round(t))
        if abs(t - ts) > snap:
            stats["off_keyframe"] += 1
            continue
        x, y, bw, bh = (_float(v, where, "box value") for v in xy[1:])
        if bw < 0 or bh < 0:
            raise ConvertError(f"{where}: box of negative width or height ({bw:g} x {bh:g})")
        box = [min(max(v, 0.0), 1.0) for v in (x / w, y / h, (x + bw) / w, (y + bh) / h)]
        found, person = [], -1
        for aid, value in _dict(m.get("av") or {}, where, "'av'").items():
            a = attributes.get(str(aid), {})
            options = a.get("options") or {}
            if aid == person_aid:
                text = options.get(str(value), value)
                if str(text).strip() != "":
                    person = _int(text, where, "person id")
                continue
            kind = a.get("type")
            if kind == 2:
                found += [options.get(o, o) for o in str(value).split(",") if o != ""]
            elif kind in (3, 4):
                found.append(options.get(str(value), str(value)))
            elif kind == 1:
                found += [v for v in str(value).split(",") if v.strip()]
        found = [str(n) for n in found]
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
    return _finish(boxes, label_map, stats, json_path)


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
