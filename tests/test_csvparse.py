"""The vectorised CSV parser (hgrnn.data.csvparse) against Python's own parsing, through the
AVA readers that use it: chunk boundaries, CRLF/BOM/blank lines, the 8-byte fast paths,
repeated row prefixes."""

import os
import re

import numpy as np
import pytest

from hgrnn.data import csvparse
from hgrnn.data.ava import AvaFormatError, read_annotations, read_results
from test_ava import write  # noqa: E402  (tests/ is on sys.path under pytest)


def python_parse(text):
    """Obviously-correct parse with Python's csv semantics (what the official code does)."""
    rows = [line.split(",") for line in text.splitlines() if line.strip()]
    return rows


def test_fast_parser_equals_python_float(tmp_path):
    rng = np.random.default_rng(0)
    n = 3000
    texts = []
    for i in range(n):
        x1, y1 = rng.random(2) * 0.5
        w = [f"{x1:.{rng.integers(0, 9)}f}", f"{y1:.3f}", f"{x1 + 0.4:.17f}",
             f"{min(y1 + 0.3, 1):.5g}"]
        s = [f"{rng.random():.6f}", f"{rng.random():.3e}", f"{rng.random()}", "1", "0.",
             ".5", "+0.25", f"{rng.random() * 1e-6:.20f}"][i % 8]
        texts.append(f"vid{i % 7},{902 + i % 5:04d},{','.join(w)},{1 + i % 80},{s}")
    text = "\n".join(texts)
    p = write(tmp_path, text)
    r = read_results(p)
    ref = python_parse(text)
    assert len(r) == n
    assert r.video_ids.tolist() == [x[0] for x in ref]
    assert r.timestamps.tolist() == [int(x[1]) for x in ref]
    assert r.boxes64.tolist() == [[float(v) for v in x[2:6]] for x in ref]   # bit-exact
    assert r.action_ids.tolist() == [int(x[6]) for x in ref]
    assert r.scores64.tolist() == [float(x[7]) for x in ref]
    assert r.boxes.dtype == np.float32 and r.scores.dtype == np.float32
    assert r.timestamps.dtype == np.int64 and r.action_ids.dtype == np.int64


def test_chunk_boundaries(tmp_path, monkeypatch):
    rows = "\n".join(f"v{i},{900 + i},0.1,0.2,0.3,0.4,{1 + i % 3},{i}" for i in range(500))
    p = write(tmp_path, rows)                       # no trailing newline either
    whole = read_annotations(p)
    for chunk in (97, 7):                           # lines cut; lines longer than a chunk
        monkeypatch.setattr(csvparse, "_CHUNK_BYTES", chunk)
        parts = read_annotations(p)
        assert len(parts) == 500
        for f in ("video_ids", "timestamps", "boxes", "action_ids", "person_ids"):
            assert np.array_equal(getattr(whole, f), getattr(parts, f))
    monkeypatch.setattr(csvparse, "_CHUNK_BYTES", 97)
    bad = rows.replace("v400,1300,0.1", "v400,1300,x0.1")
    p = write(tmp_path, bad)
    with pytest.raises(AvaFormatError, match=r"f.csv:401: x1 must be a number, got 'x0.1'"):
        read_annotations(p)


def test_blank_lines_crlf_and_timestamps(tmp_path):
    p = write(tmp_path, b"\xef\xbb\xbfv,0902,0.1,0.2,0.3,0.4,12,1\r\n\r\n"   # BOM, CRLF,
                        b"v,902,0.1,0.2,0.3,0.4,79,1\r\n\n")              # blank lines
    r = read_annotations(p)
    assert r.timestamps.tolist() == [902, 902]
    assert r.action_ids.tolist() == [12, 79] and r.person_ids.tolist() == [1, 1]
    assert r.video_ids.tolist() == ["v", "v"]


