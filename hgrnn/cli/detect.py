"""`hgrnn finetune-detector` and `hgrnn detect`: the person detector's commands."""

import click

from hgrnn.cli.options import (default_of, device_option, json_summary_option, parse_keyframes,
                               validation_options, video_source_options, write_json_summary)
from hgrnn.pipeline.detect_config import DetectConfig, DetectorArch, FinetuneDetectorConfig


@click.command("finetune-detector")
@click.option("--annotations", required=True, type=click.Path(exists=True, dir_okay=False),
              help="AVA ground-truth CSV to train on (e.g. ava_train_v2.1.csv); each distinct "
                   "box of a keyframe is one person, whatever its actions.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Run folder: detector.pt (what detect / extract-features --detector take), "
                   "state.pt (for --resume), metrics.jsonl, loss.png, config.json, keyframes/.")
@video_source_options
@click.option("--exclusions", type=click.Path(exists=True, dir_okay=False),
              help="Excluded-timestamps CSV for --annotations.")
@click.option("--cache", type=click.Path(file_okay=False),
              help="Keyframe image cache (JPEGs decoded once; reused by later runs, refused "
                   "when its settings differ). Default: OUT/keyframes.")
@click.option("--cache-quality", type=click.IntRange(1, 100),
              default=default_of(FinetuneDetectorConfig, "cache_quality"), show_default=True,
              help="JPEG quality of the cached keyframes.")
@click.option("--backbone", type=click.Choice(["resnet101", "resnet50", "resnet34", "resnet18",
                                                "resnet152"]),
              default=default_of(DetectorArch, "backbone"), show_default=True,
              help="ResNet with FPN (paper: resnet101; resnet18/34 for quick checks).")
@click.option("--init", type=click.Choice(["imagenet", "coco", "none"]),
              default=default_of(FinetuneDetectorConfig, "init"),
              show_default=True,
              help="Initial weights: ImageNet ResNet (the paper's), torchvision's COCO Faster "
                   "R-CNN (resnet50 only; predictor cut to background + person) or 'none' "
                   "(random, tests). Downloaded by torchvision unless --init-weights is given.")
@click.option("--init-weights", type=click.Path(exists=True, dir_okay=False),
              help="Local weights file instead of a download: torchvision's ResNet state dict "
                   "(e.g. resnet101-63fe2227.pth) for imagenet, "
                   "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth for coco.")
@click.option("--trainable-layers", type=click.IntRange(0, 5),
              default=default_of(FinetuneDetectorConfig, "trainable_layers"),
              help="ResNet stages that train, from the top [default: 3 for a pretrained init, "
                   "5 for none].")
@click.option("--min-size", type=click.IntRange(min=1),
              default=default_of(DetectorArch, "min_size"),
              show_default=True,
              help="Short side of the images given to the model (torchvision's default); the "
                   "keyframes are cached at this size.")
@click.option("--max-size", type=click.IntRange(min=1),
              default=default_of(DetectorArch, "max_size"),
              show_default=True,
              help="Longest side at most this (torchvision's default).")
@click.option("--proposals-train", type=click.IntRange(min=1),
              default=default_of(DetectorArch, "proposals_train"), show_default=True,
              help="RPN proposals per image in training (torchvision's default).")
@click.option("--proposals-test", type=click.IntRange(min=1),
              default=default_of(DetectorArch, "proposals_test"), show_default=True,
              help="RPN proposals per image when detecting (torchvision's default).")
@click.option("--roi-batch", type=click.IntRange(min=1),
              default=default_of(DetectorArch, "roi_batch"),
              show_default=True,
              help="Proposals sampled per image for the box head's loss.")
@click.option("--box-head-dim", type=click.IntRange(min=1),
              default=default_of(DetectorArch, "box_head_dim"), show_default=True,
              help="Width of the box head's two fully connected layers.")
@click.option("--fpn-dim", type=click.IntRange(min=1), default=default_of(DetectorArch, "fpn_dim"),
              show_default=True,
              help="Channels of the feature pyramid and the RPN (small values: quick CPU "
                   "checks).")
@click.option("--flip-prob", type=click.FloatRange(0, 1),
              default=default_of(FinetuneDetectorConfig, "flip_prob"), show_default=True,
              help="Probability of a horizontal flip of a training keyframe.")
@click.option("--lr", type=float,
              default=default_of(FinetuneDetectorConfig, "lr"), show_default=True,
              help="Initial Adam learning rate (paper: 1e-5).")
