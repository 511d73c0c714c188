"""`hgrnn ablate`: the paper's ablation grid (Tables 1-4) as parallel head runs.

Every row of the paper's Tables 1-3, plus the per-person baseline, is one head config; each
config is trained with several seeds (``train_head``) and scored on the validation store with
ground-truth boxes and with detections (``evaluate_store``). Runs go to parallel worker
processes (joblib, one torch thread each) and each lives in its own folder::

    OUT/runs/<row>_s<seed>/            train_head's run folder (last.pt, metrics.jsonl, ...)
    OUT/runs/<row>_s<seed>/eval_gt/    evaluate_store(gt_boxes=True) output
    OUT/runs/<row>_s<seed>/eval_det/   evaluate_store(gt_boxes=False) output
    OUT/runs/<row>_s<seed>/done.json   the run's row (written last: its presence = finished)
    OUT/ablation.csv                   one line per run: config, mAPs, per-group and per-class APs
    OUT/ablation.md                    the paper's tables, mean ± std over seeds
    OUT/ablation.png                   the same as bars with error bars

A finished run (done.json with the same spec) is skipped, an interrupted one resumed, so the
command can be re-run after a crash or with more seeds. Per-group APs need the class groups
of a synthetic store (``configs["synth"]["class_groups"]``); other stores get "all" only.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed
from tqdm import tqdm

from hgrnn.console import progress_bar
from hgrnn.data import synthetic
from hgrnn.data.store import open_h5, read_info
from hgrnn.data.windows import FeatureStore
from hgrnn.hgrnn_head.ablate_config import (GROUPS, PAPER_L0, RGB_ROWS, ROW_LABELS,
                                           ROW_STREAMS, AblateConfig)
from hgrnn.hgrnn_head.charts import plot_ablation
from hgrnn.hgrnn_head.config import HeadConfig, TrainConfig
from hgrnn.hgrnn_head.infer import evaluate_store
from hgrnn.hgrnn_head.train import train_head

def store_streams(store_path) -> tuple:
    """Names of the feature streams of a store (root attribute `streams`)."""
    with open_h5(os.fspath(store_path)) as f:
        return tuple(str(s[0]) for s in read_info(f, os.fspath(store_path)).streams)


def rows_for_store(store_path) -> tuple:
    """The default grid for a store: the RGB rows, plus the RGB+Flow row (Table 4) when the
    store has a flow stream."""
    have = set(store_streams(store_path))
    return RGB_ROWS + tuple(r for r, streams in ROW_STREAMS.items() if set(streams) <= have)


def class_groups_of(store_path) -> dict:
    """{group: [class names]} of a synthetic store, {} for any other store."""
    entry = FeatureStore(os.fspath(store_path)).configs.get("synth") or {}
    if isinstance(entry, str):
        entry = json.loads(entry)
    return {g: list(v) for g, v in entry.get("class_groups", {}).items()}


def group_aps(per_class: dict, class_groups: dict) -> dict:
    """{"all": mAP over classes with instances, group: mean AP of its classes} (None if empty)."""
    return synthetic.group_aps(per_class, class_groups)


def run_one(spec: dict, train_store: str, val_store: str, out_dir: str,
            class_groups: dict) -> dict:
    """Train and score one run (in a worker process); returns its row (also done.json)."""
    torch.set_num_threads(1)

    run = Path(out_dir) / "runs" / spec["name"]
    done = run / "done.json"
    if done.exists():
        row = json.loads(done.read_text())
        if row.get("spec") == spec:
            return row
        raise RuntimeError(f"{done}: a finished run with another spec ({row.get('spec')}) "
                           f"is in the way of {spec}; use another --out or delete the folder")
    t0 = time.perf_counter()
    head = HeadConfig(variant=spec["variant"], context=spec["context"],
                      iterations=max(spec["iterations"], 1) if spec["variant"] in
                      ("hgrnn", "graph") else 2, h0=spec["h0"],
                      scene_hidden=spec["scene_hidden"], graph_hidden=spec["graph_hidden"],
                      graph_pool=spec.get("graph_pool", "all"),
                      relation=spec.get("relation", "gru"), fusion=spec.get("fusion", "concat"))
    train = TrainConfig(steps=spec["steps"], batch_size=spec["batch_size"], lr=spec["lr"],
                        seed=spec["seed"], device="cpu", val_every=0, num_threads=1,
                        context_boxes=spec.get("context_boxes", "gt"),
                        streams=tuple(spec.get("streams", ("rgb",))))
    result = train_head(train_store, run, head, train, val_store=None,
                        resume=(run / "last.pt").exists(), progress=False)
    row = {"spec": spec, "train_seconds": result["seconds"]}
    for boxes in (("gt", "det") if spec["det"] else ("gt",)):
        ev = evaluate_store(val_store, result["checkpoint"], gt_boxes=boxes == "gt",
                            out_dir=run / f"eval_{boxes}", progress=False, device="cpu")
        row[boxes] = {"per_class": ev.to_dict()["per_class"],
                      "groups": group_aps(ev.to_dict()["per_class"], class_groups)}
    row["seconds"] = time.perf_counter() - t0
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps(row, indent=1))
    os.replace(tmp, done)
    return row


def run_ablation(train_store, val_store, out_dir, cfg: AblateConfig, progress=True) -> dict:
    """Run the grid (skipping finished runs), write ablation.csv/.md/.png; return
    ``{"rows": [run rows], "summary": {row: {boxes: {group: (mean, std, n)}}}, "files": {...}}``."""
    train_store, val_store = os.fspath(train_store), os.fspath(val_store)
    for p in (train_store, val_store):
        if not os.path.exists(p):
            raise FileNotFoundError(f"{p}: no such store (write one with `hgrnn synth --out {p}`)")
    out = Path(out_dir)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    groups = class_groups_of(val_store)
    specs = cfg.specs()
    for path in (train_store, val_store):
        have = store_streams(path)
        lacking = sorted({r for r in cfg.rows if not set(ROW_STREAMS.get(r, ("rgb",))) <= set(have)})
        if lacking:
            raise ValueError(f"{path}: rows {', '.join(lacking)} need feature streams the store "
                             f"lacks (it has {'+'.join(have)}); write one with `hgrnn synth "
                             f"--streams rgb,flow` or leave those rows out")
    todo = [s for s in specs if not (out / "runs" / s["name"] / "done.json").exists()]
    if progress:
        tqdm.write(f"ablate: {len(specs)} runs, {len(specs) - len(todo)} already finished in "
                   f"{out / 'runs'}, {len(todo)} to do on {cfg.jobs} worker(s)")
    rows = [run_one(s, train_store, val_store, str(out), groups) for s in specs
            if s not in todo]          # finished: read back (and spec-checked) from done.json
    bar = progress_bar(total=len(specs), initial=len(rows), desc="ablate", unit="run",
               disable=not progress, dynamic_ncols=True)
    jobs = Parallel(n_jobs=cfg.jobs, return_as="generator_unordered")(
        delayed(run_one)(s, train_store, val_store, str(out), groups) for s in todo)
    for row in jobs:
        rows.append(row)
        bar.set_postfix_str(f"{row['spec']['name']} mAP={_pct(row['gt']['groups']['all'])} "
                            f"({row['seconds']:.0f}s)")
        bar.update(1)
    bar.close()
    order = {s["name"]: i for i, s in enumerate(specs)}
    rows.sort(key=lambda r: order[r["spec"]["name"]])
    summary = summarize(rows)
    files = {"csv": out / "ablation.csv", "md": out / "ablation.md", "png": out / "ablation.png"}
    write_csv(files["csv"], rows)
    files["md"].write_text(format_tables(summary, cfg, train_store, val_store, rows))
    spread = f"mean ± std over {cfg.seeds} seeds" if cfg.seeds > 1 else "one seed"
    if not plot_ablation(summary, GROUPS, files["png"], labels=ROW_LABELS,
                         title=f"HGRNN ablation: AP by class group (gt boxes, {spread})"):
        files.pop("png")
    return {"rows": rows, "summary": summary, "files": {k: str(v) for k, v in files.items()}}


def mean_std(values) -> tuple:
    """(mean, sample std (ddof=1; 0 for one value), n) of the non-None values."""
    v = [x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return (None, None, 0)
    return (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v))


def summarize(rows: list) -> dict:
    """{row name: {"gt"|"det": {group: (mean, std, n)}}} over the seeds of each row."""
    out = {}
    for name in dict.fromkeys(r["spec"]["row"] for r in rows):
        mine = [r for r in rows if r["spec"]["row"] == name]
        out[name] = {}
        for boxes in ("gt", "det"):
            if all(boxes in r for r in mine):
                out[name][boxes] = {g: mean_std([r[boxes]["groups"].get(g) for r in mine])
                                    for g in mine[0][boxes]["groups"]}
    return out


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _ms(t) -> str:
    mean, std, n = t
    if mean is None:
        return "-"
    return f"{100 * mean:.1f}" if n < 2 else f"{100 * mean:.1f} ± {100 * std:.1f}"


def write_csv(path, rows: list) -> None:
    classes = list(rows[0]["gt"]["per_class"]) if rows else []
    groups = list(rows[0]["gt"]["groups"]) if rows else []
    header = (["run", "row", "variant", "context", "iterations", "seed", "steps", "lr",
               "train_seconds"] + [f"gt_{g}" for g in groups] + [f"det_{g}" for g in groups]
              + [f"gt_AP:{c}" for c in classes])
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            s = r["spec"]
            det = r.get("det", {}).get("groups", {})
            w.writerow([s["name"], s["row"], s["variant"], s["context"], s["iterations"],
                        s["seed"], s["steps"], s["lr"], f"{r['train_seconds']:.1f}"]
                       + [_fmt(r["gt"]["groups"].get(g)) for g in groups]
                       + [_fmt(det.get(g)) for g in groups]
                       + [_fmt(r["gt"]["per_class"].get(c)) for c in classes])


def _fmt(x) -> str:
    return "" if x is None else f"{x:.4f}"


def format_tables(summary: dict, cfg: AblateConfig, train_store, val_store, rows) -> str:
    """ablation.md: the paper's Tables 1-4 shaped, frame-mAP@0.5 in %, mean ± std over seeds."""
    groups = [g for g in GROUPS if any(g in s.get("gt", {}) for s in summary.values())]
    head = "| " + " | ".join(["setting"] + [("mAP" if g == "all" else f"{g} AP")
                                            for g in groups]) + " |\n"
    head += "|" + "---|" * (len(groups) + 1) + "\n"

    def table(title, entries, boxes="gt"):
        lines = [f"### {title}\n\n", head]
        for label, name, *which in entries:          # (label, row[, boxes of this line])
            b = which[0] if which else boxes
            if name in summary and b in summary[name]:
                lines.append("| " + " | ".join([label] + [_ms(summary[name][b].get(g, (None,) * 3))
                                                          for g in groups]) + " |\n")
        return "".join(lines) + "\n"

    seconds = sum(r["train_seconds"] for r in rows)
    spread = f"mean ± std over {cfg.seeds} seeds" if cfg.seeds > 1 else "one seed"
    md = [f"# Ablation (frame-mAP@0.5 in %, {spread}, ground-truth boxes unless said)\n\n",
          f"train store `{train_store}`, validation store `{val_store}`; every run: "
          f"{cfg.steps} steps x {cfg.batch_size} keyframes, Adam lr {cfg.lr}, focal loss "
          f"gamma 2, h0 = {cfg.h0}. {len(rows)} runs, {seconds:.0f} s of training in total.\n\n",
          table("Table 1: temporal context l (HGRNN, J=2)",
                [("l=0, Graph-RNN only (paper's l=0 row, 19.0)", "graph"),
                 ("l=0, HGRNN (scene RNN on the keyframe alone; not the paper's row)",
                  "hgrnn_l0"),
                 ("l=1", "hgrnn_l1"), ("l=3", "hgrnn")]),
          PAPER_L0 + "\n\n",
          table("Table 2: Scene-RNN vs Graph-RNN vs HGRNN",
                [("per-person head (x_p only)", "person"), ("Graph-RNN (l=0, J=2)", "graph"),
                 ("Scene-RNN (l=3)", "scene"), ("HGRNN (l=3, J=2)", "hgrnn")]),
          table("Table 3: graph iterations J (HGRNN, l=3)",
                [(f"J=1{' (h0 = 0: sees no other person)' if cfg.h0 == 'zeros' else ''}",
                  "hgrnn_J1"), ("J=2", "hgrnn"), ("J=3", "hgrnn_J3")])]
    if cfg.det:
        md.append(table("Table 4: detected boxes (same runs, the store's `det` source)",
                        [(ROW_LABELS.get(name, name), name) for name in summary],
                        boxes="det"))
    options = [("paper's model (graph pool over all, context boxes gt)", "hgrnn"),
               ("graph pool over the other persons", "hgrnn_others"),
               ("context boxes det in training", "hgrnn_ctxdet"),
               ("attention over the persons instead of the graph RNN", "hgrnn_attn")]
    if any(name in summary for _, name in options[1:]):
        md.append(table("Options beyond the paper (HGRNN l=3, J=2), ground-truth boxes",
                        options))
        if cfg.det:
            md.append(table("Options beyond the paper, detected boxes", options, boxes="det"))
    flows = [(row, how) for row, how in (("hgrnn_flow", "streams concatenated"),
                                         ("hgrnn_late", "late fusion")) if row in summary]
    if flows and "hgrnn" in summary:
        lines = [("RGB, GT boxes", "hgrnn", "gt")]
        lines += [(f"RGB+Flow ({how}), GT boxes", row, "gt") for row, how in flows]
        if cfg.det:
            lines += [("RGB, detected boxes", "hgrnn", "det")]
            lines += [(f"RGB+Flow ({how}), detected boxes", row, "det") for row, how in flows]
        md.append(table("Table 4 (paper): RGB vs RGB+Flow (HGRNN l=3, J=2)", lines))
        for row, how in flows:
            md.append(f"RGB+Flow ({how}) minus RGB, in AP points (and in units of the larger "
                      "of the two rows' std over seeds):\n\n")
            for boxes, by_group in flow_gain(summary, flow_row=row).items():
                md.append(f"- {boxes} boxes: " + ", ".join(
                    f"{g} {100 * d:+.1f} ({z:+.1f} std)" if z is not None
                    else f"{g} {100 * d:+.1f}" for g, (d, z) in by_group.items()) + "\n")
            md.append("\n")
    return "".join(md)


def flow_gain(summary: dict, flow_row: str = "hgrnn_flow", rgb_row: str = "hgrnn") -> dict:
    """{boxes: {group: (mean AP of RGB+Flow - mean AP of RGB, that difference / the larger
    std of the two rows (None when both stds are 0))}} over the groups both rows scored."""
    out = {}
    for boxes in ("gt", "det"):
        a, b = summary.get(flow_row, {}).get(boxes), summary.get(rgb_row, {}).get(boxes)
        if not a or not b:
            continue
        out[boxes] = {}
        for g in a:
            if g in b and a[g][0] is not None and b[g][0] is not None:
                diff, std = a[g][0] - b[g][0], max(a[g][1], b[g][1])
                out[boxes][g] = (diff, diff / std if std > 0 else None)
    return out
