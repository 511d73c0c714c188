"""FeatureStore and ContextWindows, checked against a slow obviously-correct reference that
reads the file with plain h5py."""

import multiprocessing
import os
import pickle

import h5py
import numpy as np
import pytest
import torch

from hgrnn.data.ava import LabelMap
from hgrnn.data.store import StoreError, StoreWriter
from hgrnn.data.windows import ContextWindows, FeatureStore, WindowBatch
from storegen import random_video  # noqa: E402  (tests/ is on sys.path under pytest)

C, K = 8, 4
LM = LabelMap(ids=(1, 2, 3, 4), names=("a", "b", "c", "d"))


def _timestamps(kind):
    if kind == "ava":
        return np.arange(902, 912)
    if kind == "gap":                     # a gap after 904, and one after 910
        return np.array([902, 903, 904, 907, 908, 909, 910, 920])
    if kind == "step2":                   # usual step 2 s, one gap
        return np.array([0, 2, 4, 6, 10, 12])
    if kind == "single":
        return np.array([1000])
    raise AssertionError(kind)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    """Videos with gaps, empty keyframes, a video without det, one without any person."""
    path = tmp_path_factory.mktemp("w") / "s.h5"
    rng = np.random.default_rng(0)
    with StoreWriter(path, feature_dim=C, label_map=LM) as w:
        for vid, kind in [("v-ava", "ava"), ("v-gap", "gap"), ("v-step2", "step2"),
                          ("v-single", "single"), ("v-ava2", "ava")]:
            ts = _timestamps(kind)
            counts = rng.choice([0, 1, 2, 3, 5], size=len(ts), p=[0.25, 0.3, 0.2, 0.15, 0.1])
            v = random_video(rng, C, K, len(ts), counts=counts, det=vid != "v-step2")
            v["timestamps"] = ts
            w.add_video(vid, **v)
        w.add_video("v-empty", **random_video(rng, C, K, 5, counts=[0] * 5))
    return path


def reference_window(path, source, video, t, l, pad, ctx_source=None):
    """Slow reference for one window: a dict of numpy arrays. ctx_source: the box source of
    the non-centre slots (default: source)."""
    with h5py.File(path, "r") as f:
        g = f["videos"][video]
        ts = g["timestamps"][()].tolist()
        clip = g["clip"][()].astype(np.float32)
        s = g[source] if source in g else None
        off = s["offsets"][()] if s is not None else np.zeros(len(ts) + 1, int)
        cs = g[ctx_source or source] if (ctx_source or source) in g else None
        coff = cs["offsets"][()] if cs is not None else np.zeros(len(ts) + 1, int)
        diffs = [b - a for a, b in zip(ts, ts[1:])]
        step = max(set(diffs), key=lambda d: (diffs.count(d), -d)) if diffs else 1
        i = ts.index(t)
        first = i
        while first > 0 and ts[first] - ts[first - 1] <= step:
            first -= 1
        last = i
        while last < len(ts) - 1 and ts[last + 1] - ts[last] <= step:
            last += 1
        out = {"clip": [], "mask": [], "ctx": [], "seg": []}
        for slot, d in enumerate(range(-l, l + 1)):
            j = i + d
            inside = first <= j <= last
            out["mask"].append(inside)
            if not inside and pad == "zero":
                out["clip"].append(np.zeros(C, np.float32))
                continue
            j = min(max(j, first), last)
            out["clip"].append(clip[j])
            src, src_off = (s, off) if slot == l else (cs, coff)
            for r in range(src_off[j], src_off[j + 1]):
                out["ctx"].append(src["feats"][r].astype(np.float32))
                out["seg"].append(slot)
        rows = list(range(off[i], off[i + 1]))
        out["feats"] = [s["feats"][r].astype(np.float32) for r in rows]
        out["boxes"] = [s["boxes"][r] for r in rows]
        out["scores"] = [s["scores"][r] for r in rows]
        out["labels"] = [s["labels"][r].astype(np.float32) for r in rows] if "labels" in s else None
        return out


