"""hgrnn: Hierarchical Graph-RNNs for detecting multiple simultaneous activities (AVA)."""

__version__ = "0.1.0"
