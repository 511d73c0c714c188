"""Checking a store (hgrnn.data.store_check) against the schema."""

import h5py
import numpy as np
import pytest

from hgrnn.data.store_check import check_store
from test_store import _write  # noqa: E402  (tests/ is on sys.path under pytest)


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
