"""`hgrnn extract-features` end to end on tiny rendered videos with the real I3D (random weights
saved to a file, small input size), plus the sharding logic and a 2-process torchrun run.

The stored features are checked against an independent recomputation: decode the clip,
run the same backbone, average the map / RoIAlign the box (hgrnn.pipeline.i3d)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hgrnn.cli import main
from hgrnn.data.ava import load_label_map
from hgrnn.data.store import read_failures
from hgrnn.data.store_check import check_store
from hgrnn.data.keyframes import every_second, video_keyframes
from hgrnn.pipeline.extract import shard_items, shard_path
from hgrnn.pipeline.i3d import InceptionI3d, normalize_frames, person_features
from hgrnn.pipeline.render import render_frames, render_video
from hgrnn.data.video import VideoError, iter_clips

FPS = 10
SMALL = ["--clip-frames", "8", "--short-side", "64", "--batch-size", "8", "--workers", "0",
         "--quiet"]
GT_ROWS = [  # video, ts, box, action, person
    "vidA,1,0.050,0.100,0.450,0.900,12,0",
    "vidA,1,0.050,0.100,0.450,0.900,80,0",     # same box: one person, two labels
    "vidA,1,0.550,0.100,0.950,0.900,11,1",     # same size, other content
    "vidA,2,0.550,0.100,0.950,0.900,11,1",
    "vidA,2,0.550,0.100,0.950,0.900,17,1",
    "vidB,1,0.200,0.200,0.600,0.600,14,0",
    "broken,1,0.200,0.200,0.600,0.600,14,0",   # corrupt file
    "ghost,2,0.200,0.200,0.600,0.600,14,0",    # no file at all
]
DET_ROWS = [
    "vidA,1,0.050,0.100,0.450,0.900,,0.90",
    "vidA,1,0.600,0.100,0.900,0.900,,0.30",    # below --det-threshold 0.5
    "vidB,1,0.100,0.100,0.500,0.500,-1,0.70",
]



def run(args, expect=0):
    result = CliRunner().invoke(main, ["extract-features"] + [str(a) for a in args])
    assert result.exit_code == expect, (result.output, result.exception)
    return result


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random I3D weights in the piergiaj layout; convolutions He-initialised so that
    activations keep their scale through the 20 layers (PyTorch's default init shrinks them
    to ~1e-5, below float16's precision in the store)."""
    torch.manual_seed(0)
    model = InceptionI3d()
    for module in model.modules():
        if isinstance(module, torch.nn.Conv3d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    path = tmp_path_factory.mktemp("w") / "i3d_random.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def backbone(weights):
    model = InceptionI3d()
    model.load_state_dict(torch.load(weights, weights_only=True))
    return model.eval()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("in")
    render_video(root / "videos" / "vidA.mp4", seconds=3, fps=FPS, size=(96, 64))
    render_video(root / "videos" / "vidB.mkv", seconds=2, fps=FPS, size=(64, 64))
    (root / "videos" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 500)
    (root / "gt.csv").write_text("\n".join(GT_ROWS) + "\n")
    (root / "det.csv").write_text("\n".join(DET_ROWS) + "\n")
    return root


@pytest.fixture(scope="module")
def store(inputs, weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "store.h5"
    result = run(["--out", out, "--videos", inputs / "videos", "--annotations", inputs / "gt.csv",
                  "--detections", inputs / "det.csv", "--backbone-weights", weights,
                  "--json", out.with_suffix(".json"), "--det-threshold", "0.5"] + SMALL,
                 expect=1)                                     # two videos failed
    return out, result


def test_store_is_valid_and_failures_recorded(store):
    out, result = store
    assert check_store(out) == []
    inspect = CliRunner().invoke(main, ["inspect", str(out), "--check"])
    assert inspect.exit_code == 0, inspect.output
    failures = read_failures(out)
    assert set(failures) == {"broken", "ghost"}
    assert "broken.mp4: cannot open" in failures["broken"]
    assert failures["ghost"].startswith("missing")
    assert "FAILED broken" in result.output and "2 video(s) written" in result.output
    assert result.output.count("FAILED broken") == 1            # said once, not live + summary
    assert "{" not in result.output                               # JSON only with --json
    summary = __import__("json").loads(out.with_suffix(".json").read_text())
    assert summary["written"] == 2 and set(summary["failed"]) == {"broken", "ghost"}
    # the threshold's effect is said: one row of det.csv scores below 0.5
    assert summary["below_threshold"] == 1
    assert ("1 detection(s) of --detections scored below --det-threshold 0.5: dropped"
            in result.output)
    # one pass per video: vidA (30 frames, clips up to frame 23) and vidB (20 frames)
    decoded, needed = map(int, re.search(r"decoded (\d+) frames, (\d+) of them used by clips",
                                         result.output).groups())
    assert needed == 16 + 8 and decoded <= 30 + 20
    with h5py.File(out, "r") as f:
        assert sorted(f["videos"]) == ["vidA", "vidB"]
        assert f["videos/vidA"].attrs["width"] == 96 and f["videos/vidA"].attrs["height"] == 64
        config = __import__("json").loads(f.attrs["configs"])["extract"]
        assert config["clip_frames"] == 8 and config["backbone"]["kind"] == "kinetics-i3d"
        # what was used: Kinetics weights have no projection, a CSV needs no detector weights
        assert config["projection"] is False and config["detector_weights"] is None
        assert len(config["backbone"]["sha256"]) == 64


def test_gt_labels_and_det_boxes_match_the_csvs(store):
    out, _ = store
    lm = load_label_map("ava-v2.1")
    col = lm.column()
    with h5py.File(out, "r") as f:
        a = f["videos/vidA"]
        assert a["timestamps"][:].tolist() == [1, 2]
        assert a["gt/offsets"][:].tolist() == [0, 2, 3]
        np.testing.assert_allclose(a["gt/boxes"][:], [[0.05, 0.1, 0.45, 0.9],
                                                      [0.55, 0.1, 0.95, 0.9],
                                                      [0.55, 0.1, 0.95, 0.9]], atol=1e-6)
        labels = a["gt/labels"][:]
        expect = np.zeros_like(labels)
        expect[0, [col[12], col[80]]] = 1
        expect[1, col[11]] = 1
        expect[2, [col[11], col[17]]] = 1
        np.testing.assert_array_equal(labels, expect)
        assert a["gt/person_id"][:].tolist() == [0, 1, 1]
        # det: threshold 0.5 drops the 0.30 box; keyframe 2 has none
        assert a["det/offsets"][:].tolist() == [0, 1, 1]
        np.testing.assert_allclose(a["det/scores"][:], [0.9])
        b = f["videos/vidB"]
        np.testing.assert_allclose(b["det/boxes"][:], [[0.1, 0.1, 0.5, 0.5]], atol=1e-6)


def test_features_equal_an_independent_recomputation(store, inputs, backbone):
    out, _ = store
    with h5py.File(out, "r") as f:
        clip_stored = f["videos/vidA/clip"][:].astype(np.float32)
        gt_feats = f["videos/vidA/gt/feats"][:].astype(np.float32)
        det_feats = f["videos/vidA/det/feats"][:].astype(np.float32)
    clips = [c for _, c in iter_clips(inputs / "videos" / "vidA.mp4", [1, 2], 8, 1, 64)]
    with torch.no_grad():
        x = normalize_frames(np.stack(clips))                   # (2, 3, 8, 64, 96)
        fmap = backbone.extract_features(x)
        clip_ref = fmap.mean(dim=(2, 3, 4)).numpy()
        boxes = [torch.tensor([[0.05, 0.1, 0.45, 0.9], [0.55, 0.1, 0.95, 0.9]]),
                 torch.tensor([[0.55, 0.1, 0.95, 0.9]])]
        gt_ref = person_features(fmap, boxes, x.shape[-2:]).numpy()
    np.testing.assert_allclose(clip_stored, clip_ref, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(gt_feats, gt_ref, rtol=2e-3, atol=2e-3)
    # the det box of keyframe 1 is the first gt box: same features
    np.testing.assert_allclose(det_feats[0], gt_feats[0], rtol=1e-3, atol=1e-3)
    scale = np.abs(gt_feats).mean()
    assert scale > 1e-2                                     # features are not degenerate
    # a person feature changes when its box moves to other content
    assert np.abs(gt_feats[0] - gt_feats[1]).mean() > 0.05 * scale
    # ... and the same box over changed content (keyframe 1 vs 2) changes it too
    assert np.abs(gt_feats[1] - gt_feats[2]).mean() > 0.01 * scale


def test_clip_feature_sees_content_inside_its_window_only(tmp_path, weights):
    """Two JPEG frame folders identical except one white frame at 2.0 s: the keyframe whose
    clip window (frames c-4 .. c+3) holds it changes, its neighbours do not."""
    frames = tmp_path / "frames"
    render_frames(frames, "plain", seconds=4, fps=FPS, size=(64, 64))
    render_frames(frames, "flash", seconds=4, fps=FPS, size=(64, 64), flash_at=2.0)
    out = tmp_path / "s.h5"
    run(["--out", out, "--frames", frames, "--fps", FPS, "--keyframes", "1:3",
         "--backbone-weights", weights] + SMALL)
    with h5py.File(out, "r") as f:
        plain = f["videos/plain/clip"][:].astype(np.float32)
        flash = f["videos/flash/clip"][:].astype(np.float32)
    diff = np.abs(plain - flash).max(axis=1)            # per keyframe 1, 2, 3
    assert diff[1] > 0.05 * np.abs(plain).mean()
    assert diff[0] == 0 and diff[2] == 0


def test_killed_run_resumes_without_recomputing(tmp_path, inputs, weights, monkeypatch):
    import hgrnn.data.store as store_mod
    import hgrnn.pipeline.extract.loader as loader_mod

    videos = tmp_path / "videos"
    videos.mkdir()
    for vid in ("v1", "v2"):
        shutil.copy(inputs / "videos" / "vidB.mkv", videos / f"{vid}.mkv")
    out = tmp_path / "s.h5"
    args = ["--out", out, "--videos", videos, "--keyframes", "1:1", "--backbone-weights",
            weights] + SMALL

    original = store_mod.StoreWriter.add_video
    calls = []

    def dying_add_video(self, video_id, *a, **k):
        if calls:
            raise KeyboardInterrupt("killed")               # dies while writing the 2nd video
        calls.append(video_id)
        return original(self, video_id, *a, **k)

    monkeypatch.setattr(store_mod.StoreWriter, "add_video", dying_add_video)
    result = CliRunner().invoke(main, ["extract-features"] + [str(a) for a in args])
    assert result.exit_code == 1 and "Aborted" in result.output   # click's answer to ^C
    monkeypatch.setattr(store_mod.StoreWriter, "add_video", original)
    with h5py.File(out, "r") as f:
        assert [v for v in f["videos"] if f["videos"][v].attrs.get("complete")] == ["v1"]
        digest = f["videos/v1"].attrs["digest"]

    decoded = []
    real_iter_clips = loader_mod.iter_clips
    monkeypatch.setattr(loader_mod, "iter_clips",
                        lambda path, *a, **k: decoded.append(Path(path).stem) or real_iter_clips(path, *a, **k))
    result = run(args)
    assert decoded == ["v2"]
    assert "1 video(s) written" in result.output and "1 already complete" in result.output
    with h5py.File(out, "r") as f:
        assert sorted(f["videos"]) == ["v1", "v2"]
        assert f["videos/v1"].attrs["digest"] == digest
    assert check_store(out) == []
    # a third run has nothing to do
    decoded.clear()
    result = run(args)
    assert decoded == [] and "2 already complete" in result.output
    # resuming with other feature settings would mix two kinds of features: refused
    other = [a if a != "64" else "96" for a in args]            # --short-side 96
    result = run(other, expect=1)
    assert "short_side 64 -> 96" in result.output and str(out) in result.output
    assert decoded == []


def test_every_second_and_faster_rcnn_detector_with_workers(tmp_path, inputs, weights):
    out = tmp_path / "s.h5"
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(inputs / "videos" / "vidB.mkv", videos / "only.mkv")
    with pytest.warns(UserWarning, match="random Faster R-CNN"):
        run(["--out", out, "--videos", videos, "--detector", "faster-rcnn",
             "--detector-weights", "none", "--det-threshold", "0.0", "--det-short-side", "64",
             "--backbone-weights", weights, "--clip-frames", "8", "--short-side", "64",
             "--workers", "1", "--quiet"])
    with h5py.File(out, "r") as f:
        v = f["videos/only"]
        assert v["timestamps"][:].tolist() == [0, 1]          # a 2 s video: keyframes 0 s, 1 s
        assert "gt" not in v and v["det/offsets"].shape == (3,)
        n = int(v["det/offsets"][-1])
        assert v["det/feats"].shape == (n, 1024) and (v["det/scores"][:] >= 0).all()
    assert check_store(out) == []


def test_too_short_video_is_a_failure_and_allow_failures(tmp_path, inputs, weights):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(inputs / "videos" / "vidB.mkv", videos / "short.mkv")
    args = ["--out", tmp_path / "s.h5", "--videos", videos, "--keyframes", "2:2",
            "--backbone-weights", weights] + SMALL
    result = run(args, expect=1)
    assert "1 failed" in result.output
    failures = read_failures(tmp_path / "s.h5")
    # 2 s video, keyframe at 2 s: outside the video, the only one -> the video fails
    assert "short.mkv: 1 of 1 keyframes outside the video (2.0 s long)" in failures["short"]
    run(args + ["--allow-failures"], expect=0)              # retried, fails again, exit 0


def test_sharding_helpers_and_picklable_dataset():
    import pickle

    from hgrnn.pipeline.extract import ClipDataset, ExtractConfig, VideoPlan

    ds = ClipDataset([VideoPlan("v", "/x/v.mp4", [1, 2])], ExtractConfig(out="o.h5", backbone_weights="none",
                                                                      videos="/x"))
    assert pickle.loads(pickle.dumps(ds)).plans[0].timestamps == [1, 2]   # spawn-started workers
    assert shard_path("/x/ava_val.h5", 3) == "/x/ava_val.rank3.h5"
    items = list("abcdefg")
    parts = [shard_items(items, r, 3) for r in range(3)]
    assert sorted(sum(parts, [])) == items and parts[0] == ["a", "d", "g"]
    assert every_second(3.0, 10, 0) == [0, 1, 2]
    assert every_second(3.0, 10, 900) == [900, 901, 902]
    assert every_second(2.95, 10, 0.0) == [0, 1, 2]


def test_each_torchrun_rank_gets_its_own_gpu():
    from hgrnn.pipeline.extract import Dist, device_for

    rank3 = Dist(rank=3, world=4, local_rank=3, active=True)
    assert device_for("cuda", rank3, True) == torch.device("cuda:3")  # not every rank on GPU 0
    assert device_for("auto", rank3, True) == torch.device("cuda:3")
    assert device_for("auto", rank3, False) == torch.device("cpu")
    assert device_for("cuda:1", rank3, True) == torch.device("cuda:1")  # explicit: as given
    assert device_for("cuda", Dist(), True) == torch.device("cuda")
    assert device_for("cpu", rank3, True) == torch.device("cpu")


@pytest.mark.slow
def test_torchrun_two_processes_write_shards_and_merge(tmp_path, inputs, weights):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed next to python")
    videos = tmp_path / "videos"
    videos.mkdir()
    for vid in ("r1", "r2", "r3"):
        shutil.copy(inputs / "videos" / "vidB.mkv", videos / f"{vid}.mkv")
    out = tmp_path / "s.h5"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "hgrnn.cli",
         "extract-features", "--out", str(out), "--videos", str(videos), "--keyframes", "1:1",
         "--backbone-weights", str(weights)] + SMALL,
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with h5py.File(out, "r") as f:
        assert sorted(f["videos"]) == ["r1", "r2", "r3"]
    assert not list(tmp_path.glob("s.rank*.h5"))
    assert check_store(out) == []
    assert "3 video(s) written" in proc.stdout and "on 2 ranks" in proc.stdout


def test_annotation_csv_errors_before_any_work(tmp_path, inputs):
    """The same action-id rule as eval-csv (an id that is no AVA action and not in the
    label map: FILE:LINE error naming the ids); an empty annotation file is an error, not
    an empty store."""
    bad = tmp_path / "bad.csv"
    bad.write_text("vidA,1,0.1,0.1,0.5,0.5,12,0\nvidA,1,0.1,0.1,0.5,0.5,120,0\n")
    r = run(["--out", tmp_path / "s.h5", "--videos", inputs / "videos", "--annotations", bad,
             "--backbone-weights", "none"] + SMALL, expect=1)
    assert "bad.csv:2: unknown action id 120" in r.output and "--label-map" in r.output
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    r = run(["--out", tmp_path / "s.h5", "--videos", inputs / "videos", "--annotations", empty,
             "--backbone-weights", "none"] + SMALL, expect=1)
    assert "empty.csv: no annotated keyframe" in r.output
    assert not (tmp_path / "s.h5").exists()


def test_summary_counts_rows_outside_the_label_map():
    from hgrnn.pipeline.extract import format_summary
    s = {"out": "x.h5", "written": 1, "keyframes": 2, "persons": {"gt": 2, "det": 0},
         "skipped": 0, "failed": {}, "seconds": 1.0, "needed_frames": 0,
         "rows_outside_label_map": {"annotations": 3}}
    assert "3 annotations row(s) with actions outside the label map" in format_summary(s)


def test_keyframes_outside_a_video_are_skipped_and_reported(tmp_path, inputs, weights):
    # vidA is 3 s long: 5 and 9 lie past its end; vidB (2 s) only has AVA-style timestamps
    (tmp_path / "gt.csv").write_text(
        "vidA,1,0.1,0.1,0.5,0.9,12,0\nvidA,2,0.1,0.1,0.5,0.9,12,0\n"
        "vidA,5,0.1,0.1,0.5,0.9,12,0\nvidA,9,0.1,0.1,0.5,0.9,12,0\n"
        "vidB,901,0.1,0.1,0.5,0.9,12,0\n")
    out = tmp_path / "s.h5"
    args = ["--out", out, "--videos", inputs / "videos", "--annotations", tmp_path / "gt.csv",
            "--backbone-weights", weights, "--clip-frames", "24"] + SMALL[2:]
    result = run(args, expect=1)                                  # vidB failed
    assert f"skipped {inputs / 'videos' / 'vidA.mp4'}: 2 of 4 keyframes outside the video " \
           f"(3.0 s long) at --time-offset 0: 5, 9" in result.output
    assert "spans 2.4 s at 10 fps" in result.output               # --clip-frames 24 at 10 fps
    assert result.output.count("spans 2.4 s") == 1                # one warning per run
    failures = read_failures(out)
    assert "1 of 1 keyframes outside the video" in failures["vidB"]
    assert "--time-offset 900 would fit" in failures["vidB"]
    with h5py.File(out, "r") as f:
        assert f["videos/vidA/timestamps"][:].tolist() == [1, 2]
    assert "skipped 2 keyframes outside their video in 1 video(s): vidA (2)" in result.output


def test_video_keyframes_skips_those_outside_and_refuses_a_video_with_none_inside():
    # the rule extract-features and detect share; 3 s at 10 fps: frames 0..29
    info = {"fps": 10.0, "duration": 3.0}
    assert video_keyframes("v.mp4", None, info, 900) == ([900, 901, 902], [], None)
    assert video_keyframes("v.mp4", [900, 902], info, 900) == ([900, 902], [], None)
    inside, outside, warning = video_keyframes("v.mp4", [903, 899, 901], info, 900)
    assert (inside, outside) == ([901], [903, 899])
    assert warning == ("v.mp4: 2 of 3 keyframes outside the video (3.0 s long) at "
                       "--time-offset 900: 903, 899")
    with pytest.raises(VideoError, match=r"^v\.mp4: 1 of 1 keyframes outside .* --time-offset "
                                         r"902 would fit"):
        video_keyframes("v.mp4", [904], info, 0)
    with pytest.raises(VideoError, match=r"^v\.mp4: duration unknown"):
        video_keyframes("v.mp4", None, {"fps": 10.0, "duration": float("nan")}, 0)


def test_keyframes_are_the_union_of_annotated_and_detected_and_exclusions_are_stored(
        tmp_path, inputs, weights):
    """A detected keyframe without ground truth is extracted (its detections are false
    positives the official evaluation counts); the summary says where keyframes came from;
    the --exclusions file goes into the store's config and `eval` applies it by default."""
    import json

    from hgrnn.data.windows import FeatureStore
    from hgrnn.hgrnn_head.infer import evaluate_store
    from hgrnn.hgrnn_head.model import HeadConfig
    from hgrnn.hgrnn_head.train import TrainConfig, train_head
    from hgrnn.pipeline.extract import union_keyframes

    keyframes, origin = union_keyframes({"a": {1, 2}, "b": {5}}, {"a": {0, 1}, "c": {3}})
    assert keyframes == {"a": [0, 1, 2], "b": [5], "c": [3]}
    assert origin["a"] == {0: "detected only", 1: "annotated and detected", 2: "annotated only"}

    (tmp_path / "gt.csv").write_text("\n".join(GT_ROWS[:6]) + "\n")     # vidA 1, 2; vidB 1
    (tmp_path / "det.csv").write_text("vidA,0,0.1,0.1,0.5,0.9,,0.95\n"   # no ground truth
                                      "vidA,1,0.05,0.1,0.45,0.9,,0.9\n"
                                      "vidB,1,0.1,0.1,0.5,0.5,,0.85\n")
    (tmp_path / "excl.csv").write_text("vidA,2\n")
    out = tmp_path / "s.h5"
    result = run(["--out", out, "--videos", inputs / "videos", "--annotations",
                  tmp_path / "gt.csv", "--detections", tmp_path / "det.csv", "--exclusions",
                  tmp_path / "excl.csv", "--backbone-weights", weights,
                  "--json", tmp_path / "summary.json"] + SMALL)
    assert "keyframes written: 2 annotated and detected, 1 detected only" in result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["keyframe_origins"]["detected only"] == 1
    store = FeatureStore(out, "det")
    assert store.kf_time[store.video_kf_offsets[0]:store.video_kf_offsets[1]].tolist() == [0, 1]
    entry = store.configs["extract"]["excluded_keyframes"]
    assert entry["keyframes"] == [["vidA", 2]] and len(entry["sha256"]) == 64

    run_dir = train_head(str(out), tmp_path / "run", HeadConfig(context=1, scene_hidden=4,
                                                                graph_hidden=4),
                         TrainConfig(steps=1, batch_size=2, device="cpu", val_every=0),
                         progress=False)
    by_default = evaluate_store(out, run_dir["checkpoint"], gt_csv=tmp_path / "gt.csv",
                                out_dir=tmp_path / "ev", progress=False)
    none = evaluate_store(out, run_dir["checkpoint"], gt_csv=tmp_path / "gt.csv",
                          exclusions=set(), progress=False)
    # vidA,2 holds two ground-truth actions: excluded by default, missed without exclusions
    assert by_default.counts != none.counts
    report = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert report["configs"]["eval"]["exclusions"]["keyframes"] == 1
    assert "from the store" in report["configs"]["eval"]["exclusions"]["source"]


def test_one_detection_threshold():
    from hgrnn.pipeline.defaults import DEFAULT_DET_THRESHOLD
    from hgrnn.pipeline.extract import ExtractConfig

    option = {p.name: p for p in main.commands["extract-features"].params}["det_threshold"]
    assert option.default == DEFAULT_DET_THRESHOLD == ExtractConfig("o", "w").det_threshold == 0.8


def test_a_second_writer_is_refused_naming_the_first(tmp_path, inputs, weights):
    """A store being written by another process: extract-features names that process (the
    store's writer lock is taken before the resume check opens the file)."""
    out = tmp_path / "s.h5"
    args = ["--out", out, "--videos", inputs / "videos", "--keyframes", "1:1",
            "--backbone-weights", weights] + SMALL
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from hgrnn.data.ava import load_label_map; "
         "from hgrnn.data.store import StoreWriter; "
         "w = StoreWriter(sys.argv[1], feature_dim=1024, label_map=load_label_map('ava-v2.1')); "
         "print('ready', flush=True); time.sleep(60)", str(out)],
        stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    try:
        assert holder.stdout.readline().strip() == "ready"
        result = run(args, expect=1)
    finally:
        holder.kill()
        holder.wait()
    assert f"is being written by another process (pid {holder.pid}" in result.output
    assert "locked by another process" not in result.output


def test_option_defaults_are_the_config_defaults():
    """Every option that sets a config field shows and uses that field's default (read from
    the dataclass by `options.default_of`, so it is written once)."""
    import dataclasses

    import click

    from hgrnn.data.source import VideoSource
    from hgrnn.pipeline.detect_config import DetectConfig, DetectorArch
    from hgrnn.pipeline.extract import ExtractConfig

    def check(command, config, names=None):
        params = {p.name: p for p in main.commands[command].params}
        fields = {f.name: f for f in dataclasses.fields(config)}
        checked = [n for n in (names or fields) if n in params
                   and fields[n].default is not dataclasses.MISSING]
        for name in checked:
            default = fields[name].default
            if name == "streams":
                default = ",".join(default)
            got = params[name].default
            if got is getattr(click.core, "UNSET", None):            # no default: None
                got = None
            assert got == default, (command, name)
        return checked

    assert len(check("extract-features", ExtractConfig)) >= 20
    # the clip settings default to the backbone's (None in the config); check-data shows I3D's
    from hgrnn.pipeline.backbones import input_settings
    data_params = {p.name: p.default for p in main.commands["check-data"].params}
    assert data_params["clip_frames"] == input_settings("i3d")["clip_frames"]
    assert data_params["frame_stride"] == input_settings("i3d")["frame_stride"]
    assert len(check("predict", ExtractConfig)) >= 15
    assert len(check("detect", DetectConfig)) >= 8
    arch = [f.name for f in dataclasses.fields(DetectorArch) if f.name != "trainable_layers"]
    assert len(check("finetune-detector", DetectorArch, arch)) == 8  # layers: None = by init
    for command in ("extract-features", "detect", "finetune-backbone", "finetune-detector",
                    "check-data", "predict"):
        assert check(command, VideoSource) and "time_offset" in check(command, VideoSource)


def test_the_cli_imports_neither_torch_nor_numpy():
    """The configs the options read their defaults from stay light (`hgrnn --help`)."""
    probe = ("import sys, hgrnn.cli; "
             "print(sorted(m for m in ('torch', 'numpy', 'h5py') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
                         check=True).stdout
    assert out.strip() == "[]"


def test_a_store_with_the_flat_video_keys_resumes_and_inspects(tmp_path):
    """The VideoSource fields stay flat keys of the stored extract config (fps,
    time_offset), so stores written before VideoSource existed resume and inspect."""
    from hgrnn.data.store import StoreWriter
    from hgrnn.pipeline.extract import ExtractConfig, check_resume_settings, stage_config

    cfg = ExtractConfig(out=str(tmp_path / "s.h5"), backbone_weights="none", videos="v",
                        time_offset=900.0, clip_frames=8)
    meta = {"kind": "random", "path": None, "sha256": None, "feature_dim": 1024, "seed": 0}
    stage = stage_config(cfg, meta, None, 1024, False)
    assert stage["time_offset"] == 900.0 and stage["fps"] is None and "source" not in stage
    # the key order of a store written before: out, backbone_weights, videos, frames, fps,
    # time_offset, annotations, ... (the flat fields, videos/frames left out as run-only)
    old = {"backbone_weights": "none", "fps": None, "time_offset": 900.0,
           **{k: v for k, v in stage.items() if k not in ("backbone_weights", "fps",
                                                          "time_offset")}}
    with StoreWriter(cfg.out, feature_dim=1024, label_map=load_label_map("ava-v2.1"),
                     configs={"extract": old}):
        pass
    check_resume_settings([cfg.out], stage)                       # same settings: resumes
    moved = stage_config(ExtractConfig(out=cfg.out, backbone_weights="none", videos="v",
                                       time_offset=0.0, clip_frames=8), meta, None, 1024, False)
    with pytest.raises(ValueError, match="time_offset 900.0 -> 0.0"):
        check_resume_settings([cfg.out], moved)
    result = CliRunner().invoke(main, ["inspect", cfg.out])
    assert result.exit_code == 0 and "900" in result.output, result.output


def test_resume_ignores_flow_weights_for_tvl1_flow_only(tmp_path):
    """--flow-weights are RAFT's (help: ignored for tvl1): a TV-L1 store resumes whatever
    they say; a RAFT store does not."""
    from hgrnn.data.store import StoreWriter
    from hgrnn.pipeline.extract import ExtractConfig, check_resume_settings, stage_config

    meta = {"kind": "random", "path": None, "sha256": None, "feature_dim": 1024, "seed": 0}

    def stage(flow, flow_weights):
        cfg = ExtractConfig(out=str(tmp_path / f"{flow}.h5"), backbone_weights="none",
                            flow_backbone_weights="none", videos="v", streams=("rgb", "flow"),
                            flow=flow, flow_weights=flow_weights)
        return cfg.out, stage_config(cfg, meta, None, 2048, False, flow_backbone_meta=meta,
                                     flow_meta={"method": flow})

    for flow in ("tvl1", "raft"):
        out, first = stage(flow, "default")
        with StoreWriter(out, feature_dim=2048, label_map=load_label_map("ava-v2.1"),
                         configs={"extract": first}):
            pass
        _, other = stage(flow, "none")
        if flow == "tvl1":
            check_resume_settings([out], other)
        else:
            with pytest.raises(ValueError, match="flow_weights 'default' -> 'none'"):
                check_resume_settings([out], other)


def test_resample_fps_samples_clips_at_that_rate_and_is_a_feature_setting(tmp_path, weights):
    """Issue 28: --resample-fps (clips of one span in videos of any rate) changes the clips,
    is recorded in the store config, and resume and merge-stores refuse another value."""
    from hgrnn.data.store import StoreError, open_h5, read_info
    from hgrnn.data.store_merge import merge_stores

    frames = tmp_path / "frames"
    render_frames(frames, "v", seconds=4, fps=FPS, size=(64, 64))
    common = ["--frames", frames, "--fps", FPS, "--keyframes", "1:3", "--backbone-weights",
              weights] + SMALL
    run(["--out", tmp_path / "plain.h5"] + common)
    run(["--out", tmp_path / "r30.h5", "--resample-fps", 30] + common)
    clips, configs = {}, {}
    for name in ("plain", "r30"):
        with open_h5(tmp_path / f"{name}.h5") as f:
            clips[name] = f["videos/v/clip"][:].astype(np.float32)
            configs[name] = read_info(f, name).configs["extract"]
    assert configs["plain"]["resample_fps"] is None and configs["r30"]["resample_fps"] == 30
    # 8 frames at 30 fps span 0.27 s of the 10 fps video, not 0.8 s: other clips
    assert np.abs(clips["plain"] - clips["r30"]).max() > 0.01 * np.abs(clips["plain"]).mean()
    result = run(["--out", tmp_path / "r30.h5", "--resample-fps", 25] + common, expect=1)
    assert "resample_fps 30.0 -> 25.0" in result.output
    with pytest.raises(StoreError, match="resample_fps"):
        merge_stores(tmp_path / "m.h5", [tmp_path / "plain.h5", tmp_path / "r30.h5"],
                     progress=False)
