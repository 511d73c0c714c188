"""Step 3 of `hgrnn report`: what each class's errors at its operating point are.

The operating point of a class is N = its number of ground-truth instances (the N
highest-scored results of the class; Hoiem et al.'s convention). Each false positive among
the top N gets one of four kinds by the ground-truth person it overlaps most (any class;
persons: the evaluated ground-truth rows of one keyframe and box):

- *wrong label*: a person at IoU >= 0.5 who does not have this class,
- *duplicate*: a person at IoU >= 0.5 who has it,
- *localisation*: the best person at 0.1 <= IoU < 0.5,
- *background*: no person at IoU >= 0.1;

and the ground-truth boxes the top N did not find are *missed*."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hgrnn.apps.report.match import Matching, f64, pair_iou
from hgrnn.data.ava import AvaRows
from hgrnn.metrics import IOU_THRESHOLD

LOCALISATION_IOU = 0.1         # below it a false positive is "background"
ERROR_KINDS = ("wrong label", "duplicate", "localisation", "background")


@dataclass
class Persons:
    """Ground-truth persons, ordered by their first row (ties of IoU go to the earlier
    person): of_row (G,) the person of each gt row, -1 when not evaluated; keys (P,)
    keyframe keys; boxes (P, 4); labels (P, K) bool; first_row (P,)."""
    of_row: np.ndarray
    keys: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    first_row: np.ndarray


@dataclass
class FalsePositives:
    """One class's false positives among its top N, in ranking order: rows (F,) result
    rows; person (F,) the person each overlaps most (-1 when its keyframe has none);
    iou (F,) that IoU; kind (F,) index into ERROR_KINDS."""
    rows: np.ndarray
    person: np.ndarray
    iou: np.ndarray
    kind: np.ndarray


def ground_truth_persons(gt: AvaRows, m: Matching, K: int) -> Persons:
    """Ground-truth persons: evaluated rows with the same keyframe and box are one person."""
    sel = np.flatnonzero(m.gt_cls >= 0)
    boxes = f64(gt, "boxes").reshape(-1, 4)
    keys = m.gt_keys[sel]
    b = boxes[sel]
    o = np.lexsort((sel, b[:, 3], b[:, 2], b[:, 1], b[:, 0], keys))
    ks, bs = keys[o], b[o]
    new = np.r_[True, (ks[1:] != ks[:-1]) | (bs[1:] != bs[:-1]).any(axis=1)] if len(o) \
        else np.zeros(0, bool)
    pid_sorted = np.cumsum(new) - 1
    person = np.full(len(gt), -1, np.int64)
    person[sel[o]] = pid_sorted
    first_row = sel[o][new]
    labels = np.zeros((len(first_row), K), bool)
    labels[person[sel], m.gt_cls[sel]] = True
    # persons ordered by first row so that ties of IoU go to the earlier person
    reorder = np.argsort(first_row, kind="stable")
    inverse = np.empty_like(reorder)
    inverse[reorder] = np.arange(len(reorder))
    person[sel] = inverse[person[sel]]
    return Persons(person, m.gt_keys[first_row[reorder]], boxes[first_row[reorder]],
                   labels[reorder], first_row[reorder])


def false_positives_at_n(m: Matching, results: AvaRows, persons: Persons) -> list:
    """Per class, its false positives among the top N results with the person each
    overlaps most and its kind (:class:`FalsePositives`). The persons are found for all
    classes' false positives at once."""
    K = len(m.instances)
    top_fp = []
    for c in range(K):
        seg = m.order[m.start[c]:m.start[c + 1]][: int(m.instances[c])]
        top_fp.append(seg[~m.tp[seg]])
    all_fp = np.concatenate(top_fp) if top_fp else np.zeros(0, np.int64)
    rboxes = f64(results, "boxes").reshape(-1, 4)
    bp, biou = _best_person(all_fp, m.result_keys, rboxes, persons.keys, persons.boxes)
    out, offset = [], 0
    for c, fps in enumerate(top_fp):
        p, piou = bp[offset:offset + len(fps)], biou[offset:offset + len(fps)]
        offset += len(fps)
        out.append(FalsePositives(fps, p, piou, _kinds(p, piou, persons.labels[:, c])))
    return out


def _kinds(person, iou, has_class):
    """Index into ERROR_KINDS of false positives overlapping `person` at `iou`; has_class
    (P,): which persons have the class."""
    has_person = (person >= 0) & (iou >= IOU_THRESHOLD)
    own = np.zeros(len(person), bool)
    own[has_person] = has_class[person[has_person]]
    return np.where(has_person, np.where(own, 1, 0), np.where(iou >= LOCALISATION_IOU, 2, 3))


def wrong_label_persons(fp: FalsePositives) -> np.ndarray:
    """The persons of the class's *wrong label* false positives (one per false positive)."""
    return fp.person[fp.kind == 0]


def missed_at_n(m: Matching, c: int) -> np.ndarray:
    """Ground-truth rows of class c that the top N did not find: no result took them, or
    the one that did is ranked N or below."""
    n_inst = int(m.instances[c])
    gsel = np.flatnonzero(m.gt_cls == c)
    found_rank = np.where(m.gt_found[gsel] >= 0, m.rank[np.maximum(m.gt_found[gsel], 0)], -1)
    return gsel[(found_rank < 0) | (found_rank >= n_inst)]


def _best_person(rows, rkeys, rboxes, pkeys, pboxes):
    """For result rows: the ground-truth person of the same keyframe with the highest IoU
    (the first on ties) and that IoU; -1 / 0 when the keyframe has no person."""
    po = np.argsort(pkeys, kind="stable")
    spk = pkeys[po]
    k = rkeys[rows]
    lo = np.searchsorted(spk, k, "left")
    n = np.searchsorted(spk, k, "right") - lo
    best = np.full(len(rows), -1, np.int64)
    best_iou = np.zeros(len(rows))
    active = np.flatnonzero(n)
    slot = 0
    while len(active):
        p = po[lo[active] + slot]
        iou = pair_iou(rboxes[rows[active]], pboxes[p])
        better = (iou > best_iou[active]) | (best[active] < 0)
        best[active[better]] = p[better]
        best_iou[active[better]] = iou[better]
        slot += 1
        active = active[n[active] > slot]
    return best, best_iou
