"""Reading a whole feature store to check it or to describe it (`hgrnn inspect`).

`check_store` verifies every invariant of the schema (the module docstring of
`hgrnn.data.store` and `docs/store.md`) and each video's digest, reading all data: the rules
over a video's arrays are `hgrnn.data.store.check_video_arrays`, the ones the writer applies
before writing. `summarize_store` and `format_summary` are what `hgrnn inspect` prints.
"""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
from tqdm import tqdm

from hgrnn.data.store import (PERSON_DATASETS, SOURCES, _text, check_video_arrays, is_complete,
                              open_h5, problem_at, read_failures_open, read_info, video_digest,
                              video_names)
from hgrnn.data.store_io import read_errors


def check_store(path, progress=False) -> list:
    """Verify every invariant of the schema and every video's `digest`; return the list of
    all problems, each "videos/VIDEO/DATASET: what is wrong" (empty when the store is valid).
    Reads all data. Raises StoreError when the file's own structure (superblock, root
    attributes, the /videos index) is unreadable."""
    problems = []
    with open_h5(path) as f:
        info = read_info(f, path)
        C, K = info.feature_dim, len(info.label_map)
        with read_errors(path, dataset="/videos"):
            if "videos" not in f:
                return [f"{path}: no /videos group"]
            names = sorted(f["videos"].keys())
        it = names
        if progress:
            it = tqdm(names, desc="check (reads everything)", unit="video", leave=False,
                      disable=None)
        for name in it:
            try:
                problems += _check_video(f["videos"][name], name, C, K)
            except Exception as err:  # noqa: BLE001 - a damaged object header, B-tree...
                first = str(err).splitlines()[0] if str(err) else ""
                problems.append(f"videos/{name}: unreadable ({type(err).__name__}: {first})")
        try:
            if "failures" in f:
                rows = f["failures"]
                if rows.ndim != 2 or rows.shape[1] != 2:
                    problems.append(f"failures: shape {rows.shape}, expected (M, 2)")
                else:
                    read_failures_open(f)
        except Exception as err:  # noqa: BLE001
            problems.append(f"failures: unreadable ({type(err).__name__}: {err})")
    return problems


def _check_video(g, name, C, K) -> list:
    """The problems of one video group, each "videos/VIDEO/DATASET: problem" (the rules of
    `check_video_arrays`, then the digest). Exceptions of h5py reading a damaged file
    propagate (check_store reports them)."""
    w = f"videos/{name}"
    if not isinstance(g, h5py.Group):
        return [f"{w}: not a group"]
    if not is_complete(g):
        return [f"{w}: no 'complete' attribute (an interrupted write; readers ignore it and "
                f"the next writer run replaces it)"]
    sets = {src: {key: g[src].get(key) for key in PERSON_DATASETS} for src in SOURCES
            if src in g}
    problems, values = check_video_arrays(g.get("timestamps"), g.get("clip"), sets,
                                          feature_dim=C, num_classes=K,
                                          width=g.attrs.get("width"), height=g.attrs.get("height"))
    if problems:
        return [problem_at(w, p) for p in problems]
    if "digest" in g.attrs:
        if _text(g.attrs["digest"]) != video_digest(values["timestamps"], values["clip"], values):
            return [f"{w}: content differs from its digest (bytes changed after writing: a "
                    f"damaged disk or copy); re-extract the video or restore the file"]
    return []


HIST_BINS = [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 7), (8, 10), (11, 15), (16, None)]


