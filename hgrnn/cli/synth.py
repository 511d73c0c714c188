"""`hgrnn synth` and `hgrnn demo`: the synthetic benchmark with known causes."""

import click

from hgrnn.apps.demo_config import DemoConfig
from hgrnn.cli.options import default_of
from hgrnn.data.synth_config import SynthConfig


@click.command("synth")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Store to write (HDF5). An existing store of the same config is completed "
                   "(resume); one of another config is refused unless --overwrite.")
@click.option("--videos", type=click.IntRange(min=1),
              default=default_of(SynthConfig, "videos"), show_default=True,
              help="Number of videos.")
@click.option("--keyframes", type=click.IntRange(min=1),
              default=default_of(SynthConfig, "keyframes"), show_default=True,
              help="Keyframes per video (one per second, timestamps from 902 as in AVA).")
@click.option("--seed", type=int, default=default_of(SynthConfig, "seed"), show_default=True,
              help="Sampling seed. Use different seeds for training and validation stores; "
                   "the world (rules, feature layout) is the same for every seed.")
@click.option("--feature-dim", type=click.IntRange(min=1),
              default=default_of(SynthConfig, "feature_dim"), show_default=True,
              help="C, dims of clip and person features (at least 43: the signal's dims).")
@click.option("--person-noise", type=click.FloatRange(min=0),
              default=default_of(SynthConfig, "person_noise"), show_default=True,
              help="Std of the noise on every signal dim of a person feature.")
@click.option("--clip-noise", type=click.FloatRange(min=0),
              default=default_of(SynthConfig, "clip_noise"), show_default=True,
              help="Std of the noise on every signal dim of a clip feature.")
@click.option("--talk-prob", type=click.FloatRange(0, 1),
              default=default_of(SynthConfig, "talk_prob"), show_default=True,
              help="Probability that a keyframe has a talker (drives 'talk to' / 'listen to').")
@click.option("--dance-prob", type=click.FloatRange(0, 1),
              default=default_of(SynthConfig, "dance_prob"), show_default=True,
              help="Probability that a room keyframe has a dancer (drives 'dance' / 'watch').")
@click.option("--det-jitter", type=click.FloatRange(min=0),
              default=default_of(SynthConfig, "det_jitter"), show_default=True,
              help="Std of the detected box corners, as a fraction of the box size.")
@click.option("--det-miss", type=click.FloatRange(0, 1),
              default=default_of(SynthConfig, "det_miss"), show_default=True,
              help="Probability that the detector misses a person.")
@click.option("--det-false-positives", type=click.FloatRange(min=0),
              default=default_of(SynthConfig, "det_false_positives"), show_default=True,
              help="Mean number of background false positives per keyframe (Poisson).")
@click.option("--streams", type=click.Choice(["rgb", "rgb,flow"]),
              default=",".join(default_of(SynthConfig, "streams")), show_default=True,
              help="rgb,flow adds a flow feature stream (store dims C..2C-1) and three motion "
                   "classes (run/jog, jump/leap, fall down) that only the flow stream shows.")
@click.option("--motion-prob", type=click.FloatRange(0, 1),
              default=default_of(SynthConfig, "motion_prob"), show_default=True,
              help="Probability that a person runs, jumps or falls (with --streams rgb,flow).")
@click.option("--overwrite", is_flag=True, help="Replace an existing store at --out.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def synth_cmd(out_path, videos, keyframes, seed, feature_dim, person_noise, clip_noise,
              talk_prob, dance_prob, det_jitter, det_miss, det_false_positives, streams,
              motion_prob, overwrite, quiet):
    """Write a synthetic AVA-like feature store whose labels have KNOWN causes.

    A normal store (gt and det sources, its own 13-class label map) in which person classes
    (stand/sit/walk, carry, drive, talk, dance) show in the person's own feature, temporal
    classes (open/close, push/pull) only in how the scene changes across neighbouring
    keyframes, and relational classes (listen to, watch) only in the OTHER persons of the
    same keyframe, pairwise. Every rule: docs/synthetic.md.

    \b
    Examples:
      hgrnn synth --out train.h5 --videos 60 --keyframes 50 --seed 1
      hgrnn synth --out val.h5 --videos 20 --keyframes 50 --seed 2
      hgrnn train-head --store train.h5 --out runs/hgrnn --val-store val.h5
    \b
    With a flow stream (the paper's Table 4, RGB vs RGB+Flow):
      hgrnn synth --out train2.h5 --videos 60 --keyframes 50 --seed 1 --streams rgb,flow
      hgrnn train-head --store train2.h5 --out runs/rgbflow --streams rgb+flow
    """
    from hgrnn.data.store import StoreError
    from hgrnn.data.synthetic import write_synthetic_store

    try:
        cfg = SynthConfig(videos=videos, keyframes=keyframes, seed=seed, feature_dim=feature_dim,
                          person_noise=person_noise, clip_noise=clip_noise, talk_prob=talk_prob,
                          dance_prob=dance_prob, det_jitter=det_jitter, det_miss=det_miss,
                          det_false_positives=det_false_positives,
                          streams=tuple(streams.split(",")), motion_prob=motion_prob)
        s = write_synthetic_store(out_path, cfg, overwrite=overwrite, progress=not quiet)
    except (StoreError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"{out_path}: {s['written']} videos written ({s['keyframes']} keyframes, "
               f"{s['gt_persons']} gt persons, {s['det_persons']} detections), "
               f"{s['reused']} already there")


@click.command("demo")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              default=default_of(DemoConfig, "out"), show_default=True,
              help="Folder for the stores, the training run, the evaluations and summary.json.")
@click.option("--steps", type=click.IntRange(min=1), default=default_of(DemoConfig, "steps"),
              show_default=True, help="Training steps (paper: 1000).")
@click.option("--threads", type=click.IntRange(min=0), default=default_of(DemoConfig, "threads"),
              show_default=True,
              help="torch CPU threads (0: torch's default, one per core; on a busy 2-core "
                   "machine that was 5x slower than 1).")
@click.option("--quick", is_flag=True,
              help="Train HGRNN alone, without the per-person baseline beside it (half the "
                   "training time).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def demo_cmd(out_dir, steps, threads, quick, quiet):
    """Run the whole head on the embedded synthetic benchmark (what `make demo` runs).

    Writes a training and a validation store (once; re-used when complete), trains the full
    HGRNN (l=3, J=2) and, beside it, the per-person baseline head (each person's own feature
    alone) with the paper's schedule (1000 steps x 50 keyframes, Adam lr 1e-4, focal loss),
    scores the validation store with ground-truth boxes and with detections, and prints the
    two heads side by side per class group: the temporal and relational classes are where
    HGRNN's scene and graph RNNs must gain. About 50 s on a 2-core CPU after installation,
    both heads and the stores included (`time hgrnn demo`, BENCHMARKS.md). Re-running re-uses the stores and the finished runs; delete OUT/run
    (or OUT/baseline/run) to train again.
    """
    from hgrnn.data.store import StoreError
    from hgrnn.apps.demo import format_summary, run_demo
    from hgrnn.hgrnn_head.checkpoint import HeadError

    try:
        summary = run_demo(DemoConfig(out=out_dir, steps=steps, threads=threads, quick=quick),
                           progress=not quiet)
    except (HeadError, StoreError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(format_summary(summary))
