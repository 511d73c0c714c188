"""Relation modules on real AVA label structure: what the other persons of a keyframe add.

The ground truth of the 8 AVA v2.1 validation videos in ``../shared/ava`` (27,162 rows, 6,470
keyframes) keeps its real persons, boxes and label co-occurrences; only the features are
made up, so that what each person's feature shows is known:

- person feature (C = 64): one dim per class of the 60-class label map, ``AMPLITUDE`` x the
  person's own label + N(0, 1), EXCEPT the receiver interactions 'listen to (a person)' and
  'watch (a person)', whose dims are noise only. A person's receiver labels are therefore
  visible only through the other persons of the keyframe (a partner's 'talk to', a watched
  person's actions) and through the person's own co-occurring labels (what the per-person
  head can learn); the remaining 4 dims are noise.
- clip feature: noise (no scene information), so the scene RNN adds only what the persons
  of the neighbouring keyframes show.

Each video is split in time: keyframes before 1500 s train (``<video>_a``), the rest validate
(``<video>_b``). The rows `person` (per-person head), `scene` (scene RNN, no relation
module: what the max-pooled persons of the window alone add), `hgrnn` (scene RNN + graph RNN)
and `hgrnn_attn` (scene RNN + attention) are trained with `hgrnn ablate` (3 seeds) and the
per-class AP gain of each over the per-person head is printed for the receiver classes
('talk to' and the mAP for reference).

    python benchmarks/ava_relations.py --ava ../shared/ava --out ava_rel            # paper's
    python benchmarks/ava_relations.py --ava ../shared/ava --out ava_rel --steps 3000 --lr 1e-3

(the second reuses the stores and writes its runs to ava_rel/abl_3000_0.001).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
from pathlib import Path

import numpy as np

from hgrnn.data.ava import group_persons, load_label_map, read_annotations
from hgrnn.data.store import PersonSet, StoreWriter
from hgrnn.hgrnn_head.ablate import AblateConfig, run_ablation

RECEIVERS = ("listen to (a person)", "watch (a person)")
REFERENCE = ("talk to (e.g., self, a person, a group)",)
FEATURE_DIM = 64
AMPLITUDE = 2.0
SPLIT_TS = 1500
ROWS = ("person", "scene", "hgrnn", "hgrnn_attn")


def write_stores(ava: Path, out: Path, seed: int = 0) -> tuple[str, str]:
    """train.h5 and val.h5 in `out` from the first-8-videos ground truth (see the module
    docstring); written once, reused when present."""
    train, val = out / "train.h5", out / "val.h5"
    if train.exists() and val.exists():
        return str(train), str(val)
    label_map = load_label_map("ava-v2.1")
    persons = group_persons(read_annotations(ava / "ava_val_v2.1_first8videos.csv", label_map),
                            label_map)
    hidden = [label_map.names.index(n) for n in RECEIVERS]
    rng = np.random.default_rng(seed)
    K = len(label_map)
    with StoreWriter(train, feature_dim=FEATURE_DIM, label_map=label_map) as wt, \
            StoreWriter(val, feature_dim=FEATURE_DIM, label_map=label_map) as wv:
        for vid in np.unique(persons.video_ids):
            mine = np.flatnonzero(persons.video_ids == vid)
            for part, writer, keep in (("a", wt, persons.timestamps[mine] < SPLIT_TS),
                                       ("b", wv, persons.timestamps[mine] >= SPLIT_TS)):
                idx = mine[keep]
                ts, counts = np.unique(persons.timestamps[idx], return_counts=True)
                labels = persons.labels[idx]
                shown = labels.astype(np.float32).copy()
                shown[:, hidden] = 0.0                    # receivers: not in the own feature
                feats = rng.standard_normal((len(idx), FEATURE_DIM)).astype(np.float32)
                feats[:, :K] += AMPLITUDE * shown
                gt = PersonSet(offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                               boxes=persons.boxes[idx], feats=feats,
                               scores=np.ones(len(idx), np.float32), labels=labels,
                               person_ids=persons.person_ids[idx].astype(np.int32))
                clip = rng.standard_normal((len(ts), FEATURE_DIM)).astype(np.float32)
                writer.add_video(f"{vid}_{part}", ts, clip, gt=gt)
    return str(train), str(val)


def gains(csv_path, classes=RECEIVERS + REFERENCE) -> list[dict]:
    """Per class (and the mAP): each row's mean ± std AP over seeds and each relation row's
    gain over `person`, mean ± std of the per-seed differences (seeds paired)."""
    by_row = {}
    with open(csv_path) as f:
        for r in csv.DictReader(f):
            by_row.setdefault(r["row"], {})[int(r["seed"])] = r
    out = []
    for cls in ("mAP",) + tuple(classes):
        key = "gt_all" if cls == "mAP" else f"gt_AP:{cls}"
        entry = {"class": cls}
        for row, seeds in by_row.items():
            entry[row] = [100 * float(seeds[s][key]) for s in sorted(seeds) if seeds[s][key]]
        base = by_row.get("person", {})
        for row, seeds in by_row.items():
            if row != "person" and base:
                entry[f"{row}-person"] = [100 * (float(seeds[s][key]) - float(base[s][key]))
                                          for s in sorted(set(seeds) & set(base))]
        out.append(entry)
    return out


def _ms(values) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:+.1f}" if values[0] < 0 else f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def _signed(values) -> str:
    if not values:
        return "-"
    mean = statistics.mean(values)
    return f"{mean:+.1f}" + (f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else "")


def format_table(entries: list[dict]) -> str:
    rows = [r for r in ROWS if r in entries[0]]
    relations = [r for r in rows if r != "person"]
    lines = ["| class | " + " | ".join(f"{r} AP" for r in rows) + " | "
             + " | ".join(f"{r} - person" for r in relations) + " |",
             "|---" * (1 + len(rows) + len(relations)) + "|"]
    for e in entries:
        lines.append(f"| {e['class']} | " + " | ".join(_ms(e[r]) for r in rows) + " | "
                     + " | ".join(_signed(e.get(f"{r}-person", [])) for r in relations) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ava", default="../shared/ava", help="folder with "
                   "ava_val_v2.1_first8videos.csv")
    p.add_argument("--out", default="ava_rel")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--rows", default=",".join(ROWS))
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not (Path(args.ava) / "ava_val_v2.1_first8videos.csv").exists():
        print(f"{args.ava}: no ava_val_v2.1_first8videos.csv", file=sys.stderr)
        return 1
    train, val = write_stores(Path(args.ava), out)
    cfg = AblateConfig(rows=tuple(args.rows.split(",")), seeds=args.seeds, steps=args.steps,
                       lr=args.lr, jobs=args.jobs, det=False)
    result = run_ablation(train, val, out / f"abl_{args.steps}_{args.lr:g}", cfg,
                          progress=False)
    print(f"{args.steps} steps x 50 keyframes, lr {args.lr:g}, {args.seeds} seeds; frame-AP "
          f"in % on {os.path.basename(val)} (gt boxes):\n")
    print(format_table(gains(result["files"]["csv"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
