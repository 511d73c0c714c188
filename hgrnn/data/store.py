"""The HDF5 feature store, schema v1: the single writer and low-level reading.

The offline stages (detection, clip features, person features) write one HDF5 file; every
experiment reads it many times (`hgrnn.data.windows.FeatureStore`). This docstring and
`docs/store.md` are the format's specification: a file written by any program that follows
them is accepted (nothing below relies on attributes only this module writes, unless marked
optional).

Layout (shapes: T keyframes of a video, N persons of one box source, C = feature_dim,
K = number of label-map classes)::

    /                                   root group
      attrs:
        format       str    "hgrnn-store"
        version      int    1                      (FORMAT_VERSION)
        feature_dim  int    C
        label_map    str    JSON list of [action_id, name], in label-column order (K entries)
        box_format   str    "xyxy-normalized"      (x1, y1, x2, y2 in [0, 1] of the frame)
        configs      str    JSON object: stage name -> the config that stage ran with
        streams      str    JSON list of [name, start, stop]: named slices of the C feature
                            dims, e.g. [["rgb", 0, 256], ["flow", 256, 512]];
                            optional, default [["rgb", 0, C]] (see "Streams" below)
        writer       str    optional: the program that created the file, e.g. "hgrnn 0.1.0"
      /videos                           group, one subgroup per video
        /<video_id>                     group (any name without "/")
          attrs:
            complete   bool   True, written LAST; a video without it is absent for readers
            width      int    frame width in pixels (optional)
            height     int    frame height in pixels (optional)
            digest     str    sha1 of the video's arrays (optional; used in fingerprints)
          timestamps   int32    [T]      keyframe times in seconds, strictly increasing
          clip         float16  [T, C]   clip-level feature of each keyframe
          /gt                            ground-truth persons (optional subgroup)
            offsets    int64    [T+1]    keyframe t owns rows offsets[t]:offsets[t+1];
                                         offsets[0] = 0, non-decreasing, offsets[T] = N
            boxes      float32  [N, 4]   xyxy normalised, x1 <= x2, y1 <= y2
            feats      float16  [N, C]   RoI-pooled person features
            scores     float32  [N]      1.0 for ground truth
            labels     uint8    [N, K]   0/1 multi-hot over the label map (chunked + gzip)
            person_id  int32    [N]      AVA person id (-1 unknown)
          /det                           detected persons (optional subgroup): same layout;
                                         labels and person_id optional, scores = detector
                                         confidence
      /failures    vlen str [M, 2]      optional: rows of (video_id, reason) for videos a
                                         stage could not process

Streams: a store may hold several feature streams (`extract-features --streams rgb,flow`:
I3D on RGB frames and I3D on optical flow). Every `clip` row and every `feats` row is then the
concatenation of the streams' features, and `streams` names the slices, which tile the C dims
in order: stream s of a keyframe is `clip[t, start:stop]`, of a person `feats[n, start:stop]`.
Schema v1 reserved this attribute from the start, so adding the flow stream changed nothing
else: an RGB store (`[["rgb", 0, C]]`, or no attribute at all) is valid and reads as before,
and `version` stays 1. Readers select streams by name (`FeatureStore(..., streams=...)`);
`merge_stores` and a resuming writer refuse other streams.

A keyframe may have zero persons (offsets[t] == offsets[t+1]); a video may have neither
`gt` nor `det`. Any HDF5 storage layout (contiguous, chunked, any standard filter) is read
the same way; the writer stores the big arrays contiguous (fast to load, file size equal to
the raw bytes) and `labels` chunked + gzip.

Crash safety: the writer disables HDF5 metadata-cache evictions, so between two flushes the
on-disk metadata is exactly the last flushed state; it flushes after every video, and
`complete` is set just before that flush. A writer killed (even with SIGKILL) mid-video
therefore leaves a file whose earlier videos are intact; the partial video has no `complete`
flag, readers ignore it, and the next `StoreWriter` on the file deletes it.

Validation: `check_video_arrays` holds every rule above over one video's arrays (numpy arrays
or h5py datasets) and returns all problems; `StoreWriter.add_video` raises the first before
touching the file, `hgrnn inspect --check` (`hgrnn.data.store_check`) lists them all.

One writer, clean failures (`hgrnn.data.store_io`): a writer holds an exclusive lock
(`PATH.lock`) from before its existence check until it closes, so a second writer is refused
naming the first; a stage that reads the store to plan its writing takes the lock before
that read (`lock_for_writing`, then `StoreWriter(..., lock=)`); children a writer forks drop
its file descriptor and lock. A write error (a full disk) abandons the file as it was at the
last flush and raises one StoreError naming the file and the free space; the writer is then
closed for good.

Typical use::

    with StoreWriter("train.h5", feature_dim=256, label_map=lm, configs={"extract": cfg}) as w:
        for vid in videos:
            if w.has_video(vid):
                continue                    # resume
            w.add_video(vid, timestamps, clip, gt=PersonSet(...), det=PersonSet(...))
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import warnings
from dataclasses import dataclass

import h5py
import numpy as np

from hgrnn import __version__
from hgrnn.data.ava import BOX_TOLERANCE, LabelMap
from hgrnn.data.store_io import (StoreError, WriterLock, abandon_h5, detach_h5, forget_in_child,
                                 is_write_error, lock_holder, read_errors, write_error)

FORMAT = "hgrnn-store"
FORMAT_VERSION = 1
BOX_FORMAT = "xyxy-normalized"
SOURCES = ("gt", "det")
#: stage-config keys added after stores were first written -> what a store written before
#: them holds. Any other key a store lacks means None (stages record a setting that is off
#: as None). The readers that compare configs (extract's resume check, merge-stores) use it.
CONFIG_DEFAULTS = {"extract": {"streams": ["rgb"], "person_layer": "mixed_5c",
                               "backbone_name": "i3d"}}
LABEL_CHUNK_ROWS = 2048
_FLOAT16_MAX = float(np.finfo(np.float16).max)


@dataclass(frozen=True)
class PersonSet:
    """The persons of T keyframes of one video and one box source, as one ragged array.

    offsets:    (T+1,) int64; keyframe t owns rows offsets[t]:offsets[t+1]
    boxes:      (N, 4) float32, x1, y1, x2, y2 normalised to [0, 1]
    feats:      (N, C) float16 (any float is cast)
    scores:     (N,) float32 (1.0 for ground truth)
    labels:     (N, K) uint8 0/1 multi-hot in label-map column order (ground truth only)
    person_ids: (N,) int32 AVA person ids, -1 when unknown (ground truth only)
    """

    offsets: np.ndarray
    boxes: np.ndarray
    feats: np.ndarray
    scores: np.ndarray
    labels: np.ndarray | None = None
    person_ids: np.ndarray | None = None

    @classmethod
    def from_lists(cls, boxes, feats, scores, labels=None, person_ids=None) -> "PersonSet":
        """Build from per-keyframe lists (T entries of (n_t, ...) arrays)."""
        counts = [len(b) for b in boxes]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

        def cat(parts, width, dtype):
            if not parts or sum(len(p) for p in parts) == 0:
                return np.zeros((0,) + width, dtype)
            return np.concatenate([np.asarray(p, dtype).reshape((-1,) + width) for p in parts])

        c = np.asarray(feats[0]).shape[-1] if len(feats) else 0
        return cls(
            offsets=offsets,
            boxes=cat(boxes, (4,), np.float32),
            feats=cat(feats, (c,), np.float16),
            scores=cat(scores, (), np.float32),
            labels=None if labels is None else cat(labels, (np.asarray(labels[0]).shape[-1],), np.uint8),
            person_ids=None if person_ids is None else cat(person_ids, (), np.int32),
        )


# --------------------------------------------------------------------------- helpers

def _text(value) -> str:
    """An HDF5 string attribute as str (h5py gives str for vlen, bytes for fixed-length)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value[()])
    return str(value)


