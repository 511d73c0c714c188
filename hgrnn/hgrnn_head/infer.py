"""Inference and evaluation of a trained head on a feature store (`hgrnn eval`).

For every keyframe of the store that has persons of the chosen box source ("det" by default,
"gt" with ``gt_boxes=True``), in batches:

    scores (P, K) = sigmoid(logits) x person confidence          (confidence 1 for gt boxes)
    class-specific NMS per keyframe: among the boxes of one keyframe, for each class
        separately, a box whose IoU with a higher-scoring box exceeds ``nms_iou`` is dropped
        (greedy; the decisions of torchvision's ``batched_nms``, group = keyframe x class,
        without importing it: ``class_nms``)

and every kept (box, class) becomes a row of the AVA result CSV. The results are scored with
the official AVA frame-mAP (``hgrnn.metrics.evaluate``) against the store's own ground truth
(its "gt" persons, one row per person and action) or a ground-truth CSV.

Default NMS IoU 0.5: it is the overlap at which the AVA metric counts a box as the same
person, so a second box above it on the same person and class can only be a false positive
(the first one already took the match), while boxes of two people standing close rarely
overlap that much. ``nms_iou >= 1`` (or None) disables NMS.

NMS runs on detections only, unless asked for (``nms=True``): ground-truth boxes have no
duplicates to remove, so on them NMS can only drop true positives (two people whose boxes
overlap above the IoU). ``default_nms(box_source)`` says the default; metrics.json records
the choice.
"""

from __future__ import annotations

import ctypes
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from hgrnn.console import progress_bar
from hgrnn.data.ava import AvaRows, read_annotations, read_exclusions, write_results
from hgrnn.data.store import open_h5
from hgrnn.data.store_io import read_errors
from hgrnn.data.windows import ContextWindows, FeatureStore
from hgrnn.hgrnn_head.charts import eval_title, plot_per_class_ap
from hgrnn.hgrnn_head.checkpoint import (HeadError, check_store_matches, load_checkpoint,
                                         model_from_checkpoint, open_store, resolve_device,
                                         torch_threads)
from hgrnn.metrics import check_evaluable, evaluate
from hgrnn.metrics.groups import group_map, mean_ap_by_group

DEFAULT_NMS_IOU = 0.5
INFER_BATCH_KEYFRAMES = 512


def default_nms(box_source: str) -> bool:
    """Whether NMS runs by default on persons of `box_source`: on detections, not on gt."""
    return box_source != "gt"


