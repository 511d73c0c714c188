"""Fault injection (issue 17): two writers of one store, a full disk, forked children of a
writer, bytes overwritten in a store, damaged checkpoints and run folders, unwritable
outputs. Each test reproduces a defect the audit found; the store is written by the real
writer in tmp_path."""

import contextlib
import errno
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

from hgrnn.data.store import StoreError, StoreWriter
from hgrnn.data.store_check import check_store
from hgrnn.data.store_io import WriterLock
from hgrnn.data.store_merge import merge_stores
from storegen import random_video  # noqa: E402  (tests/ is on sys.path under pytest)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
    [ROOT, os.path.join(ROOT, "tests"), os.environ.get("PYTHONPATH", "")]))
C, K = 16, 5
LABELS = [[i, f"class {i}"] for i in range(1, K + 1)]
TEMPORARIES = (".partial", ".creating", ".lock", ".tmp")


def _write(path, ids, T=6, C=C):
    with StoreWriter(path, feature_dim=C, label_map=LABELS) as w:
        for i, vid in enumerate(ids):
            w.add_video(vid, **random_video(np.random.default_rng(i), C, K, T))


def _python(code, **kw):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=ENV, timeout=120, **kw)


def _hgrnn(*args, **kw):
    return subprocess.run([sys.executable, "-m", "hgrnn", *map(str, args)], capture_output=True,
                          text=True, env=ENV, timeout=300, **kw)


def _one_line_error(p, *words):
    """A clean CLI failure: exit 1, one 'Error: ' line with `words`, no traceback."""
    assert p.returncode == 1, (p.returncode, p.stderr[-3000:])
    assert "Traceback" not in p.stderr and "Exception ignored" not in p.stderr, p.stderr[-3000:]
    errors = [line for line in p.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, p.stderr[-3000:]
    for w in words:
        assert w in errors[0], errors[0]
    return errors[0]


def _leftovers(folder):
    return sorted(n for n in os.listdir(folder) if n.endswith(TEMPORARIES))


# ---------------------------------------------------------------- two writers of one store

def test_second_writer_is_refused_naming_the_first(tmp_path):
    path = tmp_path / "s.h5"
    with StoreWriter(path, feature_dim=C, label_map=LABELS) as w:
        w.add_video("a", **random_video(np.random.default_rng(0), C, K, 4))
        p = _python(f"""
            from hgrnn.data.store import StoreWriter, StoreError
            try:
                StoreWriter({str(path)!r}, feature_dim={C}, label_map={LABELS!r})
            except StoreError as e:
                print(e)
            """)
    assert f"is being written by another process (pid {os.getpid()}" in p.stdout, p.stdout + p.stderr
    assert not _leftovers(tmp_path)          # the lock file goes with its writer
    with StoreWriter(path, feature_dim=C, label_map=LABELS) as w:   # and the next may write
        assert w.video_ids() == ["a"]


WRITER = """
import os, sys, time
import numpy as np
from hgrnn.data.store import StoreError, StoreWriter
from storegen import random_video
path, tag, other = sys.argv[1], sys.argv[2], sys.argv[3]
open(path + "." + tag + ".ready", "w").close()          # a barrier: start together
while not os.path.exists(path + "." + other + ".ready"):
    time.sleep(0.001)
try:
    with StoreWriter(path, feature_dim=16, label_map=[[i, str(i)] for i in range(1, 6)]) as w:
        for i in range(4):
            w.add_video(f"{tag}{i}", **random_video(np.random.default_rng(i), 16, 5, 4))
        time.sleep(1.0)                                  # still writing when the other opens
except StoreError as e:
    print("refused:", e)
    sys.exit(1)
print("written", tag)
"""


def test_writers_creating_one_store_together_never_both_succeed(tmp_path):
    # the audit: 8 of 22 pairs both reported success and one writer's videos were lost
    for run in range(3):
        path = tmp_path / f"s{run}.h5"
        procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), tag, other],
                                  env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for tag, other in ("ab", "ba")]
        out = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]
        winners = [o for o in out if o[0] == 0]
        assert len(winners) == 1, out
        loser = [o for o in out if o[0] != 0][0]
        assert "being written by another process" in loser[1], out
        with h5py.File(path, "r") as f:
            tag = winners[0][1].split()[-1]
            assert sorted(f["videos"]) == [f"{tag}{i}" for i in range(4)]


