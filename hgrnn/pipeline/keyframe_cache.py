"""Keyframe images decoded once and kept on disk as JPEGs (for `finetune-detector`).

A detector epoch revisits every keyframe, and seeking into a long video for one frame costs
far more than reading a JPEG, so the keyframes are decoded once (`detect.keyframe_images`:
the same decoder and sampling as extraction) and cached:

    CACHE/cache.json              {"format": "hgrnn-keyframe-cache", "version": 1,
                                   "settings": {short_side, time_offset, fps, quality,
                                   seek_after}}
    CACHE/<video_id>/<ts>.jpg     the keyframe at timestamp ts (short side = short_side)
    CACHE/<video_id>/index.json   {"timestamps": [...]} of the JPEGs that are complete
                                  (rewritten atomically after each video)

The cache is reused by every later run (another annotation file only decodes the keyframes
it lacks) and refused when its settings differ from the run's. JPEG (quality 95 by
default) is lossy: the cached pixels differ from the decoded ones by the compression error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from hgrnn.console import progress_bar
from hgrnn.pipeline.detect import keyframe_images
from hgrnn.data.video import VideoError

CACHE_FORMAT = "hgrnn-keyframe-cache"
CACHE_VERSION = 1


class CacheError(ValueError):
    """A cache folder that cannot be used; the message names it."""


def cache_settings(*, short_side: int, time_offset: float, fps, quality: int,
                   seek_after: float = 2.0) -> dict:
    """The settings that decide the cached pixels (compared on every open)."""
    return {"short_side": int(short_side), "time_offset": float(time_offset),
            "fps": None if fps is None else float(fps), "quality": int(quality),
            "seek_after": float(seek_after)}


def open_cache(root, settings: dict) -> Path:
    """Create the cache folder, or check that an existing one has `settings`."""
    root = Path(root)
    meta = root / "cache.json"
    if meta.exists():
        try:
            old = json.loads(meta.read_text())
        except (OSError, ValueError) as exc:
            raise CacheError(f"{meta}: unreadable ({exc})") from exc
        if old.get("format") != CACHE_FORMAT or old.get("version") != CACHE_VERSION:
            raise CacheError(f"{meta}: not a hgrnn keyframe cache of version {CACHE_VERSION}")
        changed = [f"{k} {old['settings'].get(k)!r} -> {v!r}" for k, v in settings.items()
                   if old["settings"].get(k) != v]
        if changed:
            raise CacheError(f"{root}: keyframe cache made with other settings "
                             f"({'; '.join(changed)}); use another cache folder or delete it")
        return root
    if root.exists() and any(root.iterdir()):
        raise CacheError(f"{root}: not empty and not a keyframe cache (no cache.json)")
    root.mkdir(parents=True, exist_ok=True)
    _write_json(meta, {"format": CACHE_FORMAT, "version": CACHE_VERSION, "settings": settings})
    return root


def cached_timestamps(root, video_id: str) -> set[int]:
    index = Path(root) / video_id / "index.json"
    if not index.exists():
        return set()
    return set(json.loads(index.read_text())["timestamps"])


def image_path(root, video_id: str, timestamp: int) -> Path:
    return Path(root) / video_id / f"{int(timestamp)}.jpg"


def read_keyframe(root, video_id: str, timestamp: int) -> np.ndarray:
    """uint8 RGB (H, W, 3) of a cached keyframe."""
    with Image.open(image_path(root, video_id, timestamp)) as img:
        return np.array(img.convert("RGB"), dtype=np.uint8)          # a writable copy


def fill_video(root, video_id: str, source, timestamps, settings: dict) -> tuple[int, str | None]:
    """Decode the keyframes of `timestamps` not cached yet and store them. Returns (number
    decoded, failure reason or None); keyframes decoded before a failure are kept."""
    have = cached_timestamps(root, video_id)
    todo = sorted(set(int(t) for t in timestamps) - have)
    if not todo:
        return 0, None
    folder = Path(root) / video_id
    folder.mkdir(parents=True, exist_ok=True)
    done, failure = [], None
    try:
        for ts, img in keyframe_images(source, todo, short_side=settings["short_side"],
                                       time_offset=settings["time_offset"], fps=settings["fps"],
                                       seek_after=settings["seek_after"]):
            Image.fromarray(img).save(image_path(root, video_id, ts), quality=settings["quality"])
            done.append(ts)
    except VideoError as exc:
        failure = str(exc)
    except Exception as exc:  # noqa: BLE001 - one bad video must not stop the run
        failure = f"{source}: {type(exc).__name__}: {exc}"
    if done:
        _write_json(folder / "index.json", {"timestamps": sorted(have | set(done))})
    return len(done), failure


class _FillJobs:
    """Map-style dataset: item i fills the cache for video i (runs in DataLoader workers)."""

    def __init__(self, root, jobs, settings):
        self.root, self.jobs, self.settings = str(root), jobs, settings

    def __len__(self):
        return len(self.jobs)

    def __getitem__(self, i):
        video_id, source, timestamps = self.jobs[i]
        n, failure = fill_video(self.root, video_id, source, timestamps, self.settings)
        return video_id, len(timestamps), n, failure


def fill_cache(root, settings: dict, wanted: dict, *, workers: int = 2, progress: bool = True,
               desc: str = "decode keyframes") -> dict[str, str]:
    """Make sure every keyframe of `wanted` {video_id: (source, timestamps)} is cached,
    decoding videos in `workers` processes. Returns {video_id: failure reason}."""
    jobs = [(vid, str(src), sorted(set(int(t) for t in ts))) for vid, (src, ts) in wanted.items()
            if set(int(t) for t in ts) - cached_timestamps(root, vid)]
    failures: dict[str, str] = {}
    if not jobs:
        return failures
    bar = progress_bar(total=sum(len(j[2]) for j in jobs), unit="kf", desc=desc, disable=not progress,
               dynamic_ncols=True)
    loader = torch.utils.data.DataLoader(_FillJobs(root, jobs, settings), batch_size=None,
                                         num_workers=min(workers, len(jobs)),
                                         collate_fn=_identity,
                                         generator=torch.Generator())   # global RNG untouched
    for video_id, planned, _n, failure in loader:
        bar.update(planned)
        if failure:
            failures[video_id] = failure
            tqdm.write(f"keyframe cache: FAILED {video_id}: {failure}")
    bar.close()
    return failures


def _identity(item):
    return item


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, sort_keys=True))
    os.replace(tmp, path)
