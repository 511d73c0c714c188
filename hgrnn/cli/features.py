"""`hgrnn import-features` and `hgrnn export-features`: features of other systems (PySlowFast,
mmaction2, your own) into a feature store, and a store's features out as .npz."""

import click

from hgrnn.cli.options import default_of
from hgrnn.pipeline.extract.config import ExtractConfig


@click.command("import-features")
@click.argument("features", type=click.Path(exists=True))
@click.option("--source", type=click.Choice(["gt", "det"]), required=True,
              help="gt: the rows are the annotated persons (each must match a box of "
                   "--annotations at IoU >= 0.9); det: the rows are detections.")
@click.option("--annotations", required=True, type=click.Path(exists=True, dir_okay=False),
              help="AVA ground-truth CSV: the labels of the gt persons, and what the det "
                   "persons are scored against.")
@click.option("--label-map", default=default_of(ExtractConfig, "label_map"), show_default=True,
              help="Label map file (.pbtxt / 'id name' text) or ava-v2.1 | ava-v2.2 | "
                   "ava-v2.2-2019.")
@click.option("--exclusions", type=click.Path(exists=True, dir_okay=False),
              help="AVA excluded-timestamps CSV: rows of those keyframes are dropped, and the "
                   "file is recorded in the store's config.")
@click.option("--describe", default=None,
              help="Free text recorded in the store's config: what made the features (e.g. "
                   "'PySlowFast SLOWFAST_32x2_R101_50_50 RoI head input, AVA v2.2').")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="Feature store to write; an existing store gets this source added (run gt, "
                   "then det, into one store), videos that have it already are skipped.")
def import_features_cmd(**options):
    """Import person features from a .npz file (or a directory of them) into a store.

    Arrays (docs/features.md): video_ids (N,), timestamps (N,) int seconds, boxes (N, 4)
    normalised x1,y1,x2,y2, features (N, D); optional scores (N,) and clip_video_ids,
    clip_timestamps, clip_features (K, D) (absent: the mean of a keyframe's person
    features is its clip feature). Everything is checked before the store is touched.

    \b
    Example (both sources into one store):
      hgrnn import-features gt_feats.npz --source gt --annotations ava_val_v2.2.csv \\
        --label-map ava-v2.2 --out val.h5 --describe "SlowFast R101 RoI features"
      hgrnn import-features det_feats.npz --source det --annotations ava_val_v2.2.csv \\
        --label-map ava-v2.2 --out val.h5 --describe "SlowFast R101 RoI features"
    """
    from hgrnn.data.ava import AvaFormatError
    from hgrnn.data.store import StoreError
    from hgrnn.pipeline.import_features import ImportConfig, import_features

    try:
        s = import_features(ImportConfig(**options))
    except (ValueError, OSError, StoreError, AvaFormatError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"import-features: {s['out']}: {s['source']} persons of {s['written']} "
               f"video(s) written ({s['keyframes']} keyframes, {s['persons']} persons), "
               f"{s['skipped']} already there; clip features: {s['clip_features']}")
    if s["excluded_rows"]:
        click.echo(f"  {s['excluded_rows']} row(s) of excluded keyframes dropped")


@click.command("export-features")
@click.argument("store", type=click.Path(exists=True, dir_okay=False))
@click.option("--source", type=click.Choice(["gt", "det"]), default="gt", show_default=True,
              help="Which persons to export.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="The .npz to write (the import-features format, with clip features).")
def export_features_cmd(store, source, out):
    """Write a store's persons of one source and its clip features as a .npz that
    import-features reads (docs/features.md)."""
    from hgrnn.data.store import StoreError
    from hgrnn.pipeline.import_features import export_features

    try:
        s = export_features(store, out, source)
    except (ValueError, OSError, StoreError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"export-features: {s['out']}: {s['persons']} {source} persons, "
               f"{s['keyframes']} keyframes")
