"""Feature-store benchmark at AVA training scale (results in BENCHMARKS.md).

Builds a store like AVA v2.1 train: 235 videos x 897 keyframes (1 fps, 902..1798 s),
C = 256, persons per keyframe drawn like AVA's (mostly 1-4, tail to 15), gt (60 classes)
and det sources; then measures write time, file size against the raw array bytes,
open+load time and peak memory (in a fresh process), and context-window batch assembly
(batch 50, l = 3) in memory and in lazy mode.

    .venv/bin/python benchmarks/bench_store.py                  # full scale, file under /tmp
    .venv/bin/python benchmarks/bench_store.py --videos 20      # quick look

`make_ava_scale_store(path, ...)` is importable (the head benchmark builds the same store).
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

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))     # storegen: the tests' random stores

from hgrnn.data.store import StoreWriter  # noqa: E402
from storegen import AVA_PERSON_PROBS, random_video  # noqa: E402


def make_ava_scale_store(path, videos=235, keyframes=897, C=256, seed=0, label_map="ava-v2.1",
                         progress=True) -> dict:
    """Write a random AVA-scale store at `path` (gt + det); return {"seconds", "raw_bytes"}.

    Video ids "vid000".., timestamps 902.. (1 s step), persons per keyframe drawn from
    storegen.AVA_PERSON_PROBS, multi-hot labels with ~3 actions a person.
    """
    from hgrnn.data.ava import load_label_map

    lm = load_label_map(label_map)
    rng = np.random.default_rng(seed)
    raw = 0
    t0 = time.perf_counter()
    it = range(videos)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="write store", unit="video", file=sys.stderr)
    with StoreWriter(path, feature_dim=C, label_map=lm,
                     configs={"bench": {"videos": videos, "keyframes": keyframes, "seed": seed}}) as w:
        for v in it:
            video = random_video(rng, C, len(lm), keyframes)
            w.add_video(f"vid{v:03d}", **video)
            raw += video["timestamps"].size * 4 + video["clip"].nbytes
            for src in ("gt", "det"):
                ps = video[src]
                raw += sum(a.nbytes for a in (ps.offsets, ps.boxes, ps.feats, ps.scores,
                                              ps.labels, ps.person_ids) if a is not None)
    return {"seconds": time.perf_counter() - t0, "raw_bytes": int(raw)}


def _time_batches(windows, batch_size, seconds, seed=0):
    rng = np.random.default_rng(seed)
    n = len(windows)
    windows.batch(rng.integers(0, n, batch_size))           # warm-up
    count, t0, c0 = 0, time.perf_counter(), time.process_time()
    persons = 0
    while time.perf_counter() - t0 < seconds:
        b = windows.batch(rng.integers(0, n, batch_size))
        persons += len(b.keyframe)
        count += 1
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    # wall clock is what a user sees; CPU time shows the cost on a machine shared with others
    return {"batches_per_s": count / dt, "windows_per_s": count * batch_size / dt,
            "batches_per_cpu_s": count / cpu, "persons_per_batch": persons / count,
            "batches": count}


def read_phase(path, box_source, lazy, seconds, batch_size, l):
    """Run in a fresh process: open+load time, peak RSS, batch throughput."""
    from hgrnn.data.windows import ContextWindows, FeatureStore

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0, c0 = time.perf_counter(), time.process_time()
    store = FeatureStore(path, box_source=box_source, lazy=lazy)
    load, load_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    windows = ContextWindows(store, l)
    index = time.perf_counter() - t0
    out = {"source": box_source, "lazy": lazy, "load_s": load, "load_cpu_s": load_cpu,
           "index_s": index,
           "keyframes": store.num_keyframes, "persons": store.num_persons, "windows": len(windows),
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "rss_before_mib": rss0 / 1024}
    out.update(_time_batches(windows, batch_size, seconds))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=235)
    p.add_argument("--keyframes", type=int, default=897)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--l", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0, help="time per throughput measurement")
    p.add_argument("--path", help="store file (default: a temporary file under /tmp, deleted)")
    p.add_argument("--keep", action="store_true", help="keep the store file")
    p.add_argument("--read", nargs=2, metavar=("SOURCE", "LAZY"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.read:                                           # child process of the read phase
        print(json.dumps(read_phase(a.path, a.read[0], a.read[1] == "1", a.seconds, a.batch, a.l)))
        return

    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    path = a.path or os.path.join(tempfile.gettempdir(), f"bench_store_{os.getpid()}.h5")
    try:
        mean_persons = float((np.arange(len(AVA_PERSON_PROBS)) * AVA_PERSON_PROBS).sum())
        print(f"store: {a.videos} videos x {a.keyframes} keyframes, C={a.dim}, "
              f"persons/keyframe mean {mean_persons:.2f} (gt; det +0.5), file {path}", flush=True)
        w = make_ava_scale_store(path, a.videos, a.keyframes, a.dim)
        size = os.path.getsize(path)
        print(f"write: {w['seconds']:.1f} s ({a.videos / w['seconds']:.1f} videos/s); file "
              f"{size / 2**20:,.0f} MiB vs raw arrays {w['raw_bytes'] / 2**20:,.0f} MiB "
              f"(ratio {size / w['raw_bytes']:.3f})", flush=True)
        results = []
        for source, lazy in (("gt", False), ("det", False), ("gt", True)):
            cmd = [sys.executable, os.path.abspath(__file__), "--path", path, "--read", source,
                   "1" if lazy else "0", "--seconds", str(a.seconds), "--batch", str(a.batch),
                   "--l", str(a.l)]
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            results.append(r)
            print(f"read {source:>3} {'lazy     ' if lazy else 'in memory'}: open+load "
                  f"{r['load_s']:.2f} s (CPU {r['load_cpu_s']:.2f} s), index {r['index_s']:.2f} s, peak RSS "
                  f"{r['peak_rss_mib']:,.0f} MiB (python+torch {r['rss_before_mib']:,.0f}); "
                  f"{r['windows']:,} windows; batch {a.batch}, l={a.l}: "
                  f"{r['batches_per_s']:,.0f} batches/s = {r['windows_per_s']:,.0f} windows/s "
                  f"(per CPU-second: {r['batches_per_cpu_s']:,.0f} batches) "
                  f"({r['persons_per_batch']:.0f} centre persons a batch)", flush=True)
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
        print(json.dumps({"write": w, "size_bytes": size, "reads": results}))
    finally:
        if not a.keep and os.path.exists(path):
            os.remove(path)


if __name__ == "__main__":
    main()
