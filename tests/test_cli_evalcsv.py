"""`hgrnn eval-csv`: table, JSON output, protocols and clear errors (click's CliRunner)."""

import json

import numpy as np
from click.testing import CliRunner

from hgrnn.cli import main
from hgrnn.data.ava import AvaRows, write_annotations, write_results


def make_files(tmp_path):
    """Two keyframes, classes 12 (stand) and 14 (walk) of the AVA v2.1 label map."""
    gt = AvaRows.from_arrays(["v", "v", "v"], [902, 902, 903],
                             [[.1, .1, .5, .5], [.1, .1, .5, .5], [.5, .5, .9, .9]],
                             [12, 14, 12], person_ids=[0, 0, 1])
    res = AvaRows.from_arrays(["v", "v", "v", "v"], [902, 902, 903, 904],
                              [[.1, .1, .5, .5], [.1, .1, .5, .5], [.5, .5, .9, .9],
                               [.1, .1, .5, .5]],
                              [12, 14, 12, 12], scores=[.9, .8, .7, .95])
    write_annotations(tmp_path / "gt.csv", gt)
    write_results(tmp_path / "res.csv", res)
    (tmp_path / "ex.csv").write_text("v,0904\n")
    return str(tmp_path / "gt.csv"), str(tmp_path / "res.csv"), str(tmp_path / "ex.csv")


