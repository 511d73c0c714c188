"""Merging shard stores (written by parallel workers) into one store (`hgrnn merge-stores`).

Shards merge only when their features are of one kind: same feature_dim, label map and
streams, and stage configs equal in every setting that changes the features
(`feature_setting_differences`): a setting is assumed to change them unless it is named in
NEUTRAL_CONFIG_KEYS (where inputs and weights files lie, how the run was parallelised, which
keyframes it covered), so a setting a future stage adds is compared until declared neutral.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings

import h5py
import numpy as np
from tqdm import tqdm

from hgrnn.data.store import (CONFIG_DEFAULTS, StoreError, StoreWriter, is_complete, open_h5,
                              read_failures_open, read_info)
from hgrnn.data.store_io import WriterLock, read_errors, write_error


#: stage-config keys, at any depth, that do not change the features: where inputs lie, how
#: the run was parallelised, which keyframes or videos it covered
NEUTRAL_CONFIG_KEYS = frozenset({
    "out", "videos", "frames", "annotations", "exclusions", "excluded_keyframes", "detections",
    "label_map", "keyframes", "video_ids", "seek_after", "device", "workers", "batch_size",
    "progress", "path",
    # weights files named by path or option: the meta dicts beside them identify the
    # weights (kind, sha256, seed: `backbone`, `flow_backbone`, `detector_meta`, `flow_meta`)
    "backbone_weights", "flow_backbone_weights", "detector_weights", "flow_weights",
})
#: inside a dict that records a file's sha256, where the file lay is neutral too
_LOCATION_KEYS = frozenset({"path", "weights"})
_ABSENT = object()


def _comparable(value):
    """A config value without its neutral keys (at every depth)."""
    if not isinstance(value, dict):
        return value
    hashed = value.get("sha256") is not None
    return {k: _comparable(v) for k, v in value.items()
            if k not in NEUTRAL_CONFIG_KEYS and not (hashed and k in _LOCATION_KEYS)}


def feature_setting_differences(a: dict, b: dict, stage=None) -> list:
    """The settings in which two configs of one stage differ and that change the features
    (every key but NEUTRAL_CONFIG_KEYS, compared at every depth of nested dicts): a list of
    (dotted name, value in a, value in b), a missing key as the string "absent". A key one
    config lacks (a store written before the key existed) counts as the stage's
    :data:`~hgrnn.data.store.CONFIG_DEFAULTS` value for it, else as None."""
    out = []
    defaults = CONFIG_DEFAULTS.get(stage, {})

    def walk(x, y, name, top):
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y), key=str):
                walk(x.get(k, _ABSENT), y.get(k, _ABSENT), f"{name}.{k}" if name else str(k),
                     k if not name else None)
            return
        fill = defaults.get(top) if top in defaults else None
        if (fill if x is _ABSENT else x) != (fill if y is _ABSENT else y):
            out.append((name, "absent" if x is _ABSENT else x, "absent" if y is _ABSENT else y))

    walk(_comparable(a), _comparable(b), "", None)
    return out


def _short(value) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _same_video(a, b) -> bool:
    """True when two video groups hold identical datasets."""
    def items(g, prefix=""):
        out = {}
        for k, v in g.items():
            if isinstance(v, h5py.Group):
                out.update(items(v, prefix + k + "/"))
            else:
                out[prefix + k] = v
        return out

    da, db = items(a), items(b)
    if set(da) != set(db):
        return False
    for k in da:
        if da[k].shape != db[k].shape or not np.array_equal(da[k][()], db[k][()]):
            return False
    return True


def merge_stores(out, shards: list, overwrite=False, on_duplicate="error", progress=True) -> dict:
    """Combine shard stores (e.g. written by parallel workers) into one store `out`.

    The shards must agree on feature_dim, label map and streams, and on every stage-config
    setting that changes the features (`feature_setting_differences`; a StoreError names
    the first such setting, whatever `on_duplicate` says). Complete videos are copied
    (with their storage layout and attributes); incomplete ones are skipped, and so are
    videos whose HDF5 objects cannot be read (a damaged shard; a warning names each). Configs
    are merged per stage (when they differ only in neutral settings, the first shard's wins
    and a warning names the stage).
    Failures are merged, dropping those of videos that are complete in some shard.
    A video id present in several shards is an error, unless the copies are identical
    (then one is kept) or `on_duplicate="first"` (keep the first shard's).
    The result is written to OUT.partial and renamed at the end, all under OUT's writer
    lock (a second merge into OUT is refused); on any error OUT.partial is removed.
    Returns a summary dict.
    """
    if on_duplicate not in ("error", "first"):
        raise ValueError(f"on_duplicate must be 'error' or 'first', got {on_duplicate!r}")
    out = str(out)
    if not shards:
        raise StoreError(f"{out}: no shards to merge")
    shards = [str(s) for s in shards]
    if os.path.abspath(out) in {os.path.abspath(s) for s in shards}:
        raise StoreError(f"{out}: the output is also one of the shards")
    # OUT's writer lock, held from the existence check to the rename: a second merge into
    # the same OUT (or a writer of it) is refused instead of deleting our .partial
    with WriterLock(out):
        return _merge_locked(out, shards, overwrite, on_duplicate, progress)


def _merge_locked(out, shards, overwrite, on_duplicate, progress) -> dict:
    if os.path.exists(out) and not overwrite:
        raise StoreError(f"{out}: exists (pass --overwrite to replace it)")
    out_dir = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(out_dir):
        raise StoreError(f"{out}: directory {out_dir} does not exist")

    infos = []
    for s in shards:
        with open_h5(s) as f:
            infos.append(read_info(f, s))
    first = infos[0]
    for info in infos[1:]:
        if info.feature_dim != first.feature_dim:
            raise StoreError(f"{info.path}: feature_dim {info.feature_dim} differs from "
                             f"{first.path} ({first.feature_dim})")
        if info.label_map != first.label_map:
            raise StoreError(f"{info.path}: label map differs from {first.path}")
        if info.streams != first.streams:
            raise StoreError(f"{info.path}: streams {info.streams} differ from {first.path} "
                             f"({first.streams})")
    configs, config_source, differing = {}, {}, []
    for info in infos:
        for stage, cfg in info.configs.items():
            if stage not in configs:
                configs[stage], config_source[stage] = cfg, info.path
            elif configs[stage] != cfg:
                _refuse_other_features(stage, configs[stage], config_source[stage], cfg, info.path)
                if stage not in differing:
                    differing.append(stage)
    for stage in differing:
        warnings.warn(f"merge-stores: stage {stage!r} config differs between shards; "
                      f"keeping the first shard's", stacklevel=3)

    partial = out + ".partial"
    if os.path.exists(partial):
        os.remove(partial)       # left by a killed merge (ours is locked: not another's)
    try:
        summary = _copy_shards(partial, shards, first, configs, on_duplicate, progress)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.remove(partial)
        if isinstance(err, StoreError) and str(err).startswith(partial):
            raise StoreError(out + str(err)[len(partial):]) from None
        raise
    try:
        os.replace(partial, out)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.remove(partial)
        raise write_error(out, err) from None
    return dict(summary, differing_configs=differing)


def _refuse_other_features(stage, first_cfg, first_path, cfg, path) -> None:
    """StoreError naming the first setting of `stage` that changes the features and differs
    between the shard `path` and the shard `first_path` that first had the stage."""
    diffs = feature_setting_differences(first_cfg, cfg, stage)
    if not diffs:
        return
    name, old, new = diffs[0]
    more = f" (and {len(diffs) - 1} more: {', '.join(d[0] for d in diffs[1:4])}" \
           f"{', ...' if len(diffs) > 4 else ''})" if len(diffs) > 1 else ""
    raise StoreError(f"{path}: {stage} setting {name} = {_short(new)} differs from {first_path} "
                     f"({_short(old)}){more}: the shards hold features of different kinds and "
                     f"cannot be merged; extract them with the same settings")


def _copy_shards(partial, shards, first, configs, on_duplicate, progress) -> dict:
    """Copy the complete videos of `shards` into a new store `partial`; the summary."""
    source_of: dict = {}
    damaged: list = []
    copied = skipped_incomplete = duplicates = 0
    failures: dict = {}
    with StoreWriter(partial, feature_dim=first.feature_dim, label_map=first.label_map,
                     configs=configs, streams=first.streams) as w:
        it = shards
        if progress:
            it = tqdm(shards, desc="merge", unit="shard", leave=False, disable=None)
        for s in it:
            with open_h5(s) as f:
                with read_errors(s):
                    failures_s = read_failures_open(f)
                    listed = sorted(f["videos"].keys()) if "videos" in f else []
                incomplete, names = [], []
                for name in listed:
                    try:
                        (names if is_complete(f["videos"][name]) else incomplete).append(name)
                    except Exception:  # noqa: BLE001 - a damaged object header: skip it
                        damaged.append(f"{s}: {name}")
                for k, v in failures_s.items():
                    failures.setdefault(k, v)
                skipped_incomplete += len(incomplete)
                for name in names:
                    if name in source_of:
                        with read_errors(s, name):
                            same = _same_video(f["videos"][name], w.video_group(name))
                        if same or on_duplicate == "first":
                            duplicates += 1
                            continue
                        raise StoreError(f"{s}: video {name} is also in {source_of[name]} with "
                                         f"different data (use on_duplicate='first' / "
                                         f"--keep-first to keep the first copy)")
                    try:
                        w.copy_video(f["videos"][name], name)
                    except StoreError:
                        raise                       # the writer's own (a full disk...)
                    except Exception:  # noqa: BLE001 - an unreadable video of the shard
                        w.drop_video(name)
                        damaged.append(f"{s}: {name}")
                        continue
                    source_of[name] = s
                    copied += 1
        failures = {k: v for k, v in failures.items() if k not in source_of}
        if failures:
            w.write_failures(failures)
    for d in damaged:
        warnings.warn(f"merge-stores: skipped unreadable video {d} (a damaged file)",
                      stacklevel=3)
    return {"videos": copied, "duplicates": duplicates, "incomplete_skipped": skipped_incomplete,
            "failures": len(failures), "damaged_skipped": damaged}

