"""Checking a store (hgrnn.data.store_check) against the schema."""

import h5py
import numpy as np
import pytest

from hgrnn.data.store import PERSON_DATASETS, PersonSet, StoreError, StoreWriter
from hgrnn.data.store_check import check_store
from test_store import LM, C, _bad, _video, _write  # noqa: E402  (tests/ is on sys.path under pytest)


@pytest.mark.parametrize("corrupt, expected", [
    (lambda g: g["gt/offsets"].__setitem__(2, 10**6), "videos/b/gt/offsets"),
    (lambda g: g["clip"].__setitem__((0, 0), np.inf), "videos/b/clip: non-finite"),
    (lambda g: g["det/boxes"].__setitem__((0, 0), 2.0), "videos/b/det/boxes"),
    (lambda g: g["gt/labels"].__setitem__((0, 0), 7), "videos/b/gt/labels"),
    (lambda g: g.attrs.__delitem__("complete"), "videos/b: no 'complete'"),
    (lambda g: g["timestamps"].__setitem__(1, 0), "videos/b/timestamps"),
])
def test_check_store_names_first_broken_video_and_dataset(tmp_path, corrupt, expected):
    path = _write(tmp_path / "s.h5", ["a", "b", "c"])
    with h5py.File(path, "a") as f:
        corrupt(f["videos/b"])
    problems = check_store(path)
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_summary_text_keeps_long_class_names_and_indents_configs(tmp_path):
    from hgrnn.data.ava import LabelMap
    from hgrnn.data.store import StoreWriter
    from hgrnn.data.store_check import format_summary, summarize_store
    from test_store import C, _video

    long = "talk to (e.g., self, a person, a group)"
    lm = LabelMap(ids=(1, 3, 4, 6, 80), names=("bend", "crouch", "dance", "fall", long))
    path = tmp_path / "s.h5"
    config = {"backbone": {"kind": "random", "seed": 0}, "videos": [f"v{i}" for i in range(20)]}
    with StoreWriter(path, feature_dim=C, label_map=lm, configs={"extract": config}) as w:
        w.add_video("a", **_video(0))
    text = format_summary(summarize_store(path))
    assert f"  80 {long} " in text
    assert "    extract:\n      backbone:\n        kind: random\n        seed: 0\n" in text
    assert '      videos: ["v0", "v1", "v2", "v3", ... (20 in all)]' in text


# One corpus of broken videos: the writer refuses each with its first problem, and the same
# arrays written past the writer (with h5py, as another program could) make `check_store`
# report that same problem first. The rules live once (store.check_video_arrays).

def _more_bad(kind):
    v = _video(0)
    gt, det = v["gt"], v["det"]
    if kind == "ts-fraction":
        v["timestamps"] = v["timestamps"] + 0.5
    elif kind == "ts-2d":
        v["timestamps"] = v["timestamps"].reshape(2, 3)
    elif kind == "feats-nan":
        feats = det.feats.astype(np.float32)
        feats[1, 1] = np.nan
        v["det"] = PersonSet(det.offsets, det.boxes, feats, det.scores)
    elif kind == "feats-int":
        v["det"] = PersonSet(det.offsets, det.boxes, det.feats.astype(np.int32), det.scores)
    elif kind == "scores-shape":
        v["det"] = PersonSet(det.offsets, det.boxes, det.feats, det.scores[:-1])
    elif kind == "pid-float":
        v["gt"] = PersonSet(gt.offsets, gt.boxes, gt.feats, gt.scores, gt.labels,
                            gt.person_ids.astype(np.float32))
    elif kind == "offsets-start":
        v["det"] = PersonSet(det.offsets + 1, det.boxes, det.feats, det.scores)
    elif kind == "width":
        v["width"] = -3
    else:
        return _bad(kind)[0]
    return v


CORPUS = ["timestamps", "clip-shape", "clip-nan", "clip-overflow", "box-range", "box-order",
          "labels-values", "labels-K", "labels-missing", "offsets", "feats-rows", "scores-inf",
          "ts-fraction", "ts-2d", "feats-nan", "feats-int", "scores-shape", "pid-float",
          "offsets-start", "width"]


def _write_past_the_writer(path, vid, v):
    """Replace video `vid`'s datasets by the arrays of `v` exactly as given (h5py)."""
    with h5py.File(path, "a") as f:
        g = f["videos"][vid]
        for key in ("timestamps", "clip"):
            del g[key]
            g.create_dataset(key, data=np.asarray(v[key]))
        for src in ("gt", "det"):
            if src in g:
                del g[src]
            if v.get(src) is None:
                continue
            ps, sg = v[src], g.create_group(src)
            for key, value in zip(PERSON_DATASETS, (ps.offsets, ps.boxes, ps.feats, ps.scores,
                                                    ps.labels, ps.person_ids)):
                if value is not None:
                    sg.create_dataset(key, data=np.asarray(value))
        for name in ("width", "height"):
            if v.get(name) is not None:
                g.attrs[name] = v[name]


@pytest.mark.parametrize("kind", CORPUS)
def test_writer_and_checker_give_the_same_problem(tmp_path, kind):
    path = tmp_path / "s.h5"
    v = _more_bad(kind)
    with StoreWriter(path, feature_dim=C, label_map=LM) as w:
        w.add_video("a", **_video(1))
        with pytest.raises(StoreError) as err:
            w.add_video("b", **v)
        w.add_video("b", **_video(2))
        w.add_video("c", **_video(3))
    writer_says = str(err.value)
    assert writer_says.startswith(f"{path}: videos/b")
    _write_past_the_writer(path, "b", v)
    problems = check_store(path)
    assert problems and all(p.startswith("videos/b") for p in problems), problems
    assert writer_says == f"{path}: {problems[0]}", (writer_says, problems)


def test_check_lists_every_problem(tmp_path):
    path = _write(tmp_path / "s.h5", ["a", "b", "c"])
    with h5py.File(path, "a") as f:
        f["videos/a/clip"][0, 0] = np.nan
        f["videos/c/det/scores"][0] = np.inf
        f["videos/c/gt/labels"][0, 0] = 3
        f["videos/c"].attrs["width"] = 0
    problems = check_store(path)
    assert [p.split(":")[0] for p in problems] == [
        "videos/a/clip", "videos/c/gt/labels", "videos/c/det/scores", "videos/c"], problems
    assert problems[-1] == "videos/c: attribute width must be a positive integer, got 0"
