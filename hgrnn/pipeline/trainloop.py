"""The training scaffolding that `finetune-backbone` (`hgrnn.pipeline.finetune`) and
`finetune-detector` (`hgrnn.pipeline.detector_train`) share; none of their data or models.

Both train one model with Adam, the learning rate halved every N optimizer steps, autocast
on CUDA (bf16 where supported, else fp16 with a gradient scaler), and under torchrun with
DistributedDataParallel, rank 0 logging, validating and writing the outputs:

  setup_distributed   rank, world size and device; the process group under torchrun
  run_folder          the run folder (made by rank 0), its state.pt and checkpoint paths
  TrainState          optimizer + LR schedule + gradient scaler of a run; state.pt written
                      atomically and read back (resume) with the torch RNG state; a damaged
                      state.pt is one error naming the file (`damaged_state_guard`)
  MetricsLog          metrics.jsonl: rank 0 appends one JSON object a line; `read_metrics`,
                      `truncate_metrics` (a resumed run drops the lines after its state)
  resume_state        state.pt read back for --resume (or None), saying so
  Stage, run_steps    THE training loop: optimizer steps of `accumulate` micro-batches,
                      a metrics line every log_every steps, validation every val_every,
                      state.pt + checkpoint + loss.png every checkpoint_every and after
                      each validation; the stage supplies its micro-batch step,
                      validation, checkpoint and chart (`Stage`)
  plot_loss           loss.png: the training loss (and its parts) with the validation score
  autocast, no_sync, wrap_ddp, micro_batch, due, barrier, write_run_config, step_bar

Errors: each function that can fail takes the stage's exception class (`error`:
FinetuneError, DetectorError) so the stage's CLI reports it as one line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import time
from pathlib import Path
from typing import ClassVar

import torch
import torch.distributed as dist
import torch.nn as nn

from hgrnn.console import progress_bar
from hgrnn.torchfile import TorchFileError, save_atomic
from hgrnn.torchfile import load as load_torch_file

log = logging.getLogger(__name__)

#: what a damaged state.pt raises while it is read back: unpickled but not our dict, a key
#: missing, a tensor of the wrong shape or type (load_state_dict, set_rng_state)
DAMAGE_ERRORS = (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError)


# ----------------------------------------------------------------------------- distributed

def setup_distributed(device_pref: str, num_threads: int = 0):
    """(rank, world, local_rank, device). Sets torch's CPU threads (0: torch's default) and,
    under torchrun (WORLD_SIZE > 1), initialises the process group: NCCL on GPUs, gloo on
    the CPU. device_pref "auto" takes cuda:LOCAL_RANK when CUDA is there, else the CPU."""
    if num_threads:
        torch.set_num_threads(num_threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_pref == "auto":
        use_cuda = torch.cuda.is_available()
    else:
        use_cuda = device_pref.startswith("cuda")
    if use_cuda:
        device = torch.device(f"cuda:{local_rank}" if world > 1 or device_pref in ("auto", "cuda")
                              else device_pref)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        # long timeout: the other ranks wait in a barrier while rank 0 validates
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(hours=3))
    rank = dist.get_rank() if world > 1 else 0
    return rank, world, local_rank, device


def barrier(world: int) -> None:
    """Wait for every rank (nothing to wait for in a single process)."""
    if world > 1:
        dist.barrier()


def wrap_ddp(model: nn.Module, world: int, device: torch.device) -> nn.Module:
    """The module the training steps call: `model` itself, or under torchrun `model` in
    DistributedDataParallel (gradients averaged over ranks in backward)."""
    if world == 1:
        return model
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)


def no_sync(net: nn.Module, last: bool):
    """The context of one micro-batch's forward and backward: gradients are averaged over
    ranks only on the `last` micro-batch of an optimizer step (DDP's no_sync before)."""
    if isinstance(net, nn.parallel.DistributedDataParallel) and not last:
        return net.no_sync()
    return contextlib.nullcontext()


def micro_batch(batch: int, world: int, accumulate: int) -> int:
    """Samples per forward pass of one rank: ceil(batch / (world * accumulate)) (the
    effective batch, micro * world * accumulate, is >= batch)."""
    return -(-batch // (world * accumulate))


def autocast(device: torch.device):
    """Mixed precision on CUDA (bf16 where supported, else fp16); plain fp32 on the CPU."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)


def due(step: int, every: int, steps: int) -> bool:
    """True at every `every`-th step and at the last one (logging, validation, checkpoints)."""
    return step % every == 0 or step == steps


# ----------------------------------------------------------------------------- run folder

def run_folder(out_dir, checkpoint_name: str, rank: int):
    """(out_dir Path, out_dir/state.pt, out_dir/checkpoint_name); rank 0 makes the folder."""
    out_dir = Path(out_dir)
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir, out_dir / "state.pt", out_dir / checkpoint_name


def write_run_config(out_dir, config, world: int, micro: int, **extra) -> None:
    """out_dir/config.json: the stage's config dataclass, world size, micro-batch, `extra`."""
    Path(out_dir, "config.json").write_text(json.dumps(
        {**dataclasses.asdict(config), "world_size": world, "micro_batch": micro, **extra},
        indent=2, sort_keys=True, default=str))


def save_file(obj, path, error) -> None:
    """torch.save atomically (temporary + rename; no .tmp left when writing fails, and the
    old file is kept); an OS error is one `error` naming the file."""
    try:
        save_atomic(obj, path)
    except TorchFileError as err:
        raise error(str(err)) from None


def step_bar(desc: str, steps: int, step: int, progress: bool, rank: int):
    """The progress bar of optimizer steps (rank 0 only), starting at `step`."""
    return progress_bar(total=steps, initial=step, desc=desc, unit="step",
                        disable=not progress or rank != 0, dynamic_ncols=True)


class MetricsLog:
    """A run's metrics.jsonl: rank 0 appends one JSON object a line, flushed at once (a
    crash loses no line already written); on other ranks `write` does nothing."""

    def __init__(self, path, rank: int):
        self.path = Path(path)
        self.file = open(self.path, "a") if rank == 0 else None

    def write(self, record: dict) -> None:
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def read_metrics(path) -> list[dict]:
    """The rows of a metrics.jsonl ([] when there is none)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_metrics(path, step: int) -> None:
    """Drop metrics lines after `step` (written by a run that stopped before its next
    checkpoint), so that a resumed run's log equals an uninterrupted one."""
    rows = [r for r in read_metrics(path) if r["step"] <= step]
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows))


