"""I3D backbone: the piergiaj/pytorch-i3d parameter layout, strict loading, SAME padding,
output shapes, and person/clip pooling against a slow reference."""

import hashlib
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hgrnn.pipeline import i3d
from hgrnn.pipeline.i3d import (I3DWeightsError, InceptionI3d, clip_features, load_backbone,
                                person_features)



# --- the port's layout, written out from its architecture (independently of i3d.py) ---------
# Stem units: name -> (in, out, kernel)
STEM = [("Conv3d_1a_7x7", 3, 64, 7), ("Conv3d_2b_1x1", 64, 64, 1), ("Conv3d_2c_3x3", 64, 192, 3)]
# Inception modules: name, in_channels, b0, b1a, b1b, b2a, b2b, b3b (as in the I3D paper/port)
MIXED = [
    ("Mixed_3b", 192, 64, 96, 128, 16, 32, 32),
    ("Mixed_3c", 256, 128, 128, 192, 32, 96, 64),
    ("Mixed_4b", 480, 192, 96, 208, 16, 48, 64),
    ("Mixed_4c", 512, 160, 112, 224, 24, 64, 64),
    ("Mixed_4d", 512, 128, 128, 256, 24, 64, 64),
    ("Mixed_4e", 512, 112, 144, 288, 32, 64, 64),
    ("Mixed_4f", 528, 256, 160, 320, 32, 128, 128),
    ("Mixed_5b", 832, 256, 160, 320, 32, 128, 128),
    ("Mixed_5c", 832, 384, 192, 384, 48, 128, 128),
]


def port_table(num_classes=400, with_num_batches_tracked=True):
    """name -> shape of every tensor in piergiaj's InceptionI3d state dict."""
    table = {}

    def unit(prefix, cin, cout, k):
        table[f"{prefix}.conv3d.weight"] = (cout, cin, k, k, k)
        for p in ("weight", "bias", "running_mean", "running_var"):
            table[f"{prefix}.bn.{p}"] = (cout,)
        if with_num_batches_tracked:
            table[f"{prefix}.bn.num_batches_tracked"] = ()

    for name, cin, cout, k in STEM:
        unit(name, cin, cout, k)
    for name, cin, b0, b1a, b1b, b2a, b2b, b3b in MIXED:
        unit(f"{name}.b0", cin, b0, 1)
        unit(f"{name}.b1a", cin, b1a, 1)
        unit(f"{name}.b1b", b1a, b1b, 3)
        unit(f"{name}.b2a", cin, b2a, 1)
        unit(f"{name}.b2b", b2a, b2b, 3)
        unit(f"{name}.b3b", cin, b3b, 1)
    table["logits.conv3d.weight"] = (num_classes, 1024, 1, 1, 1)
    table["logits.conv3d.bias"] = (num_classes,)
    return table


def port_state_dict(seed=0, **kwargs):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in port_table(**kwargs).items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7, dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.05
    return state


def test_table_channels_chain():
    # the written-out table is self-consistent: each module's input is the previous output
    outs = [b0 + b1b + b2b + b3b for _, _, b0, _, b1b, _, b2b, b3b in MIXED]
    ins = [cin for _, cin, *_ in MIXED]
    assert ins[1:] == outs[:-1] and outs[-1] == 1024


def test_state_dict_has_exactly_the_port_names_and_shapes():
    model = InceptionI3d()
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == port_table()


def test_port_file_without_num_batches_tracked_loads_strictly(tmp_path):
    # the port was written for PyTorch 0.3, whose BatchNorm had no num_batches_tracked
    state = port_state_dict(with_num_batches_tracked=False)
    path = tmp_path / "rgb_imagenet.pt"
    torch.save(state, path, _use_new_zipfile_serialization=False)   # pre-1.6 file format
    backbone, projection, meta = load_backbone(str(path))
    assert projection is None
    assert meta["kind"] == "kinetics-i3d" and meta["feature_dim"] == 1024
    assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    loaded = backbone.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
    assert int(loaded["Mixed_4c.b1b.bn.num_batches_tracked"]) == 0
    assert not backbone.training


