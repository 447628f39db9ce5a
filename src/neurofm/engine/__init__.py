"""neurofm.engine."""
