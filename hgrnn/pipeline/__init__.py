"""Offline stages: decoding, person detection, I3D features -> the feature store."""
