"""The video backbones of the offline stages (`--backbone NAME`): the paper's I3D
(`hgrnn.pipeline.i3d`) and torchvision's video classification models, each reduced to the
last spatio-temporal feature map before its classifier.

    name          layer (the map)                        stride (T, H, W)   dim
    i3d           Mixed_5c                               (8, 32, 32)       1024
    s3d           features (its Mixed_5c)                (8, 32, 32)       1024
    r3d_18        layer4                                 (8, 16, 16)        512
    mc3_18        layer4                                 (1, 16, 16)        512
    r2plus1d_18   layer4                                 (8, 16, 16)        512
    mvit_v1_b     norm (tokens -> map, class token off)  (2, 32, 32)        768
    mvit_v2_s     norm (tokens -> map, class token off)  (2, 32, 32)        768
    swin3d_t/s    norm (channels-last map)               (2, 32, 32)        768
    swin3d_b      norm (channels-last map)               (2, 32, 32)       1024

Input settings (`BACKBONES[name]`) come from torchvision's weights metadata (the test
`tests/test_backbones.py::test_input_settings_follow_torchvision_weights` compares them):
mean/std are `weights.transforms().mean/std`; the short side is the shorter
`resize_size` of the transforms (the scale the network saw before its centre crop: the
whole frame is used, no crop, so that every person box is inside the clip); the clip length
and frame rate are the `clip_len` and `frame_rate` of `weights.meta["_docs"]` (frames are
taken every 30 / frame_rate frames: AVA's videos are 30 fps), except s3d, whose weights were
evaluated on 128-frame clips (8.5 s): 64 frames (4.3 s) here. MViT's positional
embeddings fix its input size (`weights.meta["min_size"]`, `min_temporal_size`): the frames
are resized to 224 x 224 (the whole frame, aspect not kept; normalised boxes stay where
they are). I3D has no torchvision weights (piergiaj's `rgb_imagenet.pt`, see `i3d.py`).

Weights (`load_backbone`): "default" (torchvision's weights enum, downloaded once into
torch's cache, as torchvision does), a local file (a state dict of the torchvision model,
or a `finetune-backbone` checkpoint of the same backbone), or "none" (random, drawn from
`torch.manual_seed(seed)`: tests). A state dict of another backbone is refused in one line
naming both.

Light on purpose: the table and `input_settings` need no torch (the CLI reads them);
torch and torchvision are imported inside the functions that build networks.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from hgrnn.torchfile import TorchFileError, load

#: name -> what the extraction needs to know of it. layer: the map used; stride: (T, H, W)
#: input cells per map cell; dim: channels of the map; clip_frames / frame_stride /
#: short_side: the clip (frames per clip, taken every frame_stride frames, short side in
#: pixels); mean / std: per-channel RGB normalisation of frames in [0, 1] (None: I3D's
#: [-1, 1]); fixed_size: (H, W) every frame is resized to (None: any size, aspect kept);
#: weights: torchvision's weights enum (None: I3D, piergiaj's files); classifier: key prefix
#: of the classifier in the state dict (not used, not required in a weights file).
BACKBONES = {
    "i3d": dict(layer="Mixed_5c", stride=(8, 32, 32), dim=1024, clip_frames=32,
                frame_stride=1, short_side=256, mean=None, std=None, fixed_size=None,
                weights=None, classifier="logits."),
    "s3d": dict(layer="features (Mixed_5c)", stride=(8, 32, 32), dim=1024, clip_frames=64,
                frame_stride=2, short_side=256, mean=(0.43216, 0.394666, 0.37645),
                std=(0.22803, 0.22145, 0.216989), fixed_size=None,
                weights="S3D_Weights", classifier="classifier."),
    "r3d_18": dict(layer="layer4", stride=(8, 16, 16), dim=512, clip_frames=16,
                   frame_stride=2, short_side=128, mean=(0.43216, 0.394666, 0.37645),
                   std=(0.22803, 0.22145, 0.216989), fixed_size=None,
                   weights="R3D_18_Weights", classifier="fc."),
    "mc3_18": dict(layer="layer4", stride=(1, 16, 16), dim=512, clip_frames=16,
                   frame_stride=2, short_side=128, mean=(0.43216, 0.394666, 0.37645),
                   std=(0.22803, 0.22145, 0.216989), fixed_size=None,
                   weights="MC3_18_Weights", classifier="fc."),
    "r2plus1d_18": dict(layer="layer4", stride=(8, 16, 16), dim=512, clip_frames=16,
                        frame_stride=2, short_side=128, mean=(0.43216, 0.394666, 0.37645),
                        std=(0.22803, 0.22145, 0.216989), fixed_size=None,
                        weights="R2Plus1D_18_Weights", classifier="fc."),
    "mvit_v1_b": dict(layer="norm (tokens as a T x H x W map, class token dropped)",
                      stride=(2, 32, 32), dim=768, clip_frames=16, frame_stride=4,
                      short_side=224, mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225),
                      fixed_size=(224, 224), weights="MViT_V1_B_Weights", classifier="head."),
    "mvit_v2_s": dict(layer="norm (tokens as a T x H x W map, class token dropped)",
                      stride=(2, 32, 32), dim=768, clip_frames=16, frame_stride=4,
                      short_side=224, mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225),
                      fixed_size=(224, 224), weights="MViT_V2_S_Weights", classifier="head."),
    "swin3d_t": dict(layer="norm (channels-last map)", stride=(2, 32, 32), dim=768,
                     clip_frames=32, frame_stride=2, short_side=256,
                     mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), fixed_size=None,
                     weights="Swin3D_T_Weights", classifier="head."),
    "swin3d_s": dict(layer="norm (channels-last map)", stride=(2, 32, 32), dim=768,
                     clip_frames=32, frame_stride=2, short_side=256,
                     mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), fixed_size=None,
                     weights="Swin3D_S_Weights", classifier="head."),
    "swin3d_b": dict(layer="norm (channels-last map)", stride=(2, 32, 32), dim=1024,
                     clip_frames=32, frame_stride=2, short_side=256,
                     mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), fixed_size=None,
                     weights="Swin3D_B_Weights", classifier="head."),
}
DEFAULT_BACKBONE = "i3d"
RANDOM_SEED = 0


class BackboneError(ValueError):
    """A backbone or weights file that does not fit; one line naming the file / backbone."""


def check_name(name: str) -> str:
    if name not in BACKBONES:
        raise BackboneError(f"--backbone {name!r}: expected one of {', '.join(BACKBONES)}")
    return name


def input_settings(name: str) -> dict:
    """The clip settings of backbone `name`: {clip_frames, frame_stride, short_side, mean,
    std, fixed_size} (module docstring)."""
    spec = BACKBONES[check_name(name)]
    return {k: spec[k] for k in ("clip_frames", "frame_stride", "short_side", "mean", "std",
                                 "fixed_size")}


def describe_input(name: str) -> str:
    """The input normalisation of `name` as the store config says it."""
    spec = BACKBONES[check_name(name)]
    if spec["mean"] is None:
        return "rgb/127.5 - 1 ([-1, 1])"
    text = f"(rgb/255 - mean {list(spec['mean'])}) / std {list(spec['std'])}"
    if spec["fixed_size"]:
        text += f", frames resized to {spec['fixed_size'][0]}x{spec['fixed_size'][1]}"
    return text


def name_of(meta_or_config) -> str:
    """The backbone a `load_backbone` meta, a stage config or a finetune config names
    (absent: i3d, what every earlier store and checkpoint used)."""
    value = (meta_or_config or {}).get("backbone_name") or (meta_or_config or {}).get("name")
    if value is None and isinstance((meta_or_config or {}).get("backbone"), str):
        value = meta_or_config["backbone"]
    return value or DEFAULT_BACKBONE


# ----------------------------------------------------------------------------- networks

def _import_torch():
    import torch
    import torch.nn as nn
    return torch, nn


def _constructor(name: str):
    import torchvision.models.video as video
    return getattr(video, name)


def _build(name: str, input_size=None, weights=None):
    """torchvision's `name` model; input_size (T, H, W) sizes MViT's positional embeddings
    (random weights only: torchvision's builder fixes 16 x 224 x 224, which its weights need)."""
    ctor = _constructor(name)
    if name.startswith("mvit") and input_size is not None and weights is None \
            and tuple(input_size) != (16, 224, 224):
        import torchvision.models.video.mvit as mvit

        built = mvit._mvit       # the builders pass spatial_size; resize it on the way through

        def sized(*args, **kwargs):
            kwargs["temporal_size"], kwargs["spatial_size"] = input_size[0], tuple(input_size[1:])
            return built(*args, **kwargs)
        mvit._mvit = sized
        try:
            return ctor()
        finally:
            mvit._mvit = built
    return ctor(weights=weights)


def _make_wrapper():
    torch, nn = _import_torch()

    class VideoBackbone(nn.Module):
        """A torchvision video model reduced to its last spatio-temporal map.

        extract_features(x): (B, 3, T, H, W) normalised (`frames_to_input`) ->
        (B, dim, T', H', W'). Attributes: name, feature_dim, feature_stride (T, H, W),
        input_size (T, H, W) the network is fixed to, or None."""

        def __init__(self, name: str, net, input_size=None):
            super().__init__()
            self.name = name
            self.net = net
            self.feature_dim = BACKBONES[name]["dim"]
            self.feature_stride = tuple(BACKBONES[name]["stride"])
            self.input_size = tuple(input_size) if input_size is not None else None

        def extract_features(self, x: torch.Tensor) -> torch.Tensor:
            if x.dim() != 5 or x.shape[1] != 3:
                raise ValueError(f"{self.name} expects (B, 3, T, H, W) clips, got shape "
                                 f"{tuple(x.shape)}")
            net, name = self.net, self.name
            if name == "s3d":
                return net.features(x)                                   # (B, 1024, T', H', W')
            if name in ("r3d_18", "mc3_18", "r2plus1d_18"):
                x = net.stem(x)
                return net.layer4(net.layer3(net.layer2(net.layer1(x))))  # (B, 512, T', H', W')
            if name.startswith("swin3d"):
                x = net.norm(net.features(net.pos_drop(net.patch_embed(x))))  # (B, T', H', W', C)
                return x.permute(0, 4, 1, 2, 3)
            # MViT: the patch grid, then blocks that pool it; tokens back to a map
            if self.input_size is not None and tuple(x.shape[2:]) != self.input_size:
                raise ValueError(f"{name} takes {self.input_size[0]} x {self.input_size[1]} x "
                                 f"{self.input_size[2]} clips (its positional embeddings), got "
                                 f"{tuple(x.shape[2:])}")
            x = net.conv_proj(x).flatten(2).transpose(1, 2)             # (B, T*H*W, C)
            x = net.pos_encoding(x)                                     # class token first
            thw = (net.pos_encoding.temporal_size,) + tuple(net.pos_encoding.spatial_size)
            for block in net.blocks:
                x, thw = block(x, thw)
            x = net.norm(x)[:, 1:]                                      # (B, T'H'W', C)
            b, c = x.shape[0], x.shape[2]
            return x.transpose(1, 2).reshape(b, c, *thw)                # (B, C, T', H', W')

        def forward(self, x):
            return self.extract_features(x)

    return VideoBackbone


_WRAPPER = None


def _wrapper_class():
    global _WRAPPER
    if _WRAPPER is None:
        _WRAPPER = _make_wrapper()
    return _WRAPPER


def is_video_backbone(module) -> bool:
    """True for a torchvision backbone made here (not the I3D)."""
    return _WRAPPER is not None and isinstance(module, _WRAPPER)


def feature_stride(backbone) -> tuple:
    """(T, H, W) stride of a backbone's map (the I3D: `i3d.FEATURE_STRIDE`)."""
    from hgrnn.pipeline.i3d import FEATURE_STRIDE

    return tuple(getattr(backbone, "feature_stride", FEATURE_STRIDE))


def classifier_prefix(backbone) -> str:
    """Parameter-name prefix of a backbone module's (unused) Kinetics classifier."""
    if is_video_backbone(backbone):
        return "net." + BACKBONES[backbone.name]["classifier"]
    return BACKBONES[DEFAULT_BACKBONE]["classifier"]


def feature_dim(backbone) -> int:
    from hgrnn.pipeline.i3d import FEATURE_DIM

    return int(getattr(backbone, "feature_dim", FEATURE_DIM))


def frames_to_input(frames, backbone_or_name):
    """uint8 RGB clips (B, T, H, W, 3) (tensor or array) -> the network input (B, 3, T, H, W)
    float32 of the backbone (a module or a name): I3D [-1, 1]; the others (x/255 - mean) /
    std, and MViT's frames resized to its fixed size (bilinear, the whole frame)."""
    torch, _ = _import_torch()
    from hgrnn.pipeline.i3d import normalize_frames

    name = backbone_or_name if isinstance(backbone_or_name, str) else \
        getattr(backbone_or_name, "name", DEFAULT_BACKBONE)
    spec = BACKBONES[check_name(name)]
    if spec["mean"] is None:
        return normalize_frames(frames)
    x = torch.as_tensor(frames)
    if x.dim() == 4:
        x = x.unsqueeze(0)
    if x.dim() != 5 or x.shape[-1] != 3:
        raise ValueError(f"expected (B, T, H, W, 3) RGB frames, got {tuple(x.shape)}")
    x = x.permute(0, 4, 1, 2, 3).float().div_(255.0)                 # (B, 3, T, H, W)
    mean = torch.tensor(spec["mean"], dtype=x.dtype, device=x.device).view(1, 3, 1, 1, 1)
    std = torch.tensor(spec["std"], dtype=x.dtype, device=x.device).view(1, 3, 1, 1, 1)
    x = (x - mean) / std
    size = getattr(backbone_or_name, "input_size", None)
    size = tuple(size[1:]) if size is not None else spec["fixed_size"]
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        import torch.nn.functional as F

        b, c, t, h, w = x.shape
        x = F.interpolate(x.transpose(1, 2).reshape(b * t, c, h, w), size=tuple(size),
                          mode="bilinear", align_corners=False)
        x = x.reshape(b, t, c, *size).transpose(1, 2)                  # (B, 3, T, S, S)
    return x.contiguous()


def _signature(name: str) -> dict:
    """key -> shape of `name`'s state dict (built on the meta device: no memory, no time),
    without the classifier."""
    torch, _ = _import_torch()
    with torch.device("meta"):
        net = _build(name)
    skip = BACKBONES[name]["classifier"]
    return {k: tuple(v.shape) for k, v in net.state_dict().items() if not k.startswith(skip)}


def identify_state_dict(state: dict, first: str | None = None) -> str | None:
    """The backbone whose parameter names (and shapes) a state dict has, or None; `first`
    is tried first (the one asked for: usually the answer)."""
    keys = set(_strip_module(state))
    if "Mixed_5c.b0.conv3d.weight" in keys:
        return "i3d"
    names = [n for n in BACKBONES if n != "i3d"]
    if first in names:
        names.remove(first)
        names.insert(0, first)
    named_only = None
    for name in names:
        sig = _signature(name)
        if {k for k in keys if not k.startswith(BACKBONES[name]["classifier"])} != set(sig):
            continue
        state = _strip_module(state)
        if all(tuple(getattr(state[k], "shape", ())) == s for k, s in sig.items()):
            return name
        named_only = named_only or name     # MViT at another input size: same names
    return named_only


def _strip_module(state: dict) -> dict:
    if state and all(isinstance(k, str) and k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def _load_into(net, state: dict, name: str, source: str) -> None:
    """Load a torchvision-layout state dict into `net`, the classifier left out; a state
    dict of another backbone is refused naming both, any other mismatch names the keys."""
    state = _strip_module(state)
    skip = BACKBONES[name]["classifier"]
    want = {k: v for k, v in net.state_dict().items() if not k.startswith(skip)}
    have = {k: v for k, v in state.items() if not k.startswith(skip)}
    missing, unexpected = set(want) - set(have), set(have) - set(want)
    shapes = [k for k in set(want) & set(have) if tuple(want[k].shape) != tuple(have[k].shape)]
    if missing or unexpected or shapes:
        other = identify_state_dict(state, first=name)
        if other is not None and other != name:
            raise BackboneError(f"{source}: a state dict of {other}, not of {name} (pass "
                                f"--backbone {other}, or weights of {name})")
        detail = "; ".join(part for part in (
            f"missing keys ({len(missing)}): {', '.join(sorted(missing)[:6])}" if missing else "",
            f"unexpected keys ({len(unexpected)}): {', '.join(sorted(unexpected)[:6])}"
            if unexpected else "",
            f"shape mismatches ({len(shapes)}): " + ", ".join(
                f"{k} file {tuple(have[k].shape)} vs model {tuple(want[k].shape)}"
                for k in sorted(shapes)[:4]) if shapes else "") if part)
        raise BackboneError(f"{source}: does not match torchvision's {name}: {detail}")
    net.load_state_dict(have, strict=False)


def load_backbone(name: str, weights, device="cpu", stream: str = "rgb",
                  seed: int = RANDOM_SEED, input_size=None):
    """Load backbone `name` (and a fine-tuned projection) for feature extraction.

    weights: "default" (torchvision's weights, downloaded once; not for i3d), a file (a state
    dict of the model, or a finetune-backbone checkpoint of the same backbone), or None /
    "none" (random from `seed`, warns). input_size: (T, H, W) of the clips (sizes a random
    MViT; MViT with weights is 16 x 224 x 224). Returns (backbone in eval mode on device,
    projection nn.Linear or None, meta): meta as `i3d.load_backbone`'s (kind: "torchvision",
    "state-dict", "finetune" or "random"; path; sha256; feature_dim; seed) plus name (and
    for torchvision's weights `weights`, their enum, and `url`). Raises BackboneError /
    FileNotFoundError naming the file or backbone."""
    torch, nn = _import_torch()
    from hgrnn.pipeline import i3d

    check_name(name)
    text = None if weights is None else str(weights).strip()
    if name == "i3d":
        if text is not None and text.lower() == "default":
            raise BackboneError("--backbone i3d --backbone-weights default: torchvision ships no "
                                "I3D weights; pass piergiaj's rgb_imagenet.pt (docs/extract.md), "
                                "a finetune-backbone checkpoint or none")
        if text is not None and text.lower() != "none" and Path(text).is_file():
            obj = _peek(text, load, TorchFileError)
            _refuse_other(obj, name, text)
        backbone, projection, meta = i3d.load_backbone(weights, device, stream=stream, seed=seed)
        meta["name"] = "i3d"
        return backbone, projection, meta
    if stream != "rgb":
        raise BackboneError(f"the {stream} stream runs the flow I3D only; --backbone {name} "
                            f"is an RGB network")
    spec, wrapper = BACKBONES[name], _wrapper_class()
    fixed = spec["fixed_size"]
    if text is None or text.lower() == "none":
        warnings.warn(f"{name} backbone weights: NONE -- using RANDOM initialisation. Features "
                      f"will be meaningless for recognition; pass --backbone-weights default "
                      f"or a weights file for real use.", stacklevel=2)
        size = tuple(input_size) if (fixed and input_size is not None) else None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = _build(name, input_size=size)
        backbone = wrapper(name, net, size or ((spec["clip_frames"], *fixed) if fixed else None))
        meta = {"kind": "random", "path": None, "sha256": None, "feature_dim": spec["dim"],
                "stream": stream, "seed": int(seed), "name": name,
                "input_size": list(backbone.input_size) if backbone.input_size else None}
        return backbone.to(device).eval(), None, meta
    if text.lower() == "default":
        import torchvision.models.video as video

        enum = getattr(video, spec["weights"]).DEFAULT
        net = _build(name, weights=enum)      # downloads once into torch's cache
        backbone = wrapper(name, net, (spec["clip_frames"], *fixed) if fixed else None)
        meta = {"kind": "torchvision", "path": None, "sha256": None, "feature_dim": spec["dim"],
                "stream": stream, "name": name, "weights": str(enum), "url": enum.url,
                "input_size": list(backbone.input_size) if backbone.input_size else None}
        return backbone.to(device).eval(), None, meta

    path = Path(text)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: backbone weights file not found")
    digest = i3d.sha256_file(path)
    obj = _peek(path, load, TorchFileError)
    _refuse_other(obj, name, path)
    net = _build(name)
    backbone = wrapper(name, net, (spec["clip_frames"], *fixed) if fixed else None)
    if i3d.is_finetune_checkpoint(obj):
        config = _config_of(obj)
        for key in ("backbone", "projection"):
            if not isinstance(obj.get(key), dict):
                raise BackboneError(f"{path}: fine-tuning checkpoint lacks '{key}'")
        state = {k[len("net."):]: v for k, v in obj["backbone"].items() if k.startswith("net.")}
        _load_into(net, state, name, f"{path} [backbone]")
        weight = obj["projection"].get("weight")
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2 \
                or weight.shape[1] != spec["dim"]:
            raise BackboneError(f"{path}: projection weight must be (D, {spec['dim']}), got "
                                f"{None if weight is None else tuple(weight.shape)}")
        projection = nn.Linear(spec["dim"], int(weight.shape[0]))
        projection.load_state_dict(obj["projection"], strict=True)
        meta = {"kind": "finetune", "path": str(path), "sha256": digest,
                "feature_dim": int(weight.shape[0]), "config": config, "stream": stream,
                "label_map": obj.get("label_map"), "step": obj.get("step"), "name": name,
                "input_size": list(backbone.input_size) if backbone.input_size else None}
        return backbone.to(device).eval(), projection.to(device).eval(), meta
    if not (isinstance(obj, dict) and obj
            and all(isinstance(v, torch.Tensor) for v in obj.values())):
        raise BackboneError(f"{path}: neither a state dict of {name} nor an hgrnn fine-tuning "
                            f"checkpoint")
    _load_into(net, obj, name, str(path))
    meta = {"kind": "state-dict", "path": str(path), "sha256": digest,
            "feature_dim": spec["dim"], "stream": stream, "name": name,
            "input_size": list(backbone.input_size) if backbone.input_size else None}
    return backbone.to(device).eval(), None, meta


def _peek(path, load, error):
    try:
        return load(path, "weights file")
    except error as exc:
        raise BackboneError(str(exc)) from None


def _config_of(obj) -> dict:
    import json

    config = obj.get("config")
    return (json.loads(config) if isinstance(config, str) else config) or {}


def _refuse_other(obj, name: str, path) -> None:
    """A fine-tuning checkpoint or a state dict made for another backbone: one line naming
    both."""
    from hgrnn.pipeline.i3d import is_finetune_checkpoint

    if is_finetune_checkpoint(obj):
        trained = name_of(_config_of(obj))
        if trained != name:
            raise BackboneError(f"{path}: a finetune-backbone checkpoint of {trained}, not of "
                                f"{name} (pass --backbone {trained})")
        return
    if isinstance(obj, dict) and obj:
        try:
            other = identify_state_dict(obj, first=name)
        except Exception:   # noqa: BLE001 - not a state dict: the loader says so
            return
        if other is not None and other != name:
            raise BackboneError(f"{path}: a state dict of {other}, not of {name} (pass "
                                f"--backbone {other}, or weights of {name})")
