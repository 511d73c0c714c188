"""`hgrnn.pipeline.trainloop`: state.pt round trip (a resumed run equals an uninterrupted
one), the one-line errors for a damaged or foreign state.pt, the atomic save, the metrics
log, the batch arithmetic, and two torchrun-like gloo ranks whose accumulated gradients
equal one process's."""

import contextlib
import json
import os
import pickle
import socket
from dataclasses import dataclass

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn as nn

from hgrnn.pipeline import trainloop as tl


class StageError(RuntimeError):
    """A stage's error class (as FinetuneError)."""


class ValueStageError(ValueError):
    """A stage's error class that is a ValueError (as DetectorError)."""


@dataclass(frozen=True)
class Config:
    width: int = 3
    lr: float = 0.1
    lr_halve_every: int = 2

    def to_json(self):
        return json.dumps({"width": self.width, "lr": self.lr,
                           "lr_halve_every": self.lr_halve_every})


CPU = torch.device("cpu")


def make(config=Config(), error=StageError, seed=0):
    torch.manual_seed(seed)
    model = nn.Linear(config.width, 2)
    return model, tl.TrainState(model, config.lr, config.lr_halve_every, CPU, error)


def train_steps(train, model, n):
    """n optimizer steps on random data drawn from torch's global RNG (what resume restores)."""
    for _ in range(n):
        train.optimizer.zero_grad(set_to_none=True)
        x = torch.randn(4, model.in_features)
        train.backward(model(x).pow(2).mean())
        train.step()


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    whole_model, whole = make()
    train_steps(whole, whole_model, 5)

    model, train = make()
    train_steps(train, model, 3)
    train.save(tmp_path / "state.pt", step=3, config_json=Config().to_json(),
               val={"mAP": 0.25}, epoch=7)
    torch.rand(10)                          # the interrupted process used its RNG further
    again_model, again = make(seed=123)     # a new process: other initial weights
    state = again.load(tmp_path / "state.pt", Config(), ("width",))
    assert state["step"] == 3 and state["val"] == {"mAP": 0.25} and state["epoch"] == 7
    assert state["saved"] == json.loads(Config().to_json())
    train_steps(again, again_model, 2)
    assert torch.equal(again_model.weight, whole_model.weight)
    assert torch.equal(again_model.bias, whole_model.bias)
    assert again.lr == whole.lr == pytest.approx(0.1 / 4)      # halved at steps 2 and 4


def test_load_applies_a_new_halving_interval_and_refuses_other_fixed_fields(tmp_path):
    model, train = make()
    train_steps(train, model, 1)
    train.save(tmp_path / "state.pt", step=1, config_json=Config().to_json(), val=None)
    _, again = make(Config(lr_halve_every=10))
    assert again.load(tmp_path / "state.pt", Config(lr_halve_every=10), ("width",))["val"] is None
    assert again.scheduler.step_size == 10
    for error in (StageError, ValueStageError):        # a ValueError stage error passes as is
        _, other = make(Config(width=3), error)
        with pytest.raises(error, match=r"state.pt: was trained with width=3, now 4; use "
                                        r"another --out$"):
            other.load(tmp_path / "state.pt", Config(width=4), ("width",), out_hint="--out")
    # a field the saved config lacks (an older file) compares with its default
    @dataclass(frozen=True)
    class Newer(Config):
        mode: str = "new"
    with pytest.raises(StageError, match="was trained with mode='old', now 'new'"):
        make()[1].load(tmp_path / "state.pt", Newer(), ("mode",), defaults={"mode": "old"})
    make()[1].load(tmp_path / "state.pt", Newer(mode="old"), ("mode",), defaults={"mode": "old"})


@pytest.mark.parametrize("error", [StageError, ValueStageError])
def test_a_damaged_state_is_one_line_naming_the_file(tmp_path, error):
    model, train = make(error=error)
    good = tmp_path / "good.pt"
    train.save(good, step=1, config_json=Config().to_json(), val=None)
    state = torch.load(good, weights_only=True)
    bad = tmp_path / "state.pt"
    damages = {
        "truncated": lambda: bad.write_bytes(good.read_bytes()[:300]),
        "not torch": lambda: bad.write_text("hello"),
        "no optimizer": lambda: torch.save({k: v for k, v in state.items()
                                            if k != "optimizer"}, bad),
        "bad rng": lambda: torch.save(dict(state, rng=torch.zeros(3, dtype=torch.uint8)), bad),
        "bad weights": lambda: torch.save(dict(state, model={"weight": torch.zeros(5)}), bad),
        "bad config": lambda: torch.save(dict(state, config="{not json"), bad),
    }
    for name, damage in damages.items():
        damage()
        with pytest.raises(error) as err:
            make(error=error)[1].load(bad, Config(), ("width",))
        text = str(err.value)
        assert text.startswith(f"{bad}: ") and "damaged" in text, (name, text)
        assert "\n" not in text and "weights_only" not in text, (name, text)
        assert err.value.__cause__ is None and err.value.__suppress_context__, name
    with pytest.raises(error, match="no such resume state"):
        train.load(tmp_path / "missing.pt", Config(), ())


