"""Decoding in DataLoader workers: `ClipDataset` turns the videos of a list of `VideoPlan`s
into messages, one small dataclass per kind, in this order per video:

  Outside   (optional) requested keyframes outside the video, skipped
  Note      (optional) a warning about the video's settings (a clip spanning too long)
  Start     the keyframes that will be decoded
  Clips ... one batch of clips (and their keyframe images, their flow) each
  Done      the video's last batch is in (decoding stats)
  Failed    at any point: the video could not be decoded; nothing more of it follows
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from hgrnn.data.keyframes import clip_span_warning, video_keyframes
from hgrnn.data.video import VideoError, iter_clips, probe
from hgrnn.pipeline.extract.config import ExtractConfig


@dataclass
class Outside:
    """Keyframes of the video outside it (skipped, not fatal); text: the warning."""
    video_id: str
    timestamps: list
    text: str


@dataclass
class Note:
    """A warning about the video's settings."""
    video_id: str
    text: str


@dataclass
class Start:
    """The keyframes of the video that its Clips messages will cover, ascending."""
    video_id: str
    timestamps: list


@dataclass
class Clips:
    """One batch of B clips of one video, in ascending time order.

    timestamps (B,) int64; clips uint8 tensor (B, T, H, W, 3); keyframes: the keyframe
    images for the detector (list of B uint8 (h, w, 3) tensors) or None; flow: (B, T-1, H,
    W, 2) float16 tensor in [-1, 1] computed in the worker, or None; flow_seconds: the
    seconds that flow took."""
    video_id: str
    timestamps: np.ndarray
    clips: torch.Tensor
    keyframes: list | None = None
    flow: torch.Tensor | None = None
    flow_seconds: float = 0.0

    def pin_memory(self) -> "Clips":
        """Called by the DataLoader's pin_memory thread (pin_memory=True on CUDA)."""
        self.clips = self.clips.pin_memory()
        if self.flow is not None:
            self.flow = self.flow.pin_memory()
        if self.keyframes is not None:
            self.keyframes = [k.pin_memory() for k in self.keyframes]
        return self


@dataclass
class Done:
    """The video's last batch is in; stats: `iter_clips`' decoding stats."""
    video_id: str
    stats: dict


@dataclass
class Failed:
    """The video cannot be extracted (reason names the file)."""
    video_id: str
    reason: str


class ClipDataset(IterableDataset):
    """Decodes the videos of `plans` (split over DataLoader workers) into the messages of
    this module. keyframe_short_side: short side of the keyframe images for the detector
    (None: no images). flow: a `hgrnn.pipeline.flow.FlowComputer` run on every batch here
    (in the worker), or None. Module-level (not a closure) so that spawn-started workers can
    unpickle it."""

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
                yield Outside(plan.video_id, outside, warning)
            span = clip_span_warning(cfg.clip_frames, cfg.frame_stride,
                                     cfg.resample_fps or info["fps"])
            if span:
                yield Note(plan.video_id, span)
            yield Start(plan.video_id, timestamps)
            times = [ts - cfg.time_offset for ts in timestamps]
            batch_ts, batch_clips, batch_keys = [], [], []
            for n, item in enumerate(iter_clips(
                    plan.path, times, cfg.clip_frames, cfg.frame_stride, cfg.short_side,
                    fps=cfg.fps, stats=stats, seek_after=cfg.seek_after,
                    keyframe_short_side=key_side, resample_fps=cfg.resample_fps)):
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
                    yield Clips(plan.video_id, np.asarray(batch_ts, np.int64), clips,
                                batch_keys if key_side is not None else None, flow,
                                flow_seconds)
                    batch_ts, batch_clips, batch_keys = [], [], []
            yield Done(plan.video_id, dict(stats))
        except VideoError as exc:
            yield Failed(plan.video_id, str(exc))
        except Exception as exc:  # noqa: BLE001 - one bad video must not stop the run
            yield Failed(plan.video_id, f"{plan.path}: {type(exc).__name__}: {exc}")


def make_loader(plans, cfg: ExtractConfig, device: torch.device, keyframe_short_side=None,
                flow=None) -> DataLoader:
    """The DataLoader over `ClipDataset(plans, ...)`: cfg.workers processes decode ahead of
    the model (none when there is nothing to do); pinned memory on CUDA."""
    return DataLoader(
        ClipDataset(plans, cfg, keyframe_short_side, flow),
        batch_size=None, num_workers=cfg.workers if plans else 0,
        pin_memory=device.type == "cuda",
        prefetch_factor=2 if cfg.workers > 0 and plans else None,
        persistent_workers=False)
