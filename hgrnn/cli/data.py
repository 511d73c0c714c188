"""Own-data commands: `hgrnn render-example`, `hgrnn check-data`, `hgrnn convert ...`
(docs/own-data.md walks through them)."""

import click

from hgrnn.cli.options import default_of, video_source_options
from hgrnn.pipeline.backbones import DEFAULT_BACKBONE, input_settings
from hgrnn.pipeline.example_config import ExampleConfig


@click.command("render-example")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--videos", type=click.IntRange(min=1),
              default=default_of(ExampleConfig, "videos"), show_default=True,
              help="Number of videos (clip1, clip2, ...).")
@click.option("--seconds", type=click.IntRange(min=2),
              default=default_of(ExampleConfig, "seconds"), show_default=True,
              help="Length of each video; keyframes at 1 .. SECONDS-1.")
@click.option("--fps", type=click.FloatRange(min=1),
              default=default_of(ExampleConfig, "fps"), show_default=True,
              help="Frame rate of the videos.")
@click.option("--size", nargs=2, type=click.IntRange(min=16),
              default=default_of(ExampleConfig, "size"),
              show_default=True, metavar="W H", help="Frame size in pixels (even numbers).")
@click.option("--persons", type=click.IntRange(min=1, max=5),
              default=default_of(ExampleConfig, "persons"), show_default=True,
              help="Moving persons per video.")
@click.option("--seed", type=int, default=default_of(ExampleConfig, "seed"), show_default=True,
              help="Random seed.")
@click.option("--overwrite", is_flag=True, help="Replace an example already in OUT_DIR.")
def render_example_cmd(out_dir, videos, seconds, fps, size, persons, seed, overwrite):
    """Write a small ready-to-use example dataset into OUT_DIR.

    \b
    OUT_DIR/videos/clip<N>.mp4  rendered videos of moving, labelled "persons"
    OUT_DIR/annotations.csv     ground truth (AVA format, person ids)
    OUT_DIR/persons.csv         person boxes with scores (as from a detector)
    OUT_DIR/label_map.txt       3 classes with custom ids (101 stand, 102 walk, 103 carry)
    OUT_DIR/README.txt          one line per file

    Every command works on it; docs/own-data.md starts from it. Example:

    \b
      hgrnn render-example example
      hgrnn check-data --annotations example/annotations.csv \\
          --label-map example/label_map.txt --videos example/videos --clip-frames 8
    """
    from hgrnn.pipeline.example import render_example

    try:
        summary = render_example(out_dir, videos=videos, seconds=seconds, fps=fps, size=size,
                                 persons=persons, seed=seed, overwrite=overwrite)
    except (ValueError, OSError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"{out_dir}: {summary['videos']} videos, {summary['keyframes']} keyframes, "
               f"{summary['persons']} annotated persons")
    for name, text in summary["files"].items():
        click.echo(f"  {name:16s} {text}")


