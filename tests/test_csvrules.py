"""The AVA CSV row rules (hgrnn.data.csvrules): every reader - the fast (pyarrow) and the
slow (line by line) paths of read_annotations / read_results, and check-data's checker -
gives each row of one corpus of defective files the same verdict (rule code, line)."""

import re

import pytest
from click.testing import CliRunner

from hgrnn.cli import main
from hgrnn.data import check, csvparse
from hgrnn.data.ava import AvaFormatError, load_label_map, read_annotations, read_results
from hgrnn.data.csvrules import RULE_CODES, RULES

GOOD = {"gt": b"v,902,0.1,0.2,0.5,0.9,12,3", "results": b"v,902,0.1,0.2,0.5,0.9,12,0.75"}

# (row, the code of its first broken rule or None) for both kinds of file; the good row's
# last field is appended where the row ends with ","
COMMON = [
    (b"v,90x,0.1,0.2,0.5,0.9,12,", "not-integer"),
    (b"v,902.5,0.1,0.2,0.5,0.9,12,", "not-integer"),
    (b"v,902,0.1,abc,0.5,0.9,12,", "not-number"),
    (b"v,902,0.1,0.2,0.5,0.9,1.5,", "not-integer"),
    (b"v,902,0.2,0.5,0.9,12,", "column-missing"),               # x1 left out
    (b"v,902,0.1,0.2,0.5,0.9,12,", None),                         # the good row itself
    (b"v,902,0.1,0.2,0.5,0.9,12,7,", "columns"),
    (b",902,0.1,0.2,0.5,0.9,12,", "empty"),
    (b"v,9 02,0.1,0.2,0.5,0.9,12,", "blank"),
    (b"v,902,0.1,0.2,0.5,0.9\t1,12,", "blank"),
    (b' v ,902,0.1,0.2,0.5,0.9,12,', None),                       # blanks around: padding
    (b'"v,w",902,0.1,0.2,0.5,0.9,12,', "quoted-separator"),
    (b'"v,902,0.1,0.2,0.5,0.9,12,', "quoting"),
    (b'"v",902,0.1,0.2,0.5,0.9,12,', None),
    (b"v\x00,902,0.1,0.2,0.5,0.9,12,", "nul"),
    (b"v" * 300 + b",902,0.1,0.2,0.5,0.9,12,", "too-long"),
    (b"v,99999999999999999999,0.1,0.2,0.5,0.9,12,", "int-range"),
    (b"v,0x10,0.1,0.2,0.5,0.9,12,", "not-integer"),               # pyarrow would take it
    (b"v,902,nan(1),0.2,0.5,0.9,12,", "not-number"),              # pyarrow would take it
    (b"v,902,12,30,80,90,12,", "box-range"),                      # pixels
    (b"v,902,-0.01,0.2,0.5,0.9,12,", "box-range"),
    (b"v,902,nan,0.2,0.5,0.9,12,", "box-range"),
    (b"v,902,0.5,0.2,0.1,0.9,12,", "box-order"),
    (b"v,902,0.5,0.2,0.1,1.9,12,", "box-range"),                  # the first rule wins
    (b"v,902,0.1,0.2,0.5,0.9,0,", "action-id"),
    (b"v,902,0.1,0.2,0.5,0.9,-2,", "action-id"),
    (b"v,902,0.1,0.2,0.5,0.9,,", None),                           # a person without action
    (b"v,902,0.1,0.2,0.5,0.9,-1,", None),
    (b"v,4294967296,0.1,0.2,0.5,0.9,12,", "timestamp-range"),
    (b"v,-1,0.1,0.2,0.5,0.9,12,", "timestamp-range"),
    (b"v,902,0.1,0.2,0.5,0.9,99,", "unknown-id"),
    (b"v,902,0.1,0.2,0.5,0.9,2,", None),                          # AVA, outside v2.1: skipped
    (b"v,902,0.1,0.2,0.5,1.2,99,", "box-range"),
]
ONLY = {"gt": [(b"v,902,0.1,0.2,0.5,0.9,12,", None),              # empty person_id: unknown
               (b"v,902,0.1,0.2,0.5,0.9,12,3.5", "not-integer"),
               (b"v,0903", None)],                                 # an empty keyframe
        "results": [(b"v,902,0.1,0.2,0.5,0.9,12,nan", "score-finite"),
                    (b"v,902,0.1,0.2,0.5,0.9,12,-inf", "score-finite"),
                    (b"v,902,0.1,0.2,0.5,0.9,12,1e39", "score-float32"),
                    (b"v,902,0.1,0.2,0.5,0.9,12,", "not-number"),
                    (b"v,902,0.1,0.2,0.5,0.9,12", "column-missing"),
                    (b"v,0903", "column-missing")]}


def corpus(kind):
    """[(row bytes, code)] of `kind`: the common rows completed with the good row's last
    field, then the kind's own."""
    last = GOOD[kind].rsplit(b",", 1)[1]
    rows = [(r + last if r.endswith(b",") else r, c) for r, c in COMMON]
    return rows + ONLY[kind]


def layout(kind):
    """The corpus in one file: a good row, then each row after a good one (line 2k+3)."""
    rows = corpus(kind)
    lines = [GOOD[kind]]
    for row, _ in rows:
        lines += [GOOD[kind], row]
    return lines, {2 * k + 3: (row, code) for k, (row, code) in enumerate(rows)}


