"""A synthetic AVA-like benchmark whose labels have KNOWN causes (`hgrnn synth`).

No AVA video, feature or weight can be fetched on a fresh machine, yet a user must see the
whole method work and we must be able to tell a correct HGRNN from a broken one. This module
writes ordinary schema-v1 feature stores (`gt` and `det` sources, its own label map) in which
every class is caused by exactly one kind of information, mirroring the paper's three claims:

* **person classes** (`stand`, `sit`, `walk`, `carry/hold`, `drive`, `talk to`, `dance`) are
  visible, noisily, in the person's own feature ``x_p``;
* **temporal classes** (`open`, `close`, `push`, `pull`) are the *direction* in which a slowly
  drifting scene state changes; the state's level is in the clip feature ``x_c`` of every
  keyframe but its marginal distribution is the same for every direction, so one keyframe
  decides nothing and the difference between neighbouring keyframes decides everything;
* **relational classes** (`listen to`, `watch`) are on when ANOTHER person of the SAME group
  of the same keyframe talks (dances). Every keyframe with two persons or more holds two
  groups; a person's group (one of two axis-aligned slot channels) and its talk/dance flag
  live in separate dims, and at most one person of a keyframe talks (dances). So a
  frame-level max-pool of raw person features (what the scene RNN sees) keeps "both slots
  are present" and "someone talks" but loses *in which group* the talker is; a graph RNN with
  J >= 2 iterations can rebuild the conjunction per person in iteration 1 and compare it with
  its own group in iteration 2. With h0 = 0, J = 1 sees no other person.

With ``streams=("rgb", "flow")`` (`hgrnn synth --streams rgb,flow`) the store gets a second,
**flow** feature stream (the store's `streams` attribute: rgb dims 0..C-1, flow dims
C..2C-1) and a fourth group, **motion classes** (`run/jog`, `jump/leap`, `fall down`),
visible ONLY in the flow stream's person feature: the RGB stream carries nothing about them,
as the paper's flow stream sees motion the RGB frames do not show. The flow stream is what a
flow network sees and nothing more: persons' motion (run, jump, fall, and walking) and the
motion of the scene's objects within the keyframe's clip (the door's and the pushed
object's direction of change, which the RGB stream shows only from keyframe to keyframe).
It sees no pose, object, scene type, group or talk (FLOW_VERSION 2; version 1 carried the
motion classes alone and cost the other groups points, docs/synthetic.md). The RGB part of
such a store is exactly the RGB-only store of the same config (the flow part is drawn from
its own generator ``default_rng([seed, video_index, SYNTH_VERSION, FLOW_STREAM_KEY])``).

Scene types (`street`, `room`, `vehicle`, visible in ``x_c``) make classes co-occur or exclude
each other (in a vehicle everyone sits and exactly one person drives; only rooms have dancers;
doors open/close in rooms and vehicles, objects are pushed/pulled in streets). The `det` source
holds jittered copies of the gt boxes with confidences, missed persons and background-like
false positives, so detected-box mAP is lower than gt-box mAP. Everything is drawn from
``numpy.random.default_rng([seed, video_index, SYNTH_VERSION])``: a store is a pure function of
its config, and an interrupted run resumes with identical videos. ``docs/synthetic.md`` states
every rule and why the amplitudes are what they are.

Feature layout (``C = feature_dim >= MIN_FEATURE_DIM``; every signal *channel* is repeated over
several dims, each with its own noise; the dims after the signal are nuisance noise):

    person x_p  channel (dims)              value
                pose stand/sit/walk (2 each) POSE_AMP on the person's pose
                carry/hold (2)              FLAG_AMP if carrying
                drive (2)                   DRIVE_AMP if driving (weak on purpose)
                talk (8)                    REL_AMP if talking
                dance (8)                   REL_AMP if dancing
                person-ness (1)             1 (0 for a false-positive detection)
                group slot 0/1 (8 each)     REL_AMP on the person's group slot
                + N(0, person_noise) on every signal dim
    clip x_c    scene type (2 each)         1 on the shot's scene type
                door level (8)              LEVEL_AMP * level (drives open/close)
                object position (8)         LEVEL_AMP * level (drives push/pull)
                + N(0, clip_noise) on every signal dim (times LEVEL_AMP on the level dims)
    flow x_p    run/jog, jump/leap, fall down   MOTION_AMP on the person's motion (one at
                (MREP each)                 most; none in vehicles)
                walking (MREP)              WALK_FLOW_AMP if the person walks
                person-ness (1)             1 (0 for a false-positive detection)
                + N(0, person_noise) on every signal dim; nuisance N(0, 0.2) elsewhere
    flow x_c    motion energy (MREP)        MOTION_AMP * fraction of moving persons
                door motion (MREP)          SCENE_FLOW_AMP * direction of the door (+1/0/-1)
                object motion (MREP)        SCENE_FLOW_AMP * direction of the object
                + N(0, clip_noise) on every signal dim
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass

import numpy as np

from hgrnn.console import progress_bar
from hgrnn.data.ava import LabelMap
from hgrnn.data.store import PersonSet, StoreWriter, open_h5, read_info
# the config and the layout sizes it checks live in the light synth_config (`hgrnn synth
# --help` reads its defaults); they are read as synthetic.X too
from hgrnn.data import synth_config
from hgrnn.data.synth_config import (CLIP_DIMS, FLOW_VERSION, GROUP_SLOTS,  # noqa: F401
                                     MIN_FEATURE_DIM, PERSON_DIMS, PREP, REP, SynthConfig)

SYNTH_VERSION = 1

PERSON_CLASSES = ("stand", "sit", "walk", "carry/hold (an object)", "drive (e.g., a car, a truck)",
                  "talk to (e.g., self, a person, a group)", "dance")
TEMPORAL_CLASSES = ("open (e.g., a window, a car door)", "close (e.g., a door, a box)",
                    "push (an object)", "pull (an object)")
RELATIONAL_CLASSES = ("listen to (a person)", "watch (a person)")
CLASS_NAMES = PERSON_CLASSES + TEMPORAL_CLASSES + RELATIONAL_CLASSES
CLASS_GROUPS = {"person": PERSON_CLASSES, "temporal": TEMPORAL_CLASSES,
                "relational": RELATIONAL_CLASSES}
# only in stores with a flow stream: label columns 13..15, after CLASS_NAMES
MOTION_CLASSES = ("run/jog", "jump/leap", "fall down")
STREAMS = ("rgb", "flow")
FLOW_STREAM_KEY = 1           # the flow stream's generator: default_rng([seed, i, VERSION, 1])
MOTION_AMP = 2.0
WALK_FLOW_AMP = 1.0           # a walker moves, less than a runner
SCENE_FLOW_AMP = 0.5          # the door's / object's motion inside one keyframe's clip
MREP = 4                      # dims per motion channel of the flow stream
FLOW_PERSON_DIMS = 4 * MREP + 1
FLOW_CLIP_DIMS = 3 * MREP
# label columns, by short name (column order = CLASS_NAMES order)
(STAND, SIT, WALK, CARRY, DRIVE, TALK, DANCE, OPEN, CLOSE, PUSH, PULL, LISTEN, WATCH) = range(13)

SCENE_TYPES = ("street", "room", "vehicle")
STREET, ROOM, VEHICLE = range(3)
SCENE_PROBS = (0.4, 0.4, 0.2)

# Amplitudes: the relational and level channels are large on purpose. With the paper's
# schedule (1000 Adam steps at lr 1e-4) the head moves each weight by at most ~0.1, so a
# signal must be strong in the pre-activations of randomly initialised GRU units for the
# conjunctions (talker x group, level(t+1) - level(t-1)) to be learnt at all
# (docs/synthetic.md, "Design notes").
POSE_AMP, FLAG_AMP, DRIVE_AMP = 1.0, 1.5, 0.6
REL_AMP = 6.0
LEVEL_AMP = 3.0
LEVEL_CENTRE_STD = 1.0
NUISANCE_STD = 0.2
LEVEL_STEP = 0.5           # change of a drifting state per keyframe
PERSON_CHANNELS = 8 + GROUP_SLOTS
CLIP_CHANNELS = 5
PERSON_REPS = np.array(synth_config.PERSON_REPS)
CLIP_REPS = np.array(synth_config.CLIP_REPS)
# persons per keyframe 1..12, shaped like AVA's (1-4 common, a tail to ~12)
PERSONS_PMF = np.array([0.30, 0.24, 0.16, 0.10, 0.06, 0.04, 0.03, 0.025, 0.015, 0.012, 0.010,
                        0.008])
PERSONS_PMF = PERSONS_PMF / PERSONS_PMF.sum()
VEHICLE_MAX_PERSONS = 4


def class_names(cfg: SynthConfig | None = None) -> tuple:
    """The label map's class names: CLASS_NAMES, plus MOTION_CLASSES with the flow stream."""
    return CLASS_NAMES + (MOTION_CLASSES if cfg is not None and cfg.flow else ())


