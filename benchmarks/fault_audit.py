"""Fault-injection audit of the store and the head (issue 17): counts of clean one-line
errors, tracebacks/crashes and silent acceptance under

    kills       SIGKILL of `hgrnn synth` at a random moment, then the same command again:
                the store must pass `inspect --check` and equal an uninterrupted run's
    concurrent  two `hgrnn synth` (or two `merge-stores`) on the same new OUT started
                together: exactly one may report success, and OUT must hold all its videos
    full disk   `synth`, `merge-stores` and `train-head` on a small tmpfs (or under
                RLIMIT_FSIZE where no tmpfs can be mounted): one-line error, complete
                videos kept, no temporaries (.partial, .creating, .lock, last.pt.tmp) left
    corruption  16 bytes of 0xFF written at offsets of a store (metadata and data), then
                `inspect --check`, loading (FeatureStore) and `eval`: a StoreError/one-line
                error is clean, any other exception or a crash is a traceback, and a run
                that reads changed data without an error is silent acceptance

    .venv/bin/python benchmarks/fault_audit.py                    # everything, ~2-4 min
    .venv/bin/python benchmarks/fault_audit.py --only corruption --offsets 80

Prints a table and writes --json. A subprocess per CLI case (as a user would run it);
the corruption readers run in a forked child per case (a crash there is counted, not
fatal to the audit).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

PY = sys.executable
ENV = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           OMP_NUM_THREADS="1")
TEMPORARIES = (".partial", ".creating", ".lock", ".tmp", ".merging.h5")


def hgrnn(*args, preexec=None, timeout=300, cwd=None):
    """Run `python -m hgrnn ARGS`; return (rc, stdout, stderr)."""
    p = subprocess.run([PY, "-m", "hgrnn", *map(str, args)], capture_output=True, text=True,
                       env=ENV, timeout=timeout, preexec_fn=preexec, cwd=cwd)
    return p.returncode, p.stdout, p.stderr


def classify(rc, err) -> str:
    """clean: exit 1 with a one-line "Error: ..." (tqdm/warnings aside); traceback: any
    Python traceback, h5py's "Exception ignored" or a signal."""
    if rc < 0 or rc > 128 or "Traceback" in err or "Exception ignored" in err:
        return "traceback"
    if rc == 0:
        return "ok"
    errors = [line for line in err.splitlines() if line.startswith("Error: ")]
    return "clean" if len(errors) == 1 else "traceback"


def leftovers(folder) -> list:
    return sorted(n for n in os.listdir(folder) if n.endswith(TEMPORARIES))


# ---------------------------------------------------------------------------- kills

def audit_kills(work, runs, rng) -> dict:
    from hgrnn.data.store_check import check_store

    ref = os.path.join(work, "ref.h5")
    args = ["--videos", 12, "--keyframes", 30, "--seed", 3, "-q"]
    hgrnn("synth", "--out", ref, *args)
    counts = {"clean": 0, "traceback": 0, "silent": 0}
    for i in range(runs):
        out = os.path.join(work, f"kill{i}.h5")
        p = subprocess.Popen([PY, "-m", "hgrnn", "synth", "--out", out, *map(str, args)],
                             env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.8, 3.0))
        p.send_signal(signal.SIGKILL)
        p.wait()
        rc, _, err = hgrnn("synth", "--out", out, *args)
        ok = rc == 0 and not check_store(out) and _same_store(out, ref)
        counts["clean" if ok else ("traceback" if classify(rc, err) == "traceback"
                                   else "silent")] += 1
    return counts


def _same_store(a, b) -> bool:
    import h5py

    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        if sorted(fa["videos"]) != sorted(fb["videos"]):
            return False
        return all(fa["videos"][v].attrs["digest"] == fb["videos"][v].attrs["digest"]
                   for v in fa["videos"])


# ---------------------------------------------------------------------------- concurrency