def label_map_pairs(label_map) -> list:
    """[[id, name], ...] from a LabelMap, its JSON text, or a list of pairs."""
    if isinstance(label_map, (str, bytes)):
        pairs = json.loads(_text(label_map))
    elif hasattr(label_map, "to_json"):
        pairs = json.loads(label_map.to_json())
    else:
        pairs = list(label_map)
    return [[int(i), str(n)] for i, n in pairs]


def to_label_map(text):
    """The root `label_map` attribute as a `hgrnn.data.ava.LabelMap`."""
    return LabelMap.from_json(json.dumps(label_map_pairs(text)))


def _config_dict(config) -> dict:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(config, dict):
        raise TypeError(f"a stage config must be a dict or a dataclass, got {type(config).__name__}")
    # round trip through JSON so that what we compare is what the file holds
    return json.loads(json.dumps(config, default=str))


def open_h5(path, mode="r"):
    """h5py.File(path, mode), with a one-line StoreError for a missing, truncated or
    non-HDF5 file."""
    path = str(path)
    if mode == "r" and not os.path.exists(path):
        raise StoreError(f"{path}: no such file")
    try:
        if mode == "a" and os.path.exists(path):
            return _open_unbuffered(path)
        return h5py.File(path, mode)
    except OSError as err:
        msg = str(err)
        if "truncated" in msg.lower():
            why = "truncated HDF5 file (an interrupted copy or download?)"
        elif "signature" in msg.lower() or "not an hdf5" in msg.lower() or "file format" in msg.lower():
            why = "not an HDF5 file"
        elif "lock" in msg.lower():
            holder = lock_holder(path)
            why = (f"being written by another process ({holder})" if holder else
                   "locked by another process (a writer still running?)")
        else:
            why = msg.splitlines()[0] if msg else type(err).__name__
        raise StoreError(f"{path}: cannot open as a feature store: {why}") from None
    except Exception as err:  # noqa: BLE001 - h5py on a damaged superblock: RuntimeError...
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise StoreError(f"{path}: cannot open as a feature store: damaged HDF5 file "
                         f"({type(err).__name__}: {first}); restore it from a copy or "
                         f"re-extract") from None


