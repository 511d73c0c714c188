"""`hgrnn demo` (behind `make demo`): the whole head on the embedded synthetic benchmark.

1. writes a training and a validation store with `hgrnn.data.synthetic` (once: complete stores
   of the same config are re-used);
2. trains the full HGRNN (l=3, J=2) and, beside it, the per-person baseline head (the AVA
   I3D head: each person's own feature alone) with the paper's schedule (1000 steps x 50
   keyframes, Adam lr 1e-4, focal loss gamma 2) on the ground-truth boxes;
3. scores the validation store with its ground-truth boxes and with its detections;
4. prints the two heads side by side per class group (person / temporal / relational), so
   that the gains of the scene and graph RNNs show where they must, and where every file
   is; writes OUT/summary.json. `quick` trains HGRNN alone.

Files (OUT = --out, default ./demo_out):
    OUT/train.h5, OUT/val.h5     the synthetic stores (`hgrnn inspect` them)
    OUT/run/                     the HGRNN training run (last.pt, metrics.jsonl, loss curve)
    OUT/eval_gt/, OUT/eval_det/  its results.csv (AVA format), metrics.json, per_class_ap.png
    OUT/baseline/                the per-person head: run/, eval_gt/, eval_det/ likewise
    OUT/summary.json             the numbers printed at the end
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from pathlib import Path

from hgrnn.data.synthetic import (SynthConfig, group_aps, is_complete, read_synth_entry,
                                  write_synthetic_store)
from hgrnn.hgrnn_head.infer import evaluate_store
from hgrnn.hgrnn_head.model import HeadConfig
from hgrnn.hgrnn_head.train import TrainConfig, train_head
from hgrnn.apps.demo_config import DemoConfig

log = logging.getLogger(__name__)


def _say(msg: str) -> None:
    log.info(msg)


def run_demo(cfg: DemoConfig, progress: bool = True) -> dict:
    """Run the demo; return the summary dict (also written to OUT/summary.json):
    "eval" holds HGRNN's numbers, "baseline" the per-person head's (absent with quick)."""
    t0 = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    stores = {"train": (out / "train.h5", SynthConfig(videos=cfg.train_videos,
                                                      keyframes=cfg.keyframes, seed=cfg.seed)),
              "val": (out / "val.h5", SynthConfig(videos=cfg.val_videos, keyframes=cfg.keyframes,
                                                  seed=cfg.seed + 1))}
    rewritten = False
    for name, (path, scfg) in stores.items():
        if is_complete(path, scfg):
            _say(f"[demo] {name} store {path}: present and complete, re-used")
            continue
        _say(f"[demo] writing the {name} store {path} ({scfg.videos} videos x "
             f"{scfg.keyframes} keyframes)")
        write_synthetic_store(path, scfg, overwrite=True, progress=progress)
        rewritten = True
    t_stores = time.perf_counter() - t0

    groups = read_synth_entry(stores["val"][0])["class_groups"]
    heads = [("hgrnn", out)] + ([] if cfg.quick else [("person", out / "baseline")])
    results, t_train = {}, 0.0
    for variant, where in heads:
        results[variant], seconds = _train_and_score(cfg, variant, where, stores, groups,
                                                     rewritten, progress)
        t_train += seconds
    total = time.perf_counter() - t0
    hgrnn = results["hgrnn"]
    summary = {"config": dataclasses.asdict(cfg), "checkpoint": hgrnn["checkpoint"],
               "eval": hgrnn["eval"],
               "seconds": {"stores": t_stores, "train": t_train, "total": total},
               "files": {"train_store": str(stores["train"][0]),
                         "val_store": str(stores["val"][0]), "run": str(out / "run"),
                         "eval_gt": str(out / "eval_gt"), "eval_det": str(out / "eval_det")}}
    if "person" in results:
        summary["baseline"] = {"model": "person", "checkpoint": results["person"]["checkpoint"],
                               "eval": results["person"]["eval"], "dir": str(out / "baseline")}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _train_and_score(cfg: DemoConfig, variant: str, where: Path, stores: dict, groups: dict,
                     rewritten: bool, progress: bool) -> tuple:
    """Train one head into WHERE/run and score the validation store with gt and detected
    boxes into WHERE/eval_gt and WHERE/eval_det; returns ({checkpoint, eval}, train seconds)."""
    sizes = {k: v for k, v in (("scene_hidden", cfg.scene_hidden),
                               ("graph_hidden", cfg.graph_hidden)) if v is not None}
    head = HeadConfig(variant=variant, context=cfg.context, iterations=cfg.iterations, **sizes)
    train = TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                        val_every=0, num_threads=cfg.threads)
    run_dir = where / "run"
    if rewritten and run_dir.exists():     # trained on the stores just replaced: start afresh
        shutil.rmtree(run_dir)
    resume = (run_dir / "last.pt").exists()
    what = (f"the HGRNN head (l={cfg.context}, J={cfg.iterations}" if variant == "hgrnn"
            else "the per-person baseline head (own feature only")
    _say(f"[demo] training {what}, {cfg.steps} steps x {cfg.batch_size} keyframes, lr "
         f"{cfg.lr}) -> {run_dir}" + (" (resuming the run found there)" if resume else ""))
    t0 = time.perf_counter()
    result = train_head(stores["train"][0], run_dir, head, train, resume=resume,
                        progress=progress)
    seconds = time.perf_counter() - t0
    evals = {}
    for boxes in ("gt", "det"):
        kind = "ground-truth" if boxes == "gt" else "detected"
        _say(f"[demo] scoring {stores['val'][0]} with {kind} boxes -> {where / f'eval_{boxes}'}")
        ev = evaluate_store(stores["val"][0], result["checkpoint"], gt_boxes=boxes == "gt",
                            out_dir=where / f"eval_{boxes}", progress=progress)
        per_class = ev.to_dict()["per_class"]
        evals[boxes] = {"mAP": ev.to_dict()["mAP"], "groups": group_aps(per_class, groups),
                        "per_class": per_class}
    return {"checkpoint": str(result["checkpoint"]), "eval": evals}, seconds


def format_summary(summary: dict) -> str:
    """The demo's closing report (plain text): HGRNN beside the per-person head."""
    ev, files = summary["eval"], summary["files"]
    base = summary.get("baseline", {}).get("eval")
    pct = lambda x: "-" if x is None else f"{100 * x:.1f}"  # noqa: E731
    order = ("all", "person", "temporal", "relational")
    groups = sorted(ev["gt"]["groups"], key=lambda g: order.index(g) if g in order else 9)
    title = {"all": "mAP", "person": "person cls", "temporal": "temporal cls",
             "relational": "relational cls"}
    models = [("HGRNN", ev)] + ([("per-person", base)] if base else [])
    lines = ["", "Synthetic AVA-like benchmark, validation store: frame-mAP@0.5 in % "
             "(mean AP of each class group)",
             f"  {'boxes':<9} {'head':<11}" + "".join(f"{title.get(g, g):>15}" for g in groups)]
    for boxes, label in (("gt", "gt boxes"), ("det", "detected")):
        for k, (name, e) in enumerate(models):
            lines.append(f"  {label if k == 0 else '':<9} {name:<11}"
                         + "".join(f"{pct(e[boxes]['groups'][g]):>15}" for g in groups))
        if base:
            lines.append(f"  {'':<9} {'gain':<11}" + "".join(
                f"{_gain(ev[boxes]['groups'][g], base[boxes]['groups'][g]):>15}" for g in groups))
    lines += ["",
              "  person classes: visible in the person's own feature; temporal: only in how the",
              "  scene changes across neighbouring keyframes (HGRNN's scene RNN); relational:",
              "  only in the other persons of the same keyframe, pairwise (its graph RNN).",
              "  The per-person head sees only each person's own feature, as the AVA baseline.",
              "  `hgrnn ablate --train-store ... --val-store ...` reproduces the paper's tables.",
              "",
              f"Files ({summary['seconds']['total']:.0f} s in all, "
              f"{summary['seconds']['train']:.0f} s training):",
              f"  stores        {files['train_store']}  {files['val_store']}",
              f"  HGRNN run     {files['run']}/  (last.pt, metrics.jsonl, loss curve)",
              f"  evaluations   {files['eval_gt']}/  {files['eval_det']}/  (results.csv, "
              "metrics.json, per_class_ap.png)"]
    if base:
        lines.append(f"  baseline      {summary['baseline']['dir']}/  (run/, eval_gt/, eval_det/)")
    lines.append(f"  summary       {os.path.join(os.path.dirname(files['run']), 'summary.json')}")
    return "\n".join(lines)


def _gain(a, b) -> str:
    return "-" if a is None or b is None else f"{100 * (a - b):+.1f}"
