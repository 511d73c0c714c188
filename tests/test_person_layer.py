"""Person features at Mixed_5c or Mixed_4f (`--person-layer`), on a random-init I3D,
checked against a slow per-box, per-time-slice reference."""

import numpy as np
import pytest
import torch
from torchvision.ops import roi_align

from hgrnn.pipeline import person_layer as PL
from hgrnn.pipeline.i3d import InceptionI3d, person_features


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return InceptionI3d().eval()


@pytest.fixture(scope="module")
def clips():
    return torch.rand(2, 3, 8, 48, 80, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.fixture(scope="module")
def maps(net, clips):
    with torch.no_grad():
        return {"5c": net.extract_features(clips), "4f": PL.backbone_maps(net, clips, "mixed_4f")}


ROIS = torch.tensor([[0, 0.1, 0.2, 0.4, 0.9], [1, 0.5, 0.0, 1.0, 1.0], [0, 0.6, 0.3, 0.7, 0.5],
                     [1, 0.0, 0.0, 1.0, 1.0]])


def slow_4f(net, pmap, rois, image_size):
    """One box, one time slice at a time: RoIAlign 14x14 (stride 16), then 5a/5b/5c."""
    H, W = image_size
    out = []
    for r in rois:
        b = int(r[0])
        box = r[1:] * torch.tensor([W / 16, H / 16, W / 16, H / 16])
        slices = [roi_align(pmap[b:b + 1, :, t], [box[None]], 14, 1.0, 2, True)[0]
                  for t in range(pmap.shape[2])]
        x = torch.stack(slices, dim=1)[None]                     # (1, 832, T, 14, 14)
        x = net.Mixed_5c(net.Mixed_5b(net.MaxPool3d_5a_2x2(x)))
        out.append(x.mean(dim=2).amax(dim=(2, 3))[0])
    return torch.stack(out)


@torch.no_grad()
def test_mixed_4f_matches_slow_reference(net, clips, maps):
    fmap, pmap = maps["4f"]
    assert pmap.shape == (2, 832, 2, 3, 5)                       # T/4, H/16, W/16
    torch.testing.assert_close(fmap, maps["5c"])                 # the same clip map
    got = PL.pooled_person_features(net, pmap, ROIS, clips.shape[-2:], "mixed_4f")
    assert got.shape == (4, 1024)
    torch.testing.assert_close(got, slow_4f(net, pmap, ROIS, clips.shape[-2:]),
                               rtol=1e-4, atol=1e-5)
    # fine-tuning stops after Mixed_4f
    none, pmap2 = PL.backbone_maps(net, clips, "mixed_4f", clip_map=False)
    assert none is None and torch.equal(pmap2, pmap)
    assert PL.pooled_person_features(net, pmap, torch.zeros(0, 5), clips.shape[-2:],
                                     "mixed_4f").shape == (0, 1024)


@torch.no_grad()
def test_mixed_5c_is_the_original_person_features(net, clips, maps):
    fmap = maps["5c"]
    torch.testing.assert_close(PL.pooled_person_features(net, fmap, ROIS, clips.shape[-2:],
                                                         "mixed_5c"),
                               person_features(fmap, ROIS, clips.shape[-2:]))
    four = PL.pooled_person_features(net, maps["4f"][1], ROIS, clips.shape[-2:], "mixed_4f")
    assert not torch.allclose(four, person_features(fmap, ROIS, clips.shape[-2:]))


def test_box_cells_and_bad_layer():
    w, h = PL.box_cells(np.array([[0.0, 0.0, 0.5, 0.25]]), 256, 455, "mixed_5c")
    assert w[0] == pytest.approx(455 / 2 / 32) and h[0] == pytest.approx(2.0)
    w4, h4 = PL.box_cells(np.array([[0.0, 0.0, 0.5, 0.25]]), 256, 455, "mixed_4f")
    assert w4[0] == pytest.approx(2 * w[0]) and h4[0] == pytest.approx(4.0)
    with pytest.raises(ValueError, match="person layer"):
        PL.check_layer("mixed_3c")
    assert PL.layer_of({}) == "mixed_5c" and PL.layer_of({"person_layer": "mixed_4f"}) == "mixed_4f"
