"""Which keyframes lie inside a video, and how long its clips are: the rules that
extract-features applies and check-data reports, in one place.

A keyframe timestamp ts (whole seconds, as in AVA CSVs) is video time ts - time_offset;
its centre frame round((ts - offset) * fps) must be a frame of the video
(`hgrnn.data.video`: frames 0 .. round(duration * fps) - 1).
"""

from __future__ import annotations

import math

from hgrnn.data.video import VideoError

#: A clip spanning more than this many seconds mixes moments far from its keyframe.
MAX_CLIP_SECONDS = 2.0
#: Clip spans of two videos further apart than this factor give the model other time windows.
MAX_SPAN_RATIO = 1.5
#: The rate PySlowFast reads AVA at, suggested to resample mixed-rate videos to.
SUGGESTED_RESAMPLE_FPS = 30
#: How many skipped timestamps a message lists.
SHOWN = 5


def split_keyframes(timestamps, fps: float, duration: float, time_offset: float):
    """(inside, outside) lists of `timestamps` for a video of `duration` seconds at `fps`.
    An unknown duration (NaN) keeps every keyframe inside (decoding finds the end)."""
    if not math.isfinite(duration) or duration <= 0:
        return list(timestamps), []
    last_frame = int(round(duration * fps)) - 1
    inside, outside = [], []
    for ts in timestamps:
        centre = round((ts - time_offset) * fps)
        (inside if 0 <= centre <= last_frame else outside).append(ts)
    return inside, outside


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


def fitting_offsets(first: int, last: int, fps: float, duration: float):
    """(lo, hi): the --time-offset values that put keyframes first..last inside the video
    (lo > hi when none does)."""
    last_frame = int(round(duration * fps)) - 1
    return last - (last_frame + 0.49) / fps, first + 0.49 / fps


def nice_offset(lo: float, hi: float):
    """A round value in [lo, hi] (0 first, then multiples of 100, 10, 1), else lo rounded."""
    if lo <= 0 <= hi:
        return 0
    for step in (100, 10, 1):
        v = math.ceil(lo / step) * step
        if v <= hi:
            return v
    return round(lo, 2)


def describe_outside(video, outside, total: int, duration: float, time_offset: float) -> str:
    """'[VIDEO: ]N of M keyframes outside the video (D s long) at --time-offset X: a, b ...'"""
    shown = ", ".join(str(t) for t in outside[:SHOWN]) + (" ..." if len(outside) > SHOWN
                                                           else "")
    return ((f"{video}: " if video is not None else "")
            + f"{len(outside)} of {total} keyframes outside the video ({duration:.1f} s "
            f"long) at --time-offset {time_offset:g}: {shown}")


def summarize_outside(outside: dict) -> str:
    """'skipped N keyframes outside their video in K video(s): a (n), b (m) ...' for a run's
    {video_id: keyframes skipped} (the end-of-run line of extract-features and detect)."""
    shown = ", ".join(f"{v} ({n})" for v, n in sorted(outside.items())[:SHOWN])
    return (f"skipped {sum(outside.values())} keyframes outside their video in "
            f"{len(outside)} video(s): {shown}" + (" ..." if len(outside) > SHOWN else ""))


def offset_hint(timestamps, fps: float, duration: float) -> str:
    """Hint for a video none of whose keyframes fit at the given offset."""
    lo, hi = fitting_offsets(min(timestamps), max(timestamps), fps, duration)
    if lo > hi:
        return ("no --time-offset fits them all: the keyframes span more than the video; "
                "are the timestamps seconds?")
    return (f"--time-offset {nice_offset(lo, hi):g} would fit (timestamps are seconds from "
            f"the video start plus the offset; `hgrnn check-data --videos` checks all videos)")


def clip_seconds(clip_frames: int, frame_stride: int, fps: float) -> float:
    """Seconds a clip of clip_frames frames at frame_stride spans at fps."""
    return clip_frames * frame_stride / fps


def suggested_clip_frames(fps: float) -> int:
    """A multiple of 8 (I3D's temporal stride) near 1.1 s at fps, at least 8."""
    return max(8, 8 * round(fps * 1.1 / 8))


def clip_span_warning(clip_frames: int, frame_stride: int, fps: float) -> str | None:
    """A warning when the clip spans more than MAX_CLIP_SECONDS at fps, else None."""
    span = clip_seconds(clip_frames, frame_stride, fps)
    if span <= MAX_CLIP_SECONDS:
        return None
    return (f"a clip of --clip-frames {clip_frames} at --frame-stride {frame_stride} spans "
            f"{span:.1f} s at {fps:g} fps (more than {MAX_CLIP_SECONDS:g} s around each "
            f"keyframe; the paper's clips are about 1 s: e.g. --clip-frames "
            f"{suggested_clip_frames(fps)})")


def mixed_span_warning(spans: dict, clip_frames: int, frame_stride: int) -> str | None:
    """A warning when clips span more than MAX_SPAN_RATIO times longer in one video than in
    another (videos of different frame rates), else None. spans: {video_id: (fps, clip
    seconds)}."""
    if len(spans) < 2:
        return None
    short = min(spans, key=lambda v: (spans[v][1], v))
    long = max(spans, key=lambda v: (spans[v][1], v))
    if spans[long][1] <= MAX_SPAN_RATIO * spans[short][1]:
        return None
    rate = SUGGESTED_RESAMPLE_FPS
    return (f"clip spans differ between videos: --clip-frames {clip_frames} at --frame-stride "
            f"{frame_stride} spans {spans[short][1]:.2f} s in {short} ({spans[short][0]:g} "
            f"fps) but {spans[long][1]:.2f} s in {long} ({spans[long][0]:g} fps), so the model "
            f"sees other time windows in each; --resample-fps {rate} (finetune-backbone, "
            f"extract-features, predict) gives every video clips of "
            f"{clip_seconds(clip_frames, frame_stride, rate):.2f} s")