def test_fast_number_paths_fuzz():
    """Random strings of number characters: whatever the vectorised paths accept must be
    exactly Python's float()/int() of the text; the rest goes to the Python slow path."""
    rng = np.random.default_rng(3)
    alphabet = list("0123456789" * 3 + "..-+e ")
    texts = ["".join(rng.choice(alphabet, size=int(rng.integers(0, 18)))) for _ in range(20000)]
    texts += ["0", "-0", "1.", ".5", "-.5", "+7", "12345678", "1234567.8", "0.1234567",
              "123456789", "0.12345678", "-0.0000001", "00000000.5", "99999999", "1e5", "--1"]
    texts = [t.replace(" ", "") for t in texts]
    raw = bytes(16) + ",".join(texts).encode() + b"\n"
    buf = np.frombuffer(raw, np.uint8)
    seps = np.flatnonzero((buf == 44) | (buf == 10))
    starts = np.r_[16, seps[:-1] + 1]
    ends = seps
    for integer, conv in ((False, float), (True, int)):
        values, bad = csvparse._parse_numbers(buf, starts, ends, integer, allow_empty=False)
        fast = 0
        for text, v, b in zip(texts, values.tolist(), bad.tolist()):
            if b:
                continue
            fast += 1
            assert v == conv(text) and type(v) is conv, (text, v)
        assert fast > 2000


def test_repeated_prefixes_parse_like_python(tmp_path, monkeypatch):
    """Rows repeating the previous row's video..y2 (one row per box and class) reuse its
    values; prefixes differing in any single byte, or in length, must not be merged."""
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
    monkeypatch.setattr(csvparse, "_CHUNK_BYTES", 4096)
    r = read_results(p)
    ref = python_parse(text)
    assert r.video_ids.tolist() == [x[0] for x in ref]
    assert r.timestamps.tolist() == [int(x[1]) for x in ref]
    assert r.boxes64.tolist() == [[float(v) for v in x[2:6]] for x in ref]
    assert r.action_ids.tolist() == [int(x[6]) for x in ref]
    assert r.scores64.tolist() == [float(x[7]) for x in ref]
    # and the shortcut is really taken on such a file
    buf = np.frombuffer(bytes(16) + text.encode(), np.uint8)
    nl = np.flatnonzero(buf == 10)
    cm = np.flatnonzero(buf == 44).reshape(-1, 7)
    group = csvparse._repeated_prefix(buf, np.r_[16, nl[:-1] + 1], cm[:, 5])
    assert group is not None and len(group[1]) < len(nl)


GOOD = "v,902,0.1,0.2,0.3,0.4,12,0.5\n"


# ------------------------------------------------------------------------------------------
# damaged CSVs (the fault-injection audit, issue 17): each a FILE:LINE error, never a
# traceback, a silently changed value or unbounded memory
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, message", [
    (b"v,12345678901234567890,0.1,0.2,0.3,0.4,12,0.5\n", "timestamp 12345678901234567890 is "
                                                         "out of range"),
    (b"v,902,0.1,0.2,0.3,0.4,12345678901234567890,0.5\n", "action_id 123.* is out of range"),
    (b"v,4294967296,0.1,0.2,0.3,0.4,12,0.5\n", "timestamp 4294967296 is out of range"),
    (b"v,09 02,0.1,0.2,0.3,0.4,12,0.5\n", "a space inside a field"),
    (b"v,902,0.1,0.2,0.3,0.4,12,0.5 03\n", "a space inside a field"),
    (b"v,902,0.1,0.2,0.3,0.4,12,0\t5\n", "a tab inside a field"),
    (b"v,90\r2,0.1,0.2,0.3,0.4,12,0.5\n", "a carriage return inside a field"),
    (b"v,902,0.1,0.2,0.3,0.4,12,0.5\x00\n", "score must be a number"),
    (b"v\x00,902,0.1,0.2,0.3,0.4,12,0.5\n", "video_id holds a NUL byte"),
    (b"v\x00x,902,0.1,0.2,0.3,0.4,12,0.5\n", "video_id holds a NUL byte"),
    (b"v,902,0.1,0.2,0.3,0.4,12,1e39\n", "score 1e\\+39 does not fit a 32-bit float"),
    (b"v" * 4000 + b",902,0.1,0.2,0.3,0.4,12,0.5\n", "video_id is 4000 bytes long"),
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
    assert ":150001: video_id is 40000 bytes long" in msg
    assert int(peak_mib) < 400                    # rows x width would be 6 GB