def class_groups(cfg: SynthConfig | None = None) -> dict:
    """{group: class names}: CLASS_GROUPS, plus "motion" with the flow stream."""
    groups = dict(CLASS_GROUPS)
    if cfg is not None and cfg.flow:
        groups["motion"] = MOTION_CLASSES
    return groups


def synth_label_map(cfg: SynthConfig | None = None):
    """The benchmark's label map: ids 1..13 in CLASS_NAMES order (1..16 with the motion
    classes of a flow-stream store)."""
    names = class_names(cfg)
    return LabelMap(ids=tuple(range(1, len(names) + 1)), names=names)


def store_config_entry(cfg: SynthConfig) -> dict:
    """What goes into ``configs["synth"]``: the config, the class groups, the layout."""
    return {"version": SYNTH_VERSION, "config": cfg.to_dict(),
            "class_groups": {g: list(names) for g, names in class_groups(cfg).items()},
            "scene_types": list(SCENE_TYPES), "group_slots": GROUP_SLOTS,
            "video_ids": [video_id(cfg.seed, i) for i in range(cfg.videos)]}


def video_id(seed: int, index: int) -> str:
    return f"synth_s{seed}_v{index:04d}"


@dataclass
class SynthVideo:
    """One generated video. Person arrays are ragged over keyframes via ``offsets``.

    timestamps (T,) int64; clip (T, C) float32;
    gt_offsets (T+1,), gt_boxes (N, 4) float32 xyxy in [0, 1], gt_feats (N, C) float32,
    gt_labels (N, K) uint8, gt_person_ids (N,) int32;
    det_offsets (T+1,), det_boxes (D, 4), det_feats (D, C), det_scores (D,) float32;
    causes: the hidden variables labels were drawn from (for tests and probes):
      scene_type (T,), door_dir (T,), object_dir (T,) in {-1, 0, +1}, door_level (T,),
      object_level (T,); group (N,) slot of each gt person, talk (N,), dance (N,) bool;
      det_match (D,) index of the gt row a detection copies, -1 for a false positive;
      with the flow stream also motion (N,) in {-1 none, 0 run, 1 jump, 2 fall}.
    With the flow stream the feature arrays have 2C columns (rgb, then flow) and the
    labels K = 16 columns (the motion classes last).
    """
    video_id: str
    timestamps: np.ndarray
    clip: np.ndarray
    gt_offsets: np.ndarray
    gt_boxes: np.ndarray
    gt_feats: np.ndarray
    gt_labels: np.ndarray
    gt_person_ids: np.ndarray
    det_offsets: np.ndarray
    det_boxes: np.ndarray
    det_feats: np.ndarray
    det_scores: np.ndarray
    causes: dict