def class_nms(boxes: torch.Tensor, scores: torch.Tensor, keyframe: torch.Tensor,
              iou: float = DEFAULT_NMS_IOU) -> torch.Tensor:
    """Class-specific NMS per keyframe.

    boxes (P, 4) xyxy, scores (P, K), keyframe (P,) int64 -> keep (P, K) bool.

    Greedy NMS per (keyframe, class): in descending score order, a box is kept unless a
    kept box of its group overlaps it above `iou`. Only a box that overlaps another box of
    its own keyframe above `iou` can suppress or be suppressed, so only those ("contested")
    boxes are looked at (the others are kept for every class).

    The decisions are those of torchvision's ``nms`` run on each (keyframe, class) alone
    (tested); done here with vectorised tensor ops over all contested keyframes at once,
    which also spares `eval` and `predict` the torchvision import (~1 s and 0.16 GiB).
    See :func:`_nms_contested` for how earlier versions' decisions differ.
    """
    P, K = scores.shape
    keep = torch.ones(P, K, dtype=torch.bool)
    if P < 2 or iou >= 1:
        return keep
    # persons in keyframe order; then every (i, j) pair of persons of one keyframe, as two
    # flat index arrays: the IoUs needed are only those within a keyframe
    order = torch.argsort(keyframe, stable=True)
    boxes, scores, keyframe = boxes[order], scores[order], keyframe[order]
    counts = torch.bincount(keyframe)  # persons per keyframe
    first = torch.cumsum(counts, 0) - counts  # first person of each keyframe
    n_pairs = counts[keyframe]  # (P,) partners of each person (itself included)
    i = torch.repeat_interleave(torch.arange(P), n_pairs)  # (E,)
    pair_start = torch.repeat_interleave(torch.cumsum(n_pairs, 0) - n_pairs, n_pairs)
    j = first[keyframe][i] + torch.arange(len(i)) - pair_start  # (E,)
    a, b = boxes[i], boxes[j]  # (E, 4)
    wh = (torch.minimum(a[:, 2:], b[:, 2:]) - torch.maximum(a[:, :2], b[:, :2])).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # (P,)
    pair_iou = inter / (area[i] + area[j] - inter).clamp(min=1e-12)  # (E,)
    # a superset of the pairs above `iou` (a hair of float slack): an extra contested box
    # only costs time, the greedy pass below still decides
    overlapping = (pair_iou > iou - 1e-6) & (i != j)
    contested = torch.zeros(P, dtype=torch.bool)
    contested[i[overlapping]] = True
    contested = contested.nonzero().flatten()  # (M,), in keyframe order
    if len(contested) == 0:
        return keep
    keep_sorted = torch.ones(P, K, dtype=torch.bool)
    keep_sorted[contested] = _nms_contested(boxes[contested], scores[contested],
                                            keyframe[contested], iou)
    keep[order] = keep_sorted
    return keep


def _nms_contested(boxes, scores, keyframe, iou):
    """Greedy NMS per (keyframe, class) of the contested boxes -> keep (M, K) bool.

    boxes (M, 4) and scores (M, K) of one float dtype, keyframe (M,) int64 non-decreasing.
    The arithmetic of torchvision's ``nms`` (its CPU kernel) run on each group alone:
    boxes in descending score order (a stable sort: equal scores in person order, NaN
    first), area = (x2 - x1) * (y2 - y1), IoU = w h / (area_i + area_j - w h) with w, h
    clamped at 0, a box suppressed when its IoU with a kept one exceeds `iou` (compared in
    float64). All groups' passes run at once, over slices of keyframes whose (keyframe,
    class, rank, rank) IoU tensors stay small however crowded the keyframes.

    Earlier versions ran torchvision's ``batched_nms`` on chunks of keyframes; its
    "coordinate trick" shifts each group's boxes by group x (largest coordinate + 1) in
    float32, which rounds the coordinates of the last keyframes of a 512-keyframe batch
    to ~0.004: a box's fate depended on its place in the batch (0.03 % of the person x
    class pairs of the AVA-validation-scale benchmark, BENCHMARKS.md)."""
    M, K = scores.shape
    run_len = torch.unique_consecutive(keyframe, return_counts=True)[1]  # (F,) boxes per kf
    runs = len(run_len)
    keep = torch.zeros(M, K, dtype=torch.bool)
    first = (torch.cumsum(run_len, 0) - run_len).tolist() + [M]  # first box of each run
    lo, widest = 0, 0
    for r, n in enumerate(run_len.tolist() + [0]):
        widest_with = max(widest, n)
        if r == runs or (r > lo and (r + 1 - lo) * K * widest_with ** 2 > _GREEDY_ELEMENTS):
            a, b = first[lo], first[r]
            keep[a:b] = _greedy(boxes[a:b], scores[a:b], run_len[lo:r], iou)
            lo, widest_with = r, n
        widest = widest_with
    return keep


_GREEDY_ELEMENTS = 1 << 21  # keyframes x classes x boxes^2 of one greedy pass


