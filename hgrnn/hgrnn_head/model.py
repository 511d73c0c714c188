"""The HGRNN head (Hierarchical Graph-RNN), read top to bottom.

One batch holds B centre keyframes, each with a context window of L = 2l + 1 keyframes, and
the P persons of the centre keyframes (ragged: ``keyframe[i]`` says which centre keyframe
person i belongs to). C is the feature dim, K the number of classes. Data flow:

    clip (B, L, C) + window persons (Q, C)
        --SceneRNN: per slot x_c ⊕ maxpool(persons), biGRU, read at the centre-->  h_c (B, 2*Hs)
    x_p (P, C) ⊕ h_c[keyframe] (P, 2*Hs)
        --GraphRNN: J times  m = maxpool of h over the persons of the same keyframe,
                             h = GRUCell(x_p ⊕ h_c ⊕ m, h)-->                      h (P, Hg)
    h --Dropout, Linear--> logits (P, K);   scores = sigmoid(logits)

Every max-pool over "the persons of a keyframe" is a segment max over a flat array
(``scatter_reduce(..., "amax")`` with segment ids), so there is no Python loop over keyframes
or persons, and a person's output depends only on its own keyframe and window.

Graph pooling (``graph_pool``): the paper's ``m = maxpool over all nodes`` includes the
person itself ("all", the default). "others" pools over the OTHER persons of the keyframe
only (zeros for a person alone): ``segment_max_others`` gets it from each segment's largest
and second-largest value per dimension, again without a loop.

The four variants of the paper's tables come from this one code path:

    hgrnn   scene RNN + J graph iterations (the paper's model)
    scene   scene RNN, no graph iterations: h = tanh(Linear(x_p ⊕ h_c)) then the classifier
            (paper Table 2 "Scene-RNN")
    graph   no scene RNN (h_c absent, clip features ignored) + J graph iterations: the
            paper's l = 0 row (Table 1/2 "Graph-RNN")
    person  no scene RNN, no iterations: h = tanh(Linear(x_p)) then the classifier, a
            per-person head on x_p alone (the AVA "I3D head" baseline, Table 5)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn as nn

VARIANTS = ("hgrnn", "scene", "graph", "person")
GRAPH_POOLS = ("all", "others")


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

    def __post_init__(self):
        def check(ok, what):
            if not ok:
                raise ValueError(what)

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

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "HeadConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"HeadConfig: unknown fields {unknown}")
        return cls(**d)


def segment_max(values: torch.Tensor, segment: torch.Tensor, num_segments: int):
    """Max over the rows of each segment.

    values (N, D) float, segment (N,) int64 in [0, num_segments)
    -> pooled (num_segments, D) (0 for an empty segment), nonempty (num_segments,) bool.
    """
    pooled = values.new_zeros((num_segments, values.shape[1]))
    index = segment[:, None].expand(-1, values.shape[1])
    pooled = pooled.scatter_reduce(0, index, values, reduce="amax", include_self=False)
    nonempty = torch.bincount(segment, minlength=num_segments) > 0
    return pooled, nonempty


def segment_max_others(values: torch.Tensor, segment: torch.Tensor, num_segments: int):
    """For every row, the max over the OTHER rows of its segment.

    values (N, D) float, segment (N,) int64 in [0, num_segments) -> (N, D); a row alone in
    its segment gets 0. Per dimension, a row that holds its segment's largest value alone
    gets the second-largest value, every other row the largest (ties: another row holds it).
    """
    N, D = values.shape
    first, _ = segment_max(values, segment, num_segments)  # (S, D)
    first_row = first[segment]  # (N, D)
    is_max = values == first_row  # (N, D)
    index = segment[:, None].expand(-1, D)
    holders = values.new_zeros((num_segments, D)).scatter_add(0, index, is_max.to(values.dtype))
    below = values.masked_fill(is_max, float("-inf"))  # (N, D): the max holders left out
    second, _ = segment_max(below, segment, num_segments)  # (S, D); -inf: all rows tie
    sole = is_max & (holders[segment] == 1)  # (N, D): the row is the only max holder
    others = torch.where(sole, second[segment], first_row)  # (N, D)
    alone = torch.bincount(segment, minlength=num_segments)[segment] == 1  # (N,)
    return others.masked_fill(alone[:, None], 0.0)


def _gru_update(gi, gh, h):
    """One GRU step from its input gates gi and hidden gates gh (..., 3H), gates [r, z, n],
    and the state h (..., H): PyTorch's GRU equations in ATen's order of operations."""
    i_r, i_z, i_n = gi.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(h_r + i_r)
    z = torch.sigmoid(h_z + i_z)
    n = torch.tanh(i_n + h_n * r)
    return (h - n) * z + n


class SceneRNN(nn.Module):
    """Lower level: temporal scene context h_c of each centre keyframe (paper eq. 2-3).

    A bidirectional GRU read at the centre slot l: the forward GRU's state after slots
    0..l ⊕ the backward GRU's state after slots L-1..l. The two directions are two GRUs run
    only up to the centre, the same function as ``nn.GRU(bidirectional=True)`` indexed at l,
    without computing the states past the centre that would be thrown away (4/7 of the work
    at l = 3).
    """

    def __init__(self, cfg: HeadConfig):
        super().__init__()
        C, H = cfg.feature_dim, cfg.scene_hidden
        self.empty = nn.Parameter(torch.zeros(C)) if cfg.empty_pool == "learned" else None
        self.forward_gru = nn.GRU(2 * C, H, batch_first=True)
        self.backward_gru = nn.GRU(2 * C, H, batch_first=True)

    def forward(self, clip, ctx_feats, ctx_segment):
        # clip (B, L, C); ctx_feats (Q, C); ctx_segment (Q,) window slot b*L + s of each row
        B, L, C = clip.shape
        l = L // 2
        pooled, nonempty = segment_max(ctx_feats, ctx_segment, B * L)  # (B*L, C), (B*L,)
        if self.empty is not None:
            pooled = torch.where(nonempty[:, None], pooled, self.empty)
        # x_c ⊕ x_P per slot, slot-major: the slots each direction reads are contiguous rows
        x = torch.cat([clip.transpose(0, 1), pooled.view(B, L, C).transpose(0, 1)],
                      dim=-1)  # (L, B, 2C)
        h_fwd = _gru_last(self.forward_gru, x[: l + 1], reverse=False)  # after slots 0..l
        h_bwd = _gru_last(self.backward_gru, x[l:], reverse=True)  # after slots L-1..l
        return torch.cat([h_fwd, h_bwd], dim=-1)  # (B, 2Hs): h_c, read at the centre


def _gru_last(gru: nn.GRU, x, reverse):
    """The last state of the one-layer `gru` run over the slots of x (T, B, D) from a zero
    state, in order or (reverse) from the last slot to the first: the same equations as
    ``gru(x)`` (ATen's), with the input gates of all slots as one matrix product and no
    hidden-state product for the zero initial state (unless T = 1: weight_hh then still
    takes part, so that it gets a gradient as it did inside nn.GRU)."""
    T, B, D = x.shape
    gi = torch.addmm(gru.bias_ih_l0, x.reshape(T * B, D), gru.weight_ih_l0.t())  # (T*B, 3H)
    gi = gi.view(T, B, -1).unbind(0)  # T x (B, 3H)
    h = x.new_zeros((B, gru.hidden_size))
    for n, t in enumerate(reversed(range(T)) if reverse else range(T)):
        gh = (gru.bias_hh_l0.expand_as(gi[t]) if n == 0 and T > 1  # the zero state's gates
              else torch.addmm(gru.bias_hh_l0, h, gru.weight_hh_l0.t()))  # (B, 3H)
        h = _gru_update(gi[t], gh, h)
    return h  # (B, H)


class GraphRNN(nn.Module):
    """Top level: J iterations over the fully connected graph of each keyframe's persons."""

    def __init__(self, cfg: HeadConfig, context_dim: int):
        super().__init__()
        C, G = cfg.feature_dim, cfg.graph_hidden
        self.iterations = cfg.graph_iterations
        self.hidden = G
        self.pool_others = cfg.graph_pool == "others"
        use_projection = cfg.h0 == "project" or self.iterations == 0
        self.project = nn.Linear(C + context_dim, G) if use_projection else None
        self.cell = nn.GRUCell(C + context_dim + G, G) if self.iterations > 0 else None

    def forward(self, node_in, keyframe, num_keyframes):
        # node_in (P, C [+ 2Hs]) = x_p [⊕ h_c]; keyframe (P,) in [0, B)
        if self.project is not None:
            h = torch.tanh(self.project(node_in))  # (P, G)
        else:
            h = node_in.new_zeros((node_in.shape[0], self.hidden))  # (P, G)
        if self.iterations == 0:
            return h
        # self.cell's GRU on the input x_p [⊕ h_c] ⊕ m, with the input weights split in two:
        # the x_p [⊕ h_c] part of the input gates is the same in every iteration (computed
        # once), and a zero initial state (h0 "zeros") has m = 0 and hidden gates = bias in
        # the first iteration (no matrix product); the same function as nn.GRUCell
        cell = self.cell
        # (contiguous copies: the matrix products' weight gradients then come out row-major
        # and join into weight_ih's gradient fast)
        w_node, w_m = (w.contiguous() for w in
                       cell.weight_ih.split([node_in.shape[1], self.hidden], dim=1))
        gi_node = torch.nn.functional.linear(node_in, w_node, cell.bias_ih)  # (P, 3G)
        # (with J = 1 the m and hidden weights are still used, so that they get a gradient)
        zero_state = self.project is None and self.iterations > 1
        for j in range(self.iterations):
            if j == 0 and zero_state:
                gi, gh = gi_node, cell.bias_hh.expand_as(gi_node)
            else:
                if self.pool_others:
                    m = segment_max_others(h, keyframe, num_keyframes)  # (P, G): max_{v != i} h_v
                else:
                    m, _ = segment_max(h, keyframe, num_keyframes)  # (B, G): maxpool_v h_v^(j-1)
                    m = m[keyframe]  # (P, G)
                gi = torch.addmm(gi_node, m, w_m.t())  # (P, 3G): input gates of x ⊕ m
                gh = torch.nn.functional.linear(h, cell.weight_hh, cell.bias_hh)  # (P, 3G)
            h = _gru_update(gi, gh, h)  # (P, G)
        return h


class HGRNNHead(nn.Module):
    """The head. ``forward(batch)`` takes a ``WindowBatch`` (or anything with its fields:
    clip, ctx_feats, ctx_segment, feats, keyframe) and returns logits (P, K)."""

    def __init__(self, cfg: HeadConfig):
        super().__init__()
        if cfg.feature_dim is None or cfg.num_classes is None:
            raise ValueError("HeadConfig: feature_dim and num_classes must be set to build a model")
        self.cfg = cfg
        self.scene = SceneRNN(cfg) if cfg.uses_scene else None
        context_dim = 2 * cfg.scene_hidden if cfg.uses_scene else 0
        self.graph = GraphRNN(cfg, context_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(cfg.graph_hidden, cfg.num_classes)

    def forward(self, batch) -> torch.Tensor:
        clip, feats, keyframe = batch.clip, batch.feats, batch.keyframe
        B, L, C = clip.shape  # (B, L, C)
        P = feats.shape[0]  # feats (P, C), keyframe (P,)
        if C != self.cfg.feature_dim or feats.shape[1] != self.cfg.feature_dim:
            raise ValueError(f"batch feature dim {C} != HeadConfig.feature_dim "
                             f"{self.cfg.feature_dim}")
        x_p = self.dropout(feats)  # (P, C)
        if self.scene is not None:
            if L != 2 * self.cfg.context + 1:
                raise ValueError(f"batch window L={L} but HeadConfig.context l={self.cfg.context} "
                                 f"needs L={2 * self.cfg.context + 1}")
            h_c = self.scene(clip, batch.ctx_feats, batch.ctx_segment)  # (B, 2Hs)
            node_in = torch.cat([x_p, h_c[keyframe]], dim=-1)  # (P, C + 2Hs)
        else:
            node_in = x_p  # (P, C): "graph"/"person" never read the clip features
        h = self.graph(node_in, keyframe, B)  # (P, Hg)
        logits = self.classifier(self.dropout(h))  # (P, K)
        assert logits.shape == (P, self.cfg.num_classes)
        return logits

    @torch.no_grad()
    def predict(self, batch) -> torch.Tensor:
        """Action probabilities sigmoid(logits), (P, K), in eval mode."""
        was_training = self.training
        self.eval()
        try:
            return torch.sigmoid(self(batch))
        finally:
            self.train(was_training)
