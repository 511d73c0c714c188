"""Benchmark: fine-tuning throughput (clips/s) of `hgrnn finetune-backbone`.

Measures, at a small input size (default 8 frames, 112x112 crops, batch 4, random init):
  * step      one optimizer step of the real model (I3D + RoIAlign head + projection +
              classifier, BCE, Adam) on in-memory clips with 3 boxes each: forward, backward,
              Adam; median over --repeats steps after one warm-up step;
  * forward   the forward pass alone (no grad) on the same batch;
  * data      the training data pipeline alone (`ClipStream`: decode with PyAV, scale jitter,
              crop, flip) on a rendered 320x240 video at short side 128, in the main process;
  * loop      the whole `finetune_backbone` loop (data + step, workers=0) for --loop-steps.

Run:  .venv/bin/python benchmarks/bench_finetune.py [--threads N] [--device cuda]
Prints one JSON object (and a Markdown table row per measurement).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def bench_step(args, device):
    from hgrnn.pipeline.finetune import FinetuneConfig, PersonActionModel, classification_loss
    from hgrnn.pipeline.i3d import InceptionI3d

    torch.manual_seed(0)
    model = PersonActionModel(InceptionI3d(), num_classes=60).to(device)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=5e-4)
    cfg = FinetuneConfig(annotations="-", out_dir="-", videos="-")
    clips = torch.rand(args.batch, 3, args.frames, args.size, args.size, device=device) * 2 - 1
    boxes = torch.tensor([[0.1, 0.1, 0.4, 0.9], [0.5, 0.2, 0.8, 0.8], [0.3, 0.3, 0.6, 0.6]])
    rois = torch.cat([torch.cat([torch.full((3, 1), float(b)), boxes], 1)
                      for b in range(args.batch)]).to(device)
    labels = (torch.rand(len(rois), 60, device=device) < 0.05).float()
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else torch.autocast("cpu", enabled=False))

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            logits = model(clips, rois)
        classification_loss(logits, labels, cfg).backward()
        optimizer.step()

    model.train()
    step()
    times = []
    for _ in range(args.repeats):
        sync()
        t = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t)
    model.eval()
    fwd = []
    with torch.no_grad():
        for _ in range(args.repeats):
            sync()
            t = time.perf_counter()
            with autocast:
                model(clips, rois)
            sync()
            fwd.append(time.perf_counter() - t)
    step_s, fwd_s = statistics.median(times), statistics.median(fwd)
    return {"step_seconds": step_s, "step_clips_per_s": args.batch / step_s,
            "forward_seconds": fwd_s, "forward_clips_per_s": args.batch / fwd_s,
            "step_seconds_all": times}


def make_data(root: Path, seconds: int):
    from hgrnn.pipeline.render import render_video

    videos = root / "videos"
    videos.mkdir()
    render_video(videos / "bench.mp4", seconds=seconds, fps=30, size=(320, 240), gop=30)
    (root / "labels.txt").write_text("1 a\n2 b\n3 c\n")
    rows = []
    for t in range(1, seconds):
        for box, a in (((0.1, 0.1, 0.4, 0.9), 1), ((0.5, 0.2, 0.8, 0.8), 2), ((0.3, 0.3, 0.6, 0.6), 3)):
            rows.append(f"bench,{t},{box[0]},{box[1]},{box[2]},{box[3]},{a},0")
    (root / "train.csv").write_text("\n".join(rows) + "\n")


def bench_data_and_loop(args, root: Path):
    from hgrnn.data.ava import load_label_map
    from hgrnn.pipeline import finetune as ft

    config = ft.FinetuneConfig(
        annotations=str(root / "train.csv"), out_dir=str(root / "run"), videos=str(root / "videos"),
        label_map=str(root / "labels.txt"), backbone_weights="none", clip_frames=args.frames,
        short_side=round(args.size * 8 / 7), crop_size=args.size, batch=args.batch,
        steps=args.loop_steps, num_workers=0, device=args.device, log_every=1,
        checkpoint_every=10 ** 6)
    kfs = ft.keyframes_from_csv(config.annotations, load_label_map(config.label_map))
    stream = ft.ClipStream(kfs, ft.resolve_sources(config, [k.video_id for k in kfs]), config)
    t = time.perf_counter()
    n = sum(1 for _ in stream)
    data_s = time.perf_counter() - t
    t = time.perf_counter()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ft.finetune_backbone(config, progress=False)
    loop_s = time.perf_counter() - t
    records = [json.loads(x) for x in (root / "run" / "metrics.jsonl").read_text().splitlines()]
    steady = [r["clips_per_s"] for r in records[1:]]      # first step includes start-up
    return {"data_clips": n, "data_seconds": data_s, "data_clips_per_s": n / data_s,
            "loop_seconds_total": loop_s,
            "loop_clips_per_s_median_after_first": statistics.median(steady) if steady else None}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=112, help="square crop side (pixels)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loop-steps", type=int, default=6)
    parser.add_argument("--video-seconds", type=int, default=12)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    out = {"frames": args.frames, "size": args.size, "batch": args.batch,
           "threads": torch.get_num_threads(), "device": str(device),
           "torch": torch.__version__}
    out.update(bench_step(args, device))
    with tempfile.TemporaryDirectory() as tmp:
        make_data(Path(tmp), args.video_seconds)
        out.update(bench_data_and_loop(args, Path(tmp)))
    print(json.dumps(out, indent=2))
    print(f"| {args.frames}x{args.size}x{args.size}, batch {args.batch}, {out['threads']} "
          f"thread(s), {device} | {out['step_clips_per_s']:.2f} | {out['forward_clips_per_s']:.2f} "
          f"| {out['data_clips_per_s']:.1f} | {out['loop_clips_per_s_median_after_first']:.2f} |",
          file=sys.stderr)


if __name__ == "__main__":
    main()
