"""Benchmark of `hgrnn extract-features`: decoding alone vs the whole stage.

    .venv/bin/python benchmarks/bench_extract.py                  # defaults below
    .venv/bin/python benchmarks/bench_extract.py --model-keyframes 60 --threads 2   # full run

1. Renders a SECONDS-long WxH video at FPS (hgrnn.pipeline.render; cached in --workdir).
2. Decoding alone, every second of the video as a keyframe (clip_frames at stride 1, short
   side resized): keyframes/s, frames decoded, frames needed by the clips (unique), frames in
   the span from the first to the last needed frame; target decoded / span <= 1.05.
3. On MODEL_KEYFRAMES keyframes from the middle of the video (so decoding starts with a seek),
   measured separately: decoding alone (t_decode), the model alone on the decoded clips
   (t_model: normalisation + I3D + pooling, batches of --batch-size), and the whole stage
   `extract_features` with DataLoader decoding workers (t_stage, model loading excluded by
   subtracting its separately timed load). Target: t_stage <= 1.3 x (t_decode + t_model).
4. The flow stream (--flow-pairs > 0): on frame pairs of the decoded clips (extraction
   resolution), TV-L1 (OpenCV, one thread) and RAFT-small (torchvision, random weights, 12
   updates, one torch thread) in frame pairs/s, and the flow I3D forward on one flow clip;
   from these the share of a keyframe's extraction time that flow takes on this CPU with
   --streams rgb,flow: flow / (decode + RGB I3D + flow + flow I3D), clip_frames - 1 pairs per
   keyframe.

The real InceptionI3d with random weights (`--backbone-weights none`). On a CPU the model
dominates, so the default uses few model keyframes; say so when quoting the numbers.

`--backbones NAMES` (comma-separated, or `all`) instead times each `--backbone` of
`hgrnn.pipeline.backbones` alone: the network (random weights) plus the clip and RoI pooling
of 3 persons on clips of its own AVA input (its clip length; short side and 4:3 frames,
MViT its 224 x 224 square), batches of --batch-size, float32, median of --repeats batches
after one warm-up (the FLOP-counting forward), in clips/s on this CPU; its FLOPs per clip (torch's FlopCounterMode);
and the GPU-hours of extracting AVA v2.1 val (64 x 897 = 57,408 clips) PROJECTED from the
FLOPs ratio to I3D and an assumed I3D rate on one GPU (--i3d-gpu-clips-per-s, 100 clips/s
float16 by default: an assumption, not a measurement). FLOPs do not capture the transformers'
different efficiency on a GPU: the projection is a first-order estimate.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torchvision.ops  # noqa: F401 - first import costs seconds; keep it out of the timings

from hgrnn.pipeline.extract import ExtractConfig, extract_features
from hgrnn.pipeline.i3d import clip_features, load_backbone, normalize_frames
from hgrnn.pipeline.render import render_video
from hgrnn.data.video import iter_clips


def decode(path, times, args):
    stats = {}
    start = time.perf_counter()
    clips = [c for _, c in iter_clips(path, times, args.clip_frames, 1, args.short_side,
                                      stats=stats)]
    return time.perf_counter() - start, clips, stats


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, default=60)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--size", default="320x240")
    p.add_argument("--clip-frames", type=int, default=32)
    p.add_argument("--short-side", type=int, default=256)
    p.add_argument("--model-keyframes", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (main process)")
    p.add_argument("--workdir", default=None, help="keep the rendered video here (default: a temp dir)")
    p.add_argument("--flow-pairs", type=int, default=4,
                   help="frame pairs timed per flow method (0: skip the flow part)")
    p.add_argument("--backbones", default=None,
                   help="time these backbones alone instead (comma-separated names or all)")
    p.add_argument("--repeats", type=int, default=2, help="timed batches per backbone")
    p.add_argument("--i3d-gpu-clips-per-s", type=float, default=100.0,
                   help="assumed I3D clips/s on one GPU, the base of the GPU-hour projection")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*RANDOM initialisation.*")
    if args.backbones:
        print(json.dumps(bench_backbones(args), indent=1))
        return
    width, height = (int(v) for v in args.size.split("x"))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_extract_"))
    videos = work / "videos"
    video = videos / f"bench_{args.seconds}s_{width}x{height}_{args.fps}fps.mp4"
    if not video.exists():
        t = time.perf_counter()
        render_video(video, seconds=args.seconds, fps=args.fps, size=(width, height))
        print(f"rendered {video} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    for other in videos.iterdir():               # the stage reads the whole folder
        if other != video:
            other.unlink()

    # -- 2. decoding alone, every second
    times = list(range(args.seconds))
    t_all, clips, stats = decode(video, times, args)
    half = args.clip_frames // 2
    first = max(0, times[0] * args.fps - half)
    last = min(args.seconds * args.fps - 1, times[-1] * args.fps + args.clip_frames - 1 - half)
    span = last - first + 1
    decode_all = {"keyframes": len(times), "seconds": round(t_all, 2),
                  "keyframes_per_s": round(len(times) / t_all, 1),
                  "decoded_frames": stats["decoded_frames"], "needed_frames": stats["converted_frames"],
                  "span_frames": span, "decoded_per_span": round(stats["decoded_frames"] / span, 3)}
    del clips

    # -- 3. decode vs model vs whole stage on a few keyframes from the middle
    n = args.model_keyframes
    ts0 = max(1, args.seconds // 2 - n // 2)
    sub = list(range(ts0, ts0 + n))
    t_decode, clips, sub_stats = decode(video, sub, args)
    t = time.perf_counter()
    backbone, _, _ = load_backbone(None)
    t_load = time.perf_counter() - t
    t = time.perf_counter()
    with torch.no_grad():
        for i in range(0, n, args.batch_size):
            x = normalize_frames(torch.from_numpy(np.stack(clips[i:i + args.batch_size])))
            clip_features(backbone.extract_features(x))
    t_model = time.perf_counter() - t
    del clips, backbone
    out = work / "bench_store.h5"
    if out.exists():
        out.unlink()
    cfg = ExtractConfig(out=str(out), backbone_weights="none", videos=str(videos),
                        keyframes=(sub[0], sub[-1]), clip_frames=args.clip_frames,
                        short_side=args.short_side, batch_size=args.batch_size,
                        workers=args.workers, progress=False)
    t = time.perf_counter()
    summary = extract_features(cfg)
    t_stage = time.perf_counter() - t - t_load
    assert summary["written"] == 1 and not summary["failed"], summary
    stage = {"keyframes": n, "timestamps": f"{sub[0]}:{sub[-1]}", "batch_size": args.batch_size,
             "workers": args.workers, "threads": args.threads,
             "t_decode": round(t_decode, 2), "t_model": round(t_model, 2),
             "t_stage": round(t_stage, 2), "t_model_load": round(t_load, 2),
             "decode_keyframes_per_s": round(n / t_decode, 2),
             "model_keyframes_per_s": round(n / t_model, 3),
             "stage_keyframes_per_s": round(n / t_stage, 3),
             "stage_over_decode_plus_model": round(t_stage / (t_decode + t_model), 3),
             "seeked": sub_stats["seeked"], "decoded_frames": sub_stats["decoded_frames"],
             "needed_frames": sub_stats["converted_frames"]}
    flow = measure_flow(video, sub, args, t_decode / n, t_model / n) if args.flow_pairs else None
    result = {"video": {"seconds": args.seconds, "fps": args.fps, "size": args.size},
              "clip_frames": args.clip_frames, "short_side": args.short_side,
              "decode_every_second": decode_all, "stage": stage, "flow": flow,
              "torch": torch.__version__, "cpu_threads": torch.get_num_threads()}
    print(json.dumps(result, indent=2))
    print(f"\n| measurement | value |\n|---|---|\n"
          f"| decode alone, {len(times)} keyframes | {decode_all['keyframes_per_s']} keyframes/s |\n"
          f"| decoded / span frames | {decode_all['decoded_frames']} / {span} = "
          f"{decode_all['decoded_per_span']} |\n"
          f"| decode alone, {n} keyframes (seek) | {stage['decode_keyframes_per_s']} keyframes/s |\n"
          f"| model alone, {n} keyframes | {stage['model_keyframes_per_s']} keyframes/s |\n"
          f"| whole stage, {n} keyframes | {stage['stage_keyframes_per_s']} keyframes/s |\n"
          f"| stage / (decode + model) | {stage['stage_over_decode_plus_model']} |")
    if flow:
        print(f"| TV-L1, {flow['pairs']} pairs at {flow['frame_size']} | "
              f"{flow['tvl1_pairs_per_s']} pairs/s |\n"
              f"| RAFT-small (CPU), same pairs | {flow['raft_small_pairs_per_s']} pairs/s |\n"
              f"| flow I3D, one clip | {flow['flow_i3d_seconds_per_clip']} s |\n"
              f"| flow share of a keyframe's rgb,flow extraction, TV-L1 / RAFT-small | "
              f"{flow['share_tvl1']} / {flow['share_raft_small']} |")


def measure_flow(video, times, args, decode_per_kf, model_per_kf) -> dict:
    """Section 4 of the module docstring: flow rates and the share of extraction time."""
    from hgrnn.pipeline.flow import FlowComputer, flow_to_input, tvl1_available

    warnings.filterwarnings("ignore", message=".*flow weights: NONE.*")
    _, clips, _ = decode(video, times[:1], args)
    clip = torch.from_numpy(clips[0][None])                 # (1, T, H, W, 3)
    pairs = min(args.flow_pairs, clip.shape[1] - 1)
    part = clip[:, :pairs + 1]
    out = {"pairs": pairs, "frame_size": f"{clip.shape[3]}x{clip.shape[2]}",
           "pairs_per_keyframe": args.clip_frames - 1}
    rates = {}
    methods = (["tvl1"] if tvl1_available() else []) + ["raft-small"]
    for method in methods:
        flow = FlowComputer(method, weights="none", threads=1)
        flow(part[:, :2])                                     # warm-up (RAFT: build the net)
        flow.seconds, flow.pairs = 0.0, 0
        flow(part)
        rates[method] = flow.pairs / flow.seconds
        out[f"{method.replace('-', '_')}_pairs_per_s"] = round(rates[method], 3)
    if "tvl1" not in rates:
        out["tvl1_pairs_per_s"] = None
    backbone, _, _ = load_backbone(None, stream="flow")
    x = flow_to_input(torch.zeros((1, args.clip_frames - 1) + tuple(clip.shape[2:4]) + (2,)))
    t = time.perf_counter()
    with torch.no_grad():
        clip_features(backbone.extract_features(x))
    out["flow_i3d_seconds_per_clip"] = round(time.perf_counter() - t, 2)
    for method in ("tvl1", "raft-small"):
        key = f"share_{method.replace('-', '_')}"
        if method not in rates:
            out[key] = None
            continue
        flow_s = (args.clip_frames - 1) / rates[method]
        total = decode_per_kf + model_per_kf + flow_s + out["flow_i3d_seconds_per_clip"]
        out[key] = round(flow_s / total, 3)
        out[f"{method.replace('-', '_')}_seconds_per_keyframe"] = round(flow_s, 2)
    return out


AVA_VAL_CLIPS = 64 * 897


def bench_backbones(args) -> dict:
    """clips/s per backbone on this CPU, FLOPs per clip, projected GPU-hours (docstring)."""
    from torch.utils.flop_counter import FlopCounterMode

    from hgrnn.pipeline.backbones import (BACKBONES, frames_to_input, input_settings,
                                          load_backbone)
    from hgrnn.pipeline.person_layer import pooled_person_features

    names = list(BACKBONES) if args.backbones == "all" else args.backbones.split(",")
    rows = {}
    for name in names:
        own = input_settings(name)
        t, h = own["clip_frames"], own["short_side"]
        w = own["fixed_size"][1] if own["fixed_size"] else round(h * 4 / 3)
        model, _, _ = load_backbone(name, "none")
        frames = torch.randint(0, 256, (args.batch_size, t, h, w, 3), dtype=torch.uint8)
        rois = torch.tensor([[b, 0.1, 0.1, 0.4, 0.9] for b in range(args.batch_size)] * 3,
                            dtype=torch.float32)

        def step():
            with torch.no_grad():
                x = frames_to_input(frames, model)
                fmap = model.extract_features(x)
                clip_features(fmap)
                pooled_person_features(model, fmap, rois, x.shape[-2:], "mixed_5c")

        with FlopCounterMode(display=False) as counter:
            with torch.no_grad():
                model.extract_features(frames_to_input(frames[:1], model))
        flops = counter.get_total_flops()        # that forward was the warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        rows[name] = {"input": [t, h, w], "gflops_per_clip": round(flops / 1e9, 1),
                      "cpu_clips_per_s": round(args.batch_size / float(np.median(times)), 3)}
        print(f"{name}: {rows[name]}", file=sys.stderr)
        del model
    base = rows.get("i3d", {}).get("gflops_per_clip")
    if base is None:
        model, _, _ = load_backbone("i3d", "none")
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model.extract_features(torch.zeros(1, 3, 32, 256, 341))
        base = round(counter.get_total_flops() / 1e9, 1)
    for row in rows.values():
        ratio = row["gflops_per_clip"] / base
        row["flops_vs_i3d"] = round(ratio, 2)
        row["projected_gpu_hours_ava_val"] = round(
            AVA_VAL_CLIPS / (args.i3d_gpu_clips_per_s / ratio) / 3600, 2)
    return {"threads": args.threads, "batch_size": args.batch_size, "repeats": args.repeats,
            "i3d_gpu_clips_per_s_assumed": args.i3d_gpu_clips_per_s, "backbones": rows}


if __name__ == "__main__":
    main()