def test_table_and_json(tmp_path):
    gt, res, ex = make_files(tmp_path)
    out = tmp_path / "map.json"
    r = CliRunner().invoke(main, ["eval-csv", gt, res, "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "stand" in r.output and "mAP (ava-2018" in r.output and "n/a" in r.output
    d = json.loads(out.read_text())
    # stand: 0.95 FP (904 has no gt), 0.9 TP, 0.7 TP -> precision 0, 1/2, 2/3 at recall
    # 0, 1/2, 1; made non-increasing from the right: AP = 2/3
    assert abs(d["per_class"]["stand"] - 2 / 3) < 1e-12
    assert d["per_class"]["walk"] == 1.0
    assert d["per_class"]["crouch/kneel"] is None            # no instances: null
    assert abs(d["mAP"] - (2 / 3 + 1.0) / 2) < 1e-12
    assert d["protocol"] == "ava-2018"
    assert d["counts"]["total_instances"] == 3 and d["counts"]["total_results"] == 4
    assert len(d["per_class"]) == 60


def test_exclusions_and_protocols(tmp_path):
    gt, res, ex = make_files(tmp_path)
    runner = CliRunner()
    r = runner.invoke(main, ["eval-csv", gt, res, "--exclusions", ex, "--quiet"])
    assert r.exit_code == 0 and r.output.strip() == "100.0000"       # percent
    r = runner.invoke(main, ["eval-csv", gt, res, "--protocol", "ava-2020", "-q"])
    assert r.exit_code == 0 and r.output.strip() == "100.0000"       # 904 ignored
    r = runner.invoke(main, ["eval-csv", gt, res, "--protocol", "ava-2020", "--exclusions", ex])
    assert r.exit_code != 0 and "ava-2020" in r.output


def test_clear_error_for_bad_line(tmp_path):
    gt, res, _ = make_files(tmp_path)
    with open(res, "a") as f:
        f.write("v,905,0.1,0.2,0.9,0.1,12,0.5\n")              # y2 < y1 on line 5
    r = CliRunner().invoke(main, ["eval-csv", gt, res])
    assert r.exit_code == 1
    assert f"Error: {res}:5: " in r.output and "y2 < y1" in r.output
    assert "Traceback" not in r.output


def test_label_map_option(tmp_path):
    gt, res, _ = make_files(tmp_path)
    lm = tmp_path / "lm.txt"
    lm.write_text("12: stand\n")
    out = tmp_path / "o.json"
    r = CliRunner().invoke(main, ["eval-csv", gt, res, "--label-map", str(lm), "--json", str(out)])
    assert r.exit_code == 0, r.output
    d = json.loads(out.read_text())
    assert list(d["per_class"]) == ["stand"]
    assert d["counts"]["gt_skipped_action_not_in_label_map"] == 1
    r = CliRunner().invoke(main, ["eval-csv", gt, res, "--label-map", "nope"])
    assert r.exit_code == 1 and "packaged" in r.output
    assert np.isclose(d["mAP"], 2 / 3)


def test_unwritable_json_and_directory_label_map_are_one_line_errors(tmp_path):
    gt, res, _ = make_files(tmp_path)
    r = CliRunner().invoke(main, ["eval-csv", gt, res, "--json", str(tmp_path / "no" / "x.json")])
    assert r.exit_code == 1 and "Error: cannot write --json" in r.output
    assert "mAP (ava-2018" in r.output                      # the table came out first
    r = CliRunner().invoke(main, ["eval-csv", gt, res, "--label-map", str(tmp_path)])
    assert r.exit_code == 1 and r.output.startswith("Error: ") and str(tmp_path) in r.output


def test_a_store_as_ground_truth_brings_its_label_map(tmp_path):
    """GT_CSV may be a feature store: its gt persons and its own (here synthetic, 13-class)
    label map are used, so the store's classes need no --label-map."""
    from hgrnn.data.synthetic import SynthConfig, write_synthetic_store
    from hgrnn.data.windows import FeatureStore
    from hgrnn.hgrnn_head.infer import store_ground_truth

    store = tmp_path / "s.h5"
    write_synthetic_store(store, SynthConfig(videos=2, keyframes=3, seed=1), progress=False)
    gt = store_ground_truth(FeatureStore(store))
    perfect = AvaRows.from_arrays(gt.video_ids, gt.timestamps, gt.boxes, gt.action_ids,
                                  scores=np.ones(len(gt.timestamps)))
    write_results(tmp_path / "res.csv", perfect)
    r = CliRunner().invoke(main, ["eval-csv", str(store), str(tmp_path / "res.csv"), "--quiet"])
    assert r.exit_code == 0, r.output
    assert r.output.strip() == "100.0000"
    other = CliRunner().invoke(main, ["eval-csv", str(store), str(tmp_path / "res.csv"),
                                      "--label-map", "ava-v2.2"])
    assert other.exit_code == 1 and "leave --label-map out" in other.output


def test_custom_ids_with_the_default_label_map_get_a_hint(tmp_path):
    (tmp_path / "gt.csv").write_text("v,1,0.1,0.1,0.5,0.5,101,0\n")
    (tmp_path / "res.csv").write_text("v,1,0.1,0.1,0.5,0.5,101,0.9\n")
    r = CliRunner().invoke(main, ["eval-csv", str(tmp_path / "gt.csv"), str(tmp_path / "res.csv")])
    assert r.exit_code == 1
    assert "unknown action id 101" in r.output and "--label-map" in r.output
    (tmp_path / "lm.txt").write_text("101 wave\n")
    ok = CliRunner().invoke(main, ["eval-csv", str(tmp_path / "gt.csv"), str(tmp_path / "res.csv"),
                                   "--label-map", str(tmp_path / "lm.txt"), "--quiet"])
    assert ok.exit_code == 0 and ok.output.strip() == "100.0000"


def test_eval_csv_imports_no_torch(tmp_path):
    """`import hgrnn.cli.evaluate` and a whole `eval-csv` run on CSVs leave torch unimported
    (importing it alone took 1.9 s of the command), and pandas (pyarrow's ``to_numpy``
    imports it: 0.3 s). A fresh interpreter, since this test
    process has torch loaded already."""
    import os
    import subprocess
    import sys

    gt, res, ex = make_files(tmp_path)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))       # this checkout
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    code = ("import sys\n"
            "import hgrnn.cli.evaluate\n"
            "assert 'torch' not in sys.modules, 'import hgrnn.cli.evaluate imported torch'\n"
            "from click.testing import CliRunner\n"
            "from hgrnn.cli import main\n"
            f"r = CliRunner().invoke(main, ['eval-csv', {gt!r}, {res!r}, '--exclusions', {ex!r},"
            f" '--json', {str(tmp_path / 'm.json')!r}])\n"
            "assert r.exit_code == 0, r.output\n"
            "heavy = sorted(m for m in ('torch', 'torchvision', 'h5py', 'pandas')\n"
            "                if m in sys.modules)\n"
            "assert not heavy, heavy\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
