"""The charts the head writes: per_class_ap.png (`hgrnn eval`), loss.png (`hgrnn train-head`)
and ablation.png (`hgrnn ablate`), drawn with matplotlib (the `plot` extra).

Each chart has a `*_figure` function that builds a matplotlib Figure (tests read it) and a
`plot_*` function that saves it as a PNG and returns False when matplotlib is missing.
What they promise a first-time reader:

  per_class_ap  one bar per class; a class without ground-truth instances is a hatched grey
                bar across the whole axis labelled "n/a (no instances)", never a zero-length
                bar that looks like AP 0; label-map order or sorted by AP (n/a classes last);
                the mAP as a dashed line; a title naming the store, the boxes, the protocol
                and the mAP.
  loss          a linear loss axis unless the curve spans a decade or more (then log); the
                loss smoothed (EMA) over the raw loss drawn faintly; validation frame-mAP on a
                fixed 0-100 % axis; legends outside the curves; a title.
  ablation      bars per model row and class group, ±std error bars only where a row has
                several seeds; rows named as the tables name them; the groups are named
                "... classes" so that the class group "person" is not read as the model row
                "person".

APs and mAPs are drawn and written in percent, as every command's table prints them (and
as AVA papers quote them): the functions take fractions, as the evaluator returns them.
"""

from __future__ import annotations

import textwrap

import numpy as np

from hgrnn.metrics import format_percent

#: Grey of "no instances" bars.
NA_COLOR = "0.85"
#: bar colours of the AVA action groups (`hgrnn.metrics.groups`); classes without a group
#: in a chart that has groups are grey
GROUP_COLORS = {"pose": "tab:blue", "person-object": "tab:orange",
                "person-person": "tab:green", None: "0.55"}


