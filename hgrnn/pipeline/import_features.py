"""`hgrnn import-features`: person (and clip) features made by another system (PySlowFast,
mmaction2, your own code) into a normal feature store; `export_features`, the reverse.

Input: one `.npz` file, or a directory of them (read in name order, rows concatenated),
with the arrays (N person rows, K keyframes with a clip feature):

    video_ids        (N,)    str      the AVA video id of each row
    timestamps       (N,)    int      keyframe time in seconds, as in the AVA CSVs
    boxes            (N, 4)  float    x1, y1, x2, y2 normalised to [0, 1]
    features         (N, D)  float    the person's feature (finite)
    scores           (N,)    float    optional: person confidence (1.0 when absent)
    clip_video_ids   (K,)    str      optional, all three together: a clip feature per
    clip_timestamps  (K,)    int      keyframe; when absent, the mean of the keyframe's
    clip_features    (K, D)  float    person features stands in (the config says so)

`--source gt`: every row is a ground-truth person: it must match a box of the annotations
(--annotations) in its keyframe at IoU >= 0.9 (else an error naming the row), whose labels
and person id it gets. `--source det`: the rows are detections (scored against the
annotations at evaluation, as with extract-features). Run it twice (gt, then det) into one
store to have both sources: the second run adds its persons (and keyframes) to the videos of
the first, keeping their clip features.

Everything is read and checked before the store is touched: arrays of different lengths,
NaN/inf, boxes outside [0, 1] or inverted, a feature dim other than the store's, keyframes
without a clip feature, two rows on one annotated person are one-line errors (nothing
written). Videos in the features but not in the annotations are skipped, and annotated
videos without features are left out, each with a warning that counts them.

The store's config gets a stage per source (`import_gt`, `import_det`): the files and their
sha256, --describe, the annotations, label map and exclusions, and where the clip features
came from. A run resumes (videos that have the source already are skipped) under the
store's writer lock; a resume with other files is refused. A video that gains its second
source is rewritten whole; if a run is killed during that rewrite the video is gone: run
both imports again (each adds what is missing).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hgrnn.data.ava import (BOX_TOLERANCE, group_persons, load_label_map, read_annotations,
                            read_exclusions)
from hgrnn.data.store import (PersonSet, StoreWriter, lock_for_writing, open_h5, read_info,
                              video_names)
from hgrnn.pipeline.extract.stage import exclusions_entry
from hgrnn.pipeline.i3d import sha256_file

SOURCES = ("gt", "det")
GT_MIN_IOU = 0.9
REQUIRED = ("video_ids", "timestamps", "boxes", "features")
CLIP_ARRAYS = ("clip_video_ids", "clip_timestamps", "clip_features")
MEAN_CLIP = "mean of the keyframe's person features (the files have no clip_features)"


class FeatureImportError(ValueError):
    """Bad input for import-features; one line naming the file (and row)."""


@dataclass
class Features:
    """The rows of every input file, concatenated (see the module docstring); `where[i]`
    names row i as FILE:row j; clip arrays None when the files have none."""
    video_ids: np.ndarray
    timestamps: np.ndarray
    boxes: np.ndarray
    features: np.ndarray
    scores: np.ndarray
    where: list
    clip_video_ids: np.ndarray | None
    clip_timestamps: np.ndarray | None
    clip_features: np.ndarray | None
    files: list


def input_files(path) -> list[Path]:
    """The .npz file, or the .npz files of a directory in name order."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".npz" and p.is_file())
        if not files:
            raise FeatureImportError(f"{path}: no .npz files in this directory")
        return files
    if not path.is_file():
        raise FeatureImportError(f"{path}: no such file or directory")
    return [path]


def _int_seconds(values, name, file):
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(arr) | (arr != np.round(arr)))
        if len(bad):
            raise FeatureImportError(f"{file}: {name}[{bad[0]}] = {arr[bad[0]]!r} is not a whole "
                                     f"second (AVA keyframes are integer seconds)")
        return arr.astype(np.int64)
    raise FeatureImportError(f"{file}: {name} must be integers, got dtype {arr.dtype}")