@click.option("--lr-halve-every", type=click.IntRange(min=1),
              default=default_of(FinetuneDetectorConfig, "lr_halve_every"), show_default=True,
              help="Halve the learning rate every N optimizer steps (the paper halves 'at "
                   "regular intervals' without the interval; 20000 gives 5 halvings in 100K).")
@click.option("--steps", type=click.IntRange(min=1),
              default=default_of(FinetuneDetectorConfig, "steps"), show_default=True,
              help="Optimizer steps (paper: 100K).")
@click.option("--batch-size", type=click.IntRange(min=1),
              default=default_of(FinetuneDetectorConfig, "batch_size"), show_default=True,
              help="Keyframes per optimizer step over all GPUs and accumulation (paper: 20); "
                   "each pass takes ceil(batch / (GPUs x accumulate)).")
@click.option("--accumulate", type=click.IntRange(min=1),
              default=default_of(FinetuneDetectorConfig, "accumulate"), show_default=True,
              help="Split each step into N forward/backward passes, for small GPUs.")
@validation_options("person AP@0.5 at step 0, every --val-every steps and at the end",
                    "AP protocol for validation.", FinetuneDetectorConfig)
@click.option("--seed", type=int,
              default=default_of(FinetuneDetectorConfig, "seed"), show_default=True,
              help="Initialisation, data order and flips.")
@device_option
@click.option("--workers", "num_workers", type=click.IntRange(min=0),
              default=default_of(FinetuneDetectorConfig, "num_workers"),
              show_default=True, help="Processes decoding videos into the cache and reading "
                                      "cached keyframes.")
@click.option("--threads", "num_threads", type=click.IntRange(min=0),
              default=default_of(FinetuneDetectorConfig, "num_threads"),
              show_default=True, help="torch CPU threads (0: torch's default).")
@click.option("--log-every", type=click.IntRange(min=1),
              default=default_of(FinetuneDetectorConfig, "log_every"), show_default=True,
              help="Write a metrics.jsonl line every N steps.")
@click.option("--checkpoint-every", type=click.IntRange(min=1),
              default=default_of(FinetuneDetectorConfig, "checkpoint_every"), show_default=True,
              help="Rewrite detector.pt, state.pt and loss.png every N steps (and at the end).")
