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
                            optional, default [["rgb", 0, C]]
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

A keyframe may have zero persons (offsets[t] == offsets[t+1]); a video may have neither
`gt` nor `det`. Any HDF5 storage layout (contiguous, chunked, any standard filter) is read
the same way; the writer stores the big arrays contiguous (fast to load, file size equal to
the raw bytes) and `labels` chunked + gzip.

Crash safety: the writer disables HDF5 metadata-cache evictions, so between two flushes the
on-disk metadata is exactly the last flushed state; it flushes after every video, and
`complete` is set just before that flush. A writer killed (even with SIGKILL) mid-video
therefore leaves a file whose earlier videos are intact; the partial video has no `complete`
flag, readers ignore it, and the next `StoreWriter` on the file deletes it.

Typical use::

    with StoreWriter("train.h5", feature_dim=256, label_map=lm, configs={"extract": cfg}) as w:
        for vid in videos:
            if w.has_video(vid):
                continue                    # resume
            w.add_video(vid, timestamps, clip, gt=PersonSet(...), det=PersonSet(...))
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from dataclasses import dataclass

import numpy as np

FORMAT = "hgrnn-store"
FORMAT_VERSION = 1
BOX_FORMAT = "xyxy-normalized"
SOURCES = ("gt", "det")
LABEL_CHUNK_ROWS = 2048
BOX_TOLERANCE = 1e-3          # boxes within this of [0, 1] are clipped, beyond it refused
_FLOAT16_MAX = float(np.finfo(np.float16).max)


class StoreError(Exception):
    """A store that cannot be opened, read or written; the message names the file (and the
    video and dataset when there is one)."""


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


def _label_map_json(label_map) -> str:
    return json.dumps(label_map_pairs(label_map))


def to_label_map(text):
    """The root `label_map` attribute as a `hgrnn.data.ava.LabelMap`."""
    from hgrnn.data.ava import LabelMap

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
    import h5py

    path = str(path)
    if mode == "r" and not os.path.exists(path):
        raise StoreError(f"{path}: no such file")
    try:
        return h5py.File(path, mode)
    except OSError as err:
        msg = str(err)
        if "truncated" in msg.lower():
            why = "truncated HDF5 file (an interrupted copy or download?)"
        elif "signature" in msg.lower() or "not an hdf5" in msg.lower() or "file format" in msg.lower():
            why = "not an HDF5 file"
        elif "lock" in msg.lower():
            why = "locked by another process (a writer still running?)"
        else:
            why = msg.splitlines()[0] if msg else type(err).__name__
        raise StoreError(f"{path}: cannot open as a feature store: {why}") from None


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
    a = f.attrs
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
    """True when a /videos/<id> group carries a true `complete` attribute."""
    value = group.attrs.get("complete", False)
    try:
        return bool(np.asarray(value).reshape(-1)[0]) if np.size(value) else False
    except (TypeError, ValueError):
        return False


def video_names(f, complete=True) -> list:
    """Sorted names of the complete (or, complete=False, incomplete) videos of an open file."""
    if "videos" not in f:
        return []
    videos = f["videos"]
    return sorted(k for k in videos.keys() if is_complete(videos[k]) == complete)


def _read_failures_open(f) -> dict:
    if "failures" not in f:
        return {}
    rows = f["failures"][()]
    return {_text(v): _text(r) for v, r in np.asarray(rows).reshape(-1, 2)}


def read_failures(path) -> dict:
    """{video_id: reason} recorded by the stages that wrote the store (empty if none)."""
    with open_h5(path) as f:
        read_info(f, path)
        return _read_failures_open(f)


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

def _check_video_id(video_id, path):
    if not isinstance(video_id, str) or not video_id or "/" in video_id or video_id in (".", ".."):
        raise StoreError(f"{path}: invalid video id {video_id!r} (a non-empty string without '/')")


def _finite_float16(arr, where, C=None):
    arr = np.asarray(arr)
    if not np.issubdtype(arr.dtype, np.floating):
        raise StoreError(f"{where}: dtype {arr.dtype}, expected a float array")
    if not np.isfinite(arr).all():
        raise StoreError(f"{where}: {int((~np.isfinite(arr)).sum())} non-finite values (NaN/inf)")
    if arr.dtype != np.float16 and arr.size and np.abs(arr).max() > _FLOAT16_MAX:
        raise StoreError(f"{where}: values up to {float(np.abs(arr).max()):.4g} overflow "
                         f"float16 (max {_FLOAT16_MAX:.0f})")
    return np.ascontiguousarray(arr, np.float16)


