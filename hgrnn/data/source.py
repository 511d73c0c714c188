"""Where a stage's videos come from (`VideoSource`): the one definition of the --videos,
--frames, --fps, --time-offset and --resample-fps settings and their defaults. Pure Python (no numpy), so
that the CLI reads its option defaults from here without slowing `hgrnn --help`."""

from __future__ import annotations

from dataclasses import dataclass


def check_video_source(videos, frames, fps) -> None:
    """Raise ValueError unless exactly one of a video folder and a frame folder is given,
    and a frame folder comes with its frame rate (the CLI's --videos / --frames / --fps)."""
    if (videos is None) == (frames is None):
        raise ValueError("give exactly one of --videos DIR (<video_id>.<ext> files) and "
                         "--frames DIR (<video_id>/<video_id>_%06d.jpg folders)")
    if frames is not None and not fps:
        raise ValueError("--frames needs --fps (the frame rate the frames were extracted at)")


@dataclass(frozen=True, kw_only=True)
class VideoSource:
    """The video input of a stage, a base of the configs of extract-features, detect,
    predict (its `ExtractConfig`), finetune-backbone and finetune-detector. Keyword-only, so
    a subclass's own fields keep their positions; its fields stay flat keys of the config
    JSON written into stores and checkpoints (as before this class existed).

    videos: a folder of `<id>.<ext>` video files; frames: instead, a folder of
    `<id>/<id>_%06d.jpg` frame folders extracted at `fps` (exactly one of the two);
    time_offset: video time of timestamp 0 (a keyframe at ts is taken at ts - time_offset
    seconds into the video); resample_fps: clips sampled as if every video ran at this rate
    (`hgrnn.data.video`; None: each video's own rate), so that clips span the same time in
    videos of different rates. Not `fps`, which says what rate a frame folder has: this one
    changes what is read (a feature-changing setting of the store)."""
    videos: str | None = None
    frames: str | None = None
    fps: float | None = None
    time_offset: float = 0.0
    resample_fps: float | None = None

    def check_source(self) -> None:
        """`check_video_source` of these fields, and a positive resample_fps."""
        check_video_source(self.videos, self.frames, self.fps)
        if self.resample_fps is not None and not self.resample_fps > 0:
            raise ValueError(f"--resample-fps must be > 0, got {self.resample_fps:g}")
