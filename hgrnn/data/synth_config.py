"""`SynthConfig`: everything a synthetic store is a function of, with its defaults and
checks, and the sizes of the synthetic feature layout they need (`hgrnn.data.synthetic`
writes the stores; its module docstring describes the layout).

Light on purpose (no numpy): the CLI reads its option defaults from these fields when
`hgrnn --help` runs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

FLOW_VERSION = 2              # 2: the flow stream also sees walking and the scene's motion
GROUP_SLOTS = 2
REP = 8                    # dims per relational / level channel
PREP = 2                   # dims per pose / object / scene-type channel
#: dims of each person / clip signal channel (np.repeat counts)
PERSON_REPS = (PREP,) * 5 + (REP, REP, 1) + (REP,) * GROUP_SLOTS
CLIP_REPS = (PREP,) * 3 + (REP, REP)
PERSON_DIMS = sum(PERSON_REPS)   # 43
CLIP_DIMS = sum(CLIP_REPS)       # 22
MIN_FEATURE_DIM = max(PERSON_DIMS, CLIP_DIMS)


@dataclass(frozen=True)
class SynthConfig:
    """Everything a synthetic store is a function of (stored as ``configs["synth"]``).

    videos, keyframes: store size (keyframes are one per second, timestamps from 902).
    seed: sampling seed; train and validation stores use different seeds, the world (feature
        layout, rules) is the same for every seed.
    feature_dim: C of both clip and person features (>= MIN_FEATURE_DIM).
    person_noise: std of the Gaussian noise on every signal dim of a person feature.
    clip_noise: std of the noise on every signal dim of a clip feature.
    talk_prob: probability that a keyframe has a talker (in a uniformly chosen group);
    dance_prob: probability that a room keyframe has a dancer (other scenes have none).
    det_jitter: std of the det box corners, as a fraction of the box's width/height.
    det_miss: probability that the detector misses a gt person.
    det_false_positives: mean number (Poisson) of background false positives per keyframe.
    det_feature_noise: std of the extra noise on a detected person's feature (other RoI).
    streams: ("rgb",) or ("rgb", "flow"): the flow stream and the motion classes.
    motion_prob: probability that a person (outside vehicles) runs, jumps or falls (each a
        third of it); used with the flow stream only.
    """
    videos: int = 40
    keyframes: int = 60
    seed: int = 0
    feature_dim: int = 64
    person_noise: float = 1.0
    clip_noise: float = 0.3
    talk_prob: float = 0.6
    dance_prob: float = 0.5
    det_jitter: float = 0.12
    det_miss: float = 0.1
    det_false_positives: float = 0.4
    det_feature_noise: float = 0.1
    streams: tuple = ("rgb",)
    motion_prob: float = 0.3

    def __post_init__(self):
        object.__setattr__(self, "streams", tuple(self.streams))
        if self.streams not in (("rgb",), ("rgb", "flow")):
            raise ValueError(f"streams must be rgb or rgb,flow, got {','.join(self.streams)}")
        if not 0.0 <= self.motion_prob <= 1.0:
            raise ValueError(f"motion_prob must be in [0, 1], got {self.motion_prob}")
        if self.videos < 1 or self.keyframes < 1:
            raise ValueError(f"--videos and --keyframes must be >= 1, got {self.videos}, "
                             f"{self.keyframes}")
        if self.feature_dim < MIN_FEATURE_DIM:
            raise ValueError(f"--feature-dim must be >= {MIN_FEATURE_DIM} (the synthetic layout "
                             f"needs that many signal dims), got {self.feature_dim}")
        for name in ("person_noise", "clip_noise", "det_jitter", "det_false_positives",
                     "det_feature_noise"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got "
                                 f"{getattr(self, name)}")
        for name in ("talk_prob", "dance_prob", "det_miss"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1], got "
                                 f"{getattr(self, name)}")

    @property
    def flow(self) -> bool:
        return "flow" in self.streams

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if not self.flow:      # an RGB store's config reads as before the flow stream existed
            del d["streams"], d["motion_prob"]
        else:
            d["streams"] = list(self.streams)
            d["flow_version"] = FLOW_VERSION   # a store of the older flow stream is another config
        return d