def _assert_batch_matches(path, source, wins, idx, batch, l, pad, ctx_source=None):
    L = 2 * l + 1
    assert isinstance(batch, WindowBatch)
    B = len(idx)
    assert batch.clip.shape == (B, L, C) and batch.clip.dtype == torch.float32
    assert batch.window_mask.shape == (B, L) and batch.window_mask.dtype == torch.bool
    ctx, seg, feats, kf, boxes, scores, labels = [], [], [], [], [], [], []
    for b, i in enumerate(idx):
        video, t = wins.video_ids[i], int(wins.timestamps[i])
        assert batch.video_ids[b] == video and int(batch.timestamps[b]) == t
        ref = reference_window(path, source, video, t, l, pad, ctx_source)
        np.testing.assert_array_equal(batch.clip[b].numpy(), np.stack(ref["clip"]))
        assert batch.window_mask[b].tolist() == ref["mask"]
        ctx += ref["ctx"]
        seg += [b * L + s for s in ref["seg"]]
        feats += ref["feats"]
        kf += [b] * len(ref["feats"])
        boxes += ref["boxes"]
        scores += ref["scores"]
        if ref["labels"] is not None:
            labels += ref["labels"]
    np.testing.assert_array_equal(batch.ctx_feats.numpy(), np.array(ctx).reshape(-1, C))
    assert batch.ctx_segment.tolist() == seg and batch.ctx_segment.dtype == torch.int64
    np.testing.assert_array_equal(batch.feats.numpy(), np.array(feats).reshape(-1, C))
    assert batch.keyframe.tolist() == kf and batch.keyframe.dtype == torch.int64
    np.testing.assert_array_equal(batch.boxes.numpy(), np.array(boxes).reshape(-1, 4))
    np.testing.assert_array_equal(batch.scores.numpy(), np.array(scores))
    if batch.labels is not None:
        np.testing.assert_array_equal(batch.labels.numpy(), np.array(labels).reshape(-1, K))
        assert batch.labels.dtype == torch.float32


@pytest.mark.parametrize("source", ["gt", "det"])
@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("l, pad", [(0, "edge"), (1, "edge"), (3, "edge"), (3, "zero"), (2, "zero")])
def test_batches_match_reference(store_path, source, lazy, l, pad):
    store = FeatureStore(store_path, box_source=source, lazy=lazy)
    wins = ContextWindows(store, l, pad=pad)
    # every keyframe with >= 1 person is indexed, none other
    with h5py.File(store_path, "r") as f:
        expected = []
        for vid in sorted(f["videos"]):
            g = f["videos"][vid]
            if source in g:
                off = g[source]["offsets"][()]
                ts = g["timestamps"][()]
                expected += [(vid, int(ts[t])) for t in range(len(ts)) if off[t + 1] > off[t]]
    assert list(zip(wins.video_ids.tolist(), wins.timestamps.tolist())) == expected
    assert len(wins) == len(expected)
    rng = np.random.default_rng(l)
    for idx in (np.arange(len(wins)), rng.permutation(len(wins))[:7], [3, 3, 0], []):
        batch = wins.batch(np.asarray(idx, dtype=np.int64))
        _assert_batch_matches(store_path, source, wins, list(idx), batch, l, pad)
    assert (store.labels is not None) == (source == "gt") == (batch.labels is not None)


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("l, pad", [(0, "edge"), (2, "edge"), (3, "zero")])
def test_context_store_fills_the_context_slots(store_path, lazy, l, pad):
    """gt centre persons, det persons in every other slot (train-head --context-boxes det)."""
    gt = FeatureStore(store_path, box_source="gt", lazy=lazy)
    det = FeatureStore(store_path, box_source="det", lazy=lazy)
    wins = ContextWindows(gt, l, pad=pad, context_store=det)
    assert len(wins) == len(ContextWindows(gt, l))        # indexed by the centre's persons
    for idx in (np.arange(len(wins)), [4, 4, 1], []):
        batch = wins.batch(np.asarray(idx, dtype=np.int64))
        _assert_batch_matches(store_path, "gt", wins, list(idx), batch, l, pad, "det")
    if l:   # and it is not the plain gt window
        full = np.arange(len(wins))
        assert wins.batch(full).ctx_feats.shape != ContextWindows(gt, l, pad=pad).batch(
            full).ctx_feats.shape


def test_context_store_of_another_store_is_refused(store_path, tmp_path):
    other = tmp_path / "o.h5"
    with StoreWriter(other, feature_dim=C, label_map=LM) as w:
        w.add_video("v-ava", **random_video(np.random.default_rng(1), C, K, 3))
    with pytest.raises(ValueError, match="keyframes differ"):
        ContextWindows(FeatureStore(store_path), 1, context_store=FeatureStore(other, "det"))


