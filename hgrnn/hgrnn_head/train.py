"""Training the HGRNN head on a feature store (`hgrnn train-head`).

The paper's schedule is the default: Adam with a constant learning rate of 1e-4, 1000 steps
of 50 random keyframes, random initialisation, focal loss with gamma = 2, trained on the
ground-truth boxes. A run folder holds:

    last.pt        checkpoint (see ``checkpoint.save_checkpoint``), rewritten every
                   ``checkpoint_every`` steps and at the end; loadable with
                   ``torch.load(weights_only=True)``
    metrics.jsonl  one JSON object per line: {"step", "loss", "steps_per_s", "seconds"}
                   every ``log_every`` steps, {"step", "val_mAP", "val_per_class"} at each
                   validation
    loss.png       the loss (and validation mAP) curve (when matplotlib is installed)

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hgrnn.console import progress_bar
from hgrnn.data.windows import ContextWindows
from hgrnn.hgrnn_head.charts import plot_loss_curve
from hgrnn.hgrnn_head.checkpoint import (CHECKPOINT_NAME, HeadError, check_store_matches,
                                         load_checkpoint, open_store, resolve_device,
                                         restoring, save_checkpoint, torch_threads)
from hgrnn.hgrnn_head.infer import evaluate_model
from hgrnn.hgrnn_head.model import HeadConfig, HGRNNHead
from hgrnn.losses import sigmoid_focal_loss


@dataclass(frozen=True)
class TrainConfig:
    """How the head is trained (defaults: the paper's schedule).

    steps, batch_size, lr: 1000 steps of 50 keyframes, Adam, constant lr 1e-4.
    seed: model initialisation and batch sampling; the same seed repeats a run on the CPU.
    device: "auto" (CUDA when available), "cpu" or "cuda" (or "cuda:N").
    focal_gamma, focal_alpha: focal loss (paper gamma = 2; alpha None = no class weighting).
    val_every: validate on the val store every N steps and at the end (0: only at the end);
        each validation scores the whole val store (as long as `hgrnn eval --gt-boxes`).
    box_source: which persons of the store train the head ("gt", as in the paper).
    context_boxes: whose persons the scene RNN pools in the window slots other than the
        centre: "gt" (default, the paper's literal reading: train on ground truth) or "det"
        (the store's detections, as at inference; the centre keyframe's persons stay
        `box_source`'s). See docs/method.md.
    streams: the store's feature streams the head sees, concatenated per keyframe and per
        person in this order (("rgb",): today's stores; ("rgb", "flow"): the paper's
        RGB+Flow, C = 512 for two 256-d streams; docs/method.md). Recorded in the
        checkpoint; evaluation reads the same streams.
    num_workers: processes that build batches in the background (0: in the training loop).
    checkpoint_every: rewrite last.pt every N steps (and always at the end).
    log_every: write a metrics.jsonl line every N steps.
    num_threads: torch CPU threads while training (0: torch's default, one per core).
        Default 1: the head's matrices are small (50 keyframes, ~130 persons), intra-op
        threads barely pay off, and they collapse when anything else runs on the cores (the
        paper's schedule took 5x longer with 2 threads than with 1 on a shared 2-core CPU,
        BENCHMARKS.md). Also right for several runs in parallel worker processes.
    """

    steps: int = 1000
    batch_size: int = 50
    lr: float = 1e-4
    seed: int = 0
    device: str = "auto"
    focal_gamma: float = 2.0
    focal_alpha: float | None = None
    val_every: int = 500
    box_source: str = "gt"
    context_boxes: str = "gt"
    num_workers: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    num_threads: int = 1
    streams: tuple = ("rgb",)

    def __post_init__(self):
        streams = tuple(str(s) for s in self.streams)
        if not streams or len(set(streams)) != len(streams):
            raise ValueError(f"--streams must be distinct stream names, got {self.streams!r}")
        object.__setattr__(self, "streams", streams)          # a JSON list -> tuple
        for name in ("steps", "batch_size", "checkpoint_every", "log_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        if self.val_every < 0 or self.num_workers < 0 or self.num_threads < 0:
            raise ValueError("--val-every, --num-workers and --threads must be >= 0")
        if not self.lr > 0:
            raise ValueError(f"--lr must be > 0, got {self.lr}")
        if self.focal_alpha is not None and not 0 <= self.focal_alpha <= 1:
            raise ValueError(f"--focal-alpha must be in [0, 1], got {self.focal_alpha}")
        for name in ("box_source", "context_boxes"):
            if getattr(self, name) not in ("gt", "det"):
                raise ValueError(f"--{name.replace('_', '-')} must be 'gt' or 'det', "
                                 f"got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "streams": list(self.streams)}   # JSON-shaped

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# Fields that change what a run computes: a resumed run must keep them.
_RESUME_FIXED = ("batch_size", "lr", "seed", "focal_gamma", "focal_alpha", "box_source",
                 "context_boxes", "streams")
#: train-head's flag of each HeadConfig / TrainConfig field whose flag is not --field-name
_FLAGS = {"variant": "--model", "num_threads": "--threads"}


def _flag_changes(diff: dict) -> str:
    """{field: (run's value, now)} -> '--flag run -> now; ...' in train-head's flag names."""
    return "; ".join(f"{_FLAGS.get(k, '--' + k.replace('_', '-'))} {old!r} -> {new!r}"
                     for k, (old, new) in diff.items())


def complete_head_config(head: HeadConfig, fs) -> HeadConfig:
    """Fill feature_dim / num_classes from the store; refuse a config that disagrees."""
    K = len(fs.label_map)
    for name, value in (("feature_dim", fs.feature_dim), ("num_classes", K)):
        given = getattr(head, name)
        if given is not None and given != value:
            raise HeadError(f"{fs.path}: the store has {name} = {value}, the head config {given}")
    return dataclasses.replace(head, feature_dim=fs.feature_dim, num_classes=K)


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

def make_adam(params: list, lr: float) -> torch.optim.Adam:
    """Adam, constant lr; the fused implementation where this torch has it for the device
    (CPU since torch 2.4: about 3x less time in the update than the per-tensor loop)."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr)


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
    if int(ckpt["step"]) > train.steps:
        raise HeadError(f"{ckpt_path}: the run is already at step {ckpt['step']}, past "
                        f"--steps {train.steps}; pass --steps >= {ckpt['step']} to resume it")
    if ckpt["store_fingerprint"] != fs.fingerprint:
        raise HeadError(f"{ckpt_path}: was trained on a different store "
                        f"({ckpt['store_path']}, fingerprint {ckpt['store_fingerprint']}) "
                        f"than {fs.path} ({fs.fingerprint})")
    return ckpt


def _model_and_optimizer(head: HeadConfig, train: TrainConfig, device, ckpt):
    """(model, Adam, first step): initialised from the seed, or restored from `ckpt` (weights,
    optimizer state, torch RNG state) when resuming."""
    torch.manual_seed(train.seed)
    model = HGRNNHead(head).to(device)
    optimizer = make_adam(list(model.parameters()), train.lr)
    if ckpt is None:
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

    def validation(self, step: int, result) -> None:
        """Log a validation EvalResult, once per step (a finished run resumed is validated
        again, for the result, not re-logged)."""
        if any(m.get("step") == step and "val_mAP" in m for m in self.rows):
            return
        val_map = None if math.isnan(result.mAP) else result.mAP  # strict JSON
        self.write({"step": step, "val_mAP": val_map, "val_per_class": result.per_class})


def train_head(train_store, out_dir, head: HeadConfig, train: TrainConfig,
               val_store=None, resume=False, progress=True) -> dict:
    """Train the head on `train_store` (path or FeatureStore), writing the run folder `out_dir`.

    head: feature_dim / num_classes may be None (taken from the store).
    val_store: a store scored with its gt boxes every ``train.val_every`` steps and at the end.
    resume: continue from out_dir/last.pt (the head config and the fields that change the
        result must match; ``train.steps`` may be larger to extend a finished run).
    progress: a tqdm bar on stderr; False is silent (safe in joblib worker processes).

    Returns {"checkpoint": path of last.pt, "val": EvalResult.to_dict() of the last
    validation or None, "seconds": wall time, "steps": steps done, "loss": last loss,
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
    chart_title = (f"train-head --model {head.variant} (l={head.context}, J={head.iterations}) "
                   f"on {Path(fs.path).name}: {train.steps} steps x {train.batch_size} keyframes, "
                   f"lr {train.lr:g}"
                   + (f", val {Path(val_fs.path).name} (gt boxes)" if val_fs is not None else ""))

    # leave the caller's RNG and thread count as they were
    with torch.random.fork_rng(devices=[]), torch_threads(train.num_threads):
        model, optimizer, start = _model_and_optimizer(head, train, device, ckpt)
        run_log = _RunLog(out / "metrics.jsonl", start)

        def checkpoint(step):
            save_checkpoint(ckpt_path, model=model, optimizer=optimizer, head=head, train=train,
                            label_map=fs.label_map, fingerprint=fs.fingerprint,
                            store_path=fs.path, step=step, store_configs=fs.configs,
                            store_streams=fs.streams)

        def validate(step):
            result = evaluate_model(model, val_fs, device=device)
            model.train()
            run_log.validation(step, result)
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
                    run_log.write({"step": done, "loss": loss_value,
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
            "seconds": seconds, "steps": train.steps, "loss": loss_value,
            "batch_seconds": batch_seconds, "loop_seconds": loop_seconds}
