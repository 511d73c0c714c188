"""Person detection: the Faster R-CNN models hgrnn runs, and ONE detection function.

Every path that puts person boxes on keyframes goes through `detect_persons`:
`hgrnn detect` (videos -> person-box CSV), `extract-features --detector` (the 'det' persons
of a store) and the validation of `finetune-detector`. Two kinds of detector:

  "faster-rcnn"   torchvision's ResNet-50 FPN Faster R-CNN with COCO weights (91 classes;
                  person = label 1), or a torchvision state-dict file of that model
  CHECKPOINT      a `finetune-detector` checkpoint (RUN/detector.pt): a class-agnostic
                  Faster R-CNN (labels: 0 background, 1 person) on a ResNet-18..152 FPN
                  backbone, fine-tuned on AVA's person boxes (the paper's detector)

Keyframe images are decoded by `keyframe_images`: `hgrnn.data.video.iter_clips` with a
one-frame clip, i.e. exactly the centre frame extraction hands its detector, short side
resized to the detector's input size (aspect kept, bilinear).

Checkpoint (`detector.pt`): {"format": "hgrnn-detector", "version": 1, "arch":
DetectorArch dict, "model": torchvision FasterRCNN state dict (2 classes), "config":
FinetuneDetectorConfig JSON, "step": int, "val": JSON of the last validation or null}.
A `finetune-backbone` checkpoint (the I3D features) given as a detector is refused.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from hgrnn.console import progress_bar
from hgrnn.data.ava import read_annotations
from hgrnn.pipeline.i3d import FINETUNE_FORMAT, sha256_file
from hgrnn.data.keyframes import summarize_outside, video_keyframes
from hgrnn.data.paths import replacing
from hgrnn.data.store_io import WriterLock
from hgrnn.data.video import VideoError, find_frame_folders, find_videos, iter_clips, probe
from hgrnn.pipeline.detect_config import (BACKBONES, INITS, DetectConfig,  # noqa: F401
                                          DetectorArch, DetectorError)   # (BACKBONES: its old home)
from hgrnn.torchfile import TorchFileError
from hgrnn.torchfile import load as load_torch_file
from hgrnn.track import TrackConfig, track_box_lines

DETECTOR_FORMAT = "hgrnn-detector"
DETECTOR_VERSION = 1
#: label of the person class: COCO's person, and the one foreground class of our detector
PERSON_LABEL = 1


# ----------------------------------------------------------------------------- building

def build_detector(arch: DetectorArch, *, init: str = "none", init_weights=None,
                   score_thresh: float = 0.05, detections_per_img: int = 100):
    """A class-agnostic torchvision FasterRCNN (2 classes: background, person).

    init: "imagenet" (the backbone from ImageNet ResNet weights; the paper's start), "coco"
    (resnet50 only: every weight from torchvision's COCO Faster R-CNN, the predictor cut to
    background + person) or "none" (random). init_weights: a local file instead of
    torchvision's download: a torchvision ResNet state dict (imagenet) or the
    fasterrcnn_resnet50_fpn COCO state dict (coco). Returns (model, meta dict)."""
    # torchvision's detection models take seconds to import: only when a detector is built
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import FrozenBatchNorm2d

    if init not in INITS:
        raise DetectorError(f"init {init!r}: expected one of {', '.join(INITS)}")
    if init == "coco" and arch.backbone != "resnet50":
        raise DetectorError(f"--init coco: torchvision ships COCO Faster R-CNN weights for "
                            f"resnet50 only, not {arch.backbone}")
    if init == "none" and init_weights:
        raise DetectorError("--init-weights needs --init imagenet or coco")
    if init == "coco" and (arch.box_head_dim, arch.fpn_dim) != (1024, 256):
        raise DetectorError(f"--init coco: the COCO model has box head 1024 and FPN 256, not "
                            f"{arch.box_head_dim} and {arch.fpn_dim}")
    meta = {"init": init, "weights": None, "sha256": None}
    weights_enum = None
    if init == "imagenet" and not init_weights:
        from torchvision.models import get_model_weights
        weights_enum = get_model_weights(arch.backbone).IMAGENET1K_V1
        meta["weights"] = f"torchvision:{weights_enum}"
    norm = FrozenBatchNorm2d if arch.norm == "frozen" else torch.nn.BatchNorm2d
    try:
        backbone = resnet_fpn_backbone(backbone_name=arch.backbone, weights=weights_enum,
                                       norm_layer=norm, trainable_layers=arch.trainable_layers)
    except Exception as exc:  # noqa: BLE001 - a failed download reads as any error
        raise DetectorError(f"cannot get {weights_enum} ({type(exc).__name__}: {exc}); "
                            f"offline, pass --init-weights FILE (torchvision's "
                            f"{arch.backbone} ImageNet state dict)") from exc
    if arch.fpn_dim != backbone.out_channels:
        from torchvision.ops.feature_pyramid_network import (FeaturePyramidNetwork,
                                                             LastLevelMaxPool)
        widths = [block[0].in_channels for block in backbone.fpn.inner_blocks]
        backbone.fpn = FeaturePyramidNetwork(widths, arch.fpn_dim, extra_blocks=LastLevelMaxPool())
        backbone.out_channels = arch.fpn_dim
    resolution = 7                     # torchvision's MultiScaleRoIAlign output size
    box_head = TwoMLPHead(backbone.out_channels * resolution ** 2, arch.box_head_dim)
    model = FasterRCNN(backbone, min_size=arch.min_size, max_size=arch.max_size,
                       box_head=box_head, box_predictor=FastRCNNPredictor(arch.box_head_dim, 2),
                       rpn_pre_nms_top_n_train=arch.proposals_train,
                       rpn_post_nms_top_n_train=arch.proposals_train,
                       rpn_pre_nms_top_n_test=arch.proposals_test,
                       rpn_post_nms_top_n_test=arch.proposals_test,
                       box_batch_size_per_image=arch.roi_batch,
                       box_score_thresh=score_thresh, box_detections_per_img=detections_per_img)
    if init == "imagenet" and init_weights:
        state = _load_state(init_weights)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        _load_into(model.backbone.body, state, init_weights, f"torchvision's {arch.backbone}")
        meta.update(weights=str(init_weights), sha256=sha256_file(init_weights))
    elif init == "coco":
        if init_weights:
            state = _load_state(init_weights)
            meta.update(weights=str(init_weights), sha256=sha256_file(init_weights))
        else:
            state = _coco_state()
            meta["weights"] = "torchvision:FasterRCNN_ResNet50_FPN_Weights.COCO_V1"
        _load_into(model, person_predictor(state, init_weights), init_weights,
                   "torchvision's fasterrcnn_resnet50_fpn")
    return model, meta


def person_predictor(state: dict, source=None) -> dict:
    """A COCO Faster R-CNN state dict with its 91-class predictor cut to (background,
    person): rows 0 and 1 of cls_score, the first 8 rows (2 classes x 4) of bbox_pred."""
    key = "roi_heads.box_predictor.cls_score.weight"
    if key not in state:
        raise DetectorError(f"{source}: not a torchvision Faster R-CNN state dict (no {key})")
    out = dict(state)
    for name, rows in (("cls_score", 2), ("bbox_pred", 8)):
        for kind in ("weight", "bias"):
            k = f"roi_heads.box_predictor.{name}.{kind}"
            out[k] = state[k][:rows].clone()
    return out


def _coco_state() -> dict:
    from torchvision.models.detection import (FasterRCNN_ResNet50_FPN_Weights,
                                              fasterrcnn_resnet50_fpn)
    try:
        return fasterrcnn_resnet50_fpn(weights=FasterRCNN_ResNet50_FPN_Weights.COCO_V1,
                                       weights_backbone=None).state_dict()
    except Exception as exc:  # noqa: BLE001 - a failed download reads as any error
        raise DetectorError(f"cannot get torchvision's COCO Faster R-CNN weights "
                            f"({type(exc).__name__}: {exc}); offline, pass --init-weights "
                            f"fasterrcnn_resnet50_fpn_coco-258fb6c6.pth") from exc


def _load_state(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DetectorError(f"{path}: weights file not found")
    try:
        state = load_torch_file(path, "weights file")   # one line for a damaged file
    except TorchFileError as err:
        raise DetectorError(str(err)) from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise DetectorError(f"{path}: not a state dict")
    return state


def _load_into(module, state: dict, source, what: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DetectorError(f"{source}: does not fit {what}: {first}") from exc



# ----------------------------------------------------------------------------- loading

@dataclass
class PersonDetector:
    """A detector ready to run: model (eval mode, on `device`), the short side its keyframe
    images are decoded at, and JSON-ready meta (kind, path, sha256, arch) for stores/CSVs."""
    model: torch.nn.Module
    device: torch.device
    short_side: int
    meta: dict
    person_label: int = PERSON_LABEL


def read_detector_checkpoint(path) -> dict:
    """Load a `finetune-detector` checkpoint (module docstring); refuse anything else with a
    message that says what the file is and where it belongs."""
    path = Path(path)
    if not path.is_file():
        raise DetectorError(f"{path}: detector checkpoint not found (--detector takes "
                            f"'faster-rcnn' or a finetune-detector checkpoint RUN/detector.pt)")
    try:
        ckpt = load_torch_file(path, "detector checkpoint")   # one line for a damaged file
    except TorchFileError as err:
        raise DetectorError(str(err)) from None
    kind = ckpt.get("format") if isinstance(ckpt, dict) else None
    if kind == FINETUNE_FORMAT:
        raise DetectorError(f"{path}: is a finetune-backbone checkpoint (I3D features), not a "
                            f"person detector; it belongs to extract-features "
                            f"--backbone-weights. --detector takes a finetune-detector "
                            f"checkpoint (RUN/detector.pt) or 'faster-rcnn'")
    if kind != DETECTOR_FORMAT:
        raise DetectorError(f"{path}: not a finetune-detector checkpoint (format {kind!r}); a "
                            f"torchvision Faster R-CNN state dict goes to --detector faster-rcnn "
                            f"--detector-weights FILE")
    if ckpt.get("version") != DETECTOR_VERSION:
        raise DetectorError(f"{path}: detector checkpoint version {ckpt.get('version')!r}, this "
                            f"hgrnn reads version {DETECTOR_VERSION}")
    return ckpt


def load_person_detector(spec: str, *, weights: str = "default", device="cpu",
                         min_score: float = 0.05, max_persons: int = 100,
                         short_side: int | None = None) -> PersonDetector:
    """spec: "faster-rcnn" (torchvision's COCO ResNet-50 FPN; `weights` = "default", "none"
    (random, tests) or a state-dict file) or the path of a finetune-detector checkpoint.
    short_side: input short side (None: 800 for faster-rcnn, the training size of a
    checkpoint); boxes scoring below min_score are dropped inside the model."""
    device = torch.device(device)
    keep = dict(box_score_thresh=min_score, box_detections_per_img=max(100, max_persons))
    if spec == "faster-rcnn":
        side = short_side or 800
        model, meta = _coco_detector(weights, dict(keep, min_size=side,
                                                   max_size=max(1333, 2 * side)))
        meta["kind"] = "faster-rcnn"
    else:
        ckpt = read_detector_checkpoint(spec)
        arch = DetectorArch(**ckpt["arch"])
        side = short_side or arch.min_size
        if short_side:
            arch = dataclasses.replace(arch, min_size=side, max_size=max(arch.max_size, side))
        model, _ = build_detector(arch, init="none", score_thresh=min_score,
                                  detections_per_img=keep["box_detections_per_img"])
        _load_into(model, ckpt["model"], spec, f"its own arch {ckpt['arch']}")
        meta = {"kind": "checkpoint", "weights": str(spec), "sha256": sha256_file(spec),
                "arch": ckpt["arch"], "step": ckpt.get("step")}
    return PersonDetector(model.to(device).eval(), device, side, meta)


def _coco_detector(weights: str, kwargs: dict):
    """torchvision's 91-class COCO Faster R-CNN: weights "default" | "none" | a file."""
    from torchvision.models.detection import (FasterRCNN_ResNet50_FPN_Weights,
                                              fasterrcnn_resnet50_fpn)

    meta = {"weights": str(weights), "sha256": None}
    if str(weights).lower() == "none":
        warnings.warn("person detector weights: NONE -- random Faster R-CNN, detections are "
                      "meaningless (tests only)", stacklevel=3)
        return fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, **kwargs), meta
    if str(weights).lower() == "default":
        model = fasterrcnn_resnet50_fpn(weights=FasterRCNN_ResNet50_FPN_Weights.DEFAULT,
                                        weights_backbone=None, **kwargs)
        meta["weights"] = "torchvision:" + str(FasterRCNN_ResNet50_FPN_Weights.DEFAULT)
        return model, meta
    state = _load_state(weights)
    key = "roi_heads.box_predictor.cls_score.weight"
    if key not in state:
        if state.get("format") == DETECTOR_FORMAT:
            raise DetectorError(f"{weights}: is a finetune-detector checkpoint; pass it as "
                                f"--detector {weights}")
        raise DetectorError(f"{weights}: not a torchvision Faster R-CNN state dict (no {key})")
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                    num_classes=int(state[key].shape[0]), **kwargs)
    _load_into(model, state, weights, "torchvision's fasterrcnn_resnet50_fpn")
    meta["sha256"] = sha256_file(weights)
    return model, meta