def _open_unbuffered(path):
    """h5py.File(path, "r+") without HDF5's sieve buffer (the writer's file): a dataset
    write then reaches the file, or fails, inside create_dataset, never later while h5py
    closes the dataset, where a full disk could only be reported as "Exception ignored"."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_EARLIEST, h5py.h5f.LIBVER_LATEST)
    fapl.set_sieve_buf_size(0)
    return h5py.File(h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDWR, fapl=fapl))


@dataclass(frozen=True)
class StoreInfo:
    """The root attributes of a store, parsed and checked."""

    path: str
    version: int
    feature_dim: int
    label_map: list          # [[id, name], ...]
    configs: dict
    streams: list            # [[name, start, stop], ...]
    box_format: str


def read_info(f, path=None) -> StoreInfo:
    """Parse and check the root attributes of an open h5py.File."""
    path = path or f.filename
    with read_errors(path, dataset="root attributes"):
        return _read_info(f.attrs, path)


def _read_info(a, path) -> StoreInfo:
    if _text(a.get("format", "")) != FORMAT:
        got = a.get("format")
        raise StoreError(f"{path}: not an hgrnn feature store (root attribute 'format' is "
                         f"{_text(got)!r}, expected {FORMAT!r})" if got is not None else
                         f"{path}: not an hgrnn feature store (no root attribute 'format')")
    version = int(a.get("version", -1))
    if version != FORMAT_VERSION:
        hint = " (written by a newer hgrnn; upgrade)" if version > FORMAT_VERSION else ""
        raise StoreError(f"{path}: store format version {version}, this hgrnn reads version "
                         f"{FORMAT_VERSION}{hint}")
    for key in ("feature_dim", "label_map"):
        if key not in a:
            raise StoreError(f"{path}: root attribute {key!r} is missing")
    feature_dim = int(a["feature_dim"])
    try:
        lm = label_map_pairs(a["label_map"])
    except (ValueError, TypeError) as err:
        raise StoreError(f"{path}: root attribute 'label_map' is not a JSON list of "
                         f"[id, name]: {err}") from None
    try:
        configs = json.loads(_text(a["configs"])) if "configs" in a else {}
        streams = json.loads(_text(a["streams"])) if "streams" in a else [["rgb", 0, feature_dim]]
    except ValueError as err:
        raise StoreError(f"{path}: root attribute 'configs' or 'streams' is not JSON: {err}") from None
    box_format = _text(a.get("box_format", BOX_FORMAT))
    if box_format != BOX_FORMAT:
        raise StoreError(f"{path}: box_format {box_format!r} is not supported (expected {BOX_FORMAT!r})")
    return StoreInfo(str(path), version, feature_dim, lm, configs, streams, box_format)


def is_complete(group) -> bool:
    """True when a /videos/<id> group carries a true `complete` attribute. An attribute
    that exists but cannot be read (a damaged file, not an interrupted write) raises."""
    if "complete" not in group.attrs:
        return False
    value = group.attrs["complete"]
    try:
        return bool(np.asarray(value).reshape(-1)[0]) if np.size(value) else False
    except (TypeError, ValueError):
        return False


def video_names(f, complete=True) -> list:
    """Sorted names of the complete (or, complete=False, incomplete) videos of an open file."""
    with read_errors(f.filename, dataset="/videos"):
        if "videos" not in f:
            return []
        videos = f["videos"]
        names = list(videos.keys())
    out = []
    for k in names:
        with read_errors(f.filename, k):
            if is_complete(videos[k]) == complete:
                out.append(k)
    return sorted(out)


def read_failures_open(f) -> dict:
    if "failures" not in f:
        return {}
    rows = f["failures"][()]
    return {_text(v): _text(r) for v, r in np.asarray(rows).reshape(-1, 2)}


def read_failures(path) -> dict:
    """{video_id: reason} recorded by the stages that wrote the store (empty if none)."""
    with open_h5(path) as f:
        read_info(f, path)
        with read_errors(path, dataset="/failures"):
            return read_failures_open(f)


def video_digest(timestamps, clip, sets: dict) -> str:
    """sha1 over a video's arrays in their stored dtypes (the optional `digest` attribute)."""
    h = hashlib.sha1()
    h.update(np.ascontiguousarray(timestamps, np.int32).tobytes())
    h.update(np.ascontiguousarray(clip, np.float16).tobytes())
    for name in SOURCES:
        ps = sets.get(name)
        if ps is None:
            continue
        h.update(name.encode())
        for arr in (ps["offsets"], ps["boxes"], ps["feats"], ps["scores"], ps.get("labels"),
                    ps.get("person_id")):
            if arr is not None:
                h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- validation
