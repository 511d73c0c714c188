"""`hgrnn detect` and the shared detection path (`hgrnn.pipeline.detect`): the detection
function on a stub model, initial weights, checkpoints (and the refusal of a
finetune-backbone checkpoint), the person-box CSV (read back by `read_results`, consumed by
`extract-features --detections`, equal to `extract-features --detector`), resume and
failures. Detectors are small random ResNet-18 models: the boxes are meaningless, the
plumbing is what is checked (learning is checked in test_detector_train.py)."""

import json
import re

import h5py
import numpy as np
import pytest
import torch
from detector_data import make_videos, run_cli as run

from hgrnn.data.ava import read_results
from hgrnn.pipeline import detect as dt
from hgrnn.pipeline.detect import DetectorArch, DetectorError
from hgrnn.track import track_rows

# random I3D weights in the extraction runs are the point; the warning is tested elsewhere
pytestmark = pytest.mark.filterwarnings("ignore:I3D .*backbone weights")

TINY = DetectorArch(backbone="resnet18", norm="batch", trainable_layers=5, min_size=64,
                    max_size=96, proposals_train=64, proposals_test=32, roi_batch=16,
                    box_head_dim=64, fpn_dim=32)



@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("det")
    videos, _ = make_videos(root, ["vidA", "vidB"], [1, 2], seconds=3, size=(96, 64))
    (videos / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 500)
    torch.manual_seed(0)
    model, _ = dt.build_detector(TINY)
    ckpt = root / "detector.pt"
    torch.save({"format": dt.DETECTOR_FORMAT, "version": dt.DETECTOR_VERSION,
                "arch": TINY.__dict__, "model": model.state_dict(), "config": "{}", "step": 0,
                "val": None}, ckpt)
    return root, videos, ckpt


# ----------------------------------------------------------------------------- the function

class StubModel(torch.nn.Module):
    """Returns fixed torchvision-style outputs (pixel boxes, scores, labels) per image."""

    def __init__(self, outputs):
        super().__init__()
        self.outputs = outputs

    def forward(self, images):
        assert all(img.dtype == torch.float32 and img.max() <= 1 for img in images)
        return self.outputs[:len(images)]


def test_detect_persons_keeps_persons_above_min_score_best_first_normalised():
    out = {"boxes": torch.tensor([[0., 0, 50, 20], [10, 10, 100, 40], [5, 5, 20, 20],
                                  [0, 0, 100, 50]]),
           "scores": torch.tensor([0.3, 0.9, 0.95, 0.6]),
           "labels": torch.tensor([1, 1, 2, 1])}                # label 2: not a person
    det = dt.PersonDetector(StubModel([out]), torch.device("cpu"), 50, {})
    image = np.zeros((50, 100, 3), np.uint8)                     # H 50, W 100
    [res] = dt.detect_persons(det, [image], min_score=0.5, max_persons=5)
    np.testing.assert_allclose(res["scores"], [0.9, 0.6])
    np.testing.assert_allclose(res["boxes"], [[0.1, 0.2, 1.0, 0.8], [0, 0, 1, 1]])
    [res] = dt.detect_persons(det, [image], min_score=0.0, max_persons=1)
    np.testing.assert_allclose(res["scores"], [0.9])
    assert dt.detect_persons(det, []) == []


