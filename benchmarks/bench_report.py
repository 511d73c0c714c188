"""Speed of `hgrnn report` against `hgrnn eval-csv`, and of its thumbnails.

1. At AVA validation scale: the 5.6M-row result file of ``bench_eval.py`` (the pose-class
   ground truth of all 64 validation videos, every box scored for the 60 v2.1 classes;
   written once into ``--work``) with the v2.1 validation exclusions. `hgrnn eval-csv -q`
   and `hgrnn report --out DIR` each run ``--repeats`` times alternately, each in a fresh
   process (wall seconds and peak RSS of the process; medians).
2. Thumbnails: a 1280x720 30 fps H.264 video of ``--seconds`` seconds (bench_visualize's
   gradient with a moving square), 3 persons per keyframe every second, results for the 60
   classes; `report_files` with and without ``videos=`` in this process. The thumbnail
   time of one video is projected to the 64 AVA validation videos (897 keyframe seconds
   each, decoded sequentially from the first to the last keyframe with a thumbnail):
   64 x 897 / seconds x (thumbnail seconds of the rendered video) -- a projection.

    .venv/bin/python benchmarks/bench_report.py [--ava ../shared/ava] [--work DIR]
        [--repeats 3] [--seconds 60]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

AVA_VAL_VIDEOS = 64
AVA_KEYFRAME_SECONDS = 897          # keyframes 902 .. 1798


def run(cmd):
    """Wall seconds, CPU seconds (user + system) and peak RSS (MiB) of one fresh process."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    out, err = p.communicate()
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err.decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out.decode().strip()


def scale(args):
    from bench_eval import build_case

    gt_csv, res_csv = build_case(args.ava, args.work)
    excl = os.path.join(args.ava, "ava_val_excluded_timestamps_v2.1.csv")
    hgrnn = [sys.executable, "-m", "hgrnn"]
    out_dir = tempfile.mkdtemp(prefix="bench_report_")
    times = {"eval-csv": [], "report": []}
    cpu = {"eval-csv": [], "report": []}
    rss = {"eval-csv": [], "report": []}
    for _ in range(args.repeats):
        for name, cmd in (("eval-csv", hgrnn + ["eval-csv", gt_csv, res_csv, "--exclusions",
                                                excl, "-q"]),
                          ("report", hgrnn + ["report", gt_csv, res_csv, "--exclusions", excl,
                                              "--out", out_dir])):
            wall, cpu_s, peak, text = run(cmd)
            times[name].append(wall)
            cpu[name].append(cpu_s)
            rss[name].append(peak)
            print(json.dumps({"command": name, "wall_s": round(wall, 2), "cpu_s": round(cpu_s, 2),
                              "peak_rss_mib": round(peak), "output": text}), flush=True)
    page = os.path.getsize(os.path.join(out_dir, "index.html")) / 1e3
    return {k: (statistics.median(v), statistics.median(cpu[k]), statistics.median(rss[k]))
            for k, v in times.items()}, page


