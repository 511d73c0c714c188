"""The options of the head (``HeadConfig``) and of its training (``TrainConfig``): frozen
dataclasses, written as JSON into checkpoints. This module imports neither torch nor numpy:
the command line reads its defaults from here (a default is written once, in the field),
and `hgrnn --help` stays fast.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

VARIANTS = ("hgrnn", "scene", "graph", "person")
GRAPH_POOLS = ("all", "others")
RELATIONS = ("gru", "attention")
LR_SCHEDULES = ("constant", "cosine", "step")
FUSIONS = ("concat", "late")


@dataclass(frozen=True)
class HeadConfig:
    """Every choice of the head. Defaults follow the paper where it states them (l = 3,
    J = 2) and METHOD.md's documented defaults where it leaves them open.

    feature_dim, num_classes: C and K. None means "take it from the store" (``train_head``
        fills both in); a model can only be built once both are set.
    variant: "hgrnn" | "scene" | "graph" | "person" (see the module docstring).
    context: l, keyframes before and after the centre; L = 2l + 1 (paper: 3, about 7 s).
        Unused (the window is a single keyframe) by "graph" and "person".
    iterations: J, graph RNN iterations (paper: 2 best of 1/2/3). Unused by "scene"/"person".
    scene_hidden: Hs, hidden size of EACH direction of the scene biGRU; h_c has 2*Hs dims.
    graph_hidden: Hg, hidden size of the graph GRU cell (and of the readout of "scene"/"person").
        The paper does not state its sizes. Defaults 128 / 256: h_c then has 256 dims, as
        many as the paper's I3D features, and the paper's schedule (1000 steps x 50
        keyframes) trains in about a minute on a 2-core CPU (BENCHMARKS.md). Hg = 256 rather
        than 128 because, within that short schedule at lr 1e-4, the 128-wide graph GRU
        learnt the synthetic benchmark's pairwise classes far less (relational AP 45-47
        against 73-77, BENCHMARKS.md).
    h0: initial graph state, "zeros" (default: iteration 1 then sees no other person, as the
        paper's equations start from an empty h^(0)) or "project" (tanh(Linear(x_p ⊕ h_c))).
        "scene"/"person" always use the projection (it is their readout layer).
    empty_pool: what x_P is for a window keyframe with no person: "zeros" (default) or a
        "learned" vector.
    window_pad: how windows are padded past a video's first/last keyframe: "edge" (default,
        repeat the edge keyframe) or "zero" (zero clip feature, no persons). Passed to
        ``ContextWindows(pad=...)``; the model itself sees only the padded window.
    dropout: dropout on the person features and before the classifier (default 0: the
        paper's schedule sees each keyframe about once, it does not overfit).
    graph_pool: what the graph RNN's message m pools over: "all" persons of the keyframe
        (default, the paper's literal "maxpool over all nodes", the person itself included)
        or "others" (every person but itself; zeros when it is alone in the keyframe), so
        that a person can tell its own state from another's.
    """

    feature_dim: int | None = None
    num_classes: int | None = None
    variant: str = "hgrnn"
    context: int = 3
    iterations: int = 2
    scene_hidden: int = 128
    graph_hidden: int = 256
    h0: str = "zeros"
    empty_pool: str = "zeros"
    window_pad: str = "edge"
    dropout: float = 0.0
    graph_pool: str = "all"
    relation: str = "gru"
    attention_heads: int = 4
    fusion: str = "concat"
    stream_dims: tuple | None = None

    def __post_init__(self):
        def check(ok, what):
            if not ok:
                raise ValueError(what)

        if self.stream_dims is not None:            # a JSON list -> tuple
            object.__setattr__(self, "stream_dims", tuple(int(d) for d in self.stream_dims))

        check(self.variant in VARIANTS, f"--model must be one of {VARIANTS}, got {self.variant!r}")
        check(self.context >= 0, f"--context (l) must be >= 0, got {self.context}")
        check(self.iterations >= 0, f"--iterations (J) must be >= 0, got {self.iterations}")
        check(self.scene_hidden > 0 and self.graph_hidden > 0, "--scene-hidden and --graph-hidden must be > 0")
        check(self.h0 in ("zeros", "project"), f"--h0 must be 'zeros' or 'project', got {self.h0!r}")
        check(self.empty_pool in ("zeros", "learned"),
              f"--empty-pool must be 'zeros' or 'learned', got {self.empty_pool!r}")
        check(self.window_pad in ("edge", "zero"),
              f"--window-pad must be 'edge' or 'zero', got {self.window_pad!r}")
        check(self.graph_pool in GRAPH_POOLS,
              f"--graph-pool must be one of {GRAPH_POOLS}, got {self.graph_pool!r}")
        check(0.0 <= self.dropout < 1.0, f"--dropout must be in [0, 1), got {self.dropout}")
        check(self.relation in RELATIONS,
              f"--relation must be one of {RELATIONS}, got {self.relation!r}")
        check(self.attention_heads > 0 and (self.relation != "attention"
                                            or self.graph_hidden % self.attention_heads == 0),
              f"--attention-heads ({self.attention_heads}) must divide --graph-hidden "
              f"({self.graph_hidden})")
        check(self.fusion in FUSIONS, f"--fusion must be one of {FUSIONS}, got {self.fusion!r}")
        check(self.stream_dims is None or (self.stream_dims and min(self.stream_dims) > 0),
              f"stream_dims must be positive widths, got {self.stream_dims}")
        check(self.stream_dims is None or self.feature_dim is None
              or sum(self.stream_dims) == self.feature_dim,
              f"stream_dims {self.stream_dims} do not add up to feature_dim {self.feature_dim}")
        for name in ("feature_dim", "num_classes"):
            value = getattr(self, name)
            check(value is None or value > 0, f"{name} must be > 0, got {value}")

    # What the variant actually uses (one code path, switched by these three).
    @property
    def uses_scene(self) -> bool:
        return self.variant in ("hgrnn", "scene")

    @property
    def graph_iterations(self) -> int:
        return self.iterations if self.variant in ("hgrnn", "graph") else 0

    @property
    def window_context(self) -> int:
        """l of the windows the model reads: ``context`` with a scene RNN, else 0."""
        return self.context if self.uses_scene else 0

    def describe(self) -> str:
        """The model in a few words, with only the options it uses: 'HGRNN (l=3, J=2)',
        'per-person head', 'Graph-RNN (J=2, attention)', 'Scene-RNN (l=3, late fusion)'."""
        name = {"hgrnn": "HGRNN", "scene": "Scene-RNN", "graph": "Graph-RNN",
                "person": "per-person head"}[self.variant]
        parts = [f"l={self.context}"] if self.uses_scene else []
        if self.graph_iterations:
            parts.append(f"J={self.graph_iterations}")
            if self.relation != "gru":
                parts.append(self.relation)
        if self.fusion != "concat":
            parts.append(f"{self.fusion} fusion")
        return f"{name} ({', '.join(parts)})" if parts else name

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if self.stream_dims is not None:
            d["stream_dims"] = list(self.stream_dims)     # JSON-shaped
        return d

    @classmethod
    def from_dict(cls, d: dict) -> HeadConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"HeadConfig: unknown fields {unknown}")
        return cls(**d)



@dataclass(frozen=True)
class TrainConfig:
    """How the head is trained (defaults: the paper's schedule).

    steps, batch_size, lr: 1000 steps of 50 keyframes, Adam, constant lr 1e-4.
    lr_schedule: the learning rate at each step: "constant" (the paper's), "cosine" (from
        lr down to 0 at the last step) or "step" (multiplied by lr_gamma every
        lr_step_every steps); any of them after `warmup` steps of a linear ramp from 0.
    warmup: steps of linear warm-up (0: none, the paper's).
    lr_step_every, lr_gamma: the "step" schedule (default: halve every 300 steps).
    weight_decay: > 0 trains with AdamW (decoupled weight decay) instead of Adam.
    init_from: a run folder or checkpoint whose weights start this run (None: random init,
        the paper's); optimiser, schedule and step count start afresh. The head's shapes
        must be those of that run.
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
    lr_schedule: str = "constant"
    warmup: int = 0
    lr_step_every: int = 300
    lr_gamma: float = 0.5
    weight_decay: float = 0.0
    init_from: str | None = None

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
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"--lr-schedule must be one of {LR_SCHEDULES}, got "
                             f"{self.lr_schedule!r}")
        if self.warmup < 0 or self.lr_step_every <= 0 or not 0 < self.lr_gamma <= 1:
            raise ValueError("--warmup must be >= 0, --lr-step-every > 0 and --lr-gamma in "
                             "(0, 1]")
        if self.weight_decay < 0:
            raise ValueError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if self.focal_alpha is not None and not 0 <= self.focal_alpha <= 1:
            raise ValueError(f"--focal-alpha must be in [0, 1], got {self.focal_alpha}")
        for name in ("box_source", "context_boxes"):
            if getattr(self, name) not in ("gt", "det"):
                raise ValueError(f"--{name.replace('_', '-')} must be 'gt' or 'det', "
                                 f"got {getattr(self, name)!r}")

    def lr_at(self, step: int) -> float:
        """The learning rate of training step `step` (0-based: the step's one update)."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        if self.lr_schedule == "cosine":
            progress = (step - self.warmup) / max(self.steps - self.warmup, 1)
            return self.lr * 0.5 * (1 + math.cos(math.pi * progress))
        if self.lr_schedule == "step":
            return self.lr * self.lr_gamma ** ((step - self.warmup) // self.lr_step_every)
        return self.lr

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "streams": list(self.streams)}   # JSON-shaped

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


