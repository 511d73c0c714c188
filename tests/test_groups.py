"""AVA action groups (hgrnn.metrics.groups) and their place in eval-csv's output."""

import json

import numpy as np
from click.testing import CliRunner

from hgrnn.cli import main
from hgrnn.data.ava import AvaRows, LabelMap, load_label_map, write_annotations, write_results
from hgrnn.metrics import evaluate
from hgrnn.metrics.groups import (GROUPS, ava_actions, format_groups, group_map, group_of,
                                  mean_ap_by_group)


def test_label_types_of_the_v22_map():
    actions = ava_actions()
    assert len(actions) == 80
    by_group = {g: sorted(i for i, (_, gg) in actions.items() if gg == g) for g in GROUPS}
    assert by_group["pose"] == list(range(1, 15))
    assert by_group["person-object"] == list(range(15, 64))
    assert by_group["person-person"] == list(range(64, 81))
    assert actions[12] == ("stand", "pose")
    assert actions[79][0].startswith("talk to")


def test_every_packaged_map_is_grouped_by_id():
    for name, n in (("ava-v2.1", 60), ("ava-v2.2", 80), ("ava-v2.2-2019", 60)):
        lm = load_label_map(name)
        groups = group_map(dict(zip(lm.names, lm.ids)))
        assert len(groups) == n
        for aid, cls in zip(lm.ids, lm.names):
            assert groups[cls] == ("pose" if aid <= 14 else "person-object" if aid <= 63
                                   else "person-person")
    counts = {g: list(group_map(dict(zip(lm.names, lm.ids))).values()).count(g)
              for lm in [load_label_map("ava-v2.1")] for g in GROUPS}
    assert counts == {"pose": 13, "person-object": 32, "person-person": 15}


def test_other_label_maps_have_no_group():
    assert group_of(12, "stand") == "pose"
    assert group_of(12, "my own class") is None          # id of AVA, name not: no claim
    assert group_of(1, "person") is None                 # the person-box AP's class
    assert group_of(81, "stand") is None
    assert group_of(12, "stand (id 12)") == "pose"       # EvalResult's key for shared names
    assert mean_ap_by_group({"person": 0.5}, {"person": 1}) == {}
    assert format_groups({}) == ""


def test_mean_ap_by_group_against_a_loop():
    lm = load_label_map("ava-v2.2")
    rng = np.random.default_rng(0)
    aps = {n: (None if rng.random() < 0.2 else float(rng.random())) for n in lm.names}
    ids = dict(zip(lm.names, lm.ids))
    got = mean_ap_by_group(aps, ids)
    assert list(got) == list(GROUPS)
    for g, (lo, hi) in zip(GROUPS, ((1, 14), (15, 63), (64, 80))):
        vals = [aps[n] for n in lm.names if lo <= ids[n] <= hi and aps[n] is not None]
        assert got[g]["classes"] == sum(lo <= i <= hi for i in lm.ids)
        assert got[g]["classes_with_instances"] == len(vals)
        assert abs(got[g]["mAP"] - sum(vals) / len(vals)) < 1e-15
    none = mean_ap_by_group({"stand": None, "sit": 0.25}, {"stand": 12, "sit": 11})
    assert none == {"pose": {"mAP": 0.25, "classes": 2, "classes_with_instances": 1}}
    assert mean_ap_by_group({"cut": None}, {"cut": 24})["person-object"]["mAP"] is None


def test_groups_of_an_evaluation():
    lm = LabelMap((12, 17, 79), ("stand", "carry/hold (an object)",
                                 "talk to (e.g., self, a person, a group)"))
    box = [[.1, .1, .5, .5]]
    gt = AvaRows.from_arrays(["v"] * 3, [902] * 3, box * 3, [12, 17, 79], person_ids=[0] * 3)
    res = AvaRows.from_arrays(["v"] * 4, [902] * 4, box + [[.6, .6, .9, .9]] + box * 2,
                              [12, 17, 17, 79], scores=[.9, .9, .8, .1])
    r = evaluate(gt, res, lm)
    g = mean_ap_by_group(r.per_class, r.ids)
    assert g["pose"]["mAP"] == 1.0 and g["person-person"]["mAP"] == 1.0
    assert g["person-object"]["mAP"] == 0.5              # the FP at 0.9 ranks first


def test_eval_csv_prints_and_writes_groups(tmp_path):
    gt = AvaRows.from_arrays(["v"] * 3, [902, 902, 903],
                             [[.1, .1, .5, .5], [.1, .1, .5, .5], [.5, .5, .9, .9]],
                             [12, 80, 12], person_ids=[0, 0, 1])
    res = AvaRows.from_arrays(["v"] * 3, [902, 902, 903],
                              [[.1, .1, .5, .5], [.6, .6, .9, .9], [.5, .5, .9, .9]],
                              [12, 80, 12], scores=[.9, .8, .7])
    write_annotations(tmp_path / "gt.csv", gt)
    write_results(tmp_path / "res.csv", res)
    out = tmp_path / "m.json"
    r = CliRunner().invoke(main, ["eval-csv", str(tmp_path / "gt.csv"), str(tmp_path / "res.csv"),
                                  "--json", str(out)])
    assert r.exit_code == 0, r.output
    table = r.output[r.output.index("mAP (ava-2018"):]
    assert "mAP per AVA action group:" in table
    assert "pose           100.0000 %  (13 of 13 classes with instances)" not in table
    assert "pose           100.0000 %  (1 of 13 classes with instances)" in table
    assert "person-person    0.0000 %  (1 of 15 classes with instances)" in table
    assert "person-object       n/a %  (0 of 32 classes with instances)" in table
    d = json.loads(out.read_text())
    assert d["action_groups"]["pose"] == {"mAP": 1.0, "classes": 13, "classes_with_instances": 1}
    assert d["action_groups"]["person-object"]["mAP"] is None
    assert d["PascalBoxes_Precision/mAP@0.5IOU"] == d["mAP"] == 0.5   # official keys kept
    r = CliRunner().invoke(main, ["eval-csv", str(tmp_path / "gt.csv"),
                                  str(tmp_path / "res.csv"), "--persons"])
    assert r.exit_code == 0 and "action group" not in r.output
