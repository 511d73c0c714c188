"""`hgrnn ablate` at small scale with the REAL train_head / evaluate_store: the orderings the
synthetic benchmark is built for must show, so that a change that breaks the graph iterations
or the scene RNN fails CI; plus the bookkeeping (skip finished runs, tables, CSV, plot)."""

import csv
import json

import pytest

from hgrnn.data.synthetic import SynthConfig, write_synthetic_store
from hgrnn.hgrnn_head import ablate as A
from hgrnn.hgrnn_head import ablate_config as AC


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    d = tmp_path_factory.mktemp("abl")
    train, val = d / "train.h5", d / "val.h5"
    write_synthetic_store(train, SynthConfig(videos=24, keyframes=30, seed=11), progress=False)
    write_synthetic_store(val, SynthConfig(videos=10, keyframes=30, seed=12), progress=False)
    return str(train), str(val)


# Small and fast, but with a 30x larger lr than the paper so that 600 steps learn the
# conjunctions reliably; margins below are about half of what these settings give.
SMALL = dict(seeds=1, steps=600, batch_size=32, lr=3e-3, jobs=1, scene_hidden=64,
             graph_hidden=64)


@pytest.fixture(scope="module")
def small_grid(stores, tmp_path_factory):
    out = tmp_path_factory.mktemp("grid")
    cfg = AC.AblateConfig(rows=("person", "graph", "scene", "hgrnn_l0", "hgrnn_J1"), det=False,
                         **SMALL)
    return out, cfg, A.run_ablation(*stores, out, cfg, progress=False)


def _gt(result, row, group):
    return result["summary"][row]["gt"][group][0]


def test_relational_needs_graph_iterations(small_grid):
    """Only the graph RNN with J >= 2 sees who ELSE in the keyframe talks / dances.
    (Checked to fail when the graph RNN's max-pool over the persons is zeroed.)"""
    _, _, r = small_grid
    for graph in ("graph", "hgrnn_l0"):
        for other in ("person", "scene", "hgrnn_J1"):     # J=1 with h0 = 0: no other person
            assert _gt(r, graph, "relational") > _gt(r, other, "relational") + 0.15, \
                (graph, other, r["summary"])


def test_temporal_needs_the_scene_rnn(small_grid):
    """Only a scene RNN over l >= 1 neighbouring keyframes sees which way the scene moves;
    hgrnn_l0 has the scene RNN and the scene-type prior but a one-keyframe window. These
    settings give a margin of about 0.11 AP over the best of the others; a scene RNN fed the
    centre keyframe's clip in every window slot (persons still pooled per slot) gets 0.02-0.03,
    so 0.06 separates the two."""
    _, _, r = small_grid
    scene = _gt(r, "scene", "temporal")
    for other in ("person", "graph", "hgrnn_l0"):
        assert scene > _gt(r, other, "temporal") + 0.06, (other, r["summary"])


def test_outputs_and_skip(small_grid, stores):
    out, cfg, r = small_grid
    md = (out / "ablation.md").read_text()
    for title in ("Table 1", "Table 2", "Table 3", "relational AP", "one seed",
                  "paper's l=0 row"):
        assert title in md
    assert "±" not in md            # one seed: no spread to print, not "± 0.0"
    with open(out / "ablation.csv") as f:
        rows = list(csv.DictReader(f))
    assert [x["run"] for x in rows] == ["person_s0", "graph_s0", "scene_s0", "hgrnn_l0_s0",
                                        "hgrnn_J1_s0"]
    assert float(rows[1]["gt_relational"]) == pytest.approx(_gt(r, "graph", "relational"),
                                                            abs=1e-4)
    assert (out / "ablation.png").stat().st_size > 1000
    for name in ("person_s0", "graph_s0"):
        assert (out / "runs" / name / "done.json").exists()
        assert (out / "runs" / name / "eval_gt" / "metrics.json").exists()

    # a second call finds every run finished: no training, same numbers
    stamp = (out / "runs" / "graph_s0" / "done.json").stat().st_mtime_ns
    again = A.run_ablation(*stores, out, cfg, progress=False)
    assert (out / "runs" / "graph_s0" / "done.json").stat().st_mtime_ns == stamp
    assert again["summary"] == r["summary"]

    # a finished run with another spec in the way is an error naming the file
    bad = json.loads((out / "runs" / "graph_s0" / "done.json").read_text())
    bad["spec"]["lr"] = 0.5
    (out / "runs" / "graph_s0" / "done.json").write_text(json.dumps(bad))
    with pytest.raises(RuntimeError, match="graph_s0"):
        A.run_ablation(*stores, out, cfg, progress=False)