def _validate_person_set(ps, name, T, C, K, where) -> dict:
    """Check one PersonSet; return its arrays in stored dtypes keyed by dataset name."""
    w = f"{where}/{name}"
    if not isinstance(ps, PersonSet):
        raise StoreError(f"{w}: expected a PersonSet, got {type(ps).__name__}")
    offsets = np.asarray(ps.offsets)
    if offsets.shape != (T + 1,) or not np.issubdtype(offsets.dtype, np.integer):
        raise StoreError(f"{w}/offsets: shape {offsets.shape} dtype {offsets.dtype}, "
                         f"expected ({T + 1},) integers")
    offsets = offsets.astype(np.int64)
    if offsets[0] != 0 or (np.diff(offsets) < 0).any():
        raise StoreError(f"{w}/offsets: must start at 0 and never decrease")
    N = int(offsets[-1])

    boxes = np.asarray(ps.boxes, np.float32)
    if boxes.shape != (N, 4):
        raise StoreError(f"{w}/boxes: shape {boxes.shape}, expected ({N}, 4) (offsets[-1] = {N})")
    if not np.isfinite(boxes).all():
        raise StoreError(f"{w}/boxes: non-finite values")
    if N and (boxes.min() < -BOX_TOLERANCE or boxes.max() > 1 + BOX_TOLERANCE):
        bad = int(np.nonzero(((boxes < -BOX_TOLERANCE) | (boxes > 1 + BOX_TOLERANCE)).any(1))[0][0])
        raise StoreError(f"{w}/boxes: row {bad} = {boxes[bad].tolist()} is outside [0, 1] "
                         f"(boxes are x1, y1, x2, y2 normalised by the frame size)")
    boxes = np.clip(boxes, 0.0, 1.0)
    if N and ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).any():
        bad = int(np.nonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))[0][0])
        raise StoreError(f"{w}/boxes: row {bad} = {boxes[bad].tolist()} has x2 < x1 or y2 < y1 "
                         f"(expected x1, y1, x2, y2)")

    feats = np.asarray(ps.feats)
    if feats.shape != (N, C):
        raise StoreError(f"{w}/feats: shape {feats.shape}, expected ({N}, {C})")
    feats = _finite_float16(feats, f"{w}/feats")

    scores = np.asarray(ps.scores, np.float32)
    if scores.shape != (N,):
        raise StoreError(f"{w}/scores: shape {scores.shape}, expected ({N},)")
    if not np.isfinite(scores).all():
        raise StoreError(f"{w}/scores: non-finite values")

    out = {"offsets": offsets, "boxes": boxes, "feats": feats, "scores": scores}
    if ps.labels is None:
        if name == "gt":
            raise StoreError(f"{w}/labels: ground-truth persons need labels ({N}, {K}) uint8")
    else:
        labels = np.asarray(ps.labels)
        if labels.shape != (N, K):
            raise StoreError(f"{w}/labels: shape {labels.shape}, expected ({N}, {K}) "
                             f"(K = classes of the store's label map)")
        if labels.size and not np.isin(labels, (0, 1)).all():
            raise StoreError(f"{w}/labels: values other than 0/1 ({np.unique(labels)[:5].tolist()}...)")
        out["labels"] = labels.astype(np.uint8)
    if ps.person_ids is not None:
        pid = np.asarray(ps.person_ids)
        if pid.shape != (N,) or not np.issubdtype(pid.dtype, np.integer):
            raise StoreError(f"{w}/person_id: shape {pid.shape} dtype {pid.dtype}, expected ({N},) integers")
        out["person_id"] = pid.astype(np.int32)
    elif name == "gt":
        out["person_id"] = np.full(N, -1, np.int32)
    return out


# --------------------------------------------------------------------------- writer