def _greedy(boxes, scores, run_len, iou):
    """Greedy NMS of the groups (keyframe, class) of `_nms_contested`: boxes (M, 4),
    scores (M, K), run_len (F,) boxes of each keyframe (in order) -> keep (M, K)."""
    M, K = scores.shape
    runs, n = len(run_len), int(run_len.max())
    run = torch.repeat_interleave(torch.arange(runs), run_len)  # (M,) keyframe of each box
    # groups laid out (F keyframes, K, n slots); the slots of a keyframe in person order
    slot = torch.arange(M) - torch.repeat_interleave(torch.cumsum(run_len, 0) - run_len, run_len)
    pad_scores = torch.full((runs, n, K), -torch.inf, dtype=scores.dtype)
    pad_scores[run, slot] = scores
    valid = torch.zeros(runs, n, dtype=torch.bool)
    valid[run, slot] = True
    # each group's boxes by score, descending; equal scores (and NaN first) in person order,
    # as torchvision's sort (stable) ordered them
    rank_order = torch.sort(pad_scores.transpose(1, 2), dim=2, descending=True,
                            stable=True).indices  # (F, K, n) slot at each rank
    box_of = torch.full((runs, n), 0, dtype=torch.int64)  # box of slot (padding: box 0)
    box_of[run, slot] = torch.arange(M)
    idx = torch.gather(box_of[:, None, :].expand(-1, K, -1), 2, rank_order)  # (F, K, n)
    ok = torch.gather(valid[:, None, :].expand(-1, K, -1), 2, rank_order)  # (F, K, n)
    b = boxes[idx]  # (F, K, n, 4) in rank order
    area = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # (F, K, n)
    lo = torch.maximum(b[..., :, None, :2], b[..., None, :, :2])  # (F, K, n, n, 2)
    hi = torch.minimum(b[..., :, None, 2:], b[..., None, :, 2:])
    wh = (hi - lo).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    over = (inter / (area[..., :, None] + area[..., None, :] - inter)).double() > iou
    # the box at rank r, unless suppressed, suppresses the later ones it overlaps
    suppressed = ~ok
    for r in range(n - 1):
        suppressed[..., r + 1:] |= (~suppressed[..., r:r + 1]) & over[..., r, r + 1:]
    keep = torch.zeros(M, K, dtype=torch.bool)
    f_, c_, r_ = (~suppressed & ok).nonzero(as_tuple=True)
    keep[idx[f_, c_, r_], c_] = True
    return keep


@torch.no_grad()
def predict_store(model, fs, device="cpu", nms_iou=DEFAULT_NMS_IOU,
                  batch_keyframes=INFER_BATCH_KEYFRAMES, progress=False, min_score=0.0):
    """Score every keyframe of `fs` (a FeatureStore; its box source is used) -> AvaRows of
    results, one row per kept (person box, class), scores = action prob x confidence.
    nms_iou None (or >= 1): no NMS.
    min_score > 0 drops rows scored below it after NMS (smaller CSVs; it can only lower AP,
    by cutting the tail of each class's ranking)."""
    cfg = model.cfg
    windows = ContextWindows(fs, l=cfg.window_context, pad=cfg.window_pad)
    action_ids = np.asarray(fs.label_map.ids, np.int64)
    model.eval()
    starts = range(0, len(windows), batch_keyframes)
    batches = _prefetched(windows, starts, batch_keyframes)
    if progress:
        batches = progress_bar(batches, total=len(starts), unit="batch", dynamic_ncols=True,
                               desc=f"eval {os.path.basename(fs.path)}")
    # per batch: which (person, class) pairs are kept, all their scores, and per person its
    # keyframe and box: 5 bytes a (person, class) pair until the end, where each result
    # column is built once, in its final dtype, by a mask or a repeat (no index arrays)
    keeps, scores_, person_window, person_boxes = [], [], [], []
    for s, batch in batches:
        probs = torch.sigmoid(model(batch.to(device))).float().cpu()  # (P, K)
        scores = probs * batch.scores[:, None]  # (P, K): action prob x person confidence
        keep = class_nms(batch.boxes, scores, batch.keyframe,
                         1.0 if nms_iou is None else nms_iou)  # (P, K)
        if min_score > 0:
            keep &= scores >= min_score
        keeps.append(keep.numpy())
        scores_.append(scores.numpy())
        person_window.append(batch.keyframe.numpy() + s)
        person_boxes.append(batch.boxes.numpy())
    if not keeps:
        return AvaRows.from_arrays(np.zeros(0, str), np.zeros(0), np.zeros((0, 4)), np.zeros(0),
                                   scores=np.zeros(0))
    # rows in scoring order: persons in order, each person's kept classes in label-map order
    keep = np.concatenate(keeps)  # (persons, K)
    del keeps
    window = np.concatenate(person_window)  # (persons,)
    per_person = keep.sum(1)  # rows of each person
    video = fs.kf_video[windows.keyframe_index(window)]  # (persons,) video of each person
    # video ids as codes into the store's ids (made into strings only if asked for: the
    # evaluator and the CSV writer compare the codes)
    return AvaRows(
        video_ids=None, timestamps=np.repeat(windows.timestamps[window], per_person),
        boxes=np.repeat(np.concatenate(person_boxes), per_person, axis=0).astype(np.float32),
        action_ids=np.broadcast_to(action_ids, keep.shape)[keep], person_ids=None,
        scores=np.concatenate(scores_)[keep].astype(np.float32), skipped={},
        video_codes=(np.repeat(video, per_person), np.asarray(fs.video_ids, str)))


