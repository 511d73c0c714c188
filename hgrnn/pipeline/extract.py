"""`hgrnn extract-features`: videos -> HDF5 feature store (clip + person I3D features).

Per video (one sequential decoding pass, `hgrnn.data.video.iter_clips`):

  keyframes   --keyframes START:END, else the union of the keyframes of --annotations and
              of --detections (a keyframe with detections but no ground truth is scored
              like any other by the official evaluation: its detections are its false
              positives), else every whole second of the video. The run summary counts
              where the keyframes came from. A keyframe timestamp ts (integer seconds, as in
              AVA CSVs) is video time ts - time_offset.
  clip        clip_frames frames at frame_stride centred on the keyframe, short side resized
              to short_side (aspect kept, whole frame, no crop), RGB scaled to [-1, 1] (what
              the piergiaj I3D port / Kinetics weights expect); past the video's start/end
              the edge frame is repeated.
  backbone    I3D Mixed_5c map fmap (B, 1024, T', H', W')  (`hgrnn.pipeline.i3d`)
  clip feat   fmap averaged over time and space                             (B, 1024)
  person feat fmap averaged over time, RoIAlign of each box (normalised xyxy scaled to the
              map, 7x7 samples), spatial max                                 (P, 1024)
              (--person-layer mixed_4f: from Mixed_4f, then the last I3D blocks on each
              box's region; `hgrnn.pipeline.person_layer`)
  projection  a fine-tuned checkpoint's Linear(1024, 256) on both (unless projection=False)
  streams     --streams rgb (default), flow, or rgb,flow. The flow stream computes optical
              flow of every consecutive frame pair of the same clip (`hgrnn.pipeline.flow`:
              --flow tvl1 | raft-small | raft-large, scaled to [-1, 1]) and runs the flow I3D
              (--flow-backbone-weights, 2 input channels) on it, with the same pooling. The
              store's features are the streams' features side by side, in --streams order,
              and its `streams` attribute names the slices, e.g. [["rgb", 0, 256],
              ["flow", 256, 512]] (`hgrnn.data.store`).
  persons     gt: --annotations rows merged into one person per box (multi-hot labels over
              --label-map, `ava.group_persons`); det: --detections CSV boxes or a Faster
              R-CNN on the keyframe (`detect.detect_persons`: torchvision's COCO model or a
              finetune-detector checkpoint, person class), score >= det_threshold, at most
              max_persons per keyframe (highest scores).

Data flow: a torch DataLoader over an IterableDataset of videos; each worker process decodes
whole videos (workers split the video list) and sends batches of up to `batch_size` clips of
one video, so decoding runs ahead of the model. The workers also compute the flow of their
clips (TV-L1; RAFT when the device is the CPU), so flow never costs a second decode; RAFT on
a CUDA device runs in the main process instead (`hgrnn.pipeline.flow.flow_in_workers`). The main process runs the backbone (autocast
float16 on CUDA), gathers each video's keyframes and writes the video with
`StoreWriter.add_video` once its last batch is in.

Operations: videos already complete in the store are skipped (resume). A video that cannot
be opened or decoded, or is too short for its keyframes, is recorded with
`StoreWriter.record_failure` (reason) and the run goes on; videos named by the CSVs but absent
from the video folder are recorded up front. Under torchrun (WORLD_SIZE > 1) the videos still
to do are split round-robin over the ranks; rank k writes `<out stem>.rank<k>.h5` next to
the output, and after a barrier (gloo) rank 0 merges the output (if it exists) and all shards
into the output (`merge_stores`) and deletes the shards. Shards left by an interrupted
distributed run count as done and are merged by the next run (any number of processes).
"""

from __future__ import annotations

import dataclasses
import datetime
import glob
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as torch_dist
from torch.utils.data import IterableDataset, get_worker_info
from tqdm import tqdm

from hgrnn.console import progress_bar
from hgrnn.data.ava import group_persons, load_label_map, read_annotations, read_results
from hgrnn.data.store import PersonSet, StoreError, StoreWriter, open_h5, read_info, video_names
from hgrnn.data.store_merge import merge_stores
from hgrnn.pipeline.defaults import DEFAULT_DET_THRESHOLD
from hgrnn.pipeline.detect import detect_persons, load_person_detector
from hgrnn.pipeline.i3d import load_backbone, normalize_frames, sha256_file
from hgrnn.data.keyframes import (clip_span_warning, describe_outside, offset_hint,
                                      split_keyframes, summarize_outside)
from hgrnn.pipeline.person_layer import (backbone_maps, check_layer, layer_of,
                                         pooled_person_features)
from hgrnn.data.video import (VideoError, check_video_source, find_frame_folders,
                                  find_videos, iter_clips, probe)

DETECTORS = ("faster-rcnn",)
STREAMS = ("rgb", "flow")

#: ExtractConfig fields that do not change the features (left out of the stored config).
RUN_ONLY_FIELDS = ("out", "workers", "device", "batch_size", "progress", "videos", "frames")


