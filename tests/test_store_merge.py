"""Merging shard stores (hgrnn.data.store_merge) written with the real StoreWriter."""

import json
import os

import h5py
import numpy as np
import pytest

from hgrnn.data.store import StoreError, StoreWriter, read_failures
from hgrnn.data.store_check import check_store
from hgrnn.data.store_merge import merge_stores
from test_store import LM, C, _video, _write  # noqa: E402  (tests/ is on sys.path under pytest)


def test_merge_stores(tmp_path):
    a = _write(tmp_path / "a.h5", ["v0", "v1"], configs={"extract": {"shard": 0}})
    b = tmp_path / "b.h5"
    with StoreWriter(b, feature_dim=C, label_map=LM, configs={"extract": {"shard": 0},
                                                              "detect": {"thr": 0.5}}) as w:
        w.add_video("v2", **_video(2))
        w.add_video("v1", **_video(1))             # identical copy of a's v1: accepted
        w.record_failure("v9", "broken file")
        w.record_failure("v0", "failed on this worker")   # but complete in shard a
    with h5py.File(b, "a") as f:                   # an incomplete leftover is skipped
        f["videos"].create_group("v7")
    out = tmp_path / "out.h5"
    summary = merge_stores(out, [a, b], progress=False)
    assert summary["videos"] == 3 and summary["duplicates"] == 1
    assert summary["incomplete_skipped"] == 1
    assert check_store(out) == []
    assert read_failures(out) == {"v9": "broken file"}
    with h5py.File(out, "r") as f:
        assert sorted(f["videos"]) == ["v0", "v1", "v2"]
        assert json.loads(f.attrs["configs"]) == {"extract": {"shard": 0}, "detect": {"thr": 0.5}}
        np.testing.assert_array_equal(f["videos/v2/gt/labels"][()], _video(2)["gt"].labels)
        assert f["videos/v2/gt/labels"].compression == "gzip"
    with pytest.raises(StoreError, match="exists"):
        merge_stores(out, [a, b], progress=False)


def test_merge_refuses_mismatch_and_conflicting_duplicates(tmp_path):
    a = _write(tmp_path / "a.h5", ["v0", "v1"])
    c = tmp_path / "c.h5"
    with StoreWriter(c, feature_dim=C, label_map=LM) as w:
        w.add_video("v1", **_video(7))             # same id, different data
    with pytest.raises(StoreError, match="v1 is also in"):
        merge_stores(tmp_path / "o.h5", [a, c], progress=False)
    assert not os.path.exists(tmp_path / "o.h5")
    merge_stores(tmp_path / "o.h5", [a, c], on_duplicate="first", progress=False)
    with h5py.File(tmp_path / "o.h5", "r") as f:
        np.testing.assert_array_equal(f["videos/v1/clip"][()], _video(1)["clip"])
    d = tmp_path / "d.h5"
    with StoreWriter(d, feature_dim=8, label_map=LM):
        pass
    with pytest.raises(StoreError, match="feature_dim 8 differs"):
        merge_stores(tmp_path / "p.h5", [a, d], progress=False)
    e = tmp_path / "e.h5"
    with StoreWriter(e, feature_dim=C, label_map=[[1, "bend"]]):
        pass
    with pytest.raises(StoreError, match="label map differs"):
        merge_stores(tmp_path / "p.h5", [a, e], progress=False)
