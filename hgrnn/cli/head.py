"""`hgrnn train-head` and `hgrnn ablate`: training the HGRNN head on a feature store."""

import click

from hgrnn.cli.options import default_of
# the head's config dataclasses: a light module (no torch), read for the options' defaults
from hgrnn.hgrnn_head.ablate_config import AblateConfig as _Ablate
from hgrnn.hgrnn_head.config import HeadConfig as _Head
from hgrnn.hgrnn_head.config import TrainConfig as _Train


def _parse_head_streams(ctx, param, value):
    """"rgb+flow" (or "rgb,flow") -> ("rgb", "flow")."""
    streams = tuple(v.strip() for v in value.replace(",", "+").split("+") if v.strip())
    if not streams or len(set(streams)) != len(streams):
        raise click.BadParameter(f"{value!r}: expected stream names joined by '+', e.g. "
                                 f"rgb, flow or rgb+flow")
    return streams


def _config_key(param) -> str:
    """The key of an option in a --config file / a run's config.json: its long flag without
    dashes, '-' as '_' ('--graph-hidden' -> 'graph_hidden', '--model' -> 'model')."""
    flag = max((o for o in param.opts if o.startswith("--")), key=len)
    return flag[2:].replace("-", "_")


def _read_config_file(path) -> dict:
    """A --config file: JSON, or TOML (by the .toml suffix, read with tomllib) -> {key: value}."""
    import json
    import tomllib

    try:
        if str(path).endswith(".toml"):
            with open(path, "rb") as f:
                data = tomllib.load(f)
        else:
            with open(path) as f:
                data = json.load(f)
    except (OSError, ValueError) as err:            # tomllib/json errors are ValueErrors
        raise click.ClickException(f"{path}: not a readable JSON or TOML config ({err})") from None
    if not isinstance(data, dict):
        raise click.ClickException(f"{path}: a config must be a table/object of options")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _layered_options(ctx, layers) -> dict:
    """The command's options, each from the first place that has it: the command line, then
    each (source name, {key: value}) layer in order, then the default. A layer's value goes
    through the option's own type and callback, as if typed; an unknown key is an error."""
    from click.core import ParameterSource

    params = {_config_key(p): p for p in ctx.command.params if p.name not in _NOT_IN_CONFIG}
    values = dict(ctx.params)
    for source, layer in layers:
        unknown = sorted(set(layer) - set(params))
        if unknown:
            raise click.ClickException(f"{source}: unknown train-head option(s) "
                                       f"{', '.join(unknown)} (keys are the options' names, "
                                       f"e.g. graph_hidden for --graph-hidden)")
    for key, param in params.items():
        if ctx.get_parameter_source(param.name) not in (ParameterSource.DEFAULT, None):
            continue                                # given on the command line
        for source, layer in layers:
            if key not in layer:
                continue
            value = layer[key]
            if isinstance(value, list) and param.name == "streams":
                value = "+".join(map(str, value))
            try:
                if value is not None:
                    value = param.type_cast_value(ctx, value)
                    if param.callback is not None:
                        value = param.callback(ctx, param, value)
            except click.BadParameter as err:
                raise click.ClickException(f"{source}: {key}: {err.format_message()}") from None
            values[param.name] = value
            break
    return values


def _run_config(ctx, values) -> dict:
    """The run's options as --config reads them (written to RUN/config.json)."""
    out = {}
    for param in ctx.command.params:
        if param.name in _NOT_IN_CONFIG or param.name == "quiet":
            continue
        value = values[param.name]
        out[_config_key(param)] = "+".join(value) if param.name == "streams" else value
    return out


# options that do not describe a run
_NOT_IN_CONFIG = ("resume", "config", "help")


@click.command("train-head")
@click.option("--store", type=click.Path(exists=True, dir_okay=False),
              help="Training feature store (HDF5, `hgrnn extract-features` or `hgrnn synth`). "
                   "Needs ground-truth persons with labels. Required (here or in --config).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Run folder: last.pt (checkpoint), best.pt (with --val-store), "
                   "metrics.jsonl, loss.png, config.json. Required (here or in --config).")
@click.option("--config", "config", type=click.Path(exists=True, dir_okay=False),
              help="A JSON or TOML file (.toml) of train-head options, keys as the options' "
                   "names (graph_hidden for --graph-hidden), paths as on the command line; "
                   "options given on the command line win. A run folder's config.json is one: "
                   "--config RUN/config.json repeats the run (give another --out).")
