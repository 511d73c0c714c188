"""Reading the feature store: `FeatureStore` (one box source of all videos, in memory or
lazy) and `ContextWindows` (batches of L = 2l+1 keyframe context windows for the head).

Shapes: G keyframes of all complete videos together, P persons of the chosen box source of
all videos together, C feature dim, K classes, B batch keyframes, L = 2l + 1.

`FeatureStore(path, box_source="gt", lazy=False)` reads the store's index at construction
and closes the file again: no h5py handle exists until data is read lazily, and a handle
never crosses a fork or a pickle (the pid is checked on each use; `__getstate__` drops it).
All videos are laid end to end ("global" numbering):

    video_ids            list[str] (V,)  complete videos, sorted
    video_kf_offsets     (V+1,) int64    video v owns keyframes video_kf_offsets[v]:[v+1]
    kf_video             (G,) int32      video index of each keyframe
    kf_time              (G,) int64      timestamp (s) of each keyframe
    person_offsets       (G+1,) int64    keyframe g owns person rows person_offsets[g]:[g+1]
    boxes                (P, 4) float32  \\
    scores               (P,) float32     } always in memory (~80 bytes a person)
    labels               (P, K) uint8 or None (no labels for this box source)
    person_ids           (P,) int32 (-1 unknown)
    clip                 (G, C) float16  in memory mode only (None when lazy)
    feats                (P, C) float16  in memory mode only (None when lazy)

`clip_rows(g)` and `feat_rows(r)` gather rows in either mode (lazy mode reads the runs of
neighbouring rows of each video with one HDF5 slice each).

Streams: `FeatureStore(..., streams=("rgb", "flow"))` gives the head the named feature
slices of the store (its `streams` attribute, `hgrnn.data.store`), concatenated in the
order asked for: C is then the sum of their widths and every array above holds only those
dims. `streams=None` (default) keeps all C dims of the file as they are.

Windows: a keyframe's neighbours are the keyframes that exist in the store for its video.
Each video is cut into segments at gaps: where two consecutive timestamps differ by more
than the video's usual step (the most common difference; 1 s for AVA). Slot s of the
window of keyframe g (s = 0..L-1, offset d = s - l) holds keyframe g + d when that lies in
g's segment; otherwise the slot is padding (window_mask False): `pad="edge"` repeats the
segment's edge keyframe (its clip and its persons), `pad="zero"` puts a zero clip and no
persons there.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, fields

import numpy as np
import torch

from hgrnn.console import progress_bar
from hgrnn.data.store import (SOURCES, StoreError, _text, open_h5, read_info, to_label_map,
                              video_names)
from hgrnn.data.store_io import read_errors

# lazy reads: neighbouring rows closer than this are read with one slice
_MAX_GAP_ROWS = 64


class MissingStreamError(StoreError):
    """A feature stream was asked for that the store does not have."""


def stream_columns(layout, wanted, path="store"):
    """Feature columns of the streams `wanted` (names, in the order wanted) in a store whose
    `streams` attribute is `layout` ([[name, start, stop], ...]). Returns None when they are
    all the store's dims in the store's order (nothing to select), else an int64 array.
    Raises MissingStreamError naming the streams the store has."""
    spans = {str(n): (int(a), int(b)) for n, a, b in layout}
    missing = [w for w in wanted if w not in spans]
    if missing:
        raise MissingStreamError(
            f"{path}: no {', '.join(repr(m) for m in missing)} feature stream (the store has "
            f"{'+'.join(spans) or 'none'})")
    cols = np.concatenate([np.arange(*spans[w], dtype=np.int64) for w in wanted])
    total = max(b for a, b in spans.values())
    if len(cols) == total and (cols == np.arange(total)).all():
        return None
    return cols


def _ragged_rows(starts, counts):
    """Flat row indices of ragged runs: concat(arange(s, s + c) for s, c in zip(...))."""
    counts = np.asarray(counts, np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    ends = np.cumsum(counts)
    # each run's row = its start + (position in the flat array - position where the run begins)
    shift = np.repeat(np.asarray(starts, np.int64) - (ends - counts), counts)
    return shift + np.arange(total, dtype=np.int64)


class FeatureStore:
    """One box source ("gt" or "det") of every complete video of a store.

    lazy=False loads clip and person features into contiguous memory (about
    2 * C * (G + P) bytes); lazy=True keeps only the index, boxes, scores and labels in
    memory and reads features from the file on demand (stores larger than RAM).
    Incomplete videos (no `complete` flag) are skipped. A video without the chosen box
    source has zero persons at every keyframe (its clip features still give context).

    streams: names of the feature streams to read, concatenated in this order (None: all the
    file's dims); feature_dim is then the width of the selection, store_feature_dim the
    file's C.

    Attributes besides the arrays of the module docstring: path, box_source, lazy,
    video_ids, feature_dim, label_map (LabelMap), configs (stage -> dict), streams (the
    file's [(name, start, stop), ...]), selected_streams (the names read),
    sources (box sources present in the file), has_labels (the chosen source carries
    labels), fingerprint (16 hex digits over video ids, shapes, per-video digests or
    timestamps, label map and configs: stable across copies, changes with the content).
    """

    def __init__(self, path, box_source="gt", lazy=False, progress=False, streams=None):
        if box_source not in SOURCES:
            raise ValueError(f"box_source must be one of {SOURCES}, got {box_source!r}")
        self.path = str(path)
        self.box_source = box_source
        self.lazy = bool(lazy)
        self._wanted = None if streams is None else tuple(streams)
        self._h5 = None
        self._pid = None
        self._ds = {}
        self._load(progress)

    # ------------------------------------------------------------------ loading
    def _load(self, progress):
        with open_h5(self.path) as f:
            info = read_info(f, self.path)
            self.version = info.version
            self.store_feature_dim = C = info.feature_dim
            self.label_map = to_label_map(info.label_map)
            self.configs = info.configs
            self.streams = [tuple(s) for s in info.streams]
            wanted = self._wanted or tuple(str(s[0]) for s in self.streams)
            self._cols = stream_columns(self.streams, wanted, self.path)
            self.selected_streams = wanted
            self.feature_dim = C if self._cols is None else len(self._cols)
            K = len(info.label_map)
            self.video_ids = video_names(f)
            if not self.video_ids:
                raise StoreError(f"{self.path}: no complete videos")
            groups = []
            for v in self.video_ids:
                with read_errors(self.path, v):
                    groups.append(f["videos"][v])

            # pass 1: sizes, timestamps, person offsets (small), fingerprint material
            T = np.zeros(len(groups), np.int64)
            N = np.zeros(len(groups), np.int64)
            times, offs, ident = [], [], []
            sources, labelled = set(), []
            for v, g in enumerate(groups):
                with read_errors(self.path, self.video_ids[v]):
                    ts, o, shapes, has_labels, digest = self._index_video(g, v, C)
                T[v] = len(ts)
                times.append(ts)
                sources.update(shapes)
                if has_labels is not None:
                    labelled.append(has_labels)
                offs.append(o)
                N[v] = o[-1]
                ident.append([self.video_ids[v], int(T[v]), shapes, digest])
            self.sources = tuple(s for s in SOURCES if s in sources)
            self.has_labels = bool(labelled) and all(labelled)
            self.fingerprint = hashlib.sha1(json.dumps(
                [info.version, C, info.label_map, info.configs, info.streams, ident],
                sort_keys=True).encode()).hexdigest()[:16]

            V = len(groups)
            self.video_kf_offsets = np.concatenate([[0], np.cumsum(T)]).astype(np.int64)
            video_person_start = np.concatenate([[0], np.cumsum(N)]).astype(np.int64)
            G, P = int(T.sum()), int(N.sum())
            self.kf_video = np.repeat(np.arange(V, dtype=np.int32), T)
            self.kf_time = np.concatenate(times)
            self.person_offsets = np.concatenate(
                [offs[v][:-1] + video_person_start[v] for v in range(V)] + [[P]]).astype(np.int64)
            self._video_person_start = video_person_start

            # pass 2: the arrays, read straight into their slice of the concatenation
            self.boxes = np.zeros((P, 4), np.float32)
            self.scores = np.ones(P, np.float32)
            self.labels = np.zeros((P, K), np.uint8) if self.has_labels else None
            self.person_ids = np.full(P, -1, np.int32)
            self.clip = None if self.lazy else np.empty((G, C), np.float16)
            self.feats = None if self.lazy else np.empty((P, C), np.float16)
            it = range(V)
            if progress:
                it = progress_bar(it, desc=f"load {os.path.basename(self.path)}", unit="video",
                          leave=False, disable=None)
            for v in it:
                k0, k1 = self.video_kf_offsets[v], self.video_kf_offsets[v + 1]
                p0, p1 = video_person_start[v], video_person_start[v + 1]
                with read_errors(self.path, self.video_ids[v]):
                    self._read_video(groups[v], k0, k1, p0, p1)
                self._check_values(v, k0, k1, p0, p1)
            if self._cols is not None and not self.lazy:     # keep the selected streams only
                self.clip = np.ascontiguousarray(self.clip[:, self._cols])
                self.feats = np.ascontiguousarray(self.feats[:, self._cols])

    def _index_video(self, g, v, C):
        """Pass 1 for video group g: (timestamps (T,) int64, offsets (T+1,) of the chosen
        box source, {source: persons}, whether that source has labels (None: absent),
        digest or a hash of the timestamps)."""
        src = self.box_source
        where = f"{self.path}: videos/{self.video_ids[v]}"
        missing = [k for k in ("timestamps", "clip") if k not in g] + [
            f"{s}/{k}" for s in SOURCES if s in g
            for k in ("offsets", "boxes", "feats", "scores") if k not in g[s]]
        if missing:
            raise StoreError(f"{where}/{missing[0]}: missing (run `hgrnn inspect --check`)")
        ts = g["timestamps"][()].astype(np.int64)
        if g["clip"].shape != (len(ts), C):
            raise StoreError(f"{where}/clip: shape {g['clip'].shape}, expected ({len(ts)}, {C})")
        shapes = {s: int(g[s]["boxes"].shape[0]) for s in SOURCES if s in g}
        has_labels = None
        if src in g:
            o = g[src]["offsets"][()].astype(np.int64)
            if o.shape != (len(ts) + 1,) or o[0] != 0 or o[-1] != shapes[src]:
                raise StoreError(f"{where}/{src}/offsets: shape {o.shape}, expected "
                                 f"({len(ts) + 1},) from 0 to {shapes[src]} (run "
                                 f"`hgrnn inspect --check`)")
            has_labels = "labels" in g[src]
        else:
            o = np.zeros(len(ts) + 1, np.int64)
        digest = _text(g.attrs["digest"]) if "digest" in g.attrs else \
            hashlib.sha1(ts.tobytes()).hexdigest()
        return ts, o, shapes, has_labels, digest

    def _read_video(self, g, k0, k1, p0, p1):
        """Pass 2: read video group g into keyframes k0:k1 and person rows p0:p1."""
        src = self.box_source
        if not self.lazy:
            _read_into(g["clip"], self.clip, k0, k1)
        if src not in g or p1 == p0:
            return
        s = g[src]
        _read_into(s["boxes"], self.boxes, p0, p1)
        _read_into(s["scores"], self.scores, p0, p1)
        if self.labels is not None:
            _read_into(s["labels"], self.labels, p0, p1)
        if "person_id" in s:
            _read_into(s["person_id"], self.person_ids, p0, p1)
        if not self.lazy:
            _read_into(s["feats"], self.feats, p0, p1)

    def _check_values(self, v, k0, k1, p0, p1):
        """Refuse values no writer stores (a damaged file): non-finite features, boxes or
        scores, labels other than 0/1. Keyframes k0:k1 and person rows p0:p1 of video v."""
        arrays = [("boxes", self.boxes[p0:p1]), ("scores", self.scores[p0:p1])]
        if not self.lazy:
            arrays += [("clip", self.clip[k0:k1]), ("feats", self.feats[p0:p1])]
        for name, arr in arrays:
            if not np.isfinite(arr).all():
                self._refuse(v, name, "non-finite values (NaN/inf)")
        if self.labels is not None and (self.labels[p0:p1] > 1).any():
            self._refuse(v, "labels", "values other than 0/1")

    def _refuse(self, v, name, what):
        where = name if name == "clip" else f"{self.box_source}/{name}"
        raise StoreError(f"{self.path}: videos/{self.video_ids[v]}/{where}: {what}; the file is "
                         f"damaged: run `hgrnn inspect --check {self.path}`, re-extract that "
                         f"video or `hgrnn merge-stores` the good ones into a new store")

    # ------------------------------------------------------------------ fork/pickle safety
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_h5"], state["_pid"], state["_ds"] = None, None, {}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    def _file(self):
        if self._h5 is None or self._pid != os.getpid():
            # a handle inherited through fork is never used: open our own
            self._h5 = open_h5(self.path)
            self._pid = os.getpid()
            self._ds = {}
        return self._h5

    def close(self):
        """Close the lazy-mode file handle (it reopens on the next read)."""
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5, self._pid, self._ds = None, None, {}

    def _dataset(self, v, name):
        f = self._file()      # first: after a fork this drops the parent's cached datasets
        key = (v, name)
        ds = self._ds.get(key)
        if ds is None:
            ds = f["videos"][self.video_ids[v]][name]
            self._ds[key] = ds
        return ds

    # ------------------------------------------------------------------ row access
    @property
    def num_keyframes(self) -> int:
        return len(self.kf_time)

    @property
    def num_persons(self) -> int:
        return len(self.boxes)

    def clip_rows(self, kf) -> np.ndarray:
        """(n,) global keyframe indices -> (n, C) float16 clip features."""
        kf = np.asarray(kf, np.int64)
        if not self.lazy:
            return self.clip[kf]
        return self._gather_lazy(kf, self.video_kf_offsets, "clip")

    def feat_rows(self, rows) -> np.ndarray:
        """(n,) global person rows -> (n, C) float16 person features."""
        rows = np.asarray(rows, np.int64)
        if not self.lazy:
            return self.feats[rows]
        return self._gather_lazy(rows, self._video_person_start, f"{self.box_source}/feats")

    def _gather_lazy(self, idx, owner_start, name):
        out = np.empty((len(idx), self.feature_dim), np.float16)
        if len(idx) == 0:
            return out
        u, inv = np.unique(idx, return_inverse=True)
        vid = np.searchsorted(owner_start, u, side="right") - 1
        brk = np.nonzero((np.diff(vid) != 0) | (np.diff(u) > _MAX_GAP_ROWS))[0] + 1
        starts = np.concatenate([[0], brk])
        ends = np.concatenate([brk, [len(u)]])
        got = np.empty((len(u), self.feature_dim), np.float16)
        for s, e in zip(starts.tolist(), ends.tolist()):   # one HDF5 read per run of rows
            v = int(vid[s])
            a = int(u[s] - owner_start[v])
            b = int(u[e - 1] - owner_start[v]) + 1
            with read_errors(self.path, self.video_ids[v], name):
                block = self._dataset(v, name)[a:b]
            if not np.isfinite(block).all():
                self._refuse(v, name.split("/")[-1], "non-finite values (NaN/inf)")
            if self._cols is not None:
                block = block[:, self._cols]
            got[s:e] = block[u[s:e] - u[s]]
        out[:] = got[inv]
        return out

    def __repr__(self):
        mode = "lazy" if self.lazy else "in memory"
        return (f"FeatureStore({self.path!r}, box_source={self.box_source!r}, {mode}: "
                f"{len(self.video_ids)} videos, {self.num_keyframes} keyframes, "
                f"{self.num_persons} persons, C={self.feature_dim})")


def _read_into(ds, out, a, b):
    """Read dataset `ds` (b - a rows) into out[a:b] without an intermediate copy when the
    dtypes allow it."""
    if b == a:
        return
    if ds.shape[0] != b - a:
        raise StoreError(f"{ds.file.filename}: {ds.name}: {ds.shape[0]} rows, expected {b - a} "
                         f"(run `hgrnn inspect --check`)")
    if ds.dtype == out.dtype and out.flags.c_contiguous:
        ds.read_direct(out, dest_sel=np.s_[a:b])
    else:
        out[a:b] = ds[()]


_SERIAL_ELEMENTS = 32767   # below torch's parallel grain size (at::internal::GRAIN_SIZE)


def _float32(arr) -> torch.Tensor:
    """numpy (float16, uint8, ...) -> float32 tensor.

    numpy's float16 cast is ~10x slower than torch's; torch's, on the other hand, goes
    multi-threaded above 32768 elements, which on a busy machine (or next to a training
    step) can cost milliseconds. Converting in serial chunks is fast in both cases."""
    src = torch.from_numpy(np.ascontiguousarray(arr))
    if src.numel() <= _SERIAL_ELEMENTS:
        return src.to(torch.float32)
    src = src.view(-1)
    out = torch.empty(src.shape, dtype=torch.float32)
    for o, i in zip(out.split(_SERIAL_ELEMENTS), src.split(_SERIAL_ELEMENTS)):
        o.copy_(i)
    return out.view(arr.shape)


@dataclass
class WindowBatch:
    """B context windows of L keyframes, as torch tensors (see docs/contracts.md).

    clip:        (B, L, C) float32 clip features of the window keyframes
    window_mask: (B, L) bool, False where the slot is padding
    ctx_feats:   (Q, C) float32 persons of all window slots, flat
    ctx_segment: (Q,) int64 in [0, B*L): slot b*L + s of each row (sorted)
    feats:       (P, C) float32 persons of the centre keyframes
    keyframe:    (P,) int64 in [0, B): batch row of each person (sorted)
    boxes:       (P, 4) float32 xyxy normalised
    scores:      (P,) float32 detection confidence (1 for gt)
    labels:      (P, K) float32 0/1, or None (no labels for the box source)
    video_ids:   list[str] (B,)
    timestamps:  (B,) int64
    """

    clip: torch.Tensor
    window_mask: torch.Tensor
    ctx_feats: torch.Tensor
    ctx_segment: torch.Tensor
    feats: torch.Tensor
    keyframe: torch.Tensor
    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor | None
    video_ids: list
    timestamps: torch.Tensor

    def to(self, device) -> "WindowBatch":
        kw = {}
        for f in fields(self):
            value = getattr(self, f.name)
            kw[f.name] = value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
        return WindowBatch(**kw)

    def pin_memory(self) -> "WindowBatch":
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        for k, v in kw.items():
            if isinstance(v, torch.Tensor):
                kw[k] = v.pin_memory()
        return WindowBatch(**kw)


class ContextWindows:
    """Context windows of every keyframe that has at least one person (of the store's box
    source), in store order (videos sorted by id, keyframes by time).

    l:   context keyframes on each side (L = 2l + 1 slots; l = 0 gives the keyframe alone)
    pad: "edge" (default) or "zero"; see the module docstring.
    context_store: None (default: every slot holds `store`'s persons) or another
        FeatureStore of the same file with another box source: the slots other than the
        centre then hold ITS persons, while the centre slot and the centre persons (feats,
        boxes, labels) stay `store`'s. Training with ground-truth centre persons and
        detected context persons (`train-head --context-boxes det`) sees at the context
        slots what inference sees there.
    """

    def __init__(self, store: FeatureStore, l: int, pad="edge", context_store=None):
        if int(l) != l or l < 0:
            raise ValueError(f"l must be a non-negative integer, got {l!r}")
        if pad not in ("edge", "zero"):
            raise ValueError(f"pad must be 'edge' or 'zero', got {pad!r}")
        self.store, self.l, self.L, self.pad = store, int(l), 2 * int(l) + 1, pad
        G = store.num_keyframes
        self._counts = np.diff(store.person_offsets)                  # (G,) persons a keyframe
        self.context_store = context_store
        if context_store is not None and (
                context_store.video_ids != store.video_ids
                or not np.array_equal(context_store.kf_time, store.kf_time)):
            raise ValueError(f"{context_store.path}: the context store's keyframes differ from "
                             f"{store.path}'s (it must be the same store, another box source)")
        self._ctx_counts = (np.diff(context_store.person_offsets) if context_store is not None
                            else self._counts)                        # (G,)

        # segments: a new one starts at each video's first keyframe and after each gap
        boundary = np.ones(G, bool)
        step = np.zeros(len(store.video_ids), np.int64)
        for v in range(len(store.video_ids)):                        # per video, not per row
            k0, k1 = store.video_kf_offsets[v], store.video_kf_offsets[v + 1]
            d = np.diff(store.kf_time[k0:k1])
            if len(d):
                values, freq = np.unique(d, return_counts=True)
                step[v] = values[np.argmax(freq)]                    # the usual step
                boundary[k0 + 1:k1] = d > step[v]
        self.steps = dict(zip(store.video_ids, step.tolist()))
        seg = np.cumsum(boundary) - 1                                # (G,) segment id
        seg_first = np.nonzero(boundary)[0]
        seg_last = np.concatenate([seg_first[1:], [G]]) - 1
        self._seg_start = seg_first[seg]                              # (G,)
        self._seg_end = seg_last[seg]                                 # (G,)
        self._offsets = np.arange(-self.l, self.l + 1, dtype=np.int64)  # (L,)

        self._kf = np.nonzero(self._counts > 0)[0].astype(np.int64)   # (n,) indexed keyframes
        vids = np.asarray(store.video_ids)
        self.video_ids = vids[store.kf_video[self._kf]]               # (n,) str
        self.timestamps = store.kf_time[self._kf].astype(np.int64)    # (n,)

    def __len__(self):
        return len(self._kf)

    def keyframe_index(self, indices) -> np.ndarray:
        """Window indices -> global keyframe indices of the store."""
        return self._kf[np.asarray(indices, np.int64)]

    def batch(self, indices) -> WindowBatch:
        """The windows of `indices` (positions in 0..len-1) as one WindowBatch."""
        idx = np.asarray(indices, np.int64).reshape(-1)
        n = len(self._kf)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"window index out of range 0..{n - 1}")
        st = self.store
        B, L, l = len(idx), self.L, self.l
        g = self._kf[idx]                                             # (B,) centre keyframes
        pos = g[:, None] + self._offsets[None, :]                     # (B, L)
        lo, hi = self._seg_start[g][:, None], self._seg_end[g][:, None]
        mask = (pos >= lo) & (pos <= hi)                              # (B, L)
        nb = np.minimum(np.maximum(pos, lo), hi)                      # edge keyframe outside

        # gather in float16, convert with torch (numpy's float16 cast is ~10x slower)
        clip16 = st.clip_rows(nb.reshape(-1)).reshape(B, L, st.feature_dim)
        own = np.zeros((B, L), bool)                                  # slots of `store`'s persons
        own[:, l] = True
        if self.context_store is None:
            own[:] = True
        slot_counts = np.where(own, self._counts[nb], self._ctx_counts[nb])   # (B, L)
        if self.pad == "zero":
            clip16[~mask] = 0
            slot_counts = np.where(mask, slot_counts, 0)
        clip = _float32(clip16)                                       # (B, L, C)
        slot_counts, own, nb_flat = slot_counts.reshape(-1), own.reshape(-1), nb.reshape(-1)
        ctx_segment = np.repeat(np.arange(B * L, dtype=np.int64), slot_counts)
        slot_start = np.cumsum(slot_counts) - slot_counts             # (B*L,) first ctx row
        ctx16 = np.empty((int(slot_counts.sum()), st.feature_dim), np.float16)  # (Q, C)
        for source, slots in ((st, own), (self.context_store, ~own)):
            if not slots.any():
                continue
            counts = slot_counts[slots]
            dst = _ragged_rows(slot_start[slots], counts)             # rows of ctx16
            src = _ragged_rows(source.person_offsets[nb_flat[slots]], counts)
            ctx16[dst] = source.feat_rows(src)

        # centre persons are the rows of slot b*L + l, already gathered in ctx_feats
        centre_counts = self._counts[g]                               # (B,)
        in_ctx = _ragged_rows(slot_start[np.arange(B) * L + l], centre_counts)  # (P,)
        rows = _ragged_rows(st.person_offsets[g], centre_counts)      # (P,) global person rows
        ctx_feats = _float32(ctx16)                                   # (Q, C) float32
        labels = None
        if st.labels is not None:
            labels = _float32(st.labels[rows])
        return WindowBatch(
            clip=clip,
            window_mask=torch.from_numpy(mask),
            ctx_feats=ctx_feats,
            ctx_segment=torch.from_numpy(ctx_segment),
            feats=torch.from_numpy(ctx_feats.numpy()[in_ctx]),
            keyframe=torch.from_numpy(np.repeat(np.arange(B, dtype=np.int64), centre_counts)),
            boxes=torch.from_numpy(st.boxes[rows]),
            scores=torch.from_numpy(st.scores[rows]),
            labels=labels,
            video_ids=self.video_ids[idx].tolist(),
            timestamps=torch.from_numpy(self.timestamps[idx]),
        )

    def iter_batches(self, batch_size, shuffle=False, seed=0, drop_last=False):
        """Yield WindowBatches over all windows (a new permutation per call when shuffling)."""
        order = np.arange(len(self))
        if shuffle:
            np.random.default_rng(seed).shuffle(order)
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for a in range(0, stop, batch_size):
            yield self.batch(order[a:a + batch_size])
