"""`hgrnn visualize` and hgrnn.pipeline.visualize: frame-exact time mapping, boxes at the
right pixels of the encoded video, labels from results, the contact sheet grid."""

import math
from fractions import Fraction

import av
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from hgrnn.cli import main
from hgrnn.data.ava import AvaRows, load_label_map
from hgrnn.pipeline import visualize as vis
from hgrnn.pipeline.render import read_barcode, render_video

FPS = 10
GT_BOX = (0.25, 0.3, 0.5, 0.75)           # 640x360: columns 160..319, rows 108..269


def decode(path):
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        rate = stream.average_rate
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
    return frames, rate


@pytest.fixture(scope="module")
def video640(tmp_path_factory):
    root = tmp_path_factory.mktemp("vis")
    render_video(root / "clip.mp4", seconds=2.5, fps=FPS, size=(640, 360), shapes=())
    (root / "gt.csv").write_text("clip,1," + ",".join(map(str, GT_BOX)) + ",12,0\n"
                                 "clip,1," + ",".join(map(str, GT_BOX)) + ",80,0\n")
    return root


def test_keyframe_of_frame_matches_a_brute_force_nearest_keyframe():
    for fps in (Fraction(30000, 1001), Fraction(25), Fraction(10)):
        for offset in (0, 900, 0.5):
            for n in range(0, 400, 7):
                t = Fraction(n) / fps + Fraction(offset)
                # slow reference: the integer second nearest to t, ties to the later one
                ref = min(range(math.floor(t) - 1, math.floor(t) + 3),
                          key=lambda ts: (abs(t - ts), -ts))
                assert vis.keyframe_of_frame(n, fps, offset) == ref
            for ts in range(int(offset) + 1, int(offset) + 10):
                # the frame extraction centres the keyframe's clip on shows that keyframe
                assert vis.keyframe_of_frame(vis.centre_frame(ts, fps, offset), fps, offset) == ts