# ----------------------------------------------------------------------------- state.pt

@contextlib.contextmanager
def damaged_state_guard(path, error, out_hint: str = "out_dir"):
    """Reading a resume state inside this block: an unreadable file (`TorchFileError`) or
    one whose content does not fit (missing key, wrong shape or type) becomes ONE `error`
    line naming `path` and saying what to do, never a traceback; `error` itself passes.
    out_hint: how the stage names its output folder ("out_dir", "--out")."""
    try:
        yield
    except TorchFileError as err:
        raise error(str(err)) from None
    except error:
        raise
    except DAMAGE_ERRORS as err:
        text = str(err).strip()
        first = text.splitlines()[0] if text else ""
        raise error(f"{path}: damaged resume state ({type(err).__name__}: {first}); restore "
                    f"it from a copy, or start a new run in another {out_hint}") from None


class TrainState:
    """What a run optimises and resumes: Adam over the trainable parameters of `model` at
    `lr`, the lr halved every `halve_every` optimizer steps (StepLR), and a gradient scaler
    (enabled on CUDA without bf16: fp16 autocast). `error`: the stage's exception class.

    state.pt = {"model", "optimizer", "scheduler", "scaler": state dicts, "step": int,
    "config": the config JSON, "rng": torch's CPU RNG state, "val": JSON of the last
    validation or None, and the stage's extra keys}."""

    def __init__(self, model: nn.Module, lr: float, halve_every: int, device: torch.device,
                 error):
        self.model, self.error = model, error
        self.optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad],
                                          lr=lr)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=halve_every,
                                                         gamma=0.5)
        use_scaler = device.type == "cuda" and not torch.cuda.is_bf16_supported()
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(self) -> None:
        """One optimizer step (skipped by the scaler when fp16 gradients overflowed), then
        the scaler's and the LR schedule's step."""
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()

    @property
    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def save(self, path, *, step: int, config_json: str, val: dict | None, **extra) -> None:
        """Write state.pt atomically (the class docstring); `extra`: the stage's own keys."""
        save_file({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                   "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                   "step": int(step), **extra, "config": config_json,
                   "rng": torch.get_rng_state(),
                   "val": None if val is None else json.dumps(val)}, path, self.error)

    def load(self, path, config, fixed, *, defaults: dict | None = None,
             out_hint: str = "out_dir") -> dict:
        """Resume from state.pt: check that the saved config has the `fixed` fields of
        `config` (`defaults`: their values in files older than a field), then restore the
        weights, optimizer, LR schedule (its interval becomes config.lr_halve_every from
        here on), gradient scaler and torch RNG state. Returns the saved dict plus "saved":
        the saved config as a dict; state["step"] is an int and state["val"] a dict or None.
        A damaged file or another config is one `error` (see `damaged_state_guard`)."""
        defaults = defaults or {}
        with damaged_state_guard(path, self.error, out_hint):
            state = load_torch_file(path, "resume state")
            saved = json.loads(state["config"])
            for key in fixed:
                if saved.get(key, defaults.get(key)) != getattr(config, key):
                    raise self.error(f"{path}: was trained with {key}="
                                     f"{saved.get(key, defaults.get(key))!r}, now "
                                     f"{getattr(config, key)!r}; use another {out_hint}")
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            # the saved scheduler brings its own interval: a new one applies from here on
            self.scheduler.step_size = config.lr_halve_every
            self.scaler.load_state_dict(state["scaler"])
            torch.set_rng_state(state["rng"])
            return {**state, "saved": saved, "step": int(state["step"]),
                    "val": json.loads(state["val"]) if state.get("val") else None}


