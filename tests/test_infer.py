"""evaluate_store / class_nms on tiny stores written with the real StoreWriter."""

import json

import numpy as np
import pytest
import torch

from hgrnn.data.ava import LabelMap, read_results
from hgrnn.data.windows import ContextWindows, FeatureStore
from hgrnn.hgrnn_head.checkpoint import HeadError, load_checkpoint, model_from_checkpoint
from hgrnn.hgrnn_head.infer import class_nms, evaluate_store, predict_store, store_ground_truth
from hgrnn.hgrnn_head.model import HeadConfig
from hgrnn.hgrnn_head.train import TrainConfig, train_head
from test_train import LABELS, make_store  # noqa: E402  (tests/ is on sys.path under pytest)



@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A store (2 videos, some keyframes without persons) and a head fitted to it."""
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("infer")
    store = make_store(d / "s.h5", videos=2, keyframes=10, seed=1)
    out = train_head(store, d / "run", HeadConfig(context=1, scene_hidden=8, graph_hidden=16),
                     TrainConfig(steps=200, batch_size=10, lr=1e-2, device="cpu", val_every=0,
                                 checkpoint_every=200), val_store=store, progress=False)
    return store, out


# ---- NMS ----------------------------------------------------------------------------------

def iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def slow_nms(boxes, scores, keyframe, thr):
    """Greedy NMS, one keyframe and one class at a time."""
    P, K = scores.shape
    keep = np.zeros((P, K), bool)
    for kf in set(keyframe.tolist()):
        people = [i for i in range(P) if keyframe[i] == kf]
        for k in range(K):
            kept = []
            for i in sorted(people, key=lambda i: -scores[i, k]):
                if all(iou(boxes[i], boxes[j]) <= thr for j in kept):
                    kept.append(i)
            keep[kept, k] = True
    return keep


@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_class_nms_matches_slow_reference(thr):
    g = torch.Generator().manual_seed(0)
    P, K = 120, 25  # crowded keyframes: some of them span several batched_nms chunks
    keyframe = torch.randint(0, 9, (P,), generator=g)  # persons of a keyframe not contiguous
    xy = torch.rand(P, 2, generator=g) * 0.3
    boxes = torch.cat([xy, xy + 0.3 + torch.rand(P, 2, generator=g) * 0.2], 1)
    scores = torch.rand(P, K, generator=g)
    keep = class_nms(boxes, scores, keyframe, thr)
    expected = slow_nms(boxes.numpy(), scores.numpy(), keyframe.numpy(), thr)
    assert np.array_equal(keep.numpy(), expected)
    assert 0 < (~expected).sum() < expected.size  # the case suppresses some, not all


def test_class_nms_off_and_isolated_boxes():
    boxes = torch.tensor([[0, 0, 0.5, 0.5], [0, 0, 0.5, 0.5], [0.6, 0.6, 1, 1]])
    scores = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.5, 0.5]])
    assert class_nms(boxes, scores, torch.tensor([0, 0, 0]), 1.0).all()
    keep = class_nms(boxes, scores, torch.tensor([0, 0, 0]), 0.5)
    assert keep.tolist() == [[True, False], [False, True], [True, True]]
    # the same boxes in different keyframes never suppress each other
    assert class_nms(boxes, scores, torch.tensor([0, 1, 2]), 0.5).all()


def torchvision_class_nms(boxes, scores, keyframe, iou):
    """Slow reference: torchvision's nms on each (keyframe, class) group alone."""
    from torchvision.ops import nms

    P, K = scores.shape
    keep = torch.zeros(P, K, dtype=torch.bool)
    for kf in keyframe.unique():
        people = (keyframe == kf).nonzero().flatten()
        for c in range(K):
            keep[people[nms(boxes[people], scores[people, c], iou)], c] = True
    return keep


@pytest.mark.parametrize("case", ["random", "near-duplicates", "ties", "nan", "crowded",
                                  "float64", "pixels", "degenerate"])
