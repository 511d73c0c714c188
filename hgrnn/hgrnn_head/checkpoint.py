"""What training (`train.py`) and inference (`infer.py`) share: head checkpoints, opening a
feature store for the head, the torch device and CPU threads, and the head's error type.

A checkpoint (``last.pt`` of a run folder) is a plain dict that
``torch.load(path, weights_only=True)`` reads; see ``save_checkpoint`` for its keys.
"""

from __future__ import annotations

import contextlib
import os

import torch

from hgrnn.data.ava import LabelMap
from hgrnn.data.store import StoreError
from hgrnn.data.windows import FeatureStore
from hgrnn.hgrnn_head.model import HeadConfig, HGRNNHead
from hgrnn.torchfile import TorchFileError, save_atomic
from hgrnn.torchfile import load as load_torch_file

CHECKPOINT_FORMAT = "hgrnn-head-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "last.pt"


class HeadError(Exception):
    """Bad input to training or evaluation (a store, a checkpoint, a run folder) or a run that
    cannot go on; the message names the file. The CLI shows it as a click error."""


# ---- device and threads -------------------------------------------------------------------

def resolve_device(name: str) -> torch.device:
    """"auto" (CUDA when available), "cpu", "cuda" or "cuda:N" -> torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HeadError(f"device {name!r} asked for, but torch sees no CUDA GPU (use --device cpu)")
    return device


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


# ---- stores -------------------------------------------------------------------------------

def _store_path(store) -> str:
    return str(getattr(store, "path", store))


def open_store(store, box_source: str, lazy=False, streams=None) -> FeatureStore:
    """FeatureStore of `store` (a path or a FeatureStore) reading `box_source` boxes
    (lazy: features stay in the file) and the feature `streams` (names, concatenated in that
    order; None: all the store's dims)."""
    path = _store_path(store)
    if not os.path.exists(path):
        raise HeadError(f"{path}: no such store")
    try:
        fs = FeatureStore(path, box_source=box_source, lazy=lazy, streams=streams)
    except StoreError as e:
        raise HeadError(str(e)) from e
    return fs


def check_store_matches(ckpt: dict, fs) -> None:
    """The store must have the checkpoint's label map and feature dim."""
    ckpt_map = LabelMap.from_json(ckpt["label_map"])
    if ckpt_map != fs.label_map:
        diff = (f"{len(ckpt_map)} classes vs {len(fs.label_map)}"
                if len(ckpt_map) != len(fs.label_map) else "same size, different ids or names")
        raise HeadError(f"{fs.path}: the store's label map differs from checkpoint "
                        f"{ckpt.get('path', '')}'s ({diff})")
    if int(ckpt["feature_dim"]) != fs.feature_dim:
        raise HeadError(f"{fs.path}: feature dim {fs.feature_dim}, checkpoint "
                        f"{ckpt.get('path', '')} was trained on {ckpt['feature_dim']}")


# ---- checkpoints --------------------------------------------------------------------------

def save_checkpoint(path, *, model, optimizer, head: HeadConfig, train, label_map,
                    fingerprint: str, store_path: str, step: int, store_configs=None,
                    store_streams=None) -> None:
    """Write a checkpoint atomically (temporary file + rename). Only tensors, dicts, lists,
    str, int, float, bool and None, so ``torch.load(path, weights_only=True)`` reads it:

        format, version, step, model (state dict), optimizer (state dict), head (HeadConfig
        dict), train (TrainConfig dict), label_map (JSON of [[id, name], ...]), feature_dim,
        store_fingerprint, store_path, rng_torch (CPU RNG state, uint8 tensor),
        store_configs (the training store's stage configs, e.g. {"extract": {...}}: how its
        features were made, which `hgrnn predict` checks), store_streams ([[name, start,
        stop], ...]); the last two are absent from older checkpoints; streams (the feature
        streams the head reads, concatenated in this order, also in train; absent: rgb)
    """
    ckpt = {
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "step": int(step),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "head": head.to_dict(), "train": train.to_dict(),
        "label_map": label_map.to_json(), "feature_dim": int(head.feature_dim),
        "store_fingerprint": str(fingerprint), "store_path": str(store_path),
        "rng_torch": torch.get_rng_state(),
        "store_configs": store_configs or {},
        "store_streams": [[str(n), int(a), int(b)] for n, a, b in (store_streams or [])],
        "streams": list(getattr(train, "streams", ("rgb",))),
    }
    try:
        save_atomic(ckpt, path)          # no last.pt.tmp is left when writing fails
    except TorchFileError as err:
        raise HeadError(str(err)) from None


def load_checkpoint(path) -> dict:
    """Read and check a checkpoint written by ``save_checkpoint`` (weights_only); a run
    folder stands for its last.pt."""
    path = str(path)
    if os.path.isdir(path):
        path = os.path.join(path, CHECKPOINT_NAME)
    try:
        ckpt = load_torch_file(path)     # weights_only; never torch's advice to load unsafely
    except TorchFileError as err:
        raise HeadError(str(err)) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise HeadError(f"{path}: not an hgrnn head checkpoint (no format '{CHECKPOINT_FORMAT}')")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise HeadError(f"{path}: checkpoint version {ckpt.get('version')}, "
                        f"this hgrnn reads {CHECKPOINT_VERSION}")
    for key, kind in _CHECKPOINT_KEYS.items():
        if key not in ckpt:
            raise HeadError(f"{path}: damaged checkpoint: key {key!r} is missing")
        if not isinstance(ckpt[key], kind):
            raise HeadError(f"{path}: damaged checkpoint: {key!r} is a "
                            f"{type(ckpt[key]).__name__}, expected {kind.__name__}")
    try:
        HeadConfig.from_dict(ckpt["head"])
    except (TypeError, ValueError) as err:
        raise HeadError(f"{path}: damaged checkpoint: 'head' is not a head config ({err})") from None
    ckpt["path"] = path
    return ckpt


# what every checkpoint holds (save_checkpoint), checked on loading
_CHECKPOINT_KEYS = {"step": int, "model": dict, "optimizer": dict, "head": dict, "train": dict,
                    "label_map": str, "feature_dim": int, "store_fingerprint": str,
                    "store_path": str, "rng_torch": torch.Tensor}


@contextlib.contextmanager
def restoring(ckpt: dict, what: str):
    """Around loading a part of a checkpoint into a model, optimizer or RNG: torch's errors
    (a tensor of the wrong shape, a bad state) become one HeadError naming the file."""
    try:
        yield
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if len(str(err).strip().splitlines()) > 1:       # load_state_dict: the first mismatch
            first += " " + str(err).strip().splitlines()[1].strip()
        raise HeadError(f"{ckpt.get('path', 'checkpoint')}: damaged checkpoint: the {what} "
                        f"does not fit ({first})") from None


def model_from_checkpoint(ckpt: dict, device="cpu") -> HGRNNHead:
    """The checkpoint's head with its weights, on `device`, in eval mode."""
    model = HGRNNHead(HeadConfig.from_dict(ckpt["head"]))
    with restoring(ckpt, "model weights"):
        model.load_state_dict(ckpt["model"])
    return model.to(device).eval()
