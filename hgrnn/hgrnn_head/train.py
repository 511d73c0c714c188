"""Training the HGRNN head on a feature store (`hgrnn train-head`).

The paper's schedule is the default: Adam with a constant learning rate of 1e-4, 1000 steps
of 50 random keyframes, random initialisation, focal loss with gamma = 2, trained on the
ground-truth boxes. A run folder holds:

    last.pt        checkpoint (see ``save_checkpoint``), rewritten every ``checkpoint_every``
                   steps and at the end; loadable with ``torch.load(weights_only=True)``
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

import contextlib
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hgrnn.hgrnn_head.loss import sigmoid_focal_loss
from hgrnn.hgrnn_head.model import HeadConfig, HGRNNHead

CHECKPOINT_FORMAT = "hgrnn-head-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "last.pt"


class HeadError(Exception):
    """Bad input to training or evaluation (a store, a checkpoint, a run folder) or a run that
    cannot go on; the message names the file. The CLI shows it as a click error."""


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
    num_workers: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    num_threads: int = 1

    def __post_init__(self):
        for name in ("steps", "batch_size", "checkpoint_every", "log_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TrainConfig: {name} must be > 0, got {getattr(self, name)}")
        if self.val_every < 0 or self.num_workers < 0 or self.num_threads < 0:
            raise ValueError("TrainConfig: val_every, num_workers and num_threads must be >= 0")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig: lr must be > 0, got {self.lr}")
        if self.focal_alpha is not None and not 0 <= self.focal_alpha <= 1:
            raise ValueError(f"TrainConfig: focal_alpha must be in [0, 1], got {self.focal_alpha}")
        if self.box_source not in ("gt", "det"):
            raise ValueError(f"TrainConfig: box_source must be 'gt' or 'det', "
                             f"got {self.box_source!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# Fields that change what a run computes: a resumed run must keep them.
_RESUME_FIXED = ("batch_size", "lr", "seed", "focal_gamma", "focal_alpha", "box_source")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HeadError(f"device {name!r} asked for, but torch sees no CUDA GPU (use --device cpu)")
    return device


def _store_path(store) -> str:
    return str(getattr(store, "path", store))


def open_store(store, box_source: str, lazy=False):
    """FeatureStore of `store` (a path or a FeatureStore) reading `box_source` boxes
    (lazy: features stay in the file)."""
    from hgrnn.data.store import StoreError
    from hgrnn.data.windows import FeatureStore

    path = _store_path(store)
    if not os.path.exists(path):
        raise HeadError(f"{path}: no such store")
    try:
        fs = FeatureStore(path, box_source=box_source, lazy=lazy)
    except StoreError as e:
        raise HeadError(str(e)) from e
    return fs


def complete_head_config(head: HeadConfig, fs) -> HeadConfig:
    """Fill feature_dim / num_classes from the store; refuse a config that disagrees."""
    K = len(fs.label_map)
    for name, value in (("feature_dim", fs.feature_dim), ("num_classes", K)):
        given = getattr(head, name)
        if given is not None and given != value:
            raise HeadError(f"{fs.path}: the store has {name} = {value}, the head config {given}")
    return dataclasses.replace(head, feature_dim=fs.feature_dim, num_classes=K)


# ---- checkpoints --------------------------------------------------------------------------

def save_checkpoint(path, *, model, optimizer, head: HeadConfig, train: TrainConfig, label_map,
                    fingerprint: str, store_path: str, step: int) -> None:
    """Write a checkpoint atomically (temporary file + rename). Only tensors, dicts, lists,
    str, int, float, bool and None, so ``torch.load(path, weights_only=True)`` reads it:

        format, version, step, model (state dict), optimizer (state dict), head (HeadConfig
        dict), train (TrainConfig dict), label_map (JSON of [[id, name], ...]), feature_dim,
        store_fingerprint, store_path, rng_torch (CPU RNG state, uint8 tensor)
    """
    ckpt = {
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "step": int(step),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "head": head.to_dict(), "train": train.to_dict(),
        "label_map": label_map.to_json(), "feature_dim": int(head.feature_dim),
        "store_fingerprint": str(fingerprint), "store_path": str(store_path),
        "rng_torch": torch.get_rng_state(),
    }
    tmp = f"{path}.tmp"
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


def load_checkpoint(path) -> dict:
    """Read and check a checkpoint written by ``save_checkpoint`` (weights_only)."""
    path = str(path)
    if os.path.isdir(path):
        path = os.path.join(path, CHECKPOINT_NAME)
    if not os.path.exists(path):
        raise HeadError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which
        raise HeadError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise HeadError(f"{path}: not an hgrnn head checkpoint (no format '{CHECKPOINT_FORMAT}')")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise HeadError(f"{path}: checkpoint version {ckpt.get('version')}, "
                        f"this hgrnn reads {CHECKPOINT_VERSION}")
    ckpt["path"] = path
    return ckpt


def model_from_checkpoint(ckpt: dict, device="cpu") -> HGRNNHead:
    model = HGRNNHead(HeadConfig.from_dict(ckpt["head"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()


def check_store_matches(ckpt: dict, fs) -> None:
    """The store must have the checkpoint's label map and feature dim."""
    from hgrnn.data.ava import LabelMap

    ckpt_map = LabelMap.from_json(ckpt["label_map"])
    if ckpt_map != fs.label_map:
        diff = (f"{len(ckpt_map)} classes vs {len(fs.label_map)}"
                if len(ckpt_map) != len(fs.label_map) else "same size, different ids or names")
        raise HeadError(f"{fs.path}: the store's label map differs from checkpoint "
                        f"{ckpt.get('path', '')}'s ({diff})")
    if int(ckpt["feature_dim"]) != fs.feature_dim:
        raise HeadError(f"{fs.path}: feature dim {fs.feature_dim}, checkpoint "
                        f"{ckpt.get('path', '')} was trained on {ckpt['feature_dim']}")


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