def summarize_store(path, progress=False) -> dict:
    """What `hgrnn inspect` prints, as a JSON-ready dict: videos, keyframes, persons per
    keyframe (min/mean/max and histogram) and label counts per box source, feature dims and
    dtypes, configs, failures, size on disk against the raw array bytes."""
    with open_h5(path) as f:
        info = read_info(f, path)
        names = video_names(f)
        incomplete = video_names(f, complete=False)
        K = len(info.label_map)
        T = []
        t_min, t_max = None, None
        dtypes = set()
        raw = 0
        per = {s: {"videos": 0, "counts": [], "labels": np.zeros(K, np.int64),
                   "unlabelled": 0, "has_labels": False, "scores": []} for s in SOURCES}
        it = names
        if progress:
            it = tqdm(names, desc="inspect", unit="video", leave=False, disable=None)

        def nbytes(ds):
            return int(np.prod(ds.shape)) * ds.dtype.itemsize

        for name in it:
            g = f["videos"][name]
            try:
                ts = g["timestamps"][()]
                T.append(len(ts))
                if len(ts):
                    t_min = int(ts[0]) if t_min is None else min(t_min, int(ts[0]))
                    t_max = int(ts[-1]) if t_max is None else max(t_max, int(ts[-1]))
                dtypes.add(("clip", str(g["clip"].dtype)))
                raw += nbytes(g["timestamps"]) + nbytes(g["clip"])
                for s in SOURCES:
                    if s not in g:
                        continue
                    sg, st = g[s], per[s]
                    st["videos"] += 1
                    off = sg["offsets"][()]
                    st["counts"].append(np.diff(off))
                    dtypes.add((f"{s}/feats", str(sg["feats"].dtype)))
                    raw += sum(nbytes(d) for d in sg.values() if isinstance(d, h5py.Dataset))
                    if "labels" in sg:
                        st["has_labels"] = True
                        lab = sg["labels"][()]
                        st["labels"] += lab.sum(0, dtype=np.int64)
                        st["unlabelled"] += int((lab.sum(1) == 0).sum())
                    if s == "det" and sg["scores"].shape[0]:
                        st["scores"].append(sg["scores"][()])
            except Exception as err:  # noqa: BLE001 - h5py on a damaged file
                with read_errors(path, name):
                    raise err
        with read_errors(path, dataset="/failures"):
            failures = read_failures_open(f)
    T = np.asarray(T, np.int64)
    out = {
        "path": str(path),
        "size_bytes": os.path.getsize(path),
        "raw_bytes": raw,
        "version": info.version,
        "feature_dim": info.feature_dim,
        "dtypes": dict(sorted(dtypes)),
        "streams": info.streams,
        "num_classes": K,
        "label_map": info.label_map,
        "videos": len(names),
        "incomplete_videos": incomplete,
        "keyframes": int(T.sum()),
        "keyframes_per_video": [int(T.min()), float(T.mean()), int(T.max())] if len(T) else None,
        "time_range": [t_min, t_max],
        "configs": info.configs,
        "failures": failures,
        "sources": {},
    }
    for s in SOURCES:
        st = per[s]
        if not st["videos"]:
            continue
        counts = np.concatenate(st["counts"]) if st["counts"] else np.zeros(0, np.int64)
        hist = []
        for lo, hi in HIST_BINS:
            sel = counts >= lo if hi is None else (counts >= lo) & (counts <= hi)
            hist.append([f"{lo}+" if hi is None else (str(lo) if lo == hi else f"{lo}-{hi}"),
                         int(sel.sum())])
        src = {
            "videos": st["videos"],
            "persons": int(counts.sum()),
            "keyframes_with_persons": int((counts > 0).sum()),
            "persons_per_keyframe": [int(counts.min()), float(counts.mean()), int(counts.max())]
            if len(counts) else None,
            "histogram": hist,
        }
        if st["has_labels"]:
            src["label_counts"] = st["labels"].tolist()
            src["persons_without_label"] = st["unlabelled"]
        if st["scores"]:
            sc = np.concatenate(st["scores"])
            src["scores"] = [float(sc.min()), float(sc.mean()), float(sc.max())]
        out["sources"][s] = src
    return out


def _backbone_line(configs: dict) -> str | None:
    """What made the features: the extract stage's backbone (no backbone_name: i3d, every
    store before --backbone) and its weights, or the import stage's origin."""
    extract = configs.get("extract")
    imported = configs.get("import_gt") or configs.get("import_det")
    if extract:
        weights = extract.get("backbone") or {}
        kind = weights.get("weights") or weights.get("kind") or "?"
        where = f" {weights['path']}" if weights.get("path") else ""
        return f"{extract.get('backbone_name') or 'i3d'} ({kind}{where})"
    if imported:
        return f"imported ({imported.get('describe') or 'no --describe'})"
    return None