def _pyplot():
    """matplotlib.pyplot with the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _save(fig, path, plt) -> bool:
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------- per-class AP

def eval_title(store=None, boxes=None, protocol=None, mAP=None, model=None) -> str:
    """'HGRNN (l=3, J=2) · frame-mAP 25.1200 % · val.h5 · det boxes · ava-2018' from what is
    known (mAP: a fraction; model: ``HeadConfig.describe()``)."""
    parts = [model] if model else []
    parts.append(f"frame-mAP {format_percent(mAP)} %" if mAP is not None else "frame-AP")
    if store:
        parts.append(str(store))
    if boxes:
        parts.append({"gt": "ground-truth boxes", "det": "detected boxes"}.get(boxes, boxes))
    if protocol:
        parts.append(protocol)
    return " · ".join(parts)


def per_class_ap_figure(per_class: dict, mAP: float, *, title: str | None = None,
                        sort: str = "ap", groups: dict | None = None):
    """Horizontal bars of every class's AP in percent (per_class: fractions, None = no
    instances). sort: "ap" (highest first, n/a classes last) or "labelmap" (the label
    map's order). groups: {class name: AVA action group} (`hgrnn.metrics.groups.group_map`;
    None or {}: one colour): bars coloured by group, the groups in the legend. Returns the
    Figure."""
    plt = _pyplot()
    if sort not in ("ap", "labelmap"):
        raise ValueError(f"sort must be 'ap' or 'labelmap', got {sort!r}")
    names = list(per_class)
    if sort == "ap":
        names.sort(key=lambda n: (per_class[n] is None, -(per_class[n] or 0.0)))
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.24 * len(names)))
    y = np.arange(len(names))
    for k, name in enumerate(names):
        ap = per_class[name]
        if ap is None:
            ax.barh(k, 100.0, color=NA_COLOR, hatch="///", edgecolor="0.6", linewidth=0)
            ax.text(1, k, "n/a (no instances)", va="center", ha="left", fontsize=7,
                    color="0.3")
        else:
            ax.barh(k, 100 * ap, color="tab:blue")
            x, ha = _value_label_place(100 * ap, 100 * mAP)
            ax.text(x, k, f"{100 * ap:.2f}", va="center", ha=ha, fontsize=7)
    ax.set_yticks(y, names, fontsize=7)
    ax.set_ylim(len(names) - 0.5, -0.5)
    shown_groups = _colour_by_group(ax.patches, names, per_class, groups or {})
    ax.axvline(100 * mAP, color="tab:red", linestyle="--")
    ax.set_xlabel("AP % (frame-level, IoU 0.5)")
    ax.set_xlim(0, 100)
    n_na = sum(v is None for v in per_class.values())
    handles = [ax.lines[0]]
    labels = [f"mAP {format_percent(mAP)} % (mean over the classes with instances)"]
    if n_na:
        handles.append(plt.Rectangle((0, 0), 1, 1, facecolor=NA_COLOR, hatch="///",
                                     edgecolor="0.6", linewidth=0))
        labels.append(f"no instances: {n_na} of {len(names)} classes (left out of the mAP)")
    for group in shown_groups:
        handles.append(plt.Rectangle((0, 0), 1, 1, facecolor=GROUP_COLORS[group]))
        labels.append(f"{group} classes" if group else "classes without an AVA group")
    fig.legend(handles, labels, loc="lower center", ncol=1, fontsize=8, frameon=False)
    # a long title (model, mAP, store, boxes, protocol) goes on two lines, not off the figure
    ax.set_title(textwrap.fill(title or eval_title(mAP=mAP), 70, break_on_hyphens=False),
                 fontsize=9)
    fig.tight_layout(rect=(0, (0.1 + 0.2 * len(labels)) / fig.get_figheight(), 1, 1))
    return fig


#: width of a value label ("100.00" at fontsize 7) in AP % of the 0-100 axis
_LABEL_WIDTH = 8.0


def _value_label_place(value: float, line: float) -> tuple:
    """(x, ha) of a bar's value label so that it clears the dashed mAP line at `line`: right
    of the bar's end, or, where that would cross the line, right of the line (or left of the
    bar's end when the line is too close to the axis end)."""
    x = min(value + 1, 100 - _LABEL_WIDTH)
    if x - 0.5 < line < x + _LABEL_WIDTH:
        if line + 1 + _LABEL_WIDTH <= 100:
            return line + 1, "left"
        return min(value, line) - 1, "right"
    return x, "left"


def plot_per_class_ap(per_class: dict, mAP: float, path, *, title: str | None = None,
                      sort: str = "ap", groups: dict | None = None) -> bool:
    """Save `per_class_ap_figure` as a PNG; False without matplotlib."""
    plt = _pyplot()
    if plt is None:
        return False
    return _save(per_class_ap_figure(per_class, mAP, title=title, sort=sort, groups=groups),
                 path, plt)


def _colour_by_group(bars, names, per_class, groups: dict) -> list:
    """Colour the AP bars (one per class of `names`, in order) of the classes with
    instances by their AVA action group; returns the groups shown (GROUP_COLORS order,
    None for classes without a group), [] when no class has a group."""
    if not groups:
        return []
    shown = set()
    for bar, name in zip(bars, names):
        if per_class[name] is not None:
            group = groups.get(name)
            bar.set_facecolor(GROUP_COLORS[group])
            shown.add(group)
    return [g for g in GROUP_COLORS if g in shown]


# ----------------------------------------------------------------------------- loss

def smooth(values, weight: float = 0.9) -> np.ndarray:
    """Bias-corrected exponential moving average (as TensorBoard's smoothing):
    s_t = w s_{t-1} + (1 - w) x_t, divided by 1 - w^t so the first points are not pulled
    towards zero."""
    out, acc = [], 0.0
    for t, x in enumerate(values, 1):
        acc = weight * acc + (1 - weight) * float(x)
        out.append(acc / (1 - weight ** t))
    return np.asarray(out)