class StoreWriter:
    """The only writer of a feature store; a context manager.

    Creates `path`, or re-opens an existing store to resume or append (its feature_dim and
    label map must match). On opening, videos left incomplete by an interrupted run are
    deleted. Every `add_video` validates its input completely before touching the file,
    writes the video, sets `complete` last and flushes, so a crash loses at most the video
    in flight.

    configs: stage name -> config (dict or dataclass), merged into the root `configs`.
    streams: optional [(name, start, stop), ...] naming slices of the feature dims.
    """

    def __init__(self, path, *, feature_dim: int, label_map, configs: dict | None = None,
                 streams=None):
        self.path = str(path)
        self.feature_dim = int(feature_dim)
        if self.feature_dim <= 0:
            raise StoreError(f"{self.path}: feature_dim must be positive, got {feature_dim}")
        self._label_pairs = label_map_pairs(label_map)
        self.num_classes = len(self._label_pairs)
        if not (os.path.exists(self.path) and os.path.getsize(self.path) > 0):
            self._create(streams)
        self._f = open_h5(self.path, "a")
        try:
            self._disable_metadata_evictions()
            self._reopen(streams)
            for stage, cfg in (configs or {}).items():
                self.set_config(stage, cfg)
            self._drop_incomplete()
            self._f.flush()
        except BaseException:
            self._f.close()
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
        # is never a half-created file
        import h5py

        tmp = self.path + ".creating"
        with h5py.File(tmp, "w") as f:
            self._write_root(f, streams)
        os.replace(tmp, self.path)

    def _write_root(self, f, streams):
        a = f.attrs
        a["format"] = FORMAT
        a["version"] = np.int64(FORMAT_VERSION)
        a["feature_dim"] = np.int64(self.feature_dim)
        a["label_map"] = json.dumps(self._label_pairs)
        a["box_format"] = BOX_FORMAT
        a["configs"] = "{}"
        a["streams"] = json.dumps(self._check_streams(streams))
        from hgrnn import __version__

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
        for name in video_names(self._f, complete=False):
            del self._f["videos"][name]

    # -- context manager
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._f is not None and self._f.id.valid:
            self._f.flush()
            self._f.close()
        self._f = None

    def _file(self):
        if self._f is None:
            raise StoreError(f"{self.path}: writer is closed")
        return self._f

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
        f.attrs["configs"] = json.dumps(configs, sort_keys=True)
        f.flush()

    def record_failure(self, video_id: str, reason: str) -> None:
        """Record that a stage could not process `video_id` (stored in `/failures`; a later
        successful `add_video` of the same id removes the record)."""
        failures = _read_failures_open(self._file())
        failures[str(video_id)] = str(reason)
        self._write_failures(failures)

    def failures(self) -> dict:
        return _read_failures_open(self._file())

    def _write_failures(self, failures: dict):
        import h5py

        f = self._file()
        if "failures" in f:
            del f["failures"]
        if failures:
            rows = np.array([[k, v] for k, v in sorted(failures.items())], dtype=object)
            f.create_dataset("failures", data=rows, dtype=h5py.string_dtype("utf-8"))
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
        where = f"{self.path}: video {video_id}"
        ts = np.asarray(timestamps)
        if ts.ndim != 1 or ts.size == 0:
            raise StoreError(f"{where}/timestamps: shape {ts.shape}, expected (T,) with T >= 1")
        if not np.issubdtype(ts.dtype, np.integer):
            if not (np.issubdtype(ts.dtype, np.floating) and np.isfinite(ts).all()
                    and (ts == np.round(ts)).all()):
                raise StoreError(f"{where}/timestamps: expected integer seconds, got {ts.dtype}")
        if ts.min() < np.iinfo(np.int32).min or ts.max() > np.iinfo(np.int32).max:
            raise StoreError(f"{where}/timestamps: values do not fit int32")
        ts = ts.astype(np.int32)
        if (np.diff(ts) <= 0).any():
            i = int(np.nonzero(np.diff(ts) <= 0)[0][0])
            raise StoreError(f"{where}/timestamps: not strictly increasing at index {i + 1} "
                             f"({ts[i]} then {ts[i + 1]})")
        T, C, K = len(ts), self.feature_dim, self.num_classes
        clip = np.asarray(clip)
        if clip.shape != (T, C):
            raise StoreError(f"{where}/clip: shape {clip.shape}, expected ({T}, {C})")
        clip = _finite_float16(clip, f"{where}/clip")
        sets = {}
        for name, ps in (("gt", gt), ("det", det)):
            if ps is not None:
                sets[name] = _validate_person_set(ps, name, T, C, K, where)
        for name, value in (("width", width), ("height", height)):
            if value is not None and (int(value) != value or value <= 0):
                raise StoreError(f"{where}: {name} must be a positive integer, got {value!r}")

        videos = f["videos"]
        if video_id in videos:
            if is_complete(videos[video_id]) and not overwrite:
                raise StoreError(f"{where}: already in the store (pass overwrite=True to replace it)")
            # Delete and flush before writing: freed space may be reused by the new data,
            # and the on-disk state must never point at the old video meanwhile.
            del videos[video_id]
            f.flush()
        try:
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
                                      compression="gzip", compression_opts=4)
            if width is not None:
                g.attrs["width"] = np.int64(width)
            if height is not None:
                g.attrs["height"] = np.int64(height)
            g.attrs["digest"] = video_digest(ts, clip, sets)
            g.attrs["complete"] = True            # last: the video now exists for readers
        except BaseException:
            if video_id in videos:
                try:
                    del videos[video_id]
                except Exception:  # noqa: BLE001 - the original error matters more
                    pass
            raise
        if "failures" in f:
            failures = _read_failures_open(f)
            if failures.pop(video_id, None) is not None:
                self._write_failures(failures)
        f.flush()


