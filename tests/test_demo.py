"""`hgrnn demo` (small sizes: the real one is timed in BENCHMARKS.md) and the synthetic CLI."""

import json
import os

from click.testing import CliRunner

from hgrnn.cli import main
from hgrnn.apps.demo import DemoConfig, format_summary, run_demo


def test_demo_end_to_end_and_reuse(tmp_path):
    cfg = DemoConfig(out=str(tmp_path / "d"), train_videos=4, val_videos=2, keyframes=15,
                     steps=20, batch_size=8, threads=1)
    s = run_demo(cfg, progress=False)
    out = tmp_path / "d"
    for f in ("train.h5", "val.h5", "run/last.pt", "eval_gt/results.csv", "eval_gt/metrics.json",
              "eval_det/results.csv", "summary.json"):
        assert (out / f).exists(), f
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["eval"]["gt"]["mAP"] == s["eval"]["gt"]["mAP"]
    assert set(s["eval"]["gt"]["groups"]) == {"person", "temporal", "relational", "all"}
    assert abs(s["eval"]["gt"]["groups"]["all"] - s["eval"]["gt"]["mAP"]) < 1e-6
    text = format_summary(s)
    assert "gt boxes" in text and "detected" in text and str(out / "run") in text

    # second run: complete stores are re-used (not rewritten), the finished run is kept
    stamps = {f: os.stat(out / f).st_mtime_ns for f in ("train.h5", "val.h5")}
    s2 = run_demo(cfg, progress=False)
    assert {f: os.stat(out / f).st_mtime_ns for f in stamps} == stamps
    assert s2["eval"]["gt"]["mAP"] == s["eval"]["gt"]["mAP"]


def test_cli_synth(tmp_path):
    path = tmp_path / "s.h5"
    r = CliRunner().invoke(main, ["synth", "--out", str(path), "--videos", "2", "--keyframes",
                                  "5", "--seed", "3", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "2 videos written" in r.output
    r = CliRunner().invoke(main, ["synth", "--out", str(path), "--videos", "2", "--keyframes",
                                  "5", "--seed", "4", "--quiet"])
    assert r.exit_code != 0 and "s.h5" in r.output and "--overwrite" in r.output
    r = CliRunner().invoke(main, ["synth", "--out", str(tmp_path / "x.h5"), "--feature-dim", "8"])
    assert r.exit_code != 0 and "--feature-dim" in r.output


def test_cli_help():
    for cmd in ("synth", "demo", "ablate"):
        r = CliRunner().invoke(main, [cmd, "--help"])
        assert r.exit_code == 0 and "Usage" in r.output