@click.option("--model", "variant", type=click.Choice(["hgrnn", "scene", "graph", "person"]),
              default=default_of(_Head, "variant"), show_default=True,
              help="hgrnn: scene RNN + graph RNN (the paper). scene: scene RNN only, no graph "
                   "iterations (paper Table 2). graph: graph RNN only, no scene RNN, clip "
                   "features unused (the paper's l=0 row). person: per-person classifier on "
                   "x_p alone (the AVA 'I3D head' baseline).")
@click.option("--relation", type=click.Choice(["gru", "attention"]),
              default=default_of(_Head, "relation"), show_default=True,
              help="The relation level of hgrnn/graph: gru (the paper's graph RNN: max-pooled "
                   "message, GRU update) or attention (beyond the paper: J rounds of multi-head "
                   "self-attention over the keyframe's persons, box geometry as a learned bias).")
@click.option("--attention-heads", type=click.IntRange(min=1),
              default=default_of(_Head, "attention_heads"), show_default=True,
              help="Heads of --relation attention (must divide --graph-hidden).")
@click.option("--fusion", type=click.Choice(["concat", "late"]),
              default=default_of(_Head, "fusion"), show_default=True,
              help="Two-stream features (--streams rgb+flow): concat (one head on the "
                   "concatenated streams, the paper's reading) or late (one head per stream, "
                   "logits summed).")
@click.option("--context", "-l", type=click.IntRange(min=0),
              default=default_of(_Head, "context"), show_default=True,
              help="l: keyframes before and after each keyframe seen by the scene RNN; "
                   "L = 2l+1 (paper: 3, about 7 s; Table 1 tries 0/1/3).")
@click.option("--iterations", "-J", type=click.IntRange(min=0),
              default=default_of(_Head, "iterations"), show_default=True,
              help="J: graph RNN iterations, or attention rounds (paper: 2; Table 3 tries 1/2/3).")
@click.option("--scene-hidden", type=click.IntRange(min=1),
              default=default_of(_Head, "scene_hidden"), show_default=True,
              help="Hidden size of each direction of the scene biGRU (h_c has twice this). "
                   "Not stated by the paper.")
@click.option("--graph-hidden", type=click.IntRange(min=1),
              default=default_of(_Head, "graph_hidden"), show_default=True,
              help="Hidden size of the graph GRU cell (or of the attention's person states). "
                   "Not stated by the paper.")
@click.option("--h0", type=click.Choice(["zeros", "project"]), default=default_of(_Head, "h0"),
              show_default=True,
              help="Initial graph state: zeros (iteration 1 sees no other person) or a "
                   "projection of x_p ⊕ h_c (attention always projects).")
@click.option("--empty-pool", type=click.Choice(["zeros", "learned"]),
              default=default_of(_Head, "empty_pool"), show_default=True,
              help="Max-pooled persons x_P of a window keyframe with nobody: zeros or a learned "
                   "vector.")
@click.option("--window-pad", type=click.Choice(["edge", "zero"]),
              default=default_of(_Head, "window_pad"), show_default=True,
              help="Window slots before a video's first / after its last keyframe: repeat the "
                   "edge keyframe, or a zero clip feature without persons.")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True),
              default=default_of(_Head, "dropout"), show_default=True,
              help="Dropout on person features and before the classifier.")
@click.option("--graph-pool", type=click.Choice(["all", "others"]),
              default=default_of(_Head, "graph_pool"), show_default=True,
              help="What the graph RNN's message max-pools over: all persons of the keyframe "
                   "(the paper's 'maxpool over all nodes', the person itself included) or the "
                   "others only (zeros for a person alone). With attention: whether a person "
                   "attends to itself.")
@click.option("--steps", type=click.IntRange(min=1), default=default_of(_Train, "steps"),
              show_default=True, help="Training steps (paper: 1000).")
@click.option("--batch-size", type=click.IntRange(min=1),
              default=default_of(_Train, "batch_size"), show_default=True,
              help="Random keyframes per step, all their persons (paper: 50).")
@click.option("--lr", type=float, default=default_of(_Train, "lr"), show_default=True,
              help="Adam learning rate (paper: 1e-4, constant).")
@click.option("--lr-schedule", type=click.Choice(["constant", "cosine", "step"]),
              default=default_of(_Train, "lr_schedule"), show_default=True,
              help="constant (the paper's), cosine (down to 0 at the last step) or step (times "
                   "--lr-gamma every --lr-step-every steps), after --warmup.")
@click.option("--warmup", type=click.IntRange(min=0), default=default_of(_Train, "warmup"),
              show_default=True, help="Steps of linear learning-rate warm-up from 0.")
