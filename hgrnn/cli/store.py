"""`hgrnn inspect` and `hgrnn merge-stores`: what a feature store holds, and joining shards."""

import click


@click.command("inspect")
@click.argument("store", type=click.Path(dir_okay=False))
@click.option("--check", is_flag=True,
              help="Also read every dataset and verify every rule of docs/store.md (offsets, "
                   "shapes, dtypes, finite values, box ranges, 0/1 labels, complete flags) "
                   "and each video's digest (bytes changed after writing); list every "
                   "problem (video and dataset) and exit 1.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of text.")
def inspect_cmd(store, check, as_json):
    """Summarise a feature store (HDF5, docs/store.md).

    Prints the videos, keyframes, persons per keyframe (min/mean/max and a histogram) and
    per-class label counts for each box source (gt, det), the feature dim and dtypes, the
    configs the stages ran with, recorded failures, and the size on disk against the raw
    array bytes.

    \b
    Examples:
      hgrnn inspect train.h5
      hgrnn inspect train.h5 --check      # exit status 1 if anything is broken
    """
    import json as _json

    from hgrnn.data.store import StoreError
    from hgrnn.data.store_check import check_store, format_summary, summarize_store

    try:
        try:
            summary = summarize_store(store, progress=True)
        except StoreError as err:
            if not check:
                raise
            summary, summary_error = None, err     # --check names the broken dataset below
        else:
            click.echo(_json.dumps(summary, indent=1) if as_json else format_summary(summary))
        if check:
            problems = check_store(store, progress=True)
            if summary is None and not problems:
                raise summary_error
    except StoreError as err:
        raise click.ClickException(str(err)) from None
    if check:
        if problems:
            for p in problems:
                click.echo(f"{store}: {p}", err=True)
            videos = len({p.split("/")[1].split(":")[0] for p in problems
                          if p.startswith("videos/")})
            raise click.ClickException(f"{store}: check failed: {len(problems)} problem"
                                       f"{'s' if len(problems) > 1 else ''} in {videos} video"
                                       f"{'s' if videos != 1 else ''} (listed above)")
        click.echo(f"check: OK, {summary['videos']} videos verified")


@click.command("merge-stores")
@click.argument("out", type=click.Path(dir_okay=False))
@click.argument("shards", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.option("--keep-first", is_flag=True,
              help="A video in several shards with different data: keep the first shard's "
                   "copy (default: error). Identical copies are always accepted. Shards "
                   "extracted with other feature settings (backbone, weights, clip, "
                   "resolution, layer, streams, flow...) are refused even so.")
def merge_stores_cmd(out, shards, overwrite, keep_first):
    """Combine shard stores written by parallel workers into OUT.

    The shards must agree on feature dim, label map, feature streams and every extraction
    setting that changes the features (refused naming the setting); settings that do not
    (input and weights paths, device, workers, keyframe range) may differ: the first
    shard's are kept, with a warning. Complete videos are copied (interrupted ones
    skipped), stage configs and failures merged. OUT is written to OUT.partial and renamed
    when done.

    \b
    Example:
      hgrnn merge-stores train.h5 shards/train-*.h5
    """
    from hgrnn.data.store import StoreError
    from hgrnn.data.store_merge import merge_stores

    try:
        summary = merge_stores(out, list(shards), overwrite=overwrite,
                               on_duplicate="first" if keep_first else "error")
    except (StoreError, OSError) as err:         # OSError: OUT not writable, disk full...
        raise click.ClickException(str(err)) from None
    click.echo(f"{out}: {summary['videos']} videos from {len(shards)} shards "
               f"({summary['duplicates']} duplicates dropped, {summary['incomplete_skipped']} "
               f"incomplete skipped, {summary['failures']} failures recorded)")
