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

  and (issue 29), each case counted as ok / clean / traceback / silent / loss / outside
  (see "issue 29" below):

    convert fuzz       mutated CVAT / VIA exports of render-example's clip1: a one-line
                       error, or a CSV check-data accepts (a 30 s alarm catches runaways)
    output paths       `visualize --video-id ID --out DIR/` with ids leaving DIR, and DIR
                       the input's folder: nothing written or changed outside DIR
    detect writers     two `detect` on one new --out: the CSV equals one whole run's
    full disk outputs  visualize (MP4, sheet), detect, predict on a tmpfs with a few KiB
                       free: one line naming the file, no partial file left
    extract kills      SIGKILL of `extract-features` on rendered videos, then resume:
                       the store equals an uninterrupted run's

    .venv/bin/python benchmarks/fault_audit.py                    # everything, ~15-25 min
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


# ---------------------------------------------------------------------------- issue 29
#
# Outcomes of the cases below, one dict per category: runs; ok (a correct result); clean (a
# one-line error, exit 1); traceback (any other exception, a crash, a run past its time);
# silent (exit 0 with a wrong result: a CSV check-data refuses, two writers both claiming
# the file, an outdated store); loss (a partial or missing file where the run promised a
# whole one or none, or rows lost on resume); outside (a file created or changed outside
# the command's output folder).

def _outcomes():
    return {"runs": 0, "ok": 0, "clean": 0, "traceback": 0, "silent": 0, "loss": 0,
            "outside": 0}


def _snapshot(folder) -> dict:
    found = {}
    for base, _, names in os.walk(folder):
        for n in names:
            path = os.path.join(base, n)
            with contextlib.suppress(OSError):
                st = os.stat(path)
                found[path] = (st.st_size, st.st_mtime_ns)
    return found


_XML_VALUES = ["", " ", "0", "-1", "1", "2.5", "nan", "inf", "1e400", "abc", "100000000000",
               "863990", "9" * 30, "a/b", "a,b", "x y", "..", "/abs", "walk",
               "stand\n101 evil", "true", "false", "\u202e", "1" * 5000]
_JSON_VALUES = [None, True, 0, -3, 2.5, -1e9, 1e20, 10 ** 20, float("nan"), float("inf"), "",
                "0", "-5", "a,b.mp4", "../x.mp4", "x y.mp4", "walk\n101 evil", [], {}, [2],
                [2, 1, 1, -5, 2], [2, "a", 1, 1, 1], [-3], [1.0, 3.0], {"1": "0"}, [[[[]]]]]


def _mutate_xml(rng, text):
    import xml.etree.ElementTree as ET

    root = ET.fromstring(text)
    for _ in range(rng.randint(1, 3)):
        nodes = list(root.iter())
        node = rng.choice(nodes)
        value = rng.choice(_XML_VALUES)
        what = rng.randrange(4)
        if what == 0 and node.attrib:
            node.set(rng.choice(sorted(node.attrib)), value)
        elif what == 1:
            node.text = value
        elif what == 2 and len(node):
            node.remove(node[rng.randrange(len(node))])
        elif node.tag == "track":
            root.append(ET.fromstring(ET.tostring(node)))
    out = ET.tostring(root, encoding="unicode")
    return out[: rng.randrange(len(out))] if rng.random() < 0.1 else out


def _mutate_json(rng, node):
    if isinstance(node, dict) and node and rng.random() < 0.8:
        key = rng.choice(sorted(node))
        copy = dict(node)
        if rng.random() < 0.1:
            del copy[key]
        else:
            copy[key] = _mutate_json(rng, node[key])
        return copy
    if isinstance(node, list) and node and rng.random() < 0.8:
        i = rng.randrange(len(node))
        return node[:i] + [_mutate_json(rng, node[i])] + node[i + 1:]
    return rng.choice(_JSON_VALUES)


