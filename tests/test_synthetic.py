"""The synthetic benchmark: its rules hold exactly, its information design holds statistically,
and it writes a normal store that resumes."""

import json

import numpy as np
import pytest
import torch

from hgrnn.data import synthetic as S
from hgrnn.data.synthetic import SynthConfig, generate_video, write_synthetic_store


def small(**kw):
    base = dict(videos=3, keyframes=20, seed=0)
    base.update(kw)
    return SynthConfig(**base)


@pytest.fixture(scope="module")
def videos():
    cfg = SynthConfig(videos=24, keyframes=40, seed=5)
    return [generate_video(cfg, i) for i in range(cfg.videos)]


def keyframes(v):
    for t in range(len(v.timestamps)):
        yield t, slice(v.gt_offsets[t], v.gt_offsets[t + 1])


# ------------------------------------------------------------------ rules, checked exactly

def test_deterministic_and_seeded():
    a, b = generate_video(small(), 1), generate_video(small(), 1)
    for field in ("clip", "gt_feats", "gt_labels", "gt_boxes", "det_boxes", "det_scores"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    c = generate_video(small(seed=1), 1)
    assert not np.array_equal(a.clip, c.clip)
    assert a.video_id != c.video_id


def test_shapes_and_person_counts(videos):
    C, K = 64, len(S.CLASS_NAMES)
    counts = np.concatenate([np.diff(v.gt_offsets) for v in videos])
    assert counts.min() >= 1 and counts.max() <= 12
    assert 0.25 < np.mean(counts == 1) < 0.4 and np.mean(counts <= 4) > 0.75   # AVA-like
    assert counts.max() >= 8                                                    # a tail
    for v in videos:
        T, N = len(v.timestamps), v.gt_offsets[-1]
        assert v.clip.shape == (T, C) and v.gt_feats.shape == (N, C)
        assert v.gt_labels.shape == (N, K) and v.gt_labels.dtype == np.uint8
        assert v.det_feats.shape == (v.det_offsets[-1], C) == (len(v.det_scores), C)
        assert np.all(np.diff(v.timestamps) == 1) and v.timestamps[0] == 902


def test_boxes_plausible(videos):
    for v in videos:
        for boxes in (v.gt_boxes, v.det_boxes):
            assert np.all(boxes >= 0) and np.all(boxes <= 1)
            assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
        for t, rows in keyframes(v):
            b = v.gt_boxes[rows]
            for i in range(len(b)):
                for j in range(i):
                    assert S._iou_one(b[i], b[j:j + 1])[0] <= 0.3 + 1e-6


def test_person_class_rules(videos):
    for v in videos:
        y = v.gt_labels
        assert np.all(y[:, [S.STAND, S.SIT, S.WALK]].sum(1) == 1)    # exclusive poses
        for t, rows in keyframes(v):
            st = v.causes["scene_type"][t]
            if st == S.VEHICLE:   # the paper's drive example: all sit, exactly one drives
                assert y[rows, S.SIT].all() and y[rows, S.DRIVE].sum() == 1
            else:
                assert y[rows, S.DRIVE].sum() == 0
            if st != S.ROOM:
                assert y[rows, S.DANCE].sum() == 0
            assert y[rows, S.TALK].sum() <= 1 and y[rows, S.DANCE].sum() <= 1


def test_relational_labels_match_slow_reference(videos):
    for v in videos:
        for t, rows in keyframes(v):
            g, talk, dance = (v.causes[k][rows] for k in ("group", "talk", "dance"))
            y = v.gt_labels[rows]
            n = len(g)
            assert n < 2 or len(set(g.tolist())) == 2        # two groups when >= 2 persons
            for i in range(n):
                listen = any(talk[j] and g[j] == g[i] for j in range(n) if j != i) and not talk[i]
                watch = any(dance[j] and g[j] == g[i] for j in range(n) if j != i) and not dance[i]
                assert y[i, S.LISTEN] == listen and y[i, S.WATCH] == watch
            assert np.array_equal(y[:, S.TALK].astype(bool), talk)


def test_temporal_labels_are_the_direction(videos):
    steps = []
    for v in videos:
        for t, rows in keyframes(v):
            y = v.gt_labels[rows]
            assert np.all(y[:, S.OPEN] == (v.causes["door_dir"][t] > 0))
            assert np.all(y[:, S.CLOSE] == (v.causes["door_dir"][t] < 0))
            assert np.all(y[:, S.PUSH] == (v.causes["object_dir"][t] > 0))
            assert np.all(y[:, S.PULL] == (v.causes["object_dir"][t] < 0))
        # moving segments change by exactly LEVEL_STEP per keyframe
        d, lev = v.causes["door_dir"], v.causes["door_level"]
        same = (d[1:] == d[:-1]) & (d[1:] != 0)
        steps.append(np.diff(lev)[same] * d[1:][same])
    steps = np.concatenate(steps)
    assert len(steps) > 100 and np.mean(np.isclose(steps, S.LEVEL_STEP)) > 0.7  # rest: cuts


def test_level_marginal_does_not_reveal_direction():
    """A single keyframe's level has the same distribution for every direction."""
    rng = np.random.default_rng(0)
    scene = np.full(200_000, S.ROOM)
    shots = S._segments(rng, len(scene), 10, 30)
    level, direction = S.drifting_state(rng, scene, (S.ROOM,), shots)
    for d in (-1, 0, 1):
        x = level[direction == d]
        assert len(x) > 40_000
        assert abs(x.mean()) < 0.03 and abs(x.std() - level.std()) < 0.03
        assert abs(np.mean(np.abs(x) > 1.5) - np.mean(np.abs(level) > 1.5)) < 0.01


def test_detections(videos):
    ious, fps, misses, persons = [], 0, 0, 0
    for v in videos:
        m = v.causes["det_match"]
        fp = m < 0
        fps += fp.sum()
        persons += len(v.gt_boxes)
        misses += len(v.gt_boxes) - len(set(m[~fp].tolist()))
        ious += [S._iou_one(v.det_boxes[k], v.gt_boxes[m[k]:m[k] + 1])[0]
                 for k in np.flatnonzero(~fp)]
        # false positives: background-like, no person-ness dim; lower confidences on average
        pdim = int(S.PERSON_REPS[:7].sum())
        assert abs(v.det_feats[fp, pdim].mean() if fp.any() else 0) < 1.0
        assert np.all(v.det_feats[~fp, pdim] > -3)
    ious = np.array(ious)
    assert 0.05 < misses / persons < 0.15 and fps > 0
    assert np.mean(ious >= 0.5) > 0.9 and np.mean(ious < 0.5) > 0.01   # some mislocated


# ------------------------------------------------------------ information design (probes)

def _fit_probe(X, Y, Xv, Yv, steps=200):
    """A small MLP probe (Adam); returns the mean AP over columns on (Xv, Yv)."""
    torch.manual_seed(0)
    X, Y, Xv = (torch.as_tensor(a, dtype=torch.float32) for a in (X, Y, Xv))
    mu, sd = X.mean(0), X.std(0) + 1e-6
    net = torch.nn.Sequential(torch.nn.Linear(X.shape[1], 64), torch.nn.ReLU(),
                              torch.nn.Linear(64, Y.shape[1]))
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(steps):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net((X - mu) / sd), Y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    P = torch.sigmoid(net((Xv - mu) / sd)).detach().numpy()
    return np.mean([_ap(P[:, k], Yv[:, k]) for k in range(Yv.shape[1])])


def _ap(s, y):
    y = y[np.argsort(-s)]
    return float((np.cumsum(y) / np.arange(1, len(y) + 1) * y).sum() / max(y.sum(), 1))


def _probe_data(vids, kind):
    """Probe inputs for `listen to`: own feature, + frame max-pool, or + the pairwise cause."""
    X, Y = [], []
    for v in vids:
        for t, rows in keyframes(v):
            mp = v.gt_feats[rows].max(0)
            g, talk = v.causes["group"][rows], v.causes["talk"][rows]
            for k, i in enumerate(range(rows.start, rows.stop)):
                own = v.gt_feats[i, :S.PERSON_DIMS]
                x = {"own": own, "maxpool": np.concatenate([own, mp[:S.PERSON_DIMS]]),
                     "pairwise": np.concatenate([own, [np.any(talk[g == g[k]])]])}[kind]
                X.append(x)
                Y.append(v.gt_labels[i, [S.LISTEN]])
    return np.array(X), np.array(Y, np.float32)


def test_relational_needs_pairs_not_a_frame_maxpool(videos):
    """own feature < own + frame max-pool (what the scene RNN has) << own + same-group talk."""
    tr, va = videos[:16], videos[16:]
    ap = {k: _fit_probe(*_probe_data(tr, k), *_probe_data(va, k))
          for k in ("own", "maxpool", "pairwise")}
    assert ap["pairwise"] > 0.95, ap
    assert ap["maxpool"] < 0.6 and ap["own"] < 0.35
    assert ap["pairwise"] - ap["maxpool"] > 0.35


def test_temporal_needs_neighbouring_keyframes(videos):
    """One keyframe: its level has the same law for every direction (test above). Neighbours:
    the level difference read from the clip features (level dims averaged) gives the
    direction inside a segment."""
    door = slice(3 * S.PREP, 3 * S.PREP + S.REP)
    agree, still = [], []
    for v in videos:
        d = v.causes["door_dir"]
        est = v.clip[:, door].mean(1) / S.LEVEL_AMP              # (T,) level estimate
        diff = est[2:] - est[:-2]                                 # level(t+1) - level(t-1)
        inside = (d[2:] == d[1:-1]) & (d[:-2] == d[1:-1])         # t-1, t, t+1 in one segment
        moving = inside & (d[1:-1] != 0)
        agree.append(np.sign(diff[moving]) == d[1:-1][moving])
        still.append(np.abs(diff[inside & (d[1:-1] == 0)]))
    agree, still = np.concatenate(agree), np.concatenate(still)
    assert len(agree) > 200 and agree.mean() > 0.9   # the rest: two segments in a row
    assert np.median(still) < 0.5 * S.LEVEL_STEP


# ------------------------------------------------------------------------------ the store

def test_writes_a_normal_store_and_resumes(tmp_path):
    from hgrnn.data.windows import ContextWindows, FeatureStore

    path = tmp_path / "s.h5"
    cfg = small()
    out = write_synthetic_store(path, cfg, progress=False)
    assert out["written"] == 3 and out["reused"] == 0
    fs = FeatureStore(str(path))
    assert sorted(fs.video_ids) == [S.video_id(0, i) for i in range(3)]
    assert fs.feature_dim == 64 and tuple(fs.label_map.names) == S.CLASS_NAMES
    assert {"gt", "det"} <= set(fs.sources)
    entry = fs.configs["synth"]
    entry = json.loads(entry) if isinstance(entry, str) else entry
    assert entry["config"] == cfg.to_dict()
    assert entry["class_groups"]["relational"] == list(S.RELATIONAL_CLASSES)
    assert S.is_complete(path, cfg) and not S.is_complete(path, small(videos=4))

    # what a reader gets back equals what the generator made (float16 features)
    v = generate_video(cfg, 0)
    w = ContextWindows(FeatureStore(str(path), box_source="gt"), l=0)
    first = [k for k in range(len(w)) if w.video_ids[k] == v.video_id
             and w.timestamps[k] == 902][0]
    b = w.batch([first])
    np.testing.assert_allclose(b.feats.numpy(), v.gt_feats[:v.gt_offsets[1]], atol=0.02,
                               rtol=2e-3)
    np.testing.assert_array_equal(b.labels.numpy(), v.gt_labels[:v.gt_offsets[1]])

    # resume: the same config completes, another is refused, --overwrite replaces
    out = write_synthetic_store(path, cfg, progress=False)
    assert out["written"] == 0 and out["reused"] == 3
    with pytest.raises(ValueError, match="s.h5"):
        write_synthetic_store(path, small(seed=9), progress=False)
    out = write_synthetic_store(path, small(seed=9), overwrite=True, progress=False)
    assert out["written"] == 3


def test_resumes_a_store_interrupted_before_its_first_video(tmp_path):
    from hgrnn.data.store import StoreWriter

    path = tmp_path / "s.h5"
    cfg = small()
    with StoreWriter(path, feature_dim=cfg.feature_dim, label_map=S.synth_label_map(),
                     configs={"synth": S.store_config_entry(cfg)}):
        pass                                # killed while the first video was being written
    out = write_synthetic_store(path, cfg, progress=False)
    assert out["written"] == 3 and S.is_complete(path, cfg)


def test_config_errors():
    with pytest.raises(ValueError, match="--feature-dim"):
        SynthConfig(feature_dim=8)
    with pytest.raises(ValueError, match="--det-miss"):
        SynthConfig(det_miss=1.5)


def test_group_aps():
    per_class = {n: 0.5 for n in S.CLASS_NAMES}
    per_class[S.RELATIONAL_CLASSES[0]] = None
    per_class[S.RELATIONAL_CLASSES[1]] = 0.9
    g = S.group_aps(per_class, S.CLASS_GROUPS)
    assert g["relational"] == pytest.approx(0.9) and g["person"] == pytest.approx(0.5)
    assert g["all"] == pytest.approx((0.5 * 11 + 0.9) / 12)


# --------------------------------------------------------------- the flow stream (motion)

def test_flow_stream_adds_motion_only_flow_reveals_and_keeps_the_rgb_part():
    rgb_cfg, two_cfg = small(videos=6, keyframes=40), small(videos=6, keyframes=40,
                                                             streams=("rgb", "flow"))
    C, K = 64, len(S.CLASS_NAMES)
    rgb_feats, flow_feats, motion, labels = [], [], [], []
    for i in range(6):
        a, b = generate_video(rgb_cfg, i), generate_video(two_cfg, i)
        # the RGB part is exactly the RGB-only store's
        np.testing.assert_array_equal(b.clip[:, :C], a.clip)
        np.testing.assert_array_equal(b.gt_feats[:, :C], a.gt_feats)
        np.testing.assert_array_equal(b.det_feats[:, :C], a.det_feats)
        np.testing.assert_array_equal(b.gt_labels[:, :K], a.gt_labels)
        assert b.clip.shape[1] == b.gt_feats.shape[1] == b.det_feats.shape[1] == 2 * C
        m = b.causes["motion"]
        kf = np.repeat(np.arange(len(b.timestamps)), np.diff(b.gt_offsets))
        # rules: at most one motion per person, none in vehicles, labels = the cause
        assert (b.gt_labels[:, K:].sum(1) <= 1).all()
        assert (m[b.causes["scene_type"][kf] == S.VEHICLE] == -1).all()
        np.testing.assert_array_equal(b.gt_labels[:, K:].argmax(1)[m >= 0], m[m >= 0])
        assert (b.gt_labels[m < 0, K:] == 0).all()
        rgb_feats.append(b.gt_feats[:, :C])
        flow_feats.append(b.gt_feats[:, C:])
        motion.append(m)
        labels.append(b.gt_labels[:, K:])
    rgb_feats, flow_feats = np.concatenate(rgb_feats), np.concatenate(flow_feats)
    labels = np.concatenate(labels).astype(float)
    assert 0.15 < labels.sum(1).mean() < 0.35          # motion_prob 0.3 outside vehicles

    def probe_r2(x, y):
        """Held-out R^2 of a least-squares linear probe (with bias) of y from x: fit on the
        first half of the persons, score on the second."""
        x1 = np.concatenate([x, np.ones((len(x), 1))], 1)
        h = len(x) // 2
        w, *_ = np.linalg.lstsq(x1[:h], y[:h], rcond=None)
        return 1 - ((x1[h:] @ w - y[h:]) ** 2).sum() / ((y[h:] - y[:h].mean(0)) ** 2).sum()

    print("held-out R^2: flow", probe_r2(flow_feats, labels), "rgb", probe_r2(rgb_feats, labels))
    assert probe_r2(flow_feats, labels) > 0.35         # the flow stream shows the motion ...
    assert probe_r2(rgb_feats, labels) < 0.05          # ... the RGB stream does not


def _probe_r2(x, y):
    """Held-out R^2 of a least-squares linear probe (with bias) of y from x: fit on the first
    half of the rows, score on the second."""
    x1 = np.concatenate([x, np.ones((len(x), 1))], 1)
    h = len(x) // 2
    w, *_ = np.linalg.lstsq(x1[:h], y[:h], rcond=None)
    return 1 - ((x1[h:] @ w - y[h:]) ** 2).sum() / ((y[h:] - y[:h].mean(0)) ** 2).sum()


def test_flow_stream_sees_walking_and_the_scene_motion_and_nothing_static():
    """What a flow network sees (FLOW_VERSION 2): a walker's motion and, within one keyframe,
    the door's / object's direction of change; not the pose of a still person, the scene type,
    carrying, talking or the group."""
    cfg = small(videos=8, keyframes=50, streams=("rgb", "flow"))
    C = cfg.feature_dim
    person, clip, lab, kf_dir, scene, group = [], [], [], [], [], []
    for i in range(8):
        v = generate_video(cfg, i)
        person.append(v.gt_feats[:, C:])
        lab.append(v.gt_labels[:, :len(S.CLASS_NAMES)].astype(float))
        group.append(np.eye(2)[v.causes["group"]])
        clip.append(v.clip[:, C:])
        kf_dir.append(np.stack([v.causes["door_dir"], v.causes["object_dir"]], 1).astype(float))
        scene.append(np.eye(3)[v.causes["scene_type"]])
    person, lab, group = np.concatenate(person), np.concatenate(lab), np.concatenate(group)
    clip, kf_dir, scene = np.concatenate(clip), np.concatenate(kf_dir), np.concatenate(scene)
    seen = {"walk": _probe_r2(person, lab[:, [S.WALK]]),
            "door/object direction": _probe_r2(clip, kf_dir)}
    unseen = {"sit": _probe_r2(person, lab[:, [S.SIT]]),
              "carry": _probe_r2(person, lab[:, [S.CARRY]]),
              "talk": _probe_r2(person, lab[:, [S.TALK]]),
              "group": _probe_r2(person, group),
              "scene type": _probe_r2(clip, scene)}
    print("held-out R^2 from the flow stream:", seen, unseen)
    assert seen["walk"] > 0.15 and seen["door/object direction"] > 0.5, seen
    assert all(r < 0.05 for r in unseen.values()), unseen
    # an older flow store (FLOW_VERSION 1) is another config: it is neither complete nor reused
    assert cfg.to_dict()["flow_version"] == S.FLOW_VERSION == 2


def test_two_stream_store_names_its_streams_and_motion_group(tmp_path):
    from hgrnn.data.windows import FeatureStore

    path = tmp_path / "two.h5"
    cfg = small(streams=("rgb", "flow"))
    write_synthetic_store(path, cfg, progress=False)
    fs = FeatureStore(str(path))
    assert fs.streams == [("rgb", 0, 64), ("flow", 64, 128)] and fs.feature_dim == 128
    assert tuple(fs.label_map.names) == S.CLASS_NAMES + S.MOTION_CLASSES
    entry = fs.configs["synth"]
    assert entry["class_groups"]["motion"] == list(S.MOTION_CLASSES)
    assert entry["config"]["streams"] == ["rgb", "flow"] and S.is_complete(path, cfg)
    assert FeatureStore(str(path), streams=("rgb",)).feature_dim == 64
    # an RGB config reads as before the flow stream existed (old stores stay complete)
    assert "streams" not in small().to_dict() and "motion_prob" not in small().to_dict()
    with pytest.raises(ValueError, match="streams must be rgb or rgb,flow"):
        small(streams=("flow",))


def test_synth_help_states_the_minimum_feature_dim_the_check_enforces():
    from click.testing import CliRunner

    from hgrnn.cli import main
    from hgrnn.data.synthetic import MIN_FEATURE_DIM

    text = " ".join(CliRunner().invoke(main, ["synth", "--help"]).output.split())
    assert f"at least {MIN_FEATURE_DIM}: the signal's dims" in text
