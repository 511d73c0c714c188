"""Reading comma-separated files into per-column numpy arrays: a fast reader (pyarrow's
CSV reader) and a slow line-by-line reader that applies the parse rules and finds the first
bad line.

A component under the AVA readers (:mod:`hgrnn.data.ava`): the readers say which columns a
row has and check the values. The rules' codes and messages are the table of
:mod:`hgrnn.data.csvrules`; this module checks its parse rules:

* lines end with LF (a CR before it is padding, so CRLF files read the same); a UTF-8 BOM
  at the start is skipped; blank lines are skipped; line numbers count every line;
* spaces, tabs and CRs next to a comma or a line end are padding; between two other
  characters they are an error (``09 02`` is no ``902``);
* double quotes mean what they mean to Python's csv module (the official evaluator's
  reader): ``"abc"`` is ``abc``; a quoted field holding a comma, a quote or a line break is
  refused;
* a first line whose timestamp field (the second) is a word is a header, which AVA CSVs
  do not have;
* a row has one of the accepted numbers of columns, and the number of the file's first row
  (rows of a ``separate`` width aside): a row with fewer is missing a column;
* numbers are Python's ``int()`` / ``float()`` of the field (what the official evaluator
  does); integers must fit int64; an empty field of an ``"int?"`` column is -1;
* strings are not empty, at most :data:`MAX_ID_BYTES` bytes, without NUL bytes; they are
  decoded as UTF-8 (undecodable bytes replaced).

Why two readers: the full AVA validation results are ~5.6 million rows (~300 MB). Python's
csv module takes about a minute for that; pyarrow's C++ reader about 1.5 s, with correctly
rounded floats (it replaced a hand-written numpy byte parser after the measurement of issue
11, BENCHMARKS.md), but its errors carry no line numbers and it reads a few things
differently from the rules: it ends a line at a lone CR, keeps the blanks around a string,
takes hexadecimal integers. So :func:`read_fast` reads with pyarrow (integer columns as
dictionary-encoded text, turned into numbers by Python's ``int()`` once per distinct
value) and returns None whenever its values could differ from the rules (pyarrow failed,
an empty field, a string holding a quote or a blank, a lone CR, a width it does not take);
the caller then runs the slow reader, which either finds the first bad line or reads the
file (about 12 s a million lines here), from the block pyarrow refused on when it can
(:class:`Refused`). A lone CR is looked for with one ``find`` over the file mapped into
memory (no copy); only files holding a CR are scanned further. Where pyarrow accepts a
float, its value is Python's ``float()`` of the text (tested), but for NaN spellings
Python refuses (``nan(123)``), which no value rule lets pass (the callers parse such a
row again). When a value of rows pyarrow read breaks a rule, :func:`find_row` names the
row's line by counting lines, without parsing.
"""

from __future__ import annotations

import csv
import mmap
import os
from typing import NamedTuple

import numpy as np

from hgrnn.console import progress_bar
from hgrnn.data import csvrules

__all__ = ["CsvLineError", "MAX_ID_BYTES", "Refused", "read_fast", "iter_rows", "scan_rows",
           "find_row", "read_line", "read_lines", "parse_line", "kind_dtype"]

MAX_ID_BYTES = 255              # longest string field accepted (a file name's limit)
_BLANKS = b"\r \t"
_BLANK_NAMES = {13: "carriage return", 32: "space", 9: "tab"}
_NOT_IN_FAST_STRINGS = ('"', " ", "\t", "\r", "\x00")   # the slow reader decides those
_PEEK_BYTES = 1 << 16
_SCAN_BYTES = 16 << 20
_BLOCK_BYTES = 1 << 20          # pyarrow block: Arrow holds a few of them at a time
_PIECE_BYTES = 16 << 20         # read as one table (parsed on every core)
_INT64 = (-(1 << 63), (1 << 63) - 1)


