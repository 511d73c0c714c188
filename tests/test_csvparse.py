"""The CSV readers (hgrnn.data.csvparse): the fast reader (pyarrow) against the slow
line-by-line reader and Python's own parsing, through the AVA readers that use them; the
slow reader's FILE:LINE errors on damaged files; which files the fast reader refuses."""

import os
import re

import numpy as np
import pytest

from hgrnn.data import csvparse
from hgrnn.data.ava import AvaFormatError, LabelMap, read_annotations, read_results
from test_ava import write  # noqa: E402  (tests/ is on sys.path under pytest)


def python_parse(text):
    """Obviously-correct parse with Python's csv semantics (what the official code does)."""
    rows = [line.split(",") for line in text.splitlines() if line.strip()]
    return rows


@pytest.fixture(params=["fast", "slow"])
def reader(request, monkeypatch):
    """Run a test with the fast reader (and check that it was used), or with the slow
    reader alone (the fast reader refusing every file)."""
    used = []
    if request.param == "slow":
        monkeypatch.setattr(csvparse, "read_fast", lambda *a, **k: used.append(0))
    else:
        fast = csvparse.read_fast

        def spy(*a, **k):
            out = fast(*a, **k)
            used.append(out is not None)
            return out
        monkeypatch.setattr(csvparse, "read_fast", spy)
    yield request.param, used


def assert_reader_used(reader):
    """The fast reader took the file when it was on (and was not asked when off)."""
    mode, used = reader
    assert used == ([True] if mode == "fast" else [0])


def refuse_slow(monkeypatch):
    """Make any use of the slow reader fail the test."""
    def no(*a, **k):
        raise AssertionError("the slow reader was used")
    monkeypatch.setattr(csvparse, "iter_rows", no)


def slow_reader_starts(monkeypatch):
    """The list of lines the slow reader is asked to start at, filled as it is used."""
    starts = []
    iter_rows = csvparse.iter_rows

    def spy(*a, **k):
        starts.append(k.get("start", a[4] if len(a) > 4 else 1))
        return iter_rows(*a, **k)
    monkeypatch.setattr(csvparse, "iter_rows", spy)
    return starts


def assert_rows_equal(a, b):
    for f in ("video_ids", "timestamps", "boxes64", "action_ids", "person_ids", "scores64",
              "empty_video_ids", "empty_timestamps"):
        x, y = getattr(a, f), getattr(b, f)
        assert (x is None and y is None) or (np.array_equal(x, y) and x.dtype == y.dtype), f
    assert a.skipped == b.skipped


def test_readers_equal_python_float(tmp_path, reader):
    rng = np.random.default_rng(0)
    n = 3000
    texts = []
    for i in range(n):
        x1, y1 = rng.random(2) * 0.5
        w = [f"{x1:.{rng.integers(0, 9)}f}", f"{y1:.3f}", f"{x1 + 0.4:.17f}",
             f"{min(y1 + 0.3, 1):.5g}"]
        s = [f"{rng.random():.6f}", f"{rng.random():.3e}", f"{rng.random()}", "1", "0.",
             ".5", "-0.25", f"{rng.random() * 1e-6:.20f}"][i % 8]
        texts.append(f"vid{i % 7},{902 + i % 5:04d},{','.join(w)},{1 + i % 80},{s}")
    text = "\n".join(texts)
    p = write(tmp_path, text)
    r = read_results(p)
    assert_reader_used(reader)
    ref = python_parse(text)
    assert len(r) == n
    assert r.video_ids.tolist() == [x[0] for x in ref]
    assert r.timestamps.tolist() == [int(x[1]) for x in ref]
    assert r.boxes64.tolist() == [[float(v) for v in x[2:6]] for x in ref]   # bit-exact
    assert r.action_ids.tolist() == [int(x[6]) for x in ref]
    assert r.scores64.tolist() == [float(x[7]) for x in ref]
    assert r.boxes.dtype == np.float32 and r.scores.dtype == np.float32
    assert r.timestamps.dtype == np.int64 and r.action_ids.dtype == np.int64