# ---------------------------------------------------------------------------------------------
# pure pieces
# ---------------------------------------------------------------------------------------------

def _segments(rng, n: int, low: int, high: int) -> list[tuple[int, int]]:
    """Split range(n) into consecutive [start, stop) runs of length uniform in [low, high]."""
    out, start = [], 0
    while start < n:
        stop = min(n, start + int(rng.integers(low, high + 1)))
        out.append((start, stop))
        start = stop
    return out


def drifting_state(rng, scene_type: np.ndarray, active_scenes: tuple[int, ...],
                   shots: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Level (T,) float and direction (T,) in {-1, 0, +1} of one slowly drifting scene state.

    Each shot is cut into segments of 5..12 keyframes; a segment gets a direction (+1 / -1 with
    probability 0.3 each, 0 otherwise; always 0 outside ``active_scenes``) and a centre level
    c ~ N(0, 1). Inside a moving segment the level is ``c + d * LEVEL_STEP * (t - t_mid)``; a
    still segment gets ``c + LEVEL_STEP * (u - u_mid)`` for one position u drawn uniformly from
    the same segment length, constant over the segment. So the level's marginal distribution
    is identical for d = -1, 0, +1 (one keyframe carries no information about the direction),
    while the difference of neighbouring keyframes is ``d * LEVEL_STEP`` inside a segment.
    """
    T = len(scene_type)
    level = np.zeros(T, np.float64)
    direction = np.zeros(T, np.int64)
    for s0, s1 in shots:
        for a, b in _segments(rng, s1 - s0, 5, 12):
            a, b = a + s0, b + s0
            d = int(rng.choice([-1, 0, 1], p=[0.3, 0.4, 0.3]))
            if scene_type[a] not in active_scenes:
                d = 0
            centre = rng.normal(0.0, LEVEL_CENTRE_STD)
            pos = np.arange(b - a) - (b - a - 1) / 2.0
            if d == 0:
                pos = np.full(b - a, pos[rng.integers(b - a)])
            level[a:b] = centre + (d if d else 1) * LEVEL_STEP * pos
            direction[a:b] = d
    return level, direction


def sample_boxes(rng, n: int, max_iou: float = 0.3) -> np.ndarray:
    """(n, 4) float32 plausible person boxes xyxy in [0, 1]: standing-person aspect, smaller
    when the keyframe is crowded, pairwise IoU <= max_iou (rejection sampling; a box that
    finds no place after 200 tries is shrunk and retried)."""
    boxes = np.zeros((n, 4), np.float64)
    scale = 1.0 / np.sqrt(max(n, 1))
    for i in range(n):
        shrink = 1.0
        for attempt in range(2000):
            if attempt and attempt % 200 == 0:
                shrink *= 0.8
            h = rng.uniform(0.35, 0.9) * max(scale, 0.3) * shrink
            w = min(h * rng.uniform(0.25, 0.45), 0.95)   # ~0.4-0.8 width/height in 16:9 pixels
            x1 = rng.uniform(0.0, 1.0 - w)
            y2 = rng.uniform(max(h, 0.5), 1.0)
            cand = np.array([x1, y2 - h, x1 + w, y2])
            if i == 0 or _iou_one(cand, boxes[:i]).max() <= max_iou:
                break
        boxes[i] = cand
    return boxes.astype(np.float32)


def _iou_one(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def assign_groups(rng, n: int) -> np.ndarray:
    """(n,) group 0 or 1 of each person: with n >= 2 persons both groups exist (person 0 in
    group 0, person 1 in group 1), every further person joins one of them at random; a lone
    person is group 0. A keyframe therefore always shows both group slots when it has two
    persons or more, and a max-pool over its persons learns nothing from which are present."""
    groups = np.zeros(n, np.int64)
    if n >= 2:
        groups[1] = 1
        groups[2:] = rng.integers(0, 2, n - 2)
    return groups


def relational_labels(group: np.ndarray, talk: np.ndarray, dance: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """listen (n,), watch (n,) bool for the persons of ONE keyframe.

    listen_i = not talk_i and some j != i with group_j == group_i talks;
    watch_i  = not dance_i and some j != i with group_j == group_i dances.
    """
    same = (group[:, None] == group[None, :]) & ~np.eye(len(group), dtype=bool)
    listen = ~talk & (same & talk[None, :]).any(axis=1)
    watch = ~dance & (same & dance[None, :]).any(axis=1)
    return listen, watch


# ---------------------------------------------------------------------------------------------
# one video
# ---------------------------------------------------------------------------------------------

def generate_video(cfg: SynthConfig, index: int) -> SynthVideo:
    """Video ``index`` of the store described by ``cfg`` (deterministic in (cfg, index))."""
    rng = np.random.default_rng([cfg.seed, index, SYNTH_VERSION])
    T, C, K = cfg.keyframes, cfg.feature_dim, len(CLASS_NAMES)
    timestamps = 902 + np.arange(T, dtype=np.int64)

    # shots: scene type constant over 10..30 keyframes
    shots = _segments(rng, T, 10, 30)
    scene_type = np.zeros(T, np.int64)
    for a, b in shots:
        scene_type[a:b] = rng.choice(len(SCENE_TYPES), p=SCENE_PROBS)
    door_level, door_dir = drifting_state(rng, scene_type, (ROOM, VEHICLE), shots)
    obj_level, obj_dir = drifting_state(rng, scene_type, (STREET,), shots)

    clip = rng.normal(0.0, NUISANCE_STD, (T, C))
    signal = np.zeros((T, CLIP_CHANNELS))
    signal[np.arange(T), scene_type] = 1.0
    signal[:, 3] = door_level
    signal[:, 4] = obj_level
    clip[:, :CLIP_DIMS] = (np.repeat(signal, CLIP_REPS, axis=1)
                           + rng.normal(0.0, cfg.clip_noise, (T, CLIP_DIMS)))
    clip[:, 3 * PREP:CLIP_DIMS] *= LEVEL_AMP

    gt_boxes, gt_feats, gt_labels, gt_offsets = [], [], [], [0]
    groups_all, talk_all, dance_all = [], [], []
    det_boxes, det_feats, det_scores, det_match, det_offsets = [], [], [], [], [0]
    n_gt = 0
    for t in range(T):
        st = scene_type[t]
        n = int(rng.choice(len(PERSONS_PMF), p=PERSONS_PMF)) + 1
        if st == VEHICLE:
            n = min(n, VEHICLE_MAX_PERSONS)
        labels = np.zeros((n, K), np.uint8)
        # pose (mutually exclusive) and objects, conditioned on the scene type
        if st == STREET:
            pose = rng.choice([STAND, WALK], size=n)
            carry = rng.random(n) < 0.4
        elif st == ROOM:
            pose = rng.choice([STAND, SIT], size=n, p=[0.5, 0.5])
            carry = rng.random(n) < 0.2
        else:
            pose = np.full(n, SIT)
            carry = rng.random(n) < 0.1
        drive = np.zeros(n, bool)
        if st == VEHICLE:
            drive[rng.integers(n)] = True
        # two groups (n >= 2); one talker and one dancer at most per keyframe
        group = assign_groups(rng, n)
        slots = rng.permutation(GROUP_SLOTS)
        talk = np.zeros(n, bool)
        dance = np.zeros(n, bool)
        # at most one talker and one dancer per keyframe, each in a uniformly chosen group
        # (a lone person talks too: to self, on the phone), so "someone talks" (all that a
        # frame max-pool keeps) says little about whether MY group has the talker
        if rng.random() < cfg.talk_prob:
            talk[rng.choice(np.flatnonzero(group == rng.integers(group.max() + 1)))] = True
        if st == ROOM and rng.random() < cfg.dance_prob:
            members = np.flatnonzero(group == rng.integers(group.max() + 1))
            free = members[~talk[members]]
            dance[rng.choice(free if len(free) else members)] = True
        listen, watch = relational_labels(group, talk, dance)

        labels[np.arange(n), pose] = 1
        labels[:, CARRY] = carry
        labels[:, DRIVE] = drive
        labels[:, TALK] = talk
        labels[:, DANCE] = dance
        labels[:, OPEN] = door_dir[t] > 0
        labels[:, CLOSE] = door_dir[t] < 0
        labels[:, PUSH] = obj_dir[t] > 0
        labels[:, PULL] = obj_dir[t] < 0
        labels[:, LISTEN] = listen
        labels[:, WATCH] = watch

        feats = rng.normal(0.0, NUISANCE_STD, (n, C))
        signal = np.zeros((n, PERSON_CHANNELS))
        signal[np.arange(n), pose] = POSE_AMP      # pose label columns 0..2 == channels 0..2
        signal[:, 3] = FLAG_AMP * carry
        signal[:, 4] = DRIVE_AMP * drive
        signal[:, 5] = REL_AMP * talk
        signal[:, 6] = REL_AMP * dance
        signal[:, 7] = 1.0
        signal[np.arange(n), 8 + slots[group]] = REL_AMP
        feats[:, :PERSON_DIMS] = (np.repeat(signal, PERSON_REPS, axis=1)
                                  + rng.normal(0.0, cfg.person_noise, (n, PERSON_DIMS)))

        boxes = sample_boxes(rng, n)
        gt_boxes.append(boxes)
        gt_feats.append(feats)
        gt_labels.append(labels)
        groups_all.append(slots[group])
        talk_all.append(talk)
        dance_all.append(dance)
        gt_offsets.append(gt_offsets[-1] + n)

        # detections: jittered copies of found persons + background false positives
        found = np.flatnonzero(rng.random(n) >= cfg.det_miss)
        wh = np.stack([boxes[found, 2] - boxes[found, 0], boxes[found, 3] - boxes[found, 1]], 1)
        jit = rng.normal(0.0, cfg.det_jitter, (len(found), 4)) * np.concatenate([wh, wh], 1)
        d_boxes = boxes[found] + jit
        d_feats = feats[found] + rng.normal(0.0, cfg.det_feature_noise, (len(found), C))
        d_scores = rng.beta(8.0, 2.0, len(found))
        n_fp = int(rng.poisson(cfg.det_false_positives))
        fp_boxes = sample_boxes(rng, n_fp, max_iou=1.0) if n_fp else np.zeros((0, 4), np.float32)
        fp_feats = rng.normal(0.0, NUISANCE_STD, (n_fp, C))
        fp_feats[:, :PERSON_DIMS] = rng.normal(0.0, cfg.person_noise, (n_fp, PERSON_DIMS))
        fp_scores = rng.beta(2.0, 4.0, n_fp)
        all_boxes = np.clip(np.concatenate([d_boxes, fp_boxes]), 0.0, 1.0)
        all_boxes[:, 2:] = np.maximum(all_boxes[:, 2:], all_boxes[:, :2] + 1e-3)
        det_boxes.append(all_boxes)
        det_feats.append(np.concatenate([d_feats, fp_feats]))
        det_scores.append(np.concatenate([d_scores, fp_scores]))
        det_match.append(np.concatenate([n_gt + found, np.full(n_fp, -1)]))
        det_offsets.append(det_offsets[-1] + len(found) + n_fp)
        n_gt += n

    def cat(parts, dtype, width=None):
        if not parts:
            return np.zeros((0,) if width is None else (0, width), dtype)
        return np.concatenate(parts).astype(dtype)

    causes = {"scene_type": scene_type, "door_dir": door_dir, "object_dir": obj_dir,
              "door_level": door_level, "object_level": obj_level,
              "group": cat(groups_all, np.int64), "talk": cat(talk_all, bool),
              "dance": cat(dance_all, bool), "det_match": cat(det_match, np.int64)}
    video = SynthVideo(
        video_id=video_id(cfg.seed, index), timestamps=timestamps,
        clip=clip.astype(np.float32),
        gt_offsets=np.asarray(gt_offsets, np.int64), gt_boxes=cat(gt_boxes, np.float32, 4),
        gt_feats=cat(gt_feats, np.float32, C), gt_labels=cat(gt_labels, np.uint8, K),
        gt_person_ids=np.arange(n_gt, dtype=np.int32),
        det_offsets=np.asarray(det_offsets, np.int64), det_boxes=cat(det_boxes, np.float32, 4),
        det_feats=cat(det_feats, np.float32, C), det_scores=cat(det_scores, np.float32),
        causes=causes)
    return add_flow_stream(cfg, index, video) if cfg.flow else video


def add_flow_stream(cfg: SynthConfig, index: int, v: SynthVideo) -> SynthVideo:
    """The flow stream of video ``index``: motion labels and flow features appended to the
    RGB video ``v`` (its own generator, so the RGB part is untouched; module docstring)."""
    rng = np.random.default_rng([cfg.seed, index, SYNTH_VERSION, FLOW_STREAM_KEY])
    C = cfg.feature_dim
    n_gt, T = len(v.gt_boxes), len(v.timestamps)
    kf = np.repeat(np.arange(T), np.diff(v.gt_offsets))               # keyframe of each person
    moves = (rng.random(n_gt) < cfg.motion_prob) & (v.causes["scene_type"][kf] != VEHICLE)
    motion = np.where(moves, rng.integers(0, 3, n_gt), -1)
    labels = np.zeros((n_gt, 3), np.uint8)
    labels[moves, motion[moves]] = 1

    def person_flow(n, motion_of, walks):
        feats = rng.normal(0.0, NUISANCE_STD, (n, C))
        signal = np.zeros((n, 5))
        signal[motion_of >= 0, motion_of[motion_of >= 0]] = MOTION_AMP
        signal[:, 3] = WALK_FLOW_AMP * walks
        signal[:, 4] = 1.0
        feats[:, :FLOW_PERSON_DIMS] = (np.repeat(signal, [MREP] * 4 + [1], axis=1)
                                       + rng.normal(0.0, cfg.person_noise, (n, FLOW_PERSON_DIMS)))
        return feats

    gt_flow = person_flow(n_gt, motion, v.gt_labels[:, WALK] > 0)
    match = v.causes["det_match"]
    det_flow = np.where((match >= 0)[:, None],
                        gt_flow[np.maximum(match, 0)]
                        + rng.normal(0.0, cfg.det_feature_noise, (len(match), C)),
                        0.0)
    fp = match < 0
    det_flow[fp] = rng.normal(0.0, NUISANCE_STD, (int(fp.sum()), C))
    det_flow[fp, :FLOW_PERSON_DIMS] = rng.normal(0.0, cfg.person_noise,
                                                 (int(fp.sum()), FLOW_PERSON_DIMS))
    counts = np.maximum(np.diff(v.gt_offsets), 1)
    energy = np.bincount(kf, weights=moves.astype(float), minlength=T) / counts
    clip_flow = rng.normal(0.0, NUISANCE_STD, (T, C))
    # what moves within each keyframe's clip: the persons (energy), the door and the object
    signal = np.stack([MOTION_AMP * energy, SCENE_FLOW_AMP * v.causes["door_dir"],
                       SCENE_FLOW_AMP * v.causes["object_dir"]], 1)
    clip_flow[:, :FLOW_CLIP_DIMS] = (np.repeat(signal, MREP, axis=1)
                                     + rng.normal(0.0, cfg.clip_noise, (T, FLOW_CLIP_DIMS)))
    causes = dict(v.causes, motion=motion)
    return dataclasses.replace(
        v, clip=np.concatenate([v.clip, clip_flow], 1).astype(np.float32),
        gt_feats=np.concatenate([v.gt_feats, gt_flow], 1).astype(np.float32),
        gt_labels=np.concatenate([v.gt_labels, labels], 1),
        det_feats=np.concatenate([v.det_feats, det_flow], 1).astype(np.float32), causes=causes)


# ---------------------------------------------------------------------------------------------
# the store
# ---------------------------------------------------------------------------------------------

def write_synthetic_store(path, cfg: SynthConfig, *, overwrite: bool = False,
                          progress: bool = True) -> dict:
    """Write (or complete) the synthetic store ``path`` for ``cfg``; return a summary dict
    ``{"path", "videos", "keyframes", "gt_persons", "det_persons", "written", "reused"}``.

    An existing store written with the same config is completed (videos already present are
    kept: they are identical by construction); one written with another config raises
    ``ValueError`` naming the file unless ``overwrite`` (then it is deleted first).
    """
    path = os.fspath(path)
    entry = store_config_entry(cfg)
    if os.path.exists(path) and overwrite:
        os.remove(path)
    elif os.path.exists(path):
        existing = read_synth_entry(path, missing_ok=True)
        if existing is None or existing.get("config") != entry["config"]:
            raise ValueError(
                f"{path}: exists and was not written by `hgrnn synth` with this config "
                f"(stored: {json.dumps(existing and existing.get('config'))}); choose another "
                f"path or pass --overwrite")
    summary = {"path": path, "videos": cfg.videos, "keyframes": 0, "gt_persons": 0,
               "det_persons": 0, "written": 0, "reused": 0}
    C = cfg.feature_dim
    with StoreWriter(path, feature_dim=C * len(cfg.streams), label_map=synth_label_map(cfg),
                     configs={"synth": entry},
                     streams=[[name, k * C, (k + 1) * C] for k, name in enumerate(cfg.streams)]
                     ) as writer:
        bar = progress_bar(range(cfg.videos), desc=f"synth {os.path.basename(path)}", unit="video",
                   disable=not progress, leave=False)
        for i in bar:
            vid = video_id(cfg.seed, i)
            if writer.has_video(vid):
                summary["reused"] += 1
                continue
            v = generate_video(cfg, i)
            gt = PersonSet(offsets=v.gt_offsets, boxes=v.gt_boxes, feats=v.gt_feats,
                           scores=np.ones(len(v.gt_boxes), np.float32), labels=v.gt_labels,
                           person_ids=v.gt_person_ids)
            det = PersonSet(offsets=v.det_offsets, boxes=v.det_boxes, feats=v.det_feats,
                            scores=v.det_scores)
            writer.add_video(vid, v.timestamps, v.clip, gt=gt, det=det, width=640, height=360)
            summary["written"] += 1
            summary["keyframes"] += len(v.timestamps)
            summary["gt_persons"] += len(v.gt_boxes)
            summary["det_persons"] += len(v.det_boxes)
    return summary


def read_synth_entry(path, missing_ok: bool = False) -> dict | None:
    """``configs["synth"]`` of a store (None / ValueError when it is not a synthetic store)."""
    # the root attributes only: a store interrupted before its first video was complete
    # must still be recognised (and resumed), and nothing else needs to be loaded
    with open_h5(os.fspath(path)) as f:
        configs = read_info(f, os.fspath(path)).configs
    entry = configs.get("synth")
    if isinstance(entry, str):
        entry = json.loads(entry)
    if entry is None and not missing_ok:
        raise ValueError(f"{path}: not a synthetic store (no configs['synth']; write one with "
                         f"`hgrnn synth`)")
    return entry


def is_complete(path, cfg: SynthConfig) -> bool:
    """True when ``path`` is a synthetic store of ``cfg`` holding all its videos."""
    if not os.path.exists(path):
        return False
    try:
        from hgrnn.data.windows import FeatureStore  # imports torch: only when asked
        store = FeatureStore(os.fspath(path))
        entry = store.configs.get("synth")
        if isinstance(entry, str):
            entry = json.loads(entry)
        if not entry or entry.get("config") != cfg.to_dict():
            return False
        return set(store.video_ids) >= set(entry["video_ids"])
    except Exception:      # a half-written or foreign file is simply not complete
        return False


def group_aps(per_class: dict, class_groups: dict) -> dict:
    """Mean AP per class group (and "all") from ``EvalResult.per_class`` ({name: AP or None}).

    Classes without instances (None) are left out of their group's mean; a group with no
    scored class gets None.
    """
    out = {}
    for group, names in list(class_groups.items()) + [("all", list(per_class))]:
        aps = [per_class[n] for n in names if per_class.get(n) is not None]
        out[group] = float(np.mean(aps)) if aps else None
    return out
