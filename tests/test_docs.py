"""The doc pages run as written: every ```bash block of the pages in PAGES, in order, in one
folder per page, with `hgrnn` and `python` on PATH (this checkout's).

A machine without AVA, pretrained weights or a GPU runs them on stand-ins, all made here:
`stand_ins` writes files under the names the pages use (rendered videos with AVA ground
truth, detections and exclusions at AVA's timestamps 901..904 under `--time-offset 900`;
random I3D weights saved as `rgb_imagenet.pt` / `flow_imagenet.pt`), and TINY appends
options to every command of a kind so that it runs in seconds (click keeps the last value
of an option, so the page's own values are overridden, never edited). A page's own inputs
(a trained head, a results file) come from its `setup`. That is every difference between a
page and what runs: PAGES and TINY are the one place to read it.

A block that needs a GPU, several machines or hours is marked in its page by the line
`<!-- skip: gpu -->` (or `machines`, `hours`) before it and is not run; the test says which
blocks it skipped. docs/own-data.md runs in tests/test_docs_own_data.py; the signatures of
docs/contracts.md are checked here against the code.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SKIP_REASONS = ("gpu", "machines", "hours")

# ----------------------------------------------------------------------------- the table

#: Options appended to every command of a kind (tiny sizes; the last value of an option wins).
TINY = {
    "extract-features": "--clip-frames 8 --short-side 64 --workers 0 --quiet",
    "predict": "--clip-frames 8 --short-side 64 --workers 0 --detector-weights none "
               "--det-short-side 96 --det-threshold 0 -q",
    "train-head": "--steps 10 --batch-size 4 --val-every 0 --quiet",
    "finetune-backbone": "--steps 2 --batch-size 2 --accumulate 1 --clip-frames 8 --short-side 64 "
                         "--crop-size 64 --workers 0 --val-every 2 --val-max-keyframes 2 -q",
    "finetune-detector": "--steps 2 --val-every 2",
    "synth": "--videos 6 --keyframes 12",
    "demo": "--steps 5 --quick",
    "ablate": "--steps 5 --batch-size 4 --seeds 1 -j 1",
}

# What a page needs besides the stand-ins, made by shell commands before its first block.
_HEAD = ("hgrnn extract-features --out store_for_head.h5 --videos videos_15min "
         "--time-offset 900 --annotations ava_train_v2.1.csv --backbone-weights none\n"
         "hgrnn train-head --store store_for_head.h5 --out runs/hgrnn --context 1\n")
_RESULTS = ("python -c \"import pathlib; p = pathlib.Path('ava_val_v2.1.csv'); "
            "pathlib.Path('results.csv').write_text(''.join(l + ',0.75\\n' for l in "
            "(','.join(r.split(',')[:7]) for r in p.read_text().split())))\"\n")

#: page -> {"setup": shell run first, "subs": [(text of the page, text run)]}; subs only
#: where a page names something no stand-in can be (a trained backbone checkpoint, weights
#: torchvision would download).
PAGES = {
    "extract.md": {"subs": [("--backbone mvit_v2_s --backbone-weights default",   # a download
                             "--backbone mvit_v2_s --backbone-weights none")]},
    "predict.md": {
        "setup": _HEAD + "cp videos_15min/valB.mp4 my_clip.mp4\n"
                 "cp videos_15min/valB.mp4 a.mp4\n"
                 "python -c \"from hgrnn.pipeline.render import render_video; "
                 "render_video('b.mkv', seconds=5, fps=10, size=(192, 144))\"\n"
                 "sed -e 's/^valB,090/a,/' ava_val_predicted_boxes.csv | grep '^a,' > boxes.csv\n"
                 "sed -e 's/^valB,090/b,/' ava_val_predicted_boxes.csv | grep '^b,' >> boxes.csv\n"
                 + _RESULTS + "cp results.csv my_results.csv\n",
        "subs": [("runs/i3d-ft/backbone.pt", "none")],
    },
    "detector.md": {"setup": f"ln -s {ROOT / 'tests'} tests\n"},
    "finetune.md": {},
    "store.md": {"setup": "hgrnn synth --out train.h5 --videos 4 --keyframes 8\n"},
    "eval.md": {"setup": _RESULTS + "cp ava_val_v2.1.csv gt.csv\n"},
    "synthetic.md": {},
    "report.md": {
        "setup": _RESULTS + "cp results.csv other_results.csv\nln -s videos_15min videos\n"
                 "hgrnn synth --out val.h5 --videos 4 --keyframes 8 --seed 2\n"
                 "hgrnn synth --out tr.h5 --videos 4 --keyframes 8 --seed 1\n"
                 "hgrnn train-head --store tr.h5 --out runs/hgrnn\n",
    },
    "track.md": {},
    "features.md": {},
}


def stand_ins(work: Path) -> None:
    """AVA-named stand-ins in `work`: videos_15min/ (4 rendered videos of 5 s: trainA,
    trainB, 1j20qq1JyX4, valB), ava_{train,val}_v2.1.csv (AVA v2.1 action ids, timestamps
    901..904: video time + 900), ava_val_predicted_boxes.csv, the excluded-timestamps CSVs
    (one keyframe each), and random I3D weights in piergiaj's layout as rgb_imagenet.pt and
    flow_imagenet.pt."""
    import torch

    from hgrnn.pipeline.i3d import InceptionI3d
    from hgrnn.pipeline.render import render_labelled

    def shifted(path, out):
        rows = [line.split(",") for line in Path(path).read_text().split()]
        out.write_text("".join(",".join([r[0], f"{int(r[1]) + 900:04d}", *r[2:]]) + "\n"
                               for r in rows))

    for split, ids, seed in (("train", ["trainA", "trainB"], 1),
                             ("val", ["1j20qq1JyX4", "valB"], 2)):
        data = render_labelled(work / "render" / split, ids, seconds=5, size=(192, 144),
                               seed=seed)
        shifted(data["gt"], work / f"ava_{split}_v2.1.csv")
        if split == "val":
            shifted(data["det"], work / "ava_val_predicted_boxes.csv")
        (work / f"ava_{split}_excluded_timestamps_v2.1.csv").write_text(f"{ids[0]},0904\n")
    (work / "videos_15min").mkdir()
    for video in sorted((work / "render").glob("*/videos/*.mp4")):
        (work / "videos_15min" / video.name).symlink_to(video)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        torch.save(InceptionI3d().state_dict(), work / "rgb_imagenet.pt")
        torch.save(InceptionI3d(in_channels=2).state_dict(), work / "flow_imagenet.pt")


# ----------------------------------------------------------------------------- running a page

_BLOCK = re.compile(r"^(?:<!-- skip: (\w+) -->\n(?:\s*\n)*)?```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def page_blocks(text: str) -> list[tuple[str | None, str]]:
    """(skip reason or None, code) of every ```bash / ```sh block of a page, in order."""
    return [(m.group(1), m.group(3)) for m in _BLOCK.finditer(text)
            if m.group(2) in ("bash", "sh")]


def commands(block: str) -> list[str]:
    """The block's logical lines (continuations joined), comments kept."""
    return block.replace("\\\n", " ").splitlines()


