"""train_head on tiny stores written with the real StoreWriter in tmp_path."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from hgrnn.data.ava import LabelMap
from hgrnn.data.store import PersonSet, StoreWriter
from hgrnn.hgrnn_head import train as train_mod
from hgrnn.hgrnn_head.checkpoint import HeadError, load_checkpoint, model_from_checkpoint
from hgrnn.hgrnn_head.model import HeadConfig, HGRNNHead
from hgrnn.hgrnn_head.train import TrainConfig, train_head

LABELS = LabelMap((1, 3, 5), ("stand", "sit", "talk to"))
C = 8


def person_set(rng, counts, K, labelled, det, C=C):
    """Persons whose class k is on when feature k > 0.3: learnable from x_p alone."""
    N = int(np.sum(counts))
    xy = rng.uniform(0, 0.5, (N, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0.1, 0.5, (N, 2))], 1).astype(np.float32)
    feats = rng.standard_normal((N, C)).astype(np.float32)
    return PersonSet(
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), boxes=boxes,
        feats=feats,
        scores=rng.uniform(0.5, 1, N).astype(np.float32) if det else np.ones(N, np.float32),
        labels=(feats[:, :K] > 0.3).astype(np.uint8) if labelled else None,
        person_ids=np.arange(N, dtype=np.int32) if labelled else None)



def make_store(path, videos=2, keyframes=12, seed=0, gt=True, det=True, labels=LABELS,
               max_persons=3, empty=False, C=C, streams=None):
    rng = np.random.default_rng(seed)
    with StoreWriter(path, feature_dim=C, label_map=labels, streams=streams) as w:
        for v in range(videos):
            counts = np.zeros(keyframes, int) if empty else rng.integers(0, max_persons + 1, keyframes)
            w.add_video(f"vid{v}", 902 + np.arange(keyframes),
                        rng.standard_normal((keyframes, C)).astype(np.float32),
                        gt=person_set(rng, counts, len(labels), True, False, C) if gt else None,
                        det=person_set(rng, np.maximum(counts + rng.integers(-1, 2, keyframes), 0),
                                       len(labels), False, True, C) if det else None)
    return str(path)


SMALL = HeadConfig(context=1, iterations=2, scene_hidden=6, graph_hidden=10)


def quick(**kw):
    base = dict(steps=6, batch_size=4, lr=1e-3, seed=0, device="cpu", checkpoint_every=3,
                log_every=2, val_every=0)
    return TrainConfig(**{**base, **kw})


def states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_run_folder_checkpoint_and_metrics(tmp_path, capsys):
    store = make_store(tmp_path / "s.h5")
    out = train_head(store, tmp_path / "run", SMALL, quick(), progress=False)
    assert capsys.readouterr().err == ""  # progress=False is silent
    assert out["checkpoint"] == str(tmp_path / "run" / "last.pt") and out["val"] is None
    assert out["steps"] == 6 and np.isfinite(out["loss"]) and out["seconds"] > 0
    ckpt = torch.load(out["checkpoint"], weights_only=True)
    assert ckpt["step"] == 6 and ckpt["feature_dim"] == C
    assert LabelMap.from_json(ckpt["label_map"]) == LABELS
    head = HeadConfig.from_dict(ckpt["head"])
    assert head == HeadConfig(feature_dim=C, num_classes=3, context=1, iterations=2,
                              scene_hidden=6, graph_hidden=10)
    assert TrainConfig.from_dict(ckpt["train"]) == quick()
    assert isinstance(ckpt["store_fingerprint"], str) and ckpt["optimizer"]["state"]
    HGRNNHead(head).load_state_dict(ckpt["model"])
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6]
    assert all(r["loss"] > 0 and r["steps_per_s"] > 0 for r in rows)
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000


@pytest.mark.parametrize("variant", ["scene", "graph", "person"])
def test_variants_train(tmp_path, variant):
    store = make_store(tmp_path / "s.h5")
    out = train_head(store, tmp_path / "run", HeadConfig(variant=variant, context=2), quick(steps=2),
                     progress=False)
    assert HeadConfig.from_dict(load_checkpoint(out["checkpoint"])["head"]).variant == variant


def test_seed_repeats_exactly_on_cpu(tmp_path):
    store = make_store(tmp_path / "s.h5")
    head = HeadConfig(context=1, scene_hidden=6, graph_hidden=10, dropout=0.3)
    runs = [train_head(store, tmp_path / f"r{i}", head, quick(seed=s), progress=False)
            for i, s in enumerate([7, 7, 8])]
    models = [torch.load(r["checkpoint"], weights_only=True)["model"] for r in runs]
    assert states_equal(models[0], models[1])
    assert not states_equal(models[0], models[2])


def test_step_indices_depend_on_seed_and_step_only():
    a = train_mod.step_indices(3, 10, 100, 50)
    assert len(set(a.tolist())) == 50 and a.max() < 100
    assert np.array_equal(a, train_mod.step_indices(3, 10, 100, 50))
    assert not np.array_equal(a, train_mod.step_indices(3, 11, 100, 50))
    assert np.array_equal(train_mod.step_indices(0, 0, 5, 50), np.arange(5))  # small store: all


def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    store = make_store(tmp_path / "s.h5")
    head = HeadConfig(context=1, scene_hidden=6, graph_hidden=10, dropout=0.3)
    cfg = quick(steps=8, checkpoint_every=3, log_every=1)
    whole = train_head(store, tmp_path / "whole", head, cfg, progress=False)

    real_loss, calls = train_mod.sigmoid_focal_loss, []

    def crashing(*a, **k):
        calls.append(1)
        if len(calls) == 5:  # step 5: after the checkpoint of step 3
            raise KeyboardInterrupt
        return real_loss(*a, **k)

    monkeypatch.setattr(train_mod, "sigmoid_focal_loss", crashing)
    with pytest.raises(KeyboardInterrupt):
        train_head(store, tmp_path / "cut", head, cfg, progress=False)
    monkeypatch.setattr(train_mod, "sigmoid_focal_loss", real_loss)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["step"] == 3
    resumed = train_head(store, tmp_path / "cut", head, cfg, resume=True, progress=False)

    a = torch.load(whole["checkpoint"], weights_only=True)
    b = torch.load(resumed["checkpoint"], weights_only=True)
    assert b["step"] == 8 and states_equal(a["model"], b["model"])
    assert resumed["loss"] == whole["loss"]
    losses = [[json.loads(x)["loss"] for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
              for d in ("whole", "cut")]
    assert losses[0] == losses[1] and len(losses[0]) == 8  # no duplicated or lost log lines


def test_resume_extends_a_finished_run(tmp_path):
    store = make_store(tmp_path / "s.h5")
    whole = train_head(store, tmp_path / "whole", SMALL, quick(steps=6), progress=False)
    train_head(store, tmp_path / "two", SMALL, quick(steps=3), progress=False)
    more = train_head(store, tmp_path / "two", SMALL, quick(steps=6), resume=True, progress=False)
    assert states_equal(torch.load(whole["checkpoint"], weights_only=True)["model"],
                        torch.load(more["checkpoint"], weights_only=True)["model"])


def test_existing_run_needs_resume(tmp_path):
    store = make_store(tmp_path / "s.h5")
    train_head(store, tmp_path / "run", SMALL, quick(steps=1), progress=False)
    with pytest.raises(HeadError, match="already holds a run"):
        train_head(store, tmp_path / "run", SMALL, quick(steps=1), progress=False)


def test_resume_refuses_other_config_or_store(tmp_path):
    store = make_store(tmp_path / "s.h5")
    train_head(store, tmp_path / "run", SMALL, quick(steps=2), progress=False)
    with pytest.raises(HeadError, match="other head options.*--graph-hidden 10 -> 12"):
        train_head(store, tmp_path / "run", HeadConfig(context=1, scene_hidden=6, graph_hidden=12),
                   quick(steps=4), resume=True, progress=False)
    with pytest.raises(HeadError, match="other training options.*--lr"):
        train_head(store, tmp_path / "run", SMALL, quick(steps=4, lr=0.5), resume=True, progress=False)
    other = make_store(tmp_path / "other.h5", labels=LabelMap((1, 3, 6), ("stand", "sit", "x")))
    with pytest.raises(HeadError, match="label map differs"):
        train_head(other, tmp_path / "run", SMALL, quick(steps=4), resume=True, progress=False)
    wide = make_store(tmp_path / "wide.h5", C=12)
    with pytest.raises(HeadError, match="wide.h5: feature dim 12, checkpoint .* trained on 8"):
        train_head(wide, tmp_path / "run", HeadConfig(context=1, scene_hidden=6, graph_hidden=10),
                   quick(steps=4), resume=True, progress=False)
    same_kind = make_store(tmp_path / "o2.h5", seed=5)
    with pytest.raises(HeadError, match="different store"):
        train_head(same_kind, tmp_path / "run", SMALL, quick(steps=4), resume=True, progress=False)


def test_resume_with_fewer_steps_than_done_is_a_clear_error(tmp_path):
    store = make_store(tmp_path / "s.h5")
    train_head(store, tmp_path / "run", SMALL, quick(steps=4), progress=False)
    with pytest.raises(HeadError, match="already at step 4.*--steps >= 4"):
        train_head(store, tmp_path / "run", SMALL, quick(steps=2), resume=True, progress=False)


def test_val_store_without_labels_is_refused_before_training(tmp_path):
    store = make_store(tmp_path / "s.h5")
    no_gt = make_store(tmp_path / "nogt.h5", gt=False)
    with pytest.raises(HeadError, match="nogt.h5: the validation store has no ground-truth"):
        train_head(store, tmp_path / "run", SMALL, quick(), val_store=no_gt, progress=False)
    assert not (tmp_path / "run" / "last.pt").exists()  # refused up front, nothing trained


def test_bad_stores_are_clear_errors(tmp_path):
    only_det = make_store(tmp_path / "det.h5", gt=False)
    with pytest.raises(HeadError, match="det.h5: the store has no 'gt' persons .*sources in "
                                        "it: det.*--annotations"):
        train_head(only_det, tmp_path / "a", SMALL, quick(), progress=False)
    only_gt = make_store(tmp_path / "gt.h5", det=False)
    with pytest.raises(HeadError, match="gt.h5: the store has no 'det' persons .*--box-source gt"):
        train_head(only_gt, tmp_path / "a2", SMALL, quick(box_source="det"), progress=False)
    empty = make_store(tmp_path / "empty.h5", empty=True)
    with pytest.raises(HeadError, match="empty.h5.*nothing to train on"):
        train_head(empty, tmp_path / "b", SMALL, quick(), progress=False)
    with pytest.raises(HeadError, match="no such store"):
        train_head(tmp_path / "missing.h5", tmp_path / "c", SMALL, quick(), progress=False)
    store = make_store(tmp_path / "s.h5")
    with pytest.raises(HeadError, match="feature_dim = 8, the head config 16"):
        train_head(store, tmp_path / "d", HeadConfig(feature_dim=16), quick(), progress=False)
    with pytest.raises(HeadError, match="num_classes = 3, the head config 60"):
        train_head(store, tmp_path / "e", HeadConfig(num_classes=60), quick(), progress=False)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    store = make_store(tmp_path / "s.h5")
    real_loss, calls = train_mod.sigmoid_focal_loss, []

    def nan_at_5(*a, **k):
        calls.append(1)
        loss = real_loss(*a, **k)
        return loss * float("nan") if len(calls) == 5 else loss

    monkeypatch.setattr(train_mod, "sigmoid_focal_loss", nan_at_5)
    with pytest.raises(HeadError, match=r"became nan at step 5.*last good checkpoint .*last.pt \(step 3\)"):
        train_head(store, tmp_path / "run", SMALL, quick(steps=8, checkpoint_every=3), progress=False)
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt["step"] == 3
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_small_model_overfits_a_tiny_store(tmp_path):
    store = make_store(tmp_path / "s.h5", videos=1, keyframes=10)
    out = train_head(store, tmp_path / "run", HeadConfig(context=1, scene_hidden=8, graph_hidden=16),
                     quick(steps=250, batch_size=10, lr=1e-2, checkpoint_every=250, log_every=50),
                     progress=False)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["loss"] < 0.1 * rows[0]["loss"]
    from hgrnn.data.windows import ContextWindows, FeatureStore
    model = model_from_checkpoint(load_checkpoint(out["checkpoint"]))
    windows = ContextWindows(FeatureStore(store, "gt"), l=1)
    batch = windows.batch(np.arange(len(windows)))
    predicted = model.predict(batch) > 0.5
    assert (predicted == batch.labels.bool()).float().mean() > 0.97


def test_background_batch_workers_give_the_same_run(tmp_path):
    store = make_store(tmp_path / "s.h5")
    runs = [train_head(store, tmp_path / f"w{n}", SMALL, quick(num_workers=n), progress=False)
            for n in (0, 2)]
    a, b = (torch.load(r["checkpoint"], weights_only=True)["model"] for r in runs)
    assert states_equal(a, b)


def test_resuming_a_finished_run_does_not_log_its_validation_twice(tmp_path):
    store = make_store(tmp_path / "s.h5")
    first = train_head(store, tmp_path / "run", SMALL, quick(steps=2), val_store=store,
                       progress=False)
    again = train_head(store, tmp_path / "run", SMALL, quick(steps=2), val_store=store,
                       resume=True, progress=False)
    assert again["val"]["mAP"] == pytest.approx(first["val"]["mAP"])
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "val_mAP" in r] == [2]


def test_context_boxes_det_pools_detections_in_the_context_slots(tmp_path):
    """--context-boxes det: the scene RNN's context slots pool the store's detections. With
    detections identical to the ground truth the run is the gt run; with other detections
    it is not; without detections it is a clear error."""
    rng = np.random.default_rng(4)
    same, other = tmp_path / "same.h5", tmp_path / "other.h5"
    for path in (same, other):
        with StoreWriter(path, feature_dim=C, label_map=LABELS) as w:
            r = np.random.default_rng(1)
            for v in range(2):
                counts = r.integers(1, 4, 10)
                gt = person_set(r, counts, 3, True, False)
                clip = r.standard_normal((10, C)).astype(np.float32)
                det = (PersonSet(gt.offsets, gt.boxes, gt.feats, gt.scores) if path == same
                       else person_set(rng, counts[::-1], 3, False, True))
                w.add_video(f"vid{v}", 902 + np.arange(10), clip, gt=gt, det=det)
    runs = {}
    for name, path, ctx in [("gt", same, "gt"), ("same", same, "det"), ("other", other, "det"),
                            ("other_gt", other, "gt")]:
        out = train_head(str(path), tmp_path / name, SMALL, quick(context_boxes=ctx),
                         progress=False)
        runs[name] = torch.load(out["checkpoint"], weights_only=True)
    assert runs["same"]["train"]["context_boxes"] == "det"
    assert states_equal(runs["gt"]["model"], runs["same"]["model"])
    assert states_equal(runs["gt"]["model"], runs["other_gt"]["model"])   # gt persons equal
    assert not states_equal(runs["other"]["model"], runs["other_gt"]["model"])
    with pytest.raises(HeadError, match="context.boxes"):
        train_head(str(other), tmp_path / "other", SMALL, quick(context_boxes="gt"),
                   resume=True, progress=False)
    no_det = make_store(tmp_path / "nodet.h5", det=False)
    with pytest.raises(HeadError, match="no 'det' boxes"):
        train_head(no_det, tmp_path / "nodet", SMALL, quick(context_boxes="det"),
                   progress=False)


def test_streams_are_concatenated_recorded_and_required_by_eval(tmp_path):
    from hgrnn.hgrnn_head.infer import evaluate_store

    two = make_store(tmp_path / "two.h5", C=2 * C, streams=[("rgb", 0, C), ("flow", C, 2 * C)])
    out = train_head(two, tmp_path / "rgbflow", SMALL, quick(streams=("rgb", "flow")),
                     progress=False)
    ckpt = load_checkpoint(out["checkpoint"])
    assert ckpt["streams"] == ["rgb", "flow"] and ckpt["train"]["streams"] == ["rgb", "flow"]
    assert ckpt["feature_dim"] == 2 * C and ckpt["head"]["feature_dim"] == 2 * C
    # the default (rgb) on the same store: half the dims
    out_rgb = train_head(two, tmp_path / "rgb", SMALL, quick(), progress=False)
    assert load_checkpoint(out_rgb["checkpoint"])["feature_dim"] == C
    assert evaluate_store(two, out["checkpoint"], gt_boxes=True, progress=False,
                          device="cpu").mAP >= 0
    # eval refuses a store without the checkpoint's streams
    rgb_only = make_store(tmp_path / "rgb_only.h5", C=2 * C)
    with pytest.raises(HeadError, match="rgb_only.h5: no 'flow' feature stream .*trained on "
                                        r"rgb\+flow"):
        evaluate_store(rgb_only, out["checkpoint"], gt_boxes=True, progress=False, device="cpu")
    # a flow-only store trains with streams=("flow",), and says what it has otherwise
    flow = make_store(tmp_path / "flow.h5", streams=[("flow", 0, C)])
    train_head(flow, tmp_path / "flowrun", SMALL, quick(streams=("flow",)), progress=False)
    with pytest.raises(HeadError, match="no 'rgb' feature stream \\(the store has flow\\)"):
        train_head(flow, tmp_path / "x", SMALL, quick(), progress=False)
    # resuming with other streams is refused, even at the same width
    with pytest.raises(HeadError, match="other training options.*--streams"):
        train_head(two, tmp_path / "rgb", SMALL, quick(steps=8, streams=("flow",)),
                   resume=True, progress=False)


# ---- schedules, best checkpoint, init-from ---------------------------------------------------

def test_lr_schedules_warmup_and_what_the_optimizer_used(tmp_path):
    const = TrainConfig(steps=10, lr=1.0)
    assert [const.lr_at(s) for s in range(10)] == [1.0] * 10       # the paper's, unchanged
    warm = TrainConfig(steps=10, lr=1.0, warmup=4)
    assert [warm.lr_at(s) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    cos = TrainConfig(steps=10, lr=1.0, lr_schedule="cosine", warmup=2)
    got = [cos.lr_at(s) for s in range(10)]
    assert got[:3] == pytest.approx([0.5, 1.0, 1.0]) and got[-1] == pytest.approx(
        0.5 * (1 + np.cos(np.pi * 7 / 8)))
    assert all(a > b for a, b in zip(got[2:], got[3:]))              # decreasing after warm-up
    step = TrainConfig(steps=10, lr=1.0, lr_schedule="step", lr_step_every=3, lr_gamma=0.1)
    assert [step.lr_at(s) for s in range(7)] == pytest.approx([1, 1, 1, .1, .1, .1, .01])
    with pytest.raises(ValueError, match="--lr-schedule"):
        TrainConfig(lr_schedule="linear")
    # the run applies it: metrics.jsonl logs the lr of each logged step
    store = make_store(tmp_path / "s.h5")
    train = quick(steps=6, log_every=1, lr_schedule="cosine", warmup=2)
    train_head(store, tmp_path / "run", SMALL, train, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in rows] == pytest.approx([train.lr_at(s) for s in range(6)])


def test_weight_decay_trains_with_adamw(tmp_path):
    params = [torch.nn.Parameter(torch.ones(2))]
    assert type(train_mod.make_adam(params, 1e-3)) is torch.optim.Adam
    adamw = train_mod.make_adam(params, 1e-3, weight_decay=0.1)
    assert type(adamw) is torch.optim.AdamW and adamw.param_groups[0]["weight_decay"] == 0.1
    store = make_store(tmp_path / "s.h5")
    plain = train_head(store, tmp_path / "a", SMALL, quick(), progress=False)
    decayed = train_head(store, tmp_path / "b", SMALL, quick(weight_decay=0.5), progress=False)
    a, b = (torch.load(r["checkpoint"], weights_only=True)["model"] for r in (plain, decayed))
    assert not states_equal(a, b)


def test_best_checkpoint_is_the_best_validation(tmp_path):
    store = make_store(tmp_path / "s.h5")
    out = train_head(store, tmp_path / "run", SMALL, quick(steps=8, val_every=2, lr=3e-2),
                     val_store=store, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    val = [(r["step"], r["val_mAP"]) for r in rows if "val_mAP" in r]
    assert [s for s, _ in val] == [2, 4, 6, 8]
    best_step, best_map = max(val, key=lambda s: (s[1], -s[0]))
    assert out["best"] == str(tmp_path / "run" / "best.pt") and out["best_step"] == best_step
    best = load_checkpoint(out["best"])
    assert best["step"] == best_step
    from hgrnn.hgrnn_head.infer import evaluate_store
    assert evaluate_store(store, out["best"], gt_boxes=True, progress=False).mAP == \
        pytest.approx(best_map)
    # resuming keeps the best so far: a worse later validation does not replace it
    again = train_head(store, tmp_path / "run", SMALL, quick(steps=8, val_every=2, lr=3e-2),
                       val_store=store, resume=True, progress=False)
    assert again["best_step"] == best_step and again["steps_trained"] == 0


def test_init_from_starts_from_the_weights_with_a_new_schedule(tmp_path):
    store = make_store(tmp_path / "s.h5")
    first = train_head(store, tmp_path / "a", SMALL, quick(steps=6), progress=False)
    # lr so small that one step leaves the weights where they started
    out = train_head(store, tmp_path / "b", SMALL,
                     quick(steps=1, lr=1e-12, init_from=str(tmp_path / "a")), progress=False)
    a = torch.load(first["checkpoint"], weights_only=True)["model"]
    b = torch.load(out["checkpoint"], weights_only=True)
    assert b["step"] == 1 and out["start"] == 0
    for k in a:
        torch.testing.assert_close(b["model"][k], a[k], rtol=0, atol=1e-9)
    # a context length keeps the shapes: allowed; another hidden size: refused, naming it
    train_head(store, tmp_path / "c", dataclasses.replace(SMALL, context=2),
               quick(steps=1, init_from=first["checkpoint"]), progress=False)
    with pytest.raises(HeadError, match=r"same shapes.*--graph-hidden 10 -> 12"):
        train_head(store, tmp_path / "d", dataclasses.replace(SMALL, graph_hidden=12),
                   quick(steps=1, init_from=first["checkpoint"]), progress=False)
    with pytest.raises(HeadError, match=r"--relation 'gru' -> 'attention'"):
        train_head(store, tmp_path / "e", dataclasses.replace(SMALL, relation="attention",
                                                              attention_heads=2),
                   quick(steps=1, init_from=first["checkpoint"]), progress=False)


def test_resume_refuses_to_stretch_a_cosine_schedule(tmp_path):
    store = make_store(tmp_path / "s.h5")
    train_head(store, tmp_path / "run", SMALL, quick(lr_schedule="cosine"), progress=False)
    with pytest.raises(HeadError, match="cosine.*--init-from"):
        train_head(store, tmp_path / "run", SMALL, quick(lr_schedule="cosine", steps=9),
                   resume=True, progress=False)


def test_late_fusion_and_attention_train_and_evaluate(tmp_path):
    from hgrnn.hgrnn_head.infer import evaluate_store
    store = make_store(tmp_path / "two.h5", C=2 * C, streams=[["rgb", 0, C], ["flow", C, 2 * C]])
    head = dataclasses.replace(SMALL, fusion="late", relation="attention", attention_heads=2)
    out = train_head(store, tmp_path / "run", head, quick(streams=("rgb", "flow")),
                     progress=False)
    ckpt = load_checkpoint(out["checkpoint"])
    saved = HeadConfig.from_dict(ckpt["head"])
    assert saved.fusion == "late" and saved.stream_dims == (C, C)
    model = model_from_checkpoint(ckpt)
    assert len(model.per_stream) == 2 and model.per_stream[0].cfg.relation == "attention"
    assert evaluate_store(store, out["checkpoint"], gt_boxes=True, progress=False) is not None
    # concat keeps stream_dims out of the config (a run from before the option resumes)
    concat = train_head(store, tmp_path / "c", SMALL, quick(streams=("rgb", "flow")),
                        progress=False)
    assert load_checkpoint(concat["checkpoint"])["head"]["stream_dims"] is None
