"""AVA file formats: label maps, annotation / result CSVs, excluded timestamps.

Everything here is a pure function of a file (or of arrays) returning numpy arrays inside
small frozen dataclasses. Bad input raises :class:`AvaFormatError`, whose message starts
``FILE:LINE: `` so that a user can jump straight to the offending row.

Formats (no header; coordinates normalised to [0, 1]; one row per box AND action):

* ground truth / annotations: ``video_id,timestamp,x1,y1,x2,y2,action_id[,person_id]``
  (the 7-column form without person id is what e.g. the pose-class subsets use). A 2-column
  row ``video_id,timestamp`` marks an annotated keyframe without persons (AVA 2020 files).
* results / detections: ``video_id,timestamp,x1,y1,x2,y2,action_id,score``; in a person-box
  file (the widely shared detection CSVs) ``action_id`` is empty or ``-1``.
* excluded timestamps: ``video_id,timestamp``.
* label map: a ``.pbtxt`` of ``item { name: "..." id: N }`` (or ``label { name: ...
  label_id: N }``) blocks, a plain text file with one ``id name`` / ``id: name`` per line,
  or a packaged name (:data:`PACKAGED_LABEL_MAPS`).

Keyframe keys are ``(video_id, timestamp)`` with integer timestamps (``0902`` == ``902``).

Why a hand-written parser: the full AVA validation results are ~5.6 million rows (~300 MB);
the csv module row by row takes about a minute for that, ``np.genfromtxt`` is Python-level
too, and ``np.loadtxt`` (C since numpy 1.23, ~6 s here) can neither take the empty action
field of person-box files nor rows of different widths (7/8-column ground truth, 2-column
empty keyframes), and its errors do not carry our line numbers. pandas/pyarrow are not
dependencies. So the file is read as bytes in 8 MB chunks and parsed with whole-array
numpy operations:

* newline and comma positions (``np.flatnonzero``) give every field's byte range, and
  the number of commas per line checks the column count;
* a number of up to 8 characters is converted 8 bytes at a time: the 8 bytes ending at
  the field are one little-endian uint64, and the character checks, removing sign and
  dot, and turning 8 ASCII digits into an integer are a dozen word operations (SWAR; the
  digit step is D. Lemire's "parse eight digits"). The value is then mantissa /
  10^decimals, one correctly rounded IEEE division of two exact numbers: bit-identical to
  Python's ``float(text)``, which the official evaluator uses;
* longer numbers (up to 15 digits) go through an (n, W) byte matrix, and the rare rest
  (exponents, ``nan``) through Python's ``float``/``int`` one by one;
* rows repeating the previous row's ``video_id,timestamp,x1,y1,x2,y2`` (AVA files hold
  one row per box AND action, so a result file repeats each box 60 times) are found by
  comparing 8-byte words and reuse the first row's parsed values.

Validation is vectorised as well; every check yields its first failing line and the
earliest of them is reported.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from importlib import resources

import numpy as np

__all__ = [
    "AvaFormatError", "LabelMap", "load_label_map", "PACKAGED_LABEL_MAPS",
    "AvaRows", "read_annotations", "read_results", "read_exclusions", "write_results",
    "write_annotations",
    "PersonRows", "group_persons", "keyframe_index",
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

#: coordinates may leave [0, 1] by this much (rounding in third-party writers)
COORD_TOLERANCE = 1e-3


class AvaFormatError(ValueError):
    """Malformed AVA input; the message starts with ``FILE:LINE: ``."""


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

    ids, names = [], []
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
        if not ids:
            raise AvaFormatError(f"{source}:1: empty label map")
    seen = {}
    for k, i in enumerate(ids):
        if i in seen:
            raise AvaFormatError(f"{source}: action id {i} appears twice "
                                 f"({names[seen[i]]!r} and {names[k]!r})")
        seen[i] = k
    return LabelMap(tuple(ids), tuple(names))


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
    source: the file the rows came from (for messages).
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

    def __len__(self) -> int:
        return len(self.timestamps)

    def take(self, index) -> "AvaRows":
        """Rows selected by a boolean mask or an index array (skipped/empty kept)."""
        def t(a):
            return None if a is None else a[index]
        return AvaRows(self.video_ids[index], self.timestamps[index], self.boxes[index],
                       self.action_ids[index], t(self.person_ids), t(self.scores),
                       dict(self.skipped), t(self.boxes64), t(self.scores64),
                       self.empty_video_ids, self.empty_timestamps, self.source)

    @classmethod
    def from_arrays(cls, video_ids, timestamps, boxes, action_ids, person_ids=None,
                    scores=None) -> "AvaRows":
        """Build rows in memory (casts to the documented dtypes)."""
        return cls(np.asarray(video_ids, dtype=str), np.asarray(timestamps, np.int64),
                   np.asarray(boxes, np.float32).reshape(-1, 4),
                   np.asarray(action_ids, np.int64),
                   None if person_ids is None else np.asarray(person_ids, np.int64),
                   None if scores is None else np.asarray(scores, np.float32), {})


# ----------------------------------------------------------------------------------------
# the vectorised CSV parser
# ----------------------------------------------------------------------------------------

_CHUNK_BYTES = 8 << 20         # 8 MB slices: temporaries stay in cache, few page faults
_POW10 = np.array([10.0 ** k for k in range(23)])  # exact in float64 up to 1e22
_IPOW10 = 10 ** np.arange(19, dtype=np.int64)
_FAST_WIDTH = 15               # digits + dot of a field parsed exactly on the fast path
_BLANKS = (b"\r", b" ", b"\t")
_PAD = 16                      # zero bytes around a chunk: room for 8/16-byte field windows


def _first_error(errors):
    """errors: list of (line, message) candidates -> raise the earliest."""
    if errors:
        line, msg = min(errors, key=lambda e: e[0])
        raise AvaFormatError(f"{msg[0]}:{int(line)}: {msg[1]}")


def _u64(x):
    return np.uint64(x)


def _words(buf):
    """buf (uint8) -> a uint64 view with one little-endian word at every byte offset."""
    return np.ndarray((len(buf) - 7,), np.dtype("<u8"), buf.data, strides=(1,))


# tables indexed by field width w (0..8) / dot byte position p (0..7)
_KEEP = np.array([0] + [((1 << 64) - 1) ^ ((1 << (8 * (8 - w))) - 1) for w in range(1, 9)],
                 np.uint64)                                # the field's w bytes (high end)
_FIRST_SHIFT = np.array([0] + [8 * (8 - w) for w in range(1, 9)], np.uint64)
_FIRST_FLAG = np.array([0] + [0x80 << (8 * (8 - w)) for w in range(1, 9)], np.uint64)
_FIRST_BYTE = np.array([0] + [0xFF << (8 * (8 - w)) for w in range(1, 9)], np.uint64)
_BELOW = np.array([(1 << (8 * p)) - 1 for p in range(9)], np.uint64)
_ABOVE = np.array([((1 << 64) - 1) ^ ((1 << (8 * (p + 1))) - 1) for p in range(8)] + [0],
                  np.uint64)
_L7F, _L80 = _u64(0x7F7F7F7F7F7F7F7F), _u64(0x8080808080808080)
_L30, _L76, _L1E = _u64(0x3030303030303030), _u64(0x7676767676767676), _u64(0x1E1E1E1E1E1E1E1E)


def _parse_numbers(buf, starts, ends, integer, allow_empty=False):
    """Parse the fields buf[starts[i]:ends[i]] vectorised -> (values, bad).

    buf must be preceded by at least 16 padding bytes (starts/ends index the padded
    buffer). values: float64 (int64 when `integer`); bad: fields the fast paths cannot
    take (exponent, too long, not a number at all), for the slow path. An empty field is
    -1 when allow_empty, else bad.

    Fields of up to 8 characters (nearly all of an AVA file) are done 8 bytes at a time:
    the 8 bytes ending at the field are one little-endian uint64 and the character
    checks, taking out the sign and the dot, and turning 8 ASCII digits into an integer are
    a dozen word operations (SWAR; the digit step is D. Lemire's "parse eight digits").
    The value is then mantissa / 10^decimals: one correctly rounded IEEE division of two
    exactly represented numbers, i.e. the same double as Python's float(text). Longer
    fields go to :func:`_parse_numbers_wide`."""
    n = len(starts)
    width = ends - starts
    if n == 0:
        return (np.zeros(0, np.int64 if integer else np.float64), np.zeros(0, bool))
    wide = width > 8
    w = np.minimum(width, 8)
    u = _words(buf)[ends - 8]                         # the 8 bytes ending at each field
    keep = _KEEP[w]
    t = (u & keep) ^ (_L30 & keep)                    # field chars - '0'; bytes before: 0
    nondigit = ((((t & _L7F) + _L76) | t) & _L80)     # 0x80 in each byte that is no digit
    z = t ^ _L1E                                      # '.' - '0' == 0x1E
    isdot = ((((z & _L7F) + _L7F) | z) & _L80) ^ _L80
    first = (t >> _FIRST_SHIFT[w]) & _u64(0xFF)
    signed = ((first == 0x1D) | (first == 0x1B)) & (w > 0)     # '-' or '+'
    has_dot = isdot != 0
    expected = isdot | np.where(signed, _FIRST_FLAG[w], _u64(0))
    bad = (nondigit != expected) | ((isdot & (isdot - _u64(1))) != 0)
    ndig = width - has_dot - signed
    empty = width == 0
    bad |= (ndig < 1) & ~(empty & allow_empty)
    if integer:
        bad |= has_dot
    t = np.where(signed, t & ~_FIRST_BYTE[w], t)
    # take the dot out: the bytes before it (integer part) move up by one byte
    # byte index of the dot: isdot >> 7 == 1 << 8p, and the top byte of
    # (1 << 8p) * 0x0001020304050607 is p
    p = np.where(has_dot, ((isdot >> _u64(7)) * _u64(0x0001020304050607)) >> _u64(56),
                 _u64(8)).astype(np.intp)
    p = np.minimum(p, 8)                              # several dots: bad anyway
    t = np.where(has_dot, (t & _ABOVE[p]) | ((t & _BELOW[p]) << _u64(8)), t)
    # eight digits, most significant in byte 0 -> integer (Lemire)
    t = t * _u64(10) + (t >> _u64(8))
    t = (((t & _u64(0x000000FF000000FF)) * _u64(100 + (1000000 << 32))
          + ((t >> _u64(16)) & _u64(0x000000FF000000FF)) * _u64(1 + (10000 << 32)))
         >> _u64(32))
    neg = signed & (first == 0x1D)
    if integer:
        mant = t.astype(np.int64)
        values = np.where(neg, -mant, mant)
        values[empty] = -1
    else:
        values = t / _POW10[np.where(has_dot, 7 - p, 0)]
        values = np.where(neg, -values, values)
        values[empty] = -1.0
    if wide.any():
        i = np.flatnonzero(wide)
        values[i], bad[i] = _parse_numbers_wide(buf, starts[i], ends[i], integer)
    return values, bad


def _parse_numbers_wide(buf, starts, ends, integer):
    """The same for fields of 9..16 characters, one (n, W) byte matrix at a time: with
    the dot counted as a zero digit, A = matrix @ 10^(W-1..0) is exact in float64 (at most
    15 positions), the dot is then taken out of A with integer arithmetic."""
    width = ends - starts
    W = int(min(int(width.max()), _FAST_WIDTH + 1))
    win = np.lib.stride_tricks.sliding_window_view(buf, W)
    ch = win[ends - W]                                   # (n, W), field at the right end
    valid = np.arange(W) >= (W - np.minimum(width, W))[:, None]
    d = ch - np.uint8(48)                                # non-digits wrap to >= 10
    isdig = (d < 10) & valid
    isdot = (ch == 46) & valid
    ndig = isdig.sum(1)
    ndot = isdot.sum(1)
    first = buf[starts]
    signed = (first == 45) | (first == 43)
    bad = (width - ndig - ndot) != signed                # anything besides digits, dot, sign
    bad |= width - signed > _FAST_WIDTH
    bad |= ndig == 0
    bad |= (ndot > 0) if integer else (ndot > 1)
    A = (np.where(isdig, d, 0).astype(np.float64) @ _POW10[W - 1::-1]).astype(np.int64)
    neg = signed & (first == 45)
    if integer:
        return np.where(neg, -A, A), bad
    has_dot = ndot == 1
    nfrac = np.where(has_dot, (W - 1) - np.argmax(isdot, axis=1), 0)
    hi = A // _IPOW10[np.minimum(nfrac + has_dot, 18)]
    lo = A % _IPOW10[nfrac]
    mant = np.where(has_dot, hi * _IPOW10[nfrac] + lo, A)
    values = mant / _POW10[nfrac]
    return np.where(neg, -values, values), bad


def _slow_numbers(buf, starts, ends, values, bad, integer, lines, what):
    """Parse the fields the fast path left with Python's int/float (what the official code
    does). Returns (line, message) of the first field Python rejects too, else None."""
    for i in np.flatnonzero(bad):
        text = buf[starts[i]:ends[i]].tobytes().decode("utf-8", "replace")
        try:
            values[i] = int(text) if integer else float(text)
        except ValueError:
            kind = "an integer" if integer else "a number"
            return int(lines[i]), f"{what} must be {kind}, got {text!r}"
    return None


class _Out:
    """Output columns of a file being parsed, written in place chunk by chunk (no
    per-chunk arrays kept alive, no final concatenation of millions of rows).

    Numeric columns live in arrays allocated for the expected number of rows (estimated
    from the first chunk; grown if needed); x1, y1, x2, y2 share one (rows, 4) array.
    String columns are kept as per-chunk lists (they are short)."""

    BOX = ("x1", "y1", "x2", "y2")

    def __init__(self, columns, size):
        self.columns, self.size, self.n, self.cap = columns, size, 0, 0
        self.strings = {name: [] for name, kind in columns if kind == "str"}
        self.arrays = None

    def _allocate(self, cap):
        old, n = self.arrays, self.n
        arrays = {"_line": np.empty(cap, np.int64), "_ncols": np.empty(cap, np.int8)}
        if all(b in dict(self.columns) for b in self.BOX):
            arrays["_box"] = np.empty((cap, 4), np.float64)
        for name, kind in self.columns:
            if kind != "str" and name not in self.BOX:
                arrays[name] = np.empty(cap, np.float64 if kind == "float" else np.int64)
        if old is not None:
            for key, arr in old.items():
                arrays[key][:n] = arr[:n]
        self.arrays, self.cap = arrays, cap

    def block(self, m, chunk_bytes):
        """Views to write the next m rows into: name -> (m,) array."""
        if self.n + m > self.cap:
            estimate = int(m * self.size / max(chunk_bytes, 1) * 1.05) + 1024
            self._allocate(max(estimate, 2 * self.cap, self.n + m))
        sl = slice(self.n, self.n + m)
        self.n += m
        views = {key: arr[sl] for key, arr in self.arrays.items() if key != "_box"}
        if "_box" in self.arrays:
            for j, name in enumerate(self.BOX):
                views[name] = self.arrays["_box"][sl, j]
        return views

    def result(self):
        if self.arrays is None:
            self._allocate(0)
        res = {key: arr[:self.n] for key, arr in self.arrays.items()}
        for name, parts in self.strings.items():
            res[name] = np.concatenate(parts) if parts else np.zeros(0, "S1")
        return res


def _read_rows(path, ncols_allowed, columns, progress=False):
    """Parse a comma-separated file into per-column arrays.

    ncols_allowed: {ncols: description} of accepted row widths. columns: list of
    (name, kind) for the widest form with kind in "str" | "int" | "int?" (empty -> -1) |
    "float"; rows with fewer columns get -1 / NaN in the missing ones (callers decide).
    Returns (dict name -> array plus "_line" (1-based line numbers) and "_ncols", errors):
    errors is a list of (line, (path, message)); reading stops after the chunk holding the
    first error, so that the caller can still find an earlier error among the values."""
    path = os.fspath(path)
    size = os.path.getsize(path)
    out = _Out(columns, size)
    errors = []
    bar = None
    if progress and size > 64 << 20:
        from tqdm import tqdm
        bar = tqdm(total=size, unit="B", unit_scale=True, leave=False,
                   desc=f"read {os.path.basename(path)}")
    line0 = 0                                   # lines before this chunk
    pad = _PAD
    ba = bytearray(pad + _CHUNK_BYTES + pad)    # [pad zeros | tail + new bytes | pad]
    tail = b""
    with open(path, "rb") as f:
        if f.read(3) != b"\xef\xbb\xbf":                          # skip a UTF-8 BOM
            f.seek(0)
        while not errors:
            lt = len(tail)
            if pad + lt + _CHUNK_BYTES + pad > len(ba):            # a line longer than a chunk
                ba = bytearray(pad + 2 * (lt + _CHUNK_BYTES) + pad)
            ba[pad:pad + lt] = tail
            got = f.readinto(memoryview(ba)[pad + lt:pad + lt + _CHUNK_BYTES])
            end = pad + lt + got
            if got == 0:                                           # end of file
                if lt == 0:
                    break
                if ba[end - 1] != 10:
                    ba[end] = 10
                    end += 1
            cut = ba.rfind(b"\n", pad, end) + 1
            if cut == 0:                                           # no full line yet
                tail = bytes(ba[pad:end])
                continue
            tail = bytes(ba[cut:end])
            ba[cut:cut + pad] = bytes(pad)
            nlines, errs = _parse_chunk(ba, cut, line0, ncols_allowed, columns, out)
            errors += [(ln, (path, m)) for ln, m in errs]
            line0 += nlines
            if bar is not None:
                bar.update(cut - pad)
            if got == 0:
                break
    if bar is not None:
        bar.close()
    res = out.result()
    return res, errors


def _parse_chunk(ba, cut, line0, ncols_allowed, columns, out):
    """Parse the whole lines in ba[_PAD:cut] (a bytearray; _PAD zero bytes before and
    after); append columns to `out`; return (number of lines, [(line, message) errors]
    (at most one per check)); bad rows are left out."""
    errors = []
    pad = _PAD
    buf = np.frombuffer(ba, np.uint8)[:cut + pad]
    if any(ba.find(b, pad, cut) >= 0 for b in _BLANKS):     # CRLF, stray spaces: drop
        data = buf[pad:cut]
        data = data[(data != 13) & (data != 32) & (data != 9)]
        buf = np.zeros(pad + len(data) + pad, np.uint8)
        buf[pad:pad + len(data)] = data
    nl = np.flatnonzero(buf == 10)
    nlines = len(nl)
    line_start = np.empty_like(nl)
    line_start[0] = pad
    line_start[1:] = nl[:-1] + 1
    cm = np.flatnonzero(buf == 44)
    commas_upto_end = np.searchsorted(cm, nl)
    ncomma = np.diff(commas_upto_end, prepend=0)
    line_no = np.arange(line0 + 1, line0 + 1 + len(nl))
    nonblank = nl > line_start
    ncols = ncomma + 1
    ok = np.isin(ncols, list(ncols_allowed)) | ~nonblank
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        want = " or ".join(f"{k} ({d})" for k, d in ncols_allowed.items())
        text = buf[line_start[i]:nl[i]].tobytes().decode("utf-8", "replace")
        errors.append((int(line_no[i]),
                       f"expected {want} columns, got {ncols[i]}: {text[:120]!r}"))
    for k in sorted(ncols_allowed):
        rows = np.flatnonzero(nonblank & (ncols == k))
        if len(rows) == 0:
            continue
        first = commas_upto_end[rows] - (k - 1)          # index of the row's first comma
        lines = line_no[rows]
        dest = out.block(len(rows), len(ba) - 2 * pad)
        dest["_line"][:] = lines
        dest["_ncols"][:] = k
        # rows repeating the previous row's "video,timestamp,x1,y1,x2,y2," (one row per
        # box and action, as AVA files are written) reuse its parsed values
        group = _repeated_prefix(buf, line_start[rows], cm[first + 5]) if k >= 7 else None
        for c, (name, kind) in enumerate(columns):
            if c >= k:
                dest[name][:] = np.nan if kind == "float" else -1
                continue
            r, f, sel = rows, first, lines
            if group is not None and c < 6:              # only the first row of a repeat
                r, f, sel = rows[group[1]], first[group[1]], lines[group[1]]
            s = line_start[r] if c == 0 else cm[f + (c - 1)] + 1
            e = nl[r] if c == k - 1 else cm[f + c]
            if kind == "str":
                vals, err = _gather_str(buf, s, e, sel, name)
                if err:
                    errors.append(err)
            else:
                integer = kind != "float"
                vals, bad = _parse_numbers(buf, s, e, integer, allow_empty=kind == "int?")
                if bad.any():
                    err = _slow_numbers(buf, s, e, vals, bad, integer, sel, name)
                    if err:
                        errors.append(err)
            if kind == "str":
                out.strings[name].append(vals if group is None or c >= 6 else vals[group[0]])
            elif group is not None and c < 6:
                np.take(vals, group[0], out=dest[name])
            else:
                dest[name][:] = vals
    return nlines, errors


_KEEP_LOW = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], np.uint64)


def _repeated_prefix(buf, pstart, pend):
    """Rows whose bytes buf[pstart:pend] equal the previous row's.

    Returns None when fewer than half the rows repeat (then parsing everything is
    cheaper), else (group (n,) index of each row's first row among `firsts`, firsts
    (m,) row indices of the non-repeating rows). Compares 8 bytes at a time (uint64
    words read at any byte offset)."""
    n = len(pstart)
    if n < 2:
        return None
    plen = pend - pstart
    cand = np.flatnonzero(plen[1:] == plen[:-1]) + 1
    if len(cand) == 0 or len(cand) < n // 2:
        return None
    L = int(plen.max())
    if int(pstart.max()) + L + 8 > len(buf):
        return None
    words = _words(buf)
    sa, sb, ln = pstart[cand], pstart[cand - 1], plen[cand]
    differ = np.zeros(len(cand), np.uint64)
    full = int(ln.min())                              # bytes every compared prefix has
    for j in range(0, L, 8):
        diff = words[sa + j] ^ words[sb + j]
        if j + 8 > full:                              # some prefixes end in this word
            diff &= _KEEP_LOW[np.clip(ln - j, 0, 8)]
        differ |= diff
    repeat = np.zeros(n, bool)
    repeat[cand[differ == 0]] = True
    if repeat.sum() < n // 2:
        return None
    new = ~repeat
    return np.cumsum(new) - 1, np.flatnonzero(new)


def _gather_str(buf, s, e, lines, what):
    """Fields buf[s:e] -> numpy bytes array (and the first empty field as an error)."""
    width = e - s
    err = None
    if (width == 0).any():
        i = int(np.flatnonzero(width == 0)[0])
        err = (int(lines[i]), f"empty {what}")
    w = max(int(width.max()), 1)
    if int(s.max()) + w > len(buf):
        buf = np.concatenate([buf, np.zeros(w, np.uint8)])
    chars = np.lib.stride_tricks.sliding_window_view(buf, w)[s]      # (n, w)
    chars = np.where(np.arange(w) < width[:, None], chars, np.uint8(0))
    return np.ascontiguousarray(chars).view(f"S{w}").ravel(), err


def _to_unicode(b):
    """numpy bytes array -> numpy unicode array (ids are ASCII in practice). Only the
    distinct ids are decoded (files hold long runs of one video)."""
    uniq, codes = _factorize(b)
    try:
        u = uniq.astype("U")
    except UnicodeDecodeError:
        u = np.array([x.decode("utf-8", "replace") for x in uniq.tolist()])
    return u[codes]


def _factorize(ids):
    """ids (N,) -> (uniques sorted, codes (N,) int64). Fast for files grouped by video:
    only the starts of runs of equal ids are sorted."""
    n = len(ids)
    if n == 0:
        return ids[:0], np.zeros(0, np.int64)
    run_start = np.flatnonzero(np.concatenate([[True], ids[1:] != ids[:-1]]))
    uniq, inv = np.unique(ids[run_start], return_inverse=True)
    run_len = np.diff(np.append(run_start, n))
    return uniq, np.repeat(inv.ravel().astype(np.int64), run_len)


def keyframe_index(video_ids, timestamps, vocabulary=None):
    """Integer key per row for (video_id, timestamp) pairs.

    Returns (keys (N,) int64, vocabulary): keys are equal iff (video, timestamp) are; pass
    the returned vocabulary (sorted unique video ids) to index a second set of rows in the
    same key space (ids missing from it get negative keys, unequal to any first-set key).
    Key = video code << 32 | timestamp; fast for rows grouped by video (only the starts
    of runs of equal ids are sorted)."""
    vids = np.asarray(video_ids)
    ts = np.asarray(timestamps, np.int64)
    n = len(vids)
    if n == 0:
        return np.zeros(0, np.int64), (vids[:0] if vocabulary is None else vocabulary)
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

def read_exclusions(path) -> set[tuple[str, int]]:
    """Excluded-timestamps CSV (``video_id,timestamp`` rows) -> {(video_id, timestamp)}."""
    t, errors = _read_rows(path, {2: "video_id,timestamp"},
                           [("video_id", "str"), ("timestamp", "int")])
    _first_error(errors)
    vids = _to_unicode(t["video_id"])
    return set(zip(vids.tolist(), t["timestamp"].tolist()))


def read_annotations(path, label_map: LabelMap | None = None, exclusions=None,
                     progress=True) -> AvaRows:
    """Ground-truth CSV ``video_id,timestamp,x1,y1,x2,y2,action_id[,person_id]`` -> AvaRows.

    2-column rows ``video_id,timestamp`` (annotated keyframes without persons, AVA 2020) go
    to ``empty_video_ids`` / ``empty_timestamps``, and so do keyframes all of whose rows
    are skipped for the label map (they are still annotated keyframes). With a label map,
    rows of AVA actions outside it are skipped (counted in ``skipped``); ids that are no
    AVA action (outside 1..80) are an error. ``exclusions``: a set of (video_id,
    timestamp) or a CSV path; those rows are skipped and counted. ``person_ids`` is -1 for
    7-column rows. progress: tqdm bar on stderr for files over 64 MB."""
    t, errors = _read_rows(
        path, {8: "with person_id", 7: "without person_id", 2: "empty keyframe"},
        [("video_id", "str"), ("timestamp", "int"), ("x1", "float"), ("y1", "float"),
         ("x2", "float"), ("y2", "float"), ("action_id", "int?"), ("person_id", "int?")],
        progress=progress)
    return _finish(t, errors, path, label_map, exclusions, kind="gt")


def read_results(path, label_map: LabelMap | None = None, exclusions=None,
                 progress=True) -> AvaRows:
    """Result / detection CSV ``video_id,timestamp,x1,y1,x2,y2,action_id,score`` -> AvaRows.

    Also reads person-box files whose action_id is empty or -1 (kept with action -1).
    Label map and exclusions as in :func:`read_annotations`."""
    t, errors = _read_rows(
        path, {8: "video_id,timestamp,x1,y1,x2,y2,action_id,score"},
        [("video_id", "str"), ("timestamp", "int"), ("x1", "float"), ("y1", "float"),
         ("x2", "float"), ("y2", "float"), ("action_id", "int?"), ("score", "float")],
        progress=progress)
    return _finish(t, errors, path, label_map, exclusions, kind="results")


def _member(a, values):
    """a (N,) ints -> (N,) bool, a in `values` (a few small ints): one table lookup
    instead of np.isin's one pass per value."""
    values = np.asarray(list(values), np.int64)
    if len(values) == 0:
        return np.zeros(len(a), bool)
    lo, hi = int(values.min()), int(values.max())
    table = np.zeros(hi - lo + 2, bool)                 # last slot: outside [lo, hi]
    table[values - lo] = True
    return table[np.where((a >= lo) & (a <= hi), a - lo, hi - lo + 1)]


