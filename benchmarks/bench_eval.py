"""Evaluator benchmark at full AVA v2.1 validation scale, from the real files.

Ground truth: the pose-class rows of all 64 validation videos
(``ava_val_v2.1_pose_classes_only.csv``: 93,400 rows, 50,029 keyframes). Results: every
ground-truth row's box jittered by up to 0.02 (uniform per coordinate, rounded to 3
decimals like AVA files) and scored for all 60 classes of the v2.1 label map (random scores
with 6 decimals): 5,604,000 rows, ~290 MB of CSV, written once by
:func:`hgrnn.data.ava.write_results` and cached in ``--work``.

For each protocol a fresh subprocess reads both CSVs, evaluates and reports wall and CPU
seconds and its peak resident memory (``ru_maxrss``). The slow loop reference of the tests
(``tests/test_metrics.py``) is timed on a 2-video subset and compared with the vectorised
evaluator there.

``--command N`` times the whole command instead, as a user runs it: ``python -m hgrnn
eval-csv GT RESULTS --exclusions ... -q`` (start-up, imports, reading, evaluation,
output) N times per protocol, and prints each run's wall seconds, user + system CPU
seconds and peak RSS, and the medians. ``--repo DIR`` runs another checkout's hgrnn; given
several times, the checkouts' runs are interleaved (a
before/after comparison on the same machine state).

    .venv/bin/python benchmarks/bench_eval.py [--ava ../shared/ava] [--work DIR] [--baselines]
    .venv/bin/python benchmarks/bench_eval.py --command 3 [--repo BEFORE --repo .]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def build_case(ava_dir, work, seed=0):
    """Write (once) the benchmark result CSV; returns (gt_csv, results_csv)."""
    from hgrnn.data.ava import AvaRows, load_label_map, read_annotations, write_results

    gt_csv = os.path.join(ava_dir, "ava_val_v2.1_pose_classes_only.csv")
    res_csv = os.path.join(work, f"bench_eval_results_seed{seed}.csv")
    if os.path.exists(res_csv):
        return gt_csv, res_csv
    lm = load_label_map("ava-v2.1")
    gt = read_annotations(gt_csv)                       # all 93,400 rows
    rng = np.random.default_rng(seed)
    n, k = len(gt), len(lm)
    boxes = np.round(np.clip(gt.boxes64 + rng.uniform(-0.02, 0.02, (n, 4)), 0, 1), 3)
    boxes[:, 2] = np.maximum(boxes[:, 2], boxes[:, 0])
    boxes[:, 3] = np.maximum(boxes[:, 3], boxes[:, 1])
    rows = AvaRows(
        video_ids=np.repeat(gt.video_ids, k), timestamps=np.repeat(gt.timestamps, k),
        boxes=np.repeat(boxes.astype(np.float32), k, axis=0),
        action_ids=np.tile(np.asarray(lm.ids, np.int64), n), person_ids=None,
        scores=None, skipped={}, boxes64=np.repeat(boxes, k, axis=0),
        scores64=np.round(rng.random(n * k), 6))
    tmp = res_csv + ".part"
    print(f"writing {n * k:,} result rows to {res_csv} (once) ...", file=sys.stderr)
    write_results(tmp, rows, progress=True)
    os.replace(tmp, res_csv)
    return gt_csv, res_csv


def worker(protocol, gt_csv, res_csv, exclusions):
    """One measurement in this (fresh) process; prints a JSON line."""
    from hgrnn.data.ava import load_label_map, read_annotations, read_results
    from hgrnn.metrics import evaluate

    lm = load_label_map("ava-v2.1")
    ex = exclusions if protocol != "ava-2020" else None
    w0, c0 = time.perf_counter(), time.process_time()
    gt = read_annotations(gt_csv, lm, ex, progress=False)
    res = read_results(res_csv, lm, ex, progress=False)
    w1, c1 = time.perf_counter(), time.process_time()
    result = evaluate(gt, res, lm, protocol=protocol)
    w2, c2 = time.perf_counter(), time.process_time()
    print(json.dumps({
        "protocol": protocol, "rows": len(res), "read_s": w1 - w0, "read_cpu_s": c1 - c0,
        "eval_s": w2 - w1, "eval_cpu_s": c2 - c1, "total_s": w2 - w0,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "mAP": result.mAP}))


def reference_subset(gt_csv, res_csv, videos=2):
    """Slow loop reference vs vectorised evaluator on the first `videos` videos."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from test_metrics import reference_evaluate      # the tests' obviously-correct loops

    from hgrnn.data.ava import load_label_map, read_annotations, read_results
    from hgrnn.metrics import evaluate

    lm = load_label_map("ava-v2.1")
    gt = read_annotations(gt_csv, lm, progress=False)
    res = read_results(res_csv, lm, progress=False)
    keep = np.unique(gt.video_ids)[:videos]
    gt, res = gt.take(np.isin(gt.video_ids, keep)), res.take(np.isin(res.video_ids, keep))
    g = list(zip(gt.video_ids.tolist(), gt.timestamps.tolist(), map(tuple, gt.boxes64.tolist()),
                 gt.action_ids.tolist()))
    r = list(zip(res.video_ids.tolist(), res.timestamps.tolist(),
                 map(tuple, res.boxes64.tolist()), res.action_ids.tolist(),
                 res.scores64.tolist()))
    out = {"videos": videos, "gt_rows": len(g), "result_rows": len(r)}
    t = time.perf_counter()
    _, ref_map = reference_evaluate(g, r, lm.ids, "ava-2018")
    out["reference_s"] = time.perf_counter() - t
    t = time.perf_counter()
    fast = evaluate(gt, res, lm, protocol="ava-2018")
    out["vectorised_s"] = time.perf_counter() - t
    out["mAP_reference"], out["mAP_vectorised"] = ref_map, fast.mAP
    return out