# ----------------------------------------------------------------------------- detecting

def detect_persons(detector: PersonDetector, images, min_score: float = 0.0,
                   max_persons: int = 100) -> list[dict]:
    """THE detection function. images: list of uint8 (H, W, 3) tensors or arrays (RGB) ->
    per image {"boxes": (n, 4) float32 normalised xyxy in [0, 1], "scores": (n,) float32},
    person class only, score >= min_score, the best max_persons by score (descending)."""
    inputs = [(img if isinstance(img, torch.Tensor) else torch.from_numpy(np.array(img)))
              .to(detector.device).permute(2, 0, 1).float().div_(255)
              for img in images]                                   # (3, H, W) in [0, 1]
    if not inputs:
        return []
    with torch.no_grad():
        outputs = detector.model(inputs)
    result = []
    for img, out in zip(inputs, outputs):
        h, w = img.shape[1:]
        keep = (out["labels"] == detector.person_label) & (out["scores"] >= min_score)
        boxes, scores = out["boxes"][keep].float().cpu(), out["scores"][keep].float().cpu()
        order = torch.argsort(scores, descending=True, stable=True)[:max_persons]
        boxes = boxes[order] / torch.tensor([w, h, w, h], dtype=torch.float32)
        result.append({"boxes": boxes.clamp_(0, 1).numpy(), "scores": scores[order].numpy()})
    return result


