"""`hgrnn predict`: videos in, every person's actions out (a result CSV and drawn videos).

For a list of video files and a trained head (`hgrnn train-head` checkpoint):

  1. compatibility: the checkpoint's training store recorded how its features were
     extracted (feature dim, streams, backbone weights); the extraction settings given here
     must produce the same kind of features, else the run stops before decoding anything,
     naming what differs (`check_compatible`). Other clip settings that differ (clip
     frames, stride, short side) are warned about.
  2. features: the extraction stage itself (`hgrnn.pipeline.extract.extract_features`, so
     every extraction option, stream and detector works the same way) writes the videos'
     clip and person features into OUT/features.h5 (kept: a second run with another head,
     or more videos, reuses the videos already there; the checkpoint's label map and the
     videos' rows of --detections are written beside it, features_label_map.txt and
     features_detections.csv, the files its config names) or into a temporary store
     (keep_store=False). Keyframes: every second by default (or the extraction's
     --keyframes / the --detections CSV's keyframes). Persons: the 'det' source, from
     --detections or the person detector.
  3. scores: the head scores every keyframe of each video with its context window over
     that video's own keyframes (`hgrnn.hgrnn_head.infer.predict_store`: action probability
     x person confidence, class-specific NMS); all rows go to OUT/results.csv (AVA result
     format with a person id as a 9th column, `hgrnn eval-csv` and `hgrnn visualize` read
     it; `cut -d, -f1-8` gives the 8 columns that the official evaluator reads).
  3b. persons: each video's persons are linked across its keyframes (`hgrnn.track`, box
     IoU and the cosine similarity of the persons' RoI features in the store), one id per
     person; OUT/<video_id>_persons.csv and OUT/<video_id>_timeline.png say what each
     person did when (`hgrnn.apps.timeline`, actions scored >= draw_min_score).
  4. pictures: OUT/<video_id>.mp4, the video with the predictions drawn, each person in
     the colour of its id (`hgrnn.pipeline.visualize`), and a per-video summary (persons
     per keyframe, person ids, the most frequent actions).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from hgrnn.data.paths import output_path
from hgrnn.data.ava import LabelMap, load_label_map, read_results, write_results
from hgrnn.data.store import StoreError, open_h5, read_info, video_names
from hgrnn.data.video import VIDEO_EXTENSIONS
from hgrnn.data.windows import FeatureStore
from hgrnn.hgrnn_head.checkpoint import (check_store_matches, load_checkpoint,
                                         model_from_checkpoint, resolve_device, torch_threads)
from hgrnn.hgrnn_head.infer import predict_store
from hgrnn.pipeline.extract import extract_features
from hgrnn.pipeline.backbones import feature_dim, load_backbone
from hgrnn.pipeline.visualize import draw_video, group_keyframes, label_names
from hgrnn.apps.predict_config import PredictConfig
from hgrnn.apps.timeline import person_timelines, plot_timeline, write_persons_csv
from hgrnn.track import group_boxes, store_features, track_rows, write_tracked

#: Name of the feature store predict keeps in its output folder; the label map and person
#: boxes it was extracted with lie beside it (its config names them), so a later run with
#: the same inputs finds the same config.
STORE_NAME = "features.h5"
LABEL_MAP_NAME = "features_label_map.txt"
DETECTIONS_NAME = "features_detections.csv"
#: Extraction settings that change the features without changing their size: a head
#: trained with other values still runs, with a warning.
WARN_FIELDS = ("clip_frames", "frame_stride", "short_side", "fps", "resample_fps")


class PredictError(Exception):
    """Predict cannot run (a checkpoint that does not fit the extraction, a bad video list,
    an output that would overwrite an input); the message names the file."""


# ----------------------------------------------------------------------------- checks

def training_extraction(ckpt: dict) -> dict | None:
    """The extract config of the store the checkpoint was trained on: from the checkpoint
    itself (store_configs), else from its training store file when that still exists; None
    when unknown."""
    configs = ckpt.get("store_configs")
    if configs is None and ckpt.get("store_path") and os.path.exists(ckpt["store_path"]):
        try:
            with open_h5(ckpt["store_path"]) as f:
                info = read_info(f, ckpt["store_path"])
            configs = info.configs
        except (StoreError, OSError):
            pass
    if configs and not configs.get("extract"):
        imported = configs.get("import_gt") or configs.get("import_det")
        if imported:           # features of another system: no backbone here makes them
            raise PredictError(f"{ckpt.get('path', 'checkpoint')}: the head was trained on "
                               f"imported features ({imported.get('describe') or 'import-features'}"
                               f"), which hgrnn's backbones cannot extract from videos; use it "
                               f"with `hgrnn eval` on stores imported the same way")
    return None if configs is None else configs.get("extract")


def _describe_backbone(meta: dict | None) -> str:
    if not meta:
        return "unknown weights"
    sha = meta.get("sha256")
    where = f" {meta['path']}" if meta.get("path") else ""
    return f"{meta.get('kind')}{where}" + (f" (sha256 {sha[:12]})" if sha else "")


def backbone_name(stage: dict) -> str:
    """The RGB backbone an extract config names (no backbone_name: i3d, every store before
    `--backbone`)."""
    return (stage or {}).get("backbone_name") or "i3d"


def head_streams(ckpt: dict) -> tuple:
    """The feature streams the head reads, in order (checkpoints from before streams: rgb)."""
    return tuple(ckpt.get("streams") or (ckpt.get("train") or {}).get("streams") or ("rgb",))


def check_compatible(ckpt: dict, trained: dict | None, ours: dict) -> list[str]:
    """Refuse (PredictError) a checkpoint whose features cannot be the ones this extraction
    makes; return warnings for softer differences.

    ckpt: `load_checkpoint` dict (feature_dim, path, streams: what the head reads, see
    `head_streams`). trained: the training store's extract config (`training_extraction`;
    None when unknown). ours: what this run's extract config will say (`_our_stage`:
    feature_dim, streams, projection, backbone / flow_backbone {kind, path, sha256}, the
    WARN_FIELDS). Every stream the head reads must be extracted here, each with the backbone
    weights (kind and sha256) its training store's features came from, into features of the
    head's dim (with the same weights, the dim says whether the projection was applied:
    stores written before the config recorded the projection actually used say "on" for
    weights without one, so that field is not compared).
    """
    where = ckpt.get("path", "checkpoint")
    problems, warn = [], []
    wanted = head_streams(ckpt)
    made = _stream_names(ours.get("streams") or ["rgb"])
    missing = [s for s in wanted if s not in made]
    if trained is not None and "rgb" in wanted and \
            backbone_name(trained) != backbone_name(ours):
        problems.append(f"backbone: the head was trained on {backbone_name(trained)} "
                        f"features, this extraction uses {backbone_name(ours)} (pass "
                        f"--backbone {backbone_name(trained)})")
    elif missing:
        problems.append(f"streams: the head reads {'+'.join(wanted)}, this extraction makes "
                        f"{'+'.join(made)}")
    elif int(ckpt["feature_dim"]) != int(ours["feature_dim"]):
        problems.append(f"feature dim: the head takes {ckpt['feature_dim']}-d features, this "
                        f"extraction makes {ours['feature_dim']}-d ones (backbone "
                        f"{_describe_backbone(ours.get('backbone'))}, projection "
                        f"{'on' if ours.get('projection') else 'off'})")
    if trained is None:
        warn.append(f"{where}: no record of how its training features were extracted (a "
                    f"synthetic store, or a checkpoint from before hgrnn recorded it whose "
                    f"training store {ckpt.get('store_path')} is not found), so the backbone "
                    f"and streams cannot be checked")
    else:
        for stream in wanted:
            key = "backbone" if stream == "rgb" else f"{stream}_backbone"
            tb, ob = trained.get(key) or {}, ours.get(key) or {}
            if not tb or not ob:         # a stream on one side only: said above
                continue
            name = key.replace("_", " ")
            if (tb.get("kind"), tb.get("sha256")) != (ob.get("kind"), ob.get("sha256")):
                problems.append(f"{name}: the head was trained on features of "
                                f"{_describe_backbone(tb)}, this extraction uses "
                                f"{_describe_backbone(ob)}")
            elif ob.get("kind") == "random":
                # random weights are drawn from a fixed seed (i3d.RANDOM_SEED): the same seed
                # gives the same network, hence the features the head was trained on
                if tb.get("seed") is None:
                    warn.append(f"{name} weights 'none': the head's training store records "
                                f"no seed for its random weights (written before hgrnn "
                                f"recorded it), so they may differ from this run's (seed "
                                f"{ob.get('seed')})")
                elif tb.get("seed") != ob.get("seed"):
                    problems.append(f"{name}: the head was trained on features of random "
                                    f"weights of seed {tb.get('seed')}, this extraction draws "
                                    f"them from seed {ob.get('seed')}")
        for key in WARN_FIELDS:
            if key in trained and trained.get(key) != ours.get(key):
                warn.append(f"{key}: {ours.get(key)!r} here, the head's training store used "
                            f"{trained.get(key)!r} (features differ somewhat)")
    if problems:
        raise PredictError(f"{where} does not fit this extraction: " + "; ".join(problems)
                           + ". Pass the backbone/stream options the head's training store "
                             "was extracted with (hgrnn inspect STORE shows them).")
    return warn


def _stream_names(streams) -> list:
    """Stream names of a store's [[name, start, stop], ...] or a config's list of names."""
    return [s[0] if isinstance(s, (list, tuple)) else s for s in streams]


def video_ids(videos) -> dict[str, Path]:
    """video id (file name without extension) -> path; refuses missing files and two
    files with one id."""
    out: dict[str, Path] = {}
    for v in videos:
        path = Path(v)
        if not path.is_file():
            raise PredictError(f"{path}: no such video file")
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            raise PredictError(f"{path}: not a video file name (expected one of "
                               f"{', '.join(VIDEO_EXTENSIONS)})")
        if path.stem in out:
            raise PredictError(f"{path}: video id {path.stem!r} is also {out[path.stem]}; "
                               f"rename one (results.csv names videos by file name)")
        out[path.stem] = path
    if not out:
        raise PredictError("no videos given")
    return out


# ----------------------------------------------------------------------------- the run

def _our_stage(extract) -> dict:
    """What the extract stage config of this run will say about the features, without
    running it: streams, per stream the backbone's kind / path / sha256 ("backbone" for RGB,
    "flow_backbone" for flow), the feature dim (the streams' dims side by side) and the
    fields of WARN_FIELDS. Loads each backbone's weights once (on the CPU) to learn them."""
    if hasattr(extract, "resolved"):
        extract = extract.resolved()               # the backbone's clip settings
    fields = dataclasses.asdict(extract)
    streams = tuple(fields.get("streams") or ("rgb",))       # extraction before streams: RGB
    ours = {k: fields.get(k) for k in WARN_FIELDS}
    ours.update(streams=list(streams), projection=False, feature_dim=0)
    for stream in streams:
        key = "backbone" if stream == "rgb" else f"{stream}_backbone"
        weights = fields.get("backbone_weights" if stream == "rgb" else f"{stream}_backbone_weights")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")      # 'none' warns again when extraction loads it
            name = fields.get("backbone", "i3d") if stream == "rgb" else "i3d"
            backbone, projection, meta = load_backbone(
                name, weights, "cpu", stream=stream,
                input_size=(extract.clip_frames, extract.short_side, extract.short_side))
        ours[key] = {k: meta.get(k) for k in ("kind", "path", "sha256", "feature_dim", "seed")}
        if stream == "rgb" and name != "i3d":
            ours["backbone_name"] = name
        used = projection is not None and extract.projection     # as the store records it
        ours["projection"] = ours["projection"] or used
        ours["feature_dim"] += projection.out_features if used else feature_dim(backbone)
    return ours


def predict_videos(videos, extract, cfg: PredictConfig) -> dict:
    """Run `hgrnn predict` (module docstring). extract: an ExtractConfig whose out / videos
    are replaced (anything else: the user's extraction settings). Returns a dict: out,
    results (path), store (path or None), videos {id: per-video summary}, failed {id: why},
    warnings, extracted / reused (videos whose features were computed / found in the kept
    store), seconds."""
    started = time.time()
    ckpt = load_checkpoint(cfg.checkpoint)
    label_map = LabelMap.from_json(ckpt["label_map"])
    paths = video_ids(videos)
    out = Path(cfg.out)
    drawn = ({vid: output_path(out, vid, ".mp4", inputs=[path]) for vid, path in paths.items()}
             if cfg.draw else {})
    # refused before anything is written (OUT, its label map)
    extract = _with_streams(extract, head_streams(ckpt), ckpt)
    messages = check_compatible(ckpt, training_extraction(ckpt), _our_stage(extract))
    for m in messages:
        warnings.warn(m, stacklevel=2)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="hgrnn-predict-"))
    try:
        # the checkpoint's label map as a file the extraction can read back
        keep = out if cfg.keep_store else work          # the store and its inputs
        map_path = keep / LABEL_MAP_NAME
        map_path.write_text("".join(f"{i} {n}\n" for i, n in zip(label_map.ids, label_map.names)),
                            encoding="utf-8")
        if load_label_map(str(map_path)) != label_map:
            raise PredictError(f"{ckpt['path']}: its label map cannot be written as a text "
                               f"file (class names with quotes or edge spaces)")

        # the videos, under their ids, in one folder the extraction stage reads
        links = work / "videos"
        links.mkdir()
        for vid, path in paths.items():
            os.symlink(path.resolve(), links / f"{vid}{path.suffix.lower()}")
        detections = extract.detections
        if detections is not None:         # only our videos' rows: others are no failures
            detections = _rows_of(detections, paths, keep / DETECTIONS_NAME)
        store = keep / STORE_NAME
        run_cfg = dataclasses.replace(extract, out=str(store), videos=str(links), frames=None,
                                      label_map=str(map_path), annotations=None,
                                      detections=detections, progress=cfg.progress)
        try:
            summary = extract_features(run_cfg)
        except ValueError as exc:     # e.g. a kept store extracted with other settings
            hint = (" (or --no-keep-store)" if cfg.keep_store else "")
            raise PredictError(f"{exc}{hint}") from None
        except StoreError as exc:
            raise PredictError(f"{exc}; use another --out or --no-keep-store") from None
        failed = {vid: str(reason).replace(str(links / f"{vid}{paths[vid].suffix.lower()}"),
                                           str(paths[vid]))
                  for vid, reason in summary["failed"].items() if vid in paths}

        with open_h5(store) as f:
            complete = set(video_names(f))
        for vid, path in paths.items():
            if vid not in complete and vid not in failed:
                failed[vid] = (f"{path}: no features: --detections {extract.detections} has no "
                               f"rows for video id {vid!r}" if extract.detections else
                               f"{path}: no features were written")
        if len(failed) == len(paths):
            raise PredictError("no video could be read: " + "; ".join(failed.values()))
        fs = FeatureStore(store, box_source="det", streams=tuple(head_streams(ckpt)))
        check_store_matches(ckpt, fs)
        device = resolve_device(cfg.device)
        model = model_from_checkpoint(ckpt, device)
        with torch_threads(cfg.num_threads), torch.no_grad():
            rows = predict_store(model, fs, device=device, nms_iou=cfg.nms_iou,
                                 progress=cfg.progress, min_score=cfg.min_score)
        rows = rows.take(np.flatnonzero(np.isin(rows.video_ids, list(paths))))
        rows = _with_person_ids(rows, store)
        results = out / "results.csv"
        write_tracked(results, rows, rows.person_ids, ground_truth=False)  # whole or not at all

        per_video = {}
        for vid, path in paths.items():
            if vid in failed:
                continue
            per_video[vid] = video_summary(fs, vid, rows, label_map, cfg.draw_min_score)
            per_video[vid].update(_person_files(out, vid, rows, label_map, cfg.draw_min_score))
            if cfg.draw:
                per_video[vid]["drawn"] = _draw(path, drawn[vid], rows, vid, label_map,
                                                cfg, extract.time_offset)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"out": str(out), "results": str(results),
            "store": str(store) if cfg.keep_store else None, "videos": per_video,
            "failed": failed, "warnings": messages, "extracted": summary["written"],
            "reused": summary["skipped"], "below_threshold": summary["below_threshold"],
            "det_threshold": run_cfg.det_threshold, "seconds": time.time() - started}


