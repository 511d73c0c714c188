"""`hgrnn report` (hgrnn/apps/report/, hgrnn/cli/report.py): the per-row matching against
the evaluator, the error analysis on hand-made cases, the page's numbers against eval-csv's,
thumbnails from rendered videos, errors, and the page in a real browser (Chromium)."""

import json
import os
import re
import shutil
import subprocess
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from hgrnn.apps.report import (analyse, load_inputs, match_results, render_thumbnails,
                               report_files)
from hgrnn.cli import main
from hgrnn.data.ava import AvaRows, LabelMap, read_results, write_annotations, write_results
from hgrnn.metrics import evaluate

LM = LabelMap((1, 3, 5, 12), ("a", "b", "c", "d"))


def random_rows(rng, n, scores, decimals=1):
    """Rows on 2 videos x 6 keyframes, boxes on a coarse grid (many equal IoUs), actions
    partly outside LM; scores rounded to `decimals` (many ties) or None (ground truth)."""
    v = rng.choice(["x", "y"], n)
    t = rng.integers(900, 906, n)
    corner = rng.random((n, 2)) * .5
    boxes = np.round(np.c_[corner, corner + rng.random((n, 2)) * .5], 1)
    a = rng.choice([1, 3, 5, 12, 7], n)
    if scores:
        return AvaRows.from_arrays(v, t, boxes, a, scores=np.round(rng.random(n), decimals))
    return AvaRows.from_arrays(v, t, boxes, a, person_ids=np.zeros(n))


@pytest.mark.parametrize("protocol", ["ava-2018", "ava-2019", "ava-2020"])
def test_matching_gives_the_evaluators_aps(protocol):
    """Per-class APs from match_results equal evaluate(ties="stable") exactly (ties of
    scores and IoUs, invalid boxes, rows outside the map, the 50 cap, exclusions), and
    the official tie order's where no two scores are equal."""
    rng = np.random.default_rng(0)
    for seed in range(12):
        gt = random_rows(rng, 60, False)
        res = random_rows(rng, 1500 if seed % 2 else 300, True)     # 1500: over the cap
        ex = {("x", 901)} if protocol != "ava-2020" and seed % 3 == 0 else None
        e = evaluate(gt, res, LM, protocol=protocol, exclusions=ex, ties="stable")
        m = match_results(gt, res, LM, protocol, ex)
        assert m.average_precisions() == list(e.per_class.values())
        assert int(m.tp.sum()) == e.counts["total_true_positives"]
        assert int((m.cls >= 0).sum()) == e.counts["total_results"]
        # every true positive holds its box, and no box twice
        assert len(set(m.gt[m.tp].tolist())) == int(m.tp.sum())
        assert (m.gt_found[m.gt[m.tp]] == np.flatnonzero(m.tp)).all()
        untied = random_rows(rng, 300, True, decimals=9)
        e = evaluate(gt, untied, LM, protocol=protocol, exclusions=ex, ties="official")
        m = match_results(gt, untied, LM, protocol, ex)
        assert m.average_precisions() == list(e.per_class.values())


def test_matching_against_a_slow_loop():
    """TP/FP per row and rank per class equal a per-keyframe loop written from the rules."""
    rng = np.random.default_rng(5)
    gt, res = random_rows(rng, 50, False), random_rows(rng, 200, True)
    m = match_results(gt, res, LM)
    col = {a: c for c, a in enumerate(LM.ids)}
    tp = np.zeros(len(res), bool)
    for c, a in enumerate(LM.ids):
        mine = [i for i in range(len(res)) if res.action_ids[i] == a
                and res.boxes[i, 2] > res.boxes[i, 0] and res.boxes[i, 3] > res.boxes[i, 1]]
        mine.sort(key=lambda i: (-res.scores[i], i))
        assert [int(m.rank[i]) for i in mine] == list(range(len(mine)))
        taken = set()
        for i in mine:
            cands = [g for g in range(len(gt)) if gt.action_ids[g] == a
                     and gt.video_ids[g] == res.video_ids[i]
                     and gt.timestamps[g] == res.timestamps[i]]
            best, best_iou = None, -1.0
            for g in cands:
                x = iou(res.boxes[i].astype(float), gt.boxes[g].astype(float))
                if x > best_iou:
                    best, best_iou = g, x
            if best is not None and best_iou >= 0.5 and best not in taken:
                taken.add(best)
                tp[i] = True
        assert col[a] == c
    assert (m.tp == tp).all()


def iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


P1, P2 = [.1, .1, .4, .9], [.6, .1, .9, .9]          # two persons of keyframe v,902


def hand_case(tmp_path):
    """Keyframe v,902: person 1 stands and talks (12, 79), person 2 sits (11). Results of
    class stand (12): P1 0.9 (TP), P2 0.8 (wrong label: the person sits), P1 again 0.7
    (duplicate), a box half off P2 0.6 (localisation), a box nowhere 0.5 (background).
    Class sit (11): nothing (its box is missed, no result on it)."""
    gt = AvaRows.from_arrays(["v"] * 3, [902] * 3, [P1, P1, P2], [12, 79, 11],
                             person_ids=[0, 0, 1])
    res = AvaRows.from_arrays(["v"] * 5, [902] * 5,
                              [P1, P2, P1, [.6, .1, .9, .4], [.45, .0, .55, .05]],
                              [12] * 5, scores=[.9, .8, .7, .6, .5])
    write_annotations(tmp_path / "gt.csv", gt)
    write_results(tmp_path / "res.csv", res)
    return str(tmp_path / "gt.csv"), str(tmp_path / "res.csv")


def test_errors_confusions_and_misses_of_a_hand_made_case(tmp_path):
    gt, res = hand_case(tmp_path)
    lm = LabelMap((11, 12, 79), ("sit", "stand", "talk to (e.g., self, a person, a group)"))
    a = analyse(load_inputs(gt, [res], lm))
    sit, stand, talk = a["classes"]
    assert stand["instances"] == 1 and stand["results"] == 5 and stand["AP"] == 1.0
    # N = 1: the top result only, a TP: no error counted at the operating point
    assert stand["tp_at_n"] == 1 and stand["fp_at_n"] == 0 and stand["missed"]["total"] == 0
    assert sit["missed"] == {"total": 1, "no_result_on_box": 1, "ranked_below_n": 0}
    assert talk["missed"]["total"] == 1 and sit["AP"] == 0.0 and sit["group"] == "pose"
    # the PR curve of stand: TP then 4 FPs
    assert stand["pr_curve"]["precision"] == [1.0, 0.5, 0.333333, 0.25, 0.2]
    # with 5 instances of stand, N = 5 takes every result: one of each kind
    gt5 = AvaRows.from_arrays(["v"] * 7 + ["w"] * 4, [902] * 7 + [903] * 4,
                              [P1, P1, P2] + [[0, 0, .1, .1]] * 4 + [P1] * 4,
                              [12, 79, 11, 12, 12, 12, 12, 12, 12, 12, 12],
                              person_ids=[0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    write_annotations(tmp_path / "gt5.csv", gt5)
    a = analyse(load_inputs(str(tmp_path / "gt5.csv"), [res], lm))
    stand = a["classes"][1]
    assert stand["operating_point"] == 9 and stand["tp_at_n"] == 1
    assert stand["errors"] == {"wrong label": 1, "duplicate": 1, "localisation": 1,
                               "background": 1}
    assert stand["confusions"] == [["sit", 1]]        # the person of the 0.8 box sits
    picks = a["_gallery"]["picks"][1]["fp"]
    assert [p["kind"] for p in picks] == ["wrong label", "duplicate", "localisation",
                                          "background"]
    assert [p["score"] for p in picks] == [.8, .7, .6, .5]
    # missed at N: the 8 rows nobody found (no result on their boxes)
    assert stand["missed"] == {"total": 8, "no_result_on_box": 8, "ranked_below_n": 0}


def test_report_numbers_equal_eval_csv(tmp_path):
    """report.json holds eval-csv --json's numbers (official ties, exclusions, groups)."""
    rng = np.random.default_rng(3)
    lm_ids = (1, 3, 5, 12, 79)
    gt = random_rows(rng, 80, False)
    gt = AvaRows.from_arrays(gt.video_ids, gt.timestamps, gt.boxes,
                             rng.choice(lm_ids, len(gt)), person_ids=np.zeros(len(gt)))
    res = random_rows(rng, 600, True, decimals=2)
    res = AvaRows.from_arrays(res.video_ids, res.timestamps, res.boxes,
                              rng.choice(lm_ids, len(res)), scores=res.scores)
    write_annotations(tmp_path / "gt.csv", gt)
    write_results(tmp_path / "res.csv", res)
    (tmp_path / "ex.csv").write_text("x,0903\n")
    args = [str(tmp_path / "gt.csv"), str(tmp_path / "res.csv"), "--exclusions",
            str(tmp_path / "ex.csv"), "--protocol", "ava-2019"]
    r = CliRunner().invoke(main, ["eval-csv", *args, "--json", str(tmp_path / "m.json")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["report", *args, "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    assert "frame-mAP" in r.output and "index.html" in r.output
    m = json.loads((tmp_path / "m.json").read_text())
    d = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert d["runs"][0]["metrics"] == {k: v for k, v in m.items() if k != "action_groups"}
    assert d["runs"][0]["action_groups"] == m["action_groups"]
    assert [c["AP"] for c in d["classes"]] == list(m["per_class"].values())
    page = (tmp_path / "rep" / "index.html").read_text()
    assert f"{100 * m['mAP']:.4f}" in page
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page)    # nothing from a network


def test_errors_are_eval_csvs(tmp_path):
    gt, res = hand_case(tmp_path)
    with open(res, "a") as f:
        f.write("v,905,0.1,0.2,0.9,0.1,12,0.5\n")              # y2 < y1 on line 6
    runner = CliRunner()
    a = runner.invoke(main, ["eval-csv", gt, res])
    b = runner.invoke(main, ["report", gt, res, "--out", str(tmp_path / "r")])
    assert a.exit_code == b.exit_code == 1
    assert a.output == b.output and f"Error: {res}:6: " in b.output
    assert "Traceback" not in b.output
    other = tmp_path / "other.csv"
    other.write_text("w,0950,0.1,0.1,0.5,0.5,12,0.5\n")
    a = runner.invoke(main, ["eval-csv", gt, str(other)])
    b = runner.invoke(main, ["report", gt, str(other), "--out", str(tmp_path / "r")])
    assert a.exit_code == b.exit_code == 1 and a.output == b.output
    assert "no keyframe in common" in b.output


def test_coverage_warning_is_eval_csvs(tmp_path):
    gt, res = hand_case(tmp_path)
    with open(gt, "a") as f:
        f.write("w,0902,0.1,0.1,0.5,0.5,12,0\n")               # a video without results
    a = CliRunner().invoke(main, ["eval-csv", gt, res])
    b = CliRunner().invoke(main, ["report", gt, res, "--out", str(tmp_path / "r")])
    warning = [line for line in a.output.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "cover 1 of 2 ground-truth videos" in warning[0]
    assert b.exit_code == 0 and b.output.splitlines()[0] == warning[0]
    assert warning[0] in (tmp_path / "r" / "index.html").read_text()


def test_compare(tmp_path):
    gt, res = hand_case(tmp_path)
    better = AvaRows.from_arrays(["v"] * 3, [902] * 3, [P1, P2, P1], [12, 11, 79],
                                 scores=[.9, .8, .7])
    write_results(tmp_path / "better.csv", better)
    out = tmp_path / "cmp"
    r = CliRunner().invoke(main, ["report", gt, res, "--compare", str(tmp_path / "better.csv"),
                                  "--out", str(out)])
    assert r.exit_code == 0, r.output
    d = json.loads((out / "report.json").read_text())
    assert [run["name"] for run in d["runs"]] == [res, str(tmp_path / "better.csv")]
    diffs = {c["name"]: c["diff"][0] for c in d["comparison"]}
    assert diffs["sit"] == 1.0 and diffs["stand"] == 0.0
    assert list(diffs)[:2] in (["sit", "talk to (e.g., self, a person, a group)"],
                               ["talk to (e.g., self, a person, a group)", "sit"])
    page = (out / "index.html").read_text()
    assert "B = better.csv against A = res.csv" in page and "+100.00" in page
    # results over another label space: refused, naming the file
    v22 = AvaRows.from_arrays(["v"] * 2, [902] * 2, [P1, P1], [12, 2], scores=[.9, .8])
    write_results(tmp_path / "v22.csv", v22)
    r = CliRunner().invoke(main, ["report", gt, res, "--compare", str(tmp_path / "v22.csv"),
                                  "--out", str(out)])
    assert r.exit_code == 1 and r.output.startswith(f"Error: {tmp_path / 'v22.csv'}: ")
    assert "another label space" in r.output and "Traceback" not in r.output


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """`hgrnn render-example` videos, their ground truth and results made from its person
    boxes with every class (seeded scores)."""
    d = tmp_path_factory.mktemp("example")
    r = CliRunner().invoke(main, ["render-example", str(d / "ex")])
    assert r.exit_code == 0, r.output
    persons = read_results(d / "ex" / "persons.csv")
    rng = np.random.default_rng(0)
    n = len(persons)
    rows = AvaRows.from_arrays(np.repeat(persons.video_ids, 3), np.repeat(persons.timestamps, 3),
                               np.repeat(persons.boxes64, 3, axis=0), np.tile([101, 102, 103], n),
                               scores=np.round(rng.random(3 * n), 3))
    write_results(d / "ex" / "res.csv", rows)
    return d / "ex"


def test_thumbnails_from_rendered_videos(example, tmp_path):
    videos = tmp_path / "videos"
    shutil.copytree(example / "videos", videos)
    (videos / "clip3.mp4").unlink()
    args = [str(example / "annotations.csv"), str(example / "res.csv"), "--label-map",
            str(example / "label_map.txt"), "--out", str(tmp_path / "rep"), "--videos",
            str(videos)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = CliRunner().invoke(main, ["report", *args])
    assert r.exit_code == 0, r.output
    assert "thumbnails from 2 videos" in r.output
    assert [str(w.message) for w in caught] == [
        f"{videos}: no video 'clip3' (<id>.mp4/.mkv/.webm/.avi): its 16 thumbnails are left out"]
    d = json.loads((tmp_path / "rep" / "report.json").read_text())
    shown = [p for g in d["galleries"] for kind in ("false_positives", "missed")
             for p in g[kind]]
    with_thumb = [p for p in shown if "thumb" in p]
    assert 0 < len(with_thumb) < len(shown)            # clip3's left out
    page = (tmp_path / "rep" / "index.html").read_text()
    for p in with_thumb:
        path = tmp_path / "rep" / p["thumb"]
        assert path.exists() and p["thumb"] in page
    # a thumbnail shows its keyframe: the result box's pixels are drawn in orange
    from PIL import Image
    fp = next(p for p in with_thumb if "results_row" in p)
    img = np.asarray(Image.open(tmp_path / "rep" / fp["thumb"]).convert("RGB")).astype(int)
    orange = (abs(img - np.array([255, 140, 0])).sum(axis=2) < 90).sum()
    assert orange > 50 and img.shape[0] == 128
    assert d["classes"][0]["group"] is None and "action group" not in page   # custom ids


def test_missing_video_warns_once(example, tmp_path):
    inputs = load_inputs(example / "annotations.csv", [example / "res.csv"],
                         str(example / "label_map.txt"))
    a = analyse(inputs)
    empty = tmp_path / "none"
    empty.mkdir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stats = render_thumbnails(a, empty, tmp_path / "out")
    assert sorted(stats["missing"]) == ["clip1", "clip2", "clip3"]
    assert len(caught) == 3 and all("no video" in str(w.message) for w in caught)
    assert stats["thumbnails"] == 0


def test_eval_report(tmp_path):
    """`eval --report` writes the page of the results it just wrote, with eval's mAP."""
    from test_train import make_store       # tests/ is on sys.path under pytest
    store = make_store(tmp_path / "s.h5")
    runner = CliRunner()
    r = runner.invoke(main, ["train-head", "--store", store, "--out", str(tmp_path / "run"),
                             "--steps", "4", "--batch-size", "5", "--device", "cpu", "-q"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["eval", "--store", store, "--checkpoint", str(tmp_path / "run"),
                             "--report"])
    assert r.exit_code == 2 and "--report needs --out" in r.output
    r = runner.invoke(main, ["eval", "--store", store, "--checkpoint", str(tmp_path / "run"),
                             "--out", str(tmp_path / "ev"), "--device", "cpu", "--report"])
    assert r.exit_code == 0, r.output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    d = json.loads((tmp_path / "ev" / "report" / "report.json").read_text())
    assert d["runs"][0]["metrics"]["mAP"] == metrics["mAP"]
    assert d["runs"][0]["metrics"]["per_class"] == metrics["per_class"]
    assert (tmp_path / "ev" / "report" / "index.html").exists()
    assert metrics["action_groups"] == {}          # the test store's classes are no AVA actions


# ---- in a real browser ---------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# run in the page after load: sort the class table by AP (one click: ascending), then
# write what the test checks into the DOM (--dump-dom prints the DOM after scripts ran)
PROBE = """<script>
window.addEventListener('load', function () {
  var th = Array.prototype.filter.call(document.querySelectorAll('#classes th'),
    function (c) { return c.textContent.indexOf('AP %') === 0; })[0];
  th.click();
  var aps = Array.prototype.map.call(document.querySelectorAll('#classes tbody tr'),
    function (r) { return r.cells[3].getAttribute('data-v'); });
  var p = document.createElement('pre'); p.id = 'probe';
  p.textContent = JSON.stringify({scrollWidth: document.documentElement.scrollWidth,
                                  clientWidth: document.documentElement.clientWidth,
                                  sortedAP: aps});
  document.body.appendChild(p);
});
</script>"""


def chromium(args, tmp_path, timeout=120):
    profile = tmp_path / "profile"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", f"--user-data-dir={profile}", "--window-size=1280,900", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_page_in_chromium(tmp_path):
    """Headless Chromium renders the page: the screenshot is not blank, the numbers in the
    DOM are eval-csv --json's, the sortable table sorts, and nothing scrolls sideways at
    1280 px (long class names, four result files with long names)."""
    rng = np.random.default_rng(4)
    ids = (12, 17, 79, 80)                               # long AVA names in every group
    gt = random_rows(rng, 80, False)
    gt = AvaRows.from_arrays(gt.video_ids, gt.timestamps, gt.boxes, rng.choice(ids, len(gt)),
                             person_ids=np.zeros(len(gt)))
    write_annotations(tmp_path / "gt.csv", gt)
    for k in (1, 2, 3, 4):
        res = random_rows(rng, 500, True, decimals=3)
        res = AvaRows.from_arrays(res.video_ids, res.timestamps, res.boxes,
                                  rng.choice(ids, len(res)), scores=res.scores)
        write_results(tmp_path / f"results_of_a_long_named_model_{k}.csv", res)
    gt_csv = str(tmp_path / "gt.csv")
    res1 = str(tmp_path / "results_of_a_long_named_model_1.csv")
    others = [str(tmp_path / f"results_of_a_long_named_model_{k}.csv") for k in (2, 3, 4)]
    r = CliRunner().invoke(main, ["eval-csv", gt_csv, res1, "--label-map", "ava-v2.2",
                                  "--json", str(tmp_path / "m.json")])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "m.json").read_text())
    out = tmp_path / "rep"
    r = CliRunner().invoke(main, ["report", gt_csv, res1, "--label-map", "ava-v2.2", "--out",
                                  str(out), *[x for o in others for x in ("--compare", o)]])
    assert r.exit_code == 0, r.output

    shot = tmp_path / "shot.png"
    p = chromium([f"--screenshot={shot}", (out / "index.html").as_uri()], tmp_path)
    assert shot.exists(), p.stderr[-2000:]
    from PIL import Image
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[:2] == (900, 1280)
    assert img.std() > 20 and len(np.unique(img.reshape(-1, 3), axis=0)) > 50   # not blank
    if os.environ.get("HGRNN_KEEP_SCREENSHOTS"):
        shutil.copy(shot, os.environ["HGRNN_KEEP_SCREENSHOTS"])

    probed = out / "probed.html"
    probed.write_text((out / "index.html").read_text().replace("</body>", PROBE + "</body>"))
    p = chromium(["--dump-dom", probed.as_uri()], tmp_path)
    dom = p.stdout
    assert "id=\"probe\"" in dom, p.stderr[-2000:]
    probe = json.loads(html_unescape(re.search(r'<pre id="probe">(.*?)</pre>', dom).group(1)))
    assert probe["scrollWidth"] <= probe["clientWidth"] <= 1280        # no sideways scroll
    got = float(re.search(r"<span id=\"map\" data-v=\"([^\"]+)\"", dom).group(1))
    assert got == m["mAP"]
    assert re.search(r'<span id="map"[^>]*>([\d.]+)</span>', dom).group(1) == \
        f"{100 * m['mAP']:.4f}"
    rows = re.findall(r'<tr data-class="([^"]+)"[^>]*><td[^>]*>\d+</td><td[^>]*>.*?</td>'
                      r'<td[^>]*>.*?</td><td data-v="([^"]*)">([^<]*)</td>', dom)
    aps = {html_unescape(name): (None if v == "" else float(v), text) for name, v, text in rows}
    assert len(aps) == 80
    for name, ap in m["per_class"].items():
        assert aps[name][0] == ap
        assert aps[name][1] == ("n/a" if ap is None else f"{100 * ap:.2f}")
    for g, d in m["action_groups"].items():
        cell = re.search(rf'<tr id="group-{g}"><td class="l">{g}</td><td data-v="([^"]*)"', dom)
        assert (None if cell.group(1) == "" else float(cell.group(1))) == d["mAP"]
    sorted_ap = [float(v) for v in probe["sortedAP"] if v]
    assert sorted_ap == sorted(sorted_ap) and len(sorted_ap) == 4       # sorted by the click


def html_unescape(text):
    import html
    return html.unescape(text)


def test_report_files_returns_paths(tmp_path):
    gt, res = hand_case(tmp_path)
    done = report_files(gt, [res], tmp_path / "o", label_map="ava-v2.2")
    assert done["index"].endswith("index.html") and done["mAP"] == 1 / 3
    assert done["thumbnails"] is None


# ---- real AVA files (../shared/ava next to the repository, or $HGRNN_AVA) ----------------------

AVA = os.environ.get("HGRNN_AVA", os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                                               "ava"))


@pytest.mark.skipif(not os.path.isdir(os.path.join(AVA, "official")),
                    reason="real AVA files not present (../shared/ava or $HGRNN_AVA)")
def test_real_ava_sample_has_the_official_numbers(tmp_path):
    """ActivityNet's own sample result file (3-decimal scores, many ties) against its
    ground truth: the page's numbers are the official evaluator's."""
    official = json.loads(open(os.path.join(AVA, "official",
                                            "sample_results_official_2018.json")).read())
    done = report_files(os.path.join(AVA, "official", "gt_1j20qq1JyX4_122kf.csv"),
                        [os.path.join(AVA, "sample_results_1j20qq1JyX4.csv")], tmp_path,
                        label_map=os.path.join(AVA, "ava_action_list_v2.1_for_activitynet_"
                                                    "2018.pbtxt"),
                        exclusions=os.path.join(AVA, "ava_val_excluded_timestamps_v2.1.csv"))
    d = json.loads((tmp_path / "report.json").read_text())
    assert done["mAP"] == official["PascalBoxes_Precision/mAP@0.5IOU"] == 0.0641283446987343
    for c in d["classes"]:
        assert c["AP"] == official["PascalBoxes_PerformanceByCategory/AP@0.5IOU/" + c["name"]]
    stand = next(c for c in d["classes"] if c["name"] == "stand")
    assert stand["instances"] == 107 and stand["group"] == "pose"
    assert abs(stand["AP_of_curve"] - stand["AP"]) < 0.01      # file-order ties: close