def loss_figure(metrics: list, *, title: str | None = None, loss_name: str = "focal loss"):
    """Training loss (raw, faint, and smoothed) and validation frame-mAP (in percent)
    against step, from metrics.jsonl rows ({"step", "loss"} and {"step", "val_mAP"}, a
    fraction). Returns the Figure."""
    plt = _pyplot()
    loss = [(m["step"], m["loss"]) for m in metrics if m.get("loss") is not None]
    val = [(m["step"], 100 * m["val_mAP"]) for m in metrics if m.get("val_mAP") is not None]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    handles = []
    if loss:
        steps, values = (np.asarray(v, float) for v in zip(*loss))
        handles += ax.plot(steps, values, color="tab:blue", alpha=0.25, linewidth=0.8,
                           label=f"train {loss_name} (raw)")
        handles += ax.plot(steps, smooth(values, 0.9 if len(values) > 20 else 0.5),
                           color="tab:blue", linewidth=1.8, label=f"train {loss_name} (smoothed)")
        positive = values[values > 0]
        if len(positive) and positive.max() / positive.min() >= 10:
            ax.set_yscale("log")          # only when the curve spans a decade or more
        else:
            ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    ax.set_xlabel("step")
    ax.set_ylabel(loss_name)
    ax.grid(alpha=0.3)
    if val:
        ax2 = ax.twinx()
        handles += ax2.plot(*zip(*val), "o-", color="tab:orange", label="val frame-mAP")
        ax2.set_ylim(0, 100)
        ax2.set_ylabel("val frame-mAP (%)")
    if handles:
        ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3,
                  fontsize=8, frameon=False)
    ax.set_title(title or "training", fontsize=9, pad=24 if handles else 6)
    fig.tight_layout()
    return fig


def plot_loss_curve(metrics: list, path, *, title: str | None = None) -> bool:
    """Save `loss_figure` as a PNG; False without matplotlib."""
    plt = _pyplot()
    if plt is None:
        return False
    return _save(loss_figure(metrics, title=title), path, plt)


# ----------------------------------------------------------------------------- ablation

def group_label(group: str) -> str:
    """Legend name of a class group: 'mAP (all classes)' or '<group> classes'."""
    return "mAP (all classes)" if group == "all" else f"{group} classes"


def ablation_figure(summary: dict, groups, *, title: str | None = None,
                    labels: dict | None = None):
    """Grouped bars (model rows x class groups, gt boxes) from `ablate.summarize` ({row:
    {"gt": {group: (mean, std, n)}}}), with ±std error bars where a row has several seeds;
    `labels` names the rows (the tables' names; default the row ids). Returns the Figure."""
    plt = _pyplot()
    names = [n for n in summary if "gt" in summary[n]]
    groups = [g for g in groups if names and g in summary[names[0]]["gt"]]
    labels = labels or {}
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(names)) + 1.8, 4.6))
    width = 0.8 / max(len(groups), 1)
    seeds = max((summary[n]["gt"][g][2] for n in names for g in groups
                 if len(summary[n]["gt"][g]) > 2), default=1)
    for k, g in enumerate(groups):
        means = [100 * (summary[n]["gt"][g][0] or 0) for n in names]
        stds = [100 * (summary[n]["gt"][g][1] or 0) for n in names]
        spread = seeds > 1 and any(stds)
        ax.bar(np.arange(len(names)) + (k - (len(groups) - 1) / 2) * width, means, width,
               yerr=stds if spread else None, capsize=2 if spread else 0,
               label=group_label(g))
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels([labels.get(n, n) for n in names], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("AP (%)")
    ax.set_ylim(0, 100)
    spread = f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed"
    ax.set_title(title or f"HGRNN ablation (gt boxes, {spread})", fontsize=10)
    ax.legend(fontsize=8, title="class group", title_fontsize=8, loc="upper left",
              bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_ablation(summary: dict, groups, path, *, title: str | None = None,
                  labels: dict | None = None) -> bool:
    """Save `ablation_figure` as a PNG; False without matplotlib."""
    plt = _pyplot()
    if plt is None:
        return False
    return _save(ablation_figure(summary, groups, title=title, labels=labels), path, plt)

