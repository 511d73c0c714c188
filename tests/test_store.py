"""The HDF5 feature store: schema, writer validation, crash safety, merging, checking."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

from hgrnn.data.ava import LabelMap
from hgrnn.data.store import (FORMAT_VERSION, PersonSet, StoreError, StoreWriter, lock_for_writing,
                              open_h5, read_failures)
from hgrnn.data.store_check import check_store
from storegen import random_video  # noqa: E402  (tests/ is on sys.path under pytest)

C, K = 16, 5
LM = LabelMap(ids=(1, 3, 4, 6, 8), names=("bend", "crouch", "dance", "fall", "get up"))


def _video(seed, T=6, **kw):
    return random_video(np.random.default_rng(seed), C, K, T, **kw)


def _write(path, ids, T=6, **writer_kw):
    with StoreWriter(path, feature_dim=C, label_map=LM, **writer_kw) as w:
        for i, vid in enumerate(ids):
            w.add_video(vid, **_video(i, T))
    return path


# ------------------------------------------------------------------ schema round trip

def test_schema_written_as_documented(tmp_path):
    path = tmp_path / "s.h5"
    v = _video(0, T=7)
    with StoreWriter(path, feature_dim=C, label_map=LM, configs={"extract": {"fps": 30}}) as w:
        w.add_video("vid-A_1", **v)
        assert w.has_video("vid-A_1") and not w.has_video("other")
    with h5py.File(path, "r") as f:
        a = f.attrs
        assert a["format"] == "hgrnn-store" and a["version"] == FORMAT_VERSION
        assert a["feature_dim"] == C and a["box_format"] == "xyxy-normalized"
        assert json.loads(a["label_map"]) == [[1, "bend"], [3, "crouch"], [4, "dance"],
                                              [6, "fall"], [8, "get up"]]
        assert json.loads(a["configs"]) == {"extract": {"fps": 30}}
        assert json.loads(a["streams"]) == [["rgb", 0, C]]
        g = f["videos/vid-A_1"]
        assert bool(g.attrs["complete"]) and g.attrs["width"] == 320 and g.attrs["height"] == 240
        assert g["timestamps"].dtype == np.int32 and g["timestamps"].shape == (7,)
        np.testing.assert_array_equal(g["timestamps"][()], v["timestamps"])
        assert g["clip"].dtype == np.float16 and g["clip"].shape == (7, C)
        np.testing.assert_array_equal(g["clip"][()], v["clip"])
        for src in ("gt", "det"):
            s, ps = g[src], v[src]
            N = int(ps.offsets[-1])
            assert s["offsets"].dtype == np.int64 and s["offsets"].shape == (8,)
            assert s["boxes"].dtype == np.float32 and s["boxes"].shape == (N, 4)
            assert s["feats"].dtype == np.float16 and s["feats"].shape == (N, C)
            assert s["scores"].dtype == np.float32 and s["scores"].shape == (N,)
            np.testing.assert_array_equal(s["offsets"][()], ps.offsets)
            np.testing.assert_array_equal(s["boxes"][()], ps.boxes)
            np.testing.assert_array_equal(s["feats"][()], ps.feats)
        lab = g["gt/labels"]
        assert lab.dtype == np.uint8 and lab.shape == (int(v["gt"].offsets[-1]), K)
        assert lab.chunks is not None and lab.compression == "gzip"
        np.testing.assert_array_equal(lab[()], v["gt"].labels)
        assert g["gt/person_id"].dtype == np.int32
        assert "labels" not in g["det"]
    assert check_store(path) == []


def test_zero_person_keyframes_and_video_without_persons(tmp_path):
    path = tmp_path / "s.h5"
    rng = np.random.default_rng(1)
    with StoreWriter(path, feature_dim=C, label_map=LM) as w:
        w.add_video("a", **random_video(rng, C, K, 4, counts=[0, 0, 2, 0]))
        w.add_video("b", np.arange(3), np.zeros((3, C)))       # clip only
        w.add_video("c", **random_video(rng, C, K, 3, counts=[0, 0, 0]))
    with h5py.File(path, "r") as f:
        assert f["videos/a/gt/offsets"][()].tolist() == [0, 0, 0, 2, 2]
        assert "gt" not in f["videos/b"] and f["videos/c/gt/labels"].shape == (0, K)
    assert check_store(path) == []


def test_float_inputs_are_cast(tmp_path):
    path = tmp_path / "s.h5"
    v = _video(0)
    v["timestamps"] = v["timestamps"].astype(np.float64)
    v["clip"] = v["clip"].astype(np.float64)
    gt = v["gt"]
    v["gt"] = PersonSet(gt.offsets.tolist(), gt.boxes.astype(np.float64), gt.feats.astype(np.float32),
                        gt.scores.tolist(), gt.labels.astype(bool), gt.person_ids.astype(np.int64))
    with StoreWriter(path, feature_dim=C, label_map=LM) as w:
        w.add_video("v", **v)
    with h5py.File(path, "r") as f:
        assert f["videos/v/gt/labels"].dtype == np.uint8 and f["videos/v/clip"].dtype == np.float16


# ------------------------------------------------------------------ validation

def _bad(kind):
    v = _video(0)
    gt = v["gt"]
    N = int(gt.offsets[-1])
    if kind == "timestamps":
        v["timestamps"] = v["timestamps"].copy()
        v["timestamps"][3] = v["timestamps"][2]
        return v, "timestamps: not strictly increasing at index 3"
    if kind == "clip-shape":
        v["clip"] = v["clip"][:, :-1]
        return v, f"clip: shape (6, {C - 1}), expected (6, {C})"
    if kind == "clip-nan":
        v["clip"] = v["clip"].astype(np.float32)
        v["clip"][1, 2] = np.nan
        return v, "clip: non-finite values (1 NaN/inf)"
    if kind == "clip-overflow":
        v["clip"] = v["clip"].astype(np.float32) * 1e6
        return v, "overflow float16"
    if kind == "box-range":
        boxes = gt.boxes.copy()
        boxes[2, 2] = 1.5
        v["gt"] = PersonSet(gt.offsets, boxes, gt.feats, gt.scores, gt.labels, gt.person_ids)
        return v, "gt/boxes: row 2"
    if kind == "box-order":
        boxes = gt.boxes.copy()
        boxes[1] = [0.5, 0.5, 0.2, 0.6]
        v["gt"] = PersonSet(gt.offsets, boxes, gt.feats, gt.scores, gt.labels, gt.person_ids)
        return v, "x2 < x1"
    if kind == "labels-values":
        labels = gt.labels.copy()
        labels[0, 0] = 2
        v["gt"] = PersonSet(gt.offsets, gt.boxes, gt.feats, gt.scores, labels, gt.person_ids)
        return v, "gt/labels: values other than 0/1"
    if kind == "labels-K":
        v["gt"] = PersonSet(gt.offsets, gt.boxes, gt.feats, gt.scores, gt.labels[:, :3], gt.person_ids)
        return v, f"gt/labels: shape ({N}, 3), expected ({N}, {K})"
    if kind == "labels-missing":
        v["gt"] = PersonSet(gt.offsets, gt.boxes, gt.feats, gt.scores)
        return v, "gt/labels: missing (ground-truth persons need labels"
    if kind == "offsets":
        off = gt.offsets.copy()
        off[2], off[3] = off[3] + 1, off[2]
        v["gt"] = PersonSet(off, gt.boxes, gt.feats, gt.scores, gt.labels, gt.person_ids)
        return v, "gt/offsets: must start at 0 and never decrease"
    if kind == "feats-rows":
        det = v["det"]
        v["det"] = PersonSet(det.offsets, det.boxes, det.feats[1:], det.scores)
        return v, "det/feats: shape"
    if kind == "scores-inf":
        det = v["det"]
        scores = det.scores.copy()
        scores[0] = np.inf
        v["det"] = PersonSet(det.offsets, det.boxes, det.feats, scores)
        return v, "det/scores: non-finite"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["timestamps", "clip-shape", "clip-nan", "clip-overflow",
                                  "box-range", "box-order", "labels-values", "labels-K",
                                  "labels-missing", "offsets", "feats-rows", "scores-inf"])
def test_writer_refuses_invalid_video_and_leaves_store_clean(tmp_path, kind):
    path = tmp_path / "s.h5"
    v, expected = _bad(kind)
    with StoreWriter(path, feature_dim=C, label_map=LM) as w:
        w.add_video("good", **_video(5))
        with pytest.raises(StoreError) as err:
            w.add_video("bad-vid", **v)
        assert expected in str(err.value)
        assert str(path) in str(err.value) and "bad-vid" in str(err.value)
        assert not w.has_video("bad-vid")
    with h5py.File(path, "r") as f:
        assert list(f["videos"]) == ["good"]


def test_invalid_video_id(tmp_path):
    with StoreWriter(tmp_path / "s.h5", feature_dim=C, label_map=LM) as w:
        for bad in ("", "a/b", "."):
            with pytest.raises(StoreError, match="invalid video id"):
                w.add_video(bad, **_video(0))


def test_duplicate_refused_unless_overwrite(tmp_path):
    path = tmp_path / "s.h5"
    with StoreWriter(path, feature_dim=C, label_map=LM) as w:
        w.add_video("v", **_video(0))
        with pytest.raises(StoreError, match="already in the store"):
            w.add_video("v", **_video(1))
        w.add_video("v", **_video(1, T=9), overwrite=True)
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["videos/v/clip"][()], _video(1, T=9)["clip"])
    assert check_store(path) == []


def test_reopen_appends_and_checks_compatibility(tmp_path):
    path = _write(tmp_path / "s.h5", ["a", "b"])
    with StoreWriter(path, feature_dim=C, label_map=LM, configs={"extract": {"x": 1}}) as w:
        assert w.video_ids() == ["a", "b"]
        w.add_video("c", **_video(2))
    with h5py.File(path, "r") as f:
        assert sorted(f["videos"]) == ["a", "b", "c"]
        assert json.loads(f.attrs["configs"]) == {"extract": {"x": 1}}
    with pytest.raises(StoreError, match="feature_dim 16, this writer has 8"):
        StoreWriter(path, feature_dim=8, label_map=LM)
    with pytest.raises(StoreError, match="different label map"):
        StoreWriter(path, feature_dim=C, label_map=[[1, "bend"]])
    with pytest.warns(UserWarning, match="config changes"):
        with StoreWriter(path, feature_dim=C, label_map=LM, configs={"extract": {"x": 2}}):
            pass


def test_incomplete_video_absent_and_replaced(tmp_path):
    path = _write(tmp_path / "s.h5", ["a"])
    with h5py.File(path, "a") as f:       # what a crash mid-video leaves behind
        g = f["videos"].create_group("b")
        g.create_dataset("timestamps", data=np.arange(3, dtype=np.int32))
    with StoreWriter(path, feature_dim=C, label_map=LM) as w:
        assert not w.has_video("b") and w.video_ids() == ["a"]
        w.add_video("b", **_video(1))
    assert check_store(path) == []


def test_failures_recorded_and_cleared(tmp_path):
    path = tmp_path / "s.h5"
    with StoreWriter(path, feature_dim=C, label_map=LM) as w:
        w.record_failure("x", "cannot decode: moov atom not found")
        w.record_failure("y", "no frames")
        w.record_failure("y", "no frames at 1798 s")
    assert read_failures(path) == {"x": "cannot decode: moov atom not found",
                                   "y": "no frames at 1798 s"}
    with StoreWriter(path, feature_dim=C, label_map=LM) as w:
        w.add_video("x", **_video(0))
    assert read_failures(path) == {"y": "no frames at 1798 s"}


def test_streams_attribute(tmp_path):
    path = tmp_path / "s.h5"
    with StoreWriter(path, feature_dim=C, label_map=LM, streams=[("rgb", 0, 8), ("flow", 8, 16)]):
        pass
    with h5py.File(path, "r") as f:
        assert json.loads(f.attrs["streams"]) == [["rgb", 0, 8], ["flow", 8, 16]]
    with pytest.raises(StoreError, match="outside"):
        StoreWriter(tmp_path / "t.h5", feature_dim=C, label_map=LM, streams=[("rgb", 0, 32)])


# ------------------------------------------------------------------ one writer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCK_PROBE = textwrap.dedent("""
    import sys
    from hgrnn.data.store import StoreError, lock_for_writing, open_h5
    try:
        {call}
    except StoreError as e:
        print(e)
