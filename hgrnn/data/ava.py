"""AVA file formats: label maps, annotation / result CSVs, excluded timestamps.

Everything here is a pure function of a file (or of arrays) returning numpy arrays inside
small frozen dataclasses. Bad input raises :class:`AvaFormatError`, whose message starts
``FILE:LINE: `` so that a user can jump straight to the offending row.

Formats (no header; coordinates normalised to [0, 1]; one row per box AND action):

* ground truth / annotations: ``video_id,timestamp,x1,y1,x2,y2,action_id[,person_id]``
  (the 7-column form without person id is what e.g. the pose-class subsets use). A 2-column
  row ``video_id,timestamp`` marks an annotated keyframe without persons (AVA 2020 files).
* results / detections: ``video_id,timestamp,x1,y1,x2,y2,action_id,score``; in a person-box
  file (the widely shared detection CSVs) ``action_id`` is empty or ``-1``. A 9th column,
  a person (track) id written by ``hgrnn track``, is read into ``person_ids``.
* excluded timestamps: ``video_id,timestamp``.
* label map: a ``.pbtxt`` of ``item { name: "..." id: N }`` (or ``label { name: ...
  label_id: N }``) blocks, a plain text file with one ``id name`` / ``id: name`` per line,
  or a packaged name (:data:`PACKAGED_LABEL_MAPS`).

Keyframe keys are ``(video_id, timestamp)`` with integer timestamps (``0902`` == ``902``).

Files are read by pyarrow's CSV reader and the values checked vectorised; when pyarrow
cannot read a file, or a check fails, the slow line-by-line reader of
:mod:`hgrnn.data.csvparse` goes through it and reports the first bad line (the rules, and
why two readers: see there). The rules a row must keep, with their codes and messages, are
the table of :mod:`hgrnn.data.csvrules`; :func:`row_verdicts` checks its value rules for
every reader and for ``check-data``.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from dataclasses import dataclass
from importlib import resources

import numpy as np

from hgrnn.console import progress_bar
from hgrnn.data import csvparse, csvrules

__all__ = [
    "AvaFormatError", "LabelMap", "load_label_map", "PACKAGED_LABEL_MAPS",
    "AvaRows", "read_annotations", "read_results", "read_exclusions", "write_results",
    "write_annotations",
    "PersonRows", "group_persons", "keyframe_index", "BOX_TOLERANCE", "row_verdicts",
    "VALUE_RULES",
]

#: packaged label-map names -> file in ``hgrnn/data/label_maps``
PACKAGED_LABEL_MAPS = {
    "ava-v2.1": "ava_v2.1.pbtxt",            # 60 evaluated classes (2018 challenge)
    "ava-v2.2": "ava_v2.2.pbtxt",            # all 80 classes
    "ava-v2.2-2019": "ava_v2.2_activitynet_2019.pbtxt",  # 60 evaluated classes (2019+)
}

#: action ids that exist in AVA (v2.2 has 1..80). An id outside the label map but in this
#: range is an AVA class that the map does not evaluate: skipped and counted. Any other id
#: is an error (wrong column order, wrong file).
AVA_ACTION_IDS = range(1, 81)


def ava_ids_of(label_map) -> range:
    """The ids read as AVA classes with `label_map`: 1..80 for a map within them (AVA's
    or a subset, whatever the names: rows of other AVA ids are skipped), none for a map of
    one's own, one holding an id beyond 80 (e.g. 101, 102, ... as `convert` and
    `render-example` make): there an id outside the map is a typo, an error."""
    return AVA_ACTION_IDS if max(label_map.ids, default=0) <= AVA_ACTION_IDS[-1] else range(0)


#: box coordinates may leave [0, 1] by this much (rounding in third-party writers); the
#: one definition, for the CSV readers, check-data and the feature store
BOX_TOLERANCE = 1e-3


class AvaFormatError(ValueError):
    """Malformed AVA input; the message starts with ``FILE:LINE: ``. For a CSV row that
    breaks a rule of :data:`hgrnn.data.csvrules.RULES`: ``code`` (the rule's) and
    ``line``; else both None."""

    def __init__(self, message, code=None, line=None):
        super().__init__(message)
        self.code, self.line = code, line


# ----------------------------------------------------------------------------------------
# label maps
# ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LabelMap:
    """The evaluated classes, in the order of label columns.

    ids: AVA action ids (e.g. 1, 3, 4, ... for v2.1); names: their names.
    """

    ids: tuple[int, ...]
    names: tuple[str, ...]

    def __post_init__(self):
        object.__setattr__(self, "ids", tuple(int(i) for i in self.ids))
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        if len(self.ids) != len(self.names):
            raise ValueError(f"LabelMap: {len(self.ids)} ids but {len(self.names)} names")
        if len(set(self.ids)) != len(self.ids):
            dup = sorted({i for i in self.ids if self.ids.count(i) > 1})
            raise ValueError(f"LabelMap: duplicate action ids {dup}")

    def __len__(self) -> int:
        return len(self.ids)

    def column(self) -> dict[int, int]:
        """action id -> column index."""
        return {a: c for c, a in enumerate(self.ids)}

    def to_json(self) -> str:
        """JSON list of ``[id, name]`` pairs."""
        return json.dumps([[i, n] for i, n in zip(self.ids, self.names)])

    @classmethod
    def from_json(cls, text: str) -> "LabelMap":
        pairs = json.loads(text)
        return cls(tuple(int(p[0]) for p in pairs), tuple(str(p[1]) for p in pairs))


def load_label_map(path_or_name: str = "ava-v2.1") -> LabelMap:
    """Load a label map from a ``.pbtxt``, a plain ``id name`` / ``id: name`` text file, or a
    packaged name: ``"ava-v2.1"`` (60 classes, default), ``"ava-v2.2"`` (80),
    ``"ava-v2.2-2019"`` (60). Class order is file order."""
    name = str(path_or_name)
    if name in PACKAGED_LABEL_MAPS:
        ref = resources.files("hgrnn.data").joinpath("label_maps", PACKAGED_LABEL_MAPS[name])
        return _parse_label_map(ref.read_text(encoding="utf-8"), f"<packaged {name}>")
    if not os.path.exists(name):
        raise FileNotFoundError(
            f"label map {name!r}: no such file, and not a packaged name "
            f"({', '.join(PACKAGED_LABEL_MAPS)})")
    with open(name, encoding="utf-8") as f:
        return _parse_label_map(f.read(), name)


def _parse_label_map(text: str, source: str) -> LabelMap:
    def line_of(pos):
        return text.count("\n", 0, pos) + 1

    ids, names, lines = [], [], []
    if re.search(r"^\s*\w+\s*\{", text, re.M):  # protobuf text: item { ... } blocks
        for block in re.finditer(r"(\w+)\s*\{([^}]*)\}", text):
            body = block.group(2)
            m_name = re.search(r"\bname\s*:\s*\"((?:[^\"\\]|\\.)*)\"", body)
            m_id = re.search(r"\b(?:label_)?id\s*:\s*(-?\d+)", body)
            if not m_name or not m_id:
                raise AvaFormatError(f"{source}:{line_of(block.start())}: label-map block "
                                     "needs both name: \"...\" and id: N")
            ids.append(int(m_id.group(1)))
            names.append(m_name.group(1).replace('\\"', '"'))
            lines.append(line_of(block.start()))
        if not ids:
            raise AvaFormatError(f"{source}:1: no item {{ name: ... id: ... }} blocks")
    else:  # one "id name" or "id: name" per line
        for ln, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            m = re.match(r"(-?\d+)\s*[:,]?\s*(.+)$", line)
            if not m:
                raise AvaFormatError(f"{source}:{ln}: expected 'id name' or 'id: name', "
                                     f"got {line!r}")
            ids.append(int(m.group(1)))
            names.append(m.group(2).strip().strip('"'))
            lines.append(ln)
        if not ids:
            raise AvaFormatError(f"{source}:1: empty label map")
    seen, seen_names = {}, {}
    for k, (i, name) in enumerate(zip(ids, names)):
        if not _LABEL_ID_RANGE[0] <= i <= _LABEL_ID_RANGE[1]:
            raise AvaFormatError(f"{source}:{lines[k]}: action id {i} is out of range "
                                 "(a 64-bit integer; AVA's are 1..80)")
        if i in seen:
            raise AvaFormatError(f"{source}:{lines[k]}: action id {i} appears twice "
                                 f"({names[seen[i]]!r} and {name!r})")
        if name in seen_names:          # mmaction2's sample map has such (kept apart)
            warnings.warn(f"{source}:{lines[k]}: class name {name!r} appears twice (ids "
                          f"{ids[seen_names[name]]} and {i}): results name them by id too",
                          stacklevel=3)
        seen[i] = k
        seen_names.setdefault(name, k)
    return LabelMap(tuple(ids), tuple(names))


_LABEL_ID_RANGE = (-(1 << 63), (1 << 63) - 1)       # what the int64 action_id column holds


# ----------------------------------------------------------------------------------------
# rows
# ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AvaRows:
    """One CSV row per entry, in file order (N rows).

    video_ids: (N,) numpy unicode; timestamps: (N,) int64 seconds;
    boxes: (N, 4) float32 x1, y1, x2, y2 in [0, 1];
    action_ids: (N,) int64, -1 for a person-box row without action;
    person_ids: (N,) int64 (ground truth; -1 where the file has no person column) or None;
    scores: (N,) float32 (results / detections) or None;
    skipped: reason -> number of rows skipped on purpose.

    Extra fields (all optional, absent for rows built in memory):
    boxes64 / scores64: the same values as parsed in float64, so the evaluator computes
    IoUs and score order exactly as the official (float64) evaluator does;
    empty_video_ids / empty_timestamps: (E,) keyframes marked annotated-but-empty by
    2-column ground-truth rows (AVA 2020 format);
    source: the file the rows came from (for messages);
    video_codes: ((N,) int codes, (V,) str vocabulary) with vocabulary[codes] ==
    video_ids, from the readers: :func:`keyframe_index` compares these integers instead of
    the strings (faster for millions of rows).

    The readers leave video_ids, boxes and scores None and give video_codes, boxes64 and
    scores64: the three are made from those on first access (then kept), so that code
    that never looks at them (the evaluator) does not pay for them (5.6M rows: 0.36 GB).
    """

    video_ids: np.ndarray
    timestamps: np.ndarray
    boxes: np.ndarray
    action_ids: np.ndarray
    person_ids: np.ndarray | None
    scores: np.ndarray | None
    skipped: dict
    boxes64: np.ndarray | None = None
    scores64: np.ndarray | None = None
    empty_video_ids: np.ndarray | None = None
    empty_timestamps: np.ndarray | None = None
    source: str | None = None
    video_codes: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.timestamps)

    def take(self, index) -> "AvaRows":
        """Rows selected by a boolean mask or an index array (skipped/empty kept)."""
        def t(a):
            return None if a is None else a[index]
        codes = None if self.video_codes is None else \
            (self.video_codes[0][index], self.video_codes[1])
        made = self.__dict__                    # the derived fields as they are (None: not made)
        return AvaRows(t(made["video_ids"]), self.timestamps[index], t(made["boxes"]),
                       self.action_ids[index], t(self.person_ids), t(made["scores"]),
                       dict(self.skipped), t(self.boxes64), t(self.scores64),
                       self.empty_video_ids, self.empty_timestamps, self.source, codes)

    @classmethod
    def from_arrays(cls, video_ids, timestamps, boxes, action_ids, person_ids=None,
                    scores=None) -> "AvaRows":
        """Build rows in memory (casts to the documented dtypes)."""
        return cls(np.asarray(video_ids, dtype=str), np.asarray(timestamps, np.int64),
                   np.asarray(boxes, np.float32).reshape(-1, 4),
                   np.asarray(action_ids, np.int64),
                   None if person_ids is None else np.asarray(person_ids, np.int64),
                   None if scores is None else np.asarray(scores, np.float32), {})


def _derived(name, source, make):
    """A field of AvaRows that may be given as None and is then made from field `source`
    on first access (and kept; None stays None where `source` is None too)."""
    def get(rows):
        value = rows.__dict__[name]
        if value is None:
            origin = getattr(rows, source)
            if origin is not None:
                value = make(origin)
                rows.__dict__[name] = value     # frozen to users; a cache, made once
        return value

    def set_once(rows, value):                  # the dataclass __init__ only
        rows.__dict__[name] = value

    return property(get, set_once, doc=f"{name} (made from {source} where not given)")


# after @dataclass has made __init__ (which sets them through these properties)
AvaRows.video_ids = _derived("video_ids", "video_codes", lambda c: c[1][c[0]])
AvaRows.boxes = _derived("boxes", "boxes64", lambda b: b.astype(np.float32))
AvaRows.scores = _derived("scores", "scores64", lambda s: s.astype(np.float32))


# ----------------------------------------------------------------------------------------
# keyframe keys
# ----------------------------------------------------------------------------------------

def keyframe_index(video_ids, timestamps, vocabulary=None, codes=None):
    """Integer key per row for (video_id, timestamp) pairs.

    Returns (keys (N,) int64, vocabulary): keys are equal iff (video, timestamp) are; pass
    the returned vocabulary (sorted unique video ids) to index a second set of rows in the
    same key space (ids missing from it get negative keys, unequal to any first-set key).
    Key = video code << 32 | timestamp; fast for rows grouped by video (only the starts
    of runs of equal ids are sorted). codes: the rows' ``AvaRows.video_codes`` (or None),
    the same keys from integer codes, without comparing strings (video_ids may then be
    None)."""
    vids = np.asarray(video_ids if codes is None else codes[1])
    ts = np.asarray(timestamps, np.int64)
    n = len(ts)
    if n == 0:
        return np.zeros(0, np.int64), (vids[:0] if vocabulary is None else vocabulary)
    if codes is not None:               # runs of equal codes; their ids from the vocabulary
        code, code_vocab = codes
        run_start = np.flatnonzero(np.concatenate([[True], code[1:] != code[:-1]]))
        uniq, inv = np.unique(np.asarray(code_vocab)[code[run_start]], return_inverse=True)
    else:
        run_start = np.flatnonzero(np.concatenate([[True], vids[1:] != vids[:-1]]))
        uniq, inv = np.unique(vids[run_start], return_inverse=True)
    if vocabulary is None:
        vocabulary, vcode = uniq, np.arange(len(uniq), dtype=np.int64)
    else:
        vocabulary = np.asarray(vocabulary)
        pos = np.searchsorted(vocabulary, uniq) if len(vocabulary) else np.zeros(len(uniq), int)
        pos = np.minimum(pos, max(len(vocabulary) - 1, 0))
        found = (vocabulary[pos] == uniq) if len(vocabulary) else np.zeros(len(uniq), bool)
        vcode = np.where(found, pos, -1 - np.arange(len(uniq))).astype(np.int64)
    keys = np.repeat(vcode[inv.ravel()] << 32, np.diff(np.append(run_start, n)))
    if ts.min() < 0 or ts.max() > 0xFFFFFFFF:
        ts = ts & 0xFFFFFFFF
    keys += ts
    return keys, vocabulary


# ----------------------------------------------------------------------------------------
# readers / writers
# ----------------------------------------------------------------------------------------

_GT_WIDTHS = {8: "with person_id", 7: "without person_id", 2: "empty keyframe"}
_RESULT_WIDTHS = {8: "video_id,timestamp,x1,y1,x2,y2,action_id,score",
                  9: "...,score,person_id (hgrnn track)"}
_BOX = ("x1", "y1", "x2", "y2")
_ROW_COLUMNS = [("video_id", "str"), ("timestamp", "int"), ("x1", "float"), ("y1", "float"),
                ("x2", "float"), ("y2", "float"), ("action_id", "int?")]
_GT_COLUMNS = _ROW_COLUMNS + [("person_id", "int?")]
_RESULT_COLUMNS = _ROW_COLUMNS + [("score", "float"), ("person_id", "int?")]


def read_exclusions(path) -> set[tuple[str, int]]:
    """Excluded-timestamps CSV (``video_id,timestamp`` rows) -> {(video_id, timestamp)}."""
    t, _ = _read_checked(path, {2: "video_id,timestamp"},
                         [("video_id", "str"), ("timestamp", "int")], None, None, False)
    return set(zip(_strings(t, "video_id").tolist(), t["timestamp"].tolist()))


def _strings(t, name):
    """A string column of :func:`_read_checked`'s columns: the slow reader's strings or
    the fast reader's codes turned into them."""
    if name in t:
        return t[name]
    codes, vocab = t["_codes_" + name]
    return vocab[codes]


def read_annotations(path, label_map: LabelMap | None = None, exclusions=None,
                     progress=True, keep_outside_map=False) -> AvaRows:
    """Ground-truth CSV ``video_id,timestamp,x1,y1,x2,y2,action_id[,person_id]`` -> AvaRows.

    2-column rows ``video_id,timestamp`` (annotated keyframes without persons, AVA 2020) go
    to ``empty_video_ids`` / ``empty_timestamps``, and so do keyframes all of whose rows
    are skipped for the label map (they are still annotated keyframes). With a label map,
    rows of AVA actions outside it are skipped (counted in ``skipped``); ids that are no
    AVA action (outside 1..80) are an error. ``exclusions``: a set of (video_id,
    timestamp) or a CSV path; those rows are skipped and counted. ``person_ids`` is -1 for
    7-column rows. progress: tqdm bar on stderr when a file over 64 MB has to be checked
    line by line (a bad line somewhere). keep_outside_map: keep the rows of AVA actions
    outside the label map (their persons still exist, e.g. for extract-features) and
    count them under "action not in label map (kept)"."""
    t, side = _read_checked(path, _GT_WIDTHS, _GT_COLUMNS, "gt", label_map, progress)
    return _finish(t, side, path, label_map, exclusions, "gt", keep_outside_map)


def read_results(path, label_map: LabelMap | None = None, exclusions=None,
                 progress=True, keep_outside_map=False) -> AvaRows:
    """Result / detection CSV ``video_id,timestamp,x1,y1,x2,y2,action_id,score`` -> AvaRows.

    Also reads person-box files whose action_id is empty or -1 (kept with action -1), and
    a 9th column of person (track) ids (`hgrnn track`) into ``person_ids`` (None without).
    Label map, exclusions, progress and keep_outside_map as in :func:`read_annotations`."""
    t, side = _read_checked(path, _RESULT_WIDTHS, _RESULT_COLUMNS, "results", label_map,
                            progress)
    return _finish(t, side, path, label_map, exclusions, "results", keep_outside_map)


def _read_checked(path, widths, columns, kind, label_map, progress):
    """Read and check a file -> ({name: (N,) array} in file order, [(line, [video_id,
    timestamp])] of 2-column ground-truth rows). Raises AvaFormatError naming the file's
    first bad line (its first broken rule of :data:`hgrnn.data.csvrules.RULES`).

    The fast reader (pyarrow) reads the file and :func:`row_verdicts` checks the values;
    when it cannot read the file, or a value breaks a rule, the slow reader
    (:func:`_read_slow`) goes through the file line by line: it finds the first bad line,
    or reads a file that only pyarrow refused (e.g. quoted fields)."""
    path = os.fspath(path)
    separate = (2,) if kind == "gt" else ()
    fast = csvparse.read_fast(path, columns, widths, separate, stack=_BOX if kind else ())
    if isinstance(fast, csvparse.Refused):
        # pyarrow read `rows` rows by the rules before it refused a block: a bad value
        # among them is the first bad line; else the slow reader starts at that block
        verdicts = None if kind is None else row_verdicts(fast.columns, kind, label_map)
        if verdicts is not None and verdicts.any():
            _raise_first_bad_row(path, fast.columns, verdicts, widths, columns, separate,
                                 kind, label_map, whole_file=False)
        else:
            start, _ = csvparse.find_row(path, fast.rows, separate)
            _read_slow(path, widths, columns, kind, label_map, progress, start=start)
    elif fast is not None:
        verdicts = None if kind is None else row_verdicts(fast[0], kind, label_map)
        if verdicts is None or not verdicts.any():
            return fast
        _raise_first_bad_row(path, fast[0], verdicts, widths, columns, separate, kind,
                             label_map)
    return _read_slow(path, widths, columns, kind, label_map, progress)


def _raise_first_bad_row(path, t, verdicts, widths, columns, separate, kind, label_map,
                         whole_file=True):
    """Rows read by the rules, a value rule broken: find the line of the first bad row by
    counting lines (no parsing) and raise its verdict. Returns (for the slow reader to
    decide) if that line shows none, which it never should, and for an unknown action id
    when `t` is not the whole file (the message lists the file's unknown ids)."""
    row = int(np.argmax(verdicts != 0))
    line_no, line = csvparse.find_row(path, row, separate)
    try:
        values = csvparse.parse_line(line, line_no, widths, columns)
    except csvparse.CsvLineError as e:            # pyarrow's NaN of "nan(123)": no number
        raise AvaFormatError(f"{path}:{e.line}: {e.message}", e.code, e.line) from None
    code = _row_verdict(values, columns, kind, label_map)
    if code is None or (code == "unknown-id" and not whole_file):
        return
    unknown = None
    if code == "unknown-id":
        a = t["action_id"]
        unknown = np.unique(a[_unknown(a, label_map)])
    _raise_verdict(path, line_no, line, code, values, label_map, unknown)


def _raise_verdict(path, line_no, line, code, values, label_map, unknown_ids=None):
    """Raise AvaFormatError for value rule `code` broken by the row `values` of line
    `line_no` (text `line`, bytes)."""
    x1, y1, x2, y2 = (float(v) for v in values[2:6])
    tol = BOX_TOLERANCE
    fields = {"action": values[6],
              "hint": csvrules.PIXEL_HINT if max(x1, y1, x2, y2) > 1 + tol else "",
              "classes": None if label_map is None else len(label_map),
              "own_map": label_map is not None and not ava_ids_of(label_map)}
    fields["text"] = line.decode("utf-8", "replace")[:120]
    if code == "unknown-id":
        ids = [int(x) for x in unknown_ids]
        fields["count"] = len(ids)
        fields["shown"] = ", ".join(map(str, ids[:12])) + (", ..." if len(ids) > 12 else "")
    text = csvrules.message(code, **fields)
    raise AvaFormatError(f"{path}:{int(line_no)}: {text}", code, int(line_no))


def _member(a, values):
    """a (N,) ints -> (N,) bool, a in `values` (a few small ints): one table lookup
    instead of np.isin's one pass per value."""
    values = np.asarray(list(values), np.int64)
    if len(values) == 0:
        return np.zeros(len(a), bool)
    lo, hi = int(values.min()), int(values.max())
    if hi - lo > 1 << 16:                       # ids far apart (a custom label map)
        return np.isin(a, values)
    table = np.zeros(hi - lo + 3, bool)         # first / last slot: below / above [lo, hi]
    table[values - lo + 1] = True
    index = a - (lo - 1)
    np.clip(index, 0, hi - lo + 2, out=index)
    return table[index]


_F32_MAX = float(np.finfo(np.float32).max)

#: the value rules of :data:`hgrnn.data.csvrules.RULES` that :func:`row_verdicts` checks
VALUE_RULES = ("box-range", "box-order", "action-id", "timestamp-range", "score-finite",
               "score-float32", "unknown-id")


def _unknown(a, label_map):
    """(N,) bool: action ids neither in the label map nor AVA actions."""
    return (a > len(ava_ids_of(label_map))) & ~_member(a, label_map.ids)


def row_verdicts(t, kind, label_map):
    """The value rules, vectorised: t {name: (N,) array} of parsed rows (timestamp, x1,
    y1, x2, y2, action_id, and score for kind "results") -> (N,) int8, 0 where a row keeps
    every value rule, else 1 + the index in :data:`VALUE_RULES` of its first broken one.
    kind: "gt" | "results"; label_map: None (no unknown-id rule) or a LabelMap. The one
    implementation of these rules: every reader and ``check-data`` call it."""
    tol = BOX_TOLERANCE
    x1, y1, x2, y2 = (t[name] for name in _BOX)
    a, ts = t["action_id"], t["timestamp"]
    n = len(a)
    verdicts = np.zeros(n, np.int8)

    def mark(code, bad):                        # rows without an earlier verdict
        if bad.any():
            verdicts[bad & (verdicts == 0)] = VALUE_RULES.index(code) + 1

    def within(v, lo, hi):                      # every value in [lo, hi] (NaN is not)
        return not n or bool(lo <= v.min() and v.max() <= hi)

    # each rule first as a reduction over whole columns (a clean file allocates no mask)
    with np.errstate(invalid="ignore"):
        if not all(within(v, -tol, 1 + tol) for v in (x1, y1, x2, y2)):
            inside = np.ones(n, bool)
            for v in (x1, y1, x2, y2):
                inside &= (v >= -tol) & (v <= 1 + tol)              # NaN fails
            mark("box-range", ~inside)
        mark("box-order", (x2 < x1) | (y2 < y1))
    if not within(a, -1, np.iinfo(np.int64).max) or (a == 0).any():
        mark("action-id", (a < -1) | (a == 0))
    if not within(ts, 0, 0xFFFFFFFF):
        mark("timestamp-range", (ts < 0) | (ts > 0xFFFFFFFF))
    if kind == "results" and not within(t["score"], -_F32_MAX, _F32_MAX):
        score = t["score"]
        mark("score-finite", ~np.isfinite(score))
        mark("score-float32", ~(np.abs(score) <= _F32_MAX))
    if label_map is not None and not within(a, -(1 << 63), len(ava_ids_of(label_map))):
        mark("unknown-id", _unknown(a, label_map))
    return verdicts


def _row_verdict(values, columns, kind, label_map):
    """One parsed row (list of Python values) -> the code of its first broken value rule,
    or None (:func:`row_verdicts` on a table of one row)."""
    t = {name: np.asarray([v if v is not None else (math.nan if k == "float" else -1)],
                          csvparse.kind_dtype(k))
         for (name, k), v in zip(columns, values + [None] * (len(columns) - len(values)))}
    v = int(row_verdicts(t, kind, label_map)[0])
    return VALUE_RULES[v - 1] if v else None


_CHUNK = 1 << 16            # rows the slow reader checks at a time


def _read_slow(path, widths, columns, kind, label_map, progress, start=1):
    """The slow reader with the value rules: raises AvaFormatError at the first line that
    breaks a rule (its first broken rule, in the order of
    :data:`hgrnn.data.csvrules.RULES`); else returns what :func:`csvparse.read_fast` would.
    The rows are checked by :func:`row_verdicts` in chunks of :data:`_CHUNK` rows.
    start > 1: only look for a bad line from line `start` on (the lines before are known
    to be good); returns None if none is found."""
    kinds = dict(columns)
    separate = (2,) if kind == "gt" else ()
    chunks = []                         # checked columns, {name: array} per chunk
    rows, lines = [], []                # the chunk being read: values, line numbers
    strings = {}                        # one str object per distinct id
    side = []
    first = None                        # (line, values) of an unknown action id
    unknown = set()                     # unknown action ids from `first` on

    def check():
        """Check the rows read; raise at a bad one, or note the first unknown id."""
        nonlocal first
        t = {name: np.asarray([r[c] if c < len(r) else (math.nan if k == "float" else -1)
                               for r in rows], csvparse.kind_dtype(k))
             for c, (name, k) in enumerate(columns)}
        if kind is not None and rows:
            if first is not None:
                unknown.update(t["action_id"][_unknown(t["action_id"], label_map)].tolist())
            else:
                verdicts = row_verdicts(t, kind, label_map)
                if verdicts.any():
                    r = int(np.argmax(verdicts != 0))
                    code = VALUE_RULES[verdicts[r] - 1]
                    if code != "unknown-id":
                        line = csvparse.read_line(path, lines[r])
                        _raise_verdict(path, lines[r], line, code, rows[r], label_map)
                    first = (lines[r], rows[r])
                    unknown.update(t["action_id"][_unknown(t["action_id"],
                                                           label_map)].tolist())
        if start == 1 and first is None:
            chunks.append(t)
        rows.clear()
        lines.clear()

    try:
        for line, ncols, values in csvparse.iter_rows(path, widths, columns, progress,
                                                      start, separate):
            if kind == "gt" and ncols == 2:
                side.append((line, values))
                continue
            values[0] = strings.setdefault(values[0], values[0])
            rows.append(values)
            lines.append(line)
            if len(rows) == _CHUNK:
                check()
    except csvparse.CsvLineError as e:
        if first is None:
            check()                     # a bad value before the bad line comes first
            if first is None:
                raise AvaFormatError(f"{path}:{e.line}: {e.message}", e.code,
                                     e.line) from None
        rows.clear()
    check()
    if first is not None:
        line_no, values = first
        _raise_verdict(path, line_no, csvparse.read_line(path, line_no), "unknown-id",
                       values, label_map, sorted(unknown))
    if start > 1:
        return None
    t = {name: np.concatenate([c[name] for c in chunks]) if chunks
         else np.zeros(0, csvparse.kind_dtype(kinds[name])) for name in kinds}
    if kind is not None:
        t["_stack"] = np.stack([t[name] for name in _BOX], axis=1)
    return t, side


def _finish(t, side, path, label_map, exclusions, kind, keep_outside_map=False):
    """Checked columns -> AvaRows: label-map and exclusion skipping, empty keyframes."""
    path = os.fspath(path)
    empty_vids = empty_ts = None
    if side:
        empty_vids = np.asarray([v[0] for _, v in side], dtype=str)
        empty_ts = np.asarray([v[1] for _, v in side], np.int64)
    boxes64 = t.pop("_stack")                                           # (N, 4) float64
    for name in _BOX:
        del t[name]
    actions = t.pop("action_id")
    scores64 = t.pop("score") if kind == "results" else None

    # ---- rows skipped on purpose, counted
    skipped = {}
    keep = np.ones(len(actions), bool)
    if label_map is not None:
        outside_map = ~_member(actions, label_map.ids) & (actions != -1)
        if outside_map.any() and keep_outside_map:
            skipped["action not in label map (kept)"] = int(outside_map.sum())
        elif outside_map.any():
            skipped["action not in label map"] = int(outside_map.sum())
            keep &= ~outside_map
    codes = t.pop("_codes_video_id", None)       # the fast reader: codes, no strings
    vids = t.pop("video_id", None)               # the slow reader: strings
    if kind == "gt" and not keep.all():
        # keyframes all of whose rows fall outside the label map stay known as annotated
        # (ava-2020 ignores results only on keyframes absent from the ground-truth file)
        keys, _ = keyframe_index(vids, t["timestamp"], codes=codes)
        lost = ~keep & ~np.isin(keys, keys[keep])
        if lost.any():
            lost_ids = vids[lost] if codes is None else codes[1][codes[0][lost]]
            ev = [lost_ids] + ([empty_vids] if empty_vids is not None else [])
            et = [t["timestamp"][lost]] + ([empty_ts] if empty_ts is not None else [])
            empty_vids, empty_ts = np.concatenate(ev), np.concatenate(et)
    if isinstance(exclusions, (str, os.PathLike)):
        exclusions = read_exclusions(exclusions)
    if exclusions:
        ex_v = np.array([v for v, _ in exclusions], dtype=str)
        ex_t = np.array([s for _, s in exclusions], np.int64)
        keys, vocab = keyframe_index(vids, t["timestamp"], codes=codes)
        ex_keys, _ = keyframe_index(ex_v, ex_t, vocab)
        excluded = _isin_runs(keys, ex_keys) & keep
        if excluded.any():
            skipped["excluded timestamp"] = int(excluded.sum())
            keep &= ~excluded
        if empty_vids is not None:
            ek, _ = keyframe_index(empty_vids, empty_ts, vocab)
            e_keep = ~np.isin(ek, ex_keys)
            empty_vids, empty_ts = empty_vids[e_keep], empty_ts[e_keep]
    if not keep.all():
        sel = np.flatnonzero(keep)
        t = {k: v[sel] for k, v in t.items()}
        boxes64, actions = boxes64[sel], actions[sel]
        vids = None if vids is None else vids[sel]
        if scores64 is not None:
            scores64 = scores64[sel]
        if codes is not None:
            codes = (codes[0][sel], codes[1])
    return AvaRows(            # video_ids / boxes / scores made when first looked at
        video_ids=vids, timestamps=t["timestamp"], boxes=None, action_ids=actions,
        person_ids=_person_ids(t, kind), scores=None, skipped=skipped, boxes64=boxes64,
        scores64=scores64, empty_video_ids=empty_vids, empty_timestamps=empty_ts,
        source=path, video_codes=codes)


def _person_ids(t, kind):
    """Ground truth: its person_id column (-1 where absent). Results: the 9th column that
    `hgrnn track` adds (track ids), None when no row has one."""
    pid = t.get("person_id")
    if kind == "results" and (pid is None or not (pid >= 0).any()):
        return None
    return pid


def _isin_runs(keys, values):
    """np.isin(keys, values) for keys that come in runs of equal values (rows grouped by
    keyframe): one test per run."""
    if not len(keys):
        return np.zeros(0, bool)
    start = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    return np.repeat(np.isin(keys[start], values), np.diff(np.append(start, len(keys))))


def write_annotations(path, rows: AvaRows, progress=False) -> None:
    """Write ground-truth CSV rows ``video_id,timestamp,x1,y1,x2,y2,action_id,person_id``
    (7 columns when ``person_ids`` is None), then one 2-column row per annotated empty
    keyframe (``empty_video_ids``); values written exactly as in :func:`write_results`."""
    _write_rows(path, rows, "person_ids", progress)
    if rows.empty_video_ids is not None and len(rows.empty_video_ids):
        with open(path, "a", encoding="utf-8", newline="\n") as f:
            for v, t in zip(np.asarray(rows.empty_video_ids).tolist(),
                            np.asarray(rows.empty_timestamps).tolist()):
                f.write(f"{v},{int(t):04d}\n")


def write_results(path, rows: AvaRows, progress=False) -> None:
    """Write result CSV rows ``video_id,timestamp,x1,y1,x2,y2,action_id,score``.

    Timestamps are zero-padded to 4 digits (AVA style); coordinates and scores are written
    as the shortest decimal that reads back to the same value (of ``boxes64``/``scores64``
    when present, else of the float32 arrays), so :func:`read_results` returns exactly what
    was written and evaluation of the file equals evaluation of the rows. Rows without
    scores get 1; action -1 is written as -1 (a person-box file)."""
    _write_rows(path, rows, "scores", progress)


def _shortest_slow(x) -> list:
    """Shortest decimal strings that read back to the same values: Python's repr for
    float64, numpy's str (Dragon4) for float32 (both ~1 us a value)."""
    if x.dtype == np.float64:
        return list(map(repr, x.tolist()))
    return x.astype(str).tolist()


# pyarrow's float -> string cast writes the same shortest digits as repr / numpy's str
# (double-conversion's shortest round trip), ~20x faster, in another notation for some
# values: 0 < |x| < 1e-4 it writes positionally down to 1e-6 ("0.00001") and with a
# one-digit exponent below ("1.5e-7") where repr/str write "1e-05", "1.5e-07"; integers it
# writes without ".0". Those strings are rewritten (checked against the form they must have);
# the rest of its notation agrees with repr/str for 1e-4 <= |x| < 1e5, and values outside
# (and NaN/inf) go the slow way.
_SCIENTIFIC = [(rf"^(-?)0\.0{{{k}}}([1-9])$", rf"\1\2e-0{k + 1}") for k in (4, 5, 6)] + [
    (rf"^(-?)0\.0{{{k}}}([1-9])([0-9]+)$", rf"\1\2.\3e-0{k + 1}") for k in (4, 5, 6)] + [
    (r"e-([1-9])$", r"e-0\1")]
_SCIENTIFIC_FORM = r"^-?[1-9](\.[0-9]+)?e-[0-9][0-9][0-9]?$"


def _shortest(x):
    """`_shortest_slow(x)` as a pyarrow large_string array (x: float32 or float64, 1-d)."""
    import pyarrow as pa  # the file formats' light modules import it only where used
    import pyarrow.compute as pc

    x = np.ascontiguousarray(x)
    out = pc.cast(pa.array(x), pa.large_string())
    with np.errstate(invalid="ignore"):
        ax = np.abs(x.astype(np.float64))  # float32 1e-4 (< 1e-4) is compared exactly
        slow = ~(ax < 1e5)  # large, NaN, inf
        small = (ax < 1e-4) & (ax > 0)
        integral = (x == np.trunc(x)) & ~slow
    for mask, rewrite, form in ((small, _SCIENTIFIC, _SCIENTIFIC_FORM),
                                (integral, [(r"^(-?[0-9]+)$", r"\1.0")], r"^-?[0-9]+\.0$")):
        if not mask.any():
            continue
        sub = out.filter(pa.array(mask))
        for pattern, replacement in rewrite:
            sub = pc.replace_substring_regex(sub, pattern, replacement)
        bad = np.asarray(pc.invert(pc.match_substring_regex(sub, form)))
        if bad.any():  # not the form expected of pyarrow's notation: the slow way
            slow[np.flatnonzero(mask)[bad]] = True
        out = pc.replace_with_mask(out, pa.array(mask), sub)
    if slow.any():
        out = pc.replace_with_mask(out, pa.array(slow),
                                   pa.array(_shortest_slow(x[slow]), pa.large_string()))
    return out


def _integers(x, width=0):
    """int64 array -> decimal strings (pyarrow large_string), f"{v:0{width}d}"."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out = pc.cast(pa.array(x), pa.large_string())
    if width:
        out = pc.utf8_lpad(out, width=width, padding="0")
        negative = x < 0  # "-5" -> "-005", not "00-5"
        if negative.any():
            out = pc.replace_with_mask(out, pa.array(negative), pa.array(
                [f"{v:0{width}d}" for v in x[negative].tolist()], pa.large_string()))
    return out


_WRITE_CHUNK_ROWS = 500_000  # rows formatted at a time


def _write_rows(path, rows, last, progress):
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(rows.timestamps)
    boxes = rows.boxes64 if rows.boxes64 is not None else np.asarray(rows.boxes, np.float32)
    if last == "person_ids":
        scores = None if rows.person_ids is None else np.asarray(rows.person_ids, np.int64)
    elif rows.scores64 is not None:
        scores = rows.scores64
    elif rows.scores is not None:
        scores = np.asarray(rows.scores, np.float32)
    else:
        scores = np.ones(n, np.float32)
    if rows.video_codes is not None:            # compared as codes, not made into strings
        vids, id_of = np.asarray(rows.video_codes[0]), np.asarray(rows.video_codes[1], str)
    else:
        vids, id_of = np.asarray(rows.video_ids, dtype=str), None
    ts = np.asarray(rows.timestamps, np.int64)
    acts = np.asarray(rows.action_ids, np.int64)
    step = _WRITE_CHUNK_ROWS
    steps = range(0, n, step)
    if progress and n > step:
        steps = progress_bar(steps, desc=f"write {os.path.basename(os.fspath(path))}", leave=False)
    comma, newline, empty = (pa.scalar(c, pa.large_string()) for c in (",", "\n", ""))
    with open(path, "wb") as f:
        for s in steps:
            sl = slice(s, s + step)
            v, t, b = vids[sl], ts[sl], np.ascontiguousarray(boxes[sl])
            # "video,timestamp,x1,y1,x2,y2" is formatted once per run of rows sharing it
            # (AVA files list each box once per action); boxes compared bit for bit (-0.0
            # and 0.0 are written differently)
            bits = b.view(np.uint64 if b.dtype == np.float64 else np.uint32)
            new = np.ones(len(t), bool)
            new[1:] = (v[1:] != v[:-1]) | (t[1:] != t[:-1]) | (bits[1:] != bits[:-1]).any(axis=1)
            first = np.flatnonzero(new)
            heads = pc.binary_join_element_wise(
                pa.array(v[first] if id_of is None else id_of[v[first]], pa.large_string()),
                _integers(t[first], 4),
                *[_shortest(b[first, k]) for k in range(4)], comma)
            columns = [heads.take(pa.array(np.cumsum(new) - 1)), _integers(acts[sl])]
            if scores is not None:
                columns.append(_shortest(scores[sl]) if scores.dtype.kind == "f"
                               else _integers(scores[sl]))
            columns[-1] = pc.binary_join_element_wise(columns[-1], empty, newline)  # line ends
            lines = pc.binary_join_element_wise(*columns, comma)  # (rows,) "...\n"
            # the lines' characters end to end: the bytes of the file
            offsets = np.frombuffer(lines.buffers()[1], np.int64)[
                lines.offset:lines.offset + len(lines) + 1]
            f.write(memoryview(lines.buffers()[2])[offsets[0]:offsets[-1]])
    pa.default_memory_pool().release_unused()  # hand the chunks' memory back to the system


# ----------------------------------------------------------------------------------------
# persons
# ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PersonRows:
    """One row per person (unique box) of a keyframe (M rows).

    video_ids, timestamps: (M,); boxes: (M, 4) float32; labels: (M, K) uint8 multi-hot in
    label-map column order; person_ids: (M,) int64 (-1 when unknown); scores: (M,) float32
    (1.0 for ground truth)."""

    video_ids: np.ndarray
    timestamps: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    person_ids: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.timestamps)


def group_persons(rows: AvaRows, label_map: LabelMap) -> PersonRows:
    """Merge rows (one per box and action) into one person per (keyframe, box).

    Persons are ordered by (video_id, timestamp, first appearance in the file); rows of
    actions outside the label map (and action -1 rows) still create the person, with no
    label bit set. person_id is the first non-negative id seen for the box (else -1); score
    is the row maximum (1.0 when rows have no scores)."""
    n = len(rows.timestamps)
    k = len(label_map)
    if n == 0:
        return PersonRows(np.zeros(0, str), np.zeros(0, np.int64), np.zeros((0, 4), np.float32),
                          np.zeros((0, k), np.uint8), np.zeros(0, np.int64),
                          np.zeros(0, np.float32))
    keys, _ = keyframe_index(rows.video_ids, rows.timestamps)
    b = np.ascontiguousarray(rows.boxes, np.float32)
    bview = b.view(np.int32)                       # exact box identity, (N, 4)
    order = np.lexsort((np.arange(n), bview[:, 3], bview[:, 2], bview[:, 1], bview[:, 0], keys))
    ks, bs = keys[order], bview[order]
    new = np.ones(n, bool)
    new[1:] = (ks[1:] != ks[:-1]) | (bs[1:] != bs[:-1]).any(axis=1)
    group_sorted = np.cumsum(new) - 1
    m = int(group_sorted[-1]) + 1
    group = np.empty(n, np.int64)
    group[order] = group_sorted
    first_row = order[new]                        # first file row of each group
    # order persons by keyframe then first appearance
    kf_first = keys[first_row]
    porder = np.lexsort((first_row, kf_first))
    # keyframes in (video_id, timestamp) order: keys encode sorted video vocabulary + ts
    rank = np.empty(m, np.int64)
    rank[porder] = np.arange(m)
    pg = rank[group]                              # person index of each row
    labels = np.zeros((m, k), np.uint8)
    col = label_map.column()
    lut_ids = np.asarray(label_map.ids, np.int64)
    a = np.asarray(rows.action_ids, np.int64)
    in_map = _member(a, lut_ids)
    srt = np.argsort(lut_ids)
    cidx = srt[np.searchsorted(lut_ids[srt], a[in_map])]
    labels[pg[in_map], cidx] = 1
    del col
    fr = first_row[porder]
    pid = np.full(m, -1, np.int64)
    if rows.person_ids is not None:
        p = np.asarray(rows.person_ids, np.int64)
        valid = np.flatnonzero(p >= 0)[::-1]      # reversed: first occurrence written last
        pid[pg[valid]] = p[valid]
    if rows.scores is not None:
        sc = np.full(m, -np.inf, np.float32)
        np.maximum.at(sc, pg, np.asarray(rows.scores, np.float32))
    else:
        sc = np.ones(m, np.float32)
    return PersonRows(np.asarray(rows.video_ids)[fr], np.asarray(rows.timestamps)[fr],
                      b[fr].copy(), labels, pid, sc)
