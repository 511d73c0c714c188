"""Make docs/img/predict_sheet.png, the contact sheet in the README: `hgrnn predict` on a
rendered test video with a head trained on rendered videos (and docs/img/predict_timeline.png,
predict's per-person timeline of the same run, in docs/track.md).

    python docs/img/make_predict_sheet.py [WORK_DIR]      # about 8 minutes on a 2-core CPU

Rendered videos (hgrnn.pipeline.render.render_labelled): three "actors" per video at random
places, each with fixed AVA actions (red square: walk + carry/hold, moving; green bar: stand;
blue disc: sit + watch a person), person boxes given as a detection CSV. The I3D backbone has
random He-initialised weights saved to a file (no pretrained weights are needed, and the same
weights serve training and prediction); a head is trained on 10 such videos and run with
`hgrnn predict` on an unseen one.
"""

import subprocess
import sys
from pathlib import Path

import torch

from hgrnn.pipeline.i3d import InceptionI3d
from hgrnn.pipeline.render import render_labelled

FEATURES = ["--clip-frames", "8", "--short-side", "224", "--workers", "0"]


def hgrnn(*args):
    print("+ hgrnn", " ".join(map(str, args)), flush=True)
    subprocess.run([sys.executable, "-m", "hgrnn", *map(str, args)], check=True)


def main(work: Path):
    work.mkdir(parents=True, exist_ok=True)
    train = render_labelled(work / "train", [f"train{i:02d}" for i in range(10)], seconds=6,
                            seed=1)
    test = render_labelled(work / "test", ["rendered"], seconds=8, seed=7)
    torch.manual_seed(0)
    backbone = InceptionI3d()
    for module in backbone.modules():        # keep activations at scale through 20 layers
        if isinstance(module, torch.nn.Conv3d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    torch.save(backbone.state_dict(), work / "i3d_random.pt")

    hgrnn("extract-features", "--out", work / "train.h5", "--videos", train["videos"],
          "--annotations", train["gt"], "--detections", train["det"],
          "--backbone-weights", work / "i3d_random.pt", "--quiet", *FEATURES)
    hgrnn("train-head", "--store", work / "train.h5", "--out", work / "run", "--steps", "400",
          "--batch-size", "10", "--lr", "1e-3", "--context", "1", "--quiet")
    hgrnn("predict", Path(test["videos"]) / "rendered.mp4", "--checkpoint", work / "run",
          "--out", work / "pred", "--backbone-weights", work / "i3d_random.pt",
          "--detections", test["det"], "--quiet", *FEATURES)
    hgrnn("visualize", Path(test["videos"]) / "rendered.mp4", "--results",
          work / "pred" / "results.csv", "--top-k", "2", "--sheet", work / "sheet.png",
          "--sheet-grid", "2x3", "--sheet-width", "288", "--quiet")
    hgrnn("eval-csv", test["gt"], work / "pred" / "results.csv", "--quiet")
    # a 256-colour palette keeps the README picture small
    from PIL import Image

    out = Path(__file__).with_name("predict_sheet.png")
    Image.open(work / "sheet.png").convert("RGB").quantize(256).save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")
    # predict's per-person timeline of the same run (docs/track.md)
    out = Path(__file__).with_name("predict_timeline.png")
    Image.open(work / "pred" / "rendered_timeline.png").convert("RGB").quantize(64).save(
        out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "predict_sheet_work"))
