"""`hgrnn finetune-backbone`: fine-tune I3D + a 1024 -> 256 projection on AVA person boxes.

This is the paper's feature training stage (and the vanilla "I3D head" baseline of AVA):

    clip (B, 3, T, H, W) in [-1, 1]
      -> InceptionI3d.extract_features           (B, 1024, T/8, H/32, W/32)
      -> person features of each gt box at person_layer (`hgrnn.pipeline.person_layer`;
         mixed_5c: time mean, RoIAlign 7x7, spatial max)                 (P, 1024)
      -> projection Linear(1024, 256)            (P, 256)   <- the features extraction stores
      -> dropout -> classifier Linear(256, K)    (P, K) logits, one sigmoid per class

The projection output is exactly what `extract-features --backbone-weights CHECKPOINT`
writes for a person (and, applied to the clip average pool, for a keyframe), so the head
is trained on the very features this stage optimised. The classifier is kept in the
checkpoint but extraction does not use it.

Flow stream (`stream="flow"`): the same model on a 2-channel I3D (piergiaj's
`flow_imagenet.pt` to start from) with its own projection, fed the optical flow of the
(augmented) clip's consecutive frame pairs, computed by `hgrnn.pipeline.flow.FlowComputer`
exactly as extraction computes it (same method, same scaling; flipping before the flow
makes the flipped flow's x component change sign, as it should). As in extraction, TV-L1
(and RAFT on the CPU) runs in the DataLoader workers, RAFT on CUDA in the main process. The
checkpoint's config records the stream; `extract-features --flow-backbone-weights` accepts
only a flow checkpoint (and --backbone-weights only an RGB one).

Data. Training keyframes are the keyframes of `annotations` (AVA ground-truth CSV) with at
least one person; each person's multi-hot labels come from `group_persons` in the label
map's column order (a person with none of the map's actions is a negative for every class).
Clips come from `hgrnn.data.video.iter_clips` (the same sampler as extraction: clip_frames
at frame_stride centred on the keyframe, edge frames repeated, short side -> short_side).
Because that decoder reads a video in one sequential pass, the keyframes of a video are cut
into chunks of CHUNK_KEYFRAMES consecutive keyframes; each epoch the chunks are shuffled and
dealt to ranks and DataLoader workers, and each worker interleaves INTERLEAVE open chunks at
random so that a batch mixes videos and times.

Augmentation (training only; pure functions on (frames, boxes), see `random_augment`):
scale jitter (the frame is resized by a factor in [scale_min, scale_max], never below the
crop), a random crop_size x crop_size crop (boxes are shifted, clipped to the crop and
renormalised; a person keeping less than `min_visible` of its box area is dropped; up to 5
crop positions are tried to keep at least one person, else the clip is skipped), and a
horizontal flip with probability flip_prob (x1, x2 -> 1 - x2, 1 - x1). Validation uses the
whole frame at short_side, like extraction.

Optimisation: Adam (lr 5e-4), lr halved every lr_halve_every optimizer steps (10000 by
default: the paper says "halved at intervals" without the interval; 10000 gives five
halvings over 50K steps), 50000 steps of `batch` = 50 clips per optimizer step in total:
each of the W ranks runs `accumulate` micro-batches of ceil(batch / (W * accumulate)) clips
(the loss of each micro-batch is the mean over its persons x classes, divided by
accumulate). Loss: sigmoid BCE or focal (`hgrnn.losses.sigmoid_focal_loss`).
Autocast (bf16 where supported, else fp16 with a gradient scaler) on CUDA.
DistributedDataParallel under torchrun (NCCL on GPUs, gloo on CPU); rank 0 logs, validates
and writes checkpoints. The Kinetics `logits` layer is frozen (unused). BatchNorm
statistics are frozen (the layers' affine parameters still learn) when a micro-batch has
fewer than BN_MIN_CLIPS = 8 clips, unless freeze_bn says otherwise; the choice and its
reason are logged at the start and written to config.json.

Outputs in out_dir:
  backbone.pt    the fine-tuning checkpoint (`load_backbone` reads it): {"format":
                 "hgrnn-finetune-backbone", "version": 1, "backbone": piergiaj-layout state
                 dict, "projection": {"weight" (256, 1024), "bias" (256,)}, "classifier":
                 {"weight" (K, 256), "bias" (K,)}, "config": FinetuneConfig JSON, "label_map":
                 LabelMap JSON, "step": int, "val": JSON of the last validation or null}
  state.pt       everything to resume (`resume=True` / --resume): model, optimizer, LR
                 schedule, gradient scaler, step, epoch, RNG states, config
  metrics.jsonl  one JSON object per line: {"step", "split": "train", "loss", "lr",
                 "clips_per_s", "persons", "epoch"} every log_every steps (loss: mean over
                 the window's micro-batches of rank 0; persons: rank 0's; clips_per_s: all
                 ranks) and {"step", "split": "val", "mAP", "per_class", ...}
                 (EvalResult.to_dict) after each validation
  loss.png       the training loss and the validation frame-mAP (in percent) against step
  config.json    the FinetuneConfig
Resuming restores the step count, weights, optimizer, LR schedule and RNG state and drops
the metrics lines logged after the state; the data order restarts with a fresh epoch (clips
are not replayed exactly). The steps, validations and checkpoints are the shared training
loop's (`hgrnn.pipeline.trainloop.run_steps`; this module's part is `_BackboneSteps`).
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from hgrnn import metrics
from hgrnn.console import progress_bar
from hgrnn.data.ava import (AvaRows, group_persons, load_label_map, read_annotations,
                            read_exclusions)
from hgrnn.data.video import VideoError, find_frame_folders, find_videos, iter_clips
from hgrnn.losses import sigmoid_focal_loss
from hgrnn.pipeline.backbones import (classifier_prefix, feature_dim,
                                      frames_to_input, load_backbone)
from hgrnn.pipeline.flow import FlowComputer, flow_in_workers, flow_to_input
from hgrnn.pipeline.i3d import FINETUNE_FORMAT, FINETUNE_VERSION, InceptionI3d
from hgrnn.pipeline.person_layer import (backbone_maps, layer_of,
                                         pooled_person_features)
from hgrnn.pipeline.trainloop import (MetricsLog, Stage, TrainState, autocast,
                                      damaged_state_guard, micro_batch, resume_state,
                                      run_folder, run_steps, save_file, setup_distributed,
                                      wrap_ddp, write_run_config)
from hgrnn.pipeline.finetune_config import FinetuneConfig

log = logging.getLogger(__name__)

#: consecutive keyframes of one video decoded in one pass (one seek) by one worker
CHUNK_KEYFRAMES = 8
#: chunks a worker keeps open and draws from at random
INTERLEAVE = 8
#: crop positions tried before a clip whose persons all fall outside the crop is skipped
CROP_TRIES = 5


#: below this many clips per micro-batch BatchNorm statistics are frozen by default: batch
#: statistics of a few clips are noisy estimates of the layer's mean and variance, and detection
#: fine-tuning commonly freezes them for small per-GPU batches (docs/method.md)
BN_MIN_CLIPS = 8


def resolve_freeze_bn(freeze_bn: bool | None, micro_batch: int) -> tuple[bool, str]:
    """(freeze BatchNorm statistics?, the reason, for the run log). freeze_bn None: freeze
    when micro_batch < BN_MIN_CLIPS."""
    if freeze_bn is not None:
        return bool(freeze_bn), (f"{'frozen' if freeze_bn else 'updated'} as asked "
                                 f"(--{'freeze' if freeze_bn else 'update'}-bn)")
    if micro_batch < BN_MIN_CLIPS:
        return True, (f"frozen: {micro_batch} clip(s) per micro-batch < {BN_MIN_CLIPS} "
                      f"(--update-bn to update them anyway)")
    return False, (f"updated: {micro_batch} clips per micro-batch >= {BN_MIN_CLIPS} "
                   f"(--freeze-bn to freeze them)")


class FinetuneError(RuntimeError):
    """A problem with the fine-tuning inputs or a checkpoint; the message names the file."""


# ----------------------------------------------------------------------------- augmentation

def flip_clip(frames: np.ndarray, boxes: np.ndarray):
    """Mirror a clip left-right. frames (T, H, W, 3), boxes (P, 4) normalised xyxy ->
    (frames[:, :, ::-1], boxes with x1, x2 -> 1 - x2, 1 - x1)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    flipped = np.stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]], axis=1)
    return np.ascontiguousarray(frames[:, :, ::-1]), flipped.astype(np.float32)


