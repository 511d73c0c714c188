"""`PredictConfig`: what `hgrnn predict` does besides extraction, with its defaults.

Light on purpose (no torch, no numpy): the CLI reads its option defaults from these fields
when `hgrnn --help` runs. `hgrnn.apps.predict` runs it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PredictConfig:
    """What `predict_videos` does besides extraction (the extraction settings are an
    `ExtractConfig`).

    checkpoint: a train-head checkpoint (RUN/last.pt or RUN). out: output folder.
    keep_store: write the features to OUT/features.h5 (reused by later runs) instead of a
        temporary store. nms_iou, min_score: as `hgrnn eval` (min_score drops result rows
        below it from results.csv); nms_iou equals `hgrnn.hgrnn_head.infer.DEFAULT_NMS_IOU`
        (a test holds them equal; that module imports torch). draw_min_score, top_k: drawn
        labels (actions scored at least draw_min_score, the top_k best per person). draw:
        write OUT/<video>.mp4.
    max_size: longer side of the drawn videos (None: the input's size); min_size: their
    shorter side at least (scaled up; None: the input's size).
    """
    checkpoint: str
    out: str
    keep_store: bool = True
    nms_iou: float = 0.5
    min_score: float = 0.0
    draw_min_score: float = 0.3
    top_k: int = 3
    draw: bool = True
    max_size: int | None = None
    min_size: int | None = None
    device: str = "auto"
    num_threads: int = 1
    progress: bool = True