def test_box_pixels_and_drawing_are_exact():
    assert vis.box_pixels(GT_BOX, 640, 360) == (160, 108, 319, 269)
    assert vis.box_pixels((-0.1, 0.0, 1.2, 1.0), 64, 32) == (0, 0, 63, 31)
    image = Image.new("RGB", (640, 360), (0, 0, 0))
    gt = [vis.Person(GT_BOX, [("stand", None)])]
    vis.draw_persons(image, [], gt)
    a = np.asarray(image)
    w = max(1, vis.line_width(640, 360) // 2)
    mid = 200                                               # a row away from the label
    assert (a[mid, 160:160 + w] == vis.GT_COLOR).all()      # left outline, inside the box
    assert (a[mid, 320 - w:320] == vis.GT_COLOR).all()      # right outline
    assert (a[mid, 159] == 0).all() and (a[mid, 320] == 0).all()     # nothing outside
    assert (a[mid, 160 + w:320 - w] == 0).all()             # the inside is untouched
    assert (a[108, 200] == vis.GT_COLOR).all() and (a[107, 200] == 0).all()


def test_visualize_draws_ground_truth_at_the_right_pixels_and_frames(video640, tmp_path):
    out = tmp_path / "drawn.mp4"
    result = CliRunner().invoke(main, ["visualize", str(video640 / "clip.mp4"), "--gt",
                                       str(video640 / "gt.csv"), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    drawn, rate = decode(out)
    original, in_rate = decode(video640 / "clip.mp4")
    assert len(drawn) == len(original) == 25 and rate == in_rate
    assert drawn[0].shape == (360, 640, 3)
    w = max(1, vis.line_width(640, 360) // 2)
    green = np.asarray(vis.GT_COLOR, float)
    for n, (frame, ref) in enumerate(zip(drawn, original)):
        assert read_barcode(frame) == n                     # same frame, same place
        shown = vis.keyframe_of_frame(n, FPS) == 1          # frames 5..14 show keyframe 1
        assert shown == (5 <= n <= 14)
        edge = frame[120:260, 160:160 + w].astype(float)    # left outline (lossy codec)
        if shown:
            assert np.abs(edge - green).mean() < 25, n
            outside = frame[120:260, 157].astype(float) - ref[120:260, 157]
            assert np.abs(outside).mean() < 12, n           # the column left of the box
            inside = frame[120:260, 175].astype(float) - ref[120:260, 175]
            assert np.abs(inside).mean() < 12, n
        else:
            assert np.abs(frame.astype(float) - ref).mean() < 3, n


def test_labels_from_results_top_k_min_score_and_names():
    boxes = [(0.1, 0.1, 0.4, 0.9)] * 4 + [(0.5, 0.1, 0.9, 0.9)] * 2
    rows = AvaRows.from_arrays(["v"] * 6 + [], [3] * 6, boxes, [12, 80, 11, 14, 12, 999],
                               scores=[0.9, 0.5, 0.2, 0.6, 0.1, 0.35])
    names = vis.label_names(load_label_map("ava-v2.1"))
    got = vis.group_keyframes(rows, "v", names, min_score=0.3, top_k=2)
    assert list(got) == [3]
    first, second = got[3]
    assert first.labels == [("stand", pytest.approx(0.9)), ("walk", pytest.approx(0.6))]
    assert second.labels == [("id 999", pytest.approx(0.35))]   # id unknown to the map
    # below min_score: still drawn (every person box), without a label
    assert [p.labels for p in vis.group_keyframes(rows, "v", names, min_score=0.95)[3]] == [[], []]
    assert vis.group_keyframes(rows, "other", names) == {}


def test_sheet_has_the_requested_grid(video640, tmp_path):
    rows = "\n".join(f"clip,{ts},0.1,0.1,0.4,0.8,12,0.9" for ts in (0, 1, 2)) + "\n"
    (tmp_path / "res.csv").write_text(rows)
    sheet = tmp_path / "sheet.png"
    result = CliRunner().invoke(main, ["visualize", str(video640 / "clip.mp4"), "--results",
                                       str(tmp_path / "res.csv"), "--sheet", str(sheet),
                                       "--sheet-grid", "2x3", "--sheet-width", "160", "-q"])
    assert result.exit_code == 0, result.output
    layout = vis.sheet_layout(2, 3, 160, 90)
    image = np.asarray(Image.open(sheet).convert("RGB"))
    assert image.shape == (layout["size"][1], layout["size"][0], 3)
    # three keyframes fill the first row; the second row's cells stay dark
    for k in range(6):
        x, y = layout["cell"](k // 3, k % 3)
        cell = image[y:y + 90, x:x + 160].astype(float)
        assert (cell.std() > 10) == (k < 3), k
    assert not (tmp_path / "clip.mp4").exists()              # --sheet alone: no video


def test_mpeg4_fallback_and_max_size(video640, tmp_path):
    out = tmp_path / "small.mp4"
    gt = {1: [vis.Person(GT_BOX, [("stand", None)])]}
    info = vis.draw_video(video640 / "clip.mp4", out, gt=gt, max_size=321, codec="mpeg4")
    assert (info["width"], info["height"], info["codec"]) == (320, 180, "mpeg4")
    frames, _ = decode(out)
    assert len(frames) == 25 and frames[0].shape == (180, 320, 3)


def test_errors_name_the_file(video640, tmp_path):
    (tmp_path / "res.csv").write_text("someother,1,0.1,0.1,0.4,0.8,12,0.9\n")
    runner = CliRunner()
    result = runner.invoke(main, ["visualize", str(video640 / "clip.mp4"), "--results",
                                  str(tmp_path / "res.csv"), "--out", str(tmp_path / "o.mp4")])
    assert result.exit_code == 1
    assert "res.csv: no rows for video 'clip' (it has someother)" in result.output
    result = runner.invoke(main, ["visualize", str(video640 / "clip.mp4"), "--results",
                                  str(tmp_path / "res.csv"), "--out", str(tmp_path / "o.avi")])
    assert result.exit_code == 1 and "expected FILE.mp4 or a folder" in result.output


# two persons on a 160x120 frame, results on (nearly) the ground-truth boxes, long AVA names
TINY_RESULTS = [vis.Person((0.09, 0.13, 0.46, 0.98), [("stand", 0.91), ("watch (a person)", 0.55),
                                                      ("talk to (e.g., self, a person, a group)",
                                                       0.40)], 0.91),
                vis.Person((0.56, 0.09, 0.93, 0.94), [("sit", 0.83),
                                                      ("carry/hold (an object)", 0.35)], 0.83)]
TINY_GT = [vis.Person((0.08, 0.12, 0.45, 0.97), [("stand", None), ("watch (a person)", None),
                                                 ("talk to (e.g., self, a person, a group)",
                                                  None)]),
           vis.Person((0.55, 0.08, 0.92, 0.93), [("sit", None), ("carry/hold (an object)", None)])]


def test_result_and_ground_truth_labels_do_not_overlap_on_a_tiny_frame():
    image = Image.new("RGB", (160, 120), (0, 0, 0))
    vis.draw_persons(image, TINY_RESULTS, TINY_GT, show_legend=True)
    font = vis._font(vis.font_size(160, 120))
    labels = vis.layout_labels(TINY_RESULTS, TINY_GT, 160, 120, font, legend=True)
    # one line per label on 160x120 with "+N" for the actions left out (short names: the
    # full ones are wider than the frame); no legend: no corner is free
    assert [(lab.source, lab.lines) for lab in labels] == [
        ("results", ("stand 0.91 +2",)), ("results", ("sit 0.83 +1",)),
        ("gt", ("stand +2",)), ("gt", ("sit +1",))]
    for i, a in enumerate(labels):
        assert 0 <= a.rect[0] < a.rect[2] <= 160 and 0 <= a.rect[1] < a.rect[3] <= 120
        for b in labels[i + 1:]:
            assert not vis._overlaps(a.rect, b.rect), (a, b)
    # the pixels: each label's rectangle holds only its fill and its text (anti-aliased
    # ink on the fill), i.e. nothing of another label was drawn over it
    pixels = np.asarray(image).astype(float)
    for lab in labels:
        fill = np.asarray(lab.color, float)
        ink = np.asarray(vis._text_color(lab.color), float)
        x0, y0, x1, y1 = lab.rect
        p = pixels[y0:y1, x0:x1].reshape(-1, 3)
        t = (p - ink) @ (fill - ink) / ((fill - ink) @ (fill - ink))
        residual = np.abs(p - (ink + t[:, None] * (fill - ink))).max()
        assert residual < 4 and (p == fill).all(axis=1).mean() > 0.5, lab
        assert (pixels[y0, x0] == fill).all()


def test_labels_never_overlap_and_shrink_when_there_is_no_room():
    rng = np.random.default_rng(0)
    names = ["stand", "watch (a person)", "talk to (e.g., self, a person, a group)", "sit",
             "carry/hold (an object)", "listen to (a person)"]
    shortened = 0
    for size in ((64, 48), (160, 120), (320, 180), (640, 360)):
        font = vis._font(vis.font_size(*size))
        for _ in range(40):
            persons, gt = [], []
            for _ in range(int(rng.integers(1, 6))):
                x1, x2 = np.sort(rng.uniform(-0.05, 1.05, 2))
                y1, y2 = np.sort(rng.uniform(-0.05, 1.05, 2))
                box = (float(x1), float(y1), float(x2), float(y2))
                acts = rng.choice(names, int(rng.integers(1, 4)), replace=False).tolist()
                persons.append(vis.Person(box, [(a, 0.5) for a in acts], 0.5))
                gt.append(vis.Person(box, [(a, None) for a in acts]))
            labels = vis.layout_labels(persons, gt, *size, font, legend=True)
            shortened += sum("+" in lab.lines[-1] for lab in labels)
            for i, a in enumerate(labels):
                assert 0 <= a.rect[0] < a.rect[2] <= size[0], (size, a)
                assert 0 <= a.rect[1] < a.rect[3] <= size[1], (size, a)
                for b in labels[i + 1:]:
                    assert not vis._overlaps(a.rect, b.rect), (size, a, b)
    assert shortened > 0                  # the small frames did run out of room


def test_a_time_offset_that_puts_keyframes_outside_the_video_is_said(video640, tmp_path):
    # the 2.5 s video at --time-offset 900 has no keyframe 1: nothing is drawn, and the
    # warning names the offset that fits (as extract-features and detect say it)
    args = ["visualize", str(video640 / "clip.mp4"), "--gt", str(video640 / "gt.csv"),
            "--out", str(tmp_path / "off.mp4"), "-q"]
    with pytest.warns(UserWarning) as caught:
        result = CliRunner().invoke(main, args + ["--time-offset", "900"])
    assert result.exit_code == 0, result.output
    said = " ".join(str(w.message) for w in caught)
    assert "1 of 1 keyframes outside the video (2.5 s long) at --time-offset 900: 1" in said
    assert "nothing to draw: --time-offset 0 would fit" in said
    assert "clip: 0 keyframes drawn" in result.output
    # with a fitting offset: no warning, the keyframe is drawn
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = CliRunner().invoke(main, args)
    assert result.exit_code == 0 and "clip: 1 keyframes drawn" in result.output


def test_person_ids_give_each_person_its_colour_and_a_label_tag():
    names = {12: "stand", 79: "talk"}
    box_a, box_b = [0.1, 0.1, 0.4, 0.9], [0.5, 0.1, 0.8, 0.9]
    rows = AvaRows.from_arrays(
        ["v"] * 6, [1, 1, 1, 2, 2, 2], [box_a, box_a, box_b, box_b, box_a, box_a],
        [12, 79, 12, 12, 12, 79], person_ids=[3, 3, 8, 8, 3, 3],
        scores=[0.9, 0.6, 0.1, 0.95, 0.8, 0.7])
    persons = vis.group_keyframes(rows, "v", names, min_score=0.5)
    assert {p.person_id for p in persons[1]} == {3, 8}
    # #3 is first at 1, #8 at 2 (best first): colours by rank would swap, by id they stay
    colours = {t: {p.person_id: vis.person_color(p, k) for k, p in enumerate(persons[t])}
               for t in (1, 2)}
    assert colours[1] == colours[2] and colours[1][3] != colours[1][8]
    assert vis.id_color(3) != vis.GT_COLOR and len({vis.id_color(i) for i in range(50)}) == 50
    font = vis._font(vis.font_size(640, 480))
    texts = {lab.lines for lab in vis.layout_labels(persons[1], [], 640, 480, font)}
    assert texts == {("#3 stand 0.90", "talk 0.60"), ("#8",)}     # #8: no action >= 0.5
    no_ids = vis.group_keyframes(rows.take(np.arange(6)), "v", names, ground_truth=True)
    assert all(p.person_id is None for p in no_ids[1])               # ground truth: as before
    assert [p.person_id for p in persons[2]] == [8, 3]


def _example_keyframes(root, size):
    """render-example's persons (one video at `size`), each given every one of the 3 actions
    (scores 0.81, 0.55, 0.42) and its track id, as `hgrnn predict` draws them; and its
    ground truth. Returns ({ts: [Person]} results, {ts: [Person]} ground truth)."""
    from hgrnn.data.ava import read_annotations
    from hgrnn.pipeline.example import render_example

    render_example(root, videos=1, size=size)
    label_map = load_label_map(root / "label_map.txt")
    gt = read_annotations(root / "annotations.csv", label_map, progress=False)
    names = vis.label_names(label_map)
    keys = sorted({(int(t), tuple(b), int(p)) for t, b, p in
                   zip(gt.timestamps, gt.boxes.tolist(), gt.person_ids)})
    rows = AvaRows.from_arrays(
        ["clip1"] * 3 * len(keys), [t for t, _, _ in keys for _ in range(3)],
        [b for _, b, _ in keys for _ in range(3)], list(label_map.ids) * len(keys),
        person_ids=[p for _, _, p in keys for _ in range(3)],
        scores=[0.81, 0.55, 0.42] * len(keys))
    return (vis.group_keyframes(rows, "clip1", names, min_score=0.3),
            vis.group_keyframes(gt, "clip1", names, ground_truth=True))


def _covered(labels, width, height) -> float:
    mask = np.zeros((height, width), bool)
    for lab in labels:
        x0, y0, x1, y1 = lab.rect
        mask[y0:y1, x0:x1] = True
    return float(mask.mean())


def test_labels_leave_most_of_a_160x120_frame_and_its_persons_visible(tmp_path):
    """Issue 28: on predict's 160x120 example video the labels covered most of the frame."""
    results, gt = _example_keyframes(tmp_path, (160, 120))
    font = vis._font(vis.font_size(160, 120))
    for ts in results:
        alone = vis.layout_labels(results[ts], [], 160, 120, font)
        both = vis.layout_labels(results[ts], gt[ts], 160, 120, font, legend=True)
        assert _covered(alone, 160, 120) <= 0.15, ts      # predict's video: results only
        assert _covered(both, 160, 120) <= 0.25, ts       # visualize with --gt
        # one line per person, the two actions left out counted, every person labelled
        assert sorted(lab.lines for lab in alone) == sorted(
            (f"#{p.person_id} stand 0.81 +2",) for p in results[ts])
        # the persons are small here: no label hides its own person's box
        for lab, person in zip(alone, results[ts]):
            left, top, right, bottom = vis.box_pixels(person.box, 160, 120)
            assert not vis._overlaps(lab.rect, (left, top, right + 1, bottom + 1)), (ts, lab)


def test_neighbouring_labels_never_touch():
    """Two ground-truth labels (both green) stacked edge to edge read as one label ("walk
    walk +1"): a line of video is left between any two labels."""
    rng = np.random.default_rng(1)
    for size in ((160, 120), (320, 240), (1280, 720)):
        font = vis._font(vis.font_size(*size))
        for _ in range(30):
            gt = []
            for _ in range(int(rng.integers(2, 7))):
                x1 = float(rng.uniform(0, 0.8))
                y1 = float(rng.uniform(0, 0.6))
                gt.append(vis.Person((x1, y1, x1 + 0.12, y1 + 0.35),
                                     [("walk", None), ("stand", None)]))
            labels = vis.layout_labels([], gt, *size, font)
            for i, a in enumerate(labels):
                grown = (a.rect[0] - 1, a.rect[1] - 1, a.rect[2] + 1, a.rect[3] + 1)
                for b in labels[i + 1:]:
                    assert not vis._overlaps(grown, b.rect), (size, a, b)


def test_text_grows_with_the_frame_and_stays_legible_on_small_ones():
    assert vis.font_size(160, 120) == 9 and vis.font_size(320, 240) == 11
    assert vis.font_size(1280, 720) > vis.font_size(640, 360) > vis.font_size(320, 240)
    line_h = vis._text_metrics(vis._font(9))[0]
    assert vis.max_label_lines(120, line_h) == 1
    assert vis.max_label_lines(720, vis._text_metrics(vis._font(vis.font_size(1280, 720)))[0]) == 3


def test_visualize_takes_the_label_map_beside_the_results(video640, tmp_path, monkeypatch):
    """Issue 28: without --label-map, predict's features_label_map.txt beside results.csv
    names the classes (custom ids were shown as AVA's), and the help's first example
    draws on the source video, not on predict's drawn one."""
    pred = tmp_path / "pred"
    pred.mkdir()
    (pred / "results.csv").write_text("clip,1," + ",".join(map(str, GT_BOX)) + ",102,0.9\n")
    (pred / "features_label_map.txt").write_text("101 stand\n102 walk\n")
    seen = []
    real = vis.visualize
    monkeypatch.setattr(vis, "visualize", lambda *a, **k: seen.append(k["label_map"])
                        or real(*a, **k))
    runner = CliRunner()
    args = ["visualize", str(video640 / "clip.mp4"), "--results", str(pred / "results.csv"),
            "--out", str(tmp_path / "o.mp4"), "-q"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert f"class names from {pred / 'features_label_map.txt'}" in result.output
    assert seen == [str(pred / "features_label_map.txt")]
    # convert's <csv>_label_map.txt comes first; --label-map still chooses
    (pred / "results_label_map.txt").write_text("102 run\n")
    assert vis.label_map_beside(pred / "results.csv") == pred / "results_label_map.txt"
    result = runner.invoke(main, args + ["--label-map", "ava-v2.1"])
    assert result.exit_code == 0 and "class names from" not in result.output
    assert seen[-1] == "ava-v2.1"
    (pred / "results_label_map.txt").unlink()
    (pred / "features_label_map.txt").unlink()
    assert runner.invoke(main, args).exit_code == 0 and seen[-1] == "ava-v2.1"
    help_text = runner.invoke(main, ["visualize", "--help"]).output
    first = next(line for line in help_text.splitlines() if "hgrnn visualize " in line)
    assert "pred/" not in first.split("--results")[0]


def test_min_size_draws_on_an_upscaled_frame(video640, tmp_path):
    assert vis.output_size(160, 120, None, 480) == (640, 480)
    assert vis.output_size(160, 120, 400, 480) == (400, 300)     # --max-size wins
    assert vis.output_size(640, 360, None, 240) == (640, 360)
    s = vis.visualize(video640 / "clip.mp4", tmp_path / "o.mp4", gt_csv=video640 / "gt.csv",
                      min_size=480)
    assert (s["width"], s["height"]) == (852, 480)       # 853.3 rounded, even