def _with_streams(extract, streams: tuple, ckpt: dict):
    """The ExtractConfig with the streams the head reads (the checkpoint decides them)."""
    if "streams" in {f.name for f in dataclasses.fields(extract)}:
        return dataclasses.replace(extract, streams=tuple(streams))
    if tuple(streams) != ("rgb",):
        raise PredictError(f"{ckpt['path']}: the head reads the {'+'.join(streams)} streams; "
                           f"this hgrnn's extraction makes RGB features only")
    return extract


def _with_person_ids(rows, store):
    """Result rows -> the same rows with person_ids: each video's persons linked across its
    keyframes by box IoU and their RoI features' cosine (the store's 'det' persons)."""
    groups = group_boxes(rows)
    features, _ = store_features(store, "det", groups)
    ids, _ = track_rows(rows, features=features)
    return dataclasses.replace(rows, person_ids=ids)


def _person_files(out: Path, vid: str, rows, label_map, min_score: float) -> dict:
    """OUT/<vid>_persons.csv and OUT/<vid>_timeline.png (`hgrnn.apps.timeline`) ->
    {"persons_csv", "timeline" (None without matplotlib), "tracks"}."""
    timelines, step = person_timelines(rows, vid, label_names(label_map), min_score)
    persons_csv = output_path(out, vid, "_persons.csv")
    write_persons_csv(persons_csv, timelines, step)
    png = output_path(out, vid, "_timeline.png")
    drawn = plot_timeline(png, timelines, step,
                          f"{vid}: actions per person (score >= {min_score:g})")
    return {"persons_csv": str(persons_csv), "timeline": str(png) if drawn else None,
            "tracks": len(timelines)}


