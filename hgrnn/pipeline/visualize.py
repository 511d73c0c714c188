"""Drawing AVA-format results and ground truth onto a video (`hgrnn visualize`, and the
videos `hgrnn predict` writes).

Input: any AVA result CSV (``video_id,timestamp,x1,y1,x2,y2,action_id,score``, one row per
box AND action, from any system) and optionally a ground-truth CSV of the same video.

Persons. Rows of one keyframe with the same box are one person. Every result person is
drawn; its label lists its ``top_k`` best actions scored at least ``min_score`` as
``name score`` (class names from the label map, ``id N`` for ids the map does not have); a
person without such an action gets a thin outline and no label. When the result file has
person ids (a 9th column, `hgrnn track`), each person is drawn in the colour of its id
(`id_color`) and its label starts with the id (``#3 walk 0.81``; ``#3`` alone without
actions), so a person keeps its colour from keyframe to keyframe. Ground-truth persons are
all drawn, in ``GT_COLOR``, with their actions (no scores) under the box.

Time mapping (frame-exact). Keyframe timestamp ts (integer seconds, as in AVA CSVs) is video
time ts - time_offset; frame n of the video (index from its presentation time, as
`hgrnn.data.video` numbers frames) is at time n / fps. Frame n shows the keyframe
nearest to it in time:

    ts(n) = floor(n / fps + time_offset + 1/2)        (exact rational arithmetic)

so each keyframe is held for the second centred on it (the clip its features came from is
centred on it too), and the keyframe's own centre frame round((ts - offset) * fps), the
frame extraction used, always shows it. Frames whose nearest keyframe has no persons show
the video unchanged.

Pixels. A normalised box (x1, y1, x2, y2) covers pixel columns round(x1 * W) ..
round(x2 * W) - 1 and rows round(y1 * H) .. round(y2 * H) - 1 of a W x H frame; its outline
is drawn on the outermost ``line_width(W, H)`` pixels of that area (inside the box, so the
drawn pixels are box pixels; ground truth on the outermost half of that, on top). Labels are
white or black text on a filled box of the person's colour, its size growing with the frame
(`font_size`, legible down to 160x120); results above the box, ground truth under it, never
over or touching each other, and off the persons where there is room (`layout_labels`: at
most `max_label_lines` lines per person, a "+N" counting the actions left out; on small
frames short names; labels moved to the nearest free place or cut to the lines that fit).
torchvision's `draw_bounding_boxes` is not used: it puts each label at its box's corner,
with no way to keep labels apart.

Output: an MP4 with one frame per input frame, at the input's frame rate and size (or scaled
up so the shorter side is ``min_size``, and down so the longer side is ``max_size``; sizes are rounded down to even numbers, as 4:2:0 video
needs), encoded with PyAV: H.264 (libx264) when the FFmpeg build has it, else MPEG-4 part 2.
A contact sheet (``sheet``) is a PNG grid of evenly spaced keyframes (their centre frames,
drawn at tile size so labels stay readable) with the timestamp under each.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from hgrnn.console import progress_bar
from hgrnn.data.ava import load_label_map, read_annotations, read_results
from hgrnn.data.keyframes import describe_outside, offset_hint, split_keyframes
from hgrnn.data.video import VideoError, open_source
from hgrnn.data.paths import output_path, replacing

#: Colours of result persons (cycled per person of a keyframe), RGB.
PRED_COLORS = ((255, 140, 0), (0, 160, 255), (230, 40, 200), (255, 220, 0), (160, 90, 255),
               (255, 70, 70), (0, 210, 200), (255, 160, 190))
#: Colour of ground-truth boxes and labels, RGB.
GT_COLOR = (40, 220, 40)
#: Height of the caption strip under each contact-sheet tile, as a fraction of the tile width.
SHEET_CAPTION = 0.09


class VisualizeError(Exception):
    """Bad input to drawing (no rows for the video, a bad --out, an unknown codec); the
    message names the file."""


@dataclass
class Person:
    """One box of one keyframe and the labels drawn with it."""
    box: tuple[float, float, float, float]        # normalised x1, y1, x2, y2
    labels: list[tuple[str, float | None]] = field(default_factory=list)   # (name, score)
    best: float = 1.0                              # highest score (1 for ground truth)
    person_id: int | None = None                   # track id (`hgrnn track`), if any


def label_names(label_map) -> dict[int, str]:
    """action id -> display name (a LabelMap, or None for ids only)."""
    if label_map is None:
        return {}
    return {int(i): str(n) for i, n in zip(label_map.ids, label_map.names)}


def group_keyframes(rows, video_id: str, names: dict, *, min_score: float = 0.0,
                    top_k: int = 3, ground_truth: bool = False) -> dict[int, list[Person]]:
    """AvaRows -> {timestamp: [Person, ...]} for the rows of `video_id`.

    Results: every person; labels = its top_k actions scored >= min_score, best first (none:
    the box is drawn thin, without a label); persons sorted by best score (highest first). Ground truth: every person,
    all its actions in id order (a row with action -1 is a box without action)."""
    mine = np.flatnonzero(rows.video_ids == video_id)
    pids = None if ground_truth else getattr(rows, "person_ids", None)
    person_of: dict[tuple, int] = {}
    boxes64 = getattr(rows, "boxes64", None)
    boxes = (boxes64 if boxes64 is not None else rows.boxes)[mine].astype(np.float64)
    groups: dict[tuple, dict] = {}
    for k, i in enumerate(mine):
        key = (int(rows.timestamps[i]), *np.round(boxes[k], 6).tolist())
        action = int(rows.action_ids[i])
        score = None if ground_truth or rows.scores is None else float(rows.scores[i])
        groups.setdefault(key, {})
        if pids is not None and pids[i] >= 0:
            person_of.setdefault(key, int(pids[i]))
        if action >= 0:
            old = groups[key].get(action)
            if score is None or old is None or score > old:
                groups[key][action] = score
    out: dict[int, list[Person]] = {}
    for (ts, *box), actions in groups.items():
        if ground_truth:
            labels = [(names.get(a, f"id {a}"), None) for a in sorted(actions)]
            person = Person(tuple(box), labels, 1.0)
        else:
            ranked = sorted(((s, a) for a, s in actions.items() if s is not None),
                            key=lambda sa: (-sa[0], sa[1]))
            labels = [(names.get(a, f"id {a}"), s) for s, a in ranked[:top_k] if s >= min_score]
            person = Person(tuple(box), labels, ranked[0][0] if ranked else 0.0,
                            person_of.get((ts, *box)))
        out.setdefault(ts, []).append(person)
    for persons in out.values():
        persons.sort(key=lambda p: (-p.best, p.box))
    return out


# ----------------------------------------------------------------------------- time mapping

def keyframe_of_frame(index: int, fps, time_offset=0) -> int:
    """The keyframe timestamp shown on frame `index`: floor(index / fps + offset + 1/2),
    computed exactly (fps as a Fraction, e.g. 30000/1001)."""
    t = Fraction(index) / as_fraction(fps) + Fraction(time_offset) + Fraction(1, 2)
    return math.floor(t)


def centre_frame(ts: int, fps, time_offset=0) -> int:
    """The frame of keyframe ts that extraction used: round((ts - offset) * fps)."""
    return int(round(float((Fraction(ts) - Fraction(time_offset)) * as_fraction(fps))))


def as_fraction(fps) -> Fraction:
    """A frame rate as an exact Fraction (floats like 29.97002997 -> 30000/1001)."""
    if isinstance(fps, Fraction):
        return fps
    return Fraction(fps).limit_denominator(1001)


# ----------------------------------------------------------------------------- drawing

def box_pixels(box, width: int, height: int) -> tuple[int, int, int, int]:
    """Normalised xyxy -> inclusive pixel rectangle (left, top, right, bottom), clipped to
    the frame; right/bottom are the last covered column/row (see the module docstring)."""
    x1, y1, x2, y2 = box
    left, top = round(x1 * width), round(y1 * height)
    right, bottom = round(x2 * width) - 1, round(y2 * height) - 1
    left, top = min(max(left, 0), width - 1), min(max(top, 0), height - 1)
    right, bottom = min(max(right, left), width - 1), min(max(bottom, top), height - 1)
    return left, top, right, bottom


def line_width(width: int, height: int) -> int:
    """Result box outline width in pixels: 4 up to 540p, growing with the frame. Ground-truth
    outlines are half as wide and drawn on top, so a result box on exactly the ground-truth
    box shows both colours (ground truth outside, result inside)."""
    return max(4, round(min(width, height) / 135))


def font_size(width: int, height: int) -> int:
    """Label text height in pixels, growing with the frame: 9 on a 160x120 frame (smaller
    is not legible), 11 on a 320x240 tile, 39 on 1080p."""
    short = min(width, height)
    return max(11, round(short / 28)) if short >= 240 else max(9, round(short * 11 / 240))


def max_label_lines(height: int, line_h: int) -> int:
    """How many lines one person's label may have on a frame `height` pixels high (lines
    `line_h` high): at most about a sixth of the frame's height, so that labels leave the
    persons visible (1 line on 160x120, 2 on 320x240, 3 from 640x360 up). The actions left
    out are counted by a "+N" at the end of the last line."""
    return max(1, height // (6 * line_h))


_FONTS: dict = {}


def _font(size: int):
    from PIL import ImageFont

    if size not in _FONTS:
        try:
            _FONTS[size] = ImageFont.load_default(size=size)    # scalable (Pillow >= 10.1)
        except TypeError:                                        # older Pillow: bitmap font
            _FONTS[size] = ImageFont.load_default()
    return _FONTS[size]


def _text_color(rgb) -> tuple:
    luminance = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def short_name(name: str) -> str:
    """An action name without its parenthesised part: "talk to (e.g., self, a person, a
    group)" -> "talk to" (AVA's names stay distinct this way)."""
    return name.split(" (")[0]


