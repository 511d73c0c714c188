"""`finetune-backbone`: box-consistent augmentation, a few real training steps on rendered
videos, the checkpoint round trip through `load_backbone` (and `extract-features`)."""

import json

import numpy as np
import pytest
import torch

from hgrnn.pipeline import finetune as ft
from hgrnn.pipeline.finetune import FinetuneConfig, crop_clip, flip_clip, random_augment

# random initial weights are the point of these tests; the warning is checked once below
pytestmark = pytest.mark.filterwarnings("ignore:I3D backbone weights")



# ----------------------------------------------------------------------------- augmentation

def drawn_clip(box_px, size=(60, 80), frames=3):
    """A clip of (H, W) = size with a white rectangle at pixel box x1, y1, x2, y2."""
    h, w = size
    clip = np.zeros((frames, h, w, 3), np.uint8)
    x1, y1, x2, y2 = box_px
    clip[:, y1:y2, x1:x2] = 255
    return clip, np.array([[x1 / w, y1 / h, x2 / w, y2 / h]], np.float32)


def box_of_drawing(frame, threshold=127):
    """Normalised xyxy bounding box of the bright pixels of (H, W, 3) `frame`."""
    ys, xs = np.nonzero(frame[..., 0] > threshold)
    h, w = frame.shape[:2]
    return np.array([xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h])


def test_flip_keeps_box_on_object():
    clip, boxes = drawn_clip((10, 20, 30, 50))
    out, out_boxes = flip_clip(clip, boxes)
    np.testing.assert_allclose(out_boxes[0], box_of_drawing(out[0]), atol=1e-6)
    np.testing.assert_allclose(out_boxes[0], [50 / 80, 20 / 60, 70 / 80, 50 / 60], atol=1e-6)
    back, back_boxes = flip_clip(out, out_boxes)
    assert np.array_equal(back, clip) and np.allclose(back_boxes, boxes)


def test_crop_keeps_box_on_object_and_drops_persons_cropped_out():
    clip, boxes = drawn_clip((10, 20, 30, 50))
    boxes = np.concatenate([boxes, [[0.9, 0.0, 1.0, 0.2],      # cropped out entirely
                                    [0.0, 0.0, 0.2, 0.5]]])    # 25% inside (x 12..16 of 0..16)
    out, out_boxes, keep = crop_clip(clip, boxes, top=5, left=12, height=50, width=40)
    assert out.shape == (3, 50, 40, 3)
    assert keep.tolist() == [True, False, False]
    np.testing.assert_allclose(out_boxes[0], box_of_drawing(out[0]), atol=1e-6)
    # a box cut by the crop border is clipped to the crop (and kept when enough remains)
    _, part, keep = crop_clip(clip, np.array([[0.0, 0.0, 0.2, 0.5]]), 0, 4, 60, 76,
                              min_visible=0.5)
    assert keep.tolist() == [True]
    np.testing.assert_allclose(part[0], [0, 0, 12 / 76, 0.5], atol=1e-6)
    with pytest.raises(ValueError, match="leaves"):
        crop_clip(clip, boxes, 20, 50, 50, 40)


@pytest.mark.parametrize("seed", range(6))
def test_random_augment_keeps_box_on_object(seed):
    clip, boxes = drawn_clip((22, 18, 44, 40), size=(60, 80))
    rng = np.random.default_rng(seed)
    out = random_augment(clip, boxes, rng, crop_size=48, scale_range=(0.8, 1.3), flip_prob=0.5,
                         min_visible=0.3)
    assert out is not None
    frames, out_boxes, keep = out
    assert frames.shape == (3, 48, 48, 3) and frames.dtype == np.uint8
    assert keep.tolist() == [True]
    # the drawn object (clipped to the crop) is where the box says, to a pixel of resampling
    np.testing.assert_allclose(out_boxes[0], box_of_drawing(frames[0]), atol=1.5 / 48)