def test_grid_and_stats():
    specs = AC.AblateConfig().specs()
    assert len(specs) == len(AC.RGB_ROWS) * 3 and "hgrnn_flow" not in AC.RGB_ROWS
    assert all("streams" not in s for s in specs)        # RGB specs read as before streams
    assert len({(s["variant"], s["context"], s["iterations"], s["seed"],
                 s.get("graph_pool"), s.get("context_boxes"), s.get("relation"))
                for s in specs}) == \
        len(specs)                                                  # deduplicated
    others = [s for s in specs if s["row"] == "hgrnn_others"]
    assert others and all(s["graph_pool"] == "others" for s in others)
    assert all(s["context_boxes"] == "det" for s in specs if s["row"] == "hgrnn_ctxdet")
    assert all(s["relation"] == "attention" for s in specs if s["row"] == "hgrnn_attn")
    assert "graph_pool" not in specs[0] and "context_boxes" not in specs[0]
    assert "relation" not in specs[0] and "fusion" not in specs[0]
    assert A.mean_std([0.1, 0.2, 0.3]) == pytest.approx((0.2, 0.1, 3))
    assert A.mean_std([0.4, None]) == (0.4, 0.0, 1)
    with pytest.raises(ValueError, match="nope"):
        AC.AblateConfig(rows=("nope",))


def test_tables_spread_and_row_names():
    """With several seeds the tables give mean ± std; Table 4 names rows like the others."""
    run = {"gt": {"all": (0.5, 0.02, 3)}, "det": {"all": (0.4, 0.01, 3)}}
    summary = {"person": run, "hgrnn": run}
    cfg = AC.AblateConfig(rows=("person", "hgrnn"), seeds=3)
    rows = [{"train_seconds": 1.0}]
    md = A.format_tables(summary, cfg, "t.h5", "v.h5", rows)
    assert "50.0 ± 2.0" in md and "mean ± std over 3 seeds" in md
    table4 = md[md.index("Table 4"):]
    assert "| per-person head |" in table4 and "| HGRNN (l=3, J=2) |" in table4
    assert "| person |" not in table4


def test_option_rows_reach_the_head_and_the_training(stores, tmp_path):
    """hgrnn_others trains a head with graph_pool "others", hgrnn_ctxdet one with detections
    in the context slots; the tables say which row is the paper's l = 0 and list both."""
    import torch
    cfg = AC.AblateConfig(rows=("hgrnn_others", "hgrnn_ctxdet"), seeds=1, steps=2,
                         batch_size=4, jobs=1, scene_hidden=8, graph_hidden=8)
    r = A.run_ablation(*stores, tmp_path, cfg, progress=False)
    ck = {n: torch.load(tmp_path / "runs" / f"{n}_s0" / "last.pt", weights_only=True)
          for n in cfg.rows}
    assert ck["hgrnn_others"]["head"]["graph_pool"] == "others"
    assert ck["hgrnn_others"]["train"]["context_boxes"] == "gt"
    assert ck["hgrnn_ctxdet"]["head"]["graph_pool"] == "all"
    assert ck["hgrnn_ctxdet"]["train"]["context_boxes"] == "det"
    md = (tmp_path / "ablation.md").read_text()
    assert "Options beyond the paper" in md and "graph pool over the other persons" in md
    assert "`graph` row" in md      # which row is the paper's l = 0, and why
    assert set(r["summary"]) == {"hgrnn_others", "hgrnn_ctxdet"}