def resume_state(train: TrainState, state_path, resume: bool, config, fixed, *,
                 metrics_path=None, rank: int = 0, defaults: dict | None = None,
                 out_hint: str = "out_dir") -> dict | None:
    """With `resume` and a state.pt: `train.load(...)` it (see there), drop the metrics
    lines after its step (rank 0) and say where the run goes on; returns the state. Without
    a state.pt (a warning) or without `resume`: None, the run starts at step 0."""
    if not resume:
        return None
    if not Path(state_path).exists():
        if rank == 0:
            log.warning("%s: nothing to resume, starting from step 0", state_path)
        return None
    state = train.load(state_path, config, fixed, defaults=defaults, out_hint=out_hint)
    if rank == 0:
        if metrics_path is not None:
            truncate_metrics(metrics_path, state["step"])
        log.info("resuming %s at step %d", state_path, state["step"])
    return state


# ----------------------------------------------------------------------------- the loop

class Stage:
    """What a training stage supplies to `run_steps`: override the methods.

    validates: the stage has a validation set (`validate` is called).
    chart: keyword arguments of `plot_loss` for the stage's loss.png."""

    validates = False
    chart: ClassVar[dict] = {}

    def micro_step(self):
        """Forward pass of one micro-batch: (the loss tensor, to be divided by accumulate
        and back-propagated, {name: number} added to the log window, e.g. {"loss": 0.7,
        "clips": 4})."""
        raise NotImplementedError

    def train_record(self, step: int, window: dict, seconds: float, lr: float) -> dict:
        """The metrics.jsonl fields of the log window ending at `step` (besides "step" and
        "split"), from the sums of `micro_step`'s numbers over the window's micro-batches
        (window["n"] of them) and the seconds it took."""
        raise NotImplementedError

    def postfix(self, record: dict) -> dict:
        """What the progress bar shows of a metrics line."""
        return {"loss": f"{record['loss']:.4f}", "lr": f"{record['lr']:.2e}"}

    def validate(self, step: int) -> dict | None:
        """Rank 0: validate (saying the result), leave the model in training mode; the
        metrics line is written by the loop. None: nothing to validate."""
        return None

    def save(self, step: int, val: dict | None) -> None:
        """Rank 0: write the checkpoint and state.pt at `step` (`val`: the last validation)."""
        raise NotImplementedError

    def close(self) -> None:
        """End the data loaders (their worker processes)."""


