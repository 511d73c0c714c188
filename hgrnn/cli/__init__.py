"""The `hgrnn` command line: one click group, each command a thin adapter
(options -> config dataclass -> library call) in a module of its own:

    evaluate.py   eval-csv, eval          store.py    inspect, merge-stores
    report.py     report
    head.py       train-head, ablate      synth.py    synth, demo
    extract.py    extract-features        finetune.py finetune-backbone
    predict.py    predict, visualize      detect.py   finetune-detector, detect
    data.py       render-example, check-data, convert (your own data)
    track.py      track (person ids across keyframes)
    options.py    options shared by several commands

Heavy imports (torch, h5py, av) live inside the commands so that `hgrnn --help` answers
at once. Run `hgrnn COMMAND --help` for each command's options.
"""

import click

from hgrnn.cli import (data, detect, evaluate, extract, features, finetune, head, predict, report,
                       store, synth, track)
from hgrnn.console import show_logs_as_lines, show_warnings_as_lines


def os_error_text(err: OSError) -> str:
    """One line for an OS error no command turned into its own message: the file, the
    reason, and for a full disk the space left ("out/run/last.pt: Read-only file system")."""
    import errno
    import os
    import shutil

    where = err.filename if err.filename is not None else ""
    reason = err.strerror or (str(err).splitlines()[0] if str(err) else type(err).__name__)
    text = f"{where}: {reason}" if where else reason
    if err.errno in (errno.ENOSPC, errno.EDQUOT) and where:
        try:
            free = shutil.disk_usage(os.path.dirname(os.path.abspath(str(where)))).free
            text += f" ({free / 2 ** 20:.1f} MiB free)"
        except OSError:
            pass
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        text += "; choose a folder you can write to, or fix its permissions"
    return text


class _Main(click.Group):
    """The group: an OSError that escapes a command (an unwritable output folder, a full
    disk, a read-only file) ends it with one line instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OSError as err:
            raise click.ClickException(os_error_text(err)) from None


@click.group(cls=_Main,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="hgrnn", prog_name="hgrnn",
                      message="%(prog)s %(version)s")
def main():
    """Hierarchical Graph-RNNs for spatio-temporal detection of multiple simultaneous
    activities in video (the AVA task).

    \b
    Typical flow:
      hgrnn finetune-backbone ...  fine-tune I3D + 1024->256 projection on AVA (GPU, once)
      hgrnn finetune-detector ...  fine-tune the Faster R-CNN person detector (GPU, once)
      hgrnn detect ...             videos -> AVA person-box CSV (the 'det' persons)
      hgrnn extract-features ...   videos -> HDF5 feature store (GPU, once)
      hgrnn import-features ...    features of PySlowFast / mmaction2 / yours -> a store
      hgrnn inspect STORE          what a store holds; --check verifies it
      hgrnn train-head ...         train the HGRNN head on a store (minutes on a CPU)
      hgrnn eval ...               score a store, write AVA CSV + frame-mAP
      hgrnn eval-csv GT RESULTS    official AVA frame-mAP of any result CSV
      hgrnn report GT RESULTS ...  error-analysis page (HTML) of any result CSV
      hgrnn predict VIDEO...       run a trained head on your videos: results.csv + drawn videos
      hgrnn visualize VIDEO ...    draw any AVA result / ground-truth CSV onto its video
      hgrnn track BOXES.csv ...    a person id for every box (persons linked over keyframes)
      hgrnn ablate ...             the paper's ablation tables on a pair of stores
      hgrnn demo                   the whole head on a synthetic AVA-like benchmark
    \b
    Your own data (docs/own-data.md):
      hgrnn render-example DIR     a small ready-to-use example dataset (videos + CSVs)
      hgrnn convert ...            CVAT for video / VIA exports -> AVA ground-truth CSV
      hgrnn check-data ...         every problem of a dataset before extraction
    """
    show_warnings_as_lines()
    show_logs_as_lines()


for _command in (evaluate.eval_csv, evaluate.eval_cmd, store.inspect_cmd, store.merge_stores_cmd,
                 head.train_head_cmd, head.ablate_cmd, synth.synth_cmd, synth.demo_cmd,
                 extract.extract_features_cmd, finetune.finetune_backbone_cmd,
                 predict.predict_cmd, predict.visualize_cmd,
                 data.render_example_cmd, data.check_data_cmd, data.convert_group,
                 detect.finetune_detector_cmd, detect.detect_cmd, report.report_cmd,
                 track.track_cmd, features.import_features_cmd, features.export_features_cmd):
    main.add_command(_command)