def test_merge_into_an_out_being_written_is_refused_and_keeps_its_partial(tmp_path):
    # the audit: a second merge-stores deleted the first one's .partial
    shard = tmp_path / "shard.h5"
    _write(shard, ["a", "b"])
    out = tmp_path / "out.h5"
    partial = tmp_path / "out.h5.partial"
    with WriterLock(out):
        partial.write_bytes(b"the first merge's work")
        p = _cli("merge-stores", out, shard)
    _one_line_error(p, "being written by another process", f"pid {os.getpid()}")
    assert partial.read_bytes() == b"the first merge's work" and not out.exists()
    partial.unlink()
    assert merge_stores(out, [shard], progress=False)["videos"] == 2
    assert not _leftovers(tmp_path)


# ---------------------------------------------------------------- forked children

def test_orphaned_fork_of_a_writer_does_not_keep_the_store_locked(tmp_path):
    # the audit: DataLoader workers of a killed extract-features kept the store locked ~5 s
    path = tmp_path / "s.h5"
    code = f"""
        import os, sys, time
        import numpy as np
        from hgrnn.data.store import StoreWriter
        from storegen import random_video
        w = StoreWriter({str(path)!r}, feature_dim={C}, label_map={LABELS!r})
        w.add_video("a", **random_video(np.random.default_rng(0), {C}, {K}, 4))
        if os.fork() == 0:          # a worker: outlives its parent for a while
            os.write(1, b"worker\\n")         # (its at-fork handlers have run by now)
            time.sleep(20)
            os._exit(0)
        os.write(1, b"ready\\n")
        time.sleep(60)
        """
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=ENV,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert sorted(p.stdout.readline().strip() for _ in range(2)) == ["ready", "worker"]
        p.send_signal(signal.SIGKILL)
        p.wait()
        with h5py.File(path, "r") as f:          # no "unable to lock file"
            assert list(f["videos"]) == ["a"]
        with StoreWriter(path, feature_dim=C, label_map=LABELS) as w:   # nor writer lock
            assert w.video_ids() == ["a"]
    finally:
        p.kill()


# ---------------------------------------------------------------- a full disk

