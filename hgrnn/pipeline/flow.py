"""Optical flow for the flow stream (`extract-features --streams rgb,flow`,
`finetune-backbone --stream flow`).

A clip of T RGB frames (uint8, the frames the extractor already decoded, at the extraction
resolution) gives T - 1 flow fields, one per consecutive pair of the clip (frames t and t+1
of the clip, i.e. `frame_stride` video frames apart). The flow I3D then sees (B, 2, T-1, H, W);
with SAME padding T-1 = 31 frames give the same T' = 4 as 32 RGB frames.

Values, as DeepMind's kinetics-i3d flow model (and piergiaj's `flow_imagenet.pt` port)
expects: displacement in pixels of the extraction-resolution frame, channel 0 = x (dx,
positive to the right), channel 1 = y (dy, positive downwards), clipped to
[-FLOW_BOUND, FLOW_BOUND] = [-20, 20] and divided by 20, so in [-1, 1] (`scale_flow`).

Methods (`FlowComputer(method, ...)`):

  tvl1        OpenCV contrib's Dual TV-L1 (`cv2.optflow.DualTVL1OpticalFlow_create()` with
              its default parameters) on grayscale frames (cv2.COLOR_RGB2GRAY): the flow
              the kinetics-i3d flow weights were trained on. CPU only, slow (about 2 s per
              256x340 pair on one core; BENCHMARKS.md). Needs the optional extra `[flow]`
              (`pip install opencv-contrib-python-headless`).
  raft-small, raft-large (alias raft = raft-large)
              torchvision's RAFT (`raft_small` / `raft_large`) on RGB scaled to [-1, 1],
              frames padded (edge replication) to multiples of 8, and to at least 128 x 128
              (the smallest input RAFT takes), and the flow cropped back,
              `num_flow_updates` refinement steps (12, torchvision's default), last estimate.
              weights: "default" (torchvision's `weights=...DEFAULT`, downloaded once),
              a state-dict file, or "none" (random init with a fixed seed: deterministic,
              meaningless; tests). Fast on a GPU. RAFT flow is sharper and less smooth than
              TV-L1 and its distribution differs: the Kinetics flow I3D was trained on TV-L1,
              so fine-tune the flow network on RAFT flow (`finetune-backbone --stream flow
              --flow raft`) before extracting with it.

Where it runs: TV-L1 (and RAFT when the network runs on the CPU) is computed inside the
DataLoader workers that decode the video (`flow_in_workers`), so on a GPU machine the
backbone never waits for flow when there are enough workers; RAFT on a CUDA device runs in
the main process next to the backbone (CUDA cannot be used from forked workers).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hgrnn.pipeline.i3d import sha256_file
from hgrnn.torchfile import TorchFileError, load

#: flow magnitudes are clipped to this many pixels, then divided by it (kinetics-i3d)
FLOW_BOUND = 20.0
#: accepted `method` names; "raft" is an alias of "raft-large"
FLOW_METHODS = ("tvl1", "raft-small", "raft-large", "raft")
#: RAFT needs frame sizes divisible by this ...
RAFT_MULTIPLE = 8
#: ... and at least this large (its 4-level correlation pyramid on the 1/8 feature map)
RAFT_MIN_SIZE = 128
#: seed of a random-weights RAFT (weights="none"): the same random network in every process
RANDOM_SEED = 0


class FlowError(RuntimeError):
    """Flow cannot be computed as asked (missing OpenCV contrib, bad RAFT weights)."""


def canonical_method(method: str) -> str:
    """"raft" -> "raft-large"; refuses unknown names."""
    method = str(method).lower()
    if method not in FLOW_METHODS:
        raise ValueError(f"flow method {method!r}: expected one of {', '.join(FLOW_METHODS)}")
    return "raft-large" if method == "raft" else method


def flow_in_workers(method: str, device) -> bool:
    """True when flow is computed in the decoding workers (TV-L1 always, RAFT on the CPU),
    False when the main process computes it on `device` (RAFT on CUDA)."""
    return canonical_method(method) == "tvl1" or torch.device(device).type != "cuda"


def scale_flow(flow):
    """Pixel flow -> [-1, 1]: clip to [-FLOW_BOUND, FLOW_BOUND], divide by FLOW_BOUND.
    numpy array or tensor, any shape; returns the same type (float)."""
    if isinstance(flow, torch.Tensor):
        return flow.float().clamp(-FLOW_BOUND, FLOW_BOUND) / FLOW_BOUND
    return np.clip(np.asarray(flow, np.float32), -FLOW_BOUND, FLOW_BOUND) / FLOW_BOUND


def flow_to_input(flow) -> torch.Tensor:
    """Scaled flow (B, T, H, W, 2) (or (T, H, W, 2)) -> flow-I3D input (B, 2, T, H, W) float32."""
    x = torch.as_tensor(flow)
    if x.dim() == 4:
        x = x.unsqueeze(0)
    if x.dim() != 5 or x.shape[-1] != 2:
        raise ValueError(f"expected (T, H, W, 2) or (B, T, H, W, 2) flow, got {tuple(x.shape)}")
    return x.permute(0, 4, 1, 2, 3).float()


def pad_to_multiple(x: torch.Tensor, multiple: int = RAFT_MULTIPLE, min_size: int = 0):
    """Edge-pad the last two dims of a (..., C, H, W) float tensor up to multiples of
    `multiple`, and to at least `min_size` (the extra rows and columns at the bottom/right).
    Returns (padded, (H, W)), so that a result can be cropped back with [..., :H, :W]."""
    shape = x.shape
    h, w = shape[-2:]
    ph, pw = (-max(h, min_size)) % multiple, (-max(w, min_size)) % multiple
    ph, pw = ph + max(min_size - h, 0), pw + max(min_size - w, 0)
    if ph or pw:
        x = F.pad(x.reshape(-1, *shape[-3:]), (0, pw, 0, ph), mode="replicate")
        x = x.reshape(*shape[:-2], h + ph, w + pw)
    return x, (h, w)


# ----------------------------------------------------------------------------- TV-L1

def _cv2():
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is None or not hasattr(cv2, "optflow"):
        raise FlowError("TV-L1 flow needs OpenCV's contrib modules: pip install "
                        "'hgrnn[flow]' (opencv-contrib-python-headless)")
    return cv2


def tvl1_available() -> bool:
    """True when OpenCV with the contrib `optflow` module can be imported."""
    try:
        _cv2()
    except FlowError:
        return False
    return True


def tvl1_pairs(frames: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Dual TV-L1 flow of every consecutive pair of one clip.

    frames (T, H, W, 3) uint8 RGB -> (T-1, H, W, 2) float32 flow in PIXELS (not scaled).
    threads: OpenCV threads (None: leave OpenCV's setting)."""
    cv2 = _cv2()
    if threads is not None:
        cv2.setNumThreads(int(threads))
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected (T, H, W, 3) uint8 RGB frames, got {frames.shape} {frames.dtype}")
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
    gray = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]
    out = np.empty((max(len(frames) - 1, 0),) + frames.shape[1:3] + (2,), np.float32)
    for t in range(len(frames) - 1):
        out[t] = tvl1.calc(gray[t], gray[t + 1], None)
    return out


