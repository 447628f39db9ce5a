"""neurofm.tasks."""