def run_steps(stage: Stage, train: TrainState, net: nn.Module, config, *, step: int,
              last_val: dict | None, world: int, rank: int, metrics_log: MetricsLog,
              checkpoint_path, progress: bool, desc: str,
              validate_first: bool = False) -> tuple[int, dict | None]:
    """Train from optimizer step `step` to config.steps (config: the stage's settings,
    its `steps`, `accumulate`, `log_every`, `val_every`, `checkpoint_every`).

    Each optimizer step runs config.accumulate micro-batches (`stage.micro_step`; gradients
    averaged over the DDP ranks on the last one); every log_every steps (and at the last)
    a metrics line; with `stage.validates` a validation every val_every steps (and at the
    last, and first at step 0 with `validate_first`) by rank 0 while the other ranks wait;
    every checkpoint_every steps (and at the last, and after each validation) rank 0
    saves (`stage.save`) and redraws loss.png beside metrics.jsonl. A finished run resumed
    without its checkpoint writes it. Returns (the last step, the last validation)."""
    out_dir = Path(metrics_log.path).parent

    def validation():
        result = stage.validate(step) if rank == 0 else None
        if result is not None:
            metrics_log.write({"step": step, "split": "val", **result})
        barrier(world)
        return result if result is not None else last_val

    def save():
        if rank == 0:
            stage.save(step, last_val)
            plot_loss(read_metrics(metrics_log.path), out_dir / "loss.png", **stage.chart)

    if validate_first and step == 0 and stage.validates:
        last_val = validation()
    bar = step_bar(desc, config.steps, step, progress, rank)
    window = {"n": 0}
    t_window = time.time()
    try:
        while step < config.steps:
            train.optimizer.zero_grad(set_to_none=True)
            for micro in range(config.accumulate):
                with no_sync(net, last=micro == config.accumulate - 1):
                    loss, counts = stage.micro_step()
                    train.backward(loss / config.accumulate)
                window["n"] += 1
                for name, value in counts.items():
                    window[name] = window.get(name, 0) + value
            train.step()
            step += 1
            bar.update(1)
            if due(step, config.log_every, config.steps):
                seconds = max(time.time() - t_window, 1e-9)
                record = {"step": step, "split": "train",
                          **stage.train_record(step, window, seconds, train.lr)}
                bar.set_postfix(stage.postfix(record))
                metrics_log.write(record)
                window, t_window = {"n": 0}, time.time()
            validated = stage.validates and due(step, config.val_every, config.steps)
            if validated:
                last_val = validation()
            if due(step, config.checkpoint_every, config.steps) or validated:
                save()
    finally:
        stage.close()
        bar.close()
        metrics_log.close()
    if step >= config.steps and not Path(checkpoint_path).exists():
        save()                  # resumed a finished run: make sure the checkpoint exists
    barrier(world)
    return step, last_val


# ----------------------------------------------------------------------------- loss.png

def plot_loss(rows: list[dict], path, *, title: str = "training", parts: tuple = (),
              loss_label: str = "training loss", val_key: str = "mAP",
              val_label: str = "validation (%)") -> bool:
    """loss.png: the training loss against the optimizer step (with `parts`, the metrics
    fields whose sum it is, thinner; log scale when they span a decade or more) and the validation score `val_key` in percent
    on a second axis. Few points get markers, so that a run of one logged step still shows
    a point. False when matplotlib is missing or there is nothing to plot."""
    train = [r for r in rows if r.get("split") == "train"]
    val = [r for r in rows if r.get("split") == "val" and val_key in r]
    if not train and not val:
        return False
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.2))
    steps = [r["step"] for r in train]
    marker = "o" if len(train) <= 30 else None           # one point is no line
    if train:
        ax.plot(steps, [r["loss"] for r in train], color="black", lw=1.8, marker=marker,
                ms=4, label="total loss" if parts else "loss")
        colours = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown")
        for name, colour in zip(parts, colours):
            ax.plot(steps, [r[name] for r in train], lw=0.9, color=colour, marker=marker,
                    ms=2.5, label=name.replace("loss_", ""))
        values = [r[name] for r in train for name in ("loss", *parts) if r[name] > 0]
        if values and max(values) > 10 * min(values):  # a decade or more: log scale
            ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(loss_label)
    ax.grid(alpha=0.3)
    if not train:
        ax.set_yticks([])
        ax.text(0.5, 0.5, "no training step logged yet", transform=ax.transAxes,
                ha="center", va="center", color="0.4")
    lines = list(ax.lines)
    if val:
        ax2 = ax.twinx()
        ax2.plot([r["step"] for r in val], [100 * r[val_key] for r in val], "o-",
                 color="tab:red", label=val_label)
        ax2.set_ylabel(val_label)
        ax2.set_ylim(0, 100)                       # percent, like every other chart
        lines += ax2.lines
    # one legend below the axes: clear of every curve of both axes
    ax.legend(lines, [line.get_label() for line in lines], loc="upper center",
              bbox_to_anchor=(0.5, -0.14), ncol=len(lines) if len(lines) <= 4 else 3,
              fontsize=8, frameon=False)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))       # steps: no 0.25 step
    all_steps = steps + [r["step"] for r in val]
    first, last = min(all_steps), max(all_steps)
    if last - first < 4:                           # a few steps: keep points off the edges
        pad = 0.5 if last > first else 1.0         # (and 2 integers in view for the ticks)
        ax.set_xlim(first - pad, last + pad)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")   # the legend below the axes too
    plt.close(fig)
    return True
