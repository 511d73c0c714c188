"""`DemoConfig`: the settings of `hgrnn demo`, with their defaults.

Light on purpose (no torch, no numpy): the CLI reads its option defaults from these fields
when `hgrnn --help` runs. `hgrnn.apps.demo` runs the demo."""

from __future__ import annotations

from dataclasses import dataclass

# Store sizes chosen so that the whole demo (stores + two heads x 1000 steps + four
# evaluations) stays around a minute on a 2-core CPU (BENCHMARKS.md); the head sees every
# training keyframe about 15 times.
DEMO_TRAIN_VIDEOS, DEMO_VAL_VIDEOS, DEMO_KEYFRAMES = 60, 20, 50


@dataclass(frozen=True)
class DemoConfig:
    """out: output folder; train_videos / val_videos / keyframes: store sizes;
    seed: the training store's seed (validation: seed + 1) and the head's seed;
    steps, batch_size, lr: the schedule (paper: 1000, 50, 1e-4); context l, iterations J;
    scene_hidden, graph_hidden: the head's hidden sizes (None: HeadConfig's defaults);
    threads: torch CPU threads (default 1: on a busy 2-core machine torch's default of one
        per core ran the demo 5x slower; 0: torch's default).
    quick: train HGRNN alone, without the per-person baseline beside it."""
    out: str = "demo_out"
    train_videos: int = DEMO_TRAIN_VIDEOS
    val_videos: int = DEMO_VAL_VIDEOS
    keyframes: int = DEMO_KEYFRAMES
    seed: int = 1
    steps: int = 1000
    batch_size: int = 50
    lr: float = 1e-4
    context: int = 3
    iterations: int = 2
    scene_hidden: int | None = None
    graph_hidden: int | None = None
    threads: int = 1
    quick: bool = False