def keyframe_images(video_path, timestamps, *, short_side, time_offset: float = 0.0,
                    fps=None, seek_after: float = 2.0, stats: dict | None = None
                    ) -> Iterator[tuple[int, np.ndarray]]:
    """(timestamp, uint8 RGB (H, W, 3)) of each keyframe of a video or frame folder, in
    ascending time: the centre frame of extraction's clip (`iter_clips` with a one-frame
    clip), short side resized to `short_side`. Raises VideoError naming the file."""
    by_time = {float(ts - time_offset): int(ts) for ts in timestamps}
    for time_s, clip in iter_clips(video_path, sorted(by_time), 1, 1, short_side, fps=fps,
                                   stats=stats, seek_after=seek_after):
        yield by_time[time_s], clip[0]


# ----------------------------------------------------------------------------- hgrnn detect

def progress_path(out) -> Path:
    """The progress record of a `detect` output: `<out>.progress.jsonl`."""
    return Path(str(out) + ".progress.jsonl")


def format_rows(video_id: str, timestamps, detections) -> str:
    """CSV lines `video_id,timestamp,x1,y1,x2,y2,,score` (empty action column, as LFB /
    SlowFast's predicted-box files) of `detect_persons` outputs, one per box."""
    lines = []
    for ts, det in zip(timestamps, detections):
        for (x1, y1, x2, y2), score in zip(det["boxes"].tolist(), det["scores"].tolist()):
            lines.append(f"{video_id},{int(ts):04d},{x1:.4f},{y1:.4f},{x2:.4f},{y2:.4f},,{score:.6f}\n")
    return "".join(lines)