def test_store_attributes(store_path):
    gt = FeatureStore(store_path)
    det = FeatureStore(store_path, box_source="det", lazy=True)
    assert gt.video_ids == ["v-ava", "v-ava2", "v-empty", "v-gap", "v-single", "v-step2"]
    assert gt.feature_dim == C and gt.label_map == LM and gt.sources == ("gt", "det")
    assert gt.has_labels and not det.has_labels
    assert gt.fingerprint == det.fingerprint and len(gt.fingerprint) == 16
    assert gt.num_keyframes == 10 + 10 + 5 + 8 + 1 + 6
    assert gt.clip.dtype == np.float16 and det.clip is None and det.feats is None
    np.testing.assert_array_equal(det.clip_rows([5, 0, 5]), gt.clip[[5, 0, 5]])
    assert "6 videos" in repr(gt)
    wins = ContextWindows(gt, 1)
    assert wins.steps["v-step2"] == 2 and wins.steps["v-ava"] == 1


def test_fingerprint_tracks_content_not_location(store_path, tmp_path):
    copy = tmp_path / "copy.h5"
    copy.write_bytes(store_path.read_bytes())
    fp = FeatureStore(store_path).fingerprint
    assert FeatureStore(copy).fingerprint == fp
    with StoreWriter(copy, feature_dim=C, label_map=LM) as w:
        w.add_video("v-ava", **random_video(np.random.default_rng(9), C, K, 10), overwrite=True)
    assert FeatureStore(copy).fingerprint != fp
    with StoreWriter(copy, feature_dim=C, label_map=LM, configs={"extract": {"x": 1}}):
        pass
    assert FeatureStore(copy).fingerprint not in (fp, FeatureStore(store_path).fingerprint)


def test_batch_of_gaps_and_edges_by_hand(store_path):
    """v-gap has timestamps 902 903 904 | 907 908 909 910 | 920; check one window exactly."""
    store = FeatureStore(store_path)
    wins = ContextWindows(store, 2)
    keys = list(zip(wins.video_ids.tolist(), wins.timestamps.tolist()))
    for t, mask in [(907, [False, False, True, True, True]), (904, [True, True, True, False, False]),
                    (920, [False, False, True, False, False])]:
        if ("v-gap", t) in keys:
            b = wins.batch([keys.index(("v-gap", t))])
            assert b.window_mask[0].tolist() == mask


def _read_in_child(store):
    wins = ContextWindows(store, 1)
    b = wins.batch(np.arange(len(wins)))
    return os.getpid(), float(b.ctx_feats.sum()), float(b.clip.sum())


def test_lazy_store_is_fork_and_pickle_safe(store_path):
    store = FeatureStore(store_path, lazy=True)
    assert store._h5 is None                      # nothing open after construction
    parent = _read_in_child(store)
    assert store._h5 is not None and store._pid == os.getpid()
    clone = pickle.loads(pickle.dumps(store))
    assert clone._h5 is None and clone._ds == {}
    assert _read_in_child(clone)[1:] == parent[1:]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:                     # the open parent handle is inherited...
        results = pool.map(_read_in_child, [store, store])
    for pid, *sums in results:                    # ...but each child opened its own
        assert pid != os.getpid() and sums == list(parent[1:])
    store.close()


def _report_handle(store, queue):
    _read_in_child(store)
    queue.put((store._pid == os.getpid(), id(store._h5)))


def test_lazy_store_inherited_by_fork_opens_own_handle(store_path):
    # a forked DataLoader worker inherits the store object itself (no pickling): its
    # cached datasets belong to the parent's handle and must not be used there
    store = FeatureStore(store_path, lazy=True)
    _read_in_child(store)                         # parent: handle open, datasets cached
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_report_handle, args=(store, queue))
    proc.start()
    own_pid, handle = queue.get(timeout=60)
    proc.join(60)
    assert own_pid and handle != id(store._h5)
    store.close()


def test_dataloader_workers(store_path):
    store = FeatureStore(store_path, lazy=True)
    wins = ContextWindows(store, 1)

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return wins.batch([i, i + 1])

    loader = torch.utils.data.DataLoader(DS(), batch_size=None, num_workers=2)
    got = [b.ctx_feats.sum().item() for b in loader]
    want = [wins.batch([i, i + 1]).ctx_feats.sum().item() for i in range(3)]
    assert got == want