def test_format_rows_is_the_person_box_csv_read_results_reads(tmp_path):
    dets = [{"boxes": np.array([[0.1, 0.2, 0.5, 0.9]], np.float32),
             "scores": np.array([0.875], np.float32)},
            {"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0, np.float32)}]
    text = dt.format_rows("v1", [902, 903], dets)
    assert text == "v1,0902,0.1000,0.2000,0.5000,0.9000,,0.875000\n"
    (tmp_path / "d.csv").write_text(text)
    rows = read_results(tmp_path / "d.csv", progress=False)
    assert rows.action_ids.tolist() == [-1] and rows.timestamps.tolist() == [902]
    np.testing.assert_allclose(rows.scores, [0.875])


# ----------------------------------------------------------------------------- weights

def test_person_predictor_cuts_coco_to_background_and_person():
    state = {"roi_heads.box_predictor.cls_score.weight": torch.arange(91 * 3.).reshape(91, 3),
             "roi_heads.box_predictor.cls_score.bias": torch.arange(91.),
             "roi_heads.box_predictor.bbox_pred.weight": torch.arange(364 * 3.).reshape(364, 3),
             "roi_heads.box_predictor.bbox_pred.bias": torch.arange(364.),
             "backbone.x": torch.ones(2)}
    out = dt.person_predictor(state)
    assert out["roi_heads.box_predictor.cls_score.bias"].tolist() == [0, 1]
    assert out["roi_heads.box_predictor.bbox_pred.bias"].tolist() == list(range(8))
    assert torch.equal(out["roi_heads.box_predictor.cls_score.weight"],
                       state["roi_heads.box_predictor.cls_score.weight"][:2])
    assert out["backbone.x"] is state["backbone.x"]
    with pytest.raises(DetectorError, match="not a torchvision Faster R-CNN"):
        dt.person_predictor({"a": torch.ones(1)}, "x.pth")


def test_imagenet_init_from_a_local_resnet_file(tmp_path):
    import torchvision

    torch.manual_seed(1)
    resnet = torchvision.models.resnet18()
    torch.save(resnet.state_dict(), tmp_path / "resnet18.pth")
    arch = DetectorArch(backbone="resnet18", min_size=64, max_size=96, box_head_dim=64)
    model, meta = dt.build_detector(arch, init="imagenet", init_weights=tmp_path / "resnet18.pth")
    assert torch.equal(model.backbone.body.layer3[0].conv1.weight, resnet.layer3[0].conv1.weight)
    assert torch.equal(model.backbone.body.bn1.running_var, resnet.bn1.running_var)
    assert meta["init"] == "imagenet" and len(meta["sha256"]) == 64
    # frozen BatchNorm, stages conv1 and layer1 frozen (3 trainable layers)
    assert not model.backbone.body.layer1[0].conv1.weight.requires_grad
    assert model.backbone.body.layer2[0].conv1.weight.requires_grad
    torch.save({"fc.weight": torch.ones(3)}, tmp_path / "bad.pth")
    with pytest.raises(DetectorError, match="bad.pth: does not fit torchvision's resnet18"):
        dt.build_detector(arch, init="imagenet", init_weights=tmp_path / "bad.pth")
    with pytest.raises(DetectorError, match="resnet50 only"):
        dt.build_detector(arch, init="coco")


def test_checkpoint_loads_with_its_arch_and_finetune_backbone_checkpoint_is_refused(data, tmp_path):
    from hgrnn.data.ava import load_label_map
    from hgrnn.pipeline import finetune as ft
    from hgrnn.pipeline.i3d import InceptionI3d

    _, _, ckpt = data
    det = dt.load_person_detector(str(ckpt), min_score=0.0)
    assert det.short_side == 64 and det.meta["kind"] == "checkpoint"
    assert det.meta["arch"]["backbone"] == "resnet18" and not det.model.training
    # a finetune-backbone checkpoint (the I3D features) is not a detector
    lm = load_label_map("ava-v2.1")
    cfg = ft.FinetuneConfig(annotations="-", out_dir="-", videos="-")
    i3d = ft.checkpoint_dict(ft.PersonActionModel(InceptionI3d(), len(lm)), cfg, lm, 0)
    torch.save(i3d, tmp_path / "backbone.pt")
    with pytest.raises(DetectorError, match="is a finetune-backbone checkpoint"):
        dt.load_person_detector(str(tmp_path / "backbone.pt"))
    torch.save({"conv.weight": torch.ones(1)}, tmp_path / "other.pt")
    with pytest.raises(DetectorError, match="not a finetune-detector checkpoint"):
        dt.load_person_detector(str(tmp_path / "other.pt"))
    root, videos, _ = data
    for command in (["detect", "--out", tmp_path / "x.csv"],
                    ["extract-features", "--out", tmp_path / "x.h5", "--backbone-weights",
                     "none", "--workers", "0"]):
        result = run(command + ["--videos", videos, "--keyframes", "0:1", "--detector",
                                tmp_path / "backbone.pt", "--quiet"], expect=1)
        assert "is a finetune-backbone checkpoint (I3D features), not a person detector" \
            in result.output
        assert "Traceback" not in result.output


def test_a_damaged_detector_checkpoint_or_weights_file_is_one_line(data, tmp_path):
    _, videos, ckpt = data
    bad = tmp_path / "detector.pt"
    bad.write_bytes(ckpt.read_bytes()[:1000])                     # truncated
    for load in (lambda: dt.load_person_detector(str(bad)),
                 lambda: dt.build_detector(TINY, init="imagenet", init_weights=bad)):
        with pytest.raises(DetectorError, match=f"^{bad}: not a readable .*, truncated or "
                                                f"damaged") as err:
            load()
        assert "\n" not in str(err.value) and "weights_only" not in str(err.value)
    result = run(["detect", "--out", tmp_path / "x.csv", "--videos", videos, "--keyframes",
                  "0:1", "--detector", bad, "--quiet"], expect=1)
    assert f"{bad}: not a readable detector checkpoint, truncated or damaged" in result.output
    assert "Traceback" not in result.output


# ----------------------------------------------------------------------------- hgrnn detect

def detect_args(data, out, *extra):
    root, videos, ckpt = data
    return ["detect", "--out", out, "--videos", videos, "--keyframes", "0:2", "--detector",
            ckpt, "--min-score", "0", "--max-persons", "5", "--workers", "0", "--quiet",
            *extra]


def test_detect_writes_person_box_csv_records_failures_and_resumes(data, tmp_path):
    out = tmp_path / "boxes.csv"
    result = run(detect_args(data, out), expect=1)             # broken.mp4 fails
    assert "FAILED broken" in result.output and "2 video(s) written" in result.output
    lines = out.read_text().splitlines()
    assert lines and all(re.fullmatch(r"vid[AB],000[0-2](,0\.\d{4}|,1\.0000){4},,\d\.\d{6}", l)
                         for l in lines)
    rows = read_results(out, progress=False)
    assert set(rows.video_ids.tolist()) == {"vidA", "vidB"}
    assert (rows.action_ids == -1).all() and rows.scores.max() <= 1
    for vid in ("vidA", "vidB"):                               # at most 5 per keyframe
        counts = np.unique(rows.timestamps[rows.video_ids == vid], return_counts=True)[1]
        assert counts.max() <= 5
    record = [json.loads(x) for x in dt.progress_path(out).read_text().splitlines()]
    assert record[0]["settings"]["min_score"] == 0.0
    status = {r["video"]: r["status"] for r in record[1:]}
    assert status == {"vidA": "done", "vidB": "done", "broken": "failed"}

    # an interrupted video's rows are cut; done videos skipped, the failed one retried
    before = out.read_text()
    with open(out, "a") as f:
        f.write("vidC,0001,0.1,0.1,0.2,0.2,,0.5\n")
    result = run(detect_args(data, out, "--allow-failures"))
    assert "2 already complete" in result.output and "1 failed" in result.output
    assert out.read_text() == before
    # other settings: refused, the file is left alone
    result = run(detect_args(data, out, "--min-score", "0.5"), expect=1)
    assert "other settings (min_score 0.0 -> 0.5)" in result.output
    assert out.read_text() == before


def test_detect_writes_its_summary_as_json_only_when_asked(data, tmp_path):
    out, summary = tmp_path / "boxes.csv", tmp_path / "summary.json"
    result = run(detect_args(data, out, "--json", summary), expect=1)
    assert not any(line.startswith("{") for line in result.stdout.splitlines())
    assert "2 video(s) written" in result.stdout                  # the summary is the output
    said = json.loads(summary.read_text())
    assert (said["out"], said["written"], sorted(said["failed"])) == (str(out), 2, ["broken"])
    assert said["keyframes"] == 6 and said["boxes"] == len(out.read_text().splitlines())
    result = run(detect_args(data, tmp_path / "again.csv"), expect=1)
    assert not any(line.startswith("{") for line in result.stdout.splitlines())


def test_detect_csv_feeds_extract_features_and_equals_extract_with_the_detector(data, tmp_path):
    root, videos, ckpt = data
    out = tmp_path / "boxes.csv"
    run(detect_args(data, out), expect=1)
    common = ["--videos", videos, "--keyframes", "0:2", "--backbone-weights", "none",
              "--clip-frames", "8", "--short-side", "64", "--det-threshold", "0",
              "--max-persons", "5", "--workers", "0", "--allow-failures", "--quiet"]
    run(["extract-features", "--out", tmp_path / "from_csv.h5", "--detections", out] + common)
    run(["extract-features", "--out", tmp_path / "from_det.h5", "--detector", ckpt,
         "--det-short-side", "64"] + common)
    rows = read_results(out, progress=False)
    with h5py.File(tmp_path / "from_csv.h5", "r") as a, h5py.File(tmp_path / "from_det.h5", "r") as b:
        for vid in ("vidA", "vidB"):
            mine = rows.video_ids == vid
            assert len(a[f"videos/{vid}/det/boxes"]) == mine.sum() > 0
            # the same detection function, the same keyframe images: the same boxes
            np.testing.assert_allclose(b[f"videos/{vid}/det/boxes"][:],
                                       a[f"videos/{vid}/det/boxes"][:], atol=6e-5)
            np.testing.assert_allclose(b[f"videos/{vid}/det/scores"][:],
                                       a[f"videos/{vid}/det/scores"][:], atol=6e-7)
            assert b[f"videos/{vid}/det/offsets"][:].tolist() == \
                a[f"videos/{vid}/det/offsets"][:].tolist()


def test_detect_track_writes_ids_that_extract_features_keeps(data, tmp_path):
    _, videos, _ = data
    plain, tracked = tmp_path / "boxes.csv", tmp_path / "tracked.csv"
    run(detect_args(data, plain), expect=1)
    run(detect_args(data, tracked, "--track"), expect=1)
    # the same boxes, then a 9th column: the ids hgrnn.track gives the untracked file
    untracked_lines = plain.read_text().splitlines()
    lines = tracked.read_text().splitlines()
    assert [line.rsplit(",", 1)[0] for line in lines] == untracked_lines
    rows = read_results(tracked, progress=False)
    assert rows.person_ids.tolist() == track_rows(read_results(plain, progress=False))[0].tolist()
    # resuming without --track would mix files: refused
    result = run(detect_args(data, tracked), expect=1)
    assert "other settings (track" in result.output
    # extract-features keeps the ids in det/person_id; without ids no det/person_id (v1)
    common = ["--videos", videos, "--keyframes", "0:2", "--backbone-weights", "none",
              "--clip-frames", "8", "--short-side", "64", "--det-threshold", "0",
              "--max-persons", "5", "--workers", "0", "--allow-failures", "--quiet"]
    run(["extract-features", "--out", tmp_path / "t.h5", "--detections", tracked] + common)
    run(["extract-features", "--out", tmp_path / "p.h5", "--detections", plain] + common)
    with h5py.File(tmp_path / "t.h5", "r") as t, h5py.File(tmp_path / "p.h5", "r") as p:
        for vid in ("vidA", "vidB"):
            mine = rows.video_ids == vid
            order = np.lexsort((-rows.scores[mine], rows.timestamps[mine]))   # best first
            assert t[f"videos/{vid}/det/person_id"][:].tolist() == \
                rows.person_ids[mine][order].tolist()
            assert "person_id" not in p[f"videos/{vid}/det"]


def test_keyframe_images_are_extractions_centre_frames(data):
    from hgrnn.data.video import iter_clips

    _, videos, _ = data
    got = dict(dt.keyframe_images(videos / "vidA.mp4", [2, 0], short_side=48, time_offset=-0.5))
    assert sorted(got) == [0, 2] and got[0].shape == (48, 72, 3)
    for ts in (0, 2):
        [(_, clip, key)] = list(iter_clips(videos / "vidA.mp4", [ts + 0.5], 8, 1, 32,
                                           keyframe_short_side=48))
        assert np.array_equal(got[ts], key)


def test_detect_skips_keyframes_outside_a_video_with_one_warning_per_video(data, tmp_path):
    root, videos, ckpt = data
    # the videos are 3 s long (frames 0..29): at --time-offset 900, 899 lies before the
    # start and 903 past the end; 900..902 are detected and written as usual
    args = ["--videos", videos, "--time-offset", "900", "--detector", ckpt, "--min-score",
            "0", "--max-persons", "5", "--workers", "0", "--quiet", "--allow-failures"]
    result = run(["detect", "--out", tmp_path / "wide.csv", "--keyframes", "899:903"] + args)
    for vid in ("vidA", "vidB"):
        warnings = [line for line in result.output.splitlines()
                    if line.startswith("detect: skipped") and f"{vid}.mp4" in line]
        assert warnings == [f"detect: skipped {videos / vid}.mp4: 2 of 5 keyframes outside "
                            f"the video (3.0 s long) at --time-offset 900: 899, 903"]
    assert "skipped 4 keyframes outside their video in 2 video(s): vidA (2), vidB (2)" \
        in result.output
    run(["detect", "--out", tmp_path / "inside.csv", "--keyframes", "900:902"] + args)
    wide = (tmp_path / "wide.csv").read_text()
    assert wide == (tmp_path / "inside.csv").read_text()
    assert {line.split(",")[1] for line in wide.splitlines()} == {"0900", "0901", "0902"}
    record = [json.loads(x) for x in dt.progress_path(tmp_path / "wide.csv").read_text()
              .splitlines()]
    assert {r["video"]: (r["status"], r.get("keyframes")) for r in record[1:]} == \
        {"vidA": ("done", 3), "vidB": ("done", 3), "broken": ("failed", None)}

    # no keyframe inside: the video fails, the message names its file
    result = run(["detect", "--out", tmp_path / "none.csv", "--keyframes", "910:912"] + args)
    assert f"FAILED vidA: {videos / 'vidA.mp4'}: 3 of 3 keyframes outside the video " \
           f"(3.0 s long) at --time-offset 900: 910, 911, 912; --time-offset 910 would fit" \
           in result.output
    assert "0 video(s) written" in result.output and (tmp_path / "none.csv").read_text() == ""