@dataclass
class _Plan:
    video_id: str
    path: str
    timestamps: list | None          # None: every second, decided when the video is open


def plan_keyframes(cfg) -> tuple[list, dict]:
    """(plans, missing {video_id: reason}) for the videos to detect on (see DetectConfig)."""
    found = find_videos(cfg.videos) if cfg.videos is not None else find_frame_folders(cfg.frames)
    keyframes_of: dict = {}
    if cfg.annotations:
        rows = read_annotations(cfg.annotations, None, cfg.exclusions, progress=False)
        for vid, ts in zip(rows.video_ids.tolist(), rows.timestamps.tolist()):
            keyframes_of.setdefault(vid, set()).add(int(ts))
        if rows.empty_video_ids is not None:          # annotated keyframes without persons
            for vid, ts in zip(rows.empty_video_ids.tolist(), rows.empty_timestamps.tolist()):
                keyframes_of.setdefault(vid, set()).add(int(ts))
    plans, missing = [], {}
    for vid in (sorted(keyframes_of) if cfg.annotations else sorted(found)):
        if vid not in found:
            missing[vid] = (f"missing: no video for {vid} in {cfg.videos or cfg.frames} "
                            f"(named by {cfg.annotations})")
            continue
        if cfg.keyframes is not None:
            timestamps = list(range(cfg.keyframes[0], cfg.keyframes[1] + 1))
        else:
            timestamps = sorted(keyframes_of[vid]) if vid in keyframes_of else None
        plans.append(_Plan(vid, str(found[vid]), timestamps))
    return plans, missing