@click.option("--lr-step-every", type=click.IntRange(min=1),
              default=default_of(_Train, "lr_step_every"), show_default=True,
              help="--lr-schedule step: steps between two lr drops.")
@click.option("--lr-gamma", type=click.FloatRange(0, 1, min_open=True),
              default=default_of(_Train, "lr_gamma"), show_default=True,
              help="--lr-schedule step: factor of each drop.")
@click.option("--weight-decay", type=click.FloatRange(min=0),
              default=default_of(_Train, "weight_decay"), show_default=True,
              help="Decoupled weight decay; > 0 trains with AdamW instead of Adam.")
@click.option("--init-from", type=click.Path(exists=True),
              default=default_of(_Train, "init_from"),
              help="Start from another run's weights (RUN, RUN/last.pt or RUN/best.pt) with a "
                   "new optimiser, schedule and step count; the head's shapes must match.")
@click.option("--focal-gamma", type=click.FloatRange(min=0),
              default=default_of(_Train, "focal_gamma"), show_default=True,
              help="Focal loss gamma (paper: 2; 0 = binary cross-entropy).")
@click.option("--focal-alpha", type=click.FloatRange(0, 1),
              default=default_of(_Train, "focal_alpha"),
              help="Focal loss alpha weighting positives (default: none).")
@click.option("--seed", type=int, default=default_of(_Train, "seed"), show_default=True,
              help="Initialisation and batch sampling; the same seed repeats a run exactly "
                   "on the CPU.")
@click.option("--device", default=default_of(_Train, "device"), show_default=True,
              help="auto (a CUDA GPU when there is one), cpu, cuda or cuda:N.")
@click.option("--val-store", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Validation store, scored with its ground-truth boxes (frame-mAP) every "
                   "--val-every steps and at the end; the best one's checkpoint is best.pt.")
@click.option("--val-every", type=click.IntRange(min=0), default=default_of(_Train, "val_every"),
              show_default=True,
              help="Validation interval in steps (0: only at the end). Each validation scores "
                   "the whole val store, about as long as `hgrnn eval --gt-boxes`.")
@click.option("--box-source", type=click.Choice(["gt", "det"]),
              default=default_of(_Train, "box_source"), show_default=True,
              help="Persons to train on (paper: ground-truth boxes).")
@click.option("--context-boxes", type=click.Choice(["gt", "det"]),
              default=default_of(_Train, "context_boxes"), show_default=True,
              help="Persons the scene RNN pools in the context keyframes (all window slots but "
                   "the centre, whose persons stay --box-source): gt (the paper's reading) or "
                   "the store's detections, as at inference.")
@click.option("--streams", default="+".join(default_of(_Train, "streams")), show_default=True,
              callback=_parse_head_streams,
              help="Feature streams of the store the head sees: rgb, flow or rgb+flow "
                   "(concatenated per keyframe and per person: the paper's RGB+Flow, C = 512 "
                   "for two 256-d streams; see --fusion). The checkpoint records them; eval "
                   "reads the same.")
@click.option("--checkpoint-every", type=click.IntRange(min=1),
              default=default_of(_Train, "checkpoint_every"), show_default=True,
              help="Rewrite RUN_DIR/last.pt every N steps (and at the end).")
@click.option("--log-every", type=click.IntRange(min=1),
              default=default_of(_Train, "log_every"), show_default=True,
              help="Write a metrics.jsonl line every N steps.")
@click.option("--num-workers", type=click.IntRange(min=0),
              default=default_of(_Train, "num_workers"), show_default=True,
              help="Background processes building batches (0: in the training loop; batches "
                   "of an in-memory store take about a millisecond).")
@click.option("--threads", "num_threads", type=click.IntRange(min=0),
              default=default_of(_Train, "num_threads"), show_default=True,
              help="torch CPU threads (0: torch's default, one per core). The head's matrices "
                   "are small: 1 is as fast on a free CPU and several times faster when other "
                   "processes share the cores.")