def tiny(block: str) -> str:
    """`block` with TINY's options appended to each `hgrnn COMMAND` line (before a
    trailing comment; heredoc bodies untouched)."""
    out, heredoc = [], None
    for line in commands(block):
        if heredoc is not None:
            heredoc = None if line.strip() == heredoc else heredoc
            out.append(line)
            continue
        found = re.search(r"<<-?'?(\w+)'?", line)
        m = re.match(r"^(\s*hgrnn\s+([\w-]+))(.*?)(\s+#.*)?$", line)
        if m and m.group(2) in TINY:
            line = f"{m.group(1)}{m.group(3)} {TINY[m.group(2)]}{m.group(4) or ''}"
        out.append(line)
        if found:
            heredoc = found.group(1)
    return "\n".join(out) + "\n"


def shell_env(work: Path) -> dict:
    bin_dir = work / ".bin"
    bin_dir.mkdir(exist_ok=True)
    for name, target in (("hgrnn", f"{sys.executable} -m hgrnn"), ("python", sys.executable)):
        shim = bin_dir / name
        shim.write_text(f"#!/bin/sh\nexec {target} \"$@\"\n")
        shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    return dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def run(script: str, work: Path, env: dict, what: str) -> str:
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=work, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, f"{what} failed:\n{script}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def common(tmp_path_factory):
    root = tmp_path_factory.mktemp("stand-ins")
    stand_ins(root)
    return root


def _existing(pages):
    return [p for p in pages if (DOCS / p).exists()]


@pytest.mark.slow
@pytest.mark.parametrize("page", _existing(PAGES))
def test_page_runs_as_written(page, common, tmp_path):
    text = (DOCS / page).read_text()
    blocks = page_blocks(text)
    assert blocks, f"docs/{page}: no ```bash block"
    entry = PAGES[page]
    for old, _ in entry.get("subs", ()):
        assert old in text, f"docs/{page} no longer says {old!r}: drop it from PAGES"
    for item in common.iterdir():
        (tmp_path / item.name).symlink_to(item)
    env = shell_env(tmp_path)
    if entry.get("setup"):
        run(tiny(entry["setup"]), tmp_path, env, f"setup of {page}")
    skipped = []
    for n, (reason, code) in enumerate(blocks):
        if reason is not None:
            assert reason in SKIP_REASONS, f"docs/{page}: skip reason {reason!r}"
            skipped.append(f"{page} block {n + 1} ({reason})")
            continue
        for old, new in entry.get("subs", ()):
            code = code.replace(old, new)
        run(tiny(code), tmp_path, env, f"docs/{page} block {n + 1}")
    if skipped:
        print("skipped: " + "; ".join(skipped))


