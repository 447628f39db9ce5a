"""neurofm.datasets."""
