"""The HGRNN head on hand-built WindowBatch-shaped batches (fields as in docs/contracts.md),
checked against a slow per-keyframe, per-person reference of METHOD.md's equations."""

from types import SimpleNamespace

import pytest
import torch

from hgrnn.hgrnn_head.model import (GRAPH_POOLS, VARIANTS, HeadConfig, HGRNNHead, segment_max,
                                    segment_max_others)

C, K = 6, 4



def make_batch(persons, L=3, seed=0, ctx_counts=None):
    """persons: persons per centre keyframe (ragged). Window slot s of keyframe b holds
    ctx_counts[b][s] persons (random), except the centre slot, which holds the centre persons."""
    g = torch.Generator().manual_seed(seed)
    B = len(persons)
    clip = torch.randn(B, L, C, generator=g)
    feats, keyframe, ctx_feats, ctx_segment = [], [], [], []
    for b, n in enumerate(persons):
        centre = torch.randn(n, C, generator=g)
        feats.append(centre)
        keyframe += [b] * n
        for s in range(L):
            rows = centre if s == L // 2 else torch.randn(
                ctx_counts[b][s] if ctx_counts else 2, C, generator=g)
            ctx_feats.append(rows)
            ctx_segment += [b * L + s] * len(rows)
    P = sum(persons)
    return SimpleNamespace(
        clip=clip, window_mask=torch.ones(B, L, dtype=torch.bool),
        ctx_feats=torch.cat(ctx_feats), ctx_segment=torch.tensor(ctx_segment, dtype=torch.int64),
        feats=torch.cat(feats), keyframe=torch.tensor(keyframe, dtype=torch.int64),
        boxes=torch.rand(P, 4, generator=g), scores=torch.ones(P),
        labels=(torch.rand(P, K, generator=g) < 0.3).float(),
        video_ids=[f"v{b}" for b in range(B)], timestamps=torch.arange(B) + 902)


def make_model(variant="hgrnn", seed=0, **kw):
    torch.manual_seed(seed)
    kw = {"context": 1, "iterations": 2, "scene_hidden": 5, "graph_hidden": 7, **kw}
    return HGRNNHead(HeadConfig(feature_dim=C, num_classes=K, variant=variant, **kw)).eval()


def batch_for(variant, persons, **kw):
    return make_batch(persons, L=3 if variant in ("hgrnn", "scene") else 1, **kw)


# ---- slow reference ---------------------------------------------------------------------

def gru_step(x, h, w_ih, w_hh, b_ih, b_hh):
    """PyTorch's GRU equations for one vector, gates stacked [r, z, n]."""
    H = h.shape[0]
    gi, gh = w_ih @ x + b_ih, w_hh @ h + b_hh
    r = torch.sigmoid(gi[:H] + gh[:H])
    z = torch.sigmoid(gi[H:2 * H] + gh[H:2 * H])
    n = torch.tanh(gi[2 * H:] + r * gh[2 * H:])
    return (1 - z) * n + z * h


