"""The person detector's settings: `DetectorArch` (what rebuilds a detector),
`DetectConfig` (`hgrnn detect`) and `FinetuneDetectorConfig` (`hgrnn finetune-detector`),
with their defaults and checks.

Light on purpose (no torch): the CLI reads its option defaults from these fields when
`hgrnn --help` runs. `hgrnn.pipeline.detect` builds and runs the detector."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from hgrnn.data.source import VideoSource

#: ResNets that torchvision's `resnet_fpn_backbone` builds (18/34: small, quick checks)
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
INITS = ("imagenet", "coco", "none")


class DetectorError(ValueError):
    """A detector cannot be built or loaded; the message names the file or the option."""


@dataclass(frozen=True)
class DetectorArch:
    """What it takes to rebuild a class-agnostic detector (stored in its checkpoint).

    backbone: a ResNet of BACKBONES with FPN; norm: "frozen" (FrozenBatchNorm2d, as torchvision
    does for pretrained backbones) or "batch" (BatchNorm2d, random init); trainable_layers:
    ResNet stages that train (0..5, counted from the top); min_size / max_size: torchvision's
    detection transform (the image is resized so its short side is min_size, long side at
    most max_size); proposals_train / proposals_test: RPN proposals kept per image before
    and after NMS; roi_batch: proposals sampled per image for the box head's loss;
    box_head_dim: width of the box head's two fully connected layers; fpn_dim: channels of
    the feature pyramid (and of the RPN). The torchvision defaults (2000 / 1000 / 512 / 1024
    / 256) are the paper's setting; small values make quick CPU runs (tests) fast."""
    backbone: str = "resnet101"
    norm: str = "frozen"
    trainable_layers: int = 3
    min_size: int = 800
    max_size: int = 1333
    proposals_train: int = 2000
    proposals_test: int = 1000
    roi_batch: int = 512
    box_head_dim: int = 1024
    fpn_dim: int = 256

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise DetectorError(f"backbone {self.backbone!r}: expected one of {', '.join(BACKBONES)}")
        if self.norm not in ("frozen", "batch"):
            raise DetectorError(f"norm {self.norm!r}: expected 'frozen' or 'batch'")
        if not 0 <= self.trainable_layers <= 5:
            raise DetectorError(f"trainable_layers must be in 0..5, got {self.trainable_layers}")
        if self.min_size < 1 or self.max_size < self.min_size:
            raise DetectorError(f"need 1 <= min_size <= max_size, got {self.min_size}, {self.max_size}")
        for name in ("proposals_train", "proposals_test", "roi_batch", "box_head_dim",
                     "fpn_dim"):
            if getattr(self, name) < 1:
                raise DetectorError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class DetectConfig(VideoSource):
    """Settings of `detect_videos` (the options of `hgrnn detect`; see its --help).

    out: the person-box CSV to write (resumed when its progress file exists). Keyframes:
    `keyframes` (start, end) inclusive seconds, else those of `annotations`, else every
    second of each video. short_side: None = the detector's own input size. track: a
    person id per box as a 9th column (`hgrnn.track`, each video's boxes linked across its
    keyframes with the tracker's defaults)."""
    out: str
    annotations: str | None = None
    exclusions: str | None = None
    keyframes: tuple[int, int] | None = None
    detector: str = "faster-rcnn"
    detector_weights: str = "default"
    min_score: float = 0.05
    max_persons: int = 100
    short_side: int | None = None
    batch_size: int = 8
    workers: int = 2
    device: str = "auto"
    progress: bool = True
    track: bool = False

    def __post_init__(self):
        self.check_source()
        if self.keyframes is not None and self.keyframes[0] > self.keyframes[1]:
            raise ValueError(f"--keyframes {self.keyframes[0]}:{self.keyframes[1]}: start > end")
        for name in ("batch_size", "max_persons"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")


@dataclass(frozen=True)
class FinetuneDetectorConfig(VideoSource):
    """Settings of `finetune_detector` (written into checkpoints and config.json); see
    `hgrnn finetune-detector --help` for each option. trainable_layers None: 3 for a
    pretrained init (torchvision's default), 5 (everything) for init "none"."""

    annotations: str
    out_dir: str
    exclusions: str | None = None
    cache: str | None = None
    cache_quality: int = 95
    # the model's fields (ARCH_FIELDS) default to DetectorArch's: the paper's setting
    backbone: str = DetectorArch.backbone
    init: str = "imagenet"
    init_weights: str | None = None
    trainable_layers: int | None = None
    min_size: int = DetectorArch.min_size
    max_size: int = DetectorArch.max_size
    proposals_train: int = DetectorArch.proposals_train
    proposals_test: int = DetectorArch.proposals_test
    roi_batch: int = DetectorArch.roi_batch
    box_head_dim: int = DetectorArch.box_head_dim
    fpn_dim: int = DetectorArch.fpn_dim
    flip_prob: float = 0.5
    lr: float = 1e-5
    lr_halve_every: int = 20000
    steps: int = 100000
    batch_size: int = 20
    accumulate: int = 1
    val_annotations: str | None = None
    val_exclusions: str | None = None
    val_every: int = 5000
    val_max_keyframes: int | None = None
    protocol: str = "ava-2018"
    seed: int = 0
    device: str = "auto"
    num_workers: int = 2
    num_threads: int = 0
    log_every: int = 20
    checkpoint_every: int = 1000

    def __post_init__(self):
        self.check_source()
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone {self.backbone!r}: expected one of {', '.join(BACKBONES)}")
        if self.init not in INITS:
            raise ValueError(f"init {self.init!r}: expected one of {', '.join(INITS)}")
        for name in ("steps", "batch_size", "accumulate", "lr_halve_every", "log_every",
                     "checkpoint_every", "val_every", "min_size", "max_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.flip_prob <= 1:
            raise ValueError(f"flip_prob must be in [0, 1], got {self.flip_prob}")
        if not 1 <= self.cache_quality <= 100:
            raise ValueError(f"cache_quality must be in 1..100, got {self.cache_quality}")
        if self.num_workers < 0 or self.num_threads < 0:
            raise ValueError("num_workers and num_threads must be >= 0")
        self.arch()                                  # validates the model fields

    def arch(self) -> DetectorArch:
        layers = self.trainable_layers
        if layers is None:
            layers = 5 if self.init == "none" else 3
        return DetectorArch(backbone=self.backbone, norm="batch" if self.init == "none" else "frozen",
                            trainable_layers=layers, min_size=self.min_size,
                            max_size=self.max_size, proposals_train=self.proposals_train,
                            proposals_test=self.proposals_test, roi_batch=self.roi_batch,
                            box_head_dim=self.box_head_dim, fpn_dim=self.fpn_dim)

    def cache_dir(self) -> str:
        return self.cache or str(Path(self.out_dir) / "keyframes")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)
