"""hgrnn.apps.timeline: the per-person summary and timeline of `hgrnn predict`."""

import csv

import numpy as np
import pytest

from hgrnn.apps import timeline as tl
from hgrnn.data.ava import AvaRows

NAMES = {1: "bend/bow (at the waist)", 2: "talk to (e.g., self, a person, a group)", 3: "walk"}


def _rows():
    # person 4: walks at 10, 11, 12 and 14, talks at 11; person 9: seen at 10 and 11,
    # nothing scored high enough; another video's rows are ignored
    r = [("v", 10, 4, 3, 0.9), ("v", 10, 4, 2, 0.1), ("v", 11, 4, 3, 0.8), ("v", 11, 4, 2, 0.7),
         ("v", 12, 4, 3, 0.6), ("v", 14, 4, 3, 0.95), ("v", 10, 9, 1, 0.2), ("v", 11, 9, 1, 0.1),
         ("w", 10, 4, 1, 0.9)]
    vids, ts, pids, acts, scores = zip(*r)
    rows = AvaRows.from_arrays(vids, ts, np.tile([0.1, 0.1, 0.5, 0.9], (len(r), 1)), acts,
                               person_ids=pids, scores=scores)
    return rows


def test_person_timelines_and_persons_csv(tmp_path):
    timelines, step = tl.person_timelines(_rows(), "v", NAMES, min_score=0.5)
    assert step == 1
    assert [(p.person_id, p.seen, p.actions) for p in timelines] == [
        (4, [10, 11, 12, 14], {"walk": [10, 11, 12, 14], NAMES[2]: [11]}),
        (9, [10, 11], {})]
    path = tmp_path / "v_persons.csv"
    tl.write_persons_csv(path, timelines, step)
    with open(path, newline="") as f:
        got = list(csv.reader(f))                  # the comma in the name is quoted
    assert got == [["person_id", "first_second", "last_second", "keyframes", "actions"],
                   ["4", "10", "14", "4", f"walk:4;{NAMES[2]}:1"], ["9", "10", "11", "2", ""]]


def test_runs_merge_consecutive_keyframes():
    assert tl._runs([10, 11, 12, 14], 1) == [(9.5, 3), (13.5, 1)]
    assert tl._runs([3, 6, 12], 3) == [(1.5, 6), (10.5, 3)]
    assert tl._runs([], 1) == []


def test_timeline_figure_has_a_band_per_person_and_a_bar_per_run(tmp_path):
    pytest.importorskip("matplotlib")
    timelines, step = tl.person_timelines(_rows(), "v", NAMES, min_score=0.5)
    fig = tl.timeline_figure(timelines, step, "v")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["#4", "#9"]
    bars = [c for c in ax.collections if c.get_zorder() == 2]           # action lanes
    assert sorted(len(c.get_paths()) for c in bars) == [1, 2]          # talk 1, walk 2 runs
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["talk to", "walk"]
    assert tl.plot_timeline(tmp_path / "t.png", timelines, step, "v")
    assert (tmp_path / "t.png").stat().st_size > 1000
    assert not tl.plot_timeline(tmp_path / "none.png", [], 1, "v")
