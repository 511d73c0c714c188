"""Rendered AVA-format videos whose "persons" are drawn rectangles, for the detector tests.

Every video shows two or three rectangles of random colour and size moving at constant
speed (never wrapping), on `render.py`'s gradient background; the ground truth of keyframe
ts (one per second from 0) is the rectangles' boxes at ts seconds, each box listed once per
action (two actions for the first box) like AVA's files."""

from pathlib import Path

import numpy as np
from click.testing import CliRunner

from hgrnn.cli import main
from hgrnn.pipeline.render import Shape, render_video

FPS = 10
SIZE = (128, 96)           # (W, H): short side 96


def video_shapes(seed: int, size=SIZE, seconds: int = 4) -> tuple:
    rng = np.random.default_rng(seed)
    w, h = size
    shapes = []
    for _ in range(int(rng.integers(2, 4))):
        bw, bh = rng.uniform(0.2, 0.35) * w, rng.uniform(0.35, 0.6) * h
        vx = rng.uniform(-0.03, 0.03) * w
        x_lo, x_hi = max(0.0, -vx * seconds), min(w - bw, w - bw - vx * seconds)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shapes.append(Shape("rect", colour, rng.uniform(x_lo, x_hi), rng.uniform(0, 0.85 * h - bh),
                            bw, bh, vx=vx))
    return tuple(shapes)


def boxes_at(shapes, t: float, size=SIZE) -> np.ndarray:
    """(P, 4) normalised xyxy of the rectangles at t seconds (render.py's geometry)."""
    w, h = size
    return np.array([[(s.x + s.vx * t) / w, s.y / h, (s.x + s.vx * t + s.w) / w, (s.y + s.h) / h]
                     for s in shapes], np.float32)


def make_videos(root, video_ids, seeds, seconds: int = 4, size=SIZE, time_offset: int = 0):
    """Render `<root>/videos/<id>.mp4` and write `<root>/<name>.csv` ground truth; returns
    (videos folder, {video_id: shapes})."""
    root = Path(root)
    out = {}
    for vid, seed in zip(video_ids, seeds):
        shapes = video_shapes(seed, size, seconds)
        render_video(root / "videos" / f"{vid}.mp4", seconds=seconds, fps=FPS, size=size,
                     shapes=shapes, gop=5, barcode=False)
        out[vid] = shapes
    return root / "videos", out


def write_gt(path, shapes_of: dict, timestamps, size=SIZE, time_offset: int = 0) -> Path:
    lines = []
    for vid, shapes in shapes_of.items():
        for ts in timestamps:
            for p, box in enumerate(boxes_at(shapes, ts - time_offset, size)):
                x1, y1, x2, y2 = np.clip(box, 0, 1)
                for action in ((12, 80) if p == 0 else (11,)):
                    lines.append(f"{vid},{ts:04d},{x1:.3f},{y1:.3f},{x2:.3f},{y2:.3f},{action},{p}")
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


def run_cli(args, expect=0):
    """`hgrnn ARGS` in-process; asserts the exit status and returns click's result."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == expect, (result.output, result.exception)
    return result