def _prefetched(windows, starts, batch_keyframes):
    """(start, WindowBatch of windows start.. start + batch_keyframes) for each of `starts`,
    each batch built in a second thread while the caller scores the one before (numpy and
    torch copies, mostly outside the GIL: on a second core)."""
    def build(s):
        return windows.batch(np.arange(s, min(s + batch_keyframes, len(windows))))

    with ThreadPoolExecutor(1, thread_name_prefix="batches") as pool:
        pending = None
        for s in starts:
            if pending is None:
                pending = (s, pool.submit(build, s))
                continue
            (prev, built), pending = pending, (s, pool.submit(build, s))
            yield prev, built.result()
        if pending is not None:
            yield pending[0], pending[1].result()


def store_ground_truth_of(store, label_map=None, label_map_name=None):
    """The gt persons of feature store `store` as AVA ground-truth rows, and the label map
    to score them with: the store's own, or `label_map` (a LabelMap) when it is the same
    (else ValueError naming both; `label_map_name`: how the user gave it). The one rule of
    `eval-csv` and `report` against a store."""
    fs = FeatureStore(store, box_source="gt", lazy=True)
    if label_map is not None and tuple(label_map.ids) != tuple(fs.label_map.ids):
        raise ValueError(f"--label-map {label_map_name or ''} ({len(label_map)} classes) is "
                         f"not the label map of {store} ({len(fs.label_map)} classes); leave "
                         "--label-map out to use the store's")
    return store_ground_truth(fs), (fs.label_map if label_map is None else label_map)


def store_ground_truth(fs):
    """The store's gt persons as AVA ground-truth rows (one per person and positive label),
    read with h5py following the store schema (hgrnn/data/store.py)."""
    ids = np.asarray(fs.label_map.ids, np.int64)
    cols = {"video": [], "ts": [], "boxes": [], "action": [], "pid": []}
    with open_h5(fs.path) as f:
        for vid in fs.video_ids:
            with read_errors(fs.path, vid, "gt"):
                g = f["videos"][vid]
                if "gt" not in g or "labels" not in g["gt"]:
                    continue
                gt = g["gt"]
                ts = g["timestamps"][:].astype(np.int64)
                offsets = gt["offsets"][:]
                labels = gt["labels"][:]
                person, cls = np.nonzero(labels)
                t = np.searchsorted(offsets, person, side="right") - 1  # keyframe of each row
                cols["video"].append(np.full(len(person), vid))
                cols["ts"].append(ts[t])
                cols["boxes"].append(gt["boxes"][:][person])
                cols["action"].append(ids[cls])
                pid = gt["person_id"][:] if "person_id" in gt else np.full(len(labels), -1)
                cols["pid"].append(pid[person])
    if not cols["video"]:
        raise HeadError(f"{fs.path}: the store has no ground-truth labels to evaluate against; "
                        "pass a ground-truth CSV (--gt-csv)")
    cat = {k: np.concatenate(v) for k, v in cols.items()}
    return AvaRows.from_arrays(cat["video"].astype(str), cat["ts"], cat["boxes"], cat["action"],
                               person_ids=cat["pid"])


