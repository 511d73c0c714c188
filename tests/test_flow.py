"""Optical flow (hgrnn.pipeline.flow): scaling, padding, TV-L1 on rendered moving textures
(sign and size), RAFT's wrapper (random weights cannot give a right flow, so what is checked
for RAFT is shape, padding, cropping, channel order, scaling and determinism)."""

import pickle

import numpy as np
import pytest
import torch

from hgrnn.pipeline import flow as fl
from hgrnn.pipeline.render import textured_clip

W, H = 96, 64
# patch A moves right 3 px/frame, patch B moves up 2 px/frame
MOVES = (((10, 12), (20, 16), (3, 0)), ((64, 40), (18, 18), (0, -2)))
STATIC = np.ones((H, W), bool)
STATIC[6:34, 2:50] = False       # the band swept by A (plus a margin)
STATIC[28:64, 56:90] = False     # the band swept by B


def test_scale_flow_clips_and_divides_by_the_bound():
    raw = np.array([-35.0, -20.0, -5.0, 0.0, 5.0, 19.0, 25.0], np.float32)
    want = np.array([-1, -1, -0.25, 0, 0.25, 0.95, 1], np.float32)
    np.testing.assert_allclose(fl.scale_flow(raw), want, atol=1e-7)
    np.testing.assert_allclose(fl.scale_flow(torch.from_numpy(raw)).numpy(), want, atol=1e-7)


def test_flow_to_input_layout():
    f = torch.arange(3 * 4 * 5 * 2, dtype=torch.float32).reshape(3, 4, 5, 2)   # (T, H, W, 2)
    x = fl.flow_to_input(f)
    assert x.shape == (1, 2, 3, 4, 5)
    assert torch.equal(x[0, 0], f[..., 0]) and torch.equal(x[0, 1], f[..., 1])
    with pytest.raises(ValueError, match=r"\(T, H, W, 2\)"):
        fl.flow_to_input(torch.zeros(3, 4, 5, 3))


@pytest.mark.parametrize("h,w,min_size", [(64, 96, 0), (60, 90, 0), (57, 81, 0), (8, 8, 0),
                                          (60, 90, 128), (130, 250, 128)])
def test_pad_to_multiple_of_8_replicates_the_edges(h, w, min_size):
    x = torch.randn(2, 3, 3, h, w)
    padded, size = fl.pad_to_multiple(x, 8, min_size)
    assert size == (h, w)
    assert padded.shape[-2] % 8 == 0 and padded.shape[-1] % 8 == 0
    assert padded.shape[-2] >= min_size and padded.shape[-1] >= min_size
    assert padded.shape[-2] - max(h, min_size) < 8 and padded.shape[-1] - max(w, min_size) < 8
    assert torch.equal(padded[..., :h, :w], x)
    assert torch.equal(padded[..., h:, :w], x[..., h - 1:h, :].expand_as(padded[..., h:, :w]))
    assert torch.equal(padded[..., :h, w:], x[..., :, w - 1:w].expand_as(padded[..., :h, w:]))


def test_tvl1_sign_and_size_on_moving_textures():
    frames = textured_clip(4, (W, H), MOVES)
    flow = fl.tvl1_pairs(frames)                        # pixels
    assert flow.shape == (3, H, W, 2) and flow.dtype == np.float32
    for t in range(3):
        xa = 10 + 3 * t                                 # inside A (away from its edges)
        a = flow[t, 15:25, xa + 3:xa + 17]
        assert abs(a[..., 0].mean() - 3.0) < 0.5 and abs(a[..., 1].mean()) < 0.3
        yb = 40 - 2 * t                                 # inside B
        b = flow[t, yb + 3:yb + 15, 67:79]
        assert abs(b[..., 1].mean() + 2.0) < 0.5 and abs(b[..., 0].mean()) < 0.3
        still = np.abs(flow[t][STATIC])
        assert still.mean() < 0.05 and np.percentile(still, 99) < 0.3
    # the scaled flow the I3D sees: the same, / 20
    scaled = fl.FlowComputer("tvl1")(frames[None])
    assert scaled.shape == (1, 3, H, W, 2)
    np.testing.assert_allclose(scaled[0].numpy(), flow / 20.0, atol=1e-6)


def test_tvl1_needs_two_frames_for_a_pair():
    frames = textured_clip(1, (W, H), MOVES)
    assert fl.tvl1_pairs(frames).shape == (0, H, W, 2)
    with pytest.raises(ValueError, match="uint8"):
        fl.tvl1_pairs(frames.astype(np.float32))


class _ConstantFlow(torch.nn.Module):
    """A stand-in RAFT: every update returns flow (dx, dy) = (30, -4) plus x/8 in channel 0,
    so cropping, channel order and clipping can be checked exactly."""

    def forward(self, a, b, num_flow_updates=12):
        n, _, h, w = a.shape
        assert h % 8 == 0 and w % 8 == 0
        x = torch.arange(w, dtype=torch.float32).expand(n, h, w)
        f = torch.stack([30.0 + x / 8, torch.full((n, h, w), -4.0)], 1)
        return [f] * num_flow_updates


def test_raft_wrapper_pads_crops_and_scales():
    clips = torch.randint(0, 256, (2, 4, 30, 45, 3), dtype=torch.uint8)
    raw = fl.raft_pairs(_ConstantFlow(), clips, num_flow_updates=3, max_pairs=4)
    assert raw.shape == (2, 3, 30, 45, 2)
    assert torch.equal(raw[..., 0], (30.0 + torch.arange(45.0) / 8).expand(2, 3, 30, 45))
    assert (raw[..., 1] == -4).all()
    scaled = fl.scale_flow(raw)
    assert (scaled[..., 0] == 1).all() and torch.allclose(scaled[..., 1], torch.tensor(-0.2))


def test_random_raft_shape_range_and_determinism():
    clips = torch.from_numpy(textured_clip(3, (W - 6, H - 4), MOVES[:1]))[None]   # 90 x 60
    with pytest.warns(UserWarning, match="random"):
        one = fl.FlowComputer("raft-small", weights="none", num_flow_updates=2)
        a = one(clips)
    assert a.shape == (1, 2, H - 4, W - 6, 2) and a.dtype == torch.float32
    assert a.abs().max() <= 1.0 and torch.isfinite(a).all()
    assert one.pairs == 2 and one.seconds > 0
    # a second instance (e.g. in another worker, after pickling) builds the same network
    other = pickle.loads(pickle.dumps(fl.FlowComputer("raft-small", weights="none",
                                                      num_flow_updates=2)))
    with pytest.warns(UserWarning, match="random"):
        assert torch.equal(other(clips), a)
    meta = other.meta()
    assert meta["method"] == "raft-small" and meta["bound"] == 20.0


def test_methods_and_where_they_run(tmp_path):
    assert fl.canonical_method("RAFT") == "raft-large"
    with pytest.raises(ValueError, match="farneback"):
        fl.canonical_method("farneback")
    assert fl.flow_in_workers("tvl1", "cuda") and fl.flow_in_workers("raft", "cpu")
    assert not fl.flow_in_workers("raft-small", "cuda:0")
    (tmp_path / "raft.pt").write_bytes(b"")
    torch.save({"bogus": torch.zeros(1)}, tmp_path / "raft.pt")
    with pytest.raises(fl.FlowError, match="raft.pt: not a torchvision raft-small state dict"):
        fl.load_raft("raft-small", tmp_path / "raft.pt")
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        fl.load_raft("raft-small", tmp_path / "nowhere.pt")