def crop_clip(frames: np.ndarray, boxes: np.ndarray, top: int, left: int, height: int,
              width: int, min_visible: float = 0.5):
    """Crop rows top:top+height, columns left:left+width of every frame.

    frames (T, H, W, 3); boxes (P, 4) normalised xyxy of the uncropped frame. Returns
    (cropped frames (T, height, width, 3), boxes (P', 4) normalised to the crop and clipped
    to [0, 1], keep (P,) bool): a person is kept when at least `min_visible` of its box area
    lies inside the crop (and that part is not empty).
    """
    full_h, full_w = frames.shape[1:3]
    if not (0 <= top and top + height <= full_h and 0 <= left and left + width <= full_w):
        raise ValueError(f"crop {left},{top} {width}x{height} leaves the {full_w}x{full_h} frame")
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    px = boxes * [full_w, full_h, full_w, full_h] - [left, top, left, top]
    inside = np.clip(px, 0, [width, height, width, height])
    area = (px[:, 2] - px[:, 0]) * (px[:, 3] - px[:, 1])
    visible = np.clip(inside[:, 2] - inside[:, 0], 0, None) * np.clip(inside[:, 3] - inside[:, 1], 0, None)
    keep = (visible > 0) & (visible >= min_visible * np.maximum(area, 1e-12))
    out = (inside[keep] / [width, height, width, height]).astype(np.float32)
    return np.ascontiguousarray(frames[:, top:top + height, left:left + width]), out, keep


