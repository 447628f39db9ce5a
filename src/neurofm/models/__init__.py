"""neurofm.models."""