# --------------------------------------------------------------------------- checking

def check_store(path, progress=False) -> list:
    """Verify every invariant of the schema; return a list of problems, each
    "VIDEO/DATASET: what is wrong" (empty when the store is valid). Reads all data."""
    problems = []
    with open_h5(path) as f:
        info = read_info(f, path)
        C, K = info.feature_dim, len(info.label_map)
        if "videos" not in f:
            return [f"{path}: no /videos group"]
        names = sorted(f["videos"].keys())
        it = names
        if progress:
            from tqdm import tqdm

            it = tqdm(names, desc="check", unit="video", leave=False, disable=None)
        for name in it:
            p = _check_video(f["videos"][name], name, C, K)
            if p:
                problems.append(p)
        if "failures" in f:
            rows = f["failures"]
            if rows.ndim != 2 or rows.shape[1] != 2:
                problems.append(f"failures: shape {rows.shape}, expected (M, 2)")
    return problems


def _check_video(g, name, C, K):
    """The first broken invariant of one video group, as "video/dataset: problem", or None."""
    import h5py

    if not isinstance(g, h5py.Group):
        return f"videos/{name}: not a group"
    if not is_complete(g):
        return (f"videos/{name}: no 'complete' attribute (an interrupted write; readers "
                f"ignore it and the next writer run replaces it)")
    w = f"videos/{name}"
    for key in ("timestamps", "clip"):
        if key not in g:
            return f"{w}/{key}: missing"
    try:
        ts = g["timestamps"][()]
    except Exception as err:  # noqa: BLE001 - corrupt data is what we are looking for
        return f"{w}/timestamps: unreadable ({err})"
    if ts.ndim != 1 or not np.issubdtype(ts.dtype, np.integer) or ts.size == 0:
        return f"{w}/timestamps: shape {ts.shape} dtype {ts.dtype}, expected (T >= 1,) integers"
    if (np.diff(ts.astype(np.int64)) <= 0).any():
        return f"{w}/timestamps: not strictly increasing"
    T = len(ts)
    clip = g["clip"]
    if clip.shape != (T, C) or clip.dtype.kind != "f":
        return f"{w}/clip: shape {clip.shape} dtype {clip.dtype}, expected ({T}, {C}) float"
    try:
        if not np.isfinite(clip[()]).all():
            return f"{w}/clip: non-finite values"
    except Exception as err:  # noqa: BLE001
        return f"{w}/clip: unreadable ({err})"
    for src in SOURCES:
        if src not in g:
            continue
        s = g[src]
        ws = f"{w}/{src}"
        for key in ("offsets", "boxes", "feats", "scores"):
            if key not in s:
                return f"{ws}/{key}: missing"
        try:
            off = s["offsets"][()]
            if off.shape != (T + 1,) or not np.issubdtype(off.dtype, np.integer):
                return f"{ws}/offsets: shape {off.shape} dtype {off.dtype}, expected ({T + 1},) integers"
            if off[0] != 0 or (np.diff(off) < 0).any():
                return f"{ws}/offsets: must start at 0 and never decrease"
            N = int(off[-1])
            boxes = s["boxes"][()]
            if boxes.shape != (N, 4):
                return f"{ws}/boxes: shape {boxes.shape}, expected ({N}, 4)"
            if not np.isfinite(boxes).all():
                return f"{ws}/boxes: non-finite values"
            if N and (boxes.min() < -BOX_TOLERANCE or boxes.max() > 1 + BOX_TOLERANCE):
                return f"{ws}/boxes: values outside [0, 1]"
            if N and ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).any():
                return f"{ws}/boxes: x2 < x1 or y2 < y1"
            feats = s["feats"]
            if feats.shape != (N, C) or feats.dtype.kind != "f":
                return f"{ws}/feats: shape {feats.shape} dtype {feats.dtype}, expected ({N}, {C}) float"
            if not np.isfinite(feats[()]).all():
                return f"{ws}/feats: non-finite values"
            scores = s["scores"][()]
            if scores.shape != (N,) or not np.isfinite(scores).all():
                return f"{ws}/scores: shape {scores.shape}, expected ({N},) finite"
            if "labels" in s:
                labels = s["labels"][()]
                if labels.shape != (N, K):
                    return f"{ws}/labels: shape {labels.shape}, expected ({N}, {K})"
                if labels.size and not np.isin(labels, (0, 1)).all():
                    return f"{ws}/labels: values other than 0/1"
            elif src == "gt":
                return f"{ws}/labels: missing"
            if "person_id" in s and s["person_id"].shape != (N,):
                return f"{ws}/person_id: shape {s['person_id'].shape}, expected ({N},)"
        except Exception as err:  # noqa: BLE001
            return f"{ws}: unreadable ({type(err).__name__}: {err})"
    return None


