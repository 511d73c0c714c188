"""A default lives once, in the config dataclass, and the click option reads it: every option
of every `hgrnn` command that sets a field of the command's config has that field's default
(`hgrnn.cli.options.default_of`). A literal default in an option that disagrees with the
dataclass fails here."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from hgrnn.apps.demo_config import DemoConfig
from hgrnn.apps.predict_config import PredictConfig
from hgrnn.cli import main
from hgrnn.data.source import VideoSource
from hgrnn.data.synth_config import SynthConfig
from hgrnn.pipeline.detect_config import DetectConfig, FinetuneDetectorConfig
from hgrnn.pipeline.example_config import ExampleConfig
from hgrnn.pipeline.extract.config import ExtractConfig
from hgrnn.pipeline.finetune_config import FinetuneConfig
from hgrnn.pipeline.import_features import ImportConfig
from hgrnn.hgrnn_head.ablate_config import AblateConfig
from hgrnn.hgrnn_head.config import HeadConfig, TrainConfig
from hgrnn.track_config import TrackConfig

#: command -> the config dataclasses its options fill (an option named like a field of one
#: of them must have that field's default). () : the command has no config dataclass.
CONFIGS = {
    "ablate": (AblateConfig,),
    "check-data": (VideoSource,),
    "convert cvat-video": (),
    "convert via": (),
    "demo": (DemoConfig,),
    "detect": (DetectConfig,),
    "eval-csv": (),
    "export-features": (),
    "extract-features": (ExtractConfig,),
    "finetune-backbone": (FinetuneConfig,),
    "finetune-detector": (FinetuneDetectorConfig,),
    "import-features": (ImportConfig,),
    "inspect": (),
    "merge-stores": (),
    "predict": (ExtractConfig, PredictConfig),
    "render-example": (ExampleConfig,),
    "report": (VideoSource,),
    "synth": (SynthConfig,),
    "track": (TrackConfig,),
    "train-head": (HeadConfig, TrainConfig),
    "visualize": (PredictConfig, VideoSource),    # the drawing options are predict's
}

#: Not checked here yet: `eval` has no config dataclass (its defaults are
#: `infer.evaluate_store`'s keywords); it repeats --nms-iou until it gets a light config.
NOT_YET = {"eval"}

#: Options that on purpose default to something else than the field: (command, parameter)
#: -> why.
ON_PURPOSE = {
    ("ablate", "rows"): "None: the rows the stores support (rows_for_store: + flow rows)",
    ("finetune-backbone", "clip_frames"): "None: the CLI fills in the backbone's own",
    ("finetune-backbone", "frame_stride"): "None: the CLI fills in the backbone's own",
    ("finetune-backbone", "short_side"): "None: the CLI fills in the backbone's own",
}

#: Options that fill several fields: (command, parameter) -> the fields, in order.
COMPOSITE = {("finetune-backbone", "scale_jitter"): ("scale_min", "scale_max")}


def _commands(group=main, prefix=""):
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def _click_default(param):
    default = param.default
    if default is getattr(click.core, "UNSET", object()):        # click 8.3: no default
        return False if param.is_flag and not param.secondary_opts else None
    return default


def _field_default(field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _as_option(value, click_default):
    """A field's default as its option spells it: a tuple of streams is "rgb,flow"."""
    if isinstance(value, tuple) and isinstance(click_default, str):
        return ",".join(value)
    return value


def mismatches(command_name, command, configs):
    """[(parameter, click default, field default)] that differ, and the parameters checked."""
    fields = {}
    for config in reversed(configs):            # the first config named wins a shared field
        fields.update({f.name: _field_default(f) for f in dataclasses.fields(config)})
    bad, checked = [], []
    for param in command.params:
        if not isinstance(param, click.Option) or (command_name, param.name) in ON_PURPOSE:
            continue
        names = COMPOSITE.get((command_name, param.name), (param.name,))
        if any(fields.get(n, dataclasses.MISSING) is dataclasses.MISSING for n in names):
            continue
        wanted = tuple(fields[n] for n in names) if len(names) > 1 else fields[names[0]]
        got = _click_default(param)
        checked.append(param.name)
        if got != _as_option(wanted, got):
            bad.append((param.name, got, wanted))
    return bad, checked


def test_every_command_is_in_the_table():
    """A new command gets an entry (its configs, or none) before this test passes."""
    names = {name for name, _ in _commands()}
    assert names == set(CONFIGS) | NOT_YET, (sorted(names - set(CONFIGS) - NOT_YET),
                                             sorted(set(CONFIGS) - names))


@pytest.mark.parametrize("name", sorted(n for n, c in CONFIGS.items() if c))
def test_option_defaults_are_the_config_defaults(name):
    command = dict(_commands())[name]
    bad, checked = mismatches(name, command, CONFIGS[name])
    assert checked, f"{name}: no option names a field of {CONFIGS[name]}"
    assert not bad, f"{name}: option defaults differ from the config's: {bad}"


def test_a_literal_default_that_disagrees_fails():
    """The check itself: an option written with another literal than the field's."""
    @click.command()
    @click.option("--max-gap", type=int, default=TrackConfig.max_gap + 1, show_default=True)
    @click.option("--min-iou", type=float, default=TrackConfig.min_iou, show_default=True)
    def cmd(max_gap, min_iou):
        pass

    bad, checked = mismatches("track", cmd, (TrackConfig,))
    assert checked == ["max_gap", "min_iou"]
    assert bad == [("max_gap", 2, 1)]


def test_the_predict_nms_default_is_the_heads():
    """PredictConfig (light: no torch) writes 0.5 for the NMS IoU that the head's inference
    module (torch) defines as DEFAULT_NMS_IOU; they are one value."""
    from hgrnn.hgrnn_head.infer import DEFAULT_NMS_IOU

    assert PredictConfig.nms_iou == DEFAULT_NMS_IOU


def test_the_configs_the_cli_reads_stay_light():
    """The modules the options read their defaults from import neither torch, numpy nor
    scipy, so that `hgrnn --help` answers at once."""
    modules = ("hgrnn.apps.predict_config", "hgrnn.apps.demo_config",
               "hgrnn.pipeline.finetune_config", "hgrnn.pipeline.detect_config",
               "hgrnn.pipeline.example_config", "hgrnn.data.synth_config",
               "hgrnn.track_config", "hgrnn.cli")
    probe = (f"import sys; import {', '.join(modules)}; "
             "print(sorted(m for m in ('torch', 'numpy', 'scipy', 'h5py', 'av') "
             "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
                         check=True).stdout
    assert out.strip() == "[]"
