"""AVA formats, the HDF5 feature store, context windows, synthetic data."""