# --------------------------------------------------------------------------- merging

def _same_video(a, b) -> bool:
    """True when two video groups hold identical datasets."""
    import h5py

    def items(g, prefix=""):
        out = {}
        for k, v in g.items():
            if isinstance(v, h5py.Group):
                out.update(items(v, prefix + k + "/"))
            else:
                out[prefix + k] = v
        return out

    da, db = items(a), items(b)
    if set(da) != set(db):
        return False
    for k in da:
        if da[k].shape != db[k].shape or not np.array_equal(da[k][()], db[k][()]):
            return False
    return True


def merge_stores(out, shards: list, overwrite=False, on_duplicate="error", progress=True) -> dict:
    """Combine shard stores (e.g. written by parallel workers) into one store `out`.

    The shards must agree on feature_dim, label map and streams. Complete videos are copied
    (with their storage layout and attributes); incomplete ones are skipped. Configs are
    merged per stage (the first shard's wins when they differ; a warning names the stage).
    Failures are merged, dropping those of videos that are complete in some shard.
    A video id present in several shards is an error, unless the copies are identical
    (then one is kept) or `on_duplicate="first"` (keep the first shard's).
    The result is written to OUT.partial and renamed at the end. Returns a summary dict.
    """
    if on_duplicate not in ("error", "first"):
        raise ValueError(f"on_duplicate must be 'error' or 'first', got {on_duplicate!r}")
    out = str(out)
    if not shards:
        raise StoreError(f"{out}: no shards to merge")
    shards = [str(s) for s in shards]
    if os.path.abspath(out) in {os.path.abspath(s) for s in shards}:
        raise StoreError(f"{out}: the output is also one of the shards")
    if os.path.exists(out) and not overwrite:
        raise StoreError(f"{out}: exists (pass overwrite=True / --overwrite to replace it)")
    out_dir = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(out_dir):
        raise StoreError(f"{out}: directory {out_dir} does not exist")

    infos = []
    for s in shards:
        with open_h5(s) as f:
            infos.append(read_info(f, s))
    first = infos[0]
    for info in infos[1:]:
        if info.feature_dim != first.feature_dim:
            raise StoreError(f"{info.path}: feature_dim {info.feature_dim} differs from "
                             f"{first.path} ({first.feature_dim})")
        if info.label_map != first.label_map:
            raise StoreError(f"{info.path}: label map differs from {first.path}")
        if info.streams != first.streams:
            raise StoreError(f"{info.path}: streams {info.streams} differ from {first.path} "
                             f"({first.streams})")
    configs, differing = {}, []
    for info in infos:
        for stage, cfg in info.configs.items():
            if stage not in configs:
                configs[stage] = cfg
            elif configs[stage] != cfg and stage not in differing:
                differing.append(stage)
    for stage in differing:
        warnings.warn(f"merge-stores: stage {stage!r} config differs between shards; "
                      f"keeping the first shard's", stacklevel=2)

    partial = out + ".partial"
    if os.path.exists(partial):
        os.remove(partial)
    import h5py

    source_of: dict = {}
    copied = skipped_incomplete = duplicates = 0
    failures: dict = {}
    with StoreWriter(partial, feature_dim=first.feature_dim, label_map=first.label_map,
                     streams=first.streams) as w:
        dst = w._f
        dst.attrs["configs"] = json.dumps(configs, sort_keys=True)
        it = shards
        if progress:
            from tqdm import tqdm

            it = tqdm(shards, desc="merge", unit="shard", leave=False, disable=None)
        for s in it:
            with h5py.File(s, "r") as f:
                failures_s = _read_failures_open(f)
                for k, v in failures_s.items():
                    failures.setdefault(k, v)
                skipped_incomplete += len(video_names(f, complete=False))
                for name in video_names(f):
                    if name in source_of:
                        if _same_video(f["videos"][name], dst["videos"][name]):
                            duplicates += 1
                            continue
                        if on_duplicate == "first":
                            duplicates += 1
                            continue
                        raise StoreError(f"{s}: video {name} is also in {source_of[name]} with "
                                         f"different data (use on_duplicate='first' / "
                                         f"--keep-first to keep the first copy)")
                    f.copy(f["videos"][name], dst["videos"], name=name)
                    source_of[name] = s
                    copied += 1
                    dst.flush()
        failures = {k: v for k, v in failures.items() if k not in source_of}
        if failures:
            w._write_failures(failures)
    os.replace(partial, out)
    return {"videos": copied, "duplicates": duplicates, "incomplete_skipped": skipped_incomplete,
            "failures": len(failures), "differing_configs": differing}


