"""hgrnn.hgrnn_head.charts: what each chart promises a first-time reader, read back from the
matplotlib figure (and the PNGs written)."""

import numpy as np
import pytest

from hgrnn.hgrnn_head import charts

pytest.importorskip("matplotlib")


def bars(ax):
    from matplotlib.patches import Rectangle

    return [p for p in ax.patches if isinstance(p, Rectangle)]


def test_per_class_ap_draws_no_instances_visibly_and_sorts():
    per_class = {"stand": 0.5, "sit": None, "walk": 0.9, "dance": None, "talk": 0.0}
    fig = charts.per_class_ap_figure(per_class, 0.4667, title=charts.eval_title(
        "val.h5", "det", "ava-2018", 0.4667))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["walk", "stand", "talk", "sit", "dance"]
    widths = [b.get_width() for b in bars(ax)]
    hatches = [b.get_hatch() for b in bars(ax)]
    # AP 0 is a zero-length bar; "no instances" fills the axis, hatched, with a text;
    # percents, as every command's table prints them
    assert widths == [90.0, 50.0, 0.0, 100.0, 100.0]
    assert ax.get_xlim() == (0.0, 100.0) and ax.get_xlabel().startswith("AP %")
    assert {"90.00", "50.00", "0.00"} <= {t.get_text() for t in ax.texts}
    assert ax.lines[0].get_xdata()[0] == pytest.approx(46.67)
    assert hatches == [None, None, None, "///", "///"]
    assert sum(t.get_text() == "n/a (no instances)" for t in ax.texts) == 2
    assert ax.get_title() == "frame-mAP 46.6700 % · val.h5 · detected boxes · ava-2018"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[0] == "mAP 46.6700 % (mean over the classes with instances)"
    assert legend[1] == "no instances: 2 of 5 classes (left out of the mAP)"

    fig = charts.per_class_ap_figure(per_class, 0.4667, sort="labelmap")
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(per_class)


def test_per_class_ap_bars_are_coloured_by_ava_action_group():
    """Issue 28: the class groups (pose, person-object, person-person) were not marked."""
    from matplotlib.colors import to_rgba

    from hgrnn.metrics.groups import group_map

    ids = {"stand": 12, "carry/hold (an object)": 17, "talk to (e.g., self, a person, a group)": 79,
           "dance": 3, "person": 1001}
    per_class = {"stand": 0.5, "carry/hold (an object)": 0.4,
                 "talk to (e.g., self, a person, a group)": 0.3, "dance": None, "person": 0.2}
    fig = charts.per_class_ap_figure(per_class, 0.35, sort="labelmap", groups=group_map(ids))
    colours = [b.get_facecolor() for b in bars(fig.axes[0])]
    assert colours[:3] == [to_rgba(charts.GROUP_COLORS[g])
                           for g in ("pose", "person-object", "person-person")]
    assert colours[3] == to_rgba(charts.NA_COLOR)          # no instances: as before
    assert colours[4] == to_rgba(charts.GROUP_COLORS[None])  # not an AVA action
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[2:] == ["pose classes", "person-object classes", "person-person classes",
                          "classes without an AVA group"]
    # your own classes (ids 101-103): one colour, no group in the legend
    own = charts.per_class_ap_figure({"stand": 0.5, "walk": 0.4}, 0.45,
                                     groups=group_map({"stand": 101, "walk": 102}))
    assert len({b.get_facecolor() for b in bars(own.axes[0])}) == 1
    assert len(own.legends[0].get_texts()) == 1


def test_loss_axis_is_linear_unless_the_curve_spans_a_decade(tmp_path):
    narrow = [{"step": s, "loss": 0.1668 + 0.0005 * np.sin(s)} for s in range(10, 500, 10)]
    fig = charts.loss_figure(narrow + [{"step": 490, "val_mAP": 0.42}], title="run")
    loss_ax, val_ax = fig.axes
    assert loss_ax.get_yscale() == "linear"
    assert val_ax.get_ylim() == (0.0, 100.0)          # one val point: still the 0-100 % axis
    assert val_ax.lines[0].get_ydata()[0] == pytest.approx(42.0)
    assert val_ax.get_ylabel() == "val frame-mAP (%)"
    assert loss_ax.get_title() == "run"
    labels = [t.get_text() for t in loss_ax.get_legend().get_texts()]
    assert labels == ["train focal loss (raw)", "train focal loss (smoothed)", "val frame-mAP"]
    assert loss_ax.get_legend().get_bbox_to_anchor().y0 >= loss_ax.bbox.y1 - 1  # above the plot
    wide = [{"step": s, "loss": 2.0 * np.exp(-s / 100)} for s in range(10, 500, 10)]
    assert charts.loss_figure(wide).axes[0].get_yscale() == "log"
    assert charts.plot_loss_curve(wide, tmp_path / "loss.png") and (tmp_path / "loss.png").stat().st_size > 0


