"""Decoding videos (PyAV) and JPEG frame folders into clips centred on keyframe times.

Clip sampling. A keyframe at time t (seconds from the first frame) has centre frame
c = round(t * fps), the frame nearest to t. Its clip holds `clip_frames` frames at
`frame_stride`:

    indices = c + frame_stride * (k - clip_frames // 2),   k = 0 .. clip_frames - 1

(32 frames at stride 1 take c-16 .. c+15; an odd count is symmetric). An index before the
first frame repeats the first frame, an index past the last frame repeats the last frame
(edge padding), so every clip has exactly `clip_frames` frames.

Resampling (`resample_fps` R, `--resample-fps`): clips are sampled as if the video had been
re-timed to R frames per second (PySlowFast reads AVA at 30 fps), so a clip spans
clip_frames * frame_stride / R seconds whatever the video's own rate. Clip frame k is the
video frame nearest to time c / fps + frame_stride * (k - clip_frames // 2) / R (ties: the
later frame), i.e. index

    c + floor(frame_stride * (k - clip_frames // 2) * fps / R + 1/2)   (exact rationals)

so the centre frame, and with it the keyframe image a detector sees, is the unresampled one;
at R == fps this is exactly the sampling above, below fps a frame is skipped now and then,
above it a frame is repeated. A keyframe whose own centre
frame lies outside the video is an error (`VideoError`, "too short"). Where the stream has a
gap (variable frame rate, dropped frames), an index takes the frame on screen at that time:
the last frame at or before it.

Decoding is ONE sequential pass per video: frames are decoded in order, each at most once;
only frames that some clip needs are converted to RGB and resized (short side ->
`short_side`, aspect kept, bilinear), and a sliding buffer keeps each converted frame until
the last clip that uses it has been emitted, so overlapping clips of neighbouring keyframes
share frames. Decoding stops after the last clip.

Seeking. When the first needed frame is more than `seek_after` seconds (default 2 s) into the
video (AVA keyframes start at 902 s), the container seeks once, backwards to the nearest
keyframe (I-frame) at or before that frame, and decodes forward from there; the frames between
that I-frame and the first needed frame are decoded (they cannot be skipped) but not
converted. Frame indices come from presentation timestamps, so the seek needs no frame
counting. If a broken index makes the seek land after the needed frame, the video is reopened
and decoded from the start instead (those few frames are then decoded twice). Gaps between
far-apart keyframes are decoded sequentially, not skipped.

Frame folders (`<dir>/<video_id>/<video_id>_%06d.jpg` as SlowFast prepares AVA, or
mmaction2's `img_%05d.jpg`; numbered from 1 at `fps`): file k is frame index k - 1; only the
files that clips need are read, each once.
"""

from __future__ import annotations

import glob
import math
import re
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

#: File extensions taken as videos by `find_videos`.
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi")


class VideoError(Exception):
    """A video (or frame folder) cannot be opened, decoded, or is too short; the message
    starts with the path."""