def _first_bad(mask, lines, path, message):
    """[(line, (path, message(i)))] for the first True of mask (rows are in file order)."""
    if not mask.any():
        return []
    i = int(np.argmax(mask))
    return [(int(lines[i]), (path, message(i)))]


def _finish(t, errors, path, label_map, exclusions, kind):
    """Parsed columns -> validated AvaRows; raises the earliest error of the file."""
    path = os.fspath(path)
    lines = t["_line"]
    if len(lines) > 1 and (np.diff(lines) < 0).any():     # mixed widths: back to file order
        order = np.argsort(lines, kind="stable")
        t = {k: v[order] for k, v in t.items()}
        lines = t["_line"]
    empty_vids = empty_ts = None
    if kind == "gt":
        is_empty = t["_ncols"] == 2
        if is_empty.any():
            empty_vids = _to_unicode(t["video_id"][is_empty])
            empty_ts = t["timestamp"][is_empty]
            keep = ~is_empty
            t = {k: v[keep] for k, v in t.items()}
            lines = t["_line"]
    boxes64 = t.pop("_box")                                            # (N, 4) float64
    actions = t["action_id"]
    scores64 = t["score"] if kind == "results" else None

    # ---- value checks, vectorised; only rows before the first parse error count
    checked = lines < min(e[0] for e in errors) if errors else np.ones(len(lines), bool)
    tol = COORD_TOLERANCE
    with np.errstate(invalid="ignore"):
        outside = ~((boxes64 >= -tol) & (boxes64 <= 1 + tol)).all(axis=1)  # NaN too
    xflip = boxes64[:, 2] < boxes64[:, 0]
    yflip = boxes64[:, 3] < boxes64[:, 1]

    def box(i):
        return "box ({}, {}, {}, {})".format(*boxes64[i].tolist())
    errors = list(errors)
    errors += _first_bad(checked & outside, lines, path, lambda i: (
        f"{box(i)} has a coordinate outside [0, 1] (normalised coordinates expected)"))
    errors += _first_bad(checked & ~outside & xflip, lines, path,
                         lambda i: f"{box(i)} has x2 < x1")
    errors += _first_bad(checked & ~outside & ~xflip & yflip, lines, path,
                         lambda i: f"{box(i)} has y2 < y1")
    errors += _first_bad(checked & ((actions < -1) | (actions == 0)), lines, path, lambda i: (
        f"action_id {actions[i]} is not an AVA action id (positive; -1 or empty for a "
        "person box)"))
    if scores64 is not None:
        errors += _first_bad(checked & ~np.isfinite(scores64), lines, path,
                             lambda i: f"score {scores64[i]} is not a finite number")
    in_map = None
    if label_map is not None:
        in_map = _member(actions, label_map.ids)
        unknown = ~in_map & (actions > 0) & ~_member(actions, AVA_ACTION_IDS)
        errors += _first_bad(checked & unknown, lines, path, lambda i: (
            f"unknown action id {actions[i]}: not in the label map ({len(label_map)} "
            "classes) nor an AVA action (1..80)"))
    _first_error(errors)

    # ---- rows skipped on purpose, counted
    skipped = {}
    keep = np.ones(len(lines), bool)
    if in_map is not None:
        outside_map = ~in_map & (actions != -1)
        if outside_map.any():
            skipped["action not in label map"] = int(outside_map.sum())
            keep &= ~outside_map
    vids = _to_unicode(t.pop("video_id"))
    if kind == "gt" and not keep.all():
        # keyframes all of whose rows fall outside the label map stay known as annotated
        # (ava-2020 ignores results only on keyframes absent from the ground-truth file)
        keys, _ = keyframe_index(vids, t["timestamp"])
        lost = ~keep & ~np.isin(keys, keys[keep])
        if lost.any():
            ev = [vids[lost]] + ([empty_vids] if empty_vids is not None else [])
            et = [t["timestamp"][lost]] + ([empty_ts] if empty_ts is not None else [])
            empty_vids, empty_ts = np.concatenate(ev), np.concatenate(et)
    if isinstance(exclusions, (str, os.PathLike)):
        exclusions = read_exclusions(exclusions)
    if exclusions:
        ex_v = np.array([v for v, _ in exclusions], dtype=str)
        ex_t = np.array([s for _, s in exclusions], np.int64)
        keys, vocab = keyframe_index(vids, t["timestamp"])
        ex_keys, _ = keyframe_index(ex_v, ex_t, vocab)
        excluded = np.isin(keys, ex_keys) & keep
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
        vids, boxes64, actions = vids[sel], boxes64[sel], actions[sel]
        if scores64 is not None:
            scores64 = scores64[sel]
    return AvaRows(
        video_ids=vids, timestamps=t["timestamp"], boxes=boxes64.astype(np.float32),
        action_ids=actions, person_ids=t["person_id"] if kind == "gt" else None,
        scores=None if scores64 is None else scores64.astype(np.float32), skipped=skipped,
        boxes64=boxes64, scores64=scores64, empty_video_ids=empty_vids,
        empty_timestamps=empty_ts, source=path)


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