def read_file(file: Path) -> dict:
    """One .npz file's arrays, checked (module docstring); FeatureImportError names the file and
    the first bad row."""
    try:
        with np.load(file, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as err:
        raise FeatureImportError(f"{file}: not a readable .npz file ({str(err).splitlines()[0]})") \
            from None
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise FeatureImportError(f"{file}: missing array(s) {', '.join(missing)} (needs "
                                 f"{', '.join(REQUIRED)}; optional scores, "
                                 f"{', '.join(CLIP_ARRAYS)})")
    clip_given = [k for k in CLIP_ARRAYS if k in arrays]
    if clip_given and len(clip_given) != len(CLIP_ARRAYS):
        absent = ", ".join(k for k in CLIP_ARRAYS if k not in arrays)
        raise FeatureImportError(f"{file}: has {', '.join(clip_given)} but not {absent} (all "
                                 f"three or none)")
    out = {"video_ids": np.asarray(arrays["video_ids"]).astype(str).reshape(-1),
           "timestamps": _int_seconds(arrays["timestamps"], "timestamps", file).reshape(-1),
           "boxes": np.asarray(arrays["boxes"]), "features": np.asarray(arrays["features"])}
    n = len(out["video_ids"])
    out["scores"] = (np.asarray(arrays["scores"]).reshape(-1) if "scores" in arrays
                     else np.ones(n, np.float32))
    if out["boxes"].ndim != 2 or out["boxes"].shape[1] != 4:
        raise FeatureImportError(f"{file}: boxes must be (N, 4), got {out['boxes'].shape}")
    if out["features"].ndim != 2 or out["features"].shape[1] < 1:
        raise FeatureImportError(f"{file}: features must be (N, D), got {out['features'].shape}")
    lengths = {k: len(out[k]) for k in ("video_ids", "timestamps", "boxes", "features", "scores")}
    if len(set(lengths.values())) != 1:
        raise FeatureImportError(f"{file}: arrays of different lengths: "
                                 + ", ".join(f"{k} {v}" for k, v in lengths.items()))

    def where(i):
        return f"{file}: row {i} ({out['video_ids'][i]}, {out['timestamps'][i]})"

    for name in ("boxes", "features", "scores"):
        if out[name].dtype.kind not in "fiu":
            raise FeatureImportError(f"{file}: {name} must be numbers, got dtype {out[name].dtype}")
        values = out[name].astype(np.float64).reshape(n, -1)
        bad = np.flatnonzero(~np.isfinite(values).all(1))
        if len(bad):
            more = f"; {len(bad) - 1} more rows like it" if len(bad) > 1 else ""
            raise FeatureImportError(f"{where(bad[0])}: {name} not finite (NaN or inf){more}")
    boxes = out["boxes"].astype(np.float64)
    outside = ((boxes < -BOX_TOLERANCE) | (boxes > 1 + BOX_TOLERANCE)).any(1)
    bad = np.flatnonzero(outside)
    if len(bad):
        raise FeatureImportError(f"{where(bad[0])}: box {boxes[bad[0]].tolist()} outside [0, 1] "
                                 f"(boxes are x1, y1, x2, y2 normalised by the frame size)")
    bad = np.flatnonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    if len(bad):
        raise FeatureImportError(f"{where(bad[0])}: box {boxes[bad[0]].tolist()} inverted (x2 < x1 "
                                 f"or y2 < y1; expected x1, y1, x2, y2)")
    out["boxes"] = np.clip(boxes, 0, 1).astype(np.float32)
    out["features"] = out["features"].astype(np.float32)
    out["scores"] = out["scores"].astype(np.float32)
    out["where"] = [f"{file}: row {i}" for i in range(n)]
    if clip_given:
        cv = np.asarray(arrays["clip_video_ids"]).astype(str).reshape(-1)
        ct = _int_seconds(arrays["clip_timestamps"], "clip_timestamps", file).reshape(-1)
        cf = np.asarray(arrays["clip_features"])
        if cf.ndim != 2 or not len(cv) == len(ct) == len(cf):
            raise FeatureImportError(f"{file}: arrays of different lengths: clip_video_ids "
                                     f"{len(cv)}, clip_timestamps {len(ct)}, clip_features "
                                     f"{cf.shape}")
        if cf.dtype.kind not in "fiu":
            raise FeatureImportError(f"{file}: clip_features must be numbers, got dtype {cf.dtype}")
        bad = np.flatnonzero(~np.isfinite(cf.astype(np.float64)).all(1))
        if len(bad):
            raise FeatureImportError(f"{file}: clip row {bad[0]} ({cv[bad[0]]}, {ct[bad[0]]}): "
                                     f"clip_features not finite (NaN or inf)")
        if cf.shape[1] != out["features"].shape[1]:
            raise FeatureImportError(f"{file}: clip_features are {cf.shape[1]}-d, features "
                                     f"{out['features'].shape[1]}-d (a store has one feature dim)")
        out.update(clip_video_ids=cv, clip_timestamps=ct, clip_features=cf.astype(np.float32))
    return out


def read_features(path) -> Features:
    """Every file of `path` (module docstring), checked and concatenated."""
    files = input_files(path)
    parts = [read_file(f) for f in files]
    dims = {int(p["features"].shape[1]) for p in parts}
    if len(dims) > 1:
        shown = ", ".join(f"{f.name} {p['features'].shape[1]}" for f, p in zip(files, parts))
        raise FeatureImportError(f"{path}: the files have features of different dims ({shown})")
    with_clip = [("clip_features" in p) for p in parts]
    if any(with_clip) and not all(with_clip):
        raise FeatureImportError(f"{path}: some files have clip_features and some do not "
                                 f"({', '.join(f.name for f, w in zip(files, with_clip) if not w)} "
                                 f"lack them)")

    def cat(key):
        return np.concatenate([p[key] for p in parts])

    feats = Features(cat("video_ids"), cat("timestamps"), cat("boxes"), cat("features"),
                     cat("scores"), [w for p in parts for w in p["where"]],
                     cat("clip_video_ids") if all(with_clip) else None,
                     cat("clip_timestamps") if all(with_clip) else None,
                     cat("clip_features") if all(with_clip) else None, files)
    if feats.clip_video_ids is not None:
        keys = list(zip(feats.clip_video_ids.tolist(), feats.clip_timestamps.tolist()))
        if len(set(keys)) != len(keys):
            seen, dup = set(), None
            for k in keys:
                if k in seen:
                    dup = k
                    break
                seen.add(k)
            raise FeatureImportError(f"{path}: two clip features for keyframe {dup[0]}, {dup[1]}")
    return feats


def _iou(box, boxes) -> np.ndarray:
    """IoU of one box (4,) with boxes (M, 4), normalised xyxy."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


@dataclass(frozen=True)
class ImportConfig:
    """The options of `import_features` (`hgrnn import-features -h`)."""
    features: str
    source: str
    annotations: str
    out: str
    label_map: str = "ava-v2.1"
    exclusions: str | None = None
    describe: str | None = None


def import_features(cfg: ImportConfig) -> dict:
    """Import (module docstring). Returns a summary dict: out, source, written, skipped
    (videos that had the source already), persons, keyframes, videos_not_annotated,
    annotated_videos_without_features, annotated_persons_without_features (gt),
    excluded_rows, clip_features ("given" or MEAN_CLIP)."""
    if cfg.source not in SOURCES:
        raise FeatureImportError(f"--source {cfg.source!r}: expected gt or det")
    label_map = load_label_map(cfg.label_map)
    feats = read_features(cfg.features)
    dim = int(feats.features.shape[1])
    excluded = None
    if cfg.exclusions:
        excluded = read_exclusions(cfg.exclusions)
    ann = read_annotations(cfg.annotations, label_map, excluded, progress=False,
                           keep_outside_map=True)
    persons = group_persons(ann, label_map)
    stage = _stage_config(cfg, feats, dim)

    lock = lock_for_writing(cfg.out)       # before reading the store: one writer at a time
    try:
        done = _check_store(cfg, stage, dim, label_map)
        plan, counts = _plan(cfg, feats, persons, excluded, done)
    except BaseException:
        lock.release()
        raise
    summary = {"out": cfg.out, "source": cfg.source, "written": 0, "skipped": len(done),
               "persons": 0, "keyframes": 0, "clip_features": stage["clip_features"], **counts}
    with StoreWriter(cfg.out, feature_dim=dim, label_map=label_map,
                     configs={f"import_{cfg.source}": stage}, lock=lock) as writer:
        for vid, video in plan.items():
            _write_video(writer, vid, video, cfg.source)
            summary["written"] += 1
            summary["persons"] += int(video["offsets"][-1])
            summary["keyframes"] += len(video["timestamps"])
    return summary


def _stage_config(cfg: ImportConfig, feats: Features, dim: int) -> dict:
    return {
        "source": cfg.source,
        "files": [{"path": str(f), "sha256": sha256_file(f)} for f in feats.files],
        "describe": cfg.describe,
        "annotations": {"path": str(cfg.annotations), "sha256": sha256_file(cfg.annotations)},
        "label_map": cfg.label_map, "feature_dim": dim,
        "clip_features": "given" if feats.clip_features is not None else MEAN_CLIP,
        "gt_min_iou": GT_MIN_IOU if cfg.source == "gt" else None,
        "excluded_keyframes": exclusions_entry(cfg.exclusions),
    }


def _check_store(cfg: ImportConfig, stage: dict, dim: int, label_map) -> set:
    """The videos of the store that have this source already (resume); refuses a store of
    another feature dim, or one this source was imported into from other files."""
    if not (os.path.exists(cfg.out) and os.path.getsize(cfg.out) > 0):
        return set()
    with open_h5(cfg.out) as f:
        info = read_info(f, cfg.out)
        if info.feature_dim != dim:
            raise FeatureImportError(f"{cfg.features}: features are {dim}-d, the store {cfg.out} "
                                     f"holds {info.feature_dim}-d ones")
        old = info.configs.get(f"import_{cfg.source}")
        if old:
            was = sorted(x["sha256"] for x in old.get("files", []))
            now = sorted(x["sha256"] for x in stage["files"])
            if was != now:
                files = ", ".join(x["path"] for x in old["files"])
                raise FeatureImportError(f"{cfg.out}: its {cfg.source} persons were imported "
                                         f"from other files ({files}); resuming would mix two "
                                         f"imports. Use another --out.")
        done = set()
        for vid in f["videos"]:
            group = f["videos"][vid]
            if group.attrs.get("complete") and cfg.source in group:
                done.add(vid)
    return done


def _plan(cfg, feats: Features, persons, excluded, done) -> tuple[dict, dict]:
    """Group the rows into videos and keyframes, match gt rows to the annotations; every
    check before anything is written. Returns ({video: arrays}, counts)."""
    source = cfg.source
    annotated_videos = set(persons.video_ids.tolist())
    if persons.video_ids.size == 0:
        annotated_videos = set()
    feature_videos = set(feats.video_ids.tolist())
    if feats.clip_video_ids is not None:
        feature_videos |= set(feats.clip_video_ids.tolist())
    not_annotated = sorted(feature_videos - annotated_videos)
    without_features = sorted(annotated_videos - feature_videos)
    if not_annotated:
        warnings.warn(f"{len(not_annotated)} video(s) in {cfg.features} are not in "
                      f"{cfg.annotations}: skipped ({_shown(not_annotated)})", stacklevel=2)
    if without_features:
        warnings.warn(f"{len(without_features)} video(s) of {cfg.annotations} have no "
                      f"features in {cfg.features}: not in the store "
                      f"({_shown(without_features)})", stacklevel=2)
    keep = np.isin(feats.video_ids, sorted(annotated_videos))
    excluded_rows = 0
    if excluded:
        out = np.array([(v, int(t)) in excluded for v, t in
                        zip(feats.video_ids.tolist(), feats.timestamps.tolist())], bool)
        excluded_rows = int((out & keep).sum())
        keep &= ~out
    # annotated persons by keyframe
    by_keyframe: dict = {}
    for i, (v, t) in enumerate(zip(persons.video_ids.tolist(), persons.timestamps.tolist())):
        by_keyframe.setdefault((v, int(t)), []).append(i)
    clip_of = {}
    if feats.clip_video_ids is not None:
        clip_of = {(v, int(t)): i for i, (v, t) in enumerate(
            zip(feats.clip_video_ids.tolist(), feats.clip_timestamps.tolist()))}
    rows_of: dict = {}
    for i in np.flatnonzero(keep):
        video = rows_of.setdefault(feats.video_ids[i], {})
        video.setdefault(int(feats.timestamps[i]), []).append(i)
    for (v, t) in clip_of:
        if v in annotated_videos and not (excluded and (v, t) in excluded):
            rows_of.setdefault(v, {}).setdefault(t, [])
    plan, unmatched = {}, 0
    for vid in sorted(rows_of):
        keyframes = rows_of[vid]
        ts = sorted(keyframes)
        boxes, feat, scores, labels, pids, clip = [], [], [], [], [], []
        for t in ts:
            rows = keyframes[t]
            if clip_of:
                if (vid, t) not in clip_of:
                    raise FeatureImportError(f"{feats.where[rows[0]]} ({vid}, {t}): no clip "
                                             f"feature for this keyframe in "
                                             f"clip_video_ids/clip_timestamps")
                clip.append(feats.clip_features[clip_of[(vid, t)]])
            elif rows:
                clip.append(feats.features[rows].mean(0))
            if source == "gt":
                ann = by_keyframe.get((vid, t), [])
                taken: dict = {}
                for i in rows:
                    iou = (_iou(feats.boxes[i], persons.boxes[ann]) if ann
                           else np.zeros(0))
                    best = int(np.argmax(iou)) if len(iou) else -1
                    if best < 0 or iou[best] < GT_MIN_IOU:
                        raise FeatureImportError(
                            f"{feats.where[i]} ({vid}, {t}): box "
                            f"{np.round(feats.boxes[i], 4).tolist()} matches no box of "
                            f"{cfg.annotations} in this keyframe at IoU >= {GT_MIN_IOU} (best "
                            f"{float(iou[best]) if best >= 0 else 0:.2f}); --source gt rows "
                            f"must be the annotated persons (use --source det for detections)")
                    if best in taken:
                        raise FeatureImportError(f"{feats.where[i]} ({vid}, {t}): matches the same "
                                                 f"annotated person as {feats.where[taken[best]]}")
                    taken[best] = i
                    labels.append(persons.labels[ann[best]])
                    pids.append(persons.person_ids[ann[best]])
                unmatched += len(ann) - len(taken)
            boxes.append(feats.boxes[rows])
            feat.append(feats.features[rows])
            scores.append(feats.scores[rows] if source == "det" else np.ones(len(rows), np.float32))
        if vid in done:
            continue
        n = [len(b) for b in boxes]
        plan[vid] = {
            "timestamps": np.asarray(ts, np.int64),
            "clip": np.stack(clip).astype(np.float32),
            "offsets": np.concatenate([[0], np.cumsum(n)]).astype(np.int64),
            "boxes": np.concatenate(boxes).reshape(-1, 4),
            "feats": np.concatenate(feat).reshape(-1, feats.features.shape[1]),
            "scores": np.concatenate(scores),
            "labels": (np.stack(labels).astype(np.uint8) if labels
                       else np.zeros((0, persons.labels.shape[1]), np.uint8))
            if source == "gt" else None,
            "person_ids": np.asarray(pids, np.int32) if source == "gt" else None,
        }
    if unmatched:
        warnings.warn(f"{unmatched} annotated person(s) of {cfg.annotations} have no row in "
                      f"{cfg.features}: not in the store's gt", stacklevel=2)
    counts = {"videos_not_annotated": len(not_annotated),
              "annotated_videos_without_features": len(without_features),
              "annotated_persons_without_features": unmatched if source == "gt" else None,
              "excluded_rows": excluded_rows}
    return plan, counts


def _shown(ids, limit=5) -> str:
    return ", ".join(ids[:limit]) + (" ..." if len(ids) > limit else "")


def _person_set(video, offsets=None) -> PersonSet:
    return PersonSet(offsets=video["offsets"] if offsets is None else offsets,
                     boxes=video["boxes"], feats=video["feats"].astype(np.float16),
                     scores=video["scores"], labels=video["labels"],
                     person_ids=video["person_ids"])


def _write_video(writer: StoreWriter, vid: str, video: dict, source: str) -> None:
    """Write one video's persons of `source`; a video the store has already (with the other
    source) is rewritten with both, on the union of the keyframes (its clip features kept)."""
    if not writer.has_video(vid):
        writer.add_video(vid, video["timestamps"], video["clip"], **{source: _person_set(video)})
        return
    g = writer.video_group(vid)
    old_ts = g["timestamps"][()].astype(np.int64)
    ts = np.union1d(old_ts, video["timestamps"])
    clip = np.zeros((len(ts), video["clip"].shape[1]), np.float32)
    clip[np.searchsorted(ts, video["timestamps"])] = video["clip"]
    clip[np.searchsorted(ts, old_ts)] = g["clip"][()]           # the store's own are kept
    sets = {source: _expand(_person_set(video), video["timestamps"], ts)}
    for other in SOURCES:
        if other != source and other in g:
            s = g[other]
            old = PersonSet(offsets=s["offsets"][()], boxes=s["boxes"][()],
                            feats=s["feats"][()], scores=s["scores"][()],
                            labels=s["labels"][()] if "labels" in s else None,
                            person_ids=s["person_id"][()] if "person_id" in s else None)
            sets[other] = _expand(old, old_ts, ts)
    attrs = {k: int(g.attrs[k]) for k in ("width", "height") if k in g.attrs}
    writer.add_video(vid, ts, clip, overwrite=True, **sets, **attrs)


def _expand(ps: PersonSet, ts, all_ts) -> PersonSet:
    """`ps` on keyframes `ts` as a PersonSet on `all_ts` (a superset; no persons elsewhere)."""
    counts = np.zeros(len(all_ts), np.int64)
    counts[np.searchsorted(all_ts, ts)] = np.diff(ps.offsets)
    return PersonSet(offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                     boxes=ps.boxes, feats=ps.feats, scores=ps.scores, labels=ps.labels,
                     person_ids=ps.person_ids)


def export_features(store, out, source: str = "gt") -> dict:
    """The persons of `source` of a store, and its clip features, as one .npz of the import
    format (`hgrnn export-features`): the round trip `export_features` -> `import_features`
    gives the same store content. Returns {"out", "persons", "keyframes"}."""
    if source not in SOURCES:
        raise FeatureImportError(f"--source {source!r}: expected gt or det")
    parts = {k: [] for k in ("video_ids", "timestamps", "boxes", "features", "scores",
                             "clip_video_ids", "clip_timestamps", "clip_features")}
    with open_h5(store) as f:
        for vid in video_names(f):
            g = f["videos"][vid]
            ts = g["timestamps"][()].astype(np.int64)
            parts["clip_video_ids"].append(np.full(len(ts), vid))
            parts["clip_timestamps"].append(ts)
            parts["clip_features"].append(g["clip"][()])
            if source not in g:
                continue
            s = g[source]
            counts = np.diff(s["offsets"][()])
            parts["video_ids"].append(np.full(int(counts.sum()), vid))
            parts["timestamps"].append(np.repeat(ts, counts))
            parts["boxes"].append(s["boxes"][()])
            parts["features"].append(s["feats"][()])
            parts["scores"].append(s["scores"][()])
    arrays = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in parts.items()}
    for k in ("video_ids", "clip_video_ids"):
        arrays[k] = arrays[k].astype(str)
    np.savez(out, **arrays)
    return {"out": str(out), "persons": len(arrays["video_ids"]),
            "keyframes": len(arrays["clip_video_ids"])}
