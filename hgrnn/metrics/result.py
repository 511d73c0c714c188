"""What :func:`hgrnn.metrics.evaluate` returns (:class:`EvalResult`: JSON, the table) and
how commands print and check it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

OFFICIAL_MAP_KEY = "PascalBoxes_Precision/mAP@0.5IOU"
OFFICIAL_CLASS_KEY = "PascalBoxes_PerformanceByCategory/AP@0.5IOU/"


@dataclass
class EvalResult:
    """Frame-mAP and per-class APs.

    mAP: mean AP over classes with instances (NaN if no class has any);
    per_class: class name -> AP, label-map order, None for classes without instances (a
    name that several ids share gets " (id N)" appended);
    counts: {"instances", "results", "true_positives": {name: int} and totals
    ("total_instances", ...), plus what was dropped and why};
    protocol: one of :data:`PROTOCOLS`."""

    mAP: float
    per_class: dict
    counts: dict
    protocol: str
    ids: dict = field(default_factory=dict)      # class name -> action id
    ties: str = "official"

    def to_dict(self) -> dict:
        """JSON-ready dict (fractions, not percents): {"mAP", "per_class" {name: AP or
        None}, "classes" [{"id", "name", "AP", "instances", "results", "true_positives"}],
        "counts", "protocol", "ties"} plus the official evaluator's keys
        ("PascalBoxes_Precision/mAP@0.5IOU" and
        "PascalBoxes_PerformanceByCategory/AP@0.5IOU/<name>"), so scripts written for the
        official output keep working."""
        def f(v):
            return None if v is None or np.isnan(v) else float(v)
        inst = self.counts.get("instances", {})
        res = self.counts.get("results", {})
        tps = self.counts.get("true_positives", {})
        d = {"mAP": f(self.mAP),
             "per_class": {k: f(v) for k, v in self.per_class.items()},
             "classes": [{"id": self.ids.get(k), "name": k, "AP": f(v),
                          "instances": inst.get(k, 0), "results": res.get(k, 0),
                          "true_positives": tps.get(k, 0)} for k, v in self.per_class.items()],
             "counts": self.counts, "protocol": self.protocol, "ties": self.ties,
             OFFICIAL_MAP_KEY: f(self.mAP)}
        for k, v in self.per_class.items():
            d[OFFICIAL_CLASS_KEY + k] = f(v)
        return d

    def to_json(self, indent=2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def coverage_line(self) -> str:
        """Videos / keyframes in the ground truth, the results and both (one line)."""
        c = self.counts.get("coverage")
        if not c:
            return ""
        return (f"coverage: ground truth {c['gt_videos']:,} videos / {c['gt_keyframes']:,} "
                f"keyframes; results {c['results_videos']:,} / {c['results_keyframes']:,}; "
                f"in both {c['common_videos']:,} / {c['common_keyframes']:,}")

    def coverage_warning(self) -> str | None:
        """A warning when the results cover only part of the ground truth, else None."""
        c = self.counts.get("coverage")
        if not c or c["common_keyframes"] >= c["gt_keyframes"] or not c["common_keyframes"]:
            return None
        return (f"warning: the results cover {c['common_videos']:,} of {c['gt_videos']:,} "
                f"ground-truth videos ({c['common_keyframes']:,} of {c['gt_keyframes']:,} "
                "keyframes); every uncovered box is a miss, so this mAP is not comparable "
                "to AVA numbers (evaluate against the ground truth of the covered videos)")

    def format_table(self) -> str:
        """Coverage line, per-class AP table and mAP, for humans; APs in percent (as AVA
        papers quote them; --json and to_dict() hold fractions)."""
        inst = self.counts.get("instances", {})
        res = self.counts.get("results", {})
        tps = self.counts.get("true_positives", {})
        width = max([len(n) for n in self.per_class] + [10])
        lines = [line for line in (self.coverage_line(),) if line]
        lines.append(f"{'id':>4}  {'class':<{width}}  {'AP %':>7}  {'inst':>7}  "
                     f"{'results':>9}  {'TP':>7}")
        for name, ap in self.per_class.items():
            aps = "    n/a" if ap is None else f"{100 * ap:7.2f}"
            lines.append(f"{self.ids.get(name, ''):>4}  {name:<{width}}  {aps}  "
                         f"{inst.get(name, 0):>7}  {res.get(name, 0):>9}  "
                         f"{tps.get(name, 0):>7}")
        n_eval = sum(v is not None for v in self.per_class.values())
        lines.append(f"mAP ({self.protocol}, ties {self.ties}, {n_eval} classes with "
                     f"instances): {format_percent(self.mAP)} %")
        dropped = {k: v for k, v in self.counts.items()
                   if k.startswith(("gt_", "results_")) and v}
        if dropped:
            lines.append("dropped: " + ", ".join(f"{k}={v}" for k, v in dropped.items()))
        return "\n".join(lines)


def format_percent(x) -> str:
    """A fraction as percent with 4 decimals ("6.4128"), "nan" for NaN/None: how every
    command prints an AP or mAP for humans."""
    return "nan" if x is None or np.isnan(x) else f"{100 * x:.4f}"


def check_evaluable(result: "EvalResult", gt_name, results_name) -> None:
    """Raise ValueError (naming the files) where the result is no AVA number at all: an
    empty ground truth, no class with instances, no keyframe in common."""
    cov = result.counts.get("coverage", {})
    if cov.get("gt_keyframes", 0) == 0:
        raise ValueError(f"{gt_name}: the ground truth is empty (no annotated keyframe "
                         "left after the label map and exclusions): nothing to evaluate")
    if result.counts.get("total_instances", 0) == 0:
        skipped = result.counts.get("gt_skipped_action_not_in_label_map", 0)
        why = (f" ({skipped} rows have actions outside the label map: pass --label-map "
               "with the dataset's classes)" if skipped else "")
        raise ValueError(f"{gt_name}: no ground-truth box has an action of the label map"
                         f"{why}: no class to evaluate")
    if cov.get("common_keyframes", 0) == 0:
        raise ValueError(
            f"{results_name} and {gt_name} have no keyframe in common (results: "
            f"{cov.get('results_videos', 0)} videos, {cov.get('results_keyframes', 0)} "
            f"keyframes; ground truth: {cov.get('gt_videos', 0)} videos, "
            f"{cov.get('gt_keyframes', 0)} keyframes): are they from the same videos and "
            "split?")
