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
  backbone    I3D Mixed_5c map fmap (B, 1024, T', H', W')  (`hgrnn.pipeline.i3d`), or with
              --backbone NAME the last map of a torchvision video model
              (`hgrnn.pipeline.backbones`: its own layer, stride, dim C, clip settings and
              normalisation)
  clip feat   fmap averaged over time and space (`i3d.clip_features`)      (B, 1024)
  person feat fmap averaged over time, RoIAlign of each box (normalised xyxy scaled to the
              map by the backbone's stride, 7x7 samples), spatial max        (P, 1024)
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
one video, so decoding runs ahead of the model (the messages: `loader`). The workers also compute the flow of their
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

The modules, in the order a run uses them:

  config    `ExtractConfig` (the options and their defaults; light: the CLI reads it)
  plan      videos, keyframes and their origins, persons of the CSVs (`read_inputs`)
  stage     the stage config recorded in the store, the resume check against it
  shards    resume and torchrun: complete videos, ranks (`Dist`), shard files, their merge
  loader    decoding in DataLoader workers; one dataclass per message kind
  features  the backbones of the streams and the clip / person features of a batch
  run       `extract_features`, the main loop, writing, the summary (`format_summary`)

`from hgrnn.pipeline.extract import NAME` works for the names below; all but the config
are imported on first use, so that importing the config (the CLI does) needs no torch.
"""

from __future__ import annotations

import importlib

from hgrnn.pipeline.extract.config import (DETECTORS, FEATURE_FIELDS, RUN_ONLY_FIELDS, STREAMS,
                                           ExtractConfig)

#: name -> the module (of this package) that defines it, imported on first use
_LAZY = {
    "KEYFRAME_ORIGINS": "plan", "VideoPlan": "plan", "read_inputs": "plan",
    "union_keyframes": "plan",
    "stage_config": "stage", "check_resume_settings": "stage",
    "Dist": "shards", "device_for": "shards", "existing_shards": "shards",
    "shard_items": "shards", "shard_path": "shards",
    "ClipDataset": "loader",
    "StreamModels": "features", "load_models": "features",
    "extract_features": "run", "format_summary": "run",
}

__all__ = ["DETECTORS", "FEATURE_FIELDS", "RUN_ONLY_FIELDS", "STREAMS", "ExtractConfig",
           *_LAZY]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
