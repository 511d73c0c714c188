"""`hgrnn finetune-detector`: fine-tune a class-agnostic Faster R-CNN on AVA person boxes.

The paper's person detector: Faster R-CNN with a ResNet-101 backbone initialised from
ImageNet, fine-tuned on the person boxes of AVA's training set (Adam, lr 1e-5 halved at
regular intervals, 100K steps, batch 20), reported at 89.09 person AP on validation.

Model (`hgrnn.pipeline.detect.build_detector`): torchvision FasterRCNN on a ResNet FPN
backbone, two classes (background, person). Init: ImageNet ResNet weights (frozen
BatchNorm, the top `trainable_layers` of 5 ResNet stages train), torchvision's COCO
ResNet-50 model with its predictor cut to (background, person), or random (BatchNorm
trains, all stages train).

Data. Training keyframes are the keyframes of the annotation CSV with at least one box;
each distinct box of a keyframe is one person, whatever its actions (`group_persons`).
Keyframe images come from the keyframe cache (`hgrnn.pipeline.keyframe_cache`; decoded once
with the extraction decoder at short side min_size, the size torchvision's detection
transform resizes to). Each image is flipped left-right with probability flip_prob; the
model's own transform then resizes it to min_size / max_size and normalises it.

Sample order (exact resume). Sample number n (counted over the whole run and all ranks) is
keyframe perm_e[n mod N] of epoch e = n div N, perm_e = permutation of the N keyframes drawn
from (seed, e), flipped when a generator seeded with (seed, n) draws below flip_prob.
Optimizer step s takes samples s*B .. s*B + B - 1 with B = W ranks x accumulate x micro;
micro-batch m of rank r takes micro of them. The order is a function of the step alone, and
the torch RNG (proposal sampling) is saved with the weights, so a run resumed from a
checkpoint is the same run as one that was never interrupted.

Optimisation: Adam, lr halved every lr_halve_every optimizer steps (StepLR), loss = the sum
of torchvision's four losses (RPN objectness + box regression, box classifier + box
regression), divided by accumulate. Autocast (bf16 where supported, else fp16 with a
gradient scaler) on CUDA. DistributedDataParallel under torchrun like `finetune-backbone`;
rank 0 logs, validates and writes checkpoints.

Validation: every val_every steps (and at step 0 and at the end) rank 0 detects persons on
the validation keyframes with `detect.detect_persons` (the same function as `hgrnn detect`)
and scores them with `hgrnn.metrics.evaluate_persons` (class-agnostic person AP@0.5).

Outputs in out_dir:
  detector.pt    the checkpoint `hgrnn detect --detector` and `extract-features --detector`
                 take (format in `hgrnn.pipeline.detect`)
  state.pt       everything to resume (`hgrnn.pipeline.trainloop.TrainState`): model,
                 optimizer, LR schedule, gradient scaler, step, torch RNG state, config
  metrics.jsonl  {"step", "split": "train", "loss", "loss_objectness", "loss_rpn_box_reg",
                 "loss_classifier", "loss_box_reg", "lr", "images_per_s", "epoch"} every
                 log_every steps (means over the window's micro-batches of rank 0), and
                 {"step", "split": "val", "AP", "mAP", "counts", ...} after each validation;
                 on resume, lines after the resumed step are dropped first
  loss.png       the loss curve (log scale) with the validation person AP (in percent)
The steps, validations, checkpoints and resume are the training loop `finetune-backbone`
shares (`hgrnn.pipeline.trainloop.run_steps`; this module's part is `_DetectorSteps`).
  config.json    the config, world size and micro-batch
  keyframes/     the keyframe cache (unless `cache` names another folder)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from hgrnn import metrics
from hgrnn.console import progress_bar
from hgrnn.data.ava import AvaRows, group_persons, read_annotations, read_exclusions
from hgrnn.pipeline.detect import (DETECTOR_FORMAT, DETECTOR_VERSION, DetectorError,
                                   PersonDetector, build_detector, detect_persons)
from hgrnn.pipeline.finetune import resolve_sources
from hgrnn.pipeline.keyframe_cache import (cache_settings, cached_timestamps, fill_cache,
                                           open_cache, read_keyframe)
from hgrnn.pipeline import trainloop
from hgrnn.pipeline.trainloop import (MetricsLog, Stage, TrainState, autocast, micro_batch,
                                      resume_state, run_folder, run_steps, save_file,
                                      setup_distributed, wrap_ddp, write_run_config)
from hgrnn.pipeline.detect_config import FinetuneDetectorConfig

log = logging.getLogger(__name__)

#: the four losses torchvision's Faster R-CNN returns in training mode
LOSS_NAMES = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg")
#: config fields a resumed run must share with the saved one
ARCH_FIELDS = ("backbone", "init", "trainable_layers", "min_size", "max_size",
               "proposals_train", "proposals_test", "roi_batch", "box_head_dim",
               "fpn_dim")


# ----------------------------------------------------------------------------- data

@dataclass(frozen=True)
class PersonKeyframe:
    """The distinct person boxes (P, 4) float32 normalised xyxy of one keyframe."""
    video_id: str
    timestamp: int
    boxes: np.ndarray


def person_keyframes(path, exclusions=None) -> list[PersonKeyframe]:
    """Ground-truth CSV -> keyframes with >= 1 box, each box once, sorted by (video, time)."""
    persons = group_persons(read_annotations(path, None, exclusions, progress=False),
                            metrics.PERSON_LABEL_MAP)
    out = []
    key = np.char.add(np.char.add(persons.video_ids.astype(str), "\x00"),
                      persons.timestamps.astype(str))
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else []
    ends = np.r_[starts[1:], len(key)] if len(key) else []
    for s, e in zip(starts, ends):
        out.append(PersonKeyframe(str(persons.video_ids[s]), int(persons.timestamps[s]),
                                  persons.boxes[s:e].astype(np.float32)))
    return out


def flip_image(image: np.ndarray, boxes_px: np.ndarray):
    """Mirror left-right: image (H, W, 3), boxes (P, 4) pixel xyxy -> the mirrored image and
    boxes (x1, x2 -> W - x2, W - x1)."""
    width = image.shape[1]
    flipped = np.stack([width - boxes_px[:, 2], boxes_px[:, 1], width - boxes_px[:, 0],
                        boxes_px[:, 3]], axis=1)
    return np.ascontiguousarray(image[:, ::-1]), flipped.astype(np.float32)


class KeyframeSamples(torch.utils.data.Dataset):
    """Sample number n -> (image uint8 (H, W, 3) tensor, boxes (P, 4) float32 pixel tensor)
    following the module docstring's order (any n >= 0)."""

    def __init__(self, keyframes: list[PersonKeyframe], cache_root, seed: int, flip_prob: float):
        self.keyframes, self.cache_root = keyframes, str(cache_root)
        self.seed, self.flip_prob = seed, flip_prob
        self._perm = (None, None)        # (epoch, permutation) of the last epoch used

    def keyframe_of(self, n: int) -> int:
        epoch, i = divmod(int(n), len(self.keyframes))
        if self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(
                len(self.keyframes)))
        return int(self._perm[1][i])

    def __getitem__(self, n: int):
        kf = self.keyframes[self.keyframe_of(n)]
        image = read_keyframe(self.cache_root, kf.video_id, kf.timestamp)
        h, w = image.shape[:2]
        boxes = kf.boxes * np.array([w, h, w, h], np.float32)
        if np.random.default_rng([self.seed, int(n), 7]).random() < self.flip_prob:
            image, boxes = flip_image(image, boxes)
        return torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(boxes)

    def __len__(self):
        return len(self.keyframes)


