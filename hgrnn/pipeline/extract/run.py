"""The extraction run: `extract_features` (the steps, top to bottom), `Run` (the main
process's side: gathers each video's batches, writes it, counts) and the end-of-run summary
(`format_summary`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from hgrnn.console import progress_bar
from hgrnn.data.ava import load_label_map
from hgrnn.data.keyframes import summarize_outside
from hgrnn.data.store import PersonSet, StoreError, StoreWriter, lock_for_writing
from hgrnn.pipeline.detect import detect_persons, load_person_detector
from hgrnn.pipeline.extract.config import ExtractConfig
from hgrnn.pipeline.extract.features import StreamModels, load_models, stream_features
from hgrnn.pipeline.extract.loader import Clips, Done, Failed, Note, Outside, Start, make_loader
from hgrnn.pipeline.extract.plan import KEYFRAME_ORIGINS, Inputs, empty_persons, read_inputs
from hgrnn.pipeline.extract.shards import (Dist, complete_videos, device_for, existing_shards,
                                           merge_shards, shard_items, shard_path)
from hgrnn.pipeline.extract.stage import check_resume_settings, stage_config


def extract_features(cfg: ExtractConfig) -> dict:
    """Run the extraction stage (see the package docstring). Returns a summary dict: written,
    skipped (already complete), failed {video_id: reason}, keyframes, keyframe_origins
    {origin: keyframes of the written videos} (KEYFRAME_ORIGINS), persons {gt, det},
    below_threshold (detections of --detections dropped by det_threshold),
    decoded_frames, needed_frames, seconds, out. Under torchrun every rank returns the
    summary of all ranks."""
    cfg.validate()
    cfg = cfg.resolved()            # clip settings left to the backbone: its own
    started = time.time()
    dist = Dist.from_env()
    shards = existing_shards(cfg.out)
    my_path = shard_path(cfg.out, dist.rank) if (dist.active or shards) else cfg.out
    # the store's own lock first, held until the writer owns it: a second writer is refused
    # at once, naming the first (HDF5's file lock, met when the settings are read, names no one)
    lock = lock_for_writing(my_path)
    try:
        ready = _prepare(cfg, dist, shards)
        dist.barrier()
    except BaseException:
        lock.release()
        raise
    inputs, nets, detector, device, done = (ready.inputs, ready.nets, ready.detector,
                                            ready.device, ready.done)

    missing = {vid: reason for vid, reason in inputs.missing.items() if vid not in done}
    todo = [p for p in inputs.plans if p.video_id not in done]
    mine = shard_items(todo, dist.rank, dist.world)

    show = cfg.progress and dist.rank == 0
    with StoreWriter(my_path, feature_dim=nets.feature_dim, label_map=ready.label_map,
                     configs={"extract": ready.stage}, streams=nets.layout, lock=lock) as writer:
        run = Run(writer, mine, show, dist)
        if dist.rank == 0:
            run.record_missing(missing)
        loader = make_loader(mine, cfg, device,
                             cfg.det_short_side if detector is not None else None,
                             nets.worker_flow)
        _consume(loader, run, cfg, nets, detector, inputs.gt, inputs.det,
                 len(ready.label_map), device)
        run.close()

    everyone = dist.gather(run.counts)
    if dist.rank == 0 and (dist.active or shards):
        merge_shards(cfg.out, show)
    dist.barrier()
    summary = _summary(cfg.out, everyone,
                       skipped=len(done & {p.video_id for p in inputs.plans}),
                       seconds=time.time() - started, ranks=dist.world)
    summary["rows_outside_label_map"] = inputs.outside_map
    summary["below_threshold"] = inputs.below_threshold
    summary["det_threshold"] = cfg.det_threshold
    return summary


@dataclass
class _Ready:
    """What `_prepare` found: the label map, the inputs (`read_inputs`), this rank's device,
    the networks, the person detector (or None), the stage config and the ids of the videos
    complete already (in the store and its shards)."""
    label_map: object
    inputs: Inputs
    device: torch.device
    nets: StreamModels
    detector: object
    stage: dict
    done: set


def _prepare(cfg: ExtractConfig, dist: Dist, shards: list) -> _Ready:
    """Read the inputs, load the networks on this rank's device, and check the store (and
    its shards) against the stage config."""
    label_map = load_label_map(cfg.label_map)
    inputs = read_inputs(cfg, label_map)
    device = device_for(cfg.device, dist, torch.cuda.is_available())
    if device.type == "cuda":
        # the rank's own GPU as the current device: pin_memory and any "cuda" tensor of a
        # library otherwise land on (and open a context on) GPU 0 in every rank
        torch.cuda.set_device(device)
    nets = load_models(cfg, device)
    detector = None
    if cfg.detector:
        detector = load_person_detector(cfg.detector, weights=cfg.detector_weights,
                                        device=device, min_score=cfg.det_threshold,
                                        max_persons=cfg.max_persons,
                                        short_side=cfg.det_short_side)
    stage = stage_config(cfg, nets.metas.get("rgb"), detector.meta if detector else None,
                         nets.feature_dim, nets.projected,
                         flow_backbone_meta=nets.metas.get("flow"),
                         flow_meta=nets.flow.meta() if nets.flow is not None else None,
                         layout=nets.layout)
    # what is done already (read before anyone writes)
    check_resume_settings([cfg.out, *shards], stage)
    done = complete_videos(cfg.out)
    for s in shards:
        done |= complete_videos(s)
    return _Ready(label_map, inputs, device, nets, detector, stage, done)


def _consume(loader, run: "Run", cfg: ExtractConfig, nets: StreamModels, detector, gt, det,
             num_classes: int, device) -> None:
    """The main loop: each loader message to `run`; the features of each Clips batch
    (persons from gt / det or the detector) computed here, on `device`."""
    autocast = torch.autocast("cuda", dtype=torch.float16, enabled=device.type == "cuda")
    for message in loader:
        vid = message.video_id
        if isinstance(message, Start):
            run.start(vid, timestamps=message.timestamps)
        elif isinstance(message, Outside):
            run.outside_keyframes(vid, message.timestamps, text=message.text)
        elif isinstance(message, Note):
            run.note(vid, message.text)
        elif isinstance(message, Clips):
            ts, clips, clip_flow, seconds = (message.timestamps, message.clips, message.flow,
                                             message.flow_seconds)
            if nets.flow is not None and clip_flow is None:       # RAFT on the GPU, here
                before = nets.flow.seconds
                clip_flow = nets.flow(clips.to(device, non_blocking=True))
                seconds = nets.flow.seconds - before
            if clip_flow is not None:
                run.add_flow(clip_flow.shape[0] * clip_flow.shape[1], seconds)
            gt_sets = [(gt or {}).get(vid, {}).get(int(t), empty_persons(num_classes))
                       for t in ts]
            if detector is not None:
                det_sets = detect_persons(detector, message.keyframes, cfg.det_threshold,
                                          cfg.max_persons)
            elif det is not None:
                det_sets = [det.get(vid, {}).get(int(t), empty_persons(num_classes)) for t in ts]
            else:
                det_sets = None
            clip_feat, split = stream_features(nets.models, cfg.streams, clips, clip_flow,
                                               gt_sets + (det_sets or []), device, autocast,
                                               cfg.person_layer)
            run.add_batch(vid, ts, clip_feat, gt_sets, det_sets, split)
        elif isinstance(message, Done):
            run.write_video(vid, stats=message.stats, with_gt=gt is not None)
        elif isinstance(message, Failed):
            run.fail(vid, reason=message.reason)


def person_set(entries, ground_truth: bool) -> PersonSet:
    """[(person dict, feats (n, C)) per keyframe] -> PersonSet (labels for ground truth;
    person ids for ground truth, and for detections whose CSV has them: `hgrnn track`'s
    9th column, kept as det/person_id)."""
    ids = [p.get("person_ids") for p, _ in entries]       # None: from the detector
    tracked = all(i is not None for i in ids) and any((i >= 0).any() for i in ids)
    return PersonSet.from_lists(
        [p["boxes"] for p, _ in entries], [f for _, f in entries],
        [p["scores"] for p, _ in entries],
        [p["labels"] for p, _ in entries] if ground_truth else None,
        ids if ground_truth or tracked else None)


class Run:
    """The main process's side of one extraction: gathers each video's batches, writes the
    video when its last batch is in, records failures, counts, and drives the progress bar."""

    def __init__(self, writer, plans, show: bool, dist: Dist):
        self.writer = writer
        self.show = show             # failures are said as they happen when a bar is shown
        self.plan_of = {p.video_id: p for p in plans}
        self.state: dict = {}        # video id -> accumulated results
        self.failed: dict = {}
        self.outside: dict = {}      # video id -> keyframes skipped as outside the video
        self.notes: set = set()
        self.counts = {"written": 0, "failed": self.failed, "keyframes": 0,
                       "persons": {"gt": 0, "det": 0}, "decoded_frames": 0, "needed_frames": 0,
                       "outside": self.outside,
                       "keyframe_origins": dict.fromkeys(KEYFRAME_ORIGINS, 0),
                       "flow_pairs": 0, "flow_seconds": 0.0}
        total = sum(len(p.timestamps) for p in plans if p.timestamps is not None)
        self.bar = progress_bar(total=total, unit="kf",
                        desc="extract" if not dist.active else f"extract rank 0/{dist.world}",
                        disable=not show, dynamic_ncols=True, smoothing=0.05)

    def record_missing(self, missing: dict) -> None:
        """Videos named by the CSVs without a file: recorded as failed up front."""
        for vid, reason in missing.items():
            self.writer.record_failure(vid, reason)
            self.failed[vid] = reason
        if missing:
            shown = ", ".join(list(missing)[:10]) + (" ..." if len(missing) > 10 else "")
            tqdm.write(f"extract-features: {len(missing)} video(s) named by the CSVs are "
                       f"missing (recorded as failed): {shown}")

    def outside_keyframes(self, vid, timestamps, text: str) -> None:
        """Keyframes of `vid` outside the video: skipped (not fatal), reported."""
        self.outside[vid] = len(timestamps)
        self.bar.total -= len(timestamps)
        tqdm.write(f"extract-features: skipped {text}")

    def note(self, vid, text: str) -> None:
        """A warning about a video's settings, printed once per run."""
        if text not in self.notes:
            self.notes.add(text)
            tqdm.write(f"extract-features: warning: {vid}: {text}")

    def start(self, vid, timestamps) -> None:
        self.state[vid] = {"ts": [], "clip": [], "gt": [], "det": [], "planned": len(timestamps)}
        if self.plan_of[vid].timestamps is None:      # every-second: count known now
            self.bar.total += len(timestamps)
            self.bar.refresh()

    def add_flow(self, pairs: int, seconds: float) -> None:
        """A batch's flow: frame pairs and the seconds they took (in a worker or here)."""
        self.counts["flow_pairs"] += int(pairs)
        self.counts["flow_seconds"] += float(seconds)
        self._postfix()

    def _postfix(self) -> None:
        c, extra = self.counts, {}
        if c["flow_seconds"] > 0:   # seconds summed over the workers: the rate of one worker
            extra["flow"] = f"{c['flow_pairs'] / c['flow_seconds']:.1f} pairs/s/worker"
        self.bar.set_postfix(done=c["written"], failed=len(self.failed), **extra, refresh=False)

    def add_batch(self, vid, ts, clip_feat, gt_sets, det_sets, split) -> None:
        """One batch's features: clip_feat (n, C); split: person features of gt_sets, then
        of det_sets (when not None)."""
        st, n = self.state[vid], len(ts)
        st["ts"].extend(int(t) for t in ts)
        st["clip"].append(clip_feat)
        st["gt"].extend((s, f) for s, f in zip(gt_sets, split[:n]))
        if det_sets is not None:
            st["det"].extend((s, f) for s, f in zip(det_sets, split[n:]))
        self.bar.update(n)
        self.counts["keyframes"] += n

    def write_video(self, vid, stats: dict, with_gt: bool) -> None:
        st = self.state.pop(vid)
        ps = {}
        if with_gt:
            ps["gt"] = person_set(st["gt"], ground_truth=True)
        if st["det"]:
            ps["det"] = person_set(st["det"], ground_truth=False)
        try:
            self.writer.add_video(vid, np.asarray(st["ts"], np.int64),
                                  np.concatenate(st["clip"]), gt=ps.get("gt"),
                                  det=ps.get("det"), width=stats.get("width"),
                                  height=stats.get("height"))
        except StoreError as exc:          # bad input for this video: record, go on
            self.writer.record_failure(vid, str(exc))
            self.failed[vid] = str(exc)
            self._say_failed(vid, str(exc))
            return
        c = self.counts
        c["written"] += 1
        for name, p in ps.items():
            c["persons"][name] += len(p.boxes)
        origin = self.plan_of[vid].origin or "every second"
        for t in st["ts"]:              # the keyframes written (skipped ones are not)
            c["keyframe_origins"][origin[t] if isinstance(origin, dict) else origin] += 1
        c["decoded_frames"] += stats.get("decoded_frames", 0)
        c["needed_frames"] += stats.get("converted_frames", 0)
        self._postfix()

    def fail(self, vid, reason: str) -> None:
        st = self.state.pop(vid, None)   # results of its earlier batches are dropped
        plan = self.plan_of[vid]
        planned = (len(plan.timestamps) if plan.timestamps is not None
                   else st["planned"] if st is not None else 0) - self.outside.get(vid, 0)
        self.bar.total -= planned - (len(st["ts"]) if st is not None else 0)  # ends at 100%
        self.writer.record_failure(vid, reason)
        self.failed[vid] = reason
        self._postfix()
        self._say_failed(vid, reason)

    def _say_failed(self, vid, reason: str) -> None:
        if self.show:
            tqdm.write(f"extract-features: FAILED {vid}: {reason}")

    def close(self) -> None:
        self.bar.close()