def write(path, lines):
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def reader_verdict(kind, path):
    """(code, line) of the reader's error, or None when it reads the file."""
    lm = load_label_map("ava-v2.1")
    try:
        (read_annotations if kind == "gt" else read_results)(path, lm, progress=False)
    except AvaFormatError as e:
        assert re.match(rf"{re.escape(str(path))}:{e.line}: ", str(e)), str(e)
        assert RULE_CODES[e.code]                          # a rule of the table
        return e.code, e.line
    return None


def check_data_verdicts(kind, path, tmp_path):
    """{line: code} of every row error check-data lists for `path`."""
    if kind == "gt":
        report = check.check_data(path)
    else:
        report = check.check_data(write(tmp_path / "good_gt.csv", [GOOD["gt"]]),
                                  detections=path)
    verdicts = {}
    for f in report["findings"]:
        if f["level"] != "error" or f["code"] not in RULE_CODES:
            continue
        assert f["count"] == len(f["examples"])
        for where in f["examples"]:
            file, line = where.rsplit(":", 1)
            assert file == str(path)
            assert int(line) not in verdicts, where        # one verdict per row
            verdicts[int(line)] = f["code"]
    return verdicts


@pytest.fixture(params=["fast", "slow"])
def paths(request, monkeypatch):
    """Both ways of reading: pyarrow where it can, or the line-by-line reader only."""
    monkeypatch.setattr(check, "EXAMPLES", 10 ** 6)
    if request.param == "slow":
        monkeypatch.setattr(csvparse, "read_fast", lambda *a, **k: None)
    return request.param


@pytest.mark.parametrize("kind", ["gt", "results"])
def test_every_reader_gives_every_row_the_same_verdict(tmp_path, kind, paths):
    lines, rows = layout(kind)
    combined = write(tmp_path / "all.csv", lines)
    listed = check_data_verdicts(kind, combined, tmp_path)
    assert listed == {line: code for line, (_, code) in rows.items() if code}
    for line, (row, code) in rows.items():
        # the file with this one defect (the others replaced by good rows, lines kept)
        alone = [lines[n - 1] if n == line or n not in rows else GOOD[kind]
                 for n in range(1, len(lines) + 1)]
        p = write(tmp_path / "one.csv", alone)
        assert reader_verdict(kind, p) == ((code, line) if code else None), row
        assert check_data_verdicts(kind, p, tmp_path) == ({line: code} if code else {}), row
    assert {code for _, (_, code) in rows.items()} >= {
        r.code for r in RULES if r.code != "header"} - ({"score-finite", "score-float32"}
                                                        if kind == "gt" else set())


def _to_csv(path, rows, columns, index: bool) -> None:
    """What pandas' `DataFrame(rows, columns=columns).to_csv(path, index=index)` writes (a
    header line; with the index, an unnamed first column 0, 1, ...): pandas is no dependency."""
    lines = [([""] if index else []) + list(columns)]
    lines += [([str(i)] if index else []) + list(row) for i, row in enumerate(rows)]
    path.write_text("".join(",".join(line) + "\n" for line in lines))


@pytest.mark.parametrize("kind", ["gt", "results"])
def test_a_header_row_is_named_by_every_reader(tmp_path, kind, paths):
    """pandas' to_csv writes a header (and, by default, the index as a first column)."""
    columns = ["video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id",
               "person_id" if kind == "gt" else "score"]
    for index in (False, True):
        p = tmp_path / f"pandas{index}.csv"
        _to_csv(p, [GOOD[kind].decode().split(",")] * 3, columns, index)
        assert reader_verdict(kind, p) == ("header", 1)
        assert check_data_verdicts(kind, p, tmp_path).get(1) == "header"
    p = write(tmp_path / "late.csv", [GOOD[kind], b",".join(c.encode() for c in columns)])
    assert reader_verdict(kind, p) == ("not-integer", 2)        # a header only on line 1


def test_eval_csv_says_header_and_missing_column(tmp_path):
    gt = write(tmp_path / "gt.csv", [GOOD["gt"]])
    res = tmp_path / "res.csv"
    _to_csv(res, [GOOD["results"].decode().split(",")],
            ["video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "score"], False)
    r = CliRunner().invoke(main, ["eval-csv", str(gt), str(res)])
    assert r.exit_code == 1
    assert r.output.strip() == (f"Error: {res}:1: a header row: AVA CSVs have none (delete "
                                "the first line)")
    write(res, [GOOD["results"], b"v,902,0.2,0.5,0.9,12,0.75"])           # x1 missing
    r = CliRunner().invoke(main, ["eval-csv", str(gt), str(res)])
    assert r.exit_code == 1 and f"{res}:2: expected 8 " in r.output
    assert "a column seems missing" in r.output and "pixel" not in r.output
    write(gt, [GOOD["gt"], b"v,902,0.2,0.5,0.9,12,3"])                    # x1 missing
    write(res, [GOOD["results"]])
    r = CliRunner().invoke(main, ["eval-csv", str(gt), str(res)])
    assert r.exit_code == 1 and "a column seems missing" in r.output, r.output
    assert f"{gt}:2: expected 8 (as the file's first row) columns, got 7" in r.output
