"""`hgrnn report`: an error-analysis page for any AVA result file.

Writes ``DIR/index.html`` (one static page: no server, no network, plain JavaScript for the
sortable class table, sections that fold) and ``DIR/report.json`` (every number on the
page); with videos, thumbnails in ``DIR/thumbs/``.

What is on the page, and where each number comes from:

* the frame-mAP, per-class APs, counts and coverage: :func:`hgrnn.metrics.evaluate`, on the
  rows read exactly as ``eval-csv`` reads them (same readers, label map, exclusions,
  protocol and tie order), so every AP equals ``eval-csv --json``'s; mAP per AVA action
  group: :mod:`hgrnn.metrics.groups`;
* per class, what the APs are made of: :func:`match_results` redoes the protocol's matching
  and keeps, per result row, true / false positive, its rank in the class's ranking and the
  ground-truth box it took (equal scores in file order, i.e. ``ties="stable"``: its APs
  equal ``evaluate(..., ties="stable")`` exactly, and the official tie order's wherever no
  two results of a class share a score). From it: the precision-recall curve; the class's
  errors at its "operating point" N = its number of ground-truth instances (Hoiem et al.'s
  convention for diagnosing detectors: the N highest-scored results of the class, where
  precision and recall are equal when all are found), that is the false positives among
  the top N, each put in one of four kinds by the ground-truth person it overlaps most
  (any class):

  - *wrong label*: a person at IoU >= 0.5 who does not have this class (the person's real
    classes are counted as the class's confusions),
  - *duplicate*: a person at IoU >= 0.5 who has it (their box went to a higher-scored
    result, or the result's best box of the class is another person's),
  - *localisation*: the best person at 0.1 <= IoU < 0.5,
  - *background*: no person at IoU >= 0.1;

  and the ground-truth boxes the top N did not find (*missed*: no result of the class on
  the box at IoU >= 0.5, or one ranked below N);
* with videos: per class, thumbnails of the top-scored false positives (result box in
  orange, the person it overlaps most in green) and of missed boxes (green), cut from the
  keyframe's frame, decoded as `hgrnn visualize` decodes (:mod:`hgrnn.data.video`, one
  sequential pass per video, the keyframe's centre frame);
* with compare files: their mAP, group mAPs and per-class APs side by side, and the
  per-class differences to the first result file, sorted.

The modules, in the order the data flows (:func:`report_files` runs them):

  inputs      the ground truth and result files, read as eval-csv reads them
  match       the protocol's matching per result row (:class:`Matching`)
  errors      persons, each false positive's kind, the missed boxes (at N)
  analysis    every number of the page, one JSON-ready dict (:func:`analyse`)
  thumbnails  the galleries' thumbnails, cut from the videos
  page        report.json and index.html (with the package data page.html, page.css,
              page.js)
"""

from __future__ import annotations

import time
from pathlib import Path

from hgrnn.apps.report.analysis import analyse
from hgrnn.apps.report.errors import ERROR_KINDS
from hgrnn.apps.report.inputs import ReportInputs, load_inputs
from hgrnn.apps.report.match import Matching, match_results
from hgrnn.apps.report.page import write_report
from hgrnn.apps.report.thumbnails import render_thumbnails

__all__ = ["ReportInputs", "Matching", "load_inputs", "match_results", "analyse",
           "render_thumbnails", "write_report", "report_files", "ERROR_KINDS"]


def report_files(gt_path, results_paths, out_dir, label_map=None, exclusions=None,
                 protocol="ava-2018", ties="official", videos=None, time_offset=0.0,
                 progress=False) -> dict:
    """`hgrnn report`: read, evaluate, analyse, optionally cut thumbnails, write the page.
    results_paths: the result file first, then the files to compare. Returns
    {"index", "json", "mAP", "thumbnails" (render_thumbnails' dict or None), "warnings"
    (eval-csv's coverage warnings), "seconds"}."""
    t0 = time.perf_counter()
    inputs = load_inputs(gt_path, results_paths, label_map, exclusions, protocol, progress)
    analysis = analyse(inputs, protocol, ties)
    thumbs = None
    if videos is not None:
        thumbs = render_thumbnails(analysis, videos, out_dir, time_offset)
    index = write_report(analysis, out_dir)
    return {"index": str(index), "json": str(Path(out_dir) / "report.json"),
            "mAP": analysis["runs"][0]["metrics"]["mAP"], "thumbnails": thumbs,
            "warnings": [w if k == 0 else f"{r['name']}: {w}"
                         for k, r in enumerate(analysis["runs"])
                         if (w := r["coverage_warning"])],
            "seconds": time.perf_counter() - t0}
