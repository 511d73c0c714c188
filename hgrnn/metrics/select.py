"""Stage 1 of :func:`hgrnn.metrics.evaluate`, select: which rows take part.

Ground truth: rows of label-map classes on keyframes that are not excluded. Results, in
the protocol's order: classes outside the label map and excluded keyframes dropped; with
official ties and ava-2018, scores not above -10 (the 2018 NMS's score threshold); with
ava-2019/2020, all but the 50 highest-scored results of each keyframe (across classes);
with ava-2020, results on keyframes absent from the ground-truth file; last, invalid boxes
(x2 <= x1 or y2 <= y1). Every dropped row is counted under its reason. The rows that stay
go on as one :class:`Results` bundle (and one :class:`Truth`), taken once at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from hgrnn.data.ava import AvaRows, keyframe_index
from hgrnn.metrics.official_order import (SCORE_FLOOR_2018, first_appearance_rank,
                                          heap_keyframes, simulate_heaps)
from hgrnn.metrics.packsort import argsort_descending_in_runs, run_of_rows, sort_pairs

MAX_RESULTS_PER_KEYFRAME = 50        # ava-2019 / ava-2020 cap (official ``capacity``)


@dataclass
class Truth:
    """The ground-truth rows that take part (G of them), in file order."""

    keys: np.ndarray          # (G,) int64 keyframe key (video code << 32 | timestamp)
    cls: np.ndarray           # (G,) int label-map column
    boxes: np.ndarray         # (G, 4) float64 x1, y1, x2, y2
    rows: np.ndarray          # (G,) int64 row in the ground-truth file's rows
    all_keys: np.ndarray      # keys of every annotated keyframe (ava-2020's "known" ones)


@dataclass
class Results:
    """The results that take part (R of them), in file order: parallel (R,) arrays.

    file_boxes: (N, 4) boxes of all the file's rows, float64 as read or the rows' float32
    (not copied, not cast: only the few results with candidate boxes need theirs, in
    float64, :meth:`boxes`); rows: each result's row
    there (None: all rows, in order); img_rank (official ties): the keyframe's rank in the
    official reader's order; hpos (official 2019/2020): position in the simulated reader
    heap's output, -1 where not simulated."""

    keys: np.ndarray
    cls: np.ndarray
    scores: np.ndarray
    file_boxes: np.ndarray
    rows: np.ndarray | None = None
    img_rank: np.ndarray | None = None
    hpos: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.keys)

    def take(self, index) -> "Results":
        """The same bundle for rows `index` (an index array into these rows)."""
        out = {f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[index]
               for f in fields(self) if f.name not in ("rows", "file_boxes")}
        return Results(rows=index if self.rows is None else self.rows[index],
                       file_boxes=self.file_boxes, **out)

    def boxes(self, index) -> np.ndarray:
        """(len(index), 4) float64 boxes of results `index`."""
        boxes = self.file_boxes.take(index if self.rows is None else self.rows[index], axis=0)
        return np.asarray(boxes, np.float64)


def f64(rows: AvaRows, name):
    """rows.boxes64 / scores64 (the parsed float64 values), else the float32 ones cast."""
    exact = getattr(rows, name + "64", None)
    if exact is not None:
        return exact
    arr = getattr(rows, name)
    return None if arr is None else np.asarray(arr, np.float64)


