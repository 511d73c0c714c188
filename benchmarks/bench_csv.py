"""The AVA CSV readers on the evaluator benchmark's case, end to end: file -> the arrays
``read_results`` / ``read_annotations`` return (label map, excluded timestamps, value
checks included), each run in a fresh process.

The case is the one of ``bench_eval.py`` (its 5.6-million-row result file, written once
and cached in ``--work``; ground truth ``ava_val_v2.1_pose_classes_only.csv``). Each
``--tree NAME=DIR`` is a source tree of hgrnn (e.g. a checkout of an older commit, to
compare readers); runs alternate between trees; medians of ``--repeat`` runs are printed
with wall and CPU seconds and the process's peak resident memory (VmHWM), beside
pyarrow's own parse of the result file (same column types and options, into an Arrow
table; in a process of its own, so the peak is the readers').

    .venv/bin/python benchmarks/bench_csv.py [--tree new=. --tree old=/path/to/old/checkout]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def pyarrow_parse(path):
    """pyarrow's own parse of the results file into an Arrow table, with the column types
    and options the fast reader uses (the floor of any reader built on it)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    names = ["video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "score"]
    text = pa.dictionary(pa.int32(), pa.string())
    types = {n: (pa.float64() if n in ("x1", "y1", "x2", "y2", "score") else text)
             for n in names}
    w, c = time.perf_counter(), time.process_time()
    table = pcsv.read_csv(
        path, read_options=pcsv.ReadOptions(column_names=names, block_size=1 << 20),
        parse_options=pcsv.ParseOptions(quote_char=False, ignore_empty_lines=True),
        convert_options=pcsv.ConvertOptions(column_types=types, null_values=[""],
                                            strings_can_be_null=False))
    out = {"wall_s": time.perf_counter() - w, "cpu_s": time.process_time() - c,
           "rows": table.num_rows}
    del table
    return out


def worker(gt_csv, res_csv, excl):
    """One measurement in this (fresh) process; prints a JSON line. excl: the excluded
    timestamps CSV, or "pyarrow" for pyarrow's parse of the result file alone."""
    from hgrnn.data.ava import load_label_map, read_annotations, read_results

    if excl == "pyarrow":
        print(json.dumps(pyarrow_parse(res_csv)))
        return
    lm = load_label_map("ava-v2.1")
    out = {}
    for name, fn, path in (("results", read_results, res_csv),
                           ("gt", read_annotations, gt_csv)):
        w, c = time.perf_counter(), time.process_time()
        rows = fn(path, lm, excl, progress=False)
        out[name] = {"wall_s": time.perf_counter() - w, "cpu_s": time.process_time() - c,
                     "rows": len(rows)}
        del rows
    out["peak_rss_mib"] = [int(x.split()[1]) / 1024 for x in open("/proc/self/status")
                           if x.startswith("VmHWM")][0]
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ava", default=os.path.join(ROOT, "..", "shared", "ava"))
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "hgrnn_bench"))
    ap.add_argument("--tree", action="append", metavar="NAME=DIR",
                    help="a source tree to measure (repeatable; default: this one)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    sys.path.insert(0, HERE)
    sys.path.insert(0, ROOT)
    from bench_eval import build_case
    os.makedirs(args.work, exist_ok=True)
    gt_csv, res_csv = build_case(args.ava, args.work)
    excl = os.path.join(args.ava, "ava_val_excluded_timestamps_v2.1.csv")
    trees = dict(t.split("=", 1) for t in (args.tree or [f"this={ROOT}"]))
    print(f"results CSV: {os.path.getsize(res_csv) / 1e6:.0f} MB; cores: {os.cpu_count()}; "
          f"load average: {os.getloadavg()}", flush=True)
    runs = {name: [] for name in trees}
    for _ in range(args.repeat):
        for name, tree in trees.items():
            env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
            out = subprocess.run([sys.executable, __file__, "--worker", gt_csv, res_csv, excl],
                                 capture_output=True, text=True, check=True, env=env)
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            out = subprocess.run([sys.executable, __file__, "--worker", gt_csv, res_csv,
                                  "pyarrow"], capture_output=True, text=True, check=True,
                                 env=env)
            runs[name][-1]["pyarrow"] = json.loads(out.stdout.strip().splitlines()[-1])
            print(name, json.dumps(runs[name][-1]), flush=True)
    print(f"\nmedians of {args.repeat} runs (load average after: {os.getloadavg()})")
    print("| tree | pyarrow parse wall s (CPU s) | read_results wall s (CPU s) | "
          "read_results / pyarrow | read_annotations wall s (CPU s) | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for name, rs in runs.items():
        def med(part, key):
            return statistics.median(r[part][key] for r in rs)
        ratio = statistics.median(r["results"]["wall_s"] / r["pyarrow"]["wall_s"] for r in rs)
        print(f"| {name} | {med('pyarrow', 'wall_s'):.2f} ({med('pyarrow', 'cpu_s'):.2f}) | "
              f"{med('results', 'wall_s'):.2f} ({med('results', 'cpu_s'):.2f}) | "
              f"{ratio:.2f} | {med('gt', 'wall_s'):.3f} ({med('gt', 'cpu_s'):.3f}) | "
              f"{statistics.median(r['peak_rss_mib'] for r in rs):.0f} |")


if __name__ == "__main__":
    main()
