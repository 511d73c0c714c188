"""Step 1 of `hgrnn report`: read the ground truth and the result files as `eval-csv` reads
them (same readers, label map, exclusions), and refuse result files over another label
space than the first one."""

from __future__ import annotations

import os
from dataclasses import dataclass

from hgrnn.data.ava import (AvaRows, LabelMap, load_label_map, read_annotations,
                            read_exclusions, read_results)


@dataclass
class ReportInputs:
    """What the page is made of: ground truth, result files (name, rows), label map, and
    the exclusions `evaluate` itself applies (a store's ground truth; None when the
    readers dropped them already, as eval-csv does)."""
    gt: AvaRows
    gt_name: str
    results: list[tuple[str, AvaRows]]
    label_map: LabelMap
    eval_exclusions: set | None
    exclusions_name: str | None = None


def load_inputs(gt_path, results_paths, label_map=None, exclusions=None, protocol="ava-2018",
                progress=False) -> ReportInputs:
    """Read the ground truth (an AVA CSV or a feature store, as `eval-csv` takes it) and
    result CSVs the way `eval-csv` reads them. Raises AvaFormatError / ValueError / OSError
    naming the file (the same one-line errors as eval-csv), and ValueError for a result
    file over another label space than the first one."""
    if exclusions is not None and protocol == "ava-2020":
        raise ValueError("ava-2020 has no excluded timestamps; drop --exclusions or pick "
                         "ava-2018/ava-2019")
    exclusions_name = None
    if isinstance(exclusions, (str, os.PathLike)):
        exclusions_name = os.fspath(exclusions)
        exclusions = read_exclusions(exclusions)
    gt_path = os.fspath(gt_path)
    gt, lm, eval_exclusions = _read_ground_truth(gt_path, label_map, exclusions, progress)
    results = []
    for path in results_paths:
        rows = read_results(path, lm, exclusions, progress=progress)
        results.append((os.fspath(path), rows))
    _check_label_spaces(results, lm)
    return ReportInputs(gt, gt_path, results, lm, eval_exclusions, exclusions_name)


def _read_ground_truth(gt_path: str, label_map, exclusions, progress):
    """(ground truth, label map, the exclusions `evaluate` applies): a feature store's
    persons over its own label map (the exclusions left to `evaluate`), or an AVA CSV read
    with the exclusions dropped (the label map ava-v2.1 unless given)."""
    if _is_hdf5(gt_path):
        from hgrnn.hgrnn_head.infer import store_ground_truth_of   # torch: store GT only

        gt, lm = store_ground_truth_of(gt_path, None if label_map is None else
                                       _label_map(label_map), label_map)
        return gt, lm, exclusions
    lm = _label_map(label_map or "ava-v2.1")
    return read_annotations(gt_path, lm, exclusions, progress=progress), lm, None


def _label_map(label_map):
    return label_map if isinstance(label_map, LabelMap) else load_label_map(label_map)


def _is_hdf5(path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"\x89HDF\r\n\x1a\n"


def _check_label_spaces(results, lm):
    """Refuse a result file whose classes are not those of the first file: it has rows of
    action ids outside the label map where the first has none (or the other way round),
    or no row of the label map at all."""
    def outside(rows):
        return (rows.skipped or {}).get("action not in label map", 0)

    first_name, first = results[0]
    for name, rows in results[1:]:
        a, b = outside(first), outside(rows)
        if len(rows) == 0:
            raise ValueError(f"{name}: no result row of the label map's {len(lm)} classes: "
                             f"another label space than {first_name}")
        if bool(a) != bool(b):
            which = (f"{b:,} rows of action ids outside the label map ({len(lm)} classes), "
                     f"{first_name} none" if b else
                     f"no row outside the label map, {first_name} {a:,}")
            raise ValueError(f"{name}: results over another label space than {first_name} "
                             f"({which}); compare results of the same classes")
