"""Packaged AVA label maps (.pbtxt)."""