class StepBatches(torch.utils.data.Sampler):
    """Micro-batches of sample numbers for one rank, from optimizer step `start` to `stop`:
    step s, micro-batch m, rank r -> s*B + (m*W + r)*micro + [0, micro)."""

    def __init__(self, start: int, stop: int, micro: int, accumulate: int, rank: int, world: int):
        self.start, self.stop, self.micro = start, stop, micro
        self.accumulate, self.rank, self.world = accumulate, rank, world

    def __iter__(self):
        per_step = self.micro * self.accumulate * self.world
        for s in range(self.start, self.stop):
            for m in range(self.accumulate):
                first = s * per_step + (m * self.world + self.rank) * self.micro
                yield list(range(first, first + self.micro))

    def __len__(self):
        return (self.stop - self.start) * self.accumulate


def _collate(samples):
    return samples


# ----------------------------------------------------------------------------- person AP

def detections_to_rows(keys, detections):
    """[(video_id, timestamp)] and `detect_persons` outputs -> AvaRows of person boxes
    (action -1, scores)."""
    counts = [len(d["scores"]) for d in detections]
    vids = np.repeat(np.asarray([k[0] for k in keys], dtype=str), counts)
    stamps = np.repeat(np.asarray([k[1] for k in keys], np.int64), counts)
    boxes = (np.concatenate([d["boxes"] for d in detections]) if detections
             else np.zeros((0, 4), np.float32))
    scores = (np.concatenate([d["scores"] for d in detections]) if detections
              else np.zeros(0, np.float32))
    return AvaRows.from_arrays(vids, stamps, boxes.reshape(-1, 4),
                               np.full(len(scores), -1, np.int64), scores=scores)


