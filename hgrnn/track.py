"""Persons tracked across keyframes: a person id for every box of an AVA CSV (`hgrnn track`).

A layer above `hgrnn.data` (beside `hgrnn.metrics`): pure functions of arrays, numpy and
scipy only; the one function that reads a feature store imports its reader when called.

Shapes: P persons (unique boxes of a keyframe), N CSV rows (one per box AND action, so
several rows share a person), C feature dim.

Linking (`link_video`, one video at a time, keyframes in time order). A track is a person
followed over keyframes: its last box, the keyframe it was last seen at, and (with
features) the running mean of its RoI features. At each keyframe t the persons of t are
assigned to the live tracks by `scipy.optimize.linear_sum_assignment`, maximising the sum
of the pairs' similarities

    sim(track, person) = (1 - w) * IoU(track's last box, person's box) + w * cos(features)

(w = `feature_weight` when features are given, else 0). A pair may be assigned only if
IoU >= `min_iou`, or, with features, cos >= `min_cos` (a person who moved far between two
keyframes, recognised by appearance). Persons left unassigned start new tracks. A track is
live at t while t - (its last keyframe) <= (max_gap + 1) * step, step being the video's
usual keyframe spacing (the most common difference of its timestamps; 1 s in AVA): it
survives up to `max_gap` keyframes without a match (keyframes without persons count).

No two-stage (ByteTrack-style: high-score boxes first, then low-score ones to the tracks
left) matching: it made no measurable difference on the jittered AVA ground truth with
detector-like scores (BENCHMARKS.md, "Tracking"), so persons are assigned in one stage
whatever their score. Nor a motion model: predicting a track's box from its last
displacement (constant velocity) made no measurable difference on AVA and helped or hurt
on rendered videos depending on the boxes' noise (BENCHMARKS.md), so the last box is
compared as it is.

Ids: 0, 1, 2, ... per video in the order the tracks start (unique within a video, not
across videos, as AVA's own person ids). Deterministic: persons of a keyframe are taken in
the order of their first row in the file, ties of the assignment are broken by scipy's
deterministic solver.

Also here: the identity measures of a tracking against known ids (`identity_scores`:
IDF1, IDP, IDR, identity switches; the MOT challenge's definitions for boxes whose true
identity is known, as in a jittered ground truth).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from hgrnn.data.paths import replacing
from hgrnn.data.ava import (AvaRows, keyframe_index, read_annotations, read_results,
                            write_annotations, write_results)
from hgrnn.track_config import TrackConfig

__all__ = ["BoxGroups", "TrackConfig", "box_iou", "csv_kind", "group_boxes", "identity_scores",
           "keyframe_step", "link_video", "read_boxes", "store_features", "track_box_lines",
           "track_persons", "track_rows", "write_tracked"]

#: a cost that no assignment takes (gated pairs)
_FORBIDDEN = 1e6


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of a (N, 4) with every box of b (M, 4), xyxy -> (N, M) float64.
    Boxes without area have IoU 0 with everything."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou


def keyframe_step(timestamps) -> int:
    """The usual spacing of a video's keyframes: the most common difference of its sorted
    unique timestamps (smallest on ties); 1 with fewer than two keyframes."""
    t = np.unique(np.asarray(timestamps, np.int64))
    if len(t) < 2:
        return 1
    d, counts = np.unique(np.diff(t), return_counts=True)
    return int(d[np.argmax(counts)])


def _normalise(feats):
    f = np.asarray(feats, np.float64)
    norm = np.linalg.norm(f, axis=1, keepdims=True)
    return np.divide(f, norm, out=np.zeros_like(f), where=norm > 0)


def _assign(sim, allowed):
    """Maximum-similarity assignment among allowed pairs -> [(row, col)] (row order)."""
    if sim.size == 0 or not allowed.any():
        return []
    cost = np.where(allowed, -sim, _FORBIDDEN)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if allowed[r, c]]


def link_video(timestamps, boxes, features=None,
               cfg: TrackConfig = TrackConfig()) -> np.ndarray:
    """Link the persons of ONE video into tracks.

    timestamps: (P,) int keyframe of each person (any order); boxes: (P, 4) xyxy
    normalised; features: (P, C) RoI features or None.
    Returns ids (P,) int64: 0, 1, ... in the order the tracks start (module docstring).
    Persons of a keyframe are taken in their given order."""
    ts = np.asarray(timestamps, np.int64)
    n = len(ts)
    boxes = np.asarray(boxes, np.float64).reshape(n, 4)
    feats = None if features is None else _normalise(np.asarray(features).reshape(n, -1))
    w = cfg.feature_weight if feats is not None else 0.0
    horizon = (cfg.max_gap + 1) * keyframe_step(ts)
    ids = np.full(n, -1, np.int64)
    order = np.argsort(ts, kind="stable")
    t_box, t_last, t_sum, t_feat = [], [], [], []   # per track; t_sum: sum of unit features
    starts = np.flatnonzero(np.r_[True, ts[order][1:] != ts[order][:-1]])
    for s, e in zip(starts, np.r_[starts[1:], n]):
        people = order[s:e]
        t = int(ts[people[0]])
        live = np.array([k for k in range(len(t_last)) if t - t_last[k] <= horizon], np.int64)
        if len(live):
            iou = box_iou(np.asarray(t_box)[live], boxes[people])         # (T, G)
            allowed = iou >= cfg.min_iou
            sim = iou
            if w > 0:
                cos = np.asarray(t_feat)[live] @ feats[people].T            # (T, G)
                sim = (1 - w) * iou + w * cos
                allowed |= cos >= cfg.min_cos
            for r, c in _assign(sim, allowed):
                ids[people[c]] = live[r]
        for p in people:
            if ids[p] < 0:                                               # a new track
                ids[p] = len(t_last)
                t_box.append(boxes[p])
                t_last.append(t)
                t_sum.append(None if feats is None else np.zeros(feats.shape[1]))
                t_feat.append(None)
            k = int(ids[p])
            t_box[k], t_last[k] = boxes[p], t
            if feats is not None:     # the mean of the track's (unit) features, unit length
                t_sum[k] = t_sum[k] + feats[p]
                t_feat[k] = t_sum[k] / max(np.linalg.norm(t_sum[k]), 1e-12)
    return ids


@dataclass(frozen=True)
class BoxGroups:
    """The persons of a CSV: its rows grouped by (video, timestamp, exact box).

    person_of_row: (N,) int64 person index of each row. video_ids (P,), timestamps (P,)
    int64, boxes (P, 4) float32, scores (P,) float32 (max of the person's rows; 1 without
    scores), first_row (P,) int64: the file row each person first appears at. Persons are
    ordered by (video id, timestamp, first row)."""
    person_of_row: np.ndarray
    video_ids: np.ndarray
    timestamps: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    first_row: np.ndarray

    def __len__(self) -> int:
        return len(self.timestamps)


def group_boxes(rows: AvaRows) -> BoxGroups:
    """AvaRows -> BoxGroups: one person per box of a keyframe (all rows of a box, one per
    action in a result file, are one person)."""
    n = len(rows)
    keys, _ = keyframe_index(rows.video_ids, rows.timestamps)
    b = np.ascontiguousarray(rows.boxes, np.float32).reshape(n, 4)
    bits = b.view(np.int32)
    order = np.lexsort((np.arange(n), bits[:, 3], bits[:, 2], bits[:, 1], bits[:, 0], keys))
    new = np.ones(n, bool)
    new[1:] = (keys[order][1:] != keys[order][:-1]) | (bits[order][1:] != bits[order][:-1]).any(1)
    group_sorted = np.cumsum(new) - 1
    first = order[new]                                  # first row of each group
    porder = np.lexsort((first, keys[first]))           # keyframe, then first appearance
    rank = np.empty(len(first), np.int64)
    rank[porder] = np.arange(len(first))
    person_of_row = np.empty(n, np.int64)
    person_of_row[order] = rank[group_sorted]
    fr = first[porder]
    if rows.scores is not None:
        sc = np.full(len(fr), -np.inf, np.float32)
        np.maximum.at(sc, person_of_row, np.asarray(rows.scores, np.float32))
    else:
        sc = np.ones(len(fr), np.float32)
    return BoxGroups(person_of_row, np.asarray(rows.video_ids)[fr],
                     np.asarray(rows.timestamps, np.int64)[fr], b[fr], sc, fr)


def track_persons(video_ids, timestamps, boxes, features=None,
                  cfg: TrackConfig = TrackConfig()) -> np.ndarray:
    """`link_video` for each video of the persons: (P,) video ids, (P,) timestamps,
    (P, 4) boxes, optional (P, C) features -> (P,) int64 ids, 0.. per video. Persons of a
    keyframe are taken in their given order."""
    vids = np.asarray(video_ids)
    ids = np.full(len(vids), -1, np.int64)
    for v in np.unique(vids):
        m = np.flatnonzero(vids == v)
        ids[m] = link_video(np.asarray(timestamps)[m], np.asarray(boxes)[m],
                            None if features is None else np.asarray(features)[m], cfg)
    return ids


def track_rows(rows: AvaRows, cfg: TrackConfig = TrackConfig(), features=None):
    """A person id for every row of an AVA CSV -> (ids (N,) int64, notes [str]).

    rows: AvaRows in any order (rows out of time order are linked in time order; the ids
    follow the rows as given). features: None, or (P, C) per person of `group_boxes(rows)`
    (rows of NaN: no feature for that person; such persons are linked by IoU only, all
    features of their video being dropped). notes: lines for the user (nothing to link,
    rows sorted)."""
    notes = []
    if len(rows) == 0:
        return np.zeros(0, np.int64), ["no rows: nothing to track"]
    g = group_boxes(rows)
    keys, _ = keyframe_index(rows.video_ids, rows.timestamps)
    by_video = keys[np.argsort(keys >> 32, kind="stable")]    # each video's rows, file order
    same_video = (by_video[1:] >> 32) == (by_video[:-1] >> 32)
    if (same_video & (np.diff(by_video) < 0)).any():
        notes.append("rows are not in time order: linked in time order, written in the "
                     "file's order")
    ids = np.full(len(g), -1, np.int64)
    for v in np.unique(g.video_ids):
        m = np.flatnonzero(g.video_ids == v)
        f = None
        if features is not None:
            f = np.asarray(features, np.float64)[m]
            if np.isnan(f).any():
                f = None
        ids[m] = link_video(g.timestamps[m], g.boxes[m], f, cfg)
    per_video = [len(np.unique(g.timestamps[g.video_ids == v])) for v in np.unique(g.video_ids)]
    if max(per_video) < 2:
        notes.append("every video has one keyframe: nothing to link, ids are 0..n-1 per "
                     "keyframe")
    return ids[g.person_of_row], notes


def identity_scores(frames, true_ids, pred_ids) -> dict:
    """Identity measures of a tracking whose boxes' true identities are known.

    frames: (N,) keys of the keyframe of each box (e.g. (video, timestamp) codes from
    `keyframe_index`; identities of different videos must differ, e.g. offset per video),
    true_ids (N,), pred_ids (N,): one row per box (each box once).
    Returns {"idf1", "idp", "idr", "idtp", "switches", "boxes", "true_tracks",
    "pred_tracks"}: IDTP is the most boxes that a one-to-one map of true to predicted
    identities gets right (Ristani et al. 2016, a linear assignment), IDF1 = 2 IDTP /
    (2 N) with every box both a truth and a prediction (IDP = IDR = IDF1); switches: for
    each true identity in time order, how often its predicted id differs from the one at
    its previous box (CLEAR MOT's identity switches, with every box matched)."""
    frames = np.asarray(frames)
    t_u, t_inv = np.unique(np.asarray(true_ids), return_inverse=True)
    p_u, p_inv = np.unique(np.asarray(pred_ids), return_inverse=True)
    n = len(frames)
    if n == 0:
        return {"idf1": 1.0, "idp": 1.0, "idr": 1.0, "idtp": 0, "switches": 0, "boxes": 0,
                "true_tracks": 0, "pred_tracks": 0}
    pair = t_inv.astype(np.int64) * len(p_u) + p_inv
    codes, counts = np.unique(pair, return_counts=True)
    overlap = np.zeros((len(t_u), len(p_u)))
    overlap[codes // len(p_u), codes % len(p_u)] = counts
    r, c = linear_sum_assignment(-overlap)
    idtp = int(overlap[r, c].sum())
    order = np.lexsort((frames, t_inv))
    same_true = t_inv[order][1:] == t_inv[order][:-1]
    switches = int((same_true & (p_inv[order][1:] != p_inv[order][:-1])).sum())
    idf1 = idtp / n
    return {"idf1": idf1, "idp": idf1, "idr": idf1, "idtp": idtp, "switches": switches,
            "boxes": n, "true_tracks": len(t_u), "pred_tracks": len(p_u)}


def track_box_lines(text: str, cfg: TrackConfig = TrackConfig()) -> str:
    """Person-box CSV lines of ONE video, one line per box (``video_id,timestamp,x1,y1,x2,
    y2,,score``, as `hgrnn detect` writes them) -> the same lines with the person id
    appended as a 9th column (`link_video`, boxes in line order)."""
    lines = text.splitlines()
    if not lines:
        return text
    cells = [line.split(",") for line in lines]
    ts = np.array([int(c[1]) for c in cells], np.int64)
    boxes = np.array([[float(v) for v in c[2:6]] for c in cells], np.float64)
    ids = link_video(ts, boxes, None, cfg)
    return "".join(f"{line},{i}\n" for line, i in zip(lines, ids.tolist()))


def csv_kind(path, kind: str = "auto") -> str:
    """Which AVA CSV `path` is: "results" (``...,action_id,score[,person_id]``: results,
    person-box detections, a tracked file) or "gt" (``...,action_id[,person_id]``).
    kind "results" / "gt": as given. "auto": by the first rows' widths: 7 columns -> gt,
    9 -> results; 8 -> gt when every 8th value of the first 1000 rows is an integer
    literal (a person id) and results otherwise (a score). An 8-column result file whose
    scores are all written as integers reads as gt: pass the kind."""
    if kind != "auto":
        return kind
    widths, last = set(), []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            cells = line.strip().split(",")
            if len(cells) < 7:
                continue                    # blank or 2-column empty-keyframe rows
            widths.add(len(cells))
            if len(cells) == 8:
                last.append(cells[7].strip())
            if len(last) >= 1000 or len(widths) > 1:
                break
    if 9 in widths:
        return "results"
    if 7 in widths:
        return "gt"
    is_int = all(v.lstrip("+-").isdigit() for v in last)
    return "gt" if last and is_int else "results"


def read_boxes(path, kind: str = "auto") -> tuple[AvaRows, str]:
    """Read a person-box / result / ground-truth CSV with the project's readers (every
    row kept: no label map, no exclusions) -> (rows, kind), kind as :func:`csv_kind`."""
    kind = csv_kind(path, kind)
    reader = read_annotations if kind == "gt" else read_results
    return reader(path, progress=False), kind


def write_tracked(path, source_rows: AvaRows, ids, ground_truth: bool) -> None:
    """Write rows with their person ids, atomically (a temporary file in the target's
    folder, renamed over it).

    Result / person-box rows: the 8 AVA columns as `hgrnn.data.ava.write_results` writes
    them, then the id as a 9th column. Ground-truth rows: `write_annotations` with the ids
    as the 8th column, person_id."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    ids = np.asarray(ids, np.int64)
    with replacing(path) as tmp:            # whole or not at all (a full disk included)
        if ground_truth:
            rows = AvaRows(source_rows.video_ids, source_rows.timestamps, source_rows.boxes,
                           source_rows.action_ids, ids, None, {}, source_rows.boxes64, None,
                           source_rows.empty_video_ids, source_rows.empty_timestamps)
            write_annotations(tmp, rows)
        else:
            plain = AvaRows(source_rows.video_ids, source_rows.timestamps, source_rows.boxes,
                            source_rows.action_ids, None, source_rows.scores, {},
                            source_rows.boxes64, source_rows.scores64)
            write_results(tmp, plain)
            with open(tmp, encoding="utf-8") as f:
                lines = f.read().splitlines()
            with open(tmp, "w", encoding="utf-8", newline="\n") as f:
                f.write("".join(f"{line},{i}\n" for line, i in zip(lines, ids.tolist())))


def store_features(store_path, source: str, groups: BoxGroups) -> tuple[np.ndarray, int]:
    """RoI features of the persons of `groups` from a feature store's `source` ("det" or
    "gt") -> (features (P, C) float32 with NaN rows for persons the store lacks, number
    found). A person is found when its video and keyframe are in the store and a store box
    of that keyframe has IoU >= 0.99 with it (the same box, written at float32 or from
    the same CSV)."""
    from hgrnn.data.windows import FeatureStore  # imports torch

    fs = FeatureStore(store_path, box_source=source, lazy=True)
    try:
        out = np.full((len(groups), fs.feature_dim), np.nan, np.float32)
        kf = {(fs.video_ids[int(v)], int(t)): g for g, (v, t) in
              enumerate(zip(fs.kf_video, fs.kf_time))}
        found_rows, found_persons = [], []
        for key in sorted(set(zip(groups.video_ids.tolist(), groups.timestamps.tolist()))):
            g = kf.get(key)
            if g is None:
                continue
            a, b = int(fs.person_offsets[g]), int(fs.person_offsets[g + 1])
            mine = np.flatnonzero((groups.video_ids == key[0]) & (groups.timestamps == key[1]))
            if b == a or len(mine) == 0:
                continue
            iou = box_iou(groups.boxes[mine], fs.boxes[a:b])                 # (m, b - a)
            best = iou.argmax(axis=1)
            ok = iou[np.arange(len(mine)), best] >= 0.99
            found_persons.extend(mine[ok].tolist())
            found_rows.extend((a + best[ok]).tolist())
        if found_rows:
            out[np.asarray(found_persons)] = fs.feat_rows(np.asarray(found_rows))
        return out, len(found_rows)
    finally:
        fs.close()
