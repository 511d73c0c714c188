"""`hgrnn eval-csv` (any system's result CSV) and `hgrnn eval` (a trained head on a store):
the official AVA frame-mAP."""

import click


@click.command("eval-csv")
@click.argument("gt_csv", type=click.Path(exists=True, dir_okay=False))
@click.argument("results_csv", type=click.Path(exists=True, dir_okay=False))
@click.option("--label-map", "label_map", default=None,
              help="Evaluated classes: a .pbtxt, a plain 'id name' text file, or a packaged "
                   "name (ava-v2.1 = 60 classes, ava-v2.2 = 80, ava-v2.2-2019 = 60). "
                   "Default: the store's label map when GT_CSV is a feature store, else "
                   "ava-v2.1.")
@click.option("--exclusions", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Excluded-timestamps CSV (video_id,timestamp), e.g. "
                   "ava_val_excluded_timestamps_v2.1.csv; dropped from both files "
                   "(ava-2018 / ava-2019 only).")
@click.option("--protocol", type=click.Choice(["ava-2018", "ava-2019", "ava-2020"]),
              default="ava-2018", show_default=True,
              help="Official evaluator revision: ava-2018 (v2.1 challenge code), ava-2019 "
                   "(top 50 results per keyframe), ava-2020 (top 50, no exclusions, results "
                   "on keyframes absent from the ground truth ignored).")
@click.option("--ties", type=click.Choice(["official", "stable"]), default="official",
              show_default=True,
              help="Order of equal scores (and equal IoUs): 'official' takes them as the "
                   "official code does (its numpy sorts and heap), so the number equals "
                   "the official one on the same numpy and CPU; 'stable' takes them in file "
                   "order, the same number on every machine (docs/eval.md says when the two "
                   "differ).")
@click.option("--persons", is_flag=True,
              help="Person-box AP instead (the detector's number): class-agnostic AP@0.5, "
                   "each box once per keyframe (a result box with its highest score), "
                   "action columns ignored (may be empty or -1); --label-map unused.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also write the metrics here (fractions): mAP, per_class {name: AP or "
                   "null}, classes [{id, name, AP, ...}], counts (with coverage), protocol, "
                   "ties, and the official evaluator's key names.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the mAP in percent.")
def eval_csv(gt_csv, results_csv, label_map, exclusions, protocol, ties, persons, json_out,
             quiet):
    """Official AVA frame-mAP of any system's RESULTS_CSV against GT_CSV.

    \b
    GT_CSV rows:      video_id,timestamp,x1,y1,x2,y2,action_id[,person_id]
                      (video_id,timestamp alone: an annotated keyframe without persons)
    RESULTS_CSV rows: video_id,timestamp,x1,y1,x2,y2,action_id,score
    Coordinates are normalised to [0, 1]; no header; one row per box AND action.

    Reproduces ActivityNet's get_ava_performance.py number for number, ties included
    (PASCAL VOC AP at IoU 0.5 per class, mean over classes with instances). APs are
    printed in percent, as AVA papers quote them; --json holds fractions like the official
    output. A coverage line says how many videos and keyframes the two files share; a
    result file covering only part of the ground truth gets a warning, and files with no
    keyframe in common, an empty ground truth or no class with instances are an error.
    Classes without instances are listed as n/a and left out of the mAP. GT_CSV may also
    be a feature store (HDF5): its ground-truth persons are the ground truth and its label
    map the classes (no --label-map needed). Examples:

    \b
      hgrnn eval-csv ava_val_v2.1.csv my_results.csv \\
          --exclusions ava_val_excluded_timestamps_v2.1.csv --json map.json
      hgrnn eval-csv ava_val_v2.1.csv my_person_boxes.csv --persons
      hgrnn eval-csv val.h5 my_results.csv      # a store's ground truth and label map
    """
    import json
    import sys

    from hgrnn.allocator import reuse_freed_memory
    from hgrnn.data.ava import AvaFormatError          # a CSV GT_CSV imports no torch (tested)
    from hgrnn.metrics import evaluate_csv, format_percent
    from hgrnn.metrics.groups import format_groups, mean_ap_by_group

    reuse_freed_memory()                        # the evaluator's large arrays (allocator.py)

    try:
        if _is_hdf5(gt_csv):
            from hgrnn.data.store import StoreError
            from hgrnn.hgrnn_head.checkpoint import HeadError
            try:
                result = _evaluate_against_store(gt_csv, results_csv, label_map, exclusions,
                                                 protocol, ties, persons)
            except (StoreError, HeadError) as err:
                raise click.ClickException(str(err))
        else:
            result = evaluate_csv(gt_csv, results_csv, label_map=label_map or "ava-v2.1",
                                  exclusions=exclusions, protocol=protocol,
                                  progress=sys.stderr.isatty() and not quiet, ties=ties,
                                  persons=persons)
    except (AvaFormatError, ValueError, OSError) as err:      # OSError: access
        raise click.ClickException(str(err))
    warning = result.coverage_warning()
    if warning and not quiet:
        click.echo(warning, err=True)
    groups = mean_ap_by_group(result.per_class, result.ids)
    if quiet:
        click.echo(format_percent(result.mAP))
    else:
        click.echo(result.format_table())
        if groups:
            click.echo(format_groups(groups))
    if json_out:
        try:
            with open(json_out, "w", encoding="utf-8") as f:
                json.dump({**result.to_dict(), "action_groups": groups}, f, indent=2)
                f.write("\n")
        except OSError as err:
            raise click.ClickException(f"cannot write --json {json_out}: {err}")


