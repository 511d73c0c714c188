"""The HGRNN head: model, loss, training and inference on the feature store."""