@click.command("check-data")
@click.option("--annotations", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Ground-truth CSV: video_id,timestamp,x1,y1,x2,y2,action_id[,person_id].")
@click.option("--detections", type=click.Path(exists=True, dir_okay=False),
              help="Person-box CSV: video_id,timestamp,x1,y1,x2,y2,,score (action empty or -1).")
@click.option("--label-map", default=None,
              help="Your classes: a .pbtxt, an 'id name' text file or a packaged name "
                   "(default: ava-v2.1, as every other command).")
@video_source_options
@click.option("--exclusions", type=click.Path(exists=True, dir_okay=False),
              help="Excluded-timestamps CSV (video_id,timestamp).")
@click.option("--clip-frames", type=click.IntRange(min=1),
              default=input_settings(DEFAULT_BACKBONE)["clip_frames"], show_default=True,
              help="Frames per clip, as you will give it to extract-features (for the clip "
                   "span per video).")
@click.option("--frame-stride", type=click.IntRange(min=1),
              default=input_settings(DEFAULT_BACKBONE)["frame_stride"], show_default=True,
              help="Frame stride, as you will give it to extract-features.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check_data_cmd(annotations, detections, label_map, videos, frames, fps, time_offset,
                   exclusions, clip_frames, frame_stride, as_json):
    """Check a dataset before extracting features: every problem at once.

    Reports rows that fail to parse (FILE:LINE), action ids missing from the label map,
    boxes outside [0, 1] or degenerate, duplicate rows, keyframes before a video's start or
    past its end (with the --time-offset that would fit), videos in the CSV but not on disk
    and the reverse, frame rate and clip span per video, persons per keyframe, instances
    per class (and classes with none). Exit status 1 on errors, 0 with warnings only.
    Videos are checked when --videos or --frames is given; pass the --time-offset,
    --clip-frames and --frame-stride you will give extract-features.

    \b
    Example:
      hgrnn check-data --annotations gt.csv --detections persons.csv \\
          --label-map my_classes.txt --videos videos --clip-frames 16
    """
    import json
    import sys

    from hgrnn.allocator import reuse_freed_memory
    from hgrnn.data.check import check_data, format_report

    reuse_freed_memory()                        # large arrays of big CSVs (allocator.py)

    try:
        report = check_data(annotations, detections=detections, label_map=label_map,
                            videos=videos, frames=frames, fps=fps, time_offset=time_offset,
                            exclusions=exclusions, clip_frames=clip_frames,
                            frame_stride=frame_stride)
    except (ValueError, OSError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(json.dumps(report, indent=1) if as_json else format_report(report))
    if not report["ok"]:
        sys.exit(1)


@click.group("convert")
def convert_group():
    """Annotation-tool exports -> AVA ground-truth CSV (one keyframe per second).

    \b
      hgrnn convert cvat-video annotations.xml --fps 25 --out gt.csv
      hgrnn convert via project.json --videos videos --out gt.csv
    The mapping of each format: docs/own-data.md.
    """


def _label_map_option(command):
    return click.option(
        "--label-map", default=None,
        help="Your classes (.pbtxt / 'id name' file): names in the export are matched to "
             "them, case-insensitively. Without it the classes are the names found, ids "
             "101..100+K (never AVA's 1..80), written to --label-map-out.")(command)


def _label_map_out_option(command):
    return click.option(
        "--label-map-out", type=click.Path(dir_okay=False), default=None,
        help="Where to write the label map made without --label-map (default: "
             "<OUT stem>_label_map.txt).")(command)


def _convert_finish(conv, out, label_map_out):
    from hgrnn.data.convert import default_label_map_path, format_stats, write_conversion

    if conv.label_map_made and label_map_out is None:
        label_map_out = default_label_map_path(out)
    written = write_conversion(conv, out, label_map_out if conv.label_map_made else None)
    click.echo(format_stats(conv, written))


@convert_group.command("cvat-video")
@click.argument("xml", type=click.Path(exists=True, dir_okay=False))
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), required=True,
              help="Frame rate of the annotated video (the XML has frame numbers only).")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Ground-truth CSV to write.")
@_label_map_option
@_label_map_out_option
@click.option("--video-id", default=None,
              help="Video id for the rows (default: the stem of the task's <source>, else "
                   "the task name).")
@click.option("--size", nargs=2, type=float, default=None, metavar="W H",
              help="Frame size in pixels when the XML has no <original_size>.")
@click.option("--videos", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of the annotated videos: the task's frames are checked against "
                   "each video's length.")
def convert_cvat_cmd(xml, fps, out, label_map, label_map_out, video_id, size, videos):
    """CVAT for video 1.1 XML -> AVA ground truth; person ids are the track ids.

    Keyframe s (whole seconds from the video start, so --time-offset 0) takes each track's
    box at frame round(s * FPS), interpolated as CVAT does; actions are the track label
    and the attributes (checkbox names, select/radio/text values) that name a class.
    """
    from hgrnn.data.ava import AvaFormatError, load_label_map
    from hgrnn.data.convert import ConvertError, cvat_video

    try:
        lm = load_label_map(label_map) if label_map else None
        conv = cvat_video(xml, fps, label_map=lm, video_id=video_id, size=size,
                          videos=videos)
        _convert_finish(conv, out, label_map_out)
    except (ConvertError, AvaFormatError, OSError) as err:
        raise click.ClickException(str(err)) from None


@convert_group.command("via")
@click.argument("json_file", metavar="JSON", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Ground-truth CSV to write.")
@_label_map_option
@_label_map_out_option
@click.option("--videos", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of the annotated videos, to read their frame size.")
@click.option("--size", nargs=2, type=float, default=None, metavar="W H",
              help="Frame size in pixels (instead of --videos).")
@click.option("--snap", type=click.FloatRange(0, 0.5), default=0.25, show_default=True,
              help="A box at time t goes to keyframe round(t) when it is at most this many "
                   "seconds away.")
@click.option("--person-attribute", default=None,
              help="Attribute holding the person id (default: one named person_id, person, "
                   "track_id, track or id).")
def convert_via_cmd(json_file, out, label_map, label_map_out, videos, size, snap,
                    person_attribute):
    """VIA 3 video annotations (project JSON) -> AVA ground truth.

    Every rectangle drawn at time t becomes a person box at keyframe round(t); its actions
    are its attribute values (checkbox, radio, select, text) that name a class.
    """
    from hgrnn.data.ava import AvaFormatError, load_label_map
    from hgrnn.data.convert import ConvertError, via_video

    try:
        lm = load_label_map(label_map) if label_map else None
        conv = via_video(json_file, label_map=lm, size=size, videos=videos, snap=snap,
                         person_attribute=person_attribute)
        _convert_finish(conv, out, label_map_out)
    except (ConvertError, AvaFormatError, OSError) as err:
        raise click.ClickException(str(err)) from None
