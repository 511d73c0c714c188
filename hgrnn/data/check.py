"""`hgrnn check-data`: everything wrong with a dataset, found before hours of extraction.

Reads the ground-truth CSV (and optionally the person-box CSV, the label map, the
excluded timestamps and the videos) once and reports every problem it finds, not only the
first one as the fast readers of `hgrnn.data.ava` do:

  errors (exit 1; extract-features or eval would fail or silently lose data)
    the row rules  each row that breaks a rule of :data:`hgrnn.data.csvrules.RULES` (the
                   rules every reader applies), FILE:LINE under the code of its first
                   broken rule, the reader's verdict: header, column-missing, columns,
                   not-integer, not-number, int-range, empty, ... (the line's text),
                   box-range (pixel coordinates, hint given), box-order (x, y, w, h
                   instead of x1, y1, x2, y2?), action-id, timestamp-range,
                   score-finite, score-float32, unknown-id (neither in the label map nor
                   an AVA id 1..80; with a label map of one's own, one holding an id
                   beyond 80, any id outside it); such rows take no part in the checks below
    parse          a label map or excluded-timestamps file that cannot be read
    label-map      a class name given to two ids (eval-csv keeps them apart as "NAME (id
                   N)" and warns; the models' outputs would not be told apart)
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
refuses the file (a line that breaks a parse rule, or a field pyarrow could read
differently) is it parsed again one line at a time (:func:`hgrnn.data.csvparse.scan_rows`,
the readers' slow reader, going on after a bad line). Either way the value rules are the
readers' own vectorised function (:func:`hgrnn.data.ava.row_verdicts`) and the checks
after the parse run vectorised on the arrays (a sort by keyframe, box and action finds the
repeats, persons per keyframe and instances per class), and both ways give the same report
(tested). Times on AVA train's 837K rows: BENCHMARKS.md, "check-data and the CSV readers".
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from hgrnn.data import csvparse, csvrules
from hgrnn.data.keyframes import (clip_seconds, clip_span_warning, describe_outside,
                                  fitting_offsets, mixed_span_warning, nice_offset,
                                  split_keyframes)
from hgrnn.data.video import VideoError, find_frame_folders, find_videos, probe
from hgrnn.data.ava import (_BOX, _GT_COLUMNS, _GT_WIDTHS, _RESULT_COLUMNS, _RESULT_WIDTHS,
                            AVA_ACTION_IDS, BOX_TOLERANCE, ava_ids_of,
                            VALUE_RULES, AvaFormatError,
                            load_label_map, read_exclusions, row_verdicts)

#: Findings keep this many example locations (FILE:LINE or video ids).
EXAMPLES = 5


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
    """The rows of one CSV that keep every row rule, as arrays in file order (N rows)."""
    lines: np.ndarray               # (N,) int64 line numbers
    codes: np.ndarray               # (N,) int64 video id codes into `vocab`
    vocab: list                     # video ids (str)
    timestamps: np.ndarray          # (N,) int64
    boxes: np.ndarray               # (N, 4) float64 x1, y1, x2, y2
    actions: np.ndarray             # (N,) int64, -1: none
    extra: np.ndarray               # (N,) person id int64, -1: none (gt) / score float64 (det)
    empty_keyframes: set            # {(video_id, timestamp)} of 2-column ground-truth rows
    total: int                      # non-blank lines


_WIDTHS = {"gt": _GT_WIDTHS, "det": _RESULT_WIDTHS}
_COLUMNS = {"gt": _GT_COLUMNS, "det": _RESULT_COLUMNS}
_RULE_KIND = {"gt": "gt", "det": "results"}     # the readers' name of the file kind


def _read_rows(path, kind: str, label_map, findings: _Findings) -> _Rows:
    """A CSV -> its rows that keep every rule of :data:`hgrnn.data.csvrules.RULES`; each
    row that breaks one is a finding under its first broken rule's code (FILE:LINE), as
    the readers would name it. The vectorised reader when it reads every row the way the
    row parse would, else the row parse; the value rules are the readers'
    (:func:`hgrnn.data.ava.row_verdicts`) either way."""
    got = _read_fast(path, kind)
    t, side, lines, total = got if got is not None else _parse_csv(path, kind, findings)
    ids = t.pop("_video_ids")                 # t["video_id"]: codes into these ids
    verdicts = row_verdicts(t, _RULE_KIND[kind], label_map)
    if got is not None and verdicts.any():
        _nan_spellings(t, verdicts, lines, path, kind, findings)
    if verdicts.any():
        _add_verdicts(t, verdicts, lines, path, label_map, findings)
        keep = np.flatnonzero(verdicts == 0)
        t = {name: v[keep] for name, v in t.items()}
        lines = lines[keep]
    codes, vocab = _video_codes(t["video_id"], ids)
    extra = t["person_id"] if kind == "gt" else t["score"]
    return _Rows(lines, codes, vocab, t["timestamp"],
                 np.stack([t[name] for name in _BOX], axis=1).reshape(-1, 4),
                 t["action_id"], extra, {(v, int(ts)) for _, (v, ts) in side}, total)


def _nan_spellings(t, verdicts, lines, path, kind, findings):
    """pyarrow reads NaN spellings that Python's float() refuses (``nan(1)``): a row read
    by pyarrow with a NaN and a value verdict is parsed again; one that breaks a parse
    rule is listed under it (its verdict set to -1)."""
    floats = [name for name, k in _COLUMNS[kind] if k == "float"]
    nan = np.zeros(len(verdicts), bool)
    for name in floats:
        nan |= np.isnan(t[name])
    rows = np.flatnonzero(nan & (verdicts != 0))
    if not len(rows):
        return
    texts = csvparse.read_lines(path, lines[rows])
    for row, line, text in zip(rows.tolist(), lines[rows].tolist(), texts):
        try:
            csvparse.parse_line(text, line, _WIDTHS[kind], _COLUMNS[kind])
        except csvparse.CsvLineError as e:
            findings.add("error", e.code, e.summary, f"{path}:{line}")
            verdicts[row] = -1


def _add_verdicts(t, verdicts, lines, path, label_map, findings):
    """The rows that break a value rule, as findings under the rule's code and message."""
    boxes = np.stack([t[name] for name in _BOX], axis=1)
    for k, code in enumerate(VALUE_RULES, 1):
        rows = np.flatnonzero(verdicts == k)
        if not len(rows):
            continue
        if code == "box-range":
            pixels = (boxes[rows] > 1 + BOX_TOLERANCE).any(axis=1)
            keys = np.where(pixels, 1, 0)
        elif code in ("action-id", "unknown-id"):
            keys = t["action_id"][rows]
        else:
            keys = np.zeros(len(rows), np.int64)
        for key in dict.fromkeys(keys.tolist()):            # in file order
            fields = {"hint": csvrules.PIXEL_HINT if key == 1 else "", "action": key,
                      "classes": None if label_map is None else len(label_map),
                      "own_map": label_map is not None and not ava_ids_of(label_map)}
            findings.add_rows("error", code, csvrules.message(code, detail=False, **fields),
                              path, lines[rows[keys == key]])