@dataclass(frozen=True)
class ExtractConfig:
    """Everything `extract_features` needs (the CLI's options; see `hgrnn extract-features -h`).

    out: store to write or resume. videos / frames: exactly one input folder (`<id>.<ext>`
    video files, or `<id>/<id>_%06d.jpg` frame folders at `fps`). keyframes: (start, end)
    inclusive seconds or None. backbone_weights: I3D weights file, or "none" for random
    initialisation (tests). detector: None, "faster-rcnn" or a finetune-detector checkpoint;
    detector_weights (faster-rcnn only): a file, "default" (torchvision's COCO weights,
    downloaded once) or "none" (random, tests).
    streams: ("rgb",), ("flow",) or ("rgb", "flow") (the store's feature order). flow: the
    optical flow method (`hgrnn.pipeline.flow.FLOW_METHODS`); flow_weights: RAFT weights
    ("default", a file, "none"); flow_backbone_weights: the flow I3D (flow_imagenet.pt, a
    `finetune-backbone --stream flow` checkpoint, "none"). backbone_weights is the RGB I3D
    and is needed only with the rgb stream.
    """
    out: str
    backbone_weights: str | None = None
    videos: str | None = None
    frames: str | None = None
    fps: float | None = None
    time_offset: float = 0.0
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
    clip_frames: int = 32
    frame_stride: int = 1
    short_side: int = 256
    seek_after: float = 2.0
    batch_size: int = 8
    workers: int = 2
    device: str = "auto"
    progress: bool = True
    streams: tuple = ("rgb",)
    flow: str = "tvl1"
    flow_weights: str = "default"
    flow_backbone_weights: str | None = None

    def validate(self) -> None:
        from hgrnn.pipeline.flow import canonical_method

        check_video_source(self.videos, self.frames, self.fps)
        streams = tuple(self.streams)
        if not streams or len(set(streams)) != len(streams) or not set(streams) <= set(STREAMS):
            raise ValueError(f"--streams {','.join(streams)}: expected rgb, flow or rgb,flow")
        if "rgb" in streams and self.backbone_weights is None:
            raise ValueError("the rgb stream needs --backbone-weights (rgb_imagenet.pt, a "
                             "fine-tuned checkpoint, or none)")
        if "flow" in streams:
            canonical_method(self.flow)
            if self.flow_backbone_weights is None:
                raise ValueError("the flow stream needs --flow-backbone-weights "
                                 "(flow_imagenet.pt, a `finetune-backbone --stream flow` "
                                 "checkpoint, or none)")
            if self.clip_frames < 2:
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
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.workers < 0:
            raise ValueError(f"--workers must be >= 0, got {self.workers}")
        check_layer(self.person_layer)


def shard_path(out, rank: int) -> str:
    """`<dir>/<stem>.rank<k>.h5` for output `<dir>/<stem>.h5`."""
    out = Path(out)
    return str(out.with_name(f"{out.stem}.rank{rank}.h5"))


def existing_shards(out) -> list[str]:
    """Shard files `<stem>.rank<k>.h5` of output `out` that exist now, sorted by k."""
    out = Path(out)
    pattern = glob.escape(str(out.with_name(out.stem))) + ".rank*.h5"
    found = [p for p in glob.glob(pattern) if re.search(r"\.rank\d+\.h5$", p)]
    return sorted(found, key=lambda p: int(re.search(r"\.rank(\d+)\.h5$", p).group(1)))


def shard_items(items: list, rank: int, world: int) -> list:
    """The items of `rank` when `items` are split round-robin over `world` ranks."""
    return items[rank::world]


def every_second(duration: float, fps: float, time_offset: float) -> list[int]:
    """Integer timestamps ts whose centre frame round((ts - offset) * fps) lies in a video of
    `duration` seconds (frames 0 .. duration * fps - 1)."""
    if not math.isfinite(duration) or duration <= 0:
        return []
    last_frame = int(round(duration * fps)) - 1
    first = math.ceil(time_offset - 0.5 / fps)
    out = []
    ts = first
    while round((ts - time_offset) * fps) <= last_frame:
        if ts - time_offset >= -0.5 / fps:
            out.append(ts)
        ts += 1
    return out


def video_keyframes(path, timestamps, info: dict, time_offset: float):
    """The keyframes to decode in the video (or frame folder) at `path`, `info` its `probe`:
    (inside, outside, warning). timestamps None: every whole second of the video (outside
    empty, warning None). Given timestamps outside the video (before its start or past its
    end) are skipped, not fatal: `outside` lists them and `warning` names the file, them and
    the video's length. Raises VideoError naming the file when no keyframe is left.
    `extract-features` and `detect` both choose keyframes here."""
    if timestamps is None:
        found = every_second(info["duration"], info["fps"], time_offset)
        if not found:
            raise VideoError(f"{path}: duration unknown or zero; pass --keyframes START:END")
        return found, [], None
    inside, outside = split_keyframes(timestamps, info["fps"], info["duration"], time_offset)
    if not outside:
        return inside, [], None
    warning = describe_outside(path, outside, len(timestamps), info["duration"], time_offset)
    if not inside:
        raise VideoError(f"{warning}; {offset_hint(outside, info['fps'], info['duration'])}")
    return inside, outside, warning


# ----------------------------------------------------------------------------- persons

def _persons_by_keyframe(persons, threshold=None, max_persons=None) -> dict:
    """PersonRows -> {video_id: {timestamp: dict(boxes, labels, person_ids, scores)}}.

    Optionally keeps scores >= threshold and the max_persons highest scores (stable)."""
    out: dict = {}
    if len(persons.timestamps) == 0:
        return out
    keys = np.char.add(np.char.add(persons.video_ids.astype(str), "\x00"),
                       persons.timestamps.astype(str))
    order = np.argsort(keys, kind="stable")
    uniq, starts = np.unique(keys[order], return_index=True)
    bounds = list(starts) + [len(order)]
    for i in range(len(uniq)):
        rows = order[bounds[i]:bounds[i + 1]]
        scores = persons.scores[rows]
        if threshold is not None:
            rows = rows[scores >= threshold]
            scores = persons.scores[rows]
        if max_persons is not None and len(rows) > max_persons:
            rows = rows[np.argsort(-scores, kind="stable")[:max_persons]]
            rows.sort()
        vid = str(persons.video_ids[order[bounds[i]]])
        ts = int(persons.timestamps[order[bounds[i]]])
        out.setdefault(vid, {})[ts] = {
            "boxes": persons.boxes[rows].astype(np.float32),
            "labels": persons.labels[rows].astype(np.uint8),
            "person_ids": persons.person_ids[rows].astype(np.int32),
            "scores": persons.scores[rows].astype(np.float32)}
    return out


