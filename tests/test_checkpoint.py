"""hgrnn_head/checkpoint.py: checkpoint checks, device and thread helpers (a checkpoint
written by a real training run: test_train.py / test_infer.py)."""

import pytest
import torch

from hgrnn.hgrnn_head.checkpoint import (CHECKPOINT_FORMAT, CHECKPOINT_VERSION, HeadError,
                                         load_checkpoint, open_store, resolve_device,
                                         torch_threads)


def test_load_checkpoint_refuses_foreign_and_other_versions(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(HeadError, match=r"run/last.pt: no such checkpoint"):
        load_checkpoint(run)                                   # a run folder means its last.pt
    torch.save({"format": "something else"}, run / "last.pt")
    with pytest.raises(HeadError, match="not an hgrnn head checkpoint"):
        load_checkpoint(run)
    torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION + 1}, run / "last.pt")
    with pytest.raises(HeadError, match=f"version {CHECKPOINT_VERSION + 1}"):
        load_checkpoint(run / "last.pt")
    torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION}, run / "last.pt")
    with pytest.raises(HeadError, match="damaged checkpoint: key 'step' is missing"):
        load_checkpoint(run)
    from hgrnn.hgrnn_head.model import HeadConfig

    complete = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "step": 0,
                "model": {}, "optimizer": {}, "head": HeadConfig(4, 2).to_dict(), "train": {},
                "label_map": "[]", "feature_dim": 4, "store_fingerprint": "", "store_path": "",
                "rng_torch": torch.get_rng_state()}
    torch.save(complete, run / "last.pt")
    assert load_checkpoint(run)["path"] == str(run / "last.pt")
    torch.save(dict(complete, head={"no such field": 1}), run / "last.pt")
    with pytest.raises(HeadError, match="'head' is not a head config"):
        load_checkpoint(run)


def test_resolve_device_and_open_store_errors(tmp_path):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(HeadError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(HeadError, match="missing.h5: no such store"):
        open_store(tmp_path / "missing.h5", "gt")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5" * 100)
    with pytest.raises(HeadError, match="junk.h5"):
        open_store(tmp_path / "junk.h5", "gt")


def test_torch_threads_sets_and_restores():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(0):                                     # 0: leave it
        assert torch.get_num_threads() == before