def resize_clip(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, height, width, 3) uint8, bilinear (normalised boxes are
    unchanged by a resize)."""
    if frames.shape[1:3] == (height, width):
        return frames
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def random_augment(frames: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, *,
                   crop_size: int, scale_range=(0.8, 1.25), flip_prob: float = 0.5,
                   min_visible: float = 0.5):
    """Scale jitter + random square crop + random horizontal flip (module docstring).

    frames (T, H, W, 3) uint8, boxes (P, 4) normalised xyxy. The scale factor is drawn from
    scale_range and raised where needed so that the short side reaches crop_size. Returns
    (frames (T, crop_size, crop_size, 3), boxes (P', 4), keep (P,) bool), or None when none of
    CROP_TRIES crop positions kept a person.
    """
    full_h, full_w = frames.shape[1:3]
    short = min(full_h, full_w)
    scale = max(rng.uniform(*scale_range), crop_size / short)
    new_h = max(crop_size, int(round(full_h * scale)))
    new_w = max(crop_size, int(round(full_w * scale)))
    for _ in range(CROP_TRIES):
        top = int(rng.integers(0, new_h - crop_size + 1))
        left = int(rng.integers(0, new_w - crop_size + 1))
        # which persons survive depends only on the geometry: decide before resizing pixels
        _, _, keep = crop_clip(np.zeros((1, new_h, new_w, 1), np.uint8), boxes, top, left,
                               crop_size, crop_size, min_visible)
        if keep.any():
            break
    else:
        return None
    resized = resize_clip(frames, new_h, new_w)
    out, out_boxes, keep = crop_clip(resized, boxes, top, left, crop_size, crop_size, min_visible)
    if rng.random() < flip_prob:
        out, out_boxes = flip_clip(out, out_boxes)
    return out, out_boxes, keep


# ----------------------------------------------------------------------------- data

@dataclass(frozen=True)
class Keyframe:
    """One annotated keyframe: P ground-truth persons with (P, K) multi-hot labels."""
    video_id: str
    timestamp: int
    boxes: np.ndarray        # (P, 4) float32
    labels: np.ndarray       # (P, K) uint8


def keyframes_from_csv(path, label_map, exclusions=None) -> list[Keyframe]:
    """Ground-truth CSV -> keyframes with >= 1 person, sorted by (video_id, timestamp)."""
    rows = read_annotations(path, label_map, exclusions, progress=False)
    persons = group_persons(rows, label_map)
    out = []
    if len(persons) == 0:
        return out
    key = np.char.add(np.char.add(persons.video_ids.astype(str), "\x00"),
                      persons.timestamps.astype(str))
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ends = np.r_[starts[1:], len(key)]
    for s, e in zip(starts, ends):
        out.append(Keyframe(str(persons.video_ids[s]), int(persons.timestamps[s]),
                            persons.boxes[s:e].astype(np.float32), persons.labels[s:e]))
    out.sort(key=lambda k: (k.video_id, k.timestamp))
    return out


def resolve_sources(config: FinetuneConfig, video_ids) -> dict[str, str]:
    """video id -> file or frame folder; raises FinetuneError listing every missing video."""
    folder = config.videos if config.videos is not None else config.frames
    found = find_videos(folder) if config.videos is not None else find_frame_folders(folder)
    wanted = sorted(set(video_ids))
    missing = [v for v in wanted if v not in found]
    if missing:
        shown = ", ".join(missing[:20]) + (f", ... ({len(missing)} in all)" if len(missing) > 20 else "")
        raise FinetuneError(f"{folder}: no video for {len(missing)} of the {len(wanted)} annotated "
                            f"videos: {shown}")
    return {v: str(found[v]) for v in wanted}


def make_chunks(keyframes: list[Keyframe], size: int = CHUNK_KEYFRAMES) -> list[list[int]]:
    """Indices of `keyframes` (sorted by video, time) cut into runs of <= size keyframes of
    one video."""
    chunks, current = [], []
    for i, k in enumerate(keyframes):
        if current and (len(current) == size or keyframes[current[0]].video_id != k.video_id):
            chunks.append(current)
            current = []
        current.append(i)
    if current:
        chunks.append(current)
    return chunks


class ClipStream(torch.utils.data.IterableDataset):
    """Training samples for one rank: dicts with clip (T, c, c, 3) uint8 tensor, boxes (P, 4),
    labels (P, K) float32, video_id, timestamp, and with a `flow` computer (a
    `FlowComputer` run here, in the worker) flow (T-1, c, c, 2) float16 of the augmented clip.
    Set `epoch` before iterating."""

    def __init__(self, keyframes, sources, config: FinetuneConfig, rank=0, world=1, flow=None):
        self.keyframes, self.sources, self.config = keyframes, sources, config
        self.flow = flow
        self.rank, self.world, self.epoch = rank, world, 0
        self.chunks = make_chunks(keyframes)

    def _my_chunks(self, worker: int, workers: int) -> list[list[int]]:
        order = np.random.default_rng([self.config.seed, self.epoch]).permutation(len(self.chunks))
        shards = self.world * workers
        if len(order) < shards:                  # every shard needs work, or DDP stalls
            order = np.tile(order, math.ceil(shards / max(len(order), 1)))
        mine = order[self.rank * workers + worker::shards]
        return [self.chunks[i] for i in mine]

    def _chunk_samples(self, chunk, rng):
        c = self.config
        video_id = self.keyframes[chunk[0]].video_id
        by_time = {float(self.keyframes[i].timestamp - c.time_offset): self.keyframes[i]
                   for i in chunk}
        try:
            for time_s, frames in iter_clips(self.sources[video_id], sorted(by_time),
                                             c.clip_frames, c.frame_stride, c.short_side,
                                             fps=c.fps, resample_fps=c.resample_fps):
                kf = by_time[time_s]
                aug = random_augment(frames, kf.boxes, rng, crop_size=c.crop_size,
                                     scale_range=(c.scale_min, c.scale_max),
                                     flip_prob=c.flip_prob, min_visible=c.min_visible)
                if aug is None:
                    continue
                clip, boxes, keep = aug
                sample = {"clip": torch.from_numpy(clip), "boxes": torch.from_numpy(boxes),
                          "labels": torch.from_numpy(kf.labels[keep].astype(np.float32)),
                          "video_id": video_id, "timestamp": kf.timestamp}
                if self.flow is not None:
                    sample["flow"] = self.flow(clip[None])[0].half()    # (T-1, c, c, 2)
                yield sample
        except VideoError as exc:
            stamps = sorted(k.timestamp for k in by_time.values())
            message = f"skipping keyframes {stamps[0]}..{stamps[-1]} of {video_id}: {exc}"
            warnings.warn(message)   # printed once, as one line, by the CLI

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        rng = np.random.default_rng([self.config.seed, self.epoch, self.rank, worker, 1])
        pending = self._my_chunks(worker, workers)
        active = []
        while pending or active:
            while pending and len(active) < INTERLEAVE:
                active.append(self._chunk_samples(pending.pop(0), rng))
            j = int(rng.integers(len(active)))
            try:
                yield next(active[j])
            except StopIteration:
                active.pop(j)


def collate(samples) -> dict:
    """List of samples -> {"clips" (B, T, H, W, 3) uint8, "rois" (P, 5) float32 [clip index,
    x1, y1, x2, y2], "labels" (P, K) float32, "video_ids", "timestamps", "flow" (B, T-1, H,
    W, 2) or None}."""
    rois = torch.cat([torch.cat([torch.full((len(s["boxes"]), 1), float(i)), s["boxes"]], 1)
                      for i, s in enumerate(samples)])
    return {"clips": torch.stack([s["clip"] for s in samples]), "rois": rois,
            "labels": torch.cat([s["labels"] for s in samples]),
            "video_ids": [s["video_id"] for s in samples],
            "timestamps": [s["timestamp"] for s in samples],
            "flow": torch.stack([s["flow"] for s in samples]) if "flow" in samples[0] else None}


def network_input(clips, flow, config: FinetuneConfig, flow_computer, device) -> torch.Tensor:
    """The backbone input of a batch on `device`: RGB clips (B, T, H, W, 3) uint8 ->
    (B, 3, T, H, W) in [-1, 1]; for the flow stream the scaled flow (B, T-1, H, W, 2) (from
    the workers, or computed here with `flow_computer` when `flow` is None) -> (B, 2, T-1, H,
    W)."""
    if config.stream == "rgb":     # the backbone's normalisation (I3D: [-1, 1])
        return frames_to_input(clips.to(device, non_blocking=True), config.backbone)
    if flow is None:
        flow = flow_computer(clips.to(device, non_blocking=True))
    return flow_to_input(flow.to(device, non_blocking=True))


# ----------------------------------------------------------------------------- model

class PersonActionModel(nn.Module):
    """Backbone (I3D, or any of `hgrnn.pipeline.backbones`) + projection (C -> D) + RoIAlign
    person head + K sigmoid classifiers.

    forward(clips (B, 3, T, H, W) in [-1, 1], rois (P, 5) [clip index, normalised xyxy])
    -> (P, K) logits. `features(...)` -> (P, D) projected person features (what extraction
    stores)."""

    def __init__(self, backbone: InceptionI3d, num_classes: int, projection_dim: int = 256,
                 dropout: float = 0.5, projection: nn.Linear | None = None,
                 person_layer: str = "mixed_5c"):
        super().__init__()
        self.backbone = backbone
        self.person_layer = person_layer
        for name, param in backbone.named_parameters():     # Kinetics classifier: unused
            if name.startswith(classifier_prefix(backbone)):
                param.requires_grad_(False)
        self.projection = projection if projection is not None else \
            nn.Linear(feature_dim(backbone), projection_dim)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.projection.out_features, num_classes)

    def features(self, clips: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        # the map of the person layer (Mixed_5c, or Mixed_4f then 5a/5b/5c per region)
        _, pmap = backbone_maps(self.backbone, clips, self.person_layer, clip_map=False)
        pooled = pooled_person_features(self.backbone, pmap, rois, clips.shape[-2:],
                                        self.person_layer)                 # (P, 1024) float32
        return self.projection(pooled.to(self.projection.weight.dtype))   # (P, D)

    def forward(self, clips: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(clips, rois)))  # (P, K)


def set_train_mode(model: nn.Module, train: bool, freeze_bn: bool) -> None:
    """model.train(train); with freeze_bn the BatchNorm layers stay in eval mode (running
    statistics are used and not updated; their affine parameters still learn)."""
    model.train(train)
    if train and freeze_bn:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def classification_loss(logits, targets, config: FinetuneConfig) -> torch.Tensor:
    """Mean over (P, K) of sigmoid BCE or focal loss (logits computed in float32)."""
    logits = logits.float()
    if config.loss == "focal":
        return sigmoid_focal_loss(logits, targets, gamma=config.focal_gamma, alpha=config.focal_alpha)
    return F.binary_cross_entropy_with_logits(logits, targets)


# ----------------------------------------------------------------------------- checkpoints

def checkpoint_dict(model: PersonActionModel, config: FinetuneConfig, label_map, step: int,
                    val: dict | None = None) -> dict:
    """The `backbone.pt` content (module docstring); tensors on CPU."""
    def cpu(module):
        return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
    return {"format": FINETUNE_FORMAT, "version": FINETUNE_VERSION,
            "backbone": cpu(model.backbone), "projection": cpu(model.projection),
            "classifier": cpu(model.classifier), "config": config.to_json(),
            "label_map": label_map.to_json(), "step": int(step),
            "val": None if val is None else json.dumps(val)}


# ----------------------------------------------------------------------------- validation

@torch.no_grad()
def predict_keyframes(model: PersonActionModel, keyframes, sources, config: FinetuneConfig,
                      device, progress=False, flow_computer=None):
    """Class probabilities of the gt persons of `keyframes` (whole frames at short_side, no
    augmentation, one clip per forward pass). Returns (probs (P, K), video_ids (P,),
    timestamps (P,), boxes (P, 4)), or None when nothing was decoded."""
    model.eval()
    vids, stamps, boxes, probs = [], [], [], []
    by_video: dict[str, list[Keyframe]] = {}
    for k in keyframes:
        by_video.setdefault(k.video_id, []).append(k)
    bar = progress_bar(total=len(keyframes), desc="validate", unit="kf", disable=not progress,
               leave=False)
    mixed = autocast(device)
    for video_id, kfs in by_video.items():
        by_time = {float(k.timestamp - config.time_offset): k for k in kfs}
        for time_s, frames in iter_clips(sources[video_id], sorted(by_time), config.clip_frames,
                                         config.frame_stride, config.short_side, fps=config.fps,
                                         resample_fps=config.resample_fps):
            kf = by_time[time_s]
            clip = network_input(torch.from_numpy(frames)[None], None, config, flow_computer,
                                 device)                                  # (1, c, T, H, W)
            rois = torch.cat([torch.zeros(len(kf.boxes), 1), torch.from_numpy(kf.boxes)], 1)
            with mixed:
                logits = model(clip, rois.to(device))
            probs.append(torch.sigmoid(logits.float()).cpu().numpy())
            vids += [video_id] * len(kf.boxes)
            stamps += [kf.timestamp] * len(kf.boxes)
            boxes.append(kf.boxes)
            bar.update(1)
    bar.close()
    if not probs:
        return None
    return (np.concatenate(probs), np.asarray(vids), np.asarray(stamps, np.int64),
            np.concatenate(boxes))


def validate(model, keyframes, sources, gt_rows, label_map, config, device, progress=False,
             flow_computer=None) -> dict:
    """Frame-mAP (hgrnn.metrics.evaluate) of the model's scores on gt boxes. Returns
    EvalResult.to_dict()."""
    out = predict_keyframes(model, keyframes, sources, config, device, progress, flow_computer)
    if out is None:
        raise FinetuneError("validation: no keyframe could be decoded")
    probs, vids, stamps, boxes = out
    k = probs.shape[1]
    results = AvaRows.from_arrays(np.repeat(vids, k), np.repeat(stamps, k),
                                  np.repeat(boxes, k, axis=0),
                                  np.tile(np.asarray(label_map.ids, np.int64), len(probs)),
                                  scores=probs.reshape(-1))
    return metrics.evaluate(gt_rows, results, label_map, protocol=config.protocol).to_dict()


# ----------------------------------------------------------------------------- training

def _batches(dataset: ClipStream, micro: int, workers: int, epoch: int):
    """Endless micro-batches, one epoch after another; yields (epoch, batch)."""
    while True:
        dataset.epoch = epoch
        loader = torch.utils.data.DataLoader(dataset, batch_size=micro, num_workers=workers,
                                             collate_fn=collate,
                                             persistent_workers=False)
        got = False
        for batch in loader:
            got = True
            yield epoch, batch
        if not got:
            raise FinetuneError("no training clip could be produced (all videos failed or "
                                "every crop lost its persons)")
        epoch += 1


class _BackboneSteps(Stage):
    """finetune-backbone's part of the training loop (`trainloop.run_steps`): micro-batches
    of augmented clips, the classification loss, frame-mAP validation, backbone.pt."""

    chart: ClassVar[dict] = {"title": "finetune-backbone", "loss_label": "training loss (per person x class)",
                             "val_key": "mAP", "val_label": "validation frame-mAP (%)"}

    def __init__(self, *, model, net, train, batches, epoch, config, label_map, flow_computer,
                 freeze_bn, device, world, val_keyframes, val_gt, sources, ckpt_path,
                 state_path, progress):
        self.model, self.net, self.train, self.batches = model, net, train, batches
        #: the epoch of the last micro-batch trained (state.pt's "epoch"; a resumed run
        #: starts the next one)
        self.epoch = epoch
        self.config, self.label_map, self.flow_computer = config, label_map, flow_computer
        self.freeze_bn, self.device, self.world = freeze_bn, device, world
        self.val_keyframes, self.val_gt, self.sources = val_keyframes, val_gt, sources
        self.ckpt_path, self.state_path, self.progress = ckpt_path, state_path, progress
        self.validates = bool(val_keyframes)
        set_train_mode(model, True, freeze_bn)

    def micro_step(self):
        self.epoch, batch = next(self.batches)
        clips = network_input(batch["clips"], batch["flow"], self.config, self.flow_computer,
                              self.device)
        rois = batch["rois"].to(self.device)
        with autocast(self.device):
            logits = self.net(clips, rois)
        loss = classification_loss(logits, batch["labels"].to(self.device), self.config)
        return loss, {"loss": float(loss.detach()), "clips": clips.shape[0],
                      "persons": rois.shape[0]}

    def train_record(self, step, window, seconds, lr):
        return {"loss": window["loss"] / window["n"], "lr": lr,
                "clips_per_s": window["clips"] * self.world / seconds,
                "persons": window["persons"], "epoch": self.epoch}

    def postfix(self, record):
        return {**super().postfix(record), "clips_s": f"{record['clips_per_s']:.1f}"}

    def validate(self, step):
        result = validate(self.model, self.val_keyframes, self.sources, self.val_gt,
                          self.label_map, self.config, self.device, self.progress,
                          self.flow_computer)
        log.info("step %d: validation frame-mAP %.2f %%", step, 100 * result["mAP"])
        set_train_mode(self.model, True, self.freeze_bn)
        return result

    def save(self, step, val):
        save_file(checkpoint_dict(self.model, self.config, self.label_map, step, val),
                  self.ckpt_path, FinetuneError)
        self.train.save(self.state_path, step=step, config_json=self.config.to_json(),
                        val=val, epoch=self.epoch)

    def close(self):
        self.batches.close()                     # ends the DataLoader and its workers


def finetune_backbone(config: FinetuneConfig, resume: bool = False, progress: bool = True) -> dict:
    """Fine-tune I3D + projection on AVA gt boxes (module docstring). Returns {"checkpoint":
    path of backbone.pt, "val": last validation dict or None, "steps": int, "seconds": float}.
    Under torchrun every rank calls this; rank 0 writes the outputs."""
    t_start = time.time()
    rank, world, _local_rank, device = setup_distributed(config.device, config.num_threads)
    out_dir, state_path, ckpt_path = run_folder(config.out_dir, "backbone.pt", rank)
    if not resume and (state_path.exists() or ckpt_path.exists()):     # checked on every rank
        raise FinetuneError(f"{out_dir}: already holds a fine-tuning run (backbone.pt/state.pt);"
                            " pass --resume to continue it or choose another --out")

    label_map = load_label_map(config.label_map)
    keyframes = keyframes_from_csv(config.annotations, label_map,
                                   read_exclusions(config.exclusions) if config.exclusions else None)
    if not keyframes:
        raise FinetuneError(f"{config.annotations}: no keyframe with a person box")
    val_keyframes, val_gt = [], None
    if config.val_annotations:
        val_excl = read_exclusions(config.val_exclusions) if config.val_exclusions else None
        val_keyframes = keyframes_from_csv(config.val_annotations, label_map, val_excl)
        if config.val_max_keyframes:
            val_keyframes = val_keyframes[:config.val_max_keyframes]
        val_gt = read_annotations(config.val_annotations, label_map, val_excl, progress=False)
        keep = set((k.video_id, k.timestamp) for k in val_keyframes)
        mask = np.array([(v, int(t)) in keep for v, t in zip(val_gt.video_ids, val_gt.timestamps)],
                        bool)
        val_gt = val_gt.take(mask)
    sources = resolve_sources(config, [k.video_id for k in keyframes] +
                              [k.video_id for k in val_keyframes])

    torch.manual_seed(config.seed + rank)
    backbone, projection, meta = load_backbone(config.backbone, config.backbone_weights,
                                               device="cpu", stream=config.stream)
    if meta["kind"] == "finetune" and layer_of(meta.get("config")) != config.person_layer:
        raise FinetuneError(f"{config.backbone_weights}: was fine-tuned with person layer "
                            f"{layer_of(meta.get('config'))}, this run uses "
                            f"{config.person_layer}; pass --person-layer "
                            f"{layer_of(meta.get('config'))} or start from other weights")
    flow_computer = worker_flow = None
    if config.stream == "flow":
        in_workers = flow_in_workers(config.flow, device)
        flow_computer = FlowComputer(config.flow, config.flow_weights,
                                     "cpu" if in_workers else device)
        worker_flow = flow_computer if in_workers else None
    model = PersonActionModel(backbone, len(label_map), config.projection_dim, config.dropout,
                              projection=projection if (projection is not None and
                                                        projection.out_features == config.projection_dim)
                              else None, person_layer=config.person_layer).to(device)
    train = TrainState(model, config.lr, config.lr_halve_every, device, FinetuneError)
    metrics_path = out_dir / "metrics.jsonl"
    before = {"stream": "rgb", "flow": "tvl1", "person_layer": layer_of({}),  # older files
              "backbone": "i3d"}
    fixed = ("clip_frames", "frame_stride", "projection_dim", "label_map", "loss",
             "person_layer", "stream", "backbone") + (("flow",) if config.stream == "flow" else ())
    state = resume_state(train, state_path, resume, config, fixed, metrics_path=metrics_path,
                         rank=rank, defaults=before, out_hint="--out")
    step, epoch, last_val = 0, 0, None
    if state is not None:
        step, last_val = state["step"], state["val"]
        with damaged_state_guard(state_path, FinetuneError, "--out"):
            epoch = int(state["epoch"])
        # a new --lr-halve-every applies from here on (the current lr is kept); a new --lr
        # cannot apply without undoing the halvings
        if state["saved"].get("lr_halve_every") != config.lr_halve_every:
            log.warning("%s: lr_halve_every %s -> %s from step %d on", state_path,
                        state["saved"].get("lr_halve_every"), config.lr_halve_every, step)
        if state["saved"].get("lr") != config.lr:
            log.warning("%s: --lr %s ignored on resume; the run continues its schedule "
                        "from lr %s", state_path, config.lr, state["saved"].get("lr"))

    net = wrap_ddp(model, world, device)
    micro = micro_batch(config.batch, world, config.accumulate)
    freeze_bn, bn_reason = resolve_freeze_bn(config.freeze_bn, micro)
    dataset = ClipStream(keyframes, sources, config, rank, world, worker_flow)
    # a fresh run starts at epoch 0, a resumed one with the epoch after its last
    batches = _batches(dataset, micro, config.num_workers, epoch + (state is not None))
    metrics_log = MetricsLog(metrics_path, rank)
    if rank == 0:
        write_run_config(out_dir, config, world, micro, freeze_bn_applied=freeze_bn,
                         freeze_bn_reason=bn_reason, initial_weights=meta)
        log.info("fine-tuning on %d keyframes (%d chunks) of %d videos; batch %d = %d ranks x "
                 "%d accumulation x %d clips", len(keyframes), len(dataset.chunks),
                 len(set(k.video_id for k in keyframes)), micro * world * config.accumulate,
                 world, config.accumulate, micro)
        log.info("BatchNorm statistics %s", bn_reason)

    stage = _BackboneSteps(model=model, net=net, train=train, batches=batches, epoch=epoch,
                           config=config, label_map=label_map, flow_computer=flow_computer,
                           freeze_bn=freeze_bn, device=device, world=world,
                           val_keyframes=val_keyframes, val_gt=val_gt, sources=sources,
                           ckpt_path=ckpt_path, state_path=state_path, progress=progress)
    step, last_val = run_steps(stage, train, net, config, step=step, last_val=last_val,
                               world=world, rank=rank, metrics_log=metrics_log,
                               checkpoint_path=ckpt_path, progress=progress,
                               desc="finetune-backbone")
    return {"checkpoint": str(ckpt_path), "val": last_val, "steps": step,
            "seconds": time.time() - t_start}
