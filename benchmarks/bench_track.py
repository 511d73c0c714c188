"""Identity quality of `hgrnn track` on real AVA ground truth with known person ids.

Input: an AVA ground-truth CSV with person ids (default: the 8 validation videos of
../shared/ava). Each person box (all rows of a box are one person) is kept with probability
1 - --drop (missed detections), its corners jittered by a normal noise of --jitter times the
box's width / height (clipped to [0, 1]); the ids are removed and `hgrnn.track` links the
boxes again. Reported per video and overall: IDF1 and identity switches against AVA's
person ids (`hgrnn.track.identity_scores`), averaged over --seeds noise draws.

--sweep: IDF1 of a grid of (max_gap, min_iou) on the first --tune videos in sorted order
(the parameter choice) and on the others (held out).
--rendered DIR [--store STORE]: instead, a rendered example (`hgrnn render-example DIR`): its
ground truth under the same noise, and its detector-like persons.csv as it is (IoU only,
and with the 'det' RoI features of a store extracted from it).

    .venv/bin/python benchmarks/bench_track.py [--gt ../shared/ava/ava_val_v2.1_first8videos.csv]
        [--drop 0.1] [--jitter 0.05] [--seeds 5] [--max-gap 1] [--min-iou 0.4]
        [--sweep [--tune 4]] [--rendered DIR [--store STORE]]

Defaults of --max-gap / --min-iou: `hgrnn.track.TrackConfig`'s. BENCHMARKS.md, "Tracking",
has the results and the commands.
"""

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from hgrnn.data.ava import read_annotations, read_results
from hgrnn.track import (
    TrackConfig,
    box_iou,
    group_boxes,
    identity_scores,
    link_video,
    store_features,
)

DEFAULT_GT = os.path.join(HERE, "..", "..", "shared", "ava", "ava_val_v2.1_first8videos.csv")


def load_persons(path):
    """Ground truth -> {video: (timestamps (P,), boxes (P, 4), true ids (P,))}."""
    rows = read_annotations(path, progress=False)
    g = group_boxes(rows)
    pid = np.full(len(g), -1, np.int64)
    pid[g.person_of_row[::-1]] = rows.person_ids[::-1]          # first row's id
    out = {}
    for v in sorted(set(g.video_ids.tolist())):
        m = np.flatnonzero(g.video_ids == v)
        if (pid[m] < 0).any():
            raise SystemExit(f"{path}: video {v} has boxes without person_id")
        out[v] = (g.timestamps[m], g.boxes[m].astype(np.float64), pid[m])
    return out


def load_detections(example_dir, min_score=0.5, store=None):
    """A rendered example (`hgrnn render-example DIR`): its persons.csv boxes scored >=
    min_score (the detector-like boxes; the false positives score below 0.4), each given
    the person id of the annotations.csv box it overlaps most at its keyframe (IoU >= 0.3,
    else its own new id) -> {video: (timestamps, boxes, true ids[, features])}, features
    of the store's 'det' persons when a store is given."""
    truth = load_persons(os.path.join(example_dir, "annotations.csv"))
    rows = read_results(os.path.join(example_dir, "persons.csv"), progress=False)
    g = group_boxes(rows)
    feats = None if store is None else store_features(store, "det", g)[0]
    out = {}
    for v in sorted(truth):
        ts_t, b_t, id_t = truth[v]
        m = np.flatnonzero((g.video_ids == v) & (g.scores >= min_score))
        ids = np.empty(len(m), np.int64)
        for k, p in enumerate(m):
            same = np.flatnonzero(ts_t == g.timestamps[p])
            iou = box_iou(g.boxes[p:p + 1], b_t[same])[0] if len(same) else np.zeros(0)
            ok = len(iou) and iou.max() >= 0.3
            ids[k] = id_t[same[np.argmax(iou)]] if ok else 10_000 + k
        out[v] = (g.timestamps[m], g.boxes[m].astype(np.float64), ids)
        if feats is not None:
            out[v] += (feats[m],)
    return out


def corrupt(ts, boxes, rng, drop, jitter):
    """-> (kept index (K,), jittered boxes (K, 4))."""
    keep = np.flatnonzero(rng.random(len(ts)) >= drop)
    b = boxes[keep]
    wh = np.concatenate([b[:, 2:3] - b[:, 0:1], b[:, 3:4] - b[:, 1:2]] * 2, axis=1)
    j = np.clip(b + rng.normal(size=b.shape) * wh * jitter, 0, 1)
    j = np.concatenate([np.minimum(j[:, :2], j[:, 2:]), np.maximum(j[:, :2], j[:, 2:])], 1)
    return keep, j


