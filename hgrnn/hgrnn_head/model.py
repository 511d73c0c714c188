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

The relation level (``relation``) is the paper's graph RNN ("gru", the default) or, beyond
the paper, ``PersonAttention`` ("attention"): J rounds of multi-head self-attention over the
persons of each keyframe, the pairwise box geometry as a learned bias on the attention
scores, residual + layer norm (a transformer layer per round). Both read x_p ⊕ h_c and return
a (P, Hg) state per person, so the hierarchy (scene RNN, relations, classifier) and the
ablation stay one code path. They get x_p and h_c apart and never build the concatenation:
a product with x_p ⊕ h_c[keyframe] is x_p's part per person plus h_c's part per keyframe,
gathered (``node_linear``); likewise the graph's m, one per keyframe under pooling "all".

Two-stream features (``fusion``): "concat" (default) feeds the concatenated streams to one
head; "late" builds one whole head per stream (``stream_dims`` says where each stream's
columns are) and sums their logits, so a stream that is noise to a class costs that class
less (the RGB+Flow benchmark of docs/synthetic.md).

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

import copy
import dataclasses

import torch
import torch.nn as nn

from hgrnn.hgrnn_head.config import FUSIONS, GRAPH_POOLS, RELATIONS, VARIANTS, HeadConfig

# the head's options live in the light config module (the CLI reads their defaults without
# importing torch); they are part of this module's interface
__all__ = ["FUSIONS", "GRAPH_POOLS", "RELATIONS", "VARIANTS", "GraphRNN", "HGRNNHead",
           "HeadConfig", "PersonAttention", "SceneRNN", "node_linear", "segment_max",
           "segment_max_others", "split_columns"]


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


def split_columns(weight, widths):
    """weight (out, sum(widths)) -> its column blocks, each (out, width), as contiguous
    copies (taking part in autograd): products with them get their weight gradients
    row-major, which join into `weight`'s gradient fast (a strided join of those gradients
    cost more than the copies)."""
    return [w.contiguous() for w in weight.split(list(widths), dim=1)]


def node_linear(x_p, h_c, keyframe, weights, bias):
    """``linear(x_p ⊕ h_c[keyframe], w_x ⊕ w_c, bias)`` without building the concatenation:
    x_p (P, C) per person, h_c (B, D) per keyframe or None, keyframe (P,) in [0, B), weights
    [w_x (out, C), w_c (out, D)] the weight's column blocks ([w_x] without h_c), bias (out,).
    The h_c part's product is taken per keyframe (B rows, fewer than the P persons) and
    gathered to the persons; x_p (the store's features, after dropout) needs no input
    gradient, so its product's backward computes the weight gradient only. The same function
    as the concatenated linear to float rounding (a sum in another order). -> (P, out)"""
    out = torch.nn.functional.linear(x_p, weights[0], bias)  # (P, out)
    if h_c is None:
        return out
    return out + torch.mm(h_c, weights[1].t())[keyframe]  # (P, out)


def _node_dims(x_p, h_c):
    """The widths of the node input's parts x_p [⊕ h_c]: [C] or [C, 2Hs]."""
    return [x_p.shape[1]] + ([] if h_c is None else [h_c.shape[1]])


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

    def forward(self, x_p, h_c, keyframe, num_keyframes):
        # x_p (P, C) per person; h_c (B, 2Hs) per keyframe, or None (no scene RNN); keyframe
        # (P,) in [0, B). The node input is x_p ⊕ h_c[keyframe] (never concatenated).
        if self.project is not None:
            w_node = split_columns(self.project.weight, _node_dims(x_p, h_c))
            h = torch.tanh(node_linear(x_p, h_c, keyframe, w_node, self.project.bias))  # (P, G)
        else:
            h = x_p.new_zeros((x_p.shape[0], self.hidden))  # (P, G)
        if self.iterations == 0:
            return h
        # self.cell's GRU on the input x_p [⊕ h_c] ⊕ m, with the input weights split: the
        # x_p [⊕ h_c] part of the input gates is the same in every iteration (computed once,
        # node_linear), and a zero initial state (h0 "zeros") has m = 0 and hidden gates =
        # bias in the first iteration (no matrix product); the same function as nn.GRUCell
        cell = self.cell
        *w_node, w_m = split_columns(cell.weight_ih, _node_dims(x_p, h_c) + [self.hidden])
        gi_node = node_linear(x_p, h_c, keyframe, w_node, cell.bias_ih)  # (P, 3G)
        # (with J = 1 the m and hidden weights are still used, so that they get a gradient)
        zero_state = self.project is None and self.iterations > 1
        for j in range(self.iterations):
            if j == 0 and zero_state:
                gi, gh = gi_node, cell.bias_hh.expand_as(gi_node)
            else:
                if self.pool_others:
                    m = segment_max_others(h, keyframe, num_keyframes)  # (P, G): max_{v != i} h_v
                    gi = torch.addmm(gi_node, m, w_m.t())  # (P, 3G): input gates of x ⊕ m
                else:
                    m, _ = segment_max(h, keyframe, num_keyframes)  # (B, G): maxpool_v h_v^(j-1)
                    # m is the same for the persons of a keyframe: its product per keyframe
                    gi = gi_node + torch.mm(m, w_m.t())[keyframe]  # (P, 3G): gates of x ⊕ m
                gh = torch.nn.functional.linear(h, cell.weight_hh, cell.bias_hh)  # (P, 3G)
            h = _gru_update(gi, gh, h)  # (P, G)
        return h


