"""`hgrnn extract-features`: videos -> HDF5 feature store (the offline GPU stage)."""

import click

from hgrnn.cli.options import (default_of, device_option, json_summary_option,
                               resample_fps_option, stream_extraction_options,
                               video_source_options, write_json_summary)
from hgrnn.pipeline.extract.config import ExtractConfig


@click.command("extract-features")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="Feature store to write; an existing store is resumed (complete videos skipped).")
@video_source_options
@resample_fps_option
@click.option("--annotations", type=click.Path(exists=True, dir_okay=False),
              help="AVA ground-truth CSV: its keyframes, and the 'gt' persons with multi-hot "
                   "labels over --label-map.")
@click.option("--label-map", default=default_of(ExtractConfig, "label_map"), show_default=True,
              help="Label map file (.pbtxt / 'id name' text) or ava-v2.1 | ava-v2.2 | ava-v2.2-2019.")
@click.option("--exclusions", type=click.Path(exists=True, dir_okay=False),
              help="AVA excluded-timestamps CSV: rows of those keyframes are dropped, and "
                   "the file's keyframes are stored in the store's config so that `hgrnn eval` "
                   "excludes them by default.")
@stream_extraction_options
@device_option
@click.option("--allow-failures", is_flag=True,
              help="Exit 0 even when some videos failed (they are recorded in the store).")
@json_summary_option("out, written, skipped, failed {video: reason}, keyframes, persons "
                     "{gt, det}, below_threshold (--detections boxes under --det-threshold), "
                     "decoded_frames, needed_frames, seconds, ranks")
@click.option("--quiet", "-q", is_flag=True,
              help="No progress bar; failures are listed in the closing summary.")
def extract_features_cmd(allow_failures, json_out, quiet, **options):
    """Decode videos and write I3D (or --backbone NAME) clip and person features into a store.

    For every keyframe: a clip of --clip-frames frames centred on it (edge frames repeated
    past the video's start/end) goes through I3D; the clip feature is the last feature map
    averaged over time and space, each person's feature the map averaged over time,
    RoIAligned in the person's box and max-pooled. With --streams rgb,flow the same comes
    from a flow I3D on the optical flow of the clip's frame pairs (computed by the decoding
    workers; TV-L1 takes about 2 s per 256x340 pair on one core, so give it many
    --workers, or use --flow raft on a GPU). Persons: 'gt' from --annotations,
    'det' from --detections or --detector. Videos are decoded once, sequentially (seeking
    once to the first keyframe's clip). Failed videos are recorded and the run goes on;
    the exit status is 1 when any failed (unless --allow-failures). Re-running resumes.

    \b
    AVA v2.1 val on one GPU (15-minute cuts named <id>.mp4, timestamps 902..1798):
      hgrnn extract-features --out ava_val.h5 --videos videos_15min --time-offset 900 \\
        --annotations ava_val_v2.1.csv --keyframes 902:1798 \\
        --detections ava_val_predicted_boxes.csv --backbone-weights rgb_imagenet.pt
    \b
    RGB + flow (the store's streams: rgb dims 0..1023, flow dims 1024..2047):
      hgrnn extract-features ... --streams rgb,flow --backbone-weights rgb_imagenet.pt \\
        --flow-backbone-weights flow_imagenet.pt --flow tvl1 --workers 16
    \b
    The same on 8 GPUs (each rank writes ava_val.rank<k>.h5; rank 0 merges them):
      torchrun --nproc-per-node 8 -m hgrnn.cli extract-features --out ava_val.h5 ...
    """
    import os
    import sys

    from hgrnn.data.store import StoreError
    from hgrnn.pipeline.extract import extract_features, format_summary
    from hgrnn.pipeline.flow import FlowError
    from hgrnn.data.video import VideoError

    options["progress"] = not quiet
    cfg = ExtractConfig(**options)
    try:
        summary = extract_features(cfg)
    except (ValueError, OSError, StoreError, VideoError, FlowError) as exc:
        raise click.ClickException(str(exc))
    if os.environ.get("RANK", "0") == "0":             # torchrun: rank 0 speaks for all
        click.echo(format_summary(summary, failures_shown=not quiet))
        if json_out:
            write_json_summary(json_out, summary)
    if summary["failed"] and not allow_failures:
        sys.exit(1)
