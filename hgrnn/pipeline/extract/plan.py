"""What to extract: the videos, their keyframes (and where each came from) and their persons
(ground truth of --annotations, detections of --detections), read once in the main process."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hgrnn.data.ava import group_persons, read_annotations, read_results
from hgrnn.data.video import find_frame_folders, find_videos
from hgrnn.pipeline.extract.config import ExtractConfig

#: where a video's keyframes come from, as counted in the run summary
KEYFRAME_ORIGINS = ("annotated and detected", "annotated only", "detected only",
                    "--keyframes", "every second")


@dataclass
class VideoPlan:
    """What to extract from one video (plain values; pickled into DataLoader workers)."""
    video_id: str
    path: str
    timestamps: list | None          # None: every second, decided when the video is open
    origin: dict | str | None = None  # timestamp -> its origin (KEYFRAME_ORIGINS), or one
                                      # origin for all; None: every second


@dataclass
class Inputs:
    """`read_inputs`' answer. plans: the videos to extract; missing: video id -> reason for
    videos named by a CSV without a file; gt / det: {video_id: {timestamp: person dict}} of
    --annotations / --detections (None without that file; det holds the persons kept by
    det_threshold and max_persons); outside_map: {"annotations" / "detections": rows whose
    action the label map does not hold}; below_threshold: detections dropped by
    det_threshold."""
    plans: list
    missing: dict
    gt: dict | None
    det: dict | None
    outside_map: dict
    below_threshold: int = 0


def persons_by_keyframe(persons, threshold=None, max_persons=None) -> dict:
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


def empty_persons(num_classes: int) -> dict:
    """The person dict of a keyframe without persons."""
    return {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros((0, num_classes), np.uint8),
            "person_ids": np.zeros(0, np.int32), "scores": np.zeros(0, np.float32)}


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


def read_inputs(cfg: ExtractConfig, label_map) -> Inputs:
    """Find the videos, keyframes and persons of `cfg`."""
    if cfg.videos is not None:
        found = find_videos(cfg.videos)
        folder, kind = cfg.videos, "video file"
    else:
        found = find_frame_folders(cfg.frames)
        folder, kind = cfg.frames, "frame folder"
    gt = det = None
    outside = {}                        # rows whose action the label map does not hold
    below_threshold = 0
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
        gt = persons_by_keyframe(group_persons(rows, label_map))
        for vid, by_ts in gt.items():
            annotated.setdefault(vid, set()).update(by_ts)
        if rows.empty_video_ids is not None:          # annotated keyframes without persons
            for vid, ts in zip(rows.empty_video_ids, rows.empty_timestamps):
                annotated.setdefault(str(vid), set()).add(int(ts))
    if cfg.detections:
        rows = read_results(cfg.detections, label_map, cfg.exclusions, progress=False,
                            keep_outside_map=True)
        outside["detections"] = rows.skipped.get("action not in label map (kept)", 0)
        persons = group_persons(rows, label_map)
        below_threshold = int(np.count_nonzero(persons.scores < cfg.det_threshold))
        det = persons_by_keyframe(persons, cfg.det_threshold, cfg.max_persons)
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
        plans.append(VideoPlan(vid, str(found[vid]), timestamps, origin))
    return Inputs(plans, missing, gt, det, outside, below_threshold)
