"""`TrackConfig`: how `hgrnn.track` links persons across keyframes, with its defaults.

Light on purpose (no numpy, no scipy): the CLI reads its option defaults from these fields
when `hgrnn --help` runs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrackConfig:
    """How persons are linked (`hgrnn.track`'s module docstring).

    max_gap: keyframes a track may go unmatched and still be continued.
    min_iou: least IoU of a track's last box and a person's box to link them.
    feature_weight: weight w of the features' cosine similarity in the similarity (used
        only when features are given).
    min_cos: least cosine similarity that links a pair whose IoU is below min_iou (only
        with features).
    """
    max_gap: int = 1
    min_iou: float = 0.4
    feature_weight: float = 0.5
    min_cos: float = 0.8

    def __post_init__(self):
        if self.max_gap < 0:
            raise ValueError(f"max_gap must be >= 0, got {self.max_gap}")
        if not 0.0 <= self.min_iou <= 1.0:
            raise ValueError(f"min_iou must be in [0, 1], got {self.min_iou}")
        if not 0.0 <= self.feature_weight <= 1.0:
            raise ValueError(f"feature_weight must be in [0, 1], got {self.feature_weight}")