def select(gt: AvaRows, results: AvaRows, ids, protocol, exclusions, ties, counts):
    """The rows of both files that take part -> (Truth, Results); `counts` gets every
    dropped row under its reason (insertion order is the order of the report)."""
    (gkeys, rkeys, ekeys), vocab = keyframe_keys(
        [_video_ids(gt), _video_ids(results), (gt.empty_video_ids, gt.empty_timestamps, None)])
    gcls, rcls = class_columns(gt.action_ids, ids), class_columns(results.action_ids, ids)
    counts["gt_dropped_not_in_label_map"] = int((gcls < 0).sum())
    counts["results_dropped_not_in_label_map"] = int((rcls < 0).sum())
    gsel, rsel = gcls >= 0, rcls >= 0
    if exclusions:
        ex = list(exclusions)                   # keys of excluded videos in no file: < 0
        exk, _ = keyframe_index(np.array([v for v, _ in ex], str),
                                np.array([t for _, t in ex], np.int64), vocab)
        gx, rx = np.isin(gkeys, exk) & gsel, _isin_runs(rkeys, exk) & rsel
        counts["gt_dropped_excluded"] = int(gx.sum())
        counts["results_dropped_excluded"] = int(rx.sum())
        gsel &= ~gx
        rsel &= ~rx
    counts["coverage"] = coverage(np.concatenate([gkeys[gsel], ekeys]), rkeys[rsel])
    gidx = np.flatnonzero(gsel)
    truth = Truth(keys=gkeys[gidx], cls=gcls[gidx], boxes=f64(gt, "boxes").take(gidx, axis=0),
                  rows=gidx, all_keys=np.concatenate([gkeys, ekeys]))
    res = Results(keys=rkeys, cls=rcls, scores=f64(results, "scores"),
                  file_boxes=_file_boxes(results))
    if not rsel.all():
        res = res.take(np.flatnonzero(rsel))
    del rkeys, rcls, rsel
    if ties == "official":
        res.img_rank = first_appearance_rank(res.keys).astype(np.int32)
    keep = np.ones(len(res), bool)
    if ties == "official" and protocol == "ava-2018":      # the 2018 NMS keeps scores > -10
        low = res.scores <= SCORE_FLOOR_2018
        counts["results_dropped_score_not_above_-10"] = int(low.sum())
        keep &= ~low
    if protocol in ("ava-2019", "ava-2020"):
        keep &= top_per_keyframe(res, ids, ties, counts)
    if protocol == "ava-2020":                             # keyframes absent from gt: ignored
        unknown = keep & ~_isin_runs(res.keys, np.unique(truth.all_keys))
        counts["results_dropped_keyframe_not_in_gt"] = int(unknown.sum())
        keep &= ~unknown
    fb = res.file_boxes
    invalid = (fb[:, 2] <= fb[:, 0]) | (fb[:, 3] <= fb[:, 1])              # (N,) file rows
    invalid = keep & (invalid if res.rows is None else invalid[res.rows])
    counts["results_dropped_invalid_box"] = int(invalid.sum())
    keep &= ~invalid
    if not keep.all():
        res = res.take(np.flatnonzero(keep))
    return truth, res


def top_per_keyframe(res: Results, ids, ties, counts) -> np.ndarray:
    """ava-2019/2020: (R,) bool, the 50 highest-scored results of each keyframe. Fills
    (official ties) res.hpos where the reader's heap decides: a tie at the cap boundary or
    two kept results of one class with equal scores."""
    kf = res.img_rank if res.img_rank is not None else first_appearance_rank(res.keys)
    n = len(kf)
    start = _run_starts(res.keys) if n else np.zeros(0, np.int64)
    if np.array_equal(kf[start], np.arange(len(start))):     # each keyframe is one run
        by_key = argsort_descending_in_runs(res.scores, start)
    else:                                   # rows by keyframe first, in file order
        by_kf, kf_sorted = sort_pairs(kf, np.arange(n), with_major=True)
        start = _run_starts(kf_sorted) if n else start
        del kf_sorted
        by_key = by_kf[argsort_descending_in_runs(res.scores[by_kf], start)]
        del by_kf
    del kf                                  # by_key: keyframe, descending score, file row
    ks = res.keys[by_key]
    rank = np.arange(len(ks)) - start[run_of_rows(start, len(ks))]    # place in keyframe
    keep = np.zeros(len(ks), bool)
    keep[by_key[rank < MAX_RESULTS_PER_KEYFRAME]] = True
    if ties == "official":
        sim = heap_keyframes(by_key, ks, start, rank, res.scores, res.cls, len(ids),
                             MAX_RESULTS_PER_KEYFRAME)
        if len(sim):
            res.hpos, sim_rows, kept_rows = simulate_heaps(
                sim, res.keys, res.scores, ids[res.cls], res.file_boxes, res.rows,
                MAX_RESULTS_PER_KEYFRAME)
            keep[sim_rows] = False
            keep[kept_rows] = True
    counts["results_dropped_over_50_per_keyframe"] = int((~keep).sum())
    return keep