@contextlib.contextmanager
def _small_disk(tmp_path, mib=3):
    """(folder, preexec_fn): a tmpfs of `mib` MiB where it can be mounted (root), else a
    folder and a preexec_fn that limits the size of every file a subprocess writes."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs",
                              str(folder)], capture_output=True).returncode == 0
    limit = mib * 1024 * 1024

    def rlimit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    try:
        yield folder, None if mounted else rlimit
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_synth_on_a_full_disk_stops_with_one_line_keeping_complete_videos(tmp_path):
    # the audit: "Exception ignored in h5py ObjectID.__dealloc__", then a segfault (139)
    with _small_disk(tmp_path) as (disk, preexec):
        out = disk / "s.h5"
        p = _hgrnn("synth", "--out", out, "--videos", 80, "--keyframes", 60, "-q",
                   preexec_fn=preexec)
        line = _one_line_error(p, str(out), "videos completed before are kept")
        assert "disk is full" in line or "file size limit" in line
        assert _leftovers(disk) == []
        with h5py.File(out, "r") as f:
            assert len(f["videos"]) >= 5
        assert check_store(out) == []


def test_merge_on_a_full_disk_leaves_no_partial(tmp_path):
    shard = tmp_path / "big.h5"
    _write(shard, [f"v{i}" for i in range(20)], T=60, C=256)
    with _small_disk(tmp_path) as (disk, preexec):
        p = _hgrnn("merge-stores", disk / "m.h5", shard, preexec_fn=preexec)
        line = _one_line_error(p, str(disk / "m.h5"))
        assert "disk is full" in line or "file size limit" in line
        assert os.listdir(disk) == []


def test_writer_error_is_final_and_names_the_file(tmp_path, monkeypatch):
    # any write error of h5py (not only a full disk) abandons the file as last flushed
    path = tmp_path / "s.h5"
    _write(path, ["a"])
    w = StoreWriter(path, feature_dim=C, label_map=LABELS)

    def broken(*args, **kw):
        raise OSError(5, "Can't write data (file write failed: errno = 5, error message = "
                         "'Input/output error')")

    monkeypatch.setattr(StoreWriter, "_write_video", broken)
    with pytest.raises(StoreError, match=f"{path}: cannot write: Input/output error"):
        w.add_video("b", **random_video(np.random.default_rng(1), C, K, 4))
    with pytest.raises(StoreError, match="Input/output error"):
        w.record_failure("b", "later calls repeat the error")
    w.close()
    monkeypatch.undo()
    assert not _leftovers(tmp_path) and check_store(path) == []
    with StoreWriter(path, feature_dim=C, label_map=LABELS) as w:
        assert w.video_ids() == ["a"]


def test_nul_in_a_video_id_is_refused_by_the_writer(tmp_path):
    with StoreWriter(tmp_path / "s.h5", feature_dim=C, label_map=LABELS) as w:
        with pytest.raises(StoreError, match="invalid video id 'a\\\\x00b'"):
            w.add_video("a\0b", **random_video(np.random.default_rng(0), C, K, 4))


# ---------------------------------------------------------------- bytes overwritten in a store

def _data_offset(path, video, dataset):
    with h5py.File(path, "r") as f:
        ds = f["videos"][video][dataset]
        return ds.id.get_offset(), ds.id.get_storage_size()


def _overwrite(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def test_check_verifies_digests(tmp_path):
    # the audit: bytes overwritten inside feature data passed `inspect --check`
    path = tmp_path / "s.h5"
    _write(path, ["a", "b"])
    offset, _ = _data_offset(path, "b", "gt/feats")
    _overwrite(path, offset + 2, np.float16([0.125, -3.5]).tobytes())   # finite, but changed
    problems = check_store(path)
    assert len(problems) == 1 and problems[0].startswith("videos/b: content differs from its digest")


def test_readers_refuse_non_finite_features_naming_the_video(tmp_path):
    # the audit: eval scored NaN features with exit 0
    from hgrnn.data.windows import ContextWindows, FeatureStore

    path = tmp_path / "s.h5"
    _write(path, ["a", "b"])
    offset, _ = _data_offset(path, "b", "clip")
    _overwrite(path, offset + 2 * C, b"\xff" * 16)        # float16 NaNs in keyframe 1
    with pytest.raises(StoreError, match=f"{path}: videos/b/clip: non-finite"):
        FeatureStore(path)
    lazy = FeatureStore(path, lazy=True)
    with pytest.raises(StoreError, match="videos/b/clip: non-finite"):
        ContextWindows(lazy, 1).batch(np.arange(len(ContextWindows(lazy, 1))))


def _metadata_offsets(path, n, seed=0):
    """`n` offsets (16-byte runs) of `path` outside every dataset's raw data."""
    size = os.path.getsize(path)
    data = np.zeros(size, bool)
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                off = obj.id.get_offset()
                if off is not None:
                    data[off:off + obj.id.get_storage_size()] = True
        f.visititems(visit)
    candidates = np.nonzero(~data[:size - 16])[0]
    return np.random.default_rng(seed).choice(candidates, size=n, replace=False)