#
# The schema's rules over one video's arrays, written once: the writer raises the first
# problem before it touches the file, `inspect --check` (store_check) lists them all.

#: the datasets of a person set (`/gt`, `/det`), in schema order
PERSON_DATASETS = ("offsets", "boxes", "feats", "scores", "labels", "person_id")


def _check_video_id(video_id, path):
    if (not isinstance(video_id, str) or not video_id or "/" in video_id or "\0" in video_id
            or video_id in (".", "..")):
        raise StoreError(f"{path}: invalid video id {video_id!r} (a non-empty string without "
                         f"'/' or NUL, other than '.' and '..', which name folders)")


def _values(x) -> np.ndarray:
    """The values of an h5py dataset (read now) or of an array-like, as numpy."""
    return x[()] if isinstance(x, h5py.Dataset) else np.asarray(x)


def _float_problem(arr) -> str | None:
    """Feature values (clip, feats): float, finite, within float16's range."""
    if not np.issubdtype(arr.dtype, np.floating):
        return f"dtype {arr.dtype}, expected a float array"
    finite = np.isfinite(arr)
    if not finite.all():
        return f"non-finite values ({int((~finite).sum())} NaN/inf)"
    if arr.dtype != np.float16 and arr.size and np.abs(arr).max() > _FLOAT16_MAX:
        return (f"values up to {float(np.abs(arr).max()):.4g} overflow float16 "
                f"(max {_FLOAT16_MAX:.0f})")
    return None


def _timestamps_problem(ts) -> str | None:
    if ts.ndim != 1 or ts.size == 0:
        return f"shape {ts.shape}, expected (T,) with T >= 1"
    if not np.issubdtype(ts.dtype, np.integer):
        if not (np.issubdtype(ts.dtype, np.floating) and np.isfinite(ts).all()
                and (ts == np.round(ts)).all()):
            return f"dtype {ts.dtype}, expected integer seconds"
    if ts.min() < np.iinfo(np.int32).min or ts.max() > np.iinfo(np.int32).max:
        return "values do not fit int32"
    steps = np.diff(ts.astype(np.int64))
    if (steps <= 0).any():
        i = int(np.nonzero(steps <= 0)[0][0])
        return f"not strictly increasing at index {i + 1} ({ts[i]} then {ts[i + 1]})"
    return None


def _boxes_problem(boxes, N) -> str | None:
    if boxes.shape != (N, 4):
        return f"shape {boxes.shape}, expected ({N}, 4) (offsets[-1] = {N})"
    if not (np.issubdtype(boxes.dtype, np.floating) or np.issubdtype(boxes.dtype, np.integer)):
        return f"dtype {boxes.dtype}, expected float"
    if not np.isfinite(boxes).all():
        return "non-finite values"
    outside = ((boxes < -BOX_TOLERANCE) | (boxes > 1 + BOX_TOLERANCE)).any(1)
    if outside.any():
        bad = int(np.nonzero(outside)[0][0])
        return (f"row {bad} = {boxes[bad].tolist()} is outside [0, 1] (boxes are x1, y1, x2, "
                f"y2 normalised by the frame size)")
    clipped = np.clip(boxes, 0.0, 1.0)          # what the writer stores
    flipped = (clipped[:, 2] < clipped[:, 0]) | (clipped[:, 3] < clipped[:, 1])
    if flipped.any():
        bad = int(np.nonzero(flipped)[0][0])
        return f"row {bad} = {boxes[bad].tolist()} has x2 < x1 or y2 < y1 (expected x1, y1, x2, y2)"
    return None


