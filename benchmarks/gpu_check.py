"""One prepared run of every CUDA path of hgrnn and of the GPU figures (issue 18).

    bash benchmarks/gpu_check.sh --out OUT          # the lent GPU machine (see below)
    .venv/bin/python benchmarks/gpu_check.py --out OUT                # after `make install`
    .venv/bin/python benchmarks/gpu_check.py --device cpu --tiny --out OUT   # < 60 s, CPU

On the first CUDA device (`--device cuda`, the default) the script runs, each part under a
time limit and all of them under one budget (`--budget`, 450 s; a part that does not fit
what is left is skipped with a note, one that overruns its limit is stopped):

1. Correctness, on rendered videos and random weights (no downloads). The I3D weights are a
   random init with He-normal convolutions (`he_random_i3d`, saved once as a piergiaj-layout
   file), so activations stay of order 1 through the network: torch's default init shrinks
   them to ~1e-5 at Mixed_5c, where float16 has too few bits for a meaningful comparison.
     i3d              Mixed_5c map of one clip, device vs CPU: fp32 (TF32 off) within
                      FP32_RTOL; autocast (float16 on CUDA, as extract-features; bfloat16 on
                      a CPU) within AUTOCAST_RTOL
     roi              RoI person features of the CPU map on the device vs the CPU (FP32_RTOL)
     extract          `hgrnn extract-features --device DEV` on 2 rendered videos with
                      ground-truth persons; `hgrnn inspect --check` passes on the store and
                      every array equals the `--device cpu` store (floats within
                      AUTOCAST_RTOL: extraction runs under autocast on CUDA)
     train-head       `hgrnn train-head --device DEV` for 100 steps on a synthetic store: the
                      loss after every logged step within HEAD_LOSS_RTOL of `--device cpu`
     eval             `hgrnn eval --gt-boxes --device DEV` of that run: the same result
                      rows as `--device cpu`, scores within SCORE_ATOL, frame-mAP within
                      MAP_ATOL
     finetune-backbone  10 steps on DEV, then `--resume` to 12; backbone.pt loads
     finetune-detector  the same, when `hgrnn finetune-detector` exists (else noted absent)
     raft             RAFT-small flow of a textured clip, device vs CPU (RAFT_RTOL), when
                      `hgrnn.pipeline.flow` exists
     backbones        every torchvision backbone of `--backbone` (`hgrnn.pipeline.backbones`,
                      random seeded weights): the map of one clip (16 frames, short side 128;
                      MViT 16 x 224 x 224) on the device vs the CPU, fp32 within
                      BACKBONE_FP32_RTOL, autocast within AUTOCAST_RTOL; then clips/s under
                      autocast at the backbone's own AVA input (batch --batch). --tiny: r3d_18,
                      mvit_v2_s and swin3d_t at a few pixels only
2. Figures at the real sizes (random weights; the speed does not depend on them): I3D
   clips/s at 32 x 256 x 341 in batches of 8, "fp32" (on CUDA with cuDNN's TF32
   convolutions, torch's default, as extract-features runs outside autocast) and autocast;
   torchvision Faster R-CNN
   R50-FPN keyframes/s at --ava-size (short side 800, as extract-features); RAFT-small frame
   pairs/s at 256 x 341; decoding frames/s with --workers processes; `extract_features` end
   to end keyframes/s on rendered --ava-size video (ground-truth boxes, and with the
   detector); `train_head` with the paper's schedule on an AVA-v2.1-train-scale store
   (235 x 897 keyframes, C = 256, `benchmarks/bench_store.make_ava_scale_store`) and
   `evaluate_store` at val scale (64 x 897); the peak GPU memory of each part. From them:
   the projected wall time of extracting AVA v2.1 val and train on 1 and on 8 such GPUs.
3. Writes OUT/gpu_check.json and OUT/gpu_check.log (its first line: the versions of torch,
   torchvision, numpy, h5py, click, av, PIL and pyarrow) and prints a table. Exit status 1
   when a correctness check fails or any part raises, naming them; 2 when a package is
   missing; 3 when a part ran past its limit or was skipped (the budget, or a part it
   needs failed), named on an `unchecked:` line: what it would have checked or measured
   is unknown.

`--device cpu --tiny` runs every part with tiny sizes on the CPU (tests/test_gpu_check.py
runs it in `make test`), so the script keeps working as the code changes.

The lent GPU machine (BENCHMARKS.md, "GPU check") has no package registry; its python3 has
torch, torchvision, h5py, click, numpy, scipy, tqdm, but not PyAV. `make gpu-wheels` (here)
puts the PyAV wheel into .whl/ (ignored by git); `benchmarks/gpu_check.sh` installs .whl/*.whl
into a temporary folder there and runs this script with the machine's python3.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))          # the working tree's hgrnn, installed or not
sys.path.insert(0, str(HERE))          # bench_store (the AVA-scale store generator)

#: (import name, what to install) of every package the parts need
REQUIRED = (("numpy", "numpy"), ("torch", "torch"), ("torchvision", "torchvision"),
            ("h5py", "h5py"), ("click", "click"), ("tqdm", "tqdm"), ("scipy", "scipy"),
            ("joblib", "joblib"), ("av", "av (PyAV)"))

# Tolerances: relative = max |x - ref| / max |ref| over a whole array.
FP32_RTOL = 1e-4                 # fp32 on the device (TF32 off) vs the CPU
AUTOCAST_RTOL = {"cuda": 1e-2,   # float16 autocast (extract-features on CUDA) vs CPU fp32
                 "cpu": 3e-2}    # bfloat16 autocast on a CPU (measured 8e-3 on a small clip)
HEAD_LOSS_RTOL = 2e-2            # train-head loss, device vs CPU, at every logged step
SCORE_ATOL = 2e-3                # eval result scores, device vs CPU
MAP_ATOL = 1e-3                  # eval frame-mAP, device vs CPU
RAFT_RTOL = 2e-2                 # RAFT-small flow (random weights), device vs CPU
BACKBONE_FP32_RTOL = 1e-3        # torchvision backbones fp32, device vs CPU: long attention /
                                 # LayerNorm reductions in another order than I3D's convs

#: AVA v2.1 keyframes (timestamps 902..1798 of each 15-minute cut): 897 per video
AVA_KEYFRAMES_PER_VIDEO = 897
AVA_SPLITS = {"val": 64, "train": 235}           # videos


@dataclass(frozen=True)
class Sizes:
    """What each part works on: the real sizes, or tiny ones for `--tiny`."""
    clip_frames: int = 32             # I3D clip length (frames)
    short_side: int = 256             # decoded frame short side (4:3: 341 x 256; the 16:9
                                      # --ava-size video: 455 x 256)
    crop: int = 224                   # finetune-backbone training crop
    batch: int = 8                    # I3D / detector benchmark batch
    small_size: tuple = (320, 240)    # the 2 rendered correctness videos (W, H) ...
    small_seconds: int = 5            # ... and their length
    small_keyframes: int = 3          # keyframes 1..N of each (extract check)
    ava_size: tuple = (1280, 720)     # the figures' rendered video (W, H) ...
    ava_seconds: int = 20             # ... and its length (one keyframe a second)
    det_short_side: int = 800         # Faster R-CNN input short side (extract-features)
    raft_size: tuple = (341, 256)     # RAFT frames (W, H)
    raft_frames: int = 9              # frames per RAFT clip: 8 pairs
    check_steps: int = 100            # train-head check steps
    synth: tuple = (16, 40)           # synthetic store (videos, keyframes) of the head checks
    head_train: tuple = (235, 897)    # AVA-v2.1-train-scale store of the head figure
    head_val: tuple = (64, 897)       # AVA-v2.1-val-scale store of the eval figure
    head_dim: int = 256               # C of those stores
    paper_steps: int = 1000           # train-head paper schedule
    bench_seconds: float = 6.0        # length of each timed micro-benchmark loop


TINY = Sizes(clip_frames=8, short_side=32, crop=32, batch=2, small_size=(96, 64),
             small_seconds=3, small_keyframes=2, ava_size=(128, 72), ava_seconds=3,
             det_short_side=64, raft_size=(64, 48), raft_frames=3, check_steps=20,
             synth=(4, 12), head_train=(6, 30), head_val=(3, 30), head_dim=32,
             paper_steps=10, bench_seconds=0.2)


class CheckFailed(AssertionError):
    """A correctness check found a wrong result (the message says what and by how much)."""


class Skip(Exception):
    """A part that cannot run here (its code is not on this branch, a needed part failed)."""


class PartTimeout(BaseException):
    """A part ran past its limit. BaseException, so that the `except Exception` of a stage
    (one bad video must not stop extraction) does not swallow it."""


# ----------------------------------------------------------------------------- context

@dataclass
class Context:
    """What the parts share: settings, the work folder and the inputs prepared once."""
    device: object                    # torch.device
    sizes: Sizes
    work: Path
    workers: int
    threads: int                      # torch CPU threads (0: torch's default)
    log: object                       # Log
    made: dict = field(default_factory=dict)     # name -> path / value made by a part
    values: dict = field(default_factory=dict)   # part name -> its values (for later parts)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def dev(self) -> str:
        return str(self.device)

    def sync(self):
        import torch
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def autocast(self):
        """The autocast extract-features uses on this device (bfloat16 on a CPU)."""
        import torch
        if self.cuda:
            return torch.autocast("cuda", dtype=torch.float16)
        return torch.autocast("cpu", dtype=torch.bfloat16)


class Log:
    """Lines to stderr and to OUT/gpu_check.log, each with the seconds since the start."""

    def __init__(self, path: Path):
        self.start = time.perf_counter()
        self.file = open(path, "a", buffering=1)

    def __call__(self, message: str) -> None:
        line = f"[{time.perf_counter() - self.start:7.1f} s] {message}"
        print(line, file=sys.stderr, flush=True)
        self.file.write(line + "\n")


def rel_err(x, ref) -> float:
    """max |x - ref| / max |ref| (arrays or tensors of any shape; 0 for equal empty ones)."""
    import numpy as np
    x = np.asarray(x.detach().float().cpu() if hasattr(x, "detach") else x, np.float64)
    ref = np.asarray(ref.detach().float().cpu() if hasattr(ref, "detach") else ref, np.float64)
    if x.shape != ref.shape:
        raise CheckFailed(f"shapes differ: {x.shape} vs {ref.shape}")
    if ref.size == 0:
        return 0.0
    return float(np.abs(x - ref).max() / max(np.abs(ref).max(), 1e-30))


def expect(name: str, value: float, tol: float) -> None:
    if not value <= tol:               # also catches NaN
        raise CheckFailed(f"{name}: {value:.3g} > tolerance {tol:g}")


def cli(*args) -> str:
    """Run `hgrnn ARGS` in this process (click's CliRunner); its output, or CheckFailed with
    the last lines when it exits non-zero."""
    from click.testing import CliRunner

    from hgrnn.cli import main
    result = CliRunner().invoke(main, [str(a) for a in args])    # PartTimeout passes through
    if result.exit_code != 0:
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        tail = " | ".join(result.output.strip().splitlines()[-3:])
        raise CheckFailed(f"hgrnn {args[0]} exited {result.exit_code}: {tail}")
    return result.output


def command_params(name: str):
    """The option names of `hgrnn NAME`, or None when this branch has no such command."""
    from hgrnn.cli import main
    command = main.commands.get(name)
    return None if command is None else {p.name: p for p in command.params}


def timed_loop(ctx: Context, step, seconds: float, max_iters: int = 1000) -> dict:
    """One warm-up call of step(), then calls until `seconds` have passed (at least 2).
    Returns median and total seconds per call and the number of calls."""
    step()
    ctx.sync()
    times = []
    started = time.perf_counter()
    while len(times) < 2 or (time.perf_counter() - started < seconds and len(times) < max_iters):
        t = time.perf_counter()
        step()
        ctx.sync()
        times.append(time.perf_counter() - t)
    return {"median_s": statistics.median(times), "calls": len(times)}


# ----------------------------------------------------------------------------- inputs

def he_random_i3d(seed: int = 0):
    """InceptionI3d with He-normal (fan-in, ReLU) convolution weights: random, but with
    activations of order 1 at every layer (see the module docstring)."""
    import torch

    from hgrnn.pipeline.i3d import InceptionI3d
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = InceptionI3d()
        for module in model.modules():
            if isinstance(module, torch.nn.Conv3d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return model.eval()


def prepare(ctx: Context) -> dict:
    """The shared inputs: the He-random I3D weights file, 2 rendered videos, a 3-class
    label map and a ground-truth CSV with 2 persons on each keyframe 1..small_seconds-1."""
    import torch

    from hgrnn.pipeline.render import render_video
    s = ctx.sizes
    root = ctx.work / "inputs"
    videos = root / "videos"
    weights = root / "i3d_he_random.pt"
    root.mkdir(parents=True, exist_ok=True)
    torch.save(he_random_i3d().state_dict(), weights)
    for k in range(2):
        render_video(videos / f"vid{k}.mp4", seconds=s.small_seconds, fps=30,
                     size=s.small_size, gop=10)
    (root / "labels.txt").write_text("1 stand\n2 talk\n3 watch\n")
    boxes = ((0.1, 0.1, 0.45, 0.9), (0.5, 0.2, 0.9, 0.95))       # person 0, person 1
    rows = [f"vid{k},{ts},{x1:.2f},{y1:.2f},{x2:.2f},{y2:.2f},{1 + (ts + p) % 3},{p}"
            for k in range(2) for ts in range(1, s.small_seconds)
            for p, (x1, y1, x2, y2) in enumerate(boxes)]
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    ctx.made.update(videos=videos, weights=weights, labels=root / "labels.txt",
                    annotations=root / "train.csv")
    return {"videos": 2, "video_size": list(s.small_size), "seconds": s.small_seconds,
            "summary": f"2 videos {s.small_size[0]}x{s.small_size[1]}, weights, labels"}


def render_ava_video(path: Path, seconds: int, size: tuple, fps: int = 30) -> float:
    """An H.264 video at `size` that is quick to make at 720p: a smooth random texture
    panning 2 pixels a frame, half-blended with the rendered shapes (`frame_at` at a quarter
    of the size, upscaled); crf 23, 2 s GOP, like web video. Returns its kbit/s."""
    import av
    import numpy as np
    from scipy.ndimage import gaussian_filter

    from hgrnn.pipeline.render import frame_at
    w, h = size
    frames, pan = int(seconds * fps), 2
    noise = np.random.default_rng(0).random((h, w + pan * frames, 3), np.float32) * 255
    texture = gaussian_filter(noise, sigma=(1.5, 1.5, 0)).astype(np.uint8) >> 1
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast", "g": str(2 * fps)}
        for i in range(frames):
            shapes = frame_at(i, fps, (w // 4, h // 4), barcode=False) >> 1   # (H/4, W/4, 3)
            img = texture[:, pan * i:pan * i + w] + shapes.repeat(4, 0).repeat(4, 1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.stat().st_size * 8 / 1000 / seconds


def ava_videos(ctx: Context, count: int) -> Path:
    """A folder with `count` copies of one rendered --ava-size video (rendered once)."""
    s = ctx.sizes
    master = ctx.work / "ava" / "master.mp4"
    if not master.exists():
        # rendered under another name and renamed: a render cut short (a part's time limit)
        # leaves no master.mp4 for a later part or a reused --work to take as complete
        t = time.perf_counter()
        partial = master.with_name("master.part.mp4")
        render_ava_video(partial, s.ava_seconds, s.ava_size)
        os.replace(partial, master)
        ctx.log(f"rendered {s.ava_seconds} s of {s.ava_size[0]}x{s.ava_size[1]} video in "
                f"{time.perf_counter() - t:.1f} s")
    ctx.made["ava_kbps"] = master.stat().st_size * 8 / 1000 / s.ava_seconds
    folder = ctx.work / "ava" / f"videos{count}"
    if not folder.exists():
        folder.mkdir(parents=True)
        for k in range(count):
            shutil.copyfile(master, folder / f"ava{k:02d}.mp4")
    return folder


def synth_stores(ctx: Context) -> tuple[Path, Path]:
    """Small synthetic train / val stores (`hgrnn synth`) for the head checks."""
    videos, keyframes = ctx.sizes.synth
    train, val = ctx.work / "synth_train.h5", ctx.work / "synth_val.h5"
    for path, seed in ((train, 1), (val, 2)):
        if not path.exists():
            cli("synth", "--out", path, "--videos", videos, "--keyframes", keyframes,
                "--seed", seed, "--quiet")
    return train, val


# ----------------------------------------------------------------------------- checks

def check_i3d(ctx: Context) -> dict:
    """I3D Mixed_5c map of one clip on the device vs the CPU: fp32 and autocast."""
    import torch
    s = ctx.sizes
    model = he_random_i3d()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, s.clip_frames, s.short_side, round(s.short_side * 4 / 3),
                   generator=gen) * 2 - 1                       # (1, 3, T, H, W) in [-1, 1]
    with torch.no_grad():
        ref = model.extract_features(x)                         # (1, 1024, T', H', W')
        ctx.made["i3d_ref"] = (x, ref)
        dev_model, dev_x = model.to(ctx.device), x.to(ctx.device)
        with tf32(False):
            fp32 = dev_model.extract_features(dev_x)
        with tf32(True):
            tf = dev_model.extract_features(dev_x)
        with ctx.autocast():
            amp = dev_model.extract_features(dev_x)
    out = {"fmap_shape": list(ref.shape), "fp32_rel": rel_err(fp32, ref),
           "tf32_rel_info": rel_err(tf, ref), "autocast_rel": rel_err(amp, ref),
           "autocast_dtype": str(amp.dtype), "fp32_rtol": FP32_RTOL,
           "autocast_rtol": AUTOCAST_RTOL[ctx.device.type]}
    expect("I3D fp32 device vs CPU", out["fp32_rel"], FP32_RTOL)
    expect("I3D autocast device vs CPU", out["autocast_rel"], AUTOCAST_RTOL[ctx.device.type])
    out["summary"] = f"fp32 {out['fp32_rel']:.1e}, autocast {out['autocast_rel']:.1e}"
    return out


@contextlib.contextmanager
def tf32(allowed: bool):
    """TF32 in cuDNN and matmuls on (torch's cuDNN default) or off (true fp32)."""
    import torch
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def check_roi(ctx: Context) -> dict:
    """RoI person features (RoIAlign + max) of the CPU map, on the device vs the CPU."""
    import torch

    from hgrnn.pipeline.i3d import person_features
    if "i3d_ref" not in ctx.made:
        raise Skip("needs the i3d check's map")
    x, fmap = ctx.made["i3d_ref"]
    boxes = torch.tensor([[0, 0.1, 0.1, 0.45, 0.9], [0, 0.5, 0.2, 0.95, 0.95],
                          [0, 0.0, 0.0, 1.0, 1.0], [0, 0.3, 0.4, 0.35, 0.45]])  # (P, 5)
    size = x.shape[-2:]
    ref = person_features(fmap, boxes, size)                                  # (P, 1024)
    dev = person_features(fmap.to(ctx.device), boxes.to(ctx.device), size)
    with ctx.autocast():
        amp = person_features(fmap.to(ctx.device), boxes.to(ctx.device), size)
    out = {"persons": len(boxes), "fp32_rel": rel_err(dev, ref),
           "under_autocast_rel": rel_err(amp, ref)}
    expect("RoI features device vs CPU", out["fp32_rel"], FP32_RTOL)
    expect("RoI features under autocast", out["under_autocast_rel"], FP32_RTOL)
    out["summary"] = f"fp32 {out['fp32_rel']:.1e}, in autocast {out['under_autocast_rel']:.1e}"
    return out


def extract_args(ctx: Context, out: Path, device: str) -> list:
    s, m = ctx.sizes, ctx.made
    return ["extract-features", "--out", out, "--videos", m["videos"], "--annotations",
            m["annotations"], "--label-map", m["labels"], "--backbone-weights", m["weights"],
            "--keyframes", f"1:{s.small_keyframes}", "--clip-frames", s.clip_frames,
            "--short-side", s.short_side, "--batch-size", 4, "--workers", 1,
            "--device", device, "--quiet"]


def check_extract(ctx: Context) -> dict:
    """extract-features on the device and on the CPU: `inspect --check`, equal arrays."""
    import h5py
    import numpy as np
    dev_store, cpu_store = ctx.work / "extract_dev.h5", ctx.work / "extract_cpu.h5"
    cli(*extract_args(ctx, dev_store, ctx.dev))
    checked = cli("inspect", dev_store, "--check")
    cli(*extract_args(ctx, cpu_store, "cpu"))
    worst, compared = {}, 0
    with h5py.File(dev_store, "r") as a, h5py.File(cpu_store, "r") as b:
        names = []
        b["videos"].visit(lambda n: names.append(n) if isinstance(b["videos"][n], h5py.Dataset) else None)
        if not names:
            raise CheckFailed("the CPU store has no video arrays")
        for name in names:
            ref, got = b["videos"][name][()], a["videos"].get(name)
            if got is None:
                raise CheckFailed(f"videos/{name} missing from the {ctx.dev} store")
            got = got[()]
            if ref.dtype.kind == "f":
                err = rel_err(got, ref)
                worst[name.split("/")[-1]] = max(err, worst.get(name.split("/")[-1], 0.0))
                expect(f"store videos/{name} {ctx.dev} vs cpu", err,
                       AUTOCAST_RTOL[ctx.device.type])
            elif not np.array_equal(got, ref):
                raise CheckFailed(f"store videos/{name}: {ctx.dev} and cpu differ")
            compared += 1
    out = {"arrays_compared": compared, "worst_rel": worst,
           "inspect_check": checked.strip().splitlines()[-1] if checked.strip() else ""}
    out["summary"] = ", ".join(f"{k} {v:.1e}" for k, v in worst.items())
    return out


def check_train_head(ctx: Context) -> dict:
    """train-head for check_steps steps on the device and on the CPU: the same losses."""
    train, _ = synth_stores(ctx)
    losses = {}
    for device in (ctx.dev, "cpu"):
        run = ctx.work / f"head_{device.replace(':', '')}"
        shutil.rmtree(run, ignore_errors=True)
        cli("train-head", "--store", train, "--out", run, "--steps", ctx.sizes.check_steps,
            "--device", device, "--val-every", 0, "--log-every", 10, "--threads", ctx.threads,
            "--quiet")
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        losses[device] = {r["step"]: r["loss"] for r in rows if "loss" in r}
        ctx.made.setdefault("head_run", run)          # the device's run, for the eval check
    dev, cpu = losses[ctx.dev], losses["cpu"]
    if sorted(dev) != sorted(cpu) or not cpu:
        raise CheckFailed(f"logged steps differ: {sorted(dev)} vs {sorted(cpu)}")
    worst = max(abs(dev[k] - cpu[k]) / abs(cpu[k]) for k in cpu)
    last = max(cpu)
    expect("train-head loss device vs CPU", worst, HEAD_LOSS_RTOL)
    return {"steps": last, "loss_device": dev[last], "loss_cpu": cpu[last], "worst_rel": worst,
            "summary": f"loss {dev[last]:.5f} vs {cpu[last]:.5f} (worst rel {worst:.1e})"}


def check_eval(ctx: Context) -> dict:
    """eval of the train-head check's run on the device and on the CPU: the same rows."""
    import numpy as np

    from hgrnn.data.ava import read_results
    if "head_run" not in ctx.made:
        raise Skip("needs the train-head check's run")
    _, val = synth_stores(ctx)
    rows, maps = {}, {}
    for device in (ctx.dev, "cpu"):
        out = ctx.work / f"eval_{device.replace(':', '')}"
        # gt boxes: never closer than IoU 0.3 in a synthetic store, so the class NMS cannot
        # flip between near-equal scores and the rows must be the same
        cli("eval", "--store", val, "--checkpoint", ctx.made["head_run"], "--out", out,
            "--gt-boxes", "--device", device, "--threads", ctx.threads, "--quiet")
        maps[device] = json.loads((out / "metrics.json").read_text())["mAP"]     # a fraction
        r = read_results(out / "results.csv")
        key = np.lexsort((r.action_ids, *r.boxes.T[::-1], r.timestamps, r.video_ids))
        rows[device] = (r.video_ids[key], r.timestamps[key], r.boxes[key], r.action_ids[key],
                        r.scores[key])
    dev, cpu = rows[ctx.dev], rows["cpu"]
    if len(dev[0]) != len(cpu[0]):
        raise CheckFailed(f"eval rows: {len(dev[0])} on {ctx.dev}, {len(cpu[0])} on cpu")
    for i, what in enumerate(("video ids", "timestamps", "boxes", "actions")):
        if not np.array_equal(dev[i], cpu[i]):
            raise CheckFailed(f"eval result {what} differ between {ctx.dev} and cpu")
    score_err = float(np.abs(dev[4] - cpu[4]).max()) if len(cpu[4]) else 0.0
    expect("eval scores device vs CPU (abs)", score_err, SCORE_ATOL)
    expect("eval frame-mAP device vs CPU (abs)", abs(maps[ctx.dev] - maps["cpu"]), MAP_ATOL)
    return {"rows": len(cpu[0]), "score_max_abs": score_err, "map_device": maps[ctx.dev],
            "map_cpu": maps["cpu"],
            "summary": f"{len(cpu[0])} rows, scores {score_err:.1e}, mAP {maps[ctx.dev]:.4f}"}


def check_finetune_backbone(ctx: Context) -> dict:
    """finetune-backbone: 10 steps on the device, then --resume to 12; backbone.pt loads."""
    from hgrnn.pipeline.i3d import load_backbone
    s, m = ctx.sizes, ctx.made
    run = ctx.work / "finetune_backbone"
    args = ["finetune-backbone", "--annotations", m["annotations"], "--out", run, "--videos",
            m["videos"], "--label-map", m["labels"], "--backbone-weights", m["weights"],
            "--clip-frames", s.clip_frames, "--short-side", round(s.crop * 8 / 7),
            "--crop-size", s.crop, "--batch-size", 2, "--device", ctx.dev, "--workers", 0,
            "--threads", ctx.threads,
            "--log-every", 1, "--checkpoint-every", 10, "--quiet"]
    cli(*args, "--steps", 10)
    cli(*args, "--steps", 12, "--resume")
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if "loss" in r]
    losses = [r["loss"] for r in rows if "loss" in r]
    if steps[-1] != 12 or not all(map(_finite, losses)):
        raise CheckFailed(f"finetune-backbone logged steps {steps}, losses {losses}")
    _, projection, meta = load_backbone(run / "backbone.pt", ctx.device)
    return {"steps": steps, "losses": losses, "loaded": meta["kind"],
            "summary": f"12 steps (10 + resume), loss {losses[0]:.4f} -> {losses[-1]:.4f}"}


def _finite(x) -> bool:
    return x == x and abs(x) != float("inf")


def check_finetune_detector(ctx: Context) -> dict:
    """finetune-detector (issue 13): 10 steps on the device, then --resume to 12."""
    params = command_params("finetune-detector")
    if params is None:
        raise Skip("absent: `hgrnn finetune-detector` is not on this branch")
    s, m = ctx.sizes, ctx.made
    run = ctx.work / "finetune_detector"
    wanted = {"annotations": m["annotations"], "out_dir": run, "videos": m["videos"],
              "backbone": "resnet18", "init": "none", "min_size": s.det_short_side,
              "max_size": 2 * s.det_short_side, "batch_size": 2, "device": ctx.dev,
              "num_workers": 0, "num_threads": ctx.threads, "log_every": 1,
              "checkpoint_every": 5, "quiet": True}
    missing = [n for n, p in params.items() if p.required and n not in wanted]
    if missing:
        raise Skip(f"finetune-detector needs options this script does not know: {missing}")
    args = ["finetune-detector"]
    for name, value in wanted.items():
        if name not in params:
            continue                                    # an option this branch lacks
        flag = params[name].opts[0]
        args += [flag] if value is True else [flag, value]
    cli(*args, "--steps", 10)
    cli(*args, "--steps", 12, "--resume")
    files = sorted(p.name for p in run.iterdir())
    return {"files": files, "dropped_options": [n for n in wanted if n not in params],
            "summary": "10 steps + resume to 12"}


def check_raft(ctx: Context) -> dict:
    """RAFT-small flow (random weights) of a textured clip on the device vs the CPU."""
    import torch
    if importlib.util.find_spec("hgrnn.pipeline.flow") is None:
        raise Skip("absent: hgrnn.pipeline.flow is not on this branch")
    from hgrnn.pipeline.flow import FlowComputer
    from hgrnn.pipeline.render import textured_clip
    w, h = ctx.sizes.raft_size
    clip = textured_clip(3, size=(w, h), moves=(((w // 4, h // 4), (w // 4, h // 4), (2, 1)),))
    clips = torch.from_numpy(clip)[None]                       # (1, T, H, W, 3) uint8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = FlowComputer("raft-small", weights="none", device="cpu")(clips)
        with tf32(False):
            got = FlowComputer("raft-small", weights="none", device=ctx.dev)(clips)
    err = rel_err(got, ref)
    expect("RAFT-small flow device vs CPU", err, RAFT_RTOL)
    return {"flow_shape": list(got.shape), "rel": err, "summary": f"flow {err:.1e}"}


# ----------------------------------------------------------------------------- figures

#: --tiny: (T, H, W) of the backbones checked (a CPU smoke run, as tests/test_backbones.py)
TINY_BACKBONES = {"r3d_18": (8, 32, 48), "mvit_v2_s": (4, 64, 64), "swin3d_t": (4, 64, 96)}


def check_backbones(ctx: Context) -> dict:
    """Each torchvision backbone: its map on the device vs the CPU (fp32, autocast), and its
    clips/s under autocast at its own input settings (module docstring)."""
    import torch

    from hgrnn.pipeline.backbones import BACKBONES, input_settings, load_backbone
    tiny = ctx.sizes == TINY
    names = TINY_BACKBONES if tiny else [n for n in BACKBONES if n != "i3d"]
    out, worst = {}, ("", 0.0)
    for name in names:
        own = input_settings(name)
        if tiny:
            size = TINY_BACKBONES[name]
        elif own["fixed_size"]:
            size = (own["clip_frames"], *own["fixed_size"])
        else:
            size = (16, 128, 171)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")                 # random weights: on purpose
            model, _, _ = load_backbone(name, "none", input_size=size)
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(1, 3, *size, generator=gen)
        with torch.no_grad():
            ref = model.extract_features(x)
            dev_model, dev_x = model.to(ctx.device), x.to(ctx.device)
            with tf32(False):
                fp32 = dev_model.extract_features(dev_x)
            with ctx.autocast():
                amp = dev_model.extract_features(dev_x)
        row = {"input": list(size), "fmap_shape": list(ref.shape),
               "fp32_rel": rel_err(fp32, ref), "autocast_rel": rel_err(amp, ref)}
        expect(f"{name} fp32 device vs CPU", row["fp32_rel"], BACKBONE_FP32_RTOL)
        expect(f"{name} autocast device vs CPU", row["autocast_rel"],
               AUTOCAST_RTOL[ctx.device.type])
        # speed at the backbone's own AVA input (4:3 frames; MViT its square)
        t = size[0] if tiny else own["clip_frames"]
        h = size[1] if tiny else own["short_side"]
        w = size[2] if tiny else (own["fixed_size"][1] if own["fixed_size"]
                                  else round(own["short_side"] * 4 / 3))
        clips = torch.randn(ctx.sizes.batch, 3, t, h, w, device=ctx.device)
        if ctx.cuda:
            torch.cuda.reset_peak_memory_stats(ctx.device)

        def step():
            with torch.no_grad(), ctx.autocast():
                dev_model.extract_features(clips)
        timed = timed_loop(ctx, step, ctx.sizes.bench_seconds / 2, max_iters=50)
        row.update(speed_input=[t, h, w], clips_per_s=ctx.sizes.batch / timed["median_s"],
                   peak_gpu_gib=peak_gib(ctx))
        out[name] = row
        worst = max(worst, (name, row["autocast_rel"]), key=lambda p: p[1])
        del model, dev_model, clips
    return {"backbones": out, "summary": f"{len(out)} backbones; worst autocast "
            f"{worst[1]:.1e} ({worst[0]}); " + ", ".join(
                f"{n} {r['clips_per_s']:.1f}" for n, r in out.items()) + " clips/s"}


def peak_gib(ctx: Context):
    import torch
    return round(torch.cuda.max_memory_allocated(ctx.device) / 2**30, 3) if ctx.cuda else None


def figure_i3d(ctx: Context) -> dict:
    """I3D (random weights) clips/s on (batch, 3, 32, 256, 341), "fp32" (TF32 convolutions
    on CUDA: torch's default, cudnn.allow_tf32) and autocast."""
    import torch
    s = ctx.sizes
    model = he_random_i3d().to(ctx.device)
    x = torch.rand(s.batch, 3, s.clip_frames, s.short_side, round(s.short_side * 4 / 3),
                   device=ctx.device) * 2 - 1
    out = {"input": list(x.shape)}
    for name, mode in (("fp32", contextlib.nullcontext), ("autocast", ctx.autocast)):
        if ctx.cuda:
            torch.cuda.reset_peak_memory_stats(ctx.device)

        def step():
            with torch.no_grad(), mode():
                model.extract_features(x)
        t = timed_loop(ctx, step, ctx.sizes.bench_seconds)
        out[name] = {"clips_per_s": s.batch / t["median_s"], "calls": t["calls"],
                     "peak_gpu_gib": peak_gib(ctx)}
    tf32_convs = ctx.cuda and torch.backends.cudnn.allow_tf32
    out["fp32"]["tf32_convolutions"] = tf32_convs
    out["summary"] = (f"fp32{' (TF32 convolutions)' if tf32_convs else ''} "
                      f"{out['fp32']['clips_per_s']:.1f} clips/s, autocast "
                      f"{out['autocast']['clips_per_s']:.1f} clips/s")
    return out


def figure_detector(ctx: Context) -> dict:
    """Faster R-CNN R50-FPN (random weights, as extract-features loads it) keyframes/s."""
    import torch

    from hgrnn.pipeline.detect import detect_persons, load_person_detector
    s = ctx.sizes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_person_detector("faster-rcnn", weights="none", device=ctx.device,
                                     min_score=0.5, max_persons=30,
                                     short_side=s.det_short_side)
    gen = torch.Generator().manual_seed(0)
    w, h = s.ava_size
    images = [torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=gen)
              for _ in range(s.batch)]
    t = timed_loop(ctx, lambda: detect_persons(model, images, 0.5, 30), s.bench_seconds)
    rate = s.batch / t["median_s"]
    return {"image": [w, h], "short_side": s.det_short_side, "batch": s.batch,
            "keyframes_per_s": rate, "calls": t["calls"],
            "summary": f"{rate:.1f} keyframes/s ({w}x{h} -> short side {s.det_short_side})"}


def figure_raft(ctx: Context) -> dict:
    """RAFT-small (random weights) frame pairs/s at 256 x 341."""
    import torch
    if importlib.util.find_spec("hgrnn.pipeline.flow") is None:
        raise Skip("absent: hgrnn.pipeline.flow is not on this branch")
    from hgrnn.pipeline.flow import load_raft, raft_pairs
    s = ctx.sizes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_raft("raft-small", "none")[0].to(ctx.device)
    w, h = s.raft_size
    clips = torch.randint(0, 256, (2, s.raft_frames, h, w, 3), dtype=torch.uint8,
                          device=ctx.device)
    t = timed_loop(ctx, lambda: raft_pairs(model, clips), s.bench_seconds)
    pairs = 2 * (s.raft_frames - 1)
    rate = pairs / t["median_s"]
    return {"frames": [w, h], "pairs_per_call": pairs, "pairs_per_s": rate,
            "calls": t["calls"], "summary": f"{rate:.1f} pairs/s"}


def _decode_one(args) -> dict:
    """Decode every-second clips of one video (a worker process of figure_decode)."""
    from hgrnn.data.video import iter_clips
    path, seconds, clip_frames, short_side = args
    stats: dict = {}
    for _ in iter_clips(path, list(range(seconds)), clip_frames, 1, short_side, stats=stats):
        pass
    return stats


def figure_decode(ctx: Context) -> dict:
    """Decoding (PyAV, as extract-features) of every-second clips: frames/s over --workers
    processes each decoding its own copy of the rendered --ava-size video."""
    import multiprocessing
    s = ctx.sizes
    folder = ava_videos(ctx, ctx.workers)
    jobs = [(str(p), s.ava_seconds, s.clip_frames, s.short_side) for p in sorted(folder.iterdir())]
    t = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(ctx.workers) as pool:
        stats = pool.map(_decode_one, jobs)
    wall = time.perf_counter() - t
    frames = sum(st["decoded_frames"] for st in stats)
    keyframes = len(jobs) * s.ava_seconds
    return {"workers": ctx.workers, "video": list(s.ava_size),
            "video_kbit_per_s": ctx.made["ava_kbps"], "frames_decoded": frames,
            "seconds": wall, "frames_per_s": frames / wall, "keyframes_per_s": keyframes / wall,
            "summary": f"{frames / wall:.0f} frames/s, {keyframes / wall:.1f} keyframes/s "
                       f"({ctx.workers} workers)"}


def figure_extract(ctx: Context) -> dict:
    """extract_features end to end on --workers copies of the --ava-size video: ground-truth
    boxes (3 a keyframe), then with the Faster R-CNN detector; model loading excluded."""
    import torch

    from hgrnn.pipeline.detect import load_person_detector
    from hgrnn.pipeline.extract import ExtractConfig, extract_features
    from hgrnn.pipeline.i3d import load_backbone
    s = ctx.sizes
    folder = ava_videos(ctx, ctx.workers)
    ann = ctx.work / "ava" / "annotations.csv"
    ann.write_text("".join(f"{p.stem},{ts},{0.05 + 0.3 * k:.2f},0.1,{0.3 + 0.3 * k:.2f},0.9,1,{k}\n"
                           for p in sorted(folder.iterdir()) for ts in range(s.ava_seconds)
                           for k in range(3)))
    load_s = {None: _seconds(load_backbone, ctx.made["weights"], ctx.device)}
    load_s["faster-rcnn"] = load_s[None] + _seconds(
        load_person_detector, "faster-rcnn", weights="none", device=ctx.device, min_score=0.5,
        max_persons=30, short_side=s.det_short_side)
    out = {"workers": ctx.workers, "videos": ctx.workers, "video": list(s.ava_size),
           "model_load_s": load_s[None]}
    for name, detector in (("gt_boxes", None), ("detector", "faster-rcnn")):
        store = ctx.work / f"ava_{name}.h5"
        if ctx.cuda:
            torch.cuda.reset_peak_memory_stats(ctx.device)
        cfg = ExtractConfig(out=str(store), backbone_weights=str(ctx.made["weights"]),
                            videos=str(folder), annotations=str(ann),
                            label_map=str(ctx.made["labels"]), detector=detector,
                            detector_weights="none", det_short_side=s.det_short_side,
                            clip_frames=s.clip_frames, short_side=s.short_side,
                            batch_size=s.batch, workers=ctx.workers, device=ctx.dev,
                            progress=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            summary = extract_features(cfg)
        if summary["failed"]:
            raise CheckFailed(f"extract_features failed videos: {summary['failed']}")
        seconds = max(summary["seconds"] - load_s[detector], 1e-9)
        out[name] = {"keyframes": summary["keyframes"], "seconds_total": summary["seconds"],
                     "keyframes_per_s": summary["keyframes"] / seconds,
                     "peak_gpu_gib": peak_gib(ctx)}
        ctx.values.setdefault("extract_rates", {})[name] = out[name]["keyframes_per_s"]
        store.unlink()
    out["summary"] = (f"{out['gt_boxes']['keyframes_per_s']:.1f} keyframes/s (gt boxes), "
                      f"{out['detector']['keyframes_per_s']:.1f} with the detector")
    return out


def _seconds(function, *args, **kwargs) -> float:
    """Seconds one call of function(*args, **kwargs) takes (model loading, subtracted from
    runs)."""
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        function(*args, **kwargs)
    return time.perf_counter() - t


def head_stores(ctx: Context) -> tuple[Path, Path]:
    """AVA-scale random stores (bench_store.make_ava_scale_store), written once."""
    from bench_store import make_ava_scale_store
    s = ctx.sizes
    paths = []
    for (videos, keyframes), seed, name in ((s.head_train, 0, "train"), (s.head_val, 1, "val")):
        path = ctx.work / f"ava_scale_{name}.h5"
        if not path.exists():
            made = make_ava_scale_store(path, videos=videos, keyframes=keyframes,
                                        C=s.head_dim, seed=seed, progress=False)
            ctx.log(f"wrote {path.name} ({videos} x {keyframes}) in {made['seconds']:.1f} s")
        paths.append(path)
    return paths[0], paths[1]


def figure_train_head(ctx: Context) -> dict:
    """train_head with the paper's schedule (1000 steps x 50, l=3, J=2) on the AVA-train-scale
    store: wall time including store loading."""
    import torch

    from hgrnn.hgrnn_head.model import HeadConfig
    from hgrnn.hgrnn_head.train import TrainConfig, train_head
    train, _ = head_stores(ctx)
    if ctx.cuda:
        torch.cuda.reset_peak_memory_stats(ctx.device)
    run = ctx.work / "head_paper"
    shutil.rmtree(run, ignore_errors=True)
    out = train_head(str(train), str(run), HeadConfig(),
                     TrainConfig(steps=ctx.sizes.paper_steps, batch_size=50, device=ctx.dev,
                                 val_every=0, num_threads=ctx.threads), progress=False)
    ctx.made["paper_run"] = run
    return {"store": list(ctx.sizes.head_train), "steps": out["steps"],
            "seconds": out["seconds"], "loop_seconds": out["loop_seconds"],
            "steps_per_s": out["steps"] / out["loop_seconds"], "peak_gpu_gib": peak_gib(ctx),
            "summary": f"{out['seconds']:.1f} s ({out['steps'] / out['loop_seconds']:.0f} "
                       f"steps/s in the loop)"}


def figure_eval(ctx: Context) -> dict:
    """evaluate_store of the paper-schedule run on the AVA-val-scale store (detected boxes,
    no CSV written)."""
    import torch

    from hgrnn.hgrnn_head.infer import evaluate_store
    if "paper_run" not in ctx.made:
        raise Skip("needs the train-head figure's run")
    _, val = head_stores(ctx)
    if ctx.cuda:
        torch.cuda.reset_peak_memory_stats(ctx.device)
    t = time.perf_counter()
    result = evaluate_store(str(val), str(ctx.made["paper_run"]), progress=False,
                            device=ctx.dev, num_threads=ctx.threads)
    seconds = time.perf_counter() - t
    return {"store": list(ctx.sizes.head_val), "seconds": seconds, "mAP": result.mAP,
            "peak_gpu_gib": peak_gib(ctx), "summary": f"{seconds:.1f} s"}


def projection(values: dict, workers: int) -> dict:
    """Wall time of extracting AVA v2.1 val (with the detector) and train (ground-truth
    boxes) from the measured end-to-end rates, on 1 and on 8 such GPUs (linear: each GPU
    with this machine's CPUs for decoding, one torchrun rank per GPU)."""
    rates = values.get("extract_rates", {})
    out = {"assumes": f"one torchrun rank per GPU, each with {workers} decoding workers "
                      f"and this machine's CPU share; {AVA_KEYFRAMES_PER_VIDEO} keyframes "
                      f"a video; model loading and the final merge not counted"}
    for split, detector in (("val", "detector"), ("train", "gt_boxes")):
        rate = rates.get(detector)
        if not rate:
            continue
        keyframes = AVA_SPLITS[split] * AVA_KEYFRAMES_PER_VIDEO
        out[split] = {"keyframes": keyframes, "boxes": detector,
                      "keyframes_per_s_one_gpu": rate,
                      "hours_1_gpu": keyframes / rate / 3600,
                      "hours_8_gpus": keyframes / rate / 8 / 3600}
    return out


# ----------------------------------------------------------------------------- runner

@dataclass
class Part:
    name: str
    run: object                  # function(ctx) -> dict
    kind: str                    # "setup" | "check" | "figure"
    limit_s: float               # at most this long
    min_s: float = 5.0           # skipped when less than this is left of the budget


PARTS = (
    Part("prepare", prepare, "setup", 60),
    Part("i3d", check_i3d, "check", 60),
    Part("roi", check_roi, "check", 20),
    Part("extract", check_extract, "check", 90, 30),
    Part("train-head", check_train_head, "check", 60, 15),
    Part("eval", check_eval, "check", 40, 10),
    Part("finetune-backbone", check_finetune_backbone, "check", 60, 20),
    Part("finetune-detector", check_finetune_detector, "check", 60, 20),
    Part("raft", check_raft, "check", 30),
    Part("backbones", check_backbones, "check", 150, 20),
    Part("i3d-speed", figure_i3d, "figure", 40, 15),
    Part("detector-speed", figure_detector, "figure", 30, 10),
    Part("raft-speed", figure_raft, "figure", 20, 10),
    Part("decode-speed", figure_decode, "figure", 40, 15),
    Part("extract-speed", figure_extract, "figure", 90, 30),
    Part("train-head-speed", figure_train_head, "figure", 90, 30),
    Part("eval-speed", figure_eval, "figure", 60, 20),
)


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise PartTimeout in the main thread after `seconds` (SIGALRM)."""
    def expire(signum, frame):
        raise PartTimeout(f"ran past its limit of {seconds:.3g} s")
    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_part(ctx: Context, part: Part, deadline: float) -> dict:
    """Run one part under min(its limit, what is left); its record for gpu_check.json."""
    import torch
    record = {"name": part.name, "kind": part.kind, "status": "ok", "seconds": 0.0}
    left = deadline - time.perf_counter()
    limit = min(part.limit_s, left)
    if left < part.min_s:
        note = f"{left:.0f} s of the budget left, it needs {part.min_s:g} s or more"
        record.update(status="skipped", note=note, summary=note)
        return record
    if ctx.cuda:
        torch.cuda.reset_peak_memory_stats(ctx.device)
    started = time.perf_counter()
    try:
        with time_limit(limit):
            record["values"] = part.run(ctx)
    except Skip as exc:
        record.update(status="absent" if str(exc).startswith("absent") else "skipped",
                      note=str(exc))
    except CheckFailed as exc:
        record.update(status="failed", note=str(exc))
    except PartTimeout as exc:
        record.update(status="timeout", note=str(exc))
    except Exception as exc:  # noqa: BLE001 - a crash is reported, the next part runs
        record.update(status="error", note=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc())
    record["seconds"] = round(time.perf_counter() - started, 2)
    if ctx.cuda:
        record["peak_gpu_gib"] = peak_gib(ctx)
        torch.cuda.empty_cache()
    values = record.get("values") or {}
    record["summary"] = values.pop("summary", record.get("note", ""))
    ctx.values[part.name] = values
    return record


#: (distribution, name in the log) of the packages whose versions the log's first line gives
VERSIONED = (("torch", "torch"), ("torchvision", "torchvision"), ("numpy", "numpy"),
             ("h5py", "h5py"), ("click", "click"), ("av", "av"), ("pillow", "PIL"),
             ("pyarrow", "pyarrow"))


def package_versions() -> dict:
    """{name: version or "absent"} of VERSIONED: the GPU machine's packages are not the
    ones the tests run with."""
    import importlib
    from importlib import metadata
    out = {}
    for dist, name in VERSIONED:
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = "absent"
        if name in ("torch", "torchvision") and version != "absent":
            version = importlib.import_module(name).__version__    # with its CUDA build
        out[name] = version
    return out


def device_info(device) -> dict:
    import torch
    import torchvision
    info = {"device": str(device), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "python": platform.python_version(),
            "cpus": os.cpu_count(), "host": platform.node()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}", cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    else:
        info["name"] = platform.processor() or "cpu"
    return info


def format_table(report: dict) -> str:
    lines = [f"gpu_check on {report['device']['name']} ({report['device']['device']}), "
             f"{report['mode']} sizes, {report['seconds']:.0f} s of a {report['budget_s']:.0f} s budget",
             f"{'part':<19} {'status':<8} {'s':>6} {'GPU GiB':>8}  result"]
    for r in report["parts"]:
        peak = r.get("peak_gpu_gib")
        lines.append(f"{r['name']:<19} {r['status']:<8} {r['seconds']:>6.1f} "
                     f"{'' if peak is None else f'{peak:.2f}':>8}  {r['summary']}")
    for split in ("val", "train"):
        p = report["projection"].get(split)
        if p:
            lines.append(f"AVA v2.1 {split} extraction ({p['keyframes']} keyframes, "
                         f"{p['boxes']}): {p['hours_1_gpu']:.2f} h on 1 GPU, "
                         f"{p['hours_8_gpus']:.2f} h on 8")
    if report["unchecked"]:
        lines.append("unchecked: " + "; ".join(f"{r['name']} ({r['status']}: {r['note']})"
                                                for r in report["parts"]
                                                if r["name"] in report["unchecked"]))
    if report["failed"]:
        lines.append("FAILED: " + "; ".join(f"{r['name']}: {r['note']}" for r in report["parts"]
                                           if r["name"] in report["failed"]))
    return "\n".join(lines)


def write_report(out: Path, report: dict, ctx: Context, started: float) -> None:
    """Complete `report` (projection, seconds, failed) and write OUT/gpu_check.json."""
    report["projection"] = projection(ctx.values, ctx.workers)
    report["seconds"] = time.perf_counter() - started
    report["failed"] = [r["name"] for r in report["parts"] if r["status"] in ("failed", "error")]
    report["unchecked"] = [r["name"] for r in report["parts"]
                           if r["status"] in ("timeout", "skipped")]
    tmp = out / "gpu_check.json.part"
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    os.replace(tmp, out / "gpu_check.json")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Details: the module docstring (head -51 of this file).")
    p.add_argument("--out", required=True, help="folder for gpu_check.json and gpu_check.log")
    p.add_argument("--device", default="cuda", help="cuda (the first GPU), cuda:N or cpu")
    p.add_argument("--tiny", action="store_true", help="tiny sizes (a test of the script)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds for all parts (default 450; --tiny: 120)")
    p.add_argument("--workers", type=int, default=None,
                   help="decoding processes (default: CPUs - 2, at most 14; --tiny: 2)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads, here and in the commands run (default: torch's, "
                        "one per core; --tiny: 1, fastest on a busy machine)")
    p.add_argument("--ava-size", default=None, metavar="WxH",
                   help="frame size of the figures' rendered video (default 1280x720)")
    p.add_argument("--only", default=None,
                   help="comma-separated parts to run (prepare always runs): "
                        + ", ".join(part.name for part in PARTS))
    p.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    missing = [what for name, what in REQUIRED if importlib.util.find_spec(name) is None]
    if missing:
        print(f"gpu_check: missing {', '.join(missing)} for {sys.executable}: run `make install` "
              f"(or, offline, `make gpu-wheels` and benchmarks/gpu_check.sh)", file=sys.stderr)
        return 2
    import torch
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "gpu_check.log")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: --device {args.device} but torch {torch.__version__} sees no CUDA "
              f"device (use --device cpu --tiny to test the script)", file=sys.stderr)
        return 2
    sizes = TINY if args.tiny else Sizes()
    if args.ava_size:
        sizes = Sizes(**{**asdict(sizes), "ava_size": tuple(map(int, args.ava_size.split("x")))})
    workers = args.workers or (2 if args.tiny else max(1, min(14, (os.cpu_count() or 4) - 2)))
    threads = args.threads if args.threads is not None else (1 if args.tiny else 0)
    if threads:
        torch.set_num_threads(threads)
    budget = args.budget or (120.0 if args.tiny else 450.0)
    deadline = time.perf_counter() + budget
    warnings.filterwarnings("ignore", message=".*RANDOM.*")
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu_check_"))
    ctx = Context(device=device, sizes=sizes, work=work, workers=workers, threads=threads,
                  log=log)
    versions = package_versions()
    log("gpu_check: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    report = {"versions": versions, "device": device_info(device),
              "mode": "tiny" if args.tiny else "full",
              "budget_s": budget, "sizes": asdict(sizes), "workers": workers,
              "threads": torch.get_num_threads(),
              "tolerances": {"fp32_rtol": FP32_RTOL, "autocast_rtol": AUTOCAST_RTOL,
                             "head_loss_rtol": HEAD_LOSS_RTOL, "score_atol": SCORE_ATOL,
                             "map_atol": MAP_ATOL, "raft_rtol": RAFT_RTOL},
              "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "parts": []}
    log(f"gpu_check: {report['device']}, {report['mode']} sizes, budget {budget:.0f} s, "
        f"work {work}")
    only = set(args.only.split(",")) if args.only else None
    started = time.perf_counter()
    for part in PARTS:
        if only is not None and part.name not in only and part.kind != "setup":
            continue
        log(f"{part.name} ...")
        record = run_part(ctx, part, deadline)
        report["parts"].append(record)
        log(f"{part.name}: {record['status']} in {record['seconds']:.1f} s: {record['summary']}")
        if record.get("traceback"):
            log(record["traceback"])
        write_report(out, report, ctx, started)      # after every part: a killed run tells
        if part.kind == "setup" and record["status"] != "ok":
            break
    write_report(out, report, ctx, started)
    table = format_table(report)
    log.file.write(table + "\n")
    log.file.close()
    print(table)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if report["failed"] else 3 if report["unchecked"] else 0


if __name__ == "__main__":
    sys.exit(main())