def test_block_boundaries_and_first_bad_line(tmp_path, monkeypatch):
    """Files spanning many pyarrow blocks (rows cut by block ends), with and without a
    last newline: the fast reader equals the slow one; an error in block 10 names its
    line (the fast reader fails, the slow one finds the line)."""
    rows = "\n".join(f"v{i},{900 + i},0.1,0.2,0.3,0.4,{1 + i % 3},{i}" for i in range(500))
    for text in (rows, rows + "\n"):
        p = write(tmp_path, text)
        slow = _slow(monkeypatch, read_annotations, p)
        for block in (97, 1 << 20):
            monkeypatch.setattr(csvparse, "_BLOCK_BYTES", block)
            with monkeypatch.context() as m:
                refuse_slow(m)
                fast = read_annotations(p)
            assert len(fast) == 500
            assert_rows_equal(fast, slow)
    monkeypatch.setattr(csvparse, "_BLOCK_BYTES", 97)
    bad = rows.replace("v400,1300,0.1", "v400,1300,x0.1")
    p = write(tmp_path, bad)
    starts = slow_reader_starts(monkeypatch)
    with pytest.raises(AvaFormatError, match=r"f.csv:401: x1 must be a number, got 'x0.1'"):
        read_annotations(p)
    assert len(starts) == 1 and 300 < starts[0] <= 401   # the slow reader began at the block
    # a bad value before the refused block is the first bad line, found without parsing
    p = write(tmp_path, bad.replace("v9,909,0.1,0.2,0.3", "v9,909,0.4,0.2,0.3"))
    with pytest.raises(AvaFormatError,
                       match=r"f.csv:10: x2 < x1 or y2 < y1 .*: 'v9,909,0.4,0.2,0.3,0.4,"):
        read_annotations(p)
    assert len(starts) == 1
    # an unknown action id before it: the message lists the ids of the whole file up to
    # the line pyarrow refused, so the slow reader reads from the start
    lm = LabelMap((1, 2, 3), ("a", "b", "c"))
    p = write(tmp_path, bad.replace("v9,909,0.1,0.2,0.3,0.4,1", "v9,909,0.1,0.2,0.3,0.4,91")
              .replace("v450,1350,0.1,0.2,0.3,0.4,1", "v450,1350,0.1,0.2,0.3,0.4,92")
              .replace("v350,1250,0.1,0.2,0.3,0.4,3", "v350,1250,0.1,0.2,0.3,0.4,93"))
    with pytest.raises(AvaFormatError, match=r"f.csv:10: unknown action id 91: .* 2 such "
                                             r"id\(s\): 91, 93$"):
        read_annotations(p, lm)
    assert starts[1:] == [1]


def test_result_files_read_in_pieces_equal_the_slow_reader(tmp_path, monkeypatch):
    """Result files are read in pieces (each a pyarrow table): pieces cut between lines,
    with and without a last newline, with CRLF and blank lines at the cuts, equal the slow
    reader; a piece pyarrow refuses hands the file to the streaming reader, so the slow
    reader still starts at the refused block and names the line."""
    lines = [f"v{i % 7},{900 + i},0.1,0.2,0.3,0.4,{1 + i % 3},0.{i}" for i in range(600)]
    rows = "\n".join(lines)
    for text in (rows, rows + "\n", rows.replace("\n", "\r\n") + "\r\n",
                 "\n\n".join(lines[:300]) + "\n\n" + rows):
        p = write(tmp_path, text)
        slow = _slow(monkeypatch, read_results, p)
        for piece in (1 << 20, 61, 500, 4000):          # 61: shorter than a line
            monkeypatch.setattr(csvparse, "_PIECE_BYTES", piece)
            monkeypatch.setattr(csvparse, "_BLOCK_BYTES", 97)
            cuts = csvparse._pieces(p, piece)
            assert cuts[0][0] == 0 and cuts[-1][1] == os.path.getsize(p)
            assert all(a == b for (_, a), (b, _) in zip(cuts, cuts[1:]))
            assert len(cuts) == 1 or piece < len(text)
            with monkeypatch.context() as m:
                refuse_slow(m)
                fast = read_results(p)
            assert len(fast) == len(slow)
            assert_rows_equal(fast, slow)
    monkeypatch.setattr(csvparse, "_PIECE_BYTES", 2000)
    p = write(tmp_path, rows.replace("v1,1300,0.1", "v1,1300,x0.1"))
    starts = slow_reader_starts(monkeypatch)
    with pytest.raises(AvaFormatError, match=r"f.csv:401: x1 must be a number, got 'x0.1'"):
        read_results(p)
    assert len(starts) == 1 and 300 < starts[0] <= 401


def test_arrays_grow_when_the_first_block_underestimates_the_rows(tmp_path, monkeypatch):
    """The arrays are allocated from the first block's rows per byte: long rows first,
    then 20,000 short ones make them grow (twice the size, the rows copied over)."""
    text = "".join(f"{'w' * 250}{i},{i},0.1,0.2,0.3,0.4,{1 + i % 80},0.5\n" for i in range(14))
    text += "".join(f"v{i % 3},{i},0.1,0.2,0.3,0.4{i % 5},{1 + i % 80},0.{i % 7}\n"
                    for i in range(20_000))
    p = write(tmp_path, text)
    slow = _slow(monkeypatch, read_results, p)
    monkeypatch.setattr(csvparse, "_BLOCK_BYTES", 4096)
    refuse_slow(monkeypatch)
    fast = read_results(p)
    assert len(fast) == 20_014
    assert_rows_equal(fast, slow)