@click.option("--resume", is_flag=True,
              help="Continue the run in --out from state.pt; the result equals an "
                   "uninterrupted run (--steps may be raised to extend it).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def finetune_detector_cmd(resume, quiet, **options):
    """Fine-tune the paper's person detector: a class-agnostic Faster R-CNN on AVA boxes.

    Model: torchvision Faster R-CNN with a ResNet FPN backbone and one foreground class
    (person). Defaults follow the paper: ResNet-101 from ImageNet, Adam, lr 1e-5 halved at
    regular intervals, 100K steps of 20 keyframes, random horizontal flips. Keyframes are
    decoded once (the extraction decoder, short side --min-size) into a JPEG cache. The
    checkpoint RUN/detector.pt goes to `hgrnn detect --detector` and to
    `extract-features --detector`.

    \b
    AVA v2.1 on one GPU (15-minute cuts named <id>.mp4; ImageNet weights file offline):
      hgrnn finetune-detector --annotations ava_train_v2.1.csv --videos videos_15min \\
        --time-offset 900 --exclusions ava_train_excluded_timestamps_v2.1.csv \\
        --init-weights resnet101-63fe2227.pth --out runs/detector --accumulate 4 \\
        --val-annotations ava_val_v2.1.csv --val-max-keyframes 2000
    \b
    On 4 GPUs (each pass takes 20 / 4 = 5 keyframes per GPU):
      torchrun --nproc-per-node 4 -m hgrnn.cli finetune-detector ... --out runs/detector
    \b
    Continue an interrupted run:
      hgrnn finetune-detector ... --out runs/detector --resume
    """
    import os

    from hgrnn.data.ava import AvaFormatError
    from hgrnn.pipeline.detect import DetectorError
    from hgrnn.pipeline.detector_train import finetune_detector
    from hgrnn.pipeline.finetune import FinetuneError
    from hgrnn.data.video import VideoError

    try:
        config = FinetuneDetectorConfig(**options)
        out = finetune_detector(config, resume=resume, progress=not quiet)
    except (DetectorError, FinetuneError, AvaFormatError, VideoError, ValueError,
            FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    if os.environ.get("RANK", "0") == "0":
        click.echo(f"trained {out['steps']} steps in {out['seconds']:.1f} s; checkpoint "
                   f"{out['checkpoint']}")
        if out["val"] is not None:
            from hgrnn.metrics import format_percent
            click.echo(f"validation person AP@0.5: {format_percent(out['val']['AP'])} %")
        for vid, reason in sorted(out["failed"].items()):
            click.echo(f"  not decoded (skipped) {vid}: {reason}", err=True)


@click.command("detect")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Person-box CSV to write: video_id,timestamp,x1,y1,x2,y2,,score (the "
                   "format of LFB/SlowFast's ava_*_predicted_boxes.csv). An existing output "
                   "with its OUT.progress.jsonl is resumed.")
@video_source_options
@click.option("--annotations", type=click.Path(exists=True, dir_okay=False),
              help="Detect on the keyframes of this AVA CSV (and only its videos).")
@click.option("--exclusions", type=click.Path(exists=True, dir_okay=False),
              help="Excluded-timestamps CSV: those keyframes of --annotations are skipped.")
@click.option("--keyframes", callback=parse_keyframes, metavar="START:END",
              help="Keyframe timestamps START..END (inclusive, 1 s apart), e.g. 902:1798 for AVA. "
                   "Default: the --annotations keyframes, else every second of the video.")
@click.option("--detector", default=default_of(DetectConfig, "detector"), show_default=True,
              help="'faster-rcnn' (torchvision's COCO ResNet-50 FPN, person class) or a "
                   "finetune-detector checkpoint (RUN/detector.pt).")
@click.option("--detector-weights", default=default_of(DetectConfig, "detector_weights"),
              show_default=True,
              help="For faster-rcnn: a torchvision state-dict file, 'default' (COCO weights, "
                   "downloaded once) or 'none' (random, tests only).")
@click.option("--min-score", type=click.FloatRange(0, 1),
              default=default_of(DetectConfig, "min_score"),
              show_default=True,
              help="Keep boxes scoring at least this (low for AP; extract-features "
                   "--det-threshold filters again).")
@click.option("--max-persons", type=click.IntRange(min=1),
              default=default_of(DetectConfig, "max_persons"), show_default=True,
              help="Keep at most this many best boxes per keyframe.")
@click.option("--short-side", type=click.IntRange(min=1),
              default=default_of(DetectConfig, "short_side"),
              help="Short side of the keyframe images given to the detector [default: 800 "
                   "for faster-rcnn, the training --min-size of a checkpoint].")
@click.option("--batch-size", type=click.IntRange(min=1),
              default=default_of(DetectConfig, "batch_size"),
              show_default=True, help="Keyframes per detector call.")
@click.option("--workers", type=click.IntRange(min=0), default=default_of(DetectConfig, "workers"),
              show_default=True, help="Processes decoding videos ahead of the detector.")
@device_option
@click.option("--allow-failures", is_flag=True,
              help="Exit 0 even when some videos failed (they are in OUT.progress.jsonl).")
@click.option("--track", is_flag=True, default=default_of(DetectConfig, "track"),
              help="Also link each video's persons across its keyframes and write the "
                   "person id as a 9th column (hgrnn track's defaults; docs/track.md).")
@json_summary_option("out, written, skipped, failed {video: reason}, outside {video: "
                     "keyframes skipped}, keyframes, boxes, seconds")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def detect_cmd(allow_failures, json_out, quiet, **options):
    """Detect persons on the keyframes of videos and write an AVA person-box CSV.

    Each keyframe image is the centre frame extraction uses (same decoder), short side
    resized to the detector's input size. Keyframes before a video's start or past its end
    are skipped with a warning (a video with none inside fails), as in extract-features.
    Videos are done one at a time and appended to the CSV; a rerun skips finished videos
    and retries failed ones. Failed videos are recorded and the run goes on; the exit
    status is 1 when any failed (unless --allow-failures). The CSV goes to
    `extract-features --detections` and to `eval-csv GT CSV --persons`.

    \b
    AVA v2.1 val with the fine-tuned detector:
      hgrnn detect --videos videos_15min --time-offset 900 --annotations ava_val_v2.1.csv \\
        --detector runs/detector/detector.pt --out ava_val_predicted_boxes.csv
    """
    import sys

    from hgrnn.data.ava import AvaFormatError
    from hgrnn.pipeline.detect import DetectConfig, DetectorError, detect_videos, format_summary
    from hgrnn.data.store_io import StoreError
    from hgrnn.data.video import VideoError

    try:
        summary = detect_videos(DetectConfig(progress=not quiet, **options))
    except (DetectorError, AvaFormatError, VideoError, ValueError, OSError, StoreError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(format_summary(summary))
    if json_out:
        write_json_summary(json_out, summary)
    if summary["failed"] and not allow_failures:
        sys.exit(1)