def reference_logits(model, batch):
    cfg = model.cfg
    B, L, _ = batch.clip.shape
    out = []
    for b in range(B):
        h_c = None
        if model.scene is not None:
            xs = []
            for s in range(L):
                rows = [batch.ctx_feats[q] for q in range(len(batch.ctx_segment))
                        if batch.ctx_segment[q] == b * L + s]
                if rows:
                    x_P = torch.stack(rows).max(dim=0).values
                elif cfg.empty_pool == "learned":
                    x_P = model.scene.empty
                else:
                    x_P = torch.zeros(C)
                xs.append(torch.cat([batch.clip[b, s], x_P]))
            Hs, f, r = cfg.scene_hidden, model.scene.forward_gru, model.scene.backward_gru
            fwd = torch.zeros(Hs)
            for s in range(L // 2 + 1):
                fwd = gru_step(xs[s], fwd, f.weight_ih_l0, f.weight_hh_l0, f.bias_ih_l0, f.bias_hh_l0)
            bwd = torch.zeros(Hs)
            for s in reversed(range(L // 2, L)):
                bwd = gru_step(xs[s], bwd, r.weight_ih_l0, r.weight_hh_l0, r.bias_ih_l0, r.bias_hh_l0)
            h_c = torch.cat([fwd, bwd])
        people = [i for i in range(len(batch.keyframe)) if batch.keyframe[i] == b]
        node_in = [batch.feats[i] if h_c is None else torch.cat([batch.feats[i], h_c]) for i in people]
        g = model.graph
        if g.project is not None:
            h = [torch.tanh(g.project.weight @ v + g.project.bias) for v in node_in]
        else:
            h = [torch.zeros(cfg.graph_hidden) for _ in people]
        for _ in range(g.iterations):
            if cfg.graph_pool == "others":   # max over every OTHER person, 0 when alone
                m = [torch.stack([hv for k, hv in enumerate(h) if k != i]).max(dim=0).values
                     if len(h) > 1 else torch.zeros(cfg.graph_hidden) for i in range(len(h))]
            else:                            # max over all persons, the person included
                m = [torch.stack(h).max(dim=0).values] * len(h)
            h = [gru_step(torch.cat([v, mv]), hv, g.cell.weight_ih, g.cell.weight_hh,
                          g.cell.bias_ih, g.cell.bias_hh) for v, mv, hv in zip(node_in, m, h)]
        out += [model.classifier.weight @ hv + model.classifier.bias for hv in h]
    return torch.stack(out)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("h0,empty_pool", [("zeros", "zeros"), ("project", "learned")])
def test_matches_slow_reference(variant, h0, empty_pool):
    model = make_model(variant, h0=h0, empty_pool=empty_pool)
    if empty_pool == "learned" and model.scene is not None:
        torch.nn.init.normal_(model.scene.empty)
    batch = batch_for(variant, [2, 1, 3], ctx_counts=[[0, 0, 0], [1, 0, 2], [3, 0, 0]])
    got = model(batch)
    assert got.shape == (6, K)
    torch.testing.assert_close(got, reference_logits(model, batch), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", ["hgrnn", "graph"])
@pytest.mark.parametrize("h0", ["zeros", "project"])
def test_graph_pool_others_matches_slow_reference(variant, h0):
    model = make_model(variant, h0=h0, graph_pool="others")
    batch = batch_for(variant, [2, 1, 3, 4])
    got = model(batch)
    torch.testing.assert_close(got, reference_logits(model, batch), rtol=1e-5, atol=1e-5)
    # a person alone in its keyframe gets m = 0, whatever the others' states
    alone = make_model(variant, h0=h0, graph_pool="all")
    alone.load_state_dict(model.state_dict())
    if h0 == "project":    # "all" lets the lone person see itself: outputs differ
        assert not torch.allclose(alone(batch)[2], got[2])


def test_segment_max_others_against_brute_force():
    g = torch.Generator().manual_seed(3)
    values = torch.randint(-3, 4, (40, 5), generator=g).float()    # many ties
    segment = torch.randint(0, 9, (40,), generator=g)               # some empty, some alone
    got = segment_max_others(values, segment, 10)
    for i in range(40):
        others = [j for j in range(40) if segment[j] == segment[i] and j != i]
        want = values[others].max(dim=0).values if others else torch.zeros(5)
        torch.testing.assert_close(got[i], want)
    # differentiable, finite gradients also where every row of a segment ties
    x = torch.tensor([[1.0, 2.0], [1.0, 0.0], [5.0, 5.0]], requires_grad=True)
    segment_max_others(x, torch.tensor([0, 0, 1]), 2).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_scene_rnn_is_a_bidirectional_gru_read_at_the_centre():
    """The two half-length GRUs equal nn.GRU(bidirectional=True) indexed at slot l."""
    model = make_model("hgrnn", context=2)
    scene = model.scene
    bi = torch.nn.GRU(2 * C, 5, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(bi, f"{name}_l0").copy_(getattr(scene.forward_gru, f"{name}_l0"))
            getattr(bi, f"{name}_l0_reverse").copy_(getattr(scene.backward_gru, f"{name}_l0"))
    batch = make_batch([2, 1, 3], L=5)
    B, L = 3, 5
    pooled, _ = segment_max(batch.ctx_feats, batch.ctx_segment, B * L)
    x = torch.cat([batch.clip, pooled.view(B, L, C)], dim=-1)
    torch.testing.assert_close(scene(batch.clip, batch.ctx_feats, batch.ctx_segment),
                               bi(x)[0][:, L // 2])


def test_segment_max():
    values = torch.tensor([[1.0, -5.0], [3.0, -7.0], [-2.0, -1.0]])
    pooled, nonempty = segment_max(values, torch.tensor([2, 2, 0]), 4)
    torch.testing.assert_close(pooled, torch.tensor([[-2.0, -1.0], [0, 0], [3.0, -5.0], [0, 0]]))
    assert nonempty.tolist() == [True, False, True, False]


@pytest.mark.parametrize("variant", VARIANTS)
def test_ragged_shapes_and_sigmoid(variant):
    model = make_model(variant)
    batch = batch_for(variant, [1, 4, 2, 1])
    logits = model(batch)
    assert logits.shape == (8, K) and logits.dtype == torch.float32
    probs = model.predict(batch)
    assert ((probs > 0) & (probs < 1)).all()
    torch.testing.assert_close(probs, torch.sigmoid(logits))


@pytest.mark.parametrize("variant", VARIANTS)
def test_permuting_persons_of_a_keyframe_permutes_outputs_only(variant):
    model = make_model(variant)
    batch = batch_for(variant, [3, 4])
    base = model(batch)
    perm = torch.tensor([0, 1, 2, 5, 3, 6, 4])  # shuffle the persons of keyframe 1
    shuffled = SimpleNamespace(**vars(batch))
    shuffled.feats = batch.feats[perm]
    shuffled.keyframe = batch.keyframe[perm]
    q = torch.randperm(len(batch.ctx_segment), generator=torch.Generator().manual_seed(1))
    shuffled.ctx_feats, shuffled.ctx_segment = batch.ctx_feats[q], batch.ctx_segment[q]
    torch.testing.assert_close(model(shuffled), base[perm])


@pytest.mark.parametrize("variant", VARIANTS)
def test_other_keyframes_do_not_matter(variant):
    model = make_model(variant)
    a = batch_for(variant, [2, 3], seed=0)
    b = batch_for(variant, [2, 5], seed=1)
    # keyframe 0 of b := keyframe 0 of a (clip, window persons, centre persons)
    L = a.clip.shape[1]
    mixed = SimpleNamespace(**vars(b))
    mixed.clip = b.clip.clone()
    mixed.clip[0] = a.clip[0]
    keep_a, keep_b = a.ctx_segment < L, b.ctx_segment >= L
    mixed.ctx_feats = torch.cat([a.ctx_feats[keep_a], b.ctx_feats[keep_b]])
    mixed.ctx_segment = torch.cat([a.ctx_segment[keep_a], b.ctx_segment[keep_b]])
    mixed.feats = torch.cat([a.feats[:2], b.feats[2:]])
    torch.testing.assert_close(model(mixed)[:2], model(a)[:2])
    assert not torch.allclose(model(mixed)[2:5], model(a)[2:5])


@pytest.mark.parametrize("variant", VARIANTS)
def test_padding_the_batch_with_keyframes_changes_nothing(variant):
    model = make_model(variant)
    small = batch_for(variant, [2, 1])
    extra = batch_for(variant, [3, 2, 1], seed=5)
    L = small.clip.shape[1]
    big = SimpleNamespace(**vars(small))
    big.clip = torch.cat([small.clip, extra.clip])
    big.ctx_feats = torch.cat([small.ctx_feats, extra.ctx_feats])
    big.ctx_segment = torch.cat([small.ctx_segment, extra.ctx_segment + 2 * L])
    big.feats = torch.cat([small.feats, extra.feats])
    big.keyframe = torch.cat([small.keyframe, extra.keyframe + 2])
    torch.testing.assert_close(model(big)[:3], model(small))


def test_graph_and_person_ignore_clip_features():
    for variant in ("graph", "person"):
        model = make_model(variant)
        batch = batch_for(variant, [2, 3])
        changed = SimpleNamespace(**vars(batch))
        changed.clip = torch.randn_like(batch.clip) * 10
        changed.ctx_feats = torch.randn_like(batch.ctx_feats) * 10
        torch.testing.assert_close(model(changed), model(batch))
    model = make_model("hgrnn")  # ... while the full model does read them
    batch = batch_for("hgrnn", [2, 3])
    changed = SimpleNamespace(**vars(batch))
    changed.clip = torch.randn_like(batch.clip)
    assert not torch.allclose(model(changed), model(batch))


def test_person_variant_ignores_other_persons():
    model = make_model("person")
    batch = batch_for("person", [3])
    single = batch_for("person", [1])
    single.feats = batch.feats[:1]
    torch.testing.assert_close(model(single), model(batch)[:1])


@pytest.mark.parametrize("variant,h0,empty_pool", [
    ("hgrnn", "zeros", "learned"), ("hgrnn", "project", "zeros"), ("scene", "zeros", "learned"),
    ("graph", "zeros", "zeros"), ("graph", "project", "zeros"), ("person", "zeros", "zeros")])
def test_gradients_reach_every_parameter(variant, h0, empty_pool):
    model = make_model(variant, h0=h0, empty_pool=empty_pool, dropout=0.1).train()
    # keyframe 1's first window slot has nobody, so a learned empty vector is used
    batch = batch_for(variant, [2, 3], ctx_counts=[[1, 0, 1], [0, 0, 2]])
    model(batch).square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_config_validation_and_round_trip():
    with pytest.raises(ValueError, match="--model"):
        HeadConfig(variant="nope")
    with pytest.raises(ValueError, match="--h0"):
        HeadConfig(h0="random")
    with pytest.raises(ValueError, match="graph.pool"):
        HeadConfig(graph_pool="mean")
    with pytest.raises(ValueError, match="feature_dim and num_classes"):
        HGRNNHead(HeadConfig())
    cfg = HeadConfig(feature_dim=8, num_classes=3, variant="graph", context=2)
    assert HeadConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.window_context == 0 and cfg.graph_iterations == 2
    assert HeadConfig(variant="scene").graph_iterations == 0
    with pytest.raises(ValueError, match="unknown"):
        HeadConfig.from_dict({"hidden": 3})


def test_wrong_window_length_is_an_error():
    model = make_model("hgrnn", context=2)
    with pytest.raises(ValueError, match="L=3"):
        model(make_batch([1], L=3))


# ---- the attention relation and late fusion ------------------------------------------------

def reference_attention_logits(model, batch):
    """Slow reference of relation="attention": keyframe by keyframe, query by query, key by
    key, each round's formulas written out (scene RNN and classifier as the model's)."""
    cfg, att = model.cfg, model.graph
    B = batch.clip.shape[0]
    h_c = (model.scene(batch.clip, batch.ctx_feats, batch.ctx_segment)
           if model.scene is not None else None)
    out = {}
    for b in range(B):
        people = [i for i in range(len(batch.keyframe)) if batch.keyframe[i] == b]
        h = []
        for i in people:
            v = batch.feats[i] if h_c is None else torch.cat([batch.feats[i], h_c[b]])
            h.append(torch.tanh(att.project.weight @ v + att.project.bias))
        for rnd in att.rounds:
            H, d = rnd.heads, rnd.head_dim
            new = []
            for a, i in enumerate(people):
                q = (rnd.qkv.weight @ h[a] + rnd.qkv.bias)[:cfg.graph_hidden].view(H, d)
                keys = [(c, j) for c, j in enumerate(people)
                        if cfg.graph_pool == "all" or j != i]
                attended = torch.zeros(H, d)
                if keys:
                    bi, scores, values = batch.boxes[i], [], []
                    for c, j in keys:
                        kv = rnd.qkv.weight @ h[c] + rnd.qkv.bias
                        k = kv[cfg.graph_hidden:2 * cfg.graph_hidden].view(H, d)
                        values.append(kv[2 * cfg.graph_hidden:].view(H, d))
                        bj = batch.boxes[j]
                        wi, hi = (bi[2] - bi[0]).clamp(min=1e-3), (bi[3] - bi[1]).clamp(min=1e-3)
                        wj, hj = (bj[2] - bj[0]).clamp(min=1e-3), (bj[3] - bj[1]).clamp(min=1e-3)
                        geo = torch.stack([((bj[0] + bj[2]) - (bi[0] + bi[2])) / 2 / wi,
                                           ((bj[1] + bj[3]) - (bi[1] + bi[3])) / 2 / hi,
                                           torch.log(wj / wi), torch.log(hj / hi)])
                        bias = rnd.geometry(geo)  # (H,)
                        scores.append((q * k).sum(-1) / d ** 0.5 + bias)
                    w = torch.softmax(torch.stack(scores), dim=0)  # (keys, H)
                    attended = sum(w[n][:, None] * values[n] for n in range(len(keys)))
                x = rnd.norm1(h[a] + rnd.out(attended.reshape(-1)))
                new.append(rnd.norm2(x + rnd.ffn(x)))
            h = new
        for a, i in enumerate(people):
            out[i] = model.classifier.weight @ h[a] + model.classifier.bias
    return torch.stack([out[i] for i in range(len(batch.keyframe))])


def attention_model(variant="hgrnn", **kw):
    return make_model(variant, relation="attention", graph_hidden=8, attention_heads=2, **kw)


@pytest.mark.parametrize("variant", ["hgrnn", "graph"])
@pytest.mark.parametrize("graph_pool", GRAPH_POOLS)
@pytest.mark.parametrize("iterations", [1, 2])
def test_attention_matches_slow_reference(variant, graph_pool, iterations):
    model = attention_model(variant, graph_pool=graph_pool, iterations=iterations)
    # persons not in keyframe order, a keyframe with one person, one with five
    batch = batch_for(variant, [2, 1, 5, 3])
    perm = torch.randperm(11, generator=torch.Generator().manual_seed(2))
    batch.feats, batch.keyframe, batch.boxes = batch.feats[perm], batch.keyframe[perm], \
        batch.boxes[perm]
    got = model(batch)
    torch.testing.assert_close(got, reference_attention_logits(model, batch), rtol=1e-4,
                               atol=1e-5)


def test_attention_reads_other_persons_and_their_geometry_only_within_the_keyframe():
    model = attention_model("graph", graph_pool="others")
    batch = batch_for("graph", [3, 2])
    base = model(batch)
    moved = SimpleNamespace(**vars(batch))
    moved.boxes = batch.boxes.clone()
    moved.boxes[1] = torch.tensor([0.1, 0.1, 0.9, 0.9])   # person 1 moves: its keyframe changes
    got = model(moved)
    assert not torch.allclose(got[[0, 2]], base[[0, 2]])
    torch.testing.assert_close(got[3:], base[3:])
    # alone under "others": no key, the attention adds 0 whatever its own state
    alone = batch_for("graph", [1])
    state = torch.tanh(model.graph.project(alone.feats))
    x = model.graph.rounds[0].norm1(state + model.graph.rounds[0].out(torch.zeros_like(state)))
    x = model.graph.rounds[0].norm2(x + model.graph.rounds[0].ffn(x))
    x = model.graph.rounds[1].norm1(x + model.graph.rounds[1].out(torch.zeros_like(x)))
    x = model.graph.rounds[1].norm2(x + model.graph.rounds[1].ffn(x))
    torch.testing.assert_close(model(alone), model.classifier(x))


@pytest.mark.parametrize("variant", ["hgrnn", "graph"])
def test_attention_is_permutation_equivariant_and_batch_independent(variant):
    model = attention_model(variant)
    batch = batch_for(variant, [3, 4])
    base = model(batch)
    perm = torch.tensor([0, 1, 2, 5, 3, 6, 4])
    shuffled = SimpleNamespace(**vars(batch))
    shuffled.feats, shuffled.keyframe = batch.feats[perm], batch.keyframe[perm]
    shuffled.boxes = batch.boxes[perm]
    torch.testing.assert_close(model(shuffled), base[perm])
    extra = batch_for(variant, [6, 1], seed=5)           # a keyframe with more persons
    L = batch.clip.shape[1]
    big = SimpleNamespace(**vars(batch))
    big.clip = torch.cat([batch.clip, extra.clip])
    big.ctx_feats = torch.cat([batch.ctx_feats, extra.ctx_feats])
    big.ctx_segment = torch.cat([batch.ctx_segment, extra.ctx_segment + 2 * L])
    big.feats = torch.cat([batch.feats, extra.feats])
    big.keyframe = torch.cat([batch.keyframe, extra.keyframe + 2])
    big.boxes = torch.cat([batch.boxes, extra.boxes])
    torch.testing.assert_close(model(big)[:7], base)


def test_attention_gradients_reach_every_parameter():
    model = attention_model("hgrnn", dropout=0.1).train()
    batch = batch_for("hgrnn", [2, 3])
    model(batch).square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_gru_relation_is_the_default_and_keeps_the_weight_names():
    """relation="gru" builds exactly the paper's modules: a checkpoint's weights (and a
    seed's initialisation) are those of a head built before the option existed."""
    assert HeadConfig().relation == "gru" and HeadConfig().fusion == "concat"
    names = [n for n, _ in make_model("hgrnn").named_parameters()]
    assert names == ["scene.forward_gru.weight_ih_l0", "scene.forward_gru.weight_hh_l0",
                     "scene.forward_gru.bias_ih_l0", "scene.forward_gru.bias_hh_l0",
                     "scene.backward_gru.weight_ih_l0", "scene.backward_gru.weight_hh_l0",
                     "scene.backward_gru.bias_ih_l0", "scene.backward_gru.bias_hh_l0",
                     "graph.cell.weight_ih", "graph.cell.weight_hh", "graph.cell.bias_ih",
                     "graph.cell.bias_hh", "classifier.weight", "classifier.bias"]
    # variants without graph iterations ignore the relation: the same projection readout
    a = make_model("scene", seed=3)
    b = make_model("scene", seed=3, relation="attention", graph_hidden=8, attention_heads=2)
    assert [n for n, _ in b.named_parameters()] == [n for n, _ in a.named_parameters()]


@pytest.mark.parametrize("variant", ["hgrnn", "person"])
def test_late_fusion_sums_one_head_per_stream(variant):
    torch.manual_seed(0)
    cfg = HeadConfig(feature_dim=C, num_classes=K, variant=variant, context=1,
                     scene_hidden=5, graph_hidden=7, fusion="late", stream_dims=(4, 2))
    model = HGRNNHead(cfg).eval()
    batch = batch_for(variant, [2, 1, 3])
    want = 0
    for head, cols in zip(model.per_stream, (slice(0, 4), slice(4, 6))):
        assert head.cfg.feature_dim == cols.stop - cols.start
        part = SimpleNamespace(**vars(batch))
        part.clip, part.ctx_feats = batch.clip[..., cols], batch.ctx_feats[:, cols]
        part.feats = batch.feats[:, cols]
        want = want + reference_logits(head, part)
    torch.testing.assert_close(model(batch), want, rtol=1e-5, atol=1e-5)
    # a stream's columns reach only its own head
    changed = SimpleNamespace(**vars(batch))
    changed.feats = batch.feats.clone()
    changed.feats[:, 4:] += 1.0
    delta = model(changed) - model(batch)
    part = SimpleNamespace(**vars(changed))
    part.clip, part.ctx_feats, part.feats = (changed.clip[..., 4:], changed.ctx_feats[:, 4:],
                                             changed.feats[:, 4:])
    base = SimpleNamespace(**vars(batch))
    base.clip, base.ctx_feats, base.feats = batch.clip[..., 4:], batch.ctx_feats[:, 4:], \
        batch.feats[:, 4:]
    torch.testing.assert_close(delta, model.per_stream[1](part) - model.per_stream[1](base))
    assert HeadConfig.from_dict(cfg.to_dict()) == cfg


def test_relation_and_fusion_validation():
    with pytest.raises(ValueError, match="--relation"):
        HeadConfig(relation="transformer")
    with pytest.raises(ValueError, match="--attention-heads"):
        HeadConfig(relation="attention", graph_hidden=10, attention_heads=4)
    with pytest.raises(ValueError, match="--fusion"):
        HeadConfig(fusion="sum")
    with pytest.raises(ValueError, match="add up"):
        HeadConfig(feature_dim=6, stream_dims=(4, 4))
    with pytest.raises(ValueError, match="stream_dims"):
        HGRNNHead(HeadConfig(feature_dim=6, num_classes=2, fusion="late"))