def _slow(monkeypatch, fn, *args, **kwargs):
    with monkeypatch.context() as m:
        m.setattr(csvparse, "read_fast", lambda *a, **k: None)
        return fn(*args, **kwargs)


def test_blank_lines_crlf_and_timestamps(tmp_path, reader):
    p = write(tmp_path, b"\xef\xbb\xbfv,0902,0.1,0.2,0.3,0.4,12,1\r\n\r\n"   # BOM, CRLF,
                        b"v,902,0.1,0.2,0.3,0.4,79,1\r\n\n")              # blank lines
    r = read_annotations(p)
    assert_reader_used(reader)
    assert r.timestamps.tolist() == [902, 902]
    assert r.action_ids.tolist() == [12, 79] and r.person_ids.tolist() == [1, 1]
    assert r.video_ids.tolist() == ["v", "v"]


def test_fast_reader_numbers_are_python_numbers(tmp_path):
    """Random strings of number characters, one file each: whatever the fast reader
    accepts must be exactly Python's float()/int() of the text, and a text the rules
    refuse (a blank inside) must be refused; what it leaves to the slow reader is
    Python's value there (or the slow reader's error)."""
    rng = np.random.default_rng(3)
    alphabet = list("0123456789" * 4 + "..-+e \tnaif_x")
    texts = ["".join(rng.choice(alphabet, size=int(rng.integers(0, 12)))) for _ in range(900)]
    texts += ["0", "-0", "1.", ".5", "-.5", "+7", "12345678", "1234567.8", "0.1234567",
              "123456789", "0.12345678", "-0.0000001", "00000000.5", "99999999", "1e5", "--1",
              "nan", "NaN", "inf", "-Infinity", "1e400", "1e-400", "1E5", " 7", "7 ", "\t7",
              "7 1", "1_000", "0x10", "9223372036854775807", "9223372036854775808",
              "-9223372036854775809", "0.1234567890123456789", "4.9e-324",
              "1.7976931348623157e308", "nan(123)", "infinity", "+.5", "5.e1", "1__0"]
    fast_accepted = 0
    p = tmp_path / "n.csv"
    for kind, conv in (("float", float), ("int", int)):
        columns = [("video_id", "str"), ("value", kind)]
        for text in texts:
            p.write_bytes(f"v,{text}\n".encode())
            try:
                want = conv(text)
                if kind == "int" and not -2 ** 63 <= want < 2 ** 63:
                    want = None
            except ValueError:
                want = None
            inside_blank = any(b in text.strip(" \t") for b in " \t")
            out = csvparse.read_fast(p, columns, {2: "v,x"})
            if out is not None:
                got = out[0]["value"][0].item()
                if got != got and want is None:   # pyarrow's NaN of "nan(123)": refused
                    continue                      # by every value check (next test)
                assert want is not None and not inside_blank, text
                assert type(got) is conv and (got == want or (want != want and got != got)), \
                    (text, got, want)
                fast_accepted += 1
            try:
                rows = list(csvparse.iter_rows(p, {2: "v,x"}, columns))
                got = rows[0][2][1] if rows else None
            except csvparse.CsvLineError:
                got = None
            if inside_blank or not text.strip(" \t"):
                want = None
            assert (got is None and want is None) or got == want or (got != got and want != want), \
                (text, got, want)
    assert fast_accepted > 300


def test_rows_repeating_a_box_read_like_python(tmp_path, reader):
    """AVA files hold one row per box and class: rows repeating the previous row's
    video..y2, or differing from it in one byte, or in length only, read like Python."""
    rng = np.random.default_rng(5)
    lines = []
    base = ["vidA", "0902", "0.125", "0.25", "0.5", "0.75"]
    for box in range(300):
        prefix = list(base)
        col = int(rng.integers(0, 6))
        text = prefix[col]
        pos = int(rng.integers(2, max(len(text), 3)))
        if col > 1:                               # change one decimal of one coordinate
            prefix[col] = text[:pos] + str((int(text[pos]) + 1) % 10) + text[pos + 1:]
        elif col == 0:
            prefix[0] = "vidB" if box % 2 else "vidA"
        elif col == 1:
            prefix[1] = str(902 + box % 3).zfill(4 + box % 2)  # same value, other length
        for _ in range(int(rng.integers(1, 5))):
            lines.append(",".join(prefix + [str(int(rng.integers(1, 81))),
                                            f"{rng.random():.6f}"]))
    text = "\n".join(lines) + "\n"
    p = write(tmp_path, text)
    r = read_results(p)
    ref = python_parse(text)
    assert r.video_ids.tolist() == [x[0] for x in ref]
    assert r.timestamps.tolist() == [int(x[1]) for x in ref]
    assert r.boxes64.tolist() == [[float(v) for v in x[2:6]] for x in ref]
    assert r.action_ids.tolist() == [int(x[6]) for x in ref]
    assert r.scores64.tolist() == [float(x[7]) for x in ref]