def format_summary(s: dict) -> str:
    """The human-readable text of `summarize_store`."""
    mb = 1024 * 1024
    lines = [f"{s['path']}  (hgrnn-store v{s['version']})"]
    ratio = s["size_bytes"] / s["raw_bytes"] if s["raw_bytes"] else float("nan")
    lines.append(f"  size on disk     {s['size_bytes'] / mb:,.1f} MiB  (raw arrays "
                 f"{s['raw_bytes'] / mb:,.1f} MiB, ratio {ratio:.2f})")
    dts = ", ".join(f"{k} {v}" for k, v in s["dtypes"].items())
    streams = ", ".join(f"{n} [{a}:{b}]" for n, a, b in s["streams"])
    lines.append(f"  features         C = {s['feature_dim']} ({dts}); streams: {streams}")
    backbone = _backbone_line(s["configs"])
    if backbone:
        lines.append(f"  backbone         {backbone}")
    lm = s["label_map"]
    lines.append(f"  label map        {s['num_classes']} classes ("
                 + ", ".join(f"{i} {n}" for i, n in lm[:3]) + (", ..." if len(lm) > 3 else "") + ")")
    kpv = s["keyframes_per_video"]
    lines.append(f"  videos           {s['videos']} complete"
                 + (f", {len(s['incomplete_videos'])} incomplete (ignored): "
                    + ", ".join(s["incomplete_videos"][:5]) if s["incomplete_videos"] else ""))
    if kpv:
        lines.append(f"  keyframes        {s['keyframes']:,} (per video min {kpv[0]} / mean "
                     f"{kpv[1]:.1f} / max {kpv[2]}; timestamps {s['time_range'][0]}.."
                     f"{s['time_range'][1]} s)")
    lines.append(f"  box sources      {', '.join(s['sources']) or 'none'}")
    for name, src in s["sources"].items():
        title = {"gt": "ground truth", "det": "detections"}[name]
        lines.append("")
        lines.append(f"  [{name}] {title}: {src['persons']:,} persons in {src['videos']} videos; "
                     f"{src['keyframes_with_persons']:,} keyframes with >= 1 person")
        ppk = src["persons_per_keyframe"]
        if ppk:
            lines.append(f"    persons per keyframe  min {ppk[0]} / mean {ppk[1]:.2f} / max {ppk[2]}")
            top = max(c for _, c in src["histogram"]) or 1
            for label, c in src["histogram"]:
                bar = "#" * int(round(30 * c / top))
                lines.append(f"      {label:>5} {c:>10,}  {bar}")
        if "scores" in src:
            sc = src["scores"]
            lines.append(f"    scores  min {sc[0]:.3f} / mean {sc[1]:.3f} / max {sc[2]:.3f}")
        if "label_counts" in src:
            lines.append(f"    label counts (persons per class; {src['persons_without_label']:,} "
                         f"persons without any label):")
            width = max((len(n) for _, n in lm), default=0)     # whole names, one per line
            for (i, n), c in zip(lm, src["label_counts"]):
                lines.append(f"     {i:>4} {n:<{width}} {c:>9,}")
    lines.append("")
    if s["configs"]:
        lines.append("  stage configs    (`hgrnn inspect --json` gives them raw)")
        for stage, cfg in s["configs"].items():
            lines.append(f"    {stage}:")
            lines += _config_lines(cfg, indent=6)
    else:
        lines.append("  stage configs    none recorded")
    if s["failures"]:
        lines.append(f"  failures         {len(s['failures'])} videos")
        for vid, why in list(s["failures"].items())[:10]:
            lines.append(f"    {vid}: {why}")
        if len(s["failures"]) > 10:
            lines.append(f"    ... and {len(s['failures']) - 10} more")
    else:
        lines.append("  failures         none")
    return "\n".join(lines)


def _config_lines(value, indent: int) -> list:
    """A stage config as indented `key: value` lines, nested dicts one level deeper."""
    pad = " " * indent
    if not isinstance(value, dict):
        return [pad + json.dumps(value)]
    lines = []
    for key, v in value.items():
        if isinstance(v, dict) and v:
            lines.append(f"{pad}{key}:")
            lines += _config_lines(v, indent + 2)
        elif isinstance(v, list) and len(v) > 8:       # e.g. every video id: say how many
            lines.append(f"{pad}{key}: {json.dumps(v[:4])[:-1]}, ... ({len(v)} in all)]")
        else:
            lines.append(f"{pad}{key}: {v if isinstance(v, str) else json.dumps(v)}")
    return lines
