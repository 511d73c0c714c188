"""The ablation grid of `hgrnn ablate` (:mod:`hgrnn.hgrnn_head.ablate`): its rows and
:class:`AblateConfig`, in a light module (no torch) so that the CLI reads the defaults at
``--help``."""

from __future__ import annotations

from dataclasses import dataclass

from hgrnn.hgrnn_head.config import HeadConfig, TrainConfig

# name -> (variant, l, J, what the row is in the paper)
ROWS = {
    "person": ("person", 0, 0, "per-person head on x_p (AVA I3D head baseline, Table 5)"),
    "graph": ("graph", 0, 2, "Graph-RNN only (Table 1 l=0, Table 2)"),
    "scene": ("scene", 3, 0, "Scene-RNN only, l=3 (Table 2)"),
    "hgrnn_l0": ("hgrnn", 0, 2, "HGRNN, scene RNN over the keyframe alone (l=0)"),
    "hgrnn_l1": ("hgrnn", 1, 2, "HGRNN l=1 (Table 1)"),
    "hgrnn": ("hgrnn", 3, 2, "HGRNN l=3, J=2 (Tables 1-3, the paper's model)"),
    "hgrnn_J1": ("hgrnn", 3, 1, "HGRNN J=1 (Table 3)"),
    "hgrnn_J3": ("hgrnn", 3, 3, "HGRNN J=3 (Table 3)"),
    "hgrnn_others": ("hgrnn", 3, 2, "HGRNN l=3, J=2, graph pooling over the OTHER persons"),
    "hgrnn_ctxdet": ("hgrnn", 3, 2, "HGRNN l=3, J=2, trained with detections in the context "
                                    "slots"),
    "hgrnn_attn": ("hgrnn", 3, 2, "HGRNN l=3, J=2 with attention over the persons instead "
                                  "of the graph RNN (train-head --relation attention)"),
    "hgrnn_flow": ("hgrnn", 3, 2, "HGRNN l=3, J=2 on RGB+Flow features (Table 4)"),
    "hgrnn_late": ("hgrnn", 3, 2, "HGRNN l=3, J=2 on RGB+Flow, one head per stream, logits "
                                  "summed (train-head --fusion late)"),
}
# How a row is named in the tables that list every row (Table 4).
ROW_LABELS = {"person": "per-person head", "graph": "Graph-RNN (l=0, J=2)",
              "scene": "Scene-RNN (l=3)", "hgrnn_l0": "HGRNN l=0", "hgrnn_l1": "HGRNN l=1",
              "hgrnn": "HGRNN (l=3, J=2)", "hgrnn_J1": "HGRNN J=1", "hgrnn_J3": "HGRNN J=3",
              "hgrnn_others": "HGRNN, graph pool over others",
              "hgrnn_ctxdet": "HGRNN, context boxes det",
              "hgrnn_attn": "HGRNN, attention relation",
              "hgrnn_flow": "HGRNN RGB+Flow (l=3, J=2)",
              "hgrnn_late": "HGRNN RGB+Flow, late fusion"}
# Rows that differ from the paper's model in a head or training option (name -> options;
# "graph_pool" is a HeadConfig field, "context_boxes" a TrainConfig field). Only these rows
# carry the keys in their spec, so finished runs of the other rows keep their spec.
ROW_OPTIONS = {
    "hgrnn_others": {"graph_pool": "others"},
    "hgrnn_ctxdet": {"context_boxes": "det"},
    "hgrnn_attn": {"relation": "attention"},
    "hgrnn_late": {"fusion": "late"},
}
# Why Table 1's l = 0 and Table 2's "Graph-RNN" are the `graph` row (docs/method.md).
PAPER_L0 = ("The paper's l = 0 row (Table 1) and its \"Graph-RNN\" row (Table 2) are the same "
            "number (19.0): we take both to be the `graph` row, the graph RNN alone on the "
            "person features, without the scene RNN and without clip features, because Table 2 "
            "names it \"Graph-RNN only\" and compares it with \"Scene-RNN only\", so the "
            "scene level is absent there. `hgrnn_l0` (the scene RNN over a one-keyframe window, "
            "i.e. the keyframe's clip feature and pooled persons, then the graph RNN) is the "
            "other possible reading of \"l = 0\"; it is reported for comparison only.")
# rows on other feature streams than the store's "rgb" (train-head --streams)
ROW_STREAMS = {"hgrnn_flow": ("rgb", "flow"), "hgrnn_late": ("rgb", "flow")}
#: the rows of a store with the RGB stream only
RGB_ROWS = tuple(r for r in ROWS if r not in ROW_STREAMS)
GROUPS = ("all", "person", "temporal", "relational", "motion")


@dataclass(frozen=True)
class AblateConfig:
    """The grid and the schedule of every run.

    rows: names from ROWS (default: the RGB rows, the paper's tables deduplicated; the CLI
        adds the RGB+Flow row when the stores have a flow stream: `rows_for_store`).
    seeds: seeds 0..seeds-1 per row. steps, batch_size, lr: the schedule (paper: 1000, 50, 1e-4).
    jobs: parallel worker processes (joblib); each uses one torch thread.
    h0: the graph RNN's initial state ("zeros": J=1 sees no other person).
    det: also score every run with the store's detections (Table 4 column).
    scene_hidden, graph_hidden: the head's hidden sizes (None: HeadConfig's defaults; the
        paper does not state them).
    """
    rows: tuple = RGB_ROWS
    seeds: int = 3
    steps: int = TrainConfig.steps
    batch_size: int = TrainConfig.batch_size
    lr: float = TrainConfig.lr
    jobs: int = 2
    h0: str = HeadConfig.h0
    det: bool = True
    scene_hidden: int | None = None
    graph_hidden: int | None = None

    def __post_init__(self):
        unknown = [r for r in self.rows if r not in ROWS]
        if unknown:
            raise ValueError(f"unknown ablation rows {unknown}; known: {', '.join(ROWS)}")
        if self.seeds < 1 or self.jobs < 1 or self.steps < 1:
            raise ValueError("seeds, jobs and steps must be >= 1")

    def specs(self) -> list[dict]:
        """One dict per run: name, row, variant, context, iterations, seed, schedule. Hidden
        sizes left None are resolved to HeadConfig's defaults here, so that a finished run's
        done.json says the sizes it really had."""
        scene_hidden = self.scene_hidden or HeadConfig.scene_hidden
        graph_hidden = self.graph_hidden or HeadConfig.graph_hidden
        out = []
        for row in self.rows:
            variant, l, J, _ = ROWS[row]
            for seed in range(self.seeds):
                spec = {"name": f"{row}_s{seed}", "row": row, "variant": variant,
                        "context": l, "iterations": J, "seed": seed, "steps": self.steps,
                        "batch_size": self.batch_size, "lr": self.lr, "h0": self.h0,
                        "det": self.det, "scene_hidden": scene_hidden,
                        "graph_hidden": graph_hidden, **ROW_OPTIONS.get(row, {})}
                if row in ROW_STREAMS:      # (RGB rows' specs stay as runs before streams)
                    spec["streams"] = list(ROW_STREAMS[row])
                out.append(spec)
        return out
