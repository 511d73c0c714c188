"""Benchmark: the person detector of `finetune-detector` / `hgrnn detect` (step and detection
time at the default resolution).

For each backbone (default resnet50 and resnet101, FPN, class-agnostic, the torchvision
defaults: min_size 800, max_size 1333, 2000 training / 1000 test proposals, 512 RoIs per
image, frozen BatchNorm with the top 3 ResNet stages training, i.e. the `--init imagenet`
model with random weights, which costs the same):
  * step     one optimizer step (forward with the 4 losses, backward, Adam) on --batch
             in-memory keyframes of --width x --height (AVA's 16:9 frames; the model's
             transform resizes them to 750 x 1333) with 3 person boxes each; median over
             --repeats steps after one warm-up step;
  * detect   `detect_persons` (the function `hgrnn detect` runs) on one keyframe; median over
             --repeats calls after one warm-up call.
From the step CPU time: the paper's schedule (100K steps of 20 images) on this device.
Wall-clock medians, and the process's CPU seconds (time.process_time: with --threads 1 this
is close to the wall time on an idle core, on a machine shared with other jobs).

Run:  .venv/bin/python benchmarks/bench_detector.py [--threads N] [--device cuda]
Prints one JSON object (and a Markdown table row per backbone).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_backbone(name, args, device) -> dict:
    from hgrnn.pipeline.detect import DetectorArch, PersonDetector, build_detector, detect_persons

    torch.manual_seed(0)
    model, _ = build_detector(DetectorArch(backbone=name), init="none")
    model.to(device).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    images = [torch.rand(3, args.height, args.width, device=device) for _ in range(args.batch)]
    boxes = torch.tensor([[0.1, 0.2, 0.3, 0.9], [0.4, 0.1, 0.6, 0.95], [0.7, 0.3, 0.9, 0.8]])
    scale = torch.tensor([args.width, args.height, args.width, args.height])
    targets = [{"boxes": (boxes * scale).to(device),
                "labels": torch.ones(3, dtype=torch.int64, device=device)} for _ in images]
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else torch.autocast("cpu", enabled=False))

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = sum(model(images, targets).values())
        loss.backward()
        optimizer.step()

    step_times, step_cpu = [], []
    for i in range(args.repeats + 1):
        sync(device)
        t, c = time.perf_counter(), time.process_time()
        step()
        sync(device)
        if i:
            step_times.append(time.perf_counter() - t)
            step_cpu.append(time.process_time() - c)

    model.eval()
    detector = PersonDetector(model, device, args.height, {})
    frame = (torch.rand(args.height, args.width, 3) * 255).to(torch.uint8)
    detect_times, detect_cpu = [], []
    for i in range(args.repeats + 1):
        sync(device)
        t, c = time.perf_counter(), time.process_time()
        detect_persons(detector, [frame], min_score=0.0)
        sync(device)
        if i:
            detect_times.append(time.perf_counter() - t)
            detect_cpu.append(time.process_time() - c)
    step_s = statistics.median(step_times)
    return {"backbone": name, "batch": args.batch, "step_s": step_s, "step_times": step_times,
            "step_cpu_s": statistics.median(step_cpu), "step_per_image_s": step_s / args.batch,
            "detect_s_per_keyframe": statistics.median(detect_times),
            "detect_cpu_s_per_keyframe": statistics.median(detect_cpu),
            "detect_times": detect_times,
            # CPU seconds: on a machine shared with other jobs the wall time measures the load
            "paper_schedule_cpu_hours": 100_000 * 20 * statistics.median(step_cpu) / args.batch
            / 3600}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", default=["resnet50", "resnet101"])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--width", type=int, default=1422)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = [bench_backbone(name, args, device) for name in args.backbones]
    print(json.dumps({"device": str(device), "threads": torch.get_num_threads(),
                      "input": f"{args.width}x{args.height}", "results": results}, indent=1))
    print("| backbone | batch | step s (wall) | step CPU s | detect s / keyframe (wall) | "
          "detect CPU s | paper schedule (100K x 20 images) at the step CPU time |")
    for r in results:
        print(f"| {r['backbone']} | {r['batch']} | {r['step_s']:.1f} | {r['step_cpu_s']:.1f} | "
              f"{r['detect_s_per_keyframe']:.2f} | {r['detect_cpu_s_per_keyframe']:.2f} | "
              f"{r['paper_schedule_cpu_hours']:.0f} h |")


if __name__ == "__main__":
    main()