# ----------------------------------------------------------------------------- RAFT

def load_raft(method: str, weights="default"):
    """torchvision RAFT in eval mode on the CPU. method: "raft-small" | "raft-large" (or
    "raft"); weights: "default" (torchvision's DEFAULT weights), "none" (random init, seeded
    with RANDOM_SEED: identical in every process) or a state-dict file (loaded strictly).
    Returns (model, meta dict: method, weights, sha256)."""
    from torchvision.models import optical_flow as of

    method = canonical_method(method)
    if method == "tvl1":
        raise ValueError("load_raft: method is tvl1")
    build, enum = ((of.raft_small, of.Raft_Small_Weights) if method == "raft-small"
                   else (of.raft_large, of.Raft_Large_Weights))
    meta = {"method": method, "weights": str(weights), "sha256": None}
    key = str(weights).strip().lower()
    if key == "none":
        warnings.warn(f"flow weights: NONE -- random {method}, flow is meaningless (tests only)",
                      stacklevel=2)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            model = build(weights=None)
    elif key == "default":
        model = build(weights=enum.DEFAULT)
        meta["weights"] = f"torchvision:{enum.DEFAULT}"
    else:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: RAFT weights file not found")
        try:
            state = load(path, "weights file")
        except TorchFileError as exc:
            raise FlowError(str(exc)) from None
        model = build(weights=None)
        try:
            model.load_state_dict(state, strict=True)
        except (RuntimeError, TypeError, AttributeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise FlowError(f"{path}: not a torchvision {method} state dict ({first})") from None
        meta["sha256"] = sha256_file(path)
    return model.eval(), meta


@torch.no_grad()
def raft_pairs(model, clips: torch.Tensor, num_flow_updates: int = 12,
               max_pairs: int = 16) -> torch.Tensor:
    """RAFT flow of every consecutive pair of each clip.

    clips (B, T, H, W, 3) uint8 on the model's device -> (B, T-1, H, W, 2) float32 flow in
    PIXELS (not scaled). Frames are scaled to [-1, 1], edge-padded to multiples of 8 (and to
    at least 128 x 128, the smallest input RAFT takes) and the flow cropped back; pairs go through the network `max_pairs` at a time."""
    b, t, h, w, _ = clips.shape
    x = clips.permute(0, 1, 4, 2, 3).float().div_(127.5).sub_(1.0)     # (B, T, 3, H, W)
    x, _ = pad_to_multiple(x, RAFT_MULTIPLE, RAFT_MIN_SIZE)
    first = x[:, :-1].reshape(-1, *x.shape[2:])                         # (B(T-1), 3, H8, W8)
    second = x[:, 1:].reshape(-1, *x.shape[2:])
    flows = [model(first[i:i + max_pairs], second[i:i + max_pairs],
                   num_flow_updates=num_flow_updates)[-1]
             for i in range(0, first.shape[0], max_pairs)]
    flow = torch.cat(flows) if flows else x.new_zeros((0, 2) + x.shape[-2:])
    flow = flow[..., :h, :w]                                            # (B(T-1), 2, H, W)
    return flow.reshape(b, t - 1, 2, h, w).permute(0, 1, 3, 4, 2)       # (B, T-1, H, W, 2)


# ----------------------------------------------------------------------------- one interface

class FlowComputer:
    """Scaled flow of a batch of clips: `flow(clips)` with clips (B, T, H, W, 3) uint8 (numpy
    or tensor) -> (B, T-1, H, W, 2) float32 tensor in [-1, 1] on `device` (the CPU for
    TV-L1). Picklable before first use (the RAFT network is built lazily), so one instance
    can be handed to DataLoader workers. `seconds` and `pairs` count the work done in this
    process (for progress and benchmarks)."""

    def __init__(self, method: str = "tvl1", weights="default", device="cpu",
                 num_flow_updates: int = 12, threads: int | None = None):
        self.method = canonical_method(method)
        self.weights = weights
        self.device = str(device)
        self.num_flow_updates = int(num_flow_updates)
        self.threads = threads
        self._model = None
        self.seconds = 0.0
        self.pairs = 0
        if self.method == "tvl1":
            _cv2()               # fail now, with the install hint, not in a worker

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_model"] = None
        return state

    def meta(self) -> dict:
        """JSON-ready description (stored in the extract config): method, weights, sha256,
        bound, num_flow_updates (RAFT)."""
        out = {"method": self.method, "bound": FLOW_BOUND,
               "scaling": f"clip to [-{FLOW_BOUND:g}, {FLOW_BOUND:g}] px, / {FLOW_BOUND:g}"}
        if self.method == "tvl1":
            out.update(weights=None, sha256=None, implementation="cv2.optflow DualTVL1 defaults")
        else:
            if self._model is None:
                self._load()
            out.update(self._meta, num_flow_updates=self.num_flow_updates)
        return out

    def _load(self):
        model, self._meta = load_raft(self.method, self.weights)
        self._model = model.to(self.device)

    def __call__(self, clips) -> torch.Tensor:
        started = time.perf_counter()
        if self.method == "tvl1":
            arr = clips.numpy() if isinstance(clips, torch.Tensor) else np.asarray(clips)
            flow = torch.from_numpy(np.stack([tvl1_pairs(c, self.threads) for c in arr])
                                    if len(arr) else np.zeros((0, 0, 1, 1, 2), np.float32))
        else:
            if self._model is None:
                self._load()
            flow = raft_pairs(self._model, torch.as_tensor(clips).to(self.device),
                              self.num_flow_updates)
        out = scale_flow(flow)
        self.seconds += time.perf_counter() - started
        self.pairs += int(out.shape[0] * out.shape[1]) if out.dim() == 5 else 0
        return out
