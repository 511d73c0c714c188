"""Resume and scale-out: which videos a store (and its rank shards) hold already, the ranks
of a torchrun launch (`Dist`), their devices, the shard files and their final merge."""

from __future__ import annotations

import datetime
import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as torch_dist

from hgrnn.data.store import open_h5, video_names
from hgrnn.data.store_merge import merge_stores


def shard_path(out, rank: int) -> str:
    """`<dir>/<stem>.rank<k>.h5` for output `<dir>/<stem>.h5`."""
    out = Path(out)
    return str(out.with_name(f"{out.stem}.rank{rank}.h5"))


def existing_shards(out) -> list[str]:
    """Shard files `<stem>.rank<k>.h5` of output `out` that exist now, sorted by k."""
    out = Path(out)
    pattern = glob.escape(str(out.with_name(out.stem))) + ".rank*.h5"
    found = [p for p in glob.glob(pattern) if re.search(r"\.rank\d+\.h5$", p)]
    return sorted(found, key=lambda p: int(re.search(r"\.rank(\d+)\.h5$", p).group(1)))


def shard_items(items: list, rank: int, world: int) -> list:
    """The items of `rank` when `items` are split round-robin over `world` ranks."""
    return items[rank::world]


@dataclass
class Dist:
    """This process's rank in a torchrun launch (WORLD_SIZE > 1), or the only one."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    active: bool = False

    @classmethod
    def from_env(cls) -> "Dist":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        if not torch_dist.is_initialized():
            # gloo on CPU for barriers/object gathers only; ranks may wait hours for others
            torch_dist.init_process_group("gloo", timeout=datetime.timedelta(days=7))
        return cls(torch_dist.get_rank(), torch_dist.get_world_size(),
                   int(os.environ.get("LOCAL_RANK", "0")), True)

    def barrier(self):
        if self.active:
            torch_dist.barrier()

    def gather(self, obj) -> list:
        if not self.active:
            return [obj]
        out = [None] * self.world
        torch_dist.all_gather_object(out, obj)
        return out


def device_for(pref: str, dist: Dist, cuda_available: bool) -> torch.device:
    """The device of this rank: "auto" -> cuda:LOCAL_RANK when CUDA is available, else cpu;
    a bare "cuda" under torchrun -> cuda:LOCAL_RANK (every rank its own GPU, not all GPU 0);
    anything else ("cpu", "cuda:N") as given."""
    if pref == "auto":
        return torch.device(f"cuda:{dist.local_rank}" if cuda_available else "cpu")
    if pref == "cuda" and dist.active:
        return torch.device(f"cuda:{dist.local_rank}")
    return torch.device(pref)


def complete_videos(path) -> set:
    """Complete video ids of an existing store file (empty set when absent)."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return set()
    with open_h5(path) as f:
        return set(video_names(f))


def merge_shards(out: str, show: bool) -> None:
    """Merge the output (if it exists) and every rank shard into the output; delete the
    shards."""
    all_shards = existing_shards(out)
    inputs = ([out] if os.path.exists(out) else []) + all_shards
    merging = out + ".merging.h5"
    merge_stores(merging, inputs, overwrite=True, progress=show)
    os.replace(merging, out)
    for s in all_shards:
        os.remove(s)
