"""`hgrnn import-features` / `export-features`: a store's features out as .npz and back in
give the same store content and the same trained head; bad input is one line, exit 1, and
nothing is written."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import storegen
from hgrnn.cli import main
from hgrnn.data.ava import AvaRows, load_label_map, write_annotations
from hgrnn.data.store import StoreWriter, open_h5, read_info, video_names

LABEL_MAP = "ava-v2.1"
DIM = 16


def invoke(args, expect=0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == expect, (result.output, result.exception)
    return result


def _gt_rows(video_ids, timestamps, boxes, labels, person_ids, label_map) -> AvaRows:
    """One annotation row per (person, label)."""
    rows = [(v, t, b, label_map.ids[k], p)
            for v, t, b, lab, p in zip(video_ids, timestamps, boxes, labels, person_ids)
            for k in np.flatnonzero(lab)]
    v, t, b, a, p = zip(*rows)
    return AvaRows.from_arrays(v, t, np.asarray(b), a, p)


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """A random store with gt and det persons, and its ground truth as an AVA CSV."""
    root = tmp_path_factory.mktemp("orig")
    label_map = load_label_map(LABEL_MAP)
    rng = np.random.default_rng(0)
    store = root / "orig.h5"
    video_ids, timestamps, boxes, labels, pids = [], [], [], [], []
    with StoreWriter(store, feature_dim=DIM, label_map=label_map) as w:
        for i, vid in enumerate(("vidA", "vidB", "vidC")):
            video = storegen.random_video(rng, DIM, len(label_map), keyframes=6 + i,
                                          counts=rng.integers(1, 5, 6 + i))
            gt = video["gt"]
            gt.labels[gt.labels.sum(1) == 0, 0] = 1        # every person has an action
            w.add_video(vid, **video)
            counts = np.diff(gt.offsets)
            video_ids += [vid] * int(counts.sum())
            timestamps += np.repeat(video["timestamps"], counts).tolist()
            boxes.append(gt.boxes)
            labels.append(gt.labels)
            pids.append(gt.person_ids)
    write_annotations(root / "gt.csv", _gt_rows(video_ids, timestamps, np.concatenate(boxes),
                                                np.concatenate(labels), np.concatenate(pids),
                                                label_map))
    return root, store


def _content(path):
    out = {}
    with open_h5(path) as f:
        for vid in video_names(f):
            g = f["videos"][vid]
            out[vid] = {k: g[k][()] for k in ("timestamps", "clip")}
            for source in ("gt", "det"):
                if source in g:
                    out[vid].update({f"{source}/{k}": g[source][k][()] for k in g[source]})
    return out


def _imported(original, tmp_path):
    root, store = original
    for source in ("gt", "det"):
        invoke(["export-features", store, "--source", source, "--out",
                tmp_path / f"{source}.npz"])
    out = tmp_path / "imported.h5"
    for source in ("gt", "det"):
        invoke(["import-features", tmp_path / f"{source}.npz", "--source", source,
                "--annotations", root / "gt.csv", "--out", out, "--describe", "round trip"])
    return out


def test_export_then_import_gives_the_same_store_and_the_same_head(original, tmp_path):
    root, store = original
    out = _imported(original, tmp_path)
    a, b = _content(store), _content(out)
    assert a.keys() == b.keys()
    for vid in a:
        assert a[vid].keys() == b[vid].keys(), vid
        for key in a[vid]:
            assert a[vid][key].dtype == b[vid][key].dtype, (vid, key)
            assert np.array_equal(a[vid][key], b[vid][key]), (vid, key)
    with open_h5(out) as f:
        configs = read_info(f, out).configs
    assert configs["import_gt"]["describe"] == "round trip"
    assert configs["import_gt"]["files"][0]["sha256"] and configs["import_det"]["source"] == "det"
    assert configs["import_gt"]["clip_features"] == "given"
    inspect = invoke(["inspect", out, "--check"])
    assert "imported (round trip)" in inspect.output
    # the same head from both stores with the same seed
    weights = []
    for s in (store, out):
        run = tmp_path / f"run_{s.stem}"
        invoke(["train-head", "--store", s, "--out", run, "--steps", 4, "--seed", 3,
                "--scene-hidden", 8, "--graph-hidden", 16, "-q"])
        weights.append(torch.load(run / "last.pt", weights_only=False)["model"])
    assert weights[0].keys() == weights[1].keys()
    for k in weights[0]:
        assert torch.equal(weights[0][k], weights[1][k]), k


def test_resume_skips_done_videos_and_refuses_other_files(original, tmp_path):
    root, store = original
    out = _imported(original, tmp_path)
    again = invoke(["import-features", tmp_path / "gt.npz", "--source", "gt", "--annotations",
                    root / "gt.csv", "--out", out, "--describe", "round trip"])
    assert "0 video(s) written" in again.output and "3 already there" in again.output
    z = dict(np.load(tmp_path / "gt.npz"))
    z["features"] = z["features"] + 1
    np.savez(tmp_path / "other.npz", **z)
    refused = invoke(["import-features", tmp_path / "other.npz", "--source", "gt",
                      "--annotations", root / "gt.csv", "--out", out], expect=1)
    assert "imported from other files" in refused.output


def test_without_clip_features_the_mean_of_the_persons_stands_in(original, tmp_path):
    root, store = original
    invoke(["export-features", store, "--source", "gt", "--out", tmp_path / "gt.npz"])
    z = {k: v for k, v in np.load(tmp_path / "gt.npz").items() if not k.startswith("clip_")}
    np.savez(tmp_path / "noclip.npz", **z)
    out = tmp_path / "noclip.h5"
    invoke(["import-features", tmp_path / "noclip.npz", "--source", "gt", "--annotations",
            root / "gt.csv", "--out", out])
    got = _content(out)["vidA"]
    offsets = got["gt/offsets"]
    feats = got["gt/feats"].astype(np.float32)
    want = np.stack([feats[offsets[t]:offsets[t + 1]].mean(0) for t in range(len(offsets) - 1)])
    assert np.allclose(got["clip"].astype(np.float32), want, atol=1e-2)
    with open_h5(out) as f:
        assert "mean" in read_info(f, out).configs["import_gt"]["clip_features"]


def _bad(original, tmp_path, change, expect, source="gt", annotations=None):
    root, store = original
    invoke(["export-features", store, "--source", source, "--out", tmp_path / "ok.npz"])
    z = dict(np.load(tmp_path / "ok.npz"))
    change(z)
    np.savez(tmp_path / "bad.npz", **z)
    out = tmp_path / "bad.h5"
    result = invoke(["import-features", tmp_path / "bad.npz", "--source", source,
                     "--annotations", annotations or root / "gt.csv", "--out", out], expect=1)
    assert expect in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not out.exists()
    return result


def _set(key, row, value):
    def change(z):
        z[key] = z[key].astype(np.float32)
        z[key][row] = value
    return change


@pytest.mark.parametrize("change, expect", [
    (lambda z: z.update(boxes=z["boxes"][:-1]), "arrays of different lengths"),
    (_set("features", 5, np.nan), "row 5 (vidA"),
    (_set("features", 7, np.inf), "features not finite"),
    (_set("boxes", 2, [0.1, 0.1, 1.5, 0.5]), "outside [0, 1]"),
    (_set("boxes", 3, [0.5, 0.1, 0.2, 0.5]), "inverted"),
    (_set("boxes", 4, [0.0, 0.0, 0.01, 0.01]), "matches no box of"),
    (lambda z: z.update(clip_timestamps=z["clip_timestamps"] + 1000), "no clip feature"),
])
def test_bad_input_is_one_line_and_nothing_is_written(original, tmp_path, change, expect):
    _bad(original, tmp_path, change, expect)


def test_a_feature_dim_other_than_the_stores_is_refused(original, tmp_path):
    root, store = original
    out = _imported(original, tmp_path)
    z = dict(np.load(tmp_path / "det.npz"))
    z["features"] = np.concatenate([z["features"], z["features"]], 1)
    z["clip_features"] = np.concatenate([z["clip_features"], z["clip_features"]], 1)
    np.savez(tmp_path / "wide.npz", **z)
    before = _content(out)
    result = invoke(["import-features", tmp_path / "wide.npz", "--source", "det",
                     "--annotations", root / "gt.csv", "--out", tmp_path / "imported.h5"],
                    expect=1)
    assert f"features are {2 * DIM}-d, the store" in result.output
    assert f"holds {DIM}-d ones" in result.output
    after = _content(out)
    assert all(np.array_equal(before[v][k], after[v][k]) for v in before for k in before[v])


def test_videos_on_one_side_only_are_warned_about_with_counts(original, tmp_path):
    root, store = original
    invoke(["export-features", store, "--source", "det", "--out", tmp_path / "det.npz"])
    z = dict(np.load(tmp_path / "det.npz"))
    z["video_ids"] = np.where(z["video_ids"] == "vidC", "extra", z["video_ids"])
    z["clip_video_ids"] = np.where(z["clip_video_ids"] == "vidC", "extra", z["clip_video_ids"])
    np.savez(tmp_path / "moved.npz", **z)
    with pytest.warns(UserWarning) as record:
        from hgrnn.pipeline.import_features import ImportConfig, import_features

        summary = import_features(ImportConfig(str(tmp_path / "moved.npz"), "det",
                                               str(root / "gt.csv"), str(tmp_path / "m.h5")))
    texts = [str(w.message) for w in record]
    assert any(t.startswith("1 video(s) in") and "not in" in t and "extra" in t for t in texts)
    assert any(t.startswith("1 video(s) of") and "no features" in t and "vidC" in t
               for t in texts)
    assert summary["written"] == 2


def test_predict_refuses_a_head_trained_on_imported_features():
    from hgrnn.apps.predict import PredictError, training_extraction

    ckpt = {"path": "run/last.pt", "store_configs": {"import_gt": {"describe": "SlowFast"}}}
    with pytest.raises(PredictError, match=r"trained on imported features \(SlowFast\)"):
        training_extraction(ckpt)
    assert training_extraction({"store_configs": {"extract": {"clip_frames": 32}}}) == \
        {"clip_frames": 32}


def test_a_second_writer_is_refused_naming_the_first(original, tmp_path):
    from hgrnn.data.store import lock_for_writing

    root, store = original
    invoke(["export-features", store, "--source", "gt", "--out", tmp_path / "gt.npz"])
    out = tmp_path / "locked.h5"
    lock = lock_for_writing(out)
    try:
        result = invoke(["import-features", tmp_path / "gt.npz", "--source", "gt",
                         "--annotations", root / "gt.csv", "--out", out], expect=1)
    finally:
        lock.release()
    assert "pid" in result.output and not out.exists()
