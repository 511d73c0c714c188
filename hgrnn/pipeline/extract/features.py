"""The feature computation, in one place: the backbone of every stream (`load_models`) and
the clip and person features of one batch (`batch_features`, `stream_features`).

  backbone    the last map fmap (B, C, T', H', W') of cfg.backbone (`hgrnn.pipeline.backbones`:
              I3D Mixed_5c, C = 1024, by default; the flow stream is always the flow I3D)
  clip feat   fmap averaged over time and space (`i3d.clip_features`)      (B, C)
  person feat fmap averaged over time, RoIAlign of each box at the backbone's stride,
              spatial max                                                   (P, C)
              (or, I3D only, from Mixed_4f: `hgrnn.pipeline.person_layer`)
  projection  a fine-tuned checkpoint's Linear(C, 256) on both (unless cfg.projection
              is False)

A backbone plugs in at `load_models` (what each stream runs, `backbones.load_backbone`) and
`stream_features` (its input, `backbones.frames_to_input`); the loader and the writer only
see feature arrays and the store's stream layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hgrnn.pipeline.extract.config import ExtractConfig
from hgrnn.pipeline.flow import FlowComputer, flow_in_workers, flow_to_input
from hgrnn.pipeline.backbones import feature_dim, frames_to_input, load_backbone
from hgrnn.pipeline.i3d import clip_features
from hgrnn.pipeline.person_layer import backbone_maps, layer_of, pooled_person_features


@dataclass
class StreamModels:
    """The networks of one extraction.

    models: stream -> (backbone, projection or None); metas: stream -> `load_backbone` meta;
    layout: the store's stream layout [[name, start, stop], ...]; flow: the FlowComputer
    (None without the flow stream); worker_flow: the same when the decoding workers compute
    the flow, else None (RAFT on a CUDA device runs in the main process)."""
    models: dict
    metas: dict
    layout: list
    flow: FlowComputer | None = None
    worker_flow: FlowComputer | None = None

    @property
    def feature_dim(self) -> int:
        return self.layout[-1][2]

    @property
    def projected(self) -> bool:
        return any(p is not None for _, p in self.models.values())


def load_models(cfg: ExtractConfig, device) -> StreamModels:
    """Load the backbone (and projection) of every stream of `cfg` (resolved: its clip
    settings set, `ExtractConfig.resolved`), and the flow method."""
    models, metas, layout = {}, {}, []
    for stream in cfg.streams:
        weights = cfg.backbone_weights if stream == "rgb" else cfg.flow_backbone_weights
        name = cfg.backbone if stream == "rgb" else "i3d"
        backbone, projection, metas[stream] = load_backbone(
            name, weights, device, stream=stream,
            input_size=(cfg.clip_frames, cfg.short_side, cfg.short_side))
        meta = metas[stream]
        if meta["kind"] == "finetune" and layer_of(meta.get("config")) != cfg.person_layer:
            raise ValueError(f"{weights}: was fine-tuned with person features from "
                             f"{layer_of(meta.get('config'))}, not {cfg.person_layer}; pass "
                             f"--person-layer {layer_of(meta.get('config'))} (the features must "
                             f"be pooled the way the checkpoint was trained)")
        fixed = getattr(backbone, "input_size", None)
        if fixed is not None and cfg.clip_frames != fixed[0]:
            raise ValueError(f"--backbone {name} takes {fixed[0]}-frame clips (its positional "
                             f"embeddings), not --clip-frames {cfg.clip_frames}")
        if not cfg.projection:
            projection = None
        models[stream] = (backbone, projection)
        dim = projection.out_features if projection is not None else feature_dim(backbone)
        start = layout[-1][2] if layout else 0
        layout.append([stream, start, start + dim])
    flow = worker_flow = None
    if "flow" in cfg.streams:
        in_workers = flow_in_workers(cfg.flow, device)
        flow = FlowComputer(cfg.flow, cfg.flow_weights, "cpu" if in_workers else device)
        worker_flow = flow if in_workers else None
    return StreamModels(models, metas, layout, flow, worker_flow)


def batch_features(backbone, projection, x, sets, device, autocast, person_layer="mixed_5c"):
    """Clip and person features of one batch of one stream.

    x: the network input (B, c, T, H, W) float on `device` (RGB: `normalize_frames`, c = 3;
    flow: `flow_to_input`, c = 2); sets: person dicts (key "boxes" (n_i, 4) normalised xyxy),
    the first B for clips 0..B-1 (gt), optionally B more for the same clips (det).
    Returns (clip features (B, C) float32 numpy, [per set (n_i, C) float32 numpy])."""
    b = x.shape[0]
    # RoI rows [clip index, x1, y1, x2, y2]; set i belongs to clip i % B
    rois = np.concatenate(
        [np.zeros((0, 5), np.float32)]
        + [np.concatenate([np.full((len(s["boxes"]), 1), i % b, np.float32),
                           np.asarray(s["boxes"], np.float32).reshape(-1, 4)], 1)
           for i, s in enumerate(sets)])
    with torch.no_grad():
        with autocast:
            # the last map, and the map person features come from (itself or Mixed_4f)
            fmap, pmap = backbone_maps(backbone, x, person_layer)    # (B, C, T', H', W')
            feats = pooled_person_features(backbone, pmap, torch.from_numpy(rois).to(device),
                                           x.shape[-2:], person_layer)   # (P, C)
        feats = feats.float()
        clip_feat = clip_features(fmap.float())                        # (B, C)
        if projection is not None:
            clip_feat, feats = projection(clip_feat), projection(feats)   # (B, D), (P, D)
    feats = feats.float().cpu().numpy()
    split = np.split(feats, np.cumsum([len(s["boxes"]) for s in sets])[:-1])
    return clip_feat.float().cpu().numpy(), split


def stream_features(models: dict, streams, clips, flow, sets, device, autocast,
                    person_layer="mixed_5c"):
    """`batch_features` of every stream, side by side in `streams` order.

    models: stream -> (backbone, projection); clips uint8 (B, T, H, W, 3); flow (B, T-1, H,
    W, 2) scaled flow or None. Returns (clip features (B, sum C_s), [per set (n_i, sum C_s)])."""
    clip_parts, set_parts = [], []
    for stream in streams:
        backbone, projection = models[stream]
        if stream == "rgb":
            x = frames_to_input(clips.to(device, non_blocking=True), backbone)  # (B, 3, T, H, W)
        else:
            x = flow_to_input(flow.to(device, non_blocking=True))         # (B, 2, T-1, H, W)
        clip_feat, split = batch_features(backbone, projection, x, sets, device, autocast,
                                          person_layer)
        clip_parts.append(clip_feat)
        set_parts.append(split)
    if len(streams) == 1:
        return clip_parts[0], set_parts[0]
    return (np.concatenate(clip_parts, 1),
            [np.concatenate(parts, 1) for parts in zip(*set_parts)])
