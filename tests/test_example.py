"""`hgrnn render-example`: the files, their formats (read back with the real readers), and
boxes that lie on the drawn persons of the decoded video."""

import numpy as np
import pytest
from click.testing import CliRunner

from hgrnn.cli import main
from hgrnn.data.ava import group_persons, load_label_map, read_annotations, read_results
from hgrnn.pipeline.example import render_example
from hgrnn.pipeline.render import _background
from hgrnn.data.video import iter_clips


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    out = tmp_path_factory.mktemp("ex") / "example"
    result = CliRunner().invoke(main, ["render-example", str(out), "--videos", "2",
                                       "--seconds", "4"])
    assert result.exit_code == 0, result.output
    return out


def test_files_read_back_with_the_real_readers(example):
    lm = load_label_map(str(example / "label_map.txt"))
    assert lm.ids == (101, 102, 103) and lm.names == ("stand", "walk", "carry")
    gt = read_annotations(example / "annotations.csv", lm, progress=False)
    assert gt.skipped == {} and set(gt.video_ids) == {"clip1", "clip2"}
    assert sorted(set(gt.timestamps.tolist())) == [1, 2, 3]
    persons = group_persons(gt, lm)
    labels = persons.labels
    # exactly one of stand / walk per person; carry on top for some
    np.testing.assert_array_equal(labels[:, 0] + labels[:, 1], 1)
    assert len(persons) == 2 * 3 * 3 and set(persons.person_ids.tolist()) == {0, 1, 2}
    det = read_results(example / "persons.csv", progress=False)
    assert (det.action_ids == -1).all() and ((det.scores > 0) & (det.scores < 1)).all()
    lines = (example / "README.txt").read_text().splitlines()
    for name in ("videos/", "annotations.csv", "persons.csv", "label_map.txt", "exports/"):
        assert any(line.startswith(name) for line in lines), name
    assert (example / "exports" / "clip1_cvat.xml").exists()
    assert (example / "exports" / "clip1_via.json").exists()


def test_boxes_lie_on_the_drawn_persons(example):
    lm = load_label_map(str(example / "label_map.txt"))
    persons = group_persons(read_annotations(example / "annotations.csv", lm, progress=False),
                            lm)
    background = _background(160, 120).astype(float)
    for vid in ("clip1", "clip2"):
        frames = dict(iter_clips(example / "videos" / f"{vid}.mp4", [1, 2, 3], 1, 1, None))
        for i in np.flatnonzero(persons.video_ids == vid):
            frame = frames[float(persons.timestamps[i])][0].astype(float)    # (H, W, 3)
            x1, y1, x2, y2 = persons.boxes[i] * [160, 120, 160, 120]
            inside = frame[int(y1) + 2:int(y2) - 2, int(x1) + 2:int(x2) - 2]
            bg = background[int(y1) + 2:int(y2) - 2, int(x1) + 2:int(x2) - 2]
            # the person's flat colour, far from the gradient background, fills its box
            assert np.abs(inside - bg).mean() > 40, (vid, persons.timestamps[i], i)
            outside_left = frame[int(y1) + 2:int(y2) - 2, max(int(x1) - 6, 0):max(int(x1) - 3, 0)]
            if outside_left.size and x1 > 8:
                assert np.abs(outside_left - background[int(y1) + 2:int(y2) - 2,
                              int(x1) - 6:int(x1) - 3]).mean() < np.abs(inside - bg).mean()


def test_same_seed_same_dataset_and_no_silent_overwrite(tmp_path):
    a = render_example(tmp_path / "a", videos=1, seconds=3, seed=5)
    b = render_example(tmp_path / "b", videos=1, seconds=3, seed=5)
    assert a["persons"] == b["persons"] == 2 * 3
    for name in ("annotations.csv", "persons.csv"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    with pytest.raises(FileExistsError, match="--overwrite"):
        render_example(tmp_path / "a", videos=1, seconds=3)
    render_example(tmp_path / "a", videos=1, seconds=3, seed=6, overwrite=True)


def test_default_threshold_keeps_exactly_the_persons(example):
    """persons.csv scores every true person above the default --det-threshold and every
    false positive below it (the docs' steps with the default keep all persons)."""
    from hgrnn.pipeline.defaults import DEFAULT_DET_THRESHOLD

    lm = load_label_map(str(example / "label_map.txt"))
    gt = group_persons(read_annotations(example / "annotations.csv", lm, progress=False), lm)
    det = read_results(example / "persons.csv", progress=False)
    true = np.zeros(len(det), bool)
    for i in range(len(det)):            # a detection on a true person: IoU > 0.5 with its box
        same = (gt.video_ids == det.video_ids[i]) & (gt.timestamps == det.timestamps[i])
        a, b = det.boxes[i], gt.boxes[same]
        w = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
        h = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
        area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])   # noqa: E731
        iou = w * h / (area(a) + area(b) - w * h)
        true[i] = iou.max() > 0.5
    assert true.sum() == len(gt)                          # one detection per true person
    assert (det.scores[true] >= DEFAULT_DET_THRESHOLD).all(), det.scores[true].min()
    assert (det.scores[~true] < DEFAULT_DET_THRESHOLD).all()
