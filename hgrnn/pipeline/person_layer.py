"""Which I3D layer person features are pooled from (`--person-layer`), one code path for
`finetune-backbone` and `extract-features`.

    mixed_5c (default, the paper's reading: RoI pooling "of the same I3D feature map")
        fmap = Mixed_5c map (B, 1024, T/8, H/32, W/32), stride 32
        person = mean over time, RoIAlign 7x7, max over 7x7             (P, 1024)
    mixed_4f (the AVA baseline's choice: RoI pooling at Mixed_4f, then the last blocks)
        pmap = Mixed_4f map (B, 832, T/4, H/16, W/16), stride 16
        RoIAlign 14x14 of each box in every time slice of pmap           (P, 832, T/4, 14, 14)
        -> MaxPool3d_5a_2x2 -> Mixed_5b -> Mixed_5c (the backbone's own blocks and weights)
                                                                          (P, 1024, T/8, 7, 7)
        person = mean over time, max over 7x7                            (P, 1024)

At Mixed_5c the median person box of the shared AVA val ground truth is 4.2 x 5.8 cells and a
fifth of the boxes are under 2 cells wide (16:9 frames at short side 256,
`benchmarks/box_cells.py`); at Mixed_4f the same boxes are twice as many cells wide and
high, and the last two Inception blocks still run on every person's region. The clip
feature stays the mean of the full-frame Mixed_5c map in both cases.

Any other backbone (`--backbone`, `hgrnn.pipeline.backbones`) has only the first choice:
`mixed_5c` then names its last map (its own layer, stride and dim); mixed_4f is I3D's.

Both layers give 1024-d features, so a fine-tuned projection (1024 -> 256) fits either; what
a checkpoint was fine-tuned with is recorded in its config (``person_layer``) and
`extract-features` refuses a checkpoint of the other layer.
"""

from __future__ import annotations

import numpy as np
import torch

from hgrnn.pipeline.backbones import feature_stride
from hgrnn.pipeline.i3d import InceptionI3d, person_features

PERSON_LAYERS = ("mixed_5c", "mixed_4f")
DEFAULT_PERSON_LAYER = "mixed_5c"
#: spatial stride (pixels per map cell) of each layer's map
LAYER_STRIDE = {"mixed_5c": 32, "mixed_4f": 16}
#: the blocks that follow Mixed_4f, run on every person's region at mixed_4f
_AFTER_4F = ("MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c")
#: RoIAlign grid at Mixed_4f: 14 x 14 cells, 7 x 7 after MaxPool3d_5a (as Mixed_5c's 7 x 7)
_GRID_4F = 14


def check_layer(layer: str) -> str:
    if layer not in PERSON_LAYERS:
        raise ValueError(f"person layer must be one of {PERSON_LAYERS}, got {layer!r}")
    return layer


def layer_of(config) -> str:
    """The person layer recorded in a stage config dict (older configs: mixed_5c)."""
    return (config or {}).get("person_layer") or DEFAULT_PERSON_LAYER


def backbone_maps(backbone: InceptionI3d, x: torch.Tensor, layer: str, clip_map: bool = True):
    """Run the backbone once. x (B, 3, T, H, W) in [-1, 1] ->
    (fmap (B, 1024, T', H', W') Mixed_5c map or None, pmap: the map person features are
    pooled from (fmap itself at mixed_5c; the Mixed_4f map at mixed_4f)).
    clip_map=False at mixed_4f stops after Mixed_4f (fmap None; fine-tuning needs no clip
    feature)."""
    check_layer(layer)
    if layer == "mixed_5c":
        fmap = backbone.extract_features(x)
        return fmap, fmap
    expected = backbone.Conv3d_1a_7x7.conv3d.in_channels
    if x.dim() != 5 or x.shape[1] != expected:
        raise ValueError(f"I3D expects (B, {expected}, T, H, W) clips, got shape {tuple(x.shape)}")
    pmap = None
    for name, module in backbone.named_children():
        if name in ("dropout", "logits"):
            break
        x = module(x)
        if name == "Mixed_4f":
            pmap = x                                                  # (B, 832, T/4, H/16, W/16)
            if not clip_map:
                return None, pmap
    return x, pmap


def _roi_grid(spatial: torch.Tensor, rois: torch.Tensor, image_size, stride: int,
              output_size: int) -> torch.Tensor:
    """RoIAlign (aligned) of normalised boxes on a map of `stride` pixels per cell.
    spatial (N, C, h, w); rois (P, 5) [map index, x1, y1, x2, y2] normalised -> (P, C, o, o)."""
    from torchvision.ops import roi_align

    height, width = int(image_size[0]), int(image_size[1])
    scale = torch.tensor([1.0, width / stride, height / stride, width / stride, height / stride],
                         dtype=torch.float32, device=spatial.device)
    return roi_align(spatial.float(), rois.float() * scale, output_size, spatial_scale=1.0,
                     sampling_ratio=2, aligned=True)


def pooled_person_features(backbone: InceptionI3d, pmap: torch.Tensor, rois: torch.Tensor,
                           image_size, layer: str) -> torch.Tensor:
    """(P, 1024) person features from `pmap` (``backbone_maps``'s second output).
    rois (P, 5) [clip index, x1, y1, x2, y2] normalised xyxy; image_size (H, W) of the frames
    that went into the network."""
    check_layer(layer)
    rois = torch.as_tensor(rois, dtype=torch.float32, device=pmap.device).reshape(-1, 5)
    if layer == "mixed_5c":      # the backbone's last map (any backbone), at its own stride
        return person_features(pmap, rois, image_size, stride=feature_stride(backbone)[1])
    if rois.shape[0] == 0:
        return torch.zeros((0, 1024), dtype=torch.float32, device=pmap.device)
    B, C, T, h, w = pmap.shape
    P = rois.shape[0]
    # every box in every time slice: map index b * T + t
    slices = pmap.permute(0, 2, 1, 3, 4).reshape(B * T, C, h, w)                   # (B*T, C, h, w)
    t = torch.arange(T, device=pmap.device, dtype=torch.float32)
    index = (rois[:, :1] * T + t[None, :]).reshape(-1, 1)                           # (P*T, 1)
    boxes = rois[:, None, 1:].expand(P, T, 4).reshape(-1, 4)                        # (P*T, 4)
    grid = _roi_grid(slices, torch.cat([index, boxes], 1), image_size, LAYER_STRIDE[layer],
                     _GRID_4F)                                                      # (P*T, C, 14, 14)
    x = grid.view(P, T, C, _GRID_4F, _GRID_4F).permute(0, 2, 1, 3, 4)              # (P, C, T, 14, 14)
    for name in _AFTER_4F:
        x = getattr(backbone, name)(x)                                              # -> (P, 1024, T/2, 7, 7)
    return x.float().mean(dim=2).amax(dim=(2, 3))                                   # (P, 1024)


def box_cells(boxes, frame_height: int, frame_width: int, layer: str):
    """Feature-map cells a box spans at `layer`: boxes (N, 4) normalised xyxy of frames of
    frame_height x frame_width pixels (after the short-side resize) -> (widths (N,),
    heights (N,)) in cells."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    stride = LAYER_STRIDE[check_layer(layer)]
    return ((boxes[:, 2] - boxes[:, 0]) * frame_width / stride,
            (boxes[:, 3] - boxes[:, 1]) * frame_height / stride)
