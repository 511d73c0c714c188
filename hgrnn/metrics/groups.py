"""AVA action groups: pose, person-object and person-person classes, and mAP per group.

AVA's 80 actions fall into three groups, the ``label_type`` of the v2.2 label map
(``hgrnn/data/label_maps/ava_v2.2.pbtxt``): PERSON_MOVEMENT (ids 1-14, "pose"),
OBJECT_MANIPULATION (15-63, "person-object") and PERSON_INTERACTION (64-80,
"person-person"). Action ids are the same in every AVA release, so the v2.1 and 2019
label maps (60-class subsets) group the same way.

A class belongs to a group only when it is that AVA action: its id is an AVA id AND its
name is AVA's name for that id. The classes of other label maps (your own data, a
"person" class) have no group, so nothing is claimed about them; a result without any
grouped class has no groups at all (:func:`group_map` returns {}).

mAP of a group = the mean AP of its classes with instances (classes without instances,
None, are left out as in the frame-mAP), in action-id order; None when none has any.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

import numpy as np

__all__ = ["GROUPS", "LABEL_TYPES", "ava_actions", "group_of", "group_map", "mean_ap_by_group",
           "format_groups"]

#: group names, in the order they are printed
GROUPS = ("pose", "person-object", "person-person")
#: the v2.2 label map's label_type -> group name
LABEL_TYPES = {"PERSON_MOVEMENT": "pose", "OBJECT_MANIPULATION": "person-object",
               "PERSON_INTERACTION": "person-person"}


@lru_cache(maxsize=1)
def ava_actions() -> dict[int, tuple[str, str]]:
    """AVA action id -> (name, group), from the packaged v2.2 label map's label_type."""
    text = (resources.files("hgrnn.data").joinpath("label_maps", "ava_v2.2.pbtxt")
            .read_text(encoding="utf-8"))
    out = {}
    for block in re.finditer(r"\{([^}]*)\}", text):
        body = block.group(1)
        name = re.search(r'\bname\s*:\s*"([^"]*)"', body).group(1)
        aid = int(re.search(r"\blabel_id\s*:\s*(\d+)", body).group(1))
        out[aid] = (name, LABEL_TYPES[re.search(r"\blabel_type\s*:\s*(\w+)", body).group(1)])
    return out


def group_of(action_id: int, name: str) -> str | None:
    """The group of class (action_id, name), or None when it is not that AVA action."""
    entry = ava_actions().get(int(action_id))
    return entry[1] if entry is not None and entry[0] == _base_name(name) else None


def group_map(ids: dict) -> dict[str, str]:
    """{class name: action id} (``EvalResult.ids``) -> {class name: group} of the classes
    that have one (label-map order)."""
    out = {}
    for name, aid in ids.items():
        if aid is None:
            continue
        g = group_of(aid, name)
        if g is not None:
            out[name] = g
    return out


def mean_ap_by_group(per_class: dict, ids: dict) -> dict[str, dict]:
    """mAP per AVA action group from per-class APs.

    per_class: {class name: AP or None} (``EvalResult.per_class``); ids: {class name:
    action id} (``EvalResult.ids``). Returns {group: {"mAP": float or None, "classes": int,
    "classes_with_instances": int}} for the groups with at least one class, in
    :data:`GROUPS` order; {} when no class is an AVA action."""
    groups = group_map(ids)
    out = {}
    for g in GROUPS:
        names = sorted((n for n, gg in groups.items() if gg == g), key=lambda n: ids[n])
        if not names:
            continue
        aps = [per_class[n] for n in names
               if per_class.get(n) is not None and not np.isnan(per_class[n])]
        out[g] = {"mAP": float(np.mean(aps)) if aps else None, "classes": len(names),
                  "classes_with_instances": len(aps)}
    return out


def format_groups(groups: dict) -> str:
    """The group table for humans (APs in percent), "" when there are no groups."""
    if not groups:
        return ""
    lines = ["mAP per AVA action group:"]
    for g, d in groups.items():
        ap = "     n/a" if d["mAP"] is None else f"{100 * d['mAP']:8.4f}"
        lines.append(f"  {g:<14} {ap} %  ({d['classes_with_instances']} of {d['classes']} "
                     "classes with instances)")
    return "\n".join(lines)


def _base_name(name: str) -> str:
    """A class key without the " (id N)" that EvalResult appends to a shared name."""
    return re.sub(r" \(id \d+\)$", "", name)