def audit_concurrent(work, pairs) -> dict:
    """Two writers (other seeds) of one new OUT: 'clean' when one reports success, the other
    a one-line refusal (the store is being written by another process, or, when it
    started after the first finished, holds another config), and OUT holds the winner's
    videos; 'silent' when both report success (one's videos are lost)."""
    import h5py

    counts = {"clean": 0, "traceback": 0, "silent": 0}
    for i in range(pairs):
        out = os.path.join(work, f"pair{i}.h5")
        procs = [subprocess.Popen([PY, "-m", "hgrnn", "synth", "--out", out, "--videos", "10",
                                   "--keyframes", "20", "--seed", str(seed), "-q"],
                                  env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for seed in (1, 2)]
        res = [(p.wait(), p.stdout.read(), p.stderr.read()) for p in procs]
        winners = [r for r in res if r[0] == 0]
        kinds = [classify(rc, err) for rc, _, err in res]
        with h5py.File(out, "r") as f:
            n = len(f["videos"])
        if "traceback" in kinds:
            counts["traceback"] += 1
        elif len(winners) == 1 and n == 10:
            counts["clean"] += 1              # the other was refused in one line
        else:
            counts["silent"] += 1             # both "written" (or videos lost)
    return counts


def audit_concurrent_merge(work, pairs) -> dict:
    import h5py

    shards = []
    for seed in (11, 12):
        s = os.path.join(work, f"shard{seed}.h5")
        hgrnn("synth", "--out", s, "--videos", 8, "--keyframes", 40, "--seed", seed, "-q")
        shards.append(s)
    counts = {"clean": 0, "traceback": 0, "silent": 0}
    for i in range(pairs):
        out = os.path.join(work, f"merged{i}.h5")
        procs = [subprocess.Popen([PY, "-m", "hgrnn", "merge-stores", "--overwrite", out,
                                   *shards], env=ENV, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        res = [(p.wait(), p.stdout.read(), p.stderr.read()) for p in procs]
        kinds = [classify(rc, err) for rc, _, err in res]
        with h5py.File(out, "r") as f:
            n = len(f["videos"])
        if "traceback" in kinds:
            counts["traceback"] += 1
        elif n == 16 and not leftovers(work) and all(k in ("ok", "clean") for k in kinds):
            counts["clean"] += 1
        else:
            counts["silent"] += 1
    return counts


# ---------------------------------------------------------------------------- full disk

@contextlib.contextmanager
def small_disk(base, mib):
    """(folder, preexec): a tmpfs of `mib` MiB when this process may mount one (root),
    else a plain folder and a preexec_fn limiting the size of any file written to it."""
    folder = tempfile.mkdtemp(dir=base, prefix="disk")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", folder],
                             capture_output=True).returncode == 0
    limit = mib * 1024 * 1024

    def rlimit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)       # EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    try:
        yield folder, (None if mounted else rlimit), ("tmpfs" if mounted else "RLIMIT_FSIZE")
    finally:
        if mounted:
            subprocess.run(["umount", "-l", folder], capture_output=True)


def audit_full_disk(work, runs) -> dict:
    from hgrnn.data.store_check import check_store

    big = os.path.join(work, "big.h5")
    hgrnn("synth", "--out", big, "--videos", 40, "--keyframes", 60, "--feature-dim", 128, "-q")
    counts = {}
    kind = None
    for command in ("synth", "merge-stores", "train-head"):
        c = counts[command] = {"clean": 0, "traceback": 0, "silent": 0, "leftovers": 0}
        for i in range(runs):
            mib = 2 + i % 3
            with small_disk(work, mib) as (disk, preexec, kind):
                if command == "synth":
                    args = ["synth", "--out", f"{disk}/s.h5", "--videos", 60, "--keyframes",
                            60, "--feature-dim", 128, "-q"]
                elif command == "merge-stores":
                    args = ["merge-stores", f"{disk}/m.h5", big]
                else:
                    args = ["train-head", "--store", big, "--out", f"{disk}/run", "--steps",
                            3000, "--checkpoint-every", 1, "--log-every", 1, "--scene-hidden",
                            512, "--graph-hidden", 512, "-q"]
                rc, _, err = hgrnn(*args, preexec=preexec)
                k = classify(rc, err)
                if command == "synth" and k == "clean" and check_store(f"{disk}/s.h5"):
                    k = "traceback"           # a damaged store counts as a crash
                c[{"ok": "silent"}.get(k, k)] += 1
                left = leftovers(disk) + (leftovers(f"{disk}/run") if os.path.isdir(
                    f"{disk}/run") else [])
                c["leftovers"] += bool(left)
    counts["disk"] = kind
    return counts


# ---------------------------------------------------------------------------- corruption

def _data_ranges(path) -> list:
    import h5py

    ranges = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            off = obj.id.get_offset()
            if off is not None:
                ranges.append((off, off + obj.id.get_storage_size(), name))
            elif obj.chunks is not None:
                for i in range(obj.id.get_num_chunks()):
                    info = obj.id.get_chunk_info(i)
                    ranges.append((info.byte_offset, info.byte_offset + info.size, name))

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return ranges


def _reader_outcome(path, ckpt, reader) -> bytes:
    """In a forked child: run one reader on the damaged store; its _run_reader answer, or
    b"t" when the child crashed."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        code = b"t"
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)                  # h5py's own error printing
            code = _run_reader(path, ckpt, reader)
        except BaseException:  # noqa: BLE001
            code = b"t"
        os.write(w, code)
        os._exit(0)
    os.close(w)
    data = os.read(r, 200)
    os.close(r)
    os.waitpid(pid, 0)
    return data or b"t"


def _run_reader(path, ckpt, reader) -> bytes:
    """b"c": a clean error (StoreError/HeadError); b"t": another exception; b"?...": no
    error, followed by what was read (a data hash, an mAP) to compare with the intact
    store's."""
    from hgrnn.data.store import StoreError
    from hgrnn.data.store_check import check_store
    from hgrnn.hgrnn_head.checkpoint import HeadError

    try:
        if reader == "check":
            return b"c" if check_store(path) else _run_reader(path, ckpt, "load")
        if reader == "load":
            from hgrnn.data.windows import ContextWindows, FeatureStore

            fs = FeatureStore(path, "gt")
            ContextWindows(fs, 3).batch(np.arange(min(50, fs.num_keyframes)))
            return _fingerprint_data(fs)
        from hgrnn.hgrnn_head.infer import evaluate_store

        res = evaluate_store(path, ckpt, gt_boxes=True, progress=False)
        return b"?" + repr(res.mAP).encode()
    except (StoreError, HeadError):
        return b"c"
    except Exception:  # noqa: BLE001
        return b"t"


def _fingerprint_data(fs) -> bytes:
    import hashlib

    h = hashlib.sha1()
    for a in (fs.clip, fs.feats, fs.boxes, fs.scores, fs.labels, fs.kf_time):
        h.update(np.ascontiguousarray(a).tobytes())
    return b"?" + h.hexdigest().encode()


def audit_corruption(work, n_offsets, rng) -> dict:
    from hgrnn.data.store import StoreWriter  # noqa: F401 (import before forking)
    from hgrnn.data.windows import FeatureStore  # noqa: F401
    from hgrnn.hgrnn_head.infer import evaluate_store  # noqa: F401

    clean_store = os.path.join(work, "corrupt_src.h5")
    hgrnn("synth", "--out", clean_store, "--videos", 6, "--keyframes", 30, "-q")
    run = os.path.join(work, "corrupt_run")
    hgrnn("train-head", "--store", clean_store, "--out", run, "--steps", 5, "-q")
    ckpt = os.path.join(run, "last.pt")
    size = os.path.getsize(clean_store)
    data = _data_ranges(clean_store)
    in_data = np.zeros(size, bool)
    for a, b, _ in data:
        in_data[a:b] = True
    meta_offsets = np.nonzero(~in_data[:size - 16])[0]
    data_offsets = np.nonzero(in_data[:size - 16])[0]
    picks = ([("metadata", int(o)) for o in rng.sample(list(meta_offsets), n_offsets // 2)]
             + [("data", int(o)) for o in rng.sample(list(data_offsets), n_offsets - n_offsets // 2)])
    original = open(clean_store, "rb").read()
    baseline = {reader: _run_reader(clean_store, ckpt, reader) for reader in ("load", "eval")}
    baseline["check"] = baseline["load"]
    counts = {f"{where}/{reader}": {"clean": 0, "traceback": 0, "silent": 0, "harmless": 0}
              for where in ("metadata", "data") for reader in ("check", "load", "eval")}
    examples = []
    damaged = os.path.join(work, "damaged.h5")
    for where, off in picks:
        buf = bytearray(original)
        buf[off:off + 16] = b"\xff" * 16
        with open(damaged, "wb") as f:
            f.write(buf)
        for reader in ("check", "load", "eval"):
            got = _reader_outcome(damaged, ckpt, reader)
            if got.startswith(b"?"):
                # no error: silent when what was read differs from the intact store's
                out = "harmless" if got == baseline[reader] else "silent"
            else:
                out = "clean" if got == b"c" else "traceback"
            counts[f"{where}/{reader}"][out] += 1
            if out in ("traceback", "silent") and len(examples) < 20:
                examples.append({"where": where, "offset": off, "reader": reader, "out": out})
    counts["examples"] = examples
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["kills", "concurrent", "full-disk", "corruption"])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--disk-runs", type=int, default=4)
    ap.add_argument("--offsets", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    results = {}
    with tempfile.TemporaryDirectory(prefix="hgrnn-audit-") as work:
        if args.only in (None, "kills"):
            results["kills"] = audit_kills(work, args.kills, rng)
        if args.only in (None, "concurrent"):
            results["concurrent synth"] = audit_concurrent(work, args.pairs)
            results["concurrent merge-stores"] = audit_concurrent_merge(work, args.pairs)
        if args.only in (None, "full-disk"):
            results["full disk"] = audit_full_disk(work, args.disk_runs)
        if args.only in (None, "corruption"):
            results["corruption"] = audit_corruption(work, args.offsets, rng)
    print(json.dumps(results, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