def audit_convert_fuzz(work, cases, rng) -> dict:
    """Mutated exports of render-example's clip1 (CVAT and VIA), converted in this process
    with a 30 s alarm: a ConvertError of one line is clean; a written CSV (and made label
    map) is checked by check-data: ok, or silent when it finds an error."""
    from hgrnn.data.ava import load_label_map
    from hgrnn.data.check import check_data
    from hgrnn.data.convert import (ConvertError, cvat_video, default_label_map_path,
                                    via_video, write_conversion)

    ex = os.path.join(work, "example")
    hgrnn("render-example", ex, "--videos", 1, "--seconds", 4)
    lm_path = os.path.join(ex, "label_map.txt")
    with open(os.path.join(ex, "exports", "clip1_cvat.xml"), encoding="utf-8") as f:
        cvat = f.read()
    with open(os.path.join(ex, "exports", "clip1_via.json"), encoding="utf-8") as f:
        via = json.load(f)
    results = {}

    def alarm(*_):
        raise TimeoutError("ran past 30 s")

    signal.signal(signal.SIGALRM, alarm)
    for parser in ("cvat-video", "via"):
        c = results[parser] = _outcomes()
        folder = os.path.join(work, f"fuzz-{parser}")
        os.makedirs(folder)
        for case in range(cases):
            src = os.path.join(folder, "in.xml" if parser == "cvat-video" else "in.json")
            if parser == "cvat-video":
                text = _mutate_xml(rng, cvat)
            else:
                data = via
                for _ in range(rng.randint(1, 3)):
                    data = _mutate_json(rng, data)
                text = json.dumps(data)
            with open(src, "w", encoding="utf-8") as f:
                f.write(text)
            out = os.path.join(folder, f"out{case}.csv")
            lm = load_label_map(lm_path) if case % 2 else None
            c["runs"] += 1
            signal.alarm(30)
            try:
                conv = (cvat_video(src, 10, label_map=lm) if parser == "cvat-video"
                        else via_video(src, label_map=lm, size=(320, 240)))
                made = default_label_map_path(out) if conv.label_map_made else None
                write_conversion(conv, out, made)
            except ConvertError as err:
                c["clean" if "\n" not in str(err) else "traceback"] += 1
                continue
            except Exception:  # noqa: BLE001 - a traceback, or TimeoutError: a runaway
                c["traceback"] += 1
                continue
            finally:
                signal.alarm(0)
            report = check_data(out, label_map=made or lm_path)
            c["ok" if report["ok"] else "silent"] += 1
    return results


def _render_clip(path, seconds=2, size=(96, 64)):
    from hgrnn.pipeline.render import render_video

    render_video(path, seconds=seconds, fps=10, size=size, shapes=())


def audit_output_paths(work) -> dict:
    """`visualize --out DIR/ --video-id ID` with ids that would leave DIR, and DIR the
    input's folder: clean when refused in one line with nothing changed outside DIR."""
    c = _outcomes()
    root = os.path.join(work, "paths")
    video = os.path.join(root, "src", "clip2.mp4")
    _render_clip(video)
    ids = ["../src/clip2", os.path.join(root, "src", "clip2"), "..", ".", "a/../../x",
           "clip2"]
    results = os.path.join(root, "r.csv")
    with open(results, "w") as f:
        f.write("".join(f"{v},1,0.1,0.1,0.6,0.9,12,0.9\n" for v in ("clip2", "a")))
    drawn = os.path.join(root, "drawn")
    os.makedirs(drawn)
    for vid, out in [(v, drawn) for v in ids] + [(None, os.path.dirname(video))]:
        before = {p: v for p, v in _snapshot(root).items() if not p.startswith(drawn + "/")}
        extra = ["--video-id", vid] if vid else []
        rc, _, err = hgrnn("visualize", video, "--results", results, *extra, "--out",
                           out + "/", "-q")
        after = {p: v for p, v in _snapshot(root).items() if not p.startswith(drawn + "/")}
        c["runs"] += 1
        kind = classify(rc, err)
        if after != before:
            c["outside"] += 1
        elif kind == "ok":
            c["ok" if vid == "clip2" else "silent"] += 1
        else:
            c[kind] += 1
    return c