def box_geometry(boxes: torch.Tensor) -> torch.Tensor:
    """Pairwise geometry of the boxes of one or more keyframes.

    boxes (..., N, 4) xyxy -> (..., N, N, 4): for the pair (i, j), j's centre offset from i's
    in units of i's width and height, and log of j's width and height over i's (0 on the
    diagonal). Scale-free, so the same relation reads the same near and far from the camera.
    """
    wh = (boxes[..., 2:] - boxes[..., :2]).clamp(min=1e-3)  # (..., N, 2)
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2  # (..., N, 2)
    offset = (centre[..., None, :, :] - centre[..., :, None, :]) / wh[..., :, None, :]
    scale = torch.log(wh[..., None, :, :] / wh[..., :, None, :])  # (..., N, N, 2)
    return torch.cat([offset, scale], dim=-1)  # (..., N, N, 4)


def to_dense(keyframe: torch.Tensor, num_keyframes: int):
    """Where each person sits in a keyframe-major dense layout.

    keyframe (P,) int64 in [0, B) -> slot (P,) int64 (the person's rank among the persons of
    its keyframe, in batch order), N (the most persons in one keyframe); person i is row
    (keyframe[i], slot[i]) of a (B, N, ...) tensor.
    """
    order = torch.argsort(keyframe, stable=True)
    counts = torch.bincount(keyframe, minlength=num_keyframes)  # (B,)
    first = torch.cumsum(counts, 0) - counts  # (B,): first person of each keyframe in `order`
    slot = torch.empty_like(keyframe)
    slot[order] = torch.arange(len(keyframe), device=keyframe.device) - first[keyframe[order]]
    return slot, int(counts.max()) if len(counts) else 0


