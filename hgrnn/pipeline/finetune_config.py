"""`FinetuneConfig`: the settings of `hgrnn finetune-backbone`, with their defaults and checks.

Light on purpose (no torch, no numpy): the CLI reads its option defaults from these fields
when `hgrnn --help` runs. `hgrnn.pipeline.finetune` trains."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from hgrnn.data.source import VideoSource
from hgrnn.pipeline.backbones import check_name


@dataclass(frozen=True)
class FinetuneConfig(VideoSource):
    """Settings of `finetune_backbone` (written into checkpoints and config.json).

    annotations: training ground truth (AVA CSV); videos / frames: folder of
    `<video_id>.<ext>` files, or of `<video_id>/<video_id>_%06d.jpg` frame folders at `fps`.
    time_offset: video time of timestamp 0 (a keyframe at timestamp ts is taken ts -
    time_offset seconds into the video; 900 for the 15-minute AVA cuts, as in extraction).
    num_threads: torch CPU threads (0: torch's default).
    person_layer: the I3D layer person features are pooled from, "mixed_5c" (default) or
    "mixed_4f" (`hgrnn.pipeline.person_layer`); extract-features must use the same.
    freeze_bn: keep BatchNorm statistics fixed (True), update them from every micro-batch
    (False), or None (default): freeze them when a micro-batch (the clips of one forward
    pass of one rank) has fewer than BN_MIN_CLIPS clips (`resolve_freeze_bn`).
    backbone_weights: initial I3D weights (piergiaj rgb_imagenet.pt, or flow_imagenet.pt for
    stream "flow", a previous fine-tuning checkpoint of the same stream, or "none" for random
    init). stream: "rgb" or "flow"; flow, flow_weights: the optical flow of the flow stream
    (as `extract-features --flow/--flow-weights`). See `hgrnn.pipeline.finetune` for the rest.
    """

    annotations: str
    out_dir: str
    label_map: str = "ava-v2.1"
    exclusions: str | None = None
    backbone: str = "i3d"
    backbone_weights: str | None = None
    val_annotations: str | None = None
    val_exclusions: str | None = None
    val_every: int = 5000
    val_max_keyframes: int | None = None
    protocol: str = "ava-2018"
    clip_frames: int = 32
    frame_stride: int = 1
    short_side: int = 256
    crop_size: int = 224
    scale_min: float = 0.8
    scale_max: float = 1.25
    flip_prob: float = 0.5
    min_visible: float = 0.5
    projection_dim: int = 256
    dropout: float = 0.5
    person_layer: str = "mixed_5c"
    freeze_bn: bool | None = None
    loss: str = "bce"
    focal_gamma: float = 2.0
    focal_alpha: float | None = None
    lr: float = 5e-4
    lr_halve_every: int = 10000
    steps: int = 50000
    batch: int = 50
    accumulate: int = 1
    seed: int = 0
    device: str = "auto"
    num_workers: int = 2
    num_threads: int = 0
    log_every: int = 20
    checkpoint_every: int = 1000
    stream: str = "rgb"
    flow: str = "tvl1"
    flow_weights: str = "default"

    def __post_init__(self):
        # torch modules, imported here so that this module stays light
        from hgrnn.pipeline.flow import canonical_method
        from hgrnn.pipeline.person_layer import check_layer

        if self.stream not in ("rgb", "flow"):
            raise ValueError(f"stream must be 'rgb' or 'flow', got {self.stream!r}")
        if self.stream == "flow":
            canonical_method(self.flow)
            if self.clip_frames < 2:
                raise ValueError("the flow stream needs clip_frames >= 2")
        if (self.videos is None) == (self.frames is None):
            raise ValueError("give exactly one of --videos (a folder of <video_id>.<ext> "
                             "files) or --frames (a folder of <video_id>/<video_id>_%06d.jpg "
                             "folders)")
        if self.frames is not None and not self.fps:
            raise ValueError("--frames needs --fps (the frame rate the JPEGs were extracted at)")
        check_layer(self.person_layer)
        if check_name(self.backbone) != "i3d" and (self.stream != "rgb"
                                                    or self.person_layer != "mixed_5c"):
            raise ValueError(f"--backbone {self.backbone}: RGB only, persons pooled from its "
                             f"last map (--stream flow and --person-layer mixed_4f are I3D's)")
        if self.loss not in ("bce", "focal"):
            raise ValueError(f"--loss must be 'bce' or 'focal', got {self.loss!r}")
        for name in ("steps", "batch", "accumulate", "clip_frames", "frame_stride",
                     "short_side", "crop_size", "projection_dim", "lr_halve_every",
                     "log_every", "checkpoint_every", "val_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got "
                                 f"{getattr(self, name)}")
        if not 0 < self.scale_min <= self.scale_max:
            raise ValueError(f"--scale-jitter MIN MAX needs 0 < MIN <= MAX, got "
                             f"{self.scale_min} {self.scale_max}")
        if self.num_workers < 0 or self.num_threads < 0:
            raise ValueError("--workers and --threads must be >= 0")
        if not 0 <= self.flip_prob <= 1 or not 0 < self.min_visible <= 1:
            raise ValueError("--flip-prob must be in [0, 1] and --min-visible in (0, 1]")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)