def _rows_of(csv_path, paths: dict, target: Path) -> str:
    """Write the rows of `csv_path` (an AVA detection / result CSV) whose video is one of
    `paths` to `target`; returns target as str."""
    rows = read_results(csv_path, progress=False)
    write_results(target, rows.take(np.flatnonzero(np.isin(rows.video_ids, list(paths)))))
    return str(target)


def _draw(path, target, rows, vid, label_map, cfg: PredictConfig, time_offset) -> str:
    persons = group_keyframes(rows, vid, label_names(label_map), min_score=cfg.draw_min_score,
                              top_k=cfg.top_k)
    draw_video(path, target, results=persons, time_offset=time_offset, max_size=cfg.max_size,
               min_size=cfg.min_size, show_progress=cfg.progress)
    return str(target)


def video_summary(fs, vid: str, rows, label_map, min_score: float) -> dict:
    """keyframes, persons per keyframe (mean, max) of the 'det' source, and the most
    frequent actions: (name, persons x keyframes scored >= min_score), most first."""
    v = fs.video_ids.index(vid) if vid in fs.video_ids else None
    if v is None:
        return {"keyframes": 0, "persons_mean": 0.0, "persons_max": 0, "actions": []}
    counts = _persons_per_keyframe(fs, v)
    names = dict(zip(label_map.ids, label_map.names))
    mine = (rows.video_ids == vid) & (rows.scores >= min_score)
    actions = collections.Counter(names.get(int(a), f"id {a}") for a in rows.action_ids[mine])
    return {"keyframes": int(len(counts)), "persons_mean": float(np.mean(counts)) if len(counts) else 0.0,
            "persons_max": int(np.max(counts)) if len(counts) else 0,
            "actions": actions.most_common(5)}


