"""`hgrnn predict` (videos -> results.csv + drawn videos) and `hgrnn visualize` (any AVA
result / ground-truth CSV drawn onto its video)."""

import click

from hgrnn.apps.predict_config import PredictConfig
from hgrnn.cli.options import (default_of, device_option, predict_extraction_options,
                               resample_fps_option, time_offset_option)


def _parse_grid(ctx, param, value):
    try:
        rows, cols = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected ROWSxCOLUMNS, e.g. 3x4") from None
    if rows < 1 or cols < 1:
        raise click.BadParameter(f"{value!r}: rows and columns must be >= 1")
    return rows, cols


_draw_options = [
    click.option("--min-score", "draw_min_score", type=click.FloatRange(0, 1),
                 default=default_of(PredictConfig, "draw_min_score"), show_default=True,
                 help="Label a person with its actions scored at least this (a person with "
                      "none gets a thin outline without a label)."),
    click.option("--top-k", type=click.IntRange(min=1), default=default_of(PredictConfig, "top_k"),
                 show_default=True, help="At most this many actions per person, best first."),
    click.option("--max-size", type=click.IntRange(min=16),
                 default=default_of(PredictConfig, "max_size"),
                 help="Scale drawn videos so their longer side is at most this many pixels "
                      "(default: the input's size)."),
    click.option("--min-size", type=click.IntRange(min=16),
                 default=default_of(PredictConfig, "min_size"),
                 help="Scale drawn videos up so their shorter side is at least this many "
                      "pixels, e.g. 480 for a 160x120 video: sharper labels that cover less "
                      "of it (default: the input's size)."),
]


def _with(options):
    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


@click.command("predict")
@click.argument("videos", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--checkpoint", required=True, type=click.Path(exists=True),
              help="A train-head checkpoint (RUN/last.pt or RUN/best.pt; RUN itself means "
                   "last.pt).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder: results.csv, <video>.mp4 (predictions drawn), features.h5.")
@time_offset_option
@resample_fps_option
@predict_extraction_options
@device_option
@click.option("--keep-store/--no-keep-store", default=default_of(PredictConfig, "keep_store"),
              show_default=True,
              help="Keep the features in OUT/features.h5 (a second run with another head, or "
                   "more videos, reuses them) or use a temporary store.")
@_with(_draw_options)
@click.option("--no-video", is_flag=True, help="Write results.csv only, no drawn videos.")
@click.option("--nms-iou", type=click.FloatRange(0, 1),
              default=default_of(PredictConfig, "nms_iou"), show_default=True,
              help="Class-specific NMS per keyframe, as `hgrnn eval`.")
