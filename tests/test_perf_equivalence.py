"""The optimised code paths against the implementations they replaced (kept here as slow
references): the head's graph GRU, scene RNN and relation input (x_p ⊕ h_c[keyframe]) give
the same outputs and gradients to float rounding; the result / annotation CSV writers write the same bytes as formatting
every value with repr / numpy's str did."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn

from hgrnn.data.ava import AvaRows, write_annotations, write_results
from hgrnn.hgrnn_head.model import (HeadConfig, HGRNNHead, PersonAttention, box_geometry,
                                    node_linear, segment_max, segment_max_others, to_dense)
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


def previous_attention(graph, node_in, keyframe, num_keyframes, boxes):
    """PersonAttention.forward before the optimisation: the projection of the concatenated
    node input x_p ⊕ h_c[keyframe]."""
    h = torch.tanh(graph.project(node_in))
    slot, N = to_dense(keyframe, num_keyframes)
    real = torch.zeros(num_keyframes, N, dtype=torch.bool)
    real[keyframe, slot] = True
    dense_boxes = boxes.new_zeros((num_keyframes, N, 4))
    dense_boxes[keyframe, slot] = boxes
    allowed = real[:, :, None] & real[:, None, :]
    if not graph.attend_self:
        allowed = allowed & ~torch.eye(N, dtype=torch.bool)
    for round_ in graph.rounds:
        h = round_(h, (keyframe, slot), box_geometry(dense_boxes), allowed)
    return h


def previous_logits(model, batch):
    """HGRNNHead.forward with the previous scene, graph and relation-input code (the node
    input x_p ⊕ h_c[keyframe] concatenated per person); late fusion: the sum over the
    streams' heads on their columns."""
    if model.per_stream is not None:
        logits, start = 0, 0
        for head, width in zip(model.per_stream, model.cfg.stream_dims):
            part = SimpleNamespace(**vars(batch))
            part.clip = batch.clip[..., start:start + width]
            part.ctx_feats = batch.ctx_feats[:, start:start + width]
            part.feats = batch.feats[:, start:start + width]
            logits = logits + previous_logits(head, part)
            start += width
        return logits
    x_p = model.dropout(batch.feats)
    B = batch.clip.shape[0]
    if model.scene is not None:
        h_c = previous_scene(model.scene, batch.clip, batch.ctx_feats, batch.ctx_segment)
        node_in = torch.cat([x_p, h_c[batch.keyframe]], dim=-1)
    else:
        node_in = x_p
    if isinstance(model.graph, PersonAttention):
        h = previous_attention(model.graph, node_in, batch.keyframe, B, batch.boxes)
    else:
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
    ("hgrnn", {"relation": "attention", "graph_hidden": 8, "attention_heads": 2}),
    ("graph", {"relation": "attention", "graph_hidden": 8, "attention_heads": 2,
               "graph_pool": "others"}),
    ("hgrnn", {"fusion": "late", "stream_dims": (4, 2)}),
    ("graph", {"fusion": "late", "stream_dims": (4, 2), "h0": "project"}),
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
    for scene in [m for m in model.modules() if getattr(m, "empty", None) is not None]:
        nn.init.normal_(scene.empty)
    L = 2 * cfg.window_context + 1
    # keyframes of 1 to 4 persons, some window slots empty
    batch = make_batch([2, 1, 4, 3], L=L, seed=1,
                       ctx_counts=[[s % 3 for s in range(L)] for _ in range(4)])
    for name in ("clip", "ctx_feats", "feats", "boxes"):
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


@pytest.mark.parametrize("with_context", [True, False])
def test_node_linear_is_the_linear_of_the_concatenation(with_context):
    """node_linear(x_p, h_c, keyframe, column blocks of W, b) = linear(x_p ⊕ h_c[keyframe], W,
    b), and the same gradients of W, b and h_c (float64); x_p gets no gradient."""
    g = torch.Generator().manual_seed(3)
    C_, D, out, B = 6, 4, 9, 5
    keyframe = torch.tensor([0, 0, 2, 4, 4, 4, 1, 2])        # keyframe 3 has no person
    x_p = torch.randn(len(keyframe), C_, generator=g, dtype=torch.float64)
    h_c = (torch.randn(B, D, generator=g, dtype=torch.float64).requires_grad_()
           if with_context else None)
    weight = torch.randn(out, C_ + (D if with_context else 0), generator=g,
                         dtype=torch.float64, requires_grad=True)
    bias = torch.randn(out, generator=g, dtype=torch.float64, requires_grad=True)
    up = torch.randn(len(keyframe), out, generator=g, dtype=torch.float64)
    leaves = [t for t in (weight, bias, h_c) if t is not None]

    blocks = weight.split([C_, D] if with_context else [C_], dim=1)
    got = node_linear(x_p, h_c, keyframe, blocks, bias)
    got_grads = torch.autograd.grad((got * up).sum(), leaves)
    node_in = torch.cat([x_p, h_c[keyframe]], dim=1) if with_context else x_p
    want = torch.nn.functional.linear(node_in, weight, bias)
    want_grads = torch.autograd.grad((want * up).sum(), leaves)
    torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)


