"""Small synthetic test/demo videos, rendered with PyAV (and JPEG frame folders with Pillow).

A rendered frame is fully determined by its index, so tests can compare what a decoder
returns with what was drawn:

  * background: a fixed horizontal + vertical colour gradient (so every region differs);
  * moving coloured shapes (rectangles and discs) with constant velocity, wrapping around
    the frame edges;
  * an optional *flash*: frames `round(flash_at * fps)` .. `+ flash_frames - 1` are pure
    white (content at a known time);
  * a *barcode* strip along the bottom (the lowest tenth of the frame): the frame index as
    `BARCODE_BITS` black/white blocks, most significant bit left, so the index of any decoded
    (even resized) frame can be read back with `read_barcode`.

Frame index n is shown at time n / fps (the first frame at 0 s). `render_video` writes
mp4/mkv (H.264), webm (VP8) or avi (MPEG-4 part 2), picked from the file extension;
`render_frames` writes the same frames as `<dir>/<video_id>/<video_id>_%06d.jpg`
(numbered from 1, the common AVA frame-folder layout).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

#: Number of bits of the frame-index barcode (indices up to 4095).
BARCODE_BITS = 12


@dataclass(frozen=True)
class Shape:
    """A shape moving at constant velocity. Positions/sizes in pixels, velocity in px/s."""
    kind: str                      # "rect" | "disc"
    color: tuple[int, int, int]    # RGB
    x: float                       # top-left (rect) or centre (disc) at t = 0
    y: float
    w: float                       # width (rect) or diameter (disc)
    h: float
    vx: float = 0.0
    vy: float = 0.0


def default_shapes(size=(320, 240)) -> tuple[Shape, ...]:
    """Three shapes scaled to `size` = (width, height): a red square moving right, a green
    bar moving left, a blue disc moving down."""
    w, h = size
    return (
        Shape("rect", (230, 40, 40), 0.10 * w, 0.15 * h, 0.15 * w, 0.2 * h, vx=0.15 * w),
        Shape("rect", (40, 200, 60), 0.70 * w, 0.45 * h, 0.08 * w, 0.3 * h, vx=-0.1 * w),
        Shape("disc", (50, 80, 230), 0.45 * w, 0.20 * h, 0.18 * h, 0.18 * h, vy=0.12 * h),
    )


def _background(width: int, height: int) -> np.ndarray:
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    img = np.empty((height, width, 3), np.float32)
    img[..., 0] = 40 + 120 * x + 0 * y
    img[..., 1] = 60 + 100 * y + 0 * x
    img[..., 2] = 150 - 80 * x * y
    return img.astype(np.uint8)


def barcode_rows(height: int) -> tuple[int, int]:
    """Rows [top, bottom) of the barcode strip in a frame of `height` pixels."""
    return height - max(2, height // 10), height


def frame_at(index: int, fps: float, size=(320, 240), shapes=None, flash_frames=(),
             barcode: bool = True) -> np.ndarray:
    """The rendered frame `index` as uint8 RGB (H, W, 3). `flash_frames`: indices drawn white."""
    width, height = size
    shapes = default_shapes(size) if shapes is None else shapes
    if index in set(flash_frames):
        img = np.full((height, width, 3), 255, np.uint8)
    else:
        img = _background(width, height)
        t = index / fps
        yy, xx = np.mgrid[0:height, 0:width]
        for s in shapes:
            x0 = (s.x + s.vx * t) % width
            y0 = (s.y + s.vy * t) % height
            if s.kind == "rect":
                # wrap-around: a pixel is inside when its offset from x0 (mod W) is < w
                inside = (((xx - x0) % width) < s.w) & (((yy - y0) % height) < s.h)
            elif s.kind == "disc":
                dx = (xx - x0 + width / 2) % width - width / 2
                dy = (yy - y0 + height / 2) % height - height / 2
                inside = dx * dx + dy * dy <= (s.w / 2) ** 2
            else:
                raise ValueError(f"unknown shape kind {s.kind!r} (rect | disc)")
            img[inside] = s.color
    if barcode:
        top, bottom = barcode_rows(height)
        img[top:bottom] = 0
        for bit in range(BARCODE_BITS):
            if (index >> (BARCODE_BITS - 1 - bit)) & 1:
                x1 = round(bit * width / BARCODE_BITS)
                x2 = round((bit + 1) * width / BARCODE_BITS)
                img[top:bottom, x1:x2] = 255
    return img


def read_barcode(frame: np.ndarray) -> int:
    """Frame index written by `frame_at` into a (possibly resized, lossy) RGB frame (H, W, 3)."""
    height, width = frame.shape[:2]
    top, bottom = barcode_rows(height)
    row = frame[(top + bottom) // 2].astype(np.float32).mean(axis=-1)   # (W,) luminance
    value = 0
    for bit in range(BARCODE_BITS):
        centre = int((bit + 0.5) * width / BARCODE_BITS)
        value = (value << 1) | int(row[centre] > 127)
    return value


def _flash_frames(flash_at, flash_frames: int, fps: float) -> tuple[int, ...]:
    if flash_at is None:
        return ()
    first = round(flash_at * fps)
    return tuple(range(first, first + flash_frames))


def render_video(path, *, seconds: float, fps: float = 10, size=(320, 240), shapes=None,
                 flash_at=None, flash_frames: int = 1, codec=None, gop: int | None = None,
                 barcode: bool = True) -> dict:
    """Render and encode a test video.

    path: .mp4/.mkv (libx264), .webm (libvpx) or .avi (mpeg4), or pass `codec`.
    seconds, fps: length and frame rate (frames = round(seconds * fps)); size = (W, H), even.
    shapes: Shape tuple (default `default_shapes(size)`); flash_at: seconds of the first
    white frame (None: no flash); gop: keyframe interval in frames (default 2 s), small
    values make seeking precise. Returns a JSON-ready dict: path, fps, width, height, frames,
    seconds, flash_frames (indices), shapes.
    """
    import av

    path = Path(path)
    width, height = int(size[0]), int(size[1])
    if width % 2 or height % 2:
        raise ValueError(f"size {size}: width and height must be even (yuv420p)")
    shapes = default_shapes((width, height)) if shapes is None else tuple(shapes)
    n_frames = int(round(seconds * fps))
    flashes = _flash_frames(flash_at, flash_frames, fps)
    if codec is None:
        codec = {".webm": "libvpx", ".avi": "mpeg4"}.get(path.suffix.lower(), "libx264")
    gop = int(gop or max(1, round(2 * fps)))
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.gop_size = gop
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "veryfast", "g": str(gop),
                              "keyint_min": str(gop)}
        elif codec == "mpeg4":
            stream.bit_rate = 4_000_000
        for i in range(n_frames):
            img = frame_at(i, fps, (width, height), shapes, flashes, barcode)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return {"path": str(path), "fps": float(fps), "width": width, "height": height,
            "frames": n_frames, "seconds": n_frames / fps, "flash_frames": list(flashes),
            "shapes": [asdict(s) for s in shapes]}


def render_frames(root, video_id: str, *, seconds: float, fps: float = 10, size=(320, 240),
                  shapes=None, flash_at=None, flash_frames: int = 1, barcode: bool = True,
                  quality: int = 95) -> dict:
    """The frames `render_video` would encode, as JPEGs `<root>/<video_id>/<video_id>_%06d.jpg`
    (file k holds frame index k - 1). Returns the same dict as `render_video` (path = folder)."""
    from PIL import Image

    width, height = int(size[0]), int(size[1])
    shapes = default_shapes((width, height)) if shapes is None else tuple(shapes)
    n_frames = int(round(seconds * fps))
    flashes = _flash_frames(flash_at, flash_frames, fps)
    folder = Path(root) / video_id
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_frames):
        img = frame_at(i, fps, (width, height), shapes, flashes, barcode)
        Image.fromarray(img).save(folder / f"{video_id}_{i + 1:06d}.jpg", quality=quality)
    return {"path": str(folder), "fps": float(fps), "width": width, "height": height,
            "frames": n_frames, "seconds": n_frames / fps, "flash_frames": list(flashes),
            "shapes": [asdict(s) for s in shapes]}


def textured_clip(n_frames: int, size=(96, 64), moves=(((12, 10), (20, 16), (3, 0)),),
                  seed: int = 0) -> np.ndarray:
    """Frames for optical-flow tests: a static smooth random texture with textured
    rectangular patches moving by whole pixels per frame (flat-coloured shapes are useless
    for flow: their inside has no texture).

    size = (W, H); moves: ((x, y), (w, h), (dx, dy)) per patch: top-left at frame 0, size,
    displacement per frame in pixels (patches must stay inside the frame). Returns
    (n_frames, H, W, 3) uint8 RGB; frame i shows patch k at (x + i * dx, y + i * dy)."""
    from scipy.ndimage import gaussian_filter

    width, height = int(size[0]), int(size[1])

    def texture(h, w, k):
        noise = np.random.default_rng([seed, k]).random((h, w, 3)) * 255
        return gaussian_filter(noise, sigma=(1.5, 1.5, 0)).clip(0, 255).astype(np.uint8)

    background = texture(height, width, 0)
    patches = [texture(h, w, k + 1) for k, (_, (w, h), _) in enumerate(moves)]
    out = np.empty((n_frames, height, width, 3), np.uint8)
    for i in range(n_frames):
        out[i] = background
        for ((x, y), (w, h), (dx, dy)), patch in zip(moves, patches):
            x0, y0 = x + i * dx, y + i * dy
            if not (0 <= x0 and x0 + w <= width and 0 <= y0 and y0 + h <= height):
                raise ValueError(f"patch at ({x0}, {y0}) size {w}x{h} leaves the "
                                 f"{width}x{height} frame at frame {i}")
            out[i, y0:y0 + h, x0:x0 + w] = patch
    return out


def shape_box(shape: Shape, t: float, size) -> tuple[float, float, float, float]:
    """Normalised (x1, y1, x2, y2) box of `shape` at time t in a frame of `size` = (W, H),
    without wrap-around (a shape crossing the frame edge gets the box of its unwrapped
    position, clipped to [0, 1])."""
    width, height = size
    x0 = (shape.x + shape.vx * t) % width
    y0 = (shape.y + shape.vy * t) % height
    if shape.kind == "disc":
        r = shape.w / 2
        x1, y1, x2, y2 = x0 - r, y0 - r, x0 + r, y0 + r
    else:
        x1, y1, x2, y2 = x0, y0, x0 + shape.w, y0 + shape.h
    return (min(max(x1 / width, 0.0), 1.0), min(max(y1 / height, 0.0), 1.0),
            min(max(x2 / width, 0.0), 1.0), min(max(y2 / height, 0.0), 1.0))


#: Actors of `render_labelled`: (name, kind, RGB colour, AVA v2.1 action ids, moves). Each
#: actor's actions are fixed, so a head trained on these videos has something to learn
#: (what the actor looks like and how it moves).
ACTORS = (
    ("walker", "rect", (230, 40, 40), (14, 17), True),     # walk, carry/hold (an object)
    ("stander", "rect", (40, 200, 60), (12,), False),       # stand
    ("sitter", "disc", (50, 80, 230), (11, 80), False),     # sit, watch (a person)
)


def labelled_shapes(size, seconds: float, rng) -> tuple[Shape, ...]:
    """One Shape per ACTORS entry at random places (and speeds for movers) that keep the
    whole shape inside the frame for `seconds` (so `shape_box` is exact)."""
    width, height = size
    shapes = []
    for _, kind, color, _, moves in ACTORS:
        w = rng.uniform(0.12, 0.2) * width
        h = w if kind == "disc" else rng.uniform(0.3, 0.5) * height
        if kind == "disc":
            h = w = min(w, 0.4 * height)
        speed = rng.uniform(0.04, 0.08) * width * rng.choice([-1, 1]) if moves else 0.0
        travel = abs(speed) * seconds
        lo = w / 2 if kind == "disc" else 0.0
        x_min = lo + (travel if speed < 0 else 0.0)
        x_max = lo + width - w - (travel if speed > 0 else 0.0)
        y_lo = h / 2 if kind == "disc" else 0.0
        x = rng.uniform(x_min, max(x_min, x_max))
        y = rng.uniform(y_lo, y_lo + 0.88 * height - h)       # above the barcode strip
        shapes.append(Shape(kind, color, float(x), float(y), float(w), float(h), vx=float(speed)))
    return tuple(shapes)


def render_labelled(root, video_ids, *, seconds: float = 6, fps: float = 10, size=(320, 240),
                    seed: int = 0, det_score: float = 0.9) -> dict:
    """Rendered videos with ground truth: `<root>/videos/<id>.mp4` showing the ACTORS at
    random places, `<root>/gt.csv` (AVA ground truth: every actor's box and actions at every
    whole second 1 .. seconds - 1) and `<root>/det.csv` (the same boxes as person detections
    scored det_score). Returns {"videos": folder, "gt": path, "det": path, "shapes": {id:
    shapes}}."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    gt_lines, det_lines, shapes_of = [], [], {}
    for vid in video_ids:
        shapes = labelled_shapes(size, seconds, rng)
        shapes_of[vid] = shapes
        render_video(root / "videos" / f"{vid}.mp4", seconds=seconds, fps=fps, size=size,
                     shapes=shapes)
        for ts in range(1, int(seconds)):
            for person, (shape, actor) in enumerate(zip(shapes, ACTORS)):
                box = ",".join(f"{v:.4f}" for v in shape_box(shape, ts, size))
                det_lines.append(f"{vid},{ts},{box},,{det_score}")
                gt_lines += [f"{vid},{ts},{box},{action},{person}" for action in actor[3]]
    (root / "gt.csv").write_text("\n".join(gt_lines) + "\n")
    (root / "det.csv").write_text("\n".join(det_lines) + "\n")
    return {"videos": str(root / "videos"), "gt": str(root / "gt.csv"),
            "det": str(root / "det.csv"), "shapes": shapes_of}
