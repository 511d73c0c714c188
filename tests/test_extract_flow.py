"""The flow stream through `hgrnn extract-features` (--streams rgb,flow / flow): both streams'
features land side by side in the store, named by its `streams` attribute, and equal an
independent recomputation (decode, TV-L1, scale, flow I3D, pool); resuming and merging
refuse stores of other streams; `inspect` shows them."""

import json

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hgrnn.cli import main
from hgrnn.data.store_check import check_store
from hgrnn.pipeline.flow import scale_flow, tvl1_pairs
from hgrnn.pipeline.i3d import InceptionI3d, normalize_frames, person_features
from hgrnn.pipeline.render import render_video
from hgrnn.data.video import iter_clips

FPS = 10
TINY = ["--clip-frames", "4", "--short-side", "64", "--batch-size", "8", "--quiet"]
SMALL = TINY + ["--workers", "0", "--keyframes", "1:2"]
BOX = [0.05, 0.1, 0.45, 0.9]


def run(args, expect=0, command="extract-features"):
    result = CliRunner().invoke(main, [command] + [str(a) for a in args])
    assert result.exit_code == expect, (result.output, result.exception)
    return result


def _weights(path, in_channels, seed):
    torch.manual_seed(seed)
    model = InceptionI3d(in_channels=in_channels)
    for module in model.modules():        # He init: activations keep their scale (float16 store)
        if isinstance(module, torch.nn.Conv3d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    torch.save(model.state_dict(), path)
    return path, model.eval()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("flowx")
    render_video(root / "videos" / "vidA.mp4", seconds=3, fps=FPS, size=(96, 64))
    (root / "gt.csv").write_text("vidA,1," + ",".join(map(str, BOX)) + ",12,0\n"
                                 "vidA,2," + ",".join(map(str, BOX)) + ",12,0\n")
    rgb_path, rgb = _weights(root / "rgb.pt", 3, 0)
    flow_path, flow = _weights(root / "flow.pt", 2, 1)
    out = root / "two.h5"
    run(["--out", out, "--videos", root / "videos", "--annotations", root / "gt.csv",
         "--streams", "rgb,flow", "--backbone-weights", rgb_path,
         "--flow-backbone-weights", flow_path, "--flow", "tvl1"] + SMALL)
    return {"root": root, "rgb": rgb, "flow": flow, "rgb_path": rgb_path,
            "flow_path": flow_path, "two": out}


def test_both_streams_land_side_by_side_and_match_a_recomputation(setup):
    out = setup["two"]
    assert check_store(out) == []
    with h5py.File(out, "r") as f:
        assert json.loads(f.attrs["streams"]) == [["rgb", 0, 1024], ["flow", 1024, 2048]]
        assert int(f.attrs["feature_dim"]) == 2048
        config = json.loads(f.attrs["configs"])["extract"]
        assert config["streams"] == ["rgb", "flow"] and config["flow"] == "tvl1"
        assert config["flow_backbone"]["sha256"] and config["flow_meta"]["method"] == "tvl1"
        clip = f["videos/vidA/clip"][:].astype(np.float32)           # (2, 2048)
        feats = f["videos/vidA/gt/feats"][:].astype(np.float32)      # (2, 2048)
    clips = np.stack([c for _, c in iter_clips(setup["root"] / "videos" / "vidA.mp4", [1, 2],
                                               4, 1, 64)])          # (2, 4, 64, 96, 3)
    boxes = [torch.tensor([BOX]), torch.tensor([BOX])]
    with torch.no_grad():
        fmap = setup["rgb"].extract_features(normalize_frames(clips))
        rgb_clip, rgb_person = fmap.mean(dim=(2, 3, 4)), person_features(fmap, boxes, (64, 96))
        flow = torch.from_numpy(scale_flow(np.stack([tvl1_pairs(c) for c in clips])))
        x = flow.permute(0, 4, 1, 2, 3)                               # (2, 2, 3, 64, 96)
        fmap = setup["flow"].extract_features(x)
        flow_clip, flow_person = fmap.mean(dim=(2, 3, 4)), person_features(fmap, boxes, (64, 96))
    tol = dict(rtol=3e-3, atol=3e-3)
    np.testing.assert_allclose(clip[:, :1024], rgb_clip.numpy(), **tol)
    np.testing.assert_allclose(feats[:, :1024], rgb_person.numpy(), **tol)
    # flow travels worker -> main as float16: a little more tolerance
    np.testing.assert_allclose(clip[:, 1024:], flow_clip.numpy(), rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(feats[:, 1024:], flow_person.numpy(), rtol=1e-2, atol=1e-2)
    assert np.abs(clip[:, 1024:]).mean() > 1e-3                       # not degenerate


def test_inspect_shows_streams_and_resume_refuses_other_streams(setup):
    result = run([setup["two"]], command="inspect")
    assert "streams: rgb [0:1024], flow [1024:2048]" in result.output
    result = run(["--out", setup["two"], "--videos", setup["root"] / "videos",
                  "--backbone-weights", setup["rgb_path"]] + SMALL, expect=1)
    assert "streams ['rgb', 'flow'] -> ['rgb']" in result.output
    assert "would mix two kinds of features" in result.output


def test_flow_only_store_with_random_raft_in_a_worker_and_merge_refuses_it(setup, tmp_path):
    out = tmp_path / "flow.h5"
    run(["--out", out, "--videos", setup["root"] / "videos", "--streams", "flow",
         "--flow", "raft-small", "--flow-weights", "none",
         "--flow-backbone-weights", setup["flow_path"]] + TINY + ["--workers", "1",
                                                                    "--keyframes", "1:1"])
    assert check_store(out) == []
    with h5py.File(out, "r") as f:
        assert json.loads(f.attrs["streams"]) == [["flow", 0, 1024]]
        assert f["videos/vidA/clip"].shape == (1, 1024)
        meta = json.loads(f.attrs["configs"])["extract"]["flow_meta"]
        assert meta["method"] == "raft-small" and meta["weights"] == "none"
    rgb = tmp_path / "rgb.h5"               # the same feature_dim, another stream
    run(["--out", rgb, "--videos", setup["root"] / "videos", "--backbone-weights",
         setup["rgb_path"]] + TINY + ["--workers", "0", "--keyframes", "1:1"])
    result = run([tmp_path / "merged.h5", rgb, out], expect=1, command="merge-stores")
    assert "streams [['flow', 0, 1024]] differ" in result.output


def test_missing_weights_and_bad_streams_are_one_line_errors(setup, tmp_path):
    videos = setup["root"] / "videos"
    result = run(["--out", tmp_path / "x.h5", "--videos", videos, "--streams", "rgb,flow",
                  "--backbone-weights", "none"] + SMALL, expect=1)
    assert "flow stream needs --flow-backbone-weights" in result.output
    result = run(["--out", tmp_path / "x.h5", "--videos", videos, "--streams", "depth",
                  "--backbone-weights", "none"] + SMALL, expect=2)
    assert "expected rgb, flow or rgb,flow" in result.output
    result = run(["--out", tmp_path / "x.h5", "--videos", videos, "--streams", "flow",
                  "--flow-backbone-weights", setup["rgb_path"]] + SMALL, expect=1)
    assert "an RGB model with 3 input channels; the flow stream needs 2" in result.output