class KeyframeImageStream(torch.utils.data.IterableDataset):
    """Decodes the videos of `plans` (split over DataLoader workers) into messages, in order
    per video: ("start", vid, n keyframes, outside, warning) (`keyframes.video_keyframes`:
    requested keyframes outside the video are skipped), ("images", vid, timestamps, [uint8
    (H, W, 3) tensors]) ..., then ("done", vid) or ("failed", vid, reason) at any point."""

    def __init__(self, plans, *, short_side, time_offset, fps, batch_size):
        self.plans, self.short_side, self.time_offset = list(plans), short_side, time_offset
        self.fps, self.batch_size = fps, batch_size

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        mine = self.plans if info is None else self.plans[info.id::info.num_workers]
        for plan in mine:
            yield from self._video(plan)

    def _video(self, plan):
        try:
            timestamps, outside, warning = video_keyframes(
                plan.path, plan.timestamps, probe(plan.path, fps=self.fps), self.time_offset)
            yield ("start", plan.video_id, len(timestamps), outside, warning)
            stamps, images = [], []
            for ts, image in keyframe_images(plan.path, timestamps, short_side=self.short_side,
                                             time_offset=self.time_offset, fps=self.fps):
                stamps.append(ts)
                images.append(torch.from_numpy(image))
                if len(stamps) == self.batch_size:
                    yield ("images", plan.video_id, stamps, images)
                    stamps, images = [], []
            if stamps:
                yield ("images", plan.video_id, stamps, images)
            yield ("done", plan.video_id)
        except VideoError as exc:
            yield ("failed", plan.video_id, str(exc))
        except Exception as exc:  # noqa: BLE001 - one bad video must not stop the run
            yield ("failed", plan.video_id, f"{plan.path}: {type(exc).__name__}: {exc}")


def _resume_point(out: Path, record: Path, settings: dict) -> tuple[set, int]:
    """(videos complete in `out`, byte length of their rows) from the progress record;
    refuses an output written with other settings or without a record."""
    if not record.exists():
        if out.exists() and out.stat().st_size > 0:
            raise DetectorError(f"{out}: exists but has no progress record {record.name} (not "
                                f"written by hgrnn detect); choose another --out or delete it")
        return set(), 0
    lines = [json.loads(line) for line in record.read_text().splitlines() if line.strip()]
    old = lines[0].get("settings") if lines else None
    if old != settings:
        old = old or {}
        changed = [f"{k} {old.get(k)!r} -> {settings.get(k)!r}"
                   for k in dict.fromkeys([*settings, *old]) if old.get(k) != settings.get(k)]
        raise DetectorError(f"{out}: was written with other settings ({'; '.join(changed)}); "
                            f"resuming would mix two detectors in one file. Use the same "
                            f"settings, or another --out")
    done = {r["video"]: r["bytes"] for r in lines[1:] if r.get("status") == "done"}
    return set(done), max(done.values(), default=0)


def detect_videos(cfg: DetectConfig) -> dict:
    """Run `hgrnn detect`: person boxes on the keyframes of every video, appended to the CSV
    one video at a time. Resumable: `<out>.progress.jsonl` records the settings, then one
    line per finished video ({"video", "status": "done", "keyframes", "boxes", "bytes": CSV
    length after it}) or failure ({"video", "status": "failed", "reason"}); a rerun cuts the
    CSV back to the last finished video, skips finished videos and retries failed ones.
    Requested keyframes outside a video are skipped with one warning line per video (a
    video with none inside fails). Returns a summary: out, written, skipped, failed {video:
    reason}, outside {video: keyframes skipped}, keyframes, boxes, seconds. A second run on
    the same `out` is refused (StoreError naming the first) by the store's writer lock."""
    Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
    lock = WriterLock(cfg.out).acquire()       # held until the CSV and its record are closed
    try:
        return _detect_videos(cfg)
    except OSError as err:
        if err.filename is not None:
            raise
        raise DetectorError(f"{cfg.out}: {err.strerror or err} (the videos finished before are "
                            "kept: run again to continue)") from None     # a full disk
    finally:
        lock.release()