def test_table4_rgb_flow_beats_rgb_on_motion_and_keeps_the_rest(tmp_path):
    """Table 4 on two-stream synthetic stores: RGB vs RGB+Flow x GT vs detected boxes."""
    train, val = tmp_path / "tr2.h5", tmp_path / "va2.h5"
    two = dict(keyframes=20, streams=("rgb", "flow"))
    write_synthetic_store(train, SynthConfig(videos=10, seed=21, **two), progress=False)
    write_synthetic_store(val, SynthConfig(videos=5, seed=22, **two), progress=False)
    assert A.rows_for_store(val) == AC.RGB_ROWS + ("hgrnn_flow", "hgrnn_late")
    # short runs (the paper-schedule numbers are in BENCHMARKS.md): motion is a person-level
    # cause, learnt within 150 steps; the other groups' conjunctions are not, so their check
    # below only guards against a gross loss
    cfg = AC.AblateConfig(rows=("hgrnn", "hgrnn_flow"),
                         **{**SMALL, "seeds": 2, "steps": 150, "scene_hidden": 32,
                            "graph_hidden": 32})
    r = A.run_ablation(train, val, tmp_path / "t4", cfg, progress=False)
    spec = json.loads((tmp_path / "t4" / "runs" / "hgrnn_flow_s0" / "done.json").read_text())
    assert spec["spec"]["streams"] == ["rgb", "flow"]
    gains = A.flow_gain(r["summary"])
    print(gains)
    for boxes in ("gt", "det"):
        diff, z = gains[boxes]["motion"]
        assert diff > 0.2 and (z is None or z > 3), gains        # > 3 std on motion
        for group in ("person", "temporal", "relational"):
            assert gains[boxes][group][0] > -0.15, (group, gains)  # no gross loss elsewhere
    md = (tmp_path / "t4" / "ablation.md").read_text()
    assert "Table 4 (paper): RGB vs RGB+Flow" in md
    assert "RGB+Flow (streams concatenated), detected boxes" in md
    assert "motion AP" in md
    # an RGB-only store cannot run the RGB+Flow row: a clear error before any training
    rgb_val = tmp_path / "rgb.h5"
    write_synthetic_store(rgb_val, SynthConfig(videos=2, keyframes=10, seed=3), progress=False)
    assert A.rows_for_store(rgb_val) == AC.RGB_ROWS
    with pytest.raises(ValueError, match="rgb.h5: rows hgrnn_flow need feature streams"):
        A.run_ablation(train, rgb_val, tmp_path / "t4b", cfg, progress=False)


def test_attention_and_late_fusion_rows_reach_the_head_and_the_tables(tmp_path):
    """hgrnn_attn trains the attention relation, hgrnn_late one head per stream; both rows
    are in the tables (options beyond the paper; Table 4 beside concatenation) and named
    by the tables' names in ablation.png."""
    import torch
    train, val = tmp_path / "tr2.h5", tmp_path / "va2.h5"
    two = {"keyframes": 8, "streams": ("rgb", "flow")}
    write_synthetic_store(train, SynthConfig(videos=3, seed=21, **two), progress=False)
    write_synthetic_store(val, SynthConfig(videos=2, seed=22, **two), progress=False)
    cfg = AC.AblateConfig(rows=("hgrnn", "hgrnn_attn", "hgrnn_flow", "hgrnn_late"), seeds=1,
                         steps=2, batch_size=4, jobs=1, scene_hidden=8, graph_hidden=8)
    r = A.run_ablation(train, val, tmp_path / "o", cfg, progress=False)
    ck = {n: torch.load(tmp_path / "o" / "runs" / f"{n}_s0" / "last.pt", weights_only=True)
          for n in cfg.rows}
    assert ck["hgrnn_attn"]["head"]["relation"] == "attention"
    assert ck["hgrnn_attn"]["head"]["fusion"] == "concat"
    assert ck["hgrnn_late"]["head"]["fusion"] == "late"
    assert ck["hgrnn_late"]["head"]["stream_dims"] == [64, 64]
    assert ck["hgrnn_late"]["streams"] == ["rgb", "flow"]
    md = (tmp_path / "o" / "ablation.md").read_text()
    assert "| attention over the persons instead of the graph RNN |" in md
    assert "| RGB+Flow (late fusion), GT boxes |" in md
    assert "RGB+Flow (late fusion) minus RGB" in md
    assert set(r["summary"]) == set(cfg.rows)
    from hgrnn.hgrnn_head.charts import ablation_figure
    ax = ablation_figure(r["summary"], AC.GROUPS, labels=AC.ROW_LABELS).axes[0]
    assert "HGRNN, attention relation" in [t.get_text() for t in ax.get_xticklabels()]