def _read_fast(path, kind: str):
    """The vectorised reader (pyarrow, :func:`hgrnn.data.csvparse.read_fast`) -> (columns,
    side rows, (N,) line numbers, non-blank lines), or None when :func:`_parse_csv` must
    read the file: pyarrow refused it (a bad line, or a field it could read differently), or line
    numbers that cannot be told by counting lines. The columns hold "video_id" as codes
    into the ids of "_video_ids" (both readers)."""
    separate = (2,) if kind == "gt" else ()
    got = csvparse.read_fast(path, _COLUMNS[kind], _WIDTHS[kind], separate, stack=_BOX)
    if got is None or isinstance(got, csvparse.Refused):
        return None
    t, side = got
    t.pop("_stack")
    t["video_id"], t["_video_ids"] = t.pop("_codes_video_id")
    lines = _row_lines(path, len(t["timestamp"]), len(side), separate)
    if lines is None:
        return None
    return t, side, lines, len(lines) + len(side)


def _video_codes(codes, ids):
    """(N,) codes into the ids of a reader -> ((N,) int64 codes into the sorted list of the
    ids the rows hold, that list): only the starts of runs of equal codes are looked at
    (rows come grouped by video)."""
    n = len(codes)
    if n == 0:
        return np.zeros(0, np.int64), []
    run_start = np.flatnonzero(np.concatenate([[True], codes[1:] != codes[:-1]]))
    vocab, inv = np.unique(np.asarray(ids)[codes[run_start]], return_inverse=True)
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


def _parse_csv(path, kind: str, findings: _Findings):
    """Row by row (:func:`hgrnn.data.csvparse.scan_rows`): each line that breaks a parse
    rule is a finding under the rule's code -> (columns, side rows, (N,) line numbers,
    non-blank lines) of the rows that parse, as :func:`_read_fast` returns them."""
    columns = _COLUMNS[kind]
    values = {name: [] for name, _ in columns}
    fill = [math.nan if k == "float" else -1 for _, k in columns]
    lines, side, total = [], [], 0
    for line, ncols, row in csvparse.scan_rows(path, _WIDTHS[kind], columns,
                                               separate=(2,) if kind == "gt" else ()):
        total += 1
        if ncols is None:
            findings.add("error", row.code, row.summary, f"{path}:{line}")
            continue
        if kind == "gt" and ncols == 2:
            side.append((line, row))
            continue
        lines.append(line)
        for (name, _), v in zip(columns, row + fill[ncols:]):
            values[name].append(v)
    t = {name: np.asarray(values[name], csvparse.kind_dtype(k)) for name, k in columns}
    t["_video_ids"], t["video_id"] = np.unique(t["video_id"], return_inverse=True)
    return t, side, np.asarray(lines, np.int64), total


