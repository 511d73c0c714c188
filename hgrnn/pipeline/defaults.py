"""Defaults of the offline stages that the CLI needs at import time (no torch import here)."""

#: The one person-detection threshold: `ExtractConfig.det_threshold`, `extract-features
#: --det-threshold` and the docs all use this value. The paper states none. 0.8 is what
#: PySlowFast's AVA configs apply to the same person-box files (ava_val_predicted_boxes.csv),
#: so stores match the usual AVA reproductions; and unlike a per-box classifier, the head
#: max-pools every kept person (scene RNN x_P, graph message) whatever its confidence, so
#: low-confidence false positives change the OTHER persons' scores instead of only adding
#: low-ranked result rows (which alone could not lower AP).
DEFAULT_DET_THRESHOLD = 0.8
