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


def _extract_config(**changes):
    """An extract-stage config shaped like the one `extract-features` records."""
    cfg = {"fps": 30.0, "time_offset": 0.0, "clip_frames": 32, "frame_stride": 1,
           "short_side": 256, "person_layer": "mixed_5c", "projection": False,
           "streams": ["rgb"], "flow": None, "flow_weights": None, "feature_dim": C,
           "backbone_weights": "/data/a/rgb_imagenet.pt", "annotations": "/data/a/train.csv",
           "keyframes": [902, 1798], "seek_after": 2.0, "detector": None,
           "detector_weights": None,
           "backbone": {"kind": "imagenet", "path": "/data/a/rgb_imagenet.pt",
                        "sha256": "ab12", "feature_dim": 1024, "seed": None}}
    for key, value in changes.items():
        if "." in key:
            outer, inner = key.split(".")
            cfg[outer] = dict(cfg[outer], **{inner: value})
        else:
            cfg[key] = value
    return cfg


def _shard(path, vid, seed, extract):
    with StoreWriter(path, feature_dim=C, label_map=LM, configs={"extract": extract}) as w:
        w.add_video(vid, **_video(seed))
    return path


@pytest.mark.parametrize("changes, setting", [
    ({"clip_frames": 8, "short_side": 128}, "extract setting clip_frames = 8 differs"),
    ({"backbone.sha256": "cd34"}, "extract setting backbone.sha256 = 'cd34' differs"),
    ({"person_layer": "mixed_4f"}, "extract setting person_layer = 'mixed_4f' differs"),
    ({"new_backbone_option": 3}, "extract setting new_backbone_option = 3 differs"),
])
def test_merge_refuses_features_of_another_kind_even_with_keep_first(tmp_path, changes, setting):
    # the audit: 8-frame/128 px and 32-frame/256 px shards merged with one warning
    a = _shard(tmp_path / "a.h5", "v0", 0, _extract_config())
    b = _shard(tmp_path / "b.h5", "v1", 1, _extract_config(**changes))
    for on_duplicate in ("error", "first"):
        with pytest.raises(StoreError, match=f"^{b}: {setting} from {a}") as err:
            merge_stores(tmp_path / "o.h5", [a, b], on_duplicate=on_duplicate, progress=False)
        assert "cannot be merged" in str(err.value)
        assert not os.path.exists(tmp_path / "o.h5")
    assert "(and 1 more: short_side)" in str(err.value) or len(changes) == 1


def test_merge_accepts_shards_differing_in_settings_that_keep_the_features(tmp_path):
    a = _shard(tmp_path / "a.h5", "v0", 0, _extract_config())
    other = {"backbone_weights": "/scratch/b/rgb_imagenet.pt", "annotations": "/b/train.csv",
             "keyframes": [902, 1000], "seek_after": 5.0,
             "backbone.path": "/scratch/b/rgb_imagenet.pt"}
    b = _shard(tmp_path / "b.h5", "v1", 1, _extract_config(**other))
    with pytest.warns(UserWarning, match="stage 'extract' config differs between shards; "
                                         "keeping the first shard's"):
        summary = merge_stores(tmp_path / "o.h5", [a, b], progress=False)
    assert summary["videos"] == 2 and summary["differing_configs"] == ["extract"]
    with h5py.File(tmp_path / "o.h5", "r") as f:
        assert json.loads(f.attrs["configs"])["extract"] == _extract_config()


def test_merge_takes_shards_written_before_a_setting_existed(tmp_path):
    """A shard without the keys later versions record (streams, person_layer, backbone_name,
    and settings that are off: None) merges with one that records them at those values;
    not with one whose value differs."""
    new = _extract_config(backbone_name="i3d", resample_fps=None, flow=None)
    old = {k: v for k, v in new.items()
           if k not in ("streams", "person_layer", "backbone_name", "resample_fps", "flow")}
    a = _shard(tmp_path / "a.h5", "v0", 0, old)
    b = _shard(tmp_path / "b.h5", "v1", 1, new)
    with pytest.warns(UserWarning, match="config differs between shards"):
        assert merge_stores(tmp_path / "o.h5", [a, b], progress=False)["videos"] == 2
    c = _shard(tmp_path / "c.h5", "v2", 2, dict(new, person_layer="mixed_4f"))
    with pytest.raises(StoreError, match="person_layer = 'mixed_4f' differs .*\\('absent'\\)"):
        merge_stores(tmp_path / "p.h5", [a, c], progress=False)


def test_feature_setting_differences():
    from hgrnn.data.store_merge import feature_setting_differences

    base = _extract_config()
    assert feature_setting_differences(base, _extract_config(workers=4, device="cuda")) == []
    # a file's location is neutral only where its content hash is recorded beside it
    assert feature_setting_differences({"w": {"weights": "x", "sha256": None}},
                                       {"w": {"weights": "y", "sha256": None}}) == [
        ("w.weights", "x", "y")]
    assert feature_setting_differences({"w": {"weights": "x", "sha256": "1"}},
                                       {"w": {"weights": "y", "sha256": "1"}}) == []
    assert feature_setting_differences(base, {k: v for k, v in base.items() if k != "fps"}) == [
        ("fps", 30.0, "absent")]


def test_cli_merge_names_the_setting(tmp_path):
    from click.testing import CliRunner

    from hgrnn.cli import main

    a = _shard(tmp_path / "a.h5", "v0", 0, _extract_config())
    b = _shard(tmp_path / "b.h5", "v1", 1, _extract_config(clip_frames=8))
    r = CliRunner().invoke(main, ["merge-stores", str(tmp_path / "o.h5"), str(a), str(b),
                                  "--keep-first"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert f"Error: {b}: extract setting clip_frames = 8 differs from {a} (32)" in r.output