""")


def _probe(call):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    p = subprocess.run([sys.executable, "-c", LOCK_PROBE.format(call=call)], capture_output=True,
                       text=True, env=env, timeout=120)
    return p.stdout.strip() + p.stderr


def test_second_writer_is_refused_before_reading_naming_the_first(tmp_path):
    # an extract that plans a resume reads the store first: it met HDF5's own lock and was
    # told "locked by another process" instead of who writes the store
    import socket

    path = _write(tmp_path / "s.h5", ["a"])
    holder = f"pid {os.getpid()} on {socket.gethostname()}"
    with StoreWriter(path, feature_dim=C, label_map=LM) as w:
        w.add_video("b", **_video(1))
        text = _probe(f"lock_for_writing({str(path)!r})")
        assert text.startswith(f"{path}: is being written by another process ({holder}"), text
        text = _probe(f"open_h5({str(path)!r})")             # a reader meeting HDF5's lock
        assert f"{path}: cannot open as a feature store: being written by another process " \
               f"({holder}" in text, text
    # the pattern of a resuming stage: lock, read to plan, then write under the same lock
    lock = lock_for_writing(path)
    assert "pid" in _probe(f"lock_for_writing({str(path)!r})")
    with open_h5(path) as f:
        assert sorted(f["videos"]) == ["a", "b"]
    with StoreWriter(path, feature_dim=C, label_map=LM, lock=lock) as w:
        w.add_video("c", **_video(2))
    assert not lock.held and not os.path.exists(f"{path}.lock")
    with pytest.raises(ValueError, match="held writer lock"):
        StoreWriter(path, feature_dim=C, label_map=LM, lock=lock)
    lock = lock_for_writing(path)               # a failed open releases the lock it was given
    with pytest.raises(StoreError, match="feature_dim 16, this writer has 8"):
        StoreWriter(path, feature_dim=8, label_map=LM, lock=lock)
    assert not lock.held
    assert _probe(f"lock_for_writing({str(path)!r}).release()") == ""
    assert check_store(path) == []


# ------------------------------------------------------------------ crash safety

CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    import hgrnn.data.store as store
    from hgrnn.data.ava import LabelMap
    from storegen import random_video
    path, mode, C, K, T = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    lm = LabelMap(ids=tuple(range(1, K + 1)), names=tuple(f"c{i}" for i in range(K)))
    real_digest = store.video_digest
    def digest_then_hang(ts, clip, sets):
        # called after the video's datasets are written, before `complete` and the flush
        if current[0] == "v3":
            print("MIDWRITE", flush=True)
            time.sleep(600)
        return real_digest(ts, clip, sets)
    if mode == "hang":
        store.video_digest = digest_then_hang
    current = [None]
    with store.StoreWriter(path, feature_dim=C, label_map=lm) as w:
        i = 0
        while True:
            vid = f"v{i}"
            current[0] = vid
            if not w.has_video(vid):
                w.add_video(vid, **random_video(np.random.default_rng(i), C, K, T))
            print("DONE", vid, flush=True)
            i += 1
            if mode == "hang" and i > 5:
                break
""")