def test_to_device_and_bad_args(store_path):
    wins = ContextWindows(FeatureStore(store_path), 1)
    b = wins.batch([0, 1]).to("cpu")
    assert b.clip.device.type == "cpu" and b.video_ids == wins.video_ids[:2].tolist()
    with pytest.raises(IndexError):
        wins.batch([len(wins)])
    with pytest.raises(ValueError):
        ContextWindows(wins.store, -1)
    with pytest.raises(ValueError):
        ContextWindows(wins.store, 1, pad="mirror")
    with pytest.raises(ValueError):
        FeatureStore(store_path, box_source="pred")
    batches = list(wins.iter_batches(4, shuffle=True, seed=1))
    assert sum(len(x.video_ids) for x in batches) == len(wins)


def test_incomplete_video_skipped_and_bad_file(store_path, tmp_path):
    path = tmp_path / "s.h5"
    path.write_bytes(store_path.read_bytes())
    with h5py.File(path, "a") as f:
        del f["videos/v-ava"].attrs["complete"]
    assert "v-ava" not in FeatureStore(path).video_ids
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(StoreError, match="bad.h5"):
        FeatureStore(bad)


def test_hand_written_store(tmp_path):
    from test_store import write_by_hand   # the store built from docs/store.md alone

    store = FeatureStore(write_by_hand(tmp_path / "hand.h5"))
    wins = ContextWindows(store, 1)
    assert store.fingerprint and len(wins) == 3
    b = wins.batch(np.arange(3))
    assert b.feats.shape == (4, 16) and b.labels.shape == (4, 5)
    with h5py.File(tmp_path / "hand.h5", "r") as f:
        want = f["videos/hand/gt/feats"][()].astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(b.feats.numpy(), want)


def test_missing_dataset_is_a_store_error(store_path, tmp_path):
    path = tmp_path / "s.h5"
    path.write_bytes(store_path.read_bytes())
    with h5py.File(path, "a") as f:
        del f["videos/v-gap/clip"]
    with pytest.raises(StoreError, match="videos/v-gap/clip: missing"):
        FeatureStore(path)
    path.write_bytes(store_path.read_bytes())
    with h5py.File(path, "a") as f:           # a person dataset: a StoreError, no KeyError
        del f["videos/v-gap/gt/scores"]
    with pytest.raises(StoreError, match="videos/v-gap/gt/scores: missing"):
        FeatureStore(path)


@pytest.mark.parametrize("lazy", [False, True])
def test_streams_select_and_concatenate_the_named_slices(tmp_path, lazy):
    from hgrnn.data.windows import MissingStreamError

    path = tmp_path / "two.h5"
    rng = np.random.default_rng(3)
    with StoreWriter(path, feature_dim=12, label_map=LM,
                     streams=[("rgb", 0, 8), ("flow", 8, 12)]) as w:
        for vid in ("a", "b"):
            w.add_video(vid, **random_video(rng, 12, K, 6, counts=[0, 1, 3, 2, 0, 4]))
    with h5py.File(path, "r") as f:                       # the reference: plain h5py slices
        clip = np.concatenate([f[f"videos/{v}/clip"][()] for v in ("a", "b")])
        feats = np.concatenate([f[f"videos/{v}/gt/feats"][()] for v in ("a", "b")])
    span = {"rgb": np.arange(0, 8), "flow": np.arange(8, 12)}
    for wanted in [("rgb",), ("flow",), ("rgb", "flow"), ("flow", "rgb"), None]:
        fs = FeatureStore(path, lazy=lazy, streams=wanted)
        cols = np.concatenate([span[s] for s in (wanted or ("rgb", "flow"))])
        assert fs.feature_dim == len(cols) and fs.store_feature_dim == 12
        assert fs.selected_streams == (wanted or ("rgb", "flow"))
        np.testing.assert_array_equal(fs.clip_rows(np.arange(12)), clip[:, cols])
        np.testing.assert_array_equal(fs.feat_rows(np.arange(len(feats))), feats[:, cols])
        batch = ContextWindows(fs, l=1).batch([0, 1, 2])
        assert batch.clip.shape[-1] == batch.feats.shape[-1] == len(cols)
    with pytest.raises(MissingStreamError, match="two.h5: no 'depth' feature stream "
                                                 r"\(the store has rgb\+flow\)"):
        FeatureStore(path, lazy=lazy, streams=("rgb", "depth"))