@click.option("--threads", "num_threads", type=click.IntRange(min=0),
              default=default_of(PredictConfig, "num_threads"), show_default=True,
              help="torch CPU threads while the head scores (0: torch's default).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def predict_cmd(videos, checkpoint, out_dir, keep_store, draw_min_score, top_k, max_size,
                min_size, no_video, nms_iou, num_threads, quiet, **extract_options):
    """Run a trained head on your own videos: every person's actions, drawn.

    For each VIDEO (its id is the file name without extension): person boxes (--detector,
    default Faster R-CNN, or --detections CSV) and I3D features at every second (or
    --keyframes) go into OUT/features.h5 through the extraction stage (same options as
    `extract-features`); the head scores each keyframe with its context window over the
    video's own keyframes. Writes OUT/results.csv (AVA result format: `hgrnn eval-csv` and
    `hgrnn visualize` read it), OUT/<video>.mp4 with every person's top actions drawn, and
    prints a summary per video. The streams extracted are those the head reads (a head
    trained with --streams rgb+flow needs --flow-backbone-weights too). The extraction
    settings must make the features the head was trained on (feature dim, streams, backbone
    weights); otherwise it stops and says which differs. Exit status 1 when a video could
    not be decoded.

    \b
    Examples:
      hgrnn predict my_clip.mp4 --checkpoint runs/hgrnn --out pred \\
          --backbone-weights runs/i3d-ft/backbone.pt
      hgrnn predict a.mp4 b.mkv --checkpoint runs/hgrnn --out pred \\
          --backbone-weights runs/i3d-ft/backbone.pt --detections boxes.csv --no-keep-store
    """
    import sys

    from hgrnn.data.ava import AvaFormatError
    from hgrnn.data.store import StoreError
    from hgrnn.apps.predict import PredictError, format_summary, predict_videos
    from hgrnn.hgrnn_head.checkpoint import HeadError
    from hgrnn.pipeline.extract import ExtractConfig
    from hgrnn.pipeline.i3d import I3DWeightsError
    from hgrnn.data.video import VideoError
    from hgrnn.pipeline.visualize import VisualizeError

    if not extract_options.get("detections") and not extract_options.get("detector"):
        extract_options["detector"] = "faster-rcnn"
    extract = ExtractConfig(out="", videos=None, progress=not quiet, **extract_options)
    cfg = PredictConfig(checkpoint=checkpoint, out=out_dir, keep_store=keep_store,
                        nms_iou=nms_iou, draw_min_score=draw_min_score, top_k=top_k,
                        draw=not no_video, max_size=max_size, min_size=min_size, device=extract.device,
                        num_threads=num_threads, progress=not quiet)
    try:
        result = predict_videos(list(videos), extract, cfg)
    except (PredictError, HeadError, StoreError, VisualizeError, VideoError, AvaFormatError,
            I3DWeightsError, FileNotFoundError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(format_summary(result, draw_min_score))
    if result["failed"]:
        sys.exit(1)


@click.command("visualize")
@click.argument("video", type=click.Path(exists=True, dir_okay=False))
@click.option("--results", "results_csv", type=click.Path(exists=True, dir_okay=False),
              help="AVA result CSV (video_id,timestamp,x1,y1,x2,y2,action_id,score) of any "
                   "system, e.g. OUT/results.csv of `hgrnn predict` or `hgrnn eval`.")
@click.option("--gt", "gt_csv", type=click.Path(exists=True, dir_okay=False),
              help="AVA ground-truth CSV, drawn in green with its actions under each box.")
@click.option("--label-map", default=None,
              help="Class names: a .pbtxt / 'id name' file or ava-v2.1 | ava-v2.2 | "
                   "ava-v2.2-2019 (ids it lacks are shown as 'id N'). Default: the label "
                   "map beside the CSV (predict's features_label_map.txt, convert's "
                   "<csv>_label_map.txt), else ava-v2.1.")
@click.option("--video-id", default=None,
              help="The video's id in the CSVs (default: VIDEO's file name without extension).")
@_with(_draw_options)
@time_offset_option
@click.option("--out", "out", type=click.Path(),
              help="The drawn video: FILE.mp4, or a folder DIR/ (writes DIR/<video_id>.mp4).")
@click.option("--sheet", type=click.Path(dir_okay=False),
              help="Also write a contact sheet PNG: --sheet-grid keyframes, evenly spread, "
                   "with the timestamp under each.")
@click.option("--sheet-grid", default="3x4", show_default=True, callback=_parse_grid,
              metavar="ROWSxCOLS", help="Grid of the contact sheet.")
@click.option("--sheet-width", "sheet_tile_width", type=click.IntRange(min=32), default=320,
              show_default=True, help="Width of each contact-sheet tile in pixels.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def visualize_cmd(video, results_csv, gt_csv, label_map, video_id, draw_min_score, top_k,
                  max_size, min_size, time_offset, out, sheet, sheet_grid, sheet_tile_width, quiet):
    """Draw an AVA result file (and/or ground truth) onto its video.

    Every person box of each keyframe is held for the second centred on the keyframe
    (frame-exact: frame n shows keyframe floor(n / fps + OFFSET + 1/2)), with its --top-k
    actions scored >= --min-score as 'name score' labels; ground truth in green. Works for
    the results of any AVA system. The output has the input's frame count, frame rate and
    size (or --min-size / --max-size), H.264 when FFmpeg has it, else MPEG-4. Draw on the
    source video, not on predict's drawn OUT/<video>.mp4 (it has labels already).

    \b
    Examples:
      hgrnn visualize my_clip.mp4 --results pred/results.csv --out drawn/
      hgrnn visualize videos_15min/1j20qq1JyX4.mp4 --results my_results.csv \\
          --gt ava_val_v2.1.csv --time-offset 900 --out 1j20.mp4 --sheet 1j20.png
    """
    from hgrnn.data.ava import AvaFormatError
    from hgrnn.pipeline.visualize import VisualizeError, label_map_beside, visualize

    if label_map is None:
        beside = label_map_beside(results_csv, gt_csv)
        label_map = "ava-v2.1" if beside is None else str(beside)
        if beside is not None:
            click.echo(f"class names from {beside} (found beside the CSV; --label-map "
                       f"chooses others)")
    try:
        s = visualize(video, out, results_csv=results_csv, gt_csv=gt_csv, label_map=label_map,
                      video_id=video_id, min_score=draw_min_score, top_k=top_k,
                      time_offset=time_offset, max_size=max_size, min_size=min_size, sheet=sheet,
                      sheet_grid=sheet_grid, sheet_tile_width=sheet_tile_width,
                      progress=not quiet)
    except (VisualizeError, AvaFormatError, FileNotFoundError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    wrote = [p for p in (s["out"], sheet) if p]
    click.echo(f"{s['video_id']}: {s['keyframes_drawn']} keyframes drawn ({s['persons']} result "
               f"persons, {s['gt_persons']} ground-truth persons) on {s['frames']} frames at "
               f"{s['fps']:g} fps, {s['width']}x{s['height']}"
               + (f", {s['codec']}" if s["codec"] else "") + "; wrote " + ", ".join(wrote))