def _is_hdf5(path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"\x89HDF\r\n\x1a\n"


def _evaluate_against_store(store, results_csv, label_map, exclusions, protocol, ties,
                            persons):
    """Frame-mAP (or person-box AP) of a result CSV against a feature store's ground-truth
    persons, over the store's label map (or `label_map` when it is the same)."""
    from hgrnn.data.ava import load_label_map, read_exclusions, read_results
    from hgrnn.hgrnn_head.infer import store_ground_truth_of
    from hgrnn.metrics import check_evaluable, evaluate, evaluate_persons

    gt, lm = store_ground_truth_of(store, None if label_map is None else
                                   load_label_map(label_map), label_map)
    excluded = read_exclusions(exclusions) if exclusions else None
    results = read_results(results_csv, None if persons else lm, excluded, progress=False)
    if persons:
        result = evaluate_persons(gt, results, exclusions=excluded, protocol=protocol, ties=ties)
    else:
        result = evaluate(gt, results, lm, protocol=protocol, exclusions=excluded, ties=ties)
    check_evaluable(result, str(store), str(results_csv))
    return result


@click.command("eval")
@click.option("--store", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Feature store to score (its 'det' boxes, or 'gt' with --gt-boxes).")
@click.option("--checkpoint", required=True, type=click.Path(exists=True),
              help="A checkpoint from train-head (RUN_DIR/last.pt or RUN_DIR/best.pt; "
                   "RUN_DIR itself means last.pt).")
@click.option("--gt-boxes", is_flag=True,
              help="Score the ground-truth boxes (confidence 1) instead of the detections "
                   "(paper Table 4: GT 25.2 vs detected 20.9 mAP).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write results.csv (AVA format), metrics.json and per_class_ap.png here.")
@click.option("--nms/--no-nms", default=None,
              help="Class-specific NMS per keyframe. Default: on for detections, off with "
                   "--gt-boxes (ground-truth boxes have no duplicates: NMS could only drop a "
                   "true positive where two people's boxes overlap). metrics.json records it.")
@click.option("--nms-iou", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="NMS drops a box overlapping a higher-scored box of the same class above "
                   "this IoU. 0.5 is the metric's own matching IoU, so a suppressed box could "
                   "only have been a false positive on the same person; 1 disables NMS.")
@click.option("--min-score", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Drop result rows scored below this (0 keeps every box x class, as AVA "
                   "result files usually do; e.g. 0.01 makes results.csv much smaller and can "
                   "only lower AP slightly, by cutting the tail of each class's ranking).")
@click.option("--gt-csv", type=click.Path(exists=True, dir_okay=False), default=None,
              help="AVA ground-truth CSV to evaluate against (default: the store's own "
                   "ground-truth persons).")
@click.option("--exclusions", type=click.Path(exists=True, dir_okay=False), default=None,
              help="AVA excluded-timestamps CSV (e.g. ava_val_excluded_timestamps_v2.1.csv). "
                   "Default: the exclusions extract-features recorded in the store, if any.")
@click.option("--protocol", type=click.Choice(["ava-2018", "ava-2019", "ava-2020"]),
              default="ava-2018", show_default=True,
              help="Evaluation protocol (ava-2018: the official v2.1 frame-mAP the paper uses).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--threads", "num_threads", type=click.IntRange(min=0), default=1,
              show_default=True,
              help="torch CPU threads while scoring (0: torch's default, one per core).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar; print only the mAP in percent.")
@click.option("--sort-classes", type=click.Choice(["ap", "labelmap"]), default="ap",
              show_default=True,
              help="Order of the bars in per_class_ap.png: by AP (classes without instances "
                   "last) or the label map's order.")
@click.option("--report", "write_report", is_flag=True,
              help="Also write the error-analysis page of the results (as `hgrnn report`) to "
                   "OUT/report/index.html; needs --out.")
def eval_cmd(store, checkpoint, gt_boxes, out_dir, nms, nms_iou, min_score, gt_csv, exclusions,
             protocol, device, num_threads, sort_classes, quiet, write_report):
    """Score every keyframe of a store with a trained head and print the frame-mAP.

    Score of a (box, class) = action probability x person confidence, then (detections
    only, unless --nms/--no-nms) class-specific NMS per keyframe; keyframes without persons
    produce no rows. Prints the per-class AP table and the mAP (official AVA frame-mAP at
    IoU 0.5). A store without ground truth (e.g. the features.h5 of `hgrnn predict`) and no
    --gt-csv: results.csv is written and there is nothing to score (exit status 0).

    \b
    Examples:
      hgrnn eval --store val.h5 --checkpoint runs/hgrnn --out runs/hgrnn/eval-det
      hgrnn eval --store val.h5 --checkpoint runs/hgrnn/last.pt --gt-boxes
      hgrnn eval --store ava_val_v2.1.h5 --checkpoint runs/hgrnn --gt-csv ava_val_v2.1.csv \\
        --exclusions ava_val_excluded_timestamps_v2.1.csv
    """
    from hgrnn.data.store import StoreError
    from hgrnn.hgrnn_head.checkpoint import HeadError
    from hgrnn.hgrnn_head.infer import evaluate_store

    if write_report and not out_dir:
        raise click.UsageError("--report needs --out DIR (the page is written to DIR/report/)")
    try:
        result = evaluate_store(store, checkpoint, gt_boxes=gt_boxes, out_dir=out_dir,
                                nms=nms, nms_iou=nms_iou, gt_csv=gt_csv,
                                exclusions=exclusions,
                                protocol=protocol, progress=not quiet, device=device,
                                min_score=min_score, num_threads=num_threads,
                                sort_classes=sort_classes)
    except (HeadError, StoreError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    if result is None:
        where = (f"wrote {out_dir}/results.csv" if out_dir else
                 "pass --out DIR to keep the results")
        click.echo(f"{store}: no ground truth to score against (no labelled 'gt' persons in the "
                   f"store and no --gt-csv): {where}; nothing to score")
        return
    warning = result.coverage_warning()
    if warning and not quiet and gt_csv:
        click.echo(warning, err=True)
    if quiet:
        from hgrnn.metrics import format_percent
        click.echo(format_percent(result.mAP))          # percent, like eval-csv -q
    else:
        from hgrnn.metrics.groups import format_groups, mean_ap_by_group

        click.echo(result.format_table())
        groups = format_groups(mean_ap_by_group(result.per_class, result.ids))
        if groups:
            click.echo(groups)
        if out_dir:
            click.echo(f"wrote {out_dir}/results.csv, metrics.json, per_class_ap.png", err=True)
    if write_report:
        _eval_report(store, out_dir, gt_csv, exclusions, protocol, quiet)


def _eval_report(store, out_dir, gt_csv, exclusions, protocol, quiet):
    """`eval --report`: the page of OUT/results.csv against the ground truth and
    exclusions eval used (--gt-csv or the store's persons; --exclusions or the store's)."""
    import os

    from hgrnn.apps.report import report_files
    from hgrnn.data.windows import FeatureStore
    from hgrnn.hgrnn_head.infer import stored_exclusions

    fs = FeatureStore(store, box_source="gt", lazy=True)
    if exclusions is None:
        exclusions = stored_exclusions(fs)[0]
    try:
        done = report_files(gt_csv or store, [os.path.join(out_dir, "results.csv")],
                            os.path.join(out_dir, "report"), label_map=fs.label_map,
                            exclusions=exclusions, protocol=protocol)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    if not quiet:
        click.echo(f"wrote {done['index']}", err=True)
