"""Keyframes inside a video and clip spans (hgrnn.data.keyframes), checked against the
extraction's own every-second rule and a brute-force search over offsets."""

import numpy as np
import pytest

from hgrnn.data.keyframes import (clip_span_warning, every_second, fitting_offsets, nice_offset,
                                  offset_hint, split_keyframes, suggested_clip_frames)


@pytest.mark.parametrize("duration,fps,offset", [(4.0, 10, 0), (3.96, 25, 0), (900.0, 30, 900),
                                                 (8.0, 29.97, 1.5), (2.0, 10, -1)])
def test_split_agrees_with_every_second(duration, fps, offset):
    candidates = list(range(int(offset) - 5, int(offset + duration) + 6))
    inside, outside = split_keyframes(candidates, fps, duration, offset)
    assert inside == every_second(duration, fps, offset)
    assert sorted(inside + outside) == candidates


def test_unknown_duration_keeps_everything():
    assert split_keyframes([1, 5, 900], 25, float("nan"), 0) == ([1, 5, 900], [])


def test_fitting_offsets_equal_a_brute_force_search():
    rng = np.random.default_rng(0)
    for _ in range(30):
        fps = float(rng.choice([10, 24, 25, 29.97, 30]))
        duration = float(rng.uniform(3, 20))
        first = int(rng.integers(0, 1000))
        last = first + int(rng.integers(0, 8))
        lo, hi = fitting_offsets(first, last, fps, duration)
        for offset in np.arange(first - 30, last + 5, 0.013):
            _, outside = split_keyframes([first, last], fps, duration, offset)
            if min(abs(offset - lo), abs(offset - hi)) > 0.02:       # away from the edges
                assert (not outside) == (lo <= offset <= hi), (fps, duration, first, last,
                                                              offset, lo, hi)


def test_nice_offset_and_hint():
    assert nice_offset(898.05, 902.05) == 900
    assert nice_offset(-1, 3) == 0
    assert nice_offset(12.3, 14.9) == 13
    assert nice_offset(12.3, 12.9) == 12.3
    assert "--time-offset 900 would fit" in offset_hint([902, 903, 1798], 30, 900.0)
    assert "no --time-offset fits" in offset_hint([0, 100], 30, 10.0)


def test_clip_span():
    assert clip_span_warning(32, 1, 25) is None
    warning = clip_span_warning(32, 1, 10)
    assert "3.2 s at 10 fps" in warning and "--clip-frames 8" in warning
    assert suggested_clip_frames(30) == 32 and suggested_clip_frames(10) == 8
    assert "--frame-stride 2" in clip_span_warning(32, 2, 25)