def test_random_augment_gives_up_when_every_crop_loses_the_persons():
    clip, _ = drawn_clip((0, 0, 4, 4), size=(200, 200))
    rng = np.random.default_rng(0)
    tiny = np.array([[0.0, 0.0, 0.02, 0.02]], np.float32)
    assert random_augment(clip, tiny, rng, crop_size=40, scale_range=(1.0, 1.0),
                          flip_prob=0, min_visible=0.9) is None


def test_config_validation():
    with pytest.raises(ValueError, match="exactly one"):
        FinetuneConfig(annotations="a.csv", out_dir="o")
    with pytest.raises(ValueError, match="fps"):
        FinetuneConfig(annotations="a.csv", out_dir="o", frames="f")
    with pytest.raises(ValueError, match="loss"):
        FinetuneConfig(annotations="a.csv", out_dir="o", videos="v", loss="hinge")


# ----------------------------------------------------------------------------- training

SIZE = (96, 72)          # rendered W, H
FPS = 8


def shape_boxes(t, size=SIZE):
    """Normalised boxes of render.default_shapes at time t (no wrap for t <= 4 s)."""
    w, h = size
    red = (0.10 * w + 0.15 * w * t, 0.15 * h, 0.25 * w + 0.15 * w * t, 0.35 * h)
    green = (0.70 * w - 0.10 * w * t, 0.45 * h, 0.78 * w - 0.10 * w * t, 0.75 * h)
    cy, r = 0.20 * h + 0.12 * h * t, 0.09 * h
    blue = (0.45 * w - r, cy - r, 0.45 * w + r, cy + r)
    return [tuple(np.clip(np.array(b) / [w, h, w, h], 0, 1)) for b in (red, green, blue)]


@pytest.fixture(scope="module")
def ava_fixture(tmp_path_factory):
    """Two rendered videos, a 3-class label map and gt CSVs (red: action 1, green: 2,
    blue disc: 3 and 1)."""
    from hgrnn.pipeline.render import render_video

    root = tmp_path_factory.mktemp("ft")
    videos = root / "videos"
    videos.mkdir()
    for vid in ("vidA", "vidB"):
        render_video(videos / f"{vid}.mp4", seconds=5, fps=FPS, size=SIZE, gop=4)
    (root / "labels.txt").write_text("1 red\n2 green\n3 disc\n")
    rows = []
    for vid in ("vidA", "vidB"):
        for t in (1, 2, 3, 4):
            red, green, blue = shape_boxes(t)
            for box, actions in ((red, [1]), (green, [2]), (blue, [3, 1])):
                for a in actions:
                    rows.append(f"{vid},{t},{box[0]:.4f},{box[1]:.4f},{box[2]:.4f},{box[3]:.4f},{a},0")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    (root / "val.csv").write_text("\n".join(r for r in rows if r.startswith("vidB,2")
                                            or r.startswith("vidB,3")) + "\n")
    return root


def tiny_config(root, out, **kw):
    base = dict(annotations=str(root / "train.csv"), out_dir=str(out), videos=str(root / "videos"),
                label_map=str(root / "labels.txt"), backbone_weights="none",
                clip_frames=8, frame_stride=1, short_side=64, crop_size=64,
                scale_min=1.0, scale_max=1.2, batch=4, steps=6, lr=1e-3, dropout=0.0,
                lr_halve_every=1000, log_every=1, checkpoint_every=3, num_workers=0,
                val_every=1000, device="cpu", freeze_bn=False)   # tiny batches: see test_batchnorm_*
    base.update(kw)
    return FinetuneConfig(**base)


def read_metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_keyframes_chunks_and_missing_video(ava_fixture, tmp_path):
    from hgrnn.data.ava import load_label_map

    kfs = ft.keyframes_from_csv(ava_fixture / "train.csv", load_label_map(str(ava_fixture / "labels.txt")))
    assert len(kfs) == 8 and all(len(k.boxes) == 3 for k in kfs)
    blue = kfs[0].labels[2]
    assert blue.tolist() == [1, 0, 1]
    chunks = ft.make_chunks(kfs, size=3)
    assert [len(c) for c in chunks] == [3, 1, 3, 1]
    assert all(len({kfs[i].video_id for i in c}) == 1 for c in chunks)
    (tmp_path / "extra.csv").write_text((ava_fixture / "train.csv").read_text()
                                        + "vidZ,2,0.1,0.1,0.5,0.5,1,0\n")
    config = tiny_config(ava_fixture, tmp_path / "o", annotations=str(tmp_path / "extra.csv"))
    with pytest.raises(ft.FinetuneError, match="vidZ"):
        ft.finetune_backbone(config, progress=False)


