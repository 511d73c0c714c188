"""benchmarks/gpu_check.py: every part runs on the CPU with tiny sizes (`--device cpu
--tiny`), so the script prepared for the first lent GPU keeps working as the code changes;
failures, time limits and missing packages are reported as promised."""

import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module                  # its dataclasses look themselves up
    spec.loader.exec_module(module)
    yield module
    del sys.modules["gpu_check"]


@pytest.mark.slow
def test_tiny_cpu_run_passes_every_part(gpu_check, tmp_path, capsys):
    # a generous budget: the 2-core CI machine may be shared; the tiny run takes ~40 s idle
    code = gpu_check.main(["--device", "cpu", "--tiny", "--out", str(tmp_path),
                           "--budget", "900"])
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    problems = {r["name"]: r.get("note") for r in report["parts"]
                if r["status"] not in ("ok", "absent")}
    assert code == 0 and not problems and report["failed"] == [], problems
    assert [r["name"] for r in report["parts"]] == [p.name for p in gpu_check.PARTS]
    for r in report["parts"]:
        if r["status"] == "absent":              # only code another issue has not landed
            assert r["name"] in ("finetune-detector", "raft", "raft-speed"), r
    assert (tmp_path / "gpu_check.log").read_text().count("\n") > len(gpu_check.PARTS)
    values = {r["name"]: r.get("values", {}) for r in report["parts"]}
    assert values["extract"]["arrays_compared"] > 0
    assert values["eval"]["rows"] > 0
    assert values["finetune-backbone"]["steps"][-1] == 12
    for split in ("val", "train"):
        p = report["projection"][split]
        assert p["hours_1_gpu"] == pytest.approx(8 * p["hours_8_gpus"])
    table = capsys.readouterr().out
    assert "AVA v2.1 train extraction" in table and "i3d-speed" in table


def test_failed_check_exits_nonzero_naming_it(gpu_check, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu_check, "AUTOCAST_RTOL", {"cpu": -1.0})   # nothing can meet it
    code = gpu_check.main(["--device", "cpu", "--tiny", "--out", str(tmp_path), "--only", "roi,i3d"])
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert code == 1
    assert report["failed"] == ["i3d"]
    assert [r["status"] for r in report["parts"]] == ["ok", "failed", "ok"]
    assert "FAILED: i3d: I3D autocast device vs CPU" in capsys.readouterr().out


def test_part_over_its_limit_is_stopped_and_budget_skips_the_rest(gpu_check, tmp_path,
                                                                 monkeypatch):
    def slow(ctx):
        time.sleep(30)

    parts = (gpu_check.Part("prepare", lambda ctx: {"summary": "nothing"}, "setup", 10, 0.1),
             gpu_check.Part("slow", slow, "figure", limit_s=0.5, min_s=0.1),
             gpu_check.Part("late", lambda ctx: {}, "figure", limit_s=10, min_s=5))
    monkeypatch.setattr(gpu_check, "PARTS", parts)
    started = time.perf_counter()
    code = gpu_check.main(["--device", "cpu", "--out", str(tmp_path), "--budget", "450"])
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert time.perf_counter() - started < 20
    status = {r["name"]: r["status"] for r in report["parts"]}
    assert status == {"prepare": "ok", "slow": "timeout", "late": "ok"}
    assert code == 0                                     # a timeout is no wrong result

    code = gpu_check.main(["--device", "cpu", "--out", str(tmp_path), "--budget", "2"])
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    status = {r["name"]: r["status"] for r in report["parts"]}
    assert status["late"] == "skipped" and "budget" in report["parts"][-1]["note"]


def test_missing_package_is_named_in_one_line(gpu_check, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu_check, "REQUIRED", gpu_check.REQUIRED + (("no_such_pkg_x", "x (X)"),))
    assert gpu_check.main(["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing x (X)" in err[0] and "make install" in err[0]


def test_cuda_asked_without_cuda_says_so(gpu_check, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert gpu_check.main(["--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "sees no CUDA device" in capsys.readouterr().err
