"""`hgrnn check-data`: everything wrong with a dataset, found before hours of extraction.

Reads the ground-truth CSV (and optionally the person-box CSV, the label map, the
excluded timestamps and the videos) once and reports every problem it finds, not only the
first one as the fast readers of `hgrnn.data.ava` do:

  errors (exit 1; extract-features or eval would fail or silently lose data)
    parse          rows that fail to parse (FILE:LINE), wrong column count, a header row
    unknown-id     action ids neither in the label map nor AVA ids (1..80): every reader
                   refuses them
    box-range      a coordinate outside [0, 1] (pixel coordinates, hint given)
    box-order      x2 < x1 or y2 < y1 (x, y, w, h instead of x1, y1, x2, y2?)
    video-missing  videos named by a CSV but not in --videos / --frames
    keyframe-range keyframes before a video's start or past its end at --time-offset,
                   with the --time-offset that would fit every video when one does
  warnings (exit 0)
    outside-map    AVA action ids that the label map leaves out (every command skips them)
    box-empty      zero-width or zero-height boxes
    duplicate      identical rows; a person id with two boxes in one keyframe
    video-unused   videos on disk that no CSV names
    clip-span      a clip spanning more than 2 s at the video's frame rate
    class-empty    label-map classes without a single instance
    no-detections  annotated keyframes without any person box in --detections
    score-range    person-box scores outside [0, 1]
  info: rows, keyframes, videos, persons per keyframe, instances per class, frame rate,
  duration and clip span per video.

`check_data` returns a JSON-ready dict; `format_report` renders it for a terminal. Rows
are read with Python's string functions, one line at a time: it sees every problem, but is
about 12x slower than the vectorised reader that stops at the first (AVA train's 837K rows:
43 s against 3.4 s on the shared 2-core machine, BENCHMARKS.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: Findings keep this many example locations (FILE:LINE or video ids).
EXAMPLES = 5
#: Same tolerance as hgrnn.data.ava: coordinates may leave [0, 1] by this much.
COORD_TOLERANCE = 1e-3


@dataclass
class _Finding:
    level: str                  # "error" | "warning"
    code: str
    message: str
    count: int = 0
    examples: list = field(default_factory=list)

    def add(self, where) -> None:
        self.count += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(str(where))


class _Findings:
    """Findings keyed by (code, message): repeated problems are counted, not repeated."""

    def __init__(self):
        self.items: dict = {}

    def add(self, level, code, message, where=None, count=1):
        key = (code, message)
        if key not in self.items:
            self.items[key] = _Finding(level, code, message)
        f = self.items[key]
        if where is None:
            f.count += count
        else:
            f.add(where)

    def as_list(self) -> list[dict]:
        order = {"error": 0, "warning": 1}
        items = sorted(self.items.values(), key=lambda f: order[f.level])
        return [{"level": f.level, "code": f.code, "message": f.message, "count": f.count,
                 "examples": f.examples} for f in items]


@dataclass
class _Rows:
    """Parsed rows of one CSV (only the rows that parsed)."""
    lines: list = field(default_factory=list)       # line numbers
    video_ids: list = field(default_factory=list)
    timestamps: list = field(default_factory=list)
    boxes: list = field(default_factory=list)
    actions: list = field(default_factory=list)     # -1: none
    extra: list = field(default_factory=list)       # person id (gt) / score (detections)
    empty_keyframes: set = field(default_factory=set)
    total: int = 0


def _parse_csv(path, kind: str, findings: _Findings) -> _Rows:
    """kind "gt": 2, 7 or 8 columns; "det": 8 columns (action empty or -1, score)."""
    rows = _Rows()
    allowed = (2, 7, 8) if kind == "gt" else (8,)
    expect = ("video_id,timestamp,x1,y1,x2,y2,action_id[,person_id]" if kind == "gt"
              else "video_id,timestamp,x1,y1,x2,y2,action_id (empty or -1),score")
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            text = line.strip()
            if not text:
                continue
            rows.total += 1
            where = f"{path}:{n}"
            cols = [c.strip() for c in text.split(",")]
            if len(cols) not in allowed:
                findings.add("error", "parse", f"{len(cols)} columns, expected "
                             f"{' or '.join(map(str, allowed))} ({expect})", where)
                continue
            try:
                ts = int(cols[1])
            except ValueError:
                if n == 1 and not _is_number(cols[1]):
                    findings.add("error", "parse", "a header row: AVA CSVs have none (delete "
                                 "the first line)", where)
                else:
                    findings.add("error", "parse", f"timestamp {cols[1]!r} is not a whole "
                                 "number of seconds", where)
                continue
            if not cols[0]:
                findings.add("error", "parse", "empty video_id", where)
                continue
            if len(cols) == 2:
                rows.empty_keyframes.add((cols[0], ts))
                continue
            try:
                box = [float(c) for c in cols[2:6]]
            except ValueError:
                findings.add("error", "parse", "a box coordinate is not a number", where)
                continue
            if not all(math.isfinite(c) for c in box):
                findings.add("error", "parse", "a box coordinate is not finite", where)
                continue
            try:
                action = int(cols[6]) if cols[6] not in ("", "-1") else -1
            except ValueError:
                findings.add("error", "parse", f"action_id {cols[6]!r} is not an integer", where)
                continue
            if kind == "gt" and action == -1:
                findings.add("error", "parse", "ground-truth row without an action id", where)
                continue
            if action == 0 or action < -1:
                findings.add("error", "parse", f"action_id {action}: ids are positive "
                             "(-1 or empty for a person box)", where)
                continue
            extra = -1
            if len(cols) == 8:
                try:
                    extra = int(cols[7]) if kind == "gt" else float(cols[7])
                except ValueError:
                    what = "person_id" if kind == "gt" else "score"
                    findings.add("error", "parse", f"{what} {cols[7]!r} is not a number", where)
                    continue
            rows.lines.append(n)
            rows.video_ids.append(cols[0])
            rows.timestamps.append(ts)
            rows.boxes.append(box)
            rows.actions.append(action)
            rows.extra.append(extra)
    return rows


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _check_boxes(rows: _Rows, path, findings: _Findings) -> None:
    if not rows.lines:
        return
    b = np.asarray(rows.boxes, np.float64).reshape(-1, 4)
    lines = np.asarray(rows.lines)
    tol = COORD_TOLERANCE
    outside = ~((b >= -tol) & (b <= 1 + tol)).all(axis=1)
    if outside.any():
        pixels = (b[outside] > 1 + tol).any(axis=1).mean() > 0.5
        hint = (" (pixel coordinates? divide x by the frame width and y by its height)"
                if pixels else "")
        for i in np.flatnonzero(outside):
            findings.add("error", "box-range", "box coordinate outside [0, 1]: boxes are "
                         "normalised x1,y1,x2,y2" + hint, f"{path}:{lines[i]}")
    order = ~outside & ((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1]))
    for i in np.flatnonzero(order):
        findings.add("error", "box-order", "x2 < x1 or y2 < y1 (x, y, width, height instead "
                     "of x1, y1, x2, y2?)", f"{path}:{lines[i]}")
    empty = ~outside & ~order & ((b[:, 2] == b[:, 0]) | (b[:, 3] == b[:, 1]))
    for i in np.flatnonzero(empty):
        findings.add("warning", "box-empty", "zero-width or zero-height box",
                     f"{path}:{lines[i]}")


def _check_duplicates(rows: _Rows, path, findings: _Findings, kind: str) -> None:
    seen: dict = {}
    person_box: dict = {}
    for i, n in enumerate(rows.lines):
        key = (rows.video_ids[i], rows.timestamps[i], tuple(rows.boxes[i]), rows.actions[i])
        if key in seen:
            findings.add("warning", "duplicate", "row repeats an earlier row "
                         "(same keyframe, box and action)", f"{path}:{n}")
        else:
            seen[key] = n
        if kind == "gt" and rows.extra[i] >= 0:
            pkey = (rows.video_ids[i], rows.timestamps[i], rows.extra[i])
            box = tuple(rows.boxes[i])
            if person_box.setdefault(pkey, box) != box:
                findings.add("warning", "duplicate", "person_id with two different boxes "
                             "in one keyframe", f"{path}:{n}")


def _check_ids(rows: _Rows, path, label_map, label_map_name, findings: _Findings) -> None:
    from hgrnn.data.ava import AVA_ACTION_IDS

    if label_map is None:
        return
    known = set(label_map.ids)
    outside: dict = {}
    for i, a in enumerate(rows.actions):
        if a != -1 and a not in known:
            outside.setdefault(a, []).append(rows.lines[i])
    for a in sorted(outside):
        lines = outside[a]
        if a in AVA_ACTION_IDS:
            message = (f"action id {a} is not in the label map {label_map_name} "
                       f"({len(label_map)} classes): every command skips these rows; if "
                       f"these are your own classes, pass --label-map FILE listing them")
            level, code = "warning", "outside-map"
        else:
            message = (f"action id {a} is neither in the label map {label_map_name} nor an "
                       f"AVA action (1..80): extract-features and eval-csv refuse it; pass "
                       f"--label-map FILE with your own ids")
            level, code = "error", "unknown-id"
        for n in lines:
            findings.add(level, code, message, f"{path}:{n}")


def _keyframes(rows: _Rows) -> dict:
    """video id -> sorted keyframe timestamps."""
    out: dict = {}
    for v, t in zip(rows.video_ids, rows.timestamps):
        out.setdefault(v, set()).add(t)
    for v, t in rows.empty_keyframes:
        out.setdefault(v, set()).add(t)
    return {v: sorted(ts) for v, ts in out.items()}


def _persons_per_keyframe(rows: _Rows) -> dict:
    count: dict = {}
    seen = set()
    for v, t, b in zip(rows.video_ids, rows.timestamps, rows.boxes):
        key = (v, t, tuple(b))
        if key not in seen:
            seen.add(key)
            count[(v, t)] = count.get((v, t), 0) + 1
    for key in rows.empty_keyframes:
        count.setdefault(key, 0)
    values = np.asarray(list(count.values()) or [0])
    return {"keyframes": len(count), "persons": int(values.sum()), "min": int(values.min()),
            "mean": round(float(values.mean()), 2), "max": int(values.max())}


def _check_videos(keyframes: dict, videos, frames, fps, time_offset, clip_frames, frame_stride,
                  findings: _Findings, named_by: str) -> dict:
    from hgrnn.pipeline.keyframes import (clip_seconds, clip_span_warning, describe_outside,
                                          fitting_offsets, nice_offset, split_keyframes)
    from hgrnn.pipeline.video import VideoError, find_frame_folders, find_videos, probe

    folder = videos if videos is not None else frames
    found = find_videos(videos) if videos is not None else find_frame_folders(frames)
    for vid in sorted(set(keyframes) - set(found)):
        message = (f"named by {named_by} but not in {folder} (expected "
                   "<video_id>.mp4, .mkv, .webm or .avi)" if videos is not None else
                   f"named by {named_by} but no frame folder {folder}/<video_id>/")
        findings.add("error", "video-missing", message, vid)
    for vid in sorted(set(found) - set(keyframes)):
        findings.add("warning", "video-unused", f"in {folder} but not named by {named_by} "
                     "(no keyframes: not extracted)", vid)
    report = {}
    fit_lo, fit_hi = -math.inf, math.inf
    any_outside = False
    for vid in sorted(set(keyframes) & set(found)):
        try:
            info = probe(found[vid], fps=fps)
        except VideoError as err:
            findings.add("error", "video-missing", f"cannot be opened: {err}", vid)
            continue
        vfps, duration = info["fps"], info["duration"]
        ts = keyframes[vid]
        entry = {"fps": round(vfps, 3), "width": info["width"], "height": info["height"],
                 "duration": None if not math.isfinite(duration) else round(duration, 3),
                 "keyframes": len(ts), "first": ts[0], "last": ts[-1],
                 "clip_seconds": round(clip_seconds(clip_frames, frame_stride, vfps), 3),
                 "out_of_range": 0}
        report[vid] = entry
        warning = clip_span_warning(clip_frames, frame_stride, vfps)
        if warning:
            findings.add("warning", "clip-span", warning, vid)
        if not math.isfinite(duration):
            findings.add("warning", "keyframe-range", "duration unknown (no header "
                         "duration): keyframes not checked", vid)
            continue
        _, outside = split_keyframes(ts, vfps, duration, time_offset)
        lo, hi = fitting_offsets(ts[0], ts[-1], vfps, duration)
        fit_lo, fit_hi = max(fit_lo, lo), min(fit_hi, hi)
        entry["out_of_range"] = len(outside)
        if outside:
            any_outside = True
            findings.add("error", "keyframe-range",
                         describe_outside(vid, outside, len(ts), duration, time_offset))
    if any_outside:
        if fit_lo <= fit_hi:
            findings.add("error", "keyframe-range", f"hint: --time-offset "
                         f"{nice_offset(fit_lo, fit_hi):g} fits every video (any value from "
                         f"{fit_lo:.2f} to {fit_hi:.2f}); timestamps are seconds from the "
                         "video start plus the offset", count=0)
        else:
            findings.add("error", "keyframe-range", "hint: no single --time-offset fits every "
                         "video; are the videos cut differently, or the timestamps not in "
                         "seconds?", count=0)
    return report


def check_data(annotations, *, detections=None, label_map=None, videos=None, frames=None,
               fps=None, time_offset: float = 0.0, exclusions=None, clip_frames: int = 32,
               frame_stride: int = 1) -> dict:
    """Check a dataset (see the module docstring). label_map: a file or packaged name
    (None: the commands' default, ava-v2.1). Returns a JSON-ready dict: ok, errors,
    warnings, findings [{level, code, message, count, examples}], annotations {...},
    detections {...} | None, label_map {...}, videos {id: {fps, duration, ...}},
    instances_per_class {name: n}."""
    from hgrnn.data.ava import AvaFormatError, load_label_map, read_exclusions

    if videos is not None and frames is not None:
        raise ValueError("give at most one of --videos DIR and --frames DIR")
    if frames is not None and not fps:
        raise ValueError("--frames needs --fps (the frame rate the frames were extracted at)")
    findings = _Findings()
    lm_name = label_map or "ava-v2.1"
    try:
        lm = load_label_map(lm_name)
    except (AvaFormatError, OSError) as err:
        findings.add("error", "parse", f"label map: {err}", lm_name)
        lm = None

    gt = _parse_csv(annotations, "gt", findings)
    _check_boxes(gt, annotations, findings)
    _check_duplicates(gt, annotations, findings, "gt")
    _check_ids(gt, annotations, lm, lm_name, findings)
    keyframes = _keyframes(gt)

    excluded = set()
    if exclusions is not None:
        try:
            excluded = read_exclusions(exclusions)
        except AvaFormatError as err:
            findings.add("error", "parse", f"exclusions: {err}", exclusions)

    per_class = {}
    if lm is not None:
        counts = {a: 0 for a in lm.ids}
        seen = set()
        for v, t, b, a in zip(gt.video_ids, gt.timestamps, gt.boxes, gt.actions):
            key = (v, t, tuple(b), a)
            if a in counts and (v, t) not in excluded and key not in seen:
                seen.add(key)
                counts[a] += 1
        per_class = {f"{a} {name}": counts[a] for a, name in zip(lm.ids, lm.names)}
        empty = [f"{a} {name}" for a, name in zip(lm.ids, lm.names) if counts[a] == 0]
        if gt.lines:
            for name in empty:
                findings.add("warning", "class-empty", "label-map class without a single "
                             f"instance in {annotations} (it cannot be learned or scored)",
                             name)

    det_report = None
    if detections is not None:
        det = _parse_csv(detections, "det", findings)
        _check_boxes(det, detections, findings)
        _check_duplicates(det, detections, findings, "det")
        _check_ids(det, detections, lm, lm_name, findings)
        scores = np.asarray([s for s in det.extra], np.float64)
        bad = np.flatnonzero((scores < 0) | (scores > 1))
        for i in bad:
            findings.add("warning", "score-range", "score outside [0, 1] (--det-threshold "
                         "compares scores with a probability)", f"{detections}:{det.lines[i]}")
        det_kf = _keyframes(det)
        det_keys = {(v, t) for v, ts in det_kf.items() for t in ts}
        gt_keys = {(v, t) for v, ts in keyframes.items() for t in ts}
        for v, t in sorted(gt_keys - det_keys):
            findings.add("warning", "no-detections", f"annotated keyframes without a person "
                         f"box in {detections} (eval scores nobody there)", f"{v},{t}")
        det_report = {"file": str(detections), "rows": det.total, "boxes": len(det.lines),
                      "videos": len(det_kf), "keyframes": len(det_keys),
                      "keyframes_not_annotated": len(det_keys - gt_keys),
                      "score_min": float(scores.min()) if len(scores) else None,
                      "score_max": float(scores.max()) if len(scores) else None}

    video_report = {}
    if videos is not None or frames is not None:
        named = str(annotations) + (f" / {detections}" if detections else "")
        wanted = dict(keyframes)
        if detections is not None:
            for v, ts in det_kf.items():
                wanted[v] = sorted(set(wanted.get(v, [])) | set(ts))
        from hgrnn.pipeline.video import VideoError
        try:
            video_report = _check_videos(wanted, videos, frames, fps, time_offset, clip_frames,
                                         frame_stride, findings, named)
        except VideoError as err:
            findings.add("error", "video-missing", str(err), videos or frames)

    items = findings.as_list()
    n_err = sum(f["count"] for f in items if f["level"] == "error")
    n_warn = sum(f["count"] for f in items if f["level"] == "warning")
    return {
        "ok": n_err == 0, "errors": n_err, "warnings": n_warn, "findings": items,
        "annotations": {"file": str(annotations), "rows": gt.total, "parsed": len(gt.lines),
                        "videos": len(keyframes), **_persons_per_keyframe(gt),
                        "excluded_keyframes": len({(v, t) for v, t in excluded
                                                   if t in set(keyframes.get(v, []))})},
        "detections": det_report,
        "label_map": None if lm is None else {"source": lm_name, "classes": len(lm),
                                              "ids": list(lm.ids)},
        "time_offset": time_offset,
        "videos": video_report,
        "instances_per_class": per_class,
    }


def format_report(report: dict) -> str:
    """The report as terminal lines: summary, per-video table, class counts, findings."""
    a = report["annotations"]
    lines = [f"annotations {a['file']}: {a['rows']} rows, {a['videos']} videos, "
             f"{a['keyframes']} keyframes, {a['persons']} persons (per keyframe min "
             f"{a['min']} / mean {a['mean']} / max {a['max']})"
             + (f", {a['excluded_keyframes']} keyframes excluded"
                if a["excluded_keyframes"] else "")]
    d = report["detections"]
    if d is not None:
        lines.append(f"detections {d['file']}: {d['boxes']} boxes on {d['keyframes']} "
                     f"keyframes of {d['videos']} videos, scores "
                     f"{d['score_min']}..{d['score_max']}")
    lm = report["label_map"]
    if lm is not None:
        lines.append(f"label map {lm['source']}: {lm['classes']} classes")
    if report["instances_per_class"]:
        lines.append("instances per class:")
        lines += [f"  {n:>7d}  {name}" for name, n in report["instances_per_class"].items()]
    if report["videos"]:
        lines.append(f"videos (--time-offset {report['time_offset']:g}):")
        lines.append(f"  {'video':20s} {'fps':>7s} {'seconds':>8s} {'size':>10s} "
                     f"{'keyframes':>9s} {'range':>11s} {'clip s':>6s} {'outside':>7s}")
        for vid, v in report["videos"].items():
            dur = "?" if v["duration"] is None else f"{v['duration']:.1f}"
            lines.append(f"  {vid[:20]:20s} {v['fps']:7g} {dur:>8s} "
                         f"{v['width']}x{v['height']:<5d} {v['keyframes']:9d} "
                         f"{str(v['first']) + '..' + str(v['last']):>11s} "
                         f"{v['clip_seconds']:6.2f} {v['out_of_range']:7d}")
    for f in report["findings"]:
        count = f" ({f['count']}x)" if f["count"] > 1 else ""
        where = (": " + ", ".join(f["examples"]) + (" ..." if f["count"] > len(f["examples"])
                                                    else "")) if f["examples"] else ""
        lines.append(f"{f['level'].upper()} [{f['code']}] {f['message']}{count}{where}")
    lines.append(f"check-data: {report['errors']} error(s), {report['warnings']} warning(s)"
                 + ("" if report["errors"] else " - ready for extract-features"))
    return "\n".join(lines)