def _person_problems(source, ps: dict, T, C, K) -> tuple[list, dict]:
    """The problems of one person set {dataset: values or None} and the values read."""
    problems, out = [], {}

    def bad(key, text):
        problems.append(f"{source}/{key}: {text}")

    for key in ("offsets", "boxes", "feats", "scores"):
        if ps.get(key) is None:
            bad(key, "missing")
    if source == "gt" and ps.get("labels") is None:
        bad("labels", "missing (ground-truth persons need labels (N, K) 0/1)")
    if ps.get("offsets") is None:
        return problems, out
    off = out["offsets"] = _values(ps["offsets"])
    expected = f"({T + 1},)" if T is not None else "(T+1,)"
    if (off.ndim != 1 or (T is not None and len(off) != T + 1) or off.size == 0
            or not np.issubdtype(off.dtype, np.integer)):
        bad("offsets", f"shape {off.shape} dtype {off.dtype}, expected {expected} integers")
        return problems, out                 # the rows of everything else are unknown
    if off[0] != 0 or (np.diff(off) < 0).any():
        bad("offsets", "must start at 0 and never decrease")
        return problems, out
    N = int(off[-1])
    for key in PERSON_DATASETS[1:]:
        if ps.get(key) is None:
            continue
        arr = out[key] = _values(ps[key])
        if key == "boxes":
            why = _boxes_problem(arr, N)
        elif key == "feats":
            why = (f"shape {arr.shape}, expected ({N}, {C})" if arr.shape != (N, C)
                   else _float_problem(arr))
        elif key == "scores":
            why = (f"shape {arr.shape}, expected ({N},)" if arr.shape != (N,) else
                   f"dtype {arr.dtype}, expected float" if not np.issubdtype(arr.dtype, np.number)
                   else "non-finite values" if not np.isfinite(arr).all() else None)
        elif key == "labels":
            why = (f"shape {arr.shape}, expected ({N}, {K}) (K = classes of the store's label "
                   f"map)" if arr.shape != (N, K) else
                   f"values other than 0/1 ({np.unique(arr)[:5].tolist()}...)"
                   if arr.size and not np.isin(arr, (0, 1)).all() else None)
        else:                                   # person_id
            why = (f"shape {arr.shape} dtype {arr.dtype}, expected ({N},) integers"
                   if arr.shape != (N,) or not np.issubdtype(arr.dtype, np.integer) else None)
        if why:
            bad(key, why)
    return problems, out


def _size_problem(name, value) -> str | None:
    try:
        ok = int(value) == value and value > 0
    except (TypeError, ValueError):
        ok = False
    shown = value.item() if isinstance(value, np.generic) else value
    return None if ok else f"attribute {name} must be a positive integer, got {shown!r}"


def check_video_arrays(timestamps, clip, sets: dict, *, feature_dim: int, num_classes: int,
                       width=None, height=None) -> tuple[list, dict]:
    """Every rule of the schema over one video's arrays (numpy arrays or h5py datasets).

    timestamps, clip: arrays (None: missing); sets: {"gt"/"det": {dataset: array or None}}
    with the datasets of PERSON_DATASETS; width, height: the optional attributes.
    Returns (problems, values): problems, in schema order, each "DATASET: what is wrong"
    relative to the video group (e.g. "gt/boxes: row 2 = [...] is outside [0, 1]") or
    "attribute NAME ..." (`problem_at` joins either to the video's name); values,
    the arrays read, keyed like the arguments ("timestamps", "clip", "gt": {...}).
    A dataset whose shape is wrong stops the checks that depend on it (an offsets problem
    hides the rows of its person set)."""
    C, K = int(feature_dim), int(num_classes)
    problems, values = [], {}
    T = None
    if timestamps is None:
        problems.append("timestamps: missing")
    else:
        ts = values["timestamps"] = _values(timestamps)
        why = _timestamps_problem(ts)
        if why:
            problems.append(f"timestamps: {why}")
        if ts.ndim == 1 and ts.size:
            T = len(ts)
    if clip is None:
        problems.append("clip: missing")
    else:
        arr = values["clip"] = _values(clip)
        if arr.ndim != 2 or arr.shape[1] != C or (T is not None and len(arr) != T):
            problems.append(f"clip: shape {arr.shape}, expected ({T if T is not None else 'T'}, {C})")
        else:
            why = _float_problem(arr)
            if why:
                problems.append(f"clip: {why}")
    for source in SOURCES:
        if sets.get(source) is not None:
            p, values[source] = _person_problems(source, sets[source], T, C, K)
            problems += p
    for name, value in (("width", width), ("height", height)):
        why = None if value is None else _size_problem(name, value)
        if why:
            problems.append(why)
    return problems, values


def problem_at(video, problem: str) -> str:
    """A problem of `check_video_arrays` named in full: "VIDEO/DATASET: ..." or
    "VIDEO: attribute ...", VIDEO e.g. "videos/a" or "train.h5: videos/a"."""
    return f"{video}: {problem}" if problem.startswith("attribute ") else f"{video}/{problem}"