def run(persons, videos, cfg, seeds, drop, jitter):
    """-> {video: {"idf1": mean, "switches": mean, ...}}, plus "all" (pooled over videos)."""
    out = {v: {"idf1": [], "switches": [], "boxes": [], "true": [], "pred": []} for v in videos}
    pooled = {"idf1": [], "switches": []}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        tp = n = sw = 0
        for v in videos:
            ts, boxes, pid = persons[v][:3]
            keep, jb = corrupt(ts, boxes, rng, drop, jitter)
            f = persons[v][3][keep] if len(persons[v]) > 3 else None
            ids = link_video(ts[keep], jb, f, cfg)
            s = identity_scores(ts[keep], pid[keep], ids)
            for k, key in (("idf1", "idf1"), ("switches", "switches"), ("boxes", "boxes"),
                           ("true", "true_tracks"), ("pred", "pred_tracks")):
                out[v][k].append(s[key])
            tp, n, sw = tp + s["idtp"], n + s["boxes"], sw + s["switches"]
        pooled["idf1"].append(tp / n)
        pooled["switches"].append(sw)
    res = {v: {k: float(np.mean(x)) for k, x in d.items()} for v, d in out.items()}
    res["all"] = {"idf1": float(np.mean(pooled["idf1"])),
                  "idf1_sd": float(np.std(pooled["idf1"])),
                  "switches": float(np.mean(pooled["switches"])),
                  "boxes": sum(res[v]["boxes"] for v in videos),
                  "true": sum(res[v]["true"] for v in videos),
                  "pred": sum(res[v]["pred"] for v in videos)}
    return res


def table(res, videos):
    lines = ["| video | boxes kept | true ids | track ids | IDF1 % | id switches |",
             "|---|---|---|---|---|---|"]
    for v in videos + ["all"]:
        r = res[v]
        lines.append(f"| {v} | {r['boxes']:.0f} | {r['true']:.0f} | {r['pred']:.1f} | "
                     f"{100 * r['idf1']:.2f} | {r['switches']:.1f} |")
    return "\n".join(lines)


def rendered(a, cfg):
    """The rendered example's ground truth under the noise, and its persons.csv as it is
    (IoU only, and with --store the features too)."""
    ex = load_persons(os.path.join(a.rendered, "annotations.csv"))
    names = sorted(ex)
    r = run(ex, names, cfg, a.seeds, a.drop, a.jitter)
    print(f"\n{a.rendered}/annotations.csv, drop {a.drop}, jitter {a.jitter}:\n"
          f"{table(r, names)}")
    r = run(load_detections(a.rendered), names, cfg, 1, 0.0, 0.0)
    print(f"\n{a.rendered}/persons.csv (score >= 0.5, as they are), IoU only:\n"
          f"{table(r, names)}")
    if a.store:
        r = run(load_detections(a.rendered, store=a.store), names, cfg, 1, 0.0, 0.0)
        print(f"\n{a.rendered}/persons.csv with the features of {a.store}:\n"
              f"{table(r, names)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gt", default=DEFAULT_GT)
    ap.add_argument("--drop", type=float, default=0.1)
    ap.add_argument("--jitter", type=float, default=0.05)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--max-gap", type=int, default=TrackConfig.max_gap)
    ap.add_argument("--min-iou", type=float, default=TrackConfig.min_iou)
    ap.add_argument("--tune", type=int, default=4, help="videos (sorted) used to choose")
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--rendered", default=None, metavar="DIR",
                    help="Instead: a rendered example (hgrnn render-example DIR): its "
                         "ground truth under the same noise, and its persons.csv")
    ap.add_argument("--store", default=None,
                    help="with --rendered: a feature store of the example whose 'det' "
                         "persons are persons.csv (features join the IoU)")
    a = ap.parse_args()

    cfg = TrackConfig(max_gap=a.max_gap, min_iou=a.min_iou)
    if a.rendered:
        rendered(a, cfg)
        return
    persons = load_persons(a.gt)
    videos = sorted(persons)
    print(f"{a.gt}: {len(videos)} videos, {sum(len(p[0]) for p in persons.values())} person "
          f"boxes; drop {a.drop}, jitter {a.jitter}, {a.seeds} seeds")
    if a.sweep:
        tune, held = videos[:a.tune], videos[a.tune:]
        print(f"tuning videos: {', '.join(tune)}; held out: {', '.join(held)}")
        print("| max_gap | min_iou | IDF1 % tuning | IDF1 % held out | switches tuning |")
        print("|---|---|---|---|---|")
        for gap in (0, 1, 2, 3, 5):
            for iou in (0.2, 0.3, 0.4, 0.5, 0.6):
                c = TrackConfig(max_gap=gap, min_iou=iou)
                rt = run(persons, tune, c, a.seeds, a.drop, a.jitter)["all"]
                rh = run(persons, held, c, a.seeds, a.drop, a.jitter)["all"] if held else None
                print(f"| {gap} | {iou} | {100 * rt['idf1']:.2f} | "
                      f"{'' if rh is None else format(100 * rh['idf1'], '.2f')} | {rt['switches']:.1f} |")
        return
    started = time.perf_counter()
    res = run(persons, videos, cfg, a.seeds, a.drop, a.jitter)
    took = time.perf_counter() - started
    print(f"max_gap {cfg.max_gap}, min_iou {cfg.min_iou}: "
          f"{took / a.seeds:.2f} s per run of all videos")
    print(table(res, videos))
    print(f"pooled IDF1 sd over seeds: {100 * res['all']['idf1_sd']:.2f}")
    print(f"for scale: a new id for every box has IDF1 "
          f"{100 * res['all']['true'] / res['all']['boxes']:.2f}")


if __name__ == "__main__":
    main()