def _summary(out, parts: list, skipped: int, seconds: float, ranks: int) -> dict:
    """The run's summary from every rank's counts."""
    summary = {"out": str(out), "written": 0, "skipped": skipped,
               "failed": {}, "keyframes": 0, "persons": {"gt": 0, "det": 0},
               "keyframe_origins": dict.fromkeys(KEYFRAME_ORIGINS, 0),
               "decoded_frames": 0, "needed_frames": 0, "outside": {},
               "flow_pairs": 0, "flow_seconds": 0.0,
               "seconds": seconds, "ranks": ranks, "rows_outside_label_map": {}}
    for part in parts:
        summary["written"] += part["written"]
        summary["failed"].update(part["failed"])
        summary["outside"].update(part["outside"])
        summary["keyframes"] += part["keyframes"]
        for k in ("gt", "det"):
            summary["persons"][k] += part["persons"][k]
        for k, n in part["keyframe_origins"].items():
            summary["keyframe_origins"][k] += n
        for k in ("decoded_frames", "needed_frames", "flow_pairs", "flow_seconds"):
            summary[k] += part[k]
    return summary


def format_summary(summary: dict, failures_shown: bool = False) -> str:
    """Human-readable end-of-run summary (several lines). failures_shown: the FAILED lines
    were printed as they happened, so they are counted here, not repeated."""
    s = summary
    lines = [f"extract-features: {s['out']}: {s['written']} video(s) written "
             f"({s['keyframes']} keyframes, {s['persons']['gt']} gt persons, "
             f"{s['persons']['det']} det persons), {s['skipped']} already complete, "
             f"{len(s['failed'])} failed, {s['seconds']:.1f} s"
             + (f" on {s['ranks']} ranks" if s.get("ranks", 1) > 1 else "")]
    origins = {k: n for k, n in s.get("keyframe_origins", {}).items() if n}
    if origins:
        lines.append("  keyframes written: " + ", ".join(f"{n} {k}" for k, n in origins.items())
                     + ("  (detected only: no ground truth there, their detections count as "
                        "the official evaluation counts them)" if origins.get("detected only")
                        else ""))
    if s["needed_frames"]:
        lines.append(f"  decoded {s['decoded_frames']} frames, {s['needed_frames']} of them used by clips "
                     f"({s['decoded_frames'] / s['needed_frames']:.3f}x)")
    if s.get("below_threshold"):
        lines.append(f"  {s['below_threshold']} detection(s) of --detections scored below "
                     f"--det-threshold {s['det_threshold']:g}: dropped (not in 'det')")
    for source, n in (s.get("rows_outside_label_map") or {}).items():
        if n:
            lines.append(f"  {n} {source} row(s) with actions outside the label map: their "
                         "persons are kept, without those labels")
    if s.get("outside"):
        lines.append("  " + summarize_outside(s["outside"]))
    if s.get("flow_pairs"):
        lines.append(f"  flow: {s['flow_pairs']} frame pairs in {s['flow_seconds']:.1f} s of "
                     f"flow computation ({s['flow_pairs'] / max(s['flow_seconds'], 1e-9):.1f} "
                     f"pairs/s per worker)")
    if failures_shown and s["failed"]:
        lines.append(f"  {len(s['failed'])} failed video(s) listed above; `hgrnn inspect "
                     f"{s['out']}` lists every recorded failure")
    else:
        for vid, reason in sorted(s["failed"].items()):
            lines.append(f"  FAILED {vid}: {reason}")
    return "\n".join(lines)