def stored_exclusions(fs) -> tuple[set | None, str | None]:
    """The excluded keyframes `extract-features --exclusions` (or `import-features`)
    recorded in the store's config -> ({(video_id, timestamp)}, "PATH (sha256 ...)") or (None, None)."""
    entry = next((c["excluded_keyframes"] for c in (fs.configs.get(stage) or {} for stage in
                  ("extract", "import_gt", "import_det")) if c.get("excluded_keyframes")),
                 None)                  # extract-features or import-features --exclusions
    if not entry:
        return None, None
    keys = {(str(v), int(t)) for v, t in entry["keyframes"]}
    return keys, f"{entry['path']} (sha256 {str(entry['sha256'])[:12]}, from the store)"


def evaluate_model(model, fs, device="cpu", gt=None, nms_iou=DEFAULT_NMS_IOU,
                   exclusions=None, protocol="ava-2018", progress=False, nms=None):
    """Frame-mAP of `model` on FeatureStore `fs` (its box source) against `gt` (AvaRows;
    default: the store's own ground truth); nms None: ``default_nms(fs.box_source)``.
    Returns (EvalResult)."""
    if nms is None:
        nms = default_nms(fs.box_source)
    results = predict_store(model, fs, device=device, nms_iou=nms_iou if nms else None,
                            progress=progress)
    gt = store_ground_truth(fs) if gt is None else gt
    return evaluate(gt, results, fs.label_map, protocol=protocol, exclusions=exclusions)