def test_ground_truth_with_empty_keyframes_is_read_fast(tmp_path, monkeypatch):
    """2-column rows among 8-column ones (also first, after blank lines, CRLF) go to the
    empty keyframes in file order, without the slow reader."""
    text = ("a,0903\r\nv,902,0.1,0.2,0.3,0.4,12,5\r\n\r\nb,0904\r\n"
            "w,0902,0.1,0.2,0.3,0.4,14,6\r\nc,7\r\n")
    p = write(tmp_path, text)
    slow = _slow(monkeypatch, read_annotations, p)
    refuse_slow(monkeypatch)
    fast = read_annotations(p)
    assert_rows_equal(fast, slow)
    assert fast.empty_video_ids.tolist() == ["a", "b", "c"]
    assert fast.empty_timestamps.tolist() == [903, 904, 7]
    assert fast.video_ids.tolist() == ["v", "w"] and fast.person_ids.tolist() == [5, 6]


def test_value_error_after_a_fast_read_names_its_line_without_the_slow_reader(tmp_path,
                                                                              monkeypatch):
    """pyarrow read the file but a value fails a check: the line is found by counting
    lines (blank lines and empty-keyframe rows count as lines, not as rows)."""
    p = write(tmp_path, "a,0903\n\nv,902,0.1,0.2,0.3,0.4,12,1\r\nb,904\n\n"
                        "v,902,0.3,0.2,0.1,0.4,12,1\nv,902,0.3,0.2,0.1,1.4,12,1\n")
    refuse_slow(monkeypatch)
    with pytest.raises(AvaFormatError,
                       match=r"f.csv:6: x2 < x1 or y2 < y1 .*: 'v,902,0.3,0.2,0.1,0.4,"):
        read_annotations(p)


def test_nan_spellings_only_pyarrow_takes_are_line_errors(tmp_path):
    for bad, message in (("v,902,0.1,0.2,0.3,0.4,12,nan(1)", "score must be a number, got "
                                                              "'nan(1)'"),
                         ("v,902,nan(2),0.2,0.3,0.4,12,0.5", "x1 must be a number")):
        p = write(tmp_path, GOOD + "\n" + bad + "\n" + GOOD)
        with pytest.raises(AvaFormatError, match=rf"f.csv:3: {re.escape(message)}"):
            read_results(p)


@pytest.mark.parametrize("text, why, error", [
    (b"v,902,0.1,0.2,0.3,0.4,12,0.5\rv,903,0.1,0.2,0.3,0.4,12,0.5\n", "a lone CR",
     ":1: a carriage return inside a field"),
    (b' v ,902,0.1,0.2,0.3,0.4,12,0.5\n', "blanks around a string", None),
    (b'"v",902,0.1,0.2,0.3,0.4,12,0.5\n', "quotes", None),
    (b'v,902,0.1,0.2,0.3,0.4,12,"0.5"\n', "quotes", None),
    (b'v"w,902,0.1,0.2,0.3,0.4,12,0.5\n', "a quote inside", ":1: a quoted field holding"),
    (b"v,902,0.1_0,0.2,0.3,0.4,12,0.5\n", "a number pyarrow does not take", None),
    (b"v,0x10,0.1,0.2,0.3,0.4,12,0.5\n", "hexadecimal, which pyarrow's int64 takes",
     ":1: timestamp must be an integer, got '0x10'"),
    (b"v,902,0.1,0.2,0.3,0.4,12,0.5\n \n", "a line of blanks", None),
    (b"", "an empty file", None),
])
def test_fast_reader_leaves_to_the_slow_one(tmp_path, text, why, error):
    """Files pyarrow would read differently from the rules, or not at all: the fast
    reader refuses; the slow reader reads them by the rules, or names the bad line."""
    p = write(tmp_path, text)
    assert csvparse.read_fast(p, [("video_id", "str"), ("t", "int")] + [
        (f"c{i}", "float") for i in range(6)], {8: "x"}) is None, why
    if error:
        with pytest.raises(AvaFormatError, match=re.escape(error)):
            read_results(p)
        return
    r = read_results(p)
    assert r.video_ids.tolist() == ["v"] * len(text.strip().splitlines())
    assert r.boxes64.tolist() == [[0.1, 0.2, 0.3, 0.4]] * len(r)