@torch.no_grad()
def validate_detector(model, keyframes: list[PersonKeyframe], cache_root, gt_rows, device,
                      protocol="ava-2018", batch: int = 4, progress=False) -> dict:
    """Person AP of `model` on cached validation keyframes (whole images, no flip).
    Returns EvalResult.to_dict() plus "AP" (the person AP)."""
    was_training = model.training
    model.eval()
    detector = PersonDetector(model, torch.device(device), 0, {})
    keys, detections = [], []
    for i in progress_bar(range(0, len(keyframes), batch), desc="validate", leave=False,
                  disable=not progress):
        chunk = keyframes[i:i + batch]
        images = [read_keyframe(cache_root, k.video_id, k.timestamp) for k in chunk]
        detections += detect_persons(detector, images, min_score=0.0, max_persons=100)
        keys += [(k.video_id, k.timestamp) for k in chunk]
    model.train(was_training)
    results = detections_to_rows(keys, detections)
    if len(results) == 0:                # nothing above the model's score threshold yet
        return {"AP": 0.0, "mAP": 0.0, "per_class": {"person": 0.0}, "protocol": protocol,
                "counts": {"results": 0}}
    result = metrics.evaluate_persons(gt_rows, results, protocol=protocol).to_dict()
    result["AP"] = result["mAP"]
    return result


# ----------------------------------------------------------------------------- outputs

def checkpoint_dict(model, config: FinetuneDetectorConfig, step: int, val=None) -> dict:
    """The `detector.pt` content; tensors on CPU."""
    return {"format": DETECTOR_FORMAT, "version": DETECTOR_VERSION,
            "arch": dataclasses.asdict(config.arch()),
            "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            "config": config.to_json(), "step": int(step),
            "val": None if val is None else json.dumps(val)}


#: loss.png of a detector run (`trainloop.plot_loss`)
CHART = {"title": "finetune-detector", "parts": LOSS_NAMES,
         "loss_label": "training loss (sum of 4 parts)", "val_key": "AP",
         "val_label": "val person AP@0.5 (%)"}


def plot_loss(metrics: list[dict], path) -> bool:
    """Training loss (total and its four parts, log scale) and validation person AP (in
    percent) against step, as a PNG. False when matplotlib is missing or there is nothing
    to plot."""
    return trainloop.plot_loss(metrics, path, **CHART)


# ----------------------------------------------------------------------------- training