def test_every_command_block_of_the_pages_is_a_bash_block():
    """A command in a plain ``` block would escape the test: every unlabelled block of
    PAGES that starts with a command is ```bash (a usage synopsis is ```text)."""
    for page in _existing(PAGES):
        for m in re.finditer(r"^```(\w*)\n(.*?)^```", (DOCS / page).read_text(), re.MULTILINE | re.DOTALL):
            first = m.group(2).lstrip().split(" ", 1)[0]
            if first in ("hgrnn", "torchrun", "python", "PYTHONPATH=tests"):
                assert m.group(1) != "", f"docs/{page}: {m.group(2)[:60]!r}"


def test_tiny_appends_to_each_command_and_leaves_heredocs_alone():
    block = ("hgrnn synth --out a.h5 \\\n    --videos 60   # comment\npython - <<'EOF'\n"
             "hgrnn synth inside\nEOF\nhgrnn inspect a.h5\n")
    assert tiny(block).splitlines() == [
        f"hgrnn synth --out a.h5      --videos 60 {TINY['synth']}   # comment",
        "python - <<'EOF'", "hgrnn synth inside", "EOF", "hgrnn inspect a.h5"]
    marked = "<!-- skip: gpu -->\n```bash\ntorchrun x\n```\n\n```bash\nhgrnn y\n```\n"
    assert page_blocks(marked) == [("gpu", "torchrun x\n"), (None, "hgrnn y\n")]


# ----------------------------------------------------------------------------- contracts.md

_MODULES = ("hgrnn.data", "hgrnn.metrics", "hgrnn.pipeline", "hgrnn.pipeline.extract",
            "hgrnn.hgrnn_head", "hgrnn.apps", "hgrnn.console", "hgrnn.losses", "hgrnn.track",
            "hgrnn.torchfile")


def _functions() -> dict:
    """name / Class.name -> [functions of that name], over the modules of _MODULES and
    their submodules."""
    import pkgutil

    found: dict = {}
    for name in _MODULES:
        module = importlib.import_module(name)
        modules = [module] + [importlib.import_module(info.name) for info in
                              pkgutil.walk_packages(getattr(module, "__path__", []), f"{name}.")
                              if not info.name.endswith("__main__")]
        for mod in modules:
            for key, obj in vars(mod).items():
                if getattr(obj, "__module__", "").startswith("hgrnn") and inspect.isfunction(obj):
                    if obj not in found.setdefault(key, []):
                        found[key].append(obj)
                if inspect.isclass(obj) and obj.__module__.startswith("hgrnn"):
                    for attr, value in vars(obj).items():
                        value = getattr(value, "__func__", value)
                        if inspect.isfunction(value) and value not in found.setdefault(
                                f"{key}.{attr}", []):
                            found[f"{key}.{attr}"].append(value)
    return found


@pytest.mark.slow
def test_contracts_name_the_parameters_of_the_code():
    """Every `def name(...)` of docs/contracts.md names the function's parameters in order
    (`...` in the list: the ones given are a subset), with the defaults the code has."""
    functions = _functions()
    problems = []
    for section in re.split(r"^## ", (DOCS / "contracts.md").read_text(), flags=re.MULTILINE)[1:]:
        cls = None
        for m in re.finditer(r"^(\s*)(?:class (\w+)|def (\w+)\(((?:[^()]|\([^()]*\))*)\))",
                             section, re.MULTILINE):
            indent, class_name, name, params = m.groups()
            if class_name:
                cls = class_name
                continue
            key = f"{cls}.{name}" if cls and indent else name
            candidates = functions.get(key) or functions.get(name)
            if not candidates:
                problems.append(f"{key}: not found")
                continue
            found = [_differences(key, func, params) for func in candidates]
            if all(found):             # two functions of one name (plot_loss): either fits
                problems += found[0]
    assert not problems, "\n".join(problems)


def _differences(key, func, params: str) -> list[str]:
    """How the parameter list `params` of contracts.md differs from `func`'s."""
    sig = inspect.signature(func)
    code = [p for p in sig.parameters if p not in ("self", "cls")]
    doc, defaults, problems = [], {}, []
    for part in re.split(r",(?![^()\[\]{}]*[)\]}])", params):
        part = part.strip()
        named = re.match(r"\**(\w+)[^=]*(?:=\s*(.+))?$", part)   # name[: type][=default]
        if not named or part in ("*", "..."):
            continue
        if named.group(1) not in ("self", "cls"):
            doc.append(named.group(1))
            if named.group(2):
                defaults[named.group(1)] = named.group(2).strip()
    if "..." in params:
        if not set(doc) <= set(code):
            problems.append(f"{key}: {doc} not all in {code}")
    elif doc != code:
        problems.append(f"{key}: contracts.md {doc}, code {code}")
    for param, text in defaults.items():
        default = sig.parameters[param].default if param in sig.parameters else None
        try:
            value = eval(text, {}, {})
        except (NameError, SyntaxError, TypeError):   # RANDOM_SEED, "a"|"b"
            continue
        if value is not Ellipsis and value != default:
            problems.append(f"{key}: {param}={text} in contracts.md, {default!r} in the code")
    return problems
