"""neurofm.objectives."""
