"""Random, valid, AVA-like feature-store content for tests and benchmarks.

Not part of the library: tests import it as ``storegen`` (pytest puts tests/ on sys.path),
benchmarks put tests/ on sys.path first (as they do for the tests' reference evaluator).
"""

import numpy as np

from hgrnn.data.store import PersonSet


# AVA-like persons per keyframe: mostly 1-4, a thin tail to 15 (a few empty keyframes)
AVA_PERSON_COUNTS = np.arange(16)
AVA_PERSON_PROBS = np.array([0.03, 0.30, 0.26, 0.16, 0.09, 0.05, 0.035, 0.025, 0.016, 0.01,
                             0.008, 0.006, 0.004, 0.003, 0.002, 0.001])
AVA_PERSON_PROBS = AVA_PERSON_PROBS / AVA_PERSON_PROBS.sum()


def random_person_set(rng, counts, feature_dim, num_classes=None, gt=True) -> PersonSet:
    """A random valid PersonSet with `counts[t]` persons at keyframe t (tests, benchmarks)."""
    counts = np.asarray(counts, np.int64)
    N = int(counts.sum())
    xy = rng.uniform(0.0, 0.6, (N, 2)).astype(np.float32)
    wh = rng.uniform(0.05, 0.4, (N, 2)).astype(np.float32)
    boxes = np.concatenate([xy, np.minimum(xy + wh, 1.0)], axis=1)
    labels = None
    if num_classes:
        labels = (rng.random((N, num_classes)) < 3.0 / num_classes).astype(np.uint8)
    return PersonSet(
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        boxes=boxes,
        feats=rng.standard_normal((N, feature_dim), dtype=np.float32).astype(np.float16),
        scores=np.ones(N, np.float32) if gt else rng.uniform(0.5, 1.0, N).astype(np.float32),
        labels=labels if gt else None,
        person_ids=np.arange(N, dtype=np.int32) % 20 if gt else None,
    )


def random_video(rng, feature_dim, num_classes, keyframes, start=902, step=1, gt=True,
                 det=True, counts=None) -> dict:
    """Keyword arguments for `StoreWriter.add_video` (all but the id) of a random AVA-like
    video: `keyframes` timestamps start, start+step, ..., persons per keyframe drawn like
    AVA's (AVA_PERSON_PROBS) unless `counts` is given; detections get 0..2 extra persons."""
    T = keyframes
    if counts is None:
        counts = rng.choice(AVA_PERSON_COUNTS, size=T, p=AVA_PERSON_PROBS)
    out = {
        "timestamps": start + step * np.arange(T),
        "clip": rng.standard_normal((T, feature_dim), dtype=np.float32).astype(np.float16),
        "width": 320, "height": 240,
    }
    if gt:
        out["gt"] = random_person_set(rng, counts, feature_dim, num_classes, gt=True)
    if det:
        det_counts = np.maximum(np.asarray(counts) + rng.integers(-1, 3, T), 0)
        out["det"] = random_person_set(rng, det_counts, feature_dim, None, gt=False)
    return out

