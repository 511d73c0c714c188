"""docs/own-data.md runs as written: every ```bash / ```sh block of the page, in order, in one
empty folder, with `hgrnn` on PATH (this checkout's). Then the files the page promises are
checked: the converters' CSVs equal the example's ground truth for clip1, the stores hold
the custom label map, eval wrote its results."""

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "own-data.md"


def shell_blocks(text: str) -> list[str]:
    """The ```bash and ```sh blocks of a markdown page, in order."""
    return [m.group(2) for m in re.finditer(r"^```(bash|sh)\n(.*?)^```", text, re.M | re.S)]


def test_the_page_has_its_blocks():
    blocks = shell_blocks(PAGE.read_text())
    joined = "\n".join(blocks)
    assert len(blocks) >= 6
    for command in ("render-example", "convert cvat-video", "convert via", "check-data",
                    "extract-features", "train-head", "hgrnn eval ", "eval-csv", "predict"):
        assert command in joined, command


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """Runs the page: about 35 s of CPU, mostly six torch start-ups (2.5 s each) and the
    random I3D's extraction."""
    work = tmp_path_factory.mktemp("own-data")
    bin_dir = work / ".bin"
    bin_dir.mkdir()
    shim = bin_dir / "hgrnn"
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -m hgrnn \"$@\"\n")
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    outputs = []
    for block in shell_blocks(PAGE.read_text()):
        proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block], cwd=work, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"block failed:\n{block}\n{proc.stdout}\n{proc.stderr}"
        outputs.append(proc.stdout + proc.stderr)
    return work, outputs


def _rows(path):
    rows = {}
    for line in Path(path).read_text().splitlines():
        vid, ts, *box, action, pid = line.split(",")
        rows[(vid, int(ts), int(pid), int(action))] = np.asarray(box, float)
    return rows


@pytest.mark.slow
def test_converters_reproduce_the_ground_truth(ran):
    work, _ = ran
    truth = {k: v for k, v in _rows(work / "example" / "annotations.csv").items()
             if k[0] == "clip1"}
    cvat = _rows(work / "clip1_from_cvat.csv")
    via = _rows(work / "clip1_from_via.csv")
    # CVAT tracks also give keyframe 0; VIA boxes were drawn 40 ms after each second
    assert {k for k in cvat if k[1] >= 1} == set(truth) == set(via)
    for key, box in truth.items():
        np.testing.assert_allclose(cvat[key], box, atol=1e-3)
        np.testing.assert_allclose(via[key], box, atol=0.01)


@pytest.mark.slow
def test_stores_results_and_reports(ran):
    from hgrnn.data.windows import FeatureStore

    work, outputs = ran
    text = "\n".join(outputs)
    assert "check-data: 0 error(s)" in text
    for name, videos in (("train.h5", 2), ("val.h5", 1)):
        fs = FeatureStore(work / name)
        assert fs.label_map.ids == (101, 102, 103)
        assert len(fs.video_ids) == videos
    results = (work / "runs" / "own" / "eval" / "results.csv").read_text().splitlines()
    assert results and {line.split(",")[6] for line in results} <= {"101", "102", "103"}
    assert re.search(r"^\d+\.\d{4}$", text, re.M)             # eval-csv --quiet: mAP in %
    predicted = (work / "predictions" / "results.csv").read_text().splitlines()
    assert {line.split(",")[0] for line in predicted} == {"clip3"}
    assert (work / "predictions" / "clip3.mp4").stat().st_size > 0
