"""How many feature-map cells an AVA person box spans at Mixed_5c (stride 32) and Mixed_4f
(stride 16), for `--person-layer` (docs/method.md).

Boxes: the distinct person boxes (video, timestamp, box) of an AVA ground-truth CSV. Frame
size: the short side resized to --short-side (extract-features' default 256) with the
aspect ratio --aspect (width / height; AVA's movies are mostly 16:9, some 4:3 or wider:
the file has no frame sizes, so the ratio is an assumption, stated in the output).

    .venv/bin/python benchmarks/box_cells.py [GT_CSV] [--short-side 256] [--aspect 1.778]
"""

import argparse
import os
import sys

import numpy as np

from hgrnn.data.ava import read_annotations
from hgrnn.pipeline.person_layer import LAYER_STRIDE, box_cells

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_GT = os.path.join(ROOT, os.pardir, "shared", "ava", "ava_val_v2.1_first8videos.csv")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gt", nargs="?", default=DEFAULT_GT,
                    help="AVA ground-truth CSV (default: ../shared/ava/"
                         "ava_val_v2.1_first8videos.csv beside the repository)")
    ap.add_argument("--short-side", type=int, default=256)
    ap.add_argument("--aspect", type=float, default=16 / 9)
    args = ap.parse_args(argv)
    rows = read_annotations(args.gt, progress=False)
    keys = np.char.add(np.char.add(rows.video_ids.astype(str), "/"),
                       rows.timestamps.astype(str))
    boxes_txt = np.array([",".join(f"{v:.3f}" for v in b) for b in rows.boxes])
    _, first = np.unique(np.char.add(np.char.add(keys, "/"), boxes_txt), return_index=True)
    boxes = rows.boxes[np.sort(first)]
    H = args.short_side
    W = round(args.short_side * args.aspect)
    print(f"{args.gt}: {len(boxes)} distinct person boxes of {len(np.unique(keys))} keyframes; "
          f"frames {W}x{H} (short side {H}, assumed aspect {args.aspect:.3f})")
    print("| layer (stride) | box width in cells: p10 / p25 / median / p75 / p90 "
          "| height: p10 / p25 / median / p75 / p90 | boxes < 2 cells wide |")
    print("|---|---|---|---|")
    for layer, stride in LAYER_STRIDE.items():
        w, h = box_cells(boxes, H, W, layer)
        qw = " / ".join(f"{q:.1f}" for q in np.quantile(w, QUANTILES))
        qh = " / ".join(f"{q:.1f}" for q in np.quantile(h, QUANTILES))
        print(f"| {layer} ({stride}) | {qw} | {qh} | {100 * np.mean(w < 2):.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