def keyframe_keys(pairs):
    """[(video_ids, timestamps, video_codes or None) or (None, None, None), ...] -> ([one
    (N_i,) int64 key array per pair], vocabulary): the keys of
    :func:`hgrnn.data.ava.keyframe_index` with the vocabulary of all pairs, each id column
    compared once (files come in runs of equal ids), or not at all where the reader's
    integer codes (``AvaRows.video_codes``) are given."""
    runs = []
    for vids, ts, codes in pairs:
        n = 0 if ts is None else len(ts)
        if n == 0:
            start, run_ids = np.zeros(0, np.int64), np.zeros(0, str)
        elif codes is not None:
            code, code_vocab = codes
            start = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
            run_ids = np.asarray(code_vocab, str)[code[start]]
        else:
            vids = np.asarray(vids, str)
            start = np.flatnonzero(np.r_[True, vids[1:] != vids[:-1]])
            run_ids = vids[start]
        runs.append((run_ids, start, n, ts))
    vocab = np.unique(np.concatenate([r[0] for r in runs]))
    out = []
    for run_ids, start, n, ts in runs:
        if n == 0:
            out.append(np.zeros(0, np.int64))
            continue
        code = np.searchsorted(vocab, run_ids).astype(np.int64) << 32
        keys = np.repeat(code, np.diff(np.append(start, n)))
        ts = np.asarray(ts, np.int64)
        if ts.min() < 0 or ts.max() > 0xFFFFFFFF:
            ts = ts & 0xFFFFFFFF
        keys += ts
        out.append(keys)
    return out, vocab


def _file_boxes(rows: AvaRows):
    """The rows' boxes as they are: float64 as read, else float32 (rows built in memory,
    11.2M of them in `hgrnn eval`: a float64 copy would be 0.36 GB); the float32 values
    compare and cast exactly."""
    return rows.boxes64 if rows.boxes64 is not None else rows.boxes


def _video_ids(rows: AvaRows):
    """(video_ids or None, timestamps, video_codes) of rows for :func:`keyframe_keys`: the
    readers' codes where the rows have them (their video_ids are then never made)."""
    if rows.video_codes is not None:
        return None, rows.timestamps, rows.video_codes
    return rows.video_ids, rows.timestamps, None


def class_columns(action_ids, ids):
    """action ids (N,) -> label-map column (N,) int32, -1 where not in the map."""
    a = np.asarray(action_ids, np.int64)
    lo, hi = min(int(ids.min()), 0), int(ids.max())
    if hi - lo > 1 << 16:            # ids far apart (a custom label map): no table that wide
        order = np.argsort(ids, kind="stable")
        at = np.clip(np.searchsorted(ids[order], a), 0, len(ids) - 1)
        found = ids[order][at] == a
        return np.where(found, order[at], -1).astype(np.int32)
    lut = np.full(hi - lo + 2, -1, np.int32)           # last slot: ids outside [lo, hi]
    lut[ids - lo] = np.arange(len(ids))
    idx = a - lo
    idx[(a < lo) | (a > hi)] = hi - lo + 1
    return lut[idx]


def coverage(gkeys, rkeys) -> dict:
    """Videos and keyframes in the ground truth, in the results and in both."""
    gk, rk = _unique_keys(gkeys), _unique_keys(rkeys)
    both = np.intersect1d(gk, rk, assume_unique=True)
    gv, rv = np.unique(gk >> 32), np.unique(rk >> 32)
    return {"gt_videos": len(gv), "gt_keyframes": len(gk),
            "results_videos": len(rv), "results_keyframes": len(rk),
            "common_videos": len(np.intersect1d(gv, rv, assume_unique=True)),
            "common_keyframes": len(both)}


def _run_starts(keys):
    return np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])


def _unique_keys(keys):
    """Sorted unique int64 keys, fast for files grouped by keyframe (runs sorted only)."""
    if len(keys) == 0:
        return keys
    return np.unique(keys[_run_starts(keys)])


def _isin_runs(keys, values):
    """np.isin(keys, values), decided once per run of equal keys."""
    if len(keys) == 0:
        return np.zeros(0, bool)
    start = _run_starts(keys)
    return np.repeat(np.isin(keys[start], values), np.diff(np.append(start, len(keys))))