@contextlib.contextmanager
def torch_threads(n: int):
    """torch.set_num_threads(n) inside the block (n = 0: leave it), restored after."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _read_metrics(path: Path, upto_step: int) -> list:
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                if row.get("step", 0) <= upto_step:
                    rows.append(row)
    return rows


def plot_loss_curve(metrics: list, path) -> bool:
    """loss (and val mAP) against step as a PNG; False when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    loss = [(m["step"], m["loss"]) for m in metrics if "loss" in m]
    val = [(m["step"], m["val_mAP"]) for m in metrics if m.get("val_mAP") is not None]
    fig, ax = plt.subplots(figsize=(6, 4))
    if loss:
        ax.plot(*zip(*loss), label="train focal loss")
    ax.set_xlabel("step")
    ax.set_ylabel("focal loss")
    ax.set_yscale("log")
    if val:
        ax2 = ax.twinx()
        ax2.plot(*zip(*val), "o-", color="tab:orange", label="val mAP")
        ax2.set_ylabel("val frame-mAP")
        ax2.legend(loc="upper right")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


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
    fs = open_store(train_store, train.box_source)
    if not fs.has_labels:
        raise HeadError(f"{fs.path}: the '{train.box_source}' persons have no action labels; "
                        "training needs a store with ground-truth labels (gt boxes)")
    head = complete_head_config(head, fs)
    from hgrnn.data.windows import ContextWindows
    windows = ContextWindows(fs, l=head.window_context, pad=head.window_pad)
    if len(windows) == 0:
        raise HeadError(f"{fs.path}: no keyframe with a '{train.box_source}' person: "
                        "nothing to train on")
    val_fs = open_store(val_store, "gt") if val_store is not None else None
    if val_fs is not None and (val_fs.feature_dim, val_fs.label_map) != (fs.feature_dim,
                                                                         fs.label_map):
        raise HeadError(f"{val_fs.path}: the validation store's feature dim or label map differs "
                        f"from the training store {fs.path}")
    if val_fs is not None and not ("gt" in val_fs.sources and val_fs.has_labels):
        raise HeadError(f"{val_fs.path}: the validation store has no ground-truth persons with "
                        "labels to compute a validation mAP against")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, metrics_path = out / CHECKPOINT_NAME, out / "metrics.jsonl"
    device = resolve_device(train.device)

    ckpt = None
    if resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        check_store_matches(ckpt, fs)
        saved_head = HeadConfig.from_dict(ckpt["head"])
        if saved_head != head:
            diff = {k: (v, getattr(head, k)) for k, v in saved_head.to_dict().items()
                    if getattr(head, k) != v}
            raise HeadError(f"{ckpt_path}: head config differs from the checkpoint's "
                            f"(field: (checkpoint, now)) {diff}")
        saved_train = TrainConfig.from_dict(ckpt["train"])
        diff = {k: (getattr(saved_train, k), getattr(train, k)) for k in _RESUME_FIXED
                if getattr(saved_train, k) != getattr(train, k)}
        if diff:
            raise HeadError(f"{ckpt_path}: cannot resume with different training settings "
                            f"(field: (checkpoint, now)) {diff}")
        if int(ckpt["step"]) > train.steps:
            raise HeadError(f"{ckpt_path}: the run is already at step {ckpt['step']}, past "
                            f"steps = {train.steps}; pass --steps >= {ckpt['step']} to resume it")
        if ckpt["store_fingerprint"] != fs.fingerprint:
            raise HeadError(f"{ckpt_path}: was trained on a different store "
                            f"({ckpt['store_path']}, fingerprint {ckpt['store_fingerprint']}) "
                            f"than {fs.path} ({fs.fingerprint})")
    elif ckpt_path.exists() and not resume:
        raise HeadError(f"{out}: already holds a run ({CHECKPOINT_NAME}); pass resume=True "
                        "(--resume) to continue it, or choose another output folder")

    # leave the caller's RNG and thread count as they were
    with torch.random.fork_rng(devices=[]), torch_threads(train.num_threads):
        torch.manual_seed(train.seed)
        model = HGRNNHead(head).to(device)
        optimizer = make_adam(list(model.parameters()), train.lr)
        start = 0
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            torch.set_rng_state(ckpt["rng_torch"])
            start = int(ckpt["step"])
        metrics = _read_metrics(metrics_path, start)
        metrics_path.write_text("".join(json.dumps(m) + "\n" for m in metrics))

        def checkpoint(step):
            save_checkpoint(ckpt_path, model=model, optimizer=optimizer, head=head, train=train,
                            label_map=fs.label_map, fingerprint=fs.fingerprint,
                            store_path=fs.path, step=step)

        def log(row):
            metrics.append(row)
            with open(metrics_path, "a") as f:
                f.write(json.dumps(row) + "\n")

        def validate(step):
            from hgrnn.hgrnn_head.infer import evaluate_model
            result = evaluate_model(model, val_fs, device=device)
            model.train()
            val_map = None if math.isnan(result.mAP) else result.mAP  # strict JSON
            if not any(m.get("step") == step and "val_mAP" in m for m in metrics):
                # (a finished run resumed is validated again, for the result, not re-logged)
                log({"step": step, "val_mAP": val_map, "val_per_class": result.per_class})
            return result

        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=train.steps, initial=start, desc="train-head", unit="step",
                       dynamic_ncols=True)
        model.train()
        losses = [m["loss"] for m in metrics if "loss" in m]
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
                    log({"step": done, "loss": loss_value,
                         "steps_per_s": (done - step_log) / max(now - t_log, 1e-9),
                         "seconds": now - t_start})
                    t_log, step_log = now, done
                if val_fs is not None and train.val_every and done % train.val_every == 0 \
                        and done != train.steps:
                    val_result = validate(done)
                    val_postfix = {"val_mAP": f"{val_result.mAP:.4f}"}
                if done % train.checkpoint_every == 0 or done == train.steps:
                    checkpoint(done)
                    last_saved = done
        finally:
            loop_seconds = time.perf_counter() - t_loop
            if bar is not None:
                bar.close()
            plot_loss_curve(metrics, out / "loss.png")
        if val_fs is not None:
            val_result = validate(train.steps)
            plot_loss_curve(metrics, out / "loss.png")
    seconds = time.perf_counter() - t_start
    return {"checkpoint": str(ckpt_path), "val": val_result.to_dict() if val_result else None,
            "seconds": seconds, "steps": train.steps, "loss": loss_value,
            "batch_seconds": batch_seconds, "loop_seconds": loop_seconds}
