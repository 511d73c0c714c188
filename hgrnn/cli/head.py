"""`hgrnn train-head` and `hgrnn ablate`: training the HGRNN head on a feature store."""

import click


def _parse_head_streams(ctx, param, value):
    """"rgb+flow" (or "rgb,flow") -> ("rgb", "flow")."""
    streams = tuple(v.strip() for v in value.replace(",", "+").split("+") if v.strip())
    if not streams or len(set(streams)) != len(streams):
        raise click.BadParameter(f"{value!r}: expected stream names joined by '+', e.g. "
                                 f"rgb, flow or rgb+flow")
    return streams


@click.command("train-head")
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
@click.option("--graph-pool", type=click.Choice(["all", "others"]), default="all",
              show_default=True,
              help="What the graph RNN's message max-pools over: all persons of the keyframe "
                   "(the paper's 'maxpool over all nodes', the person itself included) or the "
                   "others only (zeros for a person alone).")
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
@click.option("--context-boxes", type=click.Choice(["gt", "det"]), default="gt",
              show_default=True,
              help="Persons the scene RNN pools in the context keyframes (all window slots but "
                   "the centre, whose persons stay --box-source): gt (the paper's reading) or "
                   "the store's detections, as at inference.")
@click.option("--streams", default="rgb", show_default=True, callback=_parse_head_streams,
              help="Feature streams of the store the head sees: rgb, flow or rgb+flow "
                   "(concatenated per keyframe and per person: the paper's RGB+Flow, C = 512 "
                   "for two 256-d streams). The checkpoint records them; eval reads the same.")
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
                   empty_pool, window_pad, dropout, graph_pool, steps, batch_size, lr,
                   focal_gamma, focal_alpha, seed, device, val_store, val_every, box_source,
                   context_boxes, streams, checkpoint_every, log_every, num_workers,
                   num_threads, resume, quiet):
    """Train the HGRNN head on a feature store.

    Defaults are the paper's: Adam, constant lr 1e-4, 1000 steps of 50 keyframes, random
    init, focal loss (gamma 2), ground-truth boxes, l = 3, J = 2. On a 2-core CPU this takes
    about a minute (see BENCHMARKS.md); on a GPU, seconds.

    \b
    Examples:
      hgrnn train-head --store train.h5 --out runs/hgrnn --val-store val.h5
      hgrnn train-head --store train.h5 --out runs/l0 --model graph        # Table 1, l=0
      hgrnn train-head --store train.h5 --out runs/hgrnn --resume --steps 2000
      hgrnn train-head --store two.h5 --out runs/rgbflow --streams rgb+flow   # Table 4
    """
    from hgrnn.data.store import StoreError
    from hgrnn.hgrnn_head.checkpoint import HeadError
    from hgrnn.hgrnn_head.model import HeadConfig
    from hgrnn.hgrnn_head.train import TrainConfig, train_head

    try:
        head = HeadConfig(variant=variant, context=context, iterations=iterations,
                          scene_hidden=scene_hidden, graph_hidden=graph_hidden, h0=h0,
                          empty_pool=empty_pool, window_pad=window_pad, dropout=dropout,
                          graph_pool=graph_pool)
        train = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed, device=device,
                            focal_gamma=focal_gamma, focal_alpha=focal_alpha,
                            val_every=val_every, box_source=box_source,
                            context_boxes=context_boxes, streams=streams,
                            num_workers=num_workers, checkpoint_every=checkpoint_every,
                            log_every=log_every, num_threads=num_threads)
        out = train_head(store, out_dir, head, train, val_store=val_store, resume=resume,
                         progress=not quiet)
    except (HeadError, StoreError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"trained {out['steps']} steps in {out['seconds']:.1f} s, final loss "
               f"{out['loss']:.5f}; checkpoint {out['checkpoint']}")
    if out["val"] is not None:
        click.echo(f"validation frame-mAP (gt boxes): {100 * out['val']['mAP']:.2f} %")

@click.command("ablate")
@click.option("--train-store", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Training store (e.g. from `hgrnn synth` or `hgrnn demo`: demo_out/train.h5).")
@click.option("--val-store", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Validation store, scored with gt boxes and with detections.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="ablation_out",
              show_default=True,
              help="Output folder: runs/<row>_s<seed>/, ablation.md, ablation.csv, ablation.png. "
                   "Finished runs found there are skipped.")
@click.option("--rows", default=None,
              help="Comma-separated subset of the grid (default: all the stores support): "
                   "person, graph (the paper's Graph-RNN / l=0 row), scene, hgrnn_l0, "
                   "hgrnn_l1, hgrnn (l=3 J=2), hgrnn_J1, hgrnn_J3, two options beyond the "
                   "paper: hgrnn_others (--graph-pool others), hgrnn_ctxdet (--context-boxes "
                   "det), and hgrnn_flow (RGB+Flow, Table 4; stores with a flow stream).")
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
    J = 1/2/3, and on a store with a flow stream HGRNN on RGB+Flow (Table 4: RGB vs
    RGB+Flow x GT vs detected boxes); each trained with --seeds seeds in parallel processes and scored on the
    validation store. Writes ablation.md (tables, mean ± std over seeds, overall and per class
    group of a synthetic store), ablation.csv (every run, every class) and ablation.png.

    \b
    Example (the embedded benchmark; the demo's stores):
      hgrnn demo
      hgrnn ablate --train-store demo_out/train.h5 --val-store demo_out/val.h5 --out abl -j 2
    \b
    Table 4 (RGB vs RGB+Flow) on two-stream synthetic stores, both heads trained to
    convergence (docs/synthetic.md says why; 5 minutes on 2 idle cores):
      hgrnn synth --out tr2.h5 --videos 240 --keyframes 50 --seed 1 --streams rgb,flow
      hgrnn synth --out va2.h5 --videos 20 --keyframes 50 --seed 2 --streams rgb,flow
      hgrnn ablate --train-store tr2.h5 --val-store va2.h5 --rows hgrnn,hgrnn_flow --steps 3000 --lr 1e-3 --out t4
    """
    from hgrnn.data.store import StoreError
    from hgrnn.hgrnn_head.ablate import AblateConfig, rows_for_store, run_ablation
    from hgrnn.hgrnn_head.checkpoint import HeadError

    try:
        cfg = AblateConfig(rows=tuple(r.strip() for r in rows.split(",")) if rows
                           else rows_for_store(val_store),
                           seeds=seeds, steps=steps, batch_size=batch_size, lr=lr, jobs=jobs,
                           h0=h0, det=not no_det, scene_hidden=scene_hidden,
                           graph_hidden=graph_hidden)
        result = run_ablation(train_store, val_store, out_dir, cfg, progress=not quiet)
    except (HeadError, StoreError, ValueError, FileNotFoundError, RuntimeError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(open(result["files"]["md"]).read())
    click.echo("wrote " + ", ".join(result["files"].values()), err=True)