@dataclass(frozen=True)
class Label:
    """A label block as drawn: text lines, pixel rectangle (x0, y0, x1, y1; x1 and y1
    exclusive), fill colour, and source: "results", "gt" or "legend"."""
    lines: tuple[str, ...]
    rect: tuple[int, int, int, int]
    color: tuple
    source: str


def id_color(person_id: int) -> tuple:
    """The colour of a person id, RGB: hues spread by the golden angle (neighbouring ids
    far apart, no two ids alike), never the ground truth's green."""
    import colorsys

    hue = (person_id * 0.6180339887) % 1.0 * 300.0     # degrees, 300 of the 360
    hue = hue + 60.0 if hue >= 90.0 else hue            # skip 90..150 (GT_COLOR's green)
    r, g, b = colorsys.hsv_to_rgb(hue / 360.0, 0.85, 1.0)
    return (round(255 * r), round(255 * g), round(255 * b))


def person_color(person: Person, rank: int) -> tuple:
    """A result person's colour: its id's (`id_color`), else the palette's by its rank in
    the keyframe."""
    if person.person_id is not None:
        return id_color(person.person_id)
    return PRED_COLORS[rank % len(PRED_COLORS)]


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _pad(font) -> int:
    """Margin between a label's text and the edge of its filled box, in pixels."""
    return max(1, round(getattr(font, "size", 11) / 6))