def _stored(values: dict) -> tuple:
    """(timestamps, clip, sets) of checked values in the dtypes the file stores (boxes
    clipped to [0, 1]; ground truth without person ids gets -1)."""
    ts = values["timestamps"].astype(np.int32)
    clip = np.ascontiguousarray(values["clip"], np.float16)
    sets = {}
    for source in SOURCES:
        v = values.get(source)
        if v is None:
            continue
        N = int(v["offsets"][-1])
        out = {"offsets": v["offsets"].astype(np.int64),
               "boxes": np.clip(v["boxes"].astype(np.float32), 0.0, 1.0),
               "feats": np.ascontiguousarray(v["feats"], np.float16),
               "scores": v["scores"].astype(np.float32)}
        if "labels" in v:
            out["labels"] = v["labels"].astype(np.uint8)
        if "person_id" in v:
            out["person_id"] = v["person_id"].astype(np.int32)
        elif source == "gt":
            out["person_id"] = np.full(N, -1, np.int32)
        sets[source] = out
    return ts, clip, sets


def _person_set_arrays(ps, where) -> dict:
    """A PersonSet as {dataset: array or None} (the writer's API)."""
    if not isinstance(ps, PersonSet):
        raise StoreError(f"{where}: expected a PersonSet, got {type(ps).__name__}")
    return {"offsets": ps.offsets, "boxes": ps.boxes, "feats": ps.feats, "scores": ps.scores,
            "labels": ps.labels, "person_id": ps.person_ids}


# --------------------------------------------------------------------------- writer

def lock_for_writing(path) -> WriterLock:
    """Take the writer lock of store `path` now (`store_io.WriterLock`, the sidecar
    `PATH.lock`), before anything reads the file to plan a write, e.g. a resume check.

    A second writer is then refused here with a StoreError naming the first (pid, host and
    command, as its lock file records), instead of meeting HDF5's own file lock while
    reading. Hand the lock to `StoreWriter(path, ..., lock=lock)`, which owns it from then on
    (released on close or on a failed open); release it yourself (`lock.release()`) when no
    writer follows, e.g. when the planning step fails."""
    return WriterLock(path).acquire()