def _check_boxes(rows: _Rows, path, findings: _Findings) -> None:
    """Zero-width or zero-height boxes (the rows left keep the box rules)."""
    b = rows.boxes
    empty = (b[:, 2] == b[:, 0]) | (b[:, 3] == b[:, 1])
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
        self.order = _packed_order(rows, bits)
        if self.order is None:
            self.order = np.lexsort(keys[::-1])
        changed = []
        for k in keys:
            k = k[self.order]
            change = np.ones(len(k), bool)              # (0,) when no row parsed
            change[1:] = k[1:] != k[:-1]
            changed.append(change)
        self.new_keyframe = changed[0] | changed[1]
        self.new_box = self.new_keyframe | changed[2] | changed[3] | changed[4] | changed[5]
        self.new_row = self.new_box | changed[6]
        self.keyframe = np.cumsum(self.new_keyframe) - 1


_HASH = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                  0x85EBCA77C2B2AE63], np.uint64)    # odd multipliers of the box hash


def _packed_order(rows: _Rows, bits):
    """The rows grouped as :class:`_Groups` wants them - keyframes in (video, timestamp)
    order, within a keyframe equal boxes together and equal (box, action) rows together in
    file order - by one stable sort of one uint64 per row: keyframe number, a hash of the
    box, action rank (rows come grouped by keyframe: the sort is about linear). None when
    the bits do not suffice or two boxes of a keyframe share a hash (the caller sorts on
    every key then)."""
    n = len(rows.lines)
    if not n:
        return None
    kf = (rows.codes << 32) | rows.timestamps        # the rows keep 0 <= timestamp < 2**32
    first = np.argsort(kf, kind="stable")
    new = np.ones(n, bool)
    new[1:] = kf[first][1:] != kf[first][:-1]
    keyframe = np.empty(n, np.uint64)
    keyframe[first] = np.cumsum(new) - 1
    a = rows.actions
    lo, hi = int(a.min()), int(a.max())
    if hi - lo >= 1 << 16:
        return None
    a_bits = max(1, (hi - lo).bit_length())
    k_bits = max(1, int(keyframe.max()).bit_length())
    h_bits = 64 - a_bits - k_bits
    if h_bits < 16:
        return None
    u = bits.view(np.uint64)
    h = u[:, 0] * _HASH[0]
    for k in range(1, 4):
        h ^= u[:, k] * _HASH[k]
    key = ((keyframe << np.uint64(64 - k_bits)) | ((h >> np.uint64(64 - h_bits)) <<
                                                   np.uint64(a_bits))
           | (a - lo).astype(np.uint64))
    order = np.argsort(key, kind="stable")
    group = key[order] >> np.uint64(a_bits)          # (keyframe, hash) in sorted order
    same = group[1:] == group[:-1]
    if (same & (bits[order][1:] != bits[order][:-1]).any(axis=1)).any():
        return None                                   # a hash shared by two boxes
    return order


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
    """AVA action ids outside the label map (the rows left hold no unknown id)."""
    if label_map is None:
        return
    a = rows.actions
    outside = np.flatnonzero((a != -1) & ~np.isin(a, np.asarray(label_map.ids, np.int64)))
    outside = outside[np.argsort(a[outside], kind="stable")]
    ids, starts = np.unique(a[outside], return_index=True)
    for action, index in zip(ids.tolist(), np.split(outside, starts[1:])):
        assert action in AVA_ACTION_IDS         # row_verdicts took the others
        message = (f"action id {action} is not in the label map {label_map_name} "
                   f"({len(label_map)} classes): every command skips these rows; if "
                   f"these are your own classes, pass --label-map FILE listing them")
        findings.add_rows("warning", "outside-map", message, path, rows.lines[index])


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
    mixed = mixed_span_warning({v: (e["fps"], e["clip_seconds"]) for v, e in report.items()},
                               clip_frames, frame_stride)
    if mixed:
        findings.add("warning", "clip-span-mixed", mixed)
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
    if videos is not None and frames is not None:
        raise ValueError("give at most one of --videos DIR and --frames DIR")
    if frames is not None and not fps:
        raise ValueError("--frames needs --fps (the frame rate the frames were extracted at)")
    findings = _Findings()
    lm_name = label_map or "ava-v2.1"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")     # a repeated name: the error below
            lm = load_label_map(lm_name)
    except (AvaFormatError, OSError) as err:
        findings.add("error", "parse", f"label map: {err}", lm_name)
        lm = None
    if lm is not None:
        for name in sorted({n for n in lm.names if lm.names.count(n) > 1}):
            ids = ", ".join(str(i) for i, n in zip(lm.ids, lm.names) if n == name)
            findings.add("error", "label-map", f"class name {name!r} given to ids {ids}: "
                         "one class, one name (the results could not tell them apart)",
                         lm_name)

    gt = _read_rows(annotations, "gt", lm, findings)
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
        det = _read_rows(detections, "det", lm, findings)
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