def _shortest(x):
    """Shortest decimal strings that read back to the same values: Python's repr for
    float64, numpy's str (Dragon4) for float32 (both ~1 us a value)."""
    if x.dtype == np.float64:
        return list(map(repr, x.tolist()))
    return x.astype(str).tolist()


def _write_rows(path, rows, last, progress):
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
    vids = np.asarray(rows.video_ids, dtype=str)
    ts = np.asarray(rows.timestamps, np.int64)
    acts = np.asarray(rows.action_ids, np.int64)
    step = 500_000
    steps = range(0, n, step)
    if progress and n > step:
        from tqdm import tqdm
        steps = tqdm(steps, desc=f"write {os.path.basename(os.fspath(path))}", leave=False)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for s in steps:
            sl = slice(s, s + step)
            v, t, b = vids[sl], ts[sl], boxes[sl]
            # "video,timestamp,x1,y1,x2,y2," is formatted once per run of rows sharing it
            # (AVA files list each box once per action)
            new = np.ones(len(t), bool)
            new[1:] = (v[1:] != v[:-1]) | (t[1:] != t[:-1]) | (b[1:] != b[:-1]).any(axis=1)
            first = np.flatnonzero(new)
            heads = [f"{vi},{ti:04d},{x1},{y1},{x2},{y2}," for vi, ti, x1, y1, x2, y2 in zip(
                v[first].tolist(), t[first].tolist(),
                *[_shortest(b[first, k]) for k in range(4)])]
            prefix = np.array(heads, dtype=object)[np.cumsum(new) - 1].tolist()
            tails = acts[sl].astype(str).tolist()
            if scores is not None:
                sc = (_shortest(scores[sl]) if scores.dtype.kind == "f"
                      else scores[sl].astype(str).tolist())
                tails = [a + "," + c for a, c in zip(tails, sc)]
            f.write("\n".join([p + q for p, q in zip(prefix, tails)]))
            f.write("\n")


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