class StoreWriter:
    """The only writer of a feature store; a context manager.

    Creates `path`, or re-opens an existing store to resume or append (its feature_dim and
    label map must match). On opening, videos left incomplete by an interrupted run are
    deleted. Every `add_video` validates its input completely before touching the file,
    writes the video, sets `complete` last and flushes, so a crash loses at most the video
    in flight.

    configs: stage name -> config (dict or dataclass), merged into the root `configs`.
    streams: optional [(name, start, stop), ...] naming slices of the feature dims.
    lock: the store's writer lock when the caller took it already (`lock_for_writing`,
    before reading the store to plan a resume); the writer then owns it and releases it
    on close, or on a failed open. Without it the writer takes the lock first.
    """

    def __init__(self, path, *, feature_dim: int, label_map, configs: dict | None = None,
                 streams=None, lock: WriterLock | None = None):
        self.path = str(path)
        self._f, self._broken, self._pid = None, None, os.getpid()
        if lock is not None and (lock.path != self.path or not lock.held):
            raise ValueError(f"{self.path}: lock= must be this store's held writer lock "
                             f"(lock_for_writing({self.path!r}))")
        # held from the existence check to close(): a second writer is refused (store_io)
        self._lock = lock if lock is not None else WriterLock(self.path).acquire()
        try:
            self.feature_dim = int(feature_dim)
            if self.feature_dim <= 0:
                raise StoreError(f"{self.path}: feature_dim must be positive, got {feature_dim}")
            self._label_pairs = label_map_pairs(label_map)
            self.num_classes = len(self._label_pairs)
            if not (os.path.exists(self.path) and os.path.getsize(self.path) > 0):
                self._create(streams)
            self._f = open_h5(self.path, "a")
            forget_in_child(self)
            self._disable_metadata_evictions()
            self._reopen(streams)
            for stage, cfg in (configs or {}).items():
                self.set_config(stage, cfg)
            self._drop_incomplete()
            with self._writing():
                self._f.flush()
        except BaseException:
            if self._f is not None and self._broken is None:
                self._f.close()
            self._f = None
            self._lock.release()
            raise

    # -- setup
    def _disable_metadata_evictions(self):
        # Keep dirty HDF5 metadata in memory until flush(): the on-disk metadata then
        # always describes the last flushed (consistent) state, whatever kills us.
        cfg = self._f.id.get_mdc_config()
        cfg.evictions_enabled = False
        cfg.incr_mode = 0        # H5C_incr__off (required with evictions disabled)
        cfg.flash_incr_mode = 0  # H5C_flash_incr__off
        cfg.decr_mode = 0        # H5C_decr__off
        self._f.id.set_mdc_config(cfg)

    def _create(self, streams):
        # an empty store is written under a temporary name and renamed, so that `path`
        # is never a half-created file (the writer lock makes the name ours alone)
        tmp = self.path + ".creating"
        try:
            with h5py.File(tmp, "w") as f:
                self._write_root(f, streams)
            os.replace(tmp, self.path)
        except BaseException as err:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            if isinstance(err, OSError):
                raise write_error(self.path, err) from None
            raise

    def _write_root(self, f, streams):
        a = f.attrs
        a["format"] = FORMAT
        a["version"] = np.int64(FORMAT_VERSION)
        a["feature_dim"] = np.int64(self.feature_dim)
        a["label_map"] = json.dumps(self._label_pairs)
        a["box_format"] = BOX_FORMAT
        a["configs"] = "{}"
        a["streams"] = json.dumps(self._check_streams(streams))
        a["writer"] = f"hgrnn {__version__}"
        f.create_group("videos")

    def _check_streams(self, streams):
        if streams is None:
            return [["rgb", 0, self.feature_dim]]
        out = [[str(n), int(a), int(b)] for n, a, b in streams]
        for n, a, b in out:
            if not 0 <= a < b <= self.feature_dim:
                raise StoreError(f"{self.path}: stream {n!r} [{a}, {b}) is outside the "
                                 f"{self.feature_dim} feature dims")
        return out

    def _reopen(self, streams):
        info = read_info(self._f, self.path)
        if info.feature_dim != self.feature_dim:
            raise StoreError(f"{self.path}: existing store has feature_dim {info.feature_dim}, "
                             f"this writer has {self.feature_dim}")
        if info.label_map != self._label_pairs:
            raise StoreError(f"{self.path}: existing store has a different label map "
                             f"({len(info.label_map)} classes) than this writer "
                             f"({self.num_classes} classes)")
        if streams is not None and self._check_streams(streams) != info.streams:
            raise StoreError(f"{self.path}: existing store has streams {info.streams}, "
                             f"this writer {streams}")
        if "videos" not in self._f:
            self._f.create_group("videos")

    def _drop_incomplete(self):
        with self._writing():
            for name in video_names(self._f, complete=False):
                del self._f["videos"][name]

    # -- context manager
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._pid != os.getpid():     # a forked copy: the parent owns file and lock
            return
        try:
            if self._f is not None and self._f.id.valid and self._broken is None:
                with self._writing():
                    self._f.flush()
                self._f.close()
        finally:
            self._f = None
            self._lock.release()

    def _file(self):
        if self._broken is not None:
            raise self._broken
        if self._f is None:
            raise StoreError(f"{self.path}: writer is closed")
        return self._f

    def _forget_in_child(self):
        # a forked child (a DataLoader worker) must neither hold the file's HDF5 lock after
        # we die nor ever flush our in-memory metadata into the file: detach its copy
        if self._f is not None and self._pid != os.getpid():
            detach_h5(self._f)

    @contextlib.contextmanager
    def _writing(self, needed=None):
        """Around every h5py write: an I/O error (a full disk...) abandons the file as it
        was at the last flush (complete videos intact) and becomes a one-line StoreError;
        the writer is then closed for good."""
        try:
            yield
        except StoreError:
            raise
        except Exception as err:  # noqa: BLE001 - h5py raises OSError, RuntimeError, ...
            raise self._fail(err, needed) from None

    def _fail(self, err, needed=None) -> StoreError:
        """Abandon the file after write error `err` (it stays as last flushed) and close the
        writer for good; returns the StoreError to raise."""
        if self._f is not None and self._broken is None:
            abandon_h5(self._f)
        if self._broken is None:
            self._broken = write_error(
                self.path, err, needed,
                done="the videos completed before are kept" if is_write_error(err) else None)
        return self._broken

    # -- API
    def has_video(self, video_id) -> bool:
        """True when `video_id` is in the store and complete."""
        videos = self._file()["videos"]
        return video_id in videos and is_complete(videos[video_id])

    def video_ids(self) -> list:
        """Sorted ids of the complete videos."""
        return video_names(self._file())

    def set_config(self, stage: str, config) -> None:
        """Record the config a stage ran with (root attribute `configs`, JSON); flushed."""
        f = self._file()
        configs = json.loads(_text(f.attrs.get("configs", "{}")))
        new = _config_dict(config)
        if stage in configs and configs[stage] != new:
            changed = sorted(k for k in set(configs[stage]) | set(new)
                             if configs[stage].get(k) != new.get(k))
            warnings.warn(f"{self.path}: stage {stage!r} config changes ({', '.join(changed)}); "
                          f"videos written before used the old one", stacklevel=2)
        configs[stage] = new
        with self._writing():
            f.attrs["configs"] = json.dumps(configs, sort_keys=True)
            f.flush()

    def record_failure(self, video_id: str, reason: str) -> None:
        """Record that a stage could not process `video_id` (stored in `/failures`; a later
        successful `add_video` of the same id removes the record)."""
        failures = read_failures_open(self._file())
        failures[str(video_id)] = str(reason)
        self.write_failures(failures)

    def failures(self) -> dict:
        return read_failures_open(self._file())

    def write_failures(self, failures: dict) -> None:
        """Replace the `/failures` table by `failures` ({video_id: reason}); flushed."""
        f = self._file()
        with self._writing():
            if "failures" in f:
                del f["failures"]
            if failures:
                rows = np.array([[k, v] for k, v in sorted(failures.items())], dtype=object)
                f.create_dataset("failures", data=rows, dtype=h5py.string_dtype("utf-8"))
            f.flush()

    def video_group(self, video_id):
        """The h5py group of a video already in the store (to read it)."""
        return self._file()["videos"][video_id]

    def copy_video(self, group, video_id) -> None:
        """Copy a complete video group of another open store as it is (storage layout and
        attributes kept), then flush (`merge_stores`). A write error ends the writer
        (StoreError); an error reading `group` propagates as h5py raised it."""
        f = self._file()
        try:
            group.file.copy(group, f["videos"], name=video_id)
        except Exception as err:  # noqa: BLE001 - h5py: OSError, RuntimeError...
            if is_write_error(err):
                raise self._fail(err) from None
            raise
        with self._writing():
            f.flush()

    def drop_video(self, video_id) -> None:
        """Delete a video, complete or not (e.g. a copy that failed half-way); flushed."""
        f = self._file()
        with self._writing():
            if video_id in f["videos"]:
                del f["videos"][video_id]
            f.flush()

    def add_video(self, video_id, timestamps, clip, *, gt=None, det=None, width=None,
                  height=None, overwrite=False) -> None:
        """Validate and write one video, then flush.

        timestamps: (T,) integer seconds, strictly increasing
        clip:       (T, C) float, finite (stored float16)
        gt, det:    PersonSet or None (gt needs labels (N, K) 0/1)
        width, height: frame size in pixels (optional)
        overwrite:  replace an existing complete video of the same id (else StoreError)
        """
        f = self._file()
        _check_video_id(video_id, self.path)
        where = f"{self.path}: videos/{video_id}"
        sets = {name: _person_set_arrays(ps, f"{where}/{name}")
                for name, ps in (("gt", gt), ("det", det)) if ps is not None}
        problems, values = check_video_arrays(timestamps, clip, sets,
                                              feature_dim=self.feature_dim,
                                              num_classes=self.num_classes,
                                              width=width, height=height)
        if problems:
            raise StoreError(problem_at(where, problems[0]))
        ts, clip, sets = _stored(values)

        videos = f["videos"]
        if video_id in videos:
            if is_complete(videos[video_id]) and not overwrite:
                raise StoreError(f"{where}: already in the store (pass overwrite=True to replace it)")
            # Delete and flush before writing: freed space may be reused by the new data,
            # and the on-disk state must never point at the old video meanwhile.
            with self._writing():
                del videos[video_id]
                f.flush()
        needed = ts.nbytes + clip.nbytes + sum(a.nbytes for s in sets.values() for a in s.values())
        try:
            with self._writing(needed):
                self._write_video(videos, video_id, ts, clip, sets, width, height)
        except KeyboardInterrupt:
            if video_id in videos:
                try:
                    del videos[video_id]
                except Exception:  # noqa: BLE001 - the original error matters more
                    pass
            raise
        with self._writing():
            if "failures" in f:
                failures = read_failures_open(f)
                if failures.pop(video_id, None) is not None:
                    self.write_failures(failures)
            f.flush()

    def _write_video(self, videos, video_id, ts, clip, sets, width, height):
        """Create the groups and datasets of one validated video; `complete` last."""
        K = self.num_classes
        g = videos.create_group(video_id)
        g.create_dataset("timestamps", data=ts)
        g.create_dataset("clip", data=clip)
        for name, arrays in sets.items():
            sg = g.create_group(name)
            for key in ("offsets", "boxes", "feats", "scores", "person_id"):
                if key in arrays:
                    sg.create_dataset(key, data=arrays[key])
            if "labels" in arrays:
                labels = arrays["labels"]
                sg.create_dataset("labels", data=labels, maxshape=(None, K),
                                  chunks=(max(1, min(len(labels), LABEL_CHUNK_ROWS)), K),
                                  compression="gzip", compression_opts=4,
                                  rdcc_nbytes=0)   # no chunk cache: a failed write raises here,
                                                   # not later in h5py's __dealloc__
        if width is not None:
            g.attrs["width"] = np.int64(width)
        if height is not None:
            g.attrs["height"] = np.int64(height)
        g.attrs["digest"] = video_digest(ts, clip, sets)
        g.attrs["complete"] = True            # last: the video now exists for readers
