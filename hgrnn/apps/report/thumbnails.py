"""Step 5 of `hgrnn report` (with videos): the galleries' thumbnails, cut from the
keyframes' frames, decoded as `hgrnn visualize` decodes (:mod:`hgrnn.data.video`, one
sequential pass per video, the keyframe's centre frame). A false positive shows its result
box (orange) and the person it overlaps most (green); a missed box shows the box (green)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np

from hgrnn.apps.report.match import f64
from hgrnn.data.video import VideoError, find_videos, iter_clips
from hgrnn.pipeline.visualize import GT_COLOR, PRED_COLORS, box_pixels

THUMB_HEIGHT = 128             # thumbnail height in pixels
RESULT_COLOR = PRED_COLORS[0]


def render_thumbnails(analysis: dict, videos_dir, out_dir, time_offset=0.0) -> dict:
    """Cut the gallery thumbnails of `analysis` from the videos in `videos_dir`
    (``<video_id>.<ext>``) into ``out_dir/thumbs/``; each pick gets "thumb" (the path
    relative to out_dir). One sequential decode per video (:func:`hgrnn.data.video.
    iter_clips`, the keyframe's centre frame at round((ts - time_offset) * fps)). A video
    that is missing or cannot be decoded: one warning naming it, its thumbnails left out.
    Returns {"videos": decoded, "missing": [ids], "failed": [ids], "thumbnails": n,
    "seconds": s}."""
    t0 = time.perf_counter()
    jobs = _thumbnail_jobs(analysis["_gallery"])
    found = find_videos(videos_dir)
    thumbs = Path(out_dir) / "thumbs"
    thumbs.mkdir(parents=True, exist_ok=True)
    stats = {"videos": 0, "missing": [], "failed": [], "thumbnails": 0}
    for vid in sorted(jobs):
        if vid not in found:
            n = sum(len(v) for v in jobs[vid].values())
            warnings.warn(f"{videos_dir}: no video {vid!r} (<id>.mp4/.mkv/.webm/.avi): its "
                          f"{n} thumbnails are left out")
            stats["missing"].append(vid)
            continue
        try:
            _cut_video(found[vid], jobs[vid], thumbs, time_offset, stats)
            stats["videos"] += 1
        except VideoError as exc:
            warnings.warn(f"{exc}: thumbnails of video {vid!r} left out")
            stats["failed"].append(vid)
    stats["seconds"] = time.perf_counter() - t0
    return stats


def _thumbnail_jobs(g: dict) -> dict:
    """video -> timestamp -> [(pick, [(box, colour)], file stem)] for every gallery pick;
    each pick gets "true_labels" (the classes of the person it shows)."""
    rows, gt, names, persons = g["rows"], g["gt"], g["names"], g["persons"]
    rboxes = f64(rows, "boxes").reshape(-1, 4)
    gboxes = f64(gt, "boxes").reshape(-1, 4)

    def labels_of(person):
        return [names[j] for j in np.flatnonzero(persons.labels[person])]

    jobs: dict[str, dict[int, list]] = {}
    for c, picks in enumerate(g["picks"]):
        for k, pick in enumerate(picks["fp"]):
            r = pick["row"]
            boxes = [(tuple(rboxes[r]), RESULT_COLOR)]
            if pick["person"] >= 0 and pick["person_iou"] > 0:
                boxes.append((tuple(persons.boxes[pick["person"]]), GT_COLOR))
                pick["true_labels"] = labels_of(pick["person"])
            else:
                pick["true_labels"] = []
            jobs.setdefault(str(rows.video_ids[r]), {}).setdefault(
                int(rows.timestamps[r]), []).append((pick, boxes, f"c{c}-fp{k}"))
        for k, pick in enumerate(picks["missed"]):
            gr = pick["gt_row"]
            pick["true_labels"] = labels_of(pick["person"])
            jobs.setdefault(str(gt.video_ids[gr]), {}).setdefault(
                int(gt.timestamps[gr]), []).append(
                    (pick, [(tuple(gboxes[gr]), GT_COLOR)], f"c{c}-miss{k}"))
    return jobs


def _cut_video(path, jobs: dict, thumbs: Path, time_offset, stats: dict):
    """One sequential decode of the video at `path`: the thumbnails of its keyframes
    (timestamp -> jobs) into `thumbs`, each pick's "thumb" set and counted in
    stats["thumbnails"] as it is written. Raises VideoError."""
    wanted = {float(ts - time_offset): ts for ts in jobs}
    for t, clip in iter_clips(path, list(wanted), 1, 1, None):
        frame = clip[0]                                   # (H, W, 3) uint8
        for pick, boxes, stem in jobs[wanted[float(t)]]:
            name = f"{stem}.jpg"
            _thumbnail(frame, boxes).save(thumbs / name, quality=85)
            pick["thumb"] = f"thumbs/{name}"
            stats["thumbnails"] += 1


def _thumbnail(frame, boxes):
    """A crop of `frame` around `boxes` ([(normalised xyxy, RGB)], the first the subject)
    with a margin of a quarter of their extent, THUMB_HEIGHT pixels high, boxes drawn."""
    from PIL import Image, ImageDraw

    h, w = frame.shape[:2]
    rects = [box_pixels(b, w, h) for b, _ in boxes]
    x0, y0 = min(r[0] for r in rects), min(r[1] for r in rects)
    x1, y1 = max(r[2] for r in rects) + 1, max(r[3] for r in rects) + 1
    mx, my = max(8, (x1 - x0) // 4), max(8, (y1 - y0) // 4)
    x0, y0, x1, y1 = max(0, x0 - mx), max(0, y0 - my), min(w, x1 + mx), min(h, y1 + my)
    scale = THUMB_HEIGHT / (y1 - y0)
    width = max(1, min(round((x1 - x0) * scale), 3 * THUMB_HEIGHT))
    img = Image.fromarray(np.ascontiguousarray(frame[y0:y1, x0:x1])).resize(
        (width, THUMB_HEIGHT), Image.BILINEAR)
    draw = ImageDraw.Draw(img)
    sx, sy = width / (x1 - x0), THUMB_HEIGHT / (y1 - y0)
    for (left, top, right, bottom), (_, color) in reversed(list(zip(rects, boxes))):
        draw.rectangle([round((left - x0) * sx), round((top - y0) * sy),
                        round((right + 1 - x0) * sx) - 1, round((bottom + 1 - y0) * sy) - 1],
                       outline=color, width=3 if color == RESULT_COLOR else 2)
    return img
