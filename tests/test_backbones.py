"""`hgrnn.pipeline.backbones`: torchvision's video models as extraction backbones (random
weights, small inputs), their input settings against torchvision's weights metadata, box
pooling at each backbone's stride, weights files, and `extract-features --backbone` end to
end on a rendered example (store accepted by `inspect --check`, trained on by `train-head`)."""

import math
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hgrnn.cli import main
from hgrnn.pipeline.backbones import (BACKBONES, BackboneError, frames_to_input,
                                      identify_state_dict, input_settings, load_backbone)
from hgrnn.pipeline.person_layer import pooled_person_features

# (T, H, W) per backbone: small, and what each needs (MViT: a multiple of its strides;
# S3D: enough frames for its temporal kernels)
SMALL = {"i3d": (8, 64, 96), "s3d": (16, 64, 96), "r3d_18": (8, 32, 48),
         "mc3_18": (4, 32, 48), "r2plus1d_18": (8, 32, 48), "mvit_v1_b": (4, 64, 64),
         "mvit_v2_s": (4, 64, 64), "swin3d_t": (4, 64, 96), "swin3d_s": (4, 64, 96),
         "swin3d_b": (4, 64, 96)}


@pytest.mark.filterwarnings("ignore:.*RANDOM initialisation")
@pytest.mark.parametrize("name", list(BACKBONES))
def test_map_shape_dim_and_stride_per_backbone(name):
    t, h, w = SMALL[name]
    backbone, projection, meta = load_backbone(name, "none", input_size=(t, h, w))
    assert projection is None and meta["name"] == name and meta["kind"] == "random"
    frames = torch.randint(0, 256, (2, t, h, w, 3), dtype=torch.uint8)
    with torch.no_grad():
        fmap = backbone.extract_features(frames_to_input(frames, backbone))
    st, sh, sw = BACKBONES[name]["stride"]
    assert tuple(fmap.shape) == (2, BACKBONES[name]["dim"], math.ceil(t / st),
                                 math.ceil(h / sh), math.ceil(w / sw))
    assert torch.isfinite(fmap).all()