def _in_child(fns: dict) -> dict:
    """Run each fn() in one forked child (a crash of HDF5 must not take pytest with it):
    {name: "ok" | "StoreError" | "OtherError: message" | "crash"}."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)                # HDF5 prints its own error stack
        for name, fn in fns.items():
            try:
                fn()
                out = "ok"
            except StoreError:
                out = "StoreError"
            except BaseException as e:  # noqa: BLE001
                out = f"{type(e).__name__}: {str(e)[:200]}".replace("\n", " ")
            os.write(w, f"{name}\t{out}\n".encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 4096):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    got = dict(line.split("\t", 1) for line in data.decode().splitlines())
    return {name: got.get(name, "crash") for name in fns}


def test_damaged_metadata_gives_store_errors_not_tracebacks(tmp_path):
    # the audit: h5py's KeyError, RuntimeError and OSError escaped check_store, FeatureStore
    # and eval (20 of 160 runs over 40 overwrite offsets)
    from hgrnn.data.store_check import summarize_store
    from hgrnn.data.windows import FeatureStore

    path = tmp_path / "s.h5"
    _write(path, [f"v{i}" for i in range(4)], T=8)
    original = path.read_bytes()
    damaged = tmp_path / "damaged.h5"
    readers = {"check": lambda: check_store(damaged), "summary": lambda: summarize_store(damaged),
               "load": lambda: FeatureStore(damaged, lazy=False)}
    bad = []
    for offset in _metadata_offsets(path, 30):
        buf = bytearray(original)
        buf[offset:offset + 16] = b"\xff" * 16
        damaged.write_bytes(bytes(buf))
        for name, got in _in_child(readers).items():
            if got not in ("ok", "StoreError"):
                bad.append((int(offset), name, got))
    assert not bad, bad[:5]


# ---------------------------------------------------------------- checkpoints and run folders

@contextlib.contextmanager
def _read_only(path):
    """Make a file or folder unwritable, even for root (chattr +i); else chmod for others."""
    path = str(path)
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", path], capture_output=True).returncode != 0:
            pytest.skip("cannot make a file read-only for root here (no chattr +i)")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", path], capture_output=True)
    else:
        mode = os.stat(path).st_mode
        os.chmod(path, 0o555 if os.path.isdir(path) else 0o444)
        try:
            yield
        finally:
            os.chmod(path, mode)


def _cli(*args):
    """`hgrnn ARGS` in this process (click's CliRunner): .returncode, .stderr; an exception
    that escaped the command shows as a "Traceback" in .stderr."""
    from types import SimpleNamespace

    from click.testing import CliRunner

    from hgrnn.cli import main

    r = CliRunner().invoke(main, [str(a) for a in args])
    err = r.stderr
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        import traceback

        err += "Traceback\n" + "".join(traceback.format_exception(r.exception))
    return SimpleNamespace(returncode=r.exit_code, stderr=err, stdout=r.stdout)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A synthetic store and a 4-step head run on it (checkpoint every 2 steps)."""
    d = tmp_path_factory.mktemp("run")
    p = _cli("synth", "--out", d / "s.h5", "--videos", 3, "--keyframes", 12, "-q")
    assert p.returncode == 0, p.stderr
    p = _cli("train-head", "--store", d / "s.h5", "--out", d / "run", "--steps", 4, *TRAIN_ARGS)
    assert p.returncode == 0, p.stderr
    return d


TRAIN_ARGS = ["--scene-hidden", 8, "--graph-hidden", 16, "--checkpoint-every", 2,
              "--log-every", 1, "-q"]


def _copy_run(run_dir, tmp_path):
    import shutil

    shutil.copytree(run_dir / "run", tmp_path / "run")
    return tmp_path / "run"


def _edit_checkpoint(path, edit):
    import torch

    ckpt = torch.load(path, weights_only=True)
    edit(ckpt)
    torch.save(ckpt, path)


def _no_unsafe_advice(p):
    assert "weights_only" not in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]


@pytest.mark.parametrize("damage, words", [
    ("shapes", ["does not fit"]),
    ("no-head", ["'head'"]),
    ("pickle", ["refused", "GLOBAL"]),
    ("truncated", ["truncated or damaged"]),
])
def test_eval_refuses_a_damaged_checkpoint_in_one_line(run_dir, tmp_path, damage, words):
    import torch

    run = _copy_run(run_dir, tmp_path)
    ckpt = run / "last.pt"
    if damage == "shapes":
        def edit(c):
            name = next(k for k, v in c["model"].items() if v.dim() == 2)
            c["model"][name] = torch.zeros(3, 3)
        _edit_checkpoint(ckpt, edit)
    elif damage == "no-head":
        _edit_checkpoint(ckpt, lambda c: c.pop("head"))
    elif damage == "pickle":
        torch.save({"format": "hgrnn-head-checkpoint", "x": Evil(tmp_path / "pwned")}, ckpt)
    else:
        ckpt.write_bytes(ckpt.read_bytes()[:1000])
    p = _cli("eval", "--store", run_dir / "s.h5", "--checkpoint", ckpt, "--gt-boxes", "-q")
    _one_line_error(p, str(ckpt), *words)
    _no_unsafe_advice(p)
    assert not (tmp_path / "pwned").exists()


class Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_resume_refuses_a_bad_rng_state_in_one_line(run_dir, tmp_path):
    import torch

    run = _copy_run(run_dir, tmp_path)
    _edit_checkpoint(run / "last.pt", lambda c: c.update(rng_torch=torch.zeros(7, dtype=torch.uint8)))
    p = _cli("train-head", "--store", run_dir / "s.h5", "--out", run, "--steps", 6,
               "--resume", *TRAIN_ARGS)
    _one_line_error(p, str(run / "last.pt"), "RNG state")


def test_resume_drops_a_torn_last_metrics_line_and_says_so(run_dir, tmp_path):
    run = _copy_run(run_dir, tmp_path)
    metrics = run / "metrics.jsonl"
    with open(metrics, "a") as f:
        f.write('{"step": 5, "loss": 0.12')                 # killed mid-write
    # a warning (console.show_warnings_as_lines prints it as one line; in this process
    # pytest records it instead)
    with pytest.warns(UserWarning, match="torn last line") as said:
        p = _cli("train-head", "--store", run_dir / "s.h5", "--out", run, "--steps", 6,
                 "--resume", *TRAIN_ARGS)
    assert p.returncode == 0, p.stderr[-2000:]
    assert any(str(metrics) in str(w.message) for w in said)
    import json
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4, 5, 6]


def test_resume_with_a_read_only_metrics_file_is_one_line(run_dir, tmp_path):
    run = _copy_run(run_dir, tmp_path)
    with _read_only(run / "metrics.jsonl"):
        p = _cli("train-head", "--store", run_dir / "s.h5", "--out", run, "--steps", 6,
                   "--resume", *TRAIN_ARGS)
    _one_line_error(p, "metrics.jsonl")


@pytest.mark.parametrize("command", ["synth", "train-head", "eval", "demo"])
def test_unwritable_output_folder_is_one_line(run_dir, tmp_path, command):
    folder = tmp_path / "ro"
    folder.mkdir()
    args = {"synth": ["synth", "--out", folder / "s.h5", "--videos", 2, "--keyframes", 4],
            "train-head": ["train-head", "--store", run_dir / "s.h5", "--out", folder / "run",
                           "--steps", 2],
            "eval": ["eval", "--store", run_dir / "s.h5", "--checkpoint", run_dir / "run",
                     "--gt-boxes", "--out", folder / "eval"],
            "demo": ["demo", "--out", folder / "demo", "--steps", 2]}[command]
    with _read_only(folder):
        p = _cli(*args, "-q")
    _one_line_error(p, str(folder))


def test_train_head_on_a_full_disk_leaves_no_temporary(run_dir, tmp_path):
    # the audit: a stale last.pt.tmp was left behind
    with _small_disk(tmp_path, mib=1) as (disk, preexec):
        args = ["train-head", "--store", run_dir / "s.h5", "--out", disk / "run", "--steps",
                2000, "--scene-hidden", 256, "--graph-hidden", 512, "--checkpoint-every", 1,
                "--log-every", 1, "-q"]
        p = _cli(*args) if preexec is None else _hgrnn(*args, preexec_fn=preexec)
        line = _one_line_error(p)
        assert "disk is full" in line or "No space" in line or "too large" in line, line
        assert _leftovers(disk / "run") == []


# ---------------------------------------------------------------- inputs

