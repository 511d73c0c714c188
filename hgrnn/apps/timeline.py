"""What each person did over a video: the per-person summary `hgrnn predict` writes beside
its results (DIR/<video>_persons.csv) and its picture (DIR/<video>_timeline.png).

Input: result rows with person ids (`hgrnn.track`; one row per person box AND action) of
one video. A person does an action at a keyframe when that action's score is at least
`min_score` (the drawing threshold of predict's videos); each such keyframe counts for the
video's keyframe step in seconds (1 s for keyframes every second: the keyframe stands for
the second centred on it, as in the drawn video).

persons.csv (a header, then one row per person id, in id order):
``person_id,first_second,last_second,keyframes,actions`` with first/last_second the first
and last keyframe timestamps the person is seen at (with or without an action),
keyframes the number of keyframes it is seen at, and actions ``name:seconds`` pairs
separated by ``;``, most seconds first (the field is quoted when a name holds a comma).

timeline.png: one band per person id (top: the lowest id), time on the x-axis; inside a
band one lane per action the person does, a bar over every run of keyframes where it
does it (keyframe ts covers ts - step/2 .. ts + step/2), and a grey outline where the
person is seen; one colour per action, named (short names) in the legend.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field

import numpy as np

from hgrnn.pipeline.visualize import short_name
from hgrnn.track import keyframe_step

#: one colour per action of a timeline (matplotlib's tab20 order, strong colours first)
_ACTION_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                  "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896",
                  "#c5b0d5", "#c49c94")


@dataclass
class PersonTimeline:
    """One person of a video: its id, the keyframes it is seen at, and per action name
    the keyframes it does the action at (sorted timestamps)."""
    person_id: int
    seen: list[int] = field(default_factory=list)
    actions: dict[str, list[int]] = field(default_factory=dict)


def person_timelines(rows, video_id: str, names: dict, min_score: float
                     ) -> tuple[list[PersonTimeline], int]:
    """Result AvaRows with person_ids -> ([PersonTimeline] in id order, keyframe step in
    seconds) for `video_id`. names: action id -> name (``id N`` for others)."""
    mine = np.flatnonzero(rows.video_ids == video_id)
    ts = np.asarray(rows.timestamps)[mine]
    step = keyframe_step(ts)
    persons: dict[int, PersonTimeline] = {}
    for i, t in zip(mine.tolist(), ts.tolist()):
        pid = int(rows.person_ids[i])
        p = persons.setdefault(pid, PersonTimeline(pid))
        if not p.seen or p.seen[-1] != t:
            p.seen.append(t)
        if rows.action_ids[i] >= 0 and rows.scores[i] >= min_score:
            a = int(rows.action_ids[i])
            p.actions.setdefault(names.get(a, f"id {a}"), []).append(t)
    for p in persons.values():
        p.seen = sorted(set(p.seen))
        p.actions = {n: sorted(set(t)) for n, t in p.actions.items()}
    return [persons[k] for k in sorted(persons)], step


def write_persons_csv(path, timelines: list[PersonTimeline], step: int) -> None:
    """DIR/<video>_persons.csv (module docstring)."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["person_id", "first_second", "last_second", "keyframes", "actions"])
        for p in timelines:
            acts = sorted(p.actions.items(), key=lambda kv: (-len(kv[1]), kv[0]))
            w.writerow([p.person_id, p.seen[0], p.seen[-1], len(p.seen),
                        ";".join(f"{n}:{len(t) * step}" for n, t in acts)])


def _runs(times: list[int], step: int) -> list[tuple[float, float]]:
    """Sorted keyframe timestamps -> (start, width) bars, one per run of consecutive
    keyframes, each keyframe covering ts - step/2 .. ts + step/2."""
    bars, start, last = [], None, None
    for t in times:
        if start is not None and t - last == step:
            last = t
            continue
        if start is not None:
            bars.append((start - step / 2, last - start + step))
        start = last = t
    if start is not None:
        bars.append((start - step / 2, last - start + step))
    return bars


def timeline_figure(timelines: list[PersonTimeline], step: int, title: str):
    """The timeline as a matplotlib Figure (module docstring), or None without persons."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    if not timelines:
        return None
    names = sorted({n for p in timelines for n in p.actions})
    color = {n: _ACTION_COLORS[k % len(_ACTION_COLORS)] for k, n in enumerate(names)}
    lanes = sum(max(1, len(p.actions)) for p in timelines)
    fig = Figure(figsize=(10, 1.2 + 0.28 * lanes + 0.35 * len(timelines)))
    ax = fig.add_subplot(1, 1, 1)
    y, ticks, labels = 0.0, [], []
    for p in timelines:
        n = max(1, len(p.actions))
        band = 0.25 * n + 0.35
        top = y
        ax.axhspan(top - band, top, color="0.95" if len(ticks) % 2 else "white", zorder=0)
        for seen_start, width in _runs(p.seen, step):       # where the person is seen
            ax.broken_barh([(seen_start, width)], (top - band + 0.02, band - 0.04),
                           facecolors="none", edgecolors="0.75", linewidth=0.6, zorder=1)
        margin = (band - 0.25 * n) / 2
        for k, (name, times) in enumerate(sorted(p.actions.items())):
            lane_bottom = top - margin - 0.25 * (k + 1)
            ax.broken_barh(_runs(times, step), (lane_bottom + 0.025, 0.2),
                           facecolors=color[name], zorder=2)
        ticks.append(top - band / 2)
        labels.append(f"#{p.person_id}")
        y = top - band
    ax.set_yticks(ticks, labels)
    ax.set_ylim(y, 0)
    first = min(p.seen[0] for p in timelines) - step
    last = max(p.seen[-1] for p in timelines) + step
    ax.set_xlim(first, last)
    ax.set_xlabel("time (s, keyframe timestamps)")
    ax.set_ylabel("person")
    ax.set_title(title)
    if names:
        ax.legend(handles=[Patch(color=color[n], label=short_name(n)) for n in names],
                  loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
                  frameon=False)
    fig.tight_layout()
    return fig


def plot_timeline(path, timelines: list[PersonTimeline], step: int, title: str) -> bool:
    """Save the timeline as a PNG; False when there is nothing to draw or matplotlib is
    missing."""
    try:
        fig = timeline_figure(timelines, step, title)
    except ImportError:
        return False
    if fig is None:
        return False
    fig.savefig(path, dpi=100)
    return True