# --------------------------------------------------------------------------- test data

# AVA-like persons per keyframe: mostly 1-4, a thin tail to 15 (a few empty keyframes)
AVA_PERSON_COUNTS = np.arange(16)
AVA_PERSON_PROBS = np.array([0.03, 0.30, 0.26, 0.16, 0.09, 0.05, 0.035, 0.025, 0.016, 0.01,
                             0.008, 0.006, 0.004, 0.003, 0.002, 0.001])
AVA_PERSON_PROBS = AVA_PERSON_PROBS / AVA_PERSON_PROBS.sum()


def random_person_set(rng, counts, feature_dim, num_classes=None, gt=True) -> PersonSet:
    """A random valid PersonSet with `counts[t]` persons at keyframe t (tests, benchmarks)."""
    counts = np.asarray(counts, np.int64)
    N = int(counts.sum())
    xy = rng.uniform(0.0, 0.6, (N, 2)).astype(np.float32)
    wh = rng.uniform(0.05, 0.4, (N, 2)).astype(np.float32)
    boxes = np.concatenate([xy, np.minimum(xy + wh, 1.0)], axis=1)
    labels = None
    if num_classes:
        labels = (rng.random((N, num_classes)) < 3.0 / num_classes).astype(np.uint8)
    return PersonSet(
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        boxes=boxes,
        feats=rng.standard_normal((N, feature_dim), dtype=np.float32).astype(np.float16),
        scores=np.ones(N, np.float32) if gt else rng.uniform(0.5, 1.0, N).astype(np.float32),
        labels=labels if gt else None,
        person_ids=np.arange(N, dtype=np.int32) % 20 if gt else None,
    )


def random_video(rng, feature_dim, num_classes, keyframes, start=902, step=1, gt=True,
                 det=True, counts=None) -> dict:
    """Keyword arguments for `StoreWriter.add_video` (all but the id) of a random AVA-like
    video: `keyframes` timestamps start, start+step, ..., persons per keyframe drawn like
    AVA's (AVA_PERSON_PROBS) unless `counts` is given; detections get 0..2 extra persons."""
    T = keyframes
    if counts is None:
        counts = rng.choice(AVA_PERSON_COUNTS, size=T, p=AVA_PERSON_PROBS)
    out = {
        "timestamps": start + step * np.arange(T),
        "clip": rng.standard_normal((T, feature_dim), dtype=np.float32).astype(np.float16),
        "width": 320, "height": 240,
    }
    if gt:
        out["gt"] = random_person_set(rng, counts, feature_dim, num_classes, gt=True)
    if det:
        det_counts = np.maximum(np.asarray(counts) + rng.integers(-1, 3, T), 0)
        out["det"] = random_person_set(rng, det_counts, feature_dim, None, gt=False)
    return out


