"""Training the HGRNN head on a feature store (`hgrnn train-head`).

The paper's schedule is the default: Adam with a constant learning rate of 1e-4, 1000 steps
of 50 random keyframes, random initialisation, focal loss with gamma = 2, trained on the
ground-truth boxes. A run folder holds:

    last.pt        checkpoint (see ``checkpoint.save_checkpoint``), rewritten every
                   ``checkpoint_every`` steps and at the end; loadable with
                   ``torch.load(weights_only=True)``
    best.pt        with a validation store: the checkpoint of the validation with the best
                   frame-mAP so far (same format; `eval` and `predict` take either)
    metrics.jsonl  one JSON object per line: {"step", "loss", "lr", "steps_per_s", "seconds"}
                   every ``log_every`` steps, {"step", "val_mAP", "val_per_class"} at each
                   validation
    loss.png       the loss (and validation mAP) curve (when matplotlib is installed)
    config.json    the options of the run as `train-head --config` reads them (written by
                   the command line, ``run_config``), so `--config RUN/config.json` repeats
                   it and `--resume` remembers them

Repeatability: the model is initialised from ``seed``; the keyframes of step s are drawn by
``numpy.random.default_rng([seed, s])``, so they depend on nothing but the seed and the
step; the torch RNG state (dropout) is saved in the checkpoint. A run therefore repeats
exactly on the CPU, and ``resume=True`` continues an interrupted run to the same result.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from hgrnn.console import progress_bar
from hgrnn.data.windows import ContextWindows
from hgrnn.hgrnn_head.charts import plot_loss_curve
from hgrnn.hgrnn_head.checkpoint import (CHECKPOINT_NAME, HeadError, check_store_matches,
                                         load_checkpoint, open_store, resolve_device,
                                         restoring, save_checkpoint, torch_threads)
from hgrnn.hgrnn_head.config import HeadConfig, TrainConfig
from hgrnn.hgrnn_head.infer import evaluate_model
from hgrnn.hgrnn_head.model import HGRNNHead
from hgrnn.losses import sigmoid_focal_loss


# Fields that change what a run computes: a resumed run must keep them.
_RESUME_FIXED = ("batch_size", "lr", "seed", "focal_gamma", "focal_alpha", "box_source",
                 "context_boxes", "streams", "lr_schedule", "warmup", "lr_step_every",
                 "lr_gamma", "weight_decay", "init_from")
BEST_NAME = "best.pt"
CONFIG_NAME = "config.json"
#: train-head's flag of each HeadConfig / TrainConfig field whose flag is not --field-name
_FLAGS = {"variant": "--model", "num_threads": "--threads"}


def _flag_changes(diff: dict) -> str:
    """{field: (run's value, now)} -> '--flag run -> now; ...' in train-head's flag names."""
    return "; ".join(f"{_FLAGS.get(k, '--' + k.replace('_', '-'))} {old!r} -> {new!r}"
                     for k, (old, new) in diff.items())


def complete_head_config(head: HeadConfig, fs) -> HeadConfig:
    """Fill feature_dim / num_classes (and, for late fusion, the width of each feature stream
    read) from the store; refuse a config that disagrees."""
    K = len(fs.label_map)
    widths = {str(name): int(stop) - int(start) for name, start, stop in fs.streams}
    stream_dims = (tuple(widths[s] for s in fs.selected_streams) if head.fusion == "late"
                   else None)
    for name, value in (("feature_dim", fs.feature_dim), ("num_classes", K),
                        ("stream_dims", stream_dims)):
        given = getattr(head, name)
        if given is not None and given != value:
            raise HeadError(f"{fs.path}: the store has {name} = {value}, the head config {given}")
    return dataclasses.replace(head, feature_dim=fs.feature_dim, num_classes=K,
                               stream_dims=stream_dims)


# ---- batches ------------------------------------------------------------------------------

def step_indices(seed: int, step: int, n: int, batch_size: int) -> np.ndarray:
    """The keyframes (indices into ContextWindows) of training step `step`: batch_size
    distinct ones (all n when n < batch_size), a function of (seed, step) only."""
    rng = np.random.default_rng([seed, step])
    return np.sort(rng.choice(n, size=min(batch_size, n), replace=False))


class _StepBatches(torch.utils.data.Dataset):
    """Batch of step `start + i` as item i, so DataLoader workers build them in order."""

    def __init__(self, windows, seed, start, stop, batch_size):
        self.windows, self.seed, self.start, self.stop = windows, seed, start, stop
        self.batch_size = batch_size

    def __len__(self):
        return self.stop - self.start

    def __getitem__(self, i):
        idx = step_indices(self.seed, self.start + i, len(self.windows), self.batch_size)
        return self.windows.batch(idx)


def _batches(windows, train: TrainConfig, start: int):
    data = _StepBatches(windows, train.seed, start, train.steps, train.batch_size)
    if train.num_workers == 0:
        return (data[i] for i in range(len(data)))
    return iter(torch.utils.data.DataLoader(
        data, batch_size=None, shuffle=False, num_workers=train.num_workers,
        collate_fn=_identity, prefetch_factor=4, persistent_workers=False))


def _identity(batch):
    return batch


# ---- the run ------------------------------------------------------------------------------

def make_adam(params: list, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam (AdamW when weight_decay > 0); the fused implementation where this torch has it
    for the device (CPU since torch 2.4: about 3x less time in the update than the
    per-tensor loop)."""
    kind = torch.optim.AdamW if weight_decay > 0 else torch.optim.Adam
    extra = {"weight_decay": weight_decay} if weight_decay > 0 else {}
    try:
        return kind(params, lr=lr, fused=True, **extra)
    except (RuntimeError, TypeError, ValueError):
        return kind(params, lr=lr, **extra)


def _read_metrics(path: Path, upto_step: int) -> list:
    """The rows of metrics.jsonl up to `upto_step`. A torn last line (the run was killed
    while writing it) is dropped, saying so; a bad line elsewhere is an error."""
    rows = []
    if not path.exists():
        return rows
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
        except ValueError as err:
            if number == len(lines):
                warnings.warn(f"train-head: {path}: dropped a torn last line (the run was "
                              f"stopped while writing it): {line[:60]!r}")
                continue
            raise HeadError(f"{path}:{number}: not a JSON object ({err}); fix or delete the "
                            f"line to resume") from None
        if row.get("step", 0) <= upto_step:
            rows.append(row)
    return rows


def _open_training_store(train_store, head: HeadConfig, train: TrainConfig):
    """The training FeatureStore, the head config completed from it, and its context
    windows; refuses a store without labels or without a person to train on."""
    fs = open_store(train_store, train.box_source, streams=train.streams)
    if train.box_source not in fs.sources:
        have = ", ".join(fs.sources) or "none"
        fix = ("training needs ground-truth labels: extract with --annotations"
               if train.box_source == "gt" else "train with --box-source gt, or extract "
               "with --detections or --detector for 'det' persons")
        raise HeadError(f"{fs.path}: the store has no '{train.box_source}' persons (box "
                        f"sources in it: {have}); {fix}")
    if not fs.has_labels:
        raise HeadError(f"{fs.path}: the '{train.box_source}' persons have no action labels; "
                        "training needs a store with ground-truth labels (gt boxes)")
    head = complete_head_config(head, fs)
    context_fs = None
    if train.context_boxes != train.box_source and head.window_context > 0:
        context_fs = open_store(fs.path, train.context_boxes)
        if train.context_boxes not in context_fs.sources:
            raise HeadError(f"{fs.path}: the store has no '{train.context_boxes}' boxes for "
                            f"the context slots (it has {list(context_fs.sources)})")
    windows = ContextWindows(fs, l=head.window_context, pad=head.window_pad,
                             context_store=context_fs)
    if len(windows) == 0:
        raise HeadError(f"{fs.path}: no keyframe with a '{train.box_source}' person: "
                        "nothing to train on")
    return fs, head, windows


def _open_validation_store(val_store, fs):
    """The validation FeatureStore (gt boxes); it must match the training store `fs` and
    have labelled ground-truth persons."""
    val_fs = open_store(val_store, "gt", streams=fs.selected_streams)
    if (val_fs.feature_dim, val_fs.label_map) != (fs.feature_dim, fs.label_map):
        raise HeadError(f"{val_fs.path}: the validation store's feature dim or label map differs "
                        f"from the training store {fs.path}")
    if not ("gt" in val_fs.sources and val_fs.has_labels):
        raise HeadError(f"{val_fs.path}: the validation store has no ground-truth persons with "
                        "labels to compute a validation mAP against")
    return val_fs


def _checkpoint_to_resume(ckpt_path: Path, resume: bool, fs, head: HeadConfig,
                          train: TrainConfig):
    """The checkpoint a resumed run continues from (None for a fresh run), after checking
    that it belongs to this store and these settings; refuses to overwrite a run."""
    if not ckpt_path.exists():
        return None
    if not resume:
        raise HeadError(f"{ckpt_path.parent}: already holds a run ({CHECKPOINT_NAME}); pass "
                        "--resume to continue it, or choose another output folder")
    ckpt = load_checkpoint(ckpt_path)
    check_store_matches(ckpt, fs)
    saved_head = HeadConfig.from_dict(ckpt["head"])
    if saved_head != head:
        diff = {k: (v, getattr(head, k)) for k, v in saved_head.to_dict().items()
                if getattr(head, k) != v}
        raise HeadError(f"{ckpt_path}: cannot resume with other head options "
                        f"({_flag_changes(diff)}); use the run's options or another --out")
    saved_train = TrainConfig.from_dict(ckpt["train"])
    diff = {k: (getattr(saved_train, k), getattr(train, k)) for k in _RESUME_FIXED
            if getattr(saved_train, k) != getattr(train, k)}
    if diff:
        raise HeadError(f"{ckpt_path}: cannot resume with other training options "
                        f"({_flag_changes(diff)}); use the run's options or another --out")
    if train.lr_schedule == "cosine" and saved_train.steps != train.steps:
        raise HeadError(f"{ckpt_path}: the cosine schedule spans --steps ({saved_train.steps}); "
                        f"resuming with --steps {train.steps} would change the steps already "
                        "taken. To train on from this run, start a new one with --init-from")
    if int(ckpt["step"]) > train.steps:
        raise HeadError(f"{ckpt_path}: the run is already at step {ckpt['step']}, past "
                        f"--steps {train.steps}; pass --steps >= {ckpt['step']} to resume it")
    if ckpt["store_fingerprint"] != fs.fingerprint:
        raise HeadError(f"{ckpt_path}: was trained on a different store "
                        f"({ckpt['store_path']}, fingerprint {ckpt['store_fingerprint']}) "
                        f"than {fs.path} ({fs.fingerprint})")
    return ckpt


def _initial_weights(init_from, fs, head: HeadConfig) -> dict:
    """The weights of run (or checkpoint) `init_from`, after checking they fit `head` on the
    store `fs`: the same label map and feature dim, and the same weight shapes; when the shapes
    differ, the error names the head options that differ."""
    ckpt = load_checkpoint(init_from)
    check_store_matches(ckpt, fs)
    theirs = {k: tuple(v.shape) for k, v in ckpt["model"].items()}
    ours = {k: tuple(v.shape) for k, v in HGRNNHead(head).state_dict().items()}
    if theirs != ours:
        saved = HeadConfig.from_dict(ckpt["head"])
        diff = {k: (v, getattr(head, k)) for k, v in saved.to_dict().items()
                if getattr(head, k) != v and k not in ("feature_dim", "num_classes")}
        raise HeadError(f"{ckpt['path']}: --init-from needs a head of the same shapes; "
                        f"this run's differs ({_flag_changes(diff) or 'weight names'})")
    return ckpt["model"]


def _model_and_optimizer(head: HeadConfig, train: TrainConfig, device, ckpt, fs):
    """(model, Adam, first step): initialised from the seed (and the weights of
    ``train.init_from``), or restored from `ckpt` (weights, optimizer state, torch RNG state)
    when resuming."""
    torch.manual_seed(train.seed)
    model = HGRNNHead(head).to(device)
    optimizer = make_adam(list(model.parameters()), train.lr, train.weight_decay)
    if ckpt is None:
        if train.init_from is not None:
            weights = _initial_weights(train.init_from, fs, head)
            with restoring({"path": train.init_from}, "model weights"):
                model.load_state_dict(weights)
        return model, optimizer, 0
    with restoring(ckpt, "model weights"):
        model.load_state_dict(ckpt["model"])
    with restoring(ckpt, "optimizer state"):
        optimizer.load_state_dict(ckpt["optimizer"])
    with restoring(ckpt, "RNG state"):
        torch.set_rng_state(ckpt["rng_torch"])
    return model, optimizer, int(ckpt["step"])


class _RunLog:
    """metrics.jsonl of a run: the rows up to the step the run (re)starts at, rewritten on
    opening, then one appended line per `write`."""

    def __init__(self, path: Path, start: int):
        self.path = path
        self.rows = _read_metrics(path, start)
        path.write_text("".join(json.dumps(m) + "\n" for m in self.rows))

    def write(self, row: dict) -> None:
        self.rows.append(row)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def best_validation(self):
        """(step, mAP) of the best validation logged so far (the earliest of ties), or None."""
        scored = [(m["step"], m["val_mAP"]) for m in self.rows if m.get("val_mAP") is not None]
        return max(scored, key=lambda s: (s[1], -s[0])) if scored else None

    def validation(self, step: int, result) -> None:
        """Log a validation EvalResult, once per step (a finished run resumed is validated
        again, for the result, not re-logged)."""
        if any(m.get("step") == step and "val_mAP" in m for m in self.rows):
            return
        val_map = None if math.isnan(result.mAP) else result.mAP  # strict JSON
        self.write({"step": step, "val_mAP": val_map, "val_per_class": result.per_class})


def train_head(train_store, out_dir, head: HeadConfig, train: TrainConfig,
               val_store=None, resume=False, progress=True, run_config=None) -> dict:
    """Train the head on `train_store` (path or FeatureStore), writing the run folder `out_dir`.

    head: feature_dim / num_classes may be None (taken from the store).
    val_store: a store scored with its gt boxes every ``train.val_every`` steps and at the end;
        the best validation's checkpoint is kept as best.pt.
    resume: continue from out_dir/last.pt (the head config and the fields that change the
        result must match; ``train.steps`` may be larger to extend a finished run).
    progress: a tqdm bar on stderr; False is silent (safe in joblib worker processes).
    run_config: a JSON-shaped dict written as out_dir/config.json once the run is accepted
        (the command line's options, see ``cli/head.py``); None writes nothing.

    Returns {"checkpoint": path of last.pt, "best": path of best.pt or None, "best_step":
    its step, "val": EvalResult.to_dict() of the last validation or None, "seconds": wall
    time, "steps": the run's step count, "start": the step this call started at (> 0 when
    resuming), "steps_trained": steps - start, "loss": last loss,
    "batch_seconds": time spent waiting for batches, "loop_seconds": time of the step loop}.
    Raises HeadError for a store without gt labels, an empty store, a mismatching
    checkpoint, an existing run without ``resume``, or a NaN loss.
    """
    t_start = time.perf_counter()
    fs, head, windows = _open_training_store(train_store, head, train)
    val_fs = _open_validation_store(val_store, fs) if val_store is not None else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT_NAME
    device = resolve_device(train.device)
    ckpt = _checkpoint_to_resume(ckpt_path, resume, fs, head, train)
    if run_config is not None:
        (out / CONFIG_NAME).write_text(json.dumps(run_config, indent=1) + "\n")
    chart_title = (f"train-head: {head.describe()} "
                   f"on {Path(fs.path).name}: {train.steps} steps x {train.batch_size} keyframes, "
                   f"lr {train.lr:g}" + ("" if train.lr_schedule == "constant" else
                                         f" ({train.lr_schedule})")
                   + (f", val {Path(val_fs.path).name} (gt boxes)" if val_fs is not None else ""))

    # leave the caller's RNG and thread count as they were
    with torch.random.fork_rng(devices=[]), torch_threads(train.num_threads):
        model, optimizer, start = _model_and_optimizer(head, train, device, ckpt, fs)
        run_log = _RunLog(out / "metrics.jsonl", start)
        best_path = out / BEST_NAME
        best = run_log.best_validation()  # (step, mAP) of the best validation so far, or None
        if best is not None and not best_path.exists():
            best = None                   # best.pt was lost: the next validation writes it

        def checkpoint(step, path=ckpt_path):
            save_checkpoint(path, model=model, optimizer=optimizer, head=head, train=train,
                            label_map=fs.label_map, fingerprint=fs.fingerprint,
                            store_path=fs.path, step=step, store_configs=fs.configs,
                            store_streams=fs.streams)

        def validate(step):
            nonlocal best
            result = evaluate_model(model, val_fs, device=device)
            model.train()
            run_log.validation(step, result)
            if not math.isnan(result.mAP) and (best is None or result.mAP > best[1]
                                               or best[0] == step):
                checkpoint(step, best_path)
                best = (step, result.mAP)
            return result

        bar = None
        if progress:
            bar = progress_bar(total=train.steps, initial=start, desc="train-head", unit="step",
                       dynamic_ncols=True)
        model.train()
        losses = [m["loss"] for m in run_log.rows if "loss" in m]
        loss_value = losses[-1] if losses else float("nan")  # a finished run resumed
        val_result, last_saved, val_postfix = None, start if ckpt else None, {}
        batch_seconds, step_log = 0.0, start
        t_loop = t_log = time.perf_counter()
        batches = _batches(windows, train, start)
        try:
            for step in range(start, train.steps):
                t0 = time.perf_counter()
                batch = next(batches).to(device)
                batch_seconds += time.perf_counter() - t0
                lr = train.lr_at(step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                logits = model(batch)  # (P, K)
                loss = sigmoid_focal_loss(logits, batch.labels, train.focal_gamma,
                                          train.focal_alpha)
                if not torch.isfinite(loss):
                    where = (f"last good checkpoint {ckpt_path} (step {last_saved})"
                             if last_saved is not None else "no checkpoint was written yet")
                    raise HeadError(f"{fs.path}: the loss became {loss.item()} at step {step + 1}; "
                                    f"training stopped, {where}. Lower --lr or check the store's "
                                    "features for huge values")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_value = loss.item()
                done = step + 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss_value:.4f}", **val_postfix)
                if done % train.log_every == 0 or done == train.steps:
                    now = time.perf_counter()
                    run_log.write({"step": done, "loss": loss_value, "lr": lr,
                                   "steps_per_s": (done - step_log) / max(now - t_log, 1e-9),
                                   "seconds": now - t_start})
                    t_log, step_log = now, done
                if val_fs is not None and train.val_every and done % train.val_every == 0 \
                        and done != train.steps:
                    val_result = validate(done)
                    val_postfix = {"val_mAP%": f"{100 * val_result.mAP:.2f}"}
                if done % train.checkpoint_every == 0 or done == train.steps:
                    checkpoint(done)
                    last_saved = done
        finally:
            loop_seconds = time.perf_counter() - t_loop
            if bar is not None:
                bar.close()
            plot_loss_curve(run_log.rows, out / "loss.png", title=chart_title)
        if val_fs is not None:
            val_result = validate(train.steps)
            plot_loss_curve(run_log.rows, out / "loss.png", title=chart_title)
    seconds = time.perf_counter() - t_start
    return {"checkpoint": str(ckpt_path), "val": val_result.to_dict() if val_result else None,
            "best": str(best_path) if best is not None else None,
            "best_step": best[0] if best is not None else None,
            "seconds": seconds, "steps": train.steps, "start": start,
            "steps_trained": train.steps - start, "loss": loss_value,
            "batch_seconds": batch_seconds, "loop_seconds": loop_seconds}