def _detect_videos(cfg: DetectConfig) -> dict:
    started = time.time()
    plans, missing = plan_keyframes(cfg)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                          if cfg.device == "auto" else cfg.device)
    detector = load_person_detector(cfg.detector, weights=cfg.detector_weights, device=device,
                                    min_score=cfg.min_score, max_persons=cfg.max_persons,
                                    short_side=cfg.short_side)
    settings = {"detector": detector.meta, "min_score": cfg.min_score,
                "max_persons": cfg.max_persons, "short_side": detector.short_side,
                "time_offset": cfg.time_offset, "fps": cfg.fps, "annotations": cfg.annotations,
                "exclusions": cfg.exclusions,
                "keyframes": list(cfg.keyframes) if cfg.keyframes else None}
    if cfg.track:                 # only then: progress records of untracked runs stay valid
        settings["track"] = dataclasses.asdict(TrackConfig())
    out, record = Path(cfg.out), progress_path(cfg.out)
    done, length = _resume_point(out, record, settings)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not record.exists():
        with replacing(record) as partial:     # whole or not at all (a full disk)
            partial.write_text(json.dumps({"settings": settings}) + "\n")
    with open(out, "a"):
        pass
    _truncate(out, length)                 # rows of a video that did not finish

    todo = [p for p in plans if p.video_id not in done]
    failed: dict = {}
    summary = {"out": str(out), "written": 0, "skipped": len(done & {p.video_id for p in plans}),
               "keyframes": 0, "boxes": 0, "outside": {}}
    bar = progress_bar(total=sum(len(p.timestamps) for p in todo if p.timestamps is not None),
               unit="kf", desc="detect", disable=not cfg.progress, dynamic_ncols=True)
    loader = torch.utils.data.DataLoader(
        KeyframeImageStream(todo, short_side=detector.short_side, time_offset=cfg.time_offset,
                            fps=cfg.fps, batch_size=cfg.batch_size),
        batch_size=None, num_workers=min(cfg.workers, len(todo)), generator=torch.Generator())
    pending: dict = {}                       # video id -> [CSV text, keyframes, boxes]
    with open(out, "a", encoding="utf-8") as csv, open(record, "a") as log_file:
        def note(entry):
            log_file.write(json.dumps(entry) + "\n")
            log_file.flush()

        for vid, reason in missing.items():
            failed[vid] = reason
            note({"video": vid, "status": "failed", "reason": reason})
        for message in (loader if todo else []):
            kind, vid = message[0], message[1]
            if kind == "start":
                pending[vid] = ["", 0, 0]
                if next(p for p in todo if p.video_id == vid).timestamps is None:
                    bar.total += message[2]
                    bar.refresh()
                if message[3]:
                    summary["outside"][vid] = len(message[3])
                    bar.total -= len(message[3])
                    tqdm.write(f"detect: skipped {message[4]}")
            elif kind == "images":
                dets = detect_persons(detector, message[3], cfg.min_score, cfg.max_persons)
                text = format_rows(vid, message[2], dets)
                pending[vid][0] += text
                pending[vid][1] += len(message[2])
                pending[vid][2] += sum(len(d["scores"]) for d in dets)
                bar.update(len(message[2]))
            elif kind == "done":
                text, n_kf, n_boxes = pending.pop(vid)
                if cfg.track:
                    text = track_box_lines(text)
                csv.write(text)
                csv.flush()
                note({"video": vid, "status": "done", "keyframes": n_kf, "boxes": n_boxes,
                      "bytes": csv.tell()})
                summary["written"] += 1
                summary["keyframes"] += n_kf
                summary["boxes"] += n_boxes
                bar.set_postfix(done=summary["written"], failed=len(failed), refresh=False)
            elif kind == "failed":
                pending.pop(vid, None)
                failed[vid] = message[2]
                note({"video": vid, "status": "failed", "reason": message[2]})
                tqdm.write(f"detect: FAILED {vid}: {message[2]}")
                bar.set_postfix(done=summary["written"], failed=len(failed), refresh=False)
    bar.close()
    summary["failed"] = failed
    summary["seconds"] = time.time() - started
    return summary


def _truncate(path: Path, length: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(length)


def format_summary(summary: dict) -> str:
    s = summary
    lines = [f"detect: {s['out']}: {s['written']} video(s) written ({s['keyframes']} keyframes, "
             f"{s['boxes']} person boxes), {s['skipped']} already complete, "
             f"{len(s['failed'])} failed, {s['seconds']:.1f} s"]
    if s.get("outside"):
        lines.append("  " + summarize_outside(s["outside"]))
    lines += [f"  FAILED {vid}: {reason}" for vid, reason in sorted(s["failed"].items())]
    return "\n".join(lines)
