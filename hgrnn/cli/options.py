"""Options shared by several commands, as decorators."""

import click


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


def video_source_options(command):
    """--videos / --frames / --fps / --time-offset, shared by every stage that decodes
    video (extract-features, finetune-backbone), so that both read the same clips."""
    options = [
        click.option("--videos", type=click.Path(exists=True, file_okay=False),
                     help="Folder of <video_id>.<ext> files (mp4, mkv, webm, avi)."),
        click.option("--frames", type=click.Path(exists=True, file_okay=False),
                     help="Instead of --videos: folder of <video_id>/<video_id>_%06d.jpg (or "
                          "img_%05d.jpg) frames, numbered from 1, extracted at --fps."),
        click.option("--fps", type=float, help="Frame rate of --frames folders (e.g. 30)."),
        click.option("--time-offset", type=float, default=0.0, show_default=True,
                     help="Video time of timestamp 0: a keyframe at timestamp ts is taken at "
                          "ts - OFFSET seconds into the video (900 for the 15-minute AVA cuts "
                          "and their frame folders, 0 for the full movies). Use the same value "
                          "for finetune-backbone and extract-features."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


# A stage that runs under torchrun takes the GPU of its rank when one is there.
device_option = click.option(
    "--device", default="auto", show_default=True,
    help="auto (cuda:LOCAL_RANK when available, else cpu) | cpu | cuda | cuda:N.")