def test_random_weights_are_seeded():
    a, _, _ = load_backbone("r3d_18", "none", seed=3)
    b, _, _ = load_backbone("r3d_18", "none", seed=3)
    c, _, _ = load_backbone("r3d_18", "none", seed=4)
    wa, wb, wc = (m.net.stem[0].weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_input_settings_follow_torchvision_weights():
    """The table's clip settings and normalisation are the weights' own: mean/std and
    resize of `weights.transforms()`, MViT's fixed size of `weights.meta`, clip length and
    frame rate of the weights' docs (frames every 30 / frame_rate at AVA's 30 fps)."""
    import torchvision.models.video as video

    for name, spec in BACKBONES.items():
        if name == "i3d":
            assert input_settings(name) | {} == {"clip_frames": 32, "frame_stride": 1,
                                                 "short_side": 256, "mean": None, "std": None,
                                                 "fixed_size": None}
            continue
        weights = getattr(video, spec["weights"]).DEFAULT
        tf, meta = weights.transforms(), weights.meta
        assert spec["mean"] == pytest.approx(tuple(tf.mean)), name
        assert spec["std"] == pytest.approx(tuple(tf.std)), name
        docs = dict(re.findall(r"`(\w+)=([\d.]+)`", meta["_docs"]))
        assert spec["frame_stride"] == round(30 / float(docs["frame_rate"])), name
        if name == "s3d":            # evaluated on 128-frame clips: 64 here (module docs)
            assert int(docs["clip_len"]) == 128 and spec["clip_frames"] == 64
        else:
            assert spec["clip_frames"] == int(docs["clip_len"]), name
        if spec["fixed_size"]:
            assert spec["fixed_size"] == tuple(meta["min_size"]) == tuple(tf.crop_size)
            assert spec["clip_frames"] == meta["min_temporal_size"]
            assert spec["short_side"] == spec["fixed_size"][0]
        else:
            assert spec["short_side"] == min(tf.resize_size), name


def test_frames_to_input_normalises_and_resizes_like_the_weights():
    frames = torch.randint(0, 256, (1, 2, 8, 12, 3), dtype=torch.uint8)
    x = frames_to_input(frames, "r3d_18")
    mean, std = BACKBONES["r3d_18"]["mean"], BACKBONES["r3d_18"]["std"]
    want = (frames.permute(0, 4, 1, 2, 3).float() / 255
            - torch.tensor(mean).view(1, 3, 1, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1, 1)
    assert torch.allclose(x, want, atol=1e-6)
    assert tuple(frames_to_input(frames, "mvit_v2_s").shape) == (1, 3, 2, 224, 224)
    i3d = frames_to_input(frames, "i3d")
    assert torch.allclose(i3d, frames.permute(0, 4, 1, 2, 3).float() / 127.5 - 1)


class _Stub:
    """A backbone as `pooled_person_features` sees it: only its stride."""

    def __init__(self, stride):
        self.feature_stride = stride


@pytest.mark.parametrize("name", ["r3d_18", "swin3d_t", "i3d"])
def test_a_box_pools_the_cells_under_it_at_the_backbone_stride(name):
    """A map that is 0 except one cell: a box over that cell's pixels (at the backbone's
    stride) picks it up, a box elsewhere does not; averaged over time."""
    stride = BACKBONES[name]["stride"]
    s = stride[1]
    cells_h, cells_w = 4, 6
    fmap = torch.zeros(1, 3, 2, cells_h, cells_w)
    fmap[0, 0, :, 2, 4] = 1.0                  # cell (row 2, col 4), every time slice
    fmap[0, 1, 0, 0, 0] = 2.0                  # cell (0, 0), first time slice only
    image = (cells_h * s, cells_w * s)
    H, W = image

    def box(row, col):                         # the cell's pixels, normalised xyxy
        return [col * s / W, row * s / H, (col + 1) * s / W, (row + 1) * s / H]

    rois = torch.tensor([[0, *box(2, 4)], [0, *box(0, 1)], [0, *box(0, 0)]])
    feats = pooled_person_features(_Stub(stride), fmap, rois, image, "mixed_5c")
    # RoIAlign samples bilinearly inside the box: near 1 on the cell (its edges blend with
    # the neighbours), 0 two cells away
    assert 0.8 < feats[0, 0] <= 1.0                        # on the cell
    assert feats[1, 0] == pytest.approx(0.0, abs=1e-6)     # two cells away
    assert 0.8 < feats[2, 1] <= 1.0                        # 2.0 in one of 2 time slices
    # the same box with another stride's scaling misses the cell
    other = 32 if s == 16 else 16
    wrong = pooled_person_features(_Stub((1, other, other)), fmap, rois[:1], image, "mixed_5c")
    assert wrong[0, 0] < 0.3


def test_weights_files_load_and_other_backbones_are_refused(tmp_path):
    net = load_backbone("r3d_18", "none", seed=1)[0].net
    path = tmp_path / "r3d.pt"
    torch.save(net.state_dict(), path)
    loaded, _, meta = load_backbone("r3d_18", path)
    assert meta["kind"] == "state-dict" and meta["sha256"] and meta["name"] == "r3d_18"
    assert torch.equal(loaded.net.stem[0].weight, net.stem[0].weight)
    assert identify_state_dict(net.state_dict()) == "r3d_18"
    for other in ("mc3_18", "s3d", "i3d"):
        with pytest.raises(BackboneError, match=r"r3d\.pt: a state dict of r3d_18, not of "
                                                + other):
            load_backbone(other, path)
    i3d = tmp_path / "i3d.pt"
    torch.save(load_backbone("i3d", "none")[0].state_dict(), i3d)
    with pytest.raises(BackboneError, match="a state dict of i3d, not of swin3d_t"):
        load_backbone("swin3d_t", i3d)
    with pytest.raises(BackboneError, match="torchvision ships no I3D weights"):
        load_backbone("i3d", "default")
    with pytest.raises(BackboneError, match="expected one of"):
        load_backbone("resnet50", "none")


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    root = tmp_path_factory.mktemp("ex")
    result = CliRunner().invoke(main, ["render-example", str(root), "--videos", "2",
                                       "--seconds", "3"])
    assert result.exit_code == 0, result.output
    return root


def _extract(example, out, *extra):
    return CliRunner().invoke(main, [
        "extract-features", "--out", str(out), "--videos", str(example / "videos"),
        "--annotations", str(example / "annotations.csv"),
        "--label-map", str(example / "label_map.txt"),
        "--detections", str(example / "persons.csv"), "--clip-frames", "8",
        "--short-side", "64", "--workers", "0", "--quiet", *extra])


@pytest.mark.filterwarnings("ignore:.*RANDOM initialisation")
def test_extract_inspect_and_train_head_with_another_backbone(example, tmp_path):
    import h5py

    from hgrnn.data.store import read_info

    out = tmp_path / "r3d.h5"
    result = _extract(example, out, "--backbone", "r3d_18", "--backbone-weights", "none")
    assert result.exit_code == 0, result.output
    with h5py.File(out, "r") as f:
        info = read_info(f, out)
        config = info.configs["extract"]
        assert info.feature_dim == 512
    assert config["backbone_name"] == "r3d_18" and config["feature_stride"] == [8, 16, 16]
    assert config["clip_frames"] == 8 and config["frame_stride"] == 2      # the backbone's
    assert config["input_mean"] == list(BACKBONES["r3d_18"]["mean"])
    check = CliRunner().invoke(main, ["inspect", str(out), "--check"])
    assert check.exit_code == 0, check.output
    assert "r3d_18" in check.output
    # resuming with another backbone is refused, naming both
    again = _extract(example, out, "--backbone", "mc3_18", "--backbone-weights", "none")
    assert again.exit_code == 1
    assert "backbone_name 'r3d_18' -> 'mc3_18'" in again.output
    train = CliRunner().invoke(main, ["train-head", "--store", str(out), "--out",
                                      str(tmp_path / "run"), "--steps", "3",
                                      "--scene-hidden", "8", "--graph-hidden", "16", "-q"])
    assert train.exit_code == 0, train.output
    assert (tmp_path / "run").is_dir()


def test_i3d_options_and_store_config_are_unchanged():
    """The default backbone is I3D with its clip settings, and an I3D store's config has no
    new keys (old and new I3D stores still merge and resume)."""
    from hgrnn.pipeline.extract import ExtractConfig, stage_config

    cfg = ExtractConfig(out="x.h5", videos=".", backbone_weights="none").resolved()
    assert (cfg.backbone, cfg.clip_frames, cfg.frame_stride, cfg.short_side) == \
        ("i3d", 32, 1, 256)
    meta = {"kind": "random", "path": None, "sha256": None, "feature_dim": 1024, "seed": 0}
    config = stage_config(cfg, meta, None, 1024, False)
    assert not {k for k in config if k.startswith(("backbone_", "input_m", "input_s"))
                and k != "backbone_weights"}
    assert config["clip_pool"] == "mean over T', H', W' of I3D Mixed_5c"
    assert config["input_normalisation"] == "rgb/127.5 - 1 ([-1, 1])"
    assert np.isclose(config["clip_frames"], 32)


def test_predict_refuses_a_head_of_another_backbone_naming_both():
    from hgrnn.apps.predict import PredictError, check_compatible

    ckpt = {"feature_dim": 512, "path": "run/last.pt", "streams": None}
    trained = {"feature_dim": 512, "backbone_name": "r3d_18",
               "backbone": {"kind": "random", "path": None, "sha256": None}}
    ours = {"feature_dim": 1024, "backbone": {"kind": "random", "path": None, "sha256": None}}
    with pytest.raises(PredictError, match=r"backbone: the head was trained on r3d_18 features, "
                                           r"this extraction uses i3d \(pass --backbone r3d_18\)"):
        check_compatible(ckpt, trained, ours)
    check_compatible(ckpt, trained, {**ours, "feature_dim": 512, "backbone_name": "r3d_18"})


@pytest.mark.filterwarnings("ignore:.*RANDOM initialisation")
def test_finetune_another_backbone_then_extract_its_projected_features(example, tmp_path):
    """finetune-backbone --backbone r3d_18 (random start, 2 steps) writes a checkpoint that
    extract-features --backbone r3d_18 loads with its 512 -> 32 projection; another backbone
    is refused naming both."""
    from hgrnn.data.store import open_h5, read_info

    run = tmp_path / "ft"
    result = CliRunner().invoke(main, [
        "finetune-backbone", "--annotations", str(example / "annotations.csv"),
        "--videos", str(example / "videos"), "--label-map", str(example / "label_map.txt"),
        "--backbone", "r3d_18", "--backbone-weights", "none", "--clip-frames", "8",
        "--short-side", "48", "--crop-size", "48", "--batch", "2", "--steps", "2",
        "--projection-dim", "32", "--workers", "0", "--device", "cpu", "--quiet",
        "--out", str(run)])
    assert result.exit_code == 0, result.output
    checkpoint = run / "backbone.pt"
    out = tmp_path / "ft.h5"
    result = _extract(example, out, "--backbone", "r3d_18", "--backbone-weights", str(checkpoint))
    assert result.exit_code == 0, result.output
    with open_h5(out) as f:
        info = read_info(f, out)
    assert info.feature_dim == 32 and info.configs["extract"]["backbone"]["kind"] == "finetune"
    other = _extract(example, tmp_path / "x.h5", "--backbone", "mc3_18", "--backbone-weights",
                     str(checkpoint))
    assert other.exit_code == 1
    assert "a finetune-backbone checkpoint of r3d_18, not of mc3_18" in other.output


@pytest.mark.filterwarnings("ignore:.*RANDOM initialisation")
@pytest.mark.parametrize("name, frames", [("mvit_v2_s", "4"), ("swin3d_t", "4")])
def test_transformers_extract_a_valid_store(example, tmp_path, name, frames):
    """MViT (frames squeezed to its square, tokens back to a map) and Swin3D end to end."""
    from hgrnn.data.store import open_h5, read_info

    out = tmp_path / f"{name}.h5"
    result = _extract(example, out, "--backbone", name, "--backbone-weights", "none",
                      "--clip-frames", frames)
    assert result.exit_code == 0, result.output
    with open_h5(out) as f:
        info = read_info(f, out)
    assert info.feature_dim == 768 and info.configs["extract"]["backbone_name"] == name
    size = info.configs["extract"]["input_size"]
    assert size == ([4, 64, 64] if name == "mvit_v2_s" else None)
    check = CliRunner().invoke(main, ["inspect", str(out), "--check"])
    assert check.exit_code == 0, check.output


def test_default_weights_are_torchvisions_enum(monkeypatch):
    """--backbone-weights default asks torchvision for its weights enum (the download is
    replaced by a local state dict here: no network) and records the enum and its URL."""
    from torchvision.models._api import WeightsEnum

    net = load_backbone("r3d_18", "none", seed=5)[0].net
    asked = []

    def fake(self, *args, **kwargs):
        asked.append(self)
        return net.state_dict()
    monkeypatch.setattr(WeightsEnum, "get_state_dict", fake)
    backbone, projection, meta = load_backbone("r3d_18", "default")
    assert [str(w) for w in asked] == ["R3D_18_Weights.KINETICS400_V1"]
    assert meta["kind"] == "torchvision" and meta["weights"] == "R3D_18_Weights.KINETICS400_V1"
    assert meta["url"].startswith("https://")
    assert torch.equal(backbone.net.stem[0].weight, net.stem[0].weight)
