"""Datasets: the NYU and ICVL readers and their conventions, cameras, raw frames, label files, the
repository's reference data."""
