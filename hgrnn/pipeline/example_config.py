"""`ExampleConfig`: the settings of `hgrnn render-example`, with their defaults.

Light on purpose (no numpy): the CLI reads its option defaults from these fields when
`hgrnn --help` runs. `hgrnn.pipeline.example` renders the dataset."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExampleConfig:
    """videos: number of videos (ids clip1, clip2, ...); seconds: length of each (keyframes
    at 1 .. seconds-1); fps, size = (W, H): frame rate and frame size in pixels; persons:
    persons per video; seed: everything is a function of it."""
    videos: int = 3
    seconds: int = 5
    fps: float = 10
    size: tuple[int, int] = (160, 120)
    persons: int = 3
    seed: int = 0