def _spawn(path, mode, T, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.path.dirname(__file__),
                                                       os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, str(script), str(path), mode, "64", str(K), str(T)],
                            stdout=subprocess.PIPE, text=True, env=env)


def _assert_videos_intact(path, ids, T):
    with h5py.File(path, "r") as f:
        for vid in ids:
            want = random_video(np.random.default_rng(int(vid[1:])), 64, K, T)
            g = f["videos"][vid]
            np.testing.assert_array_equal(g["clip"][()], want["clip"])
            np.testing.assert_array_equal(g["gt/feats"][()], want["gt"].feats)
            np.testing.assert_array_equal(g["gt/labels"][()], want["gt"].labels)
            np.testing.assert_array_equal(g["det/boxes"][()], want["det"].boxes)


def test_sigkill_mid_video_loses_only_that_video(tmp_path):
    path = tmp_path / "s.h5"
    T = 200
    proc = _spawn(path, "hang", T, tmp_path)
    lines = []
    for line in proc.stdout:
        lines.append(line.strip())
        if line.startswith("MIDWRITE"):
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert lines == ["DONE v0", "DONE v1", "DONE v2", "MIDWRITE"]
    proc.stdout.close()
    # v3's datasets were written, but the writer holds metadata back until its flush, so
    # v3 is either invisible or present without `complete`: absent for readers either way
    with h5py.File(path, "r") as f:
        assert "v3" not in f["videos"] or "complete" not in f["videos/v3"].attrs
        assert os.path.getsize(path) > 3 * 200 * 64 * 2    # the data of v0..v2 at least
    problems = check_store(path)
    assert problems == [] or (len(problems) == 1 and "videos/v3: no 'complete'" in problems[0])
    _assert_videos_intact(path, ["v0", "v1", "v2"], T)
    from hgrnn.data.windows import FeatureStore
    assert FeatureStore(path).video_ids == ["v0", "v1", "v2"]
    # resume: the partial video is replaced, the rest kept
    with StoreWriter(path, feature_dim=64, label_map=[[i, f"c{i - 1}"] for i in range(1, K + 1)]) as w:
        assert w.video_ids() == ["v0", "v1", "v2"]
        for i in range(3, 6):
            w.add_video(f"v{i}", **random_video(np.random.default_rng(i), 64, K, T))
    assert check_store(path) == []
    _assert_videos_intact(path, [f"v{i}" for i in range(6)], T)