def test_damaged_state_guard_passes_other_errors_and_the_stage_error():
    with pytest.raises(StageError, match=r"^p: damaged resume state \(KeyError: 'epoch'\); "
                                         r"restore it from a copy, or start a new run in "
                                         r"another out_dir$"):
        with tl.damaged_state_guard("p", StageError):
            {}["epoch"]
    with pytest.raises(StageError, match="^as is$"):
        with tl.damaged_state_guard("p", StageError):
            raise StageError("as is")
    with pytest.raises(ZeroDivisionError):               # not a sign of a damaged file
        with tl.damaged_state_guard("p", StageError):
            1 / 0


def test_save_file_is_atomic_and_a_write_error_is_one_stage_error(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    tl.save_file({"a": torch.ones(2)}, path, StageError)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]
    real_save = torch.save

    def full_disk(obj, f):
        real_save(obj, f)                                # a part is written, then no space
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(StageError, match=f"^{path}: cannot write: No space left on device"):
        tl.save_file({"a": torch.zeros(2)}, path, StageError)
    monkeypatch.undo()
    with pytest.raises((pickle.PicklingError, AttributeError)):  # not a write error: as is
        tl.save_file({"a": lambda: 0}, path, StageError)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]


def test_metrics_log_is_written_by_rank_0_only_and_flushed_per_line(tmp_path):
    log = tl.MetricsLog(tmp_path / "metrics.jsonl", rank=0)
    log.write({"step": 1, "loss": 0.5})
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1, "loss": 0.5}\n'
    log.write({"step": 2})
    log.close()
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
    other = tl.MetricsLog(tmp_path / "rank1.jsonl", rank=1)
    other.write({"step": 1})
    other.close()
    assert not (tmp_path / "rank1.jsonl").exists()


def test_run_folder_config_and_batch_arithmetic(tmp_path):
    out, state, ckpt = tl.run_folder(tmp_path / "a" / "run", "detector.pt", rank=1)
    assert not out.exists() and state == out / "state.pt" and ckpt == out / "detector.pt"
    tl.run_folder(tmp_path / "a" / "run", "detector.pt", rank=0)
    assert out.is_dir()
    tl.write_run_config(out, Config(), world=2, micro=3, failed={"v": "bad"})
    assert json.loads((out / "config.json").read_text()) == {
        "width": 3, "lr": 0.1, "lr_halve_every": 2, "world_size": 2, "micro_batch": 3,
        "failed": {"v": "bad"}}
    for batch in range(1, 40):
        for world in (1, 2, 3, 8):
            for accumulate in (1, 2, 5):
                micro = tl.micro_batch(batch, world, accumulate)
                assert micro * world * accumulate >= batch             # never fewer samples
                assert (micro - 1) * world * accumulate < batch        # the smallest such
    assert tl.micro_batch(50, 8, 1) == 7 and tl.micro_batch(20, 1, 1) == 20
    assert [s for s in range(1, 12) if tl.due(s, 4, 11)] == [4, 8, 11]


def test_single_process_needs_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    rank, world, local_rank, device = tl.setup_distributed("cpu")
    assert (rank, world, local_rank, device) == (0, 1, 0, CPU)
    model = nn.Linear(2, 2)
    assert tl.wrap_ddp(model, world, device) is model
    with tl.no_sync(model, last=False):                  # a plain module: nothing to skip
        pass
    tl.barrier(world)                                     # no process group: returns
    with tl.autocast(CPU):                                # fp32 on the CPU
        assert model(torch.ones(1, 2)).dtype == torch.float32


# ----------------------------------------------------------------------------- two ranks

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data(step, micro_step, rank):
    g = torch.Generator().manual_seed(1000 * step + 10 * micro_step + rank)
    return torch.randn(3, 4, generator=g)


def _loss(model, x, accumulate):
    return model(x).pow(2).mean() / accumulate


