"""Head benchmark: the paper's training schedule and `eval` at AVA scale (BENCHMARKS.md).

1. Writes the store benchmark's AVA-v2.1-train-scale store (235 videos x 897 keyframes, C=256,
   60 classes; `bench_store.make_ava_scale_store`) and an AVA-val-scale one (64 x 897).
2. train: `train_head` with the paper's schedule (1000 steps, batch 50, l=3, J=2, default
   hidden sizes) in a fresh process: wall time (store loading included), steps/s of the
   loop, share of the loop spent building batches, peak RSS, the 1-minute load average
   at its start and end.
3. eval: `evaluate_store` of that checkpoint on the val-scale store with its detections
   (as `hgrnn eval` without --out; with --write-csv also writing results.csv, metrics.json
   and the chart), in a fresh process: wall time split into prediction, ground truth,
   evaluation (and CSV writing), result rows, peak RSS; with --arrow-csv, afterwards, the
   time pyarrow's own CSV writer takes for the same rows.

    .venv/bin/python benchmarks/bench_head.py                       # full scale, under /tmp
    .venv/bin/python benchmarks/bench_head.py --videos 20 --val-videos 8 --steps 100  # quick
    .venv/bin/python benchmarks/bench_head.py --threads 0           # torch's default threads
    .venv/bin/python benchmarks/bench_head.py --write-csv --arrow-csv  # + results.csv, pyarrow

Targets (2-core CPU, idle): training < 90 s with batch building < 10% and peak memory
< 3 GiB; eval with --write-csv <= 30 s and <= 2 GiB peak (issue 30). The eval phase also
reports the resident memory at the start of each stage (`*_rss_at_start_gib`): what the
rows, the model and torch hold before writing and evaluating.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _rss_gib() -> float:
    """The resident memory now (Linux; NaN elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30
    except OSError:
        return float("nan")


def phase_train(args) -> dict:
    from hgrnn.hgrnn_head.model import HeadConfig
    from hgrnn.hgrnn_head.train import TrainConfig, train_head

    cpu, load = time.process_time(), os.getloadavg()[0]
    out = train_head(args.store, args.run, HeadConfig(context=3, iterations=2),
                     TrainConfig(steps=args.steps, batch_size=50, device="cpu", val_every=0,
                                 num_threads=args.threads),
                     progress=not args.quiet)
    loop = out["loop_seconds"]
    return {"wall_s": out["seconds"], "cpu_s": time.process_time() - cpu, "loop_s": loop,
            "steps": out["steps"], "steps_per_s": out["steps"] / loop,
            "batch_s": out["batch_seconds"], "batch_share": out["batch_seconds"] / loop, "final_loss": out["loss"],
            "peak_rss_gib": _peak_rss_gib(), "load_average": [load, os.getloadavg()[0]]}


def phase_eval(args) -> dict:
    import hgrnn.hgrnn_head.infer as infer

    spent, returned = {}, {}

    def timed(name, fn):  # wraps a stage of evaluate_store: its time, result, RSS at start
        def wrapper(*a, **k):
            spent[name.replace("_s", "_rss_at_start_gib")] = _rss_gib()
            t = time.perf_counter()
            out = fn(*a, **k)
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - t
            returned[name] = out
            return out
        return wrapper

    # the names evaluate_store calls, in its own module
    infer.predict_store = timed("predict_s", infer.predict_store)
    infer.store_ground_truth = timed("ground_truth_s", infer.store_ground_truth)
    infer.evaluate = timed("evaluate_s", infer.evaluate)
    infer.write_results = timed("write_csv_s", infer.write_results)
    t, cpu = time.perf_counter(), time.process_time()
    out_dir = os.path.join(args.run, "eval") if args.write_csv else None
    result = infer.evaluate_store(args.store, args.run, out_dir=out_dir, progress=not args.quiet,
                                  device="cpu", num_threads=args.threads)
    wall = time.perf_counter() - t
    out = {"wall_s": wall, "cpu_s": time.process_time() - cpu, **spent,
           "result_rows": len(returned["predict_s"]), "mAP": result.mAP,
           "peak_rss_gib": _peak_rss_gib()}
    if args.arrow_csv:  # after the run (its peak RSS is the command's): pyarrow's own writer
        out["pyarrow_write_csv_s"] = _pyarrow_write_csv(returned["predict_s"],
                                                        os.path.join(args.run, "arrow.csv"))
    return out


def _pyarrow_write_csv(rows, path) -> float:
    """Seconds pyarrow.csv.write_csv takes for the same result rows (8 columns, no header,
    no quotes; its own number notation), the yardstick of `write_results`."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    t = time.perf_counter()
    b = rows.boxes
    table = pa.table({"video": rows.video_ids, "ts": rows.timestamps, "x1": b[:, 0],
                      "y1": b[:, 1], "x2": b[:, 2], "y2": b[:, 3], "action": rows.action_ids,
                      "score": rows.scores})
    pcsv.write_csv(table, path, pcsv.WriteOptions(include_header=False, quoting_style="none"))
    seconds = time.perf_counter() - t
    os.remove(path)
    return seconds


def _child(phase, store, run, args) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--phase", phase, "--store", store,
           "--run", run, "--steps", str(args.steps), "--threads", str(args.threads)]
    if args.quiet:
        cmd.append("--quiet")
    if args.write_csv:
        cmd.append("--write-csv")
    if args.arrow_csv:
        cmd.append("--arrow-csv")
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=235, help="training store videos (AVA train: 235)")
    p.add_argument("--val-videos", type=int, default=64, help="eval store videos (AVA val: 64)")
    p.add_argument("--keyframes", type=int, default=897)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1, as train-head/eval; 0: torch default)")
    p.add_argument("--dir", default=None, help="work folder (default: a new one under /tmp)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--write-csv", action="store_true",
                   help="eval also writes results.csv/metrics.json/chart (--out); the CSV of an "
                        "AVA-val-scale store has ~10M rows")
    p.add_argument("--arrow-csv", action="store_true",
                   help="eval then also times pyarrow.csv.write_csv on the same result rows")
    p.add_argument("--phase", choices=["train", "eval"], help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    p.add_argument("--run", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.phase:  # child process: one phase, JSON on the last stdout line
        print(json.dumps(phase_train(args) if args.phase == "train" else phase_eval(args)))
        return

    from bench_store import make_ava_scale_store

    work = args.dir or tempfile.mkdtemp(prefix="bench_head_")
    os.makedirs(work, exist_ok=True)
    train_store = os.path.join(work, f"train_{args.videos}x{args.keyframes}.h5")
    val_store = os.path.join(work, f"val_{args.val_videos}x{args.keyframes}.h5")
    for path, videos, seed in ((train_store, args.videos, 0), (val_store, args.val_videos, 1)):
        if not os.path.exists(path):
            made = make_ava_scale_store(path, videos=videos, keyframes=args.keyframes, seed=seed,
                                        progress=not args.quiet)
            print(f"wrote {path} in {made['seconds']:.1f} s", file=sys.stderr)
    run = os.path.join(work, "run")
    if os.path.exists(os.path.join(run, "last.pt")):
        os.remove(os.path.join(run, "last.pt"))
    results = {"machine": f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start",
               "train_store": train_store, "val_store": val_store}
    results["train"] = _child("train", train_store, run, args)
    results["eval"] = _child("eval", val_store, run, args)
    results["load_average_end"] = os.getloadavg()[0]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
