"""`hgrnn report`: an error-analysis page (HTML + JSON) for any AVA result file."""

import click

from hgrnn.cli.options import time_offset_option


@click.command("report")
@click.argument("gt_csv", type=click.Path(exists=True, dir_okay=False))
@click.argument("results_csv", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for index.html, report.json and thumbs/ (created).")
@click.option("--label-map", "label_map", default=None,
              help="Evaluated classes, as for eval-csv (default: the store's label map when "
                   "GT_CSV is a feature store, else ava-v2.1).")
@click.option("--exclusions", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Excluded-timestamps CSV, as for eval-csv (ava-2018 / ava-2019 only).")
@click.option("--protocol", type=click.Choice(["ava-2018", "ava-2019", "ava-2020"]),
              default="ava-2018", show_default=True, help="Official evaluator revision, as for "
              "eval-csv.")
@click.option("--ties", type=click.Choice(["official", "stable"]), default="official",
              show_default=True, help="Order of equal scores for the APs, as for eval-csv.")
@click.option("--compare", "compare", multiple=True,
              type=click.Path(exists=True, dir_okay=False),
              help="Another result file of the same classes, shown side by side with "
                   "per-class differences (repeatable).")
@click.option("--videos", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of <video_id>.mp4/.mkv/.webm/.avi: per class, thumbnails of the "
                   "top-scored false positives and of missed boxes.")
@time_offset_option
def report_cmd(gt_csv, results_csv, out_dir, label_map, exclusions, protocol, ties, compare,
               videos, time_offset):
    """Error-analysis page of RESULTS_CSV against GT_CSV: OUT/index.html and OUT/report.json.

    The frame-mAP, coverage and per-class APs exactly as eval-csv gives them, mAP per AVA
    action group, and per class: AP, instances, precision-recall curve, the false
    positives among the top N results (N = the class's instances) by kind (wrong label,
    duplicate, localisation, background), the classes those persons really had, and the
    boxes the top N missed. Open OUT/index.html in a browser (no server, no network).

    \b
    Examples:
      hgrnn report ava_val_v2.1.csv results.csv --out report/ \\
          --exclusions ava_val_excluded_timestamps_v2.1.csv
      hgrnn report gt.csv hgrnn.csv --compare per_person.csv --out cmp/
      hgrnn report gt.csv results.csv --out report/ --videos videos/ --time-offset 900
    """
    import sys

    from hgrnn.allocator import reuse_freed_memory
    from hgrnn.apps.report import report_files
    from hgrnn.data.ava import AvaFormatError
    from hgrnn.data.store import StoreError
    from hgrnn.data.video import VideoError
    from hgrnn.hgrnn_head.checkpoint import HeadError

    reuse_freed_memory()                        # the evaluator's large arrays (allocator.py)
    try:
        done = report_files(gt_csv, [results_csv, *compare], out_dir, label_map=label_map,
                            exclusions=exclusions, protocol=protocol, ties=ties, videos=videos,
                            time_offset=time_offset, progress=sys.stderr.isatty())
    except (AvaFormatError, ValueError, OSError, StoreError, HeadError, VideoError) as err:
        raise click.ClickException(str(err)) from None
    for warning in done["warnings"]:
        click.echo(warning, err=True)
    thumbs = done["thumbnails"]
    extra = (f", {thumbs['thumbnails']} thumbnails from {thumbs['videos']} videos"
             if thumbs else "")
    from hgrnn.metrics import format_percent

    click.echo(f"frame-mAP {format_percent(done['mAP'])} %; wrote {done['index']} and "
               f"{done['json']}{extra} ({done['seconds']:.1f} s)")