def test_random_backbone_is_seeded_and_resume_refuses_another_seed(tmp_path):
    import torch

    from hgrnn.pipeline.extract import check_resume_settings
    from hgrnn.pipeline.i3d import load_backbone

    with pytest.warns(UserWarning, match="RANDOM"):
        a, _, meta = load_backbone("none")
        b, _, _ = load_backbone("none")
        c, _, meta_c = load_backbone("none", seed=1)
    assert meta["seed"] == 0 and meta_c["seed"] == 1
    wa, wb, wc = (next(m.parameters()) for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    stage = {"backbone": {"kind": "random", "sha256": None, "seed": 0}}
    path = tmp_path / "s.h5"
    _write(path, ["a"])
    with StoreWriter(path, feature_dim=C, label_map=LABELS,
                     configs={"extract": {"backbone": {"kind": "random", "sha256": None}}}):
        pass                                            # written before seeds were recorded
    with pytest.raises(ValueError, match="random backbone seed None -> 0"):
        check_resume_settings([str(path)], stage)


# ---------------------------------------------------------------- outputs outside their folder

def _drawable(tmp_path):
    """A rendered 2 s video src/clip2.mp4 and a result CSV for it."""
    from hgrnn.pipeline.render import render_video

    src = tmp_path / "src"
    render_video(src / "clip2.mp4", seconds=2, fps=10, size=(96, 64), shapes=())
    (tmp_path / "r.csv").write_text("clip2,1,0.1,0.1,0.6,0.9,12,0.9\n"
                                    "../src/clip2,1,0.1,0.1,0.6,0.9,12,0.9\n")
    return src / "clip2.mp4", tmp_path / "r.csv"


def test_visualize_never_writes_outside_its_out_folder(tmp_path):
    # the audit: --video-id ../src/clip2 --out DIR/ overwrote the source video
    video, results = _drawable(tmp_path)
    before = video.read_bytes()
    (tmp_path / "drawn").mkdir()
    for vid, words in (("../src/clip2", "holds '/'"), (str(tmp_path / "elsewhere" / "clip2"), "holds '/'"),
                       ("..", "names a folder"), (".", "names a folder")):
        p = _hgrnn("visualize", video, "--results", results, "--video-id", vid, "--out",
                   f"{tmp_path / 'drawn'}/", "-q")
        _one_line_error(p, repr(vid), words)
    assert video.read_bytes() == before and os.listdir(tmp_path / "drawn") == []
    p = _hgrnn("visualize", video, "--results", results, "--out", f"{video.parent}/", "-q")
    _one_line_error(p, "would overwrite the input")
    assert video.read_bytes() == before


def test_store_message_for_the_id_dot_says_why(tmp_path):
    with StoreWriter(tmp_path / "s.h5", feature_dim=C, label_map=LABELS) as w, \
            pytest.raises(StoreError, match=r"'\.'.*other than '\.' and '\.\.'"):
        w.add_video(".", **random_video(np.random.default_rng(0), C, K, 4))


# ---------------------------------------------------------------- a full disk while drawing

class _FullAfter:
    """av.open's container, whose mux fails with ENOSPC after `n` packets."""

    def __init__(self, container, n):
        self._c, self._n = container, n

    def __getattr__(self, name):
        return getattr(self._c, name)

    def mux(self, packet):
        self._n -= 1
        if self._n < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self._c.mux(packet)


def test_visualize_on_a_full_disk_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    import av
    from click.testing import CliRunner
    from PIL import Image

    from hgrnn.cli import main

    video, results = _drawable(tmp_path)
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda path, mode="r", **kw: (
        _FullAfter(real_open(path, mode, **kw), 3) if mode == "w" else real_open(path, mode, **kw)))
    out = tmp_path / "drawn"
    r = CliRunner().invoke(main, ["visualize", str(video), "--results", str(results), "--out",
                                  f"{out}/", "-q"])
    assert r.exit_code == 1 and r.output.strip() == (
        f"Error: {out / 'clip2.mp4'}: No space left on device"), r.output
    assert os.listdir(out) == []
    monkeypatch.setattr(av, "open", real_open)

    def save(self, fp, *a, **kw):
        with open(fp, "wb") as f:
            f.write(b"\x89PNG half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", save)
    sheet = tmp_path / "sheets" / "s.png"
    r = CliRunner().invoke(main, ["visualize", str(video), "--results", str(results),
                                  "--sheet", str(sheet), "-q"])
    assert r.exit_code == 1 and r.output.strip() == (
        f"Error: {sheet}: No space left on device"), r.output
    assert os.listdir(sheet.parent) == []


# ---------------------------------------------------------------- two writers of one detect CSV