def _empty_persons(num_classes: int) -> dict:
    return {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros((0, num_classes), np.uint8),
            "person_ids": np.zeros(0, np.int32), "scores": np.zeros(0, np.float32)}


@dataclass
class _Plan:
    """What to extract from one video (plain values; pickled into DataLoader workers)."""
    video_id: str
    path: str
    timestamps: list | None          # None: every second, decided when the video is open
    origin: dict | str | None = None  # timestamp -> its origin (KEYFRAME_ORIGINS), or one
                                      # origin for all; None: every second


#: where a video's keyframes come from, as counted in the run summary
KEYFRAME_ORIGINS = ("annotated and detected", "annotated only", "detected only",
                    "--keyframes", "every second")


def union_keyframes(annotated: dict, detected: dict) -> tuple[dict, dict]:
    """{video: set of timestamps} of the annotations and of the detections -> ({video:
    sorted union}, {video: {timestamp: origin}}) with origins "annotated and detected",
    "annotated only", "detected only"."""
    keyframes, origin = {}, {}
    for vid in sorted(set(annotated) | set(detected)):
        a, d = annotated.get(vid, set()), detected.get(vid, set())
        keyframes[vid] = sorted(a | d)
        origin[vid] = {t: ("annotated and detected" if t in a and t in d else
                           "annotated only" if t in a else "detected only")
                       for t in keyframes[vid]}
    return keyframes, origin


def _read_inputs(cfg: ExtractConfig, label_map):
    """Find the videos, keyframes and persons. Returns (plans, missing, gt, det) where
    missing maps video id -> reason for videos named by a CSV without a file."""
    if cfg.videos is not None:
        found = find_videos(cfg.videos)
        folder, kind = cfg.videos, "video file"
    else:
        found = find_frame_folders(cfg.frames)
        folder, kind = cfg.frames, "frame folder"
    gt = det = None
    outside = {}                        # rows whose action the label map does not hold
    annotated: dict = {}
    detected: dict = {}
    if cfg.annotations:
        # the label map checks action ids as eval-csv does (an id that is no AVA action
        # and not in the map: FILE:LINE error); rows of other AVA actions keep their person
        rows = read_annotations(cfg.annotations, label_map, cfg.exclusions, progress=False,
                                keep_outside_map=True)
        outside["annotations"] = rows.skipped.get("action not in label map (kept)", 0)
        if len(rows) == 0 and not (rows.empty_video_ids is not None
                                   and len(rows.empty_video_ids)):
            raise ValueError(f"{cfg.annotations}: no annotated keyframe (an empty file, or "
                             "every row excluded): nothing to extract")
        gt = _persons_by_keyframe(group_persons(rows, label_map))
        for vid, by_ts in gt.items():
            annotated.setdefault(vid, set()).update(by_ts)
        if rows.empty_video_ids is not None:          # annotated keyframes without persons
            for vid, ts in zip(rows.empty_video_ids, rows.empty_timestamps):
                annotated.setdefault(str(vid), set()).add(int(ts))
    if cfg.detections:
        rows = read_results(cfg.detections, label_map, cfg.exclusions, progress=False,
                            keep_outside_map=True)
        outside["detections"] = rows.skipped.get("action not in label map (kept)", 0)
        det = _persons_by_keyframe(group_persons(rows, label_map), cfg.det_threshold,
                                   cfg.max_persons)
        for vid, ts in zip(rows.video_ids, rows.timestamps):      # also keyframes < threshold
            detected.setdefault(str(vid), set()).add(int(ts))
    keyframes_of, origin_of = union_keyframes(annotated, detected)
    if cfg.annotations or cfg.detections:
        wanted = sorted(keyframes_of)
    else:
        wanted = sorted(found)
    plans, missing = [], {}
    for vid in wanted:
        if vid not in found:
            source = cfg.annotations or cfg.detections
            missing[vid] = f"missing: no {kind} for video {vid} in {folder} (named by {source})"
            continue
        if cfg.keyframes is not None:
            timestamps = list(range(cfg.keyframes[0], cfg.keyframes[1] + 1))
            origin = "--keyframes"
        elif vid in keyframes_of:
            timestamps, origin = keyframes_of[vid], origin_of[vid]
        else:
            timestamps, origin = None, None
        plans.append(_Plan(vid, str(found[vid]), timestamps, origin))
    return plans, missing, gt, det, outside


# ----------------------------------------------------------------------------- decoding