def test_clip_stream_samples_are_augmented_and_consistent(ava_fixture):
    from hgrnn.data.ava import load_label_map

    config = tiny_config(ava_fixture, "unused")
    kfs = ft.keyframes_from_csv(ava_fixture / "train.csv", load_label_map(config.label_map))
    sources = ft.resolve_sources(config, [k.video_id for k in kfs])
    stream = ft.ClipStream(kfs, sources, config)
    samples = list(stream)
    assert len(samples) == 8
    assert {(s["video_id"], s["timestamp"]) for s in samples} == {(k.video_id, k.timestamp) for k in kfs}
    for s in samples:
        assert s["clip"].shape == (8, 64, 64, 3) and s["clip"].dtype == torch.uint8
        assert len(s["boxes"]) == len(s["labels"]) >= 1
    batch = ft.collate(samples[:3])
    assert batch["clips"].shape == (3, 8, 64, 64, 3)
    assert batch["rois"].shape[1] == 5 and set(batch["rois"][:, 0].tolist()) <= {0.0, 1.0, 2.0}


def fixed_batch(config, keyframes, sources):
    """All keyframes' clips, centre-cropped to crop_size, no flip: (clips, rois, labels)."""
    from hgrnn.data.video import iter_clips

    samples = []
    for k in keyframes:
        (_, frames), = iter_clips(sources[k.video_id], [k.timestamp], config.clip_frames,
                                  config.frame_stride, config.short_side)
        h, w = frames.shape[1:3]
        c = config.crop_size
        clip, boxes, keep = crop_clip(frames, k.boxes, (h - c) // 2, (w - c) // 2, c, c)
        samples.append({"clip": torch.from_numpy(clip), "boxes": torch.from_numpy(boxes),
                        "labels": torch.from_numpy(k.labels[keep].astype(np.float32)),
                        "video_id": k.video_id, "timestamp": k.timestamp})
    batch = ft.collate(samples)
    from hgrnn.pipeline.i3d import normalize_frames
    return normalize_frames(batch["clips"]), batch["rois"], batch["labels"]


def batch_loss(model, batch, config):
    ft.set_train_mode(model, True, config.freeze_bn)     # batch-statistics BN, as in training
    with torch.no_grad():
        return float(ft.classification_loss(model(batch[0], batch[1]), batch[2], config))


def check_extraction_uses_checkpoint(root, tmp_path, checkpoint, model, config):
    """extract-features with the checkpoint writes a 256-d store whose person features are
    the fine-tuned model's projected RoI features of the whole frame."""
    from hgrnn.data.ava import load_label_map
    from hgrnn.data.windows import ContextWindows, FeatureStore
    from hgrnn.pipeline.extract import ExtractConfig, extract_features
    from hgrnn.pipeline.i3d import normalize_frames
    from hgrnn.data.video import iter_clips

    store_path = tmp_path / "finetuned.h5"
    extract_features(ExtractConfig(
        out=str(store_path), backbone_weights=str(checkpoint), videos=str(root / "videos"),
        annotations=str(root / "val.csv"), label_map=config.label_map, keyframes=(2, 3),
        clip_frames=config.clip_frames, short_side=config.short_side, batch_size=2, workers=0,
        device="cpu", progress=False, person_layer=config.person_layer))
    store = FeatureStore(str(store_path))
    assert store.feature_dim == 256
    windows = ContextWindows(store, l=0)
    batch = windows.batch(np.arange(len(windows)))
    assert batch.feats.shape[1] == 256
    first = [i for i in range(len(windows))
             if windows.video_ids[i] == "vidB" and int(windows.timestamps[i]) == 2]
    assert len(first) == 1
    stored = batch.feats[batch.keyframe == first[0]]                    # (3, 256)
    kf = [k for k in ft.keyframes_from_csv(root / "val.csv", load_label_map(config.label_map))
          if k.timestamp == 2][0]
    (_, frames), = iter_clips(root / "videos" / "vidB.mp4", [2.0], config.clip_frames,
                              config.frame_stride, config.short_side)
    rois = torch.cat([torch.zeros(len(kf.boxes), 1), torch.from_numpy(kf.boxes)], 1)
    model.eval()
    with torch.no_grad():
        expected = model.features(normalize_frames(frames), rois)
    torch.testing.assert_close(stored, expected, rtol=2e-2, atol=2e-3)


def test_training_lowers_the_loss_resumes_validates_and_checkpoint_loads(ava_fixture, tmp_path,
                                                                          monkeypatch):
    from hgrnn.data.ava import load_label_map
    from hgrnn.pipeline.i3d import load_backbone

    out = tmp_path / "run"
    config = tiny_config(ava_fixture, out, steps=4, checkpoint_every=2)
    result = ft.finetune_backbone(config, progress=False)
    assert result["steps"] == 4 and result["val"] is None
    with pytest.raises(ft.FinetuneError, match="resume"):
        ft.finetune_backbone(config, progress=False)
    first = torch.load(out / "backbone.pt", weights_only=True)
    assert first["step"] == 4

    # a damaged state.pt is one FinetuneError naming it (issue 17), never a traceback
    import shutil
    state = torch.load(out / "state.pt", weights_only=True)
    for name, damage in (("no-optimizer", lambda: torch.save(
            {k: v for k, v in state.items() if k != "optimizer"}, bad / "state.pt")),
            ("bad-rng", lambda: torch.save(dict(state, rng=torch.zeros(3, dtype=torch.uint8)),
                                           bad / "state.pt")),
            ("truncated", lambda: (bad / "state.pt").write_bytes(
                (out / "state.pt").read_bytes()[:500]))):
        bad = tmp_path / name
        shutil.copytree(out, bad)
        damage()
        with pytest.raises(ft.FinetuneError, match=f"{bad / 'state.pt'}: .*damaged") as err:
            ft.finetune_backbone(tiny_config(ava_fixture, bad, steps=6), resume=True,
                                 progress=False)
        assert "weights_only" not in str(err.value) and "\n" not in str(err.value)

    # resume to 6 steps with a validation at the end, through the evaluator's contract
    calls = []

    def fake_evaluate(gt, results, label_map, protocol="ava-2018", exclusions=None):
        calls.append((len(gt), len(results), protocol))
        assert set(results.action_ids.tolist()) == {1, 2, 3}
        assert ((results.scores >= 0) & (results.scores <= 1)).all()

        class Result:
            def to_dict(self):
                return {"mAP": 0.5, "per_class": {}, "counts": {}, "protocol": protocol}
        return Result()

    import hgrnn
    try:
        import hgrnn.metrics as metrics
        monkeypatch.setattr(metrics, "evaluate", fake_evaluate)
    except ImportError:                       # evaluator not written yet: stand in for it
        import sys
        import types
        fake = types.ModuleType("hgrnn.metrics")
        fake.evaluate = fake_evaluate
        monkeypatch.setitem(sys.modules, "hgrnn.metrics", fake)
        monkeypatch.setattr(hgrnn, "metrics", fake, raising=False)
    more = tiny_config(ava_fixture, out, steps=6, checkpoint_every=2, val_every=6,
                       val_annotations=str(ava_fixture / "val.csv"),
                       lr_halve_every=5)        # a new interval applies from the resume on
    result = ft.finetune_backbone(more, resume=True, progress=False)
    assert result["steps"] == 6 and result["val"]["mAP"] == 0.5
    # 2 val keyframes x 3 persons: 8 gt rows (the disc has 2 actions); 6 persons x 3 classes
    assert calls == [(8, 18, "ava-2018")]
    records = read_metrics(out)
    assert [r["step"] for r in records if r["split"] == "train"] == list(range(1, 7))
    assert [r["step"] for r in records if r["split"] == "val"] == [6]
    lrs = {r["step"]: r["lr"] for r in records if r["split"] == "train"}
    assert lrs[4] == pytest.approx(1e-3) and lrs[6] == pytest.approx(5e-4), lrs

    # the checkpoint loads for extraction and gives 256-d features
    backbone, projection, meta = load_backbone(result["checkpoint"])
    assert meta["kind"] == "finetune" and meta["feature_dim"] == 256 and meta["step"] == 6
    assert projection.weight.shape == (256, 1024)
    assert json.loads(meta["label_map"])[0] == [1, "red"]
    assert meta["config"]["clip_frames"] == 8
    final = torch.load(result["checkpoint"], weights_only=True)
    assert json.loads(final["val"])["mAP"] == 0.5
    trained = ft.PersonActionModel(backbone, 3, projection=projection, dropout=0.0)
    trained.classifier.load_state_dict(final["classifier"])
    check_extraction_uses_checkpoint(ava_fixture, tmp_path, result["checkpoint"], trained, config)

    # the loss on a fixed batch of all training keyframes fell from the initial model's
    # (rebuilt from the same seed, as finetune_backbone builds it)
    torch.manual_seed(config.seed)
    with pytest.warns(UserWarning, match="RANDOM"):
        init_backbone, _, _ = load_backbone("none")
    initial = ft.PersonActionModel(init_backbone, 3, config.projection_dim, dropout=0.0)
    assert not torch.equal(initial.backbone.Conv3d_1a_7x7.conv3d.weight,
                           final["backbone"]["Conv3d_1a_7x7.conv3d.weight"])     # it trained
    kfs = ft.keyframes_from_csv(ava_fixture / "train.csv", load_label_map(config.label_map))
    batch = fixed_batch(config, kfs, ft.resolve_sources(config, [k.video_id for k in kfs]))
    before, after = batch_loss(initial, batch, config), batch_loss(trained, batch, config)
    print("loss before", before, "after", after)
    assert after < 0.9 * before, (before, after)


def test_resuming_a_finished_run_rewrites_its_checkpoint_and_keeps_its_epoch(ava_fixture,
                                                                             tmp_path):
    """A finished run resumed without its backbone.pt writes it again with the state's epoch
    (the last epoch trained: no batch of the next one was drawn), drops metrics lines logged
    after its state (as finetune-detector does) and draws loss.png."""
    out = tmp_path / "run"
    config = tiny_config(ava_fixture, out, steps=2, checkpoint_every=2)
    ft.finetune_backbone(config, progress=False)
    epoch = torch.load(out / "state.pt", weights_only=True)["epoch"]
    assert [r["epoch"] for r in read_metrics(out)] == [epoch, epoch]
    assert (out / "loss.png").stat().st_size > 5000
    (out / "backbone.pt").unlink()
    with open(out / "metrics.jsonl", "a") as f:           # logged after the last state
        f.write(json.dumps({"step": 3, "split": "train", "loss": 9.0}) + "\n")
    result = ft.finetune_backbone(config, resume=True, progress=False)
    assert result["steps"] == 2 and (out / "backbone.pt").exists()
    assert torch.load(out / "state.pt", weights_only=True)["epoch"] == epoch
    assert [r["step"] for r in read_metrics(out)] == [1, 2]


def test_chunks_are_dealt_to_ranks_and_workers_without_overlap(ava_fixture):
    from hgrnn.data.ava import load_label_map

    config = tiny_config(ava_fixture, "unused")
    kfs = ft.keyframes_from_csv(ava_fixture / "train.csv", load_label_map(config.label_map))
    kfs = kfs * 5                                    # 40 keyframes -> 5 chunks of 8
    kfs.sort(key=lambda k: (k.video_id, k.timestamp))
    dealt = []
    for rank in range(2):
        stream = ft.ClipStream(kfs, {}, config, rank=rank, world=2)
        stream.epoch = 3
        for worker in range(2):
            dealt += [tuple(c) for c in stream._my_chunks(worker, 2)]
    assert sorted(dealt) == sorted(tuple(c) for c in ft.make_chunks(kfs))
    # fewer chunks than shards: every shard still gets work (else DDP ranks would stall)
    small = ft.ClipStream(kfs[:8], {}, config, rank=1, world=2)
    assert all(small._my_chunks(w, 2) for w in range(2))


def test_cli_runs_and_reports_errors(ava_fixture, tmp_path):
    from click.testing import CliRunner

    from hgrnn.cli import main

    args = ["finetune-backbone", "--annotations", str(ava_fixture / "train.csv"),
            "--videos", str(ava_fixture / "videos"), "--label-map", str(ava_fixture / "labels.txt"),
            "--backbone-weights", "none", "--clip-frames", "8", "--short-side", "48",
            "--crop-size", "48", "--steps", "1", "--workers", "0", "--device", "cpu", "--quiet"]
    result = CliRunner().invoke(main, args + ["--out", str(tmp_path / "run"), "--accumulate", "2",
                                              "--loss", "focal", "--log-every", "1",
                                              "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert "trained 1 steps" in result.output and (tmp_path / "run" / "backbone.pt").exists()
    written = json.loads((tmp_path / "run" / "config.json").read_text())
    assert written["micro_batch"] == 1 and written["loss"] == "focal"
    assert written["initial_weights"]["kind"] == "random"
    (record,) = read_metrics(tmp_path / "run")
    assert record["step"] == 1 and np.isfinite(record["loss"])
    bad = tmp_path / "bad.csv"
    bad.write_text("vidA,2,0.1,0.1,0.5,0.5,1,0\nvidA,3,0.1,0.1,0.5\n")
    result = CliRunner().invoke(main, args + ["--out", str(tmp_path / "r2"),
                                              "--annotations", str(bad)])
    assert result.exit_code != 0 and "bad.csv:2" in result.output


def test_cli_batch_size_is_the_common_name_and_batch_a_hidden_alias(ava_fixture, tmp_path):
    from click.testing import CliRunner

    from hgrnn.cli import main

    args = ["finetune-backbone", "--annotations", str(ava_fixture / "train.csv"),
            "--videos", str(ava_fixture / "videos"), "--label-map", str(ava_fixture / "labels.txt"),
            "--backbone-weights", "none", "--clip-frames", "8", "--short-side", "48",
            "--crop-size", "48", "--steps", "1", "--workers", "0", "--device", "cpu", "--quiet"]
    help_text = CliRunner().invoke(main, ["finetune-backbone", "--help"]).output
    assert "--batch-size" in help_text and "--batch " not in help_text
    result = CliRunner().invoke(main, args + ["--out", str(tmp_path / "old"), "--batch", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "old" / "config.json").read_text())["batch"] == 1
    result = CliRunner().invoke(main, args + ["--out", str(tmp_path / "both"), "--batch", "1",
                                              "--batch-size", "2"])
    assert result.exit_code == 2 and "give --batch-size only" in result.output


def test_frame_folders_and_time_offset_pick_the_keyframe_clip(tmp_path):
    """--frames + --fps + --time-offset: the clip of timestamp ts is centred on video time
    ts - offset (read back from the frame-index barcode the renderer draws)."""
    from hgrnn.data.ava import load_label_map
    from hgrnn.pipeline.render import read_barcode, render_frames

    render_frames(tmp_path / "frames", "vidS", seconds=4, fps=8, size=(72, 72))
    (tmp_path / "labels.txt").write_text("1 a\n")
    (tmp_path / "gt.csv").write_text("vidS,901,0.1,0.1,0.6,0.6,1,0\nvidS,903,0.2,0.1,0.7,0.6,1,0\n")
    config = FinetuneConfig(annotations=str(tmp_path / "gt.csv"), out_dir="unused",
                            frames=str(tmp_path / "frames"), fps=8, time_offset=900,
                            label_map=str(tmp_path / "labels.txt"), clip_frames=8,
                            short_side=64, crop_size=64, scale_min=1.0, scale_max=1.0,
                            flip_prob=0.0)
    kfs = ft.keyframes_from_csv(config.annotations, load_label_map(config.label_map))
    stream = ft.ClipStream(kfs, ft.resolve_sources(config, ["vidS"]), config)
    samples = sorted(stream, key=lambda s: s["timestamp"])
    assert [s["timestamp"] for s in samples] == [901, 903]
    for s in samples:
        clip = s["clip"].numpy()                    # (8, 64, 64, 3): no crop, no flip
        centre = (s["timestamp"] - 900) * 8
        assert [read_barcode(f) for f in clip] == list(range(centre - 4, centre + 4))
    np.testing.assert_allclose(samples[1]["boxes"][0].numpy(), [0.2, 0.1, 0.7, 0.6], atol=1e-6)


def test_batchnorm_statistics_frozen_below_8_clips_per_micro_batch(ava_fixture, tmp_path,
                                                                   capsys):
    """Default: frozen when a micro-batch has < 8 clips (the running statistics do not move),
    updated from 8 clips on; --freeze-bn / --update-bn override; the run says which, once
    (a log record, which the command line prints as one line)."""
    from hgrnn.console import show_logs_as_lines

    show_logs_as_lines()                                 # as the command line does
    assert ft.resolve_freeze_bn(None, 7)[0] is True
    assert ft.resolve_freeze_bn(None, 8)[0] is False
    assert ft.resolve_freeze_bn(False, 2)[0] is False and ft.resolve_freeze_bn(True, 50)[0]

    def running_mean(out):
        state = torch.load(out / "backbone.pt", weights_only=True)["backbone"]
        return state["Conv3d_1a_7x7.bn.running_mean"]

    runs = {}
    for name, kw in [("auto", {"freeze_bn": None}), ("update", {"freeze_bn": False})]:
        out = tmp_path / name
        ft.finetune_backbone(tiny_config(ava_fixture, out, steps=1, batch=2, **kw),
                             progress=True)
        runs[name] = (running_mean(out), json.loads((out / "config.json").read_text()))
    err = capsys.readouterr().err
    assert err.count("BatchNorm statistics frozen: 2 clip(s) per micro-batch < 8") == 1, err
    assert err.count("BatchNorm statistics updated as asked (--update-bn)") == 1, err
    assert runs["auto"][1]["freeze_bn_applied"] is True
    assert runs["update"][1]["freeze_bn_applied"] is False
    assert torch.equal(runs["auto"][0], torch.zeros_like(runs["auto"][0]))     # initial stats
    assert not torch.equal(runs["update"][0], runs["auto"][0])


def test_person_layer_is_shared_by_finetuning_and_extraction(ava_fixture, tmp_path):
    """A checkpoint fine-tuned at mixed_4f records it; extract-features at mixed_4f writes the
    model's own person features (and records the layer), at mixed_5c it refuses."""
    from hgrnn.data.ava import load_label_map
    from hgrnn.data.windows import FeatureStore
    from hgrnn.pipeline.extract import ExtractConfig, extract_features

    config = tiny_config(ava_fixture, tmp_path / "run", person_layer="mixed_4f")
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="RANDOM"):
        backbone, _, _ = load_backbone_none()
    model = ft.PersonActionModel(backbone, 3, 256, dropout=0.0, person_layer="mixed_4f")
    checkpoint = tmp_path / "backbone.pt"
    torch.save(ft.checkpoint_dict(model, config, load_label_map(config.label_map), 0), checkpoint)
    check_extraction_uses_checkpoint(ava_fixture, tmp_path, checkpoint, model, config)
    stored = FeatureStore(str(tmp_path / "finetuned.h5")).configs["extract"]
    assert stored["person_layer"] == "mixed_4f" and "Mixed_4f" in stored["person_pool"]
    with pytest.raises(ValueError, match="mixed_4f"):
        extract_features(ExtractConfig(
            out=str(tmp_path / "other.h5"), backbone_weights=str(checkpoint),
            videos=str(ava_fixture / "videos"), keyframes=(2, 2), clip_frames=8,
            short_side=64, workers=0, device="cpu", progress=False))
    # and finetune-backbone itself will not continue it at another layer
    with pytest.raises(ft.FinetuneError, match="person layer mixed_4f"):
        ft.finetune_backbone(tiny_config(ava_fixture, tmp_path / "again",
                                         backbone_weights=str(checkpoint)), progress=False)


def load_backbone_none():
    from hgrnn.pipeline.i3d import load_backbone
    return load_backbone("none")


def test_flow_stream_finetunes_on_extraction_flow_and_checkpoint_is_stream_checked(ava_fixture,
                                                                                   tmp_path):
    from hgrnn.pipeline.flow import FlowComputer, flow_to_input
    from hgrnn.pipeline.i3d import I3DWeightsError, load_backbone

    config = tiny_config(ava_fixture, tmp_path / "flow", stream="flow", flow="tvl1",
                         clip_frames=4, short_side=48, crop_size=48, batch=2, steps=2,
                         checkpoint_every=2)
    # the samples carry the flow of their augmented clip, computed as extraction does
    from hgrnn.data.ava import load_label_map

    kfs = ft.keyframes_from_csv(ava_fixture / "train.csv", load_label_map(config.label_map))
    sources = ft.resolve_sources(config, [k.video_id for k in kfs])
    flow = FlowComputer("tvl1")
    sample = next(iter(ft.ClipStream(kfs[:2], sources, config, flow=flow)))
    assert sample["flow"].shape == (3, 48, 48, 2) and sample["flow"].dtype == torch.float16
    np.testing.assert_allclose(sample["flow"].float().numpy(),
                               FlowComputer("tvl1")(sample["clip"][None])[0].numpy(), atol=1e-3)
    batch = ft.collate([sample])
    x = ft.network_input(batch["clips"], batch["flow"], config, None, "cpu")
    assert x.shape == (1, 2, 3, 48, 48)
    assert torch.equal(x, flow_to_input(batch["flow"].float()))
    # ... and the same input when the main process computes the flow (RAFT on a GPU)
    assert torch.allclose(ft.network_input(batch["clips"], None, config, flow, "cpu"), x,
                          atol=1e-3)

    result = ft.finetune_backbone(config, progress=False)
    assert result["steps"] == 2
    backbone, projection, meta = load_backbone(result["checkpoint"], stream="flow")
    assert meta["stream"] == "flow" and meta["feature_dim"] == 256
    assert backbone.Conv3d_1a_7x7.conv3d.in_channels == 2
    with pytest.raises(I3DWeightsError, match="a fine-tuning checkpoint of the flow stream, "
                                              "the rgb stream was asked for"):
        load_backbone(result["checkpoint"])
    with pytest.raises(ft.FinetuneError, match="stream='flow', now 'rgb'"):
        ft.finetune_backbone(tiny_config(ava_fixture, tmp_path / "flow", steps=3, clip_frames=4),
                             resume=True, progress=False)
    with pytest.raises(ValueError, match="stream must be 'rgb' or 'flow'"):
        tiny_config(ava_fixture, tmp_path / "x", stream="depth")


def test_an_existing_run_is_refused_naming_the_command_line_options(tmp_path):
    from hgrnn.pipeline.finetune import FinetuneConfig, FinetuneError, finetune_backbone

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "state.pt").write_bytes(b"")
    config = FinetuneConfig(annotations=str(tmp_path / "gt.csv"), out_dir=str(tmp_path / "run"),
                            videos=str(tmp_path), device="cpu")
    with pytest.raises(FinetuneError, match=r"already holds a fine-tuning run \(backbone.pt/"
                                            r"state.pt\); pass --resume to continue it or "
                                            r"choose another --out$"):
        finetune_backbone(config, progress=False)