GOOD = "v,902,0.1,0.2,0.3,0.4,12,0.5\n"


# ------------------------------------------------------------------------------------------
# damaged CSVs (the fault-injection audit, issue 17): each a FILE:LINE error, never a
# traceback, a silently changed value or unbounded memory
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, message", [
    (b"v,12345678901234567890,0.1,0.2,0.3,0.4,12,0.5\n", "timestamp out of range .*: "
                                                         "12345678901234567890"),
    (b"v,902,0.1,0.2,0.3,0.4,12345678901234567890,0.5\n", "action_id out of range .*: 123"),
    (b"v,4294967296,0.1,0.2,0.3,0.4,12,0.5\n", "timestamp out of range .*4294967296"),
    (b"v,09 02,0.1,0.2,0.3,0.4,12,0.5\n", "a space inside a field"),
    (b"v,902,0.1,0.2,0.3,0.4,12,0.5 03\n", "a space inside a field"),
    (b"v,902,0.1,0.2,0.3,0.4,12,0\t5\n", "a tab inside a field"),
    (b"v,90\r2,0.1,0.2,0.3,0.4,12,0.5\n", "a carriage return inside a field"),
    (b"v,902,0.1,0.2,0.3,0.4,12,0.5\x00\n", "score must be a number"),
    (b"v\x00,902,0.1,0.2,0.3,0.4,12,0.5\n", "video_id holds a NUL byte"),
    (b"v\x00x,902,0.1,0.2,0.3,0.4,12,0.5\n", "video_id holds a NUL byte"),
    (b"v,902,0.1,0.2,0.3,0.4,12,1e39\n", "score does not fit a 32-bit float"),
    (b"v" * 4000 + b",902,0.1,0.2,0.3,0.4,12,0.5\n", "video_id is longer than 255 bytes: "
                                                       "4000 bytes"),
    (b'"v,w",902,0.1,0.2,0.3,0.4,12,0.5\n', "quoted field holding a comma"),
    (b'"v,902,0.1,0.2,0.3,0.4,12,0.5\n', "bad quoting"),
])
def test_damaged_fields_are_line_errors(tmp_path, bad, message):
    p = write(tmp_path, (GOOD + GOOD).encode() + bad + GOOD.encode())
    with pytest.raises(AvaFormatError, match=rf"^{re.escape(str(p))}:3: .*{message}"):
        read_results(p)


def test_blanks_around_fields_quotes_and_crlf_keep_their_csv_meaning(tmp_path):
    p = write(tmp_path, b'v,902,0.1,0.2,0.3,0.4,12,0.5\r\n v , 0903 ,0.1,0.2,0.3,0.4,12, 0.25\n'
                        b'"w","904",0.1,0.2,0.3,0.4,"12","0.75"\n')
    r = read_results(p)
    assert r.video_ids.tolist() == ["v", "v", "w"]
    assert r.timestamps.tolist() == [902, 903, 904]
    assert r.scores64.tolist() == [0.5, 0.25, 0.75] and r.action_ids.tolist() == [12] * 3


def test_wide_video_id_memory_is_bounded(tmp_path):
    """A 40 KB video id in a 5 MB file: an error, with memory far below rows x width."""
    import subprocess
    import sys
    p = tmp_path / "wide.csv"
    with open(p, "wb") as f:
        f.write(b"v,902,0.1,0.2,0.3,0.4,12,0.5\n" * 150_000)
        f.write(b"x" * 40_000 + b",902,0.1,0.2,0.3,0.4,12,0.5\n")
    code = ("import sys\nfrom hgrnn.data.ava import read_results, AvaFormatError\n"
            "try:\n    read_results(sys.argv[1], progress=False)\nexcept AvaFormatError as e:\n"
            "    print(str(e)[-150:])\n"
            # VmHWM: this process's own peak (ru_maxrss may carry the forking parent's)
            "print([int(x.split()[1]) // 1024 for x in open('/proc/self/status')\n"
            "       if x.startswith('VmHWM')][0])\n")
    out = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True,
                         check=True, env=dict(os.environ, PYTHONPATH=os.getcwd()))
    msg, peak_mib = out.stdout.strip().splitlines()
    assert ":150001: video_id is longer than 255 bytes: 40000 bytes" in msg
    assert int(peak_mib) < 400                    # rows x width would be 6 GB
