"""The optimised code paths against the implementations they replaced (kept here as slow
references): the head's graph GRU and scene RNN give the same outputs and gradients to
float rounding."""

import pytest
import torch
import torch.nn as nn

from hgrnn.hgrnn_head.model import HeadConfig, HGRNNHead, segment_max, segment_max_others
from test_model import C, K, make_batch  # noqa: E402  (tests/ is on sys.path under pytest)


# ---- the head: the previous implementation ----------------------------------------------

def previous_scene(scene, clip, ctx_feats, ctx_segment):
    """SceneRNN.forward before the optimisation: two nn.GRU calls, batch-first."""
    B, L, C_ = clip.shape
    l = L // 2
    pooled, nonempty = segment_max(ctx_feats, ctx_segment, B * L)
    if scene.empty is not None:
        pooled = torch.where(nonempty[:, None], pooled, scene.empty)
    x = torch.cat([clip, pooled.view(B, L, C_)], dim=-1)
    _, h_fwd = scene.forward_gru(x[:, : l + 1])
    _, h_bwd = scene.backward_gru(x[:, l:].flip(1))
    return torch.cat([h_fwd[0], h_bwd[0]], dim=-1)


def previous_graph(graph, node_in, keyframe, num_keyframes):
    """GraphRNN.forward before the optimisation: nn.GRUCell on x ⊕ m every iteration."""
    if graph.project is not None:
        h = torch.tanh(graph.project(node_in))
    else:
        h = node_in.new_zeros((node_in.shape[0], graph.hidden))
    for _ in range(graph.iterations):
        if graph.pool_others:
            m = segment_max_others(h, keyframe, num_keyframes)
        else:
            m, _ = segment_max(h, keyframe, num_keyframes)
            m = m[keyframe]
        h = graph.cell(torch.cat([node_in, m], dim=-1), h)
    return h


def previous_logits(model, batch):
    """HGRNNHead.forward with the previous scene and graph code."""
    x_p = model.dropout(batch.feats)
    B = batch.clip.shape[0]
    if model.scene is not None:
        h_c = previous_scene(model.scene, batch.clip, batch.ctx_feats, batch.ctx_segment)
        node_in = torch.cat([x_p, h_c[batch.keyframe]], dim=-1)
    else:
        node_in = x_p
    h = previous_graph(model.graph, node_in, batch.keyframe, B)
    return model.classifier(model.dropout(h))


def outputs_and_gradients(model, batch, forward):
    model.zero_grad(set_to_none=True)
    logits = forward(batch)
    # a loss that weighs every logit differently, so that every gradient path counts
    weights = torch.linspace(-1, 1, logits.numel(), dtype=logits.dtype).view_as(logits)
    (logits * weights).sum().backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                             if p.grad is not None}


CASES = [  # (variant, HeadConfig fields)
    ("hgrnn", {}),                                           # the defaults: l = 3, J = 2
    ("hgrnn", {"iterations": 1}),
    ("hgrnn", {"iterations": 3, "graph_pool": "others"}),
    ("hgrnn", {"h0": "project", "empty_pool": "learned"}),
    ("hgrnn", {"context": 0}),
    ("hgrnn", {"context": 1, "iterations": 0}),
    ("graph", {"iterations": 2}),
    ("graph", {"iterations": 2, "h0": "project", "graph_pool": "others"}),
    ("scene", {}),
    ("person", {}),
]


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("variant,fields", CASES)
def test_head_matches_previous_implementation(variant, fields, dtype, tol):
    """Same logits and the same gradient of every parameter as the previous code, to float
    rounding (float64: ~1e-15; float32: the default training precision)."""
    torch.manual_seed(0)
    cfg = HeadConfig(feature_dim=C, num_classes=K, variant=variant,
                     **{"scene_hidden": 5, "graph_hidden": 7, **fields})
    model = HGRNNHead(cfg).to(dtype).train()
    if model.scene is not None and model.scene.empty is not None:
        nn.init.normal_(model.scene.empty)
    L = 2 * cfg.window_context + 1
    # keyframes of 1 to 4 persons, some window slots empty
    batch = make_batch([2, 1, 4, 3], L=L, seed=1,
                       ctx_counts=[[s % 3 for s in range(L)] for _ in range(4)])
    for name in ("clip", "ctx_feats", "feats"):
        setattr(batch, name, getattr(batch, name).to(dtype))
    got, got_grads = outputs_and_gradients(model, batch, model)
    want, want_grads = outputs_and_gradients(model, batch, lambda b: previous_logits(model, b))
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)
    assert got_grads.keys() == want_grads.keys()
    for name in want_grads:
        torch.testing.assert_close(got_grads[name], want_grads[name], rtol=tol, atol=tol,
                                   msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_default_sizes_match_previous_implementation(dtype, tol):
    """The default sizes (C = 256, Hs = 128, Hg = 256, l = 3, J = 2) on a batch shaped like
    the paper's schedule (50 keyframes). Tolerance relative to each tensor's largest value:
    a float32 sum over ~150 persons rounds differently when its terms are grouped otherwise
    (an entry that nearly cancels to 0 can differ by 10% of itself)."""
    from types import SimpleNamespace

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(2)
    C_, B, L = 256, 50, 7
    model = HGRNNHead(HeadConfig(feature_dim=C_, num_classes=60)).to(dtype).train()
    counts = torch.randint(1, 6, (B,), generator=g)                 # persons per keyframe
    ctx_counts = torch.randint(0, 6, (B * L,), generator=g)
    ctx_counts.view(B, L)[:, L // 2] = counts
    batch = SimpleNamespace(
        clip=torch.randn(B, L, C_, generator=g, dtype=dtype),
        ctx_feats=torch.randn(int(ctx_counts.sum()), C_, generator=g, dtype=dtype),
        ctx_segment=torch.repeat_interleave(torch.arange(B * L), ctx_counts),
        feats=torch.randn(int(counts.sum()), C_, generator=g, dtype=dtype),
        keyframe=torch.repeat_interleave(torch.arange(B), counts))
    got, got_grads = outputs_and_gradients(model, batch, model)
    want, want_grads = outputs_and_gradients(model, batch, lambda b: previous_logits(model, b))
    assert (got - want).abs().max() <= tol * want.abs().max()
    assert got_grads.keys() == want_grads.keys()
    for name, w in want_grads.items():
        assert (got_grads[name] - w).abs().max() <= tol * w.abs().max(), name