class ClipDataset(IterableDataset):
    """Decodes the videos of `plans` (split over DataLoader workers) into messages, in order
    per video: ("start", vid, timestamps), then ("clips", vid, ts (B,) int64,
    clips uint8 tensor (B, T, H, W, 3), keyframe images list | None, flow (B, T-1, H, W, 2)
    float16 tensor in [-1, 1] | None, seconds spent on that flow) ..., then
    ("done", vid, decoding stats), or ("failed", vid, reason) at any point.
    flow: a `hgrnn.pipeline.flow.FlowComputer` run on every batch here (in the worker), or
    None. Module-level (not a closure) so that spawn-started workers can unpickle it."""

    def __init__(self, plans, cfg: ExtractConfig, keyframe_short_side=None, flow=None):
        self.plans, self.cfg, self.keyframe_short_side = list(plans), cfg, keyframe_short_side
        self.flow = flow

    def __iter__(self):
        worker = get_worker_info()
        mine = self.plans if worker is None else self.plans[worker.id::worker.num_workers]
        for plan in mine:
            yield from self._video(plan)

    def _video(self, plan):
        cfg, key_side = self.cfg, self.keyframe_short_side
        stats: dict = {}
        try:
            info = probe(plan.path, fps=cfg.fps)
            timestamps, outside, warning = video_keyframes(plan.path, plan.timestamps, info,
                                                           cfg.time_offset)
            if outside:
                yield ("outside", plan.video_id, outside, warning)
            span = clip_span_warning(cfg.clip_frames, cfg.frame_stride, info["fps"])
            if span:
                yield ("note", plan.video_id, span)
            yield ("start", plan.video_id, timestamps)
            times = [ts - cfg.time_offset for ts in timestamps]
            batch_ts, batch_clips, batch_keys = [], [], []
            for n, item in enumerate(iter_clips(
                    plan.path, times, cfg.clip_frames, cfg.frame_stride, cfg.short_side,
                    fps=cfg.fps, stats=stats, seek_after=cfg.seek_after,
                    keyframe_short_side=key_side)):
                batch_ts.append(timestamps[n])          # clips come in ascending time order
                batch_clips.append(item[1])
                if key_side is not None:
                    batch_keys.append(torch.from_numpy(item[2]))
                if len(batch_ts) == cfg.batch_size or n == len(times) - 1:
                    clips = torch.from_numpy(np.stack(batch_clips))
                    flow, flow_seconds = None, 0.0
                    if self.flow is not None:
                        before = self.flow.seconds
                        flow = self.flow(clips).half()       # halves the worker -> main copy
                        flow_seconds = self.flow.seconds - before
                    yield ("clips", plan.video_id, np.asarray(batch_ts, np.int64), clips,
                           batch_keys if key_side is not None else None, flow, flow_seconds)
                    batch_ts, batch_clips, batch_keys = [], [], []
            yield ("done", plan.video_id, dict(stats))
        except VideoError as exc:
            yield ("failed", plan.video_id, str(exc))
        except Exception as exc:  # noqa: BLE001 - one bad video must not stop the run
            yield ("failed", plan.video_id, f"{plan.path}: {type(exc).__name__}: {exc}")


# ----------------------------------------------------------------------------- detector

# person detection: hgrnn.pipeline.detect (load_person_detector, detect_persons), the one
# detection path shared with `hgrnn detect`


# ----------------------------------------------------------------------------- features

def _batch_features(backbone, projection, x, sets, device, autocast, person_layer="mixed_5c"):
    """Clip and person features of one batch of one stream.

    x: the network input (B, c, T, H, W) float on `device` (RGB: `normalize_frames`, c = 3;
    flow: `flow_to_input`, c = 2); sets: person dicts (key "boxes" (n_i, 4) normalised xyxy),
    the first B for clips 0..B-1 (gt), optionally B more for the same clips (det).
    Returns (clip features (B, C) float32 numpy, [per set (n_i, C) float32 numpy])."""
    b = x.shape[0]
    # RoI rows [clip index, x1, y1, x2, y2]; set i belongs to clip i % B
    rois = np.concatenate(
        [np.zeros((0, 5), np.float32)]
        + [np.concatenate([np.full((len(s["boxes"]), 1), i % b, np.float32),
                           np.asarray(s["boxes"], np.float32).reshape(-1, 4)], 1)
           for i, s in enumerate(sets)])
    with torch.no_grad():
        with autocast:
            # Mixed_5c map, and the map person features come from (itself or Mixed_4f)
            fmap, pmap = backbone_maps(backbone, x, person_layer)    # (B, 1024, T', H', W')
            feats = pooled_person_features(backbone, pmap, torch.from_numpy(rois).to(device),
                                           x.shape[-2:], person_layer)   # (P, 1024)
        feats = feats.float()
        clip_feat = fmap.float().mean(dim=(2, 3, 4))                   # (B, 1024)
        if projection is not None:
            clip_feat, feats = projection(clip_feat), projection(feats)   # (B, D), (P, D)
    feats = feats.float().cpu().numpy()
    split = np.split(feats, np.cumsum([len(s["boxes"]) for s in sets])[:-1])
    return clip_feat.float().cpu().numpy(), split


def _stream_features(models, streams, clips, flow, sets, device, autocast,
                     person_layer="mixed_5c"):
    """`_batch_features` of every stream, side by side in `streams` order.

    models: stream -> (backbone, projection); clips uint8 (B, T, H, W, 3); flow (B, T-1, H,
    W, 2) scaled flow or None. Returns (clip features (B, sum C_s), [per set (n_i, sum C_s)])."""
    from hgrnn.pipeline.flow import flow_to_input

    clip_parts, set_parts = [], []
    for stream in streams:
        backbone, projection = models[stream]
        if stream == "rgb":
            x = normalize_frames(clips.to(device, non_blocking=True))      # (B, 3, T, H, W)
        else:
            x = flow_to_input(flow.to(device, non_blocking=True))         # (B, 2, T-1, H, W)
        clip_feat, split = _batch_features(backbone, projection, x, sets, device, autocast,
                                           person_layer)
        clip_parts.append(clip_feat)
        set_parts.append(split)
    if len(streams) == 1:
        return clip_parts[0], set_parts[0]
    return (np.concatenate(clip_parts, 1),
            [np.concatenate(parts, 1) for parts in zip(*set_parts)])


def _person_set(entries, ground_truth: bool) -> PersonSet:
    """[(person dict, feats (n, C)) per keyframe] -> PersonSet (labels for ground truth;
    person ids for ground truth, and for detections whose CSV has them: `hgrnn track`'s
    9th column, kept as det/person_id)."""
    ids = [p.get("person_ids") for p, _ in entries]       # None: from the detector
    tracked = all(i is not None for i in ids) and any((i >= 0).any() for i in ids)
    return PersonSet.from_lists(
        [p["boxes"] for p, _ in entries], [f for _, f in entries],
        [p["scores"] for p, _ in entries],
        [p["labels"] for p, _ in entries] if ground_truth else None,
        ids if ground_truth or tracked else None)