def evaluate_store(store, checkpoint, gt_boxes=False, out_dir=None, nms_iou=DEFAULT_NMS_IOU,
                   gt_csv=None, exclusions=None, protocol="ava-2018", progress=True,
                   device="auto", min_score=0.0, num_threads=1, sort_classes="ap", nms=None):
    """Score every keyframe of `store` with the head of `checkpoint` and evaluate it.

    gt_boxes: use the store's ground-truth boxes (confidence 1) instead of its detections.
    nms: class-specific NMS at `nms_iou`; None (default) = on for detections, off for
        ground-truth boxes (``default_nms``), True / False force it.
    out_dir: when given, writes results.csv (AVA format), metrics.json (EvalResult.to_dict()
        plus "configs": head, train and eval settings) and per_class_ap.png.
    gt_csv / exclusions: AVA ground-truth CSV and excluded-timestamps CSV (or a set of
        (video_id, timestamp)); default ground truth: the store's own gt persons, default
        exclusions: those `extract-features --exclusions` recorded in the store (none when
        it had none).
    min_score: drop result rows scored below it (default 0: every box x class is kept, as
        AVA result files usually are; see ``predict_store``).
    num_threads: torch CPU threads while scoring (0: torch's default; 1, the default, for
        the reason given at ``TrainConfig.num_threads``).
    sort_classes: per_class_ap.png bars sorted by AP ("ap") or in label-map order ("labelmap").
    Returns the EvalResult, or None when there is nothing to score against (no gt_csv and a
    store without labelled ground-truth persons, e.g. one `hgrnn predict` wrote): then only
    results.csv is written.
    """
    ckpt = load_checkpoint(checkpoint)
    source = "gt" if gt_boxes else "det"
    # the streams the head was trained on (checkpoints from before streams: the RGB store)
    streams = tuple(ckpt.get("streams") or ckpt["train"].get("streams") or ("rgb",))
    try:
        fs = open_store(store, source, streams=streams)
    except HeadError as exc:
        if "feature stream" not in str(exc):
            raise
        raise HeadError(f"{exc}; checkpoint {ckpt['path']} was trained on "
                        f"{'+'.join(streams)}") from None
    if source not in fs.sources:
        raise HeadError(f"{fs.path}: the store has no '{source}' boxes (it has {list(fs.sources)})"
                        + ("" if gt_boxes else "; use --gt-boxes to score the ground-truth boxes"))
    check_store_matches(ckpt, fs)
    device = resolve_device(device)
    model = model_from_checkpoint(ckpt, device)
    ckpt = {k: v for k, v in ckpt.items() if k not in ("model", "optimizer")}  # in the model

    exclusions_source = None
    if isinstance(exclusions, (str, os.PathLike)):
        exclusions_source = str(exclusions)
        exclusions = read_exclusions(exclusions)
    elif exclusions is None:
        exclusions, exclusions_source = stored_exclusions(fs)
    elif exclusions is not None:
        exclusions_source = "given as a set"
    if gt_csv is not None:
        gt = read_annotations(gt_csv, fs.label_map)
    elif "gt" in fs.sources:
        gt_fs = open_store(store, "gt", lazy=True, streams=streams)
        gt = store_ground_truth(gt_fs) if gt_fs.has_labels else None
        del gt_fs
    else:
        gt = None

    if nms is None:
        nms = default_nms(source)
    with torch_threads(num_threads):
        results = predict_store(model, fs, device=device, nms_iou=nms_iou if nms else None,
                                progress=progress, min_score=min_score)
    # scoring and writing the rows needs neither the model nor the store's features: their
    # memory goes back, with the batches' freed buffers, before the rows' peak (evaluate's)
    store_path, label_map, model_name = fs.path, fs.label_map, model.cfg.describe()
    del model, fs
    _return_freed_memory()
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
    # evaluated first, written after: evaluating is the memory peak, and the writer leaves
    # ~0.1 GiB of pyarrow's resident behind it. results.csv is written whatever happens
    # to the evaluation (as when it was written first)
    try:
        result = None if gt is None else evaluate(gt, results, label_map, protocol=protocol,
                                                  exclusions=exclusions)
    finally:
        if out_dir is not None:
            write_results(out / "results.csv", results, progress=progress)
    if result is None:
        return None
    if gt_csv is not None:                  # no keyframe in common etc.: an error, not 0.0
        check_evaluable(result, os.fspath(gt_csv), f"the results of {store_path}")

    if out_dir is not None:
        report = result.to_dict()
        report["action_groups"] = mean_ap_by_group(result.per_class, result.ids)
        report["configs"] = {
            "head": ckpt["head"], "train": ckpt["train"],
            "eval": {"store": store_path, "checkpoint": ckpt["path"], "step": ckpt["step"],
                     "boxes": source, "nms": bool(nms),
                     "nms_iou": nms_iou if nms else None, "min_score": min_score,
                     "protocol": protocol,
                     "gt": str(gt_csv) if gt_csv is not None else f"{store_path} (gt persons)",
                     "exclusions": None if exclusions is None else
                     {"keyframes": len(exclusions), "source": exclusions_source},
                     "result_rows": len(results)},
        }
        (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
        title = eval_title(Path(store_path).name, source, protocol, result.mAP,
                           model=model_name)
        if gt_csv is not None:
            title += f" · gt {Path(str(gt_csv)).name}"
        plot_per_class_ap(result.per_class, result.mAP, out / "per_class_ap.png", title=title,
                          sort=sort_classes, groups=group_map(result.ids))
    return result


def _return_freed_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim``; nothing
    elsewhere): the scoring's many freed batch buffers otherwise stay resident, ~0.2 GiB at
    AVA validation scale, through the memory peak of evaluating."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return
    trim(0)
