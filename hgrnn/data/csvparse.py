"""A vectorised byte-level parser for the numbers and strings of comma-separated files.

A self-contained performance component under the AVA readers (:mod:`hgrnn.data.ava`):
``read_rows`` turns a file into per-column numpy arrays plus line numbers and the errors
found, and ``to_unicode`` turns its string columns into numpy unicode. It knows nothing of
AVA; the readers say which columns a row has and check the values.

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

Errors are returned, not raised: each check of a chunk yields its first failing line, and
the caller reports the earliest of them (``read_rows``).
"""

from __future__ import annotations

import os

import numpy as np

from hgrnn.console import progress_bar

_CHUNK_BYTES = 8 << 20         # 8 MB slices: temporaries stay in cache, few page faults
_POW10 = np.array([10.0 ** k for k in range(23)])  # exact in float64 up to 1e22
_IPOW10 = 10 ** np.arange(19, dtype=np.int64)
_FAST_WIDTH = 15               # digits + dot of a field parsed exactly on the fast path
_BLANKS = (b"\r", b" ", b"\t")
_PAD = 16                      # zero bytes around a chunk: room for 8/16-byte field windows


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
        except OverflowError:                   # an integer beyond int64
            return int(lines[i]), f"{what} {text.strip()} is out of range"
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


def read_rows(path, ncols_allowed, columns, progress=False):
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
        bar = progress_bar(total=size, unit="B", unit_scale=True, leave=False,
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
    if ba.find(b'"', pad, cut) >= 0:                        # quoted fields: CSV meaning
        ba, cut, err = _unquote_chunk(ba, cut, line0)
        if err:
            errors.append(err)
    buf = np.frombuffer(ba, np.uint8)[:cut + pad]
    if any(ba.find(b, pad, cut) >= 0 for b in _BLANKS):     # CRLF, spaces around fields
        data = buf[pad:cut]
        err = _blank_inside_field(data, line0)
        if err:
            errors.append(err)
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


def _blank_inside_field(data, line0):
    """data: a chunk's bytes (whole lines). Spaces, tabs and CRs next to a comma or a line
    end are padding (float(" 0.5") is 0.5, CRLF line ends); between two other characters
    they would join two numbers ("09 02" is no 902). Returns (line, message) of the first
    such blank, else None."""
    blank = (data == 13) | (data == 32) | (data == 9)
    if not blank.any():
        return None
    idx = np.arange(len(data))
    solid = np.where(~blank, idx, -1)
    prev = np.maximum.accumulate(solid)                      # last non-blank at or before
    nxt = np.where(~blank, idx, len(data))
    nxt = np.minimum.accumulate(nxt[::-1])[::-1]             # first non-blank at or after
    edge = np.r_[data, np.uint8(10)]
    before = np.where(prev >= 0, edge[np.maximum(prev, 0)], 10)
    after = edge[nxt]
    inside = blank & (before != 44) & (before != 10) & (after != 44) & (after != 10)
    if not inside.any():
        return None
    i = int(np.flatnonzero(inside)[0])
    line = line0 + 1 + int(np.count_nonzero(data[:i] == 10))
    start = int(data[:i].tobytes().rfind(b"\n")) + 1
    end = data.tobytes().find(b"\n", i)
    text = data[start:end if end >= 0 else len(data)].tobytes().decode("utf-8", "replace")
    what = {13: "carriage return", 32: "space", 9: "tab"}[int(data[i])]
    return line, f"a {what} inside a field: {text[:120]!r}"


def _unquote_chunk(ba, cut, line0):
    """Lines with double quotes, read the way Python's csv module (the official reader)
    reads them: "abc" is abc. A quoted field holding a comma, a quote or a line break is
    refused (one row per line is what makes the vectorised parser possible). Returns
    (new bytearray with _PAD zeros around, new cut, first error or None)."""
    import csv
    pad = _PAD
    lines = bytes(ba[pad:cut]).split(b"\n")
    err = None
    for j, line in enumerate(lines):
        if b'"' not in line:
            continue
        text = line.decode("utf-8", "surrogateescape")
        try:
            fields = next(csv.reader([text], strict=True))
        except (csv.Error, StopIteration) as e:
            err = err or (line0 + 1 + j, f"bad quoting ({e}): {text[:120]!r}")
            continue
        if any(("," in f) or ('"' in f) or ("\r" in f) for f in fields):
            err = err or (line0 + 1 + j, "a quoted field holding a comma, quote or line "
                                         f"break is not supported: {text[:120]!r}")
            continue
        lines[j] = ",".join(fields).encode("utf-8", "surrogateescape")
    data = b"\n".join(lines)
    out = bytearray(pad + len(data) + pad)
    out[pad:pad + len(data)] = data
    return out, pad + len(data), err


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
    sa, sb, ln = pstart[cand], pstart[cand - 1], plen[cand]
    L = int(ln.max())                                 # (not plen.max(): one long line
    if int(pstart.max()) + L + 8 > len(buf):          # would cost a pass per 8 bytes)
        return None
    words = _words(buf)
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


MAX_ID_BYTES = 255              # longest video id accepted (a file name's limit)


def _gather_str(buf, s, e, lines, what):
    """Fields buf[s:e] -> numpy bytes array (and the first bad field as an error: empty,
    longer than MAX_ID_BYTES (which also bounds the array's memory: rows x widest field),
    or holding a NUL byte, which the bytes array would silently cut)."""
    width = e - s
    err = None
    if (width == 0).any():
        i = int(np.flatnonzero(width == 0)[0])
        err = (int(lines[i]), f"empty {what}")
    long = width > MAX_ID_BYTES
    if long.any():
        i = int(np.flatnonzero(long)[0])
        if err is None or lines[i] < err[0]:
            err = (int(lines[i]), f"{what} is {int(width[i])} bytes long (at most "
                                  f"{MAX_ID_BYTES}): {buf[s[i]:s[i] + 40].tobytes()!r}...")
        e = np.minimum(e, s + MAX_ID_BYTES)
        width = e - s
    w = max(int(width.max()), 1)
    if int(s.max()) + w > len(buf):
        buf = np.concatenate([buf, np.zeros(w, np.uint8)])
    chars = np.lib.stride_tricks.sliding_window_view(buf, w)[s]      # (n, w)
    inside = np.arange(w) < width[:, None]
    nul = ((chars == 0) & inside).any(axis=1)
    if nul.any():
        i = int(np.flatnonzero(nul)[0])
        if err is None or lines[i] < err[0]:
            err = (int(lines[i]), f"{what} holds a NUL byte: "
                                  f"{buf[s[i]:e[i]].tobytes()[:60]!r}")
    chars = np.where(inside, chars, np.uint8(0))
    return np.ascontiguousarray(chars).view(f"S{w}").ravel(), err


def to_unicode(b):
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