@click.option("--resume", is_flag=True,
              help="Continue the run in --out from its last checkpoint, with the run's options "
                   "(its config.json, --val-store included); --steps may be larger to extend a "
                   "finished run. To change other settings, start a new run with --init-from.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
def train_head_cmd(ctx, **_):
    """Train the HGRNN head on a feature store.

    Defaults are the paper's: Adam, constant lr 1e-4, 1000 steps of 50 keyframes, random
    init, focal loss (gamma 2), ground-truth boxes, l = 3, J = 2. On a 2-core CPU this takes
    about a minute (see BENCHMARKS.md); on a GPU, seconds.

    \b
    Examples:
      hgrnn train-head --store train.h5 --out runs/hgrnn --val-store val.h5
      hgrnn train-head --store train.h5 --out runs/l0 --model graph        # Table 1, l=0
      hgrnn train-head --store train.h5 --out runs/att --relation attention
      hgrnn train-head --store train.h5 --out runs/hgrnn --resume --steps 2000
      hgrnn train-head --store train.h5 --out runs/more --init-from runs/hgrnn --lr 1e-3
      hgrnn train-head --config runs/hgrnn/config.json --out runs/again
      hgrnn train-head --store two.h5 --out runs/rgbflow --streams rgb+flow   # Table 4
    """
    import json
    from pathlib import Path

    from hgrnn.data.store import StoreError
    from hgrnn.hgrnn_head.checkpoint import HeadError
    from hgrnn.hgrnn_head.train import CONFIG_NAME, train_head

    layers = []
    if ctx.params["config"]:
        layers.append((ctx.params["config"], _read_config_file(ctx.params["config"])))
    out_dir = ctx.params["out_dir"] or dict(layers[0][1] if layers else {}).get("out")
    saved = Path(out_dir) / CONFIG_NAME if out_dir else None
    if ctx.params["resume"] and saved is not None and saved.exists():
        layers.append((str(saved), _read_config_file(saved)))   # the run's own options
    o = _layered_options(ctx, layers)
    for need, flag in (("store", "--store"), ("out_dir", "--out")):
        if not o[need]:
            raise click.UsageError(f"Missing option '{flag}' (on the command line or in --config).")
    head_fields = set(_Head.__dataclass_fields__)
    train_fields = set(_Train.__dataclass_fields__)
    try:
        head = _Head(**{k: v for k, v in o.items() if k in head_fields})
        train = _Train(**{k: v for k, v in o.items() if k in train_fields})
        out = train_head(o["store"], o["out_dir"], head, train, val_store=o["val_store"],
                         resume=o["resume"], progress=not o["quiet"],
                         run_config=json.loads(json.dumps(_run_config(ctx, o))))
    except (HeadError, StoreError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    if out["steps_trained"] == 0:
        what = f"the run was already at step {out['steps']}: trained 0 steps"
    elif out["start"]:
        what = (f"trained {out['steps_trained']} steps (steps {out['start'] + 1}-{out['steps']} "
                f"of the run)")
    else:
        what = f"trained {out['steps_trained']} steps"
    click.echo(f"{what} in {out['seconds']:.1f} s, final loss {out['loss']:.5f}; checkpoint "
               f"{out['checkpoint']}")
    if out["val"] is not None:
        click.echo(f"validation frame-mAP (gt boxes): {100 * out['val']['mAP']:.2f} %")
    if out["best"] is not None:
        click.echo(f"best validation at step {out['best_step']}: {out['best']}")

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
                   "hgrnn_l1, hgrnn (l=3 J=2), hgrnn_J1, hgrnn_J3, options beyond the "
                   "paper: hgrnn_others (--graph-pool others), hgrnn_ctxdet (--context-boxes "
                   "det), hgrnn_attn (--relation attention), and on stores with a flow stream "
                   "hgrnn_flow (RGB+Flow, Table 4) and hgrnn_late (RGB+Flow, --fusion late).")
@click.option("--seeds", type=click.IntRange(min=1), default=default_of(_Ablate, "seeds"),
              show_default=True,
              help="Seeds per row (0..N-1); tables give mean ± std over them.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=default_of(_Ablate, "jobs"),
              show_default=True,
              help="Parallel worker processes (one torch thread each).")
@click.option("--steps", type=click.IntRange(min=1), default=default_of(_Train, "steps"),
              show_default=True, help="Training steps per run (paper: 1000).")
@click.option("--batch-size", type=click.IntRange(min=1),
              default=default_of(_Train, "batch_size"), show_default=True,
              help="Keyframes per step (paper: 50).")
@click.option("--lr", type=float, default=default_of(_Train, "lr"), show_default=True,
              help="Adam learning rate (paper: 1e-4).")
@click.option("--h0", type=click.Choice(["zeros", "project"]), default=default_of(_Head, "h0"),
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
    J = 1/2/3, options beyond the paper (attention over the persons, ...), and on a store
    with a flow stream HGRNN on RGB+Flow, concatenated and late-fused (Table 4: RGB vs
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
    from hgrnn.hgrnn_head.ablate import rows_for_store, run_ablation
    from hgrnn.hgrnn_head.ablate_config import AblateConfig
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