def _text_metrics(font) -> tuple[int, int]:
    """(line height, ink top): a label line is the ink's height plus a margin above and
    below; text is drawn `ink top` pixels higher so that its ink starts at the margin."""
    boxes = [font.getbbox(text) for text in ("Ag", "(y)", "#0 +")]
    top, bottom = min(b[1] for b in boxes), max(b[3] for b in boxes)
    return bottom - top + 2 * _pad(font), top


#: Pixels of video left between two labels, so that neighbouring labels (two ground-truth
#: labels are both green) never read as one.
LABEL_GAP = 1


def _iou(a, b) -> float:
    """IoU of two inclusive pixel rectangles (left, top, right, bottom)."""
    w = min(a[2], b[2]) - max(a[0], b[0]) + 1
    h = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if w <= 0 or h <= 0:
        return 0.0
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return w * h / (area_a + area_b - w * h)


def layout_labels(persons: list[Person], gt: list[Person], width: int, height: int,
                  font, legend: bool = False) -> list[Label]:
    """Where the labels of a keyframe go on a width x height frame; no two overlap or touch
    (`LABEL_GAP` pixels of video between them).

    Each label has at most `max_label_lines` lines (a "+N" at the end of its last line
    counts the actions left out). Placed in order, result labels first (best person first),
    then ground truth. Candidate places, in order: above the box (ground truth: under it),
    on its other side, beside it (right, then left), inside it, then the free places next
    to labels already placed, nearest first; columns: the box's left edge, else its right
    edge. The first candidate that overlaps no placed label is taken, preferring, in turn:
    one that hides no other person's box and not its own box; one that leaves its own box
    free when the box is small (the label would cover more than a quarter of it); any. When a
    line is wider than half the frame, every label uses short names (`short_name`). A label
    with no free place loses its last lines (counted in the "+N"), and is left out when not
    even one line fits. legend: a "ground truth" tag in the first free corner (top right,
    bottom right, top left, bottom left), else none."""
    pad = _pad(font)
    line_h, _ = _text_metrics(font)
    cap = max_label_lines(height, line_h)
    placed: list[Label] = []
    everyone = [box_pixels(p.box, width, height) for p in (*persons, *gt)]

    def free(rect) -> bool:
        x0, y0, x1, y1 = rect
        grown = (x0 - LABEL_GAP, y0 - LABEL_GAP, x1 + LABEL_GAP, y1 + LABEL_GAP)
        return not any(_overlaps(grown, lab.rect) for lab in placed)

    def hides(rect, box) -> bool:           # rect: exclusive label rect; box: inclusive
        return _overlaps(rect, (box[0], box[1], box[2] + 1, box[3] + 1))

    def place(lines, rect, below, color, source):
        left, top, right, bottom = rect
        box_area = (right - left + 1) * (bottom - top + 1)
        others = [] if source == "legend" else [b for b in everyone if _iou(b, rect) < 0.5]
        limit = len(lines) if source == "legend" else min(len(lines), cap)
        for n in range(limit, 0, -1):
            shown = list(lines[:n])
            if n < len(lines):
                shown[-1] += f" +{len(lines) - n}"
            block_w = max(font.getbbox(line)[2] for line in shown) + 2 * pad
            block_h = n * line_h
            if block_w > width or block_h > height:
                continue
            x_max, y_max = width - block_w, height - block_h
            if source == "legend":                     # a corner, the top right first
                spots = [(x_max, 0), (x_max, y_max), (0, 0), (0, y_max)]
            else:
                above, under = top - block_h, bottom + 1
                near, far = (under, above) if below else (above, under)
                inside = bottom + 1 - block_h if below else top
                xs = (left, right + 1 - block_w)
                spots = [(x, y) for y in (near, far) for x in xs]
                spots += [(right + 1, top), (left - block_w, top)]
                spots += [(x, inside) for x in xs]
                # the free places nearest the box touch a placed label
                edges = sorted({e for lab in placed for e in (lab.rect[3] + LABEL_GAP,
                                                              lab.rect[1] - block_h - LABEL_GAP)},
                               key=lambda y: (abs(y - near), y))
                spots += [(x, y) for y in edges for x in xs]
            small = source != "legend" and block_w * block_h > box_area / 4
            candidates = []
            for spot in spots:
                x, y = min(max(spot[0], 0), x_max), min(max(spot[1], 0), y_max)
                box = (x, y, x + block_w, y + block_h)
                if box not in candidates and free(box):
                    candidates.append(box)
            if candidates:
                # the first candidate of the best kind: 0 hides no person, 1 hides another
                # person's box, 2 hides its own (small) box
                best = min(candidates, key=lambda r: (2 if small and hides(r, rect) else
                                                      int(any(hides(r, b) for b in others))))
                placed.append(Label(tuple(shown), best, color, source))
                return

    def texts(person, short: bool):
        lines = [(short_name(name) if short else name)
                 + ("" if score is None else f" {score:.2f}")
                 for name, score in person.labels] or ["(person)"]
        if person.person_id is not None:
            tag = f"#{person.person_id}"
            lines = [f"{tag} {lines[0]}", *lines[1:]] if person.labels else [tag]
        return lines

    def labelled(person):
        return bool(person.labels) or person.person_id is not None

    labelled_all = [p for p in persons if labelled(p)] + list(gt)
    short = any(font.getbbox(line)[2] + 2 * pad > width / 2
                for p in labelled_all for line in texts(p, False))
    for k, person in enumerate(persons):
        if labelled(person):
            place(texts(person, short), box_pixels(person.box, width, height), False,
                  person_color(person, k), "results")
    for person in gt:
        place(texts(person, short), box_pixels(person.box, width, height), True, GT_COLOR, "gt")
    if legend:
        place(["ground truth"], (0, 0, 0, 0), False, GT_COLOR, "legend")
    return placed