class AttentionRound(nn.Module):
    """One round of self-attention over the persons of each keyframe (a transformer layer):
    h = LayerNorm(h + MultiHead(h)); h = LayerNorm(h + FFN(h)), the pairwise box geometry
    adding a learned bias per head to the attention scores."""

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.geometry = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, heads))
        self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.ReLU(),
                                 nn.Linear(2 * hidden, hidden))

    def forward(self, h, where, geometry, allowed):
        # h (P, G) person states; where = (keyframe, slot), each (P,): person i is row
        # (keyframe[i], slot[i]) of the dense (B, N) layout; geometry (B, N, N, 4); allowed
        # (B, N, N) bool: may query i attend to key j (both real persons of the keyframe, and
        # j != i for "others"). Only the scores need the dense layout: the projections, the
        # norms and the FFN run on the P real persons, none on padding.
        B, N = allowed.shape[:2]
        P, G = h.shape
        H, d = self.heads, self.head_dim
        qkv = h.new_zeros((B, N, 3 * G))
        qkv[where] = self.qkv(h)  # (B, N, 3G); padding rows stay 0 (and are masked)
        q, k, v = qkv.view(B, N, 3, H, d).permute(2, 0, 3, 1, 4)  # each (B, H, N, d)
        scores = q @ k.transpose(-1, -2) / d ** 0.5  # (B, H, N, N)
        scores = scores + self.geometry(geometry).permute(0, 3, 1, 2)  # + bias (B, H, N, N)
        scores = scores.masked_fill(~allowed[:, None], float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (B, H, N, N)
        # a query with no key to attend to (alone under "others", or a padding row) gets 0
        weights = torch.where(allowed.any(-1)[:, None, :, None], weights, 0.0)
        attended = (weights @ v).transpose(1, 2).reshape(B, N, G)[where]  # (P, G)
        h = self.norm1(h + self.out(attended))
        return self.norm2(h + self.ffn(h))  # (P, G)


class PersonAttention(nn.Module):
    """Relation level beyond the paper: J attention rounds over each keyframe's persons.

    The attention scores of the persons (flat, ragged) are computed in a dense layout per
    keyframe, (B, H, N, N) with N the largest person count of the batch, padding masked out;
    a person's output therefore depends only on the persons of its own keyframe, as with the
    graph RNN.
    """

    def __init__(self, cfg: HeadConfig, context_dim: int):
        super().__init__()
        C, G = cfg.feature_dim, cfg.graph_hidden
        self.attend_self = cfg.graph_pool == "all"
        self.project = nn.Linear(C + context_dim, G)
        self.rounds = nn.ModuleList(AttentionRound(G, cfg.attention_heads)
                                    for _ in range(cfg.graph_iterations))

    def forward(self, x_p, h_c, keyframe, num_keyframes, boxes):
        # x_p (P, C); h_c (B, 2Hs) or None; keyframe (P,) in [0, B); boxes (P, 4) xyxy; the
        # node input is x_p ⊕ h_c[keyframe]
        w_node = split_columns(self.project.weight, _node_dims(x_p, h_c))
        h = torch.tanh(node_linear(x_p, h_c, keyframe, w_node, self.project.bias))  # (P, G)
        if len(h) == 0:
            return h
        slot, N = to_dense(keyframe, num_keyframes)  # (P,), N
        B = num_keyframes
        real = torch.zeros(B, N, dtype=torch.bool, device=h.device)
        real[keyframe, slot] = True  # (B, N)
        dense_boxes = boxes.new_zeros((B, N, 4))
        dense_boxes[keyframe, slot] = boxes  # (B, N, 4); padding rows: zero boxes, masked
        geometry = box_geometry(dense_boxes)  # (B, N, N, 4)
        allowed = real[:, :, None] & real[:, None, :]  # (B, N, N)
        if not self.attend_self:
            allowed = allowed & ~torch.eye(N, dtype=torch.bool, device=h.device)
        for round_ in self.rounds:
            h = round_(h, (keyframe, slot), geometry, allowed)  # (P, G)
        return h


class HGRNNHead(nn.Module):
    """The head. ``forward(batch)`` takes a ``WindowBatch`` (or anything with its fields:
    clip, ctx_feats, ctx_segment, feats, keyframe, and boxes for the attention relation) and
    returns logits (P, K)."""

    def __init__(self, cfg: HeadConfig):
        super().__init__()
        if cfg.feature_dim is None or cfg.num_classes is None:
            raise ValueError("HeadConfig: feature_dim and num_classes must be set to build a model")
        self.cfg = cfg
        if cfg.fusion == "late":
            # one whole head per stream (late fusion); their logits are summed
            if cfg.stream_dims is None:
                raise ValueError("HeadConfig: fusion 'late' needs stream_dims (the width of "
                                 "each feature stream)")
            self.per_stream = nn.ModuleList(
                HGRNNHead(dataclasses.replace(cfg, feature_dim=d, fusion="concat",
                                              stream_dims=None)) for d in cfg.stream_dims)
            return
        self.per_stream = None
        self.scene = SceneRNN(cfg) if cfg.uses_scene else None
        context_dim = 2 * cfg.scene_hidden if cfg.uses_scene else 0
        # the relation level keeps the attribute name `graph` (checkpoints' weight names)
        if cfg.relation == "attention" and cfg.graph_iterations > 0:
            self.graph = PersonAttention(cfg, context_dim)
        else:
            self.graph = GraphRNN(cfg, context_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(cfg.graph_hidden, cfg.num_classes)

    def forward(self, batch) -> torch.Tensor:
        if self.per_stream is not None:
            return self._late_fusion(batch)
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
        else:
            h_c = None  # "graph"/"person" never read the clip features
        # the relation reads x_p ⊕ h_c[keyframe], given as its two parts (node_linear)
        if isinstance(self.graph, PersonAttention):
            h = self.graph(x_p, h_c, keyframe, B, batch.boxes)  # (P, Hg)
        else:
            h = self.graph(x_p, h_c, keyframe, B)  # (P, Hg)
        logits = self.classifier(self.dropout(h))  # (P, K)
        assert logits.shape == (P, self.cfg.num_classes)
        return logits

    def _late_fusion(self, batch) -> torch.Tensor:
        """Sum of the logits (P, K) of each stream's head on its own columns of the batch."""
        if batch.feats.shape[1] != self.cfg.feature_dim:
            raise ValueError(f"batch feature dim {batch.feats.shape[1]} != HeadConfig."
                             f"feature_dim {self.cfg.feature_dim}")
        logits, start = 0, 0
        for head, width in zip(self.per_stream, self.cfg.stream_dims):
            columns = slice(start, start + width)
            part = copy.copy(batch)  # a WindowBatch (or any object with its fields)
            part.clip = batch.clip[..., columns]  # (B, L, width)
            part.ctx_feats = batch.ctx_feats[:, columns]  # (Q, width)
            part.feats = batch.feats[:, columns]  # (P, width)
            logits = logits + head(part)  # (P, K)
            start += width
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