def clip_indices(centre: int, clip_frames: int, frame_stride: int, fps=None,
                 resample_fps=None) -> np.ndarray:
    """(clip_frames,) int64 frame indices of the clip centred on frame `centre` (unclamped);
    with `resample_fps` (and the video's `fps`), sampled at that rate (module docstring)."""
    if clip_frames < 1 or frame_stride < 1:
        raise ValueError(f"clip_frames ({clip_frames}) and frame_stride ({frame_stride}) must be >= 1")
    steps = frame_stride * (np.arange(clip_frames, dtype=np.int64) - clip_frames // 2)
    if resample_fps is None:
        return centre + steps
    ratio = exact_rate(fps) / exact_rate(resample_fps)       # video frames per resampled frame
    return centre + np.asarray([math.floor(int(d) * ratio + Fraction(1, 2)) for d in steps],
                               dtype=np.int64)


def exact_rate(fps) -> Fraction:
    """A frame rate as an exact fraction: a float from a stream header (29.97002997...) ->
    30000/1001, 25.0 -> 25."""
    if fps is None or fps <= 0:
        raise ValueError(f"frame rate must be > 0, got {fps!r}")
    return Fraction(fps).limit_denominator(1001)


def resized_size(width: int, height: int, short_side) -> tuple[int, int]:
    """(width, height) after scaling the short side to `short_side` (None/0: unchanged)."""
    if not short_side:
        return int(width), int(height)
    scale = short_side / min(width, height)
    return max(1, int(round(width * scale))), max(1, int(round(height * scale)))


def find_videos(directory) -> dict[str, Path]:
    """video id -> file for `<id>.<ext>` files (ext in VIDEO_EXTENSIONS) in `directory`.

    Raises VideoError when the folder is missing or an id has two files."""
    directory = Path(directory)
    if not directory.is_dir():
        raise VideoError(f"{directory}: video folder not found")
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() in VIDEO_EXTENSIONS and path.is_file():
            if path.stem in found:
                raise VideoError(f"{directory}: two files for video id {path.stem!r}: "
                                 f"{found[path.stem].name} and {path.name}")
            found[path.stem] = path
    return found


def find_frame_folders(directory) -> dict[str, Path]:
    """video id -> folder for `<dir>/<id>/` sub-folders holding `<id>_*.jpg` frames."""
    directory = Path(directory)
    if not directory.is_dir():
        raise VideoError(f"{directory}: frame folder not found")
    return {p.name: p for p in sorted(directory.iterdir()) if p.is_dir()}


# ----------------------------------------------------------------------------- sources

class _Source:
    """A sequential frame source: yields (index, raw frame) in index order; `convert` turns a
    raw frame into uint8 RGB (h, w, 3) at a requested size."""
    fps: float
    width: int
    height: int
    duration: float          # seconds (header; NaN when unknown)
    decoded: int = 0

    def frames(self, first_needed: int) -> Iterator[tuple[int, object]]:
        raise NotImplementedError

    def convert(self, raw, width: int, height: int) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _PyAVSource(_Source):
    def __init__(self, path: Path, seek_after: float, threads: bool = True):
        import av

        self.path, self.seek_after, self.threads = path, seek_after, threads
        self.container = self._open()
        stream = self.container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate or float(rate) <= 0:
            raise VideoError(f"{path}: video stream has no frame rate")
        self.fps = float(rate)
        self.width, self.height = int(stream.codec_context.width), int(stream.codec_context.height)
        if self.width <= 0 or self.height <= 0:
            raise VideoError(f"{path}: video stream has no frame size")
        self.seeked = False
        self._av = av
        if stream.duration is not None and stream.time_base:
            self.duration = float(stream.duration * stream.time_base)
        elif self.container.duration is not None:
            self.duration = self.container.duration / 1_000_000     # AV_TIME_BASE
        else:
            self.duration = math.nan

    def _open(self):
        import av

        try:
            container = av.open(str(self.path))
        except (av.FFmpegError, OSError) as exc:
            raise VideoError(f"{self.path}: cannot open ({type(exc).__name__}: {exc})") from exc
        fmt = container.format.name or ""
        if not container.streams.video or fmt == "image2" or fmt.endswith("_pipe"):
            container.close()           # a still image decodes as a one-frame "video"
            what = f" (it is a {fmt[:-5]} image)" if fmt.endswith("_pipe") else ""
            raise VideoError(f"{self.path}: not a video{what}: no video stream")
        if self.threads:
            container.streams.video[0].thread_type = "AUTO"
        return container

    def _decode(self, container) -> Iterator[tuple[int, object]]:
        stream = container.streams.video[0]
        tb = float(stream.time_base) if stream.time_base else None
        start = stream.start_time or 0
        previous = -1
        try:
            for frame in container.decode(stream):
                self.decoded += 1
                if frame.pts is not None and tb is not None:
                    index = int(round((frame.pts - start) * tb * self.fps))
                else:                                    # no timestamps: count frames
                    index = previous + 1
                previous = index
                yield index, frame
        except self._av.FFmpegError as exc:
            raise VideoError(f"{self.path}: decoding failed after {self.decoded} frames "
                             f"({type(exc).__name__}: {exc})") from exc

    def frames(self, first_needed: int) -> Iterator[tuple[int, object]]:
        first_time = first_needed / self.fps
        if first_time > self.seek_after:
            stream = self.container.streams.video[0]
            target = (stream.start_time or 0) + int((first_time - 0.5 / self.fps) / float(stream.time_base))
            try:
                self.container.seek(target, stream=stream, backward=True, any_frame=False)
                self.seeked = True
            except self._av.FFmpegError:
                self.seeked = False
            if self.seeked:
                frames = self._decode(self.container)
                for index, frame in frames:
                    if index > first_needed:       # landed after the target: start over
                        self.container.close()
                        self.container = self._open()
                        self.seeked = False
                        break
                    yield index, frame
                    yield from frames
                    return
        yield from self._decode(self.container)

    def convert(self, raw, width: int, height: int) -> np.ndarray:
        return raw.to_ndarray(format="rgb24", width=width, height=height)

    def close(self) -> None:
        self.container.close()


class _FolderSource(_Source):
    _NUMBER = re.compile(r"_(\d+)\.jpe?g$", re.IGNORECASE)

    def __init__(self, folder: Path, fps):
        from PIL import Image

        self.folder, self._image = folder, Image
        if not fps or fps <= 0:
            raise VideoError(f"{folder}: a frame folder needs its frame rate (fps)")
        self.fps = float(fps)
        files = {}
        for prefix in (glob.escape(folder.name), "img"):      # SlowFast, then mmaction2 naming
            for path in folder.glob(f"{prefix}_*"):
                match = self._NUMBER.search(path.name)
                if match:
                    files[int(match.group(1)) - 1] = path
            if files:
                break
        if not files:
            raise VideoError(f"{folder}: no frames named {folder.name}_NNNNNN.jpg "
                             f"(or img_NNNNN.jpg)")
        self.files = dict(sorted(files.items()))
        self.duration = (max(self.files) + 1) / self.fps
        try:
            with Image.open(next(iter(self.files.values()))) as img:
                self.width, self.height = img.size
        except OSError as exc:
            raise VideoError(f"{next(iter(self.files.values()))}: cannot read ({exc})") from exc

    def frames(self, first_needed: int) -> Iterator[tuple[int, object]]:
        # raw frames are file paths: reading happens in convert, for needed frames only
        indices = list(self.files)
        begin = max(0, int(np.searchsorted(indices, first_needed, side="right")) - 1)
        for index in indices[begin:]:
            yield index, self.files[index]

    _last = (None, None)     # (path, decoded RGB image): a second size needs no re-read

    def convert(self, raw, width: int, height: int) -> np.ndarray:
        if self._last[0] != raw:
            self.decoded += 1
            try:
                with self._image.open(raw) as img:
                    self._last = (raw, img.convert("RGB"))
            except OSError as exc:
                raise VideoError(f"{raw}: cannot read frame ({exc})") from exc
        img = self._last[1]
        if img.size != (width, height):
            img = img.resize((width, height), self._image.BILINEAR)
        return np.asarray(img, dtype=np.uint8).copy()


def open_source(video_path, *, fps=None, seek_after: float = 2.0, threads: bool = True) -> _Source:
    """A frame source for a video file (PyAV) or a JPEG frame folder (needs `fps`)."""
    path = Path(video_path)
    if path.is_dir():
        return _FolderSource(path, fps)
    if not path.exists():
        raise VideoError(f"{path}: video file not found")
    return _PyAVSource(path, seek_after, threads)


def probe(video_path, *, fps=None) -> dict:
    """{"fps", "width", "height", "duration"} of a video file or frame folder (opens it,
    decodes nothing). duration: seconds from the container header (NaN when unknown)."""
    source = open_source(video_path, fps=fps)
    try:
        return {"fps": source.fps, "width": source.width, "height": source.height,
                "duration": source.duration}
    finally:
        source.close()


# ----------------------------------------------------------------------------- clips

def iter_clips(video_path, times, clip_frames: int, frame_stride: int, short_side, *,
               fps=None, stats: dict | None = None, seek_after: float = 2.0,
               keyframe_short_side=None, threads: bool = True,
               resample_fps=None) -> Iterator[tuple]:
    """Clips centred on `times`, decoded in one sequential pass (see the module docstring).

    video_path: a video file, or a frame folder `<id>/<id>_%06d.jpg` (then `fps` is required;
    for a video file `fps` is read from the stream). times: keyframe times in seconds from
    the first frame (any order; clips are yielded in ascending time order). clip_frames,
    frame_stride: clip sampling; short_side: frames are resized so that their short side is
    this many pixels (None/0: original size). resample_fps: sample clips as if the video
    ran at this rate (None: its own rate; see the module docstring).

    Yields (time, clip): time is the given time as a float (equal to float(t) of the input,
    so it can key a dict), clip uint8 RGB (clip_frames, H, W, 3); with
    `keyframe_short_side` set (0: original size), yields (time, clip, keyframe) where
    keyframe is the centre frame as uint8 (H_k, W_k, 3) at that size (for a person
    detector). `stats`, if given, is filled as soon as the video is open with fps, width,
    height (original), size (W, H of the clips), and updated while decoding:
    decoded_frames (frames the decoder produced / JPEGs read), converted_frames,
    seeked (bool), last_index. Raises VideoError naming the file.
    """
    times = sorted(float(t) for t in times)
    stats = {} if stats is None else stats
    source = open_source(video_path, fps=fps, seek_after=seek_after, threads=threads)
    try:
        out_w, out_h = resized_size(source.width, source.height, short_side)
        key_size = (None if keyframe_short_side is None
                    else resized_size(source.width, source.height, keyframe_short_side))
        stats.update(fps=source.fps, width=source.width, height=source.height,
                     size=(out_w, out_h), decoded_frames=0, converted_frames=0, seeked=False,
                     last_index=None)
        if not times:
            return
        centres = [int(round(t * source.fps)) for t in times]
        for t, c in zip(times, centres):
            if c < 0:
                raise VideoError(f"{video_path}: keyframe at {t:g} s is before the video start")
        clips = [np.maximum(clip_indices(c, clip_frames, frame_stride, source.fps,
                                         resample_fps), 0) for c in centres]
        needed = np.unique(np.concatenate(clips))            # sorted
        centre_set = set(centres) if key_size is not None else set()
        yield from _assemble(source, times, centres, clips, needed, centre_set,
                             (out_w, out_h), key_size, stats, video_path)
    finally:
        stats["decoded_frames"] = source.decoded
        stats["seeked"] = bool(getattr(source, "seeked", False))
        source.close()


def _assemble(source, times, centres, clips, needed, centre_set, size, key_size, stats,
              video_path):
    """The sliding-buffer core of `iter_clips`."""
    buffer: dict[int, np.ndarray] = {}       # frame index -> converted (H, W, 3) frame
    key_buffer: dict[int, np.ndarray] = {}   # centre index -> keyframe image
    memo = [None, None, None]                # last converted raw frame: [raw, clip img, key img]

    def convert(raw, want_key: bool):
        if memo[0] is not raw:
            memo[:] = [raw, None, None]
        if memo[1] is None:
            memo[1] = source.convert(raw, *size)
            stats["converted_frames"] += 1
        if want_key and memo[2] is None:
            memo[2] = (memo[1] if key_size == size else source.convert(raw, *key_size))
        return memo[1], memo[2]

    def resolve(index: int, raw) -> None:
        clip_img, key_img = convert(raw, index in centre_set)
        buffer[index] = clip_img
        if index in centre_set:
            key_buffer[index] = key_img

    def emit(p: int):
        clip = np.stack([buffer[j] for j in clips[p]])    # (T, H, W, 3)
        if key_size is None:
            return times[p], clip
        return times[p], clip, key_buffer.pop(centres[p])

    q = 0            # next unresolved position in `needed`
    p = 0            # next clip to emit
    previous = None  # (index, raw) of the last frame decoded
    for index, raw in source.frames(int(needed[0])):
        if previous is not None and index <= previous[0]:
            continue                            # duplicate timestamp: keep the first frame
        # indices before this frame show the previous frame (or this one at the very start)
        while q < len(needed) and needed[q] < index:
            resolve(int(needed[q]), previous[1] if previous is not None else raw)
            q += 1
        if q < len(needed) and needed[q] == index:
            resolve(index, raw)
            q += 1
        previous = (index, raw)
        stats["last_index"] = index
        while p < len(clips) and clips[p][-1] <= index:
            yield emit(p)
            p += 1
            if p < len(clips):                  # drop frames no later clip needs
                for j in [j for j in buffer if j < clips[p][0]]:
                    del buffer[j]
        if p == len(clips):
            return
        stats["decoded_frames"] = source.decoded
    if previous is None:
        raise VideoError(f"{video_path}: no frame could be decoded")
    last = previous[0]
    for t, c in zip(times[p:], centres[p:]):
        if c > last:
            raise VideoError(
                f"{video_path}: too short: it ends at frame {last} ({last / source.fps:.2f} s) "
                f"but the keyframe at {t:g} s needs its centre frame {c}")
    while q < len(needed):                      # past the end: repeat the last frame
        resolve(int(needed[q]), previous[1])
        q += 1
    while p < len(clips):
        yield emit(p)
        p += 1