def thumbnails(args):
    from bench_visualize import FPS, SIZE, make_video

    from hgrnn.apps.report import report_files
    from hgrnn.data.ava import AvaRows, load_label_map, write_annotations, write_results

    work = tempfile.mkdtemp(prefix="bench_report_video_")
    videos = os.path.join(work, "videos")
    os.makedirs(videos)
    make_video(os.path.join(videos, "bench.mp4"), args.seconds)
    lm = load_label_map("ava-v2.1")
    rng = np.random.default_rng(0)
    ts = np.arange(1, args.seconds)
    n = len(ts) * 3
    x = rng.uniform(0, 0.7, n)
    boxes = np.round(np.c_[x, np.full(n, .2), x + .25, np.full(n, .9)], 3)
    acts = rng.choice(lm.ids[:13], n)                       # pose classes
    gt = AvaRows.from_arrays(["bench"] * n, np.repeat(ts, 3), boxes, acts,
                             person_ids=np.tile([0, 1, 2], len(ts)))
    k = len(lm)
    jitter = np.round(np.clip(np.repeat(boxes, k, axis=0)
                              + rng.uniform(-.03, .03, (n * k, 4)), 0, 1), 3)
    res = AvaRows.from_arrays(["bench"] * n * k, np.repeat(np.repeat(ts, 3), k), jitter,
                              np.tile(lm.ids, n), scores=np.round(rng.random(n * k), 4))
    write_annotations(os.path.join(work, "gt.csv"), gt)
    write_results(os.path.join(work, "res.csv"), res)
    plain, thumbs, cpu = [], [], []
    for _ in range(args.repeats):
        t, c = time.perf_counter(), time.process_time()
        report_files(os.path.join(work, "gt.csv"), [os.path.join(work, "res.csv")],
                     os.path.join(work, "plain"))
        plain.append(time.perf_counter() - t)
        page_cpu = time.process_time() - c
        c = time.process_time()
        done = report_files(os.path.join(work, "gt.csv"), [os.path.join(work, "res.csv")],
                            os.path.join(work, "thumbs"), videos=videos)
        thumbs.append(done["thumbnails"]["seconds"])
        cpu.append(time.process_time() - c - page_cpu)      # all threads of the decoder
        print(json.dumps({"page_s": round(plain[-1], 2), "thumbnail_s": round(thumbs[-1], 2),
                          "thumbnail_cpu_s": round(cpu[-1], 2),
                          "thumbnails": done["thumbnails"]["thumbnails"]}), flush=True)
    return {"size": SIZE, "fps": FPS, "seconds": args.seconds,
            "thumbnails": done["thumbnails"]["thumbnails"], "page_s": statistics.median(plain),
            "thumbnail_s": statistics.median(thumbs), "thumbnail_cpu_s": statistics.median(cpu)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ava", default=os.path.join(ROOT, "..", "shared", "ava"))
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "hgrnn_bench"),
                    help="where bench_eval's 290 MB result CSV is written and cached")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=60, help="length of the rendered video")
    ap.add_argument("--skip-scale", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    print(f"cores: {os.cpu_count()}; load average before: {os.getloadavg()}", flush=True)
    if not args.skip_scale:
        med, page = scale(args)
        print("\n| command (5,604,000 result rows, ava-2018) | wall s | CPU s | peak RSS "
              "MiB |\n|---|---|---|---|")
        for name, (wall, cpu_s, peak) in med.items():
            print(f"| hgrnn {name} | {wall:.1f} | {cpu_s:.1f} | {peak:.0f} |")
        print(f"report - eval-csv (medians of {args.repeats}): wall "
              f"{med['report'][0] - med['eval-csv'][0]:+.1f} s, CPU "
              f"{med['report'][1] - med['eval-csv'][1]:+.1f} s; index.html {page:.0f} kB")
    t = thumbnails(args)
    per_video = t["thumbnail_s"] * AVA_KEYFRAME_SECONDS / t["seconds"]
    per_video_cpu = t["thumbnail_cpu_s"] * AVA_KEYFRAME_SECONDS / t["seconds"]
    print(f"\nthumbnails: {t['thumbnails']} from one {t['size'][0]}x{t['size'][1]} "
          f"{t['fps']} fps video of {t['seconds']} s: {t['thumbnail_s']:.1f} s wall, "
          f"{t['thumbnail_cpu_s']:.1f} s CPU (medians; the page alone {t['page_s']:.1f} s); "
          f"projected: {per_video:.0f} s wall ({per_video_cpu:.0f} s CPU) per 15-minute AVA "
          f"video, {AVA_VAL_VIDEOS * per_video / 60:.0f} min wall "
          f"({AVA_VAL_VIDEOS * per_video_cpu / 60:.0f} min CPU) for the {AVA_VAL_VIDEOS} "
          "validation videos")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