def parser_baselines(res_csv, rows=560_400):
    """What the alternatives cost on the first `rows` rows (1/10 of the file): the csv
    module row by row (what the official evaluator does) and np.loadtxt (C parser)."""
    import csv
    import itertools

    with open(res_csv) as f:
        head = "".join(itertools.islice(f, rows))
    part = os.path.join(os.path.dirname(res_csv), "bench_eval_head.csv")
    with open(part, "w") as f:
        f.write(head)
    out = {"rows": rows}
    t = time.perf_counter()
    with open(part, newline="") as f:
        parsed = [(r[0], int(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5]),
                   int(r[6]), float(r[7])) for r in csv.reader(f)]
    out["csv_module_s"] = time.perf_counter() - t
    del parsed
    dtype = np.dtype([("v", "U16"), ("t", "i8"), ("b", "f8", (4,)), ("a", "i8"), ("s", "f8")])
    t = time.perf_counter()
    np.loadtxt(part, delimiter=",", dtype=dtype)
    out["np_loadtxt_s"] = time.perf_counter() - t
    from hgrnn.data.ava import read_results
    t = time.perf_counter()
    read_results(part, progress=False)
    out["read_results_s"] = time.perf_counter() - t
    os.remove(part)
    return out


def time_command_rusage(gt_csv, res_csv, excl, protocols, runs, repos):
    """Run `hgrnn eval-csv` `runs` times per protocol and checkout in `repos`, interleaved
    (run 1 of each protocol in each checkout, then run 2, ...), each a fresh process: its
    wall seconds, CPU seconds and peak RSS (os.wait4). Prints one JSON line per run and a
    table of medians."""
    out = []
    for i in range(runs):
        for protocol in protocols:
            for repo in repos:
                env = dict(os.environ, PYTHONPATH=repo)
                cmd = [sys.executable, "-m", "hgrnn", "eval-csv", gt_csv, res_csv,
                       "--protocol", protocol, "-q"] + \
                    (["--exclusions", excl] if protocol != "ava-2020" else [])
                t = time.perf_counter()
                # in the checkout: `python -m` puts the working directory first on sys.path
                proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.DEVNULL)
                _, status, ru = os.wait4(proc.pid, 0)
                wall = time.perf_counter() - t
                proc.returncode = os.waitstatus_to_exitcode(status)
                if proc.returncode:
                    raise SystemExit(f"{' '.join(cmd)} failed")
                out.append({"repo": repo, "protocol": protocol, "run": i,
                            "wall_s": round(wall, 2),
                            "cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
                            "peak_rss_mib": round(ru.ru_maxrss / 1024),
                            "load": os.getloadavg()[0]})
                print(json.dumps(out[-1]), flush=True)
    print("\n| checkout | protocol | runs | median wall s | median CPU s (user + sys) "
          "| median peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for repo in repos:
        for protocol in protocols:
            rs = [r for r in out if r["protocol"] == protocol and r["repo"] == repo]
            med = {k: float(np.median([r[k] for r in rs])) for k in ("wall_s", "cpu_s",
                                                                  "peak_rss_mib")}
            print(f"| {repo} | {protocol} | {len(rs)} | {med['wall_s']:.2f} | "
                  f"{med['cpu_s']:.2f} | {med['peak_rss_mib']:.0f} |")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ava", default=os.path.join(ROOT, "..", "shared", "ava"),
                    help="folder with the real AVA files")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "hgrnn_bench"),
                    help="where the 290 MB result CSV is written and cached")
    ap.add_argument("--protocols", default="ava-2018,ava-2019,ava-2020")
    ap.add_argument("--baselines", action="store_true",
                    help="also time the csv module and np.loadtxt on 1/10 of the rows")
    ap.add_argument("--command", type=int, default=0, metavar="N",
                    help="time the whole `hgrnn eval-csv` command N times per protocol")
    ap.add_argument("--repo", action="append",
                    help="with --command: a checkout whose hgrnn runs (default: this one); "
                         "repeat it to compare checkouts, their runs interleaved")
    ap.add_argument("--worker", nargs=4, metavar=("PROTOCOL", "GT", "RES", "EXCL"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        p, g, r, ex = args.worker
        worker(p, g, r, None if ex == "-" else ex)
        return
    os.makedirs(args.work, exist_ok=True)
    gt_csv, res_csv = build_case(args.ava, args.work)
    excl = os.path.join(args.ava, "ava_val_excluded_timestamps_v2.1.csv")
    print(f"results CSV: {os.path.getsize(res_csv) / 1e6:.0f} MB; "
          f"cores: {os.cpu_count()}; load average: {os.getloadavg()}", flush=True)
    if args.command:
        time_command_rusage(*map(os.path.abspath, (gt_csv, res_csv, excl)),
                            args.protocols.split(","), args.command,
                            [os.path.abspath(r) for r in args.repo or [ROOT]])
        print(f"load average after: {os.getloadavg()}")
        return
    rows = []
    # numpy asks for transparent huge pages for large arrays; where the kernel compacts
    # memory on such faults (THP defrag "madvise") that costs seconds of kernel time, so
    # each protocol also runs with NUMPY_MADVISE_HUGEPAGE=0 (a documented numpy switch)
    for hugepage in ("1", "0"):
        env = dict(os.environ, NUMPY_MADVISE_HUGEPAGE=hugepage)
        for protocol in args.protocols.split(","):
            out = subprocess.run([sys.executable, __file__, "--worker", protocol, gt_csv,
                                  res_csv, excl], capture_output=True, text=True, check=True,
                                 env=env)
            rows.append(dict(json.loads(out.stdout.strip().splitlines()[-1]),
                             hugepage=hugepage))
            print(json.dumps(rows[-1]), flush=True)
    ref = reference_subset(gt_csv, res_csv)
    print(json.dumps(ref), flush=True)
    print("\n| protocol | NUMPY_MADVISE_HUGEPAGE | result rows | read s (CPU s) | "
          "evaluate s (CPU s) | total s | peak RSS MiB | mAP |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['protocol']} | {r['hugepage']} | {r['rows']:,} | "
              f"{r['read_s']:.1f} ({r['read_cpu_s']:.1f}) "
              f"| {r['eval_s']:.1f} ({r['eval_cpu_s']:.1f}) | {r['total_s']:.1f} "
              f"| {r['peak_rss_mib']:.0f} | {r['mAP']:.4f} |")
    print(f"\nslow reference, {ref['videos']} videos ({ref['gt_rows']:,} gt rows, "
          f"{ref['result_rows']:,} result rows): {ref['reference_s']:.1f} s; vectorised "
          f"{ref['vectorised_s']:.2f} s; mAP {ref['mAP_reference']:.10f} vs "
          f"{ref['mAP_vectorised']:.10f}")
    if args.baselines:
        b = parser_baselines(res_csv)
        print(f"parsers on the first {b['rows']:,} rows: csv module {b['csv_module_s']:.1f} s, "
              f"np.loadtxt {b['np_loadtxt_s']:.1f} s, read_results {b['read_results_s']:.2f} s")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