# ----------------------------------------------------------------------------- distributed

@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    active: bool = False

    @classmethod
    def from_env(cls) -> "_Dist":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        if not torch_dist.is_initialized():
            # gloo on CPU for barriers/object gathers only; ranks may wait hours for others
            torch_dist.init_process_group("gloo", timeout=datetime.timedelta(days=7))
        return cls(torch_dist.get_rank(), torch_dist.get_world_size(),
                   int(os.environ.get("LOCAL_RANK", "0")), True)

    def barrier(self):
        if self.active:
            torch_dist.barrier()

    def gather(self, obj) -> list:
        if not self.active:
            return [obj]
        out = [None] * self.world
        torch_dist.all_gather_object(out, obj)
        return out


def _complete_videos(path) -> set:
    """Complete video ids of an existing store file (empty set when absent)."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return set()
    with open_h5(path) as f:
        return set(video_names(f))


# ----------------------------------------------------------------------------- entry point

def _stage_config(cfg: ExtractConfig, backbone_meta, detector_meta, feature_dim: int,
                  projection_used: bool, *, flow_backbone_meta=None, flow_meta=None,
                  layout=None) -> dict:
    """The extract stage's config as recorded in the store: what was actually used, not what
    the options defaulted to (no projection without a fine-tuned checkpoint, no detector
    weights without a detector). backbone_meta / flow_backbone_meta: `load_backbone` metas
    of the RGB / flow I3D (None without that stream); flow_meta: FlowComputer.meta();
    layout: the store's streams [[name, start, stop], ...] (default: RGB only). Without a
    flow stream the flow settings are None (so that stores written before the flow stream
    existed compare equal)."""
    metas = {"rgb": backbone_meta, "flow": flow_backbone_meta}
    layout = layout or [["rgb", 0, feature_dim]]
    config = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in RUN_ONLY_FIELDS}
    config["keyframes"] = list(cfg.keyframes) if cfg.keyframes else None
    config["projection"] = projection_used
    if not cfg.detector:
        config["detector_weights"] = None
    config["streams"] = list(cfg.streams)

    def backbone(stream):
        meta = metas.get(stream)
        return None if meta is None else {k: meta.get(k) for k in
                                          ("kind", "path", "sha256", "feature_dim", "seed")}

    if "flow" not in cfg.streams:
        config.update(flow=None, flow_weights=None, flow_backbone_weights=None)
    else:
        config.update(flow_backbone=backbone("flow"), flow_meta=flow_meta,
                      flow_normalisation="flow px clipped to [-20, 20], / 20 ([-1, 1])")
    config.update(
        backbone=backbone("rgb"), stream_layout=layout,
        input_normalisation="rgb/127.5 - 1 ([-1, 1])", feature_dim=feature_dim,
        clip_pool="mean over T', H', W' of I3D Mixed_5c",
        person_pool=("mean over T', RoIAlign 7x7 (aligned, stride 32), max over 7x7"
                     if cfg.person_layer == "mixed_5c" else
                     "RoIAlign 14x14 (aligned, stride 16) of Mixed_4f per T' slice, "
                     "MaxPool3d_5a + Mixed_5b + Mixed_5c, mean over T'', max over 7x7"),
        detector_meta=detector_meta,
        excluded_keyframes=_exclusions_entry(cfg.exclusions))
    return config


def _exclusions_entry(path) -> dict | None:
    """The --exclusions file as stored in the extract config: {"path", "sha256", "keyframes":
    sorted [[video_id, timestamp], ...]}, so that `eval` applies the same exclusions by
    default (`hgrnn.hgrnn_head.infer.stored_exclusions`); None without one."""
    if not path:
        return None
    from hgrnn.data.ava import read_exclusions
    from hgrnn.pipeline.i3d import sha256_file

    return {"path": str(path), "sha256": sha256_file(path),
            "keyframes": [[v, int(t)] for v, t in sorted(read_exclusions(path))]}


# Settings that change what the features of a video are: resuming a store with other values
# would mix two kinds of features in one store without any trace, so it is refused.
FEATURE_FIELDS = ("fps", "time_offset", "clip_frames", "frame_stride", "short_side",
                  "projection", "feature_dim", "detector", "det_threshold", "max_persons",
                  "det_short_side", "person_layer", "streams", "flow", "flow_weights")
# what a store written before a field existed holds
_FIELD_DEFAULTS = {"streams": ["rgb"], "person_layer": "mixed_5c"}


def _check_resume_settings(paths, stage: dict) -> None:
    """Raise ValueError when a store (or shard) in `paths` was extracted with other
    feature settings than `stage` (see FEATURE_FIELDS, plus the backbone weights' sha256)."""
    for path in paths:
        if not os.path.exists(path) or os.path.getsize(path) == 0:
            continue
        with open_h5(path) as f:
            old = read_info(f, path).configs.get("extract")
        if not old:
            continue
        changed = [f"{k} {old.get(k, _FIELD_DEFAULTS.get(k))!r} -> {stage.get(k)!r}"
                   for k in FEATURE_FIELDS if old.get(k, _FIELD_DEFAULTS.get(k)) != stage.get(k)]
        for key, what in (("backbone", "backbone"), ("flow_backbone", "flow backbone"),
                          ("flow_meta", "RAFT")):
            old_sha = (old.get(key) or {}).get("sha256")
            new_sha = (stage.get(key) or {}).get("sha256")
            if old_sha != new_sha:
                changed.append(f"{what} weights sha256 {str(old_sha)[:12]} -> {str(new_sha)[:12]}")
        old_backbone, backbone = old.get("backbone") or {}, stage.get("backbone") or {}
        if (backbone.get("kind") == "random" and old_backbone.get("sha256") == backbone.get("sha256")
                and old_backbone.get("seed") != backbone.get("seed")):
            # random weights have no file to hash: the seed that made them identifies them
            changed.append(f"random backbone seed {old_backbone.get('seed')!r} -> "
                           f"{backbone.get('seed')!r}")
        if changed:
            raise ValueError(f"{path}: was extracted with other feature settings "
                             f"({'; '.join(changed)}); resuming would mix two kinds of "
                             f"features in one store. Use the same settings, or another --out.")


def _device_for(pref: str, dist: "_Dist", cuda_available: bool) -> torch.device:
    """The device of this rank: "auto" -> cuda:LOCAL_RANK when CUDA is available, else cpu;
    a bare "cuda" under torchrun -> cuda:LOCAL_RANK (every rank its own GPU, not all GPU 0);
    anything else ("cpu", "cuda:N") as given."""
    if pref == "auto":
        return torch.device(f"cuda:{dist.local_rank}" if cuda_available else "cpu")
    if pref == "cuda" and dist.active:
        return torch.device(f"cuda:{dist.local_rank}")
    return torch.device(pref)


def _load_models(cfg: ExtractConfig, device):
    """(models {stream: (backbone, projection or None)}, the store's stream layout [[name,
    start, stop], ...], the FlowComputer or None, the one to hand to the decoding workers
    or None, detector or None, stage config)."""
    models, metas, layout = {}, {}, []
    for stream in cfg.streams:
        weights = cfg.backbone_weights if stream == "rgb" else cfg.flow_backbone_weights
        backbone, projection, metas[stream] = load_backbone(weights, device, stream=stream)
        meta = metas[stream]
        if meta["kind"] == "finetune" and layer_of(meta.get("config")) != cfg.person_layer:
            raise ValueError(f"{weights}: was fine-tuned with person features from "
                             f"{layer_of(meta.get('config'))}, not {cfg.person_layer}; pass "
                             f"--person-layer {layer_of(meta.get('config'))} (the features must "
                             f"be pooled the way the checkpoint was trained)")
        if not cfg.projection:
            projection = None
        models[stream] = (backbone, projection)
        dim = projection.out_features if projection is not None else 1024
        start = layout[-1][2] if layout else 0
        layout.append([stream, start, start + dim])
    flow = flow_meta = worker_flow = None
    if "flow" in cfg.streams:
        from hgrnn.pipeline.flow import FlowComputer, flow_in_workers

        in_workers = flow_in_workers(cfg.flow, device)
        flow = FlowComputer(cfg.flow, cfg.flow_weights, "cpu" if in_workers else device)
        flow_meta = flow.meta()
        worker_flow = flow if in_workers else None
    detector, dmeta = None, None
    if cfg.detector:
        detector = load_person_detector(cfg.detector, weights=cfg.detector_weights,
                                        device=device, min_score=cfg.det_threshold,
                                        max_persons=cfg.max_persons,
                                        short_side=cfg.det_short_side)
        dmeta = detector.meta
    stage = _stage_config(cfg, metas.get("rgb"), dmeta, layout[-1][2],
                          any(p is not None for _, p in models.values()),
                          flow_backbone_meta=metas.get("flow"), flow_meta=flow_meta, layout=layout)
    return models, layout, flow, worker_flow, detector, stage


def extract_features(cfg: ExtractConfig) -> dict:
    """Run the extraction stage (see the module docstring). Returns a summary dict: written,
    skipped (already complete), failed {video_id: reason}, keyframes, keyframe_origins
    {origin: keyframes of the written videos} (KEYFRAME_ORIGINS), persons {gt, det},
    decoded_frames, needed_frames, seconds, out. Under torchrun every rank returns the
    summary of all ranks."""
    cfg.validate()
    started = time.time()
    dist = _Dist.from_env()
    label_map = load_label_map(cfg.label_map)
    plans, missing, gt, det, outside = _read_inputs(cfg, label_map)

    device = _device_for(cfg.device, dist, torch.cuda.is_available())
    if device.type == "cuda":
        # the rank's own GPU as the current device: pin_memory and any "cuda" tensor of a
        # library otherwise land on (and open a context on) GPU 0 in every rank
        torch.cuda.set_device(device)
    models, layout, flow, worker_flow, detector, stage = _load_models(cfg, device)

    # -- what is done already (read before anyone writes), who does what
    shards = existing_shards(cfg.out)
    _check_resume_settings([cfg.out, *shards], stage)
    done = _complete_videos(cfg.out)
    for s in shards:
        done |= _complete_videos(s)
    dist.barrier()
    missing = {vid: reason for vid, reason in missing.items() if vid not in done}
    todo = [p for p in plans if p.video_id not in done]
    mine = shard_items(todo, dist.rank, dist.world)
    my_path = shard_path(cfg.out, dist.rank) if (dist.active or shards) else cfg.out

    show = cfg.progress and dist.rank == 0
    with StoreWriter(my_path, feature_dim=layout[-1][2], label_map=label_map,
                     configs={"extract": stage}, streams=layout) as writer:
        run = _Run(writer, mine, show, dist)
        if dist.rank == 0:
            run.record_missing(missing)
        loader = torch.utils.data.DataLoader(
            ClipDataset(mine, cfg, cfg.det_short_side if detector is not None else None,
                        worker_flow),
            batch_size=None, num_workers=cfg.workers if mine else 0,
            pin_memory=device.type == "cuda",
            prefetch_factor=2 if cfg.workers > 0 and mine else None,
            persistent_workers=False)
        autocast = torch.autocast("cuda", dtype=torch.float16, enabled=device.type == "cuda")
        num_classes = len(label_map)
        for message in loader:
            kind, vid = message[0], message[1]
            if kind == "start":
                run.start(vid, timestamps=message[2])
            elif kind == "outside":
                run.outside_keyframes(vid, message[2], text=message[3])
            elif kind == "note":
                run.note(vid, message[2])
            elif kind == "clips":
                _, _, ts, clips, keys, clip_flow, seconds = message
                if flow is not None and clip_flow is None:       # RAFT on the GPU, here
                    before = flow.seconds
                    clip_flow = flow(clips.to(device, non_blocking=True))
                    seconds = flow.seconds - before
                if clip_flow is not None:
                    run.add_flow(clip_flow.shape[0] * clip_flow.shape[1], seconds)
                gt_sets = [(gt or {}).get(vid, {}).get(int(t), _empty_persons(num_classes))
                           for t in ts]
                if detector is not None:
                    det_sets = detect_persons(detector, keys, cfg.det_threshold, cfg.max_persons)
                elif det is not None:
                    det_sets = [det.get(vid, {}).get(int(t), _empty_persons(num_classes)) for t in ts]
                else:
                    det_sets = None
                clip_feat, split = _stream_features(models, cfg.streams, clips, clip_flow,
                                                    gt_sets + (det_sets or []), device, autocast,
                                                    cfg.person_layer)
                run.add_batch(vid, ts, clip_feat, gt_sets, det_sets, split)
            elif kind == "done":
                run.write_video(vid, stats=message[2], with_gt=gt is not None)
            elif kind == "failed":
                run.fail(vid, reason=message[2])
        run.close()

    everyone = dist.gather(run.counts)
    if dist.rank == 0 and (dist.active or shards):
        _merge_shards(cfg.out, show)
    dist.barrier()
    summary = _summary(cfg.out, everyone, skipped=len(done & {p.video_id for p in plans}),
                       seconds=time.time() - started, ranks=dist.world)
    summary["rows_outside_label_map"] = outside
    return summary


class _Run:
    """The main process's side of one extraction: gathers each video's batches, writes the
    video when its last batch is in, records failures, counts, and drives the progress bar."""

    def __init__(self, writer, plans, show: bool, dist: _Dist):
        self.writer = writer
        self.show = show             # failures are said as they happen when a bar is shown
        self.plan_of = {p.video_id: p for p in plans}
        self.state: dict = {}        # video id -> accumulated results
        self.failed: dict = {}
        self.outside: dict = {}      # video id -> keyframes skipped as outside the video
        self.notes: set = set()
        self.counts = {"written": 0, "failed": self.failed, "keyframes": 0,
                       "persons": {"gt": 0, "det": 0}, "decoded_frames": 0, "needed_frames": 0,
                       "outside": self.outside,
                       "keyframe_origins": dict.fromkeys(KEYFRAME_ORIGINS, 0),
                       "flow_pairs": 0, "flow_seconds": 0.0}
        total = sum(len(p.timestamps) for p in plans if p.timestamps is not None)
        self.bar = progress_bar(total=total, unit="kf",
                        desc="extract" if not dist.active else f"extract rank 0/{dist.world}",
                        disable=not show, dynamic_ncols=True, smoothing=0.05)

    def record_missing(self, missing: dict) -> None:
        """Videos named by the CSVs without a file: recorded as failed up front."""
        for vid, reason in missing.items():
            self.writer.record_failure(vid, reason)
            self.failed[vid] = reason
        if missing:
            shown = ", ".join(list(missing)[:10]) + (" ..." if len(missing) > 10 else "")
            tqdm.write(f"extract-features: {len(missing)} video(s) named by the CSVs are "
                       f"missing (recorded as failed): {shown}")

    def outside_keyframes(self, vid, timestamps, text: str) -> None:
        """Keyframes of `vid` outside the video: skipped (not fatal), reported."""
        self.outside[vid] = len(timestamps)
        self.bar.total -= len(timestamps)
        tqdm.write(f"extract-features: skipped {text}")

    def note(self, vid, text: str) -> None:
        """A warning about a video's settings, printed once per run."""
        if text not in self.notes:
            self.notes.add(text)
            tqdm.write(f"extract-features: warning: {vid}: {text}")

    def start(self, vid, timestamps) -> None:
        self.state[vid] = {"ts": [], "clip": [], "gt": [], "det": [], "planned": len(timestamps)}
        if self.plan_of[vid].timestamps is None:      # every-second: count known now
            self.bar.total += len(timestamps)
            self.bar.refresh()

    def add_flow(self, pairs: int, seconds: float) -> None:
        """A batch's flow: frame pairs and the seconds they took (in a worker or here)."""
        self.counts["flow_pairs"] += int(pairs)
        self.counts["flow_seconds"] += float(seconds)
        self._postfix()

    def _postfix(self) -> None:
        c, extra = self.counts, {}
        if c["flow_seconds"] > 0:   # seconds summed over the workers: the rate of one worker
            extra["flow"] = f"{c['flow_pairs'] / c['flow_seconds']:.1f} pairs/s/worker"
        self.bar.set_postfix(done=c["written"], failed=len(self.failed), **extra, refresh=False)

    def add_batch(self, vid, ts, clip_feat, gt_sets, det_sets, split) -> None:
        """One batch's features: clip_feat (n, C); split: person features of gt_sets, then
        of det_sets (when not None)."""
        st, n = self.state[vid], len(ts)
        st["ts"].extend(int(t) for t in ts)
        st["clip"].append(clip_feat)
        st["gt"].extend((s, f) for s, f in zip(gt_sets, split[:n]))
        if det_sets is not None:
            st["det"].extend((s, f) for s, f in zip(det_sets, split[n:]))
        self.bar.update(n)
        self.counts["keyframes"] += n

    def write_video(self, vid, stats: dict, with_gt: bool) -> None:
        st = self.state.pop(vid)
        ps = {}
        if with_gt:
            ps["gt"] = _person_set(st["gt"], ground_truth=True)
        if st["det"]:
            ps["det"] = _person_set(st["det"], ground_truth=False)
        try:
            self.writer.add_video(vid, np.asarray(st["ts"], np.int64),
                                  np.concatenate(st["clip"]), gt=ps.get("gt"),
                                  det=ps.get("det"), width=stats.get("width"),
                                  height=stats.get("height"))
        except StoreError as exc:          # bad input for this video: record, go on
            self.writer.record_failure(vid, str(exc))
            self.failed[vid] = str(exc)
            self._say_failed(vid, str(exc))
            return
        c = self.counts
        c["written"] += 1
        for name, p in ps.items():
            c["persons"][name] += len(p.boxes)
        origin = self.plan_of[vid].origin or "every second"
        for t in st["ts"]:              # the keyframes written (skipped ones are not)
            c["keyframe_origins"][origin[t] if isinstance(origin, dict) else origin] += 1
        c["decoded_frames"] += stats.get("decoded_frames", 0)
        c["needed_frames"] += stats.get("converted_frames", 0)
        self._postfix()

    def fail(self, vid, reason: str) -> None:
        st = self.state.pop(vid, None)   # results of its earlier batches are dropped
        plan = self.plan_of[vid]
        planned = (len(plan.timestamps) if plan.timestamps is not None
                   else st["planned"] if st is not None else 0) - self.outside.get(vid, 0)
        self.bar.total -= planned - (len(st["ts"]) if st is not None else 0)  # ends at 100%
        self.writer.record_failure(vid, reason)
        self.failed[vid] = reason
        self._postfix()
        self._say_failed(vid, reason)

    def _say_failed(self, vid, reason: str) -> None:
        if self.show:
            tqdm.write(f"extract-features: FAILED {vid}: {reason}")

    def close(self) -> None:
        self.bar.close()


def _merge_shards(out: str, show: bool) -> None:
    """Merge the output (if it exists) and every rank shard into the output; delete the
    shards."""
    all_shards = existing_shards(out)
    inputs = ([out] if os.path.exists(out) else []) + all_shards
    merging = out + ".merging.h5"
    merge_stores(merging, inputs, overwrite=True, progress=show)
    os.replace(merging, out)
    for s in all_shards:
        os.remove(s)


def _summary(out, parts: list, skipped: int, seconds: float, ranks: int) -> dict:
    """The run's summary from every rank's counts."""
    summary = {"out": str(out), "written": 0, "skipped": skipped,
               "failed": {}, "keyframes": 0, "persons": {"gt": 0, "det": 0},
               "keyframe_origins": dict.fromkeys(KEYFRAME_ORIGINS, 0),
               "decoded_frames": 0, "needed_frames": 0, "outside": {},
               "flow_pairs": 0, "flow_seconds": 0.0,
               "seconds": seconds, "ranks": ranks, "rows_outside_label_map": {}}
    for part in parts:
        summary["written"] += part["written"]
        summary["failed"].update(part["failed"])
        summary["outside"].update(part["outside"])
        summary["keyframes"] += part["keyframes"]
        for k in ("gt", "det"):
            summary["persons"][k] += part["persons"][k]
        for k, n in part["keyframe_origins"].items():
            summary["keyframe_origins"][k] += n
        for k in ("decoded_frames", "needed_frames", "flow_pairs", "flow_seconds"):
            summary[k] += part[k]
    return summary


def format_summary(summary: dict, failures_shown: bool = False) -> str:
    """Human-readable end-of-run summary (several lines). failures_shown: the FAILED lines
    were printed as they happened, so they are counted here, not repeated."""
    s = summary
    lines = [f"extract-features: {s['out']}: {s['written']} video(s) written "
             f"({s['keyframes']} keyframes, {s['persons']['gt']} gt persons, "
             f"{s['persons']['det']} det persons), {s['skipped']} already complete, "
             f"{len(s['failed'])} failed, {s['seconds']:.1f} s"
             + (f" on {s['ranks']} ranks" if s.get("ranks", 1) > 1 else "")]
    origins = {k: n for k, n in s.get("keyframe_origins", {}).items() if n}
    if origins:
        lines.append("  keyframes written: " + ", ".join(f"{n} {k}" for k, n in origins.items())
                     + ("  (detected only: no ground truth there, their detections count as "
                        "the official evaluation counts them)" if origins.get("detected only")
                        else ""))
    if s["needed_frames"]:
        lines.append(f"  decoded {s['decoded_frames']} frames, {s['needed_frames']} of them used by clips "
                     f"({s['decoded_frames'] / s['needed_frames']:.3f}x)")
    for source, n in (s.get("rows_outside_label_map") or {}).items():
        if n:
            lines.append(f"  {n} {source} row(s) with actions outside the label map: their "
                         "persons are kept, without those labels")
    if s.get("outside"):
        lines.append("  " + summarize_outside(s["outside"]))
    if s.get("flow_pairs"):
        lines.append(f"  flow: {s['flow_pairs']} frame pairs in {s['flow_seconds']:.1f} s of "
                     f"flow computation ({s['flow_pairs'] / max(s['flow_seconds'], 1e-9):.1f} "
                     f"pairs/s per worker)")
    if failures_shown and s["failed"]:
        lines.append(f"  {len(s['failed'])} failed video(s) listed above; `hgrnn inspect "
                     f"{s['out']}` lists every recorded failure")
    else:
        for vid, reason in sorted(s["failed"].items()):
            lines.append(f"  FAILED {vid}: {reason}")
    return "\n".join(lines)