def _tiny_detector(path):
    import torch

    from hgrnn.pipeline import detect as dt
    from hgrnn.pipeline.detect import DetectorArch

    arch = DetectorArch(backbone="resnet18", norm="batch", trainable_layers=5, min_size=64,
                        max_size=96, proposals_train=64, proposals_test=32, roi_batch=16,
                        box_head_dim=64, fpn_dim=32)
    torch.manual_seed(0)
    model, _ = dt.build_detector(arch)
    torch.save({"format": dt.DETECTOR_FORMAT, "version": dt.DETECTOR_VERSION,
                "arch": arch.__dict__, "model": model.state_dict(), "config": "{}", "step": 0,
                "val": None}, path)


def audit_detect_writers(work, pairs) -> dict:
    """Two `detect` on one new --out started together: clean when the CSV holds exactly
    an uninterrupted run's rows and the other run was refused (or found every video done);
    silent when the CSV differs (lost or doubled rows) or both claim to have written."""
    c = _outcomes()
    root = os.path.join(work, "detect")
    for v in ("vidA", "vidB", "vidC"):
        _render_clip(os.path.join(root, "videos", f"{v}.mp4"), seconds=3)
    ckpt = os.path.join(root, "det.pt")
    _tiny_detector(ckpt)

    def args(out):
        return ["detect", "--out", out, "--videos", os.path.join(root, "videos"), "--detector",
                ckpt, "--min-score", "0", "--max-persons", "5", "--workers", "0", "--quiet"]

    ref = os.path.join(root, "ref.csv")
    hgrnn(*args(ref))
    with open(ref) as f:
        expected = f.read()
    for i in range(pairs):
        out = os.path.join(root, f"pair{i}.csv")
        procs = [subprocess.Popen([PY, "-m", "hgrnn", *args(out)], env=ENV,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        res = [(p.wait(), p.stdout.read(), p.stderr.read()) for p in procs]
        kinds = [classify(rc, err) for rc, _, err in res]
        c["runs"] += 1
        with open(out) as f:
            got = f.read()
        wrote = [json.loads(o or "{}").get("written", 0) for rc, o, _ in res if rc == 0]
        if "traceback" in kinds:
            c["traceback"] += 1
        elif got != expected:
            c["loss"] += 1
        elif sum(wrote) > 3:
            c["silent"] += 1                  # both claim the videos
        else:
            c["clean" if "clean" in kinds else "ok"] += 1
    return c


@contextlib.contextmanager
def nearly_full_disk(base, free_kib):
    """A 4 MiB tmpfs filled up to `free_kib` KiB free (root only; else None)."""
    folder = tempfile.mkdtemp(dir=base, prefix="full")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", folder],
                      capture_output=True, check=False).returncode != 0:
        yield None
        return
    try:
        st = os.statvfs(folder)
        fill = st.f_bavail * st.f_frsize - free_kib * 1024
        with open(os.path.join(folder, "filler"), "wb") as f:
            f.write(b"\0" * max(0, fill))
        yield folder
    finally:
        subprocess.run(["umount", "-l", folder], capture_output=True, check=False)


def _decodes(path) -> bool:
    import av

    try:
        with av.open(path) as c:
            return sum(1 for _ in c.decode(video=0)) > 0
    except Exception:  # noqa: BLE001
        return False


def audit_full_disk_outputs(work, runs) -> dict:
    """visualize (MP4, sheet), detect and predict writing onto a disk with a few KiB
    free: clean when one line names the file; loss when a partial file (a .partial, an
    MP4 that does not decode, a results.csv or CSV other than the full run's) is left;
    for detect, the rerun on a freed disk must give the full run's CSV."""
    from hgrnn.data.store_check import check_store

    root = os.path.join(work, "fulldisk")
    video = os.path.join(root, "v", "clip.mp4")
    _render_clip(video, seconds=6, size=(320, 240))
    results = os.path.join(root, "r.csv")
    with open(results, "w") as f:
        f.write("".join(f"clip,{t},0.1,0.1,0.6,0.9,12,0.9\n" for t in range(1, 6)))
    out = {}
    frees = [4, 12, 24, 48][:max(1, runs)]       # KiB left: tmpfs fills page by page

    def record(name, kind, loss):
        c = out.setdefault(name, _outcomes())
        c["runs"] += 1
        c["loss" if loss else kind] += 1

    for free in frees:
        with nearly_full_disk(work, free) as disk:
            if disk is None:
                return {"skipped": "no tmpfs (not root)"}
            rc, _, err = hgrnn("visualize", video, "--results", results, "--out",
                               f"{disk}/d.mp4", "-q")
            mp4 = os.path.join(disk, "d.mp4")
            left = [n for n in os.listdir(disk) if n.endswith(".partial")]
            record("visualize --out", "ok" if rc == 0 else classify(rc, err),
                   bool(left) or (os.path.exists(mp4) and not _decodes(mp4)))
            rc, _, err = hgrnn("visualize", video, "--results", results, "--sheet",
                               f"{disk}/s.png", "--sheet-width", 640, "-q")
            left = [n for n in os.listdir(disk) if n.endswith(".partial")]
            sheet_ok = not os.path.exists(f"{disk}/s.png") or rc == 0
            record("visualize --sheet", "ok" if rc == 0 else classify(rc, err),
                   bool(left) or not sheet_ok)
    # detect: a full disk, then the same command on a freed disk
    root_det = os.path.join(work, "detect")
    if os.path.isdir(root_det):
        ckpt = os.path.join(root_det, "det.pt")
        with open(os.path.join(root_det, "ref.csv")) as f:
            expected = f.read()
        for free in [0, 4, 8, 12][:max(1, runs)]:
            with nearly_full_disk(work, free) as disk:
                args = ["detect", "--out", f"{disk}/b.csv", "--videos",
                        os.path.join(root_det, "videos"), "--detector", ckpt, "--min-score",
                        "0", "--max-persons", "5", "--workers", "0", "--quiet"]
                rc, _, err = hgrnn(*args)
                kind = "ok" if rc == 0 else classify(rc, err)
                os.remove(os.path.join(disk, "filler"))
                hgrnn(*args)
                csv = f"{disk}/b.csv"
                lost = not os.path.exists(csv)
                if not lost:
                    with open(csv) as f:
                        lost = f.read() != expected
                record("detect", kind, lost)
    # predict: a head trained here on rendered videos (random I3D), then predict on a disk
    pred = os.path.join(work, "predict")
    hgrnn("render-example", pred, "--videos", 2, "--seconds", 4)
    store = os.path.join(pred, "train.h5")
    small = ["--clip-frames", 8, "--short-side", 64, "--workers", 0]
    hgrnn("extract-features", "--out", store, "--videos", f"{pred}/videos", "--annotations",
          f"{pred}/annotations.csv", "--detections", f"{pred}/persons.csv", "--label-map",
          f"{pred}/label_map.txt", "--backbone-weights", "none", "--quiet", *small)
    hgrnn("train-head", "--store", store, "--out", f"{pred}/run", "--steps", 5,
          "--batch-size", 4, "--context", 1, "-q")
    args = ["predict", f"{pred}/videos/clip1.mp4", "--checkpoint", f"{pred}/run",
            "--backbone-weights", "none", "--detections", f"{pred}/persons.csv", "-q", *small]
    hgrnn(*args, "--out", f"{pred}/full")
    with open(f"{pred}/full/results.csv") as f:
        expected = f.read()
    for free in [8, 40, 120, 240][:max(1, runs)]:
        with nearly_full_disk(work, free) as disk:
            rc, _, err = hgrnn(*args, "--out", f"{disk}/p")
            kind = "ok" if rc == 0 else classify(rc, err)
            folder = f"{disk}/p"
            names = os.listdir(folder) if os.path.isdir(folder) else []
            loss = any(n.endswith(".partial") for n in names)
            if "results.csv" in names:
                with open(f"{folder}/results.csv") as f:
                    loss |= f.read() != expected
            if "clip1.mp4" in names:
                loss |= not _decodes(f"{folder}/clip1.mp4")
            if "features.h5" in names:
                loss |= bool(check_store(f"{folder}/features.h5"))
            record("predict", kind, loss)
    return out


def _time_writing(args, out) -> float:
    """Run `hgrnn ARGS --out OUT`; seconds from OUT's creation to the end of the run."""
    p = subprocess.Popen([PY, "-m", "hgrnn", *map(str, args), "--out", out], env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not os.path.exists(out) and p.poll() is None:
        time.sleep(0.05)
    start = time.time()
    p.wait()
    return time.time() - start


def _complete(path) -> list:
    import h5py

    with h5py.File(path, "r") as f:
        return [v for v in f["videos"] if f["videos"][v].attrs.get("complete")]


def audit_extract_kills(work, runs, rng) -> dict:
    """SIGKILL of `extract-features` on rendered videos at a random moment after its store
    appears, then the same command: ok when the store passes inspect --check and equals an
    uninterrupted run's (per-video digests)."""
    from hgrnn.data.store_check import check_store

    c = _outcomes()
    root = os.path.join(work, "extract")
    for i in range(4):
        _render_clip(os.path.join(root, "videos", f"v{i}.mp4"), seconds=3, size=(64, 48))
    gt = os.path.join(root, "gt.csv")
    with open(gt, "w") as f:
        f.write("".join(f"v{i},{t},0.1,0.1,0.6,0.9,12,0\n" for i in range(4) for t in (1, 2)))
    args = ["extract-features", "--videos", os.path.join(root, "videos"), "--annotations", gt,
            "--backbone-weights", "none", "--clip-frames", 8, "--short-side", 64,
            "--workers", 0, "--quiet"]
    ref = os.path.join(root, "ref.h5")
    span = _time_writing(args, ref)              # seconds from the store's creation to exit
    c["seconds writing (uninterrupted)"] = round(span, 1)
    for i in range(runs):
        out = os.path.join(root, f"kill{i}.h5")
        p = subprocess.Popen([PY, "-m", "hgrnn", *map(str, args), "--out", out], env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not os.path.exists(out) and p.poll() is None:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.1, 0.9) * span)
        if p.poll() is not None:
            c["finished before the kill"] = c.get("finished before the kill", 0) + 1
        p.send_signal(signal.SIGKILL)
        p.wait()
        with contextlib.suppress(Exception):
            c.setdefault("videos complete when killed", []).append(len(_complete(out)))
        rc, _, err = hgrnn(*args, "--out", out)
        c["runs"] += 1
        if classify(rc, err) != "ok":
            c[classify(rc, err)] += 1
        elif check_store(out) or not _same_store(out, ref):
            c["loss"] += 1
        else:
            c["ok"] += 1
    return c



def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["kills", "concurrent", "full-disk", "corruption",
                                       "convert-fuzz", "output-paths", "detect-writers",
                                       "full-disk-outputs", "extract-kills"])
    ap.add_argument("--fuzz-cases", type=int, default=200)
    ap.add_argument("--extract-kills", type=int, default=3)
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
        if args.only in (None, "convert-fuzz"):
            results["convert fuzz"] = audit_convert_fuzz(work, args.fuzz_cases, rng)
        if args.only in (None, "output-paths"):
            results["visualize output paths"] = audit_output_paths(work)
        if args.only in (None, "detect-writers", "full-disk-outputs"):
            results["two detect on one --out"] = audit_detect_writers(work, args.pairs)
        if args.only in (None, "full-disk-outputs"):
            results["full disk (outputs)"] = audit_full_disk_outputs(work, args.disk_runs)
        if args.only in (None, "extract-kills"):
            results["SIGKILL of extract-features"] = audit_extract_kills(
                work, args.extract_kills, rng)
    print(json.dumps(results, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