def test_smooth_matches_the_weighted_average_it_stands_for():
    x = np.random.default_rng(0).normal(size=30)
    for w in (0.5, 0.9):
        got = charts.smooth(x, w)
        for t in range(1, len(x) + 1):
            weights = np.array([w ** (t - i) * (1 - w) for i in range(1, t + 1)])
            assert got[t - 1] == pytest.approx((weights * x[:t]).sum() / weights.sum())


def test_ablation_legend_names_class_groups_apart_from_model_rows():
    summary = {row: {"gt": {g: (0.5, 0.01) for g in ("all", "person", "temporal")}}
               for row in ("person", "hgrnn")}
    fig = charts.ablation_figure(summary, ("all", "person", "temporal", "relational"))
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["mAP (all classes)", "person classes", "temporal classes"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["person", "hgrnn"]


def test_ablation_names_rows_as_the_tables_and_draws_spread_only_with_seeds():
    labels = {"person": "per-person head", "hgrnn_l1": "HGRNN l=1"}
    one = {row: {"gt": {"all": (0.5, 0.0, 1), "person": (0.4, 0.0, 1)}}
           for row in ("person", "hgrnn_l1")}
    fig = charts.ablation_figure(one, ("all", "person"), labels=labels)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["per-person head", "HGRNN l=1"]
    assert "one seed" in ax.get_title() and "±" not in ax.get_title()
    assert not [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    three = {row: {"gt": {"all": (0.5, 0.02, 3)}} for row in ("person", "hgrnn_l1")}
    ax = charts.ablation_figure(three, ("all",), labels=labels).axes[0]
    assert "mean ± std over 3 seeds" in ax.get_title()
    assert [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]


def test_per_class_value_labels_clear_the_map_line():
    """Every value label's box (in pixels) stays off the dashed mAP line, whether the bar
    ends just left of the line, on it, or near the axis end."""
    per_class = {f"c{i}": v for i, v in enumerate((0.40, 0.43, 0.445, 0.46, 0.20, 0.97, 0.90))}
    for mAP in (0.45, 0.93):
        fig = charts.per_class_ap_figure(per_class, mAP)
        ax = fig.axes[0]
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        line_x = ax.transData.transform((100 * mAP, 0))[0]
        labels = [t for t in ax.texts if t.get_text()[:1].isdigit()]
        assert len(labels) == len(per_class)
        for t in labels:
            box = t.get_window_extent(renderer)
            assert not box.x0 <= line_x <= box.x1, (mAP, t.get_text())


def test_titles_name_the_model_and_only_its_options():
    from hgrnn.hgrnn_head.config import HeadConfig

    assert HeadConfig(variant="person").describe() == "per-person head"
    assert HeadConfig().describe() == "HGRNN (l=3, J=2)"
    assert HeadConfig(variant="graph", relation="attention").describe() == \
        "Graph-RNN (J=2, attention)"
    assert HeadConfig(variant="scene", fusion="late").describe() == "Scene-RNN (l=3, late fusion)"
    title = charts.eval_title("val.h5", "gt", mAP=0.25, model="per-person head")
    assert title.startswith("per-person head · frame-mAP 25.0")
    # a long title stays inside the figure (wrapped), every word of it kept
    long = charts.eval_title("ava_val_v2.1_features.h5", "gt", "ava-2018", 0.2115,
                             model=HeadConfig(relation="attention").describe())
    fig = charts.per_class_ap_figure({"talk to (e.g., self, a person, a group)": 0.5,
                                      "b": None}, 0.5, title=long)
    fig.canvas.draw()
    shown = fig.axes[0].title
    box = shown.get_window_extent(fig.canvas.get_renderer())
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width
    assert shown.get_text().split() == long.split()