# ---- the result-CSV writer: the previous formatting -------------------------------------

def reference_csv(rows: AvaRows, last="scores") -> str:
    """The CSV text the writer wrote before it used pyarrow, row by row: Python's repr for
    float64 values (boxes64 / scores64), numpy's str for float32 ones, the timestamp
    zero-padded to 4 digits; then the 2-column empty keyframes (write_annotations)."""
    def text(values, k):
        v = values[k]
        return repr(float(v)) if values.dtype == np.float64 else str(np.float32(v))

    boxes = rows.boxes64 if rows.boxes64 is not None else rows.boxes
    if last == "person_ids":
        last_values = rows.person_ids
    elif rows.scores64 is not None:
        last_values = rows.scores64
    elif rows.scores is not None:
        last_values = rows.scores
    else:
        last_values = np.ones(len(rows), np.float32)
    lines = []
    for k in range(len(rows)):
        fields = [str(rows.video_ids[k]), f"{int(rows.timestamps[k]):04d}",
                  *[text(boxes[:, c], k) for c in range(4)], str(int(rows.action_ids[k]))]
        if last_values is not None:
            fields.append(str(int(last_values[k])) if last_values.dtype.kind in "iu"
                          else text(last_values, k))
        lines.append(",".join(fields) + "\n")
    if last == "person_ids" and rows.empty_video_ids is not None:
        lines += [f"{v},{int(t):04d}\n" for v, t in zip(rows.empty_video_ids,
                                                         rows.empty_timestamps)]
    return "".join(lines)


def tricky_floats(rng, n, dtype):
    """Values where the notations of repr / numpy's str and pyarrow's cast part: scores near
    0 and 1, the 1e-4 switch to scientific notation, integers, many significant digits,
    subnormals, large values, NaN and infinities, and random values of every magnitude."""
    f = np.finfo(dtype)
    special = np.array([
        0.0, -0.0, 1.0, -1.0, 2.0, 100.0, 0.5, 0.1, 1 / 3, 2 / 3, 0.16217755,
        1e-4, 1e-5, 1e-6, 1e-7, 1.5e-7, 9.9e-7, 1.2345678e-5, 99999.99, 1e5, 123456.7, 1e6,
        1e16, 1e20, f.tiny, f.smallest_subnormal, f.max, np.nan, np.inf, -np.inf],
        np.float64).astype(dtype)
    edges = np.concatenate([
        np.nextafter(np.array([1e-4, 1e-5, 1e-6, 1e-7, 1e5, 1.0, 0.0], dtype),
                     np.array(direction, dtype))
        for direction in (-np.inf, np.inf)])  # one ulp either side of the switches
    magnitudes = (10.0 ** rng.uniform(np.log10(f.smallest_subnormal), 7, n)).astype(dtype)
    unit = rng.random(n).astype(dtype)  # scores and coordinates: [0, 1)
    near_one = (1 - rng.random(n) * 1e-6).astype(dtype)
    near_zero = (rng.random(n) * 1e-4).astype(dtype)
    values = np.concatenate([special, edges, magnitudes, unit, near_one, near_zero])
    return values * rng.choice(np.array([1, 1, 1, -1], dtype), len(values))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_writer_matches_previous_formatting(tmp_path, monkeypatch, dtype):
    import hgrnn.data.ava as ava

    monkeypatch.setattr(ava, "_WRITE_CHUNK_ROWS", 1000)   # several chunks, runs across them
    rng = np.random.default_rng(0)
    scores = tricky_floats(rng, 2000, dtype)
    n = len(scores)
    # boxes repeat over runs of rows (one box per action, as AVA files list them), some runs
    # made of tricky values too
    run = np.repeat(np.arange(n), rng.integers(1, 6, n))[:n]
    box_values = np.resize(tricky_floats(rng, 2000, dtype), (n, 4))
    boxes = np.where(rng.random((n, 1)) < 0.5, rng.random((n, 4)).astype(dtype), box_values)[run]
    video = np.array(["vid000", "-5KQ66BBWC4", "", "ünï,code"])[np.minimum(run % 7, 3)]
    ts = rng.choice([0, 5, 902, 1798, 9999, 10000, 123456, -3], n)[run]
    acts = rng.integers(-1, 81, n)
    if dtype == np.float32:
        rows = AvaRows.from_arrays(video, ts, boxes, acts, scores=scores)
    else:  # rows read from a file carry the float64 values they were parsed from
        rows = AvaRows(video, ts, boxes.astype(np.float32), acts, None,
                       scores.astype(np.float32), {}, boxes64=boxes.astype(np.float64),
                       scores64=scores)
    write_results(tmp_path / "r.csv", rows)
    got = (tmp_path / "r.csv").read_bytes()
    want = reference_csv(rows).encode()
    assert got == want
    # rows without scores (a person-box file): score 1
    plain = AvaRows.from_arrays(video, ts, boxes, acts)
    write_results(tmp_path / "p.csv", plain)
    assert (tmp_path / "p.csv").read_bytes() == reference_csv(plain).encode()