@pytest.mark.parametrize("delay", [0.05, 0.4])
def test_sigkill_at_random_moment_keeps_store_readable(tmp_path, delay):
    path = tmp_path / "s.h5"
    T = 300
    proc = _spawn(path, "loop", T, tmp_path)
    done = []
    for line in proc.stdout:
        done.append(line.split()[1])
        if len(done) == 2:
            break
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    with h5py.File(path, "r") as f:
        complete = sorted(k for k in f["videos"] if f["videos"][k].attrs.get("complete", False))
    assert set(done) <= set(complete)
    problems = check_store(path)
    assert all("complete" in p for p in problems) and len(problems) <= 1
    _assert_videos_intact(path, complete, T)
    proc = _spawn(path, "loop", T, tmp_path)       # resume, then stop it cleanly-ish
    for line in proc.stdout:
        if line.split()[1] == f"v{len(complete) + 1}":
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    with h5py.File(path, "r") as f:
        complete2 = sorted(k for k in f["videos"] if f["videos"][k].attrs.get("complete", False))
    assert set(complete) < set(complete2)
    _assert_videos_intact(path, complete2, T)


# ------------------------------------------------------------------ checking and bad files

def test_bad_files_give_one_line_errors(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 100)
    with pytest.raises(StoreError, match="not an HDF5 file"):
        check_store(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    with pytest.raises(StoreError, match="not an hgrnn feature store"):
        check_store(other)
    good = _write(tmp_path / "good.h5", ["a", "b"], T=50)
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(good.read_bytes()[: os.path.getsize(good) // 2])
    with pytest.raises(StoreError, match="trunc.h5") as err:
        check_store(trunc)
    assert "\n" not in str(err.value)
    with pytest.raises(StoreError, match="no such file"):
        check_store(tmp_path / "missing.h5")
    with h5py.File(other, "a") as f:
        f.attrs["format"] = "hgrnn-store"
        f.attrs["version"] = 7
    with pytest.raises(StoreError, match="version 7"):
        check_store(other)


def write_by_hand(path, T=4):
    """A store written with plain h5py from docs/store.md alone: fixed-length strings,
    integer `complete`, chunked clip, no optional attributes."""
    rng = np.random.default_rng(3)
    with h5py.File(path, "w") as f:
        f.attrs["format"] = np.bytes_(b"hgrnn-store")
        f.attrs["version"] = np.int32(1)
        f.attrs["feature_dim"] = np.int32(C)
        f.attrs["label_map"] = np.bytes_(LM.to_json().encode())
        f.attrs["box_format"] = np.bytes_(b"xyxy-normalized")
        f.attrs["configs"] = np.bytes_(b"{}")
        g = f.create_group("videos/hand")
        g.create_dataset("timestamps", data=np.arange(900, 900 + T, dtype=np.int32))
        g.create_dataset("clip", data=rng.standard_normal((T, C)).astype(np.float16), chunks=(1, C))
        s = g.create_group("gt")
        s["offsets"] = np.array([0, 1, 3, 3, 4][: T + 1], np.int32)
        s["boxes"] = np.tile(np.float32([0.1, 0.2, 0.3, 0.4]), (4, 1))
        s["feats"] = rng.standard_normal((4, C)).astype(np.float32)   # float32 is accepted too
        s["scores"] = np.ones(4, np.float32)
        s["labels"] = np.eye(K, dtype=np.uint8)[[0, 1, 2, 3]]
        s["person_id"] = np.arange(4, dtype=np.int32)
        g.attrs["complete"] = np.int8(1)
    return path


def test_store_written_by_hand_from_the_docs_is_accepted(tmp_path):
    path = write_by_hand(tmp_path / "hand.h5")
    assert check_store(path) == []
    with StoreWriter(path, feature_dim=C, label_map=LM) as w:   # and can be appended to
        assert w.video_ids() == ["hand"]
        w.add_video("more", **_video(0))
    assert check_store(path) == []


# ------------------------------------------------------------------ command line

def test_cli_inspect_and_check(tmp_path):
    from click.testing import CliRunner

    from hgrnn.cli import main

    path = _write(tmp_path / "s.h5", ["a", "b"], T=20, configs={"extract": {"fps": 30}})
    with StoreWriter(path, feature_dim=C, label_map=LM) as w:
        w.record_failure("zz", "cannot decode")
    r = CliRunner().invoke(main, ["inspect", str(path), "--check"])
    assert r.exit_code == 0, r.output
    for text in ("2 complete", "keyframes        40", "[gt] ground truth", "[det] detections",
                 "persons per keyframe  min", "C = 16", "float16", "    extract:\n      fps: 30",
                 "zz: cannot decode", "label counts", "check: OK"):
        assert text in r.output, text
    for name in LM.names:                   # class names whole
        assert f" {name} " in r.output, name
    gt_persons = sum(int(_video(i, 20)["gt"].offsets[-1]) for i in range(2))
    assert f"{gt_persons:,} persons in 2 videos" in r.output
    r = CliRunner().invoke(main, ["inspect", str(path), "--json"])
    assert r.exit_code == 0 and '"feature_dim": 16' in r.output

    with h5py.File(path, "a") as f:
        f["videos/b/det/feats"][3, 1] = np.nan
    r = CliRunner().invoke(main, ["inspect", str(path), "--check"])
    assert r.exit_code == 1
    assert f"{path}: videos/b/det/feats: non-finite values (1 NaN/inf)\n" in r.output
    assert "check failed: 1 problem in 1 video (listed above)" in r.output

    with h5py.File(path, "a") as f:                # summary cannot even read it:
        del f["videos/a/gt/offsets"]              # --check still names the dataset
    r = CliRunner().invoke(main, ["inspect", str(path), "--check"])
    assert r.exit_code == 1                        # every problem is listed
    assert f"{path}: videos/a/gt/offsets: missing\n" in r.output, r.output
    assert f"{path}: videos/b/det/feats: non-finite values" in r.output
    assert "check failed: 2 problems in 2 videos" in r.output

    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"GIF89a" + b"\x00" * 1000)
    r = CliRunner().invoke(main, ["inspect", str(junk)])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.output.strip() == f"Error: {junk}: cannot open as a feature store: not an HDF5 file"


def test_cli_merge_stores(tmp_path):
    from click.testing import CliRunner

    from hgrnn.cli import main

    a = _write(tmp_path / "a.h5", ["v0", "v1"])
    b = tmp_path / "b.h5"
    with StoreWriter(b, feature_dim=C, label_map=LM) as w:
        w.add_video("v2", **_video(2))
    out = tmp_path / "out.h5"
    r = CliRunner().invoke(main, ["merge-stores", str(out), str(a), str(b)])
    assert r.exit_code == 0, r.output
    assert "3 videos from 2 shards" in r.output and check_store(out) == []
    r = CliRunner().invoke(main, ["merge-stores", str(out), str(a), str(b)])
    assert r.exit_code == 1 and "--overwrite" in r.output
    missing = tmp_path / "no-such-dir" / "out.h5"
    r = CliRunner().invoke(main, ["merge-stores", str(missing), str(a)])
    assert r.exit_code == 1 and r.output.startswith(f"Error: {missing}: directory ")
    assert "Traceback" not in r.output and not missing.parent.exists()