def _rank(rank, port, out):
    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    got_rank, world, _, device = tl.setup_distributed("cpu", num_threads=1)
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    net = tl.wrap_ddp(model, world, device)
    assert not isinstance(tl.no_sync(net, last=False), contextlib.nullcontext)
    assert isinstance(tl.no_sync(net, last=True), contextlib.nullcontext)
    train = tl.TrainState(model, 0.1, 1, device, RuntimeError)
    for step in range(2):
        train.optimizer.zero_grad(set_to_none=True)
        for m in range(2):
            with tl.no_sync(net, last=m == 1):
                train.backward(_loss(net, _data(step, m, got_rank), 2))
        train.step()
    tl.barrier(world)
    torch.save({"rank": got_rank, "world": world,
                "weight": model.weight.detach().clone()}, f"{out}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_two_gloo_ranks_average_accumulated_gradients_like_one_process(tmp_path):
    # fork: the ranks need not import torch again (seconds each on a small machine)
    mp.start_processes(_rank, args=(_free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method="fork")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert [(r["rank"], r["world"]) for r in ranks] == [(0, 2), (1, 2)]
    # one process over both ranks' micro-batches: the mean of the 2 ranks' gradients
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    train = tl.TrainState(model, 0.1, 1, CPU, RuntimeError)
    for step in range(2):
        train.optimizer.zero_grad(set_to_none=True)
        for m in range(2):
            for r in range(2):
                train.backward(_loss(model, _data(step, m, r), 2) / 2)
        train.step()
    torch.testing.assert_close(ranks[0]["weight"], ranks[1]["weight"], rtol=0, atol=0)
    torch.testing.assert_close(ranks[0]["weight"], model.weight.detach(), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- the loop

@dataclass(frozen=True)
class LoopConfig:
    steps: int = 5
    accumulate: int = 2
    log_every: int = 2
    val_every: int = 3
    checkpoint_every: int = 4


class ToyStage(tl.Stage):
    """A linear model on random data; records what the loop asked of it."""

    chart = {"title": "toy", "val_key": "mAP", "val_label": "val (%)"}

    def __init__(self, model, validates=True):
        self.model, self.validates = model, validates
        self.calls = []

    def micro_step(self):
        self.calls.append("micro")
        loss = self.model(torch.randn(4, self.model.in_features)).pow(2).mean()
        return loss, {"loss": float(loss.detach()), "samples": 4}

    def train_record(self, step, window, seconds, lr):
        return {"loss": window["loss"] / window["n"], "lr": lr, "samples": window["samples"]}

    def validate(self, step):
        self.calls.append(("validate", step))
        return {"mAP": step / 10}

    def save(self, step, val):
        self.calls.append(("save", step, val and val["mAP"]))
        torch.save({"step": step}, self.path)

    def close(self):
        self.calls.append("close")


def run_toy(tmp_path, config, step=0, validates=True, validate_first=False):
    model, train = make()
    stage = ToyStage(model, validates)
    stage.path = tmp_path / "ckpt.pt"
    metrics = tl.MetricsLog(tmp_path / "metrics.jsonl", rank=0)
    result = tl.run_steps(stage, train, model, config, step=step, last_val=None, world=1, rank=0,
                          metrics_log=metrics, checkpoint_path=stage.path, progress=False,
                          desc="toy", validate_first=validate_first)
    return result, stage.calls


def test_run_steps_logs_validates_and_saves_on_schedule(tmp_path):
    (step, last_val), calls = run_toy(tmp_path, LoopConfig(), validate_first=True)
    assert step == 5 and last_val == {"mAP": 0.5}
    events = [c for c in calls if c != "micro"]
    assert events == [("validate", 0), ("validate", 3), ("save", 3, 0.3), ("save", 4, 0.3),
                      ("validate", 5), ("save", 5, 0.5), "close"]
    assert calls.count("micro") == 5 * 2                      # accumulate micro-batches a step
    rows = tl.read_metrics(tmp_path / "metrics.jsonl")
    assert [(r["step"], r["split"]) for r in rows] == [
        (0, "val"), (2, "train"), (3, "val"), (4, "train"), (5, "train"), (5, "val")]
    assert [r["samples"] for r in rows if r["split"] == "train"] == [16, 16, 8]
    assert (tmp_path / "loss.png").stat().st_size > 5000


def test_run_steps_of_a_finished_run_writes_a_missing_checkpoint(tmp_path):
    (step, _), calls = run_toy(tmp_path, LoopConfig(), step=5, validates=False)
    assert step == 5 and calls == ["close", ("save", 5, None)]
    (step, _), calls = run_toy(tmp_path, LoopConfig(), step=5, validates=False)
    assert calls == ["close"]                                 # it exists now: nothing to do


def test_loss_chart_of_one_step_shows_the_point_and_warns_nothing(tmp_path, monkeypatch):
    import warnings

    import matplotlib.pyplot as plt

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)       # keep the figures to read
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # "No artists with labels..."
        assert tl.plot_loss([{"step": 1, "split": "train", "loss": 0.7}], tmp_path / "a.png")
        assert tl.plot_loss([{"step": 0, "split": "val", "mAP": 0.1}], tmp_path / "b.png")
    line = figures[0].axes[0].lines[0]
    assert line.get_marker() == "o" and list(line.get_xdata()) == [1]
    lo, hi = figures[0].axes[0].get_xlim()
    assert lo < 1 < hi
    assert not tl.plot_loss([], tmp_path / "c.png")
    plt.close("all")