def _prepare_cache(config: FinetuneDetectorConfig, keyframes, val_keyframes, rank, world,
                   progress):
    """Fill the keyframe cache (videos dealt round-robin to ranks) and drop the keyframes of
    videos that failed. Returns (keyframes, val_keyframes, failures)."""
    settings = cache_settings(short_side=config.min_size, time_offset=config.time_offset,
                              fps=config.fps, quality=config.cache_quality)
    root = config.cache_dir()
    if rank == 0:
        open_cache(root, settings)
    if world > 1:
        dist.barrier()
    open_cache(root, settings)
    sources = resolve_sources(config, [k.video_id for k in keyframes + val_keyframes])
    wanted: dict = {}
    for k in keyframes + val_keyframes:
        wanted.setdefault(k.video_id, (sources[k.video_id], set()))[1].add(k.timestamp)
    mine = {vid: wanted[vid] for vid in sorted(wanted)[rank::world]}
    failures = fill_cache(root, settings, mine, workers=config.num_workers,
                          progress=progress and rank == 0)
    if world > 1:
        gathered = [None] * world
        dist.all_gather_object(gathered, failures)
        failures = {k: v for part in gathered for k, v in part.items()}
    have = {vid: cached_timestamps(root, vid) for vid in wanted}
    keep = [k for k in keyframes if k.timestamp in have[k.video_id]]
    keep_val = [k for k in val_keyframes if k.timestamp in have[k.video_id]]
    if len(keep) < len(keyframes) and rank == 0:
        log.warning("finetune-detector: %d of %d training keyframes could not be decoded "
                    "(videos: %s); training without them", len(keyframes) - len(keep),
                    len(keyframes), ", ".join(sorted(failures)) or "?")
    return keep, keep_val, failures