def test_port_file_with_num_batches_tracked_and_other_classes(tmp_path):
    state = port_state_dict(num_classes=157)   # the port's Charades models
    path = tmp_path / "rgb_charades.pt"
    torch.save({"module." + k: v for k, v in state.items()}, path)   # saved from DataParallel
    backbone, _, meta = load_backbone(path)
    assert meta["num_logits"] == 157
    assert int(backbone.state_dict()["Conv3d_1a_7x7.bn.num_batches_tracked"]) == 7


def test_missing_unexpected_and_misshaped_keys_are_named(tmp_path):
    state = port_state_dict()
    del state["Mixed_4c.b1b.bn.running_var"]
    state["Mixed_4c.b9.conv3d.weight"] = torch.zeros(3)
    state["Mixed_3b.b0.conv3d.weight"] = torch.zeros(64, 190, 1, 1, 1)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(I3DWeightsError) as info:
        load_backbone(path)
    text = str(info.value)
    assert str(path) in text
    assert "Mixed_4c.b1b.bn.running_var" in text
    assert "Mixed_4c.b9.conv3d.weight" in text
    assert "Mixed_3b.b0.conv3d.weight" in text and "(64, 190, 1, 1, 1)" in text


def test_flow_model_for_the_rgb_stream_and_garbage_are_refused(tmp_path):
    state = port_state_dict()
    state["Conv3d_1a_7x7.conv3d.weight"] = torch.zeros(64, 2, 7, 7, 7)
    torch.save(state, tmp_path / "flow.pt")
    with pytest.raises(I3DWeightsError, match="a flow model with 2 input channels; the RGB "
                                              "stream needs 3"):
        load_backbone(tmp_path / "flow.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(I3DWeightsError, match="junk.pt"):
        load_backbone(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        load_backbone(tmp_path / "nowhere.pt")


def test_flow_imagenet_layout_loads_strictly_for_the_flow_stream(tmp_path):
    # piergiaj's flow_imagenet.pt: the RGB layout with a 2-channel first convolution
    state = port_state_dict(seed=3, with_num_batches_tracked=False)
    state["Conv3d_1a_7x7.conv3d.weight"] = torch.randn(64, 2, 7, 7, 7) * 0.05
    path = tmp_path / "flow_imagenet.pt"
    torch.save(state, path)
    backbone, projection, meta = load_backbone(path, stream="flow")
    assert projection is None and meta["stream"] == "flow" and meta["kind"] == "kinetics-i3d"
    loaded = backbone.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
    fmap = backbone.extract_features(torch.zeros(1, 2, 8, 64, 64))
    assert fmap.shape == (1, 1024, 1, 2, 2)
    with pytest.raises(ValueError, match=r"I3D expects \(B, 2, T, H, W\)"):
        backbone.extract_features(torch.zeros(1, 3, 8, 64, 64))
    # the same strictness and messages as RGB
    del state["Mixed_5c.b0.bn.running_mean"]
    torch.save(state, tmp_path / "bad_flow.pt")
    with pytest.raises(I3DWeightsError, match="bad_flow.pt.*Mixed_5c.b0.bn.running_mean"):
        load_backbone(tmp_path / "bad_flow.pt", stream="flow")
    # an RGB file for the flow stream is named as such
    torch.save(port_state_dict(), tmp_path / "rgb_imagenet.pt")
    with pytest.raises(I3DWeightsError, match="an RGB model with 3 input channels; the flow "
                                              "stream needs 2"):
        load_backbone(tmp_path / "rgb_imagenet.pt", stream="flow")
    with pytest.warns(UserWarning, match="flow-backbone-weights"):
        backbone, _, meta = load_backbone("none", stream="flow")
    assert backbone.Conv3d_1a_7x7.conv3d.in_channels == 2 and meta["stream"] == "flow"
    with pytest.raises(ValueError, match="stream 'depth'"):
        load_backbone("none", stream="depth")


def test_random_init_warns_loudly():
    with pytest.warns(UserWarning, match="RANDOM"):
        backbone, projection, meta = load_backbone("none")
    assert meta["kind"] == "random" and meta["sha256"] is None and projection is None


@pytest.mark.parametrize("size,kernel,stride", [(8, 7, 2), (9, 7, 2), (64, 3, 2), (5, 3, 2),
                                                (1, 2, 2), (4, 3, 1), (7, 1, 1), (3, 3, 2)])
def test_same_padding_gives_ceil_output(size, kernel, stride):
    front, back = i3d.same_padding(size, kernel, stride)
    assert (size + front + back - kernel) // stride + 1 == math.ceil(size / stride)
    assert 0 <= back - front <= 1


def test_unit3d_same_conv_matches_symmetric_padding_for_stride_1():
    torch.manual_seed(0)
    unit = i3d.Unit3D(4, 5, kernel=(3, 3, 3), batch_norm=False, relu=False)
    x = torch.randn(2, 4, 5, 6, 7)
    ref = F.conv3d(x, unit.conv3d.weight, padding=1)
    assert torch.allclose(unit(x), ref, atol=1e-5)


def test_feature_map_shapes():
    torch.manual_seed(0)
    model = InceptionI3d().eval()
    with torch.no_grad():
        fmap = model.extract_features(torch.rand(1, 3, 8, 64, 64) * 2 - 1)
        assert fmap.shape == (1, 1024, 1, 2, 2)
        fmap = model.extract_features(torch.rand(2, 3, 9, 40, 70) * 2 - 1)
        assert fmap.shape == (2, 1024, 2, 2, 3)     # ceil(9/8), ceil(40/32), ceil(70/32)
        assert torch.isfinite(fmap).all() and (fmap >= 0).all()   # after ReLU
        assert model(torch.zeros(1, 3, 8, 64, 64)).shape == (1, 400)
    with pytest.raises(ValueError, match="expects"):
        model.extract_features(torch.zeros(1, 8, 3, 64, 64))


def test_normalize_frames_range_and_layout():
    frames = np.zeros((4, 6, 8, 3), np.uint8)
    frames[..., 0] = 255
    x = i3d.normalize_frames(frames)
    assert x.shape == (1, 3, 4, 6, 8)
    assert torch.all(x[0, 0] == 1) and torch.all(x[0, 1:] == -1)


# --- pooling against a slow reference ------------------------------------------------------

def _bilinear(img, y, x):
    """torchvision's RoIAlign sampling of one point of a (H, W) array."""
    h, w = img.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= h - 1:
        y0 = y1 = h - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= w - 1:
        x0 = x1 = w - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * img[y0, x0] + (1 - ly) * lx * img[y0, x1]
            + ly * (1 - lx) * img[y1, x0] + ly * lx * img[y1, x1])


def reference_person_feature(fmap, box, image_size, out=7, samples=2):
    """Slow: time mean, box in map cells = pixels / 32, aligned RoIAlign, max over bins."""
    spatial = fmap.mean(axis=1)                                  # (C, H', W')
    height, width = image_size
    x1, y1, x2, y2 = (box[0] * width / 32 - 0.5, box[1] * height / 32 - 0.5,
                      box[2] * width / 32 - 0.5, box[3] * height / 32 - 0.5)
    bin_w, bin_h = (x2 - x1) / out, (y2 - y1) / out
    feat = np.full(spatial.shape[0], -np.inf)
    for c in range(spatial.shape[0]):
        for py in range(out):
            for px in range(out):
                acc = 0.0
                for iy in range(samples):
                    for ix in range(samples):
                        y = y1 + py * bin_h + (iy + 0.5) * bin_h / samples
                        x = x1 + px * bin_w + (ix + 0.5) * bin_w / samples
                        acc += _bilinear(spatial[c], y, x)
                feat[c] = max(feat[c], acc / samples ** 2)
    return feat


def test_person_features_match_slow_reference():
    torch.manual_seed(0)
    # (B, C, T', H', W'); a 90 x 120 image gives a 3 x 4 map that overhangs the image (SAME
    # padding), so boxes scale by 120 / 32 = 3.75 map cells, not by the map width 4
    fmap = torch.rand(2, 3, 2, 3, 4)
    image_size = (90, 120)
    boxes = [torch.tensor([[0.1, 0.2, 0.5, 0.9], [0.0, 0.0, 1.0, 1.0]]),
             torch.tensor([[0.6, 0.3, 0.95, 0.7]])]
    got = person_features(fmap, boxes, image_size)
    assert got.shape == (3, 3)
    refs = [reference_person_feature(fmap[0].numpy(), b.numpy(), image_size) for b in boxes[0]]
    refs += [reference_person_feature(fmap[1].numpy(), boxes[1][0].numpy(), image_size)]
    np.testing.assert_allclose(got.numpy(), np.stack(refs), rtol=1e-5, atol=1e-6)
    # the (P, 5) form gives the same rows
    rois = torch.tensor([[0, *boxes[0][0]], [0, *boxes[0][1]], [1, *boxes[1][0]]])
    assert torch.allclose(person_features(fmap, rois, image_size), got)


def test_person_feature_sees_only_its_box():
    fmap = torch.zeros(1, 1, 2, 8, 10)                # image 256 x 320
    fmap[0, 0, :, 2, 7] = 1.0                         # content at pixels y 64..96, x 224..256
    boxes = [torch.tensor([[0.68, 0.22, 0.82, 0.40],   # around it
                           [0.05, 0.55, 0.30, 0.95]])]  # elsewhere
    feats = person_features(fmap, boxes, (256, 320))
    assert feats[0, 0] > 0.5 and feats[1, 0] == 0
    assert person_features(fmap, [torch.zeros(0, 4)], (256, 320)).shape == (0, 1)


def test_clip_features_average():
    fmap = torch.arange(2 * 3 * 2 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2, 2)
    assert torch.allclose(clip_features(fmap), fmap.reshape(2, 3, -1).mean(-1))


# --- the whole network against a functional reference written from the architecture ---------

def tf_same(size, k, s):
    """TensorFlow's SAME padding of one axis, from its documented formula."""
    total = max((math.ceil(size / s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def ref_pad(x, k, s, value=0.0):
    pads = [tf_same(x.shape[2 + d], k[d], s[d]) for d in range(3)]
    return F.pad(x, (*pads[2], *pads[1], *pads[0]), value=value)


def ref_unit(x, state, prefix, k):
    x = F.conv3d(ref_pad(x, (k, k, k), (1, 1, 1) if prefix != "Conv3d_1a_7x7" else (2, 2, 2)),
                 state[f"{prefix}.conv3d.weight"], stride=2 if prefix == "Conv3d_1a_7x7" else 1)
    mean, var = state[f"{prefix}.bn.running_mean"], state[f"{prefix}.bn.running_var"]
    w, b = state[f"{prefix}.bn.weight"], state[f"{prefix}.bn.bias"]
    shape = (1, -1, 1, 1, 1)
    x = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + 1e-3) * w.view(shape) + b.view(shape)
    return torch.relu(x)


def ref_pool(x, k, s):
    # -inf padding: the textbook max pool (the port pads with zeros; equal after a ReLU)
    return F.max_pool3d(ref_pad(x, k, s, value=-math.inf), k, s)


def reference_features(x, state):
    x = ref_unit(x, state, "Conv3d_1a_7x7", 7)
    x = ref_pool(x, (1, 3, 3), (1, 2, 2))
    x = ref_unit(x, state, "Conv3d_2b_1x1", 1)
    x = ref_unit(x, state, "Conv3d_2c_3x3", 3)
    x = ref_pool(x, (1, 3, 3), (1, 2, 2))
    for name, *_ in MIXED:
        if name == "Mixed_4b":
            x = ref_pool(x, (3, 3, 3), (2, 2, 2))
        if name == "Mixed_5b":
            x = ref_pool(x, (2, 2, 2), (2, 2, 2))
        x = torch.cat([
            ref_unit(x, state, f"{name}.b0", 1),
            ref_unit(ref_unit(x, state, f"{name}.b1a", 1), state, f"{name}.b1b", 3),
            ref_unit(ref_unit(x, state, f"{name}.b2a", 1), state, f"{name}.b2b", 3),
            ref_unit(ref_pool(x, (3, 3, 3), (1, 1, 1)), state, f"{name}.b3b", 1)], dim=1)
    return x


def test_network_matches_functional_reference():
    state = port_state_dict(seed=3)
    # weights scaled so that activations neither vanish nor explode over 20 layers
    for key, value in state.items():
        if key.endswith("conv3d.weight"):
            fan_in = value[0].numel()
            state[key] = torch.randn(value.shape, generator=torch.Generator().manual_seed(
                len(key))) * math.sqrt(2.0 / fan_in)
    model = InceptionI3d().eval()
    i3d.load_i3d_state_dict(model, state)
    x = torch.rand(1, 3, 9, 40, 56, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        got = model.extract_features(x)
        ref = reference_features(x, state)
    assert got.shape == ref.shape == (1, 1024, 2, 2, 2)
    assert ref.abs().mean() > 1e-3
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
