"""The extraction's settings: `ExtractConfig` (the CLI's options and their defaults).

Light on purpose (no numpy, no torch): the CLI reads its option defaults from these fields
when `hgrnn --help` runs."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from hgrnn.data.source import VideoSource
from hgrnn.pipeline.backbones import BACKBONES, DEFAULT_BACKBONE, check_name, input_settings
from hgrnn.pipeline.defaults import DEFAULT_DET_THRESHOLD

DETECTORS = ("faster-rcnn",)
STREAMS = ("rgb", "flow")

#: ExtractConfig fields that do not change the features (left out of the stored config).
RUN_ONLY_FIELDS = ("out", "workers", "device", "batch_size", "progress", "videos", "frames")


@dataclass(frozen=True)
class ExtractConfig(VideoSource):
    """Everything `extract_features` needs (the CLI's options; see `hgrnn extract-features -h`).

    out: store to write or resume. videos / frames / fps / time_offset: the input
    (`hgrnn.data.video.VideoSource`, keyword-only). keyframes: (start, end)
    inclusive seconds or None. backbone: the RGB network (`hgrnn.pipeline.backbones`:
    i3d, s3d, r3d_18, mc3_18, r2plus1d_18, mvit_v1_b, mvit_v2_s, swin3d_t/s/b).
    backbone_weights: its weights: a file, "default" (torchvision's, not for i3d) or "none"
    for random initialisation (tests). clip_frames / frame_stride / short_side: None = the
    backbone's (`backbones.input_settings`; i3d: 32, 1, 256); `resolved()` fills them in. detector: None, "faster-rcnn" or a finetune-detector checkpoint;
    detector_weights (faster-rcnn only): a file, "default" (torchvision's COCO weights,
    downloaded once) or "none" (random, tests).
    streams: ("rgb",), ("flow",) or ("rgb", "flow") (the store's feature order). flow: the
    optical flow method (`hgrnn.pipeline.flow.FLOW_METHODS`); flow_weights: RAFT weights
    ("default", a file, "none"); flow_backbone_weights: the flow I3D (flow_imagenet.pt, a
    `finetune-backbone --stream flow` checkpoint, "none"). backbone_weights is the RGB I3D
    and is needed only with the rgb stream.
    """
    out: str
    backbone: str = DEFAULT_BACKBONE
    backbone_weights: str | None = None
    annotations: str | None = None
    label_map: str = "ava-v2.1"
    exclusions: str | None = None
    keyframes: tuple[int, int] | None = None
    detections: str | None = None
    detector: str | None = None
    detector_weights: str = "default"
    det_threshold: float = DEFAULT_DET_THRESHOLD
    max_persons: int = 30
    det_short_side: int = 800
    person_layer: str = "mixed_5c"
    projection: bool = True
    clip_frames: int | None = None
    frame_stride: int | None = None
    short_side: int | None = None
    seek_after: float = 2.0
    batch_size: int = 8
    workers: int = 2
    device: str = "auto"
    progress: bool = True
    streams: tuple = ("rgb",)
    flow: str = "tvl1"
    flow_weights: str = "default"
    flow_backbone_weights: str | None = None

    def resolved(self) -> "ExtractConfig":
        """This config with the clip settings left at None set to the backbone's."""
        own = input_settings(self.backbone)
        return replace(self, **{k: own[k] if getattr(self, k) is None else getattr(self, k)
                                for k in ("clip_frames", "frame_stride", "short_side")})

    def validate(self) -> None:
        # torch modules, imported here so that this module stays light
        from hgrnn.pipeline.flow import canonical_method
        from hgrnn.pipeline.person_layer import check_layer

        self.check_source()
        check_name(self.backbone)
        streams = tuple(self.streams)
        if not streams or len(set(streams)) != len(streams) or not set(streams) <= set(STREAMS):
            raise ValueError(f"--streams {','.join(streams)}: expected rgb, flow or rgb,flow")
        if "rgb" in streams and self.backbone_weights is None:
            raise ValueError("the rgb stream needs --backbone-weights (rgb_imagenet.pt, a "
                             "fine-tuned checkpoint, or none)" if self.backbone == "i3d" else
                             f"--backbone {self.backbone} needs --backbone-weights (default: "
                             f"torchvision's, a state dict file, a finetune-backbone "
                             f"checkpoint, or none)")
        if self.backbone != "i3d":
            if "flow" in streams:
                raise ValueError(f"--streams flow runs the flow I3D, with I3D's clips; "
                                 f"--backbone {self.backbone} is RGB only (extract it alone)")
            if self.person_layer != "mixed_5c":
                raise ValueError(f"--person-layer {self.person_layer} is an I3D layer; "
                                 f"--backbone {self.backbone} pools persons from its last "
                                 f"map ({BACKBONES[self.backbone]['layer']})")
        if "flow" in streams:
            canonical_method(self.flow)
            if self.flow_backbone_weights is None:
                raise ValueError("the flow stream needs --flow-backbone-weights "
                                 "(flow_imagenet.pt, a `finetune-backbone --stream flow` "
                                 "checkpoint, or none)")
            if (self.clip_frames or input_settings(self.backbone)["clip_frames"]) < 2:
                raise ValueError(f"the flow stream needs clip_frames >= 2 (a flow field per "
                                 f"pair of frames), got {self.clip_frames}")
        if self.detections and self.detector:
            raise ValueError("give at most one of --detections CSV and --detector")
        if (self.detector is not None and self.detector not in DETECTORS
                and not Path(self.detector).is_file()):
            raise ValueError(f"--detector {self.detector!r}: expected 'faster-rcnn' or a "
                             f"finetune-detector checkpoint file")
        if self.keyframes is not None and self.keyframes[0] > self.keyframes[1]:
            raise ValueError(f"--keyframes {self.keyframes[0]}:{self.keyframes[1]}: start > end")
        for name in ("clip_frames", "frame_stride", "short_side", "batch_size", "max_persons"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.workers < 0:
            raise ValueError(f"--workers must be >= 0, got {self.workers}")
        check_layer(self.person_layer)


# Settings that change what the features of a video are: resuming a store with other values
# would mix two kinds of features in one store without any trace, so it is refused.
FEATURE_FIELDS = ("backbone_name", "fps", "resample_fps", "time_offset", "clip_frames",
                  "frame_stride", "short_side", "projection", "feature_dim", "detector", "det_threshold", "max_persons",
                  "det_short_side", "person_layer", "streams", "flow", "flow_weights")