def _persons_per_keyframe(fs, v: int) -> np.ndarray:
    """(T,) persons of each keyframe of video index v in FeatureStore fs."""
    first, stop = fs.video_kf_offsets[v], fs.video_kf_offsets[v + 1]
    return np.diff(fs.person_offsets[first:stop + 1]).astype(np.int64)


def format_summary(result: dict, min_score: float) -> str:
    """The per-video lines `hgrnn predict` prints."""
    lines = []
    for vid, s in result["videos"].items():
        acts = ", ".join(f"{name} {n}" for name, n in s["actions"][:3]) or "none"
        lines.append(f"{vid}: {s['keyframes']} keyframes, {s['persons_mean']:.1f} persons per "
                     f"keyframe (max {s['persons_max']}, {s.get('tracks', 0)} person ids); most "
                     f"frequent actions (score >= {min_score:g}): {acts}"
                     + (f"; drawn: {s['drawn']}" if s.get("drawn") else "")
                     + (f"; timeline: {s['timeline']}" if s.get("timeline") else ""))
    for vid, why in result["failed"].items():
        lines.append(f"{vid}: FAILED: {why}")
    if result.get("below_threshold"):
        lines.append(f"{result['below_threshold']} detection(s) of --detections scored below "
                     f"--det-threshold {result['det_threshold']:g}: dropped")
    lines.append(f"results: {result['results']}; features: "
                 + (result["store"] or "a temporary store")
                 + f" ({result['extracted']} video(s) extracted, {result['reused']} reused)")
    return "\n".join(lines)