# --------------------------------------------------------------------------- inspecting

HIST_BINS = [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 7), (8, 10), (11, 15), (16, None)]


def summarize_store(path, progress=False) -> dict:
    """What `hgrnn inspect` prints, as a JSON-ready dict: videos, keyframes, persons per
    keyframe (min/mean/max and histogram) and label counts per box source, feature dims and
    dtypes, configs, failures, size on disk against the raw array bytes."""
    import h5py

    with open_h5(path) as f:
        info = read_info(f, path)
        names = video_names(f)
        incomplete = video_names(f, complete=False)
        K = len(info.label_map)
        T = []
        t_min, t_max = None, None
        dtypes = set()
        raw = 0
        per = {s: {"videos": 0, "counts": [], "labels": np.zeros(K, np.int64),
                   "unlabelled": 0, "has_labels": False, "scores": []} for s in SOURCES}
        it = names
        if progress:
            from tqdm import tqdm

            it = tqdm(names, desc="inspect", unit="video", leave=False, disable=None)

        def nbytes(ds):
            return int(np.prod(ds.shape)) * ds.dtype.itemsize

        for name in it:
            g = f["videos"][name]
            try:
                ts = g["timestamps"][()]
                T.append(len(ts))
                if len(ts):
                    t_min = int(ts[0]) if t_min is None else min(t_min, int(ts[0]))
                    t_max = int(ts[-1]) if t_max is None else max(t_max, int(ts[-1]))
                dtypes.add(("clip", str(g["clip"].dtype)))
                raw += nbytes(g["timestamps"]) + nbytes(g["clip"])
                for s in SOURCES:
                    if s not in g:
                        continue
                    sg, st = g[s], per[s]
                    st["videos"] += 1
                    off = sg["offsets"][()]
                    st["counts"].append(np.diff(off))
                    dtypes.add((f"{s}/feats", str(sg["feats"].dtype)))
                    raw += sum(nbytes(d) for d in sg.values() if isinstance(d, h5py.Dataset))
                    if "labels" in sg:
                        st["has_labels"] = True
                        lab = sg["labels"][()]
                        st["labels"] += lab.sum(0, dtype=np.int64)
                        st["unlabelled"] += int((lab.sum(1) == 0).sum())
                    if s == "det" and sg["scores"].shape[0]:
                        st["scores"].append(sg["scores"][()])
            except (KeyError, OSError, ValueError) as err:
                raise StoreError(f"{path}: videos/{name}: unreadable ({err}); run "
                                 f"`hgrnn inspect --check`") from None
        failures = _read_failures_open(f)
    T = np.asarray(T, np.int64)
    out = {
        "path": str(path),
        "size_bytes": os.path.getsize(path),
        "raw_bytes": raw,
        "version": info.version,
        "feature_dim": info.feature_dim,
        "dtypes": dict(sorted(dtypes)),
        "streams": info.streams,
        "num_classes": K,
        "label_map": info.label_map,
        "videos": len(names),
        "incomplete_videos": incomplete,
        "keyframes": int(T.sum()),
        "keyframes_per_video": [int(T.min()), float(T.mean()), int(T.max())] if len(T) else None,
        "time_range": [t_min, t_max],
        "configs": info.configs,
        "failures": failures,
        "sources": {},
    }
    for s in SOURCES:
        st = per[s]
        if not st["videos"]:
            continue
        counts = np.concatenate(st["counts"]) if st["counts"] else np.zeros(0, np.int64)
        hist = []
        for lo, hi in HIST_BINS:
            sel = counts >= lo if hi is None else (counts >= lo) & (counts <= hi)
            hist.append([f"{lo}+" if hi is None else (str(lo) if lo == hi else f"{lo}-{hi}"),
                         int(sel.sum())])
        src = {
            "videos": st["videos"],
            "persons": int(counts.sum()),
            "keyframes_with_persons": int((counts > 0).sum()),
            "persons_per_keyframe": [int(counts.min()), float(counts.mean()), int(counts.max())]
            if len(counts) else None,
            "histogram": hist,
        }
        if st["has_labels"]:
            src["label_counts"] = st["labels"].tolist()
            src["persons_without_label"] = st["unlabelled"]
        if st["scores"]:
            sc = np.concatenate(st["scores"])
            src["scores"] = [float(sc.min()), float(sc.mean()), float(sc.max())]
        out["sources"][s] = src
    return out