def test_writer_ground_truth_and_empty(tmp_path):
    rng = np.random.default_rng(1)
    n = 300
    boxes = rng.random((n, 4)).astype(np.float32)
    boxes[::3] = np.float32(1e-5)
    base = AvaRows.from_arrays(rng.choice(["a", "b"], n), rng.integers(900, 1800, n), boxes,
                               rng.integers(1, 81, n), person_ids=rng.integers(-1, 40, n))
    gt = AvaRows(base.video_ids, base.timestamps, base.boxes, base.action_ids, base.person_ids,
                 None, {}, empty_video_ids=np.array(["c", "d"]),
                 empty_timestamps=np.array([902, 7]))
    write_annotations(tmp_path / "g.csv", gt)
    assert (tmp_path / "g.csv").read_bytes() == reference_csv(gt, "person_ids").encode()
    no_pid = AvaRows.from_arrays(base.video_ids, base.timestamps, boxes, base.action_ids)
    write_annotations(tmp_path / "g7.csv", no_pid)                     # 7 columns
    assert (tmp_path / "g7.csv").read_bytes() == reference_csv(no_pid, "person_ids").encode()
    # no rows at all: an empty file
    empty = AvaRows.from_arrays([], [], np.zeros((0, 4)), [], scores=[])
    write_results(tmp_path / "e.csv", empty)
    assert (tmp_path / "e.csv").read_bytes() == b""


# ---- predict_store: the previous row assembly -------------------------------------------

def previous_predict_store(model, fs, nms_iou, batch_keyframes, min_score=0.0):
    """predict_store before it gathered the result columns once at the end: every batch's
    rows copied out (video index, timestamp, box, action, score), concatenated."""
    from hgrnn.data.windows import ContextWindows
    from hgrnn.hgrnn_head.infer import class_nms

    windows = ContextWindows(fs, l=model.cfg.window_context, pad=model.cfg.window_pad)
    action_ids = torch.tensor(fs.label_map.ids, dtype=torch.int64)
    model.eval()
    parts = {"video": [], "ts": [], "boxes": [], "action": [], "score": []}
    video_names = []
    with torch.no_grad():
        for s in range(0, len(windows), batch_keyframes):
            batch = windows.batch(np.arange(s, min(s + batch_keyframes, len(windows))))
            scores = torch.sigmoid(model(batch)) * batch.scores[:, None]
            keep = class_nms(batch.boxes, scores, batch.keyframe, nms_iou)
            if min_score > 0:
                keep &= scores >= min_score
            person, cls = keep.nonzero(as_tuple=True)
            kf = batch.keyframe[person]
            base = len(video_names)
            video_names += list(batch.video_ids)
            parts["video"].append((kf + base).numpy())
            parts["ts"].append(batch.timestamps[kf].numpy())
            parts["boxes"].append(batch.boxes[person].numpy())
            parts["action"].append(action_ids[cls].numpy())
            parts["score"].append(scores[person, cls].numpy())
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    return AvaRows.from_arrays(np.asarray(video_names, dtype=str)[cat["video"]], cat["ts"],
                               cat["boxes"], cat["action"], scores=cat["score"])


@pytest.mark.parametrize("nms_iou,batch_keyframes,min_score", [
    (0.5, 4, 0.0), (1.0, 7, 0.0), (0.3, 1000, 0.4)])
def test_predict_store_matches_previous_assembly(tmp_path, nms_iou, batch_keyframes,
                                                 min_score):
    from hgrnn.data.windows import FeatureStore
    from hgrnn.hgrnn_head.infer import predict_store
    from test_train import make_store

    path = make_store(tmp_path / "s.h5", videos=3, keyframes=15, seed=4, max_persons=5)
    fs = FeatureStore(path, "det")
    torch.manual_seed(0)
    model = HGRNNHead(HeadConfig(feature_dim=fs.feature_dim, num_classes=len(fs.label_map),
                                 context=1, scene_hidden=6, graph_hidden=10))
    got = predict_store(model, fs, nms_iou=nms_iou, batch_keyframes=batch_keyframes,
                        min_score=min_score)
    want = previous_predict_store(model, fs, nms_iou, batch_keyframes, min_score)
    assert len(got) == len(want) > 0
    for name in ("video_ids", "timestamps", "boxes", "action_ids", "scores"):
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
