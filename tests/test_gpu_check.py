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
                                                                 monkeypatch, capsys):
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
    # a timeout is no wrong result (not 1), but what it would have told is unknown: its own
    # exit status and an `unchecked:` line
    assert code == 3 and report["unchecked"] == ["slow"] and report["failed"] == []
    assert "unchecked: slow (timeout: ran past its limit of 0.5 s)" in capsys.readouterr().out

    code = gpu_check.main(["--device", "cpu", "--out", str(tmp_path), "--budget", "2"])
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    status = {r["name"]: r["status"] for r in report["parts"]}
    assert status["late"] == "skipped" and "budget" in report["parts"][-1]["note"]
    assert code == 3 and "late" in report["unchecked"]
    assert "unchecked: " in capsys.readouterr().out


def test_first_log_line_gives_the_package_versions(gpu_check, tmp_path, monkeypatch):
    import h5py
    import numpy
    import torch

    parts = (gpu_check.Part("prepare", lambda ctx: {"summary": "nothing"}, "setup", 10, 0.1),)
    monkeypatch.setattr(gpu_check, "PARTS", parts)
    assert gpu_check.main(["--device", "cpu", "--out", str(tmp_path)]) == 0
    first = (tmp_path / "gpu_check.log").read_text().splitlines()[0]
    line = first.split("] ", 1)[1]
    assert line.startswith(f"gpu_check: torch {torch.__version__}, torchvision ")
    for name in ("numpy", "h5py", "click", "av", "PIL", "pyarrow"):
        assert f", {name} " in line, name
    assert f"numpy {numpy.__version__}" in line and f"h5py {h5py.__version__}" in line
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["versions"]["torch"] == torch.__version__


def test_master_video_is_renamed_when_complete_and_reused_work_decodes(gpu_check, tmp_path,
                                                                       monkeypatch):
    import torch

    def context():
        return gpu_check.Context(device=torch.device("cpu"), sizes=gpu_check.TINY,
                                 work=tmp_path / "work", workers=1, threads=1,
                                 log=gpu_check.Log(tmp_path / "log"))

    real = gpu_check.render_ava_video

    def cut_short(path, *args, **kwargs):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a video")
        raise gpu_check.PartTimeout("ran past its limit")

    monkeypatch.setattr(gpu_check, "render_ava_video", cut_short)
    with pytest.raises(gpu_check.PartTimeout):
        gpu_check.ava_videos(context(), 1)
    assert not (tmp_path / "work" / "ava" / "master.mp4").exists()   # not taken as complete
    monkeypatch.setattr(gpu_check, "render_ava_video", real)
    gpu_check.ava_videos(context(), 1)
    assert (tmp_path / "work" / "ava" / "master.mp4").stat().st_size > 1000
    # a reused --work: the master is found, its bit rate read from the file
    values = gpu_check.figure_decode(context())
    assert values["video_kbit_per_s"] > 0 and values["frames_decoded"] > 0


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
