"""`hgrnn predict` end to end on rendered videos: features through the extraction stage with
`--backbone-weights none`, a head trained here on rendered data, results.csv, the drawn MP4;
and the checkpoint / extraction compatibility check."""

import av
import numpy as np
import pytest
from click.testing import CliRunner

from hgrnn.cli import main
from hgrnn.data.ava import read_results
from hgrnn.apps.predict import PredictError, check_compatible
from hgrnn.pipeline.render import render_labelled
from hgrnn.pipeline.visualize import box_pixels, keyframe_of_frame

# `--backbone-weights none` is what these tests exercise: its warnings are expected
# (and asserted once, in test_predict_writes_results_and_a_drawn_video)
pytestmark = [pytest.mark.filterwarnings("ignore:.*using RANDOM initialisation"),
              pytest.mark.filterwarnings("ignore:person detector weights. NONE")]

SIZE = (192, 144)
SECONDS = 4            # keyframes 1, 2, 3
SMALL = ["--clip-frames", "8", "--short-side", "64", "--workers", "0"]


def invoke(args, expect=0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == expect, (result.output, result.exception)
    return result


def decode(path):
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Rendered training videos -> store (random I3D) -> a head trained for a few steps."""
    root = tmp_path_factory.mktemp("predict")
    data = render_labelled(root / "train", ["t0", "t1"], seconds=SECONDS, size=SIZE, seed=1)
    with pytest.warns(UserWarning, match="RANDOM"):
        invoke(["extract-features", "--out", root / "train.h5", "--videos", data["videos"],
                "--annotations", data["gt"], "--detections", data["det"],
                "--backbone-weights", "none", "--quiet"] + SMALL)
    invoke(["train-head", "--store", root / "train.h5", "--out", root / "run", "--steps", "20",
            "--batch-size", "4", "--lr", "1e-3", "--context", "1", "--quiet"])
    test = render_labelled(root / "test", ["clip"], seconds=SECONDS, size=SIZE, seed=5)
    return root, test


def test_predict_writes_results_and_a_drawn_video(trained, tmp_path):
    root, test = trained
    video = root / "test" / "videos" / "clip.mp4"
    out = tmp_path / "pred"
    with pytest.warns(UserWarning) as caught:
        result = invoke(["predict", video, "--checkpoint", root / "run", "--out", out,
                         "--backbone-weights", "none", "--detections", test["det"],
                         "--min-score", "0", "--top-k", "1", "-q"] + SMALL)
    said = " ".join(str(w.message) for w in caught)
    assert "backbone weights: NONE -- using RANDOM" in said
    # the random I3D is drawn from a fixed seed: the head's training features came from the
    # same weights, so predict has nothing more to say about them
    assert "random weights" not in said and "seed" not in said
    assert "clip: 3 keyframes, 3.0 persons per keyframe" in result.output
    rows = read_results(out / "results.csv", progress=False)
    assert set(rows.video_ids) == {"clip"}
    assert sorted(set(rows.timestamps.tolist())) == [1, 2, 3]     # every keyframe
    assert sorted(p.name for p in out.iterdir()) == [              # kept for the next head
        "clip.mp4", "clip_persons.csv", "clip_timeline.png", "features.h5",
        "features_detections.csv", "features_label_map.txt", "results.csv"]
    # persons linked across keyframes: an id per person box (9th column), one per person
    # of a keyframe, and the per-person summary lists every id
    assert rows.person_ids is not None
    for t in (1, 2, 3):
        boxes_ids = {(tuple(b), i) for b, i in zip(rows.boxes[rows.timestamps == t].tolist(),
                                                   rows.person_ids[rows.timestamps == t])}
        assert len({i for _, i in boxes_ids}) == len(boxes_ids) == 3
    persons = (out / "clip_persons.csv").read_text().splitlines()
    assert persons[0] == "person_id,first_second,last_second,keyframes,actions"
    assert [int(line.split(",")[0]) for line in persons[1:]] == sorted(set(rows.person_ids))

    drawn, original = decode(out / "clip.mp4"), decode(video)
    assert len(drawn) == len(original) == SECONDS * 10
    assert drawn[0].shape == original[0].shape == (SIZE[1], SIZE[0], 3)
    # frames 5..34 show keyframes 1..3: the left edge of keyframe 2's best box is drawn on
    # frame 20, where the input has the video's own pixels; frames of timestamps 0 and 4
    # (no keyframe) are the input's frames
    best = np.argmax(np.where(rows.timestamps == 2, rows.scores, -1))
    left, top, right, bottom = box_pixels(rows.boxes[best], *SIZE)
    assert keyframe_of_frame(20, 10) == 2
    edge = (slice(top + 2, bottom - 1), slice(left, left + 2))
    assert np.abs(drawn[20][edge].astype(float) - original[20][edge]).mean() > 40
    for n in list(range(0, 5)) + list(range(35, 40)):
        assert np.abs(drawn[n].astype(float) - original[n]).mean() < 3, n


def test_predict_without_keeping_the_store(trained, tmp_path):
    root, test = trained
    video = root / "test" / "videos" / "clip.mp4"
    out = tmp_path / "pred"
    invoke(["predict", video, "--checkpoint", root / "run" / "last.pt", "--out", out,
            "--backbone-weights", "none", "--detections", test["det"], "--no-keep-store",
            "--no-video", "-q"] + SMALL)
    assert sorted(p.name for p in out.iterdir()) == ["clip_persons.csv", "clip_timeline.png",
                                                     "results.csv"]


def test_eval_on_a_store_without_ground_truth_writes_results(trained, tmp_path):
    root, test = trained
    video = root / "test" / "videos" / "clip.mp4"
    for reused in (0, 1):       # the second run finds the features in pred/features.h5
        result = invoke(["predict", video, "--checkpoint", root / "run", "--out",
                         tmp_path / "pred", "--backbone-weights", "none", "--detections",
                         test["det"], "--no-video", "-q"] + SMALL)
        assert f"({1 - reused} video(s) extracted, {reused} reused)" in result.output
    result = invoke(["eval", "--store", tmp_path / "pred" / "features.h5", "--checkpoint",
                     root / "run", "--out", tmp_path / "eval", "-q"])
    assert "no ground truth to score against" in result.output
    assert "wrote " + str(tmp_path / "eval") + "/results.csv; nothing to score" in result.output
    rows = read_results(tmp_path / "eval" / "results.csv", progress=False)
    again = read_results(tmp_path / "pred" / "results.csv", progress=False)
    assert len(rows) == len(again) and np.allclose(np.sort(rows.scores), np.sort(again.scores))


def test_predict_refuses_a_checkpoint_of_other_features(trained, tmp_path):
    root, test = trained
    video = root / "test" / "videos" / "clip.mp4"
    import torch

    from hgrnn.pipeline.i3d import InceptionI3d

    weights = tmp_path / "other_i3d.pt"
    torch.save(InceptionI3d().state_dict(), weights)
    result = invoke(["predict", video, "--checkpoint", root / "run", "--out", tmp_path / "p",
                     "--backbone-weights", weights, "--detections", test["det"], "-q"] + SMALL,
                    expect=1)
    assert "does not fit this extraction: backbone: the head was trained on features of random" in result.output
    assert "this extraction uses kinetics-i3d" in result.output
    assert not (tmp_path / "p").exists()           # refused before writing anything in OUT


def _ckpt(dim=1024, streams=None):
    return {"feature_dim": dim, "path": "run/last.pt", "streams": streams}


def _stage(dim=1024, kind="kinetics-i3d", sha="ab" * 32, **extra):
    return {"feature_dim": dim, "projection": True, "clip_frames": 32,
            "backbone": {"kind": kind, "path": "w.pt", "sha256": sha}, **extra}


def test_check_compatible_names_what_differs():
    assert check_compatible(_ckpt(), _stage(), _stage()) == []
    with pytest.raises(PredictError, match=r"feature dim: the head takes 256-d features, this "
                                           r"extraction makes 1024-d ones"):
        check_compatible(_ckpt(256), _stage(256), _stage())
    with pytest.raises(PredictError, match=r"backbone: .* kinetics-i3d w.pt \(sha256 abababababab\)"
                                           r", this extraction uses kinetics-i3d w.pt \(sha256 cd"):
        check_compatible(_ckpt(), _stage(), _stage(sha="cd" * 32))
    # the head's streams decide: a head reading rgb+flow needs both; a head reading rgb of
    # an rgb+flow store needs only rgb
    with pytest.raises(PredictError, match=r"streams: the head reads rgb\+flow, this "
                                           r"extraction makes rgb"):
        check_compatible(_ckpt(2048, ["rgb", "flow"]), _stage(streams=["rgb", "flow"]),
                         _stage(streams=["rgb"]))
    assert check_compatible(_ckpt(1024, ["rgb"]), _stage(streams=["rgb", "flow"]),
                            _stage(streams=["rgb"])) == []
    flow = {"kind": "kinetics-i3d", "path": "flow.pt", "sha256": "ef" * 32}
    with pytest.raises(PredictError, match=r"flow backbone: .*flow.pt \(sha256 efefefefefef\), "
                                           r"this extraction uses random"):
        check_compatible(_ckpt(2048, ["rgb", "flow"]),
                         _stage(streams=["rgb", "flow"], flow_backbone=flow),
                         _stage(2048, streams=["rgb", "flow"], flow_backbone={"kind": "random"}))
    warned = check_compatible(_ckpt(), _stage(), _stage(clip_frames=8))
    assert warned == ["clip_frames: 8 here, the head's training store used 32 (features differ "
                      "somewhat)"]
    assert "no record of how its training features" in check_compatible(_ckpt(), None,
                                                                        _stage())[0]


def test_check_compatible_compares_the_seeds_of_random_weights():
    def random(seed):
        return _stage(backbone={"kind": "random", "path": None, "sha256": None, "seed": seed})

    assert check_compatible(_ckpt(), random(0), random(0)) == []
    with pytest.raises(PredictError, match=r"backbone: the head was trained on features of "
                                           r"random weights of seed 1, this extraction draws "
                                           r"them from seed 0"):
        check_compatible(_ckpt(), random(1), random(0))
    warned = check_compatible(_ckpt(), random(None), random(0))
    assert len(warned) == 1 and "records no seed for its random weights" in warned[0]


def test_the_summary_says_how_many_detections_the_threshold_dropped():
    from hgrnn.apps.predict import format_summary

    result = {"videos": {}, "failed": {}, "results": "r.csv", "store": None, "extracted": 1,
              "reused": 0, "below_threshold": 4, "det_threshold": 0.8}
    assert ("4 detection(s) of --detections scored below --det-threshold 0.8: dropped"
            in format_summary(result, 0.3))
    assert "dropped" not in format_summary({**result, "below_threshold": 0}, 0.3)


def test_a_video_that_cannot_be_decoded_is_named(trained, tmp_path):
    root, test = trained
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 500)
    result = invoke(["predict", broken, "--checkpoint", root / "run", "--out", tmp_path / "p",
                     "--backbone-weights", "none", "--detector", "faster-rcnn",
                     "--detector-weights", "none", "-q"] + SMALL, expect=1)
    assert "Error: no video could be read: " + str(broken) in result.output


def test_a_head_on_two_streams_gets_both_extracted(trained, tmp_path):
    """A head trained with --streams rgb+flow: predict extracts both streams (the checkpoint
    decides) and refuses to run without the flow weights."""
    pytest.importorskip("cv2")
    root, test = trained
    data = render_labelled(tmp_path / "train", ["f0"], seconds=3, size=SIZE, seed=3)
    two = ["--backbone-weights", "none", "--flow-backbone-weights", "none", "--flow", "tvl1"]
    invoke(["extract-features", "--out", tmp_path / "two.h5", "--videos", data["videos"],
            "--annotations", data["gt"], "--detections", data["det"], "--streams", "rgb,flow",
            "--quiet"] + two + SMALL)
    invoke(["train-head", "--store", tmp_path / "two.h5", "--out", tmp_path / "run",
            "--streams", "rgb+flow", "--steps", "3", "--batch-size", "2", "--context", "1",
            "--quiet"])
    video = root / "test" / "videos" / "clip.mp4"
    args = ["predict", video, "--checkpoint", tmp_path / "run", "--detections", test["det"],
            "--no-video", "-q"] + SMALL
    result = invoke(args + ["--out", tmp_path / "p1", "--backbone-weights", "none"], expect=1)
    assert "flow stream needs --flow-backbone-weights" in result.output
    result = invoke(args + ["--out", tmp_path / "p2"] + two)
    assert "clip: 3 keyframes" in result.output
    import h5py

    with h5py.File(tmp_path / "p2" / "features.h5", "r") as f:
        assert "flow" in f.attrs["streams"]


def test_predict_help_speaks_of_its_own_options_only():
    text = " ".join(CliRunner().invoke(main, ["predict", "--help"]).output.split())
    assert "--annotations" not in text                  # predict has no ground truth
    assert "Default: the keyframes of --detections, else every second of the video." in text


def test_predict_on_a_full_disk_names_the_file_and_leaves_no_partial(trained, tmp_path,
                                                                     monkeypatch):
    # the audit: a partial MP4 and results.csv were left behind with the clean error
    import errno

    from hgrnn.data import ava

    root, test = trained
    video = root / "test" / "videos" / "clip.mp4"
    args = ["predict", video, "--checkpoint", root / "run", "--backbone-weights", "none",
            "--detections", test["det"], "-q"] + SMALL
    real_open, real_write = av.open, ava.write_results

    class Full:
        def __init__(self, c):
            self.c = c

        def __getattr__(self, name):
            return getattr(self.c, name)

        def mux(self, packet):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(av, "open", lambda p, mode="r", **kw: (
        Full(real_open(p, mode, **kw)) if mode == "w" else real_open(p, mode, **kw)))
    out = tmp_path / "pred"
    r = invoke(args + ["--out", out], expect=1)
    assert r.output.strip().splitlines()[-1] == f"Error: {out / 'clip.mp4'}: No space left on device"
    assert not [p.name for p in out.iterdir() if p.name.startswith("clip.mp4")]
    monkeypatch.setattr(av, "open", real_open)

    def full(path, *a, **kw):
        real_write(path, *a, **kw)
        if str(path).endswith("results.csv.partial"):
            raise OSError(errno.ENOSPC, "No space left on device")

    from hgrnn import track

    monkeypatch.setattr(ava, "write_results", full)
    monkeypatch.setattr(track, "write_results", full)      # results.csv with person ids
    out = tmp_path / "pred2"
    r = invoke(args + ["--out", out], expect=1)
    assert r.output.strip().splitlines()[-1] == f"Error: {out / 'results.csv'}: No space left on device"
    assert not [p.name for p in out.iterdir() if p.name.startswith(("results", "clip"))]