def format_summary(s: dict) -> str:
    """The human-readable text of `summarize_store`."""
    mb = 1024 * 1024
    lines = [f"{s['path']}  (hgrnn-store v{s['version']})"]
    ratio = s["size_bytes"] / s["raw_bytes"] if s["raw_bytes"] else float("nan")
    lines.append(f"  size on disk     {s['size_bytes'] / mb:,.1f} MiB  (raw arrays "
                 f"{s['raw_bytes'] / mb:,.1f} MiB, ratio {ratio:.2f})")
    dts = ", ".join(f"{k} {v}" for k, v in s["dtypes"].items())
    streams = ", ".join(f"{n} [{a}:{b}]" for n, a, b in s["streams"])
    lines.append(f"  features         C = {s['feature_dim']} ({dts}); streams: {streams}")
    lm = s["label_map"]
    lines.append(f"  label map        {s['num_classes']} classes ("
                 + ", ".join(f"{i} {n}" for i, n in lm[:3]) + (", ..." if len(lm) > 3 else "") + ")")
    kpv = s["keyframes_per_video"]
    lines.append(f"  videos           {s['videos']} complete"
                 + (f", {len(s['incomplete_videos'])} incomplete (ignored): "
                    + ", ".join(s["incomplete_videos"][:5]) if s["incomplete_videos"] else ""))
    if kpv:
        lines.append(f"  keyframes        {s['keyframes']:,} (per video min {kpv[0]} / mean "
                     f"{kpv[1]:.1f} / max {kpv[2]}; timestamps {s['time_range'][0]}.."
                     f"{s['time_range'][1]} s)")
    lines.append(f"  box sources      {', '.join(s['sources']) or 'none'}")
    for name, src in s["sources"].items():
        title = {"gt": "ground truth", "det": "detections"}[name]
        lines.append("")
        lines.append(f"  [{name}] {title}: {src['persons']:,} persons in {src['videos']} videos; "
                     f"{src['keyframes_with_persons']:,} keyframes with >= 1 person")
        ppk = src["persons_per_keyframe"]
        if ppk:
            lines.append(f"    persons per keyframe  min {ppk[0]} / mean {ppk[1]:.2f} / max {ppk[2]}")
            top = max(c for _, c in src["histogram"]) or 1
            for label, c in src["histogram"]:
                bar = "#" * int(round(30 * c / top))
                lines.append(f"      {label:>5} {c:>10,}  {bar}")
        if "scores" in src:
            sc = src["scores"]
            lines.append(f"    scores  min {sc[0]:.3f} / mean {sc[1]:.3f} / max {sc[2]:.3f}")
        if "label_counts" in src:
            lines.append(f"    label counts (persons per class; {src['persons_without_label']:,} "
                         f"persons without any label):")
            cells = [f"{i:>4} {n[:28]:<28} {c:>8,}" for (i, n), c in zip(lm, src["label_counts"])]
            for a in range(0, len(cells), 2):
                lines.append("     " + "   ".join(cells[a:a + 2]))
    lines.append("")
    if s["configs"]:
        lines.append("  stage configs")
        for stage, cfg in s["configs"].items():
            lines.append(f"    {stage}: {json.dumps(cfg, sort_keys=True)}")
    else:
        lines.append("  stage configs    none recorded")
    if s["failures"]:
        lines.append(f"  failures         {len(s['failures'])} videos")
        for vid, why in list(s["failures"].items())[:10]:
            lines.append(f"    {vid}: {why}")
        if len(s["failures"]) > 10:
            lines.append(f"    ... and {len(s['failures']) - 10} more")
    else:
        lines.append("  failures         none")
    return "\n".join(lines)
