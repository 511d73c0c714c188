"""`hgrnn check-data`: everything wrong with a dataset, found before hours of extraction.

Reads the ground-truth CSV (and optionally the person-box CSV, the label map, the
excluded timestamps and the videos) once and reports every problem it finds, not only the
first one as the fast readers of `hgrnn.data.ava` do:

  errors (exit 1; extract-features or eval would fail or silently lose data)
    parse          rows that fail to parse (FILE:LINE), wrong column count, a header row,
                   integers beyond 64 bits
    unknown-id     action ids neither in the label map nor AVA ids (1..80), or not in a
                   label map of one's own (one with ids beyond 80): every reader refuses them
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

`check_data` returns a JSON-ready dict; `format_report` renders it for a terminal. Each
CSV is first read by the vectorised reader (pyarrow, :func:`hgrnn.data.csvparse.read_fast`)
into arrays, with each row's line counted from the file's bytes; only when that reader
refuses the file or a row holds a problem of the parse kind (NaN coordinate, missing or
non-positive action id, ...) is the file parsed again one line at a time with Python's
string functions, which reports every such problem with its line. Either way the checks
after the parse run vectorised on the arrays (a sort by keyframe, box and action finds the
repeats, persons per keyframe and instances per class), and both ways give the same report
(tested). AVA train's 837K rows, clean: 1.9 s against 16.7 s for the row-by-row version
and 0.6 s for the reader alone; with one bad line: 10 s (shared 2-core machine,
BENCHMARKS.md).
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

    def add_rows(self, level, code, message, path, lines):
        """One finding for each line of `lines` ((k,) ints, file order), as add() k times."""
        if len(lines):
            self.add(level, code, message, f"{path}:{lines[0]}")
            f = self.items[(code, message)]
            f.count += len(lines) - 1
            f.examples += [f"{path}:{n}" for n in lines[1:EXAMPLES - len(f.examples) + 1]]

    def as_list(self) -> list[dict]:
        order = {"error": 0, "warning": 1}
        items = sorted(self.items.values(), key=lambda f: order[f.level])
        return [{"level": f.level, "code": f.code, "message": f.message, "count": f.count,
                 "examples": f.examples} for f in items]


@dataclass
class _Rows:
    """The rows of one CSV that parsed, as arrays in file order (N rows)."""
    lines: np.ndarray               # (N,) int64 line numbers
    codes: np.ndarray               # (N,) int64 video id codes into `vocab`
    vocab: list                     # video ids (str)
    timestamps: np.ndarray          # (N,) int64
    boxes: np.ndarray               # (N, 4) float64 x1, y1, x2, y2
    actions: np.ndarray             # (N,) int64, -1: none
    extra: np.ndarray               # (N,) person id int64, -1: none (gt) / score float64 (det)
    empty_keyframes: set            # {(video_id, timestamp)} of 2-column ground-truth rows
    total: int                      # non-blank lines


_INT64 = (int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max))


def _read_rows(path, kind: str, findings: _Findings) -> _Rows:
    """A CSV -> its rows: the vectorised reader when it reads every row the way the row
    parse would and no row has a problem the parse reports; else the row parse."""
    rows = _read_fast(path, kind)
    return rows if rows is not None else _parse_csv(path, kind, findings)


def _read_fast(path, kind: str):
    """The vectorised reader (pyarrow, :func:`hgrnn.data.csvparse.read_fast`) -> _Rows, or
    None when :func:`_parse_csv` must read the file: pyarrow refused it (a bad line, or a
    field it could read differently), a value the parse reports (NaN or infinite
    coordinate, missing / non-positive action id), a video id with blanks the parse would
    strip, a BOM, or line numbers that cannot be told by counting lines."""
    from hgrnn.data import csvparse
    from hgrnn.data.ava import _BOX, _ROW_COLUMNS

    with open(path, "rb") as f:
        if f.read(3) == b"\xef\xbb\xbf":
            return None                 # the parse keeps the BOM in the first video id
    # the parse's columns: a ground-truth person_id must not be empty
    columns = _ROW_COLUMNS + [("person_id", "int") if kind == "gt" else ("score", "float")]
    separate = (2,) if kind == "gt" else ()
    got = csvparse.read_fast(path, columns, (7, 8) if kind == "gt" else (8,), separate,
                             stack=_BOX)
    if got is None or isinstance(got, csvparse.Refused):
        return None
    t, side = got
    boxes, actions, extra = t["_stack"], t["action_id"], t[columns[7][0]]
    if (not np.isfinite(boxes).all() or (actions < -1).any() or (actions == 0).any()
            or (kind == "gt" and (actions == -1).any())
            or (kind == "det" and not np.isfinite(extra).all())):
        return None
    codes, vocab = _video_codes(t["video_id"])
    empty = {(v, int(ts)) for _, (v, ts) in side}
    if any(v != v.strip() for v in vocab) or any(v != v.strip() for v, _ in empty):
        return None
    lines = _row_lines(path, len(actions), len(side), separate)
    if lines is None:
        return None
    return _Rows(lines, codes, vocab, t["timestamp"], np.ascontiguousarray(boxes), actions,
                 extra, empty, len(actions) + len(side))


def _video_codes(video_ids):
    """(N,) str array -> ((N,) int64 codes, vocabulary list): sorts only the starts of runs
    of equal ids (rows come grouped by video)."""
    n = len(video_ids)
    if n == 0:
        return np.zeros(0, np.int64), []
    run_start = np.flatnonzero(np.concatenate([[True], video_ids[1:] != video_ids[:-1]]))
    vocab, inv = np.unique(video_ids[run_start], return_inverse=True)
    codes = np.repeat(inv.ravel().astype(np.int64), np.diff(np.append(run_start, n)))
    return codes, vocab.tolist()


def _row_lines(path, n_rows, n_side, separate):
    """(n_rows,) int64 line numbers of the rows pyarrow read (blank lines and rows of a
    width in `separate` skipped), counted from the file's bytes; None if the counts do not
    match the rows read."""
    buf = np.fromfile(path, np.uint8)
    if not len(buf):
        return None
    nl = np.flatnonzero(buf == 10)
    starts = np.concatenate([[0], nl + 1])
    ends = np.concatenate([nl, [len(buf)]])
    if starts[-1] == len(buf):                     # nothing after the last LF
        starts, ends = starts[:-1], ends[:-1]
    length = ends - starts
    first = buf[np.minimum(starts, len(buf) - 1)]
    blank = (length == 0) | ((length == 1) & (first == 13))        # "" or a CRLF's CR
    lines = np.flatnonzero(~blank)
    if len(lines) != n_rows + n_side:
        return None
    if n_side:
        commas = np.flatnonzero(buf == 44)
        ncols = (np.searchsorted(commas, ends[lines]) - np.searchsorted(commas, starts[lines])
                 + 1)
        lines = lines[~np.isin(ncols, separate)]
        if len(lines) != n_rows:
            return None
    return (lines + 1).astype(np.int64)


def _parse_csv(path, kind: str, findings: _Findings) -> _Rows:
    """Row by row: every parse problem with its line. kind "gt": 2, 7 or 8 columns;
    "det": 8 columns (action empty or -1, score)."""
    allowed = (2, 7, 8) if kind == "gt" else (8,)
    expect = ("video_id,timestamp,x1,y1,x2,y2,action_id[,person_id]" if kind == "gt"
              else "video_id,timestamp,x1,y1,x2,y2,action_id (empty or -1),score")
    lines, codes, timestamps, boxes, actions, extras = [], [], [], [], [], []
    vocab: dict = {}
    empty_keyframes = set()
    total = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            text = line.strip()
            if not text:
                continue
            total += 1
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
            if not _INT64[0] <= ts <= _INT64[1]:
                findings.add("error", "parse", f"timestamp {cols[1]!r} is out of range", where)
                continue
            if not cols[0]:
                findings.add("error", "parse", "empty video_id", where)
                continue
            if len(cols) == 2:
                empty_keyframes.add((cols[0], ts))
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
            if action > _INT64[1]:
                findings.add("error", "parse", f"action_id {cols[6]!r} is out of range", where)
                continue
            extra = -1
            if len(cols) == 8:
                what = "person_id" if kind == "gt" else "score"
                try:
                    extra = int(cols[7]) if kind == "gt" else float(cols[7])
                except ValueError:
                    findings.add("error", "parse", f"{what} {cols[7]!r} is not a number", where)
                    continue
                if kind == "gt" and not _INT64[0] <= extra <= _INT64[1]:
                    findings.add("error", "parse", f"{what} {cols[7]!r} is out of range",
                                 where)
                    continue
            lines.append(n)
            codes.append(vocab.setdefault(cols[0], len(vocab)))
            timestamps.append(ts)
            boxes.append(box)
            actions.append(action)
            extras.append(extra)
    return _Rows(np.asarray(lines, np.int64), np.asarray(codes, np.int64), list(vocab),
                 np.asarray(timestamps, np.int64),
                 np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(actions, np.int64),
                 np.asarray(extras, np.int64 if kind == "gt" else np.float64),
                 empty_keyframes, total)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _check_boxes(rows: _Rows, path, findings: _Findings) -> None:
    if not len(rows.lines):
        return
    b = rows.boxes
    tol = COORD_TOLERANCE
    outside = ~((b >= -tol) & (b <= 1 + tol)).all(axis=1)
    if outside.any():
        pixels = (b[outside] > 1 + tol).any(axis=1).mean() > 0.5
        hint = (" (pixel coordinates? divide x by the frame width and y by its height)"
                if pixels else "")
        findings.add_rows("error", "box-range", "box coordinate outside [0, 1]: boxes are "
                          "normalised x1,y1,x2,y2" + hint, path, rows.lines[outside])
    order = ~outside & ((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1]))
    findings.add_rows("error", "box-order", "x2 < x1 or y2 < y1 (x, y, width, height instead "
                      "of x1, y1, x2, y2?)", path, rows.lines[order])
    empty = ~outside & ~order & ((b[:, 2] == b[:, 0]) | (b[:, 3] == b[:, 1]))
    findings.add_rows("warning", "box-empty", "zero-width or zero-height box", path,
                      rows.lines[empty])


class _Groups:
    """Rows sorted by (video, timestamp, box, action): equal keyframes, person boxes and
    rows are runs. order: (N,) row of each sorted position (stable: the first row of a run
    comes first); new_keyframe / new_box / new_row: (N,) bool, a run starts there;
    keyframe: (N,) int64 keyframe number of each sorted position."""

    def __init__(self, rows: _Rows):
        bits = (rows.boxes + 0.0).view(np.int64)        # + 0.0: -0.0 equals 0.0
        keys = [rows.codes, rows.timestamps] + [bits[:, k] for k in range(4)] + [rows.actions]
        self.order = np.lexsort(keys[::-1])
        changed = []
        for k in keys:
            k = k[self.order]
            changed.append(np.concatenate([[True], k[1:] != k[:-1]]))
        self.new_keyframe = changed[0] | changed[1]
        self.new_box = self.new_keyframe | changed[2] | changed[3] | changed[4] | changed[5]
        self.new_row = self.new_box | changed[6]
        self.keyframe = np.cumsum(self.new_keyframe) - 1


def _check_duplicates(rows: _Rows, groups: _Groups, path, findings: _Findings,
                      kind: str) -> None:
    repeats = np.sort(groups.order[~groups.new_row])
    two_boxes = np.zeros(0, np.int64)
    if kind == "gt":
        person = np.flatnonzero(rows.extra >= 0)
        key = [rows.codes[person], rows.timestamps[person], rows.extra[person]]
        sort = np.lexsort(key[::-1])                    # stable: a person's first row first
        order = person[sort]
        new = np.zeros(len(order), bool)
        new[:1] = True
        for k in key:
            new[1:] |= k[sort][1:] != k[sort][:-1]
        first = order[np.maximum.accumulate(np.where(new, np.arange(len(order)), 0))]
        differs = (rows.boxes[order] != rows.boxes[first]).any(axis=1)
        two_boxes = np.sort(order[differs])
    adds = [(repeats, "row repeats an earlier row (same keyframe, box and action)"),
            (two_boxes, "person_id with two different boxes in one keyframe")]
    # a finding is listed where it was first seen: the one with the earlier row first
    adds.sort(key=lambda a: a[0][0] if len(a[0]) else math.inf)
    for index, message in adds:
        findings.add_rows("warning", "duplicate", message, path, rows.lines[index])


def _check_ids(rows: _Rows, path, label_map, label_map_name, findings: _Findings) -> None:
    from hgrnn.data.ava import ava_ids_of

    if label_map is None:
        return
    a = rows.actions
    outside = np.flatnonzero((a != -1) & ~np.isin(a, np.asarray(label_map.ids, np.int64)))
    outside = outside[np.argsort(a[outside], kind="stable")]
    ids, starts = np.unique(a[outside], return_index=True)
    for action, index in zip(ids.tolist(), np.split(outside, starts[1:])):
        if action in ava_ids_of(label_map):
            message = (f"action id {action} is not in the label map {label_map_name} "
                       f"({len(label_map)} classes): every command skips these rows; if "
                       f"these are your own classes, pass --label-map FILE listing them")
            level, code = "warning", "outside-map"
        elif not ava_ids_of(label_map):
            message = (f"action id {action} is not in the label map {label_map_name} "
                       f"({len(label_map)} classes of your own, so 1..80 are not AVA "
                       f"classes): a typo? extract-features and eval-csv refuse it")
            level, code = "error", "unknown-id"
        else:
            message = (f"action id {action} is neither in the label map {label_map_name} "
                       f"nor an AVA action (1..80): extract-features and eval-csv refuse it; "
                       f"pass --label-map FILE with your own ids")
            level, code = "error", "unknown-id"
        findings.add_rows(level, code, message, path, rows.lines[index])


def _keyframes(rows: _Rows, groups: _Groups) -> dict:
    """video id -> sorted keyframe timestamps (Python ints)."""
    first = groups.order[groups.new_keyframe]       # sorted by video code, then timestamp
    codes, ts = rows.codes[first], rows.timestamps[first].tolist()
    bounds = np.flatnonzero(np.diff(codes)) + 1
    out = {}
    for lo, hi in zip(np.concatenate([[0], bounds]).tolist(),
                      np.concatenate([bounds, [len(codes)]]).tolist()):
        if hi > lo:
            out[rows.vocab[codes[lo]]] = ts[lo:hi]
    empty: dict = {}
    for v, t in rows.empty_keyframes:
        empty.setdefault(v, set()).add(t)
    for v, ts in empty.items():
        out[v] = sorted(ts.union(out.get(v, ())))
    return out


def _persons_per_keyframe(rows: _Rows, groups: _Groups, keyframes: dict) -> dict:
    persons = np.bincount(groups.keyframe[groups.new_box],
                          minlength=int(groups.new_keyframe.sum()))
    n_keyframes = sum(len(ts) for ts in keyframes.values())
    values = np.concatenate([persons, np.zeros(n_keyframes - len(persons), np.int64)])
    values = values if len(values) else np.zeros(1, np.int64)
    return {"keyframes": n_keyframes, "persons": int(values.sum()), "min": int(values.min()),
            "mean": round(float(values.mean()), 2), "max": int(values.max())}


def _check_videos(keyframes: dict, videos, frames, fps, time_offset, clip_frames, frame_stride,
                  findings: _Findings, named_by: str) -> dict:
    from hgrnn.data.keyframes import (clip_seconds, clip_span_warning, describe_outside,
                                          fitting_offsets, nice_offset, split_keyframes)
    from hgrnn.data.video import VideoError, find_frame_folders, find_videos, probe

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


def _instances(rows: _Rows, groups: _Groups, ids, excluded) -> dict:
    """action id -> distinct (keyframe, box, action) rows of `ids` outside `excluded`."""
    first = groups.order[groups.new_row]
    if excluded:
        kf = groups.order[groups.new_keyframe]
        out = np.asarray([(rows.vocab[v], t) in excluded
                          for v, t in zip(rows.codes[kf].tolist(),
                                          rows.timestamps[kf].tolist())], bool)
        first = first[~out[groups.keyframe[groups.new_row]]]
    actions = rows.actions[first]
    return {a: int(np.count_nonzero(actions == a)) for a in ids}


def _excluded_keyframes(excluded, keyframes) -> int:
    sets: dict = {}
    return sum(1 for v, t in excluded
               if t in sets.setdefault(v, set(keyframes.get(v, ()))))


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

    gt = _read_rows(annotations, "gt", findings)
    gt_groups = _Groups(gt)
    _check_boxes(gt, annotations, findings)
    _check_duplicates(gt, gt_groups, annotations, findings, "gt")
    _check_ids(gt, annotations, lm, lm_name, findings)
    keyframes = _keyframes(gt, gt_groups)

    excluded = set()
    if exclusions is not None:
        try:
            excluded = read_exclusions(exclusions)
        except AvaFormatError as err:
            findings.add("error", "parse", f"exclusions: {err}", exclusions)

    per_class = {}
    if lm is not None:
        counts = _instances(gt, gt_groups, lm.ids, excluded)
        per_class = {f"{a} {name}": counts[a] for a, name in zip(lm.ids, lm.names)}
        empty = [f"{a} {name}" for a, name in zip(lm.ids, lm.names) if counts[a] == 0]
        if len(gt.lines):
            for name in empty:
                findings.add("warning", "class-empty", "label-map class without a single "
                             f"instance in {annotations} (it cannot be learned or scored)",
                             name)

    det_report = None
    if detections is not None:
        det = _read_rows(detections, "det", findings)
        det_groups = _Groups(det)
        _check_boxes(det, detections, findings)
        _check_duplicates(det, det_groups, detections, findings, "det")
        _check_ids(det, detections, lm, lm_name, findings)
        scores = det.extra
        findings.add_rows("warning", "score-range", "score outside [0, 1] (--det-threshold "
                          "compares scores with a probability)", detections,
                          det.lines[(scores < 0) | (scores > 1)])
        det_kf = _keyframes(det, det_groups)
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
        from hgrnn.data.video import VideoError
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
                        "videos": len(keyframes),
                        **_persons_per_keyframe(gt, gt_groups, keyframes),
                        "excluded_keyframes": _excluded_keyframes(excluded, keyframes)},
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
