"""The extract stage's config as the store records it (`stage_config`: what was actually
used), and the check against it that refuses to resume a store with other feature settings
(`check_resume_settings`)."""

from __future__ import annotations

import dataclasses
import os

from hgrnn.data.ava import read_exclusions
from hgrnn.data.store import CONFIG_DEFAULTS, open_h5, read_info
from hgrnn.pipeline.backbones import BACKBONES, describe_input
from hgrnn.pipeline.extract.config import FEATURE_FIELDS, RUN_ONLY_FIELDS, ExtractConfig
from hgrnn.pipeline.i3d import sha256_file

_FIELD_DEFAULTS = CONFIG_DEFAULTS["extract"]     # what a store written before a field holds


def stage_config(cfg: ExtractConfig, backbone_meta, detector_meta, feature_dim: int,
                 projection_used: bool, *, flow_backbone_meta=None, flow_meta=None,
                 layout=None) -> dict:
    """The extract stage's config as recorded in the store: what was actually used, not what
    the options defaulted to (no projection without a fine-tuned checkpoint, no detector
    weights without a detector). backbone_meta / flow_backbone_meta: `load_backbone` metas
    of the RGB / flow I3D (None without that stream); flow_meta: FlowComputer.meta();
    layout: the store's streams [[name, start, stop], ...] (default: RGB only). Without a
    flow stream the flow settings are None (so that stores written before the flow stream
    existed compare equal). The VideoSource fields are flat keys (fps, time_offset), as in
    every store written so far. Another backbone than I3D adds backbone_name,
    backbone_layer, feature_stride, input_mean / input_std / input_size and the torchvision
    weights' name and url; an I3D store stays as it always was (no backbone_name means
    i3d)."""
    metas = {"rgb": backbone_meta, "flow": flow_backbone_meta}
    layout = layout or [["rgb", 0, feature_dim]]
    config = {k: v for k, v in dataclasses.asdict(cfg).items()
              if k not in RUN_ONLY_FIELDS and k != "backbone"}
    config["keyframes"] = list(cfg.keyframes) if cfg.keyframes else None
    config["projection"] = projection_used
    if not cfg.detector:
        config["detector_weights"] = None
    config["streams"] = list(cfg.streams)

    def backbone(stream):
        meta = metas.get(stream)
        if meta is None:
            return None
        entry = {k: meta.get(k) for k in ("kind", "path", "sha256", "feature_dim", "seed")}
        entry.update({k: meta[k] for k in ("weights", "url") if meta.get(k) is not None})
        return entry

    if "flow" not in cfg.streams:
        config.update(flow=None, flow_weights=None, flow_backbone_weights=None)
    else:
        config.update(flow_backbone=backbone("flow"), flow_meta=flow_meta,
                      flow_normalisation="flow px clipped to [-20, 20], / 20 ([-1, 1])")
    name = cfg.backbone
    spec = BACKBONES[name]
    if name == "i3d":
        clip_pool = "mean over T', H', W' of I3D Mixed_5c"
        person_pool = ("mean over T', RoIAlign 7x7 (aligned, stride 32), max over 7x7"
                       if cfg.person_layer == "mixed_5c" else
                       "RoIAlign 14x14 (aligned, stride 16) of Mixed_4f per T' slice, "
                       "MaxPool3d_5a + Mixed_5b + Mixed_5c, mean over T'', max over 7x7")
    else:
        clip_pool = f"mean over T', H', W' of {name} {spec['layer']}"
        person_pool = (f"mean over T', RoIAlign 7x7 (aligned, stride {spec['stride'][1]}), "
                       f"max over 7x7")
        config.update(backbone_name=name, backbone_layer=spec["layer"],
                      feature_stride=list(spec["stride"]), input_mean=list(spec["mean"]),
                      input_std=list(spec["std"]),
                      input_size=(backbone_meta or {}).get("input_size"))
    config.update(
        backbone=backbone("rgb"), stream_layout=layout,
        input_normalisation=describe_input(name), feature_dim=feature_dim,
        clip_pool=clip_pool, person_pool=person_pool,
        detector_meta=detector_meta,
        excluded_keyframes=exclusions_entry(cfg.exclusions))
    return config


def exclusions_entry(path) -> dict | None:
    """The --exclusions file as stored in the extract config: {"path", "sha256", "keyframes":
    sorted [[video_id, timestamp], ...]}, so that `eval` applies the same exclusions by
    default (`hgrnn.hgrnn_head.infer.stored_exclusions`); None without one."""
    if not path:
        return None
    return {"path": str(path), "sha256": sha256_file(path),
            "keyframes": [[v, int(t)] for v, t in sorted(read_exclusions(path))]}


def check_resume_settings(paths, stage: dict) -> None:
    """Raise ValueError when a store (or shard) in `paths` was extracted with other
    feature settings than `stage` (see FEATURE_FIELDS, plus the backbone weights' sha256)."""
    for path in paths:
        if not os.path.exists(path) or os.path.getsize(path) == 0:
            continue
        with open_h5(path) as f:
            old = read_info(f, path).configs.get("extract")
        if not old:
            continue
        # --flow-weights are RAFT's: TV-L1 flow ignores them
        ignored = ({"flow_weights"} if old.get("flow", _FIELD_DEFAULTS.get("flow")) == "tvl1"
                   and stage.get("flow") == "tvl1" else set())
        changed = [f"{k} {old.get(k, _FIELD_DEFAULTS.get(k))!r} -> "
                   f"{stage.get(k, _FIELD_DEFAULTS.get(k))!r}"
                   for k in FEATURE_FIELDS if k not in ignored
                   and old.get(k, _FIELD_DEFAULTS.get(k)) != stage.get(k, _FIELD_DEFAULTS.get(k))]
        for key, what in (("backbone", "backbone"), ("flow_backbone", "flow backbone"),
                          ("flow_meta", "RAFT")):
            old_sha = (old.get(key) or {}).get("sha256")
            new_sha = (stage.get(key) or {}).get("sha256")
            if old_sha != new_sha:
                changed.append(f"{what} weights sha256 {str(old_sha)[:12]} -> {str(new_sha)[:12]}")
        old_backbone, backbone = old.get("backbone") or {}, stage.get("backbone") or {}
        for key in ("kind", "weights"):
            if old_backbone.get(key) != backbone.get(key):
                changed.append(f"backbone weights {key} {old_backbone.get(key)!r} -> "
                               f"{backbone.get(key)!r}")
        if (backbone.get("kind") == "random" and old_backbone.get("sha256") == backbone.get("sha256")
                and old_backbone.get("seed") != backbone.get("seed")):
            # random weights have no file to hash: the seed that made them identifies them
            changed.append(f"random backbone seed {old_backbone.get('seed')!r} -> "
                           f"{backbone.get('seed')!r}")
        if changed:
            raise ValueError(f"{path}: was extracted with other feature settings "
                             f"({'; '.join(changed)}); resuming would mix two kinds of "
                             f"features in one store. Use the same settings, or another --out.")
