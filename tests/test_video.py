"""Decoding and clip sampling (hgrnn.data.video) on videos rendered by hgrnn.pipeline.render.

Every rendered frame carries its index as a barcode, so each clip frame's identity is checked
against the obviously-correct reference `expected_indices` (clamped arithmetic)."""

import numpy as np
import pytest

from hgrnn.pipeline.render import frame_at, read_barcode, render_frames, render_video
from hgrnn.data.video import (VideoError, clip_indices, find_videos, iter_clips, probe,
                                  resized_size)

FPS = 10


def expected_indices(t, clip_frames, stride, n_frames, fps=FPS):
    """Reference: the frame index shown at each clip position, edge frames repeated."""
    centre = round(t * fps)
    return [min(max(centre + stride * (k - clip_frames // 2), 0), n_frames - 1)
            for k in range(clip_frames)]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    return render_video(path, seconds=4, fps=FPS, size=(64, 48), gop=5)


def test_barcode_roundtrip_on_rendered_frames():
    for index in (0, 1, 5, 1799, 4095):
        assert read_barcode(frame_at(index, FPS, (64, 48))) == index


def test_clip_indices_and_sizes():
    assert clip_indices(10, 4, 2).tolist() == [6, 8, 10, 12]
    assert clip_indices(10, 5, 1).tolist() == [8, 9, 10, 11, 12]
    assert resized_size(320, 240, 256) == (341, 256)
    assert resized_size(240, 320, 64) == (64, 85)
    assert resized_size(320, 240, None) == (320, 240)


@pytest.mark.parametrize("stride", [1, 2])
def test_clip_frames_are_the_expected_frames_with_edge_padding(video, stride):
    times = [3, 0, 1, 2, 3.9]           # unsorted input; 0 and 3.9 run past the ends
    stats = {}
    out = list(iter_clips(video["path"], times, 8, stride, 32, stats=stats))
    assert [t for t, _ in out] == sorted(times)
    for t, clip in out:
        assert clip.shape == (8, 32, 43, 3) and clip.dtype == np.uint8
        assert [read_barcode(f) for f in clip] == expected_indices(t, 8, stride, video["frames"])
    # one sequential pass: each frame decoded at most once, each needed frame converted once
    needed = {i for t in times for i in expected_indices(t, 8, stride, video["frames"])}
    assert stats["decoded_frames"] <= video["frames"]
    assert stats["converted_frames"] == len(needed)
    assert stats["size"] == (43, 32) and stats["fps"] == FPS


def test_overlapping_clips_decode_each_frame_once(video):
    # 1 keyframe every 0.5 s with 16-frame clips: each frame is in ~3 clips, decoded once
    times = np.arange(0.5, 3.1, 0.5)
    stats = {}
    clips = list(iter_clips(video["path"], times, 16, 1, 24, stats=stats))
    assert len(clips) == len(times)
    last_needed = round(times[-1] * FPS) + 7
    assert stats["decoded_frames"] <= min(video["frames"], last_needed + 1 + 4)  # + decoder delay
    assert stats["converted_frames"] == last_needed + 1      # frames 0 .. 37, once each


def test_seek_when_keyframes_start_late(video):
    stats = {}
    out = list(iter_clips(video["path"], [3.0], 4, 1, 48, stats=stats, seek_after=1.0))
    assert stats["seeked"]
    # GOP of 5 frames: the seek lands on the I-frame at or before frame 28 (index 25)
    assert stats["decoded_frames"] <= 10
    assert [read_barcode(f) for f in out[0][1]] == expected_indices(3.0, 4, 1, video["frames"])
    # without seeking the same clip comes out, after decoding from the start
    plain = {}
    out2 = list(iter_clips(video["path"], [3.0], 4, 1, 48, stats=plain, seek_after=1e9))
    assert not plain["seeked"] and plain["decoded_frames"] >= 31
    assert [read_barcode(f) for f in out2[0][1]] == expected_indices(3.0, 4, 1, video["frames"])


def test_decoded_pixels_match_the_rendered_frames(video):
    (_, clip), = iter_clips(video["path"], [2.0], 1, 1, None)
    reference = frame_at(20, FPS, (64, 48)).astype(np.float32)
    assert np.abs(clip[0].astype(np.float32) - reference).mean() < 6.0   # lossy H.264


def test_keyframe_image_for_the_detector(video):
    (t, clip, key), = iter_clips(video["path"], [1.0], 4, 1, 24, keyframe_short_side=0)
    assert key.shape == (48, 64, 3) and clip.shape == (4, 24, 32, 3)
    assert read_barcode(key) == 10


def test_too_short_video_is_an_error_naming_the_file(video):
    with pytest.raises(VideoError, match=r"clip\.mp4: too short.*keyframe at 5 s"):
        list(iter_clips(video["path"], [1, 5], 4, 1, 24))


def test_unreadable_and_missing_files(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    with pytest.raises(VideoError, match="bad.mp4: cannot open"):
        list(iter_clips(bad, [0], 4, 1, 24))
    with pytest.raises(VideoError, match="nothere.mp4: video file not found"):
        probe(tmp_path / "nothere.mp4")


@pytest.mark.parametrize("ext", [".avi", ".mkv", ".webm"])
def test_other_containers(tmp_path, ext):
    info = render_video(tmp_path / f"v{ext}", seconds=1.5, fps=FPS, size=(64, 48))
    assert find_videos(tmp_path) == {"v": tmp_path / f"v{ext}"}
    (t, clip), = iter_clips(info["path"], [1.0], 4, 1, 48)
    assert [read_barcode(f) for f in clip] == expected_indices(1.0, 4, 1, info["frames"])


def test_frame_folder_reads_each_needed_jpeg_once(tmp_path):
    info = render_frames(tmp_path, "vid", seconds=2, fps=FPS, size=(64, 48))
    stats = {}
    out = list(iter_clips(tmp_path / "vid", [0, 1, 1.5], 8, 1, 48, fps=FPS, stats=stats))
    needed = set()
    for t, clip in out:
        ref = expected_indices(t, 8, 1, info["frames"])
        needed |= set(ref)
        assert [read_barcode(f) for f in clip] == ref
    assert stats["decoded_frames"] == len(needed)
    with pytest.raises(VideoError, match="needs its frame rate"):
        list(iter_clips(tmp_path / "vid", [0], 8, 1, 48))


def test_frame_folder_keyframe_image_reads_the_jpeg_once(tmp_path):
    render_frames(tmp_path, "vid", seconds=1, fps=FPS, size=(64, 48))
    stats = {}
    (t, clip, key), = iter_clips(tmp_path / "vid", [0.5], 4, 1, 24, fps=FPS, stats=stats,
                                 keyframe_short_side=0)
    assert key.shape == (48, 64, 3) and read_barcode(key) == 5
    assert stats["decoded_frames"] == 4


@pytest.mark.parametrize("ext, reason", [(".mp4", "cannot open"), (".mkv", "too short")])
def test_truncated_file_is_a_clear_error(tmp_path, ext, reason):
    full = tmp_path / f"full{ext}"
    render_video(full, seconds=3, fps=FPS, size=(64, 48))
    cut = tmp_path / f"cut{ext}"
    data = full.read_bytes()
    cut.write_bytes(data[:len(data) // 2])          # mp4 loses its index, mkv its second half
    with pytest.raises(VideoError, match=f"cut{ext}: {reason}"):
        list(iter_clips(cut, [1, 2.5], 4, 1, 32))


def test_dropped_frames_take_the_frame_on_screen(tmp_path):
    """A stream with frames 15..17 missing (timestamps jump): those indices repeat frame 14."""
    import av
    from fractions import Fraction

    path = tmp_path / "gaps.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, FPS)
        for i in [i for i in range(30) if i not in (15, 16, 17)]:
            frame = av.VideoFrame.from_ndarray(frame_at(i, FPS, (64, 48)), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    (t, clip), = iter_clips(path, [1.6], 6, 1, 48, fps=None)
    assert [read_barcode(f) for f in clip] == [13, 14, 14, 14, 14, 18]


def test_frame_folder_with_mmaction2_names(tmp_path):
    render_frames(tmp_path, "vid", seconds=1, fps=FPS, size=(64, 48))
    for path in (tmp_path / "vid").iterdir():
        path.rename(path.with_name(path.name.replace("vid_000", "img_0")))   # img_00001.jpg
    (t, clip), = iter_clips(tmp_path / "vid", [0.5], 4, 1, 48, fps=FPS)
    assert [read_barcode(f) for f in clip] == [3, 4, 5, 6]
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="empty: no frames named empty_NNNNNN.jpg"):
        list(iter_clips(tmp_path / "empty", [0], 4, 1, 48, fps=FPS))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_an_image_named_like_a_video_is_not_a_video(tmp_path, fmt):
    from PIL import Image

    path = tmp_path / "clip.mp4"
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(path, format=fmt)
    with pytest.raises(VideoError, match=r"clip\.mp4: not a video .*no video stream"):
        list(iter_clips(path, [0.0], clip_frames=4, frame_stride=1, short_side=32))


def nearest_frames(t, clip_frames, stride, n_frames, fps, resample_fps):
    """Slow reference for resampled clips: for each clip position, the video frame whose
    time n / fps is nearest (ties: the later frame) to the centre frame's time plus
    stride * (k - clip_frames // 2) / resample_fps; past either end that is the first or
    last frame (edge padding comes out by itself)."""
    from fractions import Fraction

    fps_q = Fraction(fps).limit_denominator(1001)
    rate = Fraction(resample_fps).limit_denominator(1001)
    centre = round(t * fps)
    out = []
    for k in range(clip_frames):
        target = Fraction(centre) / fps_q + Fraction(stride * (k - clip_frames // 2)) / rate
        out.append(min(range(n_frames), key=lambda n: (abs(Fraction(n) / fps_q - target), -n)))
    return out


@pytest.mark.parametrize("fps, resample, stride", [(25, 30, 1), (30000 / 1001, 30, 2),
                                                   (30, 10, 1), (10, 30, 3)])
def test_resampled_clips_take_the_frames_nearest_the_resampled_times(tmp_path, fps, resample,
                                                                     stride):
    """Issue 28: videos at 29.97, 25 and 10 fps give clips of one span with resample_fps."""
    info = render_video(tmp_path / "clip.mp4", seconds=3, fps=fps, size=(64, 48), gop=5)
    times = [0.1, 1, 1.5, 2.9]          # clips running past both ends
    out = list(iter_clips(info["path"], times, 8, stride, 32, resample_fps=resample))
    assert len(out) == len(times)
    for t, clip in out:
        assert clip.shape == (8, 32, 43, 3)
        assert [read_barcode(f) for f in clip] == nearest_frames(t, 8, stride, info["frames"],
                                                                  fps, resample)
    if fps == resample:                  # the video's own rate: exactly the plain sampling
        plain = list(iter_clips(info["path"], times, 8, stride, 32))
        assert all((a[1] == b[1]).all() for a, b in zip(out, plain))


def test_resampling_to_the_video_rate_changes_nothing():
    for fps in (10, 25, 30000 / 1001):
        for centre in (0, 7, 1000):
            assert (clip_indices(centre, 8, 2, fps, fps) == clip_indices(centre, 8, 2)).all()
    # 10 -> 30 fps: each video frame three times, the clip spans a third of the time
    assert clip_indices(10, 6, 1, 10, 30).tolist() == [9, 9, 10, 10, 10, 11]
