"""Time of one training step's forward + backward of the head, graph RNN vs attention.

A batch shaped like the paper's schedule: 50 keyframes with l = 3 windows, persons per
keyframe 1..12 (1, 1, 1, 2, 2, 3, 3, 4, 6, 12 repeated: 155 persons, up to 12 in one
keyframe), C = 64 (the synthetic stores' width), K = 13, default hidden sizes, one torch
thread. Prints the median over 12 repetitions for each relation:

    python benchmarks/bench_relation.py
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import torch

from hgrnn.hgrnn_head.model import HeadConfig, HGRNNHead

C, K, L = 64, 13, 7
COUNTS = [1, 1, 1, 2, 2, 3, 3, 4, 6, 12] * 5


def make_batch(counts, seed=0):
    g = torch.Generator().manual_seed(seed)
    B, P = len(counts), sum(counts)
    keyframe = torch.repeat_interleave(torch.arange(B), torch.tensor(counts))
    xy = torch.rand(P, 2, generator=g) * 0.5
    return SimpleNamespace(
        clip=torch.randn(B, L, C, generator=g), feats=torch.randn(P, C, generator=g),
        keyframe=keyframe, boxes=torch.cat([xy, xy + 0.1 + 0.4 * torch.rand(P, 2, generator=g)], 1),
        ctx_feats=torch.randn(P * L, C, generator=g),
        ctx_segment=(keyframe[:, None] * L + torch.arange(L)).reshape(-1).sort().values)


def main():
    torch.set_num_threads(1)
    batch = make_batch(COUNTS)
    for relation in ("gru", "attention"):
        torch.manual_seed(0)
        model = HGRNNHead(HeadConfig(feature_dim=C, num_classes=K, relation=relation))
        times = []
        for _ in range(12):
            t0 = time.perf_counter()
            model(batch).sum().backward()
            times.append(time.perf_counter() - t0)
        print(f"{relation:9s} forward+backward {1000 * sorted(times)[len(times) // 2]:.1f} ms "
              f"(median of {len(times)}; {len(COUNTS)} keyframes, {sum(COUNTS)} persons)")


if __name__ == "__main__":
    main()
