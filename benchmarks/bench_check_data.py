"""Speed of `hgrnn check-data` on an AVA-sized ground truth.

Input (written once into `--work`): a ground-truth CSV of `--rows` rows (default 837,318, the
size of ava_train_v2.1.csv) in AVA's layout: 235 videos x 897 keyframes (902..1798), about
4 rows per keyframe (persons x actions, ids of the 60 v2.1 classes, person ids), and a
person-box CSV with one box per person and a score. Timed, each `--repeats` times (median
reported): check-data on the ground truth alone, and with the person boxes (clean files:
the vectorised path), on the ground truth with one bad line appended (the row-by-row parse
reads the whole file); next to it the vectorised reader (`read_annotations`, the first
error only) as the floor. Wall and CPU seconds (this process, all threads: on a loaded
machine the steadier of the two).

    .venv/bin/python benchmarks/bench_check_data.py [--rows 837318] [--work DIR]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from hgrnn.allocator import reuse_freed_memory                 # noqa: E402
from hgrnn.data.ava import load_label_map, read_annotations   # noqa: E402
from hgrnn.data.check import check_data                       # noqa: E402


def write_inputs(work, rows):
    rng = np.random.default_rng(0)
    ids = np.asarray(load_label_map("ava-v2.1").ids)
    gt, det = os.path.join(work, "gt.csv"), os.path.join(work, "det.csv")
    n = 0
    with open(gt, "w") as g, open(det, "w") as d:
        v = 0
        while n < rows:
            vid = f"video{v:04d}xyz"
            for ts in range(902, 1799):
                for p in range(int(rng.integers(1, 3))):
                    x, y = rng.uniform(0, 0.6, 2)
                    box = f"{x:.3f},{y:.3f},{x + 0.3:.3f},{y + 0.4:.3f}"
                    d.write(f"{vid},{ts},{box},,{rng.uniform(0.5, 1):.6f}\n")
                    for a in rng.choice(ids, int(rng.integers(1, 4)), replace=False):
                        g.write(f"{vid},{ts},{box},{a},{p}\n")
                        n += 1
                if n >= rows:
                    break
            v += 1
    bad = os.path.join(work, "gt_bad.csv")
    with open(gt) as src, open(bad, "w") as dst:
        dst.write(src.read() + "video0000xyz,x,0.1,0.1,0.5,0.5,12,0\n")
    return gt, det, bad


def timed(fn, repeats):
    """Medians of (wall s, CPU s of this process, all its threads)."""
    times = []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - t, time.process_time() - c))
    return tuple(statistics.median(x[k] for x in times) for k in (0, 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=837318)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    reuse_freed_memory()                        # as the commands (check-data, eval-csv) do
    work = args.work or tempfile.mkdtemp(prefix="bench_check_")
    os.makedirs(work, exist_ok=True)
    gt, det, bad = write_inputs(work, args.rows)
    lm = load_label_map("ava-v2.1")
    cases = [("read_annotations (vectorised reader, first error only)",
              lambda: read_annotations(gt, lm, progress=False)),
             ("check-data, ground truth", lambda: check_data(gt)),
             ("check-data, ground truth + person boxes", lambda: check_data(gt, detections=det)),
             ("check-data, ground truth with a bad last line (row by row)",
              lambda: check_data(bad))]
    print(f"{args.rows} ground-truth rows, median of {args.repeats}; load average "
          f"{os.getloadavg()}")
    print("| case | wall s | K rows/s | CPU s | x reader (wall / CPU) |")
    reader = None
    for name, fn in cases:
        s, cpu = timed(fn, args.repeats)
        reader = reader or (s, cpu)
        print(f"| {name} | {s:.2f} | {args.rows / s / 1e3:.0f} | {cpu:.2f} | "
              f"{s / reader[0]:.1f} / {cpu / reader[1]:.1f} |")


if __name__ == "__main__":
    main()
