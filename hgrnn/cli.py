"""The `hgrnn` command line: one click group, each command a thin adapter
(options -> config dataclass -> library call). Heavy imports (torch, h5py, av) live
inside the commands so that `hgrnn --help` answers at once.

Run `hgrnn COMMAND --help` for each command's options.
"""

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="hgrnn")
def main():
    """Hierarchical Graph-RNNs for spatio-temporal detection of multiple simultaneous
    activities in video (the AVA task).

    \b
    Typical flow:
      hgrnn extract-features ...   videos -> HDF5 feature store (GPU, once)
      hgrnn train-head ...         train the HGRNN head on a store (minutes on a CPU)
      hgrnn eval ...               score a store, write AVA CSV + frame-mAP
      hgrnn eval-csv GT RESULTS    official AVA frame-mAP of any result CSV
      hgrnn demo                   everything above on a synthetic AVA-like benchmark
    """


# --- section: eval-csv (AVA formats + evaluator) ---

# --- end section: eval-csv ---

# --- section: store (inspect, merge-stores) ---

# --- end section: store ---

# --- section: head (train-head, eval) ---

# --- end section: head ---

# --- section: synthetic (synth, demo, ablate) ---

# --- end section: synthetic ---

# --- section: pipeline (extract-features) ---

# --- end section: pipeline ---

# --- section: finetune (finetune-backbone) ---

# --- end section: finetune ---


if __name__ == "__main__":  # `torchrun -m hgrnn.cli ...` and `python -m hgrnn.cli`
    main()
