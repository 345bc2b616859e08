"""Models: the multi-head classifier, model sources, the built-in offline model."""