class _DetectorSteps(Stage):
    """finetune-detector's part of the training loop (`trainloop.run_steps`): micro-batches
    of cached keyframes, torchvision's four losses, person-AP validation, detector.pt."""

    chart = CHART

    def __init__(self, *, model, net, train, batches, config, device, world, n_keyframes,
                 batch, val_keyframes, val_gt, ckpt_path, state_path, progress):
        self.model, self.net, self.train, self.batches = model, net, train, batches
        self.config, self.device, self.world = config, device, world
        self.n_keyframes, self.batch = n_keyframes, batch
        self.val_keyframes, self.val_gt = val_keyframes, val_gt
        self.ckpt_path, self.state_path, self.progress = ckpt_path, state_path, progress
        self.validates = bool(val_keyframes)
        model.train()

    def micro_step(self):
        images, targets = _to_device(next(self.batches), self.device)
        with autocast(self.device):
            losses = self.net(images, targets)
        return sum(losses.values()), {"images": len(images), **{
            name: float(losses[name].detach()) for name in LOSS_NAMES}}

    def train_record(self, step, window, seconds, lr):
        parts = {name: window[name] / max(window["n"], 1) for name in LOSS_NAMES}
        return {"loss": sum(parts.values()), **parts, "lr": lr,
                "images_per_s": window["images"] * self.world / seconds,
                "epoch": (step * self.batch) // max(self.n_keyframes, 1)}

    def validate(self, step):
        result = validate_detector(self.model, self.val_keyframes, self.config.cache_dir(),
                                   self.val_gt, self.device, self.config.protocol,
                                   progress=self.progress)
        log.info("step %d: validation person AP %s %%", step,
                 metrics.format_percent(result["AP"]))
        return result

    def save(self, step, val):
        save_file(checkpoint_dict(self.model, self.config, step, val), self.ckpt_path,
                  DetectorError)
        self.train.save(self.state_path, step=step, config_json=self.config.to_json(), val=val)

    def close(self):
        del self.batches                               # ends the DataLoader workers


def finetune_detector(config: FinetuneDetectorConfig, resume: bool = False,
                      progress: bool = True) -> dict:
    """Fine-tune the person detector (module docstring). Returns {"checkpoint": path of
    detector.pt, "val": last validation dict or None, "steps", "seconds", "failed": {video:
    reason}}. Under torchrun every rank calls this; rank 0 writes the outputs."""
    t_start = time.time()
    rank, world, _local_rank, device = setup_distributed(config.device, config.num_threads)
    out_dir, state_path, ckpt_path = run_folder(config.out_dir, "detector.pt", rank)
    metrics_path = out_dir / "metrics.jsonl"
    if not resume and (state_path.exists() or ckpt_path.exists()):
        raise DetectorError(f"{out_dir}: already holds a detector run (detector.pt/state.pt); "
                            f"pass --resume to continue it or choose another --out")

    exclusions = read_exclusions(config.exclusions) if config.exclusions else None
    keyframes = person_keyframes(config.annotations, exclusions)
    if not keyframes:
        raise DetectorError(f"{config.annotations}: no keyframe with a person box")
    val_keyframes, val_gt, val_excl = [], None, None
    if config.val_annotations:
        val_excl = read_exclusions(config.val_exclusions) if config.val_exclusions else None
        val_keyframes = person_keyframes(config.val_annotations, val_excl)
        if config.val_max_keyframes:
            val_keyframes = val_keyframes[:config.val_max_keyframes]
    keyframes, val_keyframes, failures = _prepare_cache(config, keyframes, val_keyframes,
                                                        rank, world, progress)
    if not keyframes:
        raise DetectorError(f"{config.annotations}: no training keyframe could be decoded")
    if config.val_annotations:
        val_gt = read_annotations(config.val_annotations, None, val_excl, progress=False)
        kept = {(k.video_id, k.timestamp) for k in val_keyframes}
        val_gt = val_gt.take(np.array([(v, int(t)) in kept for v, t in
                                       zip(val_gt.video_ids, val_gt.timestamps)], bool))

    torch.manual_seed(config.seed + rank)
    model, init_meta = build_detector(config.arch(), init=config.init,
                                      init_weights=config.init_weights)
    model.to(device)
    train = TrainState(model, config.lr, config.lr_halve_every, device, DetectorError)
    state = resume_state(train, state_path, resume, config, ARCH_FIELDS,
                         metrics_path=metrics_path, rank=rank, out_hint="--out")
    step, last_val = (0, None) if state is None else (state["step"], state["val"])

    net = wrap_ddp(model, world, device)
    micro = micro_batch(config.batch_size, world, config.accumulate)
    samples = KeyframeSamples(keyframes, config.cache_dir(), config.seed, config.flip_prob)
    loader = torch.utils.data.DataLoader(
        samples, batch_sampler=StepBatches(step, config.steps, micro, config.accumulate, rank,
                                           world),
        num_workers=config.num_workers, collate_fn=_collate,
        generator=torch.Generator(),                # leaves the global RNG alone (resume)
        pin_memory=device.type == "cuda")
    metrics_log = MetricsLog(metrics_path, rank)
    if rank == 0:
        write_run_config(out_dir, config, world, micro, initial_weights=init_meta,
                         failed_videos=failures)
        log.info("fine-tuning the detector on %d keyframes of %d videos; batch %d = %d ranks x "
                 "%d accumulation x %d images", len(keyframes),
                 len({k.video_id for k in keyframes}), micro * world * config.accumulate,
                 world, config.accumulate, micro)

    stage = _DetectorSteps(model=model, net=net, train=train, batches=iter(loader),
                           config=config, device=device, world=world,
                           n_keyframes=len(keyframes), batch=micro * world * config.accumulate,
                           val_keyframes=val_keyframes, val_gt=val_gt, ckpt_path=ckpt_path,
                           state_path=state_path, progress=progress)
    step, last_val = run_steps(stage, train, net, config, step=step, last_val=last_val,
                               world=world, rank=rank, metrics_log=metrics_log,
                               checkpoint_path=ckpt_path, progress=progress,
                               desc="finetune-detector", validate_first=True)
    return {"checkpoint": str(ckpt_path), "val": last_val, "steps": step,
            "seconds": time.time() - t_start, "failed": failures}


def _to_device(batch, device):
    """[(image uint8 (H, W, 3), boxes (P, 4) pixels)] -> (list of (3, H, W) float in [0, 1],
    list of {"boxes", "labels"} targets) on `device`."""
    images, targets = [], []
    for image, boxes in batch:
        images.append(image.to(device, non_blocking=True).permute(2, 0, 1).float().div_(255))
        boxes = boxes.to(device)
        targets.append({"boxes": boxes,
                        "labels": torch.ones(len(boxes), dtype=torch.int64, device=device)})
    return images, targets