def test_class_nms_is_torchvision_nms_per_keyframe_and_class(case):
    """The same kept (box, class) pairs as torchvision's nms on each (keyframe, class)
    alone: near-duplicate boxes (IoUs close to the threshold) at keyframe numbers up to
    ~500 (where earlier versions' batched_nms rounded shifted boxes), equal scores (kept in
    person order), NaN scores, crowded keyframes, float64 inputs, pixel coordinates and
    zero-area boxes."""
    pytest.importorskip("torchvision")
    g = torch.Generator().manual_seed(sum(map(ord, case)))
    for trial in range(12):
        P = int(torch.randint(2, 120, (1,), generator=g))
        K = int(torch.randint(1, 70, (1,), generator=g))
        frames = 2 if case == "crowded" else int(torch.randint(1, 40, (1,), generator=g))
        keyframe = torch.randint(0, frames, (P,), generator=g) * 13  # up to keyframe ~500
        xy = torch.rand(P, 2, generator=g) * 0.5
        if case != "random":  # clusters of near-duplicates: IoUs close to the threshold
            xy = xy[torch.randint(0, max(1, P // 5), (P,), generator=g)]
            xy = xy + torch.randn(P, 2, generator=g) * 0.01
        wh = 0.05 + torch.rand(P, 2, generator=g) * 0.4
        if case == "degenerate":
            wh[torch.rand(P, generator=g) < 0.3] = 0
        boxes = torch.cat([xy, xy + wh], 1)
        scores = torch.rand(P, K, generator=g)
        if case in ("ties", "nan"):
            scores = (scores * 3).floor() / 3
        if case == "nan":
            scores[torch.rand(P, K, generator=g) < 0.05] = float("nan")
        if case == "float64":
            boxes, scores = boxes.double(), scores.double()
        if case == "pixels":
            boxes = boxes * 640
        thr = 0.5 if trial % 2 else float(torch.rand(1, generator=g)) * 0.8 + 0.1
        expected = torchvision_class_nms(boxes, scores, keyframe, thr)
        assert torch.equal(class_nms(boxes, scores, keyframe, thr), expected), (trial, thr)


@pytest.mark.parametrize("budget", [1, 3000])
def test_class_nms_in_slices_of_keyframes(monkeypatch, budget):
    """Crowded keyframes are processed in slices (bounded memory): the same decisions."""
    import hgrnn.hgrnn_head.infer as infer

    g = torch.Generator().manual_seed(budget)
    P, K = 300, 40
    keyframe = torch.randint(0, 12, (P,), generator=g)
    xy = torch.rand(P // 6, 2, generator=g)[torch.randint(0, P // 6, (P,), generator=g)]
    xy = xy * 0.5 + torch.randn(P, 2, generator=g) * 0.01
    boxes = torch.cat([xy, xy + 0.3], 1)
    scores = (torch.rand(P, K, generator=g) * 5).floor() / 5
    whole = class_nms(boxes, scores, keyframe, 0.5)
    monkeypatch.setattr(infer, "_GREEDY_ELEMENTS", budget)
    assert torch.equal(class_nms(boxes, scores, keyframe, 0.5), whole)
    assert 0 < (~whole).sum()


def test_predict_imports_no_torchvision(trained):
    """NMS needs no torchvision (its import is ~1 s and 0.16 GiB)."""
    import subprocess
    import sys

    store, out = trained
    code = ("import sys, torch; from hgrnn.data.windows import FeatureStore; "
            "from hgrnn.hgrnn_head.checkpoint import load_checkpoint, model_from_checkpoint; "
            "from hgrnn.hgrnn_head.infer import predict_store; "
            f"fs = FeatureStore({str(store)!r}, box_source='det'); "
            f"m = model_from_checkpoint(load_checkpoint({str(out['checkpoint'])!r}), 'cpu'); "
            "rows = predict_store(m, fs); assert len(rows); "
            "print('torchvision' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# ---- evaluate_store -----------------------------------------------------------------------

def test_eval_writes_results_metrics_and_chart(trained, tmp_path):
    store, run = trained
    result = evaluate_store(store, run["checkpoint"], out_dir=tmp_path / "ev", progress=False)
    report = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert report["mAP"] == pytest.approx(result.mAP)
    assert list(report["per_class"]) == list(LABELS.names)
    assert report["configs"]["eval"]["boxes"] == "det"
    assert report["configs"]["head"]["graph_hidden"] == 16
    assert (tmp_path / "ev" / "per_class_ap.png").stat().st_size > 1000
    rows = read_results(tmp_path / "ev" / "results.csv")
    assert len(rows) == report["configs"]["eval"]["result_rows"] > 0
    assert rows.timestamps.dtype == np.int64 and set(rows.video_ids) <= {"vid0", "vid1"}
    assert set(rows.action_ids) <= set(LABELS.ids)


def test_eval_frees_the_model_and_the_stores_before_evaluating(trained, monkeypatch):
    """The model and both stores (det features, gt persons) are gone when the rows are
    evaluated: evaluating is the memory peak of `hgrnn eval`."""
    import weakref

    import hgrnn.hgrnn_head.infer as infer

    store, run = trained
    made, alive_at_evaluate = [], []

    def tracked(fn):
        def wrapper(*args, **kwargs):
            out = fn(*args, **kwargs)
            made.append(weakref.ref(out))
            return out
        return wrapper

    def evaluate(*args, **kwargs):
        alive_at_evaluate.extend(ref() is not None for ref in made)
        return real_evaluate(*args, **kwargs)

    real_evaluate = infer.evaluate
    monkeypatch.setattr(infer, "model_from_checkpoint", tracked(infer.model_from_checkpoint))
    monkeypatch.setattr(infer, "open_store", tracked(infer.open_store))
    monkeypatch.setattr(infer, "evaluate", evaluate)
    assert evaluate_store(store, run["checkpoint"], progress=False).mAP > 0
    assert alive_at_evaluate == [False, False, False]  # model, det store, gt store


def test_results_csv_is_written_when_evaluating_fails(trained, tmp_path, monkeypatch):
    """The rows are evaluated before results.csv is written (evaluating is the memory
    peak); an evaluation that raises still leaves results.csv, as writing first did."""
    import hgrnn.hgrnn_head.infer as infer

    store, run = trained

    def failing(*args, **kwargs):
        raise ValueError("no evaluation today")

    monkeypatch.setattr(infer, "evaluate", failing)
    with pytest.raises(ValueError, match="no evaluation today"):
        evaluate_store(store, run["checkpoint"], out_dir=tmp_path / "ev", progress=False)
    assert len(read_results(tmp_path / "ev" / "results.csv")) > 0
    assert not (tmp_path / "ev" / "metrics.json").exists()


def test_gt_boxes_scores_are_model_probabilities(trained):
    store, run = trained
    fs = FeatureStore(store, "gt")
    model = model_from_checkpoint(load_checkpoint(run["checkpoint"]))
    rows = predict_store(model, fs, nms_iou=1.0)  # no NMS: every person x class
    windows = ContextWindows(fs, l=1)
    batch = windows.batch(np.arange(len(windows)))
    probs = model.predict(batch)  # (P, K); gt confidence is 1
    assert len(rows) == probs.numel()
    np.testing.assert_allclose(rows.scores, probs.flatten().numpy(), rtol=1e-6)
    np.testing.assert_array_equal(rows.action_ids, np.tile(LABELS.ids, len(probs)))
    # keyframes with no persons produce no rows; every keyframe with persons does
    counts = np.diff(fs.person_offsets)
    assert (counts == 0).any()
    with_persons = {(fs.video_ids[fs.kf_video[g]], int(fs.kf_time[g])) for g in np.nonzero(counts)[0]}
    assert set(zip(rows.video_ids.tolist(), rows.timestamps.tolist())) == with_persons


def test_detection_confidence_multiplies_scores(trained):
    store, run = trained
    fs = FeatureStore(store, "det")
    model = model_from_checkpoint(load_checkpoint(run["checkpoint"]))
    rows = predict_store(model, fs, nms_iou=1.0)
    windows = ContextWindows(fs, l=1)
    batch = windows.batch(np.arange(len(windows)))
    expected = model.predict(batch) * batch.scores[:, None]
    assert not torch.all(batch.scores == 1)
    np.testing.assert_allclose(rows.scores, expected.flatten().numpy(), rtol=1e-6)


def test_gt_boxes_fit_well_and_val_matches(trained, tmp_path):
    store, run = trained
    result = evaluate_store(store, run["checkpoint"], gt_boxes=True, progress=False)
    assert result.mAP > 0.9  # the head fitted the tiny store
    assert run["val"]["mAP"] == pytest.approx(result.mAP)  # training's validation = eval --gt-boxes
    metrics = [json.loads(x) for x in open(run["checkpoint"].replace("last.pt", "metrics.jsonl"))]
    assert metrics[-1]["val_mAP"] == pytest.approx(result.mAP)


def test_no_nms_on_gt_boxes_unless_asked(trained, tmp_path):
    """Two ground-truth persons whose boxes overlap (IoU 0.9) are two true positives: eval
    --gt-boxes keeps every person x class row; NMS only when asked, recorded in metrics.json."""
    from hgrnn.data.store import PersonSet, StoreWriter
    from test_train import C

    _, run = trained
    rng = np.random.default_rng(0)
    path = tmp_path / "close.h5"
    boxes = np.array([[0.1, 0.1, 0.5, 0.9], [0.12, 0.1, 0.52, 0.9]], np.float32)
    with StoreWriter(path, feature_dim=C, label_map=LABELS) as w:
        T = 4
        gt = PersonSet(offsets=np.arange(0, 2 * T + 1, 2, dtype=np.int64),
                       boxes=np.tile(boxes, (T, 1)),
                       feats=rng.standard_normal((2 * T, C)).astype(np.float32),
                       scores=np.ones(2 * T, np.float32),
                       labels=np.tile([[1, 0, 1], [1, 1, 0]], (T, 1)).astype(np.uint8),
                       person_ids=np.tile([0, 1], T).astype(np.int32))
        w.add_video("close", 902 + np.arange(T), rng.standard_normal((T, C)).astype(np.float32),
                    gt=gt, det=gt)
    runs = {}
    for name, kw in [("gt", dict(gt_boxes=True)), ("gt_nms", dict(gt_boxes=True, nms=True)),
                     ("det", dict()), ("det_no", dict(nms=False))]:
        evaluate_store(path, run["checkpoint"], out_dir=tmp_path / name, progress=False, **kw)
        runs[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    every = 2 * T * len(LABELS)
    e = {n: r["configs"]["eval"] for n, r in runs.items()}
    assert (e["gt"]["nms"], e["gt"]["nms_iou"], e["gt"]["result_rows"]) == (False, None, every)
    # both persons "stand": both are true positives, NMS throws one away
    assert runs["gt"]["per_class"]["stand"] == pytest.approx(1.0)
    assert runs["gt_nms"]["per_class"]["stand"] == pytest.approx(0.5)
    assert e["gt_nms"]["nms"] is True and e["gt_nms"]["result_rows"] == every // 2
    assert (e["det"]["nms"], e["det"]["nms_iou"]) == (True, 0.5)
    assert e["det"]["result_rows"] == every // 2 and e["det_no"]["result_rows"] == every


def test_gt_csv_equals_store_ground_truth(trained, tmp_path):
    store, run = trained
    gt = store_ground_truth(FeatureStore(store, "gt", lazy=True))
    path = tmp_path / "gt.csv"
    with open(path, "w") as f:
        for v, t, b, a, p in zip(gt.video_ids, gt.timestamps, gt.boxes, gt.action_ids, gt.person_ids):
            f.write(f"{v},{t:04d},{b[0]:.6f},{b[1]:.6f},{b[2]:.6f},{b[3]:.6f},{a},{p}\n")
    a = evaluate_store(store, run["checkpoint"], progress=False)
    b = evaluate_store(store, run["checkpoint"], gt_csv=path, progress=False)
    assert a.mAP == pytest.approx(b.mAP, abs=1e-6)
    excluded = {(v, int(t)) for v, t in zip(gt.video_ids[:5], gt.timestamps[:5])}
    c = evaluate_store(store, run["checkpoint"], exclusions=excluded, progress=False)
    assert c.counts != a.counts


def test_eval_errors(trained, tmp_path):
    store, run = trained
    other = make_store(tmp_path / "other.h5", labels=LabelMap((1, 3, 6), ("stand", "sit", "x")))
    with pytest.raises(HeadError, match="other.h5.*label map differs"):
        evaluate_store(other, run["checkpoint"], progress=False)
    wide = make_store(tmp_path / "wide.h5", C=12)
    with pytest.raises(HeadError, match="wide.h5: feature dim 12"):
        evaluate_store(wide, run["checkpoint"], progress=False)
    no_det = make_store(tmp_path / "nodet.h5", det=False)
    with pytest.raises(HeadError, match="no 'det' boxes.*--gt-boxes"):
        evaluate_store(no_det, run["checkpoint"], progress=False)
    with pytest.raises(HeadError, match="no such checkpoint"):
        evaluate_store(store, tmp_path / "nope.pt", progress=False)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(HeadError, match="junk.pt: not a readable checkpoint"):
        evaluate_store(store, tmp_path / "junk.pt", progress=False)


# ---- CLI ----------------------------------------------------------------------------------

def test_cli_defaults_are_the_dataclass_defaults():
    from hgrnn.cli import main

    def defaults(cmd):
        return {p.name: p.default for p in main.commands[cmd].params}

    d = defaults("train-head")
    head, train = HeadConfig(), TrainConfig()
    assert d["variant"] == head.variant
    for name in ("context", "iterations", "scene_hidden", "graph_hidden", "h0", "empty_pool",
                 "window_pad", "dropout", "graph_pool"):
        assert d[name] == getattr(head, name), name
    for name in ("steps", "batch_size", "lr", "focal_gamma", "focal_alpha", "seed", "device",
                 "val_every", "box_source", "checkpoint_every", "log_every", "num_workers",
                 "num_threads", "context_boxes"):
        assert d[name] == getattr(train, name), name
    import inspect

    from hgrnn.hgrnn_head.infer import DEFAULT_NMS_IOU
    e = defaults("eval")
    kw = inspect.signature(evaluate_store).parameters
    assert e["nms_iou"] == DEFAULT_NMS_IOU == kw["nms_iou"].default
    for name in ("min_score", "num_threads", "protocol", "device", "nms"):
        assert e[name] == kw[name].default, name


def test_cli_train_then_eval(tmp_path):
    from click.testing import CliRunner

    from hgrnn.cli import main

    store = make_store(tmp_path / "s.h5")
    runner = CliRunner()
    r = runner.invoke(main, ["train-head", "--store", store, "--out", str(tmp_path / "run"),
                             "--model", "graph", "--steps", "4", "--batch-size", "5",
                             "--device", "cpu", "--val-store", store, "--threads", "1", "-q"])
    assert r.exit_code == 0, r.output
    assert "trained 4 steps" in r.output and "validation frame-mAP" in r.output
    r = runner.invoke(main, ["eval", "--store", store, "--checkpoint", str(tmp_path / "run"),
                             "--gt-boxes", "--out", str(tmp_path / "ev"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "stand" in r.output and "mAP (ava-2018" in r.output
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["configs"]["head"]["variant"] == "graph"
    # errors are one clean line, not a traceback
    r = runner.invoke(main, ["train-head", "--store", store, "--out", str(tmp_path / "run"),
                             "--steps", "4", "-q"])
    assert r.exit_code == 1 and "Error: " in r.output and "already holds a run" in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_gt_csv_without_common_keyframes_is_an_error(trained, tmp_path):
    store, run = trained
    path = tmp_path / "other.csv"
    aid = FeatureStore(store, "gt", lazy=True).label_map.ids[0]
    path.write_text(f"someothervideo,0902,0.1,0.1,0.5,0.5,{aid},0\n")
    with pytest.raises(ValueError, match="no keyframe in common"):
        evaluate_store(store, run["checkpoint"], gt_csv=path, progress=False)
