"""`hgrnn track`: a person id for every box of an AVA CSV (persons linked across keyframes)."""

import click

from hgrnn.cli.options import default_of
from hgrnn.track_config import TrackConfig


@click.command("track")
@click.argument("boxes_csv", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The tracked CSV (written atomically: a temporary file in its folder, "
                   "renamed). Results / person boxes: the 8 AVA columns, then the person "
                   "id as a 9th column; ground truth: the id as its 8th column, person_id.")
@click.option("--store", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A feature store holding these persons: their RoI features' cosine "
                   "similarity joins the box IoU in the linking.")
@click.option("--source", type=click.Choice(["det", "gt"]), default="det", show_default=True,
              help="The store's persons to take the features of.")
@click.option("--max-gap", type=click.IntRange(min=0), default=default_of(TrackConfig, "max_gap"),
              show_default=True,
              help="Keyframes a person may go undetected and keep its id (docs/track.md).")
@click.option("--min-iou", type=click.FloatRange(0, 1),
              default=default_of(TrackConfig, "min_iou"), show_default=True,
              help="Least IoU of a person's last box and a new box to link them.")
@click.option("--format", "kind", type=click.Choice(["auto", "results", "gt"]),
              default="auto", show_default=True,
              help="What BOXES_CSV is: results / person boxes (8th column a score) or "
                   "ground truth (8th column a person id, or 7 columns); auto: by its "
                   "first rows (an 8th column of integers is read as person ids).")
def track_cmd(boxes_csv, out, store, source, max_gap, min_iou, kind):
    """Link the persons of BOXES_CSV across keyframes and write their ids.

    Each video's keyframes are taken in time order; the persons of a keyframe are assigned
    to the tracks of the previous keyframes by a linear assignment on box IoU (and, with
    --store, the cosine similarity of their RoI features); a track survives --max-gap
    keyframes without a match. All rows of one box (one per action) get the same id; ids
    are 0, 1, ... per video. Deterministic.

    \b
    Examples:
      hgrnn track person_boxes.csv --out person_boxes_tracked.csv
      hgrnn track results.csv --out results_tracked.csv --store features.h5 --source det
    """
    import os

    import numpy as np

    from hgrnn.data.ava import AvaFormatError
    from hgrnn.data.store import StoreError
    from hgrnn.track import (
        group_boxes,
        read_boxes,
        store_features,
        track_rows,
        write_tracked,
    )

    if os.path.abspath(out) == os.path.abspath(boxes_csv):
        raise click.ClickException(f"{out}: --out is the input file; choose another name")
    cfg = TrackConfig(max_gap=max_gap, min_iou=min_iou)
    try:
        rows, kind = read_boxes(boxes_csv, kind)
        features = None
        if store is not None:
            groups = group_boxes(rows)
            features, found = store_features(store, source, groups)
            click.echo(f"{store}: features of {found} of {len(groups)} persons "
                       f"(source {source})", err=True)
            if found < len(groups):
                click.echo("note: videos with a person missing from the store are linked "
                           "by IoU alone", err=True)
        ids, notes = track_rows(rows, cfg, features)
        write_tracked(out, rows, ids, ground_truth=(kind == "gt"))
    except (AvaFormatError, StoreError) as err:
        raise click.ClickException(str(err)) from None
    for note in notes:
        click.echo(f"note: {note}", err=True)
    videos = np.unique(rows.video_ids)
    tracks = sum(len(np.unique(ids[rows.video_ids == v])) for v in videos)
    persons = len(group_boxes(rows)) if len(rows) else 0
    click.echo(f"{out}: {persons} person boxes of {len(videos)} video(s) linked into "
               f"{tracks} tracks ({'ground truth, 8th column' if kind == 'gt' else '9th column'}"
               f"; max_gap {cfg.max_gap}, min_iou {cfg.min_iou:g})")