class CsvLineError(ValueError):
    """A line breaks a parse rule: ``line`` (1-based), the rule's ``code`` (a code of
    :data:`hgrnn.data.csvrules.RULES`) and ``message``."""

    def __init__(self, line: int, code: str, message: str, summary: str | None = None):
        super().__init__(f"{line}: {message}")
        self.line, self.code, self.message = line, code, message
        self.summary = message if summary is None else summary   # without the row's text


def _error(line_no, code, **fields):
    return CsvLineError(line_no, code, csvrules.message(code, **fields),
                        csvrules.message(code, detail=False, **fields))


def kind_dtype(kind):
    """Column kind ("str" | "int" | "int?" | "float") -> numpy dtype of its array."""
    return {"str": str, "int": np.int64, "int?": np.int64, "float": np.float64}[kind]


# ----------------------------------------------------------------------------------------
# the fast reader
# ----------------------------------------------------------------------------------------

class Refused(NamedTuple):
    """:func:`read_fast` refused a block of the file after reading `rows` rows (> 0):
    `columns` holds those rows (as for a whole file), all read by the rules. The first
    bad line is among them (a value check) or from row `rows` on."""

    columns: dict
    rows: int


def read_fast(path, columns, widths, separate=(), stack=()):
    """Read `path` with pyarrow.csv -> (columns, separate_rows); :class:`Refused` or None
    when the slow reader must decide (a bad line, or anything pyarrow could read
    differently), after some rows or before any.

    columns: [(name, kind)] of the widest row form; widths: the accepted numbers of
    columns; rows of a width in `separate` (e.g. 2-column empty-keyframe rows of AVA
    ground truth) are returned apart, as [(row number, values)] in file order (pyarrow's
    numbers, which do not count blank lines: an order, not a line), all other rows
    must have the width of the file's first data row. Returns ({name: (N,) array} for the
    first `width` columns, the rest filled with -1 / NaN, each string column as
    "_codes_<name>": ((N,) int64 codes, (V,) str vocabulary), the column being
    vocabulary[codes] (made by the caller where it needs the strings); separate rows).
    stack: names of
    float columns returned also together, as "_stack" (N, len(stack)) float64, whose
    columns the named arrays are (one copy less for AVA's boxes; stored column by
    column, so that each column is contiguous).

    pyarrow reads the file in pieces of 16 MB, each as a table of 1 MB blocks parsed on
    every core; the blocks are converted into numpy arrays allocated for the whole file
    (estimated from the first block); video ids are dictionary-encoded per block and
    become codes into one vocabulary. Where pyarrow refuses a piece, and with `separate`,
    its streaming reader reads the file instead, on one thread, which numbers the rows it
    hands to the callback (ground-truth files are small) and returns the rows before a
    block it refuses."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    path = os.fspath(path)
    width = _first_width(path, separate)
    if width not in widths or _has_lone_cr(path):
        return None
    names = [name for name, _ in columns[:width]]
    # integers are read as dictionary-encoded text and converted by Python's int() once
    # per distinct value: pyarrow's int64 parser takes hexadecimal ("0x10" is 16),
    # Python's int() does not (and AVA's integer columns hold few distinct values)
    text = pa.dictionary(pa.int32(), pa.string())
    arrow_type = {"str": text, "int": text, "int?": text, "float": pa.float64()}
    side = []

    def other_width(row):                       # called by pyarrow for rows of other widths
        if row.actual_columns in separate and row.number is not None:
            side.append((row.number, row.text))
            return "skip"
        return "error"

    options = dict(
        read_options=pcsv.ReadOptions(column_names=names, use_threads=not separate,
                                      block_size=_BLOCK_BYTES),
        parse_options=pcsv.ParseOptions(
            quote_char=False, ignore_empty_lines=True,
            invalid_row_handler=other_width if separate else None),
        convert_options=pcsv.ConvertOptions(
            column_types={name: arrow_type[kind] for name, kind in columns[:width]},
            null_values=[""], strings_can_be_null=False))
    out = None
    if not separate:
        # pieces of the file as whole tables, each parsed on every core (5.6M rows: 0.7 s
        # where streaming takes 1.2 s on 2 cores); pieces, so that Arrow holds one piece
        # (16 MB of text) and not the whole file as a table (~300 MB more at the peak)
        out = _Columns(columns[:width], stack, os.path.getsize(path))
        try:
            with open(path, "rb") as f:             # not mapped: its pages would stay
                for start, end in _pieces(path, _PIECE_BYTES):
                    f.seek(start)
                    piece = pa.BufferReader(pa.py_buffer(f.read(end - start)))
                    for batch in pcsv.read_csv(piece, **options).to_batches():
                        if not out.add(batch):
                            return _refused(out, columns, width)
        except pa.ArrowException:           # the streaming reader finds where it fails
            out = None
    if out is None:
        out = _Columns(columns[:width], stack, os.path.getsize(path))
        try:
            for batch in pcsv.open_csv(path, **options):
                if not out.add(batch):
                    return _refused(out, columns, width)
        except pa.ArrowException:
            return _refused(out, columns, width)
    separate_rows = []
    for line, text in side:
        values = _fast_side_row(text, columns)
        if values is None:
            return None
        separate_rows.append((line, values))
    return _filled(out.result(), columns, width), separate_rows


def _pieces(path, piece_bytes):
    """[(start, end)] byte ranges covering the file, each about `piece_bytes` and ending
    after a line feed (the last at the end of the file)."""
    size = os.path.getsize(path)
    cuts = [0]
    with open(path, "rb") as f:
        while cuts[-1] + piece_bytes < size:
            f.seek(cuts[-1] + piece_bytes)
            newline = f.read(_PEEK_BYTES).find(b"\n")
            if newline < 0:                     # a line over 64 KB: the rest in one piece
                break
            cuts.append(cuts[-1] + piece_bytes + newline + 1)
    if cuts[-1] < size or size == 0:
        cuts.append(size)
    return list(zip(cuts[:-1], cuts[1:]))


def _filled(result, columns, width):
    """The columns a row of `width` lacks, as -1 / NaN."""
    n = len(next(v for name, v in result.items() if not name.startswith("_")))
    for name, kind in columns[width:]:
        result[name] = np.full(n, np.nan) if kind == "float" else np.full(n, -1, np.int64)
    return result


def _refused(out, columns, width):
    return Refused(_filled(out.result(), columns, width), out.n) if out.n else None


class _Columns:
    """numpy arrays filled block by block from pyarrow record batches.

    Allocated for the rows the file is estimated to hold (from the first block's rows
    per byte, 5 % spare; grown if needed); strings are kept as int64 codes into a
    vocabulary, integers converted once per distinct text (a block's dictionary is
    looked up value by value)."""

    def __init__(self, columns, stack, size):
        self.columns, self.stack, self.size = columns, stack, size
        self.n, self.cap, self.arrays = 0, 0, {}
        self.vocab = {}                           # string -> code
        self.ints = {}                            # text -> integer

    def _grow(self, need):
        cap = max(need, 2 * self.cap)
        old, self.arrays = self.arrays, {}
        if self.stack:              # column by column: each stacked column is contiguous
            self.arrays["_stack"] = np.empty((len(self.stack), cap), np.float64)
        for name, kind in self.columns:
            if name in self.stack:
                self.arrays[name] = self.arrays["_stack"][self.stack.index(name)]
            else:
                dtype = np.float64 if kind == "float" else np.int64
                self.arrays[name] = np.empty(cap, dtype)
        for key, arr in old.items():
            if key == "_stack":
                self.arrays[key][:, :self.n] = arr[:, :self.n]
            elif key not in self.stack:
                self.arrays[key][:self.n] = arr[:self.n]
        self.cap = cap

    def add(self, batch):
        """Copy a record batch in; False when a value is one the slow reader must judge
        (an empty field, a string that is empty, too long or holds a quote, a blank or
        a NUL byte)."""
        m = batch.num_rows
        if self.n + m > self.cap:
            estimate = int(m * self.size / _BLOCK_BYTES * 1.05) + 1024 if not self.cap else 0
            self._grow(max(self.n + m, estimate))
        sl = slice(self.n, self.n + m)
        for c, (name, kind) in enumerate(self.columns):
            col = batch.column(c)
            if kind != "float":                   # dictionary-encoded text
                lut = self._lookup(col.dictionary.to_pylist(), kind)
                if lut is None:
                    return False
                self.arrays[name][sl] = lut[_numpy_view(col.indices, np.int32)]
                continue
            if col.null_count:
                return False
            self.arrays[name][sl] = _numpy_view(col, np.float64)
        self.n += m
        return True

    def _lookup(self, texts, kind):
        """A block's dictionary -> (k,) int64: string codes into the vocabulary, or the
        integers; None when a value is one the slow reader must judge."""
        out = np.empty(len(texts), np.int64)
        known = self.vocab if kind == "str" else self.ints
        for k, s in enumerate(texts):
            value = known.get(s)
            if value is None:
                value = self._new_string(s) if kind == "str" else self._new_int(s, kind)
                if value is None:
                    return None
                known[s] = value
            out[k] = value
        return out

    def _new_string(self, s):
        if (not s or len(s.encode("utf-8")) > MAX_ID_BYTES
                or any(ch in s for ch in _NOT_IN_FAST_STRINGS)):
            return None
        return len(self.vocab)

    @staticmethod
    def _new_int(s, kind):
        if not s:
            return -1 if kind == "int?" else None
        if any(ch in s.strip(" \t") for ch in _NOT_IN_FAST_STRINGS):
            return None
        try:
            value = int(s)
        except ValueError:
            return None
        return value if _INT64[0] <= value <= _INT64[1] else None

    def result(self):
        if not self.cap:
            self._grow(0)
        out = {key: arr[:self.n] for key, arr in self.arrays.items() if key != "_stack"}
        if self.stack:
            out["_stack"] = self.arrays["_stack"][:, :self.n].T        # (N, len(stack))
        vocab = np.asarray(list(self.vocab), dtype=str) if self.vocab else np.zeros(1, str)
        for name, kind in self.columns:
            if kind == "str":
                out["_codes_" + name] = (out.pop(name), vocab)
        return out


def _numpy_view(arr, dtype):
    """A pyarrow array without nulls -> numpy view of its values (no copy). Not
    ``arr.to_numpy()``, which imports pandas (0.3 s) on first use."""
    return np.frombuffer(arr.buffers()[1], dtype, count=len(arr),
                         offset=arr.offset * np.dtype(dtype).itemsize)


def _first_width(path, separate=()):
    """Number of columns of the first non-blank line whose width is not in `separate`
    (None: no such line in the first 64 KB, or it holds a quote)."""
    with open(path, "rb") as f:
        head = f.read(_PEEK_BYTES)
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    for line in head.split(b"\n"):
        if line.strip(_BLANKS) and line.count(b",") + 1 not in separate:
            return None if b'"' in line else line.count(b",") + 1
    return None


def _has_lone_cr(path):
    """Whether the file holds a CR not followed by LF (pyarrow would end a line there).
    One memchr over the mapped file when it holds no CR at all (AVA's files)."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return False
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            if mm.find(b"\r") < 0:
                return False
    block = bytearray(_SCAN_BYTES + 1)
    view = memoryview(block)
    with open(path, "rb") as f:
        got = f.readinto(view[1:]) + 1            # block[0]: the last byte of the last block
        block[0] = 0
        while got > 1:
            if block.find(b"\r", 0, got) >= 0:
                n_cr = block.count(b"\r", 0, got)
                if n_cr != block.count(b"\r\n", 0, got) + (block[got - 1] == 13):
                    return True
            tail = block[got - 1]
            got = f.readinto(view[1:]) + 1
            block[0] = tail
            if tail == 13 and (got == 1 or block[1] != 10):
                return True
    return False


def _fast_side_row(text, columns):
    """A plain `id,integer` row handed over by pyarrow -> values, else None."""
    text = text.rstrip("\r")
    fields = text.split(",")
    if any(f == "" or f != f.strip(" \t\r\x00\"") or '"' in f for f in fields):
        return None
    try:
        return [f if kind == "str" else int(f) for f, (_, kind) in zip(fields, columns)]
    except ValueError:
        return None


# ----------------------------------------------------------------------------------------
# the slow reader: the rules, line by line
# ----------------------------------------------------------------------------------------

def iter_rows(path, widths, columns, progress=False, start=1, separate=()):
    """Yield (line, ncols, values) for every data row of `path` in file order, values a
    list of Python str / int / float for the first ncols columns; raise
    :class:`CsvLineError` at the first line that breaks the rules (module docstring).

    widths: {ncols: description} of the accepted row widths (named in the error);
    columns: [(name, kind)] of the widest form; separate: widths of rows apart from the
    others (AVA's 2-column empty keyframes), all other rows must have the width of the
    first. progress: a bar over the bytes for files over 64 MB (about 12 s a million
    lines). start: the first line to parse (the lines before it are only counted, and
    known to keep the rules)."""
    for line_no, ncols, row in scan_rows(path, widths, columns, progress, start, separate):
        if ncols is None:
            raise row
        yield line_no, ncols, row


def scan_rows(path, widths, columns, progress=False, start=1, separate=()):
    """:func:`iter_rows` that goes on after a bad line: yields (line, None,
    :class:`CsvLineError`) for it (``check-data`` lists every bad line)."""
    path = os.fspath(path)
    size = os.path.getsize(path)
    bar = None
    if progress and size > 64 << 20:
        bar = progress_bar(total=size, unit="B", unit_scale=True, leave=False,
                           desc=f"check {os.path.basename(path)} line by line")
    first = True                    # no non-blank line yet
    width = None                    # of the first row (not of a `separate` width)
    try:
        with open(path, "rb") as f:
            for line_no, raw in enumerate(f, 1):
                if bar is not None and line_no % 65536 == 0:
                    bar.update(f.tell() - bar.n)
                if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                line = raw[:-1] if raw.endswith(b"\n") else raw
                if line_no < start:     # known good: only the first row's width is wanted
                    if width is None and line.strip(_BLANKS):
                        first = False
                        if line.count(b",") + 1 not in separate:
                            width = line.count(b",") + 1
                    continue
                try:
                    row = parse_line(line, line_no, widths, columns, first, width, separate)
                except CsvLineError as e:
                    first = False
                    yield line_no, None, e
                    continue
                if row is not None:
                    first = False
                    if width is None and len(row) not in separate:
                        width = len(row)
                    yield line_no, len(row), row
    finally:
        if bar is not None:
            bar.close()


def _text(line):
    return line.decode("utf-8", "replace")[:120]


def find_row(path, row, separate=()):
    """(line number, bytes without LF) of data row `row` (0-based) of a file that
    :func:`read_fast` read: blank lines and rows of a width in `separate` are not counted.
    (To name the line of a row whose values fail a check, without parsing every line.)"""
    n = -1
    with open(os.fspath(path), "rb") as f:
        for line_no, raw in enumerate(f, 1):
            if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            line = raw.rstrip(b"\n")
            if not line.strip(_BLANKS) or line.count(b",") + 1 in separate:
                continue
            n += 1
            if n == row:
                return line_no, line
    raise IndexError(f"{path} has no data row {row}")


def read_line(path, line_no):
    """Line `line_no` (1-based) of `path`, bytes without LF (for a message)."""
    return read_lines(path, [line_no])[0]


def read_lines(path, line_nos):
    """Lines `line_nos` (1-based, ascending) of `path`, bytes without LF, in one pass."""
    wanted = iter([int(n) for n in line_nos])
    out = []
    want = next(wanted, None)
    with open(os.fspath(path), "rb") as f:
        for n, raw in enumerate(f, 1):
            while want == n:
                out.append(raw.rstrip(b"\n"))
                want = next(wanted, None)
            if want is None:
                return out
    raise IndexError(f"{path} has no line {want}")


def parse_line(line, line_no, widths, columns, first=False, width=None, separate=()):
    """One line (bytes, without LF) -> values, None for a blank line; CsvLineError.
    first: the file's first non-blank line (may be a header); width: the number of
    columns of the file's first row, which rows of widths outside `separate` must have."""
    if first and _is_header(line, columns):
        raise _error(line_no, "header")
    if b'"' in line:
        line = _unquote(line, line_no)
    if any(b in line for b in (b"\r", b" ", b"\t")):
        _blank_inside_field(line, line_no)
        line = line.replace(b"\r", b"").replace(b" ", b"").replace(b"\t", b"")
    if not line:
        return None
    fields = line.split(b",")
    n = len(fields)
    if n not in widths:
        want = " or ".join(f"{k} ({d})" for k, d in widths.items())
        raise _error(line_no, "column-missing" if n < max(widths) else "columns", want=want,
                     got=n, text=_text(line))
    if width is not None and n != width and n not in separate:
        raise _error(line_no, "column-missing" if n < width else "columns",
                     want=f"{width} (as the file's first row)", got=n, text=_text(line))
    return [_convert(field, name, kind, line_no)
            for field, (name, kind) in zip(fields, columns)]


def _is_header(line, columns):
    """A word (not a number) in the second field where a number belongs: a header row."""
    fields = line.split(b",", 2)
    if len(fields) < 2 or len(columns) < 2 or columns[1][1] == "str":
        return False
    field = fields[1].strip(_BLANKS + b'"')
    if not field[:1].isalpha() and not field.startswith(b"_"):
        return False
    try:
        float(field)
        return False            # nan, inf
    except ValueError:
        return True


def _convert(field, name, kind, line_no):
    if kind == "str":
        if not field:
            raise _error(line_no, "empty", name=name)
        if len(field) > MAX_ID_BYTES:
            raise _error(line_no, "too-long", name=name, size=len(field), limit=MAX_ID_BYTES,
                         start=field[:40])
        if b"\x00" in field:
            raise _error(line_no, "nul", name=name, start=field[:60])
        return field.decode("utf-8", "replace")
    if kind == "int?" and not field:
        return -1
    convert = float if kind == "float" else int
    try:
        value = convert(field)          # the bytes: ASCII numbers without a decode
    except ValueError:
        text = field.decode("utf-8", "replace")
        try:
            value = convert(text)       # what the text means to Python (e.g. other digits)
        except ValueError:
            raise _error(line_no, "not-number" if kind == "float" else "not-integer",
                         name=name, text=text) from None
    if kind != "float" and not _INT64[0] <= value <= _INT64[1]:
        raise _error(line_no, "int-range", name=name,
                     text=field.decode("utf-8", "replace").strip())
    return value


def _unquote(line, line_no):
    """A line with double quotes, read the way Python's csv module reads it."""
    text = line.decode("utf-8", "surrogateescape")
    try:
        fields = next(csv.reader([text], strict=True))
    except (csv.Error, StopIteration) as e:
        raise _error(line_no, "quoting", error=e, text=text[:120]) from None
    if any(("," in f) or ('"' in f) or ("\r" in f) for f in fields):
        raise _error(line_no, "quoted-separator", text=text[:120])
    return ",".join(fields).encode("utf-8", "surrogateescape")


def _blank_inside_field(line, line_no):
    """A space, tab or CR between two characters that are neither a comma nor the line's
    end would join two values: an error naming the first such blank."""
    for field in line.split(b","):
        core = field.strip(_BLANKS)
        inside = [core.find(b) for b in (b"\r", b" ", b"\t") if b in core]
        if inside:
            ch = core[min(inside)]
            raise _error(line_no, "blank", blank=_BLANK_NAMES[ch], text=_text(line))
