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
  MetricsLog          metrics.jsonl: rank 0 appends one JSON object a line
  autocast, no_sync, wrap_ddp, micro_batch, due, barrier, write_run_config, step_bar

Errors: each function that can fail takes the stage's exception class (`error`:
FinetuneError, DetectorError) so the stage's CLI reports it as one line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn

from hgrnn.console import progress_bar
from hgrnn.torchfile import TorchFileError, save_atomic
from hgrnn.torchfile import load as load_torch_file

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