def test_second_detect_on_one_out_is_refused_naming_the_first(tmp_path):
    # the audit: two `detect` runs on one --out both exited 0; the file held the last
    # writer's rows. The CSV gets the store's writer lock.
    out = tmp_path / "boxes.csv"
    (tmp_path / "videos").mkdir()
    lock = WriterLock(out).acquire()
    try:
        p = _hgrnn("detect", "--out", out, "--videos", tmp_path / "videos", "--detector",
                   "faster-rcnn", "--quiet")
    finally:
        lock.release()
    _one_line_error(p, str(out), "is being written by another process", f"pid {os.getpid()}")
    assert not out.exists()


def test_detect_on_a_full_disk_names_the_csv(tmp_path, monkeypatch):
    from hgrnn.pipeline import detect as dt

    def full(cfg):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dt, "_detect_videos", full)
    out = tmp_path / "boxes.csv"
    with pytest.raises(dt.DetectorError, match=f"{out}: No space left on device .*run again"):
        dt.detect_videos(dt.DetectConfig(out=str(out), videos=str(tmp_path)))
    assert not _leftovers(tmp_path)


# ---------------------------------------------------------------- SIGKILL during extract-features

def _digests(path):
    with h5py.File(path, "r") as f:
        return {v: f["videos"][v].attrs["digest"] for v in f["videos"]
                if f["videos"][v].attrs.get("complete")}


def test_extract_features_killed_on_rendered_videos_resumes_to_the_same_store(tmp_path):
    # the CLI as a user runs it (a subprocess), on rendered videos, killed with SIGKILL
    # while it writes; the rerun must give the store an uninterrupted run gives
    from hgrnn.pipeline.render import render_video

    for i in range(3):
        render_video(tmp_path / "videos" / f"v{i}.mp4", seconds=3, fps=10, size=(64, 48),
                     shapes=())
    (tmp_path / "gt.csv").write_text("".join(f"v{i},1,0.1,0.1,0.6,0.9,12,0\n"
                                             f"v{i},2,0.3,0.2,0.9,0.9,11,1\n" for i in range(3)))
    args = ["extract-features", "--videos", tmp_path / "videos", "--annotations",
            tmp_path / "gt.csv", "--backbone-weights", "none", "--clip-frames", "8",
            "--short-side", "64", "--workers", "0", "--quiet"]
    def start(out):
        p = subprocess.Popen([sys.executable, "-m", "hgrnn", *map(str, args), "--out",
                              str(out)], env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        deadline = time.time() + 240
        while not out.exists() and p.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        return p, time.time()

    ref = tmp_path / "ref.h5"
    p, t0 = start(ref)
    assert p.wait(timeout=300) == 0
    span = time.time() - t0                       # writing the store, uninterrupted
    out = tmp_path / "killed.h5"
    p, _ = start(out)
    time.sleep(span / 2)                          # about halfway through its videos
    p.send_signal(signal.SIGKILL)
    assert p.wait() == -signal.SIGKILL
    resumed = _hgrnn(*args, "--out", out)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert check_store(out) == [] and not _leftovers(tmp_path)
    assert _digests(out) == _digests(ref) and len(_digests(ref)) == 3


def test_detect_progress_record_is_whole_or_absent_on_a_full_disk(tmp_path, monkeypatch):
    # the audit: a disk full when detect began left an empty progress record, and every
    # later run refused the --out ("written with other settings")
    from pathlib import Path

    from hgrnn.data.paths import OutputPathError
    from hgrnn.pipeline import detect as dt

    real_write = Path.write_text

    def full(self, text, *a, **kw):
        real_write(self, "", *a, **kw)                  # the file exists, nothing fits
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    monkeypatch.setattr(dt, "load_person_detector", lambda *a, **k: type(
        "D", (), {"meta": {}, "short_side": 64})())
    out = tmp_path / "boxes.csv"
    with pytest.raises(OutputPathError, match="progress.jsonl: No space left on device"):
        dt.detect_videos(dt.DetectConfig(out=str(out), videos=str(tmp_path), device="cpu"))
    assert not dt.progress_path(out).exists() and not _leftovers(tmp_path)
