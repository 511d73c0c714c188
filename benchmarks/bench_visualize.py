"""Speed of `hgrnn visualize` (and of the drawing step of `hgrnn predict`).

Input: a 720p (1280x720) 30 fps H.264 video of `--seconds` seconds (a gradient with a moving
square, encoded once into `--work`) and an AVA result file with `--persons` persons per
keyframe, every second, each scored for the 60 classes of AVA v2.1 (what `predict` writes).
Timed, each `--repeats` times (median reported): decoding the video alone (the floor: the same
sequential PyAV pass, RGB conversion included), drawing + encoding with libx264 and with
MPEG-4, drawing at --max-size 640, and a contact sheet alone (`--sheet`, no video).

    .venv/bin/python benchmarks/bench_visualize.py [--seconds 20] [--persons 5] [--work DIR]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from fractions import Fraction

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from hgrnn.data.ava import load_label_map                      # noqa: E402
from hgrnn.pipeline import visualize as vis                   # noqa: E402
from hgrnn.data.video import open_source                  # noqa: E402

SIZE = (1280, 720)
FPS = 30


def make_video(path, seconds):
    import av

    w, h = SIZE
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    background = (np.concatenate([60 + 120 * x + 0 * y, 60 + 100 * y + 0 * x,
                                  150 - 80 * x * y], axis=2)).astype(np.uint8)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(FPS))
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": "23", "preset": "veryfast"}
        for n in range(seconds * FPS):
            img = background.copy()
            left = (n * 7) % (w - 100)
            img[300:400, left:left + 100] = (230, 40, 40)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def make_results(path, seconds, persons, seed=0):
    rng = np.random.default_rng(seed)
    ids = load_label_map("ava-v2.1").ids
    lines = []
    for ts in range(seconds):
        for p in range(persons):
            x1, y1 = rng.uniform(0, 0.7), rng.uniform(0, 0.4)
            box = f"{x1:.3f},{y1:.3f},{x1 + 0.15:.3f},{y1 + 0.5:.3f}"
            lines += [f"bench,{ts},{box},{a},{rng.random() ** 3:.4f}" for a in ids]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def decode_only(video):
    source = open_source(video)
    frames = 0
    for _, raw in source.frames(0):
        source.convert(raw, source.width, source.height)
        frames += 1
    source.close()
    return frames


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--persons", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="bench-visualize-")
    os.makedirs(work, exist_ok=True)
    video, results = os.path.join(work, "bench.mp4"), os.path.join(work, "bench_results.csv")
    if not os.path.exists(video):
        make_video(video, args.seconds)
    make_results(results, args.seconds, args.persons)
    frames = args.seconds * FPS
    cases = {
        "decode only (floor)": lambda: decode_only(video),
        "draw + libx264": lambda: vis.visualize(video, os.path.join(work, "o264.mp4"),
                                                results_csv=results),
        "draw + mpeg4": lambda: vis.draw_video(
            video, os.path.join(work, "o4.mp4"), codec="mpeg4",
            results=vis.group_keyframes(*_rows(results), min_score=0.3, top_k=3)),
        "draw + libx264, --max-size 640": lambda: vis.visualize(
            video, os.path.join(work, "o640.mp4"), results_csv=results, max_size=640),
        "contact sheet 3x4 only": lambda: vis.visualize(
            video, None, results_csv=results, sheet=os.path.join(work, "sheet.png")),
    }
    print(f"{args.seconds} s of 1280x720 at {FPS} fps ({frames} frames), {args.persons} persons "
          f"per keyframe x 60 classes; median of {args.repeats}")
    print("| case | seconds | frames/s | x real time |")
    print("|---|---|---|---|")
    for name, fn in cases.items():
        s = timed(fn, args.repeats)
        print(f"| {name} | {s:.2f} | {frames / s:.0f} | {args.seconds / s:.1f} |", flush=True)


def _rows(results):
    from hgrnn.data.ava import read_results

    return (read_results(results, progress=False), "bench",
            vis.label_names(load_label_map("ava-v2.1")))


if __name__ == "__main__":
    main()
