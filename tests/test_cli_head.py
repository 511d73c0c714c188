"""`hgrnn train-head`'s command line: defaults from the config dataclasses, --config files,
the run's config.json, --resume remembering the run's options."""

import json

import pytest
from click.testing import CliRunner
from test_train import make_store

from hgrnn.cli import head as cli_head
from hgrnn.cli import main
from hgrnn.hgrnn_head.config import HeadConfig, TrainConfig

TINY = ["--context", "1", "--scene-hidden", "6", "--graph-hidden", "8", "--batch-size", "4",
        "--lr", "1e-3", "--device", "cpu", "--log-every", "2", "--checkpoint-every", "2", "-q"]


def run(*args):
    result = CliRunner().invoke(main, ["train-head", *map(str, args)])
    return result.exit_code, result.output


def test_option_defaults_are_the_dataclass_fields():
    """A default is written once: every train-head option that is a HeadConfig/TrainConfig
    field shows that field's default."""
    checked = 0
    for param in cli_head.train_head_cmd.params:
        for cls in (HeadConfig, TrainConfig):
            if param.name in cls.__dataclass_fields__:
                want = cls.__dataclass_fields__[param.name].default
                got = param.default if param.name != "streams" else \
                    tuple(param.default.split("+"))
                assert got == want, param.name
                checked += 1
    assert checked >= 30


def test_config_json_and_toml_and_the_run_folder_config(tmp_path):
    store = make_store(tmp_path / "s.h5")
    (tmp_path / "c.toml").write_text(f'store = "{store}"\nsteps = 4\ngraph-hidden = 8\n'
                                     'streams = ["rgb"]\nrelation = "attention"\n'
                                     'attention_heads = 2\n')
    code, out = run("--config", tmp_path / "c.toml", "--out", tmp_path / "a", *TINY,
                    "--steps", "2")                  # the command line wins over the file
    assert code == 0, out
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert saved["steps"] == 2 and saved["relation"] == "attention" and saved["store"] == store
    assert saved["streams"] == "rgb" and saved["out"] == str(tmp_path / "a")
    # the run folder's config.json repeats the run elsewhere: the same weights
    code, out = run("--config", tmp_path / "a" / "config.json", "--out", tmp_path / "b")
    assert code == 0, out
    import torch
    a, b = (torch.load(tmp_path / r / "last.pt", weights_only=True) for r in ("a", "b"))
    assert a["head"] == b["head"] and all(torch.equal(a["model"][k], b["model"][k])
                                          for k in a["model"])
    (tmp_path / "bad.json").write_text('{"stepz": 3}')
    code, out = run("--config", tmp_path / "bad.json", "--store", store, "--out", tmp_path / "c")
    assert code == 1 and "bad.json: unknown train-head option(s) stepz" in out
    (tmp_path / "bad2.json").write_text('{"model": "transformer"}')
    code, out = run("--config", tmp_path / "bad2.json", "--store", store, "--out", tmp_path / "c")
    assert code == 1 and "bad2.json: model:" in out and "transformer" in out
    code, out = run("--out", tmp_path / "c")
    assert code == 2 and "--store" in out


def test_resume_remembers_the_options_and_says_the_steps_it_trained(tmp_path):
    store = make_store(tmp_path / "s.h5")
    code, out = run("--store", store, "--out", tmp_path / "r", "--val-store", store,
                    "--val-every", "2", "--steps", "2", "--model", "graph", *TINY)
    assert code == 0 and "trained 2 steps" in out and "best validation at step 2" in out
    code, out = run("--out", tmp_path / "r", "--resume", "--steps", "4")
    assert code == 0, out
    assert "trained 2 steps (steps 3-4 of the run)" in out
    assert "validation frame-mAP" in out              # the run's --val-store, remembered
    ckpt_head = json.loads((tmp_path / "r" / "config.json").read_text())
    assert ckpt_head["model"] == "graph" and ckpt_head["steps"] == 4
    code, out = run("--out", tmp_path / "r", "--resume", "--steps", "4")
    assert code == 0 and "already at step 4: trained 0 steps" in out
    code, out = run("--out", tmp_path / "r", "--resume", "--steps", "6", "--lr", "1e-2")
    assert code == 1 and "--lr 0.001 -> 0.01" in out


@pytest.mark.parametrize("flag", ["--init-from"])
def test_init_from_refuses_other_shapes_in_one_line(tmp_path, flag):
    store = make_store(tmp_path / "s.h5")
    assert run("--store", store, "--out", tmp_path / "a", "--steps", "2", *TINY)[0] == 0
    code, out = run("--store", store, "--out", tmp_path / "b", "--steps", "2", *TINY,
                    "--graph-hidden", "12", flag, tmp_path / "a")
    assert code == 1 and len(out.strip().splitlines()) == 1
    assert "--graph-hidden 8 -> 12" in out