def draw_persons(image, persons: list[Person], gt: list[Person] = (), *, show_legend=False):
    """Draw result persons (palette colours, labels above the box) and ground-truth persons
    (GT_COLOR, labels under the box) onto a PIL RGB image, in place; labels as
    `layout_labels` places them (never over each other). show_legend: a small "ground
    truth" tag in GT_COLOR in a free corner."""
    from PIL import ImageDraw

    width, height = image.size
    draw = ImageDraw.Draw(image)
    lw = line_width(width, height)
    font = _font(font_size(width, height))
    # boxes first (results, then ground truth on top), then all labels, so that no box
    # line crosses a label
    for k, person in enumerate(persons):
        rect = box_pixels(person.box, width, height)
        draw.rectangle(rect, outline=person_color(person, k),
                       width=lw if person.labels else max(1, lw // 4))
    for person in gt:
        draw.rectangle(box_pixels(person.box, width, height), outline=GT_COLOR,
                       width=max(1, lw // 2))
    pad = _pad(font)
    line_h, ink_top = _text_metrics(font)
    for label in layout_labels(persons, gt, width, height, font, legend=show_legend):
        x0, y0, x1, y1 = label.rect
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=label.color)
        for k, line in enumerate(label.lines):
            draw.text((x0 + pad, y0 + k * line_h + pad - ink_top), line,
                      fill=_text_color(label.color), font=font)
    return image


# ----------------------------------------------------------------------------- encoding

def pick_codec() -> str:
    """'libx264' (H.264) when this FFmpeg build can encode it, else 'mpeg4'."""
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def output_size(width: int, height: int, max_size: int | None,
                min_size: int | None = None) -> tuple[int, int]:
    """(W, H) of the output video: the input's, or scaled up so min(W, H) >= min_size (drawn
    on the larger frame, labels are sharper and cover less of the video), then down so
    max(W, H) <= max_size; both rounded down to even numbers (4:2:0 chroma)."""
    if min_size and min(width, height) < min_size:
        scale = min_size / min(width, height)
        width, height = round(width * scale), round(height * scale)
    if max_size and max(width, height) > max_size:
        scale = max_size / max(width, height)
        width, height = round(width * scale), round(height * scale)
    return max(2, width - width % 2), max(2, height - height % 2)


def _sheet_picks(timestamps: list[int], cells: int) -> list[int]:
    """Up to `cells` timestamps evenly spread over the sorted `timestamps`."""
    if len(timestamps) <= cells:
        return list(timestamps)
    idx = np.round(np.linspace(0, len(timestamps) - 1, cells)).astype(int)
    return [timestamps[i] for i in idx]


def _inside_keyframes(video, timestamps, source, time_offset) -> list:
    """The keyframes of `timestamps` inside the video at `time_offset`; warns (as
    extract-features and detect do) naming those outside, and with no keyframe inside, the
    --time-offset that would fit."""
    inside, outside = split_keyframes(timestamps, source.fps, source.duration, time_offset)
    if outside:
        message = describe_outside(video, outside, len(timestamps), source.duration,
                                   time_offset)
        if not inside:
            message += "; nothing to draw: " + offset_hint(outside, source.fps, source.duration)
        warnings.warn(message, stacklevel=3)
    return inside


def draw_video(video, out, *, results=None, gt=None, time_offset=0.0, max_size=None,
               min_size=None, sheet=None, sheet_grid=(3, 4), sheet_tile_width=320, show_progress=False,
               codec=None) -> dict:
    """Decode `video` once and write it with persons drawn.

    results / gt: {timestamp: [Person]} (`group_keyframes`); out: the MP4 to write (None:
    no video, e.g. for a sheet only); sheet: PNG path for a contact sheet of
    sheet_grid = (rows, columns) keyframes. Returns a dict: frames, fps, width, height
    (output), codec, keyframes_drawn, sheet_keyframes.
    """
    import av
    from PIL import Image

    results, gt = results or {}, gt or {}
    drawn_ts = sorted(set(results) | set(gt))
    try:
        source = open_source(video)
    except VideoError as exc:
        raise VisualizeError(str(exc)) from None
    rate = as_fraction(source.fps)
    drawn_ts = _inside_keyframes(video, drawn_ts, source, time_offset)
    width, height = output_size(source.width, source.height, max_size, min_size)
    rows, cols = sheet_grid
    picks = {}
    if sheet is not None:
        for ts in _sheet_picks(drawn_ts, rows * cols):
            picks[centre_frame(ts, rate, time_offset)] = ts
    tile_w = int(sheet_tile_width)
    tile_h = max(2, round(tile_w * source.height / source.width))
    tiles: dict[int, Image.Image] = {}

    container = stream = None
    codec = codec or pick_codec()
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        partial = Path(out).with_name(Path(out).name + ".partial")   # renamed when complete
        container = av.open(str(partial), mode="w", format="mp4")
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = 1 / rate
        if codec == "libx264":
            stream.options = {"crf": "20", "preset": "veryfast"}
        else:
            stream.bit_rate = max(1_000_000, int(width * height * float(rate) * 0.25))
    bar = None
    if show_progress:
        total = (int(source.duration * float(rate)) if math.isfinite(source.duration)
                 else None)
        bar = progress_bar(total=total, unit="frame", desc=f"draw {Path(str(video)).name}",
                   dynamic_ncols=True)
    frames = drawn = 0
    complete = False
    previous = -1
    overlay: list = [None, None]          # [timestamp, RGBA drawing of its persons]
    try:
        for index, raw in source.frames(0):
            if index <= previous:          # duplicate timestamp: decoded once, written once
                continue
            previous = index
            ts = keyframe_of_frame(index, rate, time_offset)
            persons, truth = results.get(ts, []), gt.get(ts, [])
            if container is not None:
                image = Image.fromarray(source.convert(raw, width, height))
                if persons or truth:
                    # every frame of a keyframe gets the same drawing: render it once, as an
                    # RGBA overlay (everything drawn is opaque), and paste it on each frame
                    if overlay[0] != ts:
                        layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
                        overlay[:] = [ts, draw_persons(layer, persons, truth,
                                                       show_legend=bool(gt))]
                    image.paste(overlay[1], (0, 0), overlay[1])
                    drawn += 1
                frame = av.VideoFrame.from_image(image)
                frame.pts = index
                for packet in stream.encode(frame):
                    container.mux(packet)
            if index in picks:
                tile = Image.fromarray(source.convert(raw, tile_w, tile_h))
                tiles[picks[index]] = draw_persons(tile, persons, truth, show_legend=bool(gt))
            frames += 1
            if bar is not None:
                bar.update(1)
        if container is not None:
            for packet in stream.encode():
                container.mux(packet)
            container.close()                  # writes the index: fails on a full disk too
            os.replace(partial, out)
        complete = True
    except VideoError as exc:
        raise VisualizeError(str(exc)) from None
    except OSError as exc:                     # a full disk: name the file, leave no part
        raise VisualizeError(f"{out}: {exc.strerror or exc}") from None
    finally:
        if bar is not None:
            bar.close()
        if container is not None and not complete:
            with contextlib.suppress(Exception):
                container.close()
            with contextlib.suppress(OSError):
                os.remove(partial)
        source.close()
    if frames == 0:
        if out is not None:
            os.remove(out)
        raise VisualizeError(f"{video}: no frame could be decoded")
    if sheet is not None:
        write_sheet(sheet, tiles, rows, cols, tile_w, tile_h)
    return {"frames": frames, "fps": float(rate), "width": width, "height": height,
            "codec": codec if out is not None else None, "keyframes_drawn": len(drawn_ts),
            "frames_drawn": drawn, "sheet_keyframes": sorted(tiles)}


def sheet_layout(rows: int, cols: int, tile_w: int, tile_h: int) -> dict:
    """Pixel layout of a contact sheet: size (W, H), caption height, and the top-left corner
    of cell (r, c) at cell(r, c)."""
    caption = max(14, round(SHEET_CAPTION * tile_w))
    gap = 4
    return {"size": (cols * tile_w + (cols + 1) * gap, rows * (tile_h + caption) + (rows + 1) * gap),
            "caption": caption, "gap": gap,
            "cell": lambda r, c: (gap + c * (tile_w + gap), gap + r * (tile_h + caption + gap))}


def write_sheet(path, tiles: dict, rows: int, cols: int, tile_w: int, tile_h: int) -> None:
    """PNG grid of `tiles` ({timestamp: PIL image tile_w x tile_h}, in time order, row by
    row) with "t = TS s" centred under each; unused cells stay dark."""
    from PIL import Image, ImageDraw

    layout = sheet_layout(rows, cols, tile_w, tile_h)
    sheet = Image.new("RGB", layout["size"], (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    font = _font(max(11, round(layout["caption"] * 0.7)))
    for k, ts in enumerate(sorted(tiles)[: rows * cols]):
        x, y = layout["cell"](k // cols, k % cols)
        sheet.paste(tiles[ts], (x, y))
        text = f"t = {ts} s"
        box = draw.textbbox((0, 0), text, font=font)
        draw.text((x + (tile_w - box[2]) // 2, y + tile_h + (layout["caption"] - box[3]) // 2),
                  text, fill=(235, 235, 235), font=font)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as partial:           # a full disk: one line naming the file
        sheet.save(partial, format="PNG")


#: The label map `hgrnn predict` writes beside its results.csv.
PREDICT_LABEL_MAP = "features_label_map.txt"


def label_map_beside(*csv_paths) -> Path | None:
    """The label map that sits beside a result or ground-truth CSV, for a drawing without
    --label-map: `<csv stem>_label_map.txt` (what `hgrnn convert` writes), else
    `features_label_map.txt` in its folder (what `hgrnn predict` writes beside results.csv);
    the first CSV (of those not None) that has one wins; None when none has."""
    for path in csv_paths:
        if path is None:
            continue
        path = Path(path)
        for candidate in (path.with_name(f"{path.stem}_label_map.txt"),
                          path.with_name(PREDICT_LABEL_MAP)):
            if candidate.is_file():
                return candidate
    return None


def visualize(video, out=None, *, results_csv=None, gt_csv=None, label_map="ava-v2.1",
              video_id=None, min_score=0.3, top_k=3, time_offset=0.0, max_size=None,
              min_size=None, sheet=None, sheet_grid=(3, 4), sheet_tile_width=320, progress=False) -> dict:
    """`hgrnn visualize`: draw the rows of `results_csv` (and `gt_csv`) for one video.

    video_id: the CSV id of the video (default: the file name without extension).
    out: an .mp4 path, or a folder (ends with '/' or exists) receiving <video_id>.mp4.
    Raises VisualizeError / AvaFormatError naming the file. Returns draw_video's dict plus
    out, video_id, persons (result persons drawn) and gt_persons.
    """
    if results_csv is None and gt_csv is None:
        raise VisualizeError("give --results CSV and/or --gt CSV: there is nothing to draw")
    if out is None and sheet is None:
        raise VisualizeError("give --out FILE.mp4|DIR/ and/or --sheet FILE.png")
    video = Path(video)
    video_id = video_id or (video.name if video.is_dir() else video.stem)
    if out is not None:
        is_dir = str(out).endswith(("/", "\\")) or Path(out).is_dir()
        out = Path(out)
        if is_dir:
            out = output_path(out, video_id, ".mp4", inputs=[video])
        elif out.suffix.lower() != ".mp4":
            raise VisualizeError(f"--out {out}: expected FILE.mp4 or a folder DIR/")
        if out.resolve() == video.resolve():
            raise VisualizeError(f"--out {out} is the input video; choose another file")
    names = label_names(load_label_map(label_map) if label_map else None)
    found: dict[str, dict] = {}
    for kind, path in (("results", results_csv), ("gt", gt_csv)):
        if path is None:
            continue
        rows = (read_results(path, progress=False) if kind == "results"
                else read_annotations(path, progress=False))
        if len(rows) and not (rows.video_ids == video_id).any():
            ids = sorted(set(rows.video_ids.tolist()))
            shown = ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else "")
            raise VisualizeError(f"{path}: no rows for video {video_id!r} (it has {shown}); "
                                 f"pass --video-id")
        found[kind] = group_keyframes(rows, video_id, names, min_score=min_score, top_k=top_k,
                                      ground_truth=kind == "gt")
    summary = draw_video(video, out, results=found.get("results"), gt=found.get("gt"),
                         time_offset=time_offset, max_size=max_size, min_size=min_size,
                         sheet=sheet,
                         sheet_grid=sheet_grid, sheet_tile_width=sheet_tile_width,
                         show_progress=progress)
    summary.update(out=None if out is None else str(out), video_id=video_id,
                   persons=sum(len(p) for p in found.get("results", {}).values()),
                   gt_persons=sum(len(p) for p in found.get("gt", {}).values()))
    return summary
