"""End-to-end applications built on the offline stages (`pipeline/`) and the head (`hgrnn_head/`)."""
